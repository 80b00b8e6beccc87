//! What a native file was built for, from its own header (goblin): ELF machine,
//! OS ABI, the highest `GLIBC_x.y` symbol version it needs and whether it links
//! musl; Mach-O CPU types (every slice of a fat/universal file); PE machine.

use super::machine::{Libc, LibcFamily, Os, PlatformFacts};
use goblin::Object;
use goblin::elf::Elf;
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BinaryFormat {
    Elf,
    MachO,
    Pe,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BinaryInfo {
    pub format: BinaryFormat,
    pub os: Os,
    /// Wheel spelling (`x86_64`, `aarch64`, `arm64`); several for a fat Mach-O.
    pub archs: Vec<String>,
    /// ELF only: musl, or glibc with the highest `GLIBC_x.y` version it needs.
    pub libc: Option<Libc>,
}

/// The header facts of `bytes`; None when it is not an ELF, Mach-O or PE file.
pub fn inspect(bytes: &[u8]) -> Option<BinaryInfo> {
    match Object::parse(bytes).ok()? {
        Object::Elf(elf) => Some(inspect_elf(&elf)),
        Object::Mach(mach) => Some(inspect_mach(mach)),
        Object::PE(pe) => Some(BinaryInfo {
            format: BinaryFormat::Pe,
            os: Os::Windows,
            archs: vec![pe_arch(pe.header.coff_header.machine)],
            libc: None,
        }),
        _ => None,
    }
}

fn inspect_elf(elf: &Elf<'_>) -> BinaryInfo {
    use goblin::elf::header::*;
    let little = elf.little_endian;
    let arch = match elf.header.e_machine {
        EM_X86_64 => "x86_64",
        EM_AARCH64 => "aarch64",
        EM_386 => "i686",
        EM_ARM => "armv7l",
        EM_PPC64 if little => "ppc64le",
        EM_PPC64 => "ppc64",
        EM_S390 => "s390x",
        EM_RISCV => "riscv64",
        258 => "loongarch64", // EM_LOONGARCH
        other => return elf_other(elf, format!("elf-machine-{other}")),
    };
    elf_other(elf, arch.to_owned())
}

fn elf_other(elf: &Elf<'_>, arch: String) -> BinaryInfo {
    let os = match elf.header.e_ident[goblin::elf::header::EI_OSABI] {
        9 => Os::Other("freebsd".into()),
        _ => Os::Linux,
    };
    let musl = elf.libraries.iter().any(|l| l.starts_with("libc.musl"))
        || elf.interpreter.is_some_and(|i| i.contains("ld-musl"));
    let libc = if musl {
        Some(Libc { family: LibcFamily::Musl, version: None })
    } else {
        max_glibc(elf).map(|(a, b)| Libc::glibc(a, b))
    };
    BinaryInfo { format: BinaryFormat::Elf, os, archs: vec![arch], libc }
}

/// The highest `GLIBC_x.y` among the symbol versions the file needs.
fn max_glibc(elf: &Elf<'_>) -> Option<(u32, u32)> {
    let verneed = elf.verneed.as_ref()?;
    let mut best: Option<(u32, u32)> = None;
    for need in verneed.iter() {
        for aux in need.iter() {
            let Some(name) = elf.dynstrtab.get_at(aux.vna_name) else { continue };
            if let Some(version) = name.strip_prefix("GLIBC_").and_then(super::machine::parse_major_minor) {
                best = best.max(Some(version));
            }
        }
    }
    best
}

fn inspect_mach(mach: goblin::mach::Mach<'_>) -> BinaryInfo {
    use goblin::mach::Mach;
    let archs = match mach {
        Mach::Binary(m) => vec![mach_arch(m.header.cputype)],
        Mach::Fat(fat) => fat.iter_arches().filter_map(Result::ok).map(|a| mach_arch(a.cputype)).collect(),
    };
    BinaryInfo { format: BinaryFormat::MachO, os: Os::Macos, archs, libc: None }
}

fn mach_arch(cputype: u32) -> String {
    use goblin::mach::cputype::*;
    match cputype {
        CPU_TYPE_X86_64 => "x86_64".into(),
        CPU_TYPE_ARM64 => "arm64".into(),
        CPU_TYPE_X86 => "i386".into(),
        CPU_TYPE_POWERPC => "ppc".into(),
        CPU_TYPE_POWERPC64 => "ppc64".into(),
        other => format!("mach-cpu-{other:#x}"),
    }
}

fn pe_arch(machine: u16) -> String {
    use goblin::pe::header::*;
    match machine {
        COFF_MACHINE_X86_64 => "x86_64".into(),
        COFF_MACHINE_X86 => "x86".into(),
        COFF_MACHINE_ARM64 => "arm64".into(),
        other => format!("pe-machine-{other:#x}"),
    }
}

/// Why this binary does not load on `target`, or None when it does.
pub fn incompatibility(binary: &BinaryInfo, target: &PlatformFacts) -> Option<String> {
    let what = describe(binary);
    if binary.os != target.os {
        return Some(format!("{what}, the cluster runs {}", target.os));
    }
    let target_arch = normalize_arch(&target.arch);
    if !binary.archs.iter().any(|a| normalize_arch(a) == target_arch) {
        return Some(format!("{what}, the cluster is {}", target.arch));
    }
    let (Some(need), LibcFamily::Glibc | LibcFamily::Musl) = (binary.libc, target.libc.family) else {
        return None;
    };
    match (need.family, target.libc.family) {
        (LibcFamily::Musl, LibcFamily::Glibc) => Some(format!("{what}, the cluster has {}", target.libc.describe())),
        (LibcFamily::Glibc, LibcFamily::Musl) => Some(format!("{what}, the cluster has {}", target.libc.describe())),
        (LibcFamily::Glibc, LibcFamily::Glibc) => match (need.version, target.libc.version) {
            (Some(needed), Some(have)) if needed > have => {
                Some(format!("needs GLIBC_{}.{}, the cluster has glibc {}.{}", needed.0, needed.1, have.0, have.1))
            }
            _ => None,
        },
        _ => None,
    }
}

/// `ELF x86_64 (glibc 2.17)`, `Mach-O arm64+x86_64`, `PE x86_64`.
pub fn describe(binary: &BinaryInfo) -> String {
    let format = match binary.format {
        BinaryFormat::Elf => "ELF",
        BinaryFormat::MachO => "Mach-O",
        BinaryFormat::Pe => "PE",
    };
    let libc = match binary.libc {
        Some(l) => format!(" ({})", l.describe()),
        None => String::new(),
    };
    format!("built for {} {format} {}{libc}", binary.os, binary.archs.join("+"))
}

fn normalize_arch(arch: &str) -> &str {
    match arch {
        "arm64" => "aarch64",
        "amd64" => "x86_64",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_test_binary_is_read_as_the_host() {
        let bytes = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let info = inspect(&bytes).expect("an ELF");
        let host = PlatformFacts::host();
        assert_eq!(info.format, BinaryFormat::Elf);
        assert_eq!(info.archs, std::slice::from_ref(&host.arch));
        assert_eq!(incompatibility(&info, &host), None, "{info:?}");
        let older = PlatformFacts { libc: Libc::glibc(2, 0), ..host.clone() };
        assert!(incompatibility(&info, &older).unwrap().starts_with("needs GLIBC_2."));
        let mac = PlatformFacts { os: Os::Macos, arch: "arm64".into(), libc: Libc::system(), os_version: None };
        assert!(incompatibility(&info, &mac).unwrap().contains("the cluster runs macos"));
    }

    #[test]
    fn text_is_not_a_binary() {
        assert_eq!(inspect(b"#!/bin/sh\necho hi\n"), None);
    }
}
