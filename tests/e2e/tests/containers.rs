//! Containers end to end, through the `kiln` binary: `run` and its flags,
//! the isolation the static probe sees from inside, resource limits, the
//! detached life cycle (`ps`, `logs`, `exec`, `stop`, `kill`, `wait`, `rm`),
//! `create` + `start`, `commit`, `inspect`, signal forwarding, and pulling a
//! missing image.
//!
//! Each test gets its own store with an image `probe:latest` imported from a
//! root filesystem tarball made here: Debian's static busybox with its applet
//! links, the probe at `/probe`, and `/etc/passwd` + `/etc/group` with a user
//! `app` (1000:1000, also in group `extra` 2000).

use std::collections::BTreeSet;
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use kiln_e2e::{DOCKER_CAPS, Sandbox, busybox_ref, probe_rootfs_tar, sh};
use serde_json::Value;

const IMAGE: &str = "probe:latest";
const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The root filesystem tarball, made once per test process.
fn rootfs_tar() -> &'static Path {
    static TAR: OnceLock<PathBuf> = OnceLock::new();
    TAR.get_or_init(|| {
        probe_rootfs_tar(
            "containers",
            &["root", "home/app", "usr/bin"],
            "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
            "root:x:0:\napp:x:1000:\nextra:x:2000:app\nnogroup:x:65534:\n",
            |root| {
                std::fs::write(root.join("etc/not-executable"), "just data\n")
                    .expect("write a file");
                assert!(
                    sh(Command::new("chown").arg("1000:1000").arg(root.join("home/app")))
                        .status
                        .success()
                );
            },
        )
    })
}

/// A sandbox with `probe:latest` imported; removes its containers on drop.
struct Ctx {
    sb: Sandbox,
}

impl Ctx {
    fn new() -> Self {
        let sb = Sandbox::new();
        sb.kiln_ok([
            "import".as_ref(),
            "-c".as_ref(),
            format!("ENV PATH={PATH}").as_ref(),
            "-c".as_ref(),
            "CMD [\"sh\"]".as_ref(),
            rootfs_tar().as_os_str(),
            IMAGE.as_ref(),
        ]);
        Ctx { sb }
    }

    /// `kiln ARGS`, whatever its exit status.
    fn kiln(&self, args: &[&str]) -> Output {
        sh(&mut self.sb.kiln(args))
    }

    /// `kiln ARGS`; panics unless it exits 0; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        self.sb.kiln_ok(args)
    }

    /// `kiln run --rm probe:latest ARGS...` with FLAGS before the image.
    fn run(&self, flags: &[&str], cmd: &[&str]) -> Output {
        let mut args = vec!["run", "--rm"];
        args.extend_from_slice(flags);
        args.push(IMAGE);
        args.extend_from_slice(cmd);
        self.kiln(&args)
    }

    /// Runs the probe (with FLAGS) and parses its JSON.
    fn probe(&self, flags: &[&str]) -> Value {
        let out = self.run(flags, &["/probe"]);
        assert_eq!(code(&out), 0, "{}", show(&out));
        probe_json(&out.stdout)
    }

    /// `kiln run -d` with FLAGS and CMD; returns the full ID.
    fn detach(&self, flags: &[&str], cmd: &[&str]) -> String {
        let mut args = vec!["run", "-d"];
        args.extend_from_slice(flags);
        args.push(IMAGE);
        args.extend_from_slice(cmd);
        let id = self.ok(&args).trim().to_owned();
        assert_eq!(id.len(), 64, "run -d prints the full ID: {id:?}");
        assert!(id.chars().all(|c| c.is_ascii_hexdigit()), "{id}");
        id
    }

    /// The `ps -a` row of a container (by name), if any.
    fn ps_row(&self, name: &str) -> Option<String> {
        self.ok(&["ps", "-a"])
            .lines()
            .find(|l| l.split_whitespace().last() == Some(name))
            .map(str::to_owned)
    }

    fn inspect(&self, name: &str) -> Value {
        let v: Value = serde_json::from_str(&self.ok(&["inspect", name])).expect("inspect JSON");
        v[0].clone()
    }
}

impl Drop for Ctx {
    fn drop(&mut self) {
        let out = sh(&mut self.sb.kiln(["ps", "-a", "-q", "--no-trunc"]));
        for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            let _ = sh(&mut self.sb.kiln(["rm", "-f", id]));
        }
    }
}

fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn show(out: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        stdout(out),
        stderr(out)
    )
}

fn probe_json(bytes: &[u8]) -> Value {
    let text = String::from_utf8_lossy(bytes);
    let line = text
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("the probe printed no JSON: {text}"));
    serde_json::from_str(line).unwrap_or_else(|e| panic!("bad probe JSON ({e}): {line}"))
}

fn strings(v: &Value) -> BTreeSet<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|x| x.as_str().expect("string").to_owned())
        .collect()
}

fn ns_inode(path: &str) -> u64 {
    let link = std::fs::read_link(path).unwrap_or_else(|e| panic!("readlink {path}: {e}"));
    let s = link.to_string_lossy();
    s.split('[')
        .nth(1)
        .and_then(|r| r.trim_end_matches(']').parse().ok())
        .unwrap_or_else(|| panic!("no inode in {s}"))
}

/// Polls `f` until it returns true or `timeout` passes.
fn eventually(timeout: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn run_exit_codes_follow_docker() {
    let c = Ctx::new();
    let out = c.run(&[], &["true"]);
    assert_eq!(code(&out), 0, "{}", show(&out));
    let out = c.run(&[], &["false"]);
    assert_eq!(code(&out), 1, "{}", show(&out));
    let out = c.run(&[], &["sh", "-c", "exit 3"]);
    assert_eq!(code(&out), 3, "{}", show(&out));
    let out = c.run(&[], &["echo", "hello", "world"]);
    assert_eq!(stdout(&out), "hello world\n", "{}", show(&out));

    let out = c.run(&[], &["nosuch"]);
    assert_eq!(code(&out), 127, "{}", show(&out));
    assert!(
        stderr(&out).contains("exec: \"nosuch\": executable file not found in $PATH"),
        "{}",
        show(&out)
    );
    let out = c.run(&[], &["/etc/not-executable"]);
    assert_eq!(code(&out), 126, "{}", show(&out));

    // The same codes when the start of a detached container fails.
    let out = c.kiln(&["run", "-d", "--name", "bad", IMAGE, "nosuch"]);
    assert_eq!(code(&out), 127, "{}", show(&out));
    assert!(
        stderr(&out).contains("executable file not found in $PATH"),
        "{}",
        show(&out)
    );
    let row = c.ps_row("bad").expect("the failed container is listed");
    assert!(row.contains("Exited (127)"), "{row}");
    c.ok(&["rm", "bad"]);
    let out = c.kiln(&["run", "-d", "--rm", IMAGE, "/etc/not-executable"]);
    assert_eq!(code(&out), 126, "{}", show(&out));

    // PID 1 cannot be killed from inside its namespace: with --init the
    // command is PID 2, and its death by a signal is reported as 128+n.
    let out = c.run(&["--init"], &["sh", "-c", "kill -KILL $$"]);
    assert_eq!(code(&out), 137, "{}", show(&out));
    let out = c.run(&["--init"], &["sh", "-c", "kill -USR1 $$"]);
    assert_eq!(code(&out), 138, "{}", show(&out));

    // kiln's own errors are 125.
    let out = c.run(&["--network", "bridge"], &["true"]);
    assert_eq!(code(&out), 125, "{}", show(&out));
    let out = c.kiln(&["run", "--rm", "sha256:0000000000000000", "true"]);
    assert_eq!(code(&out), 125, "{}", show(&out));
    // --rm left nothing behind.
    assert_eq!(c.ok(&["ps", "-a", "-q"]), "");
}

#[test]
fn probe_sees_an_isolated_container() {
    let c = Ctx::new();
    let id = c.ok(&["create", "--name", "iso", IMAGE, "/probe"]);
    let id = id.trim();
    let out = c.kiln(&["start", "-a", "iso"]);
    assert_eq!(code(&out), 0, "{}", show(&out));
    let p = probe_json(&out.stdout);

    // Its own PID namespace: the probe is PID 1 and sees only itself.
    assert_eq!(p["pid"], 1, "{p}");
    assert_eq!(p["pids"], serde_json::json!([1]), "{p}");
    for ns in ["cgroup", "ipc", "mnt", "net", "pid", "uts"] {
        let host = ns_inode(&format!("/proc/self/ns/{ns}"));
        assert_ne!(
            p["namespaces"][ns], host,
            "{ns} namespace shared with the host: {p}"
        );
    }

    // Docker's default capabilities, no ambient or inheritable ones.
    let expected: BTreeSet<String> = DOCKER_CAPS.iter().map(|s| (*s).to_owned()).collect();
    for set in ["bounding", "effective", "permitted"] {
        assert_eq!(strings(&p["capabilities"][set]), expected, "{set}: {p}");
    }
    assert!(strings(&p["capabilities"]["ambient"]).is_empty(), "{p}");
    assert!(strings(&p["capabilities"]["inheritable"]).is_empty(), "{p}");
    assert_eq!(p["no_new_privs"], false, "{p}");
    assert_eq!(p["seccomp"], 2, "seccomp filter mode: {p}");

    // Masked and read-only paths.
    assert_eq!(p["kcore_masked"], true, "{p}");
    assert_eq!(p["proc_sys_writable"], false, "{p}");

    // Hostname is the short ID; --network none leaves only lo.
    assert_eq!(p["hostname"], &id[..12], "{p}");
    assert_eq!(p["interfaces"], serde_json::json!(["lo"]), "{p}");

    // No host mount is visible: every mount target is a container path.
    let sandbox = c.sb.path().to_string_lossy().into_owned();
    for m in p["mounts"].as_array().expect("mounts") {
        let target = m["target"].as_str().expect("target");
        assert!(
            !target.contains(&sandbox) && !target.starts_with("/work"),
            "host mount visible: {m}"
        );
    }
    let targets: BTreeSet<&str> = p["mounts"]
        .as_array()
        .expect("mounts")
        .iter()
        .filter_map(|m| m["target"].as_str())
        .collect();
    for t in ["/", "/proc", "/dev", "/sys", "/etc/hostname", "/etc/hosts"] {
        assert!(targets.contains(t), "no mount at {t}: {targets:?}");
    }

    // The record says it ran and exited 0.
    let row = c.ps_row("iso").expect("ps -a lists iso");
    assert!(row.contains("Exited (0)"), "{row}");
}

#[test]
fn writing_proc_sys_fails_and_host_network_is_shared() {
    let c = Ctx::new();
    let out = c.run(&[], &["sh", "-c", "echo x > /proc/sys/kernel/domainname"]);
    assert_ne!(code(&out), 0, "{}", show(&out));
    let out = c.run(&[], &["sh", "-c", "cat /proc/kcore | wc -c"]);
    assert_eq!(stdout(&out).trim(), "0", "{}", show(&out));

    let p = c.probe(&["--network", "host"]);
    assert_eq!(
        p["namespaces"]["net"],
        ns_inode("/proc/self/ns/net"),
        "--network host shares the host's: {p}"
    );
    assert_ne!(p["interfaces"], serde_json::json!(["lo"]), "{p}");
    let host_name = std::fs::read_to_string("/proc/sys/kernel/hostname").expect("hostname");
    assert_eq!(
        p["hostname"],
        host_name.trim(),
        "as Docker with --network host: {p}"
    );
    let p = c.probe(&["--hostname", "box1"]);
    assert_eq!(p["hostname"], "box1");
}

#[test]
fn env_workdir_user_and_entrypoint() {
    let c = Ctx::new();
    let env_file = c.sb.work().join("env.list");
    std::fs::write(&env_file, "# comment\n\nFROM_FILE=yes\nSHARED=file\n").expect("env file");
    let env_file = env_file.to_string_lossy().into_owned();
    let p = c.probe(&[
        "-e",
        "A=1",
        "--env",
        "SHARED=flag",
        "--env-file",
        &env_file,
        "-w",
        "/work/dir",
    ]);
    let env = &p["env"];
    assert_eq!(env["A"], "1", "{p}");
    assert_eq!(env["FROM_FILE"], "yes", "{p}");
    assert_eq!(env["SHARED"], "flag", "-e wins over --env-file: {p}");
    assert_eq!(env["PATH"], PATH, "the image's PATH: {p}");
    assert_eq!(env["HOME"], "/root", "{p}");
    assert_eq!(p["cwd"], "/work/dir", "the workdir is created: {p}");
    assert_eq!(p["uid"][0], 0);

    let p = c.probe(&["-u", "1000"]);
    assert_eq!(p["uid"], serde_json::json!([1000, 1000, 1000, 1000]), "{p}");
    assert_eq!(p["gid"][0], 1000, "{p}");
    let p = c.probe(&["-u", "app"]);
    assert_eq!(p["uid"][0], 1000, "{p}");
    assert_eq!(p["gid"][0], 1000, "{p}");
    assert!(
        p["groups"]
            .as_array()
            .expect("groups")
            .contains(&Value::from(2000)),
        "supplementary group extra: {p}"
    );
    assert_eq!(p["env"]["HOME"], "/home/app", "{p}");
    let p = c.probe(&["-u", "1000:2000"]);
    assert_eq!(p["uid"][0], 1000, "{p}");
    assert_eq!(p["gid"][0], 2000, "{p}");
    let out = c.run(&["-u", "nosuchuser"], &["true"]);
    assert_ne!(code(&out), 0, "{}", show(&out));

    let out = c.run(&["--entrypoint", "/bin/echo"], &["via", "entrypoint"]);
    assert_eq!(stdout(&out), "via entrypoint\n", "{}", show(&out));
    // --entrypoint drops the image's CMD (`sh`): echo prints an empty line.
    let out = c.run(&["--entrypoint", "echo"], &[]);
    assert_eq!(stdout(&out), "\n", "{}", show(&out));
}

#[test]
fn read_only_volumes_and_tmpfs() {
    let c = Ctx::new();
    let out = c.run(&["--read-only"], &["touch", "/file"]);
    assert_ne!(code(&out), 0, "{}", show(&out));
    assert!(
        stderr(&out).contains("Read-only file system"),
        "{}",
        show(&out)
    );
    let out = c.run(
        &["--read-only", "--tmpfs", "/scratch"],
        &[
            "sh",
            "-c",
            "touch /scratch/f && grep ' /scratch ' /proc/mounts",
        ],
    );
    assert_eq!(code(&out), 0, "{}", show(&out));
    assert!(
        stdout(&out).starts_with("tmpfs /scratch tmpfs"),
        "{}",
        show(&out)
    );
    assert!(
        stdout(&out).contains("noexec"),
        "Docker's default: {}",
        show(&out)
    );
    let out = c.run(
        &["--tmpfs", "/scratch:size=1m,exec"],
        &["grep", " /scratch ", "/proc/mounts"],
    );
    let line = stdout(&out);
    assert!(line.contains("size=1024k"), "{}", show(&out));
    assert!(!line.contains("noexec"), "{}", show(&out));
    // Without --read-only the root is writable.
    let out = c.run(&[], &["touch", "/file"]);
    assert_eq!(code(&out), 0, "{}", show(&out));

    let host = c.sb.work().join("vol");
    std::fs::create_dir_all(&host).expect("vol");
    std::fs::write(host.join("in"), "from host\n").expect("write");
    let rw = format!("{}:/data", host.display());
    let out = c.run(
        &["-v", &rw],
        &[
            "sh",
            "-c",
            "cat /data/in && echo from container > /data/out",
        ],
    );
    assert_eq!(code(&out), 0, "{}", show(&out));
    assert_eq!(stdout(&out), "from host\n");
    assert_eq!(
        std::fs::read_to_string(host.join("out")).expect("written through the bind mount"),
        "from container\n"
    );
    let ro = format!("{}:/data:ro", host.display());
    let out = c.run(&["-v", &ro], &["sh", "-c", "cat /data/in; touch /data/x"]);
    assert_ne!(code(&out), 0, "{}", show(&out));
    assert_eq!(stdout(&out), "from host\n");
    assert!(
        stderr(&out).contains("Read-only file system"),
        "{}",
        show(&out)
    );
    assert!(!host.join("x").exists());
}

#[test]
fn memory_limit_kills_a_hog_with_137() {
    let c = Ctx::new();
    let p = c.probe(&["-m", "32m"]);
    let limits = &p["cgroup_limits"];
    let limit = limits["v1_memory_limit"]
        .as_str()
        .or(limits["v2_memory_max"].as_str())
        .unwrap_or_else(|| panic!("no memory limit visible: {p}"));
    assert_eq!(limit, (32u64 << 20).to_string(), "{p}");
    let out = c.run(&["-m", "32m"], &["/probe", "alloc", "256"]);
    assert_eq!(code(&out), 137, "{}", show(&out));
    // Without a limit the same allocation succeeds.
    let out = c.run(&[], &["/probe", "alloc", "256"]);
    assert_eq!(code(&out), 0, "{}", show(&out));

    // exec joins the container's cgroup: the limit applies to it too, and
    // the container outlives its exec'd hog.
    c.detach(&["--name", "limited", "-m", "32m"], &["sleep", "100"]);
    let out = c.kiln(&["exec", "limited", "/probe", "alloc", "256"]);
    assert_eq!(code(&out), 137, "{}", show(&out));
    let out = c.kiln(&["exec", "limited", "/probe", "alloc", "4"]);
    assert_eq!(code(&out), 0, "{}", show(&out));
    let row = c.ps_row("limited").expect("listed");
    assert!(row.contains("Up"), "{row}");
}

#[test]
fn pids_limit_stops_a_fork_bomb() {
    let c = Ctx::new();
    let out = c.run(&["--pids-limit", "20"], &["/probe", "spawn", "100"]);
    assert_eq!(code(&out), 0, "{}", show(&out));
    let v = probe_json(&out.stdout);
    let started = v["started"].as_u64().expect("started");
    assert!(started < 20, "{v}");
    assert!(v["failed"].as_u64().expect("failed") > 80, "{v}");
    let out = c.run(&[], &["/probe", "spawn", "50"]);
    assert_eq!(probe_json(&out.stdout)["started"], 50, "{}", show(&out));
}

#[test]
fn detached_container_lifecycle() {
    let c = Ctx::new();
    let id = c.detach(
        &["--name", "d1"],
        &[
            "sh",
            "-c",
            "echo hello-from-d1; trap 'echo bye; exit 5' TERM; while :; do sleep 0.1; done",
        ],
    );
    // The `kiln run -d` process has exited; the container lives on.
    let row = c.ps_row("d1").expect("ps lists d1");
    assert!(row.starts_with(&id[..12]), "{row}");
    assert!(
        row.contains("Up Less than a second") || row.contains(" seconds "),
        "Docker's `Up 2 seconds`: {row}"
    );
    let running = c.ok(&["ps", "-q"]);
    assert_eq!(running.trim(), &id[..12]);
    eventually(Duration::from_secs(10), "the log", || {
        c.ok(&["logs", "d1"]).contains("hello-from-d1")
    });

    // exec joins the container: same files, same processes, same namespaces.
    c.ok(&["exec", "d1", "sh", "-c", "echo shared > /tmp/marker"]);
    assert_eq!(c.ok(&["exec", &id[..6], "cat", "/tmp/marker"]), "shared\n");
    let ps = c.ok(&["exec", "d1", "ps", "-o", "pid,args"]);
    assert!(
        ps.lines()
            .any(|l| l.trim_start().starts_with("1 ") && l.contains("sh -c")),
        "{ps}"
    );
    let out = c.kiln(&["exec", "d1", "/probe"]);
    let p = probe_json(&out.stdout);
    let pid = c.inspect("d1")["State"]["Pid"]
        .as_u64()
        .expect("a running container has a pid");
    assert!(pid > 1);
    for ns in ["ipc", "mnt", "net", "pid", "uts"] {
        assert_eq!(
            p["namespaces"][ns],
            ns_inode(&format!("/proc/{pid}/ns/{ns}")),
            "exec is in the container's {ns} namespace: {p}"
        );
    }
    assert!(
        p["pids"]
            .as_array()
            .expect("pids")
            .contains(&Value::from(1)),
        "{p}"
    );
    assert_eq!(p["hostname"], &id[..12]);
    let out = c.kiln(&["exec", "d1", "sh", "-c", "exit 6"]);
    assert_eq!(code(&out), 6, "{}", show(&out));

    // rm of a running container needs -f.
    let out = c.kiln(&["rm", "d1"]);
    assert_ne!(code(&out), 0, "{}", show(&out));
    assert!(stderr(&out).contains("running"), "{}", show(&out));

    // stop sends SIGTERM: the trap runs and the code is recorded.
    let t = Instant::now();
    assert_eq!(c.ok(&["stop", "-t", "8", "d1"]).trim(), "d1");
    assert!(t.elapsed() < Duration::from_secs(6), "{:?}", t.elapsed());
    let row = c.ps_row("d1").expect("ps -a lists d1");
    assert!(row.contains("Exited (5) "), "{row}");
    assert!(
        row.contains(" ago "),
        "Docker's `Exited (5) 2 seconds ago`: {row}"
    );
    assert_eq!(c.ok(&["ps", "-q"]), "", "not running any more");
    assert_eq!(c.ok(&["wait", "d1"]).trim(), "5");
    let logs = c.ok(&["logs", &id[..8]]);
    assert_eq!(logs, "hello-from-d1\nbye\n");
    let exec = c.kiln(&["exec", "d1", "true"]);
    assert_ne!(code(&exec), 0, "exec into a stopped container fails");

    assert_eq!(c.ok(&["rm", "d1"]).trim(), "d1");
    assert!(c.ps_row("d1").is_none());
    assert!(!c.sb.root().join("containers").join(&id).exists());
}

#[test]
fn stop_kills_after_the_timeout_and_rm_f_removes_a_running_one() {
    let c = Ctx::new();
    // `sleep` as PID 1 has no SIGTERM handler: the kernel drops the signal,
    // so stop must SIGKILL after -t.
    let id = c.detach(&["--name", "sleeper"], &["sleep", "100"]);
    let t = Instant::now();
    c.ok(&["stop", "-t", "1", &id[..10]]);
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(8),
        "{took:?}"
    );
    assert_eq!(c.ok(&["wait", "sleeper"]).trim(), "137");
    let row = c.ps_row("sleeper").expect("listed");
    assert!(row.contains("Exited (137)"), "{row}");

    let id2 = c.detach(&["--name", "doomed"], &["sleep", "100"]);
    let pid = c.inspect("doomed")["State"]["Pid"].as_u64().expect("pid");
    assert!(Path::new(&format!("/proc/{pid}")).exists());
    assert_eq!(c.ok(&["rm", "-f", "doomed"]).trim(), "doomed");
    assert!(c.ps_row("doomed").is_none());
    eventually(Duration::from_secs(5), "the killed process to go", || {
        !Path::new(&format!("/proc/{pid}")).exists()
            || std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z"))
    });
    let out = c.kiln(&["inspect", &id2]);
    assert_ne!(code(&out), 0, "{}", show(&out));
}

#[test]
fn logs_follow_streams_until_exit() {
    let c = Ctx::new();
    c.detach(
        &["--name", "talker"],
        &[
            "sh",
            "-c",
            "for i in 1 2 3 4; do echo line$i; sleep 0.3; done; echo err >&2",
        ],
    );
    let t = Instant::now();
    let followed = c.kiln(&["logs", "-f", "talker"]);
    assert!(t.elapsed() < Duration::from_secs(10));
    // -f waited for the container to end: every line is there, in order,
    // and stderr's line on kiln's stderr (as `docker logs`).
    assert_eq!(code(&followed), 0, "{}", show(&followed));
    let out = stdout(&followed);
    assert_eq!(out, "line1\nline2\nline3\nline4\n", "{}", show(&followed));
    assert_eq!(stderr(&followed), "err\n", "{}", show(&followed));
    assert_eq!(c.ok(&["wait", "talker"]).trim(), "0");
    let row = c.ps_row("talker").expect("listed");
    assert!(row.contains("Exited (0)"), "{row}");
}

#[test]
fn create_then_start_attached() {
    let c = Ctx::new();
    let id = c.ok(&[
        "create",
        "--name",
        "c1",
        IMAGE,
        "sh",
        "-c",
        "echo created-output; exit 4",
    ]);
    let id = id.trim().to_owned();
    assert_eq!(id.len(), 64);
    let row = c.ps_row("c1").expect("ps -a lists a created container");
    assert!(row.contains("Created"), "{row}");
    assert!(
        c.ok(&["ps"]).lines().count() == 1,
        "only the header: not running"
    );
    let v = c.inspect(&id[..7]);
    assert_eq!(v["State"]["Status"], "created", "{v}");
    let out = c.kiln(&["start", "-a", &id[..9]]);
    assert_eq!(code(&out), 4, "{}", show(&out));
    assert_eq!(stdout(&out), "created-output\n");
    let row = c.ps_row("c1").expect("listed");
    assert!(row.contains("Exited (4)"), "{row}");
    // Started again, detached, it runs the same command.
    assert_eq!(c.ok(&["start", "c1"]).trim(), "c1");
    assert_eq!(c.ok(&["wait", "c1"]).trim(), "4");
    eventually(Duration::from_secs(5), "the second run's log", || {
        c.ok(&["logs", "c1"]).contains("created-output")
    });

    // wait on a created container returns once it has been started and ended.
    c.ok(&["create", "--name", "later", IMAGE, "sh", "-c", "exit 12"]);
    let waiter =
        c.sb.kiln(["wait", "later"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn kiln wait");
    std::thread::sleep(Duration::from_millis(500));
    c.ok(&["start", "later"]);
    let out = waiter.wait_with_output().expect("wait");
    assert_eq!(stdout(&out).trim(), "12", "{}", show(&out));

    // create --rm: removed once start -a has seen it exit.
    c.ok(&["create", "--rm", "--name", "once", IMAGE, "true"]);
    assert!(c.ps_row("once").is_some());
    let out = c.kiln(&["start", "-a", "once"]);
    assert_eq!(code(&out), 0, "{}", show(&out));
    assert!(c.ps_row("once").is_none());
}

#[test]
fn kill_sends_the_given_signal() {
    let c = Ctx::new();
    let id = c.detach(
        &["--name", "k1"],
        &[
            "sh",
            "-c",
            "trap 'echo got-usr1; exit 9' USR1; echo ready; while :; do sleep 0.1; done",
        ],
    );
    eventually(Duration::from_secs(10), "ready", || {
        c.ok(&["logs", "k1"]).contains("ready")
    });
    assert_eq!(c.ok(&["kill", "-s", "USR1", &id[..12]]).trim(), &id[..12]);
    assert_eq!(c.ok(&["wait", "k1"]).trim(), "9");
    assert!(c.ok(&["logs", "k1"]).contains("got-usr1"));
    let out = c.kiln(&["kill", "k1"]);
    assert_ne!(
        code(&out),
        0,
        "killing a stopped container fails: {}",
        show(&out)
    );

    c.detach(&["--name", "k2"], &["sleep", "100"]);
    c.ok(&["kill", "k2"]);
    assert_eq!(c.ok(&["wait", "k2"]).trim(), "137");
    let row = c.ps_row("k2").expect("listed");
    assert!(row.contains("Exited (137)"), "{row}");
}

#[test]
fn commit_makes_an_image_with_the_change() {
    let c = Ctx::new();
    let out = c.kiln(&[
        "run",
        "--name",
        "changer",
        "-e",
        "FROM_RUN=1",
        "-w",
        "/etc",
        IMAGE,
        "sh",
        "-c",
        "echo changed > /etc/marker && rm /etc/not-executable",
    ]);
    assert_eq!(code(&out), 0, "{}", show(&out));
    // As `docker commit`: the image takes the container's config as run.
    let id = c.ok(&["ps", "-a", "-q"]);
    c.ok(&["commit", id.trim(), "plain:v1"]);
    let v: Value = serde_json::from_str(&c.ok(&["image", "inspect", "plain:v1"])).expect("json");
    let config = &v[0]["Config"];
    assert_eq!(
        config["Cmd"],
        serde_json::json!([
            "sh",
            "-c",
            "echo changed > /etc/marker && rm /etc/not-executable"
        ]),
        "{v}"
    );
    assert!(strings(&config["Env"]).contains("FROM_RUN=1"), "{v}");
    assert_eq!(config["WorkingDir"], "/etc", "{v}");
    let out = c.kiln(&["run", "--rm", "plain:v1", "cat", "marker"]);
    assert_eq!(stdout(&out), "changed\n", "{}", show(&out));
    let image_id = c.ok(&[
        "commit",
        "-c",
        "CMD [\"cat\", \"/etc/marker\"]",
        "-m",
        "a marker",
        "changer",
        "committed:v1",
    ]);
    let image_id = image_id.trim();
    assert!(image_id.starts_with("sha256:"), "{image_id}");
    let out = c.kiln(&["run", "--rm", "committed:v1"]);
    assert_eq!(code(&out), 0, "{}", show(&out));
    assert_eq!(stdout(&out), "changed\n");
    let out = c.kiln(&["run", "--rm", "committed:v1", "ls", "/etc"]);
    assert!(
        !stdout(&out).contains("not-executable"),
        "the deletion is kept: {}",
        show(&out)
    );
    let v: Value =
        serde_json::from_str(&c.ok(&["image", "inspect", "committed:v1"])).expect("json");
    assert_eq!(
        v[0]["Config"]["Cmd"],
        serde_json::json!(["cat", "/etc/marker"]),
        "{v}"
    );
    assert_eq!(
        v[0]["RootFS"]["Layers"].as_array().map(Vec::len),
        Some(2),
        "{v}"
    );
    let history = c.ok(&["history", "committed:v1"]);
    assert!(history.contains("a marker"), "{history}");
    // The container is still there and still has its change.
    assert!(c.ps_row("changer").is_some());
}

#[test]
fn inspect_reports_the_container() {
    let c = Ctx::new();
    let vol = c.sb.work().join("v");
    let vol_spec = format!("{}:/v:ro", vol.display());
    let id = c.detach(
        &[
            "--name",
            "insp",
            "-e",
            "K=V",
            "-m",
            "64m",
            "--pids-limit",
            "50",
            "-w",
            "/tmp",
            "-v",
            &vol_spec,
            "--hostname",
            "ihost",
        ],
        &["sleep", "100"],
    );
    let v = c.inspect("insp");
    assert_eq!(v["Id"], id.as_str());
    assert_eq!(v["Name"], "/insp");
    assert_eq!(v["Path"], "sleep");
    assert_eq!(v["Args"], serde_json::json!(["100"]));
    assert_eq!(v["State"]["Status"], "running", "{v}");
    assert_eq!(v["State"]["Running"], true);
    assert!(v["State"]["Pid"].as_u64().unwrap_or(0) > 1, "{v}");
    assert!(
        v["State"]["StartedAt"]
            .as_str()
            .is_some_and(|t| t.starts_with("20") && t.ends_with('Z')),
        "{v}"
    );
    assert_eq!(v["State"]["FinishedAt"], "0001-01-01T00:00:00Z", "{v}");
    assert!(
        v["Image"].as_str().unwrap_or("").starts_with("sha256:"),
        "{v}"
    );
    assert_eq!(v["Config"]["Image"], IMAGE);
    assert_eq!(v["Config"]["Hostname"], "ihost");
    assert_eq!(v["Config"]["WorkingDir"], "/tmp");
    assert!(strings(&v["Config"]["Env"]).contains("K=V"), "{v}");
    assert_eq!(v["HostConfig"]["Memory"], 64 << 20);
    assert_eq!(v["HostConfig"]["PidsLimit"], 50);
    assert_eq!(v["HostConfig"]["NetworkMode"], "none");
    assert_eq!(v["Mounts"][0]["Destination"], "/v");
    assert_eq!(v["Mounts"][0]["RW"], false);
    // `container inspect` and an ID prefix give the same object.
    let by_prefix: Value =
        serde_json::from_str(&c.ok(&["container", "inspect", &id[..5]])).expect("json");
    assert_eq!(by_prefix[0]["Id"], id.as_str());
    c.ok(&["kill", "insp"]);
    c.ok(&["wait", "insp"]);
    let v = c.inspect("insp");
    assert_eq!(v["State"]["Status"], "exited", "{v}");
    assert_eq!(v["State"]["Running"], false);
    assert_eq!(v["State"]["ExitCode"], 137);
    let (started, finished) = (
        v["State"]["StartedAt"].as_str().expect("StartedAt"),
        v["State"]["FinishedAt"].as_str().expect("FinishedAt"),
    );
    assert!(finished.starts_with("20") && finished > started, "{v}");
    // The supervisor's record, to the nanosecond (Docker's form).
    assert_eq!(
        finished.len(),
        "2026-01-01T00:00:00.000000000Z".len(),
        "{v}"
    );
    let row = c.ps_row("insp").expect("ps -a lists insp");
    assert!(
        row.contains("Exited (137) ") && row.contains(" ago"),
        "{row}"
    );
    let out = c.kiln(&["inspect", "nosuch-container"]);
    assert_ne!(code(&out), 0);
}

/// Starts `kiln run FLAGS IMAGE` with a shell that traps `sig` (printing
/// `said` and exiting with `code`), waits for it to be ready, sends `sig` to
/// the kiln process, and checks that the container got it: the output after
/// `ready` is `said` and kiln exits with `code`.
fn signal_foreground_run(c: &Ctx, flags: &[&str], sig: &str, said: &str, code: i32) {
    let script =
        format!("trap 'echo {said}; exit {code}' {sig}; echo ready; while :; do sleep 0.1; done");
    let mut args = vec!["run"];
    args.extend_from_slice(flags);
    args.extend([IMAGE, "sh", "-c", &script]);
    let mut child =
        c.sb.kiln(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn kiln run");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    assert_eq!(lines.next().expect("a line").expect("read"), "ready");
    let kill = sh(Command::new("kill").args([format!("-{sig}"), child.id().to_string()]));
    assert!(kill.status.success());
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert_eq!(rest, [said]);
    assert_eq!(child.wait().expect("wait").code(), Some(code));
}

#[test]
fn sigterm_to_a_foreground_run_reaches_the_container() {
    let c = Ctx::new();
    signal_foreground_run(&c, &["--rm"], "TERM", "got-term", 42);
    assert_eq!(c.ok(&["ps", "-a", "-q"]), "", "--rm removed it");

    // SIGINT too (Ctrl-C without -t).
    signal_foreground_run(&c, &["--rm"], "INT", "got-int", 43);
}

#[test]
fn run_pulls_a_missing_image() {
    let sb = Sandbox::new();
    let out = sh(&mut sb.kiln(["run", "--rm", &busybox_ref(), "echo", "pulled"]));
    assert_eq!(code(&out), 0, "{}", show(&out));
    assert_eq!(stdout(&out), "pulled\n");
    assert!(
        stderr(&out).contains(&format!("Unable to find image '{}' locally", busybox_ref())),
        "{}",
        show(&out)
    );
    // The second run finds it in the store.
    let out = sh(&mut sb.kiln(["run", "--rm", &busybox_ref(), "true"]));
    assert_eq!(code(&out), 0, "{}", show(&out));
    assert!(
        !stderr(&out).contains("Unable to find image"),
        "{}",
        show(&out)
    );
    let images = sb.kiln_ok(["images"]);
    assert!(images.contains("busybox"), "{images}");
}

#[test]
fn security_and_cpu_flags_reach_the_process() {
    let c = Ctx::new();
    let p = c.probe(&[
        "--cap-drop",
        "ALL",
        "--cap-add",
        "NET_ADMIN",
        "--security-opt",
        "no-new-privileges",
        "--cpus",
        "0.5",
    ]);
    assert_eq!(
        p["capabilities"]["effective"],
        serde_json::json!(["CAP_NET_ADMIN"]),
        "{p}"
    );
    assert_eq!(
        p["capabilities"]["bounding"],
        serde_json::json!(["CAP_NET_ADMIN"]),
        "{p}"
    );
    assert_eq!(p["no_new_privs"], true, "{p}");
    let limits = &p["cgroup_limits"];
    match limits["v1_cpu_quota"].as_str() {
        Some(quota) => {
            assert_eq!(quota, "50000", "{p}");
            assert_eq!(limits["v1_cpu_period"], "100000", "{p}");
        }
        None => assert_eq!(limits["v2_cpu_max"], "50000 100000", "{p}"),
    }
    let p = c.probe(&[
        "--cpu-shares",
        "512",
        "--security-opt",
        "seccomp=unconfined",
    ]);
    let limits = &p["cgroup_limits"];
    match limits["v1_cpu_shares"].as_str() {
        Some(shares) => assert_eq!(shares, "512", "{p}"),
        None => assert!(limits["v2_cpu_weight"].as_str().is_some(), "{p}"),
    }
    assert_eq!(p["seccomp"], 0, "seccomp=unconfined: {p}");
    let p = c.probe(&["--cap-drop", "CHOWN"]);
    let eff = strings(&p["capabilities"]["effective"]);
    assert!(
        !eff.contains("CAP_CHOWN") && eff.contains("CAP_KILL"),
        "{p}"
    );
    let out = c.run(&["--cap-drop", "CHOWN"], &["chown", "1000", "/tmp"]);
    assert_ne!(code(&out), 0, "chown needs CAP_CHOWN: {}", show(&out));
}

#[test]
fn init_stdin_and_tty() {
    let c = Ctx::new();
    // --init: the command is PID 2 under a tiny init.
    let p = c.probe(&["--init"]);
    assert_eq!(p["pid"], 2, "{p}");
    assert_eq!(p["ppid"], 1, "{p}");

    // -i passes stdin through; without it stdin is empty.
    let mut child =
        c.sb.kiln(["run", "--rm", "-i", IMAGE, "sh", "-c", "tr a-z A-Z"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
    {
        use std::io::Write as _;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(b"shout\n").expect("write stdin");
    }
    let out = child.wait_with_output().expect("wait");
    assert_eq!(stdout(&out), "SHOUT\n", "{}", show(&out));
    let out = c.run(&[], &["sh", "-c", "cat; echo end"]);
    assert_eq!(stdout(&out), "end\n", "{}", show(&out));

    // -t gives the command a terminal, even when kiln's stdin is not one.
    let out = sh(c
        .sb
        .kiln(["run", "--rm", "-t", IMAGE, "tty"])
        .stdin(Stdio::null()));
    assert_eq!(code(&out), 0, "{}", show(&out));
    assert!(stdout(&out).starts_with("/dev/pts/"), "{}", show(&out));
    let out = c.run(&[], &["tty"]);
    assert_ne!(code(&out), 0, "no terminal without -t: {}", show(&out));
}

#[test]
fn exec_takes_user_workdir_env_and_stdin() {
    let c = Ctx::new();
    c.detach(&["--name", "ex", "-e", "FROM_RUN=1"], &["sleep", "100"]);
    let out = c.ok(&[
        "exec",
        "-u",
        "app",
        "-w",
        "/tmp",
        "-e",
        "X=2",
        "ex",
        "sh",
        "-c",
        "id -u; id -G; pwd; echo $FROM_RUN$X",
    ]);
    assert_eq!(out, "1000\n1000 2000\n/tmp\n12\n");
    let mut child =
        c.sb.kiln(["exec", "-i", "ex", "sh", "-c", "cat > /tmp/in; cat /tmp/in"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
    {
        use std::io::Write as _;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(b"piped in\n").expect("write");
    }
    let out = child.wait_with_output().expect("wait");
    assert_eq!(stdout(&out), "piped in\n", "{}", show(&out));
    let out = c.kiln(&["exec", "ex", "nosuch"]);
    assert_eq!(code(&out), 127, "{}", show(&out));
    let out = c.kiln(&["exec", "nosuch-container", "true"]);
    assert_ne!(code(&out), 0, "{}", show(&out));
}

#[test]
fn stop_signal_of_a_committed_image_is_used() {
    let c = Ctx::new();
    c.ok(&["create", "--name", "base", IMAGE, "true"]);
    c.ok(&[
        "commit",
        "-c",
        "STOPSIGNAL SIGUSR1",
        "-c",
        "CMD [\"sh\", \"-c\", \"trap 'echo usr1; exit 3' USR1; while :; do sleep 0.1; done\"]",
        "base",
        "stoppable",
    ]);
    c.kiln(&["rm", "base"]);
    let id = c.kiln(&["run", "-d", "--name", "st", "stoppable"]);
    assert_eq!(code(&id), 0, "{}", show(&id));
    let t = Instant::now();
    c.ok(&["stop", "-t", "20", "st"]);
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    assert_eq!(c.ok(&["wait", "st"]).trim(), "3");
    assert!(c.ok(&["logs", "st"]).contains("usr1"));
}

#[test]
fn detached_rm_and_supervisor_loss() {
    let c = Ctx::new();
    // run -d --rm: gone once it has exited.
    let id = c.detach(&["--rm", "--name", "brief"], &["true"]);
    eventually(Duration::from_secs(10), "the --rm container to go", || {
        c.ps_row("brief").is_none()
    });
    assert!(!c.sb.root().join("containers").join(&id).exists());
    // ... and when `wait` or `stop` saw it end.
    c.detach(&["--rm", "--name", "waited"], &["sh", "-c", "exit 7"]);
    assert_eq!(c.ok(&["wait", "waited"]).trim(), "7");
    assert_eq!(c.kiln(&["inspect", "waited"]).status.code(), Some(1));
    c.detach(&["--rm", "--name", "stopped"], &["sleep", "100"]);
    c.ok(&["stop", "-t", "1", "stopped"]);
    assert_eq!(c.kiln(&["inspect", "stopped"]).status.code(), Some(1));

    // Killing the container's process from the host is recorded as 137.
    c.detach(&["--name", "victim"], &["sleep", "100"]);
    let pid = c.inspect("victim")["State"]["Pid"].as_u64().expect("pid");
    assert!(
        sh(Command::new("kill").args(["-KILL", &pid.to_string()]))
            .status
            .success()
    );
    assert_eq!(c.ok(&["wait", "victim"]).trim(), "137");
    let row = c.ps_row("victim").expect("listed");
    assert!(row.contains("Exited (137)"), "{row}");

    // When the supervisor and the container die without a word, ps tells
    // the truth (not running) and the container can be removed.
    c.detach(&["--name", "orphan"], &["sleep", "100"]);
    let pid = c.inspect("orphan")["State"]["Pid"].as_u64().expect("pid");
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    let ppid = stat
        .rsplit(')')
        .next()
        .and_then(|r| r.split_whitespace().nth(1))
        .expect("ppid")
        .to_owned();
    assert_ne!(ppid, "1", "a supervisor is the container's parent");
    for p in [ppid.as_str(), &pid.to_string()] {
        assert!(sh(Command::new("kill").args(["-KILL", p])).status.success());
    }
    eventually(
        Duration::from_secs(5),
        "the container to be seen dead",
        || c.ps_row("orphan").is_some_and(|r| r.contains("Exited")),
    );
    assert_eq!(c.ok(&["ps", "-q"]), "");
    c.ok(&["rm", "orphan"]);
    assert!(c.ps_row("orphan").is_none());
}

#[test]
fn detached_container_survives_its_callers_process_group() {
    use std::os::unix::process::CommandExt as _;
    let c = Ctx::new();
    // kiln run -d in a process group of its own, as a shell job would be;
    // then the whole group is killed, as a terminal's hangup would.
    let child =
        c.sb.kiln(["run", "-d", "--name", "survivor", IMAGE, "sleep", "100"])
            .process_group(0)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
    let pgid = child.id();
    let out = child.wait_with_output().expect("wait");
    assert_eq!(code(&out), 0, "{}", show(&out));
    let _ = sh(Command::new("kill").args(["-KILL", "--", &format!("-{pgid}")]));
    std::thread::sleep(Duration::from_millis(200));
    let row = c.ps_row("survivor").expect("listed");
    assert!(row.contains("Up"), "{row}");
    let pid = c.inspect("survivor")["State"]["Pid"].as_u64().expect("pid");
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    let pgrp: u64 = stat
        .rsplit(')')
        .next()
        .and_then(|r| r.split_whitespace().nth(2))
        .and_then(|x| x.parse().ok())
        .expect("pgrp");
    assert_ne!(
        pgrp,
        u64::from(pgid),
        "the container left its caller's group"
    );
    assert_eq!(c.ok(&["exec", "survivor", "echo", "alive"]), "alive\n");
}

#[test]
fn detached_logs_keep_stdout_and_stderr_apart() {
    let c = Ctx::new();
    c.detach(
        &["--name", "split"],
        &[
            "sh",
            "-c",
            "echo o1; echo e1 >&2; echo o2; printf 'e2-no-newline' >&2; sleep 0.3; echo o3",
        ],
    );
    // -f follows the running container to its end, streams kept apart.
    let followed = c.kiln(&["logs", "-f", "split"]);
    assert_eq!(code(&followed), 0, "{}", show(&followed));
    assert_eq!(stdout(&followed), "o1\no2\no3\n", "{}", show(&followed));
    assert_eq!(
        stderr(&followed),
        "e1\ne2-no-newline",
        "{}",
        show(&followed)
    );
    assert_eq!(c.ok(&["wait", "split"]).trim(), "0");
    let logs = c.kiln(&["logs", "split"]);
    assert_eq!(stdout(&logs), "o1\no2\no3\n", "{}", show(&logs));
    assert_eq!(stderr(&logs), "e1\ne2-no-newline", "{}", show(&logs));
    // The file is JSON lines as Docker's json-file driver writes them.
    let path = c.inspect("split")["LogPath"]
        .as_str()
        .expect("LogPath")
        .to_owned();
    let text = std::fs::read_to_string(&path).expect("read the log file");
    let first: Value = serde_json::from_str(text.lines().next().expect("a line")).expect("json");
    assert_eq!(first["log"], "o1\n", "{text}");
    assert_eq!(first["stream"], "stdout", "{text}");
    assert!(
        first["time"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{text}"
    );
}

#[test]
fn foreground_output_is_kept_for_logs() {
    let c = Ctx::new();
    let out = c.kiln(&[
        "run",
        "--name",
        "fg",
        IMAGE,
        "sh",
        "-c",
        "echo out1; echo err1 >&2; echo out2; exit 2",
    ]);
    assert_eq!(code(&out), 2, "{}", show(&out));
    assert_eq!(stdout(&out), "out1\nout2\n", "{}", show(&out));
    // (A fresh store's first container also prints a snapshotter notice.)
    assert!(
        stderr(&out).ends_with("err1\n") && !stderr(&out).contains("out1"),
        "{}",
        show(&out)
    );
    // Each stream back to where it came from, as `docker logs`.
    let logs = c.kiln(&["logs", "fg"]);
    assert_eq!(stdout(&logs), "out1\nout2\n", "{}", show(&logs));
    assert_eq!(stderr(&logs), "err1\n", "{}", show(&logs));
    // Large output goes through whole, to the caller and to the log.
    let out = c.kiln(&[
        "run",
        "--name",
        "big",
        IMAGE,
        "sh",
        "-c",
        "yes | head -c 3000000",
    ]);
    assert_eq!(out.stdout.len(), 3_000_000, "{}", stderr(&out));
    assert_eq!(sh(&mut c.sb.kiln(["logs", "big"])).stdout.len(), 3_000_000);

    // Signals still reach the container while its output is copied.
    signal_foreground_run(&c, &["--name", "fgsig"], "TERM", "got-term", 42);
    assert_eq!(c.ok(&["logs", "fgsig"]), "ready\ngot-term\n");
}

/// Lets unprivileged ids pass through (not list) the sandbox directory, as
/// a user-namespaced container's root must reach its state under it.
fn open_sandbox(c: &Ctx) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(c.sb.path(), std::fs::Permissions::from_mode(0o711))
        .expect("chmod the sandbox");
}

#[test]
fn userns_remaps_root_and_volume_files_belong_to_the_mapped_uid() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let c = Ctx::new();
    open_sandbox(&c);
    let vol = c.sb.work().join("vol");
    std::fs::create_dir_all(&vol).expect("mkdir");
    std::fs::set_permissions(c.sb.work(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    std::fs::set_permissions(&vol, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let vol_spec = format!("{}:/vol", vol.display());
    let out = c.run(
        &["--userns", "-v", &vol_spec],
        &["sh", "-c", "touch /vol/made-inside && exec /probe"],
    );
    assert_eq!(code(&out), 0, "{}", show(&out));
    let p = probe_json(&out.stdout);
    assert_eq!(p["uid"][0], 0, "root inside: {p}");
    let map: Vec<&str> = p["uid_map"]
        .as_str()
        .expect("uid_map")
        .split_whitespace()
        .collect();
    assert_eq!(map, ["0", "1000000000", "65536"], "{p}");
    assert_ne!(
        p["namespaces"]["user"],
        ns_inode("/proc/self/ns/user"),
        "{p}"
    );
    let made = std::fs::metadata(vol.join("made-inside")).expect("the file made inside");
    assert_eq!((made.uid(), made.gid()), (1_000_000_000, 1_000_000_000));
    // Still Docker's isolation.
    assert_eq!(p["pid"], 1, "{p}");
    assert_eq!(p["kcore_masked"], true, "{p}");
    assert_eq!(
        strings(&p["capabilities"]["effective"]),
        DOCKER_CAPS.iter().map(|s| s.to_string()).collect(),
        "{p}"
    );
    // The record says so.
    let id = c
        .ok(&["create", "--userns", IMAGE, "true"])
        .trim()
        .to_owned();
    assert_eq!(c.inspect(&id)["HostConfig"]["UsernsMode"], "private");
    // Detached, with exec joining its user namespace.
    c.detach(&["--userns", "--name", "uns"], &["sleep", "100"]);
    let out = c.kiln(&["exec", "uns", "cat", "/proc/self/uid_map"]);
    assert_eq!(code(&out), 0, "{}", show(&out));
    assert_eq!(
        stdout(&out).split_whitespace().collect::<Vec<_>>(),
        ["0", "1000000000", "65536"]
    );
    c.ok(&["rm", "-f", "uns"]);
}

/// `kiln commit` of a `--userns` container: the container's files were
/// written as host ids 1000000000.., the layer records the ids the container
/// saw, and the image's own owners (copied-up `/tmp`, owned by 0) stay.
/// The entries of the top layer of `image`, read from a `kiln save`
/// docker-archive with the system `tar`.
fn top_layer_entries(c: &Ctx, image: &str) -> Vec<String> {
    let dir = tempfile::tempdir().expect("tempdir");
    let archive = dir.path().join("image.tar");
    c.ok(&["save", "-o", archive.to_str().expect("utf-8"), image]);
    let x = dir.path().join("x");
    std::fs::create_dir(&x).expect("mkdir");
    let out = sh(Command::new("tar")
        .arg("-xf")
        .arg(&archive)
        .arg("-C")
        .arg(&x));
    assert!(out.status.success(), "{}", show(&out));
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(x.join("manifest.json")).expect("manifest.json"))
            .expect("json");
    let layers = manifest[0]["Layers"].as_array().expect("Layers");
    let top = layers.last().and_then(Value::as_str).expect("a layer");
    let out = sh(Command::new("tar").arg("-tf").arg(x.join(top)));
    assert!(out.status.success(), "{}", show(&out));
    stdout(&out)
        .lines()
        .map(|l| l.trim_start_matches("./").trim_end_matches('/').to_owned())
        .filter(|l| !l.is_empty() && l != ".")
        .collect()
}

#[test]
fn commit_leaves_the_runtimes_mount_points_out_of_the_layer() {
    // The image has no /proc, /dev, /sys or /etc/hostname|hosts|resolv.conf:
    // the runtime makes mount points for them in the container's layer.
    // As Docker's init layer, they never reach a committed image.
    let c = Ctx::new();
    let out = c.kiln(&["run", "--name", "stubs", IMAGE, "sh", "-c", "echo x > /new"]);
    assert_eq!(code(&out), 0, "{}", show(&out));
    c.ok(&["commit", "stubs", "stubs:v1"]);
    let entries = top_layer_entries(&c, "stubs:v1");
    assert!(entries.iter().any(|e| e == "new"), "{entries:?}");
    for stub in [
        "proc",
        "dev",
        "sys",
        "etc/hostname",
        "etc/hosts",
        "etc/resolv.conf",
    ] {
        assert!(
            !entries
                .iter()
                .any(|e| e == stub || e.starts_with(&format!("{stub}/"))),
            "{stub} is in the committed layer: {entries:?}"
        );
    }
    // The committed image still runs (the runtime makes its mount points again).
    let out = c.kiln(&["run", "--rm", "stubs:v1", "cat", "/new"]);
    assert_eq!(stdout(&out), "x\n", "{}", show(&out));
}

#[test]
fn commit_of_a_userns_container_records_container_ids() {
    let c = Ctx::new();
    open_sandbox(&c);
    let out = c.kiln(&[
        "run",
        "--userns",
        "--name",
        "unsc",
        IMAGE,
        "sh",
        "-c",
        "touch /tmp/new && mkdir /tmp/d && chown 1000:2000 /tmp/d",
    ]);
    assert_eq!(code(&out), 0, "{}", show(&out));
    c.ok(&["commit", "unsc", "unsc:v1"]);
    let out = c.kiln(&[
        "run", "--rm", "unsc:v1", "ls", "-lnd", "/tmp", "/tmp/d", "/tmp/new",
    ]);
    assert_eq!(code(&out), 0, "{}", show(&out));
    let owners: Vec<(String, String, String)> = stdout(&out)
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f[f.len() - 1].to_owned(), f[2].to_owned(), f[3].to_owned())
        })
        .collect();
    let want = [
        ("/tmp", "0", "0"),
        ("/tmp/d", "1000", "2000"),
        ("/tmp/new", "0", "0"),
    ]
    .map(|(p, u, g)| (p.to_owned(), u.to_owned(), g.to_owned()));
    assert_eq!(owners, want, "{}", show(&out));
    c.ok(&["rm", "-f", "unsc"]);
}

/// The uid and gid of `name`, created (without a home) when missing.
fn unprivileged_user(name: &str) -> (u32, u32) {
    let id = |flag: &str| {
        let out = sh(Command::new("id").args([flag, name]));
        stdout(&out).trim().parse::<u32>().ok()
    };
    if id("-u").is_none() {
        let out = sh(Command::new("useradd").args(["-M", "-s", "/usr/sbin/nologin", name]));
        assert!(out.status.success(), "useradd {name}: {}", show(&out));
    }
    (id("-u").expect("uid"), id("-g").expect("gid"))
}

/// Rootless kiln: a non-root user pulls busybox into its default store
/// (`~/.local/share/kiln`, copy snapshotter, files its own), is root in the
/// container, writes volume files as itself, and lists and removes its
/// containers, including one whose files belong to a subordinate id.
#[test]
fn rootless_kiln_pulls_runs_and_removes_as_the_calling_user() {
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
    let user = "kiln-rootless";
    let (uid, gid) = unprivileged_user(user);
    // The e2e scratch dir is root's (0700): the user gets a dir in /tmp.
    let dir = tempfile::Builder::new()
        .prefix("kiln-rootless-")
        .tempdir_in(std::env::temp_dir())
        .expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let (home, vol) = (dir.path().join("home"), dir.path().join("vol"));
    for d in [&home, &vol] {
        std::fs::create_dir(d).expect("mkdir");
        std::os::unix::fs::chown(d, Some(uid), Some(gid)).expect("chown");
    }
    let kiln = |args: &[&str]| {
        sh(Command::new("setpriv")
            .args([
                &format!("--reuid={uid}"),
                &format!("--regid={gid}"),
                "--init-groups",
                "--",
            ])
            .arg(kiln_e2e::kiln_bin())
            .args(args)
            .env_clear()
            .env("PATH", PATH)
            .env("HOME", &home))
    };
    let ok = |args: &[&str]| {
        let out = kiln(args);
        assert_eq!(code(&out), 0, "kiln {args:?} as {user}: {}", show(&out));
        out
    };

    let image = busybox_ref();
    let out = ok(&["pull", &image]);
    assert!(
        stderr(&out).contains("using the copy snapshotter: kiln runs rootless"),
        "{}",
        show(&out)
    );
    let store = home.join(".local/share/kiln");
    assert_eq!(
        std::fs::read_to_string(store.join("snapshotter")).expect("the store's snapshotter"),
        "copy"
    );
    // The unpacked layer belongs to the user, not to the image's root.
    let snaps = store.join("snapshots/copy/snapshots");
    let layer = std::fs::read_dir(&snaps)
        .expect("snapshots")
        .next()
        .expect("one layer snapshot")
        .expect("entry")
        .path();
    let busybox = std::fs::metadata(layer.join("fs/bin/busybox")).expect("unpacked busybox");
    assert_eq!((busybox.uid(), busybox.gid()), (uid, gid));

    let out = ok(&["run", "--rm", &image, "id", "-u"]);
    assert_eq!(stdout(&out), "0\n", "{}", show(&out));
    // Asking for the overlay snapshotter says why it cannot be.
    let out = kiln(&["--snapshotter", "overlay", "run", "--rm", &image, "true"]);
    assert_ne!(code(&out), 0, "{}", show(&out));
    assert!(
        stderr(&out).contains("overlay snapshotter needs root"),
        "{}",
        show(&out)
    );
    // Rootless builds are not supported yet: a clear refusal, not a failure
    // halfway through a RUN step.
    let ctx = dir.path().join("ctx");
    std::fs::create_dir(&ctx).expect("mkdir");
    std::fs::write(ctx.join("Dockerfile"), format!("FROM {image}\nRUN true\n")).expect("write");
    let out = kiln(&["build", "-t", "rl/x", ctx.to_str().expect("utf-8")]);
    assert_eq!(code(&out), 125, "{}", show(&out));
    assert!(
        stderr(&out).contains("kiln build needs root"),
        "{}",
        show(&out)
    );

    let volume = format!("{}:/vol", vol.display());
    ok(&[
        "run",
        "--name",
        "rl-vol",
        "-v",
        &volume,
        &image,
        "sh",
        "-c",
        "echo hi > /vol/by-root",
    ]);
    let f = std::fs::metadata(vol.join("by-root")).expect("file written in the volume");
    assert_eq!((f.uid(), f.gid()), (uid, gid), "container root is the user");
    let ps = stdout(&ok(&["ps", "-a"]));
    assert!(
        ps.lines()
            .any(|l| l.ends_with("rl-vol") && l.contains("Exited (0)")),
        "{ps}"
    );
    let out = ok(&["rm", "rl-vol"]);
    assert_eq!(stdout(&out), "rl-vol\n");
    assert!(!stdout(&ok(&["ps", "-a"])).contains("rl-vol"));

    // With a subordinate range (newuidmap and /etc/subuid), container user
    // 1 is a host id the user cannot delete files of: rm reclaims them.
    let maps = stdout(&ok(&["run", "--rm", &image, "cat", "/proc/self/uid_map"]));
    let ranges: Vec<Vec<u64>> = maps
        .lines()
        .map(|l| {
            l.split_whitespace()
                .map(|n| n.parse().expect("number"))
                .collect()
        })
        .collect();
    assert_eq!(ranges[0], vec![0, u64::from(uid), 1], "{maps}");
    if let Some(sub) = ranges.get(1) {
        assert_eq!(sub[0], 1, "{maps}");
        ok(&[
            "run",
            "--name",
            "rl-sub",
            "--user",
            "1:1",
            &image,
            "sh",
            "-c",
            "mkdir /tmp/d && echo x > /tmp/d/f && chmod 500 /tmp/d",
        ]);
        let before: Vec<_> = std::fs::read_dir(&snaps).expect("snapshots").collect();
        assert_eq!(before.len(), 2, "the layer and the container's tree");
        let out = ok(&["rm", "rl-sub"]);
        assert_eq!(stdout(&out), "rl-sub\n");
        let after: Vec<_> = std::fs::read_dir(&snaps).expect("snapshots").collect();
        assert_eq!(after.len(), 1, "the container's tree is gone");
    }
    assert_eq!(stdout(&ok(&["ps", "-a", "-q"])), "");
}
