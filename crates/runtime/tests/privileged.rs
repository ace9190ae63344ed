//! Real containers from a busybox root filesystem (needs root): run the
//! static `kiln-probe` inside and assert on what it reports.
#![cfg(feature = "privileged-tests")]

use std::fs;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use kiln_runtime::logfile::{LogEntry, LogStream};
use kiln_runtime::{
    DockerSpecOptions, ExitStatus, LaunchConfig, Resources, RootfsMount, Runtime, RuntimeConfig,
    Status, Stdio, StdioConfig, docker_spec,
};
use serde_json::Value;

const HARNESS: &str = env!("CARGO_BIN_EXE_kiln-runtime-harness");

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The static probe: `KILN_PROBE` if set, else built here.
fn probe_binary() -> PathBuf {
    if let Ok(p) = std::env::var("KILN_PROBE") {
        return PathBuf::from(p);
    }
    let target_dir = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| workspace().join("target"));
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args([
            "build",
            "-q",
            "-p",
            "kiln-probe",
            "--target",
            "x86_64-unknown-linux-gnu",
        ])
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        .env("CARGO_TARGET_DIR", &target_dir)
        .current_dir(workspace())
        .status()
        .expect("run cargo to build the probe");
    assert!(status.success(), "building kiln-probe failed");
    target_dir.join("x86_64-unknown-linux-gnu/debug/kiln-probe")
}

/// A busybox root filesystem with /etc/passwd, /etc/group and the probe.
fn rootfs() -> &'static Path {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        // Remove trees left by earlier runs whose process is gone.
        for e in fs::read_dir(std::env::temp_dir()).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if let Some(pid) = name.strip_prefix("kiln-runtime-rootfs-")
                && !Path::new("/proc").join(pid).exists()
            {
                let _ = fs::remove_dir_all(e.path());
            }
        }
        let root = std::env::temp_dir().join(format!("kiln-runtime-rootfs-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        for d in ["bin", "etc", "tmp", "proc", "sys", "dev", "root", "home/alice"] {
            fs::create_dir_all(root.join(d)).expect("mkdir");
        }
        fs::copy("/bin/busybox", root.join("bin/busybox")).expect("copy busybox");
        let list = Command::new("/bin/busybox").arg("--list").output().expect("busybox --list");
        for applet in String::from_utf8_lossy(&list.stdout).lines() {
            let _ = std::os::unix::fs::symlink("busybox", root.join("bin").join(applet));
        }
        fs::write(
            root.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nalice:x:1000:1000:Alice:/home/alice:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
        )
        .expect("passwd");
        fs::write(root.join("etc/group"), "root:x:0:\nwheel:x:10:alice\nalice:x:1000:\nnogroup:x:65534:\n").expect("group");
        fs::copy(probe_binary(), root.join("bin/kiln-probe")).expect("copy probe");
        fs::write(root.join("bin/notexec"), "#!/bin/sh\necho no\n").expect("write notexec");
        root
    })
}

fn runtime() -> Runtime {
    Runtime::new(RuntimeConfig {
        init_binary: HARNESS.into(),
        cgroup_parent: "kiln-test".into(),
        ..Default::default()
    })
}

struct Ctr {
    config: LaunchConfig,
    _dir: tempfile::TempDir,
}

fn container(name: &str, args: &[&str], tweak: impl FnOnce(&mut DockerSpecOptions)) -> Ctr {
    let dir = tempfile::tempdir().expect("tempdir");
    let id = format!("{name}-{}", std::process::id());
    let etc = kiln_runtime::write_etc_files(
        &dir.path().join("etc"),
        &id[..12.min(id.len())],
        Some("nameserver 127.0.0.1\n"),
    )
    .expect("etc files");
    let mut o = DockerSpecOptions {
        args: args.iter().map(|s| s.to_string()).collect(),
        hostname: id[..12.min(id.len())].to_string(),
        etc_files: Some(etc),
        ..Default::default()
    };
    tweak(&mut o);
    let spec = docker_spec(&o).expect("spec");
    let config = LaunchConfig {
        id: id.parse().expect("id"),
        spec,
        rootfs: vec![RootfsMount::bind(rootfs())],
        state_dir: dir.path().join("state"),
        user: None,
        init: false,
    };
    Ctr { config, _dir: dir }
}

fn pipe() -> (OwnedFd, OwnedFd) {
    kiln_sys::process::pipe().expect("pipe")
}

/// Runs to completion, capturing stdout and stderr.
fn run(c: &Ctr) -> (kiln_runtime::Result<ExitStatus>, String, String) {
    let (out_r, out_w) = pipe();
    let (err_r, err_w) = pipe();
    let stdio = StdioConfig {
        stdin: Stdio::Null,
        stdout: Stdio::Fd(out_w),
        stderr: Stdio::Fd(err_w),
        tty: false,
    };
    let started = runtime().start(&c.config, stdio);
    let reader = |fd: OwnedFd| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = fs::File::from(fd).read_to_string(&mut s);
            s
        })
    };
    let (o, e) = (reader(out_r), reader(err_r));
    let status = started.and_then(|fg| fg.wait());
    (status, o.join().expect("stdout"), e.join().expect("stderr"))
}

fn probe(c: &Ctr) -> Value {
    let (st, out, err) = run(c);
    assert_eq!(
        st.expect("probe runs"),
        ExitStatus::Code(0),
        "stderr: {err}"
    );
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("probe output {out:?}: {e}"))
}

fn strings(v: &Value) -> Vec<String> {
    let mut s: Vec<String> = v
        .as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_str().expect("string").to_owned())
        .collect();
    s.sort();
    s
}

fn host_ns(name: &str) -> u64 {
    fs::metadata(format!("/proc/self/ns/{name}"))
        .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
        .expect("host ns")
}

#[test]
fn probe_sees_an_isolated_container() {
    let c = container("iso", &["/bin/kiln-probe"], |_| {});
    let p = probe(&c);
    assert_eq!(p["pid"], 1);
    assert_eq!(
        p["pids"],
        serde_json::json!([1]),
        "only its own process is visible"
    );
    for ns in ["mnt", "pid", "uts", "ipc", "cgroup", "net"] {
        assert_ne!(
            p["namespaces"][ns].as_u64(),
            Some(host_ns(ns)),
            "{ns} namespace is new"
        );
    }
    let mut want: Vec<String> = kiln_runtime::DEFAULT_CAPABILITIES
        .iter()
        .map(|s| s.to_string())
        .collect();
    want.sort();
    for set in ["bounding", "effective", "permitted"] {
        assert_eq!(strings(&p["capabilities"][set]), want, "{set} set");
    }
    assert!(
        p["capabilities"]["inheritable"]
            .as_array()
            .expect("inh")
            .is_empty()
    );
    assert!(
        p["capabilities"]["ambient"]
            .as_array()
            .expect("amb")
            .is_empty()
    );
    assert_eq!(p["no_new_privs"], false);
    assert_eq!(p["seccomp"], 2, "filter mode");
    assert_eq!(
        p["syscalls"]["keyctl_errno"],
        libc::EPERM as i64,
        "keyctl blocked by seccomp"
    );
    assert_eq!(
        p["syscalls"]["clone3_errno"],
        libc::ENOSYS as i64,
        "clone3 gives ENOSYS"
    );
    assert_eq!(p["syscalls"]["unshare_errno"], libc::EPERM as i64);
    let cgroups = strings(&p["cgroup"]);
    assert!(
        cgroups.iter().any(|l| l.ends_with(":memory:/")),
        "the cgroup namespace is rooted at the container's cgroup: {cgroups:?}"
    );
    assert_eq!(p["kcore_masked"], true);
    assert_eq!(p["proc_sys_writable"], false);
    assert_eq!(p["interfaces"], serde_json::json!(["lo"]));
    assert_eq!(p["uid"], serde_json::json!([0, 0, 0, 0]));
    assert_eq!(p["cwd"], "/");
    assert_eq!(p["env"]["PATH"], kiln_runtime::DEFAULT_PATH);
    assert_eq!(p["env"]["HOME"], "/root");
    assert_eq!(p["hostname"].as_str(), c.config.spec.hostname().as_deref());
    let targets: Vec<&str> = p["mounts"]
        .as_array()
        .expect("mounts")
        .iter()
        .filter_map(|m| m["target"].as_str())
        .collect();
    for t in [
        "/",
        "/proc",
        "/dev",
        "/dev/pts",
        "/dev/shm",
        "/dev/mqueue",
        "/sys",
        "/etc/hosts",
        "/etc/hostname",
        "/etc/resolv.conf",
    ] {
        assert!(targets.contains(&t), "{t} mounted: {targets:?}");
    }
    assert!(
        !targets
            .iter()
            .any(|t| t.starts_with("/work") || t.starts_with("/home") || t.starts_with("/boot")),
        "no host mounts: {targets:?}"
    );
    assert!(
        !fs::exists(rootfs().join("proc/self")).expect("exists"),
        "the container's mounts are invisible on the host"
    );
}

#[test]
fn exit_codes_follow_docker() {
    let code = |args: &[&str]| {
        let c = container("exit", args, |_| {});
        let (st, _, _) = run(&c);
        match st {
            Ok(s) => s.code(),
            Err(e) => e.exit_code(),
        }
    };
    assert_eq!(code(&["true"]), 0);
    assert_eq!(code(&["false"]), 1);
    assert_eq!(code(&["sh", "-c", "exit 42"]), 42);
    // PID 1 ignores signals it has no handler for, even SIGKILL from inside.
    assert_eq!(code(&["sh", "-c", "kill -9 $$; exit 7"]), 7);
    assert_eq!(code(&["/bin/notexec"]), 126);
    assert_eq!(code(&["/etc"]), 126);
    let c = container("nf", &["nosuch"], |_| {});
    let err = run(&c).0.expect_err("not found");
    assert_eq!(err.exit_code(), 127);
    assert_eq!(
        err.to_string(),
        "exec: \"nosuch\": executable file not found in $PATH"
    );
}

fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

const TRAP_TERM: &[&str] = &[
    "sh",
    "-c",
    "trap 'exit 3' TERM; touch /tmp/ready; while true; do sleep 0.05; done",
];

fn ready_file(c: &Ctr) -> impl Fn() -> bool + '_ {
    // The rootfs is a bind of the shared busybox tree: /tmp/ready appears there.
    let _ = c;
    || fs::exists(rootfs().join("tmp/ready")).unwrap_or(false)
}

#[test]
fn signals_reach_the_container() {
    let _g = serial();
    let _ = fs::remove_file(rootfs().join("tmp/ready"));
    let c = container("sig", TRAP_TERM, |_| {});
    let fg = runtime()
        .start(
            &c.config,
            StdioConfig {
                stdin: Stdio::Null,
                ..Default::default()
            },
        )
        .expect("start");
    wait_for("trap installed", ready_file(&c));
    fg.signal(libc::SIGTERM).expect("signal");
    assert_eq!(fg.wait().expect("wait"), ExitStatus::Code(3));
    let _ = fs::remove_file(rootfs().join("tmp/ready"));

    let c = container("sigkill", &["sleep", "100"], |_| {});
    let fg = runtime()
        .start(
            &c.config,
            StdioConfig {
                stdin: Stdio::Null,
                ..Default::default()
            },
        )
        .expect("start");
    fg.signal(libc::SIGKILL).expect("signal");
    let st = fg.wait().expect("wait");
    assert_eq!((st, st.code()), (ExitStatus::Signal(libc::SIGKILL), 137));
    assert!(
        !cgroup_dir(&c, "memory").exists(),
        "the shim survived to clean up"
    );
}

/// Tests that share /tmp/ready in the common rootfs run one at a time.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn harness_request(c: &Ctr) -> PathBuf {
    let path = c._dir.path().join("request.json");
    let req = serde_json::json!({
        "id": c.config.id.to_string(),
        "spec": c.config.spec,
        "rootfs": rootfs(),
        "state_dir": c.config.state_dir,
        "init": c.config.init,
        "cgroup_parent": "kiln-test",
    });
    fs::write(&path, req.to_string()).expect("write request");
    path
}

#[test]
fn sigterm_to_the_caller_reaches_the_container() {
    let _g = serial();
    let _ = fs::remove_file(rootfs().join("tmp/ready"));
    let c = container("fwd", TRAP_TERM, |_| {});
    let req = harness_request(&c);
    let mut caller = Command::new(HARNESS)
        .arg("run")
        .arg(&req)
        .spawn()
        .expect("spawn caller");
    wait_for("trap installed", ready_file(&c));
    use kiln_sys::ProcOps;
    kiln_sys::LinuxSys
        .kill(caller.id() as i32, libc::SIGTERM)
        .expect("kill caller");
    let deadline = Instant::now() + Duration::from_secs(10);
    let st = loop {
        if let Some(st) = caller.try_wait().expect("wait caller") {
            break st;
        }
        if Instant::now() > deadline {
            let _ = caller.kill();
            panic!("the caller did not end after SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(st.code(), Some(3), "the container's TERM trap ran");
    let _ = fs::remove_file(rootfs().join("tmp/ready"));
}

#[test]
fn user_groups_home_and_cwd() {
    let mut c = container("user", &["/bin/kiln-probe"], |o| {
        o.cwd = "/work/new/dir".into()
    });
    c.config.user = Some("alice".into());
    let p = probe(&c);
    assert_eq!(p["uid"], serde_json::json!([1000, 1000, 1000, 1000]));
    assert_eq!(p["gid"], serde_json::json!([1000, 1000, 1000, 1000]));
    let mut groups: Vec<u64> = p["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .filter_map(Value::as_u64)
        .collect();
    groups.sort_unstable();
    assert_eq!(groups, vec![10, 1000]);
    assert_eq!(p["env"]["HOME"], "/home/alice");
    assert_eq!(p["cwd"], "/work/new/dir");
    assert!(
        p["capabilities"]["effective"]
            .as_array()
            .expect("eff")
            .is_empty(),
        "non-root has no effective caps"
    );
    assert_eq!(
        p["capabilities"]["bounding"].as_array().expect("bnd").len(),
        14
    );
    let _ = fs::remove_dir_all(rootfs().join("work"));

    let mut c = container("user2", &["/bin/kiln-probe"], |_| {});
    c.config.user = Some("4242:wheel".into());
    let p = probe(&c);
    assert_eq!(p["uid"][0], 4242);
    assert_eq!(p["gid"][0], 10);
    let mut c = container("user3", &["true"], |_| {});
    c.config.user = Some("mallory".into());
    let err = run(&c).0.expect_err("unknown user");
    assert_eq!(err.exit_code(), 125);
    assert!(
        err.to_string().contains("unable to find user mallory"),
        "{err}"
    );
}

#[test]
fn capabilities_add_drop_and_no_new_privs() {
    let c = container("caps", &["/bin/kiln-probe"], |o| {
        o.cap_add = vec!["NET_ADMIN".into()];
        o.cap_drop = vec!["chown".into()];
        o.no_new_privileges = true;
    });
    let p = probe(&c);
    let eff = strings(&p["capabilities"]["effective"]);
    assert!(eff.contains(&"CAP_NET_ADMIN".to_string()) && !eff.contains(&"CAP_CHOWN".to_string()));
    assert_eq!(p["no_new_privs"], true);
}

#[test]
fn network_host_shares_the_hosts_namespace() {
    let c = container("nethost", &["/bin/kiln-probe"], |o| {
        o.network = kiln_model::NetworkMode::Host
    });
    let p = probe(&c);
    assert_eq!(p["namespaces"]["net"].as_u64(), Some(host_ns("net")));
    assert_ne!(p["namespaces"]["mnt"].as_u64(), Some(host_ns("mnt")));
}

#[test]
fn read_only_root() {
    let c = container("ro", &["sh", "-c", "touch /x-kiln-ro && echo wrote"], |o| {
        o.read_only = true
    });
    let (st, out, _) = run(&c);
    assert_eq!(st.expect("ran").code(), 1);
    assert!(!out.contains("wrote"));
    assert!(!rootfs().join("x-kiln-ro").exists());
}

fn cgroup_dir(c: &Ctr, controller: &str) -> PathBuf {
    Path::new("/sys/fs/cgroup")
        .join(controller)
        .join("kiln-test")
        .join(c.config.id.as_str())
}

#[test]
fn memory_limit_kills_with_137_and_cgroup_is_removed() {
    let mib = 1 << 20;
    let c = container("oom", &["/bin/kiln-probe", "alloc", "256"], |o| {
        o.resources = Resources {
            memory: Some(32 * mib),
            ..Default::default()
        }
    });
    let (st, out, _) = run(&c);
    assert_eq!(st.expect("ran").code(), 137, "OOM kill; output {out}");
    assert!(
        !cgroup_dir(&c, "memory").exists(),
        "cgroup removed after exit"
    );
    let c = container("memok", &["/bin/kiln-probe"], |o| {
        o.resources = Resources {
            memory: Some(64 * mib),
            cpus: Some(0.5),
            cpu_shares: Some(512),
            pids_limit: Some(50),
            ..Default::default()
        }
    });
    let p = probe(&c);
    let lim = &p["cgroup_limits"];
    assert_eq!(lim["v1_memory_limit"], (64 * mib).to_string());
    assert_eq!(lim["v1_cpu_quota"], "50000");
    assert_eq!(lim["v1_cpu_shares"], "512");
    assert_eq!(lim["v1_pids_max"], "50");
}

#[test]
fn pids_limit_stops_a_fork_bomb() {
    let c = container("pids", &["/bin/kiln-probe", "spawn", "40"], |o| {
        o.resources = Resources {
            pids_limit: Some(10),
            ..Default::default()
        }
    });
    let (st, out, err) = run(&c);
    assert_eq!(st.expect("ran").code(), 0, "{err}");
    let v: Value = serde_json::from_str(out.trim()).expect("json");
    assert!(v["started"].as_u64().expect("started") < 10, "{v}");
    assert!(v["failed"].as_u64().expect("failed") > 30, "{v}");
}

#[test]
fn tiny_init_is_pid_one_and_forwards_signals() {
    let mut c = container("init", &["/bin/kiln-probe"], |_| {});
    c.config.init = true;
    let p = probe(&c);
    assert_eq!((p["pid"].as_u64(), p["ppid"].as_u64()), (Some(2), Some(1)));
    let mut c = container("initsig", &["sleep", "100"], |_| {});
    c.config.init = true;
    let fg = runtime()
        .start(
            &c.config,
            StdioConfig {
                stdin: Stdio::Null,
                ..Default::default()
            },
        )
        .expect("start");
    std::thread::sleep(Duration::from_millis(100));
    fg.signal(libc::SIGTERM).expect("signal");
    assert_eq!(
        fg.wait().expect("wait").code(),
        143,
        "sleep killed by the forwarded SIGTERM"
    );
}

#[test]
fn detached_container_survives_its_caller_logs_stops_and_is_deleted() {
    let c = container(
        "det",
        &[
            "sh",
            "-c",
            "echo started; echo oops >&2; while true; do echo tick; sleep 0.1; done",
        ],
        |_| {},
    );
    let req = harness_request(&c);
    let log = c._dir.path().join("ctr.log");
    let st = Command::new(HARNESS)
        .arg("detach")
        .arg(&req)
        .arg(&log)
        .status()
        .expect("caller");
    assert!(st.success(), "the caller started it and exited");
    let rt = runtime();
    let state = rt.state(&c.config.state_dir).expect("state");
    assert_eq!(state.status, Status::Running);
    let pid = state.pid.expect("pid");
    wait_for("log lines", || {
        log_text(&log, LogStream::Stdout).matches("tick").count() >= 2
    });
    assert!(log_text(&log, LogStream::Stdout).starts_with("started\ntick\n"));
    assert_eq!(log_text(&log, LogStream::Stderr), "oops\n");
    assert!(state.started_at.is_some(), "start time recorded");
    // exec joins its namespaces and cgroup.
    let process: kiln_runtime::oci_spec::runtime::Process = serde_json::from_value(serde_json::json!({
        "args": ["/bin/kiln-probe"], "cwd": "/", "env": ["PATH=/bin"], "user": {"uid": 0, "gid": 0}
    }))
    .expect("process");
    let (out_r, out_w) = pipe();
    let stdio = StdioConfig {
        stdin: Stdio::Null,
        stdout: Stdio::Fd(out_w),
        stderr: Stdio::Inherit,
        tty: false,
    };
    let code = rt
        .exec(&c.config.state_dir, &process, None, stdio)
        .expect("exec");
    assert_eq!(code, ExitStatus::Code(0));
    let mut out = String::new();
    fs::File::from(out_r)
        .read_to_string(&mut out)
        .expect("read");
    let p: Value = serde_json::from_str(out.trim()).expect("json");
    for ns in ["mnt", "pid", "uts", "ipc", "net", "cgroup"] {
        let theirs = fs::metadata(format!("/proc/{pid}/ns/{ns}"))
            .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
            .expect("ns");
        assert_eq!(
            p["namespaces"][ns].as_u64(),
            Some(theirs),
            "exec joined the {ns} namespace"
        );
    }
    assert!(
        p["pids"]
            .as_array()
            .expect("pids")
            .contains(&serde_json::json!(1))
    );
    assert_ne!(p["pid"], 1);
    assert_eq!(p["seccomp"], 2);
    let host_cg = fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("cgroup");
    assert!(
        host_cg.contains(&format!("kiln-test/{}", c.config.id)),
        "{host_cg}"
    );
    // exec -t: a terminal on the container's devpts.
    let tty_process: kiln_runtime::oci_spec::runtime::Process =
        serde_json::from_value(serde_json::json!({
            "args": ["tty"], "cwd": "/", "env": ["PATH=/bin"], "user": {"uid": 0, "gid": 0},
            "terminal": true
        }))
        .expect("process");
    let (out_r, out_w) = pipe();
    let stdio = StdioConfig {
        stdin: Stdio::Null,
        stdout: Stdio::Fd(out_w),
        stderr: Stdio::Null,
        tty: true,
    };
    let code = rt
        .exec(&c.config.state_dir, &tty_process, None, stdio)
        .expect("exec -t");
    assert_eq!(code, ExitStatus::Code(0));
    let mut out = String::new();
    fs::File::from(out_r)
        .read_to_string(&mut out)
        .expect("read");
    assert!(out.starts_with("/dev/pts/"), "exec -t output {out:?}");
    // stop: sh ignores SIGTERM as PID 1, so SIGKILL follows the timeout.
    let started = Instant::now();
    let end = rt
        .stop(
            &c.config.state_dir,
            libc::SIGTERM,
            Duration::from_millis(300),
        )
        .expect("stop");
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(end.status, Status::Exited);
    assert_eq!(end.exit.map(ExitStatus::code), Some(137));
    let (started_at, finished_at) = (
        end.started_at.clone().expect("started_at"),
        end.finished_at.clone().expect("finished_at"),
    );
    assert!(
        started_at.ends_with('Z') && started_at < finished_at,
        "{started_at} then {finished_at}"
    );
    assert!(!cgroup_dir(&c, "memory").exists(), "cgroup removed");
    rt.delete(&c.config.state_dir, false).expect("delete");
    assert!(!c.config.state_dir.exists());
}

/// The text of one stream in a detached container's JSON-lines log.
fn log_text(path: &Path, stream: LogStream) -> String {
    let data = fs::read(path).unwrap_or_default();
    data.split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| LogEntry::parse(l).expect("every log line is a JSON entry"))
        .filter(|e| e.stream == stream)
        .map(|e| e.log)
        .collect()
}

#[test]
fn delete_right_after_a_detached_start_leaves_nothing_behind() {
    // No wait between start and delete: delete must itself wait for the
    // supervisor, which otherwise writes exit.json into (or removes the
    // cgroup under) a directory being deleted.
    for (i, cmd) in ["true", "sleep 10", "echo bye; exit 3"].iter().enumerate() {
        for round in 0..3 {
            let c = container(&format!("race{i}{round}"), &["sh", "-c", cmd], |_| {});
            let log = c._dir.path().join("ctr.log");
            let rt = runtime();
            rt.start_detached(&c.config, &log).expect("start");
            let memcg = cgroup_dir(&c, "memory");
            rt.delete(&c.config.state_dir, true).expect("delete");
            assert!(!c.config.state_dir.exists(), "{cmd}: state dir removed");
            std::thread::sleep(Duration::from_millis(50));
            assert!(!c.config.state_dir.exists(), "{cmd}: nothing recreated it");
            assert!(!memcg.exists(), "{cmd}: cgroup removed");
        }
    }
}

#[test]
fn state_tells_the_truth_after_the_supervisor_dies() {
    let c = container("crash", &["sleep", "100"], |_| {});
    let rt = runtime();
    let log = c._dir.path().join("log");
    let st = rt.start_detached(&c.config, &log).expect("start");
    assert_eq!(st.status, Status::Running);
    let rec: Value = serde_json::from_str(
        &fs::read_to_string(c.config.state_dir.join("state.json")).expect("state"),
    )
    .expect("json");
    let shim = rec["shim_pid"].as_i64().expect("shim pid") as i32;
    use kiln_sys::ProcOps;
    kiln_sys::LinuxSys
        .kill(shim, libc::SIGKILL)
        .expect("kill supervisor");
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(
        rt.state(&c.config.state_dir).expect("state").status,
        Status::Running,
        "the container outlives its supervisor"
    );
    kiln_sys::LinuxSys
        .kill(st.pid.expect("pid"), libc::SIGKILL)
        .expect("kill container");
    wait_for("exit seen", || {
        rt.state(&c.config.state_dir)
            .is_ok_and(|s| s.status == Status::Exited)
    });
    let s = rt.state(&c.config.state_dir).expect("state");
    assert_eq!(s.exit, None, "nobody recorded the status");
    rt.delete(&c.config.state_dir, false)
        .expect("delete cleans the cgroup");
    assert!(!cgroup_dir(&c, "memory").exists());
}

#[test]
fn command_starts_with_clean_signal_state() {
    // cat changes no disposition: what it reports is what exec handed it.
    let c = container("sigstate", &["cat", "/proc/self/status"], |_| {});
    let (st, out, _) = run(&c);
    assert_eq!(st.expect("ran").code(), 0);
    let field = |k: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(k))
            .map(str::trim)
            .unwrap_or("?")
            .to_owned()
    };
    assert_eq!(field("SigBlk:"), "0000000000000000", "no signal blocked");
    assert_eq!(
        field("SigIgn:"),
        "0000000000000000",
        "no signal ignored (SIGPIPE included)"
    );
}

#[test]
fn tty_gives_the_container_a_terminal() {
    let c = container(
        "tty",
        &[
            "sh",
            "-c",
            "[ -t 0 ] && [ -t 1 ] && echo tty-yes; tty; [ -c /dev/console ] && echo console-yes",
        ],
        |o| o.tty = true,
    );
    let (out_r, out_w) = pipe();
    let stdio = StdioConfig {
        stdin: Stdio::Null,
        stdout: Stdio::Fd(out_w),
        stderr: Stdio::Null,
        tty: true,
    };
    let st = runtime().run(&c.config, stdio).expect("run with a tty");
    assert_eq!(st, ExitStatus::Code(0));
    let mut out = String::new();
    fs::File::from(out_r)
        .read_to_string(&mut out)
        .expect("read");
    assert!(out.contains("tty-yes"), "output {out:?}");
    assert!(
        out.contains("/dev/pts/0"),
        "the container's own devpts: {out:?}"
    );
    assert!(out.contains("console-yes"), "{out:?}");
    assert_eq!(
        c.config.spec.process().as_ref().and_then(|p| p.terminal()),
        Some(true)
    );
}

#[test]
fn overlay_rootfs_writes_go_to_the_upper_dir() {
    let mut c = container(
        "ovl",
        &["sh", "-c", "echo hi > /made-here && rm /bin/notexec"],
        |_| {},
    );
    let upper = c._dir.path().join("upper");
    let work = c._dir.path().join("work");
    fs::create_dir_all(&upper).expect("upper");
    fs::create_dir_all(&work).expect("work");
    c.config.rootfs = vec![RootfsMount {
        fstype: "overlay".into(),
        source: "overlay".into(),
        options: vec![format!(
            "lowerdir={},upperdir={},workdir={}",
            rootfs().display(),
            upper.display(),
            work.display()
        )],
    }];
    let (st, _, err) = run(&c);
    assert_eq!(st.expect("ran").code(), 0, "{err}");
    assert_eq!(
        fs::read_to_string(upper.join("made-here")).expect("in upper"),
        "hi\n"
    );
    assert!(
        rootfs().join("bin/notexec").exists(),
        "the lower dir is untouched"
    );
    assert!(!rootfs().join("made-here").exists());
}

#[test]
fn rlimits_are_set_but_never_above_the_hard_limit() {
    let mut c = container("rlim", &["sh", "-c", "ulimit -n; ulimit -Hn"], |_| {});
    let host_hard = {
        let s = fs::read_to_string("/proc/self/limits").expect("limits");
        let line = s
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .expect("nofile line")
            .to_owned();
        line.split_whitespace()
            .nth(4)
            .expect("hard")
            .parse::<u64>()
            .expect("number")
    };
    let rl: Vec<kiln_runtime::oci_spec::runtime::PosixRlimit> =
        serde_json::from_value(serde_json::json!([
            {"type": "RLIMIT_NOFILE", "soft": 100, "hard": host_hard * 4}
        ]))
        .expect("rlimits");
    if let Some(p) = c.config.spec.process_mut() {
        p.set_rlimits(Some(rl));
    }
    let (st, out, err) = run(&c);
    assert_eq!(st.expect("ran").code(), 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        vec!["100".to_string(), host_hard.to_string()],
        "soft set, hard clamped"
    );
}

#[test]
fn setup_failure_is_reported_and_cleaned_up() {
    let mut c = container("badroot", &["true"], |_| {});
    c.config.rootfs = vec![RootfsMount::bind("/nonexistent/kiln-rootfs")];
    let err = run(&c).0.expect_err("cannot mount a missing rootfs");
    assert_eq!(err.exit_code(), 125);
    assert!(err.to_string().contains("rootfs"), "{err}");
    assert!(!cgroup_dir(&c, "memory").exists() && !cgroup_dir(&c, "devices").exists());
}

#[test]
fn userns_remaps_container_root_to_an_unprivileged_range() {
    use kiln_model::IdMap;
    use kiln_runtime::userns::DEFAULT_REMAP_START;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let vol = tempfile::tempdir().expect("tempdir");
    fs::set_permissions(vol.path(), fs::Permissions::from_mode(0o777)).expect("chmod");
    let mount: kiln_runtime::oci_spec::runtime::Mount = serde_json::from_value(serde_json::json!({
        "destination": "/vol", "type": "bind", "source": vol.path(), "options": ["rbind"]
    }))
    .expect("mount");
    let maps = IdMap::remap(DEFAULT_REMAP_START, DEFAULT_REMAP_START, 65_536);
    let c = container(
        "userns",
        &["sh", "-c", "touch /vol/made-inside && /bin/kiln-probe"],
        |o| {
            o.userns = Some(maps.clone());
            o.mounts.push(mount);
        },
    );
    // The container's root may traverse only what others may.
    fs::set_permissions(c._dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
    let p = probe(&c);
    assert_eq!(p["uid"][0], 0, "root inside: {p}");
    assert_eq!(p["gid"][0], 0, "{p}");
    let uid_map: Vec<String> = p["uid_map"]
        .as_str()
        .expect("uid_map")
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    assert_eq!(uid_map, ["0", "1000000000", "65536"], "{p}");
    assert_ne!(
        p["namespaces"]["user"],
        serde_json::json!(host_ns("user")),
        "a user namespace of its own: {p}"
    );
    let made = fs::metadata(vol.path().join("made-inside")).expect("file made inside");
    assert_eq!(
        (made.uid(), made.gid()),
        (DEFAULT_REMAP_START, DEFAULT_REMAP_START)
    );
    // Docker's isolation still holds in the user namespace.
    assert_eq!(p["pid"], 1, "{p}");
    assert_eq!(p["kcore_masked"], true, "{p}");
    assert_eq!(p["seccomp"], 2, "{p}");
    assert!(strings(&p["interfaces"]) == vec!["lo".to_string()], "{p}");
}

/// The uid and gid of `name`, created (without a home) when missing.
fn unprivileged_user(name: &str) -> (u32, u32) {
    let id = |flag: &str| {
        let out = Command::new("id").args([flag, name]).output().expect("id");
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse::<u32>()
            .ok()
    };
    if id("-u").is_none() {
        let st = Command::new("useradd")
            .args(["-M", "-s", "/usr/sbin/nologin", name])
            .status()
            .expect("useradd");
        assert!(st.success(), "useradd {name}");
    }
    (id("-u").expect("uid"), id("-g").expect("gid"))
}

#[test]
fn rootless_runs_as_the_calling_user_mapped_to_root() {
    use kiln_model::IdMap;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let (uid, gid) = unprivileged_user("kiln-rootless");
    // Everything the user's kiln would own: a rootfs copy, state, a volume.
    let maps = IdMap::rootless(uid, gid, None, None);
    let mut c = container(
        "rootless",
        &["sh", "-c", "touch /vol/by-root && exec /bin/kiln-probe"],
        |o| {
            o.userns = Some(maps.clone());
        },
    );
    let base = c._dir.path().to_path_buf();
    fs::set_permissions(&base, fs::Permissions::from_mode(0o755)).expect("chmod");
    let root = base.join("rootfs");
    let cp = Command::new("cp")
        .arg("-a")
        .arg(rootfs())
        .arg(&root)
        .status()
        .expect("cp");
    assert!(cp.success());
    let vol = base.join("vol");
    fs::create_dir_all(&vol).expect("mkdir vol");
    let mount: kiln_runtime::oci_spec::runtime::Mount = serde_json::from_value(serde_json::json!({
        "destination": "/vol", "type": "bind", "source": vol, "options": ["rbind"]
    }))
    .expect("mount");
    let mut mounts = c.config.spec.mounts().clone().unwrap_or_default();
    mounts.push(mount);
    c.config.spec.set_mounts(Some(mounts));
    fs::create_dir_all(root.join("vol")).expect("mount point");
    let chown = Command::new("chown")
        .arg("-R")
        .arg(format!("{uid}:{gid}"))
        .arg(&base)
        .status()
        .expect("chown");
    assert!(chown.success());
    let req = base.join("request.json");
    let mut body = serde_json::json!({
        "id": c.config.id.to_string(),
        "spec": c.config.spec,
        "rootfs": root,
        "state_dir": c.config.state_dir,
        "init": false,
        "cgroup_parent": "kiln-test",
    });
    // First a single-id map (written by the supervisor itself), then, when
    // /etc/subuid gives the user a range, the full map through newuidmap.
    let subuid = fs::read_to_string("/etc/subuid").unwrap_or_default();
    let subgid = fs::read_to_string("/etc/subgid").unwrap_or_default();
    let sub = (
        kiln_runtime::userns::subordinate_range(&subuid, "kiln-rootless", uid),
        kiln_runtime::userns::subordinate_range(&subgid, "kiln-rootless", gid),
    );
    let mut variants = vec![maps];
    if let (Some(su), Some(sg)) = sub {
        variants.push(IdMap::rootless(uid, gid, Some(su), Some(sg)));
    }
    for (round, m) in variants.iter().enumerate() {
        let ranges = |r: &[kiln_model::IdRange]| {
            r.iter()
                .map(|r| serde_json::json!({"containerID": r.container_id, "hostID": r.host_id, "size": r.size}))
                .collect::<Vec<_>>()
        };
        body["spec"]["linux"]["uidMappings"] = serde_json::json!(ranges(&m.uids));
        body["spec"]["linux"]["gidMappings"] = serde_json::json!(ranges(&m.gids));
        fs::write(&req, body.to_string()).expect("write request");
        let _ = fs::remove_file(vol.join("by-root"));
        let out = Command::new("setpriv")
            .args([
                &format!("--reuid={uid}"),
                &format!("--regid={gid}"),
                "--clear-groups",
                "--",
            ])
            .arg(HARNESS)
            .arg("run")
            .arg(&req)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .output()
            .expect("run the harness as the user");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "round {round}: {:?}: {stderr}",
            out.status
        );
        let p: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "probe output {:?}: {e}",
                String::from_utf8_lossy(&out.stdout)
            )
        });
        assert_eq!(p["uid"][0], 0, "root inside: {p}");
        let map: Vec<String> = p["uid_map"]
            .as_str()
            .expect("uid_map")
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        let mut want = vec!["0".to_string(), uid.to_string(), "1".to_string()];
        if round == 1 {
            let r = m.uids[1];
            want.extend(["1".to_string(), r.host_id.to_string(), r.size.to_string()]);
        }
        assert_eq!(map, want, "{p}");
        assert_eq!(p["pid"], 1, "{p}");
        assert_eq!(p["kcore_masked"], true, "{p}");
        let made = fs::metadata(vol.join("by-root")).expect("the file made inside");
        assert_eq!(
            (made.uid(), made.gid()),
            (uid, gid),
            "the host sees the user's ids"
        );
    }
}

#[test]
fn init_exe_does_not_lead_to_the_host_binary() {
    let probe_with = |sealed: bool, ptrace: bool| {
        let c = container("exe", &["/bin/kiln-probe"], |o| {
            if ptrace {
                o.cap_add = vec!["SYS_PTRACE".into()];
            }
        });
        let mut c = c;
        c.config.init = true;
        let rt = Runtime::new(RuntimeConfig {
            init_binary: HARNESS.into(),
            cgroup_parent: "kiln-test".into(),
            sealed_binary: sealed,
            ..Default::default()
        });
        let (out_r, out_w) = pipe();
        let stdio = StdioConfig {
            stdin: Stdio::Null,
            stdout: Stdio::Fd(out_w),
            stderr: Stdio::Inherit,
            tty: false,
        };
        let st = rt.run(&c.config, stdio).expect("run");
        assert_eq!(st, ExitStatus::Code(0));
        let mut out = String::new();
        fs::File::from(out_r)
            .read_to_string(&mut out)
            .expect("read");
        let p: Value = serde_json::from_str(out.trim()).expect("probe json");
        p["init_exe_writable"].clone()
    };
    // PID 1 is the tiny init, the runtime's own binary: non-dumpable, so
    // with Docker's capabilities its exe link cannot even be read.
    let plain = probe_with(false, false);
    assert!(
        plain["target"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("ermission denied")),
        "{plain}"
    );
    assert_eq!(plain["open_for_write"]["writable"], false, "{plain}");
    // With CAP_SYS_PTRACE added the link is readable: unsealed, it names
    // the host's binary; sealed, only an in-memory copy that refuses writes.
    let open = probe_with(false, true);
    assert!(
        open["target"]
            .as_str()
            .is_some_and(|t| t.contains("kiln-runtime-harness")),
        "{open}"
    );
    let sealed = probe_with(true, true);
    assert!(
        sealed["target"]
            .as_str()
            .is_some_and(|t| t.starts_with("/memfd:kiln-runtime")),
        "{sealed}"
    );
    assert_eq!(sealed["open_for_write"]["writable"], false, "{sealed}");
}

#[test]
fn delete_after_a_lost_userns_supervisor_unmounts_and_keeps_the_rootfs() {
    use kiln_model::IdMap;
    use kiln_runtime::userns::DEFAULT_REMAP_START;
    use std::os::unix::fs::PermissionsExt;
    let maps = IdMap::remap(DEFAULT_REMAP_START, DEFAULT_REMAP_START, 65_536);
    let c = container("lostns", &["sleep", "100"], |o| o.userns = Some(maps));
    fs::set_permissions(c._dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
    let rt = runtime();
    let log = c._dir.path().join("ctr.log");
    rt.start_detached(&c.config, &log).expect("start");
    let state: Value = serde_json::from_str(
        &fs::read_to_string(c.config.state_dir.join("state.json")).expect("state.json"),
    )
    .expect("json");
    let shim = state["shim_pid"].as_i64().expect("shim_pid") as i32;
    // The supervisor dies first: the rootfs it mounted on the host stays.
    assert_eq!(unsafe_free_kill(shim, libc::SIGKILL), 0);
    wait_for("the supervisor to go", || {
        !Path::new(&format!("/proc/{shim}")).exists()
    });
    rt.delete(&c.config.state_dir, true).expect("delete");
    assert!(!c.config.state_dir.exists());
    assert!(
        rootfs().join("bin/busybox").exists(),
        "delete must not recurse into the mounted rootfs"
    );
}

/// kill(2) through the `kill` command (the tests have no unsafe code).
fn unsafe_free_kill(pid: i32, sig: i32) -> i32 {
    let st = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .expect("kill");
    st.code().unwrap_or(-1)
}

/// The run state letter of `/proc/PID/stat` (`S`, `T`, ...).
fn proc_state(pid: i32) -> Option<char> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 1..]
        .split_whitespace()
        .next()?
        .chars()
        .next()
}

/// Waits for a foreground container at most `limit`; SIGKILLs it (and
/// fails) when it is still running then.
fn wait_bounded(fg: kiln_runtime::Foreground, limit: Duration) -> ExitStatus {
    let pid = fg.pid();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(fg.wait());
    });
    match rx.recv_timeout(limit) {
        Ok(st) => st.expect("wait"),
        Err(_) => {
            unsafe_free_kill(pid, libc::SIGKILL);
            let _ = rx.recv_timeout(Duration::from_secs(10));
            panic!("the container was still running after {limit:?}: its init hung");
        }
    }
}

#[test]
fn a_ptrace_stopped_init_is_resumed_but_a_requested_stop_holds() {
    // A child PTRACE_ATTACHes PID 1 (stopping it) and exits without
    // detaching: the init is left in a group stop that nothing inside ends.
    // Before the supervisor resumed it, this container (a build's RUN step
    // in the issue) hung forever; Docker's shim does not look either.
    let c = container(
        "ptr",
        &["sh", "-c", "/bin/kiln-probe ptrace-attach 1; echo resumed"],
        |_| {},
    );
    let (out_r, out_w) = pipe();
    let fg = runtime()
        .start(
            &c.config,
            StdioConfig {
                stdin: Stdio::Null,
                stdout: Stdio::Fd(out_w),
                stderr: Stdio::Inherit,
                tty: false,
            },
        )
        .expect("start");
    let st = wait_bounded(fg, Duration::from_secs(20));
    let mut out = String::new();
    fs::File::from(out_r)
        .read_to_string(&mut out)
        .expect("read");
    assert!(
        out.contains("\"errno\":0"),
        "the attach itself worked: {out}"
    );
    assert!(out.ends_with("resumed\n"), "{out}");
    assert_eq!(st, ExitStatus::Code(0));

    // A stop asked for through the runtime (`kill -s STOP`) is not undone.
    let c = container("stp", &["sleep", "100"], |_| {});
    let rt = runtime();
    let fg = rt
        .start(
            &c.config,
            StdioConfig {
                stdin: Stdio::Null,
                ..Default::default()
            },
        )
        .expect("start");
    let pid = fg.pid();
    wait_for("state recorded", || {
        rt.state(&c.config.state_dir)
            .is_ok_and(|s| s.status == Status::Running)
    });
    rt.kill(&c.config.state_dir, libc::SIGSTOP).expect("stop");
    wait_for("stopped", || proc_state(pid) == Some('T'));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(proc_state(pid), Some('T'), "the requested stop holds");
    rt.kill(&c.config.state_dir, libc::SIGCONT).expect("cont");
    wait_for("continued", || proc_state(pid) == Some('S'));
    rt.kill(&c.config.state_dir, libc::SIGKILL).expect("kill");
    assert_eq!(
        wait_bounded(fg, Duration::from_secs(10)),
        ExitStatus::Signal(libc::SIGKILL)
    );
}

#[test]
fn exec_gets_the_containers_capabilities_whatever_the_process_says() {
    // oci-spec's Process::default() (what a ProcessBuilder starts from)
    // carries 3 capabilities and no_new_privileges: exec must ignore them
    // and take the container's, as Docker's exec does.
    let c = container("excap", &["sleep", "100"], |o| {
        o.cap_add = vec!["NET_ADMIN".into()];
    });
    let rt = runtime();
    let fg = rt
        .start(
            &c.config,
            StdioConfig {
                stdin: Stdio::Null,
                ..Default::default()
            },
        )
        .expect("start");
    wait_for("state recorded", || {
        rt.state(&c.config.state_dir)
            .is_ok_and(|s| s.status == Status::Running)
    });
    let process = kiln_runtime::oci_spec::runtime::ProcessBuilder::default()
        .args(vec!["/bin/kiln-probe".to_string()])
        .env(vec!["PATH=/bin".to_string()])
        .cwd("/")
        .build()
        .expect("process");
    let (out_r, out_w) = pipe();
    let stdio = StdioConfig {
        stdin: Stdio::Null,
        stdout: Stdio::Fd(out_w),
        stderr: Stdio::Inherit,
        tty: false,
    };
    let code = rt
        .exec(&c.config.state_dir, &process, None, stdio)
        .expect("exec");
    assert_eq!(code, ExitStatus::Code(0));
    let mut out = String::new();
    fs::File::from(out_r)
        .read_to_string(&mut out)
        .expect("read");
    let p: Value = serde_json::from_str(out.trim()).expect("json");
    let mut want: Vec<String> = kiln_runtime::DEFAULT_CAPABILITIES
        .iter()
        .map(|s| s.to_string())
        .chain(["CAP_NET_ADMIN".to_string()])
        .collect();
    want.sort();
    for set in ["bounding", "effective", "permitted"] {
        assert_eq!(strings(&p["capabilities"][set]), want, "{set} set of exec");
    }
    assert_eq!(p["no_new_privs"], false, "the container's no_new_privs");
    rt.kill(&c.config.state_dir, libc::SIGKILL).expect("kill");
    let _ = wait_bounded(fg, Duration::from_secs(10));
}

#[test]
fn sysctls_reach_only_the_containers_namespaces() {
    let c = container(
        "sysctl",
        &[
            "cat",
            "/proc/sys/net/ipv4/ip_forward",
            "/proc/sys/kernel/shmmni",
        ],
        |o| {
            o.sysctls = vec![
                ("net.ipv4.ip_forward".into(), "1".into()),
                ("kernel.shmmni".into(), "1234".into()),
            ];
        },
    );
    let host = |p: &str| fs::read_to_string(p).expect("host sysctl");
    let before = (
        host("/proc/sys/net/ipv4/ip_forward"),
        host("/proc/sys/kernel/shmmni"),
    );
    let (st, out, err) = run(&c);
    assert_eq!(st.expect("ran"), ExitStatus::Code(0), "{err}");
    assert_eq!(out, "1\n1234\n");
    assert_eq!(
        (
            host("/proc/sys/net/ipv4/ip_forward"),
            host("/proc/sys/kernel/shmmni")
        ),
        before,
        "the host's values are untouched"
    );
    // A spec that names a host-wide parameter (built by hand, past
    // docker_spec's check) is refused by the init itself.
    let mut c = container("sysctlbad", &["true"], |_| {});
    let mut spec = serde_json::to_value(&c.config.spec).expect("spec json");
    spec["linux"]["sysctl"] = serde_json::json!({"vm.swappiness": "1"});
    c.config.spec = serde_json::from_value(spec).expect("spec");
    let swappiness = host("/proc/sys/vm/swappiness");
    let (st, _, _) = run(&c);
    let e = st.expect_err("refused");
    assert!(e.to_string().contains("not namespaced"), "{e}");
    assert_eq!(host("/proc/sys/vm/swappiness"), swappiness);
}

/// A block device the host's root can read, as `(major, minor)`: a disk
/// from `/proc/partitions`, else `loop0` (some sandboxes refuse opening
/// the disk itself even to the host's root).
fn host_disk() -> (u32, u32) {
    let parts = fs::read_to_string("/proc/partitions").expect("read /proc/partitions");
    let mut candidates: Vec<(String, u32, u32)> = parts
        .lines()
        .skip(2)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Some((
                f.get(3)?.to_string(),
                f.first()?.parse().ok()?,
                f.get(1)?.parse().ok()?,
            ))
        })
        .collect();
    candidates.push(("loop0".into(), 7, 0));
    candidates
        .into_iter()
        .find(|(name, _, _)| fs::File::open(Path::new("/dev").join(name)).is_ok())
        .map(|(_, maj, min)| (maj, min))
        .expect("a block device the host's root can open")
}

/// Inside the container: `mknod`s a host block device and `/dev/kmsg` (and
/// `/dev/mem`), tries to open them and the default devices, and prints one
/// `name=ok` or `name=<error>` line each.
fn device_attack(
    rt: &Runtime,
    name: &str,
    extra_rule: Option<Value>,
) -> std::collections::BTreeMap<String, String> {
    let (maj, min) = host_disk();
    let script = format!(
        "d=/tmp/{name}; rm -rf $d; mkdir $d; cd $d\n\
         mknod disk b {maj} {min} && echo mknod=ok\n\
         mknod kmsg c 1 11; mknod mem c 1 1\n\
         rd() {{ if e=$(head -c 1 \"$2\" 2>&1 >/dev/null); then echo \"$1=ok\"; else echo \"$1=$e\"; fi; }}\n\
         wr() {{ if e=$( (printf '' >\"$2\") 2>&1); then echo \"$1=ok\"; else echo \"$1=$e\"; fi; }}\n\
         rd disk disk; wr kmsg kmsg; rd mem mem\n\
         rd null /dev/null; rd zero /dev/zero; wr full /dev/full; rd random /dev/random\n\
         rd urandom /dev/urandom; wr tty /dev/tty; wr ptmx /dev/ptmx\n\
         mknod pts c 136 7; wr pts pts; mknod console c 5 1; wr console console\n\
         cd /; rm -rf $d\n"
    );
    let mut c = container(name, &["sh", "-c", &script], |_| {});
    if let Some(rule) = extra_rule {
        let mut spec = serde_json::to_value(&c.config.spec).expect("spec as json");
        let list = spec["linux"]["resources"]["devices"]
            .as_array_mut()
            .expect("a device list");
        list.push(rule);
        c.config.spec = serde_json::from_value(spec).expect("spec");
    }
    let (out_r, out_w) = pipe();
    let (err_r, err_w) = pipe();
    let stdio = StdioConfig {
        stdin: Stdio::Null,
        stdout: Stdio::Fd(out_w),
        stderr: Stdio::Fd(err_w),
        tty: false,
    };
    let fg = rt.start(&c.config, stdio).expect("container starts");
    let mut out = String::new();
    fs::File::from(out_r)
        .read_to_string(&mut out)
        .expect("stdout");
    let mut err = String::new();
    fs::File::from(err_r)
        .read_to_string(&mut err)
        .expect("stderr");
    fg.wait().expect("container ends");
    let lines: std::collections::BTreeMap<String, String> = out
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    assert_eq!(
        lines.get("mknod").map(String::as_str),
        Some("ok"),
        "CAP_MKNOD lets the container create nodes (stdout {out:?}, stderr {err:?})"
    );
    lines
}

fn assert_devices_filtered(got: &std::collections::BTreeMap<String, String>, layout: &str) {
    for denied in ["disk", "kmsg", "mem"] {
        let e = got.get(denied).map(String::as_str).unwrap_or("missing");
        assert!(
            e.contains("Operation not permitted"),
            "{layout}: a mknod'ed {denied} must not open: {e} ({got:?})"
        );
    }
    for allowed in [
        "null", "zero", "full", "random", "urandom", "tty", "ptmx", "pts", "console",
    ] {
        let e = got.get(allowed).map(String::as_str).unwrap_or("missing");
        assert!(
            e != "missing" && !e.contains("Operation not permitted"),
            "{layout}: {allowed} is one of Docker's default devices: {e} ({got:?})"
        );
    }
}

#[test]
fn device_filter_cgroup_v2_denies_mknod_devices() {
    // This host is hybrid: its cgroup2 tree has no v1 devices controller
    // behind it, so a root there is what a pure v2 host gives.
    let unified = Path::new("/sys/fs/cgroup/unified");
    assert!(
        unified.join("cgroup.controllers").exists(),
        "a cgroup2 tree at {}",
        unified.display()
    );
    let rt = Runtime::new(RuntimeConfig {
        init_binary: HARNESS.into(),
        cgroup_parent: "kiln-test".into(),
        cgroup_root: unified.into(),
        ..Default::default()
    });
    let got = device_attack(&rt, "devv2", None);
    assert_devices_filtered(&got, "cgroup v2");
    // A device the spec adds (`--device`) is usable, and only that one.
    let (maj, min) = host_disk();
    let rule =
        serde_json::json!({"allow": true, "type": "b", "major": maj, "minor": min, "access": "r"});
    let got = device_attack(&rt, "devv2add", Some(rule));
    assert_eq!(got.get("disk").map(String::as_str), Some("ok"), "{got:?}");
    assert!(got["kmsg"].contains("Operation not permitted"), "{got:?}");
}

#[test]
fn device_filter_cgroup_v1_denies_mknod_devices() {
    let got = device_attack(&runtime(), "devv1", None);
    assert_devices_filtered(&got, "cgroup v1");
}

/// Unmounts a host mount made by a test, even when the test fails.
struct HostMount(PathBuf);

impl Drop for HostMount {
    fn drop(&mut self) {
        use kiln_sys::MountOps as _;
        let _ = kiln_sys::LinuxSys.umount(&self.0, true);
    }
}

#[test]
fn read_only_volume_is_read_only_in_its_submounts_too() {
    use kiln_sys::MountOps as _;
    let vol = tempfile::tempdir().expect("tempdir");
    let sub = vol.path().join("sub");
    fs::create_dir(&sub).expect("mkdir sub");
    kiln_sys::LinuxSys
        .mount(
            Some(Path::new("tmpfs")),
            &sub,
            Some("tmpfs"),
            kiln_sys::MountFlags::NONE,
            Some("size=1m"),
        )
        .expect("a tmpfs below the volume's source");
    let _unmount = HostMount(sub.clone());
    fs::write(sub.join("f"), "inner\n").expect("write in the submount");
    let mount: kiln_runtime::oci_spec::runtime::Mount = serde_json::from_value(serde_json::json!({
        "destination": "/vol", "type": "bind", "source": vol.path(), "options": ["rbind", "ro"]
    }))
    .expect("mount");
    let script = "cat /vol/sub/f; \
                  touch /vol/top 2>&1 || true; \
                  touch /vol/sub/inner 2>&1 || true";
    let c = container("rro", &["sh", "-c", script], |o| o.mounts.push(mount));
    let (st, out, err) = run(&c);
    assert_eq!(st.expect("runs"), ExitStatus::Code(0), "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines.first(),
        Some(&"inner"),
        "the submount is there: {out}"
    );
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.contains("Read-only file system"))
            .count(),
        2,
        "the volume and the mount below it are read-only: {out}"
    );
    assert!(!sub.join("inner").exists());
    fs::write(sub.join("host"), "x").expect("the host's submount stays writable");
}

#[test]
fn user_with_a_group_and_group_add_set_the_groups_as_docker() {
    let groups = |user: &str, group_add: &[&str]| {
        let mut c = container("groups", &["id", "-G"], |o| {
            o.group_add = group_add.iter().map(|g| g.to_string()).collect();
        });
        c.config.user = Some(user.to_string());
        let (st, out, err) = run(&c);
        (st.map(|s| s.code()), out.trim().to_string(), err)
    };
    // Implicit form: the primary group and every group listing the user.
    assert_eq!(groups("alice", &[]).1, "1000 10");
    // A named group replaces the memberships (issue #15).
    assert_eq!(groups("alice:wheel", &[]).1, "10");
    assert_eq!(groups("alice:nogroup", &[]).1, "65534", "wheel no longer");
    assert_eq!(groups("1000:1000", &[]).1, "1000");
    // --group-add: names from the container's /etc/group, numbers as given.
    // (`id -G`: the primary group, then the kernel's sorted list.)
    assert_eq!(
        groups("alice", &["nogroup", "4242"]).1,
        "1000 10 4242 65534"
    );
    assert_eq!(groups("alice:wheel", &["nogroup"]).1, "10 65534");
    let (st, _, _) = groups("alice", &["nosuch"]);
    let err = st.expect_err("an unknown group name is refused");
    assert!(
        err.to_string()
            .contains("unable to find group nosuch: no matching entries in group file"),
        "{err}"
    );
}

/// `sh -c script` in a container tweaked by `tweak`, run by `rt`: its
/// exit code and stdout (stderr goes to stdout).
fn sh_in(
    rt: &Runtime,
    name: &str,
    script: &str,
    tweak: impl FnOnce(&mut DockerSpecOptions),
) -> (i32, String) {
    let script = format!("exec 2>&1\n{script}");
    let c = container(name, &["sh", "-c", &script], tweak);
    let (out_r, out_w) = pipe();
    let stdio = StdioConfig {
        stdin: Stdio::Null,
        stdout: Stdio::Fd(out_w),
        stderr: Stdio::Null,
        tty: false,
    };
    let fg = rt.start(&c.config, stdio).expect("container starts");
    let mut out = String::new();
    fs::File::from(out_r)
        .read_to_string(&mut out)
        .expect("stdout");
    (fg.wait().expect("container ends").code(), out)
}

fn v2_runtime() -> Runtime {
    Runtime::new(RuntimeConfig {
        init_binary: HARNESS.into(),
        cgroup_parent: "kiln-test".into(),
        cgroup_root: "/sys/fs/cgroup/unified".into(),
        ..Default::default()
    })
}

#[test]
fn device_option_adds_one_node_with_its_permissions() {
    let (maj, min) = host_disk();
    let host = fs::read_dir("/dev")
        .expect("/dev")
        .flatten()
        .find(|e| {
            use std::os::unix::fs::{FileTypeExt, MetadataExt};
            e.metadata().is_ok_and(|m| {
                m.file_type().is_block_device()
                    && (libc::major(m.rdev()), libc::minor(m.rdev())) == (maj, min)
            })
        })
        .expect("the block device's node in /dev")
        .path();
    let spec = format!("{}:/dev/xdisk:r", host.display());
    let script = "ls -l /dev/xdisk | cut -c1\n\
                  head -c 1 /dev/xdisk >/dev/null && echo read=ok\n\
                  (printf '' >/dev/xdisk) || echo write=refused\n\
                  mknod /tmp/other c 1 11 && (printf '' >/tmp/other) || echo other=refused\n\
                  rm -f /tmp/other";
    for (layout, rt) in [("v1", runtime()), ("v2", v2_runtime())] {
        let (code, out) = sh_in(&rt, &format!("dev{layout}"), script, |o| {
            o.devices = vec![kiln_runtime::DeviceMapping::parse(&spec).expect("device")];
        });
        assert_eq!(code, 0, "{layout}: {out}");
        for want in ["b\n", "read=ok", "write=refused", "other=refused"] {
            assert!(out.contains(want), "{layout}: {want:?} in {out}");
        }
    }
}

#[test]
fn privileged_gets_every_capability_device_and_a_writable_sys() {
    let (maj, min) = host_disk();
    let script = format!(
        "grep -E '^(CapEff|Seccomp):' /proc/self/status\n\
         grep ' /sys sysfs ' /proc/mounts\n\
         mknod /tmp/disk b {maj} {min} && head -c 1 /tmp/disk >/dev/null && echo disk=ok\n\
         rm -f /tmp/disk\n\
         ls /dev/loop0 && echo loop0=there"
    );
    for (layout, rt) in [("v1", runtime()), ("v2", v2_runtime())] {
        let (code, out) = sh_in(&rt, &format!("priv{layout}"), &script, |o| {
            o.privileged = true
        });
        assert_eq!(code, 0, "{layout}: {out}");
        let capeff = out
            .lines()
            .find_map(|l| l.strip_prefix("CapEff:"))
            .map(str::trim)
            .expect("CapEff");
        let host_bound = fs::read_to_string("/proc/self/status")
            .expect("status")
            .lines()
            .find_map(|l| l.strip_prefix("CapBnd:").map(|v| v.trim().to_string()))
            .expect("CapBnd");
        assert_eq!(capeff, host_bound, "{layout}: every capability: {out}");
        assert!(out.contains("Seccomp:\t0"), "{layout}: no seccomp: {out}");
        assert!(
            out.contains(" /sys sysfs rw,"),
            "{layout}: /sys writable: {out}"
        );
        assert!(
            out.contains("disk=ok"),
            "{layout}: every device allowed: {out}"
        );
        assert!(
            out.contains("loop0=there"),
            "{layout}: the host's nodes: {out}"
        );
    }
}

#[test]
fn oom_kill_disable_and_cpuset_cpus_reach_the_cgroup() {
    let script = "cat /sys/fs/cgroup/memory/memory.oom_control | grep oom_kill_disable\n\
                  cat /sys/fs/cgroup/cpuset/cpuset.cpus\n\
                  grep Cpus_allowed_list /proc/self/status";
    let (code, out) = sh_in(&runtime(), "oomcpus", script, |o| {
        o.oom_kill_disable = true;
        o.cpuset_cpus = Some("0".into());
        o.resources.memory = Some(64 << 20);
    });
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("oom_kill_disable 1"), "{out}");
    assert!(out.lines().any(|l| l == "0"), "cpuset.cpus: {out}");
    assert!(out.contains("Cpus_allowed_list:\t0\n"), "{out}");
}
