//! Helpers for kiln's end-to-end tests: find the kiln binary, the probe and
//! the registries that `cargo xtask e2e` started, and give each test a fresh
//! store.
//!
//! `cargo xtask e2e` (as root) sets these environment variables before it
//! runs `cargo test -p kiln-e2e` and every crate's privileged tests:
//!
//! | variable | value |
//! |---|---|
//! | `KILN_E2E_REGISTRY` | `127.0.0.1:PORT` of an open registry (plain HTTP) holding `busybox:latest`, `multi:latest` and `debian:bookworm` |
//! | `KILN_E2E_AUTH_REGISTRY` | `127.0.0.1:PORT` of a registry requiring basic auth, holding `busybox:latest` |
//! | `KILN_E2E_AUTH_USER`, `KILN_E2E_AUTH_PASS` | the credentials the auth registry accepts |
//! | `KILN_BIN` | the `kiln` binary under test |
//! | `KILN_PROBE` | the static `kiln-probe` binary, to copy into containers |
//! | `KILN_E2E_TMP` | a scratch directory removed when the run ends |
//!
//! Fixtures (made with umoci and skopeo, never with kiln's own code):
//! - `busybox:latest`: one layer, the host architecture, Debian's static
//!   busybox with every applet link, `/etc/passwd`, `/etc/group`, `/tmp`
//!   (1777), `/root`; `CMD ["sh"]`.
//! - `multi:latest`: an OCI image index with `linux/amd64` and `linux/arm64`
//!   entries; both carry the busybox layer, each with its own config.
//! - `debian:bookworm`: a debootstrap minbase, one layer; `CMD ["bash"]`.
//!
//! Run outside xtask, the helpers panic with a message saying so.
//!
//! ```no_run
//! let sandbox = kiln_e2e::Sandbox::new();
//! let out = sandbox.kiln(["pull", &kiln_e2e::busybox_ref()]).output().unwrap();
//! assert!(out.status.success());
//! ```

#![deny(missing_docs)]
#![forbid(unsafe_code)]

use std::ffi::OsStr;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn var(name: &str) -> String {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => v,
        _ => panic!(
            "{name} is not set: the e2e tests run through `cargo xtask e2e` (as root), which starts the registries and sets it"
        ),
    }
}

/// `127.0.0.1:PORT` of the open registry (`KILN_E2E_REGISTRY`).
pub fn registry() -> String {
    var("KILN_E2E_REGISTRY")
}

/// `127.0.0.1:PORT` of the registry requiring basic auth
/// (`KILN_E2E_AUTH_REGISTRY`).
pub fn auth_registry() -> String {
    var("KILN_E2E_AUTH_REGISTRY")
}

/// The user and password the auth registry accepts.
pub fn auth_credentials() -> (String, String) {
    (var("KILN_E2E_AUTH_USER"), var("KILN_E2E_AUTH_PASS"))
}

/// The `kiln` binary under test (`KILN_BIN`).
pub fn kiln_bin() -> PathBuf {
    PathBuf::from(var("KILN_BIN"))
}

/// The static probe binary (`KILN_PROBE`).
pub fn probe_bin() -> PathBuf {
    PathBuf::from(var("KILN_PROBE"))
}

/// The scratch directory of this run (`KILN_E2E_TMP`), or the system's
/// temporary directory when unset.
pub fn scratch_dir() -> PathBuf {
    std::env::var_os("KILN_E2E_TMP")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
}

/// `REGISTRY/busybox:latest` on the open registry.
pub fn busybox_ref() -> String {
    format!("{}/busybox:latest", registry())
}

/// `REGISTRY/multi:latest`: the two-platform index on the open registry.
pub fn index_ref() -> String {
    format!("{}/multi:latest", registry())
}

/// `REGISTRY/debian:bookworm` on the open registry.
pub fn debian_ref() -> String {
    format!("{}/debian:bookworm", registry())
}

/// `AUTH_REGISTRY/busybox:latest` on the registry requiring credentials.
pub fn auth_busybox_ref() -> String {
    format!("{}/busybox:latest", auth_registry())
}

/// The OCI architecture name of the host (`amd64`, `arm64`, ...).
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// A fresh, private place for one test: a temporary directory holding a
/// kiln store (`root/`, passed as `KILN_ROOT`) and a home directory
/// (`home/`, passed as `HOME`, so `~/.docker/config.json` is the test's
/// own). Removed when dropped.
pub struct Sandbox {
    dir: tempfile::TempDir,
}

impl Default for Sandbox {
    fn default() -> Self {
        Self::new()
    }
}

impl Sandbox {
    /// Makes a new sandbox under [`scratch_dir`].
    pub fn new() -> Self {
        let base = scratch_dir();
        let dir = tempfile::Builder::new()
            .prefix("kiln-test-")
            .tempdir_in(&base)
            .unwrap_or_else(|e| panic!("cannot make a temporary dir in {}: {e}", base.display()));
        for sub in ["root", "home", "work"] {
            std::fs::create_dir(dir.path().join(sub))
                .unwrap_or_else(|e| panic!("cannot make {sub} in {}: {e}", dir.path().display()));
        }
        Sandbox { dir }
    }

    /// The store root (`KILN_ROOT`).
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    /// The home directory (`HOME`).
    pub fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    /// A scratch directory for the test's own files (build contexts, saved
    /// archives).
    pub fn work(&self) -> PathBuf {
        self.dir.path().join("work")
    }

    /// The whole sandbox directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Runs `kiln ARGS` in this sandbox and returns its stdout; panics with
    /// both streams when it fails.
    pub fn kiln_ok<I, S>(&self, args: I) -> String
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let out = run_ok(&mut self.kiln(args));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A `kiln` command with this sandbox's `KILN_ROOT` and `HOME`.
    pub fn kiln<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = Command::new(kiln_bin());
        cmd.args(args)
            .env("KILN_ROOT", self.root())
            .env("HOME", self.home())
            .env_remove("DOCKER_CONFIG");
        cmd
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("cannot bind 127.0.0.1:0")
}

/// Sends `request` to `127.0.0.1:port` and returns what came back before the
/// peer closed or `timeout` passed; retries the connection until `timeout`
/// (for a server still starting). Only loopback, as every e2e test.
pub fn tcp_exchange(port: u16, request: &[u8], timeout: Duration) -> std::io::Result<Vec<u8>> {
    let deadline = Instant::now() + timeout;
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    loop {
        match std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            Ok(mut s) => {
                s.set_read_timeout(Some(
                    deadline
                        .saturating_duration_since(Instant::now())
                        .max(Duration::from_millis(10)),
                ))?;
                s.write_all(request)?;
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    match s.read(&mut chunk) {
                        Ok(0) => break,
                        Ok(n) => {
                            buf.extend_from_slice(&chunk[..n]);
                            // A line-based reply is complete at its newline.
                            if buf.ends_with(b"\n") {
                                break;
                            }
                        }
                        Err(e) if buf.is_empty() => return Err(e),
                        Err(_) => break,
                    }
                }
                return Ok(buf);
            }
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// Runs a command and returns its output, panicking with both streams when
/// it does not exit 0.
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot start {:?}: {e}", cmd.get_program()));
    if !out.status.success() {
        panic!(
            "{:?} {:?} failed: {}\nstdout:\n{}\nstderr:\n{}",
            cmd.get_program(),
            cmd.get_args().collect::<Vec<_>>(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}

/// Runs `skopeo inspect --tls-verify=false` with extra arguments (e.g.
/// `--raw`, `--creds U:P`, `--no-creds`) on `docker://REF` and returns the
/// raw output.
pub fn skopeo_inspect(reference: &str, extra: &[&str]) -> Output {
    Command::new("skopeo")
        .args(["inspect", "--tls-verify=false"])
        .args(extra)
        .arg(format!("docker://{reference}"))
        .output()
        .expect("cannot run skopeo (package skopeo)")
}

/// Whether a Docker daemon answers; prints why a Docker test is skipped
/// when none does (CI machines have none; kiln never needs one, and the
/// Docker interop tests only run where `shared/reference/setup.sh` started
/// one).
pub fn docker_available(test: &str) -> bool {
    match Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .output()
    {
        Ok(out) if out.status.success() => true,
        Ok(out) => {
            eprintln!(
                "skipping {test}: `docker info` failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
            false
        }
        Err(e) => {
            eprintln!("skipping {test}: cannot run docker: {e}");
            false
        }
    }
}

/// `docker ARGS`; panics unless it exits 0; returns stdout.
pub fn docker_ok(args: &[&str]) -> String {
    String::from_utf8_lossy(&run_ok(Command::new("docker").args(args)).stdout).into_owned()
}

/// Removes a Docker image when dropped (also when the test fails).
pub struct DockerImage(pub String);

impl Drop for DockerImage {
    fn drop(&mut self) {
        let _ = Command::new("docker").args(["rmi", "-f", &self.0]).output();
    }
}

/// Docker's default capability set (what a container gets without
/// `--cap-add`/`--cap-drop`).
pub const DOCKER_CAPS: [&str; 14] = [
    "CAP_AUDIT_WRITE",
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_MKNOD",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_RAW",
    "CAP_SETFCAP",
    "CAP_SETGID",
    "CAP_SETPCAP",
    "CAP_SETUID",
    "CAP_SYS_CHROOT",
];

/// Runs `cmd` and returns its output; panics when it cannot start.
pub fn sh(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot start {:?}: {e}", cmd.get_program()))
}

/// Makes a root filesystem for test containers under
/// `scratch_dir()/NAME-rootfs-PID` and returns the tarball of it: Debian's
/// static busybox with every applet linked in `/bin`, the probe at `/probe`
/// (0755), `/tmp` (1777), `/etc/passwd` and `/etc/group` as given, and the
/// directories in `dirs`. `extra` adds the test file's own pieces to the
/// tree before it is tarred (owners kept, `--numeric-owner`).
pub fn probe_rootfs_tar(
    name: &str,
    dirs: &[&str],
    passwd: &str,
    group: &str,
    extra: impl FnOnce(&Path),
) -> PathBuf {
    let dir = scratch_dir().join(format!("{name}-rootfs-{}", std::process::id()));
    let root = dir.join("rootfs");
    for sub in ["bin", "etc", "tmp"].iter().chain(dirs) {
        std::fs::create_dir_all(root.join(sub)).expect("make rootfs dirs");
    }
    std::fs::copy("/bin/busybox", root.join("bin/busybox"))
        .expect("copy /bin/busybox (package busybox-static)");
    let list = sh(Command::new("/bin/busybox").arg("--list"));
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        let applet = applet.trim();
        if !applet.is_empty() && applet != "busybox" {
            let _ = std::os::unix::fs::symlink("busybox", root.join("bin").join(applet));
        }
    }
    std::fs::copy(probe_bin(), root.join("probe")).expect("copy the probe");
    std::fs::write(root.join("etc/passwd"), passwd).expect("write passwd");
    std::fs::write(root.join("etc/group"), group).expect("write group");
    for (p, mode) in [("tmp", "1777"), ("probe", "0755")] {
        assert!(
            sh(Command::new("chmod").arg(mode).arg(root.join(p)))
                .status
                .success()
        );
    }
    extra(&root);
    let tar = dir.join("rootfs.tar");
    let out = sh(Command::new("tar")
        .arg("-C")
        .arg(&root)
        .args(["--numeric-owner", "-cf"])
        .arg(&tar)
        .arg("."));
    assert!(
        out.status.success(),
        "tar: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    tar
}
