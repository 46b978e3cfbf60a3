//! Whether the daemon runs a build's architecture natively or under QEMU user emulation (an arm64
//! cell on an x86_64 machine), and what an emulated build needs: a binfmt_misc handler, and more
//! time. CodeBuild runs arm64 builds on ARM compute; emulation is the local stand-in for it.

use std::path::Path;

/// How the daemon runs the build's architecture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Emulation {
    Native,
    /// Under QEMU user emulation: several times slower.
    Emulated,
}

/// How much longer an emulated build may take (build timeout, import test).
pub const EMULATED_SLOWDOWN: u32 = 5;

impl Emulation {
    /// What a timeout is multiplied by.
    pub fn slowdown(self) -> u32 {
        match self {
            Emulation::Native => 1,
            Emulation::Emulated => EMULATED_SLOWDOWN,
        }
    }
}

/// `arch` (`x86_64`, `arm64`) on a daemon whose machine is `daemon_arch` (`uname -m`: `x86_64`,
/// `aarch64`; empty when it does not say). A local daemon on Linux without a handler for `arch`
/// cannot run the image at all: that is an error saying how to enable one.
pub fn check(arch: &str, daemon_arch: &str, daemon_is_local: bool) -> anyhow::Result<Emulation> {
    let machine = uname_machine(arch);
    if daemon_arch.is_empty() || daemon_arch == machine {
        return Ok(Emulation::Native);
    }
    // A remote daemon or Docker Desktop's VM: only the daemon knows; the first command will tell.
    if !daemon_is_local || !cfg!(target_os = "linux") {
        return Ok(Emulation::Emulated);
    }
    if has_handler(Path::new(BINFMT_DIR), machine) {
        return Ok(Emulation::Emulated);
    }
    anyhow::bail!(
        "{arch} images cannot run on this {daemon_arch} machine: no binfmt_misc handler for {machine} is registered. Enable QEMU user emulation: `sudo apt-get install qemu-user-static binfmt-support` (Debian/Ubuntu; the handler must have the F flag to work in containers), and if {BINFMT_DIR} is empty `sudo mount -t binfmt_misc binfmt_misc {BINFMT_DIR}`; or `docker run --privileged --rm tonistiigi/binfmt --install {machine}`"
    )
}

const BINFMT_DIR: &str = "/proc/sys/fs/binfmt_misc";

/// `uname -m` of a Lambda architecture.
fn uname_machine(arch: &str) -> &str {
    match arch {
        "arm64" => "aarch64",
        other => other,
    }
}

/// The ELF header bytes (class, data, version … e_machine) binfmt_misc handlers match on.
fn elf_magic(machine: &str) -> Option<&'static str> {
    match machine {
        "aarch64" => Some("7f454c460201010000000000000000000200b700"),
        "x86_64" => Some("7f454c4602010100000000000000000002003e00"),
        _ => None,
    }
}

/// Whether binfmt_misc in `dir` is enabled and has an enabled handler for `machine`'s ELF
/// executables with the F flag (the interpreter opened when it is registered: a container does
/// not have the host's `/usr/libexec/qemu-binfmt/…`).
fn has_handler(dir: &Path, machine: &str) -> bool {
    let Some(magic) = elf_magic(machine) else {
        return false;
    };
    let read = |path: &Path| crate::util::read_regular(path, 64 * 1024).unwrap_or_default();
    if read(&dir.join("status")).lines().next() != Some("enabled") {
        return false;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries.flatten().any(|entry| {
        let text = read(&entry.path());
        let fix_binary = text
            .lines()
            .filter_map(|line| line.strip_prefix("flags:"))
            .any(|flags| flags.contains('F'));
        text.lines().next() == Some("enabled")
            && fix_binary
            && text
                .lines()
                .any(|line| line.strip_prefix("magic ") == Some(magic))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const QEMU_AARCH64: &str = "enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: PF\noffset 0\nmagic 7f454c460201010000000000000000000200b700\nmask ffffffffffffff00fffffffffffffffffeffffff\n";

    #[test]
    fn a_registered_enabled_handler_is_found() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("status"), "enabled\n").unwrap();
        assert!(!has_handler(dir.path(), "aarch64"));
        std::fs::write(dir.path().join("qemu-aarch64"), QEMU_AARCH64).unwrap();
        assert!(has_handler(dir.path(), "aarch64"));
        assert!(!has_handler(dir.path(), "x86_64"));
        let disabled = QEMU_AARCH64.replacen("enabled", "disabled", 1);
        std::fs::write(dir.path().join("qemu-aarch64"), disabled).unwrap();
        assert!(!has_handler(dir.path(), "aarch64"));
        // Without the F flag the interpreter is looked up inside the container: no use.
        let no_fix = QEMU_AARCH64.replace("flags: PF", "flags: P");
        std::fs::write(dir.path().join("qemu-aarch64"), no_fix).unwrap();
        assert!(!has_handler(dir.path(), "aarch64"));
        // binfmt_misc disabled as a whole.
        std::fs::write(dir.path().join("qemu-aarch64"), QEMU_AARCH64).unwrap();
        std::fs::write(dir.path().join("status"), "disabled\n").unwrap();
        assert!(!has_handler(dir.path(), "aarch64"));
    }

    #[test]
    fn the_same_machine_is_native_and_a_remote_one_is_trusted() {
        assert_eq!(check("x86_64", "x86_64", true).unwrap(), Emulation::Native);
        assert_eq!(check("arm64", "aarch64", true).unwrap(), Emulation::Native);
        assert_eq!(check("arm64", "", true).unwrap(), Emulation::Native);
        assert_eq!(
            check("arm64", "x86_64", false).unwrap(),
            Emulation::Emulated
        );
        assert_eq!(Emulation::Emulated.slowdown(), EMULATED_SLOWDOWN);
    }
}
