//! `kiln version`, `kiln info` and `kiln completion`: what this binary is,
//! what this machine and store give it, and shell completion scripts
//! generated from its own command line definition.

use std::io::Write as _;

use anyhow::Result;
use kiln_engine::{Engine, rootless};
use serde_json::json;

use crate::template::Format;

/// `kiln version`.
#[derive(Debug, clap::Args)]
pub(crate) struct VersionArgs {
    /// Format the output using the given Go template (e.g. '{{.Client.Version}}').
    #[arg(short = 'f', long)]
    format: Option<String>,
}

/// `kiln info`.
#[derive(Debug, clap::Args)]
pub(crate) struct InfoArgs {
    /// Format the output using the given Go template (e.g. '{{.Driver}}').
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

/// The cgroup version as Docker reports it: `2` on a unified hierarchy,
/// `1` on v1 and on hybrid hosts (v1 controllers, v2 only at `unified`).
fn cgroup_version(mountinfo: &str) -> &'static str {
    let unified = mountinfo.lines().any(|l| {
        let mut fields = l.split(' ');
        let mount_point = fields.nth(4);
        let fstype = l.split(" - ").nth(1).and_then(|t| t.split(' ').next());
        mount_point == Some("/sys/fs/cgroup") && fstype == Some("cgroup2")
    });
    if unified { "2" } else { "1" }
}

/// `PRETTY_NAME` of an os-release file.
fn os_name(os_release: &str) -> String {
    os_release
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim_matches('"').to_owned())
        .unwrap_or_else(|| "Linux".to_owned())
}

/// `MemTotal` of /proc/meminfo, in bytes.
fn mem_total(meminfo: &str) -> u64 {
    meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Docker's binary size format (`23.47GiB`).
fn binary_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    format!("{}{}", (v * 100.0).round() / 100.0, UNITS[unit])
}

fn host_file(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// What `info` reports, with Docker's field names where Docker has the fact.
fn info_value(app: &mut Engine) -> Result<serde_json::Value> {
    let containers = app.containers()?.list()?;
    // As Docker counts them: a paused container is paused, not running.
    let (mut running, mut paused) = (0, 0);
    for c in containers.iter().filter(|c| app.container_running(c)) {
        if app.container_paused(c) {
            paused += 1;
        } else {
            running += 1;
        }
    }
    let images = app.store.list_images()?.len();
    let driver = app.snapshotter()?.name().to_owned();
    let mut security = vec!["name=seccomp,profile=builtin".to_owned()];
    if rootless() {
        security.push("name=rootless".to_owned());
    }
    let insecure = app.insecure_registries()?;
    Ok(json!({
        "Containers": containers.len(),
        "ContainersRunning": running,
        "ContainersPaused": paused,
        "ContainersStopped": containers.len() - running - paused,
        "Images": images,
        "Driver": driver,
        "LoggingDriver": "json-file",
        "CgroupDriver": "cgroupfs",
        "CgroupVersion": cgroup_version(&host_file("/proc/self/mountinfo")),
        "KernelVersion": host_file("/proc/sys/kernel/osrelease").trim(),
        "OperatingSystem": os_name(&host_file("/etc/os-release")),
        "OSType": std::env::consts::OS,
        "Architecture": std::env::consts::ARCH,
        "NCPU": std::thread::available_parallelism().map_or(1, usize::from),
        "MemTotal": mem_total(&host_file("/proc/meminfo")),
        "Name": host_file("/proc/sys/kernel/hostname").trim(),
        "DockerRootDir": app.root().display().to_string(),
        "ServerVersion": env!("CARGO_PKG_VERSION"),
        "SecurityOptions": security,
        "Rootless": rootless(),
        "DefaultRuntime": "kiln",
        "RegistryConfig": {"InsecureRegistryCIDRs": ["127.0.0.0/8"], "InsecureRegistries": insecure},
        "Warnings": [],
    }))
}

pub(crate) fn info(app: &mut Engine, args: &InfoArgs) -> Result<u8> {
    let v = info_value(app)?;
    let mut out = std::io::stdout().lock();
    if let Some(f) = &args.format {
        writeln!(out, "{}", Format::parse(f)?.render(&v)?)?;
        return Ok(0);
    }
    let s = |k: &str| match &v[k] {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    writeln!(out, "Server:")?;
    writeln!(out, " Containers: {}", s("Containers"))?;
    writeln!(out, "  Running: {}", s("ContainersRunning"))?;
    writeln!(out, "  Paused: {}", s("ContainersPaused"))?;
    writeln!(out, "  Stopped: {}", s("ContainersStopped"))?;
    writeln!(out, " Images: {}", s("Images"))?;
    writeln!(out, " Server Version: kiln {}", s("ServerVersion"))?;
    writeln!(out, " Storage Driver: {}", s("Driver"))?;
    writeln!(out, " Logging Driver: {}", s("LoggingDriver"))?;
    writeln!(out, " Cgroup Driver: {}", s("CgroupDriver"))?;
    writeln!(out, " Cgroup Version: {}", s("CgroupVersion"))?;
    writeln!(out, " Security Options:")?;
    for o in v["SecurityOptions"].as_array().into_iter().flatten() {
        writeln!(out, "  {}", o.as_str().unwrap_or_default())?;
    }
    writeln!(out, " Kernel Version: {}", s("KernelVersion"))?;
    writeln!(out, " Operating System: {}", s("OperatingSystem"))?;
    writeln!(out, " OSType: {}", s("OSType"))?;
    writeln!(out, " Architecture: {}", s("Architecture"))?;
    writeln!(out, " CPUs: {}", s("NCPU"))?;
    let mem = v["MemTotal"].as_u64().unwrap_or(0);
    writeln!(out, " Total Memory: {}", binary_size(mem))?;
    writeln!(out, " Name: {}", s("Name"))?;
    writeln!(out, " Docker Root Dir: {}", s("DockerRootDir"))?;
    writeln!(out, " Rootless: {}", s("Rootless"))?;
    writeln!(out, " Insecure Registries:")?;
    writeln!(out, "  127.0.0.0/8")?;
    for r in v["RegistryConfig"]["InsecureRegistries"]
        .as_array()
        .into_iter()
        .flatten()
    {
        writeln!(out, "  {}", r.as_str().unwrap_or_default())?;
    }
    writeln!(
        out,
        " Daemon: none (every command works on the store itself)"
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
    fn cgroup_version_reads_the_mount_table() {
        let hybrid = "30 23 0:26 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro\n\
                      31 30 0:27 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n";
        assert_eq!(cgroup_version(hybrid), "1");
        let unified = "30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw\n";
        assert_eq!(cgroup_version(unified), "2");
    }

    #[test]
    fn host_facts_parse_as_docker_shows_them() {
        assert_eq!(
            os_name("NAME=x\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n"),
            "Debian GNU/Linux 12 (bookworm)"
        );
        assert_eq!(
            mem_total("MemTotal:       24609836 kB\n"),
            24_609_836 * 1024
        );
        assert_eq!(binary_size(24_609_836 * 1024), "23.47GiB");
        assert_eq!(binary_size(512), "512B");
    }

    #[test]
    fn version_answers_docker_style_templates() {
        let info = version_info();
        let f = Format::parse("{{.Client.Version}} {{.Server.Version}} {{.Client.Os}}").unwrap();
        let v = env!("CARGO_PKG_VERSION");
        assert_eq!(f.render(&info).unwrap(), format!("{v} {v} linux"));
    }
}
