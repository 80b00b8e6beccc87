//! Ship, pin or block: what happens to each installed distribution when the
//! environment goes to a cluster of another platform.

use super::dist::Distribution;
use crate::platform::{TargetPlatform, incompatibility, inspect_binary};
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// The files run there as they are.
    Ship,
    /// The cluster installs `name==version` from the package index.
    Pin,
    /// Neither: e.g. a locally built native package with no published version.
    Block,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DistVerdict {
    pub name: String,
    pub version: String,
    pub verdict: Verdict,
    /// One line: why.
    pub reason: String,
}

/// The verdict for one distribution against `target`.
pub fn check(dist: &Distribution, target: &TargetPlatform) -> DistVerdict {
    let (verdict, reason) = judge(dist, target);
    DistVerdict { name: dist.name.clone(), version: dist.version.clone(), verdict, reason }
}

fn judge(dist: &Distribution, target: &TargetPlatform) -> (Verdict, String) {
    let mut native = 0usize;
    let mut problem: Option<String> = None;
    for relative in dist.native_candidates() {
        // Mapped, not read: the headers and version sections are a few pages of files that
        // run to hundreds of MB (reading them whole made a verdict table of this .venv ~0.3 s).
        let Ok(file) = std::fs::File::open(dist.site_packages.join(relative)) else { continue };
        // SAFETY: the map is only read, and dropped before this iteration ends; a file truncated
        // meanwhile by another process could fault, as with any mmap reader (blake3's included).
        let Ok(bytes) = (unsafe { memmap2::Mmap::map(&file) }) else { continue };
        let Some(binary) = inspect_binary(&bytes) else { continue };
        native += 1;
        if problem.is_none()
            && let Some(why) = incompatibility(&binary, &target.platform)
        {
            let file = relative.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
            problem = Some(format!("{file}: {why}"));
        }
    }
    if native == 0 {
        return (Verdict::Ship, "pure Python".into());
    }
    if problem.is_none() {
        // The binaries load there; the Python ABI must match too (cp311 vs cp312).
        let target_tags = target.tags();
        let abi_ok = dist.wheel_tags.is_empty() || dist.wheel_tags.iter().any(|t| target_tags.contains(t));
        if abi_ok {
            return (Verdict::Ship, format!("native ({native} files), built for this target"));
        }
        problem =
            Some(format!("wheel tags {} do not fit Python {}", dist.wheel_tags.join(", "), target.python.version));
    }
    let why = problem.unwrap_or_default();
    match &dist.direct_url {
        Some(direct) if direct.local_build => (
            Verdict::Block,
            format!("{why}; built locally from {} and not published, so the cluster cannot install it", direct.url),
        ),
        _ => (Verdict::Pin, format!("{why}; the cluster installs {}=={}", dist.name, dist.version)),
    }
}
