//! `cargo xtask`: kiln's task runner.
//!
//! - `cargo xtask ci [--from STAGE]`: installs what is missing, then fmt, clippy, doc, test,
//!   e2e and a fuzz smoke run (as root).
//! - `cargo xtask e2e [-- TEST-ARGS]`: local registries, fixture images, the
//!   e2e suite and every crate's privileged tests (as root).
//! - `cargo xtask demo`: a registry, a busybox base, and the seed example.
//! - `cargo xtask fuzz <parse|expand|unpack|tree_ops|all> [--seconds N]`.
//! - `cargo xtask bench <pull|snapshot|build|cache|platform|run|all>`.
//! - `cargo xtask tidy`: architecture and style checks (also a `#[test]`).

mod bench;
mod ci;
mod demo;
mod e2e;
mod fixtures;
mod fuzz;
mod procs;
mod registry;
mod tidy;
mod util;

use std::process::ExitCode;

const USAGE: &str = "usage: cargo xtask <task> [args]

tasks:
  ci [--from STAGE]                  everything CI runs: setup, fmt, clippy, doc, test, e2e, fuzz (root)
  e2e [-- TEST-ARGS]                 registries + fixtures, then the e2e and privileged tests (root)
  demo                               local registry, busybox base, build and run the seed example (root)
  fuzz <parse|expand|unpack|tree_ops|all> [--seconds N]
  bench <pull|snapshot|build|cache|platform|run|all> [--runs N]
  tidy                               dependency-edge, //! header and unsafe checks";

fn run(args: &[String]) -> anyhow::Result<()> {
    let Some((task, rest)) = args.split_first() else {
        anyhow::bail!("no task given\n{USAGE}");
    };
    match task.as_str() {
        "ci" => ci::main(rest),
        "e2e" => {
            let rest = match rest.split_first() {
                Some((dd, tail)) if dd == "--" => tail,
                _ => rest,
            };
            e2e::main(rest)
        }
        "demo" => demo::main(),
        "bench" => bench::main(rest),
        "fuzz" => fuzz::main(rest),
        "tidy" => tidy::main(),
        "-h" | "--help" | "help" => {
            println!("{USAGE}");
            Ok(())
        }
        other => anyhow::bail!("unknown task {other:?}\n{USAGE}"),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
