//! Deterministic zip shards of a layer (sorted entries, fixed timestamps, so
//! the same content gives the same bytes and the same name; written then
//! renamed, so a crash never leaves a partial zip under its final name), and
//! extraction on a worker (once per node, under a file lock, refusing entries
//! that would land outside the target). Uploads and fetches: `store`.

use super::PackageError;
use super::layer::{LayerFile, digest, digest_of};
use rayon::prelude::*;
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use zip::write::SimpleFileOptions;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shard {
    /// `<layer>-<digest>.zip`
    pub name: String,
    pub digest: String,
    pub files: usize,
    pub bytes: u64,
    pub path: PathBuf,
    /// False when a zip of this content already existed.
    pub written: bool,
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> PackageError + '_ {
    move |source| PackageError::Io { path: path.display().to_string(), source }
}

/// A deferred content hash computed while zipping: (index into the files, hash).
pub type NewHash = (usize, blake3::Hash);

/// Splits `files` (sorted) into shards of about `shard_bytes` and writes the
/// zips that do not exist yet into `out_dir`, compressing shards in parallel.
/// Files whose hash is deferred (None) are hashed as they are zipped; their
/// hashes come back with the shards, as (index into `files`, hash).
pub fn build(
    layer: &str,
    files: &[LayerFile],
    shard_bytes: u64,
    out_dir: &Path,
) -> Result<(Vec<Shard>, Vec<NewHash>), PackageError> {
    std::fs::create_dir_all(out_dir).map_err(io(out_dir))?;
    let mut groups: Vec<std::ops::Range<usize>> = Vec::new();
    let (mut start, mut size) = (0usize, 0u64);
    // Cut only between top-level entries: a package never spans two shards, so each shard
    // extracts to its own folder on the workers and every folder is a complete sys.path entry.
    fn top(f: &LayerFile) -> &str {
        f.path.split('/').next().unwrap_or_default()
    }
    for (i, f) in files.iter().enumerate() {
        if size > 0 && size + f.size > shard_bytes && top(f) != top(&files[i - 1]) {
            groups.push(start..i);
            (start, size) = (i, 0);
        }
        size += f.size;
    }
    if start < files.len() || files.is_empty() {
        groups.push(start..files.len());
    }
    let built: Vec<(Shard, Vec<NewHash>)> = groups
        .par_iter()
        .map(|range| {
            let group = &files[range.clone()];
            let (digest, written, hashed) = match digest(group) {
                // Every hash known: the zip is named before it is written, and skipped if it exists.
                Some(digest) => {
                    let path = out_dir.join(format!("{layer}-{digest}.zip"));
                    let written = !path.exists();
                    if written {
                        let tmp = path.with_extension(format!("zip.tmp-{}", std::process::id()));
                        write_zip(group, &tmp)?;
                        publish(&tmp, &path)?;
                    }
                    (digest, written, Vec::new())
                }
                // New files: zipped and hashed in one read, named after.
                None => {
                    let tmp = out_dir.join(format!("{layer}-new-{}.zip.tmp-{}", range.start, std::process::id()));
                    let hashes = write_zip(group, &tmp)?;
                    let digest =
                        digest_of(group.iter().zip(&hashes).map(|(f, h)| Some((f.path.as_str(), f.executable, *h))))
                            .unwrap_or_default();
                    let path = out_dir.join(format!("{layer}-{digest}.zip"));
                    let written = !path.exists();
                    if written {
                        publish(&tmp, &path)?;
                    } else {
                        std::fs::remove_file(&tmp).map_err(io(&tmp))?;
                    }
                    let new = group
                        .iter()
                        .zip(hashes)
                        .enumerate()
                        .filter(|(_, (f, _))| f.hash.is_none())
                        .map(|(i, (_, h))| (range.start + i, h))
                        .collect();
                    (digest, written, new)
                }
            };
            let name = format!("{layer}-{digest}.zip");
            let path = out_dir.join(&name);
            let bytes = std::fs::metadata(&path).map_err(io(&path))?.len();
            Ok((Shard { name, digest, files: group.len(), bytes, path, written }, hashed))
        })
        .collect::<Result<_, PackageError>>()?;
    let mut hashes = Vec::new();
    let shards = built
        .into_iter()
        .map(|(shard, new)| {
            hashes.extend(new);
            shard
        })
        .collect();
    Ok((shards, hashes))
}

/// Renames a finished zip to its final name (a file under a final name is always whole).
fn publish(tmp: &Path, path: &Path) -> Result<(), PackageError> {
    std::fs::rename(tmp, path).map_err(io(path))
}

fn already_compressed(path: &str) -> bool {
    const SUFFIXES: [&str; 14] = [
        ".zip", ".whl", ".jar", ".gz", ".tgz", ".bz2", ".xz", ".zst", ".npz", ".png", ".jpg", ".jpeg", ".webp", ".mp4",
    ];
    let lower = path.to_ascii_lowercase();
    SUFFIXES.iter().any(|s| lower.ends_with(s))
}

/// Writes `files` as a zip at `tmp` (synced); returns every file's content hash:
/// the known one, or the one computed from the bytes zipped (a deferred hash).
fn write_zip(files: &[LayerFile], tmp: &Path) -> Result<Vec<blake3::Hash>, PackageError> {
    let out = File::create(tmp).map_err(io(tmp))?;
    let mut zip = zip::ZipWriter::new(BufWriter::new(out));
    let mut hashes = Vec::with_capacity(files.len());
    let mut buffer = vec![0u8; 256 << 10];
    for f in files {
        // Already-compressed files are stored; the rest deflated at level 1: measured on this
        // project's .venv, level 1 zips within a few % of level 3's size in much less time.
        let method =
            if already_compressed(&f.path) { zip::CompressionMethod::Stored } else { zip::CompressionMethod::Deflated };
        let options = SimpleFileOptions::default()
            .compression_method(method)
            .compression_level(if method == zip::CompressionMethod::Stored { None } else { Some(1) })
            .last_modified_time(zip::DateTime::default())
            .unix_permissions(if f.executable { 0o755 } else { 0o644 })
            .large_file(f.size >= u64::from(u32::MAX));
        zip.start_file(f.path.as_str(), options)
            .map_err(|e| PackageError::Io { path: f.path.clone(), source: e.into() })?;
        let mut input = File::open(&f.abs).map_err(io(&f.abs))?;
        let mut hasher = f.hash.is_none().then(blake3::Hasher::new);
        loop {
            let n = input.read(&mut buffer).map_err(io(&f.abs))?;
            if n == 0 {
                break;
            }
            if let Some(hasher) = &mut hasher {
                hasher.update(&buffer[..n]);
            }
            zip.write_all(&buffer[..n]).map_err(io(&f.abs))?;
        }
        hashes.push(hasher.map_or_else(|| f.hash.unwrap_or_else(|| blake3::hash(b"")), |h| h.finalize()));
    }
    let mut inner = zip.finish().map_err(|e| PackageError::Io { path: tmp.display().to_string(), source: e.into() })?;
    inner.flush().map_err(io(tmp))?;
    inner.into_inner().map_err(|e| io(tmp)(e.into_error()))?.sync_all().map_err(io(tmp))?;
    Ok(hashes)
}

/// Extracts the zip at `uri` (a path, or an object store URL: fetched first)
/// once into `cache_dir/<zip stem>` and returns that folder. Concurrent callers
/// on one node wait on a lock; an entry with `..` or an absolute path fails the
/// whole extraction.
pub fn extract(uri: &str, cache_dir: &Path) -> Result<PathBuf, PackageError> {
    let name = uri.rsplit('/').next().unwrap_or(uri);
    let stem = name.strip_suffix(".zip").unwrap_or(name);
    let target = cache_dir.join(stem);
    let done = cache_dir.join(format!("{stem}.complete"));
    if done.exists() {
        return Ok(target);
    }
    std::fs::create_dir_all(cache_dir).map_err(io(cache_dir))?;
    let lock_path = cache_dir.join(format!("{stem}.lock"));
    let lock = File::create(&lock_path).map_err(io(&lock_path))?;
    lock.lock().map_err(io(&lock_path))?;
    if done.exists() {
        return Ok(target);
    }
    let downloaded = cache_dir.join(format!("{stem}.zip"));
    let zip_path = super::store::fetch(uri, &downloaded)?;
    let result = unpack(&zip_path, cache_dir, stem);
    if zip_path == downloaded {
        let _ = std::fs::remove_file(&downloaded);
    }
    result?;
    File::create(&done).map_err(io(&done))?;
    Ok(target)
}

fn unpack(zip_path: &Path, cache_dir: &Path, stem: &str) -> Result<(), PackageError> {
    let target = cache_dir.join(stem);
    let tmp = cache_dir.join(format!("{stem}.tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    // Created up front: an empty layer (a workspace with nothing to ship) is an empty folder.
    std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
    let file = File::open(zip_path).map_err(io(zip_path))?;
    let mut archive = zip::ZipArchive::new(file)
        .map_err(|e| PackageError::Io { path: zip_path.display().to_string(), source: e.into() })?;
    for i in 0..archive.len() {
        let mut entry = archive
            .by_index(i)
            .map_err(|e| PackageError::Io { path: zip_path.display().to_string(), source: e.into() })?;
        let Some(relative) = entry.enclosed_name() else {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(PackageError::UnsafeEntry {
                zip: zip_path.display().to_string(),
                entry: entry.name().map(|n| n.into_owned()).unwrap_or_default(),
            });
        };
        let out = tmp.join(relative);
        if entry.is_dir() {
            std::fs::create_dir_all(&out).map_err(io(&out))?;
            continue;
        }
        if let Some(parent) = out.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        let mut writer = File::create(&out).map_err(io(&out))?;
        std::io::copy(&mut entry, &mut writer).map_err(io(&out))?;
        if let Some(mode) = entry.unix_mode() {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&out, std::fs::Permissions::from_mode(mode & 0o777)).map_err(io(&out))?;
        }
    }
    let _ = std::fs::remove_dir_all(&target);
    std::fs::rename(&tmp, &target).map_err(io(&target))
}
