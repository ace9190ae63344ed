//! `cargo xtask fuzz <target|all> --seconds N`: runs cargo-fuzz on the
//! stable toolchain.
//!
//! There is no nightly toolchain here. cargo-fuzz's default build (address
//! sanitizer, `-Zsanitizer=address` plus sanitizer-coverage flags) works on
//! stable when `RUSTC_BOOTSTRAP=1` is set: stable's rust-std ships the
//! sanitizer runtimes (`librustc-stable_rt.asan.a`), and `-Z` flags are then
//! accepted. No `--sanitizer none` is needed.

use std::path::Path;

use anyhow::{Context, Result, bail};

use crate::util::{self, run};

/// The fuzz targets in `fuzz/fuzz_targets/`.
pub(crate) const TARGETS: &[&str] = &["parse", "expand", "unpack", "tree_ops"];

/// Outcome of one target.
enum Outcome {
    Ran,
    Missing,
}

fn run_one(target: &str, seconds: u64) -> Result<Outcome> {
    let root = util::workspace_root();
    let file = root.join("fuzz/fuzz_targets").join(format!("{target}.rs"));
    if !file.is_file() {
        eprintln!(
            "fuzz target `{target}` is not written yet ({} is missing): skipped",
            rel(&root, &file)
        );
        return Ok(Outcome::Missing);
    }
    eprintln!("fuzzing `{target}` for {seconds} s");
    // The working corpus comes first (libFuzzer writes new inputs there);
    // the committed regressions seed the run so it starts from the shapes
    // that once broke something instead of from nothing.
    let corpus = root.join("fuzz/corpus").join(target);
    std::fs::create_dir_all(&corpus)
        .with_context(|| format!("cannot create {}", corpus.display()))?;
    let mut cmd = util::cargo();
    cmd.args(["fuzz", "run", target]).arg(&corpus);
    let regressions = root.join("fuzz/regressions").join(target);
    if regressions.is_dir() {
        cmd.arg(&regressions);
    }
    run(cmd
        .arg("--")
        .arg(format!("-max_total_time={seconds}"))
        // Layers and Dockerfiles worth fuzzing are bigger than libFuzzer's
        // 4 KiB default.
        .arg("-max_len=16384")
        .env("RUSTC_BOOTSTRAP", "1")
        // The fuzz workspace builds into its own fuzz/target, with sanitizer
        // flags no other build shares.
        .env_remove("CARGO_TARGET_DIR"))
    .with_context(|| {
        format!("fuzz target `{target}` failed: a crash input is under fuzz/artifacts/{target}/; commit it to fuzz/regressions/{target}/")
    })?;
    Ok(Outcome::Ran)
}

fn rel(root: &Path, p: &Path) -> String {
    p.strip_prefix(root).unwrap_or(p).display().to_string()
}

/// Runs every target for `seconds` each; missing targets are reported, not
/// failures.
pub(crate) fn run_all(seconds: u64) -> Result<()> {
    util::ensure_cargo_fuzz()?;
    let mut missing = Vec::new();
    for t in TARGETS {
        if let Outcome::Missing = run_one(t, seconds)? {
            missing.push(*t);
        }
    }
    if !missing.is_empty() {
        eprintln!("fuzz: not available yet: {}", missing.join(", "));
    }
    Ok(())
}

/// `cargo xtask fuzz <target|all> [--seconds N]` (default 60 s).
pub(crate) fn main(args: &[String]) -> Result<()> {
    let mut target = None;
    let mut seconds = 60u64;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--seconds" => {
                let v = it.next().context("--seconds needs a value")?;
                seconds = v.parse().with_context(|| format!("bad --seconds {v:?}"))?;
            }
            s if s.starts_with("--seconds=") => {
                let v = &s["--seconds=".len()..];
                seconds = v.parse().with_context(|| format!("bad --seconds {v:?}"))?;
            }
            s if target.is_none() && !s.starts_with('-') => target = Some(s.to_owned()),
            other => bail!(
                "unexpected argument {other:?}; usage: cargo xtask fuzz <{}|all> [--seconds N]",
                TARGETS.join("|")
            ),
        }
    }
    let target = target.with_context(|| {
        format!(
            "usage: cargo xtask fuzz <{}|all> [--seconds N]",
            TARGETS.join("|")
        )
    })?;
    if target == "all" {
        return run_all(seconds);
    }
    if !TARGETS.contains(&target.as_str()) {
        bail!(
            "unknown fuzz target {target:?}: expected one of {}, all",
            TARGETS.join(", ")
        );
    }
    util::ensure_cargo_fuzz()?;
    match run_one(&target, seconds)? {
        Outcome::Ran => Ok(()),
        Outcome::Missing => bail!("fuzz target `{target}` is not available yet"),
    }
}
