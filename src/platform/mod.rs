//! Facts about a platform that decide which Python wheels run on it: OS, CPU
//! architecture, libc, the Python interpreter, and the ordered wheel tags they
//! support. Plain Rust; the interpreter facts are handed in by `crate::py`.

mod binary;
mod machine;
mod python;
mod tags;
mod target;

pub use binary::{BinaryFormat, BinaryInfo, describe as describe_binary, incompatibility, inspect as inspect_binary};
pub use machine::{Libc, LibcFamily, Os, PlatformFacts};
pub use python::{PythonFacts, PythonVersion};
pub use tags::supported_tags;
pub use target::{TargetError, TargetPlatform};

use serde::Serialize;

/// Everything geneva knows about the machine the notebook kernel runs on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostPlatform {
    pub os: Os,
    /// OS release: kernel release on Linux, product version on macOS.
    pub os_version: Option<String>,
    /// CPU architecture as spelled in wheel platform tags (`x86_64`, `aarch64`, `arm64`).
    pub arch: String,
    pub libc: Libc,
    pub python: PythonSummary,
    /// Wheel tags this interpreter accepts, best match first (as `packaging.tags.sys_tags()`).
    pub tags: Vec<String>,
}

/// The interpreter part of [`HostPlatform`], as shown to users.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PythonSummary {
    /// `sys.implementation.name`, e.g. `cpython`.
    pub implementation: String,
    /// `major.minor.micro`.
    pub version: String,
    /// The most specific ABI tag, e.g. `cp311` (`cp313t` for free-threaded builds).
    pub abi: String,
}

impl HostPlatform {
    /// Combines the probed machine facts with the interpreter facts.
    pub fn new(machine: PlatformFacts, python: &PythonFacts) -> Self {
        let tags = supported_tags(&machine, python);
        let python_summary = PythonSummary {
            implementation: python.implementation.clone(),
            version: python.version.to_string(),
            abi: python.abis().into_iter().next().unwrap_or_else(|| "none".into()),
        };
        Self {
            os: machine.os,
            os_version: machine.os_version,
            arch: machine.arch,
            libc: machine.libc,
            python: python_summary,
            tags,
        }
    }
}
