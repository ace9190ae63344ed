//! Docker's run options of issue 16 that reach the runtime's spec:
//! `--privileged`, `--device`, `--group-add`, `--oom-kill-disable`,
//! `--cpuset-cpus`, on `kiln run` and `kiln create` (then `start`), end to
//! end through the `kiln` binary. The cases are moby's own CLI tests
//! (`integration-cli/docker_cli_run_test.go`, `docker_cli_run_unix_test.go`),
//! cited test by test; `rflag_inspect_and_errors_match_docker` compares with
//! the reference setup's Docker daemon (skipped when none answers).
//!
//! Test names start with `rflag_`: `cargo xtask e2e -- rflag_` runs them.
//! Each test has its own store with `rflag:latest` imported from a root
//! filesystem made here: Debian's static busybox, `/etc/group` with
//! `wheel` (10), `audio` (29) and `staff` (50) as in moby's TestRunGroupAdd
//! (root is no member of `wheel` here: these tests are about `--group-add`,
//! not about the user's own memberships).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use kiln_e2e::{Sandbox, probe_rootfs_tar, sh};
use serde_json::{Value, json};

const IMAGE: &str = "rflag:latest";
const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// Docker's default capabilities as `/proc/PID/status` shows them.
const DEFAULT_CAP_EFF: &str = "00000000a80425fb";

/// The root filesystem tarball, made once per test process.
fn rootfs_tar() -> &'static Path {
    static TAR: OnceLock<PathBuf> = OnceLock::new();
    TAR.get_or_init(|| {
        probe_rootfs_tar(
            "rflag",
            &["root", "proc", "sys", "dev"],
            "root:x:0:0:root:/root:/bin/sh\n",
            "root:x:0:\nwheel:x:10:\naudio:x:29:\nstaff:x:50:\n",
            |_| {},
        )
    })
}

/// A sandbox with `rflag:latest` imported; removes its containers on drop.
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

    /// `kiln run --rm FLAGS rflag:latest sh -c SCRIPT`.
    fn run(&self, flags: &[&str], script: &str) -> Output {
        let mut args = vec!["run", "--rm"];
        args.extend_from_slice(flags);
        args.extend_from_slice(&[IMAGE, "sh", "-c", script]);
        self.kiln(&args)
    }

    /// As [`Ctx::run`]; panics unless it exits 0; returns stdout.
    fn run_ok(&self, flags: &[&str], script: &str) -> String {
        let out = self.run(flags, script);
        assert_eq!(code(&out), 0, "run {flags:?} {script:?}: {}", show(&out));
        stdout(&out)
    }

    /// `kiln inspect NAME`'s `HostConfig`.
    fn host_config(&self, name: &str) -> Value {
        let v: Value = serde_json::from_str(&self.ok(&["inspect", name])).expect("inspect JSON");
        v[0]["HostConfig"].clone()
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

/// A `Cap*:` line of a `/proc/PID/status` text.
fn cap_line<'a>(status: &'a str, which: &str) -> &'a str {
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{which}:")))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no {which} in {status:?}"))
}

/// The options of the mount at `target` in a `/proc/mounts` text.
fn mount_options<'a>(mounts: &'a str, target: &str) -> &'a str {
    // The last mount there is the one seen.
    mounts
        .lines()
        .rev()
        .find_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (f.get(1) == Some(&target)).then(|| f.get(3).copied().unwrap_or_default())
        })
        .unwrap_or_else(|| panic!("no mount at {target} in {mounts:?}"))
}

/// Whether the host keeps its v1 cgroup hierarchies under /sys/fs/cgroup
/// (moby's own cgroup file checks are skipped on v2: `onlyCgroupsv2`).
fn cgroup_v1(controller: &str) -> bool {
    Path::new("/sys/fs/cgroup").join(controller).is_dir()
        && !Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

/// TestRunPrivilegedCanMount / TestRunUnprivilegedCannotMount,
/// TestRunPrivilegedCanMknod, TestRunSysWritableInPrivilegedContainers /
/// TestRunSysNotWritableInNonPrivilegedContainers (checked on the /sys
/// mount's options: a privileged container's writes would reach the
/// host's sysfs), TestRunPrivilegedAllowedDevices; and the capabilities:
/// every one kiln itself may give (its bounding set), in `exec` too.
#[test]
fn rflag_privileged_mounts_and_has_every_capability() {
    let c = Ctx::new();
    let host = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let all = cap_line(&host, "CapBnd");

    let out = c.run_ok(
        &["--privileged"],
        "mount -t tmpfs none /tmp && echo ok; mknod /tmp/sda b 8 0 && echo mknod; cat /proc/self/status; cat /proc/mounts",
    );
    assert!(out.starts_with("ok\nmknod\n"), "{out}");
    for set in ["CapEff", "CapPrm", "CapBnd"] {
        assert_eq!(cap_line(&out, set), all, "{set} of a privileged container");
    }
    let sys = mount_options(&out, "/sys");
    assert!(sys.split(',').any(|o| o == "rw"), "/sys: {sys}");
    // No masked paths: /proc/kcore is /proc's own, not a bind of /dev/null.
    assert!(
        !out.lines()
            .any(|l| l.split(' ').nth(1) == Some("/proc/kcore")),
        "{out}"
    );

    let out = c.run(
        &[],
        "mount -t tmpfs none /tmp && echo ok; cat /proc/self/status; cat /proc/mounts",
    );
    assert_eq!(code(&out), 0, "{}", show(&out));
    let text = stdout(&out);
    assert!(
        !text.starts_with("ok"),
        "an unprivileged mount worked: {text}"
    );
    assert_eq!(cap_line(&text, "CapEff"), DEFAULT_CAP_EFF);
    let sys = mount_options(&text, "/sys");
    assert!(sys.split(',').any(|o| o == "ro"), "/sys: {sys}");
    // `--privileged=false` is the default, as with Go's boolean flags.
    let out = c.run_ok(&["--privileged=false"], "grep CapEff /proc/self/status");
    assert!(out.contains(DEFAULT_CAP_EFF), "{out}");

    if cgroup_v1("devices") {
        let out = c.run_ok(&["--privileged"], "cat /sys/fs/cgroup/devices/devices.list");
        assert_eq!(out.trim(), "a *:* rwm");
    }

    // exec in a privileged container: the container's capabilities.
    c.ok(&[
        "run",
        "-d",
        "--name",
        "rflag-priv",
        "--privileged",
        IMAGE,
        "sleep",
        "60",
    ]);
    let status = c.ok(&["exec", "rflag-priv", "cat", "/proc/self/status"]);
    assert_eq!(cap_line(&status, "CapEff"), all);
    assert_eq!(c.host_config("rflag-priv")["Privileged"], json!(true));
    c.ok(&["rm", "-f", "rflag-priv"]);
}

/// TestRunAddingOptionalDevices, TestRunAddingOptionalDevicesNoSrc,
/// TestRunAddingOptionalDevicesInvalidMode, TestRunWithBadDevice,
/// TestRunDeviceSymlink (its links in a directory of the test's own),
/// TestRunUserDeviceAllowed; permissions: `:r` refuses an open for writing.
#[test]
fn rflag_device_maps_a_node_with_its_permissions() {
    let c = Ctx::new();
    let out = c.run_ok(
        &["--device", "/dev/null:/dev/mydev"],
        "ls -l /dev/mydev; echo hi > /dev/mydev && echo written",
    );
    let fields: Vec<&str> = out.split_whitespace().collect();
    assert!(fields[0].starts_with('c'), "{out}");
    assert_eq!(&fields[4..6], ["1,", "3"], "{out}");
    assert!(out.ends_with("/dev/mydev\nwritten\n"), "{out}");
    let out = c.run_ok(&["--device", "/dev/zero:/dev/nulo"], "ls /dev/nulo");
    assert_eq!(out.trim(), "/dev/nulo");
    let out = c.run_ok(&["--device", "/dev/zero:rw"], "ls /dev/zero");
    assert_eq!(out.trim(), "/dev/zero");
    let out = c.run(&["--device", "/dev/zero:ro"], "ls /dev/zero");
    assert_eq!(code(&out), 125, "{}", show(&out));

    let out = c.run(&["--name", "baddevice", "--device", "/etc"], "true");
    assert_eq!(code(&out), 125, "{}", show(&out));
    assert!(
        stderr(&out).contains("\"/etc\": not a device node"),
        "{}",
        show(&out)
    );

    let dir = c.sb.work();
    std::os::unix::fs::symlink("/dev/zero", dir.join("zero")).expect("symlink");
    std::fs::write(dir.join("temp"), "temp").expect("write");
    std::os::unix::fs::symlink(dir.join("temp"), dir.join("file")).expect("symlink");
    let zero = format!("{}:/dev/symzero", dir.join("zero").display());
    let out = c.run_ok(
        &["--device", &zero],
        "dd if=/dev/symzero bs=4K count=8 2>/dev/null | md5sum",
    );
    assert!(out.contains("bb7df04e1b0a2570657527a7e108ae23"), "{out}");
    let file = format!("{}:/dev/symzero", dir.join("file").display());
    let out = c.run(&["--device", &file], "true");
    assert_eq!(code(&out), 125, "{}", show(&out));
    assert!(stderr(&out).contains("not a device node"), "{}", show(&out));

    // Docker's default device rules allow /dev/null (1:3) rwm whatever the
    // mapping says, so permissions show on a node outside that list.
    if !Path::new("/dev/fuse").exists() {
        eprintln!(
            "rflag_device_maps_a_node_with_its_permissions: no /dev/fuse on this host: permission cases skipped"
        );
        return;
    }
    let out = c.run(
        &["--device", "/dev/fuse:/dev/myfuse:r"],
        ": < /dev/myfuse && echo read; : > /dev/myfuse && echo write",
    );
    assert_eq!(stdout(&out), "read\n", "{}", show(&out));
    assert!(
        stderr(&out).contains("Operation not permitted"),
        "{}",
        show(&out)
    );
    let out = c.run_ok(
        &["--device", "/dev/fuse:/dev/myfuse:rw"],
        ": < /dev/myfuse && echo read; : > /dev/myfuse && echo write",
    );
    assert_eq!(out, "read\nwrite\n");
    if cgroup_v1("devices") {
        use std::os::unix::fs::MetadataExt as _;
        let rdev = std::fs::metadata("/dev/fuse").expect("stat").rdev();
        let rule = format!("c {}:{} w", rdev >> 8 & 0xfff, rdev & 0xff);
        let out = c.run_ok(
            &["--device", "/dev/fuse:w"],
            "cat /sys/fs/cgroup/devices/devices.list",
        );
        assert!(out.lines().any(|l| l == rule), "{rule} not in {out}");
    }
}

/// TestRunGroupAdd (names from the image's /etc/group, a number without
/// an entry), and `exec` keeps the container's extra groups.
#[test]
fn rflag_group_add_names_and_numbers_show_in_id() {
    let c = Ctx::new();
    let out = c.run_ok(
        &["--group-add=audio", "--group-add=staff", "--group-add=777"],
        "id",
    );
    assert_eq!(
        out.trim(),
        "uid=0(root) gid=0(root) groups=0(root),29(audio),50(staff),777"
    );
    let out = c.run_ok(&["--group-add", "50"], "id -G");
    assert_eq!(out.trim(), "0 50");

    c.ok(&[
        "run",
        "-d",
        "--name",
        "rflag-groups",
        "--group-add",
        "audio",
        IMAGE,
        "sleep",
        "60",
    ]);
    assert_eq!(c.ok(&["exec", "rflag-groups", "id", "-G"]).trim(), "0 29");
    assert_eq!(c.host_config("rflag-groups")["GroupAdd"], json!(["audio"]));
    c.ok(&["rm", "-f", "rflag-groups"]);
    assert_eq!(c.host_config_of_plain()["GroupAdd"], Value::Null);

    let out = c.run(&["--group-add", "nosuch"], "id");
    assert_eq!(code(&out), 125, "{}", show(&out));
    assert!(
        stderr(&out).contains("nosuch: no matching entries in group file"),
        "{}",
        show(&out)
    );
}

impl Ctx {
    /// The `HostConfig` of a container created without flags.
    fn host_config_of_plain(&self) -> Value {
        self.ok(&["create", "--name", "rflag-plain", IMAGE, "true"]);
        let hc = self.host_config("rflag-plain");
        self.ok(&["rm", "rflag-plain"]);
        hc
    }
}

/// The CPUs the host's root cpuset offers (moby's sysinfo reads the same).
fn host_cpus() -> Option<String> {
    [
        "/sys/fs/cgroup/cpuset/cpuset.cpus",
        "/sys/fs/cgroup/cpuset.cpus.effective",
    ]
    .iter()
    .find_map(|p| std::fs::read_to_string(p).ok())
    .map(|s| s.trim().to_owned())
}

/// TestRunWithCpusetCpus (the cgroup file, v1 only as in moby, and
/// inspect), the kernel's view (`Cpus_allowed_list`),
/// TestRunWrongCpusetCpusFlagValue, TestRunInvalidCpusetCpusFlagValue
/// (the first CPU the host lacks, refused by `create`).
#[test]
fn rflag_cpuset_cpus_in_cgroup_and_status() {
    let c = Ctx::new();
    let out = c.kiln(&[
        "run",
        "--name",
        "rflag-cpuset",
        "--cpuset-cpus",
        "0",
        IMAGE,
        "sh",
        "-c",
        "grep Cpus_allowed_list /proc/self/status; cat /sys/fs/cgroup/cpuset/cpuset.cpus 2>/dev/null || true",
    ]);
    assert_eq!(code(&out), 0, "{}", show(&out));
    let text = stdout(&out);
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("Cpus_allowed_list:\t0"), "{text}");
    if cgroup_v1("cpuset") {
        assert_eq!(lines.next(), Some("0"), "{text}");
    }
    assert_eq!(c.host_config("rflag-cpuset")["CpusetCpus"], json!("0"));
    assert_eq!(c.host_config_of_plain()["CpusetCpus"], json!(""));

    let out = c.run(&["--cpuset-cpus", "1-10,11--"], "true");
    assert_eq!(code(&out), 125, "{}", show(&out));
    assert!(
        stderr(&out).contains("Invalid value 1-10,11-- for cpuset cpus"),
        "{}",
        show(&out)
    );

    let Some(available) = host_cpus() else {
        eprintln!(
            "rflag_cpuset_cpus_in_cgroup_and_status: no root cpuset: availability case skipped"
        );
        return;
    };
    let offered: Vec<u32> = available
        .split(',')
        .flat_map(|r| {
            let (a, b) = r.split_once('-').unwrap_or((r, r));
            a.parse::<u32>().expect("cpu")..=b.parse::<u32>().expect("cpu")
        })
        .collect();
    let missing = (0..).find(|n| !offered.contains(n)).expect("a missing CPU");
    let out = c.kiln(&[
        "create",
        "--cpuset-cpus",
        &missing.to_string(),
        IMAGE,
        "true",
    ]);
    assert_ne!(code(&out), 0, "{}", show(&out));
    let want =
        format!("Requested CPUs are not available - requested {missing}, available: {available}");
    assert!(stderr(&out).contains(&want), "{want}: {}", show(&out));
    assert_eq!(
        c.ok(&["ps", "-a", "-q"]).lines().count(),
        1,
        "only rflag-cpuset"
    );
}

/// `--oom-kill-disable`: the cgroup's `oom_control` (v1), inspect, and the
/// daemon's warnings as Docker 20.10 prints them (without `-m`; on cgroup
/// v2 it is discarded).
#[test]
fn rflag_oom_kill_disable_in_inspect_and_cgroup() {
    let c = Ctx::new();
    let out = c.kiln(&[
        "run",
        "--name",
        "rflag-oom",
        "--oom-kill-disable",
        IMAGE,
        "sh",
        "-c",
        "cat /sys/fs/cgroup/memory/memory.oom_control 2>/dev/null || true",
    ]);
    assert_eq!(code(&out), 0, "{}", show(&out));
    let supported = Path::new("/sys/fs/cgroup/memory/memory.oom_control").exists();
    if supported {
        assert!(
            stdout(&out).lines().any(|l| l == "oom_kill_disable 1"),
            "{}",
            show(&out)
        );
        assert_eq!(
            stderr(&out).trim(),
            "WARNING: OOM killer is disabled for the container, but no memory limit is set, this can result in the system running out of resources."
        );
        assert_eq!(c.host_config("rflag-oom")["OomKillDisable"], json!(true));
    } else {
        assert_eq!(
            stderr(&out).trim(),
            "WARNING: Your kernel does not support OomKillDisable. OomKillDisable discarded."
        );
        assert_eq!(c.host_config("rflag-oom")["OomKillDisable"], json!(false));
    }
    // With a memory limit: no warning (v1); `=false` as Go's flags take it.
    let out = c.kiln(&[
        "create",
        "-m",
        "64m",
        "--oom-kill-disable=true",
        IMAGE,
        "true",
    ]);
    assert_eq!(code(&out), 0, "{}", show(&out));
    if supported {
        assert_eq!(stderr(&out), "", "{}", show(&out));
    }
    let out = c.run(&["--oom-kill-disable=false"], "true");
    assert_eq!(stderr(&out), "", "{}", show(&out));
    assert_eq!(c.host_config_of_plain()["OomKillDisable"], json!(false));
}

/// `create` records the flags and `start` rebuilds the same container;
/// inspect's HostConfig has Docker's fields and forms.
#[test]
fn rflag_create_then_start_keeps_the_flags() {
    let c = Ctx::new();
    c.ok(&[
        "create",
        "--name",
        "rflag-kept",
        "--privileged",
        "--device",
        "/dev/null:/dev/mydev:r",
        "--device",
        "/dev/zero",
        "--group-add",
        "29",
        "--group-add",
        "staff",
        "--cpuset-cpus",
        "0",
        IMAGE,
        "sh",
        "-c",
        "ls /dev/mydev; id -G; grep -E 'CapEff|Cpus_allowed_list' /proc/self/status",
    ]);
    let hc = c.host_config("rflag-kept");
    assert_eq!(hc["Privileged"], json!(true));
    assert_eq!(
        hc["Devices"],
        json!([
            {"PathOnHost": "/dev/null", "PathInContainer": "/dev/mydev", "CgroupPermissions": "r"},
            {"PathOnHost": "/dev/zero", "PathInContainer": "/dev/zero", "CgroupPermissions": "rwm"},
        ])
    );
    assert_eq!(hc["GroupAdd"], json!(["29", "staff"]));
    assert_eq!(hc["CpusetCpus"], json!("0"));
    let host = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let all = cap_line(&host, "CapBnd");
    for round in 0..2 {
        let out = c.ok(&["start", "-a", "rflag-kept"]);
        assert_eq!(
            out,
            format!("/dev/mydev\n0 29 50\nCapEff:\t{all}\nCpus_allowed_list:\t0\n"),
            "start {round}"
        );
    }
    let plain = c.host_config_of_plain();
    assert_eq!(plain["Privileged"], json!(false));
    assert_eq!(plain["Devices"], json!([]));
}

/// The same flags given to the reference setup's Docker: the HostConfig
/// fields, `id` and the refusals (texts and exit statuses) are kiln's.
#[test]
fn rflag_inspect_and_errors_match_docker() {
    if !kiln_e2e::docker_available("rflag_inspect_and_errors_match_docker") {
        return;
    }
    let c = Ctx::new();
    let name = format!("kiln-e2e/rflag:{}", std::process::id());
    c.ok(&["tag", IMAGE, &name]);
    let file = c.sb.work().join("rflag.tar");
    c.ok(&["save", "-o", &file.display().to_string(), &name]);
    let _image = kiln_e2e::DockerImage(name.clone());
    kiln_e2e::docker_ok(&["load", "-i", &file.display().to_string()]);
    let dname = format!("rflag-{}", std::process::id());
    struct Gone(String);
    impl Drop for Gone {
        fn drop(&mut self) {
            let _ = sh(Command::new("docker").args(["rm", "-f", &self.0]));
        }
    }
    let _gone = Gone(dname.clone());
    let flags = [
        "--device",
        "/dev/null:/dev/mydev:r",
        "--device",
        "/dev/zero",
        "--group-add",
        "50",
        "--group-add",
        "audio",
        "--cpuset-cpus",
        "0",
        "--oom-kill-disable",
        "--network",
        "none",
    ];
    let create = |cli: &str, cname: &str| -> Output {
        let mut cmd = if cli == "docker" {
            Command::new("docker")
        } else {
            c.sb.kiln(Vec::<&str>::new())
        };
        cmd.args(["create", "--name", cname])
            .args(flags)
            .args([name.as_str(), "id"])
            .stdin(Stdio::null());
        sh(&mut cmd)
    };
    let d = create("docker", &dname);
    let k = create("kiln", "rflag-cmp");
    assert_eq!(code(&d), 0, "docker: {}", show(&d));
    assert_eq!(code(&k), 0, "kiln: {}", show(&k));
    assert_eq!(stderr(&k), stderr(&d), "warnings");
    let fields = [
        "Privileged",
        "Devices",
        "GroupAdd",
        "OomKillDisable",
        "CpusetCpus",
    ];
    let docker: Value =
        serde_json::from_str(&kiln_e2e::docker_ok(&["inspect", &dname])).expect("docker inspect");
    let kiln = c.host_config("rflag-cmp");
    for f in fields {
        assert_eq!(kiln[f], docker[0]["HostConfig"][f], "HostConfig.{f}");
    }
    let d_out = kiln_e2e::docker_ok(&["start", "-a", &dname]);
    let k_out = c.ok(&["start", "-a", "rflag-cmp"]);
    assert_eq!(k_out, d_out, "id");

    // Refusals: Docker's texts after its "Error response from daemon: ".
    for (args, text) in [
        (
            vec!["--cpuset-cpus", "1-10,11--"],
            "Invalid value 1-10,11-- for cpuset cpus",
        ),
        (
            vec!["--device", "/etc"],
            "error gathering device information while adding custom device \"/etc\": not a device node",
        ),
    ] {
        let mut dcmd = Command::new("docker");
        dcmd.args(["run", "--rm", "--network", "none"])
            .args(&args)
            .args([name.as_str(), "true"])
            .stdin(Stdio::null());
        let d = sh(&mut dcmd);
        let mut kargs = vec!["run", "--rm"];
        kargs.extend(args.iter().copied());
        kargs.extend([name.as_str(), "true"]);
        let k = c.kiln(&kargs);
        assert_eq!(code(&d), 125, "docker {args:?}: {}", show(&d));
        assert_eq!(code(&k), 125, "kiln {args:?}: {}", show(&k));
        assert!(stderr(&d).contains(text), "docker {args:?}: {}", show(&d));
        assert!(stderr(&k).contains(text), "kiln {args:?}: {}", show(&k));
    }
}

/// Without `-u`, root's memberships in the image's /etc/group count, as in
/// Docker (`docker run busybox id` lists `10(wheel)`; moby's
/// TestRunGroupAdd); `--group-add` adds to them; `-u root:root` names the
/// group alone.
#[test]
fn rflag_default_user_keeps_its_group_memberships() {
    let sb = Sandbox::new();
    let tar = probe_rootfs_tar(
        "rflag-members",
        &["root", "proc", "sys", "dev"],
        "root:x:0:0:root:/root:/bin/sh\n",
        "root:x:0:\nwheel:x:10:root\naudio:x:29:\n",
        |_| {},
    );
    sb.kiln_ok([
        "import".as_ref(),
        "-c".as_ref(),
        format!("ENV PATH={PATH}").as_ref(),
        tar.as_os_str(),
        "rflag-members:1".as_ref(),
    ]);
    let id = |flags: &[&str]| {
        let mut args = vec!["run", "--rm"];
        args.extend_from_slice(flags);
        args.extend_from_slice(&["rflag-members:1", "id", "-G"]);
        sb.kiln_ok(&args).trim().to_string()
    };
    assert_eq!(id(&[]), "0 10");
    assert_eq!(id(&["--group-add", "audio"]), "0 10 29");
    assert_eq!(id(&["-u", "root:root"]), "0");
}
