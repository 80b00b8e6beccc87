//! Operating system, CPU architecture and C library of a machine.

use serde::{Serialize, Serializer};
use std::fmt;

/// Operating system family, named as Python's wheel tags need it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Os {
    Linux,
    Macos,
    Windows,
    /// Anything else, by the name Rust's `std::env::consts::OS` gives it.
    #[serde(untagged)]
    Other(String),
}

impl fmt::Display for Os {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Os::Linux => f.write_str("linux"),
            Os::Macos => f.write_str("macos"),
            Os::Windows => f.write_str("windows"),
            Os::Other(name) => f.write_str(name),
        }
    }
}

/// Which C library native extensions link against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LibcFamily {
    Glibc,
    Musl,
    /// The OS's own C runtime (macOS libSystem, Windows UCRT): not part of wheel tags.
    System,
    /// A Linux whose C library could not be identified: only `linux_*` tags apply.
    Unknown,
}

impl LibcFamily {
    pub fn as_str(self) -> &'static str {
        match self {
            LibcFamily::Glibc => "glibc",
            LibcFamily::Musl => "musl",
            LibcFamily::System => "system",
            LibcFamily::Unknown => "unknown",
        }
    }
}

/// C library family and `(major, minor)` version where it has one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Libc {
    pub family: LibcFamily,
    pub version: Option<(u32, u32)>,
}

impl Libc {
    pub fn glibc(major: u32, minor: u32) -> Self {
        Self { family: LibcFamily::Glibc, version: Some((major, minor)) }
    }

    pub fn musl(major: u32, minor: u32) -> Self {
        Self { family: LibcFamily::Musl, version: Some((major, minor)) }
    }

    pub fn system() -> Self {
        Self { family: LibcFamily::System, version: None }
    }

    /// `glibc 2.36`, `musl 1.2`, `system`.
    pub fn describe(&self) -> String {
        let family = self.family.as_str();
        match self.version {
            Some((major, minor)) => format!("{family} {major}.{minor}"),
            None => family.to_owned(),
        }
    }
}

impl Serialize for Libc {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut s = serializer.serialize_struct("Libc", 2)?;
        s.serialize_field("family", &self.family)?;
        s.serialize_field("version", &self.version.map(|(a, b)| format!("{a}.{b}")))?;
        s.end()
    }
}

/// The machine half of a platform: what decides which native binaries load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformFacts {
    pub os: Os,
    /// Kernel release on Linux, product version (`14.5`) on macOS.
    pub os_version: Option<String>,
    /// Architecture as wheel platform tags spell it (`x86_64`, `aarch64`, `arm64`, `i686`).
    pub arch: String,
    pub libc: Libc,
}

impl PlatformFacts {
    /// Facts of the machine this process runs on. The process is the Python
    /// interpreter (geneva is an extension module), so its architecture and C
    /// library are the interpreter's.
    pub fn host() -> Self {
        host::facts()
    }

    /// macOS `(major, minor)` parsed from `os_version`.
    pub fn macos_version(&self) -> Option<(u32, u32)> {
        parse_major_minor(self.os_version.as_deref()?)
    }
}

/// Leading `major.minor` of a version string (`2.36`, `1.2.4`, `14.5.1`, `2.20-2014.11`).
pub(crate) fn parse_major_minor(text: &str) -> Option<(u32, u32)> {
    let mut parts = text.trim().splitn(3, '.');
    let major = parts.next()?.parse().ok()?;
    let minor_text = parts.next()?;
    let digits: String = minor_text.chars().take_while(char::is_ascii_digit).collect();
    Some((major, digits.parse().ok()?))
}

#[cfg(target_os = "linux")]
mod host {
    use super::{Libc, LibcFamily, Os, PlatformFacts, parse_major_minor};
    use std::ffi::CStr;

    pub(super) fn facts() -> PlatformFacts {
        let (release, machine) = uname();
        PlatformFacts {
            os: Os::Linux,
            os_version: release,
            arch: wheel_arch(machine.as_deref().unwrap_or(std::env::consts::ARCH)),
            libc: detect_libc(),
        }
    }

    /// A 32-bit interpreter on a 64-bit kernel reports the kernel's machine;
    /// wheels must match the interpreter (as `packaging` maps it).
    fn wheel_arch(machine: &str) -> String {
        match (machine, cfg!(target_pointer_width = "32")) {
            ("x86_64", true) => "i686".into(),
            ("aarch64", true) => "armv8l".into(),
            (other, _) => other.into(),
        }
    }

    fn uname() -> (Option<String>, Option<String>) {
        // SAFETY: `utsname` is plain bytes; uname fills NUL-terminated fields.
        let mut buf: libc::utsname = unsafe { std::mem::zeroed() };
        if unsafe { libc::uname(&mut buf) } != 0 {
            return (None, None);
        }
        let field = |raw: &[libc::c_char]| {
            // SAFETY: uname NUL-terminates every field within its array.
            let text = unsafe { CStr::from_ptr(raw.as_ptr()) };
            Some(text.to_string_lossy().into_owned())
        };
        (field(&buf.release), field(&buf.machine))
    }

    #[cfg(target_env = "gnu")]
    fn detect_libc() -> Libc {
        // SAFETY: returns a pointer to a static NUL-terminated string.
        let raw = unsafe { CStr::from_ptr(libc::gnu_get_libc_version()) };
        match parse_major_minor(&raw.to_string_lossy()) {
            Some((major, minor)) => Libc::glibc(major, minor),
            None => Libc { family: LibcFamily::Glibc, version: None },
        }
    }

    /// musl has no version API: its dynamic loader prints `Version x.y.z` on
    /// stderr when run without arguments (the way `packaging` reads it).
    #[cfg(not(target_env = "gnu"))]
    fn detect_libc() -> Libc {
        let version = musl_loader().and_then(|loader| {
            let out = std::process::Command::new(loader).output().ok()?;
            let stderr = String::from_utf8_lossy(&out.stderr);
            stderr.lines().find_map(|line| line.strip_prefix("Version ")).and_then(parse_major_minor)
        });
        match (cfg!(target_env = "musl"), version) {
            (_, Some((major, minor))) => Libc::musl(major, minor),
            (true, None) => Libc { family: LibcFamily::Musl, version: None },
            (false, None) => Libc { family: LibcFamily::Unknown, version: None },
        }
    }

    #[cfg(not(target_env = "gnu"))]
    fn musl_loader() -> Option<std::path::PathBuf> {
        std::fs::read_dir("/lib").ok()?.flatten().map(|e| e.path()).find(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("ld-musl-") && n.ends_with(".so.1"))
        })
    }
}

#[cfg(target_os = "macos")]
mod host {
    use super::{Libc, Os, PlatformFacts};

    pub(super) fn facts() -> PlatformFacts {
        let arch = match std::env::consts::ARCH {
            "aarch64" => "arm64",
            "x86" => "i386",
            other => other,
        };
        PlatformFacts { os: Os::Macos, os_version: product_version(), arch: arch.into(), libc: Libc::system() }
    }

    /// The real product version (`kern.osproductversion`), not the `10.16` an
    /// old SDK reports for compatibility.
    fn product_version() -> Option<String> {
        let name = c"kern.osproductversion";
        let mut buf = [0u8; 64];
        let mut len = buf.len();
        // SAFETY: buf and len describe a writable buffer; name is NUL-terminated.
        let rc =
            unsafe { libc::sysctlbyname(name.as_ptr(), buf.as_mut_ptr().cast(), &mut len, std::ptr::null_mut(), 0) };
        if rc != 0 {
            return None;
        }
        let text = std::str::from_utf8(&buf[..len]).ok()?;
        Some(text.trim_end_matches('\0').to_owned())
    }
}

#[cfg(not(any(target_os = "linux", target_os = "macos")))]
mod host {
    use super::{Libc, Os, PlatformFacts};

    pub(super) fn facts() -> PlatformFacts {
        let os = match std::env::consts::OS {
            "windows" => Os::Windows,
            other => Os::Other(other.into()),
        };
        PlatformFacts { os, os_version: None, arch: std::env::consts::ARCH.into(), libc: Libc::system() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_leading_major_minor() {
        let cases = [
            ("2.36", Some((2, 36))),
            ("1.2.4", Some((1, 2))),
            ("2.20-2014.11", Some((2, 20))),
            ("14.5.1", Some((14, 5))),
            ("15", None),
            ("", None),
            ("x.1", None),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_major_minor(text), expected, "{text:?}");
        }
    }

    #[test]
    fn libc_serializes_family_and_dotted_version() {
        let json = serde_json::to_value(Libc::glibc(2, 36)).unwrap();
        assert_eq!(json, serde_json::json!({"family": "glibc", "version": "2.36"}));
        assert_eq!(Libc::musl(1, 2).describe(), "musl 1.2");
        assert_eq!(Libc::system().describe(), "system");
    }

    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn host_on_glibc_linux_has_a_glibc_version() {
        let host = PlatformFacts::host();
        assert_eq!(host.os, Os::Linux);
        assert_eq!(host.libc.family, LibcFamily::Glibc);
        let (major, minor) = host.libc.version.expect("glibc version");
        assert!(major == 2 && minor >= 17, "implausible glibc {major}.{minor}");
        assert!(host.os_version.is_some_and(|v| !v.is_empty()));
    }
}
