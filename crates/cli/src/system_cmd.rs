//! `kiln version` and `kiln completion`: what this binary is, and shell
//! completion scripts generated from its own command line definition.

use std::io::Write as _;

use anyhow::Result;
use serde_json::json;

use crate::template::Format;

/// `kiln version`.
#[derive(Debug, clap::Args)]
pub(crate) struct VersionArgs {
    /// Format the output using the given Go template (e.g. '{{.Client.Version}}').
    #[arg(short = 'f', long)]
    format: Option<String>,
}

/// `kiln completion`.
#[derive(Debug, clap::Args)]
pub(crate) struct CompletionArgs {
    /// The shell to write a completion script for.
    #[arg(value_enum)]
    shell: clap_complete::Shell,
}

/// The OCI name of this binary's architecture (`amd64`, `arm64`, ...).
fn oci_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        other => other,
    }
}

/// What `version` reports: kiln has no daemon, so the engine that a Docker
/// user's `{{.Server.Version}}` asks for is this same binary.
fn version_info() -> serde_json::Value {
    let part = json!({
        "Platform": {"Name": "kiln"},
        "Version": env!("CARGO_PKG_VERSION"),
        "Os": std::env::consts::OS,
        "Arch": oci_arch(),
        "Daemonless": true,
    });
    json!({"Client": part.clone(), "Server": part})
}

pub(crate) fn version(args: &VersionArgs) -> Result<u8> {
    let info = version_info();
    let mut out = std::io::stdout().lock();
    if let Some(f) = &args.format {
        writeln!(out, "{}", Format::parse(f)?.render(&info)?)?;
        return Ok(0);
    }
    let c = &info["Client"];
    let field = |k: &str| c[k].as_str().unwrap_or_default().to_owned();
    writeln!(out, "Client: kiln")?;
    writeln!(out, " Version:           {}", field("Version"))?;
    writeln!(out, " OS/Arch:           {}/{}", field("Os"), field("Arch"))?;
    writeln!(
        out,
        " Daemon:            none (every command works on the store itself)"
    )?;
    Ok(0)
}

pub(crate) fn completion(args: &CompletionArgs, mut command: clap::Command) -> Result<u8> {
    let name = command.get_name().to_owned();
    clap_complete::generate(args.shell, &mut command, name, &mut std::io::stdout());
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_answers_docker_style_templates() {
        let info = version_info();
        let f = Format::parse("{{.Client.Version}} {{.Server.Version}} {{.Client.Os}}").unwrap();
        let v = env!("CARGO_PKG_VERSION");
        assert_eq!(f.render(&info).unwrap(), format!("{v} {v} linux"));
    }
}
