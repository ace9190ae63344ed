//! Building the container's root filesystem: mount the rootfs, pivot_root
//! into it, then the spec's mounts, the default devices, masked and
//! read-only paths. Generic over the syscall traits so the sequence is
//! unit-tested with `RecordingSys`.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use kiln_sys::{DeviceKind, FsOps, MountFlags, MountOps};
use oci_spec::runtime::{LinuxDevice, LinuxDeviceType, Mount};

use crate::config::RootfsMount;

/// A failed setup step: what was done, and the cause.
#[derive(Debug)]
pub(crate) struct StepError {
    pub(crate) step: String,
    pub(crate) source: io::Error,
}

impl std::fmt::Display for StepError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.step, self.source)
    }
}

pub(crate) trait Step<T> {
    fn step(self, what: impl FnOnce() -> String) -> Result<T, StepError>;
}

impl<T> Step<T> for io::Result<T> {
    fn step(self, what: impl FnOnce() -> String) -> Result<T, StepError> {
        self.map_err(|source| StepError {
            step: what(),
            source,
        })
    }
}

/// Parsed mount options: flags, propagation, bind and filesystem data.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct MountOptions {
    pub(crate) flags: MountFlags,
    pub(crate) propagation: Option<MountFlags>,
    pub(crate) bind: bool,
    pub(crate) recursive: bool,
    pub(crate) data: Vec<String>,
}

pub(crate) fn parse_options(options: &[String]) -> MountOptions {
    let mut o = MountOptions::default();
    for opt in options {
        let flag = match opt.as_str() {
            "ro" => MountFlags::RDONLY,
            "nosuid" => MountFlags::NOSUID,
            "nodev" => MountFlags::NODEV,
            "noexec" => MountFlags::NOEXEC,
            "sync" => MountFlags::SYNC,
            "strictatime" => MountFlags::STRICTATIME,
            "relatime" => MountFlags::RELATIME,
            "noatime" => MountFlags::NOATIME,
            "nodiratime" => MountFlags::NODIRATIME,
            "rw" | "suid" | "dev" | "exec" | "async" | "atime" | "norelatime" | "nostrictatime" => {
                MountFlags::NONE
            }
            "bind" => {
                o.bind = true;
                MountFlags::NONE
            }
            "rbind" => {
                o.bind = true;
                o.recursive = true;
                MountFlags::NONE
            }
            "private" | "rprivate" | "slave" | "rslave" | "shared" | "rshared" => {
                let p = match opt.trim_start_matches('r') {
                    "private" => MountFlags::PRIVATE,
                    "slave" => MountFlags::SLAVE,
                    _ => MountFlags::SHARED,
                };
                let rec = if opt.starts_with('r') {
                    MountFlags::REC
                } else {
                    MountFlags::NONE
                };
                o.propagation = Some(p | rec);
                MountFlags::NONE
            }
            _ => {
                o.data.push(opt.clone());
                MountFlags::NONE
            }
        };
        o.flags = o.flags | flag;
    }
    o
}

fn data(o: &MountOptions) -> Option<String> {
    if o.data.is_empty() {
        None
    } else {
        Some(o.data.join(","))
    }
}

/// Everything needed to build the root filesystem.
#[derive(Debug)]
pub(crate) struct RootfsPlan<'a> {
    /// Mounts making up `/`; the first one is mounted at `target`.
    pub(crate) rootfs: &'a [RootfsMount],
    /// A host directory (in the container's new mount namespace) to mount the rootfs on.
    pub(crate) target: PathBuf,
    /// The spec's mounts, in order.
    pub(crate) mounts: &'a [Mount],
    /// Paths hidden from the container.
    pub(crate) masked: &'a [String],
    /// Paths made read-only.
    pub(crate) readonly: &'a [String],
    /// Make `/` read-only at the end.
    pub(crate) readonly_root: bool,
    /// Controllers to mount under a `cgroup` mount (v1 and hybrid hosts); empty means cgroup2.
    pub(crate) cgroup_v1_controllers: &'a [String],
    /// Building inside a new user namespace: no `mknod` (devices are bind
    /// mounts of the host's), and `/proc` and `/sys` are mounted before the
    /// old root goes (the kernel allows a new procfs or sysfs in a user
    /// namespace only while a full one is visible in the mount namespace).
    pub(crate) userns: bool,
    /// The rootfs is already mounted on `target` (by the supervisor, as
    /// root, outside the user namespace): bind it instead of mounting it.
    pub(crate) premounted: bool,
    /// The spec's device nodes (`--device`, `--privileged`), made after
    /// `/dev`'s defaults.
    pub(crate) devices: &'a [LinuxDevice],
}

const DEVICES: [(&str, u32, u32); 6] = [
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
];

const DEV_LINKS: [(&str, &str); 6] = [
    ("/proc/self/fd", "fd"),
    ("/proc/self/fd/0", "stdin"),
    ("/proc/self/fd/1", "stdout"),
    ("/proc/self/fd/2", "stderr"),
    ("/proc/kcore", "core"),
    ("pts/ptmx", "ptmx"),
];

fn dest(m: &Mount) -> PathBuf {
    Path::new("/").join(m.destination().strip_prefix("/").unwrap_or(m.destination()))
}

/// Builds the root filesystem and moves into it. Must run in a fresh mount
/// namespace; afterwards the host's filesystem is unreachable.
pub(crate) fn setup_rootfs<S: MountOps + FsOps>(
    sys: &S,
    plan: &RootfsPlan<'_>,
) -> Result<(), StepError> {
    sys.mount(
        None,
        Path::new("/"),
        None,
        MountFlags::REC | MountFlags::PRIVATE,
        None,
    )
    .step(|| "make / private".into())?;
    mount_rootfs(sys, plan)?;
    // Host-side sources of bind mounts are captured as detached trees now;
    // after pivot_root no host path can be named any more.
    let trees = capture_bind_sources(sys, plan.mounts)?;
    let (early, devices, spec_binds) = if plan.userns {
        (
            mount_proc_sys_early(sys, plan)?,
            capture_host_devices(sys)?,
            capture_spec_devices(sys, plan.devices)?,
        )
    } else {
        (vec![false; plan.mounts.len()], Vec::new(), Vec::new())
    };
    pivot_into(sys, &plan.target)?;
    let dev_tmpfs = mount_spec_mounts(sys, plan.mounts, trees, &early)?;
    if dev_tmpfs {
        populate_dev(sys, devices)?;
    }
    make_spec_devices(sys, plan.devices, spec_binds)?;
    mask_paths(sys, plan.masked)?;
    make_paths_read_only(sys, plan.readonly)
}

/// A bind source captured before `pivot_root`: the detached tree and
/// whether it is a directory.
type BindTree = Option<(OwnedFd, bool)>;

/// Opens the source of every bind mount of `mounts` as a detached tree
/// (`None` for the other mounts), while host paths can still be named.
fn capture_bind_sources<S: MountOps + FsOps>(
    sys: &S,
    mounts: &[Mount],
) -> Result<Vec<BindTree>, StepError> {
    let mut trees = Vec::with_capacity(mounts.len());
    for m in mounts {
        let o = parse_options(m.options().as_deref().unwrap_or_default());
        let is_bind = o.bind || m.typ().as_deref() == Some("bind");
        if !is_bind {
            trees.push(None);
            continue;
        }
        let src = m.source().clone().unwrap_or_default();
        let is_dir = sys
            .probe_dir(&src)
            .step(|| format!("stat bind source {}", src.display()))?;
        let Some(is_dir) = is_dir else {
            return Err(StepError {
                step: format!("bind source {}", src.display()),
                source: io::Error::from(io::ErrorKind::NotFound),
            });
        };
        let tree = sys
            .open_tree(&src, o.recursive)
            .step(|| format!("open bind source {}", src.display()))?;
        trees.push(Some((tree, is_dir)));
    }
    Ok(trees)
}

/// In a user namespace: procfs and sysfs now, below the rootfs, while the
/// host's are still visible; only on a real top-level directory (lstat:
/// a symlink planted in the image is refused). Returns which of the
/// spec's mounts were done.
fn mount_proc_sys_early<S: MountOps + FsOps>(
    sys: &S,
    plan: &RootfsPlan<'_>,
) -> Result<Vec<bool>, StepError> {
    let mut early = vec![false; plan.mounts.len()];
    for (i, m) in plan.mounts.iter().enumerate() {
        let typ = m.typ().clone().unwrap_or_default();
        if typ != "proc" && typ != "sysfs" {
            continue;
        }
        let rel = dest(m);
        let rel = rel.strip_prefix("/").unwrap_or(&rel);
        if rel.components().count() != 1 {
            continue;
        }
        let at = plan.target.join(rel);
        match sys
            .probe_dir(&at)
            .step(|| format!("stat {}", at.display()))?
        {
            Some(true) => {}
            None => sys
                .mkdir_all(&at, 0o755)
                .step(|| format!("mkdir {}", at.display()))?,
            Some(false) => {
                return Err(StepError {
                    step: format!("mount {typ} on {}", dest(m).display()),
                    source: io::Error::other("not a directory in the image"),
                });
            }
        }
        let o = parse_options(m.options().as_deref().unwrap_or_default());
        let source = m.source().clone().unwrap_or_else(|| PathBuf::from(&typ));
        sys.mount(Some(&source), &at, Some(&typ), o.flags, data(&o).as_deref())
            .step(|| format!("mount {typ} on {}", dest(m).display()))?;
        early[i] = true;
    }
    Ok(early)
}

/// In a user namespace (no `mknod`): the host's device nodes as detached
/// trees, bound into the container's `/dev` later.
fn capture_host_devices<S: MountOps>(sys: &S) -> Result<Vec<(&'static str, OwnedFd)>, StepError> {
    let mut devices = Vec::new();
    for (name, _, _) in DEVICES {
        let host = Path::new("/dev").join(name);
        let tree = sys
            .open_tree(&host, false)
            .step(|| format!("open {}", host.display()))?;
        devices.push((name, tree));
    }
    Ok(devices)
}

/// In a user namespace (no `mknod`): the host's nodes at the paths of the
/// spec's devices, as detached trees (the spec names no host path: the
/// container path is the host's, as runc takes it rootless).
fn capture_spec_devices<S: MountOps>(
    sys: &S,
    devices: &[LinuxDevice],
) -> Result<Vec<OwnedFd>, StepError> {
    devices
        .iter()
        .map(|d| {
            sys.open_tree(d.path(), false)
                .step(|| format!("open device {}", d.path().display()))
        })
        .collect()
}

/// Makes the spec's device nodes: `mknod` with the spec's mode (0666 when
/// none, whatever the umask) and owner, or, in a user namespace, binds of
/// the host's nodes captured before `pivot_root`. A node already there
/// (one of `/dev`'s defaults) is kept.
fn make_spec_devices<S: MountOps + FsOps>(
    sys: &S,
    devices: &[LinuxDevice],
    binds: Vec<OwnedFd>,
) -> Result<(), StepError> {
    let mut binds = binds.into_iter();
    for d in devices {
        let path = Path::new("/").join(d.path().strip_prefix("/").unwrap_or(d.path()));
        let bind = binds.next();
        if sys
            .probe_dir(&path)
            .step(|| format!("stat {}", path.display()))?
            .is_some()
        {
            continue;
        }
        if let Some(parent) = path.parent() {
            sys.mkdir_all(parent, 0o755)
                .step(|| format!("mkdir {}", parent.display()))?;
        }
        if let Some(tree) = bind {
            sys.create_file(&path)
                .step(|| format!("create {}", path.display()))?;
            sys.move_mount(tree.as_fd(), &path)
                .step(|| format!("bind device {}", path.display()))?;
            continue;
        }
        let kind = match d.typ() {
            LinuxDeviceType::B => DeviceKind::Block,
            LinuxDeviceType::C | LinuxDeviceType::U => DeviceKind::Char,
            other => {
                return Err(StepError {
                    step: format!("device {}", path.display()),
                    source: io::Error::other(format!(
                        "type {} is not a device node kiln makes",
                        other.as_str()
                    )),
                });
            }
        };
        let number = |n: i64| u32::try_from(n).unwrap_or(u32::MAX);
        let umask = kiln_sys::process::set_umask(0);
        let made = sys.mknod(
            &path,
            kind,
            d.file_mode().unwrap_or(0o666) & 0o7777,
            number(d.major()),
            number(d.minor()),
        );
        kiln_sys::process::set_umask(umask);
        made.step(|| format!("mknod {}", path.display()))?;
        if d.uid().is_some() || d.gid().is_some() {
            sys.lchown(&path, d.uid().unwrap_or(0), d.gid().unwrap_or(0))
                .step(|| format!("chown {}", path.display()))?;
        }
    }
    Ok(())
}

/// Makes `target` the root and lets go of the old one.
fn pivot_into<S: MountOps + FsOps>(sys: &S, target: &Path) -> Result<(), StepError> {
    sys.chdir(target)
        .step(|| format!("chdir {}", target.display()))?;
    sys.pivot_root(Path::new("."), Path::new("."))
        .step(|| "pivot_root".into())?;
    sys.umount(Path::new("."), true)
        .step(|| "detach old root".into())?;
    sys.chdir(Path::new("/")).step(|| "chdir /".into())
}

/// Performs the spec's mounts inside the new root (binds from their
/// captured trees), except those done `early` and the cgroup filesystems
/// (`finish_rootfs`). Returns whether `/dev` is a fresh tmpfs.
fn mount_spec_mounts<S: MountOps + FsOps>(
    sys: &S,
    mounts: &[Mount],
    trees: Vec<BindTree>,
    early: &[bool],
) -> Result<bool, StepError> {
    let mut dev_tmpfs = false;
    for ((m, tree), done) in mounts.iter().zip(trees).zip(early) {
        if *done {
            continue;
        }
        let target = dest(m);
        let o = parse_options(m.options().as_deref().unwrap_or_default());
        if let Some((tree, is_dir)) = tree {
            attach_bind(sys, &target, tree, is_dir, &o)?;
            continue;
        }
        let typ = m.typ().clone().unwrap_or_default();
        sys.mkdir_all(&target, 0o755)
            .step(|| format!("mkdir {}", target.display()))?;
        if typ == "cgroup" || typ == "cgroup2" {
            // Mounted by `finish_rootfs`, once in the container's cgroup namespace.
            continue;
        }
        let source = m.source().clone().unwrap_or_else(|| PathBuf::from(&typ));
        sys.mount(
            Some(&source),
            &target,
            Some(&typ),
            o.flags,
            data(&o).as_deref(),
        )
        .step(|| format!("mount {typ} on {}", target.display()))?;
        if let Some(p) = o.propagation {
            sys.mount(None, &target, None, p, None)
                .step(|| format!("propagation of {}", target.display()))?;
        }
        if target == Path::new("/dev") && typ == "tmpfs" {
            dev_tmpfs = true;
        }
    }
    Ok(dev_tmpfs)
}

/// The flags `mount_setattr(2)` sets on a whole bind tree.
const TREE_ATTRS: MountFlags = MountFlags(
    MountFlags::RDONLY.0 | MountFlags::NOSUID.0 | MountFlags::NODEV.0 | MountFlags::NOEXEC.0,
);

/// Attaches a captured bind source at `target` (made as a directory or a
/// file to match), with its flags. `ro`, `nosuid`, `nodev` and `noexec`
/// are set on the detached tree first, on every mount in it for a
/// recursive bind (`AT_RECURSIVE`): a read-only `-v` is read-only down to
/// the mounts below its source, as Docker's (25+) on kernels from 5.12.
fn attach_bind<S: MountOps + FsOps>(
    sys: &S,
    target: &Path,
    tree: OwnedFd,
    is_dir: bool,
    o: &MountOptions,
) -> Result<(), StepError> {
    let attrs = MountFlags(o.flags.0 & TREE_ATTRS.0);
    if attrs != MountFlags::NONE {
        sys.mount_setattr(tree.as_fd(), o.recursive, attrs)
            .step(|| format!("set {} read-only/nosuid/nodev/noexec", target.display()))?;
    }
    if is_dir {
        sys.mkdir_all(target, 0o755)
            .step(|| format!("mkdir {}", target.display()))?;
    } else {
        sys.create_file(target)
            .step(|| format!("create {}", target.display()))?;
    }
    sys.move_mount(tree.as_fd(), target)
        .step(|| format!("bind mount on {}", target.display()))?;
    // Flags mount_setattr does not take (`sync`, `noatime`, ...): a remount
    // of the top mount, which must name every flag it keeps.
    let extra = MountFlags(o.flags.0 & !MountFlags::RELATIME.0 & !MountFlags::STRICTATIME.0);
    if extra.0 & !TREE_ATTRS.0 != 0 {
        sys.mount(
            None,
            target,
            None,
            MountFlags::REMOUNT | MountFlags::BIND | extra,
            None,
        )
        .step(|| format!("remount {}", target.display()))?;
    }
    Ok(())
}

/// Docker's masked paths: a read-only tmpfs over directories, `/dev/null`
/// over anything else; missing paths are skipped.
fn mask_paths<S: MountOps + FsOps>(sys: &S, masked: &[String]) -> Result<(), StepError> {
    for p in masked {
        let path = Path::new(p);
        match sys.probe_dir(path).step(|| format!("stat {p}"))? {
            None => {}
            Some(true) => sys
                .mount(
                    Some(Path::new("tmpfs")),
                    path,
                    Some("tmpfs"),
                    MountFlags::RDONLY,
                    None,
                )
                .step(|| format!("mask {p}"))?,
            Some(false) => sys
                .mount(
                    Some(Path::new("/dev/null")),
                    path,
                    None,
                    MountFlags::BIND,
                    None,
                )
                .step(|| format!("mask {p}"))?,
        }
    }
    Ok(())
}

/// Docker's read-only paths: bound onto themselves and remounted
/// read-only, `nosuid`, `nodev`, `noexec`; missing paths are skipped.
fn make_paths_read_only<S: MountOps + FsOps>(
    sys: &S,
    readonly: &[String],
) -> Result<(), StepError> {
    for p in readonly {
        let path = Path::new(p);
        if sys.probe_dir(path).step(|| format!("stat {p}"))?.is_none() {
            continue;
        }
        sys.mount(
            Some(path),
            path,
            None,
            MountFlags::BIND | MountFlags::REC,
            None,
        )
        .step(|| format!("bind {p} read-only"))?;
        let flags = MountFlags::REMOUNT
            | MountFlags::BIND
            | MountFlags::RDONLY
            | MountFlags::NOSUID
            | MountFlags::NODEV
            | MountFlags::NOEXEC;
        sys.mount(None, path, None, flags, None)
            .step(|| format!("remount {p} read-only"))?;
    }
    Ok(())
}

/// The last steps, run after the container joined its cgroup and cgroup
/// namespace: the cgroup filesystems, then `/` read-only when asked.
pub(crate) fn finish_rootfs<S: MountOps + FsOps>(
    sys: &S,
    plan: &RootfsPlan<'_>,
) -> Result<(), StepError> {
    for m in plan.mounts {
        let typ = m.typ().clone().unwrap_or_default();
        if typ == "cgroup" || typ == "cgroup2" {
            let o = parse_options(m.options().as_deref().unwrap_or_default());
            mount_cgroup(sys, &dest(m), &o, plan.cgroup_v1_controllers)?;
        }
    }
    if plan.readonly_root {
        sys.mount(
            None,
            Path::new("/"),
            None,
            MountFlags::REMOUNT | MountFlags::BIND | MountFlags::RDONLY,
            None,
        )
        .step(|| "remount / read-only".into())?;
    }
    Ok(())
}

pub(crate) fn mount_rootfs<S: MountOps + FsOps>(
    sys: &S,
    plan: &RootfsPlan<'_>,
) -> Result<(), StepError> {
    let target = &plan.target;
    let Some(first) = plan.rootfs.first() else {
        return Err(StepError {
            step: "rootfs".into(),
            source: io::Error::other("no rootfs mount given"),
        });
    };
    let o = parse_options(&first.options);
    if plan.premounted {
        // A mount point of its own, so that pivot_root takes it.
        return sys
            .mount(
                Some(target),
                target,
                None,
                MountFlags::BIND | MountFlags::REC,
                None,
            )
            .step(|| format!("bind premounted rootfs {}", target.display()));
    }
    if o.bind || first.fstype == "bind" {
        let flags = MountFlags::BIND | MountFlags::REC;
        sys.mount(Some(&first.source), target, None, flags, None)
            .step(|| {
                format!(
                    "bind rootfs {} on {}",
                    first.source.display(),
                    target.display()
                )
            })?;
        if o.flags.contains(MountFlags::RDONLY) {
            sys.mount(
                None,
                target,
                None,
                MountFlags::REMOUNT | MountFlags::BIND | o.flags,
                None,
            )
            .step(|| format!("remount rootfs {}", target.display()))?;
        }
    } else {
        // A long overlay chain does not fit mount(2)'s one page of options:
        // it goes through fsconfig, one lower dir at a time.
        sys.mount_with_options(Some(&first.source), target, &first.fstype, o.flags, &o.data)
            .step(|| format!("mount {} rootfs on {}", first.fstype, target.display()))?;
    }
    for extra in &plan.rootfs[1..] {
        // Further mounts are relative to the rootfs (e.g. a volume inside it).
        let o = parse_options(&extra.options);
        let fstype = if o.bind {
            None
        } else {
            Some(extra.fstype.as_str())
        };
        let flags = if o.bind {
            o.flags | MountFlags::BIND | MountFlags::REC
        } else {
            o.flags
        };
        sys.mount(
            Some(&extra.source),
            target,
            fstype,
            flags,
            data(&o).as_deref(),
        )
        .step(|| format!("mount {} on {}", extra.source.display(), target.display()))?;
    }
    Ok(())
}

fn mount_cgroup<S: MountOps + FsOps>(
    sys: &S,
    target: &Path,
    o: &MountOptions,
    controllers: &[String],
) -> Result<(), StepError> {
    let flags = MountFlags(o.flags.0 & !MountFlags::RDONLY.0);
    if controllers.is_empty() {
        return sys
            .mount(
                Some(Path::new("cgroup2")),
                target,
                Some("cgroup2"),
                o.flags,
                None,
            )
            .step(|| format!("mount cgroup2 on {}", target.display()));
    }
    sys.mount(
        Some(Path::new("tmpfs")),
        target,
        Some("tmpfs"),
        flags,
        Some("mode=755"),
    )
    .step(|| format!("mount tmpfs on {}", target.display()))?;
    for c in controllers {
        let (dir, data) = match c.strip_prefix("name=") {
            Some(name) => (name.to_owned(), format!("none,name={name}")),
            None => (c.clone(), c.clone()),
        };
        let sub = target.join(&dir);
        sys.mkdir_all(&sub, 0o755)
            .step(|| format!("mkdir {}", sub.display()))?;
        sys.mount(
            Some(Path::new("cgroup")),
            &sub,
            Some("cgroup"),
            o.flags,
            Some(&data),
        )
        .step(|| format!("mount cgroup {c} on {}", sub.display()))?;
    }
    if o.flags.contains(MountFlags::RDONLY) {
        sys.mount(
            None,
            target,
            None,
            MountFlags::REMOUNT | flags | MountFlags::RDONLY,
            Some("mode=755"),
        )
        .step(|| format!("remount {} read-only", target.display()))?;
    }
    Ok(())
}

/// The device nodes (`mknod`, or the host's nodes bind-mounted when
/// `binds` holds them: no `mknod` in a user namespace) and the links.
fn populate_dev<S: MountOps + FsOps>(
    sys: &S,
    binds: Vec<(&str, OwnedFd)>,
) -> Result<(), StepError> {
    if binds.is_empty() {
        // 0666 whatever the caller's umask (runc clears it around mknod
        // too): under umask 022 a non-root user could not write /dev/null.
        let umask = kiln_sys::process::set_umask(0);
        let made = DEVICES.iter().try_for_each(|&(name, major, minor)| {
            let path = Path::new("/dev").join(name);
            sys.mknod(&path, DeviceKind::Char, 0o666, major, minor)
                .step(|| format!("mknod {}", path.display()))
        });
        kiln_sys::process::set_umask(umask);
        made?;
    }
    for (name, tree) in binds {
        let path = Path::new("/dev").join(name);
        sys.create_file(&path)
            .step(|| format!("create {}", path.display()))?;
        sys.move_mount(tree.as_fd(), &path)
            .step(|| format!("bind {}", path.display()))?;
    }
    for (target, name) in DEV_LINKS {
        let link = Path::new("/dev").join(name);
        if sys
            .probe_dir(&link)
            .step(|| format!("stat {}", link.display()))?
            .is_some()
        {
            continue;
        }
        sys.symlink(Path::new(target), &link)
            .step(|| format!("symlink {}", link.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_sys::RecordingSys;

    fn mount(dest: &str, typ: &str, source: &str, options: &[&str]) -> Mount {
        let v = serde_json::json!({"destination": dest, "type": typ, "source": source, "options": options});
        serde_json::from_value(v).expect("valid mount")
    }

    #[test]
    fn options_split_into_flags_and_data() {
        let o = parse_options(&[
            "nosuid".into(),
            "ro".into(),
            "mode=755".into(),
            "rbind".into(),
            "rprivate".into(),
        ]);
        assert_eq!(o.flags, MountFlags::NOSUID | MountFlags::RDONLY);
        assert!(o.bind && o.recursive);
        assert_eq!(o.propagation, Some(MountFlags::PRIVATE | MountFlags::REC));
        assert_eq!(o.data, vec!["mode=755".to_string()]);
    }

    #[test]
    fn sequence_pivots_before_container_mounts_and_masks_after() {
        let sys = RecordingSys::new();
        sys.add_file("/proc/kcore");
        sys.add_file("/etc/hosts.src");
        sys.add_missing("/dev/fd");
        sys.add_missing("/proc/nope");
        let rootfs = [RootfsMount::bind("/srv/root")];
        let mounts = [
            mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
            mount("/dev", "tmpfs", "tmpfs", &["nosuid", "mode=755"]),
            mount("/etc/hosts", "bind", "/etc/hosts.src", &["rbind", "ro"]),
        ];
        let masked = ["/proc/kcore".to_string(), "/proc/nope".to_string()];
        let readonly = ["/proc/sys".to_string()];
        let plan = RootfsPlan {
            rootfs: &rootfs,
            target: "/state/rootfs".into(),
            mounts: &mounts,
            masked: &masked,
            readonly: &readonly,
            readonly_root: true,
            cgroup_v1_controllers: &[],
            userns: false,
            premounted: false,
            devices: &[],
        };
        setup_rootfs(&sys, &plan).expect("setup succeeds with the fake");
        finish_rootfs(&sys, &plan).expect("finish succeeds with the fake");
        let calls = sys.calls();
        let pos = |prefix: &str| {
            calls
                .iter()
                .position(|c| c.starts_with(prefix))
                .unwrap_or_else(|| panic!("no call {prefix}: {calls:?}"))
        };
        assert_eq!(calls[0], "mount - / - 0x44000 -");
        assert!(pos("open_tree /etc/hosts.src") < pos("pivot_root . ."));
        assert!(pos("pivot_root . .") < pos("umount . true"));
        assert!(pos("umount . true") < pos("mount proc /proc proc"));
        assert!(pos("create_file /etc/hosts") < pos("move_mount /etc/hosts"));
        assert!(
            pos("mount_setattr true 0x1") < pos("move_mount /etc/hosts"),
            "an rbind,ro tree is read-only all the way down before it is attached"
        );
        assert!(
            !calls.iter().any(|c| c.starts_with("mount - /etc/hosts")),
            "no remount clears the source's other flags: {calls:?}"
        );
        assert!(pos("mknod /dev/null Char 666 1:3") > pos("mount tmpfs /dev tmpfs"));
        assert!(pos("symlink /proc/self/fd /dev/fd") > pos("mknod /dev/tty"));
        assert!(pos("mount /dev/null /proc/kcore - 0x1000") > pos("mount proc /proc"));
        assert!(
            !calls
                .iter()
                .any(|c| c.contains("/proc/nope") && c.starts_with("mount"))
        );
        assert!(pos("mount - /proc/sys - 0x102f") > pos("mount /proc/sys /proc/sys - 0x5000"));
        assert_eq!(
            calls.last().map(String::as_str),
            Some("mount - / - 0x1021 -")
        );
    }

    #[test]
    fn bind_flags_go_on_the_tree_and_only_the_others_need_a_remount() {
        let sys = RecordingSys::new();
        sys.add_file("/src/f");
        let rootfs = [RootfsMount::bind("/srv/root")];
        let mounts = [
            mount("/a", "bind", "/src/a", &["bind", "ro", "nosuid"]),
            mount("/b", "bind", "/src/b", &["rbind", "ro", "noatime"]),
            mount("/c", "bind", "/src/c", &["rbind", "rw"]),
        ];
        let plan = RootfsPlan {
            mounts: &mounts,
            ..bare_plan(&rootfs)
        };
        setup_rootfs(&sys, &plan).expect("setup");
        let after_pivot: Vec<String> = sys
            .calls()
            .into_iter()
            .skip_while(|c| !c.starts_with("umount . true"))
            .filter(|c| !c.starts_with("mkdir_all") && !c.starts_with("chdir"))
            .collect();
        let ro_nosuid = MountFlags::RDONLY | MountFlags::NOSUID;
        let ro_noatime =
            MountFlags::REMOUNT | MountFlags::BIND | MountFlags::RDONLY | MountFlags::NOATIME;
        assert_eq!(
            after_pivot,
            vec![
                "umount . true".to_string(),
                format!("mount_setattr false {:#x}", ro_nosuid.0),
                "move_mount /a".to_string(),
                format!("mount_setattr true {:#x}", MountFlags::RDONLY.0),
                "move_mount /b".to_string(),
                format!("mount - /b - {:#x} -", ro_noatime.0),
                "move_mount /c".to_string(),
            ]
        );
    }

    #[test]
    fn spec_devices_are_made_with_their_mode_and_owner_or_bound_in_a_userns() {
        let devices: Vec<LinuxDevice> = serde_json::from_value(serde_json::json!([
            {"path": "/dev/net/tun", "type": "c", "major": 10, "minor": 200, "fileMode": 0o620, "uid": 0, "gid": 5},
            {"path": "/dev/xvda", "type": "b", "major": 8, "minor": 0},
            {"path": "/dev/null", "type": "c", "major": 1, "minor": 3},
        ]))
        .expect("devices");
        let sys = RecordingSys::new();
        sys.add_missing("/dev/net/tun");
        sys.add_missing("/dev/xvda");
        make_spec_devices(&sys, &devices, Vec::new()).expect("made");
        assert_eq!(
            sys.calls(),
            vec![
                "mkdir_all /dev/net 755",
                "mknod /dev/net/tun Char 620 10:200",
                "lchown /dev/net/tun 0:5",
                "mkdir_all /dev 755",
                "mknod /dev/xvda Block 666 8:0",
            ],
            "/dev/null is already there"
        );
        // In a user namespace: the host's nodes, captured before pivot_root.
        let sys = RecordingSys::new();
        sys.add_missing("/dev/net/tun");
        let trees = capture_spec_devices(&sys, &devices[..1]).expect("captured");
        make_spec_devices(&sys, &devices[..1], trees).expect("bound");
        assert_eq!(
            sys.calls(),
            vec![
                "open_tree /dev/net/tun false",
                "mkdir_all /dev/net 755",
                "create_file /dev/net/tun",
                "move_mount /dev/net/tun",
            ]
        );
    }

    /// A plan that mounts `rootfs` on `/t` and nothing else.
    fn bare_plan(rootfs: &[RootfsMount]) -> RootfsPlan<'_> {
        RootfsPlan {
            rootfs,
            target: "/t".into(),
            mounts: &[],
            masked: &[],
            readonly: &[],
            readonly_root: false,
            cgroup_v1_controllers: &[],
            userns: false,
            premounted: false,
            devices: &[],
        }
    }

    #[test]
    fn failure_names_the_step() {
        let sys = RecordingSys::new();
        sys.fail_on("pivot_root");
        let rootfs = [RootfsMount::bind("/srv/root")];
        let plan = bare_plan(&rootfs);
        let err = setup_rootfs(&sys, &plan).expect_err("pivot fails");
        assert_eq!(err.step, "pivot_root");
    }

    #[test]
    fn an_overlay_chain_over_a_page_mounts_through_fsconfig() {
        let overlay = |layers: usize| RootfsMount {
            fstype: "overlay".into(),
            source: "overlay".into(),
            options: vec![
                "upperdir=/s/9/fs".into(),
                "workdir=/s/9/work".into(),
                format!(
                    "lowerdir={}",
                    (0..layers)
                        .map(|i| format!("/var/lib/kiln/snapshots/overlay/l/{i}"))
                        .collect::<Vec<_>>()
                        .join(":")
                ),
            ],
        };
        for (layers, call) in [
            (10, "mount overlay /t overlay 0x0 upperdir="),
            (200, "mount_fs overlay /t overlay 0x0 3 options"),
        ] {
            let sys = RecordingSys::new();
            let rootfs = [overlay(layers)];
            let plan = bare_plan(&rootfs);
            mount_rootfs(&sys, &plan).expect("mount succeeds with the fake");
            let calls = sys.calls();
            assert!(calls[0].starts_with(call), "{layers} layers: {calls:?}");
        }
    }
}
