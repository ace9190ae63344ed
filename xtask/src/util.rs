//! Small helpers shared by the tasks: running commands, installing Debian
//! packages, checking for root, finding the workspace and its target dir.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

/// The workspace root (the parent of `xtask/`).
pub(crate) fn workspace_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}

/// The `cargo` to run: the one that started us when known.
pub(crate) fn cargo() -> Command {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace_root());
    cmd
}

/// Renders a command for the log: program and arguments, space separated.
pub(crate) fn render(cmd: &Command) -> String {
    let mut out = String::new();
    for (k, v) in cmd.get_envs() {
        if let Some(v) = v {
            out.push_str(&format!("{}={} ", k.to_string_lossy(), v.to_string_lossy()));
        }
    }
    out.push_str(&cmd.get_program().to_string_lossy());
    for a in cmd.get_args() {
        out.push(' ');
        out.push_str(&a.to_string_lossy());
    }
    out
}

/// Runs a command with inherited stdio; fails when it does not exit 0.
pub(crate) fn run(cmd: &mut Command) -> Result<()> {
    let shown = render(cmd);
    eprintln!("$ {shown}");
    let status = cmd
        .status()
        .with_context(|| format!("cannot start `{shown}`"))?;
    if !status.success() {
        bail!("`{shown}` failed: {status}");
    }
    Ok(())
}

/// Runs a command quietly and returns its stdout; on failure the error
/// carries its stderr.
pub(crate) fn output(cmd: &mut Command) -> Result<String> {
    let shown = render(cmd);
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot start `{shown}`"))?;
    if !out.status.success() {
        bail!(
            "`{shown}` failed: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim_end()
        );
    }
    String::from_utf8(out.stdout).with_context(|| format!("`{shown}` printed non-UTF-8"))
}

/// Whether a program is found on `PATH` (or exists, for an absolute path).
pub(crate) fn have(program: impl AsRef<OsStr>) -> bool {
    let program = Path::new(program.as_ref());
    if program.is_absolute() {
        return program.exists();
    }
    let Some(path) = std::env::var_os("PATH") else {
        return false;
    };
    std::env::split_paths(&path).any(|dir| dir.join(program).is_file())
}

/// Whether this process runs as root (effective uid 0), read from
/// `/proc/self/status` so that xtask needs no `unsafe`.
pub(crate) fn is_root() -> bool {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return false;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|rest| rest.split_whitespace().nth(1))
        .is_some_and(|euid| euid == "0")
}

/// Fails with a clear message unless we are root.
pub(crate) fn require_root(task: &str) -> Result<()> {
    if !is_root() {
        bail!(
            "`cargo xtask {task}` must run as root (it installs packages, starts registries and runs containers); try: sudo -E cargo xtask {task}"
        );
    }
    Ok(())
}

/// Whether a Debian package is installed (`dpkg-query` says `install ok installed`).
fn dpkg_installed(pkg: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", pkg])
        .stderr(Stdio::null())
        .output()
        .map(|o| o.status.success() && String::from_utf8_lossy(&o.stdout) == "install ok installed")
        .unwrap_or(false)
}

/// Installs the Debian packages that are missing, with one `apt-get update`
/// and one `apt-get install` at most.
pub(crate) fn ensure_packages(pkgs: &[&str]) -> Result<()> {
    let missing: Vec<&str> = pkgs
        .iter()
        .copied()
        .filter(|p| !dpkg_installed(p))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    if !is_root() {
        bail!(
            "missing Debian packages {}: run as root so xtask can install them, or `apt-get install {}`",
            missing.join(", "),
            missing.join(" ")
        );
    }
    eprintln!("installing missing packages: {}", missing.join(" "));
    run(Command::new("apt-get")
        .args(["update", "-qq"])
        .env("DEBIAN_FRONTEND", "noninteractive"))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "-qq", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive"))?;
    Ok(())
}

/// The packages the registry and fixture tasks need.
pub(crate) const FIXTURE_PACKAGES: &[&str] = &[
    "docker-registry",
    "skopeo",
    "umoci",
    "busybox-static",
    "apache2-utils",
    "debootstrap",
    "ca-certificates",
    // ADD of git repositories (e2e starts `git daemon`), RUN --mount=type=ssh
    // (ssh-agent), and user-namespace maps for rootless runs.
    "git",
    "openssh-client",
    "uidmap",
];

/// The packages needed to build kiln itself: a C toolchain (ring's and
/// zstd's C code, linking). TLS is rustls, so no OpenSSL headers.
pub(crate) const BUILD_PACKAGES: &[&str] = &["build-essential"];

/// Installs cargo-fuzz when `cargo fuzz` is not available.
pub(crate) fn ensure_cargo_fuzz() -> Result<()> {
    let ok = cargo()
        .args(["fuzz", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        eprintln!("installing cargo-fuzz");
        run(cargo().args(["install", "cargo-fuzz", "--locked"]))?;
    }
    Ok(())
}

/// `cargo metadata` of the workspace (without dependencies' details).
pub(crate) fn metadata(no_deps: bool) -> Result<serde_json::Value> {
    let mut cmd = cargo();
    cmd.args(["metadata", "--format-version", "1"]);
    if no_deps {
        cmd.arg("--no-deps");
    }
    let text = output(&mut cmd)?;
    serde_json::from_str(&text).context("cannot parse `cargo metadata` output")
}

/// The workspace's target directory, as cargo reports it.
pub(crate) fn target_dir() -> Result<PathBuf> {
    let meta = metadata(true)?;
    let dir = meta["target_directory"]
        .as_str()
        .context("`cargo metadata` has no target_directory")?;
    Ok(PathBuf::from(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_shows_env_program_and_args() {
        let mut cmd = Command::new("echo");
        cmd.arg("a b").env("K", "v");
        assert_eq!(render(&cmd), "K=v echo a b");
    }

    #[test]
    fn have_finds_sh_and_not_nonsense() {
        assert!(have("sh"));
        assert!(!have("kiln-xtask-no-such-program"));
        assert!(have("/"));
    }
}
