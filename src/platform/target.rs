//! A cluster's platform, named the way wheels name platforms:
//! `manylinux_2_28_x86_64-cp311`, `musllinux_1_2_aarch64-cp312`,
//! `macosx_14_0_arm64-cp312`, `win_amd64-cp311`, `linux_x86_64-cp311`.

use super::machine::{Libc, LibcFamily, Os, PlatformFacts};
use super::python::PythonFacts;
use super::tags::supported_tags;
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetPlatform {
    pub name: String,
    pub platform: PlatformFacts,
    pub python: PythonFacts,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "cannot read target {text:?}: {problem}; write it as PLATFORM-PYTHON, e.g. manylinux_2_28_x86_64-cp311, musllinux_1_2_aarch64-cp312 or macosx_14_0_arm64-cp312"
)]
pub struct TargetError {
    pub text: String,
    pub problem: String,
}

impl fmt::Display for TargetPlatform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

impl TargetPlatform {
    pub fn parse(text: &str) -> Result<Self, TargetError> {
        let err = |problem: &str| TargetError { text: text.into(), problem: problem.into() };
        let (platform_tag, python_tag) = text.trim().rsplit_once('-').ok_or_else(|| err("no -cpXY part"))?;
        let python =
            parse_python(python_tag).ok_or_else(|| err(&format!("{python_tag:?} is not a CPython tag like cp311")))?;
        let platform =
            parse_platform(platform_tag).ok_or_else(|| err(&format!("unknown platform tag {platform_tag:?}")))?;
        Ok(Self { name: text.trim().into(), platform, python })
    }

    /// Built from facts probed on a cluster.
    pub fn from_facts(platform: PlatformFacts, python: PythonFacts) -> Self {
        let name =
            format!("{} {} ({}), Python {}", platform.os, platform.arch, platform.libc.describe(), python.version);
        Self { name, platform, python }
    }

    /// The wheel-style name of a platform (the inverse of [`TargetPlatform::parse`]), e.g. a
    /// cluster's probed facts -> `manylinux_2_35_x86_64-cp311`.
    pub fn name_of(platform: &PlatformFacts, python: &PythonFacts) -> String {
        let arch = &platform.arch;
        let tag = match (&platform.os, platform.libc.family, platform.libc.version) {
            (Os::Linux, LibcFamily::Glibc, Some((a, b))) => format!("manylinux_{a}_{b}_{arch}"),
            (Os::Linux, LibcFamily::Musl, Some((a, b))) => format!("musllinux_{a}_{b}_{arch}"),
            (Os::Macos, _, _) => {
                let (a, b) = platform.macos_version().unwrap_or((11, 0));
                format!("macosx_{a}_{b}_{arch}")
            }
            (Os::Windows, _, _) => match arch.as_str() {
                "x86_64" => "win_amd64".to_owned(),
                "x86" => "win32".to_owned(),
                other => format!("win_{other}"),
            },
            _ => format!("linux_{arch}"),
        };
        format!("{tag}-cp{}{}", python.version.major, python.version.minor)
    }

    /// Wheel tags the target accepts, best first.
    pub fn tags(&self) -> Vec<String> {
        supported_tags(&self.platform, &self.python)
    }
}

fn parse_python(tag: &str) -> Option<PythonFacts> {
    let digits = tag.strip_prefix("cp")?;
    let (major, minor) = digits.split_at_checked(1)?;
    Some(PythonFacts::cpython(major.parse().ok()?, minor.parse().ok()?))
}

fn parse_platform(tag: &str) -> Option<PlatformFacts> {
    let linux = |libc: Libc, arch: &str| PlatformFacts { os: Os::Linux, os_version: None, arch: arch.into(), libc };
    if let Some(rest) = tag.strip_prefix("manylinux_") {
        let (major, minor, arch) = three(rest)?;
        return Some(linux(Libc::glibc(major, minor), arch));
    }
    for (legacy, glibc) in [("manylinux2014_", (2, 17)), ("manylinux2010_", (2, 12)), ("manylinux1_", (2, 5))] {
        if let Some(arch) = tag.strip_prefix(legacy) {
            return Some(linux(Libc::glibc(glibc.0, glibc.1), arch));
        }
    }
    if let Some(rest) = tag.strip_prefix("musllinux_") {
        let (major, minor, arch) = three(rest)?;
        return Some(linux(Libc::musl(major, minor), arch));
    }
    if let Some(arch) = tag.strip_prefix("linux_") {
        return Some(linux(Libc { family: LibcFamily::Unknown, version: None }, arch));
    }
    if let Some(rest) = tag.strip_prefix("macosx_") {
        let (major, minor, arch) = three(rest)?;
        return Some(PlatformFacts {
            os: Os::Macos,
            os_version: Some(format!("{major}.{minor}")),
            arch: arch.into(),
            libc: Libc::system(),
        });
    }
    let windows =
        |arch: &str| PlatformFacts { os: Os::Windows, os_version: None, arch: arch.into(), libc: Libc::system() };
    match tag {
        "win_amd64" => Some(windows("x86_64")),
        "win32" => Some(windows("x86")),
        "win_arm64" => Some(windows("arm64")),
        _ => None,
    }
}

/// `2_28_x86_64` -> (2, 28, "x86_64").
fn three(rest: &str) -> Option<(u32, u32, &str)> {
    let mut parts = rest.splitn(3, '_');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    let arch = parts.next().filter(|a| !a.is_empty())?;
    Some((major, minor, arch))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_forms() {
        let t = TargetPlatform::parse("manylinux_2_28_x86_64-cp311").unwrap();
        assert_eq!(
            (t.platform.os.clone(), t.platform.arch.as_str(), t.platform.libc),
            (Os::Linux, "x86_64", Libc::glibc(2, 28))
        );
        assert_eq!((t.python.version.major, t.python.version.minor), (3, 11));
        assert_eq!(t.tags()[0], "cp311-cp311-linux_x86_64");
        assert!(t.tags().contains(&"cp311-abi3-manylinux_2_28_x86_64".to_owned()));
        assert!(!t.tags().iter().any(|x| x.contains("manylinux_2_29")));

        let m = TargetPlatform::parse("macosx_14_0_arm64-cp312").unwrap();
        assert_eq!((m.platform.os.clone(), m.platform.arch.as_str()), (Os::Macos, "arm64"));
        assert_eq!(m.tags()[0], "cp312-cp312-macosx_14_0_arm64");

        let musl = TargetPlatform::parse("musllinux_1_2_aarch64-cp312").unwrap();
        assert_eq!(musl.platform.libc, Libc::musl(1, 2));
        assert_eq!(TargetPlatform::parse("manylinux2014_aarch64-cp310").unwrap().platform.libc, Libc::glibc(2, 17));
        assert_eq!(TargetPlatform::parse("win_amd64-cp311").unwrap().platform.os, Os::Windows);
    }

    #[test]
    fn names_round_trip() {
        for name in
            ["manylinux_2_28_x86_64-cp311", "musllinux_1_2_aarch64-cp312", "macosx_14_0_arm64-cp312", "win_amd64-cp311"]
        {
            let t = TargetPlatform::parse(name).unwrap();
            assert_eq!(TargetPlatform::name_of(&t.platform, &t.python), name);
        }
    }

    #[test]
    fn bad_targets_say_how_to_write_one() {
        for bad in
            ["manylinux_2_28_x86_64", "manylinux_2_x_x86_64-cp311", "solaris_x-cp311", "manylinux_2_28_x86_64-py3", ""]
        {
            let err = TargetPlatform::parse(bad).unwrap_err();
            assert!(err.to_string().contains("e.g. manylinux_2_28_x86_64-cp311"), "{bad}: {err}");
        }
    }
}
