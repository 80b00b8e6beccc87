//! One layer of the environment (the workspace, or site-packages): the files
//! that ship, with content hashes. A persistent stat cache (path, size,
//! mtime, inode -> hash) means a warm scan of an unchanged folder reads no
//! file contents.

use super::PackageError;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Files that must never leave the machine, by name.
const SECRET_NAMES: [&str; 8] = [
    ".env",
    ".netrc",
    ".git-credentials",
    ".pgpass",
    "credentials",
    "application_default_credentials.json",
    ".pypirc",
    "id_rsa",
];
const SECRET_SUFFIXES: [&str; 3] = [".pem", ".key", ".p12"];
/// Folders never worth shipping.
const SKIPPED_DIRS: [&str; 6] =
    [".git", "__pycache__", ".ipynb_checkpoints", "node_modules", ".mypy_cache", ".pytest_cache"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerFile {
    /// Path inside the layer, `/`-separated.
    pub path: String,
    pub abs: PathBuf,
    pub size: u64,
    pub executable: bool,
    pub hash: String,
}

#[derive(Debug, Clone, Default)]
pub struct LayerScan {
    pub files: Vec<LayerFile>,
    /// Secrets found and left out (paths inside the layer).
    pub secrets_left_out: Vec<String>,
    /// Files over the warning size.
    pub large_files: Vec<(String, u64)>,
    pub bytes: u64,
    /// Bytes actually read to hash (0 on a warm scan of an unchanged folder).
    pub bytes_hashed: u64,
}

#[derive(Debug, Clone)]
pub struct LayerOptions {
    /// Honour .gitignore / .ignore files (the workspace; not site-packages).
    pub gitignore: bool,
    pub warn_bytes: u64,
    /// Files or folders (relative, `/`-separated) to leave out, e.g. pinned distributions' files.
    pub exclude: Vec<String>,
}

impl Default for LayerOptions {
    fn default() -> Self {
        Self { gitignore: true, warn_bytes: 10 << 20, exclude: Vec::new() }
    }
}

pub fn is_secret(name: &str) -> bool {
    SECRET_NAMES.contains(&name)
        || name.starts_with(".env.")
        || name.starts_with("id_rsa")
        || name.starts_with("id_ed25519")
        || name.starts_with("id_ecdsa")
        || SECRET_SUFFIXES.iter().any(|s| name.ends_with(s))
}

fn skipped_dir(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    SKIPPED_DIRS.contains(&name)
        || name.ends_with(".lance")
        || name.ends_with(".egg-info")
        || path.join("pyvenv.cfg").is_file() // a virtualenv
}

/// Lists and hashes the files under `root` that ship.
pub fn scan(root: &Path, options: &LayerOptions, cache: &mut StatCache) -> Result<LayerScan, PackageError> {
    if !root.is_dir() {
        return Err(PackageError::Io {
            path: root.display().to_string(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "not a folder"),
        });
    }
    let walker = ignore::WalkBuilder::new(root)
        .hidden(false)
        .parents(false)
        .git_global(false)
        .git_ignore(options.gitignore)
        .git_exclude(options.gitignore)
        .ignore(options.gitignore)
        .require_git(false)
        .follow_links(false)
        .filter_entry(|e| !(e.file_type().is_some_and(|t| t.is_dir()) && e.depth() > 0 && skipped_dir(e.path())))
        .build_parallel();
    // A file is excluded when it or one of its folders is listed: a set lookup per path
    // component, so leaving out a whole distribution's RECORD (thousands of files) stays cheap.
    let excludes: std::collections::HashSet<&str> = options.exclude.iter().map(|p| p.trim_end_matches('/')).collect();
    let is_excluded =
        |path: &str| excludes.contains(path) || path.match_indices('/').any(|(i, _)| excludes.contains(&path[..i]));
    // The walk runs on all cores (readdir is most of a warm scan); entries are sorted after.
    let found: std::sync::Mutex<Vec<(String, PathBuf)>> = std::sync::Mutex::new(Vec::new());
    let secrets: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let failure: std::sync::Mutex<Option<PackageError>> = std::sync::Mutex::new(None);
    walker.run(|| {
        let (found, secrets, failure, is_excluded, excludes) = (&found, &secrets, &failure, &is_excluded, &excludes);
        Box::new(move |entry| {
            let entry = match entry {
                Ok(entry) => entry,
                Err(e) => {
                    let source = std::io::Error::other(e);
                    *failure.lock().unwrap_or_else(|p| p.into_inner()) =
                        Some(PackageError::Io { path: root.display().to_string(), source });
                    return ignore::WalkState::Quit;
                }
            };
            if entry.file_type().is_some_and(|t| t.is_file())
                && let Ok(relative) = entry.path().strip_prefix(root)
            {
                let path = relative.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/");
                let name = entry.file_name().to_string_lossy();
                if !(name.ends_with(".pyc") || (!excludes.is_empty() && is_excluded(&path))) {
                    if is_secret(&name) {
                        secrets.lock().unwrap_or_else(|p| p.into_inner()).push(path);
                    } else {
                        found.lock().unwrap_or_else(|p| p.into_inner()).push((path, entry.into_path()));
                    }
                }
            }
            ignore::WalkState::Continue
        })
    });
    if let Some(err) = failure.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(err);
    }
    let mut secrets_left_out = secrets.into_inner().unwrap_or_else(|p| p.into_inner());
    secrets_left_out.sort();
    let mut scan = LayerScan { secrets_left_out, ..Default::default() };
    let mut candidates = found.into_inner().unwrap_or_else(|p| p.into_inner());
    candidates.sort_by(|a, b| a.0.cmp(&b.0));
    // stat() on all cores: on a warm run (nothing to hash) the stats are most of the time.
    let candidates: Vec<(String, PathBuf, std::fs::Metadata)> = candidates
        .into_par_iter()
        .map(|(path, abs)| match std::fs::symlink_metadata(&abs) {
            Ok(meta) => Ok((path, abs, meta)),
            Err(source) => Err(PackageError::Io { path, source }),
        })
        .collect::<Result<_, _>>()?;

    let hashed: Vec<Result<(LayerFile, bool), PackageError>> = candidates
        .par_iter()
        .map(|(path, abs, meta)| {
            let key = StatKey::of(meta);
            let cached = cache.get(abs, &key);
            let fresh = cached.is_none();
            let hash = match cached {
                Some(h) => h,
                None => hash_file(abs).map_err(|source| PackageError::Io { path: path.clone(), source })?,
            };
            use std::os::unix::fs::PermissionsExt;
            let executable = meta.permissions().mode() & 0o111 != 0;
            Ok((LayerFile { path: path.clone(), abs: abs.clone(), size: meta.len(), executable, hash }, fresh))
        })
        .collect();
    for ((_, abs, meta), result) in candidates.iter().zip(hashed) {
        let (file, fresh) = result?;
        if fresh {
            scan.bytes_hashed += file.size;
            cache.put(abs, StatKey::of(meta), file.hash.clone());
        }
        if file.size > options.warn_bytes {
            scan.large_files.push((file.path.clone(), file.size));
        }
        scan.bytes += file.size;
        scan.files.push(file);
    }
    Ok(scan)
}

fn hash_file(path: &Path) -> std::io::Result<String> {
    let mut hasher = blake3::Hasher::new();
    hasher.update_mmap(path)?;
    Ok(hasher.finalize().to_hex().to_string())
}

/// BLAKE3 over every (path, content hash, mode) of the layer: names its content.
pub fn digest(files: &[LayerFile]) -> String {
    let mut hasher = blake3::Hasher::new();
    for f in files {
        hasher.update(f.path.as_bytes());
        hasher.update(&[0, u8::from(f.executable)]);
        hasher.update(f.hash.as_bytes());
        hasher.update(b"\n");
    }
    hasher.finalize().to_hex()[..32].to_owned()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatKey {
    size: u64,
    mtime_ns: i128,
    inode: u64,
}

impl StatKey {
    fn of(meta: &std::fs::Metadata) -> Self {
        use std::os::unix::fs::MetadataExt;
        Self {
            size: meta.len(),
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
            inode: meta.ino(),
        }
    }
}

/// path -> (stat, hash), kept in a binary (postcard) file between runs.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct StatCache {
    entries: HashMap<PathBuf, (StatKey, String)>,
    #[serde(skip)]
    file: Option<PathBuf>,
    #[serde(skip)]
    dirty: bool,
}

impl StatCache {
    /// Loads the cache at `file` (a missing or unreadable cache starts empty).
    pub fn load(file: &Path) -> Self {
        let mut cache: StatCache =
            std::fs::read(file).ok().and_then(|bytes| postcard::from_bytes(&bytes).ok()).unwrap_or_default();
        cache.file = Some(file.to_owned());
        cache
    }

    fn get(&self, path: &Path, key: &StatKey) -> Option<String> {
        self.entries.get(path).filter(|(k, _)| k == key).map(|(_, h)| h.clone())
    }

    fn put(&mut self, path: &Path, key: StatKey, hash: String) {
        self.entries.insert(path.to_owned(), (key, hash));
        self.dirty = true;
    }

    /// Writes the cache back (write then rename) if anything changed.
    pub fn save(&mut self) -> std::io::Result<()> {
        let (Some(file), true) = (&self.file, self.dirty) else { return Ok(()) };
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let tmp = file.with_extension(format!("tmp-{}", std::process::id()));
        std::fs::write(&tmp, postcard::to_stdvec(self).map_err(std::io::Error::other)?)?;
        std::fs::rename(&tmp, file)?;
        self.dirty = false;
        Ok(())
    }
}
