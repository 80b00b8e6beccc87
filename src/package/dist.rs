//! Installed distributions in a site-packages folder, from their dist-info
//! (METADATA, WHEEL, RECORD, direct_url.json).

use super::PackageError;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Distribution {
    pub name: String,
    pub version: String,
    /// WHEEL `Tag:` lines (`cp311-cp311-manylinux_2_17_x86_64`).
    pub wheel_tags: Vec<String>,
    pub root_is_purelib: bool,
    /// Files listed in RECORD, relative to the site-packages folder.
    pub files: Vec<PathBuf>,
    /// From direct_url.json: where a non-index install came from.
    pub direct_url: Option<DirectUrl>,
    pub site_packages: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectUrl {
    pub url: String,
    pub editable: bool,
    /// A local folder or VCS checkout, as opposed to an archive downloaded from a URL.
    pub local_build: bool,
}

impl Distribution {
    /// Files that may be native code (extension modules, shared libraries).
    pub fn native_candidates(&self) -> impl Iterator<Item = &PathBuf> {
        self.files.iter().filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            name.ends_with(".so") || name.contains(".so.") || name.ends_with(".pyd") || name.ends_with(".dylib")
        })
    }
}

/// Every distribution whose `*.dist-info` is directly in `dir`, sorted by name.
pub fn scan_site_packages(dir: &Path) -> Result<Vec<Distribution>, PackageError> {
    let io = |source| PackageError::Io { path: dir.display().to_string(), source };
    if !dir.is_dir() {
        return Err(PackageError::NotSitePackages(dir.display().to_string()));
    }
    let mut infos = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        if path.extension().is_some_and(|e| e == "dist-info") && path.is_dir() {
            infos.push(path);
        }
    }
    // Hundreds of small METADATA / RECORD files: read on all cores.
    use rayon::prelude::*;
    let read: Vec<Option<Distribution>> =
        infos.par_iter().map(|info| read_dist_info(dir, info)).collect::<Result<_, _>>()?;
    let mut out: Vec<Distribution> = read.into_iter().flatten().collect();
    out.sort_by_key(|d| d.name.to_lowercase());
    Ok(out)
}

fn read_dist_info(site: &Path, info: &Path) -> Result<Option<Distribution>, PackageError> {
    let read = |name: &str| std::fs::read_to_string(info.join(name)).ok();
    let Some(metadata) = read("METADATA") else { return Ok(None) };
    let header = |key: &str| {
        metadata
            .lines()
            .take_while(|l| !l.is_empty())
            .find_map(|l| l.strip_prefix(key).and_then(|v| v.strip_prefix(':')).map(|v| v.trim().to_owned()))
    };
    let (Some(name), Some(version)) = (header("Name"), header("Version")) else { return Ok(None) };
    let wheel = read("WHEEL").unwrap_or_default();
    let wheel_tags = wheel.lines().filter_map(|l| l.strip_prefix("Tag:")).map(|t| t.trim().to_owned()).collect();
    let root_is_purelib = wheel.lines().any(|l| l.trim().eq_ignore_ascii_case("Root-Is-Purelib: true"));
    let files = read("RECORD")
        .unwrap_or_default()
        .lines()
        .filter_map(|line| {
            // path,hash,size: the path may itself hold commas (quoted), the last two fields never do.
            let mut fields = line.rsplitn(3, ',');
            let (_size, _hash, path) = (fields.next()?, fields.next()?, fields.next()?);
            let path = path.trim_matches('"');
            (!path.is_empty()).then(|| PathBuf::from(path))
        })
        .collect();
    let direct_url = read("direct_url.json").and_then(|text| parse_direct_url(&text));
    Ok(Some(Distribution {
        name,
        version,
        wheel_tags,
        root_is_purelib,
        files,
        direct_url,
        site_packages: site.to_owned(),
    }))
}

fn parse_direct_url(text: &str) -> Option<DirectUrl> {
    let value: serde_json::Value = serde_json::from_str(text).ok()?;
    let url = value.get("url")?.as_str()?.to_owned();
    let editable = value.pointer("/dir_info/editable").and_then(|v| v.as_bool()).unwrap_or(false);
    let local_build = value.get("dir_info").is_some() || value.get("vcs_info").is_some() || url.starts_with("file:");
    Some(DirectUrl { url, editable, local_build })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake(site: &Path, name: &str, files: &[&str], direct_url: Option<&str>) {
        let info = site.join(format!("{name}-1.0.dist-info"));
        std::fs::create_dir_all(&info).unwrap();
        std::fs::write(
            info.join("METADATA"),
            format!("Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n\nName: not-this\n"),
        )
        .unwrap();
        std::fs::write(
            info.join("WHEEL"),
            "Wheel-Version: 1.0\nRoot-Is-Purelib: false\nTag: cp311-cp311-linux_x86_64\n",
        )
        .unwrap();
        let record: String = files.iter().map(|f| format!("{f},sha256=x,1\n")).collect();
        std::fs::write(info.join("RECORD"), record).unwrap();
        if let Some(url) = direct_url {
            std::fs::write(info.join("direct_url.json"), url).unwrap();
        }
    }

    #[test]
    fn reads_metadata_wheel_record_and_direct_url() {
        let dir = tempfile::tempdir().unwrap();
        fake(
            dir.path(),
            "zeta",
            &["zeta/__init__.py", "zeta/_fast.cpython-311-x86_64-linux-gnu.so", "\"odd,name.py\""],
            None,
        );
        fake(
            dir.path(),
            "Alpha",
            &["alpha.py"],
            Some(r#"{"url": "file:///src/alpha", "dir_info": {"editable": true}}"#),
        );
        let dists = scan_site_packages(dir.path()).unwrap();
        assert_eq!(dists.iter().map(|d| d.name.as_str()).collect::<Vec<_>>(), ["Alpha", "zeta"]);
        let zeta = &dists[1];
        assert_eq!(zeta.version, "1.0");
        assert_eq!(zeta.wheel_tags, ["cp311-cp311-linux_x86_64"]);
        assert!(!zeta.root_is_purelib);
        assert_eq!(zeta.native_candidates().count(), 1);
        assert!(zeta.files.contains(&PathBuf::from("odd,name.py")));
        let alpha = dists[0].direct_url.as_ref().unwrap();
        assert!(alpha.editable && alpha.local_build);
    }

    #[test]
    fn not_a_folder_is_an_error() {
        assert!(matches!(scan_site_packages(Path::new("/no/such/dir")), Err(PackageError::NotSitePackages(_))));
    }
}
