//! Packing the environment: verdicts (when a target is known), one layer per
//! root, content-addressed shards, upload, and the manifest the workers use.

use super::layer::{self, LayerOptions, LazyStatCache};
use super::store::Location;
use super::{DistVerdict, Distribution, PackageError, Verdict, check, scan_site_packages, shards};
use crate::platform::TargetPlatform;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, Clone, Deserialize)]
pub struct PackRequest {
    /// (layer name, folder): the workspace and local source folders; .gitignore applies.
    pub workspace: Vec<(String, PathBuf)>,
    /// site-packages folders (empty with skip_site_packages).
    pub site_packages: Vec<PathBuf>,
    pub target: Option<String>,
    /// Distributions the cluster provides itself (geneva, Ray and what they require): neither
    /// shipped nor pinned. Names as in METADATA; compared normalised (PEP 503).
    #[serde(default)]
    pub provided: Vec<String>,
    /// Local cache: stat cache and built shards.
    pub cache_dir: PathBuf,
    /// Where workers fetch shards from: a local or shared folder, file://, s3://, gs:// or az://.
    pub upload_dir: Option<String>,
    pub shard_bytes: u64,
    pub max_total_bytes: Option<u64>,
    /// False for a preview: scan and hash, but build no zips and upload nothing.
    #[serde(default = "yes")]
    pub build: bool,
    /// A workspace layer with more files or bytes is refused (a home folder or a data folder
    /// picked by mistake).
    #[serde(default = "default_max_files")]
    pub workspace_max_files: usize,
    #[serde(default = "default_max_bytes")]
    pub workspace_max_bytes: u64,
}

pub const DEFAULT_WORKSPACE_MAX_FILES: usize = 20_000;
pub const DEFAULT_WORKSPACE_MAX_BYTES: u64 = 1 << 30;

fn default_max_files() -> usize {
    DEFAULT_WORKSPACE_MAX_FILES
}

fn default_max_bytes() -> u64 {
    DEFAULT_WORKSPACE_MAX_BYTES
}

/// Refuses a workspace that is `/` or a home folder (this user's, or any under /home, /Users or /root).
fn check_workspace(root: &Path) -> Result<(), PackageError> {
    let root = root.canonicalize().unwrap_or_else(|_| root.to_path_buf());
    let home = std::env::var_os("HOME").map(PathBuf::from).and_then(|h| h.canonicalize().ok());
    let what = if root == Path::new("/") {
        Some("the root of the file system")
    } else if home.as_deref() == Some(root.as_path())
        || root == Path::new("/root")
        || root.parent().is_some_and(|p| p == Path::new("/home") || p == Path::new("/Users"))
    {
        Some("a home folder")
    } else {
        None
    };
    match what {
        Some(what) => Err(PackageError::WorkspaceIsHome { root: root.display().to_string(), what }),
        None => Ok(()),
    }
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Serialize)]
pub struct ShardInfo {
    pub name: String,
    pub digest: String,
    pub files: usize,
    pub bytes: u64,
    pub uri: String,
    pub written: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct LayerInfo {
    pub name: String,
    pub root: String,
    pub digest: String,
    pub files: usize,
    pub bytes: u64,
    pub shards: Vec<ShardInfo>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Manifest {
    /// Names the whole environment: the layer digests and the pins.
    pub digest: String,
    pub target: Option<String>,
    pub layers: Vec<LayerInfo>,
    pub pins: Vec<String>,
    pub secrets_left_out: Vec<String>,
    pub large_files: Vec<(String, u64)>,
    pub bytes_hashed: u64,
    pub bytes_uploaded: u64,
}

pub fn pack(req: &PackRequest) -> Result<Manifest, PackageError> {
    let target = req.target.as_deref().map(TargetPlatform::parse).transpose()?;
    let upload = req.upload_dir.as_deref().map(Location::parse).transpose()?;
    let mut pins = Vec::new();
    let mut site_excludes: Vec<Vec<String>> = vec![Vec::new(); req.site_packages.len()];
    let provided: Vec<String> = req.provided.iter().map(|n| normalise(n)).collect();
    if target.is_some() || !provided.is_empty() {
        let mut blocked = Vec::new();
        for (i, dir) in req.site_packages.iter().enumerate() {
            // Verdicts read binary headers: one distribution per core.
            use rayon::prelude::*;
            let judged: Vec<(Distribution, Option<DistVerdict>)> = scan_site_packages(dir)?
                .into_par_iter()
                .map(|dist| {
                    let verdict = if provided.contains(&normalise(&dist.name)) {
                        None
                    } else {
                        target.as_ref().map(|target| check(&dist, target))
                    };
                    (dist, verdict)
                })
                .collect();
            for (dist, verdict) in judged {
                let files = || dist.files.iter().map(|f| f.to_string_lossy().into_owned());
                if provided.contains(&normalise(&dist.name)) {
                    site_excludes[i].extend(files());
                    continue;
                }
                let Some(verdict) = verdict else { continue };
                match verdict.verdict {
                    Verdict::Ship => {}
                    Verdict::Pin => {
                        pins.push(format!("{}=={}", dist.name, dist.version));
                        site_excludes[i].extend(files());
                    }
                    Verdict::Block => blocked.push(format!("{} {}: {}", verdict.name, verdict.version, verdict.reason)),
                }
            }
        }
        if !blocked.is_empty() {
            return Err(PackageError::Blocked(blocked.join("\n  ")));
        }
    }

    let mut cache = LazyStatCache::new(req.cache_dir.join("statcache-v3.bin"));
    // geneva's own output folders never ship, wherever they are.
    let own: Vec<&Path> =
        [Some(req.cache_dir.as_path()), upload.as_ref().and_then(Location::local)].into_iter().flatten().collect();
    let mut roots: Vec<(String, PathBuf, LayerOptions)> = req
        .workspace
        .iter()
        .map(|(name, root)| {
            let exclude = own
                .iter()
                .filter_map(|dir| dir.strip_prefix(root).ok())
                .map(|rel| rel.to_string_lossy().into_owned())
                .filter(|rel| !rel.is_empty())
                .collect();
            check_workspace(root)?;
            let options = LayerOptions {
                exclude,
                max_files: Some(req.workspace_max_files),
                max_bytes: Some(req.workspace_max_bytes),
                ..Default::default()
            };
            Ok((name.clone(), root.clone(), options))
        })
        .collect::<Result<_, PackageError>>()?;
    for (i, dir) in req.site_packages.iter().enumerate() {
        let name = if i == 0 { "site-packages".to_owned() } else { format!("site-packages-{}", i + 1) };
        let options = LayerOptions {
            gitignore: false,
            secrets: false,
            exclude: std::mem::take(&mut site_excludes[i]),
            ..Default::default()
        };
        roots.push((name, dir.clone(), options));
    }

    let mut scans = Vec::new();
    let (mut secrets, mut large, mut hashed) = (Vec::new(), Vec::new(), 0u64);
    for (name, root, options) in &roots {
        // Unchanged since an earlier pack of this process: its scan, nothing walked or read.
        // When zips are built, files never seen before are hashed as they are zipped.
        let (scan, fresh) = super::watch::scan(root, options, &mut cache, req.build)?;
        secrets.extend(scan.secrets_left_out.iter().map(|p| format!("{name}/{p}")));
        large.extend(scan.large_files.iter().map(|(p, s)| (format!("{name}/{p}"), *s)));
        if fresh {
            hashed += scan.bytes_hashed;
        }
        scans.push((name.clone(), root, options, scan, fresh));
    }

    let total: u64 = scans.iter().map(|(_, _, _, s, _)| s.bytes).sum();
    if let Some(cap) = req.max_total_bytes
        && total > cap
    {
        let mut all: Vec<(String, u64)> = scans
            .iter()
            .flat_map(|(name, _, _, s, _)| s.files.iter().map(move |f| (format!("{name}/{}", f.path), f.size)))
            .collect();
        all.sort_by_key(|(_, size)| std::cmp::Reverse(*size));
        let biggest = all.iter().take(5).map(|(p, s)| format!("{p} ({})", human(*s))).collect::<Vec<_>>().join(", ");
        return Err(PackageError::TooBig { total: human(total), cap: human(cap), biggest });
    }

    let built_dir = req.cache_dir.join("layers");
    let mut layers = Vec::new();
    let mut uploaded = 0;
    let mut env = blake3::Hasher::new();
    for (name, root, options, scan, fresh) in &mut scans {
        let built = if req.build {
            let (built, new_hashes) = shards::build(name, &scan.files, req.shard_bytes, &built_dir)?;
            if !new_hashes.is_empty() {
                // Only a new scan has deferred hashes, and it is not kept yet: no copy is made.
                let files = &mut Arc::make_mut(scan).files;
                let cache = cache.get();
                for (i, hash) in new_hashes {
                    files[i].hash = Some(hash);
                    cache.put(&files[i].abs, files[i].stat, hash);
                }
            }
            built
        } else {
            Vec::new()
        };
        if *fresh {
            super::watch::keep(root, options, scan.clone());
        }
        if let Some(dest) = &upload {
            uploaded += super::store::upload(&built, dest)?;
        }
        let base = upload.clone().unwrap_or_else(|| Location::Local(built_dir.clone()));
        let digest = layer::digest(&scan.files).ok_or_else(|| PackageError::Io {
            path: root.display().to_string(),
            source: std::io::Error::other("a file's content hash is missing after the build"),
        })?;
        env.update(format!("{name}:{digest}\n").as_bytes());
        layers.push(LayerInfo {
            name: name.clone(),
            root: root.display().to_string(),
            digest,
            files: scan.files.len(),
            bytes: scan.bytes,
            shards: built
                .iter()
                .map(|s| ShardInfo {
                    name: s.name.clone(),
                    digest: s.digest.clone(),
                    files: s.files,
                    bytes: s.bytes,
                    uri: base.join(&s.name),
                    written: s.written,
                })
                .collect(),
        });
    }
    cache.save().map_err(|source| PackageError::Io { path: req.cache_dir.display().to_string(), source })?;
    for pin in &pins {
        env.update(format!("pin:{pin}\n").as_bytes());
    }
    Ok(Manifest {
        digest: env.finalize().to_hex()[..32].to_owned(),
        target: target.map(|t| t.name),
        layers,
        pins,
        secrets_left_out: secrets,
        large_files: large,
        bytes_hashed: hashed,
        bytes_uploaded: uploaded,
    })
}

/// PEP 503: `Typing_Extensions` and `typing.extensions` are `typing-extensions`.
fn normalise(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        let c = if matches!(c, '_' | '.') { '-' } else { c.to_ascii_lowercase() };
        if !(c == '-' && out.ends_with('-')) {
            out.push(c);
        }
    }
    out
}

/// `1.5 MiB`, `200.0 KiB`, `12 B`.
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}
