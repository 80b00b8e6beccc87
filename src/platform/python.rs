//! Facts about a Python interpreter that decide its wheel ABI tags.

use std::fmt;

/// `major.minor.micro` of a Python interpreter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct PythonVersion {
    pub major: u32,
    pub minor: u32,
    pub micro: u32,
}

impl fmt::Display for PythonVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.micro)
    }
}

/// What the interpreter says about itself (`sys`, `sysconfig`), read by
/// `crate::py` from the running interpreter or built for another target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PythonFacts {
    /// `sys.implementation.name`: `cpython`, `pypy`, `graalpy`, ...
    pub implementation: String,
    pub version: PythonVersion,
    /// `sysconfig.get_config_var("py_version_nodot")`, when set.
    pub version_nodot: Option<String>,
    /// `Py_DEBUG`; `None` where the config var is missing (Windows).
    pub debug: Option<bool>,
    /// `sys.gettotalrefcount` exists or `_d.pyd` is an extension suffix: the
    /// fallback debug-build test when `Py_DEBUG` is missing.
    pub debug_hooks: bool,
    /// `Py_GIL_DISABLED`: a free-threaded build.
    pub gil_disabled: bool,
    /// `sysconfig.get_config_var("EXT_SUFFIX")`, e.g. `.cpython-311-x86_64-linux-gnu.so`.
    pub ext_suffix: Option<String>,
    /// `sysconfig.get_platform()`: the platform tag on OSes packaging has no rules for.
    pub sysconfig_platform: Option<String>,
}

impl PythonFacts {
    /// A plain (release, GIL) CPython of the given version.
    pub fn cpython(major: u32, minor: u32) -> Self {
        Self {
            implementation: "cpython".into(),
            version: PythonVersion { major, minor, micro: 0 },
            version_nodot: Some(format!("{major}{minor}")),
            debug: Some(false),
            debug_hooks: false,
            gil_disabled: false,
            ext_suffix: Some(format!(".cpython-{major}{minor}-x86_64-linux-gnu.so")),
            sysconfig_platform: None,
        }
    }

    /// Short interpreter name used in tags: `cp`, `pp`, or the full name.
    pub fn interpreter_name(&self) -> &str {
        match self.implementation.as_str() {
            "python" => "py",
            "cpython" => "cp",
            "pypy" => "pp",
            "ironpython" => "ip",
            "jython" => "jy",
            other => other,
        }
    }

    /// `311` for 3.11 (from `py_version_nodot` when the interpreter sets it).
    pub fn interpreter_version(&self) -> String {
        match &self.version_nodot {
            Some(v) if !v.is_empty() => v.clone(),
            _ => format!("{}{}", self.version.major, self.version.minor),
        }
    }

    pub fn is_cpython(&self) -> bool {
        self.interpreter_name() == "cp"
    }

    /// ABI tags of this interpreter, most specific first (`cp311`; `cp311d`,
    /// `cp311` for a debug build; `cp313t` free-threaded). Non-CPython ABIs
    /// come from `EXT_SUFFIX` (`pypy39_pp73`).
    pub fn abis(&self) -> Vec<String> {
        if self.is_cpython() { self.cpython_abis() } else { self.generic_abis() }
    }

    pub(crate) fn cpython_abis(&self) -> Vec<String> {
        let PythonVersion { major, minor, .. } = self.version;
        let nodot = format!("{major}{minor}");
        let debug = match self.debug {
            Some(d) => d,
            None => self.debug_hooks,
        };
        let threading = if (major, minor) >= (3, 13) && self.gil_disabled { "t" } else { "" };
        let debug_flag = if debug { "d" } else { "" };
        // Python < 3.8 ("m" pymalloc, "u" UCS-4 flags) is not supported by geneva.
        let mut abis = vec![format!("cp{nodot}{threading}{debug_flag}")];
        if debug {
            // Debug builds also load release-build extension modules.
            abis.push(format!("cp{nodot}{threading}"));
        }
        abis
    }

    /// `packaging.tags._generic_abi`: the ABI part of `EXT_SUFFIX`.
    fn generic_abis(&self) -> Vec<String> {
        let Some(suffix) = self.ext_suffix.as_deref() else {
            return Vec::new();
        };
        let parts: Vec<&str> = suffix.split('.').collect();
        if parts.len() < 3 {
            return self.cpython_abis();
        }
        let soabi = parts[1];
        let dash_prefix = |n: usize| soabi.split('-').take(n).collect::<Vec<_>>().join("-");
        let abi = if soabi.starts_with("cpython") {
            match soabi.split('-').nth(1) {
                Some(v) if !v.is_empty() => format!("cp{v}"),
                _ => return Vec::new(),
            }
        } else if soabi.starts_with("cp") {
            dash_prefix(1)
        } else if soabi.starts_with("pypy") {
            dash_prefix(2)
        } else if soabi.starts_with("graalpy") {
            dash_prefix(3)
        } else if !soabi.is_empty() {
            soabi.to_owned()
        } else {
            return Vec::new();
        };
        vec![normalize(&abi)]
    }
}

/// `packaging.tags._normalize_string`: `.`, `-` and spaces become `_`.
pub(crate) fn normalize(text: &str) -> String {
    text.replace(['.', '-', ' '], "_")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpython_abi_flags() {
        let plain = PythonFacts::cpython(3, 11);
        assert_eq!(plain.abis(), ["cp311"]);

        let debug = PythonFacts { debug: Some(true), ..PythonFacts::cpython(3, 12) };
        assert_eq!(debug.abis(), ["cp312d", "cp312"]);

        let hooks_only = PythonFacts { debug: None, debug_hooks: true, ..PythonFacts::cpython(3, 12) };
        assert_eq!(hooks_only.abis(), ["cp312d", "cp312"]);

        let free = PythonFacts { gil_disabled: true, ..PythonFacts::cpython(3, 13) };
        assert_eq!(free.abis(), ["cp313t"]);

        // Py_GIL_DISABLED means nothing before 3.13.
        let old = PythonFacts { gil_disabled: true, ..PythonFacts::cpython(3, 12) };
        assert_eq!(old.abis(), ["cp312"]);
    }

    #[test]
    fn generic_abi_from_ext_suffix() {
        let cases = [
            (".pypy38-pp73-x86_64-linux-gnu.so", vec!["pypy38_pp73"]),
            (".graalpy-38-native-x86_64-darwin.dylib", vec!["graalpy_38_native"]),
            (".cp310-win_amd64.pyd", vec!["cp310"]),
            (".cpython-310-darwin.so", vec!["cp310"]),
        ];
        for (suffix, expected) in cases {
            let facts = PythonFacts {
                implementation: "pypy".into(),
                ext_suffix: Some(suffix.into()),
                ..PythonFacts::cpython(3, 10)
            };
            assert_eq!(facts.abis(), expected, "{suffix}");
        }
    }

    #[test]
    fn interpreter_names_and_versions() {
        let cp = PythonFacts::cpython(3, 11);
        assert_eq!((cp.interpreter_name(), cp.interpreter_version().as_str()), ("cp", "311"));
        let pypy = PythonFacts { implementation: "pypy".into(), version_nodot: None, ..cp.clone() };
        assert_eq!((pypy.interpreter_name(), pypy.interpreter_version().as_str()), ("pp", "311"));
        let graal = PythonFacts { implementation: "graalpy".into(), ..cp };
        assert_eq!(graal.interpreter_name(), "graalpy");
    }
}
