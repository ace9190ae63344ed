//! `kiln cp`, `kiln diff`, `kiln export`: a container's files, through
//! kiln-layer's in-root operations only.
//!
//! The container's side of every copy is a `kiln_fs::Root`: a running
//! container's `/proc/PID/root` (its root as its own mount namespace sees
//! it, volumes included), or a stopped one's snapshot, mounted read-only
//! (read-write for `cp` into it) in the mount namespace of a thread that
//! lives as long as the copy (the mount vanishes with it, even when kiln
//! is killed; the host never sees it). No container path is ever joined
//! onto a host path: a link in the container to `/etc/shadow` is the
//! container's `/etc/shadow`. The host side is the user's own: its links
//! are followed as Docker's client follows them.
//!
//! Docker's rules are in kiln-layer (`plan_copy`, `stat_path`,
//! `archive_path`, `extract_copy`); here are the wiring, the host side and
//! Docker's messages. Errors exit 1, as `docker cp` does.

use std::io::{self, IsTerminal as _, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use anyhow::{Context as _, Result, anyhow, bail};
use kiln_engine::Engine;
use kiln_engine::container::{ContainerRecord, VolumeSpec};
use kiln_layer::{CopyDest, CopyOwner, Root};
use kiln_snapshot::DiffSource;

/// `kiln cp`.
#[derive(Debug, clap::Args)]
#[command(
    override_usage = "kiln cp [OPTIONS] CONTAINER:SRC_PATH DEST_PATH|-\n       kiln cp [OPTIONS] SRC_PATH|- CONTAINER:DEST_PATH"
)]
pub(crate) struct CpArgs {
    /// Archive mode (copy all uid/gid information).
    #[arg(short = 'a', long = "archive")]
    archive: bool,
    /// Always follow symbol link in SRC_PATH.
    #[arg(short = 'L', long = "follow-link")]
    follow_link: bool,
    /// Suppress progress output (kiln prints none).
    #[arg(short = 'q', long)]
    quiet: bool,
    /// CONTAINER:SRC_PATH, a local path, or `-` (a tar archive on stdin).
    #[arg(allow_hyphen_values = true)]
    source: String,
    /// CONTAINER:DEST_PATH, a local path, or `-` (a tar archive on stdout).
    #[arg(allow_hyphen_values = true)]
    destination: String,
}

/// `kiln diff`.
#[derive(Debug, clap::Args)]
pub(crate) struct DiffArgs {
    /// The container.
    container: String,
}

/// `kiln export`.
#[derive(Debug, clap::Args)]
pub(crate) struct ExportArgs {
    /// Write to a file, instead of STDOUT.
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// The container.
    container: String,
}

/// Docker's `splitCpArg`: `CONTAINER:PATH`, unless the argument is an
/// absolute local path or starts with `.` before its `:` (`./a:b`).
fn split_cp_arg(arg: &str) -> (Option<&str>, &str) {
    if arg.starts_with('/') {
        return (None, arg);
    }
    match arg.split_once(':') {
        Some((ctr, path)) if !ctr.starts_with('.') => (Some(ctr), path),
        _ => (None, arg),
    }
}

/// A failure `docker cp` reports in these words.
fn fail(msg: impl std::fmt::Display) -> anyhow::Error {
    anyhow!("{msg}")
}

pub(crate) fn cp(app: &mut Engine, a: &CpArgs) -> Result<u8> {
    let _ = a.quiet;
    exit_1(cp_inner(app, a))
}

fn cp_inner(app: &mut Engine, a: &CpArgs) -> Result<()> {
    if a.source.is_empty() {
        bail!("source can not be empty");
    }
    if a.destination.is_empty() {
        bail!("destination can not be empty");
    }
    let (src_ctr, src) = split_cp_arg(&a.source);
    let (dst_ctr, dst) = split_cp_arg(&a.destination);
    match (src_ctr, dst_ctr) {
        (Some(c), None) => copy_from(app, a, c, src, dst),
        (None, Some(c)) => copy_to(app, a, c, src, dst),
        (Some(_), Some(_)) => bail!("copying between containers is not supported"),
        (None, None) => bail!("must specify at least one container source"),
    }
}

fn find(app: &Engine, name: &str) -> Result<ContainerRecord> {
    app.find_container(name).map_err(|_| {
        fail(format!(
            "Error response from kiln: No such container: {name}"
        ))
    })
}

/// A local path made absolute, keeping a trailing `/` or `/.` (Docker's
/// `resolveLocalPath`).
fn local_abs(path: &str) -> Result<String> {
    if path.starts_with('/') {
        return Ok(path.to_owned());
    }
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    // `join` appends the text as given: `x/` and `x/.` keep their ends.
    Ok(cwd.join(path).to_string_lossy().into_owned())
}

/// Docker's `CopyInfoDestinationPath` on the host: a symlink at the
/// destination is followed (up to 10 times); a missing destination needs
/// an existing parent directory.
fn host_dest(path: &str) -> Result<CopyDest> {
    let mut cur = path.to_owned();
    for _ in 0..10 {
        match std::fs::symlink_metadata(&cur) {
            Ok(m) if m.file_type().is_symlink() => {
                let target = std::fs::read_link(&cur)?;
                let keep = kiln_layer::dir_name(&cur);
                cur = if target.is_absolute() {
                    target.to_string_lossy().into_owned()
                } else {
                    Path::new(&keep).join(target).to_string_lossy().into_owned()
                };
            }
            Ok(_) => {
                let m = std::fs::metadata(&cur)
                    .map_err(|e| fail(format!("stat {cur}: {}", io_text(&e))))?;
                if path.ends_with('/') && !m.is_dir() {
                    bail!("{path}: not a directory");
                }
                return Ok(CopyDest {
                    path: keep_trailing(&cur, path),
                    exists: true,
                    is_dir: m.is_dir(),
                });
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let parent = kiln_layer::dir_name(&cur);
                match std::fs::metadata(&parent) {
                    Ok(m) if m.is_dir() => {}
                    Ok(_) => bail!("{parent}: not a directory"),
                    Err(e) => bail!("stat {parent}: {}", io_text(&e)),
                }
                return Ok(CopyDest {
                    path: keep_trailing(&cur, path),
                    exists: false,
                    is_dir: false,
                });
            }
            Err(e) => bail!("lstat {cur}: {}", io_text(&e)),
        }
    }
    bail!("too many symlinks in {path}")
}

/// `resolved` with the trailing `/` or `/.` that `given` had.
fn keep_trailing(resolved: &str, given: &str) -> String {
    let base = resolved.trim_end_matches('/');
    let base = base.strip_suffix("/.").unwrap_or(base);
    if given.ends_with("/.") {
        format!("{base}/.")
    } else if given.ends_with('/') {
        format!("{base}/")
    } else {
        resolved.to_owned()
    }
}

/// An OS error as Go prints it (`no such file or directory`).
fn io_text(e: &io::Error) -> String {
    let s = e.to_string();
    let s = s.split(" (os error").next().unwrap_or(&s).to_owned();
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => s,
    }
}

/// `kiln cp CONTAINER:SRC DEST|-`.
fn copy_from(app: &mut Engine, a: &CpArgs, name: &str, src: &str, dst: &str) -> Result<()> {
    let rec = find(app, name)?;
    let not_found = || {
        fail(format!(
            "Error response from kiln: Could not find the file {src} in container {name}"
        ))
    };
    let croot = ContainerRoot::open(app, &rec, false)?;
    let (root, kernel) = (&croot.root, croot.kernel.as_slice());
    let st = match kiln_layer::stat_path(root, src) {
        Ok(st) => st,
        Err(e) if kiln_fs::at::is_absent(&e) => return Err(not_found()),
        Err(e) => return Err(fail(format!("Error response from kiln: {}", io_text(&e)))),
    };
    let src_name = kiln_layer::base_name(src);
    // `-L`: the link's target, under the link's name.
    let (object, is_dir) = match st.link_target.as_deref().filter(|_| a.follow_link) {
        Some(target) => {
            let t = kiln_layer::stat_path(root, target).map_err(|_| not_found())?;
            (target.to_owned(), t.is_dir())
        }
        None => (src.to_owned(), st.is_dir()),
    };
    if dst == "-" {
        let out = io::stdout();
        let w = kiln_layer::archive_path(
            root,
            &object,
            &src_name,
            kernel,
            rec.userns.as_ref(),
            io::BufWriter::new(out.lock()),
        )
        .with_context(|| format!("cannot archive {name}:{src}"))?;
        w.into_inner()
            .map_err(|e| e.into_error())
            .and_then(|mut w| w.flush())
            .context("cannot write the archive to stdout")?;
        return Ok(());
    }
    let dest = host_dest(&local_abs(dst)?)?;
    let plan = kiln_layer::plan_copy(&src_name, is_dir, &dest)?;
    let into =
        Root::open(&plan.dir).map_err(|e| fail(format!("stat {}: {}", plan.dir, io_text(&e))))?;
    let skip_devices = !is_root();
    let ids = rec.userns.as_ref();
    stream(
        |w| kiln_layer::archive_path(root, &object, &plan.name, kernel, ids, w).map(drop),
        |r| kiln_layer::extract_copy(r, &into, CopyOwner::Caller, None, skip_devices).map(drop),
    )
    .with_context(|| format!("cannot copy {name}:{src} to {dst}"))
}

fn is_root() -> bool {
    kiln_sys::process::geteuid() == 0
}

/// `kiln cp SRC|- CONTAINER:DEST`.
fn copy_to(app: &mut Engine, a: &CpArgs, name: &str, src: &str, dst: &str) -> Result<()> {
    let rec = find(app, name)?;
    let croot = ContainerRoot::open(app, &rec, true)?;
    let (root, kernel) = (&croot.root, croot.kernel.as_slice());
    // The destination, a link at it followed inside the container.
    let mut dest = CopyDest {
        path: dst.to_owned(),
        exists: false,
        is_dir: false,
    };
    if let Ok(mut st) = kiln_layer::stat_path(root, dst) {
        let mut ok = true;
        if let Some(target) = st.link_target.clone() {
            dest.path = target.clone();
            match kiln_layer::stat_path(root, &target) {
                Ok(t) => st = t,
                Err(_) => ok = false,
            }
        }
        if ok {
            use kiln_fs::FileType;
            if !matches!(st.file_type(), FileType::Dir | FileType::File) {
                bail!("destination \"{name}:{dst}\" must be a directory or a regular file");
            }
            dest.exists = true;
            dest.is_dir = st.is_dir();
        }
    }
    // As Docker 20.10's daemon does (whatever its docs say): the archive's
    // owners, taken as the container's ids; `-a` gives every file the
    // container's user (`-u`) when it has one.
    let user = if a.archive {
        container_user(root, &rec.user)
    } else {
        None
    };
    let owner = match user {
        Some(user) => {
            let (uid, gid) = user?;
            match rec.userns.as_ref() {
                Some(m) => match (m.host_uid(uid), m.host_gid(gid)) {
                    (Some(u), Some(g)) => CopyOwner::Fixed(u, g),
                    _ => bail!("{uid}:{gid} has no host id in the container's user namespace"),
                },
                None => CopyOwner::Fixed(uid, gid),
            }
        }
        None => CopyOwner::Archive,
    };
    if src == "-" {
        if !dest.is_dir {
            bail!("destination \"{name}:{dst}\" must be a directory");
        }
        check_writable(&rec, &dest.path)?;
        let into = extraction_point(root, kernel, name, &dest.path)?;
        let stdin = io::stdin();
        kiln_layer::extract_copy(stdin.lock(), &into, owner, rec.userns.as_ref(), false)
            .map_err(|e| fail(format!("Error response from kiln: {}", chain(&e))))?;
        return Ok(());
    }
    let (host_root, object, src_name, is_dir) = host_source(src, a.follow_link)?;
    let plan = kiln_layer::plan_copy(&src_name, is_dir, &dest)?;
    check_writable(&rec, &plan.dir)?;
    let into = extraction_point(root, kernel, name, &plan.dir)?;
    stream(
        |w| kiln_layer::archive_path(&host_root, &object, &plan.name, &[], None, w).map(drop),
        |r| kiln_layer::extract_copy(r, &into, owner, rec.userns.as_ref(), false).map(drop),
    )
    .map_err(|e| fail(format!("Error response from kiln: {e:#}")))
}

/// The uid and gid of a container's `-u` (`user[:group]`, names looked up
/// in the container's own `/etc/passwd` and `/etc/group`, read inside its
/// root), as Docker's `cp -a` resolves them; `None` without `-u`. A uid
/// without a passwd entry has gid 0.
fn container_user(root: &Root, user: &str) -> Option<Result<(u32, u32)>> {
    if user.is_empty() {
        return None;
    }
    let read = |file: &str| {
        root.read_limited(file, 4 << 20)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    };
    let (passwd, group) = (read("/etc/passwd"), read("/etc/group"));
    let entry = |text: &str, col: usize, key: &str| -> Option<Vec<String>> {
        text.lines()
            .map(|l| l.split(':').map(str::to_owned).collect::<Vec<_>>())
            .find(|f| f.get(col).is_some_and(|v| v == key))
    };
    let id = |v: Option<&String>| v.and_then(|s| s.parse::<u32>().ok());
    let (u, g) = user
        .split_once(':')
        .map_or((user, None), |(u, g)| (u, Some(g)));
    Some((|| {
        let (mut uid, mut gid) = (0, 0);
        if !u.is_empty() {
            match u.parse::<u32>() {
                Ok(n) => {
                    uid = n;
                    gid = entry(&passwd, 2, u).and_then(|f| id(f.get(3))).unwrap_or(0);
                }
                Err(_) => {
                    let f = entry(&passwd, 0, u)
                        .ok_or_else(|| anyhow!("failed to look up user {u:?} in container"))?;
                    uid = id(f.get(2)).ok_or_else(|| anyhow!("bad passwd entry for {u:?}"))?;
                    gid = id(f.get(3)).unwrap_or(0);
                }
            }
        }
        if let Some(g) = g.filter(|g| !g.is_empty()) {
            gid = match g.parse::<u32>() {
                Ok(n) => n,
                Err(_) => entry(&group, 0, g)
                    .and_then(|f| id(f.get(2)))
                    .ok_or_else(|| anyhow!("failed to look up group {g:?} in container"))?,
            };
        }
        Ok((uid, gid))
    })())
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        msg.push_str(": ");
        msg.push_str(&c.to_string());
        cur = c.source();
    }
    msg
}

/// Docker's refusal to write into a read-only root filesystem (a
/// read-write volume under it is fine).
fn check_writable(rec: &ContainerRecord, dir: &str) -> Result<()> {
    let dir = Path::new("/").join(dir);
    let volume = rec
        .volumes
        .iter()
        .filter(|v| dir.starts_with(&v.target))
        .max_by_key(|v| v.target.len());
    match volume {
        Some(v) if v.readonly => {
            bail!("Error response from kiln: mounted volume is marked read-only")
        }
        Some(_) => Ok(()),
        None if rec.read_only => {
            bail!("Error response from kiln: container rootfs is marked read-only")
        }
        None => Ok(()),
    }
}

/// The directory an archive is extracted into, resolved inside the
/// container (links followed there), as a root of its own. Never inside
/// one of a running container's kernel filesystems (below the extraction
/// point, the extractor never writes into an existing file, so procfs,
/// and the read-only sysfs and cgroupfs, refuse whatever an entry tries).
fn extraction_point(root: &Root, kernel: &[PathBuf], name: &str, dir: &str) -> Result<Root> {
    match root.stat(dir, kiln_fs::FinalLink::Follow) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => bail!("Error response from kiln: extraction point is not a directory"),
        Err(_) => {
            bail!("Error response from kiln: Could not find the file {dir} in container {name}")
        }
    }
    let canon = root
        .canonical(dir, kiln_fs::FinalLink::Follow)
        .map_err(|e| fail(format!("Error response from kiln: {}", io_text(&e))))?;
    if let Some(k) = kernel.iter().find(|k| canon.starts_with(k)) {
        bail!(
            "Error response from kiln: cannot copy into /{}: /{} is a kernel filesystem of the running container",
            canon.display(),
            k.display()
        );
    }
    root.subdir(&canon)
        .map_err(|e| fail(format!("Error response from kiln: {}", io_text(&e))))
}

/// The host source of a copy into a container (Docker's
/// `CopyInfoSourcePath`): its parent directory as a root, the path to
/// archive in it, the name of the archive's top entry and whether it is a
/// directory. A final link is followed with `-L` or a trailing `/`.
fn host_source(src: &str, follow: bool) -> Result<(Root, String, String, bool)> {
    let abs = local_abs(src)?;
    let name = kiln_layer::base_name(&abs);
    let lstat_err = |p: &str, e: io::Error| fail(format!("lstat {p}: {}", io_text(&e)));
    let resolved = if follow || abs.ends_with('/') || abs.ends_with("/.") {
        std::fs::canonicalize(&abs).map_err(|e| lstat_err(&abs, e))?
    } else {
        let parent = kiln_layer::dir_name(&abs);
        let parent = std::fs::canonicalize(&parent).map_err(|e| lstat_err(&parent, e))?;
        parent.join(Path::new(&abs).file_name().unwrap_or_default())
    };
    let meta = std::fs::symlink_metadata(&resolved).map_err(|e| lstat_err(&abs, e))?;
    let (dir, last) = match (resolved.parent(), resolved.file_name()) {
        (Some(d), Some(l)) => (d.to_path_buf(), l.to_string_lossy().into_owned()),
        _ => (PathBuf::from("/"), "/".to_owned()),
    };
    let root = Root::open(&dir).map_err(|e| lstat_err(&dir.to_string_lossy(), e))?;
    Ok((root, last, name, meta.is_dir()))
}

/// Runs `produce` (writing a tar) on a thread of its own and `consume`
/// (reading it) here, joined by a bounded in-process channel: no pipe, so
/// no SIGPIPE when the reader stops early.
fn stream(
    produce: impl FnOnce(ChannelWriter) -> kiln_layer::Result<()> + Send,
    consume: impl FnOnce(ChannelReader) -> kiln_layer::Result<()>,
) -> Result<()> {
    let (tx, rx) = mpsc::sync_channel::<Vec<u8>>(16);
    std::thread::scope(|s| {
        let producer = s.spawn(move || {
            let w = ChannelWriter {
                tx,
                buf: Vec::with_capacity(CHUNK),
            };
            produce(w)
        });
        let consumed = consume(ChannelReader {
            rx,
            buf: Vec::new(),
            pos: 0,
        });
        let produced = producer
            .join()
            .map_err(|_| anyhow!("the archiving thread panicked"))?;
        // The reader's error says what went wrong at the destination; the
        // writer then only saw the channel close.
        consumed.map_err(|e| anyhow!("{}", chain(&e)))?;
        produced.map_err(|e| anyhow!("{}", chain(&e)))
    })
}

const CHUNK: usize = 256 << 10;

struct ChannelWriter {
    tx: mpsc::SyncSender<Vec<u8>>,
    buf: Vec<u8>,
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.flush()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let full = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        self.tx
            .send(full)
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the copy's reader stopped"))
    }
}

impl Drop for ChannelWriter {
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

struct ChannelReader {
    rx: mpsc::Receiver<Vec<u8>>,
    buf: Vec<u8>,
    pos: usize,
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.buf.len() {
            match self.rx.recv() {
                Ok(chunk) => {
                    self.buf = chunk;
                    self.pos = 0;
                }
                // The writer is done (or gone: the producer's own error
                // says why).
                Err(_) => return Ok(0),
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// A container's root filesystem as a [`Root`], and what keeps it there.
struct ContainerRoot {
    root: Root,
    /// A running container's kernel filesystems (`proc`, `sys`, ...),
    /// relative to its root: never read or written by `cp` (Docker's `cp`
    /// sees the root filesystem and volumes only).
    kernel: Vec<PathBuf>,
    /// A stopped container: the thread whose mount namespace holds its
    /// snapshot's mount. The mount stays attached there while the copy
    /// runs: path lookups with `..` inside a
    /// root (`RESOLVE_IN_ROOT`) fail with `EAGAIN` on a mount that is in no
    /// namespace, as every reference dropped on one takes the mount lock.
    /// Declared before the directory, so it ends first.
    _keeper: Option<MountKeeper>,
    /// The empty directory a stopped container's snapshot was mounted on
    /// (in the keeper's namespace only), removed when done.
    _mountpoint: Option<tempfile::TempDir>,
}

impl ContainerRoot {
    /// A running container: its root as its init sees it. A stopped one:
    /// its snapshot, mounted (read-only unless `writable`) in the mount
    /// namespace of a thread that ends right after opening it.
    fn open(app: &mut Engine, rec: &ContainerRecord, writable: bool) -> Result<ContainerRoot> {
        if let Some(pid) = running_pid(app, rec) {
            let mounts = mounts_of(pid)?;
            return Ok(ContainerRoot {
                root: proc_root(app, rec, pid)?,
                kernel: mounts
                    .into_iter()
                    .filter(|(_, fstype)| is_kernel_fs(fstype))
                    .map(|(p, _)| p)
                    .collect(),
                _mountpoint: None,
                _keeper: None,
            });
        }
        snapshot_root(app, rec, writable, true)
    }
}

/// The pid of a running container's init.
fn running_pid(app: &Engine, rec: &ContainerRecord) -> Option<i32> {
    let state = kiln_runtime::Runtime::default()
        .state(&rec.state_dir(app))
        .ok()?;
    (state.status == kiln_runtime::Status::Running)
        .then_some(state.pid)
        .flatten()
}

/// The root of the running container `rec` whose init is `pid`, as that
/// process sees it. The pid is pinned by a pidfd taken first and checked
/// again once the root is open (still alive, still the container's init),
/// and the host's own root is refused: a container that ended meanwhile,
/// its pid reused by a host process, never makes a copy land on the host.
fn proc_root(app: &Engine, rec: &ContainerRecord, pid: i32) -> Result<Root> {
    use std::os::fd::AsFd as _;
    use std::os::unix::fs::MetadataExt as _;
    let gone = || anyhow!("Error: container {} is not running", short(&rec.id));
    let pidfd = kiln_sys::process::pidfd_open(pid).map_err(|_| gone())?;
    let path = format!("/proc/{pid}/root");
    let root =
        Root::open(&path).with_context(|| format!("cannot open the root of process {pid}"))?;
    let alive = kiln_sys::process::pidfd_send_signal(pidfd.as_fd(), 0).is_ok();
    if !alive || running_pid(app, rec) != Some(pid) {
        return Err(gone());
    }
    let host = std::fs::metadata("/").context("cannot stat /")?;
    let here = root
        .stat("", kiln_fs::FinalLink::Follow)
        .with_context(|| format!("cannot stat {path}"))?;
    if (here.dev(), here.ino()) == (host.dev(), host.ino()) {
        return Err(gone());
    }
    Ok(root)
}

/// A stopped container's snapshot as a root (see [`ContainerRoot::open`]),
/// with its bind volumes mounted where it had them when `volumes` (as
/// Docker's `cp` sees them; `export` does not).
fn snapshot_root(
    app: &mut Engine,
    rec: &ContainerRecord,
    writable: bool,
    volumes: bool,
) -> Result<ContainerRoot> {
    let snapshotter = app.snapshotter()?;
    let mounts = snapshotter
        .mounts(&rec.snapshot)
        .with_context(|| format!("cannot find the filesystem of container {}", short(&rec.id)))?;
    let first = mounts
        .first()
        .ok_or_else(|| anyhow!("container {} has no filesystem", short(&rec.id)))?
        .clone();
    // Rootless kiln cannot mount: its copies see the root filesystem only.
    let binds: Vec<VolumeSpec> = if volumes && is_root() {
        kiln_engine::container::in_mount_order(&rec.volumes)
            .into_iter()
            .filter(|v| !v.tmpfs && !v.source.is_empty())
            .cloned()
            .collect()
    } else {
        Vec::new()
    };
    if first.fstype == "bind" && binds.is_empty() {
        return Ok(ContainerRoot {
            root: Root::open(&first.source)
                .with_context(|| format!("cannot open {}", first.source))?,
            kernel: Vec::new(),
            _mountpoint: None,
            _keeper: None,
        });
    }
    let tmp = app.root().join("tmp");
    std::fs::create_dir_all(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    let mnt = tempfile::Builder::new()
        .prefix("cp-")
        .tempdir_in(&tmp)
        .with_context(|| format!("cannot create a directory in {}", tmp.display()))?;
    let target = mnt.path().to_path_buf();
    let id = short(&rec.id).to_owned();
    let (tx, rx) = mpsc::channel::<Result<Root>>();
    let (stop, stopped) = mpsc::channel::<()>();
    let thread = std::thread::spawn(move || {
        let opened = (|| -> Result<Root> {
            use kiln_sys::MountOps as _;
            kiln_sys::process::unshare_thread_mounts()
                .context("cannot give the container's filesystem a mount namespace")?;
            let flags = if writable {
                kiln_sys::MountFlags::NONE
            } else {
                kiln_sys::MountFlags::RDONLY
            };
            let sys = kiln_sys::LinuxSys;
            let mounted = if first.fstype == "bind" {
                sys.mount(
                    Some(Path::new(&first.source)),
                    &target,
                    None,
                    kiln_sys::MountFlags::BIND | kiln_sys::MountFlags::REC,
                    None,
                )
            } else {
                sys.mount_with_options(
                    Some(Path::new(&first.source)),
                    &target,
                    &first.fstype,
                    flags,
                    &first.options,
                )
            };
            mounted.with_context(|| format!("cannot mount the filesystem of container {id}"))?;
            let root =
                Root::open(&target).with_context(|| format!("cannot open {}", target.display()))?;
            for v in &binds {
                bind_volume(&root, v).with_context(|| {
                    format!("cannot mount volume {} of container {id}", v.target)
                })?;
            }
            Ok(root)
        })();
        let ok = opened.is_ok();
        let _ = tx.send(opened);
        if ok {
            // The namespace (and the mount in it) lives as long as this
            // thread: until the copy is done, or kiln ends.
            let _ = stopped.recv();
        }
    });
    let root = rx
        .recv()
        .map_err(|_| anyhow!("the mounting thread ended early"))??;
    Ok(ContainerRoot {
        root,
        kernel: Vec::new(),
        _keeper: Some(MountKeeper {
            stop: Some(stop),
            thread: Some(thread),
        }),
        _mountpoint: Some(mnt),
    })
}

/// Mounts the bind volume `v` on its mount point in the container's tree,
/// found inside the root (a link there resolves in the container, never
/// on the host) and mounted by descriptor. A mount point the container
/// never had (it never ran) is left alone.
fn bind_volume(root: &Root, v: &VolumeSpec) -> Result<()> {
    use kiln_sys::{MountFlags, MountOps as _};
    use std::os::fd::AsRawFd as _;
    let Ok(point) = root.open_path(&v.target, kiln_fs::FinalLink::Follow) else {
        return Ok(());
    };
    let at = PathBuf::from(format!("/proc/self/fd/{}", point.as_raw_fd()));
    let sys = kiln_sys::LinuxSys;
    sys.mount(
        Some(Path::new(&v.source)),
        &at,
        None,
        MountFlags::BIND | MountFlags::REC,
        None,
    )?;
    if v.readonly {
        // The new mount, found again by a lookup that crosses onto it (the
        // old descriptor still names the mount point below it).
        let top = root.open_path(&v.target, kiln_fs::FinalLink::Follow)?;
        let at = PathBuf::from(format!("/proc/self/fd/{}", top.as_raw_fd()));
        sys.mount(
            None,
            &at,
            None,
            MountFlags::BIND | MountFlags::REMOUNT | MountFlags::RDONLY,
            None,
        )?;
    }
    Ok(())
}

/// Ends the thread holding a stopped container's mount (see
/// [`ContainerRoot`]) when dropped.
struct MountKeeper {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for MountKeeper {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

/// Docker's CLI: an error is printed and the command exits 1.
fn exit_1(done: Result<()>) -> Result<u8> {
    match done {
        Ok(()) => Ok(0),
        Err(e) => {
            eprintln!("{e:#}");
            Ok(1)
        }
    }
}

/// `kiln diff CONTAINER`.
pub(crate) fn diff(app: &mut Engine, a: &DiffArgs) -> Result<u8> {
    exit_1(diff_inner(app, a))
}

fn diff_inner(app: &mut Engine, a: &DiffArgs) -> Result<()> {
    let rec = find(app, &a.container)?;
    let snapshotter = app.snapshotter()?;
    let exclude = kiln_engine::commit::runtime_stubs(&*snapshotter, &rec.snapshot)?;
    let changes = match snapshotter.diff_source(&rec.snapshot)? {
        DiffSource::OverlayUpper { upper } => {
            let lowers: Vec<PathBuf> = snapshotter
                .mounts(&rec.snapshot)?
                .iter()
                .flat_map(|m| m.options.iter())
                .filter_map(|o| o.strip_prefix("lowerdir="))
                .flat_map(|l| l.split(':').map(PathBuf::from).collect::<Vec<_>>())
                .collect();
            kiln_layer::overlay_changes(&upper, &lowers, &exclude)
        }
        DiffSource::Dirs { lower, upper } => kiln_layer::dir_changes(&lower, &upper, &exclude),
        _ => bail!("cannot read the changes of container {}", short(&rec.id)),
    }
    .with_context(|| format!("cannot read the changes of container {}", short(&rec.id)))?;
    let out = io::stdout();
    let mut out = out.lock();
    for c in changes {
        writeln!(out, "{c}")?;
    }
    Ok(())
}

/// `kiln export CONTAINER [-o FILE]`.
pub(crate) fn export(app: &mut Engine, a: &ExportArgs) -> Result<u8> {
    exit_1(export_inner(app, a))
}

fn export_inner(app: &mut Engine, a: &ExportArgs) -> Result<()> {
    let rec = find(app, &a.container)?;
    let to_stdout = a.output.as_deref().is_none_or(|p| p.as_os_str() == "-");
    if to_stdout && io::stdout().is_terminal() {
        bail!("cowardly refusing to save to a terminal. Use the -o flag or redirect");
    }
    // A running container: its root as its namespace sees it, without what
    // is mounted there (proc, volumes, /etc/hosts); a stopped one: its
    // snapshot.
    let (root, exclude) = match running_pid(app, &rec) {
        Some(pid) => (
            ContainerRoot {
                root: proc_root(app, &rec, pid)?,
                kernel: Vec::new(),
                _mountpoint: None,
                _keeper: None,
            },
            mounts_of(pid)?.into_iter().map(|(p, _)| p).collect(),
        ),
        None => (snapshot_root(app, &rec, false, false)?, Vec::new()),
    };
    let what = || format!("cannot export container {}", short(&rec.id));
    match a.output.as_deref().filter(|p| p.as_os_str() != "-") {
        Some(path) => {
            let out = crate::output::SaveTarget::create(path)
                .map_err(|e| anyhow!("failed to export container: {e}"))?;
            let w = kiln_layer::archive_tree(
                &root.root,
                &exclude,
                rec.userns.as_ref(),
                io::BufWriter::with_capacity(1 << 20, out.file()),
            )
            .with_context(what)?;
            w.into_inner()
                .map_err(|e| e.into_error())
                .with_context(|| format!("cannot write {}", out.tmp_path().display()))?;
            out.finish()?;
        }
        None => {
            let stdout = io::stdout();
            let mut w = kiln_layer::archive_tree(
                &root.root,
                &exclude,
                rec.userns.as_ref(),
                io::BufWriter::with_capacity(1 << 20, stdout.lock()),
            )
            .with_context(what)?;
            w.flush().context("cannot write the archive to stdout")?;
        }
    }
    Ok(())
}

/// The mount points below `/` in the mount namespace of `pid`, relative
/// to its root, with their filesystem types (from `/proc/PID/mountinfo`,
/// octal escapes decoded).
fn mounts_of(pid: i32) -> Result<Vec<(PathBuf, String)>> {
    let path = format!("/proc/{pid}/mountinfo");
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    Ok(parse_mounts(&text))
}

fn parse_mounts(text: &str) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let Some(point) = line.split(' ').nth(4) else {
            continue;
        };
        let fstype = line
            .split_once(" - ")
            .and_then(|(_, rest)| rest.split(' ').next())
            .unwrap_or("")
            .to_owned();
        let point = unescape_octal(point);
        let rel = point.trim_start_matches('/');
        if !rel.is_empty() {
            out.push((PathBuf::from(rel), fstype));
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Filesystems of the kernel's own state: reading or writing them from the
/// host side (as root, outside the container's limits) is never a copy.
fn is_kernel_fs(fstype: &str) -> bool {
    matches!(
        fstype,
        "proc"
            | "sysfs"
            | "cgroup"
            | "cgroup2"
            | "devpts"
            | "mqueue"
            | "debugfs"
            | "tracefs"
            | "securityfs"
            | "bpf"
            | "pstore"
            | "configfs"
            | "fusectl"
            | "binfmt_misc"
            | "efivarfs"
    )
}

fn unescape_octal(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Where a volume at `target` of container `rec` is mounted: `target`
/// with a symlink resolved inside the container's root (as Docker follows
/// a volume path that is a link in the image, in scope). When `data` is
/// given (a new, empty volume), fills it with what the root filesystem
/// holds there, as Docker fills a new volume from the image: a
/// directory's contents (owners, modes and links kept), nothing for a
/// missing path or a non-directory. The tree is the image's (untrusted):
/// read in-root with kiln-layer's copy, never following a link onto the
/// host, and written only below `data`.
pub(crate) fn volume_target(
    app: &mut Engine,
    rec: &ContainerRecord,
    target: &str,
    data: Option<&Path>,
) -> Result<String> {
    let croot = snapshot_root(app, rec, false, false)?;
    let root = &croot.root;
    let object = match kiln_layer::stat_path(root, target) {
        Ok(st) => st.link_target.unwrap_or_else(|| target.to_owned()),
        Err(e) if kiln_fs::at::is_absent(&e) => return Ok(target.to_owned()),
        Err(e) => bail!("cannot read {target} in the image: {}", io_text(&e)),
    };
    let (Some(data), Ok(st)) = (data, kiln_layer::stat_path(root, &object)) else {
        return Ok(object);
    };
    if !st.is_dir() {
        return Ok(object);
    }
    let into = Root::open(data).with_context(|| format!("cannot open {}", data.display()))?;
    let ids = rec.userns.as_ref();
    let skip_devices = !is_root();
    let dir = format!("{}/.", object.trim_end_matches('/'));
    stream(
        |w| kiln_layer::archive_path(root, &dir, ".", &[], ids, w).map(drop),
        |r| {
            // Rootless kiln cannot give files other owners: the caller's
            // own ids are the container's root.
            let owner = if is_root() {
                CopyOwner::Archive
            } else {
                CopyOwner::Caller
            };
            kiln_layer::extract_copy(r, &into, owner, ids, skip_devices).map(drop)
        },
    )
    .with_context(|| format!("cannot copy the image's {target} into its volume"))?;
    Ok(object)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cp_arguments_split_as_dockers_client_does() {
        assert_eq!(split_cp_arg("c1:/etc/passwd"), (Some("c1"), "/etc/passwd"));
        assert_eq!(split_cp_arg("c1:rel"), (Some("c1"), "rel"));
        assert_eq!(split_cp_arg("/abs/a:b"), (None, "/abs/a:b"));
        assert_eq!(split_cp_arg("./a:b"), (None, "./a:b"));
        assert_eq!(split_cp_arg("plain"), (None, "plain"));
        assert_eq!(split_cp_arg("-"), (None, "-"));
        assert_eq!(split_cp_arg("c1:/te:s:t"), (Some("c1"), "/te:s:t"));
    }

    #[test]
    fn mounts_come_from_mountinfo_relative_and_unescaped() {
        let text = "22 1 0:21 / / rw - overlay overlay rw\n\
                    23 22 0:5 / /proc rw - proc proc rw\n\
                    24 22 8:1 /x /etc/hosts rw - ext4 /dev/sda1 rw\n\
                    25 22 8:1 /v /my\\040dir rw - ext4 /dev/sda1 rw\n";
        let m = parse_mounts(text);
        let points: Vec<_> = m.iter().map(|(p, _)| p.clone()).collect();
        assert_eq!(
            points,
            [
                PathBuf::from("etc/hosts"),
                PathBuf::from("my dir"),
                PathBuf::from("proc")
            ]
        );
        assert_eq!(m[2].1, "proc");
        assert!(is_kernel_fs(&m[2].1) && !is_kernel_fs(&m[0].1));
    }

    #[test]
    fn local_paths_keep_their_trailing_slash_or_dot() {
        assert_eq!(local_abs("/a/b/").unwrap(), "/a/b/");
        let cwd = std::env::current_dir().unwrap();
        let cwd = cwd.to_string_lossy();
        assert_eq!(local_abs("x/").unwrap(), format!("{cwd}/x/"));
        assert_eq!(local_abs("x/.").unwrap(), format!("{cwd}/x/."));
        assert_eq!(local_abs("x").unwrap(), format!("{cwd}/x"));
        assert_eq!(keep_trailing("/t/dir1", "/t/link/"), "/t/dir1/");
        assert_eq!(keep_trailing("/t/dir1", "/t/link/."), "/t/dir1/.");
        assert_eq!(
            io_text(&io::Error::from_raw_os_error(2)),
            "no such file or directory"
        );
    }
}
