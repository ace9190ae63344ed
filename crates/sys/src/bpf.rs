//! bpf(2) for cgroup v2 device filtering: load a `BPF_PROG_TYPE_CGROUP_DEVICE`
//! program, attach it to a cgroup (`BPF_CGROUP_DEVICE`), count the programs
//! attached there. What the program says is the caller's business (the
//! runtime generates it); this module only moves bytes to the kernel.

use std::io;
use std::mem::size_of;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// One eBPF instruction as the kernel reads it (`struct bpf_insn`): opcode,
/// destination register in the low four bits and source register in the
/// high four bits of `regs`, a signed offset (jumps, memory), an immediate.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Insn {
    /// The opcode (class, operation, source bits).
    pub code: u8,
    /// `dst | src << 4`.
    pub regs: u8,
    /// Jump distance in instructions after this one, or memory offset.
    pub off: i16,
    /// The immediate operand.
    pub imm: i32,
}

impl Insn {
    /// An instruction from its parts (registers 0 to 10).
    pub const fn new(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
        Insn {
            code,
            regs: (dst & 0x0f) | ((src & 0x0f) << 4),
            off,
            imm,
        }
    }
}

const BPF_PROG_LOAD: libc::c_int = 5;
const BPF_PROG_ATTACH: libc::c_int = 8;
const BPF_PROG_QUERY: libc::c_int = 16;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
/// Every program attached along the cgroup path runs, and all must allow:
/// a program attached below (by the container, if it could) cannot widen
/// what this one allows.
const BPF_F_ALLOW_MULTI: u32 = 2;
/// Size of the verifier log asked for when a load fails.
const LOG_SIZE: usize = 64 * 1024;

/// The `BPF_PROG_LOAD` part of `union bpf_attr`, up to the fields kiln uses.
#[repr(C, align(8))]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// The `BPF_PROG_ATTACH` part of `union bpf_attr`.
#[repr(C, align(8))]
#[derive(Default)]
struct ProgAttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
    /// `relative_fd` on newer kernels: zero. Explicit, so no padding byte
    /// goes to the kernel uninitialised.
    relative_fd: u32,
}

/// The `BPF_PROG_QUERY` part of `union bpf_attr`.
#[repr(C, align(8))]
#[derive(Default)]
struct ProgQueryAttr {
    target_fd: u32,
    attach_type: u32,
    query_flags: u32,
    attach_flags: u32,
    prog_ids: u64,
    prog_cnt: u32,
    /// Zero (the kernel wants every byte after the fields it knows zero).
    pad: u32,
}

fn bpf<T>(cmd: libc::c_int, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a live, initialised `repr(C)` prefix of `union
    // bpf_attr` for `cmd`, and its exact size is passed: the kernel reads
    // (and for queries writes) at most that many bytes. Pointers inside it
    // are set by the callers to buffers that outlive this call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T as *mut libc::c_void,
            size_of::<T>() as libc::c_uint,
        )
    };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Loads a `BPF_PROG_TYPE_CGROUP_DEVICE` program (needs `CAP_BPF` or
/// `CAP_SYS_ADMIN`). The program fd is close-on-exec. When the kernel's
/// verifier rejects the program, the error carries the verifier's log.
pub fn load_cgroup_device_program(insns: &[Insn], license: &str) -> io::Result<OwnedFd> {
    let license = std::ffi::CString::new(license)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "license contains NUL"))?;
    let insn_cnt = u32::try_from(insns.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "program too long"))?;
    let mut attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        expected_attach_type: BPF_CGROUP_DEVICE,
        ..Default::default()
    };
    attr.prog_name[..10].copy_from_slice(b"kiln_devcg");
    let first = match bpf(BPF_PROG_LOAD, &mut attr) {
        Ok(fd) => return Ok(owned(fd)),
        Err(e) => e,
    };
    if !matches!(first.raw_os_error(), Some(libc::EINVAL | libc::EACCES)) {
        return Err(first);
    }
    // Refused by the verifier: load again asking for its log, to say why.
    let mut log = vec![0u8; LOG_SIZE];
    attr.log_level = 1;
    attr.log_size = LOG_SIZE as u32;
    attr.log_buf = log.as_mut_ptr() as u64;
    match bpf(BPF_PROG_LOAD, &mut attr) {
        Ok(fd) => Ok(owned(fd)),
        Err(e) => {
            let end = log.iter().position(|b| *b == 0).unwrap_or(log.len());
            let text = String::from_utf8_lossy(&log[..end]);
            Err(io::Error::new(
                e.kind(),
                format!("{e}; verifier log: {}", text.trim()),
            ))
        }
    }
}

fn owned(fd: libc::c_long) -> OwnedFd {
    // SAFETY: a successful BPF_PROG_LOAD returns a new file descriptor that
    // nothing else owns.
    unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) }
}

/// Attaches a loaded device program to the cgroup directory open at
/// `cgroup` (`BPF_CGROUP_DEVICE`, `BPF_F_ALLOW_MULTI`). The cgroup holds
/// the program from then on: the fd may be closed.
pub fn attach_cgroup_device_program(
    cgroup: BorrowedFd<'_>,
    prog: BorrowedFd<'_>,
) -> io::Result<()> {
    let mut attr = ProgAttachAttr {
        target_fd: cgroup.as_raw_fd() as u32,
        attach_bpf_fd: prog.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: BPF_F_ALLOW_MULTI,
        ..Default::default()
    };
    bpf(BPF_PROG_ATTACH, &mut attr).map(|_| ())
}

/// How many device programs are attached to the cgroup open at `cgroup`
/// itself (not inherited from its parents).
pub fn cgroup_device_program_count(cgroup: BorrowedFd<'_>) -> io::Result<u32> {
    let mut attr = ProgQueryAttr {
        target_fd: cgroup.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        ..Default::default()
    };
    bpf(BPF_PROG_QUERY, &mut attr)?;
    Ok(attr.prog_cnt)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instructions_encode_as_the_kernel_reads_them() {
        assert_eq!(size_of::<Insn>(), 8);
        let i = Insn::new(0x61, 2, 1, 4, -1);
        assert_eq!(i.regs, 0x12, "dst in the low nibble, src in the high one");
        assert_eq!(size_of::<ProgLoadAttr>(), 72);
        assert_eq!(size_of::<ProgAttachAttr>(), 24);
        assert_eq!(size_of::<ProgQueryAttr>(), 32);
    }

    #[test]
    fn a_program_the_verifier_refuses_names_the_reason() {
        // Exits without setting r0: refused by every kernel's verifier, or
        // refused earlier for lack of privilege when not root.
        let prog = [Insn::new(0x95, 0, 0, 0, 0)];
        let err = load_cgroup_device_program(&prog, "Apache-2.0").expect_err("refused");
        if err.raw_os_error() == Some(libc::EPERM) {
            return;
        }
        assert!(
            err.to_string().contains("verifier log: ") && err.to_string().contains("R0"),
            "{err}"
        );
    }
}
