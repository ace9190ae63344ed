//! `kiln volume create|ls|inspect|rm|prune`, as Docker's local driver.
//! The volume store is kiln-engine's (`kiln_engine::volume`); the volumes
//! of `kiln create`/`run` are the `volumes` helper's.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::Result;
use kiln_engine::Engine;

/// `kiln volume`.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum VolumeCommand {
    /// Create a volume.
    Create(CreateArgs),
    /// List volumes.
    #[command(visible_alias = "list")]
    Ls(LsArgs),
    /// Display detailed information on one or more volumes.
    Inspect(InspectArgs),
    /// Remove one or more volumes.
    #[command(visible_alias = "remove")]
    Rm(RmArgs),
    /// Remove unused local volumes.
    Prune(PruneArgs),
}

/// `kiln volume create`.
#[derive(Debug, clap::Args)]
pub(crate) struct CreateArgs {
    /// The volume's name (a random one when none is given).
    name: Option<String>,
    /// The volume's name.
    #[arg(long = "name", conflicts_with = "name")]
    name_flag: Option<String>,
    /// Volume driver name (only `local`).
    #[arg(short, long, default_value = "local")]
    driver: String,
    /// Set metadata for a volume.
    #[arg(long = "label")]
    label: Vec<String>,
    /// Set driver specific options (kept; kiln's local driver uses none).
    #[arg(short, long = "opt")]
    opt: Vec<String>,
}

/// `kiln volume ls`.
#[derive(Debug, clap::Args)]
pub(crate) struct LsArgs {
    /// Only display volume names.
    #[arg(short, long)]
    quiet: bool,
    /// Pretty-print volumes using a Go template.
    #[arg(long)]
    format: Option<String>,
    /// Provide filter values (`dangling=true|false`, `name=...`, `label=KEY[=VALUE]`, `driver=local`).
    #[arg(short, long)]
    filter: Vec<String>,
}

/// `kiln volume inspect`.
#[derive(Debug, clap::Args)]
pub(crate) struct InspectArgs {
    /// Format the output using the given Go template.
    #[arg(short, long)]
    format: Option<String>,
    /// Volumes.
    #[arg(required = true)]
    volumes: Vec<String>,
}

/// `kiln volume rm`.
#[derive(Debug, clap::Args)]
pub(crate) struct RmArgs {
    /// Do not complain about volumes that do not exist.
    #[arg(short, long)]
    force: bool,
    /// Volumes.
    #[arg(required = true)]
    volumes: Vec<String>,
}

/// `kiln volume prune`.
#[derive(Debug, clap::Args)]
pub(crate) struct PruneArgs {
    /// Do not prompt for confirmation.
    #[arg(short, long)]
    force: bool,
    /// Remove all unused volumes, not just anonymous ones.
    #[arg(short, long)]
    all: bool,
}

pub(crate) fn run(app: &mut Engine, cmd: &VolumeCommand) -> Result<u8> {
    match cmd {
        VolumeCommand::Create(a) => create(app, a),
        VolumeCommand::Ls(a) => ls(app, a),
        VolumeCommand::Inspect(a) => inspect(app, a),
        VolumeCommand::Rm(a) => rm(app, a),
        VolumeCommand::Prune(a) => prune(app, a),
    }
}

fn key_values(items: &[String]) -> BTreeMap<String, String> {
    items
        .iter()
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap_or((l.as_str(), ""));
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

fn create(app: &mut Engine, a: &CreateArgs) -> Result<u8> {
    if a.driver != "local" {
        eprintln!(
            "Error response from kiln: create: volume driver {:?} is not supported: kiln has the local driver only",
            a.driver
        );
        return Ok(1);
    }
    // A volume made here is never anonymous (prune keeps it without -a),
    // even when kiln chooses its name.
    let name = match a.name.clone().or(a.name_flag.clone()) {
        Some(n) => n,
        None => kiln_engine::container::new_id()?.0,
    };
    match app.create_volume(Some(&name), key_values(&a.label), key_values(&a.opt)) {
        Ok((rec, _)) => {
            println!("{}", rec.name);
            Ok(0)
        }
        Err(e) => {
            eprintln!("Error response from kiln: {}", kiln_engine::chain(&e));
            Ok(1)
        }
    }
}

/// A volume as Docker's `volume inspect` shows it.
fn inspected(app: &Engine, v: &kiln_engine::volume::VolumeRecord) -> serde_json::Value {
    serde_json::json!({
        "CreatedAt": v.created_at,
        "Driver": "local",
        "Labels": v.labels,
        "Mountpoint": app.volume_data(&v.name),
        "Name": v.name,
        "Options": v.options,
        "Scope": "local",
    })
}

fn ls(app: &mut Engine, a: &LsArgs) -> Result<u8> {
    let mut list = app.volumes()?;
    let in_use: BTreeSet<String> = app
        .containers()?
        .list()?
        .iter()
        .flat_map(|c| c.volumes.iter().filter_map(|v| v.volume.clone()))
        .collect();
    for f in &a.filter {
        let (k, want) = f
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("bad format of filter (expected name=value)"))?;
        list.retain(|v| match k {
            "dangling" => (want == "true" || want == "1") != in_use.contains(&v.name),
            "name" => v.name.contains(want),
            "driver" => want == "local",
            "label" => {
                let (lk, lv) = want.split_once('=').unwrap_or((want, ""));
                v.labels
                    .get(lk)
                    .is_some_and(|x| !want.contains('=') || x == lv)
            }
            _ => true,
        });
        if !matches!(k, "dangling" | "name" | "driver" | "label") {
            anyhow::bail!("invalid filter '{k}'");
        }
    }
    if a.quiet {
        for v in &list {
            println!("{}", v.name);
        }
        return Ok(0);
    }
    let format = a
        .format
        .as_deref()
        .unwrap_or("table {{.Driver}}\t{{.Name}}");
    let t = crate::template::Format::parse(format)?;
    let rows: Vec<serde_json::Value> = list
        .iter()
        .map(|v| {
            let labels: Vec<String> = v.labels.iter().map(|(k, x)| format!("{k}={x}")).collect();
            serde_json::json!({
                "Driver": "local",
                "Name": v.name,
                "Scope": "local",
                "Mountpoint": app.volume_data(&v.name),
                "Labels": labels.join(","),
                "Links": if in_use.contains(&v.name) { "1" } else { "0" },
                "Size": "N/A",
            })
        })
        .collect();
    let headers = [
        ("Driver", "DRIVER"),
        ("Name", "VOLUME NAME"),
        ("Scope", "SCOPE"),
        ("Mountpoint", "MOUNTPOINT"),
        ("Labels", "LABELS"),
        ("Links", "LINKS"),
        ("Size", "SIZE"),
    ];
    print!("{}", t.render_rows(&headers, &rows)?);
    Ok(0)
}

fn inspect(app: &mut Engine, a: &InspectArgs) -> Result<u8> {
    let mut out = Vec::new();
    let mut code = 0;
    for name in &a.volumes {
        match app.volume(name)? {
            Some(v) => out.push(inspected(app, &v)),
            None => {
                eprintln!("Error: No such volume: {name}");
                code = 1;
            }
        }
    }
    match &a.format {
        Some(f) => {
            let t = crate::template::Format::parse(f)?;
            for v in &out {
                println!("{}", t.render(v)?);
            }
        }
        None => println!("{}", serde_json::to_string_pretty(&out)?),
    }
    Ok(code)
}

fn rm(app: &mut Engine, a: &RmArgs) -> Result<u8> {
    let mut code = 0;
    for name in &a.volumes {
        match app.remove_volume(name, a.force) {
            Ok(()) => println!("{name}"),
            Err(e) => {
                eprintln!("Error response from kiln: {}", kiln_engine::chain(&e));
                code = 1;
            }
        }
    }
    Ok(code)
}

fn prune(app: &mut Engine, a: &PruneArgs) -> Result<u8> {
    if !a.force {
        let what = if a.all {
            "all local volumes"
        } else {
            "anonymous local volumes"
        };
        if !crate::format::confirm(&format!(
            "WARNING! This will remove {what} not used by at least one container.\nAre you sure you want to continue?"
        ))? {
            return Ok(0);
        }
    }
    let mut deleted = Vec::new();
    let mut freed = 0;
    for v in app.volumes()? {
        if (!v.anonymous && !a.all) || !app.volume_users(&v.name)?.is_empty() {
            continue;
        }
        let size = app.volume_size(&v.name);
        app.remove_volume(&v.name, true)?;
        freed += size;
        deleted.push(v.name);
    }
    if !deleted.is_empty() {
        println!("Deleted Volumes:");
        for n in &deleted {
            println!("{n}");
        }
        println!();
    }
    println!(
        "Total reclaimed space: {}",
        crate::format::human_size(freed)
    );
    Ok(0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes_as_dockers_human_size() {
        assert_eq!(crate::format::human_size(0), "0B");
        assert_eq!(crate::format::human_size(4096), "4.096kB");
        assert_eq!(crate::format::human_size(1_234_567), "1.235MB");
        assert_eq!(crate::format::human_size(999), "999B");
    }
}
