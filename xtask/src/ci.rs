//! `cargo xtask ci`: installs what a fresh Debian machine lacks, then runs
//! formatting, clippy, docs, the unit tests, the e2e suite, a check that the
//! kiln binary links no OpenSSL (with its size), and a short fuzz smoke run,
//! in that order, stopping at the first failure.

use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::util::{self, run};
use crate::{e2e, fuzz};

/// Seconds each fuzz target runs in the smoke stage.
const FUZZ_SMOKE_SECONDS: u64 = 30;

fn rustup_components() -> Result<()> {
    for (probe, component) in [("fmt", "rustfmt"), ("clippy", "clippy")] {
        let ok = util::cargo()
            .args([probe, "--version"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            run(Command::new("rustup").args(["component", "add", component]))?;
        }
    }
    Ok(())
}

fn setup() -> Result<()> {
    let mut pkgs = util::FIXTURE_PACKAGES.to_vec();
    pkgs.extend(util::BUILD_PACKAGES);
    util::ensure_packages(&pkgs)?;
    rustup_components()?;
    util::ensure_cargo_fuzz()
}

type Stage = (&'static str, Box<dyn Fn() -> Result<()>>);

fn stages() -> Vec<Stage> {
    vec![
        ("setup", Box::new(setup)),
        (
            "fmt",
            Box::new(|| run(util::cargo().args(["fmt", "--all", "--check"]))),
        ),
        (
            "clippy",
            Box::new(|| {
                run(util::cargo().args([
                    "clippy",
                    "--workspace",
                    "--all-targets",
                    "--",
                    "-D",
                    "warnings",
                ]))
            }),
        ),
        (
            "doc",
            Box::new(|| {
                run(util::cargo()
                    .args(["doc", "--workspace", "--no-deps"])
                    .env("RUSTDOCFLAGS", "-D warnings"))
            }),
        ),
        ("test", Box::new(|| run(util::cargo().arg("test")))),
        ("e2e", Box::new(|| e2e::main(&[]))),
        ("binary", Box::new(check_binary)),
        ("fuzz", Box::new(|| fuzz::run_all(FUZZ_SMOKE_SECONDS))),
    ]
}

/// The kiln binary's host needs: `ldd` must show no OpenSSL (TLS is
/// rustls), only libc and its companions. Checks the debug binary that the
/// e2e stage built (linking is the same as release; CI builds no release
/// binary: that costs 7 to 10 minutes on 2 cores) and prints its size,
/// and the release binary's when one is there.
fn check_binary() -> Result<()> {
    let target = util::target_dir()?;
    let bin = e2e::build_kiln(&target)?;
    let libs = util::output(Command::new("ldd").arg(&bin))?;
    let bad: Vec<&str> = libs
        .lines()
        .map(str::trim)
        .filter(|l| l.contains("libssl") || l.contains("libcrypto"))
        .collect();
    if !bad.is_empty() {
        bail!(
            "{} links OpenSSL (kiln uses rustls; the binary must need only libc): {}",
            bin.display(),
            bad.join(", ")
        );
    }
    eprintln!(
        "{}: needs {}",
        bin.display(),
        libs.lines().map(str::trim).collect::<Vec<_>>().join("; ")
    );
    for b in [bin, target.join("release/kiln")] {
        if let Ok(m) = std::fs::metadata(&b) {
            eprintln!("{}: {:.1} MB", b.display(), m.len() as f64 / 1e6);
        }
    }
    Ok(())
}

/// Runs every stage (or those from `--from STAGE` on); prints one summary
/// line per stage.
pub(crate) fn main(args: &[String]) -> Result<()> {
    let stages = stages();
    let names: Vec<&str> = stages.iter().map(|(n, _)| *n).collect();
    let from = match args {
        [] => 0,
        [flag, stage] if flag == "--from" => names
            .iter()
            .position(|n| n == stage)
            .with_context(|| format!("no ci stage {stage:?}: stages are {}", names.join(", ")))?,
        _ => bail!(
            "usage: cargo xtask ci [--from STAGE]; stages: {}",
            names.join(", ")
        ),
    };
    util::require_root("ci")?;
    let all = Instant::now();
    let n = stages.len();
    let mut summary: Vec<String> = Vec::new();
    for (i, (name, f)) in stages.into_iter().enumerate().skip(from) {
        eprintln!("\n==> ci [{}/{n}] {name}", i + 1);
        let t = Instant::now();
        let result = f();
        let secs = t.elapsed().as_secs_f64();
        match result {
            Ok(()) => {
                let line = format!("ci [{}/{n}] {name:<7} ok      {secs:7.1} s", i + 1);
                eprintln!("{line}");
                summary.push(line);
            }
            Err(e) => {
                summary.push(format!("ci [{}/{n}] {name:<7} FAILED  {secs:7.1} s", i + 1));
                eprintln!("\nci summary:");
                for l in &summary {
                    eprintln!("  {l}");
                }
                bail!("ci stage `{name}` failed: {e:#}");
            }
        }
    }
    eprintln!("\nci summary:");
    for l in &summary {
        eprintln!("  {l}");
    }
    eprintln!("ci passed in {:.0} s", all.elapsed().as_secs_f64());
    Ok(())
}
