//! `cargo xtask demo`: starts a local registry, pushes a busybox base made
//! from Debian's busybox-static, then builds and runs the seed example with
//! kiln, rebuilds it to show `Using cache`, and says what it did. Steps whose
//! kiln command does not exist yet are reported and skipped.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, Result};

use crate::procs::Guard;
use crate::util;
use crate::{e2e, fixtures, registry};

/// The subcommands `kiln --help` lists.
pub(crate) fn kiln_commands(kiln: &Path) -> Result<BTreeSet<String>> {
    let help = util::output(Command::new(kiln).arg("--help"))?;
    Ok(parse_commands(&help))
}

/// Reads the `Commands:` section of clap's help text.
pub(crate) fn parse_commands(help: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut in_commands = false;
    for line in help.lines() {
        if line.trim_end() == "Commands:" {
            in_commands = true;
            continue;
        }
        if in_commands {
            if line.trim().is_empty() || !line.starts_with(' ') {
                break;
            }
            if let Some(word) = line.split_whitespace().next() {
                out.insert(word.trim_end_matches(',').to_owned());
            }
        }
    }
    out
}

/// Runs a kiln command with the demo's store, echoing its output live, and
/// returns whether it succeeded plus what it printed on stdout.
fn kiln(kiln: &Path, root: &Path, args: &[&str]) -> Result<(bool, String)> {
    let mut cmd = Command::new(kiln);
    cmd.args(args).env("KILN_ROOT", root).stdin(Stdio::null());
    println!("\n$ KILN_ROOT={} kiln {}", root.display(), args.join(" "));
    let out = cmd
        .stderr(Stdio::inherit())
        .output()
        .context("cannot start kiln")?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    print!("{stdout}");
    Ok((out.status.success(), stdout))
}

/// `cargo xtask demo`.
pub(crate) fn main() -> Result<()> {
    util::require_root("demo")?;
    let mut pkgs = util::FIXTURE_PACKAGES.to_vec();
    pkgs.extend(util::BUILD_PACKAGES);
    util::ensure_packages(&pkgs)?;
    println!("demo: building kiln");
    let target = util::target_dir()?;
    let kiln_bin = e2e::build_kiln(&target)?;

    let mut guard = Guard::default();
    let base = guard.temp_dir("kiln-demo-")?;
    let reg_dir = base.join("registry");
    std::fs::create_dir_all(&reg_dir)?;
    let reg = registry::start(&mut guard, &reg_dir, "registry", None)?;
    println!(
        "demo: started Debian's docker-registry on {} (storage in {})",
        reg.addr,
        reg_dir.display()
    );
    let work = base.join("fixtures");
    std::fs::create_dir_all(&work)?;
    let layout = fixtures::busybox_layout(&work)?;
    let base_ref = format!("{}/busybox:latest", reg.addr);
    fixtures::push(&layout, "latest", &reg.addr, "busybox:latest", false, None)?;
    println!(
        "demo: made a busybox base image from /bin/busybox (busybox-static) with umoci and pushed it to {base_ref}"
    );

    let root = base.join("kiln-root");
    std::fs::create_dir_all(&root)?;
    let ctx = base.join("hello");
    std::fs::create_dir_all(&ctx)?;
    let dockerfile =
        format!("FROM {base_ref}\nRUN echo hello > /hello.txt\nCMD [\"cat\",\"/hello.txt\"]\n");
    std::fs::write(ctx.join("Dockerfile"), &dockerfile)?;
    println!(
        "demo: the seed example, {}/Dockerfile:\n{dockerfile}",
        ctx.display()
    );

    let have = kiln_commands(&kiln_bin)?;
    let ctx_s = ctx.display().to_string();
    let mut done = Vec::new();
    let mut missing = Vec::new();
    let mut failed = Vec::new();
    let mut step =
        |cmd: &str, args: &[&str], what: &str, check: &dyn Fn(&str) -> bool| -> Result<()> {
            if !have.contains(cmd) {
                println!("\n(not available yet: kiln {cmd}) -- skipped: {what}");
                if !missing.iter().any(|m| m == cmd) {
                    missing.push(cmd.to_owned());
                }
                return Ok(());
            }
            let (ok, out) = kiln(&kiln_bin, &root, args)?;
            if ok && check(&out) {
                done.push(what.to_owned());
            } else {
                println!("demo: `kiln {cmd}` did not do what was expected ({what})");
                failed.push(what.to_owned());
            }
            Ok(())
        };
    step("pull", &["pull", &base_ref], "pull the base image", &|_| {
        true
    })?;
    step(
        "build",
        &[
            "build",
            "--network",
            "host",
            "-t",
            "demo/hello:latest",
            &ctx_s,
        ],
        "build demo/hello:latest",
        &|_| true,
    )?;
    step(
        "run",
        &["run", "--rm", "demo/hello:latest"],
        "run it (prints hello)",
        &|out| out.contains("hello"),
    )?;
    step(
        "build",
        &[
            "build",
            "--network",
            "host",
            "-t",
            "demo/hello:latest",
            &ctx_s,
        ],
        "rebuild (shows Using cache)",
        &|out| out.contains("Using cache"),
    )?;
    step("images", &["images"], "list images", &|_| true)?;

    println!("\ndemo summary:");
    println!("  done: start a registry on 127.0.0.1, make and push the busybox base");
    for d in &done {
        println!("  done: {d}");
    }
    for m in &missing {
        println!("  not available yet: kiln {m}");
    }
    for f in &failed {
        println!("  FAILED: {f}");
    }
    drop(guard);
    println!("demo: stopped the registry and removed {}", base.display());
    if !failed.is_empty() {
        anyhow::bail!("demo steps failed: {}", failed.join(", "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_clap_commands() {
        let help = "kiln: x\n\nUsage: kiln [OPTIONS] <COMMAND>\n\nCommands:\n  parse  Parse a Dockerfile\n  build  Build\n  help   Print this\n\nOptions:\n  -h, --help  Print help\n";
        let cmds = parse_commands(help);
        assert_eq!(cmds, ["build", "help", "parse"].map(String::from).into());
        assert!(parse_commands("no commands here").is_empty());
    }
}
