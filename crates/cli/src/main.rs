//! The `kiln` binary: thin glue over kiln's library crates.
//!
//! `main` parses the command line, dispatches to one module per command
//! family, and turns the outcome into an exit status in one place.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod parse_cmd;

/// kiln: a daemonless, Docker-compatible image builder and container runtime.
#[derive(Debug, Parser)]
#[command(name = "kiln", version, about, propagate_version = true)]
struct Cli {
    /// Where kiln keeps images, layers and containers.
    #[arg(long, global = true, env = "KILN_ROOT", default_value = "/var/lib/kiln")]
    root: std::path::PathBuf,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Parse a Dockerfile and print its syntax tree.
    Parse(parse_cmd::ParseArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Parse(args) => parse_cmd::run(&args),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            eprintln!("kiln: {err:#}");
            ExitCode::from(125)
        }
    }
}
