//! Plain value types passed to and returned by the syscall traits.

use std::ops::BitOr;

use caps::Capability;

/// Flags of mount(2), a thin typed wrapper over `MS_*`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct MountFlags(pub u64);

impl MountFlags {
    /// No flags.
    pub const NONE: Self = Self(0);
    /// MS_RDONLY.
    pub const RDONLY: Self = Self(libc::MS_RDONLY);
    /// MS_NOSUID.
    pub const NOSUID: Self = Self(libc::MS_NOSUID);
    /// MS_NODEV.
    pub const NODEV: Self = Self(libc::MS_NODEV);
    /// MS_NOEXEC.
    pub const NOEXEC: Self = Self(libc::MS_NOEXEC);
    /// MS_REMOUNT.
    pub const REMOUNT: Self = Self(libc::MS_REMOUNT);
    /// MS_BIND.
    pub const BIND: Self = Self(libc::MS_BIND);
    /// MS_REC.
    pub const REC: Self = Self(libc::MS_REC);
    /// MS_PRIVATE.
    pub const PRIVATE: Self = Self(libc::MS_PRIVATE);
    /// MS_SLAVE.
    pub const SLAVE: Self = Self(libc::MS_SLAVE);
    /// MS_SHARED.
    pub const SHARED: Self = Self(libc::MS_SHARED);
    /// MS_STRICTATIME.
    pub const STRICTATIME: Self = Self(libc::MS_STRICTATIME);
    /// MS_RELATIME.
    pub const RELATIME: Self = Self(libc::MS_RELATIME);
    /// MS_NOATIME.
    pub const NOATIME: Self = Self(libc::MS_NOATIME);
    /// MS_NODIRATIME.
    pub const NODIRATIME: Self = Self(libc::MS_NODIRATIME);
    /// MS_SYNCHRONOUS.
    pub const SYNC: Self = Self(libc::MS_SYNCHRONOUS);

    /// Whether every flag of `other` is set.
    pub fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }
}

impl BitOr for MountFlags {
    type Output = Self;
    fn bitor(self, rhs: Self) -> Self {
        Self(self.0 | rhs.0)
    }
}

/// A set of namespaces (`CLONE_NEW*` flags).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Namespaces(pub i32);

impl Namespaces {
    /// No namespace.
    pub const NONE: Self = Self(0);
    /// CLONE_NEWNS.
    pub const MOUNT: Self = Self(libc::CLONE_NEWNS);
    /// CLONE_NEWUTS.
    pub const UTS: Self = Self(libc::CLONE_NEWUTS);
    /// CLONE_NEWIPC.
    pub const IPC: Self = Self(libc::CLONE_NEWIPC);
    /// CLONE_NEWPID.
    pub const PID: Self = Self(libc::CLONE_NEWPID);
    /// CLONE_NEWNET.
    pub const NET: Self = Self(libc::CLONE_NEWNET);
    /// CLONE_NEWCGROUP.
    pub const CGROUP: Self = Self(libc::CLONE_NEWCGROUP);
    /// CLONE_NEWUSER.
    pub const USER: Self = Self(libc::CLONE_NEWUSER);

    /// Whether every namespace of `other` is in the set.
    pub fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }
}

impl BitOr for Namespaces {
    type Output = Self;
    fn bitor(self, rhs: Self) -> Self {
        Self(self.0 | rhs.0)
    }
}

/// The four per-process capability sets (the bounding set is separate:
/// [`crate::CredOps::drop_bounding`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CapabilitySets {
    /// Effective set.
    pub effective: Vec<Capability>,
    /// Permitted set.
    pub permitted: Vec<Capability>,
    /// Inheritable set.
    pub inheritable: Vec<Capability>,
    /// Ambient set.
    pub ambient: Vec<Capability>,
}

/// The kind of a device node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceKind {
    /// A character device.
    Char,
    /// A block device.
    Block,
}

/// Which side of a fork(2) we are on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fork {
    /// The parent, with the child's pid.
    Parent(i32),
    /// The child.
    Child,
}

/// How a child ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitStatus {
    /// Exited with a code.
    Exited(i32),
    /// Killed by a signal.
    Signaled(i32),
}

/// A soft and a hard resource limit (`u64::MAX` is unlimited).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rlimit {
    /// The soft limit.
    pub soft: u64,
    /// The hard limit.
    pub hard: u64,
}

/// One classic BPF instruction, laid out as the kernel's `struct sock_filter`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SockFilter {
    /// Opcode.
    pub code: u16,
    /// Jump offset if true.
    pub jt: u8,
    /// Jump offset if false.
    pub jf: u8,
    /// Generic field.
    pub k: u32,
}
