//! `RecordingSys`: a fake that records every call instead of making it.

use std::cell::RefCell;
use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::path::Path;

use crate::types::{
    CapabilitySets, DeviceKind, Fork, MountFlags, Namespaces, Rlimit, SockFilter, WaitStatus,
};
use crate::{CredOps, FsOps, LimitOps, MountOps, NsOps, ProcOps};

/// The pid [`ProcOps::fork`] gives the parent, unless told otherwise.
pub const FAKE_CHILD_PID: i32 = 4242;

/// Records each call of [`MountOps`], [`NsOps`], [`CredOps`], [`FsOps`],
/// [`ProcOps`] and [`LimitOps`] as one line of text, and succeeds; a call
/// whose line starts with a prefix given to [`RecordingSys::fail_on`]
/// fails with `EPERM` instead (or the errno given to
/// [`RecordingSys::fail_on_with`]).
///
/// Nothing is done for real: `fork` returns [`Fork::Parent`] with
/// [`FAKE_CHILD_PID`] (or [`Fork::Child`] after
/// [`RecordingSys::fork_as_child`]), `waitpid` reports the status given to
/// [`RecordingSys::set_wait_status`] (exit 0 by default), `execve` returns
/// an error, `exit` panics with `RecordingSys: exit(CODE)` (the only way a
/// fake can not return), and `getrlimit` reports what `setrlimit` or
/// [`RecordingSys::set_rlimit`] stored (unlimited otherwise).
#[derive(Debug, Default)]
pub struct RecordingSys {
    calls: RefCell<Vec<String>>,
    fail: RefCell<Vec<(String, i32)>>,
    files: RefCell<Vec<std::path::PathBuf>>,
    missing: RefCell<Vec<std::path::PathBuf>>,
    fork_child: std::cell::Cell<bool>,
    wait_status: std::cell::Cell<Option<WaitStatus>>,
    rlimits: RefCell<Vec<(u32, Rlimit)>>,
}

impl RecordingSys {
    /// A fake with no calls recorded.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes calls whose record starts with `prefix` fail.
    pub fn fail_on(&self, prefix: &str) {
        self.fail_on_with(prefix, libc::EPERM);
    }

    /// Makes calls whose record starts with `prefix` fail with `errno`.
    pub fn fail_on_with(&self, prefix: &str, errno: i32) {
        self.fail.borrow_mut().push((prefix.to_owned(), errno));
    }

    /// Makes [`FsOps::probe_dir`] report `path` as a file (everything
    /// else is a directory unless marked missing).
    pub fn add_file(&self, path: &str) {
        self.files.borrow_mut().push(path.into());
    }

    /// Makes [`FsOps::probe_dir`] report `path` as missing.
    pub fn add_missing(&self, path: &str) {
        self.missing.borrow_mut().push(path.into());
    }

    /// Makes [`ProcOps::fork`] return [`Fork::Child`] (the code under test
    /// then takes the child's path).
    pub fn fork_as_child(&self) {
        self.fork_child.set(true);
    }

    /// What [`ProcOps::waitpid`] reports for any child.
    pub fn set_wait_status(&self, status: WaitStatus) {
        self.wait_status.set(Some(status));
    }

    /// What [`LimitOps::getrlimit`] reports for `resource`.
    pub fn set_rlimit(&self, resource: u32, limit: Rlimit) {
        let mut l = self.rlimits.borrow_mut();
        l.retain(|(r, _)| *r != resource);
        l.push((resource, limit));
    }

    /// The calls so far, one line each.
    pub fn calls(&self) -> Vec<String> {
        self.calls.borrow().clone()
    }

    fn record(&self, line: String) -> io::Result<()> {
        let failing = self
            .fail
            .borrow()
            .iter()
            .find(|(p, _)| line.starts_with(p.as_str()))
            .map(|(_, errno)| *errno);
        self.calls.borrow_mut().push(line);
        match failing {
            Some(errno) => Err(io::Error::from_raw_os_error(errno)),
            None => Ok(()),
        }
    }
}

impl MountOps for RecordingSys {
    fn mount(
        &self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MountFlags,
        data: Option<&str>,
    ) -> io::Result<()> {
        self.record(format!(
            "mount {} {} {} {:#x} {}",
            source.map_or("-".into(), |s| s.display().to_string()),
            target.display(),
            fstype.unwrap_or("-"),
            flags.0,
            data.unwrap_or("-")
        ))
    }
    fn umount(&self, target: &Path, detach: bool) -> io::Result<()> {
        self.record(format!("umount {} {detach}", target.display()))
    }
    fn pivot_root(&self, new_root: &Path, put_old: &Path) -> io::Result<()> {
        self.record(format!(
            "pivot_root {} {}",
            new_root.display(),
            put_old.display()
        ))
    }
    fn open_tree(&self, path: &Path, recursive: bool) -> io::Result<OwnedFd> {
        self.record(format!("open_tree {} {recursive}", path.display()))?;
        std::fs::File::open("/dev/null").map(OwnedFd::from)
    }
    fn move_mount(&self, _tree: BorrowedFd<'_>, target: &Path) -> io::Result<()> {
        self.record(format!("move_mount {}", target.display()))
    }
    fn open_tree_fd(&self, _fd: BorrowedFd<'_>, recursive: bool) -> io::Result<OwnedFd> {
        self.record(format!("open_tree_fd {recursive}"))?;
        std::fs::File::open("/dev/null").map(OwnedFd::from)
    }
    fn mount_setattr(
        &self,
        _tree: BorrowedFd<'_>,
        recursive: bool,
        set: MountFlags,
    ) -> io::Result<()> {
        self.record(format!("mount_setattr {recursive} {:#x}", set.0))
    }
    fn mount_fs(
        &self,
        source: Option<&Path>,
        target: &Path,
        fstype: &str,
        flags: MountFlags,
        options: &[String],
    ) -> io::Result<()> {
        self.record(format!(
            "mount_fs {} {} {fstype} {:#x} {} options",
            source.map_or("-".into(), |s| s.display().to_string()),
            target.display(),
            flags.0,
            options.len()
        ))
    }
    fn mount_from(
        &self,
        dir: &Path,
        source: Option<&Path>,
        target: &Path,
        fstype: &str,
        flags: MountFlags,
        options: &[String],
    ) -> io::Result<()> {
        self.record(format!(
            "mount_from {} {} {} {fstype} {:#x} {}",
            dir.display(),
            source.map_or("-".into(), |s| s.display().to_string()),
            target.display(),
            flags.0,
            options.join(",")
        ))
    }
}

impl NsOps for RecordingSys {
    fn unshare(&self, ns: Namespaces) -> io::Result<()> {
        self.record(format!("unshare {:#x}", ns.0))
    }
    fn setns(&self, _fd: BorrowedFd<'_>, ns: Namespaces) -> io::Result<()> {
        self.record(format!("setns {:#x}", ns.0))
    }
    fn sethostname(&self, name: &str) -> io::Result<()> {
        self.record(format!("sethostname {name}"))
    }
    fn loopback_up(&self) -> io::Result<()> {
        self.record("loopback_up".into())
    }
}

impl CredOps for RecordingSys {
    fn setgroups(&self, groups: &[u32]) -> io::Result<()> {
        self.record(format!("setgroups {groups:?}"))
    }
    fn setgid(&self, gid: u32) -> io::Result<()> {
        self.record(format!("setgid {gid}"))
    }
    fn setuid(&self, uid: u32) -> io::Result<()> {
        self.record(format!("setuid {uid}"))
    }
    fn set_keepcaps(&self, keep: bool) -> io::Result<()> {
        self.record(format!("set_keepcaps {keep}"))
    }
    fn drop_bounding(&self, keep: &[crate::Capability]) -> io::Result<()> {
        let mut k: Vec<String> = keep.iter().map(|c| c.to_string()).collect();
        k.sort();
        self.record(format!("drop_bounding keep={}", k.join(",")))
    }
    fn set_capabilities(&self, sets: &CapabilitySets) -> io::Result<()> {
        let names = |v: &[crate::Capability]| {
            let mut n: Vec<String> = v.iter().map(|c| c.to_string()).collect();
            n.sort();
            n.join(",")
        };
        self.record(format!(
            "set_capabilities effective={} permitted={} inheritable={} ambient={}",
            names(&sets.effective),
            names(&sets.permitted),
            names(&sets.inheritable),
            names(&sets.ambient)
        ))
    }
    fn set_no_new_privs(&self) -> io::Result<()> {
        self.record("set_no_new_privs".into())
    }
    fn set_dumpable(&self, dumpable: bool) -> io::Result<()> {
        self.record(format!("set_dumpable {dumpable}"))
    }
}

impl FsOps for RecordingSys {
    fn mkdir_all(&self, path: &Path, mode: u32) -> io::Result<()> {
        self.record(format!("mkdir_all {} {mode:o}", path.display()))
    }
    fn create_file(&self, path: &Path) -> io::Result<()> {
        self.record(format!("create_file {}", path.display()))
    }
    fn mknod(
        &self,
        path: &Path,
        kind: DeviceKind,
        mode: u32,
        major: u32,
        minor: u32,
    ) -> io::Result<()> {
        self.record(format!(
            "mknod {} {kind:?} {mode:o} {major}:{minor}",
            path.display()
        ))
    }
    fn symlink(&self, target: &Path, link: &Path) -> io::Result<()> {
        self.record(format!("symlink {} {}", target.display(), link.display()))
    }
    fn chdir(&self, path: &Path) -> io::Result<()> {
        self.record(format!("chdir {}", path.display()))
    }
    fn lchown(&self, path: &Path, uid: u32, gid: u32) -> io::Result<()> {
        self.record(format!("lchown {} {uid}:{gid}", path.display()))
    }
    fn probe_dir(&self, path: &Path) -> io::Result<Option<bool>> {
        if self.missing.borrow().iter().any(|p| p == path) {
            Ok(None)
        } else {
            Ok(Some(!self.files.borrow().iter().any(|p| p == path)))
        }
    }
}

impl ProcOps for RecordingSys {
    fn fork(&self) -> io::Result<Fork> {
        self.record("fork".into())?;
        Ok(if self.fork_child.get() {
            Fork::Child
        } else {
            Fork::Parent(FAKE_CHILD_PID)
        })
    }
    fn waitpid(&self, pid: i32, nohang: bool) -> io::Result<Option<(i32, WaitStatus)>> {
        self.record(format!("waitpid {pid} {nohang}"))?;
        let status = self.wait_status.get().unwrap_or(WaitStatus::Exited(0));
        Ok(Some((pid, status)))
    }
    fn kill(&self, pid: i32, signal: i32) -> io::Result<()> {
        self.record(format!("kill {pid} {signal}"))
    }
    fn execve(&self, path: &Path, args: &[String], env: &[String]) -> io::Error {
        let line = format!(
            "execve {} [{}] {} env",
            path.display(),
            args.join(" "),
            env.len()
        );
        match self.record(line) {
            Err(e) => e,
            Ok(()) => io::Error::other("RecordingSys records execve and executes nothing"),
        }
    }
    fn setsid(&self) -> io::Result<()> {
        self.record("setsid".into())
    }
    fn set_controlling_tty(&self, _fd: BorrowedFd<'_>) -> io::Result<()> {
        self.record("set_controlling_tty".into())
    }
    fn set_parent_death_signal(&self, signal: i32) -> io::Result<()> {
        self.record(format!("set_parent_death_signal {signal}"))
    }
    fn exit(&self, code: i32) -> ! {
        let _ = self.record(format!("exit {code}"));
        panic!("RecordingSys: exit({code})")
    }
}

impl LimitOps for RecordingSys {
    fn getrlimit(&self, resource: u32) -> io::Result<Rlimit> {
        self.record(format!("getrlimit {resource}"))?;
        let stored = self
            .rlimits
            .borrow()
            .iter()
            .find(|(r, _)| *r == resource)
            .map(|(_, l)| *l);
        Ok(stored.unwrap_or(Rlimit {
            soft: u64::MAX,
            hard: u64::MAX,
        }))
    }
    fn setrlimit(&self, resource: u32, limit: Rlimit) -> io::Result<()> {
        self.record(format!(
            "setrlimit {resource} {} {}",
            limit.soft, limit.hard
        ))?;
        self.set_rlimit(resource, limit);
        Ok(())
    }
    fn cloexec_from(&self, first: i32) -> io::Result<()> {
        self.record(format!("cloexec_from {first}"))
    }
    fn close_from(&self, first: i32) -> io::Result<()> {
        self.record(format!("close_from {first}"))
    }
    fn install_seccomp(&self, filter: &[SockFilter]) -> io::Result<()> {
        self.record(format!("install_seccomp {} instructions", filter.len()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An overlay over `n` layers under kiln's default root.
    fn deep_overlay(n: usize) -> Vec<String> {
        let root = "/var/lib/kiln/snapshots/overlay";
        let lowers: Vec<String> = (0..n).map(|i| format!("{root}/l/{i}")).collect();
        vec![
            format!("upperdir={root}/snapshots/{n}/fs"),
            format!("workdir={root}/snapshots/{n}/work"),
            format!("lowerdir={}", lowers.join(":")),
        ]
    }

    #[test]
    fn mount_with_options_picks_mount_2_fsconfig_or_a_relative_mount() {
        let mount = |sys: &RecordingSys, layers: usize| {
            sys.mount_with_options(
                Some(Path::new("overlay")),
                Path::new("/t"),
                "overlay",
                MountFlags::NONE,
                &deep_overlay(layers),
            )
        };
        let sys = RecordingSys::new();
        mount(&sys, 10).expect("fits a page");
        mount(&sys, 200).expect("fsconfig");
        let calls = sys.calls();
        assert!(calls[0].starts_with("mount overlay /t overlay 0x0 upperdir="));
        assert_eq!(calls[1], "mount_fs overlay /t overlay 0x0 3 options");
        assert_eq!(calls.len(), 2);

        // A kernel without `lowerdir+`: relative paths from the root.
        let sys = RecordingSys::new();
        sys.fail_on_with("mount_fs", libc::EOPNOTSUPP);
        mount(&sys, 200).expect("relative mount");
        let calls = sys.calls();
        assert_eq!(calls.len(), 2, "{calls:?}");
        let relative = calls[1]
            .strip_prefix("mount_from /var/lib/kiln/snapshots/overlay overlay /t overlay 0x0 ")
            .unwrap_or_else(|| panic!("{}", calls[1]));
        assert!(
            relative.starts_with(
                "upperdir=snapshots/200/fs,workdir=snapshots/200/work,lowerdir=l/0:l/1:"
            )
        );
        assert!(relative.len() <= crate::MOUNT_DATA_MAX);

        // Too deep even relative: the error says why, no mount is tried.
        let sys = RecordingSys::new();
        sys.fail_on_with("mount_fs", libc::EOPNOTSUPP);
        let err = mount(&sys, 900).expect_err("too long");
        assert!(
            err.to_string().contains("even with relative paths"),
            "{err}"
        );
        assert_eq!(sys.calls().len(), 1);
        // Other errors of fsconfig are not retried.
        let sys = RecordingSys::new();
        sys.fail_on("mount_fs");
        assert!(mount(&sys, 200).is_err());
        assert_eq!(sys.calls().len(), 1);
    }

    #[test]
    fn records_tree_clones_and_their_attributes() {
        use std::os::fd::AsFd as _;
        let sys = RecordingSys::new();
        let file = std::fs::File::open("/dev/null").expect("open");
        let tree = sys.open_tree_fd(file.as_fd(), true).expect("recorded");
        sys.mount_setattr(tree.as_fd(), true, MountFlags::RDONLY)
            .expect("recorded");
        sys.fail_on("mount_setattr");
        assert!(
            sys.mount_setattr(tree.as_fd(), false, MountFlags::NODEV)
                .is_err()
        );
        assert_eq!(
            sys.calls(),
            vec![
                "open_tree_fd true".to_string(),
                "mount_setattr true 0x1".to_string(),
                "mount_setattr false 0x4".to_string(),
            ]
        );
    }

    #[test]
    fn records_and_fails_on_prefix() {
        let sys = RecordingSys::new();
        sys.fail_on("mount proc");
        sys.sethostname("box").expect("sethostname is recorded");
        let err = sys
            .mount(
                Some(Path::new("proc")),
                Path::new("/proc"),
                Some("proc"),
                MountFlags::NOSUID,
                None,
            )
            .expect_err("mount proc fails");
        assert_eq!(err.raw_os_error(), Some(libc::EPERM));
        assert_eq!(
            sys.calls(),
            vec![
                "sethostname box".to_string(),
                "mount proc /proc proc 0x2 -".to_string()
            ]
        );
    }
    #[test]
    fn ns_ops_are_recorded() {
        let sys = RecordingSys::new();
        let file = std::fs::File::open("/dev/null").expect("open");
        use std::os::fd::AsFd as _;
        sys.unshare(Namespaces::UTS).expect("unshare");
        sys.setns(file.as_fd(), Namespaces::NET).expect("setns");
        sys.loopback_up().expect("lo");
        sys.fail_on("sethostname");
        assert!(sys.sethostname("box").is_err());
        assert_eq!(
            sys.calls(),
            vec![
                format!("unshare {:#x}", Namespaces::UTS.0),
                format!("setns {:#x}", Namespaces::NET.0),
                "loopback_up".to_string(),
                "sethostname box".to_string(),
            ]
        );
    }

    #[test]
    fn cred_ops_are_recorded() {
        let sys = RecordingSys::new();
        sys.setgroups(&[10, 20]).expect("groups");
        sys.setgid(5).expect("gid");
        sys.set_keepcaps(true).expect("keepcaps");
        sys.drop_bounding(&[crate::Capability::CAP_KILL, crate::Capability::CAP_CHOWN])
            .expect("bounding");
        sys.set_capabilities(&CapabilitySets {
            effective: vec![crate::Capability::CAP_KILL],
            ..Default::default()
        })
        .expect("caps");
        sys.set_no_new_privs().expect("nnp");
        sys.set_dumpable(false).expect("dumpable");
        sys.fail_on_with("setuid", libc::EINVAL);
        let err = sys.setuid(1000).expect_err("told to fail");
        assert_eq!(err.raw_os_error(), Some(libc::EINVAL));
        assert_eq!(
            sys.calls(),
            vec![
                "setgroups [10, 20]",
                "setgid 5",
                "set_keepcaps true",
                "drop_bounding keep=CAP_CHOWN,CAP_KILL",
                "set_capabilities effective=CAP_KILL permitted= inheritable= ambient=",
                "set_no_new_privs",
                "set_dumpable false",
                "setuid 1000",
            ]
        );
    }

    #[test]
    fn fs_ops_are_recorded_and_probes_answer_as_told() {
        let sys = RecordingSys::new();
        sys.mkdir_all(Path::new("/a/b"), 0o755).expect("mkdir");
        sys.create_file(Path::new("/a/f")).expect("file");
        sys.mknod(Path::new("/dev/null"), DeviceKind::Char, 0o666, 1, 3)
            .expect("mknod");
        sys.symlink(Path::new("/proc/self/fd"), Path::new("/dev/fd"))
            .expect("symlink");
        sys.chdir(Path::new("/")).expect("chdir");
        sys.lchown(Path::new("/a"), 1, 2).expect("lchown");
        sys.add_file("/etc/hosts");
        sys.add_missing("/nope");
        assert_eq!(
            sys.probe_dir(Path::new("/etc/hosts")).expect("probe"),
            Some(false)
        );
        assert_eq!(sys.probe_dir(Path::new("/nope")).expect("probe"), None);
        assert_eq!(sys.probe_dir(Path::new("/etc")).expect("probe"), Some(true));
        assert_eq!(
            sys.calls(),
            vec![
                "mkdir_all /a/b 755",
                "create_file /a/f",
                "mknod /dev/null Char 666 1:3",
                "symlink /proc/self/fd /dev/fd",
                "chdir /",
                "lchown /a 1:2",
            ],
            "probes are questions, not calls"
        );
    }

    #[test]
    fn proc_ops_are_recorded_and_answer_as_told() {
        let sys = RecordingSys::new();
        assert_eq!(sys.fork().expect("fork"), Fork::Parent(FAKE_CHILD_PID));
        sys.fork_as_child();
        assert_eq!(sys.fork().expect("fork"), Fork::Child);
        assert_eq!(
            sys.waitpid(7, false).expect("wait"),
            Some((7, WaitStatus::Exited(0)))
        );
        sys.set_wait_status(WaitStatus::Signaled(9));
        assert_eq!(
            sys.waitpid(7, true).expect("wait"),
            Some((7, WaitStatus::Signaled(9)))
        );
        sys.kill(7, 15).expect("kill");
        sys.setsid().expect("setsid");
        let file = std::fs::File::open("/dev/null").expect("open");
        use std::os::fd::AsFd as _;
        sys.set_controlling_tty(file.as_fd()).expect("tty");
        sys.set_parent_death_signal(9).expect("pdeathsig");
        let err = sys.execve(Path::new("/bin/sh"), &["sh".into(), "-c".into()], &[]);
        assert!(err.to_string().contains("executes nothing"), "{err}");
        sys.fail_on_with("execve", libc::ENOENT);
        let err = sys.execve(Path::new("/nope"), &[], &[]);
        assert_eq!(err.raw_os_error(), Some(libc::ENOENT));
        let exit = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| sys.exit(3)));
        let msg = exit.expect_err("exit never returns");
        assert_eq!(
            msg.downcast_ref::<String>().map(String::as_str),
            Some("RecordingSys: exit(3)")
        );
        assert_eq!(
            sys.calls(),
            vec![
                "fork",
                "fork",
                "waitpid 7 false",
                "waitpid 7 true",
                "kill 7 15",
                "setsid",
                "set_controlling_tty",
                "set_parent_death_signal 9",
                "execve /bin/sh [sh -c] 0 env",
                "execve /nope [] 0 env",
                "exit 3",
            ]
        );
    }

    #[test]
    fn limit_ops_are_recorded_and_rlimits_remembered() {
        let sys = RecordingSys::new();
        let nofile = libc::RLIMIT_NOFILE;
        assert_eq!(
            sys.getrlimit(nofile).expect("get").hard,
            u64::MAX,
            "unlimited unless told"
        );
        sys.setrlimit(
            nofile,
            Rlimit {
                soft: 1024,
                hard: 4096,
            },
        )
        .expect("set");
        assert_eq!(
            sys.getrlimit(nofile).expect("get"),
            Rlimit {
                soft: 1024,
                hard: 4096
            }
        );
        sys.cloexec_from(3).expect("cloexec");
        sys.close_from(5).expect("close");
        let filter = [SockFilter {
            code: 6,
            jt: 0,
            jf: 0,
            k: 0x7fff_0000,
        }];
        sys.fail_on("install_seccomp");
        assert!(sys.install_seccomp(&filter).is_err());
        assert_eq!(
            sys.calls(),
            vec![
                format!("getrlimit {nofile}"),
                format!("setrlimit {nofile} 1024 4096"),
                format!("getrlimit {nofile}"),
                "cloexec_from 3".to_string(),
                "close_from 5".to_string(),
                "install_seccomp 1 instructions".to_string(),
            ]
        );
    }
}
