//! The container bugs of issue 16 (and exec's capabilities and the
//! ptrace-stopped init of issue 11, point 12), end to end through the
//! `kiln` binary, each checked against what Docker does. No Docker daemon
//! runs beside these tests: Docker's behaviour is taken from moby's own CLI
//! tests (`integration-cli/docker_cli_run_test.go`, `docker_cli_exec_test.go`,
//! `docker_cli_start_test.go`), cited test by test, and from the daemon's
//! code where no CLI test covers it.
//!
//! Test names start with `cbug_`: `cargo xtask e2e -- cbug_` runs them.
//! Each test has its own store with `probe:latest` imported from a root
//! filesystem made here: Debian's static busybox, the static probe at
//! `/probe`, `/etc/passwd` and `/etc/group` with user `app` (1000:1000).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use kiln_e2e::{DOCKER_CAPS, Sandbox, probe_rootfs_tar, sh};
use serde_json::Value;

const IMAGE: &str = "probe:latest";
const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The root filesystem tarball, made once per test process.
fn rootfs_tar() -> &'static Path {
    static TAR: OnceLock<PathBuf> = OnceLock::new();
    TAR.get_or_init(|| {
        probe_rootfs_tar(
            "cbug",
            &["root", "home/app", "run"],
            "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n",
            "root:x:0:\napp:x:1000:\n",
            |root| {
                assert!(
                    sh(Command::new("chmod").arg("0755").arg(root.join("run")))
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

    /// `kiln ARGS`, whatever its exit status (stdin: /dev/null).
    fn kiln(&self, args: &[&str]) -> Output {
        sh(self.sb.kiln(args).stdin(Stdio::null()))
    }

    /// `kiln ARGS`; panics unless it exits 0; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.kiln(args);
        assert_eq!(code(&out), 0, "kiln {args:?}: {}", show(&out));
        stdout(&out)
    }

    /// `kiln ARGS` started by `sh` after `PREFIX` (`umask 077`, ...).
    fn kiln_after(&self, prefix: &str, args: &[&str]) -> Output {
        let k = self.sb.kiln(args);
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(format!("{prefix}; exec \"$0\" \"$@\""))
            .arg(k.get_program())
            .args(k.get_args())
            .stdin(Stdio::null());
        for (key, value) in k.get_envs() {
            match value {
                Some(v) => cmd.env(key, v),
                None => cmd.env_remove(key),
            };
        }
        sh(&mut cmd)
    }

    /// `kiln run --rm FLAGS probe:latest CMD...`.
    fn run(&self, flags: &[&str], cmd: &[&str]) -> Output {
        let mut args = vec!["run", "--rm"];
        args.extend_from_slice(flags);
        args.push(IMAGE);
        args.extend_from_slice(cmd);
        self.kiln(&args)
    }

    fn running(&self, name: &str) -> bool {
        let v: Value = serde_json::from_str(&self.ok(&["inspect", name])).expect("inspect JSON");
        v[0]["State"]["Running"] == Value::Bool(true)
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

fn eventually(timeout: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Bug 1. Docker (runc) clears the umask before it makes the device nodes,
/// so `/dev/null` & co. are 0666 whatever the umask of whoever started the
/// container; a non-root user writes to `/dev/null`. kiln made them under
/// the caller's umask: 0644 under 022, and `echo hi > /dev/null` as uid
/// 1000 failed with "Permission denied" (in builds too: apt's `_apt`).
#[test]
fn cbug_device_nodes_are_0666_whatever_the_umask() {
    let c = Ctx::new();
    let script = "echo hi > /dev/null && stat -c '%n %a' /dev/null /dev/zero /dev/full /dev/random /dev/urandom /dev/tty";
    let want = "/dev/null 666\n/dev/zero 666\n/dev/full 666\n/dev/random 666\n/dev/urandom 666\n/dev/tty 666\n";
    for umask in ["022", "077"] {
        // run
        let out = c.kiln_after(
            &format!("umask {umask}"),
            &["run", "--rm", "-u", "1000:1000", IMAGE, "sh", "-c", script],
        );
        assert_eq!(code(&out), 0, "run under umask {umask}: {}", show(&out));
        assert_eq!(stdout(&out), want, "run under umask {umask}");
        // create, then start -a
        let name = format!("dev{umask}");
        let out = c.kiln_after(
            &format!("umask {umask}"),
            &[
                "create",
                "--name",
                &name,
                "-u",
                "1000:1000",
                IMAGE,
                "sh",
                "-c",
                script,
            ],
        );
        assert_eq!(code(&out), 0, "create: {}", show(&out));
        let out = c.kiln_after(&format!("umask {umask}"), &["start", "-a", &name]);
        assert_eq!(
            code(&out),
            0,
            "start -a under umask {umask}: {}",
            show(&out)
        );
        assert_eq!(stdout(&out), want);
        // exec, as a non-root user, into a container started under the umask
        let name = format!("ex{umask}");
        let out = c.kiln_after(
            &format!("umask {umask}"),
            &["run", "-d", "--name", &name, IMAGE, "sleep", "100"],
        );
        assert_eq!(code(&out), 0, "run -d: {}", show(&out));
        let out = c.kiln_after(
            &format!("umask {umask}"),
            &["exec", "-u", "1000", &name, "sh", "-c", script],
        );
        assert_eq!(code(&out), 0, "exec under umask {umask}: {}", show(&out));
        assert_eq!(stdout(&out), want);
        // a build step, as a non-root USER
        let ctx = c.sb.work().join(format!("devbuild{umask}"));
        std::fs::create_dir_all(&ctx).expect("context dir");
        std::fs::write(
            ctx.join("Dockerfile"),
            format!("FROM {IMAGE}\nUSER 1000:1000\nRUN {script} > /tmp/modes\n"),
        )
        .expect("Dockerfile");
        let out = c.kiln_after(
            &format!("umask {umask}"),
            &[
                "build",
                "-q",
                "-t",
                &format!("devbuild:{umask}"),
                ctx.to_str().expect("utf-8 path"),
            ],
        );
        assert_eq!(code(&out), 0, "build under umask {umask}: {}", show(&out));
        let out = c.ok(&[
            "run",
            "--rm",
            &format!("devbuild:{umask}"),
            "cat",
            "/tmp/modes",
        ]);
        assert_eq!(out, want, "the build step saw these modes");
    }
}

/// Bug 2. Docker's exec sets `TERM=xterm` with `-t` (the daemon's
/// `CreateDaemonEnvironment(tty, ...)`, as for `run -t`), unless the
/// container's or exec's environment sets TERM; without `-t` there is none.
#[test]
fn cbug_exec_t_sets_term_like_run_t() {
    let c = Ctx::new();
    c.ok(&["run", "-d", "--name", "term", IMAGE, "sleep", "100"]);
    let out = c.kiln(&["exec", "-t", "term", "sh", "-c", "echo \"[$TERM]\""]);
    assert_eq!(code(&out), 0, "{}", show(&out));
    assert_eq!(stdout(&out).trim_end(), "[xterm]", "{}", show(&out));
    let out = c.kiln(&["exec", "term", "sh", "-c", "echo \"[$TERM]\""]);
    assert_eq!(stdout(&out), "[]\n", "no terminal, no TERM: {}", show(&out));
    let out = c.kiln(&[
        "exec",
        "-t",
        "-e",
        "TERM=vt100",
        "term",
        "sh",
        "-c",
        "echo \"[$TERM]\"",
    ]);
    assert_eq!(stdout(&out).trim_end(), "[vt100]", "{}", show(&out));
    // run -t already did.
    let out = c.run(&["-t"], &["sh", "-c", "echo \"[$TERM]\""]);
    assert_eq!(stdout(&out).trim_end(), "[xterm]", "{}", show(&out));
}

/// Bug 4. In Docker `-h` is `--hostname` (`TestRunHostname...`: `docker run
/// -h testing ... busybox` and `-h foo.bar.baz busybox hostname`); help is
/// `--help`. kiln printed its help and exited 0.
#[test]
fn cbug_run_h_is_the_hostname() {
    let c = Ctx::new();
    let out = c.run(&["-h", "foo.bar.baz"], &["hostname"]);
    assert_eq!(code(&out), 0, "{}", show(&out));
    assert_eq!(stdout(&out), "foo.bar.baz\n");
    c.ok(&["create", "-h", "made", "--name", "hc", IMAGE, "hostname"]);
    assert_eq!(c.ok(&["start", "-a", "hc"]), "made\n");
    let help = c.ok(&["run", "--help"]);
    assert!(help.contains("Usage: kiln run"), "{help}");
    assert!(help.contains("-h, --hostname"), "{help}");
}

/// Bug 7. Docker's json-file driver logs a terminal's output too (`docker
/// logs` of a `run -t` container shows it), and `docker start -a` of a
/// running container attaches to it: it prints what the container writes
/// and returns its exit code when it ends (`TestStartAttachCorrectExitCode`
/// passes the code through). kiln kept no log for `-t` and `start -a` of a
/// running container printed nothing and returned at once.
#[test]
fn cbug_tty_output_is_logged_and_start_a_attaches_to_a_running_container() {
    let c = Ctx::new();
    let out = c.kiln(&[
        "run",
        "-t",
        "--name",
        "tty1",
        IMAGE,
        "sh",
        "-c",
        "echo from-the-tty",
    ]);
    assert_eq!(code(&out), 0, "{}", show(&out));
    assert!(stdout(&out).contains("from-the-tty"), "{}", show(&out));
    let logs = c.ok(&["logs", "tty1"]);
    assert!(
        logs.contains("from-the-tty"),
        "logs of a -t container: {logs:?}"
    );

    c.ok(&[
        "run",
        "-d",
        "--name",
        "late",
        IMAGE,
        "sh",
        "-c",
        "sleep 2; echo late-line; exit 3",
    ]);
    let started = Instant::now();
    let out = c.kiln(&["start", "-a", "late"]);
    assert_eq!(stdout(&out), "late-line\n", "{}", show(&out));
    assert_eq!(
        code(&out),
        3,
        "the exit code passes through: {}",
        show(&out)
    );
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "it waited for the end"
    );
}

/// Bug 9. `docker run -itd busybox cat` keeps running: with `-i` the daemon
/// keeps the container's stdin open even when nobody is attached, so a later
/// `exec` finds it running. kiln gave a detached container /dev/null, and
/// `cat` exited at once.
#[test]
fn cbug_run_itd_keeps_stdin_open() {
    let c = Ctx::new();
    c.ok(&["run", "-itd", "--name", "cat", IMAGE, "cat"]);
    std::thread::sleep(Duration::from_millis(1500));
    assert!(c.running("cat"), "cat still waits on its open stdin");
    assert_eq!(c.ok(&["exec", "cat", "echo", "in"]), "in\n");
    // Without -i, stdin is empty and cat ends (Docker gives /dev/null too).
    c.ok(&["run", "-d", "--name", "cat2", IMAGE, "cat"]);
    eventually(Duration::from_secs(10), "cat without -i to end", || {
        !c.running("cat2")
    });
}

/// Bug 10. `TestStartAttachMultipleContainers`: `docker start -a test1 test2
/// test3` (and `-i`, `-ai`) fails with "you cannot start and attach multiple containers at
/// once" and starts none of them. kiln attached to all three and never
/// returned.
#[test]
fn cbug_start_attach_of_several_containers_is_refused() {
    let c = Ctx::new();
    for n in ["m1", "m2", "m3"] {
        c.ok(&["create", "--name", n, IMAGE, "sleep", "100"]);
    }
    for option in ["-a", "-i", "-ai"] {
        let out = c.kiln(&["start", option, "m1", "m2", "m3"]);
        assert_ne!(code(&out), 0, "start {option}: {}", show(&out));
        assert!(
            stderr(&out).contains("you cannot start and attach multiple containers at once"),
            "start {option}: {}",
            show(&out)
        );
    }
    for n in ["m1", "m2", "m3"] {
        assert!(!c.running(n), "{n} was not started");
    }
}

/// Bug 11.
/// - `--read-only`: `testReadOnlyFile` (docker_cli_run_test.go) expects
///   `touch /etc/hosts /etc/resolv.conf /etc/hostname` to fail with "Read-only
///   file system" for each (Docker mounts them read-only then).
/// - Mount order: Docker sorts mounts by the depth of their destination, so
///   `--tmpfs /run` never hides `-v FILE:/run/test`, whatever the order given.
/// - `TestRunWithVolumesIsRecursive`'s neighbour (`-v a:/x -v b:/x`) fails
///   with "Duplicate mount point".
/// - A `-v` source that is a symlink to a directory works in Docker (the
///   kernel follows it); kiln failed with "Invalid argument".
#[test]
fn cbug_read_only_mount_order_duplicates_and_symlinked_sources() {
    let c = Ctx::new();
    let out = c.run(
        &["--read-only"],
        &[
            "sh",
            "-c",
            "touch /etc/hosts /etc/resolv.conf /etc/hostname",
        ],
    );
    assert_ne!(code(&out), 0, "{}", show(&out));
    for f in ["/etc/hosts", "/etc/resolv.conf", "/etc/hostname"] {
        assert!(
            stderr(&out).contains(&format!("touch: {f}: Read-only file system")),
            "{f}: {}",
            show(&out)
        );
    }
    // Without --read-only they stay writable.
    let out = c.run(
        &[],
        &[
            "sh",
            "-c",
            "touch /etc/hosts /etc/resolv.conf /etc/hostname",
        ],
    );
    assert_eq!(code(&out), 0, "{}", show(&out));

    let file = c.sb.work().join("test-file");
    std::fs::write(&file, "in the file\n").expect("write");
    let bind = format!("{}:/run/test", file.display());
    for flags in [
        ["--tmpfs", "/run", "-v", bind.as_str()],
        ["-v", bind.as_str(), "--tmpfs", "/run"],
    ] {
        let out = c.run(&flags, &["cat", "/run/test"]);
        assert_eq!(code(&out), 0, "{flags:?}: {}", show(&out));
        assert_eq!(stdout(&out), "in the file\n", "{flags:?}");
    }

    let (a, b) = (c.sb.work().join("a"), c.sb.work().join("b"));
    for d in [&a, &b] {
        std::fs::create_dir_all(d).expect("mkdir");
    }
    let out = c.run(
        &[
            "-v",
            &format!("{}:/x", a.display()),
            "-v",
            &format!("{}:/x", b.display()),
        ],
        &["true"],
    );
    assert_eq!(code(&out), 125, "{}", show(&out));
    assert!(
        stderr(&out).contains("Duplicate mount point: /x"),
        "{}",
        show(&out)
    );
    let out = c.run(
        &["-v", &format!("{}:/x", a.display()), "--tmpfs", "/x/"],
        &["true"],
    );
    assert!(
        stderr(&out).contains("Duplicate mount point: /x"),
        "{}",
        show(&out)
    );

    std::fs::write(a.join("marker"), "through the link\n").expect("write");
    let link = c.sb.work().join("link-to-a");
    std::os::unix::fs::symlink(&a, &link).expect("symlink");
    let out = c.run(
        &["-v", &format!("{}:/data", link.display())],
        &["cat", "/data/marker"],
    );
    assert_eq!(code(&out), 0, "{}", show(&out));
    assert_eq!(stdout(&out), "through the link\n");
}

/// Bug 12, argument parsing as Docker's (pflag + the daemon's checks):
/// - a repeated flag is accepted (`run -d -d`);
/// - a value may start with `-`: `TestRunUserByIDNegative` runs `-u -1` and
///   expects "uids and gids must be in range", as `TestRunUserByIDBig` does
///   for `-u 2147483648`;
/// - `--net` is `--network`; `--net=container:NAME` is refused clearly
///   (kiln cannot join another container's network namespace);
/// - `-e ""` is refused ("invalid environment variable");
/// - `TestRunWithTooSmallMemoryLimit`: `create -m 6291455` fails with
///   "Minimum memory limit allowed is 6MB";
/// - `TestDockerFails`: a usage error of `run` exits 125.
/// - `-p`/`-P` need a bridge network kiln does not create: refused with a
///   message that names `--network host` (Docker with `--network host`
///   warns "Published ports are discarded when using host network mode").
#[test]
fn cbug_argument_parsing_follows_docker() {
    let c = Ctx::new();
    let out = c.kiln(&["run", "-d", "-d", "--name", "dd", IMAGE, "true"]);
    assert_eq!(code(&out), 0, "run -d -d: {}", show(&out));
    let out = c.run(&["--rm"], &["true"]);
    assert_eq!(code(&out), 0, "run --rm --rm: {}", show(&out));

    for user in ["-1", "2147483648", "0:-1"] {
        let out = c.run(&["-u", user], &["id"]);
        assert_eq!(code(&out), 125, "-u {user}: {}", show(&out));
        assert!(
            stderr(&out).contains("uids and gids must be in range"),
            "-u {user}: {}",
            show(&out)
        );
    }
    let out = c.run(&["-u", "2147483647"], &["id", "-u"]);
    assert_eq!(stdout(&out), "2147483647\n", "{}", show(&out));

    let host_net = std::fs::read_link("/proc/self/ns/net").expect("host net ns");
    let out = c.run(&["--net", "host"], &["readlink", "/proc/self/ns/net"]);
    assert_eq!(code(&out), 0, "{}", show(&out));
    assert_eq!(
        stdout(&out).trim(),
        host_net.to_string_lossy(),
        "--net host"
    );
    let out = c.run(&["--net=container:dd"], &["true"]);
    assert_eq!(code(&out), 125, "{}", show(&out));
    assert!(stderr(&out).contains("container:dd"), "{}", show(&out));

    for env in ["", "=x"] {
        let out = c.run(&["-e", env], &["true"]);
        assert_eq!(code(&out), 125, "-e {env:?}: {}", show(&out));
        assert!(
            stderr(&out).contains("invalid environment variable"),
            "{}",
            show(&out)
        );
    }

    let out = c.kiln(&["create", "-m", "6291455", IMAGE]);
    assert_eq!(code(&out), 125, "{}", show(&out));
    assert!(
        stderr(&out).contains("Minimum memory limit allowed is 6MB"),
        "{}",
        show(&out)
    );
    let out = c.kiln(&["create", "-m", "6291456", IMAGE]);
    assert_eq!(code(&out), 0, "6 MB is allowed: {}", show(&out));

    let out = c.kiln(&["run", "-foo", IMAGE]);
    assert_eq!(code(&out), 125, "usage error: {}", show(&out));

    for flags in [&["-p", "8080:80"][..], &["-P"][..]] {
        let out = c.run(flags, &["true"]);
        assert_eq!(code(&out), 125, "{flags:?}: {}", show(&out));
        assert!(stderr(&out).contains("--network host"), "{}", show(&out));
    }
    let out = c.run(&["--network", "host", "-p", "8080:80"], &["true"]);
    assert_eq!(code(&out), 0, "{}", show(&out));
    assert!(
        stderr(&out).contains("Published ports are discarded when using host network mode"),
        "{}",
        show(&out)
    );
}

/// Issue 11, point 12. Docker's exec runs with the container's capability
/// set (`docker_cli_exec_test.go`: an exec into a `--cap-drop=ALL` container
/// cannot mknod; only `exec --privileged` gets more) and its no_new_privs
/// and seccomp. kiln's exec ran with 3 capabilities (0x20000420), so `chown`
/// failed in it.
#[test]
fn cbug_exec_gets_the_containers_capabilities() {
    let c = Ctx::new();
    c.ok(&["run", "-d", "--name", "caps", IMAGE, "sleep", "100"]);
    let p = probe_json(c.ok(&["exec", "caps", "/probe"]).as_bytes());
    let want: std::collections::BTreeSet<String> =
        DOCKER_CAPS.iter().map(|s| s.to_string()).collect();
    for set in ["bounding", "effective", "permitted"] {
        let got: std::collections::BTreeSet<String> = p["capabilities"][set]
            .as_array()
            .expect("array")
            .iter()
            .map(|v| v.as_str().expect("name").to_owned())
            .collect();
        assert_eq!(got, want, "exec's {set} set");
    }
    assert_eq!(p["no_new_privs"], false);
    assert_eq!(p["seccomp"], 2, "the container's seccomp filter");
    assert_eq!(
        c.ok(&[
            "exec",
            "caps",
            "sh",
            "-c",
            "touch /tmp/f && chown 1000:1000 /tmp/f && stat -c %u /tmp/f"
        ]),
        "1000\n"
    );
    // --cap-drop ALL: exec has none either (Docker: no mknod in such an exec).
    c.ok(&[
        "run",
        "-d",
        "--cap-drop",
        "ALL",
        "--name",
        "nocaps",
        IMAGE,
        "sleep",
        "100",
    ]);
    let p = probe_json(c.ok(&["exec", "nocaps", "/probe"]).as_bytes());
    assert_eq!(p["capabilities"]["effective"], serde_json::json!([]));
    let out = c.kiln(&["exec", "nocaps", "mknod", "/tmp/sdb", "b", "8", "16"]);
    assert_ne!(code(&out), 0, "{}", show(&out));
    // --security-opt no-new-privileges reaches exec too.
    c.ok(&[
        "run",
        "-d",
        "--security-opt",
        "no-new-privileges",
        "--name",
        "nnp",
        IMAGE,
        "sleep",
        "100",
    ]);
    let p = probe_json(c.ok(&["exec", "nnp", "/probe"]).as_bytes());
    assert_eq!(p["no_new_privs"], true);
}

/// Issue 11, point 12: a child that `PTRACE_ATTACH`es PID 1 stops it, and
/// once the tracer has gone the init stays stopped with nothing in the
/// container to resume it. The build hung for more than 10 minutes. Docker
/// does not guard against this (containerd's shim reaps with WNOHANG and no
/// WUNTRACED, so it never sees the stop: the same RUN hangs a Docker build);
/// kiln's supervisor resumes an init stopped by anything but a stop asked
/// for through kiln (`kiln kill -s STOP`), so builds and runs end.
#[test]
fn cbug_a_ptrace_stopped_init_does_not_hang_a_build_or_a_run() {
    let c = Ctx::new();
    let limit = "timeout -s KILL 120";
    let out = c.kiln_after(
        &format!("exec {limit} \"$0\" \"$@\" #"),
        &[
            "run",
            "--rm",
            IMAGE,
            "sh",
            "-c",
            "/probe ptrace-attach 1; echo resumed",
        ],
    );
    assert_eq!(code(&out), 0, "{}", show(&out));
    assert!(
        stdout(&out).contains("\"errno\":0"),
        "the attach worked: {}",
        show(&out)
    );
    assert!(stdout(&out).ends_with("resumed\n"), "{}", show(&out));

    let ctx = c.sb.work().join("ptrace");
    std::fs::create_dir_all(&ctx).expect("context");
    std::fs::write(
        ctx.join("Dockerfile"),
        format!("FROM {IMAGE}\nRUN /probe ptrace-attach 1 && echo after-the-stop > /after\n"),
    )
    .expect("Dockerfile");
    let started = Instant::now();
    let out = c.kiln_after(
        &format!("exec {limit} \"$0\" \"$@\" #"),
        &[
            "build",
            "-q",
            "-t",
            "ptrace:1",
            ctx.to_str().expect("utf-8"),
        ],
    );
    assert_eq!(
        code(&out),
        0,
        "after {:?}: {}",
        started.elapsed(),
        show(&out)
    );
    assert_eq!(
        c.ok(&["run", "--rm", "ptrace:1", "cat", "/after"]),
        "after-the-stop\n"
    );

    // A stop asked for through kiln holds, and SIGCONT ends it.
    c.ok(&["run", "-d", "--name", "held", IMAGE, "sleep", "100"]);
    let pid = {
        let v: Value = serde_json::from_str(&c.ok(&["inspect", "held"])).expect("inspect");
        v[0]["State"]["Pid"].as_i64().expect("pid")
    };
    let state = || {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| s.rsplit(')').next().map(|r| r.trim_start().chars().next()))
            .flatten()
    };
    c.ok(&["kill", "-s", "STOP", "held"]);
    eventually(Duration::from_secs(5), "the stop", || state() == Some('T'));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(state(), Some('T'), "kiln kill -s STOP holds");
    c.ok(&["kill", "-s", "CONT", "held"]);
    eventually(Duration::from_secs(5), "the continue", || {
        state() == Some('S')
    });
}

/// Issue 16's flags of `logs`, as moby's `docker_cli_logs_test.go` has them:
/// `TestLogsTail` (`--tail 0` prints nothing, `--tail 5` five lines, `all`,
/// `-1` and `random` every line), `TestLogsTimestamps` (`-t` prefixes each
/// line with an RFC 3339 time with nine fractional digits: `Z` at index 29),
/// `TestLogsSince` (`--since` drops older lines; a malformed time is an
/// error); `-n` is `--tail`; `--until` drops newer lines.
#[test]
fn cbug_logs_tail_timestamps_since_until() {
    let c = Ctx::new();
    c.ok(&[
        "run",
        "--name",
        "lg",
        IMAGE,
        "sh",
        "-c",
        "for i in $(seq 1 10); do echo line$i; done; sleep 2; echo late",
    ]);
    let lines = |args: &[&str]| -> Vec<String> {
        let mut all = vec!["logs"];
        all.extend_from_slice(args);
        all.push("lg");
        c.ok(&all).lines().map(str::to_owned).collect()
    };
    assert_eq!(lines(&[]).len(), 11);
    assert!(lines(&["--tail", "0"]).is_empty());
    assert_eq!(
        lines(&["--tail", "5"]),
        ["line7", "line8", "line9", "line10", "late"]
    );
    assert_eq!(lines(&["-n", "2"]), ["line10", "late"]);
    for all in ["all", "-1", "random"] {
        assert_eq!(lines(&["--tail", all]).len(), 11, "--tail {all}");
    }
    let stamped = lines(&["-t"]);
    assert_eq!(stamped.len(), 11);
    for l in &stamped {
        assert_eq!(l.as_bytes()[29], b'Z', "{l}");
        assert_eq!(l.as_bytes()[30], b' ', "{l}");
    }
    // The late line was written two seconds after line10: a time one
    // second after line10 (as Unix seconds) splits them.
    let unix = |rfc3339: &str| -> f64 {
        let out = sh(Command::new("date").args(["-u", "-d", rfc3339, "+%s.%N"]));
        stdout(&out).trim().parse().expect("date +%s.%N")
    };
    let time_of = |l: &str| l.split(' ').next().expect("time").to_owned();
    let (t10, t_late) = (unix(&time_of(&stamped[9])), unix(&time_of(&stamped[10])));
    assert!(t_late - t10 >= 1.9, "{t10} then {t_late}");
    let between = format!("{:.3}", t10 + 1.0);
    assert_eq!(lines(&["--since", &between]), ["late"]);
    assert_eq!(lines(&["--until", &between]).len(), 10);
    assert_eq!(lines(&["--since", "1h"]).len(), 11, "a duration before now");
    assert!(lines(&["--until", "1h"]).is_empty());
    let out = c.kiln(&["logs", "--since", "2006-01-02T15:04:0Z", "lg"]);
    assert_eq!(code(&out), 125, "{}", show(&out));
}

/// `ps -n N` / `ps -l` list the N last created containers in every state
/// (`docker ps --help`: "Show n last created containers (includes all
/// states)"); `exec --env-file` reads a file as `run --env-file`; `stop
/// --timeout` is `--time`.
#[test]
fn cbug_ps_last_exec_env_file_stop_timeout() {
    let c = Ctx::new();
    for n in ["p1", "p2", "p3"] {
        c.ok(&["create", "--name", n, IMAGE, "true"]);
        std::thread::sleep(Duration::from_millis(20));
    }
    let names = |args: &[&str]| -> Vec<String> {
        let mut all = vec!["ps"];
        all.extend_from_slice(args);
        c.ok(&all)
            .lines()
            .skip(1)
            .filter_map(|l| l.split_whitespace().last().map(str::to_owned))
            .collect()
    };
    assert!(names(&[]).is_empty(), "created ones are not running");
    assert_eq!(names(&["-n", "2"]), ["p3", "p2"]);
    assert_eq!(names(&["-l"]), ["p3"]);
    assert_eq!(names(&["-n", "-1"]), Vec::<String>::new());

    c.ok(&[
        "run", "-d", "--name", "ef", "-e", "A=run", IMAGE, "sleep", "100",
    ]);
    let envfile = c.sb.work().join("env");
    std::fs::write(&envfile, "# comment\nA=file\nB=file\n").expect("env file");
    let out = c.ok(&[
        "exec",
        "--env-file",
        envfile.to_str().expect("utf-8"),
        "-e",
        "B=flag",
        "ef",
        "sh",
        "-c",
        "echo $A $B",
    ]);
    assert_eq!(out, "file flag\n");
    let started = Instant::now();
    c.ok(&["stop", "--timeout", "1", "ef"]);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(8),
        "{took:?}"
    );
}

/// Issue 16's `run` flags that kiln can honour without a bridge, against
/// moby's `docker_cli_run_test.go`: `TestRunAddHost` (`--add-host
/// extra:86.75.30.9` puts `86.75.30.9\textra` in /etc/hosts),
/// `TestRunDNSOptions` (`--dns=127.0.0.1 --dns-search=mydomain
/// --dns-opt=ndots:9` gives `nameserver 127.0.0.1 search mydomain options
/// ndots:9`), `--shm-size` (the size of /dev/shm), `--stop-signal` and
/// `--stop-timeout` (what `stop` sends and how long it waits), `--cidfile`
/// (the ID, and "Container ID file found" when the file exists), `--pull
/// never` ("No such image").
#[test]
fn cbug_run_hosts_dns_shm_stop_cidfile_pull_flags() {
    let c = Ctx::new();
    let out = c.run(
        &["--add-host=extra:86.75.30.9"],
        &["grep", "extra", "/etc/hosts"],
    );
    assert_eq!(stdout(&out), "86.75.30.9\textra\n", "{}", show(&out));
    let out = c.run(
        &[
            "--dns=127.0.0.1",
            "--dns-search=mydomain",
            "--dns-opt=ndots:9",
        ],
        &["cat", "/etc/resolv.conf"],
    );
    assert_eq!(
        stdout(&out).replace('\n', " ").trim(),
        "nameserver 127.0.0.1 search mydomain options ndots:9",
        "{}",
        show(&out)
    );
    let out = c.run(&["--shm-size", "128m"], &["df", "-k", "/dev/shm"]);
    assert!(stdout(&out).contains(" 131072 "), "{}", show(&out));
    let out = c.run(&[], &["df", "-k", "/dev/shm"]);
    assert!(
        stdout(&out).contains(" 65536 "),
        "Docker's 64 MB: {}",
        show(&out)
    );

    // --stop-signal: the container's trap sees it; --stop-timeout: stop
    // waits that long for a PID 1 that ignores the signal.
    c.ok(&[
        "run",
        "-d",
        "--name",
        "sig",
        "--stop-signal",
        "USR1",
        IMAGE,
        "sh",
        "-c",
        "trap 'exit 7' USR1; while true; do sleep 0.1; done",
    ]);
    std::thread::sleep(Duration::from_millis(300));
    c.ok(&["stop", "sig"]);
    assert_eq!(c.ok(&["wait", "sig"]), "7\n", "USR1 ended it");
    c.ok(&[
        "run",
        "-d",
        "--name",
        "slow",
        "--stop-timeout",
        "1",
        IMAGE,
        "sleep",
        "100",
    ]);
    let started = Instant::now();
    c.ok(&["stop", "slow"]);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(8),
        "{took:?}"
    );
    let v: Value = serde_json::from_str(&c.ok(&["inspect", "slow"])).expect("inspect");
    assert_eq!(v[0]["Config"]["StopTimeout"], 1);

    let cid = c.sb.work().join("cid");
    let cid_arg = cid.to_str().expect("utf-8");
    let out = c.run(&["--cidfile", cid_arg], &["true"]);
    assert_eq!(code(&out), 0, "{}", show(&out));
    let id = std::fs::read_to_string(&cid).expect("cidfile");
    assert_eq!(id.len(), 64, "{id:?}");
    let out = c.run(&["--cidfile", cid_arg], &["true"]);
    assert_eq!(code(&out), 125, "{}", show(&out));
    assert!(
        stderr(&out).contains("Container ID file found"),
        "{}",
        show(&out)
    );

    let out = c.kiln(&["run", "--rm", "--pull", "never", "nosuch:1", "true"]);
    assert_eq!(code(&out), 125, "{}", show(&out));
    assert!(
        stderr(&out).contains("No such image: nosuch:1"),
        "{}",
        show(&out)
    );
    let out = c.run(&["--pull", "never"], &["true"]);
    assert_eq!(code(&out), 0, "a local image: {}", show(&out));
}

/// More of issue 16's `run` flags, as Docker has them: `--ulimit
/// nofile=100:200` (soft and hard `ulimit -n`; soft above hard refused),
/// `--mount type=bind,...,readonly` and `type=tmpfs,tmpfs-size=` (a missing
/// bind source is an error with `--mount`, "bind source path does not
/// exist"), `--label`/`--label-file` in `inspect`'s `Config.Labels`,
/// `--memory-swap` (needs `--memory`: "You should always set the Memory
/// limit when using Memoryswap limit").
#[test]
fn cbug_run_ulimit_mount_label_memory_swap_flags() {
    let c = Ctx::new();
    let out = c.run(
        &["--ulimit", "nofile=100:200"],
        &["sh", "-c", "ulimit -n; ulimit -Hn"],
    );
    assert_eq!(stdout(&out), "100\n200\n", "{}", show(&out));
    let out = c.run(&["--ulimit", "nofile=300:200"], &["true"]);
    assert_eq!(code(&out), 125, "{}", show(&out));

    let dir = c.sb.work().join("m");
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(dir.join("f"), "bound\n").expect("write");
    let bind = format!("type=bind,source={},target=/m,readonly", dir.display());
    let out = c.run(&["--mount", &bind], &["sh", "-c", "cat /m/f; touch /m/x"]);
    assert_eq!(stdout(&out), "bound\n", "{}", show(&out));
    assert!(
        stderr(&out).contains("Read-only file system"),
        "{}",
        show(&out)
    );
    let out = c.run(
        &["--mount", "type=bind,source=/nonexistent-kiln,target=/m"],
        &["true"],
    );
    assert_eq!(code(&out), 125, "{}", show(&out));
    assert!(
        stderr(&out).contains("bind source path does not exist"),
        "{}",
        show(&out)
    );
    let out = c.run(
        &["--mount", "type=tmpfs,target=/t,tmpfs-size=1m"],
        &["df", "-k", "/t"],
    );
    assert!(stdout(&out).contains(" 1024 "), "{}", show(&out));

    let labels = c.sb.work().join("labels");
    std::fs::write(&labels, "from=file\nboth=file\n").expect("labels");
    c.ok(&[
        "create",
        "--name",
        "lab",
        "--label-file",
        labels.to_str().expect("utf-8"),
        "-l",
        "both=flag",
        "--label",
        "x=1",
        IMAGE,
    ]);
    let v: Value = serde_json::from_str(&c.ok(&["inspect", "lab"])).expect("inspect");
    assert_eq!(
        v[0]["Config"]["Labels"],
        serde_json::json!({"both": "flag", "from": "file", "x": "1"})
    );

    let out = c.run(&["--memory-swap", "1g"], &["true"]);
    assert_eq!(code(&out), 125, "{}", show(&out));
    assert!(
        stderr(&out).contains("You should always set the Memory limit when using Memoryswap limit"),
        "{}",
        show(&out)
    );
    let out = c.run(&["-m", "64m", "--memory-swap", "32m"], &["true"]);
    assert_eq!(code(&out), 125, "{}", show(&out));
    let out = c.run(&["-m", "64m", "--memory-swap", "-1"], &["true"]);
    assert_eq!(code(&out), 0, "{}", show(&out));
}

/// `exec -d` (`docker exec --help`: "Detached mode: run command in the
/// background"; no moby CLI test covers it): kiln returns as soon as the
/// command was executed, printing nothing, and the command runs on in the
/// container; a missing command still fails with 127.
#[test]
fn cbug_exec_d_runs_in_the_background() {
    let c = Ctx::new();
    c.ok(&["run", "-d", "--name", "bg", IMAGE, "sleep", "100"]);
    let started = Instant::now();
    let out = c.kiln(&[
        "exec",
        "-d",
        "bg",
        "sh",
        "-c",
        "sleep 1; echo out; touch /tmp/done",
    ]);
    assert_eq!(code(&out), 0, "{}", show(&out));
    assert_eq!(stdout(&out), "", "exec -d prints nothing");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(c.ok(&["exec", "bg", "ls", "/tmp"]), "", "not done yet");
    eventually(Duration::from_secs(10), "the background command", || {
        c.kiln(&["exec", "bg", "test", "-f", "/tmp/done"])
            .status
            .success()
    });
    let out = c.kiln(&["exec", "-d", "bg", "nosuch"]);
    assert_eq!(code(&out), 127, "{}", show(&out));
}

/// `--sysctl` as Docker validates it (`docker run --help`; the daemon's
/// `ValidateSysctl`): namespaced parameters only (IPC's `kernel.msg*`,
/// `kernel.sem`, `kernel.shm*`, `fs.mqueue.*`, and `net.*` with a network
/// namespace of the container's own); they change the container, never the
/// host.
#[test]
fn cbug_sysctl_sets_namespaced_parameters_only() {
    let c = Ctx::new();
    let host = std::fs::read_to_string("/proc/sys/kernel/shmmni").expect("host shmmni");
    let out = c.run(
        &[
            "--sysctl",
            "kernel.shmmni=1234",
            "--sysctl",
            "net.ipv4.ip_forward=1",
        ],
        &[
            "cat",
            "/proc/sys/kernel/shmmni",
            "/proc/sys/net/ipv4/ip_forward",
        ],
    );
    assert_eq!(stdout(&out), "1234\n1\n", "{}", show(&out));
    assert_eq!(
        std::fs::read_to_string("/proc/sys/kernel/shmmni").expect("host shmmni"),
        host
    );
    for (flags, why) in [
        (&["--sysctl", "vm.swappiness=1"][..], "not namespaced"),
        (
            &["--sysctl", "kernel.core_pattern=|/x"][..],
            "not namespaced",
        ),
        (
            &["--network", "host", "--sysctl", "net.ipv4.ip_forward=1"][..],
            "host's network namespace",
        ),
    ] {
        let out = c.run(flags, &["true"]);
        assert_eq!(code(&out), 125, "{flags:?}: {}", show(&out));
        assert!(stderr(&out).contains(why), "{flags:?}: {}", show(&out));
    }
}
