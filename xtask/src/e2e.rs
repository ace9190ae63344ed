//! `cargo xtask e2e`: builds kiln and the static probe, starts two local
//! registries (one open, one behind htpasswd basic auth), pushes the fixture
//! images, and runs the e2e tests and every crate's privileged tests against
//! them. Everything it started is stopped when it returns, fails or panics.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::fixtures;
use crate::procs::Guard;
use crate::registry::{self, Creds};
use crate::util::{self, run};

/// What the e2e environment provides, passed to the tests as environment
/// variables (documented in `tests/e2e/src/lib.rs`).
pub(crate) struct Env {
    pub(crate) registry: String,
    pub(crate) auth_registry: String,
    pub(crate) creds: Creds,
    pub(crate) kiln_bin: PathBuf,
    pub(crate) probe: PathBuf,
    pub(crate) tmp: PathBuf,
}

impl Env {
    /// Sets the variables on a command.
    pub(crate) fn apply(&self, cmd: &mut Command) {
        cmd.env("KILN_E2E_REGISTRY", &self.registry)
            .env("KILN_E2E_AUTH_REGISTRY", &self.auth_registry)
            .env("KILN_E2E_AUTH_USER", &self.creds.user)
            .env("KILN_E2E_AUTH_PASS", &self.creds.pass)
            .env("KILN_BIN", &self.kiln_bin)
            .env("KILN_PROBE", &self.probe)
            .env("KILN_E2E_TMP", &self.tmp);
    }
}

/// Builds the `kiln` binary (debug) and returns its path.
pub(crate) fn build_kiln(target: &Path) -> Result<PathBuf> {
    run(util::cargo().args(["build", "-p", "kiln", "--bin", "kiln"]))?;
    let bin = target.join("debug/kiln");
    if !bin.is_file() {
        bail!("cargo built kiln but {} is missing", bin.display());
    }
    Ok(bin)
}

/// Builds the static `kiln-probe` in its own target dir (so its RUSTFLAGS do
/// not invalidate other builds) and returns its path.
pub(crate) fn build_probe(target: &Path) -> Result<PathBuf> {
    let dir = target.join("probe");
    // An explicit --target keeps RUSTFLAGS off build scripts and proc macros
    // (which cannot be built with +crt-static).
    let host = host_triple()?;
    run(util::cargo()
        .args([
            "build",
            "-p",
            "kiln-probe",
            "--target",
            &host,
            "--target-dir",
        ])
        .arg(&dir)
        .env("RUSTFLAGS", "-C target-feature=+crt-static"))?;
    let bin = dir.join(&host).join("debug/kiln-probe");
    if !bin.is_file() {
        bail!("cargo built kiln-probe but {} is missing", bin.display());
    }
    Ok(bin)
}

/// rustc's host target triple (`x86_64-unknown-linux-gnu`).
fn host_triple() -> Result<String> {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let out = util::output(Command::new(rustc).arg("-vV"))?;
    out.lines()
        .find_map(|l| l.strip_prefix("host: "))
        .map(|h| h.trim().to_owned())
        .context("`rustc -vV` names no host")
}

/// Starts both registries and pushes the fixtures. `debian` also pushes the
/// cached Debian image.
/// QEMU's aarch64 emulator registered with `binfmt_misc` (mounted first
/// when it is not), from Debian's qemu-user-static registration line: the
/// multi-platform tests run arm64 build steps and containers under it.
/// This is the tests' setup; kiln itself never registers handlers.
pub(crate) fn ensure_arm64_emulation() -> Result<()> {
    let misc = Path::new("/proc/sys/fs/binfmt_misc");
    if !misc.join("status").exists() {
        run(Command::new("mount")
            .args(["-t", "binfmt_misc", "binfmt_misc"])
            .arg(misc))?;
    }
    if std::env::consts::ARCH == "aarch64" || misc.join("qemu-aarch64").exists() {
        return Ok(());
    }
    let line = std::fs::read("/usr/lib/binfmt.d/qemu-aarch64.conf")
        .context("cannot read qemu-user-static's /usr/lib/binfmt.d/qemu-aarch64.conf")?;
    // The file's escapes (\x7f) are what the register file takes.
    std::fs::write(misc.join("register"), line.trim_ascii_end())
        .context("cannot register the qemu-aarch64 handler with binfmt_misc")?;
    Ok(())
}

pub(crate) fn setup(
    guard: &mut Guard,
    kiln_bin: PathBuf,
    probe: PathBuf,
    debian: bool,
) -> Result<Env> {
    let base = guard.temp_dir("kiln-e2e-")?;
    let creds = Creds {
        user: "kiln".to_owned(),
        pass: format!("e2e-{}", registry::free_port()?),
    };
    let open_dir = base.join("registry");
    let auth_dir = base.join("auth-registry");
    std::fs::create_dir_all(&open_dir)?;
    std::fs::create_dir_all(&auth_dir)?;
    let open = registry::start(guard, &open_dir, "registry", None)?;
    let auth = registry::start(guard, &auth_dir, "auth registry", Some(&creds))?;

    let work = base.join("fixtures");
    std::fs::create_dir_all(&work)?;
    let busybox = fixtures::busybox_layout(&work).context("cannot make the busybox fixture")?;
    fixtures::push(
        &busybox,
        "latest",
        &open.addr,
        "busybox:latest",
        false,
        None,
    )?;
    fixtures::push(&busybox, "multi", &open.addr, "multi:latest", true, None)?;
    fixtures::push(
        &busybox,
        "latest",
        &auth.addr,
        "busybox:latest",
        false,
        Some(&creds),
    )?;
    if debian {
        let layout = fixtures::debian_layout().context("cannot make the debian fixture")?;
        fixtures::push(
            &layout,
            "bookworm",
            &open.addr,
            "debian:bookworm",
            false,
            None,
        )?;
    }
    let tmp = base.join("tmp");
    std::fs::create_dir_all(&tmp)?;
    Ok(Env {
        registry: open.addr,
        auth_registry: auth.addr,
        creds,
        kiln_bin,
        probe,
        tmp,
    })
}

/// Workspace packages that declare a `privileged-tests` feature.
fn privileged_packages() -> Result<Vec<String>> {
    let meta = util::metadata(true)?;
    let mut names: Vec<String> = meta["packages"]
        .as_array()
        .context("`cargo metadata` has no packages")?
        .iter()
        .filter(|p| p["features"].get("privileged-tests").is_some())
        .filter_map(|p| p["name"].as_str().map(str::to_owned))
        .collect();
    names.sort();
    Ok(names)
}

/// `cargo xtask e2e [-- ARGS]`: ARGS go to `cargo test -p kiln-e2e`. With
/// `KILN_E2E_ONLY=1` in the environment, the crates' privileged suites are
/// skipped (for iterating on one e2e test).
pub(crate) fn main(args: &[String]) -> Result<()> {
    util::require_root("e2e")?;
    let e2e_only = std::env::var_os("KILN_E2E_ONLY").is_some_and(|v| v == "1");
    let mut pkgs = util::FIXTURE_PACKAGES.to_vec();
    pkgs.extend(util::BUILD_PACKAGES);
    pkgs.push("qemu-user-static");
    util::ensure_packages(&pkgs)?;
    ensure_arm64_emulation()?;
    let target = util::target_dir()?;
    let kiln_bin = build_kiln(&target)?;
    let probe = build_probe(&target)?;
    let privileged = if e2e_only {
        Vec::new()
    } else {
        privileged_packages()?
    };
    // Compile every test binary before any registry starts.
    let mut build = util::cargo();
    build.args(["test", "--no-run", "-p", "kiln-e2e"]);
    run(&mut build)?;
    for p in &privileged {
        run(util::cargo().args([
            "test",
            "--no-run",
            "-p",
            p,
            "--features",
            "privileged-tests",
        ]))?;
    }

    let mut guard = Guard::default();
    let env = setup(&mut guard, kiln_bin, probe, true)?;
    eprintln!(
        "e2e environment: KILN_E2E_REGISTRY={} KILN_E2E_AUTH_REGISTRY={} KILN_BIN={} KILN_PROBE={}",
        env.registry,
        env.auth_registry,
        env.kiln_bin.display(),
        env.probe.display()
    );

    let mut failed = Vec::new();
    let mut suites: Vec<(String, Command)> = Vec::new();
    let mut e2e = util::cargo();
    e2e.args(["test", "-p", "kiln-e2e"]);
    if !args.is_empty() {
        e2e.arg("--").args(args);
    }
    suites.push(("kiln-e2e".to_owned(), e2e));
    for p in &privileged {
        let mut c = util::cargo();
        c.args(["test", "-p", p, "--features", "privileged-tests"]);
        suites.push((format!("{p} (privileged-tests)"), c));
    }
    for (name, mut cmd) in suites {
        env.apply(&mut cmd);
        guard.check_alive()?;
        if let Err(e) = run(&mut cmd) {
            eprintln!("e2e: {name} FAILED: {e:#}");
            failed.push(name);
        } else {
            eprintln!("e2e: {name} ok");
        }
    }
    drop(guard);
    if !failed.is_empty() {
        bail!("e2e failures: {}", failed.join(", "));
    }
    Ok(())
}
