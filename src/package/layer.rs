//! One layer of the environment (the workspace, or site-packages): the files
//! that ship, with content hashes. A persistent stat cache (path, size,
//! mtime, inode -> hash) means a warm scan of an unchanged folder reads no
//! file contents.

use super::PackageError;
use rayon::prelude::*;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Files that must never leave the machine, by name (workspace layers).
const SECRET_NAMES: [&str; 15] = [
    ".netrc",
    ".git-credentials",
    ".pgpass",
    ".pypirc",
    ".npmrc",
    ".boto",
    ".s3cfg",
    ".dockercfg",
    ".htpasswd",
    "credentials",
    "credentials.db",
    "access_tokens.db",
    "application_default_credentials.json",
    "service-account.json",
    ".vault-token",
];
const SECRET_SUFFIXES: [&str; 9] = [".pem", ".key", ".p12", ".pfx", ".jks", ".keystore", ".kdbx", ".ppk", ".gpg"];
/// SSH private keys (their `.pub` halves are not secret).
const SSH_KEYS: [&str; 4] = ["id_rsa", "id_dsa", "id_ecdsa", "id_ed25519"];
/// Folders whose contents never leave the machine (credentials, tokens, shell and tool state,
/// caches), matched at the end of a folder's path inside a workspace layer: a workspace that
/// is (or holds) a home folder keeps them home.
const SECRET_DIRS: [&str; 15] = [
    ".ssh",
    ".aws",
    ".kube",
    ".docker",
    ".gnupg",
    ".ray",
    ".azure",
    ".config/gcloud",
    ".config/gh",
    ".local/share/jupyter/runtime",
    ".jupyter/runtime",
    ".cache",
    ".password-store",
    ".terraform.d",
    ".minikube",
];
/// A PEM private key (RSA, EC, OpenSSH, PKCS#8, encrypted) or a PGP secret key, whatever the file's name.
const PRIVATE_KEY_MARKERS: [&[u8]; 2] = [b"PRIVATE KEY-----", b"PRIVATE KEY BLOCK-----"];
const HEAD_BYTES: usize = 80;

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
    /// BLAKE3 of the contents; None while deferred: a file never seen before is hashed
    /// as it is zipped (one read instead of two), see `scan_with`.
    pub hash: Option<blake3::Hash>,
    pub stat: StatKey,
}

#[derive(Debug, Clone, Default)]
pub struct LayerScan {
    pub files: Vec<LayerFile>,
    /// Secrets found and left out (paths inside the layer).
    pub secrets_left_out: Vec<String>,
    /// Files over the warning size.
    pub large_files: Vec<(String, u64)>,
    pub bytes: u64,
    /// Bytes read to hash, or to be hashed while zipped (0 on a warm scan of an unchanged folder).
    pub bytes_hashed: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerOptions {
    /// Honour .gitignore / .ignore files (the workspace; not site-packages).
    pub gitignore: bool,
    /// Leave out secrets, by name, by folder and by content (the workspace; installed
    /// distributions ship whole, as their RECORD lists them: certifi's cacert.pem is no secret).
    pub secrets: bool,
    pub warn_bytes: u64,
    /// Files or folders (relative, `/`-separated) to leave out, e.g. pinned distributions' files.
    pub exclude: Vec<String>,
    /// Refuse a layer with more files, or bytes, than this (a home folder or a data lake
    /// picked as the workspace by mistake).
    pub max_files: Option<usize>,
    pub max_bytes: Option<u64>,
}

impl Default for LayerOptions {
    fn default() -> Self {
        Self {
            gitignore: true,
            secrets: true,
            warn_bytes: 10 << 20,
            exclude: Vec::new(),
            max_files: None,
            max_bytes: None,
        }
    }
}

/// A file that never ships, by its name.
pub fn is_secret(name: &str) -> bool {
    let ssh_key = SSH_KEYS.iter().any(|k| name.starts_with(k)) && !name.ends_with(".pub");
    SECRET_NAMES.contains(&name)
        || ssh_key
        || name.starts_with(".env")
        || name.ends_with("history")
        || (name.starts_with("kernel-") && name.ends_with(".json"))
        || SECRET_SUFFIXES.iter().any(|s| name.ends_with(s))
}

/// A file that never ships, by its path inside the layer (`/`-separated): a secret name, or a
/// token file of a tool (`token`, `auth_token` under a hidden folder, e.g. `.huggingface/token`).
pub fn is_secret_path(path: &str) -> bool {
    let (folder, name) = path.rsplit_once('/').unwrap_or(("", path));
    is_secret(name)
        || (matches!(name, "token" | "auth_token" | "api_key" | "hosts.yml")
            && folder.split('/').any(|part| part.starts_with('.')))
}

/// A folder whose contents never ship, by its path inside the layer (`/`-separated).
pub fn is_secret_dir(path: &str) -> bool {
    let ends_with = |suffix: &str| path == suffix || path.ends_with(&format!("/{suffix}"));
    if SECRET_DIRS.iter().any(|d| ends_with(d)) {
        return true;
    }
    // IPython's per-profile security folder (kernel connection files: HMAC keys).
    let parts: Vec<&str> = path.rsplit('/').take(3).collect();
    matches!(parts.as_slice(), ["security", profile, ".ipython"] if profile.starts_with("profile_"))
}

/// Whether the file begins like a private key (read: its first bytes only).
fn holds_private_key(path: &Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; HEAD_BYTES];
    let Ok(mut file) = std::fs::File::open(path) else { return false };
    let mut filled = 0;
    while filled < head.len() {
        match file.read(&mut head[filled..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => filled += n,
        }
    }
    let head = &head[..filled];
    let start = head.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(head.len());
    head[start..].starts_with(b"-----BEGIN ")
        && PRIVATE_KEY_MARKERS.iter().any(|m| head.windows(m.len()).any(|w| w == *m))
}

pub(crate) fn skipped_name(name: &str) -> bool {
    SKIPPED_DIRS.contains(&name) || name.ends_with(".lance") || name.ends_with(".egg-info")
}

fn skipped_dir(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    skipped_name(name) || path.join("pyvenv.cfg").is_file() // a virtualenv
}

/// A walked file after its hash (or its first bytes) was looked at: it ships (with whether it
/// was read now), or it holds a private key.
enum Scanned {
    Ships(LayerFile, bool),
    Secret(String),
}

/// Called with each folder before a walk lists it (`watch` watches it there).
pub type BeforeListing = Arc<dyn Fn(&Path) + Send + Sync>;

/// A file found by a walk: path inside the layer, absolute path, lstat.
type Found = (String, PathBuf, std::fs::Metadata);

/// What a walk keeps: files that ship, secrets left out.
struct Walked {
    files: Vec<Found>,
    secrets: Vec<String>,
}

/// Which files of a folder listing ship (`None`: left out) or are secrets.
fn classify(name: &str, path: &str, is_excluded: &dyn Fn(&str) -> bool, secrets: bool) -> Option<bool> {
    if name.ends_with(".pyc") || is_excluded(path) {
        return None;
    }
    Some(secrets && is_secret_path(path))
}

/// Lists and hashes the files under `root` that ship, calling `before_listing` with each
/// folder before the walk lists it (`watch` watches it there). With `defer_new`, a file the stat cache has never
/// seen is left unhashed (`hash: None`): the zip that must be written for it
/// anyway hashes it on the same read (a cold pack read every byte twice). A
/// known file whose stat changed is still hashed here: a `touch` or a reinstall
/// of the same content then finds its zip by name instead of rewriting it.
pub fn scan_with(
    root: &Path,
    options: &LayerOptions,
    cache: &mut StatCache,
    before_listing: BeforeListing,
    defer_new: bool,
) -> Result<LayerScan, PackageError> {
    if !root.is_dir() {
        return Err(PackageError::Io {
            path: root.display().to_string(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "not a folder"),
        });
    }
    // A file is excluded when it or one of its folders is listed: a set lookup per path
    // component, so leaving out a whole distribution's RECORD (thousands of files) stays cheap.
    let excludes: std::collections::HashSet<&str> = options.exclude.iter().map(|p| p.trim_end_matches('/')).collect();
    let is_excluded = |path: &str| {
        !excludes.is_empty()
            && (excludes.contains(path) || path.match_indices('/').any(|(i, _)| excludes.contains(&path[..i])))
    };
    let walked = if options.gitignore {
        walk_ignoring(root, &is_excluded, before_listing, options.secrets)?
    } else {
        walk_plain(root, &is_excluded, &*before_listing, options.secrets)?
    };
    let mut candidates = walked.files;
    let bytes: u64 = candidates.iter().map(|(_, _, meta)| meta.len()).sum();
    let over_files = options.max_files.filter(|cap| candidates.len() > *cap);
    let over_bytes = options.max_bytes.filter(|cap| bytes > *cap);
    if over_files.is_some() || over_bytes.is_some() {
        return Err(PackageError::WorkspaceTooBig {
            root: root.display().to_string(),
            files: candidates.len(),
            bytes: super::pack::human(bytes),
            cap: match (over_files, over_bytes) {
                (Some(files), _) => format!("{files} files"),
                (None, Some(cap)) => super::pack::human(cap),
                (None, None) => unreachable!(),
            },
        });
    }
    let mut secrets_left_out = walked.secrets;
    candidates.par_sort_unstable_by(|a, b| a.0.cmp(&b.0));

    // Moved, not cloned: on a warm run of a 30k-file env the copies and their frees were
    // as costly as the cache lookups. A file the stat cache does not vouch for (new or
    // changed) is checked for a private key by its first bytes; a secret never enters the cache.
    let hashed: Vec<Result<Scanned, PackageError>> = candidates
        .into_par_iter()
        .map(|(path, abs, meta)| {
            let key = StatKey::of(&meta);
            let known = cache.get(&abs, &key);
            if known.is_none() && options.secrets && holds_private_key(&abs) {
                return Ok(Scanned::Secret(path));
            }
            let (hash, fresh) = match known {
                Some(h) => (Some(h), false),
                None if defer_new && !cache.knows(&abs) => (None, true),
                None => {
                    let h = hash_file(&abs).map_err(|source| PackageError::Io { path: path.clone(), source })?;
                    (Some(h), true)
                }
            };
            use std::os::unix::fs::PermissionsExt;
            let executable = meta.permissions().mode() & 0o111 != 0;
            Ok(Scanned::Ships(LayerFile { path, abs, size: meta.len(), executable, hash, stat: key }, fresh))
        })
        .collect();
    let mut scan = LayerScan::default();
    scan.files.reserve(hashed.len());
    for result in hashed {
        let (file, fresh) = match result? {
            Scanned::Ships(file, fresh) => (file, fresh),
            Scanned::Secret(secret) => {
                secrets_left_out.push(secret);
                continue;
            }
        };
        if fresh {
            scan.bytes_hashed += file.size;
            if let Some(hash) = file.hash {
                cache.put(&file.abs, file.stat, hash);
            }
        }
        if file.size > options.warn_bytes {
            scan.large_files.push((file.path.clone(), file.size));
        }
        scan.bytes += file.size;
        scan.files.push(file);
    }
    secrets_left_out.sort();
    scan.secrets_left_out = secrets_left_out;
    Ok(scan)
}

/// The workspace: .gitignore semantics (the `ignore` crate), walked on all cores, then
/// stat()ed on all cores.
fn walk_ignoring(
    root: &Path,
    is_excluded: &(dyn Fn(&str) -> bool + Sync),
    before_listing: BeforeListing,
    secrets: bool,
) -> Result<Walked, PackageError> {
    let secret_dirs: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
    let (left_out, base) = (secret_dirs.clone(), root.to_path_buf());
    // The parallel walker lists a folder before it shows it to the visitor, so the hook
    // runs where a folder is admitted: the filter, called while its parent is listed.
    before_listing(root);
    let walker = ignore::WalkBuilder::new(root)
        .hidden(false)
        .parents(false)
        .git_global(false)
        .require_git(false)
        .follow_links(false)
        .filter_entry(move |e| {
            let is_dir = e.file_type().is_some_and(|t| t.is_dir());
            if secrets && is_dir && e.depth() > 0 {
                let rel = relative(&base, e.path());
                if is_secret_dir(&rel) {
                    left_out.lock().unwrap_or_else(|p| p.into_inner()).push(format!("{rel}/"));
                    return false;
                }
            }
            let walked = !(is_dir && e.depth() > 0 && skipped_dir(e.path()));
            if walked && is_dir {
                before_listing(e.path());
            }
            walked
        })
        .build_parallel();
    let found: std::sync::Mutex<Vec<(String, PathBuf)>> = std::sync::Mutex::new(Vec::new());
    let secrets_found: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let failure: std::sync::Mutex<Option<PackageError>> = std::sync::Mutex::new(None);
    walker.run(|| {
        let (found, secrets_found, failure) = (&found, &secrets_found, &failure);
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
            if entry.file_type().is_some_and(|t| t.is_file()) && entry.path().starts_with(root) {
                let path = relative(root, entry.path());
                match classify(&entry.file_name().to_string_lossy(), &path, is_excluded, secrets) {
                    Some(true) => secrets_found.lock().unwrap_or_else(|p| p.into_inner()).push(path),
                    Some(false) => found.lock().unwrap_or_else(|p| p.into_inner()).push((path, entry.into_path())),
                    None => {}
                }
            }
            ignore::WalkState::Continue
        })
    });
    if let Some(err) = failure.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(err);
    }
    let files = found
        .into_inner()
        .unwrap_or_else(|p| p.into_inner())
        .into_par_iter()
        .map(|(path, abs)| match std::fs::symlink_metadata(&abs) {
            Ok(meta) => Ok((path, abs, meta)),
            Err(source) => Err(PackageError::Io { path, source }),
        })
        .collect::<Result<_, _>>()?;
    let mut secrets = secrets_found.into_inner().unwrap_or_else(|p| p.into_inner());
    secrets.extend(secret_dirs.lock().unwrap_or_else(|p| p.into_inner()).drain(..));
    Ok(Walked { files, secrets })
}

/// `path` inside `root`, `/`-separated.
fn relative(root: &Path, path: &Path) -> String {
    let inside = path.strip_prefix(root).unwrap_or(path);
    inside.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/")
}

/// site-packages: no ignore files to honour, so a plain walk over all cores where each
/// entry is stat()ed relative to its open folder (fstatat: no path lookup from the root),
/// and a virtualenv is recognised from its own listing. Half the time of the walk-then-stat
/// above on this project's .venv.
fn walk_plain(
    root: &Path,
    is_excluded: &(dyn Fn(&str) -> bool + Sync),
    before_listing: &(dyn Fn(&Path) + Sync),
    secrets: bool,
) -> Result<Walked, PackageError> {
    fn folder(
        dir: &Path,
        rel: &str,
        is_excluded: &(dyn Fn(&str) -> bool + Sync),
        before_listing: &(dyn Fn(&Path) + Sync),
        secrets: bool,
        out: &mut Walked,
    ) -> Result<(), PackageError> {
        before_listing(dir);
        let io = |source| PackageError::Io { path: dir.display().to_string(), source };
        let mut subdirs = Vec::new();
        let mut files = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(io)? {
            let entry = entry.map_err(io)?;
            let kind = entry.file_type().map_err(io)?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if !rel.is_empty() && name == "pyvenv.cfg" {
                return Ok(()); // a virtualenv inside: none of it ships
            }
            let path = if rel.is_empty() { name.to_string() } else { format!("{rel}/{name}") };
            if kind.is_dir() {
                if secrets && is_secret_dir(&path) {
                    out.secrets.push(format!("{path}/"));
                } else if !skipped_name(&name) && !is_excluded(&path) {
                    subdirs.push((entry.path(), path));
                }
            } else if kind.is_file() {
                match classify(&name, &path, is_excluded, secrets) {
                    Some(true) => out.secrets.push(path),
                    Some(false) => files.push((path, entry)),
                    None => {}
                }
            }
        }
        for (path, entry) in files {
            let meta = entry.metadata().map_err(|source| PackageError::Io { path: path.clone(), source })?;
            out.files.push((path, entry.path(), meta));
        }
        let below: Vec<Result<Walked, PackageError>> = subdirs
            .into_par_iter()
            .map(|(abs, path)| {
                let mut sub = Walked { files: Vec::new(), secrets: Vec::new() };
                folder(&abs, &path, is_excluded, before_listing, secrets, &mut sub).map(|()| sub)
            })
            .collect();
        for sub in below {
            let sub = sub?;
            out.files.extend(sub.files);
            out.secrets.extend(sub.secrets);
        }
        Ok(())
    }
    let mut out = Walked { files: Vec::new(), secrets: Vec::new() };
    folder(root, "", is_excluded, before_listing, secrets, &mut out)?;
    Ok(out)
}

fn hash_file(path: &Path) -> std::io::Result<blake3::Hash> {
    let mut hasher = blake3::Hasher::new();
    hasher.update_mmap(path)?;
    Ok(hasher.finalize())
}

/// BLAKE3 over every (path, content hash, mode) of the layer: names its content.
/// Hashed as one buffer: ~90k tiny `update` calls for a 30k-file layer cost 4 ms.
/// None while a file's hash is deferred.
pub fn digest(files: &[LayerFile]) -> Option<String> {
    digest_of(files.iter().map(|f| Some((f.path.as_str(), f.executable, f.hash?))))
}

/// `digest` of (path, executable, content hash) entries; None if any is None.
pub fn digest_of<'a>(entries: impl Iterator<Item = Option<(&'a str, bool, blake3::Hash)>>) -> Option<String> {
    let mut bytes = Vec::new();
    for entry in entries {
        let (path, executable, hash) = entry?;
        bytes.extend_from_slice(path.as_bytes());
        bytes.extend_from_slice(&[0, u8::from(executable)]);
        bytes.extend_from_slice(hash.as_bytes());
    }
    Some(blake3::hash(&bytes).to_hex()[..32].to_owned())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

/// path -> (stat, content hash), kept between runs in a file of fixed-size
/// records. The key is XXH3-128 of the absolute path (a cache key, not a content
/// hash: BLAKE3 per path was ~6 ms of a 30k-file warm scan), the map hashes that
/// key with FxHash, and the file is read without a decoder (postcard took 6 ms to
/// load 31k entries; these records ~1 ms): a warm scan is mostly the walk itself.
#[derive(Debug, Default)]
pub struct StatCache {
    entries: HashMap<u128, (StatKey, [u8; 32]), rustc_hash::FxBuildHasher>,
    file: Option<PathBuf>,
    dirty: bool,
}

/// Identifies the cache file format (native byte order: the cache never leaves the machine).
const CACHE_MAGIC: &[u8; 8] = b"gnvstat3";
/// key, size, mtime_ns, inode, content hash.
const CACHE_RECORD: usize = 16 + 8 + 16 + 8 + 32;

fn path_key(path: &Path) -> u128 {
    use std::os::unix::ffi::OsStrExt;
    xxhash_rust::xxh3::xxh3_128(path.as_os_str().as_bytes())
}

impl StatCache {
    /// Loads the cache at `file` (a missing, unreadable or older-format cache starts empty).
    pub fn load(file: &Path) -> Self {
        let mut cache = StatCache { file: Some(file.to_owned()), ..Default::default() };
        let Ok(bytes) = std::fs::read(file) else { return cache };
        let Some(records) = bytes.strip_prefix(CACHE_MAGIC).filter(|r| r.len() % CACHE_RECORD == 0) else {
            return cache;
        };
        cache.entries.reserve(records.len() / CACHE_RECORD);
        for r in records.chunks_exact(CACHE_RECORD) {
            let field = |from: usize, to: usize| &r[from..to];
            let u64_at = |from: usize| u64::from_ne_bytes(field(from, from + 8).try_into().unwrap_or_default());
            let u128_at = |from: usize| u128::from_ne_bytes(field(from, from + 16).try_into().unwrap_or_default());
            let key = StatKey { size: u64_at(16), mtime_ns: u128_at(24) as i128, inode: u64_at(40) };
            let hash: [u8; 32] = field(48, 80).try_into().unwrap_or_default();
            cache.entries.insert(u128_at(0), (key, hash));
        }
        cache
    }

    fn get(&self, path: &Path, key: &StatKey) -> Option<blake3::Hash> {
        self.entries.get(&path_key(path)).filter(|(k, _)| k == key).map(|(_, h)| blake3::Hash::from_bytes(*h))
    }

    /// Whether `path` was ever hashed (whatever its stat then).
    fn knows(&self, path: &Path) -> bool {
        self.entries.contains_key(&path_key(path))
    }

    pub fn put(&mut self, path: &Path, key: StatKey, hash: blake3::Hash) {
        self.entries.insert(path_key(path), (key, *hash.as_bytes()));
        self.dirty = true;
    }

    /// Writes the cache back (write then rename) if anything changed.
    pub fn save(&mut self) -> std::io::Result<()> {
        let (Some(file), true) = (&self.file, self.dirty) else { return Ok(()) };
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let mut bytes = Vec::with_capacity(CACHE_MAGIC.len() + self.entries.len() * CACHE_RECORD);
        bytes.extend_from_slice(CACHE_MAGIC);
        for (path, (key, hash)) in &self.entries {
            bytes.extend_from_slice(&path.to_ne_bytes());
            bytes.extend_from_slice(&key.size.to_ne_bytes());
            bytes.extend_from_slice(&(key.mtime_ns as u128).to_ne_bytes());
            bytes.extend_from_slice(&key.inode.to_ne_bytes());
            bytes.extend_from_slice(hash);
        }
        let tmp = file.with_extension(format!("tmp-{}", std::process::id()));
        std::fs::write(&tmp, bytes)?;
        std::fs::rename(&tmp, file)?;
        self.dirty = false;
        Ok(())
    }
}

/// The stat cache, loaded from its file on first use (a pack whose layers are all
/// unchanged and kept in memory never needs it).
pub struct LazyStatCache {
    file: PathBuf,
    cache: Option<StatCache>,
}

impl LazyStatCache {
    pub fn new(file: PathBuf) -> Self {
        Self { file, cache: None }
    }

    pub fn get(&mut self) -> &mut StatCache {
        self.cache.get_or_insert_with(|| StatCache::load(&self.file))
    }

    /// Writes the cache back if it was loaded and changed.
    pub fn save(&mut self) -> std::io::Result<()> {
        self.cache.as_mut().map_or(Ok(()), StatCache::save)
    }
}

#[cfg(test)]
mod cache_tests {
    use super::*;

    #[test]
    fn stat_cache_round_trips_and_ignores_other_formats() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("cache.bin");
        let mut cache = StatCache::load(&file);
        let key = StatKey { size: 3, mtime_ns: -1_500_000_000, inode: 42 };
        let hash = blake3::hash(b"abc");
        cache.put(Path::new("/a/b.py"), key, hash);
        cache.save().unwrap();
        let loaded = StatCache::load(&file);
        assert_eq!(loaded.get(Path::new("/a/b.py"), &key), Some(hash));
        assert_eq!(loaded.get(Path::new("/a/b.py"), &StatKey { size: 4, ..key }), None);
        assert_eq!(loaded.get(Path::new("/a/c.py"), &key), None);
        // A cache of another format (or cut short) starts empty instead of misreading.
        std::fs::write(&file, b"gnvstat2 and more").unwrap();
        assert!(StatCache::load(&file).entries.is_empty());
        let whole = std::fs::read(dir.path().join("cache.bin")).unwrap();
        assert!(!whole.is_empty());
    }
}

#[cfg(test)]
mod secret_tests {
    use super::*;

    #[test]
    fn secrets_by_name_and_path() {
        for secret in [
            ".netrc",
            ".npmrc",
            ".bash_history",
            ".python_history",
            ".env",
            ".env.local",
            "id_rsa",
            "id_ed25519",
            "tls/server.key",
            "a/b/cert.p12",
            "store.jks",
            "runtime/kernel-12ab.json",
            ".huggingface/token",
            ".config/tool/auth_token",
        ] {
            assert!(is_secret_path(secret), "{secret}");
        }
        for shipped in ["id_rsa.pub", "id_utils.py", "src/token", "tokenizer.json", "environment.yml", "keys.py"] {
            assert!(!is_secret_path(shipped), "{shipped}");
        }
        for dir in
            [".ssh", "home/.aws", ".config/gcloud", ".local/share/jupyter/runtime", ".ipython/profile_x/security"]
        {
            assert!(is_secret_dir(dir), "{dir}");
        }
        for dir in [".config", ".local/share", ".ipython/profile_x", "ssh", "security"] {
            assert!(!is_secret_dir(dir), "{dir}");
        }
    }

    #[test]
    fn a_private_key_is_found_by_its_first_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            path
        };
        assert!(holds_private_key(&write("a.txt", "-----BEGIN RSA PRIVATE KEY-----\nMIIE\n")));
        assert!(holds_private_key(&write("b", "\n-----BEGIN OPENSSH PRIVATE KEY-----\nb3Bl\n")));
        assert!(holds_private_key(&write("c", "-----BEGIN PGP PRIVATE KEY BLOCK-----\n")));
        assert!(!holds_private_key(&write("d", "-----BEGIN CERTIFICATE-----\nMIIB\n")));
        assert!(!holds_private_key(&write("e", "text mentioning -----BEGIN RSA PRIVATE KEY-----")));
        assert!(!holds_private_key(&write("f", "")));
    }
}
