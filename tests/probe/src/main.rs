//! The probe: prints what a process sees inside a container, as JSON.
//!
//! Without arguments it prints one JSON object: pid, visible pids, namespace
//! inodes, mounts, capabilities, no_new_privs, seccomp mode, cgroup and its
//! limits, ids and groups, environment, cwd, hostname, network interfaces,
//! and a few isolation checks (is `/proc/kcore` masked, can `/proc/sys` be
//! written, what `keyctl` and `clone3` return). With arguments it does one
//! action for tests: `alloc MIB` touches that much memory, `spawn N` starts
//! N sleeping children and reports how many started, `sleep SECS`,
//! `exit CODE`, `agent SOCK` asks the ssh-agent at SOCK how many keys it
//! holds.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;

use serde_json::{Value, json};

const CAP_NAMES: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

fn read(path: &str) -> Option<String> {
    fs::read_to_string(path)
        .ok()
        .map(|s| s.trim_end().to_owned())
}

fn status_fields() -> BTreeMap<String, String> {
    read("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            l.split_once(':')
                .map(|(k, v)| (k.to_owned(), v.trim().to_owned()))
        })
        .collect()
}

fn cap_names(hex: &str) -> Vec<&'static str> {
    let bits = u64::from_str_radix(hex, 16).unwrap_or(0);
    CAP_NAMES
        .iter()
        .enumerate()
        .filter(|(i, _)| bits & (1u64 << i) != 0)
        .map(|(_, n)| *n)
        .collect()
}

fn namespaces() -> Value {
    let mut m = serde_json::Map::new();
    for name in ["cgroup", "ipc", "mnt", "net", "pid", "user", "uts"] {
        if let Ok(link) = fs::read_link(format!("/proc/self/ns/{name}")) {
            let s = link.to_string_lossy().to_string();
            let inode: Option<u64> = s
                .split('[')
                .nth(1)
                .and_then(|r| r.trim_end_matches(']').parse().ok());
            m.insert(name.into(), json!(inode));
        }
    }
    Value::Object(m)
}

fn mounts() -> Value {
    let info = read("/proc/self/mountinfo").unwrap_or_default();
    let list: Vec<Value> = info
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let sep = f.iter().position(|x| *x == "-")?;
            Some(json!({"target": f.get(4)?, "options": f.get(5)?, "fstype": f.get(sep + 1)?, "source": f.get(sep + 2)?}))
        })
        .collect();
    Value::Array(list)
}

fn pids() -> Vec<u32> {
    let mut v: Vec<u32> = fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
        .collect();
    v.sort_unstable();
    v
}

fn cgroup_limits() -> Value {
    let mut m = serde_json::Map::new();
    for (k, p) in [
        (
            "v1_memory_limit",
            "/sys/fs/cgroup/memory/memory.limit_in_bytes",
        ),
        ("v1_pids_max", "/sys/fs/cgroup/pids/pids.max"),
        ("v1_cpu_quota", "/sys/fs/cgroup/cpu/cpu.cfs_quota_us"),
        ("v1_cpu_period", "/sys/fs/cgroup/cpu/cpu.cfs_period_us"),
        ("v1_cpu_shares", "/sys/fs/cgroup/cpu/cpu.shares"),
        ("v2_memory_max", "/sys/fs/cgroup/memory.max"),
        ("v2_pids_max", "/sys/fs/cgroup/pids.max"),
        ("v2_cpu_max", "/sys/fs/cgroup/cpu.max"),
        ("v2_cpu_weight", "/sys/fs/cgroup/cpu.weight"),
    ] {
        if let Some(v) = read(p) {
            m.insert(k.into(), json!(v));
        }
    }
    Value::Object(m)
}

fn interfaces() -> Vec<String> {
    read("/proc/net/dev")
        .unwrap_or_default()
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next().map(|n| n.trim().to_owned()))
        .collect()
}

fn errno_of(ret: libc::c_long) -> i64 {
    if ret < 0 {
        i64::from(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
    } else {
        0
    }
}

fn syscall_checks() -> Value {
    // SAFETY: KEYCTL_GET_KEYRING_ID with KEY_SPEC_SESSION_KEYRING, no create: reads only.
    let keyctl = unsafe { libc::syscall(libc::SYS_keyctl, 0, -3i64, 0) };
    let keyctl = errno_of(keyctl);
    // SAFETY: clone3 with a null argument and size 0 fails before doing anything.
    let clone3 = unsafe { libc::syscall(libc::SYS_clone3, std::ptr::null::<u8>(), 0usize) };
    let clone3 = errno_of(clone3);
    // SAFETY: unshare of the UTS namespace only affects this process.
    let unshare = unsafe { libc::unshare(libc::CLONE_NEWUTS) };
    let unshare = errno_of(libc::c_long::from(unshare));
    json!({"keyctl_errno": keyctl, "clone3_errno": clone3, "unshare_errno": unshare})
}

fn probe() -> Value {
    let st = status_fields();
    let field = |k: &str| st.get(k).cloned().unwrap_or_default();
    let ids = |k: &str| -> Vec<u32> {
        field(k)
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect()
    };
    let kcore = fs::metadata("/proc/kcore").ok();
    let kcore_masked = {
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        kcore
            .as_ref()
            .is_none_or(|m| m.file_type().is_char_device() && m.rdev() == libc::makedev(1, 3))
    };
    let proc_sys_writable = fs::OpenOptions::new()
        .write(true)
        .open("/proc/sys/kernel/domainname")
        .is_ok();
    let env: BTreeMap<String, String> = std::env::vars().collect();
    json!({
        "pid": std::process::id(),
        "ppid": std::os::unix::process::parent_id(),
        "pids": pids(),
        "namespaces": namespaces(),
        "mounts": mounts(),
        "capabilities": {
            "bounding": cap_names(&field("CapBnd")),
            "effective": cap_names(&field("CapEff")),
            "permitted": cap_names(&field("CapPrm")),
            "inheritable": cap_names(&field("CapInh")),
            "ambient": cap_names(&field("CapAmb")),
        },
        "no_new_privs": field("NoNewPrivs") == "1",
        "signals_blocked": field("SigBlk"),
        "signals_ignored": field("SigIgn"),
        "seccomp": field("Seccomp").parse::<u32>().unwrap_or(0),
        "cgroup": read("/proc/self/cgroup").unwrap_or_default().lines().map(str::to_owned).collect::<Vec<_>>(),
        "cgroup_limits": cgroup_limits(),
        "uid": ids("Uid"),
        "gid": ids("Gid"),
        "uid_map": read("/proc/self/uid_map").unwrap_or_default(),
        "gid_map": read("/proc/self/gid_map").unwrap_or_default(),
        "init_exe_writable": init_exe_writable(),
        "groups": ids("Groups"),
        "env": env,
        "cwd": std::env::current_dir().map(|p| p.display().to_string()).unwrap_or_default(),
        "hostname": read("/proc/sys/kernel/hostname"),
        "interfaces": interfaces(),
        "kcore_masked": kcore_masked,
        "proc_sys_writable": proc_sys_writable,
        "syscalls": syscall_checks(),
    })
}

/// CVE-2019-5736: what PID 1's `/proc/1/exe` leads to from here: the
/// link's target (or why it cannot be read) and whether the binary behind
/// it opens for writing.
fn init_exe_writable() -> Value {
    let target = match fs::read_link("/proc/1/exe") {
        Ok(t) => json!(t.display().to_string()),
        Err(e) => json!({"error": e.to_string()}),
    };
    let write = match std::fs::OpenOptions::new().write(true).open("/proc/1/exe") {
        Ok(_) => json!(true),
        Err(e) => json!({"writable": false, "error": e.to_string()}),
    };
    json!({"target": target, "open_for_write": write})
}

fn alloc(mib: usize) -> Value {
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    for _ in 0..mib {
        chunks.push(vec![1u8; 1 << 20]);
    }
    json!({"allocated_mib": chunks.len()})
}

fn spawn(n: usize) -> Value {
    let mut children = Vec::new();
    let mut failed = 0;
    for _ in 0..n {
        match std::process::Command::new("/proc/self/exe")
            .args(["sleep", "30"])
            .spawn()
        {
            Ok(c) => children.push(c),
            Err(_) => failed += 1,
        }
    }
    let started = children.len();
    for mut c in children {
        let _ = c.kill();
        let _ = c.wait();
    }
    json!({"started": started, "failed": failed})
}

/// Asks the ssh-agent at `sock` for its identities (the agent protocol's
/// `SSH2_AGENTC_REQUEST_IDENTITIES`) and reports how many it holds.
fn agent(sock: &str) -> Value {
    use std::io::Read;
    let ask = || -> std::io::Result<Value> {
        let mut s = std::os::unix::net::UnixStream::connect(sock)?;
        // length 1, type 11
        s.write_all(&[0, 0, 0, 1, 11])?;
        let mut len = [0u8; 4];
        s.read_exact(&mut len)?;
        let mut body = vec![0u8; u32::from_be_bytes(len).min(1 << 20) as usize];
        s.read_exact(&mut body)?;
        // type 12 (IDENTITIES_ANSWER), then a u32 count
        match body.as_slice() {
            [12, a, b, c, d, ..] => Ok(json!({"identities": u32::from_be_bytes([*a, *b, *c, *d])})),
            other => Ok(json!({"error": format!("unexpected answer {:?}", other.first())})),
        }
    };
    ask().unwrap_or_else(|e| json!({"error": e.to_string()}))
}

/// `PTRACE_ATTACH` to `pid` (which stops it), then exits without
/// detaching: the tracee is left in a group stop with no tracer.
fn ptrace_attach(pid: i32) -> Value {
    // SAFETY: PTRACE_ATTACH takes no pointers (addr and data unused).
    let ret = unsafe { libc::ptrace(libc::PTRACE_ATTACH, pid, 0usize, 0usize) };
    json!({"ptrace_attach": pid, "errno": errno_of(ret)})
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| args.get(i).and_then(|a| a.parse::<u64>().ok()).unwrap_or(0);
    let out = match args.first().map(String::as_str) {
        None => probe(),
        Some("alloc") => alloc(arg(1) as usize),
        Some("spawn") => spawn(arg(1) as usize),
        Some("sleep") => {
            std::thread::sleep(std::time::Duration::from_secs(arg(1)));
            json!({"slept": arg(1)})
        }
        Some("exit") => std::process::exit(arg(1) as i32),
        Some("agent") => agent(args.get(1).map_or("", String::as_str)),
        Some("ptrace-attach") => ptrace_attach(arg(1) as i32),
        Some(other) => {
            eprintln!("kiln-probe: unknown action {other}");
            std::process::exit(2);
        }
    };
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{out}");
}
