//! Container records and the image-to-spec conversion: what `kiln create`
//! stores, and how a record becomes a runtime `LaunchConfig` the way
//! Docker turns an image and `docker run` flags into a container.

use std::path::PathBuf;

use crate::bail;
use crate::error::{Context as _, Result};
use kiln_content::Record;
use kiln_model::Digest;
use kiln_model::{IdMap, NetworkMode};
use kiln_runtime::oci_spec::runtime::{Mount, MountBuilder};
use kiln_runtime::userns::{DEFAULT_REMAP_SIZE, DEFAULT_REMAP_START, subordinate_range};
use kiln_runtime::{DockerSpecOptions, LaunchConfig, Resources, RootfsMount};
use serde::{Deserialize, Serialize};

use crate::engine::Engine;

/// The records kind containers are stored under.
pub const KIND: &str = "containers";

/// A bind mount or tmpfs given with `-v` / `--tmpfs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeSpec {
    /// Host path (bind) or empty (tmpfs).
    pub source: String,
    /// Path in the container.
    pub target: String,
    /// Read-only.
    pub readonly: bool,
    /// `tmpfs` instead of a bind mount.
    pub tmpfs: bool,
    /// Mount options given after the path (`--tmpfs /run:size=64m,exec`).
    #[serde(default)]
    pub options: Vec<String>,
    /// A volume (`source` is then its data directory): its name, or `""`
    /// for an anonymous one not made yet (`-v /path`, an image's `VOLUME`).
    #[serde(default)]
    pub volume: Option<String>,
}

/// A `--device` mapping as Docker keeps it (`HostConfig.Devices`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DeviceSpec {
    /// The node (or directory of nodes) on the host.
    pub path_on_host: String,
    /// Where it appears in the container.
    pub path_in_container: String,
    /// The device cgroup's permissions (`rwm` letters).
    pub cgroup_permissions: String,
}

impl DeviceSpec {
    /// Parses Docker's `--device HOST[:CONTAINER][:PERMISSIONS]`.
    pub fn parse(value: &str) -> Result<DeviceSpec> {
        let d = kiln_runtime::DeviceMapping::parse(value).map_err(|e| match e {
            kiln_runtime::Error::InvalidSpec { reason, .. } => crate::format_err!("{reason}"),
            other => other.into(),
        })?;
        Ok(DeviceSpec {
            path_on_host: d.host_path.to_string_lossy().into_owned(),
            path_in_container: d.container_path.to_string_lossy().into_owned(),
            cgroup_permissions: d.permissions,
        })
    }

    fn mapping(&self) -> kiln_runtime::DeviceMapping {
        kiln_runtime::DeviceMapping {
            host_path: self.path_on_host.clone().into(),
            container_path: self.path_in_container.clone().into(),
            permissions: self.cgroup_permissions.clone(),
        }
    }
}

/// Everything `kiln create` decided, kept so that `start` can start it again.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerRecord {
    /// 64 hex digits.
    pub id: String,
    /// Unique name (Docker generates one when none is given).
    pub name: String,
    /// The image as the user named it.
    pub image: String,
    /// The image ID.
    pub image_id: Digest,
    /// RFC 3339 creation time.
    pub created: String,
    /// Entrypoint + Cmd, combined.
    pub args: Vec<String>,
    /// `KEY=VALUE`.
    pub env: Vec<String>,
    /// Working directory.
    pub cwd: String,
    /// User (`""`: root).
    pub user: String,
    /// Hostname.
    pub hostname: String,
    /// `host` or `none`.
    pub network: String,
    /// `-t`.
    pub tty: bool,
    /// `-i`.
    pub interactive: bool,
    /// `--init`.
    pub init: bool,
    /// `--read-only`.
    pub read_only: bool,
    /// `--rm`.
    pub auto_remove: bool,
    /// Volumes and tmpfs mounts.
    pub volumes: Vec<VolumeSpec>,
    /// `--cap-add`.
    pub cap_add: Vec<String>,
    /// `--cap-drop`.
    pub cap_drop: Vec<String>,
    /// `--security-opt no-new-privileges`.
    pub no_new_privileges: bool,
    /// `--security-opt seccomp=unconfined`.
    pub seccomp_unconfined: bool,
    /// `--memory` in bytes.
    pub memory: Option<i64>,
    /// `--pids-limit`.
    pub pids_limit: Option<i64>,
    /// `--cpus`.
    pub cpus: Option<f64>,
    /// `--cpu-shares`.
    pub cpu_shares: Option<u64>,
    /// The image's StopSignal (`SIGTERM` when unset).
    pub stop_signal: Option<String>,
    /// The snapshot holding the container's writable layer.
    pub snapshot: String,
    /// Set once the container was started at least once.
    #[serde(default)]
    pub started: bool,
    /// The container's Entrypoint and Cmd (`args` split as Docker keeps
    /// them), written into the image by `kiln commit`; `None` in records
    /// made before kiln kept them.
    #[serde(default)]
    pub entrypoint_cmd: Option<(Vec<String>, Vec<String>)>,
    /// RFC 3339 time of the last start.
    #[serde(default)]
    pub started_at: Option<String>,
    /// The user namespace's maps (`--userns`, rootless); `None`: the host's ids.
    #[serde(default)]
    pub userns: Option<IdMap>,
    /// `--stop-timeout`: seconds `stop` waits by default.
    #[serde(default)]
    pub stop_timeout: Option<u64>,
    /// `--add-host`: (name, address) lines added to /etc/hosts.
    #[serde(default)]
    pub extra_hosts: Vec<(String, String)>,
    /// `--dns`.
    #[serde(default)]
    pub dns: Vec<String>,
    /// `--dns-search`.
    #[serde(default)]
    pub dns_search: Vec<String>,
    /// `--dns-option`.
    #[serde(default)]
    pub dns_options: Vec<String>,
    /// `--shm-size` in bytes.
    #[serde(default)]
    pub shm_size: Option<i64>,
    /// The image's labels and `--label`s.
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
    /// `--memory-swap` in bytes (`-1`: unlimited).
    #[serde(default)]
    pub memory_swap: Option<i64>,
    /// `--ulimit`s: (name, soft, hard).
    #[serde(default)]
    pub ulimits: Vec<(String, u64, u64)>,
    /// `--sysctl`s (namespaced ones only).
    #[serde(default)]
    pub sysctls: Vec<(String, String)>,
    /// `--privileged`.
    #[serde(default)]
    pub privileged: bool,
    /// `--device`s.
    #[serde(default)]
    pub devices: Vec<DeviceSpec>,
    /// `--group-add`: group names or numbers, resolved in the container.
    #[serde(default)]
    pub group_add: Vec<String>,
    /// `--oom-kill-disable` (false where the kernel cannot, as Docker discards it).
    #[serde(default)]
    pub oom_kill_disable: bool,
    /// `--cpuset-cpus` (`0-3,5`).
    #[serde(default)]
    pub cpuset_cpus: Option<String>,
}

impl Record for ContainerRecord {
    fn id(&self) -> &str {
        &self.id
    }
    fn name(&self) -> Option<&str> {
        Some(&self.name)
    }
}

impl ContainerRecord {
    /// The runtime's state directory for this container.
    pub fn state_dir(&self, app: &Engine) -> PathBuf {
        app.root().join("containers").join(&self.id)
    }

    /// The file detached output goes to.
    pub fn log_path(&self, app: &Engine) -> PathBuf {
        app.root()
            .join("containers")
            .join(format!("{}.log", self.id))
    }

    /// The directory of the per-container `/etc/hosts`, `hostname`, `resolv.conf`.
    fn etc_dir(&self, app: &Engine) -> PathBuf {
        app.root()
            .join("containers")
            .join(format!("{}.etc", self.id))
    }

    /// The runtime config for this container, its rootfs taken from the snapshotter.
    pub fn runtime_config(&self, app: &mut Engine) -> Result<LaunchConfig> {
        let snapshotter = app.snapshotter()?;
        let mut mounts = snapshotter.mounts(&self.snapshot).with_context(|| {
            format!(
                "cannot find the root filesystem of container {}",
                self.id.get(..12).unwrap_or(&self.id)
            )
        })?;
        if self.auto_remove {
            // Its writable layer is deleted when it exits.
            crate::make_volatile(&mut mounts);
        }
        if self.userns.is_some() && kiln_sys::process::geteuid() == 0 {
            // As Docker's userns-remap (/var/lib/docker is 0711): the
            // container's root, an unprivileged host id, must be able to
            // pass through kiln's directories to its own state and files.
            for dir in [app.root().to_path_buf(), app.root().join("containers")] {
                let _ = std::fs::create_dir_all(&dir);
                allow_traversal(&dir);
            }
        }
        let etc_dir = self.etc_dir(app);
        std::fs::create_dir_all(&etc_dir)
            .with_context(|| format!("cannot create {}", etc_dir.display()))?;
        let host_resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        let resolv = resolv_conf(
            (self.network == "host").then_some(host_resolv.as_str()),
            &host_resolv,
            &self.dns,
            &self.dns_search,
            &self.dns_options,
        );
        let etc = kiln_runtime::write_etc_files(&etc_dir, &self.hostname, resolv.as_deref())?;
        if !self.extra_hosts.is_empty() {
            let mut hosts = std::fs::read_to_string(&etc.hosts)
                .with_context(|| format!("cannot read {}", etc.hosts.display()))?;
            for (name, ip) in &self.extra_hosts {
                hosts.push_str(&format!("{ip}\t{name}\n"));
            }
            std::fs::write(&etc.hosts, hosts)
                .with_context(|| format!("cannot write {}", etc.hosts.display()))?;
        }
        for d in &self.devices {
            check_device(&d.path_on_host)?;
        }
        let mut extra = Vec::new();
        for v in in_mount_order(&self.volumes) {
            extra.push(volume_mount(v)?);
        }
        let spec = kiln_runtime::docker_spec(&DockerSpecOptions {
            args: self.args.clone(),
            env: self.env.clone(),
            cwd: self.cwd.clone(),
            hostname: self.hostname.clone(),
            network: network_mode(&self.network)?,
            tty: self.tty,
            read_only: self.read_only,
            cap_add: self.cap_add.clone(),
            cap_drop: self.cap_drop.clone(),
            no_new_privileges: self.no_new_privileges,
            seccomp_unconfined: self.seccomp_unconfined,
            resources: Resources {
                memory: self.memory,
                memory_swap: self.memory_swap,
                pids_limit: self.pids_limit,
                cpus: self.cpus,
                cpu_shares: self.cpu_shares,
            },
            etc_files: Some(etc),
            mounts: extra,
            userns: self.userns.clone(),
            shm_size: self.shm_size,
            ulimits: self.ulimits.clone(),
            sysctls: self.sysctls.clone(),
            privileged: self.privileged,
            devices: self.devices.iter().map(DeviceSpec::mapping).collect(),
            group_add: self.group_add.clone(),
            oom_kill_disable: self.oom_kill_disable,
            cpuset_cpus: self.cpuset_cpus.clone(),
        })?;
        Ok(LaunchConfig {
            id: self.id.parse()?,
            spec,
            rootfs: mounts.into_iter().map(rootfs_mount).collect(),
            state_dir: self.state_dir(app),
            user: if self.user.is_empty() {
                None
            } else {
                Some(self.user.clone())
            },
            init: self.init,
        })
    }

    /// The exit code a foreground run recorded (`exit-code` in the state
    /// directory), if any.
    pub fn recorded_exit(&self, app: &Engine) -> Option<i32> {
        std::fs::read_to_string(self.state_dir(app).join("exit-code"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Removes the container's files (state, log, etc files) but not its record or snapshot.
    pub fn remove_files(&self, app: &Engine) {
        let _ = std::fs::remove_dir_all(self.state_dir(app));
        let _ = std::fs::remove_dir_all(self.etc_dir(app));
        let _ = std::fs::remove_file(self.log_path(app));
    }
}

/// The user namespace a new container gets, from `--userns` and who runs
/// kiln. Root: none unless asked; `remap` maps container ids `0..65536` to
/// the `kiln` range of /etc/subuid and /etc/subgid, else to
/// `1000000000..+65536` (above what `useradd` hands out). Not root
/// (rootless): always one; container root is the caller, and with
/// `newuidmap`/`newgidmap` on PATH and a range for the caller in
/// /etc/subuid and /etc/subgid, container ids `1..` are that range.
pub fn user_namespace(mode: Option<&str>) -> Result<Option<IdMap>> {
    let (uid, gid) = (kiln_sys::process::geteuid(), kiln_sys::process::getegid());
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    match (mode, uid) {
        (None | Some("host"), 0) => Ok(None),
        (Some("host"), _) => bail!(
            "--userns=host needs root: rootless kiln always runs containers in a user namespace"
        ),
        (Some("remap" | ""), 0) => {
            let (su, sg) = (read("/etc/subuid"), read("/etc/subgid"));
            Ok(Some(
                match (
                    subordinate_range(&su, "kiln", u32::MAX),
                    subordinate_range(&sg, "kiln", u32::MAX),
                ) {
                    (Some((u, nu)), Some((g, ng))) => IdMap::remap(u, g, nu.min(ng)),
                    _ => IdMap::remap(DEFAULT_REMAP_START, DEFAULT_REMAP_START, DEFAULT_REMAP_SIZE),
                },
            ))
        }
        (Some("remap" | "") | None, _) => {
            let name = user_name(uid, &read("/etc/passwd"));
            let path = std::env::var("PATH").unwrap_or_default();
            let (su, sg) = if kiln_runtime::userns::helpers_available(&path) {
                (
                    subordinate_range(&read("/etc/subuid"), &name, uid),
                    subordinate_range(&read("/etc/subgid"), &name, gid),
                )
            } else {
                (None, None)
            };
            Ok(Some(IdMap::rootless(uid, gid, su, sg)))
        }
        (Some(other), _) => bail!("invalid --userns {other:?}: use remap or host"),
    }
}

/// Rootless: gives the caller back every file of a container's tree that
/// a subordinate id (container user 1 and up) created, so the snapshot can be
/// removed. Inside a user namespace with the container's maps (util-linux
/// `unshare`, through `newuidmap`/`newgidmap`), container root owns the tree
/// and may `chown -R 0:0` it, which is the caller on the host. Does nothing
/// when the maps name only the caller or the tree holds only its files.
pub fn reclaim_rootless_tree(maps: &IdMap, dir: &std::path::Path) -> Result<()> {
    let (uid, gid) = (kiln_sys::process::geteuid(), kiln_sys::process::getegid());
    if maps.uids.len() < 2 && maps.gids.len() < 2 || !foreign_owned(dir, uid, gid) {
        return Ok(());
    }
    let out = std::process::Command::new("unshare")
        .args(unshare_map_args(maps, uid, gid))
        .args([
            "--",
            "sh",
            "-c",
            "chown -R 0:0 -- \"$1\" && chmod -R u+rwX -- \"$1\"",
            "sh",
        ])
        .arg(dir)
        .output()
        .context("cannot run unshare (util-linux) to reclaim files of subordinate ids")?;
    if !out.status.success() {
        bail!(
            "cannot reclaim the files of subordinate ids under {}: unshare: {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// `unshare` options that recreate `maps` (the caller as container root
/// through `--map-root-user`, other ranges with `--map-users`/`--map-groups`,
/// which take `outer,inner,count`).
fn unshare_map_args(maps: &IdMap, uid: u32, gid: u32) -> Vec<String> {
    let mut args = vec!["--map-root-user".to_owned()];
    let own =
        |r: &kiln_model::IdRange, id: u32| r.container_id == 0 && r.host_id == id && r.size == 1;
    for r in maps.uids.iter().filter(|r| !own(r, uid)) {
        args.push(format!(
            "--map-users={},{},{}",
            r.host_id, r.container_id, r.size
        ));
    }
    for r in maps.gids.iter().filter(|r| !own(r, gid)) {
        args.push(format!(
            "--map-groups={},{},{}",
            r.host_id, r.container_id, r.size
        ));
    }
    args
}

/// Whether anything under `dir` (not following symlinks) belongs to another
/// uid or gid than `uid`:`gid`, or cannot be read.
fn foreign_owned(dir: &std::path::Path, uid: u32, gid: u32) -> bool {
    use std::os::unix::fs::MetadataExt;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            return true;
        };
        for e in entries {
            let Ok(m) = e.and_then(|e| {
                let m = e.metadata()?;
                if m.is_dir() {
                    stack.push(e.path());
                }
                Ok(m)
            }) else {
                return true;
            };
            if m.uid() != uid || m.gid() != gid {
                return true;
            }
        }
    }
    false
}

/// Adds the execute (search) bit for others to a directory, without read.
fn allow_traversal(dir: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(m) = std::fs::metadata(dir) {
        let mode = m.permissions().mode();
        if mode & 0o001 == 0 {
            let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode | 0o011));
        }
    }
}

/// The login name of `uid` in passwd text (its number when absent).
fn user_name(uid: u32, passwd: &str) -> String {
    passwd
        .lines()
        .find_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?;
            (f.nth(1)?.parse::<u32>().ok()? == uid).then(|| name.to_owned())
        })
        .unwrap_or_else(|| uid.to_string())
}

/// A snapshot mount description as the runtime takes it.
pub fn rootfs_mount(m: kiln_snapshot::Mount) -> RootfsMount {
    RootfsMount {
        fstype: m.fstype,
        source: m.source.into(),
        options: m.options,
    }
}

/// `host` or `none` (kiln-model's parser); Docker's other modes need a
/// bridge, which kiln does not make.
pub fn network_mode(name: &str) -> Result<NetworkMode> {
    Ok(name.parse::<NetworkMode>()?)
}

/// The mounts in the order they are made: by the depth of their target
/// (as Docker sorts them), so that `--tmpfs /run` never hides a later
/// `-v FILE:/run/x`; the given order among targets of one depth.
pub fn in_mount_order(volumes: &[VolumeSpec]) -> Vec<&VolumeSpec> {
    let mut sorted: Vec<&VolumeSpec> = volumes.iter().collect();
    sorted.sort_by_key(|v| clean_target(&v.target).matches('/').count());
    sorted
}

/// A container path without `.`, empty components or a trailing `/`.
fn clean_target(target: &str) -> String {
    let parts: Vec<&str> = target
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    format!("/{}", parts.join("/"))
}

/// Refuses two mounts on one container path, as Docker does.
pub fn check_mount_points(volumes: &[VolumeSpec]) -> Result<()> {
    let mut seen = std::collections::BTreeSet::new();
    for v in volumes {
        let target = clean_target(&v.target);
        if !seen.insert(target.clone()) {
            bail!("Duplicate mount point: {target}");
        }
    }
    Ok(())
}

/// A list of numbers and ranges (`0-3,5`) as Docker parses `--cpuset-cpus`
/// and the kernel's `cpuset.cpus`; `None` when malformed. An empty list is
/// empty. Numbers above `max` are refused (`Err(())`) before any range is
/// expanded.
fn parse_cpu_list(s: &str, max: u32) -> Option<std::result::Result<Vec<u32>, ()>> {
    let mut out = Vec::new();
    if s.is_empty() {
        return Some(Ok(out));
    }
    let number = |n: &str| {
        (!n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            .then(|| n.parse::<u32>().ok())
            .flatten()
    };
    for part in s.split(',') {
        let (lo, hi) = match part.split_once('-') {
            Some((a, b)) => (number(a)?, number(b)?),
            None => {
                let n = number(part)?;
                (n, n)
            }
        };
        if hi < lo {
            return None;
        }
        if hi > max {
            return Some(Err(()));
        }
        out.extend(lo..=hi);
    }
    Some(Ok(out))
}

/// The CPUs containers may be given: the root cpuset's (v1), the root's
/// effective CPUs (v2), else the online ones; `None` when none is readable.
fn available_cpus() -> Option<String> {
    [
        "/sys/fs/cgroup/cpuset/cpuset.cpus",
        "/sys/fs/cgroup/cpuset.cpus.effective",
        "/sys/devices/system/cpu/online",
    ]
    .iter()
    .find_map(|p| std::fs::read_to_string(p).ok())
    .map(|s| s.trim().to_owned())
}

/// Checks `--cpuset-cpus` as Docker's daemon does at create time: the
/// list's syntax, then that every CPU it names is one the host offers.
pub fn check_cpuset_cpus(requested: &str) -> Result<()> {
    let invalid = || crate::format_err!("Invalid value {requested} for cpuset cpus");
    let Some(available) = available_cpus() else {
        return parse_cpu_list(requested, u32::MAX)
            .map(|_| ())
            .ok_or_else(invalid);
    };
    let offered = match parse_cpu_list(&available, u32::MAX) {
        Some(Ok(list)) => list,
        _ => {
            return parse_cpu_list(requested, u32::MAX)
                .map(|_| ())
                .ok_or_else(invalid);
        }
    };
    // As Docker: numbers up to 8192 (Linux's usual maximum) or the host's highest.
    let max = offered.iter().copied().max().unwrap_or(0).max(8192);
    let fits = match parse_cpu_list(requested, max) {
        None => return Err(invalid()),
        Some(Err(())) => false,
        Some(Ok(list)) => list.iter().all(|c| offered.contains(c)),
    };
    if !fits {
        bail!("Requested CPUs are not available - requested {requested}, available: {available}");
    }
    Ok(())
}

/// A `--device` host path as Docker's daemon checks it when the container
/// starts (symlinks followed): a device node, or a directory holding one.
fn check_device(path: &str) -> Result<()> {
    let gathering = "error gathering device information while adding custom device";
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!("{gathering} {path:?}: no such file or directory")
        }
        Err(e) => bail!("{gathering} {path:?}: {e}"),
        Ok(md) if is_device(&md.file_type()) => Ok(()),
        Ok(md) if md.is_dir() && holds_device(std::path::Path::new(path)) => Ok(()),
        Ok(_) => bail!("{gathering} {path:?}: not a device node"),
    }
}

fn is_device(ft: &std::fs::FileType) -> bool {
    use std::os::unix::fs::FileTypeExt as _;
    ft.is_char_device() || ft.is_block_device()
}

/// Whether a device node is somewhere below `dir` (links not followed).
fn holds_device(dir: &std::path::Path) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries.flatten().any(|e| match e.file_type() {
        Ok(ft) if is_device(&ft) => true,
        Ok(ft) if ft.is_dir() => holds_device(&e.path()),
        _ => false,
    })
}

/// Whether the kernel can disable a container's OOM killer (Docker's test:
/// a v1 memory hierarchy with `memory.oom_control`; cgroup v2 has none).
pub fn oom_kill_disable_supported() -> bool {
    std::path::Path::new("/sys/fs/cgroup/memory/memory.oom_control").exists()
}

/// Refuses numeric uids and gids outside 0..=2^31-1 in `-u USER[:GROUP]`,
/// with Docker's message (a name is looked up in the container later).
pub fn check_user_ids(user: &str) -> Result<()> {
    for part in user.split(':') {
        let digits = part.strip_prefix('-').unwrap_or(part);
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let in_range = part
            .parse::<i64>()
            .is_ok_and(|n| (0..=i64::from(i32::MAX)).contains(&n));
        if !in_range {
            bail!("uids and gids must be in range 0-{}", i32::MAX);
        }
    }
    Ok(())
}

/// Parses `--add-host NAME:IP` (IPv6 addresses keep their colons; the
/// name is what precedes the first one). `host-gateway` needs a bridge.
pub fn parse_add_host(s: &str) -> Result<(String, String)> {
    let (name, ip) = s
        .split_once(':')
        .or_else(|| s.split_once('='))
        .with_context(|| format!("invalid argument {s:?} for --add-host: expected NAME:IP"))?;
    if ip == "host-gateway" {
        bail!(
            "--add-host {s}: host-gateway is the address of a bridge, which kiln does not create"
        );
    }
    let ip = ip.trim_start_matches('[').trim_end_matches(']');
    if name.is_empty() || ip.parse::<std::net::IpAddr>().is_err() {
        bail!("invalid argument {s:?} for --add-host: invalid IP address in add-host: {ip:?}");
    }
    Ok((name.to_owned(), ip.to_owned()))
}

/// The container's resolv.conf: `base` (the host's with `--network host`,
/// else none: `--network none` resolves nothing), with `--dns`,
/// `--dns-search` and `--dns-option` replacing its lines of that kind (the
/// host's are used for the kinds not given, as Docker does). `None` when
/// there is nothing to write.
pub fn resolv_conf(
    base: Option<&str>,
    host: &str,
    dns: &[String],
    search: &[String],
    options: &[String],
) -> Option<String> {
    if dns.is_empty() && search.is_empty() && options.is_empty() {
        return base.map(str::to_owned);
    }
    let lines = |key: &str| -> Vec<String> {
        host.lines()
            .filter_map(|l| {
                let mut f = l.split_whitespace();
                (f.next() == Some(key)).then(|| f.collect::<Vec<_>>().join(" "))
            })
            .filter(|v| !v.is_empty())
            .collect()
    };
    let mut out = String::new();
    let servers = if dns.is_empty() {
        lines("nameserver")
    } else {
        dns.to_vec()
    };
    for s in servers {
        out.push_str(&format!("nameserver {s}\n"));
    }
    let search = if search.is_empty() {
        lines("search")
    } else {
        search.to_vec()
    };
    let search = search.join(" ");
    if !search.trim().is_empty() && search.trim() != "." {
        out.push_str(&format!("search {search}\n"));
    }
    let options = if options.is_empty() {
        lines("options")
    } else {
        options.to_vec()
    };
    if !options.is_empty() {
        out.push_str(&format!("options {}\n", options.join(" ")));
    }
    Some(out)
}

/// Parses `--ulimit NAME=SOFT[:HARD]` (Docker's names; `-1`: unlimited).
pub fn parse_ulimit(s: &str) -> Result<(String, u64, u64)> {
    const NAMES: [&str; 16] = [
        "as",
        "core",
        "cpu",
        "data",
        "fsize",
        "locks",
        "memlock",
        "msgqueue",
        "nice",
        "nofile",
        "nproc",
        "rss",
        "rtprio",
        "rttime",
        "sigpending",
        "stack",
    ];
    let (name, values) = s
        .split_once('=')
        .with_context(|| format!("invalid ulimit argument: {s}"))?;
    if !NAMES.contains(&name) {
        bail!("invalid ulimit type: {name}");
    }
    let value = |v: &str| -> Result<u64> {
        if v == "-1" {
            return Ok(u64::MAX);
        }
        v.parse::<u64>()
            .with_context(|| format!("invalid ulimit argument: {s}"))
    };
    let (soft, hard) = match values.split_once(':') {
        Some((a, b)) => (value(a)?, value(b)?),
        None => (value(values)?, value(values)?),
    };
    if soft > hard {
        bail!("ulimit soft limit must be less than or equal to hard limit: {soft} > {hard}");
    }
    Ok((name.to_owned(), soft, hard))
}

/// Parses `--mount` (Docker's CSV of `key=value`): `type=bind` (its
/// source must exist, unlike `-v`'s) or `type=tmpfs`; named volumes are
/// not supported yet.
pub fn parse_mount(s: &str) -> Result<VolumeSpec> {
    let mut typ = "volume";
    let (mut source, mut target, mut readonly) = (None, None, false);
    let mut options = Vec::new();
    for field in s.split(',').filter(|f| !f.is_empty()) {
        let (k, v) = field.split_once('=').unwrap_or((field, ""));
        match k {
            "type" => typ = v,
            "source" | "src" => source = Some(v.to_owned()),
            "target" | "destination" | "dst" => target = Some(v.to_owned()),
            "readonly" | "ro" => {
                readonly = match v {
                    "" | "true" | "1" => true,
                    "false" | "0" => false,
                    _ => bail!("invalid value for {k}: {v}"),
                }
            }
            "bind-propagation" | "consistency" => {}
            "tmpfs-size" => options.push(format!("size={}", parse_bytes(v)?)),
            "tmpfs-mode" => {
                u32::from_str_radix(v, 8).with_context(|| format!("invalid tmpfs-mode {v:?}"))?;
                options.push(format!("mode={v}"));
            }
            other => bail!("unexpected key '{other}' in '{field}'"),
        }
    }
    let target = target.context("invalid argument for --mount: target is required")?;
    if !target.starts_with('/') {
        bail!("invalid mount target {target:?}: the path must be absolute");
    }
    match typ {
        "bind" => {
            let source = source.context("invalid argument for --mount: source is required")?;
            if !source.starts_with('/') {
                bail!("invalid mount source {source:?}: the path must be absolute");
            }
            if !std::path::Path::new(&source).exists() {
                bail!(
                    "invalid mount config for type \"bind\": bind source path does not exist: {source}"
                );
            }
            Ok(VolumeSpec {
                source,
                target,
                readonly,
                tmpfs: false,
                options: Vec::new(),
                volume: None,
            })
        }
        "tmpfs" => {
            if source.is_some() {
                bail!("invalid mount config for type \"tmpfs\": source is not allowed");
            }
            if readonly {
                options.push("ro".into());
            }
            Ok(VolumeSpec {
                source: String::new(),
                target,
                readonly,
                tmpfs: true,
                options,
                volume: None,
            })
        }
        "volume" => {
            let name = source.unwrap_or_default();
            if !name.is_empty() && !crate::volume::valid_name(&name) {
                bail!(
                    "invalid mount config for type \"volume\": \"{name}\" includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed"
                );
            }
            Ok(VolumeSpec {
                source: String::new(),
                target,
                readonly,
                tmpfs: false,
                options: Vec::new(),
                volume: Some(name),
            })
        }
        other => bail!("invalid mount type {other:?}: use bind, volume or tmpfs"),
    }
}

/// Docker's smallest `--memory`.
pub const MIN_MEMORY: i64 = 6 * 1024 * 1024;

fn volume_mount(v: &VolumeSpec) -> Result<Mount> {
    let mut b = MountBuilder::default().destination(&v.target);
    if v.tmpfs {
        b = b
            .typ("tmpfs")
            .source("tmpfs")
            .options(tmpfs_options(&v.options));
    } else {
        let mut opts = vec!["rbind".to_owned(), "rprivate".to_owned()];
        if v.readonly {
            opts.push("ro".into());
        }
        // The host path the user chose is resolved on the host, as the
        // kernel follows a symlinked source of Docker's bind mounts; the
        // runtime opens sources without following a final symlink.
        let source = std::fs::canonicalize(&v.source).unwrap_or_else(|_| PathBuf::from(&v.source));
        b = b.typ("bind").source(source).options(opts);
    }
    b.build()
        .with_context(|| format!("invalid mount {}", v.target))
}

/// Docker's tmpfs options: `nosuid,nodev,noexec,mode=1777`, each
/// overridden by the user's (`exec`, `suid`, `dev`, `mode=`, plus `size=`...).
fn tmpfs_options(user: &[String]) -> Vec<String> {
    let overridden = |default: &str| {
        user.iter().any(|o| match default {
            "nosuid" => o == "suid" || o == "nosuid",
            "nodev" => o == "dev" || o == "nodev",
            "noexec" => o == "exec" || o == "noexec",
            _ => o.starts_with("mode="),
        })
    };
    ["nosuid", "nodev", "noexec", "mode=1777"]
        .into_iter()
        .filter(|d| !overridden(d))
        .map(str::to_owned)
        .chain(user.iter().cloned())
        .collect()
}

/// Parses `--tmpfs PATH[:OPTIONS]`.
pub fn parse_tmpfs(s: &str) -> Result<VolumeSpec> {
    let (target, options) = s.split_once(':').unwrap_or((s, ""));
    if !target.starts_with('/') {
        bail!("invalid --tmpfs {s:?}: the path must be absolute");
    }
    Ok(VolumeSpec {
        source: String::new(),
        target: target.to_owned(),
        readonly: options.split(',').any(|o| o == "ro"),
        tmpfs: true,
        options: options
            .split(',')
            .filter(|o| !o.is_empty())
            .map(str::to_owned)
            .collect(),
        volume: None,
    })
}

/// Parses `-v HOST:CTR[:ro|rw]`, `-v NAME:CTR[:ro|rw]` (a named volume)
/// and `-v CTR` (an anonymous volume).
pub fn parse_volume(s: &str) -> Result<VolumeSpec> {
    let parts: Vec<&str> = s.split(':').collect();
    let (source, target, mode) = match parts.as_slice() {
        [c] => ("", *c, ""),
        [h, c] => (*h, *c, ""),
        [h, c, m] => (*h, *c, *m),
        _ => bail!("invalid volume specification {s:?}: expected HOST:CONTAINER[:ro]"),
    };
    let named = !source.is_empty() && !source.starts_with('/');
    if named && !crate::volume::valid_name(source) {
        bail!(
            "invalid volume specification {s:?}: \"{source}\" includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, use absolute path"
        );
    }
    if !target.starts_with('/') {
        bail!("invalid volume specification {s:?}: the container path must be absolute");
    }
    let readonly = match mode {
        "" | "rw" => false,
        "ro" => true,
        other => bail!("invalid volume specification {s:?}: unknown mode {other:?}"),
    };
    if source.is_empty() || named {
        return Ok(VolumeSpec {
            source: String::new(),
            target: target.to_owned(),
            readonly,
            tmpfs: false,
            options: Vec::new(),
            volume: Some(source.to_owned()),
        });
    }
    if !std::path::Path::new(source).exists() {
        std::fs::create_dir_all(source)
            .with_context(|| format!("cannot create the volume source {source}"))?;
    }
    Ok(VolumeSpec {
        source: source.to_owned(),
        target: target.to_owned(),
        readonly,
        tmpfs: false,
        options: Vec::new(),
        volume: None,
    })
}

/// The container's Entrypoint and Cmd as Docker combines them:
/// `--entrypoint` replaces the image's entrypoint and drops its Cmd;
/// command-line arguments replace Cmd. The process runs Entrypoint + Cmd.
pub fn entrypoint_and_cmd(
    image_entrypoint: Option<&[String]>,
    image_cmd: Option<&[String]>,
    entrypoint: Option<&str>,
    cmd: &[String],
) -> (Vec<String>, Vec<String>) {
    let ep: Vec<String> = match entrypoint {
        Some("") => Vec::new(),
        Some(e) => vec![e.to_owned()],
        None => image_entrypoint.map(<[String]>::to_vec).unwrap_or_default(),
    };
    let cmd: Vec<String> = if !cmd.is_empty() {
        cmd.to_vec()
    } else if entrypoint.is_some() {
        Vec::new()
    } else {
        image_cmd.map(<[String]>::to_vec).unwrap_or_default()
    };
    (ep, cmd)
}

/// Merges `-e` values into the image's env: `K=V` sets, a bare `K` copies the
/// host's value (or is dropped when the host has none), later wins.
pub fn merge_env(image_env: &[String], overrides: &[String]) -> Vec<String> {
    let mut env: Vec<String> = image_env.to_vec();
    for o in overrides {
        let entry = match o.split_once('=') {
            Some(_) => o.clone(),
            None => match std::env::var(o) {
                Ok(v) => format!("{o}={v}"),
                Err(_) => continue,
            },
        };
        let key = entry.split('=').next().unwrap_or_default().to_owned();
        env.retain(|e| e.split('=').next() != Some(key.as_str()));
        env.push(entry);
    }
    env
}

/// Reads an `--env-file`: `K=V` or `K` lines; `#` comments and blank lines skipped.
pub fn read_env_file(path: &str) -> Result<Vec<String>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read env file {path}"))?;
    Ok(text
        .lines()
        .map(str::trim_start)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect())
}

/// Parses Docker's memory sizes: `512m`, `1g`, `1048576`, `100k`.
pub fn parse_bytes(s: &str) -> Result<i64> {
    let lower = s.trim().to_ascii_lowercase();
    let lower = lower.strip_suffix('b').unwrap_or(&lower);
    let (num, mult) = match lower.chars().last() {
        Some('k') => (&lower[..lower.len() - 1], 1i64 << 10),
        Some('m') => (&lower[..lower.len() - 1], 1 << 20),
        Some('g') => (&lower[..lower.len() - 1], 1 << 30),
        _ => (lower, 1),
    };
    let n: f64 = num.parse().with_context(|| format!("invalid size {s:?}"))?;
    if !(n.is_finite() && n >= 0.0) {
        bail!("invalid size {s:?}");
    }
    Ok((n * mult as f64) as i64)
}

/// Docker-style generated names: `<adjective>_<scientist>`.
pub fn random_name(seed: &[u8]) -> String {
    const LEFT: [&str; 16] = [
        "admiring", "bold", "brave", "clever", "eager", "festive", "gallant", "happy", "jolly",
        "keen", "lucid", "modest", "nifty", "quirky", "serene", "vibrant",
    ];
    const RIGHT: [&str; 16] = [
        "archimedes",
        "babbage",
        "curie",
        "darwin",
        "euler",
        "faraday",
        "gauss",
        "hopper",
        "kepler",
        "lovelace",
        "noether",
        "pascal",
        "ritchie",
        "shannon",
        "turing",
        "wozniak",
    ];
    let a = seed.first().copied().unwrap_or(0) as usize % LEFT.len();
    let b = seed.get(1).copied().unwrap_or(0) as usize % RIGHT.len();
    format!("{}_{}", LEFT[a], RIGHT[b])
}

/// 32 random bytes from the kernel.
pub fn random_bytes() -> Result<[u8; 32]> {
    use std::io::Read as _;
    let mut buf = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .context("cannot read /dev/urandom")?;
    Ok(buf)
}

/// A new 64-hex container ID.
pub fn new_id() -> Result<(String, [u8; 32])> {
    let bytes = random_bytes()?;
    Ok((bytes.iter().map(|b| format!("{b:02x}")).collect(), bytes))
}

/// How a foreground container ended ([`Engine::run_container`]).
#[derive(Debug)]
pub struct Exited {
    /// Its exit code (128 + signal when killed), or Docker's code for a
    /// container that could not run.
    pub code: i32,
    /// Why it could not run, if so.
    pub error: Option<kiln_runtime::Error>,
}

impl ContainerRecord {
    /// A container of image `image_id` (named `image` by the user) as
    /// `docker create IMAGE [COMMAND...]` makes it without other flags:
    /// the image's entrypoint with `command` (or the image's Cmd), its
    /// environment, working directory, user, labels and stop signal; no
    /// network but `lo`, the short ID as host name, a new ID and name.
    pub fn from_image(
        image: &str,
        image_id: Digest,
        config: &kiln_model::ContainerConfig,
        command: &[String],
    ) -> Result<ContainerRecord> {
        let (entrypoint, cmd) = entrypoint_and_cmd(
            config.entrypoint.as_deref(),
            config.cmd.as_deref(),
            None,
            command,
        );
        let args: Vec<String> = entrypoint.iter().chain(&cmd).cloned().collect();
        if args.is_empty() {
            bail!("no command specified");
        }
        let (id, seed) = new_id()?;
        Ok(ContainerRecord {
            hostname: id.get(..12).unwrap_or(&id).to_owned(),
            name: random_name(&seed),
            image: image.to_owned(),
            image_id,
            created: kiln_image::Timestamp::from_system_time(std::time::SystemTime::now())
                .to_string(),
            args,
            env: merge_env(config.env.as_deref().unwrap_or_default(), &[]),
            cwd: config
                .working_dir
                .clone()
                .filter(|w| !w.is_empty())
                .unwrap_or_else(|| "/".into()),
            user: config.user.clone().unwrap_or_default(),
            network: "none".to_owned(),
            tty: false,
            interactive: false,
            init: false,
            read_only: false,
            auto_remove: false,
            volumes: Vec::new(),
            cap_add: Vec::new(),
            cap_drop: Vec::new(),
            no_new_privileges: false,
            seccomp_unconfined: false,
            memory: None,
            pids_limit: None,
            cpus: None,
            cpu_shares: None,
            stop_signal: config.stop_signal.clone(),
            stop_timeout: None,
            labels: config
                .labels
                .clone()
                .unwrap_or_default()
                .into_iter()
                .collect(),
            memory_swap: None,
            ulimits: Vec::new(),
            sysctls: Vec::new(),
            privileged: false,
            devices: Vec::new(),
            group_add: Vec::new(),
            oom_kill_disable: false,
            cpuset_cpus: None,
            extra_hosts: Vec::new(),
            dns: Vec::new(),
            dns_search: Vec::new(),
            dns_options: Vec::new(),
            shm_size: None,
            snapshot: id.clone(),
            started: false,
            started_at: None,
            entrypoint_cmd: Some((entrypoint, cmd)),
            userns: user_namespace(None)?,
            id,
        })
    }
}

impl Engine {
    /// The container records.
    pub fn containers(&self) -> Result<kiln_content::Records<ContainerRecord>> {
        Ok(self.store.records::<ContainerRecord>(KIND)?)
    }

    /// Resolves a container by ID, ID prefix or name.
    pub fn find_container(&self, name: &str) -> Result<ContainerRecord> {
        Ok(self.containers()?.resolve(name)?)
    }

    /// Whether the container's processes run (paused ones too).
    pub fn container_running(&self, rec: &ContainerRecord) -> bool {
        kiln_runtime::Runtime::default()
            .state(&rec.state_dir(self))
            .is_ok_and(|s| s.status == kiln_runtime::Status::Running)
    }

    /// Creates container `rec`: its writable snapshot (`rec.snapshot`) on
    /// `parent` (the image's top snapshot, from [`Engine::ensure_unpacked`])
    /// and its record (the snapshot is removed again if that fails).
    pub fn create_container(&mut self, rec: &ContainerRecord, parent: Option<&str>) -> Result<()> {
        let snapshotter = self.snapshotter()?;
        snapshotter
            .prepare(&rec.snapshot, parent)
            .with_context(|| {
                format!(
                    "cannot prepare the root filesystem of {}",
                    rec.id.get(..12).unwrap_or(&rec.id)
                )
            })?;
        if let Err(e) = self.containers()?.put(rec) {
            let _ = snapshotter.remove(&rec.snapshot);
            return Err(e.into());
        }
        Ok(())
    }

    /// Notes in the record that the container was started now.
    pub fn mark_started(&self, rec: &ContainerRecord) -> Result<()> {
        let now = kiln_image::Timestamp::from_system_time(std::time::SystemTime::now()).to_string();
        self.containers()?.update(&rec.id, |r| {
            r.started = true;
            r.started_at = Some(now);
        })?;
        Ok(())
    }

    /// Runs a created container in the foreground with `stdio` (the
    /// caller's descriptors, pipes, a terminal) until it ends:
    /// [`prepare_run`](Engine::prepare_run) then
    /// [`run_prepared`](Engine::run_prepared).
    pub fn run_container(
        &mut self,
        rec: &ContainerRecord,
        stdio: kiln_runtime::StdioConfig,
    ) -> Result<Exited> {
        let cfg = self.prepare_run(rec)?;
        Ok(self.run_prepared(rec, &cfg, stdio))
    }

    /// The runtime config of a container about to run, its record marked
    /// started.
    pub fn prepare_run(&mut self, rec: &ContainerRecord) -> Result<LaunchConfig> {
        let cfg = rec.runtime_config(self)?;
        self.mark_started(rec)?;
        Ok(cfg)
    }

    /// Runs a container prepared by [`prepare_run`](Engine::prepare_run)
    /// in the foreground until it ends, and records how it ended
    /// (`exit-code` in its state directory, for `ps -a` and `wait`). A
    /// container that could not run is [`Exited::error`], its code Docker's
    /// for that failure (125-127).
    pub fn run_prepared(
        &self,
        rec: &ContainerRecord,
        cfg: &LaunchConfig,
        stdio: kiln_runtime::StdioConfig,
    ) -> Exited {
        let exited = match kiln_runtime::Runtime::default().run(cfg, stdio) {
            Ok(s) => Exited {
                code: s.code(),
                error: None,
            },
            Err(e) => Exited {
                code: e.exit_code(),
                error: Some(e),
            },
        };
        let _ = std::fs::write(
            rec.state_dir(self).join("exit-code"),
            exited.code.to_string(),
        );
        exited
    }

    /// Starts a created (or stopped) container in the background, its
    /// output going to its log file (`kiln logs`); `-i` keeps its stdin
    /// open. If its init fails at once, waits (briefly) for its supervisor
    /// to record that, so that its state already says exited.
    pub fn start_detached(&mut self, rec: &ContainerRecord) -> Result<()> {
        let cfg = rec.runtime_config(self)?;
        let log = rec.log_path(self);
        self.mark_started(rec)?;
        // `-i`: stdin stays open (nobody writes to it), as Docker keeps it.
        let options = kiln_runtime::DetachOptions {
            open_stdin: rec.interactive,
        };
        let runtime = kiln_runtime::Runtime::default();
        let started = runtime.start_detached_with(&cfg, &log, options);
        if started.is_err() {
            // The init failed (its command missing, say) and its supervisor is
            // recording that: let it finish, so that the caller's next `ps`
            // already shows the container exited, not up.
            let _ = runtime.wait(
                &rec.state_dir(self),
                Some(std::time::Duration::from_secs(5)),
            );
        }
        started.with_context(|| {
            format!(
                "cannot start container {}",
                rec.id.get(..12).unwrap_or(&rec.id)
            )
        })?;
        Ok(())
    }

    /// Stops a running container (nothing for one that is not): `signal`,
    /// then SIGKILL after `timeout`; an `--rm` container goes with it.
    pub fn stop_container(
        &mut self,
        rec: &ContainerRecord,
        signal: i32,
        timeout: std::time::Duration,
    ) -> Result<()> {
        if !self.container_running(rec) {
            return Ok(());
        }
        kiln_runtime::Runtime::default().stop(&rec.state_dir(self), signal, timeout)?;
        if rec.auto_remove {
            self.remove_container(rec, true)?;
        }
        Ok(())
    }

    /// Stops a running container as [`stop_container`](Engine::stop_container)
    /// does (but keeps an `--rm` one) and starts it again in the background
    /// (`docker restart`); a stopped one is just started.
    pub fn restart_container(
        &mut self,
        rec: &ContainerRecord,
        signal: i32,
        timeout: std::time::Duration,
    ) -> Result<()> {
        let runtime = kiln_runtime::Runtime::default();
        if self.container_running(rec) {
            runtime.stop(&rec.state_dir(self), signal, timeout)?;
        }
        // A restart begins from a clean runtime state; the writable layer stays.
        let _ = runtime.delete(&rec.state_dir(self), true);
        self.start_detached(rec)
    }

    /// Gives a container another name (`docker rename`), refused as
    /// Docker refuses it: an empty or invalid name, its own name, a name
    /// another container has.
    pub fn rename_container(&self, rec: &ContainerRecord, new_name: &str) -> Result<()> {
        if new_name.is_empty() {
            bail!("Neither old nor new names may be empty");
        }
        if !valid_name(new_name) {
            bail!(
                "Invalid container name ({new_name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
            );
        }
        if rec.name == new_name {
            bail!("Renaming a container with the same name as its current name");
        }
        self.containers()?
            .update(&rec.id, |r| r.name = new_name.to_owned())?;
        Ok(())
    }

    /// Sends `signal` to a running container's init.
    pub fn kill_container(&self, rec: &ContainerRecord, signal: i32) -> Result<()> {
        if !self.container_running(rec) {
            bail!(
                "container {} is not running",
                rec.id.get(..12).unwrap_or(&rec.id)
            );
        }
        Ok(kiln_runtime::Runtime::default().kill(&rec.state_dir(self), signal)?)
    }

    /// Removes a container: its runtime state, its snapshot and its record
    /// (a running one only with `force`, killing it).
    pub fn remove_container(&mut self, rec: &ContainerRecord, force: bool) -> Result<()> {
        if self.container_running(rec) && !force {
            bail!(
                "cannot remove container {}: container is running: stop the container before removing or force remove",
                rec.id.get(..12).unwrap_or(&rec.id)
            );
        }
        let runtime = kiln_runtime::Runtime::default();
        let dir = rec.state_dir(self);
        if dir.exists() {
            // An exited container's supervisor may still be writing its exit
            // status: deleting the state directory under it would leave files
            // behind. Returns at once for a running one (then killed by delete).
            let _ = runtime.wait(&dir, Some(std::time::Duration::ZERO));
            runtime.delete(&dir, true).with_context(|| {
                format!(
                    "cannot remove container {}",
                    rec.id.get(..12).unwrap_or(&rec.id)
                )
            })?;
        }
        let snapshotter = self.snapshotter()?;
        if snapshotter.exists(&rec.snapshot)? {
            if let Some(maps) = rec.userns.as_ref().filter(|_| crate::rootless()) {
                // Files made by container users 1.. belong to subordinate ids
                // the caller may not delete.
                for m in snapshotter.mounts(&rec.snapshot)? {
                    if m.fstype == "bind" {
                        reclaim_rootless_tree(maps, std::path::Path::new(&m.source))?;
                    }
                }
            }
            snapshotter.remove(&rec.snapshot)?;
        }
        rec.remove_files(self);
        self.containers()?.remove(&rec.id)?;
        Ok(())
    }
}

/// Whether `name` is a valid container name: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`,
/// as Docker's.
pub fn valid_name(name: &str) -> bool {
    name.chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// Parses a signal given as `TERM`, `SIGTERM` or `15` (1-64), as
/// `docker kill -s` and `--stop-signal` take it.
pub fn parse_signal(s: &str) -> Result<i32> {
    if let Ok(n) = s.parse::<i32>() {
        if (1..=64).contains(&n) {
            return Ok(n);
        }
        bail!("invalid signal {s:?}");
    }
    let upper = s.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    let n = match name {
        "HUP" => 1,
        "INT" => 2,
        "QUIT" => 3,
        "ILL" => 4,
        "TRAP" => 5,
        "ABRT" | "IOT" => 6,
        "BUS" => 7,
        "FPE" => 8,
        "KILL" => 9,
        "USR1" => 10,
        "SEGV" => 11,
        "USR2" => 12,
        "PIPE" => 13,
        "ALRM" => 14,
        "TERM" => 15,
        "STKFLT" => 16,
        "CHLD" => 17,
        "CONT" => 18,
        "STOP" => 19,
        "TSTP" => 20,
        "TTIN" => 21,
        "TTOU" => 22,
        "URG" => 23,
        "XCPU" => 24,
        "XFSZ" => 25,
        "VTALRM" => 26,
        "PROF" => 27,
        "WINCH" => 28,
        "IO" | "POLL" => 29,
        "PWR" => 30,
        "SYS" => 31,
        _ => bail!("invalid signal {s:?}"),
    };
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_parse_as_dockers() {
        assert_eq!(parse_cpu_list("", 10), Some(Ok(vec![])));
        assert_eq!(parse_cpu_list("0-2,5", 10), Some(Ok(vec![0, 1, 2, 5])));
        assert_eq!(parse_cpu_list("7", 10), Some(Ok(vec![7])));
        // Docker's TestRunWrongCpusetCpusFlagValue, and other malformed lists.
        for bad in ["1-10,11--", "0,", "a", "3-1", "-1", "1-", " 1"] {
            assert_eq!(parse_cpu_list(bad, 100), None, "{bad:?}");
        }
        // Above the maximum: refused before a range is expanded.
        assert_eq!(parse_cpu_list("0-4000000000", 8192), Some(Err(())));
    }

    #[test]
    fn device_specs_keep_dockers_fields() {
        let d = DeviceSpec::parse("/dev/null:/dev/mydev:r").expect("parse");
        assert_eq!(
            serde_json::to_value(&d).expect("json"),
            serde_json::json!({"PathOnHost": "/dev/null", "PathInContainer": "/dev/mydev", "CgroupPermissions": "r"})
        );
        let d = DeviceSpec::parse("/dev/zero:rw").expect("parse");
        assert_eq!(d.path_in_container, "/dev/zero");
        assert_eq!(d.cgroup_permissions, "rw");
        let e = DeviceSpec::parse("/dev/zero:ro").expect_err("ro is no permission");
        assert!(e.to_string().contains("invalid device"), "{e}");
        assert!(!e.to_string().contains("invalid spec"), "{e}");
    }

    fn combine_args(
        image_entrypoint: Option<&[String]>,
        image_cmd: Option<&[String]>,
        entrypoint: Option<&str>,
        cmd: &[String],
    ) -> Vec<String> {
        let (ep, cmd) = entrypoint_and_cmd(image_entrypoint, image_cmd, entrypoint, cmd);
        ep.into_iter().chain(cmd).collect()
    }

    fn v(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    fn vol(target: &str) -> VolumeSpec {
        VolumeSpec {
            source: "/srv".into(),
            target: target.into(),
            readonly: false,
            tmpfs: false,
            options: Vec::new(),
            volume: None,
        }
    }

    #[test]
    fn mounts_go_by_depth_and_duplicates_are_refused() {
        let vols = [vol("/run/test"), vol("/run"), vol("/a/b/c"), vol("/x")];
        let order: Vec<&str> = in_mount_order(&vols)
            .iter()
            .map(|v| v.target.as_str())
            .collect();
        assert_eq!(order, ["/run", "/x", "/run/test", "/a/b/c"]);
        assert!(check_mount_points(&vols).is_ok());
        let dup = [vol("/x"), vol("/y"), vol("/x/")];
        let err = check_mount_points(&dup).expect_err("duplicate");
        assert_eq!(err.to_string(), "Duplicate mount point: /x");
    }

    #[test]
    fn numeric_ids_must_be_in_docker_range() {
        for ok in ["0", "1000:1000", "2147483647", "app", "app:staff", "-x"] {
            assert!(check_user_ids(ok).is_ok(), "{ok}");
        }
        for bad in ["2147483648", "-1", "0:-1", "1:99999999999999999999999"] {
            let e = check_user_ids(bad).expect_err(bad);
            assert_eq!(e.to_string(), "uids and gids must be in range 0-2147483647");
        }
    }

    #[test]
    fn add_host_and_resolv_conf_follow_docker() {
        assert_eq!(
            parse_add_host("extra:86.75.30.9").expect("v4"),
            ("extra".to_owned(), "86.75.30.9".to_owned())
        );
        assert_eq!(
            parse_add_host("six:2001:db8::1").expect("v6").1,
            "2001:db8::1"
        );
        assert_eq!(parse_add_host("b:[::1]").expect("bracketed").1, "::1");
        for bad in ["nocolon", "x:notanip", ":1.2.3.4", "gw:host-gateway"] {
            assert!(parse_add_host(bad).is_err(), "{bad}");
        }
        let host = "nameserver 10.0.0.1\nsearch lan\noptions edns0\n";
        assert_eq!(resolv_conf(None, host, &[], &[], &[]), None);
        assert_eq!(
            resolv_conf(Some(host), host, &[], &[], &[]).as_deref(),
            Some(host)
        );
        // TestRunDNSOptions: --dns=127.0.0.1 --dns-search=mydomain --dns-opt=ndots:9
        assert_eq!(
            resolv_conf(
                None,
                host,
                &v(&["127.0.0.1"]),
                &v(&["mydomain"]),
                &v(&["ndots:9"])
            ),
            Some("nameserver 127.0.0.1\nsearch mydomain\noptions ndots:9\n".to_owned())
        );
        // The kinds not given come from the host; `--dns-search .` drops search.
        assert_eq!(
            resolv_conf(None, host, &v(&["1.1.1.1"]), &v(&["."]), &[]),
            Some("nameserver 1.1.1.1\noptions edns0\n".to_owned())
        );
    }

    #[test]
    fn ulimits_and_mounts_parse_as_docker() {
        assert_eq!(
            parse_ulimit("nofile=100:200").expect("nofile"),
            ("nofile".to_owned(), 100, 200)
        );
        assert_eq!(parse_ulimit("nproc=50").expect("nproc").2, 50);
        assert_eq!(parse_ulimit("core=-1").expect("unlimited").1, u64::MAX);
        for bad in ["nofile=300:200", "nosuch=1", "nofile", "nofile=x"] {
            assert!(parse_ulimit(bad).is_err(), "{bad}");
        }
        let m = parse_mount("type=bind,source=/,target=/host,readonly").expect("bind");
        assert_eq!(
            (m.source.as_str(), m.target.as_str(), m.readonly, m.tmpfs),
            ("/", "/host", true, false)
        );
        let t = parse_mount("type=tmpfs,dst=/t,tmpfs-size=1m,tmpfs-mode=1770").expect("tmpfs");
        assert!(t.tmpfs);
        assert_eq!(t.options, ["size=1048576", "mode=1770"]);
        let v = parse_mount("type=volume,source=vol,target=/x").expect("a volume mount");
        assert_eq!(
            (v.volume.as_deref(), v.target.as_str()),
            (Some("vol"), "/x")
        );
        for bad in [
            "type=bind,source=/nonexistent-kiln-source,target=/x",
            "type=bind,target=/x",
            "type=tmpfs,source=/x,target=/y",
            "type=volume,source=a/b,target=/x",
            "type=bind,source=/,target=relative",
            "type=bind,source=/,target=/x,bogus=1",
        ] {
            assert!(parse_mount(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn container_network_mode_is_refused_clearly() {
        let e = network_mode("container:web").expect_err("container mode");
        assert!(e.to_string().contains("does not join"), "{e}");
        assert!(network_mode("host").is_ok() && network_mode("none").is_ok());
    }

    #[test]
    fn entrypoint_and_cmd_combine_as_docker() {
        let ep = v(&["/entry"]);
        let cmd = v(&["a", "b"]);
        assert_eq!(
            combine_args(Some(&ep), Some(&cmd), None, &[]),
            v(&["/entry", "a", "b"])
        );
        assert_eq!(
            combine_args(Some(&ep), Some(&cmd), None, &v(&["x"])),
            v(&["/entry", "x"])
        );
        assert_eq!(
            combine_args(Some(&ep), Some(&cmd), Some("sh"), &[]),
            v(&["sh"])
        );
        assert_eq!(
            combine_args(None, Some(&cmd), Some("sh"), &v(&["-c", "true"])),
            v(&["sh", "-c", "true"])
        );
        assert_eq!(
            combine_args(Some(&ep), Some(&cmd), Some(""), &v(&["ls"])),
            v(&["ls"])
        );
    }

    #[test]
    fn env_overrides_replace_by_key() {
        let env = merge_env(&v(&["PATH=/bin", "A=1"]), &v(&["A=2", "B=3"]));
        assert_eq!(env, v(&["PATH=/bin", "A=2", "B=3"]));
    }

    #[test]
    fn volumes_parse_and_reject_bad_forms() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spec = format!("{}:/data:ro", dir.path().display());
        let vol = parse_volume(&spec).expect("valid volume");
        assert!(vol.readonly);
        assert_eq!(vol.target, "/data");
        let named = parse_volume("named:/data").expect("a named volume");
        assert_eq!(named.volume.as_deref(), Some("named"));
        let anon = parse_volume("/data").expect("an anonymous volume");
        assert_eq!(anon.volume.as_deref(), Some(""));
        assert!(parse_volume("a/b:/data").is_err());
        assert!(parse_volume("/x:relative").is_err());
        assert!(parse_volume("/x:/y:zz").is_err());
    }

    #[test]
    fn tmpfs_options_override_docker_defaults() {
        let t = parse_tmpfs("/run:size=1m,exec").expect("valid");
        assert_eq!(t.target, "/run");
        assert_eq!(
            tmpfs_options(&t.options),
            v(&["nosuid", "nodev", "mode=1777", "size=1m", "exec"])
        );
        let t = parse_tmpfs("/x").expect("valid");
        assert_eq!(
            tmpfs_options(&t.options),
            v(&["nosuid", "nodev", "noexec", "mode=1777"])
        );
        assert!(parse_tmpfs("/x:ro").expect("valid").readonly);
        assert!(parse_tmpfs("rel").is_err());
    }

    #[test]
    fn memory_sizes_parse() {
        assert_eq!(parse_bytes("512m").expect("size"), 512 << 20);
        assert_eq!(parse_bytes("1g").expect("size"), 1 << 30);
        assert_eq!(parse_bytes("1024").expect("size"), 1024);
        assert!(parse_bytes("lots").is_err());
    }

    #[test]
    fn unshare_args_recreate_the_rootless_maps() {
        let maps = IdMap::rootless(1001, 1002, Some((100000, 65536)), Some((200000, 500)));
        assert_eq!(
            unshare_map_args(&maps, 1001, 1002),
            v(&[
                "--map-root-user",
                "--map-users=100000,1,65536",
                "--map-groups=200000,1,500",
            ])
        );
    }

    #[test]
    fn a_tree_of_ones_own_files_needs_no_reclaiming() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("a/b")).expect("mkdir");
        std::fs::write(dir.path().join("a/b/f"), b"x").expect("write");
        let m = std::fs::metadata(dir.path()).expect("stat");
        assert!(!foreign_owned(dir.path(), m.uid(), m.gid()));
        assert!(foreign_owned(dir.path(), m.uid() + 1, m.gid()));
        assert!(foreign_owned(dir.path(), m.uid(), m.gid() + 1));
    }

    #[test]
    fn signals_parse_by_name_and_number() {
        assert_eq!(parse_signal("TERM").expect("sig"), 15);
        assert_eq!(parse_signal("SIGKILL").expect("sig"), 9);
        assert_eq!(parse_signal("sigusr1").expect("sig"), 10);
        assert_eq!(parse_signal("2").expect("sig"), 2);
        assert!(parse_signal("NOPE").is_err());
        assert!(parse_signal("0").is_err());
    }
}
