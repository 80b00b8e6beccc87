//! Warm packs in a long-lived process (a notebook kernel entering clusters
//! again and again): a layer's scan is kept in memory and reused while inotify
//! reports no change under its folders, so an unchanged environment is not
//! walked again (the walk and stat() of 31k files is ~45 ms of kernel time
//! on 2 cores; reuse is ~1 ms).
//!
//! Correctness rests on one order: a folder is watched BEFORE the walk lists
//! it, so any change made after it was listed (a file edited in place, added,
//! removed, renamed) queues an event, and the next pack rescans. Events are read
//! at the next pack (the inotify descriptor is non-blocking; no thread). A
//! queue overflow, an error, or a watch that cannot be added (the watch limit)
//! means "changed". A structural change (a folder created, removed or moved)
//! drops the whole watch: the rescan watches every folder afresh. Only Linux,
//! and only local file systems (inotify does not see another machine's writes
//! to a network file system); elsewhere every pack walks.

use super::PackageError;
use super::layer::{self, LayerOptions, LayerScan, LazyStatCache};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Scans of this process, by layer folder.
static MEMO: Mutex<Option<HashMap<PathBuf, Kept>>> = Mutex::new(None);
/// Folders kept at most (each holds its file list and one inotify descriptor).
const KEPT_MAX: usize = 16;

struct Kept {
    options: LayerOptions,
    /// None until `keep` (a new scan is kept once its deferred hashes are filled in).
    scan: Option<Arc<LayerScan>>,
    watch: Option<Arc<watcher::DirWatch>>,
}

/// The scan of `root`: the one kept from an earlier pack when nothing under it
/// changed since (then `fresh` is false and no file was read), else a new one
/// (`defer_new`: see `layer::scan_with`), to be handed to `keep` once complete.
/// `cache` is loaded only when a walk is needed.
pub fn scan(
    root: &Path,
    options: &LayerOptions,
    cache: &mut LazyStatCache,
    defer_new: bool,
) -> Result<(Arc<LayerScan>, bool), PackageError> {
    let mut memo = MEMO.lock().unwrap_or_else(|p| p.into_inner());
    let kept = memo.get_or_insert_with(HashMap::new);
    let previous = kept.remove(root);
    let mut watch = None;
    if let Some(mut old) = previous
        && old.options == *options
        && let Some(w) = old.watch.take()
    {
        match (w.drain(), old.scan.clone()) {
            (watcher::Drained::Nothing, Some(scan)) => {
                kept.insert(root.to_owned(), Kept { watch: Some(w), ..old });
                return Ok((scan, false));
            }
            (watcher::Drained::Structural, _) => {} // watched afresh below
            _ => watch = Some(w),                   // a change, or a scan never kept: walk, keeping the watches
        }
    }
    if watch.is_none() {
        watch = watcher::DirWatch::start(root).map(Arc::new);
    }
    let before_listing: layer::BeforeListing = match &watch {
        Some(w) => {
            let w = w.clone();
            Arc::new(move |dir: &Path| w.add(dir))
        }
        None => Arc::new(|_: &Path| {}),
    };
    let scan = Arc::new(layer::scan_with(root, options, cache.get(), before_listing, defer_new)?);
    if kept.len() >= KEPT_MAX {
        kept.clear();
    }
    let watch = watch.filter(|w| w.usable());
    kept.insert(root.to_owned(), Kept { options: options.clone(), scan: None, watch });
    Ok((scan, true))
}

/// Keeps `scan` (new, complete: every hash known) for the next pack of `root`
/// with the same options. Events queued since the walk began are still read by
/// that pack's `scan`, so a change made meanwhile is not missed.
pub fn keep(root: &Path, options: &LayerOptions, scan: Arc<LayerScan>) {
    if scan.files.iter().any(|f| f.hash.is_none()) {
        return;
    }
    let mut memo = MEMO.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(kept) = memo.get_or_insert_with(HashMap::new).get_mut(root)
        && kept.options == *options
        && kept.watch.is_some()
    {
        kept.scan = Some(scan);
    }
}

#[cfg(target_os = "linux")]
mod watcher {
    use inotify::{EventMask, Inotify, WatchMask};
    use std::collections::HashSet;
    use std::path::{Path, PathBuf};
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, Ordering};

    pub enum Drained {
        Nothing,
        /// A file changed: rescan, keeping the watches.
        Changed,
        /// A folder appeared, vanished or moved (or the queue overflowed): rescan, watch afresh.
        Structural,
    }

    pub struct DirWatch {
        inotify: Mutex<Inotify>,
        watched: Mutex<HashSet<PathBuf>>,
        /// A watch could not be added: the next pack must walk.
        failed: AtomicBool,
    }

    fn mask() -> WatchMask {
        WatchMask::MODIFY
            | WatchMask::ATTRIB
            | WatchMask::CLOSE_WRITE
            | WatchMask::CREATE
            | WatchMask::DELETE
            | WatchMask::MOVED_FROM
            | WatchMask::MOVED_TO
            | WatchMask::DELETE_SELF
            | WatchMask::MOVE_SELF
            | WatchMask::ONLYDIR
    }

    /// File systems whose changes inotify reports (all writers are on this machine).
    fn local(root: &Path) -> bool {
        const LOCAL: [i64; 7] = [
            0xEF53,      // ext2/3/4
            0x5846_5342, // xfs
            0x9123_683E, // btrfs
            0x0102_1994, // tmpfs
            0x794C_7630, // overlayfs
            0x2FC1_2FC1, // zfs
            0xF2F5_2010, // f2fs
        ];
        use std::os::unix::ffi::OsStrExt;
        let Ok(path) = std::ffi::CString::new(root.as_os_str().as_bytes()) else { return false };
        let mut stat: libc::statfs = unsafe { std::mem::zeroed() };
        // SAFETY: a valid C string and a zeroed statfs buffer the call fills in.
        let ok = unsafe { libc::statfs(path.as_ptr(), &mut stat) } == 0;
        #[allow(clippy::unnecessary_cast)] // f_type's integer type differs between libcs
        let kind = stat.f_type as i64;
        ok && LOCAL.contains(&kind)
    }

    impl DirWatch {
        pub fn start(root: &Path) -> Option<DirWatch> {
            if !local(root) {
                return None;
            }
            let inotify = Mutex::new(Inotify::init().ok()?);
            Some(DirWatch { inotify, watched: Mutex::new(HashSet::new()), failed: AtomicBool::new(false) })
        }

        /// Watches `dir` (called before the walk lists it).
        pub fn add(&self, dir: &Path) {
            // The walk calls this from all its threads: the syscall runs outside the lock.
            if !self.watched.lock().unwrap_or_else(|p| p.into_inner()).insert(dir.to_owned()) {
                return;
            }
            let mut watches = self.inotify.lock().unwrap_or_else(|p| p.into_inner()).watches();
            if watches.add(dir, mask()).is_err() {
                self.failed.store(true, Ordering::Relaxed);
            }
        }

        pub fn usable(&self) -> bool {
            !self.failed.load(Ordering::Relaxed)
        }

        /// Reads the events queued since the last call.
        pub fn drain(&self) -> Drained {
            if !self.usable() {
                return Drained::Structural;
            }
            let mut inotify = self.inotify.lock().unwrap_or_else(|p| p.into_inner());
            let mut buffer = [0u8; 64 * 1024];
            let mut outcome = Drained::Nothing;
            loop {
                let events = match inotify.read_events(&mut buffer) {
                    Ok(events) => events,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return outcome,
                    Err(_) => return Drained::Structural,
                };
                let mut any = false;
                for event in events {
                    any = true;
                    if event.name.is_some_and(super::irrelevant) {
                        continue;
                    }
                    let structural = EventMask::Q_OVERFLOW
                        | EventMask::DELETE_SELF
                        | EventMask::MOVE_SELF
                        | EventMask::IGNORED
                        | EventMask::MOVED_FROM
                        | EventMask::MOVED_TO;
                    let folder = event.mask.contains(EventMask::ISDIR)
                        && event.mask.intersects(EventMask::CREATE | EventMask::DELETE);
                    if folder || event.mask.intersects(structural) {
                        return Drained::Structural;
                    }
                    outcome = Drained::Changed;
                }
                if !any {
                    return outcome;
                }
            }
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod watcher {
    use std::path::Path;

    pub enum Drained {
        Nothing,
        Changed,
        Structural,
    }

    /// No watch here: every pack walks.
    pub struct DirWatch;

    impl DirWatch {
        pub fn start(_root: &Path) -> Option<DirWatch> {
            None
        }
        pub fn add(&self, _dir: &Path) {}
        pub fn usable(&self) -> bool {
            false
        }
        pub fn drain(&self) -> Drained {
            Drained::Structural
        }
    }
}

/// Entries no layer ships, so their churn means nothing: bytecode caches, and the
/// folders every walk skips (e.g. a Lance dataset a backfill writes into the workspace).
fn irrelevant(name: &std::ffi::OsStr) -> bool {
    let name = name.to_string_lossy();
    name.ends_with(".pyc") || layer::skipped_name(&name)
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// A pack's use: scan, then keep the complete scan.
    fn scan_kept(root: &Path, options: &LayerOptions, cache: &mut LazyStatCache) -> (Arc<LayerScan>, bool) {
        let (found, fresh) = scan(root, options, cache, false).unwrap();
        keep(root, options, found.clone());
        (found, fresh)
    }

    /// A site-packages layer (no .gitignore rules).
    fn scan_of(root: &Path, cache: &mut LazyStatCache) -> (Arc<LayerScan>, bool) {
        scan_kept(root, &LayerOptions { gitignore: false, ..Default::default() }, cache)
    }

    /// A temporary folder `root` holding `files` (path, text), and a stat cache beside it.
    fn folder_with(name: &str, files: &[(&str, &str)]) -> (tempfile::TempDir, PathBuf, LazyStatCache) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join(name);
        for (path, text) in files {
            let path = root.join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        let cache = LazyStatCache::new(dir.path().join("cache.bin"));
        (dir, root, cache)
    }

    fn paths(scan: &LayerScan) -> Vec<&str> {
        scan.files.iter().map(|f| f.path.as_str()).collect()
    }

    #[test]
    fn a_kept_scan_is_reused_until_something_under_it_changes() {
        let (_dir, root, mut cache) = folder_with("site", &[("pkg/a.py", "a = 1\n")]);

        let (first, fresh) = scan_of(&root, &mut cache);
        assert!(fresh);
        let (again, fresh) = scan_of(&root, &mut cache);
        assert!(!fresh, "nothing changed: the kept scan");
        assert!(Arc::ptr_eq(&first, &again));

        // Bytecode caches churn without meaning anything.
        std::fs::create_dir_all(root.join("pkg/__pycache__")).unwrap();
        std::fs::write(root.join("pkg/__pycache__/a.cpython-311.pyc"), "x").unwrap();
        assert!(!scan_of(&root, &mut cache).1);

        // Edited in place, same size: seen, and the new content is hashed.
        std::fs::write(root.join("pkg/a.py"), "a = 2\n").unwrap();
        let (edited, fresh) = scan_of(&root, &mut cache);
        assert!(fresh);
        assert_ne!(edited.files[0].hash, first.files[0].hash);
        assert!(!scan_of(&root, &mut cache).1);

        // A new folder (structural: watched afresh), then an edit inside it.
        std::fs::create_dir_all(root.join("new/deep")).unwrap();
        std::fs::write(root.join("new/deep/b.py"), "b = 1\n").unwrap();
        let (grown, fresh) = scan_of(&root, &mut cache);
        assert!(fresh);
        assert_eq!(paths(&grown), ["new/deep/b.py", "pkg/a.py"]);
        assert!(!scan_of(&root, &mut cache).1);
        std::fs::write(root.join("new/deep/b.py"), "b = 2\n").unwrap();
        let (edited, fresh) = scan_of(&root, &mut cache);
        assert!(fresh, "an edit in a folder created after the first scan");
        assert_ne!(edited.files[0].hash, grown.files[0].hash);

        // Removed and renamed.
        std::fs::remove_file(root.join("new/deep/b.py")).unwrap();
        assert_eq!(paths(&scan_of(&root, &mut cache).0), ["pkg/a.py"]);
        std::fs::rename(root.join("pkg"), root.join("pkg2")).unwrap();
        let (moved, fresh) = scan_of(&root, &mut cache);
        assert!(fresh);
        assert_eq!(paths(&moved), ["pkg2/a.py"]);
        std::fs::write(root.join("pkg2/a.py"), "a = 3\n").unwrap();
        assert!(scan_of(&root, &mut cache).1, "an edit in a renamed folder");

        // Other options (e.g. files left out for a target): scanned anew.
        let options = LayerOptions { gitignore: false, exclude: vec!["pkg2".into()], ..Default::default() };
        let (narrowed, fresh) = scan(&root, &options, &mut cache, false).unwrap();
        assert!(fresh);
        assert!(paths(&narrowed).is_empty());
    }

    #[test]
    fn a_workspace_walk_watches_its_folders_too() {
        // The workspace walk (.gitignore rules, the `ignore` crate's parallel walker) admits
        // folders in its filter, where they are watched before they are listed.
        let (_dir, root, mut cache) = folder_with("ws", &[("src/deep/m.py", "m = 1\n"), (".gitignore", "logs/\n")]);
        let options = LayerOptions::default();
        let scan_ws = |cache: &mut LazyStatCache| scan_kept(&root, &options, cache);
        assert!(scan_ws(&mut cache).1);
        assert!(!scan_ws(&mut cache).1);
        std::fs::write(root.join("src/deep/m.py"), "m = 2\n").unwrap();
        assert!(scan_ws(&mut cache).1, "an edit two folders down");
        assert!(!scan_ws(&mut cache).1);
        std::fs::create_dir_all(root.join("src/deep/new")).unwrap();
        std::fs::write(root.join("src/deep/new/n.py"), "n = 1\n").unwrap();
        let (grown, fresh) = scan_ws(&mut cache);
        assert!(fresh);
        assert_eq!(paths(&grown), [".gitignore", "src/deep/m.py", "src/deep/new/n.py"]);
        std::fs::write(root.join("src/deep/new/n.py"), "n = 2\n").unwrap();
        assert!(scan_ws(&mut cache).1, "an edit in a folder created after the first scan");
    }
}
