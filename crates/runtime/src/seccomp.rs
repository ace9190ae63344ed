//! Seccomp: Docker's default profile written as an OCI `LinuxSeccomp`, and
//! a compiler from any OCI profile to BPF filters (through seccompiler).
//!
//! The default profile is an allowlist (everything else fails with
//! `EPERM`) following Docker's: the syscalls an ordinary program needs;
//! `clone` without namespace flags; `clone3` failing with `ENOSYS` so that
//! libc falls back to `clone`; `socket` for every family except `AF_VSOCK`;
//! `personality` for the harmless personas; plus the syscalls Docker
//! grants with each added capability (`CAP_SYS_ADMIN` gives `mount`,
//! `unshare`, `setns`, ...). Blocked by default, as in Docker: `mount`,
//! `umount2`, `unshare`, `setns`, `pivot_root`, `keyctl`, `add_key`,
//! `request_key`, `bpf`, `perf_event_open`, `kexec_*`, `*_module`,
//! `reboot`, `swapon`/`swapoff`, `acct`, `settimeofday`/`clock_settime`,
//! `open_by_handle_at`, `userfaultfd`, `io_uring_*`, `iopl`/`ioperm`, the
//! new mount API, and anything not listed.

use std::collections::BTreeMap;

use kiln_sys::SockFilter;
use oci_spec::runtime::{Capability, LinuxSeccomp};
use serde_json::{Value, json};

use crate::error::Error;

/// Allowed for everyone (x86_64 and aarch64 names; names unknown to the
/// target architecture are skipped when compiling).
const ALLOWED: &[&str] = &[
    "accept",
    "accept4",
    "access",
    "adjtimex",
    "alarm",
    "bind",
    "brk",
    "cachestat",
    "capget",
    "capset",
    "chdir",
    "chmod",
    "chown",
    "clock_adjtime",
    "clock_getres",
    "clock_gettime",
    "clock_nanosleep",
    "close",
    "close_range",
    "connect",
    "copy_file_range",
    "creat",
    "dup",
    "dup2",
    "dup3",
    "epoll_create",
    "epoll_create1",
    "epoll_ctl",
    "epoll_ctl_old",
    "epoll_pwait",
    "epoll_pwait2",
    "epoll_wait",
    "epoll_wait_old",
    "eventfd",
    "eventfd2",
    "execve",
    "execveat",
    "exit",
    "exit_group",
    "faccessat",
    "faccessat2",
    "fadvise64",
    "fallocate",
    "fanotify_mark",
    "fchdir",
    "fchmod",
    "fchmodat",
    "fchmodat2",
    "fchown",
    "fchownat",
    "fcntl",
    "fdatasync",
    "fgetxattr",
    "flistxattr",
    "flock",
    "fork",
    "fremovexattr",
    "fsetxattr",
    "fstat",
    "fstatfs",
    "fsync",
    "ftruncate",
    "futex",
    "futex_requeue",
    "futex_wait",
    "futex_waitv",
    "futex_wake",
    "futimesat",
    "getcpu",
    "getcwd",
    "getdents",
    "getdents64",
    "getegid",
    "geteuid",
    "getgid",
    "getgroups",
    "getitimer",
    "getpeername",
    "getpgid",
    "getpgrp",
    "getpid",
    "getppid",
    "getpriority",
    "getrandom",
    "getresgid",
    "getresuid",
    "getrlimit",
    "get_robust_list",
    "getrusage",
    "getsid",
    "getsockname",
    "getsockopt",
    "get_thread_area",
    "gettid",
    "gettimeofday",
    "getuid",
    "getxattr",
    "inotify_add_watch",
    "inotify_init",
    "inotify_init1",
    "inotify_rm_watch",
    "io_cancel",
    "ioctl",
    "io_destroy",
    "io_getevents",
    "io_pgetevents",
    "ioprio_get",
    "ioprio_set",
    "io_setup",
    "io_submit",
    "kill",
    "landlock_add_rule",
    "landlock_create_ruleset",
    "landlock_restrict_self",
    "lchown",
    "lgetxattr",
    "link",
    "linkat",
    "listen",
    "listxattr",
    "llistxattr",
    "lremovexattr",
    "lseek",
    "lsetxattr",
    "lstat",
    "madvise",
    "map_shadow_stack",
    "membarrier",
    "memfd_create",
    "memfd_secret",
    "mincore",
    "mkdir",
    "mkdirat",
    "mknod",
    "mknodat",
    "mlock",
    "mlock2",
    "mlockall",
    "mmap",
    "mprotect",
    "mq_getsetattr",
    "mq_notify",
    "mq_open",
    "mq_timedreceive",
    "mq_timedsend",
    "mq_unlink",
    "mremap",
    "mseal",
    "msgctl",
    "msgget",
    "msgrcv",
    "msgsnd",
    "msync",
    "munlock",
    "munlockall",
    "munmap",
    "name_to_handle_at",
    "nanosleep",
    "newfstatat",
    "open",
    "openat",
    "openat2",
    "pause",
    "pidfd_open",
    "pidfd_send_signal",
    "pipe",
    "pipe2",
    "pkey_alloc",
    "pkey_free",
    "pkey_mprotect",
    "poll",
    "ppoll",
    "prctl",
    "pread64",
    "preadv",
    "preadv2",
    "prlimit64",
    "process_mrelease",
    "pselect6",
    "pwrite64",
    "pwritev",
    "pwritev2",
    "read",
    "readahead",
    "readlink",
    "readlinkat",
    "readv",
    "recvfrom",
    "recvmmsg",
    "recvmsg",
    "remap_file_pages",
    "removexattr",
    "rename",
    "renameat",
    "renameat2",
    "restart_syscall",
    "rmdir",
    "rseq",
    "rt_sigaction",
    "rt_sigpending",
    "rt_sigprocmask",
    "rt_sigqueueinfo",
    "rt_sigreturn",
    "rt_sigsuspend",
    "rt_sigtimedwait",
    "rt_tgsigqueueinfo",
    "sched_getaffinity",
    "sched_getattr",
    "sched_getparam",
    "sched_get_priority_max",
    "sched_get_priority_min",
    "sched_getscheduler",
    "sched_rr_get_interval",
    "sched_setaffinity",
    "sched_setattr",
    "sched_setparam",
    "sched_setscheduler",
    "sched_yield",
    "seccomp",
    "select",
    "semctl",
    "semget",
    "semop",
    "semtimedop",
    "sendfile",
    "sendmmsg",
    "sendmsg",
    "sendto",
    "setfsgid",
    "setfsuid",
    "setgid",
    "setgroups",
    "setitimer",
    "setpgid",
    "setpriority",
    "setregid",
    "setresgid",
    "setresuid",
    "setreuid",
    "setrlimit",
    "set_robust_list",
    "setsid",
    "setsockopt",
    "set_thread_area",
    "set_tid_address",
    "setuid",
    "setxattr",
    "shmat",
    "shmctl",
    "shmdt",
    "shmget",
    "shutdown",
    "sigaltstack",
    "signalfd",
    "signalfd4",
    "socketpair",
    "splice",
    "stat",
    "statfs",
    "statx",
    "symlink",
    "symlinkat",
    "sync",
    "sync_file_range",
    "syncfs",
    "sysinfo",
    "tee",
    "tgkill",
    "time",
    "timer_create",
    "timer_delete",
    "timer_getoverrun",
    "timer_gettime",
    "timer_settime",
    "timerfd_create",
    "timerfd_gettime",
    "timerfd_settime",
    "times",
    "tkill",
    "truncate",
    "umask",
    "uname",
    "unlink",
    "unlinkat",
    "utime",
    "utimensat",
    "utimes",
    "vfork",
    "vmsplice",
    "wait4",
    "waitid",
    "write",
    "writev",
    // Allowed by Docker on kernels >= 4.8, where ptrace cannot bypass seccomp.
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    // x86_64 only.
    "arch_prctl",
    "modify_ldt",
];

/// Extra syscalls Docker allows when the container holds a capability.
const BY_CAPABILITY: &[(&str, &[&str])] = &[
    (
        "CAP_SYS_ADMIN",
        &[
            "bpf",
            "clone",
            "clone3",
            "fanotify_init",
            "fsconfig",
            "fsmount",
            "fsopen",
            "fspick",
            "lookup_dcookie",
            "mount",
            "mount_setattr",
            "move_mount",
            "open_tree",
            "perf_event_open",
            "quotactl",
            "quotactl_fd",
            "setdomainname",
            "sethostname",
            "setns",
            "syslog",
            "umount2",
            "unshare",
        ],
    ),
    ("CAP_SYS_BOOT", &["reboot"]),
    ("CAP_SYS_CHROOT", &["chroot"]),
    (
        "CAP_SYS_MODULE",
        &["delete_module", "init_module", "finit_module"],
    ),
    ("CAP_SYS_PACCT", &["acct"]),
    (
        "CAP_SYS_PTRACE",
        &["kcmp", "pidfd_getfd", "process_madvise"],
    ),
    ("CAP_SYS_RAWIO", &["iopl", "ioperm"]),
    ("CAP_SYS_TIME", &["settimeofday", "clock_settime"]),
    ("CAP_SYS_TTY_CONFIG", &["vhangup"]),
    (
        "CAP_SYS_NICE",
        &[
            "get_mempolicy",
            "mbind",
            "set_mempolicy",
            "set_mempolicy_home_node",
        ],
    ),
    ("CAP_SYSLOG", &["syslog"]),
    ("CAP_BPF", &["bpf"]),
    ("CAP_PERFMON", &["perf_event_open"]),
];

/// CLONE_NEWNS | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET | NEWCGROUP.
const CLONE_NAMESPACE_FLAGS: u64 = 0x7E02_0000;
const AF_VSOCK: u64 = 40;
const PERSONAS: [u64; 5] = [0, 8, 0x20000, 0x20008, 0xffff_ffff];

/// Docker's default seccomp profile for a container holding `caps`.
pub fn docker_default(caps: &[Capability]) -> LinuxSeccomp {
    let names: Vec<String> = caps
        .iter()
        .filter_map(|c| {
            serde_json::to_value(c)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
        })
        .collect();
    let has = |c: &str| names.iter().any(|n| n == c);
    let mut allowed: Vec<&str> = ALLOWED.to_vec();
    for (cap, calls) in BY_CAPABILITY {
        if has(cap) {
            allowed.extend_from_slice(calls);
        }
    }
    allowed.sort_unstable();
    allowed.dedup();
    let mut syscalls = vec![json!({"names": allowed, "action": "SCMP_ACT_ALLOW"})];
    syscalls.push(json!({"names": ["socket"], "action": "SCMP_ACT_ALLOW",
        "args": [{"index": 0, "value": AF_VSOCK, "op": "SCMP_CMP_NE"}]}));
    for p in PERSONAS {
        syscalls.push(json!({"names": ["personality"], "action": "SCMP_ACT_ALLOW",
            "args": [{"index": 0, "value": p, "op": "SCMP_CMP_EQ"}]}));
    }
    if !has("CAP_SYS_ADMIN") {
        syscalls.push(json!({"names": ["clone"], "action": "SCMP_ACT_ALLOW",
            "args": [{"index": 0, "value": CLONE_NAMESPACE_FLAGS, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]}));
        syscalls.push(
            json!({"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::ENOSYS}),
        );
    }
    let profile = json!({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": libc::EPERM, "syscalls": syscalls});
    serde_json::from_value(profile).expect("the default profile is a valid LinuxSeccomp")
}

#[cfg(target_arch = "x86_64")]
const ARCH: seccompiler::TargetArch = seccompiler::TargetArch::x86_64;
#[cfg(target_arch = "aarch64")]
const ARCH: seccompiler::TargetArch = seccompiler::TargetArch::aarch64;

fn action(name: &str, errno: Option<u64>, default_errno: u64) -> Result<Value, Error> {
    Ok(match name {
        "SCMP_ACT_ALLOW" => json!("allow"),
        "SCMP_ACT_ERRNO" => json!({"errno": errno.unwrap_or(default_errno)}),
        "SCMP_ACT_KILL" | "SCMP_ACT_KILL_THREAD" => json!("kill_thread"),
        "SCMP_ACT_KILL_PROCESS" => json!("kill_process"),
        "SCMP_ACT_TRAP" => json!("trap"),
        "SCMP_ACT_LOG" => json!("log"),
        "SCMP_ACT_TRACE" => json!({"trace": errno.unwrap_or(0)}),
        other => return Err(Error::Seccomp(format!("unsupported action {other}"))),
    })
}

fn condition(arg: &Value) -> Result<Value, Error> {
    let index = arg["index"].as_u64().unwrap_or(0);
    let value = arg["value"].as_u64().unwrap_or(0);
    let (op, val) = match arg["op"].as_str().unwrap_or("") {
        "SCMP_CMP_NE" => (json!("ne"), value),
        "SCMP_CMP_LT" => (json!("lt"), value),
        "SCMP_CMP_LE" => (json!("le"), value),
        "SCMP_CMP_EQ" => (json!("eq"), value),
        "SCMP_CMP_GE" => (json!("ge"), value),
        "SCMP_CMP_GT" => (json!("gt"), value),
        "SCMP_CMP_MASKED_EQ" => (
            json!({"masked_eq": value}),
            arg["valueTwo"].as_u64().unwrap_or(0),
        ),
        other => return Err(Error::Seccomp(format!("unsupported comparison {other}"))),
    };
    Ok(json!({"index": index, "type": "qword", "op": op, "val": val}))
}

/// Compiles an OCI seccomp profile into BPF programs, to be installed in
/// order. The first program holds the default action and every `ALLOW`
/// rule; each other action gets a program of its own installed after it
/// (the kernel takes the most restrictive result, and among equal actions
/// the latest filter's, so `clone3` → `ENOSYS` wins over `EPERM`).
pub fn compile(profile: &LinuxSeccomp) -> Result<Vec<Vec<SockFilter>>, Error> {
    let p = serde_json::to_value(profile).map_err(|e| Error::Seccomp(e.to_string()))?;
    let default_errno = p["defaultErrnoRet"].as_u64().unwrap_or(libc::EPERM as u64);
    let default = action(
        p["defaultAction"].as_str().unwrap_or(""),
        None,
        default_errno,
    )?;
    // One group per action; within it, rules per syscall name.
    let mut groups: BTreeMap<String, (Value, BTreeMap<String, Vec<Value>>)> = BTreeMap::new();
    for rule in p["syscalls"].as_array().into_iter().flatten() {
        let act = action(
            rule["action"].as_str().unwrap_or(""),
            rule["errnoRet"].as_u64(),
            default_errno,
        )?;
        if act == default {
            continue;
        }
        let conds: Vec<Value> = rule["args"]
            .as_array()
            .into_iter()
            .flatten()
            .map(condition)
            .collect::<Result<_, _>>()?;
        let key = act.to_string();
        let entry = groups
            .entry(key)
            .or_insert_with(|| (act.clone(), BTreeMap::new()));
        for name in rule["names"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            entry
                .1
                .entry(name.to_owned())
                .or_default()
                .push(Value::Array(conds.clone()));
        }
    }
    let allow = json!("allow");
    let mut order: Vec<(Value, BTreeMap<String, Vec<Value>>)> = Vec::new();
    let mut rest = Vec::new();
    for (_, (act, rules)) in groups {
        if act == allow {
            order.insert(0, (act, rules))
        } else {
            rest.push((act, rules))
        }
    }
    if order.is_empty() {
        order.push((allow.clone(), BTreeMap::new()));
    }
    order.extend(rest);
    let mut programs = Vec::new();
    for (i, (act, rules)) in order.into_iter().enumerate() {
        let mismatch = if i == 0 {
            default.clone()
        } else {
            allow.clone()
        };
        programs.push(compile_one(mismatch, act, rules)?);
    }
    Ok(programs)
}

fn compile_one(
    mismatch: Value,
    matched: Value,
    rules: BTreeMap<String, Vec<Value>>,
) -> Result<Vec<SockFilter>, Error> {
    let prog = match compile_direct(&mismatch, &matched, &rules) {
        Some(p) => p?,
        None => compile_json(mismatch, matched, rules)?,
    };
    Ok(prog
        .into_iter()
        .map(|i| SockFilter {
            code: i.code,
            jt: i.jt,
            jf: i.jf,
            k: i.k,
        })
        .collect())
}

fn typed_action(v: &Value) -> Option<seccompiler::SeccompAction> {
    use seccompiler::SeccompAction as A;
    Some(match v {
        Value::String(s) => match s.as_str() {
            "allow" => A::Allow,
            "kill_thread" => A::KillThread,
            "kill_process" => A::KillProcess,
            "trap" => A::Trap,
            "log" => A::Log,
            _ => return None,
        },
        Value::Object(o) => {
            if let Some(n) = o.get("errno") {
                A::Errno(u32::try_from(n.as_u64()?).ok()?)
            } else {
                A::Trace(u32::try_from(o.get("trace")?.as_u64()?).ok()?)
            }
        }
        _ => return None,
    })
}

fn typed_condition(c: &Value) -> Option<Result<seccompiler::SeccompCondition, Error>> {
    use seccompiler::SeccompCmpOp as Op;
    let op = match &c["op"] {
        Value::String(s) => match s.as_str() {
            "eq" => Op::Eq,
            "ne" => Op::Ne,
            "lt" => Op::Lt,
            "le" => Op::Le,
            "gt" => Op::Gt,
            "ge" => Op::Ge,
            _ => return None,
        },
        Value::Object(o) => Op::MaskedEq(o.get("masked_eq")?.as_u64()?),
        _ => return None,
    };
    let index = u8::try_from(c["index"].as_u64()?).ok()?;
    Some(
        seccompiler::SeccompCondition::new(
            index,
            seccompiler::SeccompCmpArgLen::Qword,
            op,
            c["val"].as_u64()?,
        )
        .map_err(|e| Error::Seccomp(e.to_string())),
    )
}

/// Builds the filter through seccompiler's typed API (fast); `None` when a
/// syscall name or an action is outside what this path knows.
#[cfg(target_arch = "x86_64")]
fn compile_direct(
    mismatch: &Value,
    matched: &Value,
    rules: &BTreeMap<String, Vec<Value>>,
) -> Option<Result<seccompiler::BpfProgram, Error>> {
    let mut typed: BTreeMap<i64, Vec<seccompiler::SeccompRule>> = BTreeMap::new();
    for (name, conds) in rules {
        let nr = crate::syscalls_x86_64::number(name)?;
        let entry = typed.entry(nr).or_default();
        if conds
            .iter()
            .any(|c| c.as_array().is_some_and(Vec::is_empty))
        {
            entry.clear();
            continue;
        }
        for c in conds {
            let list: Result<Vec<_>, Error> = c
                .as_array()?
                .iter()
                .map(typed_condition)
                .collect::<Option<_>>()?;
            let rule = list.and_then(|l| {
                seccompiler::SeccompRule::new(l).map_err(|e| Error::Seccomp(e.to_string()))
            });
            match rule {
                Ok(r) => entry.push(r),
                Err(e) => return Some(Err(e)),
            }
        }
    }
    let filter = seccompiler::SeccompFilter::new(
        typed,
        typed_action(mismatch)?,
        typed_action(matched)?,
        ARCH,
    );
    Some(
        filter
            .and_then(seccompiler::BpfProgram::try_from)
            .map_err(|e| Error::Seccomp(e.to_string())),
    )
}

#[cfg(not(target_arch = "x86_64"))]
fn compile_direct(
    _: &Value,
    _: &Value,
    _: &BTreeMap<String, Vec<Value>>,
) -> Option<Result<seccompiler::BpfProgram, Error>> {
    None
}

fn compile_json(
    mismatch: Value,
    matched: Value,
    mut rules: BTreeMap<String, Vec<Value>>,
) -> Result<seccompiler::BpfProgram, Error> {
    loop {
        let mut filter = Vec::new();
        for (name, conds) in &rules {
            if conds
                .iter()
                .any(|c| c.as_array().is_some_and(Vec::is_empty))
            {
                filter.push(json!({"syscall": name}));
            } else {
                for c in conds {
                    filter.push(json!({"syscall": name, "args": c}));
                }
            }
        }
        let doc =
            json!({"f": {"mismatch_action": mismatch, "filter_action": matched, "filter": filter}});
        let text = doc.to_string();
        match seccompiler::compile_from_json(text.as_bytes(), ARCH) {
            Ok(mut map) => {
                return map
                    .remove("f")
                    .ok_or_else(|| Error::Seccomp("filter missing".into()));
            }
            Err(seccompiler::Error::JsonFrontend(e)) if unknown_name(&e.to_string()).is_some() => {
                // Like libseccomp, skip syscalls this architecture lacks.
                let name = unknown_name(&e.to_string()).unwrap_or_default();
                if rules.remove(&name).is_none() {
                    return Err(Error::Seccomp(format!("unknown syscall {name}")));
                }
            }
            Err(e) => return Err(Error::Seccomp(e.to_string())),
        }
    }
}

/// The syscall name in seccompiler's "Invalid syscall name: NAME for given arch" error.
fn unknown_name(message: &str) -> Option<String> {
    let rest = message.strip_prefix("Invalid syscall name: ")?;
    rest.split(" for given arch").next().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(names: &[&str]) -> Vec<Capability> {
        names
            .iter()
            .map(|n| serde_json::from_value(json!(n)).expect("capability"))
            .collect()
    }

    #[test]
    fn default_profile_compiles_into_two_programs() {
        let p = docker_default(&caps(&["CAP_CHOWN"]));
        let progs = compile(&p).expect("compiles");
        assert_eq!(progs.len(), 2, "allowlist plus clone3 ENOSYS");
        assert!(progs[0].len() > 300);
        // The ENOSYS program's return for a match: SECCOMP_RET_ERRNO | 38.
        assert!(
            progs[1]
                .iter()
                .any(|i| i.k == 0x0005_0000 | libc::ENOSYS as u32)
        );
    }

    #[test]
    fn direct_and_json_paths_agree() {
        let p = docker_default(&caps(&["CAP_CHOWN"]));
        let fast = compile(&p).expect("direct");
        // Force the JSON path by recompiling each group through it.
        let v = serde_json::to_value(&p).expect("json");
        let mut allow = BTreeMap::new();
        for rule in v["syscalls"].as_array().expect("rules") {
            if rule["action"] == "SCMP_ACT_ALLOW" {
                let conds: Vec<Value> = rule["args"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|a| condition(a).expect("condition"))
                    .collect();
                for n in rule["names"].as_array().expect("names") {
                    allow
                        .entry(n.as_str().expect("name").to_owned())
                        .or_insert_with(Vec::new)
                        .push(Value::Array(conds.clone()));
                }
            }
        }
        let slow = compile_json(json!({"errno": 1}), json!("allow"), allow).expect("json path");
        assert_eq!(fast[0].len(), slow.len());
        assert!(
            fast[0]
                .iter()
                .zip(&slow)
                .all(|(a, b)| (a.code, a.jt, a.jf, a.k) == (b.code, b.jt, b.jf, b.k))
        );
    }

    #[test]
    fn sys_admin_unlocks_mount() {
        let without = serde_json::to_string(&docker_default(&caps(&["CAP_CHOWN"]))).expect("json");
        let with = serde_json::to_string(&docker_default(&caps(&["CAP_SYS_ADMIN"]))).expect("json");
        assert!(!without.contains("\"mount\"") && with.contains("\"mount\""));
        assert!(!without.contains("\"keyctl\"") && !with.contains("\"keyctl\""));
    }
}
