//! The ordered wheel tags a platform + interpreter accept, following
//! `packaging.tags.sys_tags()` (packaging 26.3) rule for rule, so a verdict
//! computed here agrees with what pip would install there.

use super::machine::{LibcFamily, Os, PlatformFacts};
use super::python::{PythonFacts, normalize};

/// `interpreter-abi-platform` tags, best match first.
pub fn supported_tags(platform: &PlatformFacts, python: &PythonFacts) -> Vec<String> {
    let platforms = platform_tags(platform, python);
    let mut tags = Vec::new();
    if python.is_cpython() {
        cpython_tags(python, &platforms, &mut tags);
    } else {
        generic_tags(python, &platforms, &mut tags);
    }
    let interpreter = match python.interpreter_name() {
        "pp" => Some("pp3".to_owned()),
        "cp" => Some(format!("cp{}", python.interpreter_version())),
        _ => None,
    };
    compatible_tags(python, interpreter.as_deref(), &platforms, &mut tags);
    tags
}

fn cpython_tags(python: &PythonFacts, platforms: &[String], tags: &mut Vec<String>) {
    let (major, minor) = (python.version.major, python.version.minor);
    let interpreter = format!("cp{major}{minor}");
    let abis = python.cpython_abis();
    let threaded = abis
        .first()
        .is_some_and(|abi| abi.trim_start_matches("cp").trim_start_matches(|c: char| c.is_ascii_digit()).contains('t'));
    for abi in &abis {
        push_all(tags, &interpreter, abi, platforms);
    }
    let stable_abi = if threaded { "abi3t" } else { "abi3" };
    let has_stable_abi = (major, minor) >= (3, 2);
    if has_stable_abi {
        push_all(tags, &interpreter, stable_abi, platforms);
    }
    push_all(tags, &interpreter, "none", platforms);
    if has_stable_abi {
        for older in (2..minor).rev() {
            push_all(tags, &format!("cp{major}{older}"), stable_abi, platforms);
        }
    }
}

fn generic_tags(python: &PythonFacts, platforms: &[String], tags: &mut Vec<String>) {
    let interpreter = format!("{}{}", python.interpreter_name(), python.interpreter_version());
    let mut abis = python.abis();
    if !abis.iter().any(|a| a == "none") {
        abis.push("none".into());
    }
    for abi in &abis {
        push_all(tags, &interpreter, abi, platforms);
    }
}

fn compatible_tags(python: &PythonFacts, interpreter: Option<&str>, platforms: &[String], tags: &mut Vec<String>) {
    let versions = py_interpreter_range(python.version.major, python.version.minor);
    for version in &versions {
        push_all(tags, version, "none", platforms);
    }
    if let Some(interpreter) = interpreter {
        tags.push(format!("{interpreter}-none-any"));
    }
    for version in &versions {
        tags.push(format!("{version}-none-any"));
    }
}

fn push_all(tags: &mut Vec<String>, interpreter: &str, abi: &str, platforms: &[String]) {
    tags.extend(platforms.iter().map(|p| format!("{interpreter}-{abi}-{p}")));
}

/// `py311`, `py3`, `py310` ... `py30`.
fn py_interpreter_range(major: u32, minor: u32) -> Vec<String> {
    let mut out = vec![format!("py{major}{minor}"), format!("py{major}")];
    out.extend((0..minor).rev().map(|m| format!("py{major}{m}")));
    out
}

/// Platform tags, best first.
fn platform_tags(platform: &PlatformFacts, python: &PythonFacts) -> Vec<String> {
    match &platform.os {
        Os::Linux => linux_platforms(platform),
        Os::Macos => match platform.macos_version() {
            Some(version) => mac_platforms(version, &platform.arch),
            None => Vec::new(),
        },
        Os::Windows => vec![windows_platform(&platform.arch)],
        Os::Other(name) => {
            let fallback = format!("{name}-{}", platform.arch);
            vec![normalize(python.sysconfig_platform.as_deref().unwrap_or(&fallback))]
        }
    }
}

fn windows_platform(arch: &str) -> String {
    match arch {
        "x86_64" | "amd64" => "win_amd64".into(),
        "x86" | "i686" | "win32" => "win32".into(),
        "aarch64" | "arm64" => "win_arm64".into(),
        other => format!("win_{other}"),
    }
}

/// Architectures manylinux wheels exist for. `packaging` additionally checks
/// the interpreter's ELF header for armv7l (hard-float EABI) and i686 (32-bit
/// x86); those are taken as compatible here.
const MANYLINUX_ARCHS: [&str; 9] =
    ["x86_64", "aarch64", "ppc64", "ppc64le", "s390x", "loongarch64", "riscv64", "armv7l", "i686"];

/// glibc 2.x minor versions: `packaging` assumes at most 50 per major.
const LAST_GLIBC_MINOR: u32 = 50;

fn linux_platforms(platform: &PlatformFacts) -> Vec<String> {
    let archs: Vec<&str> = match platform.arch.as_str() {
        "armv8l" => vec!["armv8l", "armv7l"],
        other => vec![other],
    };
    let mut out: Vec<String> = archs.iter().map(|a| format!("linux_{a}")).collect();
    let libc = platform.libc;
    match (libc.family, libc.version) {
        (LibcFamily::Glibc, Some(glibc)) if archs.iter().any(|a| MANYLINUX_ARCHS.contains(a)) => {
            manylinux_platforms(&archs, glibc, &mut out);
        }
        (LibcFamily::Musl, Some((major, minor))) => {
            for arch in &archs {
                out.extend((0..=minor).rev().map(|m| format!("musllinux_{major}_{m}_{arch}")));
            }
        }
        _ => {}
    }
    out
}

fn manylinux_platforms(archs: &[&str], current: (u32, u32), out: &mut Vec<String>) {
    // The oldest glibc with manylinux wheels: 2.17 generally, 2.5 on x86.
    let oldest = if archs.iter().any(|a| matches!(*a, "x86_64" | "i686")) { (2, 5) } else { (2, 17) };
    let mut maxima = vec![current];
    maxima.extend((2..current.0).rev().map(|major| (major, LAST_GLIBC_MINOR)));
    for arch in archs {
        for &(major, max_minor) in &maxima {
            let min_minor = if major == oldest.0 { oldest.1 } else { 0 };
            for minor in (min_minor..=max_minor).rev() {
                if (major, minor) > current {
                    continue;
                }
                out.push(format!("manylinux_{major}_{minor}_{arch}"));
                let legacy = match (major, minor) {
                    (2, 17) => Some("manylinux2014"),
                    (2, 12) => Some("manylinux2010"),
                    (2, 5) => Some("manylinux1"),
                    _ => None,
                };
                if let Some(legacy) = legacy {
                    out.push(format!("{legacy}_{arch}"));
                }
            }
        }
    }
}

fn mac_platforms((major, minor): (u32, u32), arch: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut push = |major: u32, minor: u32, formats: Vec<&str>| {
        out.extend(formats.into_iter().map(|f| format!("macosx_{major}_{minor}_{f}")));
    };
    if major == 10 {
        // Before macOS 11 every yearly release bumped the minor version.
        for m in (0..=minor).rev() {
            push(10, m, mac_binary_formats((10, m), arch));
        }
    }
    if major >= 11 {
        // Since macOS 11 every yearly release bumps the major version.
        for m in (11..=major).rev() {
            push(m, 0, mac_binary_formats((m, 0), arch));
        }
        // x86_64 binaries built for 10.x still run; arm64 ones only as universal2.
        for m in (4..=16).rev() {
            let formats = if arch == "x86_64" { mac_binary_formats((10, m), arch) } else { vec!["universal2"] };
            push(10, m, formats);
        }
    }
    out
}

fn mac_binary_formats(version: (u32, u32), arch: &str) -> Vec<&str> {
    let mut formats = vec![arch];
    match arch {
        "x86_64" if version < (10, 4) => return Vec::new(),
        "x86_64" => formats.extend(["intel", "fat64", "fat3"]),
        "i386" if version < (10, 4) => return Vec::new(),
        "i386" => formats.extend(["intel", "fat3", "fat"]),
        "ppc64" if !((10, 4)..=(10, 5)).contains(&version) => return Vec::new(),
        "ppc64" => formats.push("fat64"),
        "ppc" if version > (10, 6) => return Vec::new(),
        "ppc" => formats.extend(["fat3", "fat"]),
        _ => {}
    }
    if matches!(arch, "arm64" | "x86_64") {
        formats.push("universal2");
    }
    if matches!(arch, "x86_64" | "i386" | "ppc64" | "ppc" | "intel") {
        formats.push("universal");
    }
    formats
}

#[cfg(test)]
mod tests {
    //! Each fixture in tests/data/wheel_tags/ holds a target platform and the
    //! tags `packaging` produces for it (tests/data/wheel_tags/generate.py;
    //! tests/python/test_wheel_tag_fixtures.py checks they are current).
    use super::*;
    use crate::platform::{Libc, PythonVersion};
    use serde::Deserialize;

    #[derive(Deserialize)]
    struct Fixture {
        os: String,
        os_version: Option<String>,
        arch: String,
        libc: Option<String>,
        libc_version: Option<(u32, u32)>,
        python: (u32, u32),
        tags: Vec<String>,
    }

    impl Fixture {
        fn facts(&self) -> (PlatformFacts, PythonFacts) {
            let os = match self.os.as_str() {
                "linux" => Os::Linux,
                "macos" => Os::Macos,
                other => panic!("fixture os {other}"),
            };
            let libc = match (self.libc.as_deref(), self.libc_version) {
                (Some("glibc"), Some((a, b))) => Libc::glibc(a, b),
                (Some("musl"), Some((a, b))) => Libc::musl(a, b),
                _ => Libc::system(),
            };
            let platform = PlatformFacts { os, os_version: self.os_version.clone(), arch: self.arch.clone(), libc };
            (platform, PythonFacts::cpython(self.python.0, self.python.1))
        }
    }

    fn fixtures() -> Vec<(String, Fixture)> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/wheel_tags");
        let mut out: Vec<(String, Fixture)> = std::fs::read_dir(&dir)
            .expect("fixture dir")
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .map(|p| {
                let text = std::fs::read_to_string(&p).expect("read fixture");
                let name = p.file_name().unwrap().to_string_lossy().into_owned();
                (name, serde_json::from_str(&text).expect("parse fixture"))
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    #[test]
    fn matches_packaging_on_every_fixture_platform() {
        let fixtures = fixtures();
        let names: Vec<&str> = fixtures.iter().map(|(n, _)| n.as_str()).collect();
        for wanted in ["macos-arm64", "macos-x86_64", "musllinux", "manylinux-aarch64"] {
            assert!(names.iter().any(|n| n.starts_with(wanted)), "no fixture for {wanted}: {names:?}");
        }
        for (name, fixture) in &fixtures {
            let (platform, python) = fixture.facts();
            let ours = supported_tags(&platform, &python);
            if let Some(i) = (0..ours.len().max(fixture.tags.len())).find(|&i| ours.get(i) != fixture.tags.get(i)) {
                panic!(
                    "{name}: first difference at index {i}: ours {:?}, packaging {:?} ({} vs {} tags)",
                    ours.get(i),
                    fixture.tags.get(i),
                    ours.len(),
                    fixture.tags.len()
                );
            }
        }
    }

    #[test]
    fn free_threaded_cpython_uses_abi3t() {
        let platform =
            PlatformFacts { os: Os::Linux, os_version: None, arch: "x86_64".into(), libc: Libc::glibc(2, 17) };
        let python = PythonFacts {
            gil_disabled: true,
            version: PythonVersion { major: 3, minor: 13, micro: 0 },
            ..PythonFacts::cpython(3, 13)
        };
        let tags = supported_tags(&platform, &python);
        assert_eq!(tags[0], "cp313-cp313t-linux_x86_64");
        assert!(tags.contains(&"cp313-abi3t-manylinux2014_x86_64".to_owned()));
        assert!(!tags.iter().any(|t| t.contains("-abi3-")));
    }

    #[test]
    fn python_range_counts_down_to_zero() {
        assert_eq!(py_interpreter_range(3, 2), ["py32", "py3", "py31", "py30"]);
    }
}
