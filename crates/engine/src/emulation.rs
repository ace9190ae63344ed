//! Whether this machine can run programs of another platform: the kernel's
//! `binfmt_misc` hands an ELF binary of a foreign architecture to a
//! registered interpreter (QEMU's user-mode emulators, Debian's
//! `qemu-user-static`). kiln never registers handlers itself; it checks
//! before a build step or container of another platform starts, so the
//! user reads what to install instead of `exec format error`.

use std::path::Path;

use kiln_model::Platform;

/// Where the kernel shows `binfmt_misc`.
pub const BINFMT_MISC: &str = "/proc/sys/fs/binfmt_misc";

/// ELF `e_machine` and class (1: 32-bit, 2: 64-bit) of an OCI architecture.
fn elf(arch: &str) -> Option<(u16, u8)> {
    Some(match arch {
        "amd64" => (62, 2),
        "arm64" => (183, 2),
        "arm" => (40, 1),
        "386" => (3, 1),
        "ppc64le" => (21, 2),
        "s390x" => (22, 2),
        "riscv64" => (243, 2),
        "mips64le" => (8, 2),
        "loong64" => (258, 2),
        _ => return None,
    })
}

/// Whether the host runs `arch` natively (its own, or the 32-bit one its
/// CPU also executes).
fn native(host: &str, arch: &str) -> bool {
    host == arch || matches!((host, arch), ("amd64", "386") | ("arm64", "arm"))
}

fn hex(s: &str) -> Option<Vec<u8>> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// One handler as `binfmt_misc` shows it.
struct Handler {
    name: String,
    enabled: bool,
    fix_binary: bool,
    offset: usize,
    magic: Vec<u8>,
    mask: Vec<u8>,
}

fn parse(name: &str, text: &str) -> Option<Handler> {
    let mut h = Handler {
        name: name.to_string(),
        enabled: false,
        fix_binary: false,
        offset: 0,
        magic: Vec::new(),
        mask: Vec::new(),
    };
    for line in text.lines() {
        let (k, v) = line.split_once(' ').unwrap_or((line, ""));
        match k {
            "enabled" => h.enabled = true,
            "flags:" => h.fix_binary = v.contains('F'),
            "offset" => h.offset = v.trim().parse().ok()?,
            "magic" => h.magic = hex(v.trim())?,
            "mask" => h.mask = hex(v.trim())?,
            _ => {}
        }
    }
    (!h.magic.is_empty()).then_some(h)
}

/// Whether `h` takes the ELF header of an executable of `machine`/`class`.
fn takes(h: &Handler, machine: u16, class: u8) -> bool {
    let mut header = [0u8; 20];
    header[..4].copy_from_slice(b"\x7fELF");
    header[4] = class;
    header[5] = 1; // little-endian
    header[6] = 1;
    header[16] = 2; // ET_EXEC
    header[18..20].copy_from_slice(&machine.to_le_bytes());
    h.magic.iter().enumerate().all(|(i, m)| {
        let b = header.get(h.offset + i).copied().unwrap_or(0);
        let mask = h.mask.get(i).copied().unwrap_or(0xff);
        b & mask == m & mask
    })
}

/// Checks that programs of `platform` can run on this machine, with
/// `binfmt_misc` at `dir`; the error says what is missing and what to do.
pub fn check_in(dir: &Path, platform: &Platform) -> Result<(), String> {
    let host = Platform::native();
    let want = platform.normalized();
    if want.os != host.os {
        return Err(format!(
            "{} programs cannot run on this {} machine",
            want.os, host.os
        ));
    }
    if native(&host.architecture, &want.architecture) {
        return Ok(());
    }
    let install = format!(
        "install QEMU's user-mode emulators (Debian: apt-get install qemu-user-static) and register their handlers \
         (e.g. `update-binfmts --enable`, or write /usr/lib/binfmt.d/qemu-<arch>.conf to {}/register)",
        dir.display()
    );
    let Some((machine, class)) = elf(&want.architecture) else {
        return Err(format!(
            "kiln does not know how to run {want} programs on this {host} machine"
        ));
    };
    // Unmounted, the directory is there but empty: `status` says mounted.
    let entries = match std::fs::read_dir(dir) {
        Ok(e) if dir.join("status").exists() => e,
        _ => {
            return Err(format!(
                "{want} programs need emulation on this {host} machine, and binfmt_misc is not mounted \
                 (mount -t binfmt_misc binfmt_misc {}); then {install}",
                dir.display()
            ));
        }
    };
    let mut without_f = None;
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name == "status" || name == "register" {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(e.path()) else {
            continue;
        };
        let Some(h) = parse(&name, &text) else {
            continue;
        };
        if !h.enabled || !takes(&h, machine, class) {
            continue;
        }
        if h.fix_binary {
            return Ok(());
        }
        without_f = Some(h.name);
    }
    if let Some(name) = without_f {
        return Err(format!(
            "the binfmt_misc handler {name:?} for {want} programs is registered without the F (fix binary) flag, \
             so containers cannot open its interpreter: register it again with F (Debian's qemu-user-static does)"
        ));
    }
    Err(format!(
        "{want} programs need emulation on this {host} machine, and binfmt_misc has no handler for them: {install}"
    ))
}

/// [`check_in`] the kernel's `binfmt_misc`.
pub fn check(platform: &Platform) -> Result<(), String> {
    check_in(Path::new(BINFMT_MISC), platform)
}

#[cfg(test)]
mod tests {
    use super::*;

    const AARCH64: &str = "enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: POCF\noffset 0\nmagic 7f454c460201010000000000000000000200b700\nmask ffffffffffffff00fffffffffffffffffeffffff\n";

    fn arm64() -> Platform {
        Platform::new("linux", "arm64", None)
    }

    #[test]
    fn a_registered_handler_with_f_runs_the_platform() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("status"), "enabled\n").expect("status");
        std::fs::write(dir.path().join("qemu-aarch64"), AARCH64).expect("handler");
        if Platform::native().architecture == "arm64" {
            return;
        }
        assert_eq!(check_in(dir.path(), &arm64()), Ok(()));
        // The same handler does not run riscv64 programs.
        let e =
            check_in(dir.path(), &Platform::new("linux", "riscv64", None)).expect_err("riscv64");
        assert!(
            e.contains("no handler") && e.contains("qemu-user-static"),
            "{e}"
        );
    }

    #[test]
    fn missing_disabled_or_unfixed_handlers_say_what_to_do() {
        if Platform::native().architecture == "arm64" {
            return;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let e = check_in(&dir.path().join("absent"), &arm64()).expect_err("not mounted");
        assert!(
            e.contains("not mounted") && e.contains("mount -t binfmt_misc"),
            "{e}"
        );
        std::fs::write(dir.path().join("status"), "enabled\n").expect("status");
        let e = check_in(dir.path(), &arm64()).expect_err("empty");
        assert!(e.contains("no handler") && e.contains("linux/arm64"), "{e}");
        std::fs::write(
            dir.path().join("qemu-aarch64"),
            AARCH64.replace("enabled", "disabled"),
        )
        .expect("handler");
        assert!(check_in(dir.path(), &arm64()).is_err());
        std::fs::write(
            dir.path().join("qemu-aarch64"),
            AARCH64.replace("POCF", "POC"),
        )
        .expect("handler");
        let e = check_in(dir.path(), &arm64()).expect_err("no F");
        assert!(e.contains("F (fix binary)"), "{e}");
    }

    #[test]
    fn native_platforms_need_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(
            check_in(&dir.path().join("absent"), &Platform::native()),
            Ok(())
        );
    }
}
