//! Docker's defaults as an OCI runtime `Spec`: the caller fills in values
//! (args, env, user, limits) and gets the spec Docker would hand runc.

use std::path::{Path, PathBuf};

use oci_spec::runtime::{Capability, LinuxSeccomp, Mount, Spec};
use serde_json::{Value, json};

use kiln_model::NetworkMode;

use crate::error::{Error, Result};
use crate::seccomp;

/// Docker's default capabilities.
pub const DEFAULT_CAPABILITIES: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Paths Docker hides from containers.
pub const MASKED_PATHS: [&str; 12] = [
    "/proc/asound",
    "/proc/acpi",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Paths Docker makes read-only.
pub const READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// `PATH` when the image sets none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// cgroup limits, as Docker's flags give them.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Resources {
    /// `--memory` in bytes.
    pub memory: Option<i64>,
    /// `--memory-swap` in bytes (memory plus swap); Docker's default is twice `memory`.
    pub memory_swap: Option<i64>,
    /// `--pids-limit`.
    pub pids_limit: Option<i64>,
    /// `--cpus` (e.g. 1.5).
    pub cpus: Option<f64>,
    /// `--cpu-shares`.
    pub cpu_shares: Option<u64>,
}

/// Per-container files bind-mounted over `/etc/hosts`, `/etc/hostname`
/// and `/etc/resolv.conf`; see [`write_etc_files`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EtcFiles {
    /// Source of `/etc/hosts`.
    pub hosts: PathBuf,
    /// Source of `/etc/hostname`.
    pub hostname: PathBuf,
    /// Source of `/etc/resolv.conf`.
    pub resolv_conf: PathBuf,
}

/// What the caller decides; everything else is Docker's default.
#[derive(Clone, Debug, Default)]
pub struct DockerSpecOptions {
    /// The command: Entrypoint and Cmd already combined.
    pub args: Vec<String>,
    /// `KEY=VALUE` pairs: the image's Env then `-e`; `PATH` is added when missing.
    pub env: Vec<String>,
    /// Working directory (absolute; `/` when empty).
    pub cwd: String,
    /// Hostname (Docker: the short container ID).
    pub hostname: String,
    /// Network mode.
    pub network: NetworkMode,
    /// `-t`: the process gets a terminal (also sets `TERM=xterm` when missing).
    pub tty: bool,
    /// `--read-only`.
    pub read_only: bool,
    /// `--cap-add` (`NET_ADMIN`, `CAP_NET_ADMIN` or `ALL`).
    pub cap_add: Vec<String>,
    /// `--cap-drop` (same forms).
    pub cap_drop: Vec<String>,
    /// `--security-opt no-new-privileges`.
    pub no_new_privileges: bool,
    /// `--security-opt seccomp=unconfined` sets this.
    pub seccomp_unconfined: bool,
    /// cgroup limits.
    pub resources: Resources,
    /// `/etc/hosts`, `/etc/hostname`, `/etc/resolv.conf` sources.
    pub etc_files: Option<EtcFiles>,
    /// Extra mounts (volumes, `--tmpfs`), after the defaults.
    pub mounts: Vec<Mount>,
    /// A new user namespace with these maps (`--userns`, rootless):
    /// adds the `user` namespace and `uidMappings`/`gidMappings`.
    pub userns: Option<kiln_model::IdMap>,
    /// `--shm-size` in bytes: the size of the `/dev/shm` tmpfs (Docker's
    /// default, 64 MiB, when `None`).
    pub shm_size: Option<i64>,
    /// `--ulimit`: (Docker's name, `nofile`; soft; hard) set as the process's
    /// rlimits (never above the caller's hard limit: see the README).
    pub ulimits: Vec<(String, u64, u64)>,
    /// `--sysctl`: namespaced kernel parameters set in the container's own
    /// namespaces (see [`check_sysctl`]).
    pub sysctls: Vec<(String, String)>,
    /// `--privileged`: every capability, no seccomp filter, no masked or
    /// read-only paths, `/sys` and `/sys/fs/cgroup` writable, every device
    /// allowed and the host's device nodes in `/dev`.
    pub privileged: bool,
    /// `--device`: host device nodes made in the container and allowed.
    pub devices: Vec<crate::extras::DeviceMapping>,
    /// `--group-add`: more supplementary groups (names resolved in the
    /// container's `/etc/group`, numbers as they are).
    pub group_add: Vec<String>,
    /// `--oom-kill-disable` (cgroup v1 only, as Docker's).
    pub oom_kill_disable: bool,
    /// `--cpuset-cpus` (`0-3,5`): the CPUs the container may run on.
    pub cpuset_cpus: Option<String>,
}

/// Whether `name` (`net.ipv4.ip_forward` or `net/ipv4/ip_forward`) is a
/// kernel parameter of the container's own namespaces, as Docker and runc
/// allow them: IPC's (`kernel.msg*`, `kernel.sem`, `kernel.shm*`,
/// `fs.mqueue.*`) and, with a network namespace of its own, `net.*`.
/// Anything else would change the host for everyone.
pub fn check_sysctl(name: &str, own_network: bool) -> Result<()> {
    let dotted = name.replace('/', ".");
    let refuse = |why: &str| Err(spec_err(format!("sysctl {name:?} is not allowed: {why}")));
    if dotted.is_empty()
        || dotted.split('.').any(|p| p.is_empty() || p == "..")
        || !dotted
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return refuse("not a kernel parameter name");
    }
    const IPC: [&str; 8] = [
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
    ];
    if IPC.contains(&dotted.as_str()) || dotted.starts_with("fs.mqueue.") {
        return Ok(());
    }
    if dotted.starts_with("net.") {
        if own_network {
            return Ok(());
        }
        return refuse("net.* is not allowed in the host's network namespace");
    }
    refuse(
        "it is not namespaced (only kernel.msg*, kernel.sem, kernel.shm*, fs.mqueue.* and net.* are)",
    )
}

/// Docker's `/dev/shm` size.
pub const DEFAULT_SHM_SIZE: i64 = 64 * 1024 * 1024;

fn parse_cap(name: &str) -> Result<Capability> {
    let upper = name.to_ascii_uppercase();
    let full = if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    };
    serde_json::from_value(Value::String(full.clone())).map_err(|_| Error::InvalidSpec {
        id: String::new(),
        reason: format!("unknown capability {name:?}"),
    })
}

/// Docker's capability set after `--cap-add` and `--cap-drop` (`ALL` works
/// in both, drop wins over the defaults, add wins over `drop ALL`).
pub fn capabilities(cap_add: &[String], cap_drop: &[String]) -> Result<Vec<Capability>> {
    let all_caps: Vec<Capability> = caps::all()
        .into_iter()
        .filter_map(|c| serde_json::from_value(Value::String(c.to_string())).ok())
        .collect();
    let is_all = |s: &String| s.eq_ignore_ascii_case("all");
    let mut set: Vec<Capability> = if cap_drop.iter().any(is_all) {
        Vec::new()
    } else {
        DEFAULT_CAPABILITIES
            .iter()
            .map(|c| parse_cap(c))
            .collect::<Result<_>>()?
    };
    for d in cap_drop.iter().filter(|s| !is_all(s)) {
        let d = parse_cap(d)?;
        set.retain(|c| *c != d);
    }
    for a in cap_add {
        let add = if is_all(a) {
            all_caps.clone()
        } else {
            vec![parse_cap(a)?]
        };
        for c in add {
            if !set.contains(&c) {
                set.push(c);
            }
        }
    }
    Ok(set)
}

fn mount(dest: &str, typ: &str, source: &str, options: &[&str]) -> Value {
    json!({"destination": dest, "type": typ, "source": source, "options": options})
}

/// Builds the spec Docker would: default mounts, capabilities (bounding,
/// effective and permitted; inheritable and ambient empty), masked and
/// read-only paths, seccomp profile, namespaces, resources.
pub fn docker_spec(o: &DockerSpecOptions) -> Result<Spec> {
    let caps = capabilities(&o.cap_add, &o.cap_drop)?;
    let hostname = if o.hostname.is_empty() {
        "localhost"
    } else {
        o.hostname.as_str()
    };
    let cwd = if o.cwd.is_empty() {
        "/"
    } else {
        o.cwd.as_str()
    };
    let caps_json = serde_json::to_value(&caps).map_err(|e| spec_err(e.to_string()))?;
    let rlimits: Vec<Value> = o
        .ulimits
        .iter()
        .map(|(name, soft, hard)| {
            json!({"type": format!("RLIMIT_{}", name.to_ascii_uppercase()), "soft": soft, "hard": hard})
        })
        .collect();
    let mut spec = json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": o.tty,
            "user": {"uid": 0, "gid": 0},
            "args": o.args,
            "env": process_env(o, hostname),
            "cwd": cwd,
            "capabilities": {"bounding": caps_json, "effective": caps_json, "permitted": caps_json},
            "noNewPrivileges": o.no_new_privileges,
            "rlimits": rlimits,
        },
        "root": {"path": "rootfs", "readonly": o.read_only},
        "hostname": hostname,
        "mounts": default_mounts(o),
        "linux": linux_section(o, &caps)?,
    });
    let extra = serde_json::to_value(&o.mounts).map_err(|e| spec_err(e.to_string()))?;
    if let (Some(list), Value::Array(extra)) = (spec["mounts"].as_array_mut(), extra) {
        list.extend(extra);
    }
    crate::extras::apply(&mut spec, o)?;
    serde_json::from_value(spec).map_err(|e| spec_err(e.to_string()))
}

/// The caller's environment plus Docker's `PATH`, `HOSTNAME` and, with a
/// terminal, `TERM` when missing.
fn process_env(o: &DockerSpecOptions, hostname: &str) -> Vec<String> {
    let mut env = o.env.clone();
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.insert(0, format!("PATH={DEFAULT_PATH}"));
    }
    if o.tty && !env.iter().any(|e| e.starts_with("TERM=")) {
        env.push("TERM=xterm".into());
    }
    if !env.iter().any(|e| e.starts_with("HOSTNAME=")) {
        env.insert(1.min(env.len()), format!("HOSTNAME={hostname}"));
    }
    env
}

/// Docker's mounts: `/proc`, `/dev` and below, `/sys`, the cgroups, and
/// the `/etc` files (read-only with `--read-only`).
fn default_mounts(o: &DockerSpecOptions) -> Vec<Value> {
    let shm_size = format!("size={}", o.shm_size.unwrap_or(DEFAULT_SHM_SIZE));
    let mut mounts = vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        ),
        mount(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", "ro"],
        ),
        mount(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["nosuid", "noexec", "nodev", "relatime", "ro"],
        ),
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        ),
        mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", &shm_size],
        ),
    ];
    if let Some(etc) = &o.etc_files {
        // As Docker: with `--read-only` these are read-only too.
        let mut options = vec!["rbind", "rprivate"];
        if o.read_only {
            options.push("ro");
        }
        for (dest, src) in [
            ("/etc/resolv.conf", &etc.resolv_conf),
            ("/etc/hostname", &etc.hostname),
            ("/etc/hosts", &etc.hosts),
        ] {
            mounts.push(
                json!({"destination": dest, "type": "bind", "source": src, "options": options}),
            );
        }
    }
    mounts
}

/// Docker's cgroup resources: every device denied (the runtime adds
/// Docker's defaults), memory and swap, pids, CPU quota and shares.
fn resources_of(r: &Resources) -> Value {
    let mut resources = json!({"devices": [{"allow": false, "access": "rwm"}]});
    if let Some(m) = r.memory {
        let swap = r.memory_swap.unwrap_or(m.saturating_mul(2));
        resources["memory"] = json!({"limit": m, "swap": swap});
    }
    if let Some(p) = r.pids_limit {
        resources["pids"] = json!({"limit": p});
    }
    let mut cpu = serde_json::Map::new();
    if let Some(c) = r.cpus {
        cpu.insert("period".into(), json!(100_000u64));
        cpu.insert("quota".into(), json!((c * 100_000.0).round() as i64));
    }
    if let Some(s) = r.cpu_shares {
        cpu.insert("shares".into(), json!(s));
    }
    if !cpu.is_empty() {
        resources["cpu"] = Value::Object(cpu);
    }
    resources
}

/// The spec's `linux` object: namespaces, resources, masked and read-only
/// paths, user namespace maps, sysctls, seccomp.
fn linux_section(o: &DockerSpecOptions, caps: &[Capability]) -> Result<Value> {
    let mut namespaces = vec![
        json!({"type": "pid"}),
        json!({"type": "ipc"}),
        json!({"type": "uts"}),
        json!({"type": "mount"}),
        json!({"type": "cgroup"}),
    ];
    if o.network == NetworkMode::None {
        namespaces.push(json!({"type": "network"}));
    }
    if o.userns.is_some() {
        namespaces.insert(0, json!({"type": "user"}));
    }
    let mut linux = json!({
        "namespaces": namespaces,
        "resources": resources_of(&o.resources),
        "maskedPaths": MASKED_PATHS,
        "readonlyPaths": READONLY_PATHS,
    });
    if let Some(m) = &o.userns {
        let ranges = |r: &[kiln_model::IdRange]| {
            r.iter()
                .map(
                    |r| json!({"containerID": r.container_id, "hostID": r.host_id, "size": r.size}),
                )
                .collect::<Vec<_>>()
        };
        linux["uidMappings"] = json!(ranges(&m.uids));
        linux["gidMappings"] = json!(ranges(&m.gids));
    }
    if !o.sysctls.is_empty() {
        let mut map = serde_json::Map::new();
        for (k, v) in &o.sysctls {
            check_sysctl(k, o.network == NetworkMode::None)?;
            map.insert(k.clone(), Value::String(v.clone()));
        }
        linux["sysctl"] = Value::Object(map);
    }
    if !o.seccomp_unconfined {
        let profile: LinuxSeccomp = seccomp::docker_default(caps);
        linux["seccomp"] = serde_json::to_value(profile).map_err(|e| spec_err(e.to_string()))?;
    }
    Ok(linux)
}

fn spec_err(reason: String) -> Error {
    Error::InvalidSpec {
        id: String::new(),
        reason,
    }
}

/// Writes the per-container `hosts`, `hostname` and `resolv.conf` into
/// `dir`: `hosts` maps localhost and the hostname to loopback addresses;
/// `resolv.conf` is the given content (the host's, which the caller reads)
/// or empty.
pub fn write_etc_files(dir: &Path, hostname: &str, resolv_conf: Option<&str>) -> Result<EtcFiles> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io("create", dir, e))?;
    let files = EtcFiles {
        hosts: dir.join("hosts"),
        hostname: dir.join("hostname"),
        resolv_conf: dir.join("resolv.conf"),
    };
    let hosts = format!(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n127.0.1.1\t{hostname}\n"
    );
    for (path, content) in [
        (&files.hosts, hosts),
        (&files.hostname, format!("{hostname}\n")),
        (&files.resolv_conf, resolv_conf.unwrap_or("").to_owned()),
    ] {
        std::fs::write(path, content).map_err(|e| Error::io("write", path, e))?;
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(caps: &[Capability]) -> Vec<String> {
        let mut v: Vec<String> = caps
            .iter()
            .map(|c| {
                serde_json::to_value(c)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default()
            })
            .collect();
        v.sort();
        v
    }

    #[test]
    fn default_caps_and_add_drop() {
        let d = capabilities(&[], &[]).expect("defaults");
        assert_eq!(d.len(), 14);
        let c = capabilities(&["net_admin".into()], &["CAP_CHOWN".into(), "mknod".into()])
            .expect("add drop");
        let n = names(&c);
        assert!(n.contains(&"CAP_NET_ADMIN".to_string()));
        assert!(!n.contains(&"CAP_CHOWN".to_string()) && !n.contains(&"CAP_MKNOD".to_string()));
        assert_eq!(n.len(), 13);
        let only = capabilities(&["KILL".into()], &["ALL".into()]).expect("drop all");
        assert_eq!(names(&only), vec!["CAP_KILL".to_string()]);
        assert!(capabilities(&["NOPE".into()], &[]).is_err());
    }

    #[test]
    fn spec_has_docker_defaults() {
        let o = DockerSpecOptions {
            args: vec!["true".into()],
            hostname: "abc".into(),
            resources: Resources {
                memory: Some(1 << 20),
                pids_limit: Some(10),
                cpus: Some(0.5),
                ..Default::default()
            },
            ..Default::default()
        };
        let spec = docker_spec(&o).expect("spec builds");
        let p = spec.process().as_ref().expect("process");
        assert_eq!(
            p.env().as_ref().expect("env")[0],
            format!("PATH={DEFAULT_PATH}")
        );
        assert_eq!(p.no_new_privileges(), Some(false));
        let caps = p.capabilities().as_ref().expect("caps");
        assert_eq!(caps.bounding().as_ref().map(|b| b.len()), Some(14));
        assert!(caps.inheritable().is_none() && caps.ambient().is_none());
        let linux = spec.linux().as_ref().expect("linux");
        assert!(
            linux
                .masked_paths()
                .as_ref()
                .expect("masked")
                .contains(&"/proc/kcore".to_string())
        );
        let ns = linux.namespaces().as_ref().expect("namespaces");
        assert_eq!(ns.len(), 6, "network none adds a network namespace");
        let res = linux.resources().as_ref().expect("resources");
        assert_eq!(res.memory().as_ref().and_then(|m| m.limit()), Some(1 << 20));
        assert_eq!(res.cpu().as_ref().and_then(|c| c.quota()), Some(50_000));
        assert!(linux.seccomp().is_some());
        assert_eq!(spec.hostname().as_deref(), Some("abc"));
        let shm = |spec: &Spec| {
            spec.mounts()
                .iter()
                .flatten()
                .find(|m| m.destination() == Path::new("/dev/shm"))
                .and_then(|m| m.options().clone())
                .expect("/dev/shm options")
        };
        assert!(shm(&spec).contains(&"size=67108864".to_string()));
        let big = docker_spec(&DockerSpecOptions {
            shm_size: Some(128 << 20),
            ..o
        })
        .expect("spec");
        assert!(shm(&big).contains(&"size=134217728".to_string()));
        let limited = docker_spec(&DockerSpecOptions {
            ulimits: vec![("nofile".into(), 100, 200)],
            ..Default::default()
        })
        .expect("spec");
        let r = limited
            .process()
            .as_ref()
            .and_then(|p| p.rlimits().clone())
            .expect("rlimits");
        assert_eq!((r[0].soft(), r[0].hard()), (100, 200));
        let bad = docker_spec(&DockerSpecOptions {
            ulimits: vec![("nosuch".into(), 1, 1)],
            ..Default::default()
        });
        assert!(bad.is_err(), "an unknown ulimit is refused");
        for ok in [
            "kernel.shmmax",
            "fs.mqueue.msg_max",
            "net.ipv4.ip_forward",
            "net/ipv4/ping_group_range",
        ] {
            assert!(check_sysctl(ok, true).is_ok(), "{ok}");
        }
        for bad in [
            "kernel.hostname",
            "vm.swappiness",
            "net.ipv4..x",
            "../x",
            "kernel.core_pattern",
            "",
        ] {
            assert!(check_sysctl(bad, true).is_err(), "{bad:?}");
        }
        assert!(
            check_sysctl("net.ipv4.ip_forward", false).is_err(),
            "host network"
        );
        let s = docker_spec(&DockerSpecOptions {
            sysctls: vec![("kernel.shmmax".into(), "1000".into())],
            ..Default::default()
        })
        .expect("spec");
        let sysctl = s
            .linux()
            .as_ref()
            .and_then(|l| l.sysctl().clone())
            .expect("sysctl");
        assert_eq!(
            sysctl.get("kernel.shmmax").map(String::as_str),
            Some("1000")
        );
    }

    #[test]
    fn etc_files_are_written() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f =
            write_etc_files(dir.path(), "box1", Some("nameserver 127.0.0.53\n")).expect("write");
        assert_eq!(
            std::fs::read_to_string(&f.hostname).expect("read"),
            "box1\n"
        );
        assert!(
            std::fs::read_to_string(&f.hosts)
                .expect("read")
                .contains("127.0.1.1\tbox1")
        );
        let o = DockerSpecOptions {
            etc_files: Some(f),
            ..Default::default()
        };
        let spec = docker_spec(&o).expect("spec");
        let mounts = spec.mounts().as_ref().expect("mounts");
        let hosts = |spec: &Spec| {
            spec.mounts()
                .iter()
                .flatten()
                .find(|m| m.destination() == Path::new("/etc/hosts"))
                .and_then(|m| m.options().clone())
                .expect("an /etc/hosts mount with options")
        };
        assert!(
            mounts
                .iter()
                .any(|m| m.destination() == Path::new("/etc/hosts"))
        );
        assert!(!hosts(&spec).contains(&"ro".to_string()));
        // --read-only: the /etc files are read-only too, as in Docker.
        let ro = docker_spec(&DockerSpecOptions {
            read_only: true,
            ..o
        })
        .expect("spec");
        assert!(hosts(&ro).contains(&"ro".to_string()));
    }

    #[test]
    fn mount_points_name_every_top_level_mount() {
        let o = DockerSpecOptions {
            args: vec!["true".into()],
            etc_files: Some(EtcFiles {
                hosts: "/h".into(),
                hostname: "/n".into(),
                resolv_conf: "/r".into(),
            }),
            ..Default::default()
        };
        let spec = docker_spec(&o).expect("spec builds");
        let dests: Vec<PathBuf> = spec
            .mounts()
            .as_ref()
            .expect("mounts")
            .iter()
            .map(|m| m.destination().clone())
            .collect();
        for d in &dests {
            assert!(
                crate::MOUNT_POINTS.iter().any(|p| d.starts_with(p)),
                "{} is below no MOUNT_POINTS entry",
                d.display()
            );
        }
        for p in crate::MOUNT_POINTS {
            assert!(
                dests.iter().any(|d| d == Path::new(p)),
                "{p} is not mounted"
            );
        }
    }
}
