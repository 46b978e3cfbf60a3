//! What a native file needs from the machine it loads on, read from its ELF headers: the CPU
//! (`e_machine`), the newest `GLIBC_x.y` symbol version (`.gnu.version_r`) and whether it is linked
//! against musl (`PT_INTERP` or `DT_NEEDED` naming `ld-musl`/`libc.musl-*`).

use object::elf::{self, FileHeader32, FileHeader64};
use object::read::elf::{FileHeader, ProgramHeader};
use object::{Endianness, ReadRef};

/// The four bytes every ELF file starts with.
pub const MAGIC: &[u8; 4] = b"\x7fELF";

/// What verification needs to know about one ELF file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElfFacts {
    /// The raw `e_machine` value.
    pub machine: u16,
    /// The newest `GLIBC_x.y[.z]` version it needs, as `(x, y)`; `None` when it needs none.
    pub max_glibc: Option<(u32, u32)>,
    /// The musl loader or libc it names, if any.
    pub musl: Option<String>,
    /// Its `DT_NEEDED` entries.
    pub needed: Vec<String>,
}

impl ElfFacts {
    /// The Lambda architecture name of its CPU, when Lambda has that CPU.
    pub fn lambda_architecture(&self) -> Option<&'static str> {
        lambda_architecture(self.machine)
    }
}

/// `x86_64` for `EM_X86_64`, `arm64` for `EM_AARCH64`.
pub fn lambda_architecture(machine: u16) -> Option<&'static str> {
    match elf::Machine(machine) {
        elf::EM_X86_64 => Some("x86_64"),
        elf::EM_AARCH64 => Some("arm64"),
        _ => None,
    }
}

/// A readable name for a CPU: `x86_64`, `aarch64 (arm64)`, `i386`, or the number.
pub fn machine_name(machine: u16) -> String {
    match elf::Machine(machine) {
        elf::EM_X86_64 => "x86_64".to_string(),
        elf::EM_AARCH64 => "aarch64 (arm64)".to_string(),
        elf::EM_386 => "i386".to_string(),
        elf::EM_ARM => "32-bit arm".to_string(),
        elf::EM_PPC64 => "ppc64".to_string(),
        elf::EM_S390 => "s390".to_string(),
        elf::EM_RISCV => "riscv".to_string(),
        _ => format!("machine {machine}"),
    }
}

/// Whether `data` starts like an ELF file.
pub fn is_elf(data: &[u8]) -> bool {
    data.starts_with(MAGIC)
}

/// Reads the facts of an ELF file from `data`: a byte slice, or an [`object::ReadCache`] over the
/// open file, which reads only the headers and tables asked for (a 36 MB library stays on disk).
/// Only the file header is required: a file whose sections or segments cannot be read still
/// reports its machine (with no glibc or musl facts).
pub fn inspect<'data, R: ReadRef<'data>>(data: R) -> Result<ElfFacts, String> {
    // e_ident[EI_CLASS]: 1 is ELFCLASS32, 2 is ELFCLASS64.
    match data.read_bytes_at(4, 1).map(|class| class[0]) {
        Ok(2) => inspect_as::<FileHeader64<Endianness>, R>(data),
        Ok(1) => inspect_as::<FileHeader32<Endianness>, R>(data),
        _ => Err("not a 32- or 64-bit ELF file".to_string()),
    }
}

fn inspect_as<'data, Elf: FileHeader<Endian = Endianness>, R: ReadRef<'data>>(
    data: R,
) -> Result<ElfFacts, String> {
    let header = Elf::parse(data).map_err(|e| e.to_string())?;
    let endian = header.endian().map_err(|e| e.to_string())?;
    let mut facts = ElfFacts {
        machine: header.e_machine(endian).0,
        max_glibc: None,
        musl: None,
        needed: Vec::new(),
    };
    if let Ok(segments) = header.program_headers(endian, data) {
        for segment in segments {
            if let Ok(Some(interpreter)) = segment.interpreter(endian, data) {
                let interpreter = String::from_utf8_lossy(interpreter).to_string();
                if is_musl_name(&interpreter) {
                    facts.musl = Some(interpreter);
                }
            }
        }
    }
    let Ok(sections) = header.sections(endian, data) else {
        return Ok(facts);
    };
    if let Ok(table) = sections.dynamic_table(endian, data) {
        for entry in &table {
            if entry.tag == elf::DT_NEEDED {
                if let Ok(name) = table.string(entry) {
                    facts.needed.push(String::from_utf8_lossy(name).to_string());
                }
            }
        }
    }
    if facts.musl.is_none() {
        facts.musl = facts.needed.iter().find(|n| is_musl_name(n)).cloned();
    }
    if let Ok(Some((needs, link))) = sections.gnu_verneed(endian, data) {
        let strings = sections.strings(endian, data, link).unwrap_or_default();
        for need in needs.flatten() {
            let (_, auxes) = need;
            for aux in auxes.flatten() {
                let Ok(name) = strings.get(aux.vna_name.get(endian)) else {
                    continue;
                };
                if let Some(version) = glibc_version(&String::from_utf8_lossy(name)) {
                    facts.max_glibc = facts.max_glibc.max(Some(version));
                }
            }
        }
    }
    Ok(facts)
}

/// `GLIBC_2.34` → `(2, 34)`, `GLIBC_2.2.5` → `(2, 2)`; `GLIBC_PRIVATE` and others → `None`.
pub fn glibc_version(name: &str) -> Option<(u32, u32)> {
    let mut parts = name.strip_prefix("GLIBC_")?.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// The musl dynamic loader (`/lib/ld-musl-x86_64.so.1`) or libc (`libc.musl-x86_64.so.1`).
fn is_musl_name(name: &str) -> bool {
    let file = name.rsplit('/').next().unwrap_or(name);
    file.starts_with("ld-musl") || file.starts_with("libc.musl")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glibc_versions_parse() {
        assert_eq!(glibc_version("GLIBC_2.34"), Some((2, 34)));
        assert_eq!(glibc_version("GLIBC_2.2.5"), Some((2, 2)));
        assert_eq!(glibc_version("GLIBC_PRIVATE"), None);
        assert_eq!(glibc_version("GCC_3.0"), None);
    }

    #[test]
    fn musl_names() {
        assert!(is_musl_name("/lib/ld-musl-x86_64.so.1"));
        assert!(is_musl_name("libc.musl-aarch64.so.1"));
        assert!(!is_musl_name("libc.so.6"));
    }

    /// A bare 64-bit little-endian ELF header with no sections or segments.
    fn header_only(machine: u16) -> Vec<u8> {
        let mut bytes = vec![0u8; 64];
        bytes[..4].copy_from_slice(MAGIC);
        bytes[4] = 2; // ELFCLASS64
        bytes[5] = 1; // ELFDATA2LSB
        bytes[6] = 1; // EV_CURRENT
        bytes[16..18].copy_from_slice(&3u16.to_le_bytes()); // ET_DYN
        bytes[18..20].copy_from_slice(&machine.to_le_bytes());
        bytes[20..24].copy_from_slice(&1u32.to_le_bytes());
        bytes[52..54].copy_from_slice(&64u16.to_le_bytes());
        bytes
    }

    #[test]
    fn a_bare_header_reports_its_machine() {
        let facts = inspect(header_only(183).as_slice()).unwrap();
        assert_eq!(facts.lambda_architecture(), Some("arm64"));
        assert_eq!(facts.max_glibc, None);
        let facts = inspect(header_only(3).as_slice()).unwrap();
        assert_eq!(facts.lambda_architecture(), None);
        assert_eq!(machine_name(facts.machine), "i386");
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(inspect(&b"\x7fELF"[..]).is_err());
        assert!(inspect(&b"\x7fELF\x02\x01\x01"[..]).is_err());
    }
}
