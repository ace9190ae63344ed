//! Container commands: `run`, `create`, `start`, `ps`, `logs`, `stop`,
//! `kill`, `wait`, `rm`, `exec`, `container inspect`.

use std::io::{Read as _, Write as _};
use std::time::{Duration, SystemTime};

use anyhow::{Context as _, Result, bail};
use kiln_content::{Records, Reference};
use kiln_runtime::logfile::{LineSplitter, LogEntry, LogStream};
use kiln_runtime::{Runtime, Status, StdioConfig};

use crate::format;
use kiln_engine::Engine;
use kiln_engine::container::{self, ContainerRecord, VolumeSpec};

/// Options shared by `kiln run` and `kiln create`. As Docker's: `-h` is
/// `--hostname` (help is `--help` only), a flag given twice is taken once
/// (the last value wins), and an option's value may start with `-`
/// (`-u -1` is a user, refused later as Docker refuses it).
#[derive(Debug, Clone, clap::Args)]
#[command(disable_help_flag = true, args_override_self = true)]
pub(crate) struct CreateArgs {
    /// Print help.
    #[arg(long, action = clap::ArgAction::Help)]
    help: Option<bool>,
    /// Assign a name to the container.
    #[arg(long, allow_hyphen_values = true)]
    name: Option<String>,
    /// Set environment variables (`KEY=VALUE`, or `KEY` to copy the host's).
    #[arg(
        short,
        long = "env",
        value_name = "KEY=VALUE",
        allow_hyphen_values = true,
        value_parser = env_var
    )]
    env: Vec<String>,
    /// Read environment variables from a file.
    #[arg(long = "env-file", value_name = "FILE", allow_hyphen_values = true)]
    env_file: Vec<String>,
    /// Working directory inside the container.
    #[arg(short, long, allow_hyphen_values = true)]
    workdir: Option<String>,
    /// User (`name`, `uid`, `uid:gid`, `name:group`).
    #[arg(short, long, allow_hyphen_values = true)]
    user: Option<String>,
    /// Overwrite the image's entrypoint.
    #[arg(long, allow_hyphen_values = true)]
    entrypoint: Option<String>,
    /// Network: `none` (default: a namespace with only `lo`) or `host`.
    #[arg(
        long,
        alias = "net",
        default_value = "none",
        allow_hyphen_values = true
    )]
    network: String,
    /// Publish a port: refused, kiln creates no bridge network to publish
    /// from (use `--network host`).
    #[arg(
        short = 'p',
        long = "publish",
        value_name = "PORTS",
        allow_hyphen_values = true
    )]
    publish: Vec<String>,
    /// Publish all exposed ports: refused, as `--publish`.
    #[arg(short = 'P', long = "publish-all")]
    publish_all: bool,
    /// Bind mount a host directory (`HOST:CONTAINER[:ro]`).
    #[arg(
        short,
        long = "volume",
        value_name = "HOST:CONTAINER[:ro]",
        allow_hyphen_values = true
    )]
    volume: Vec<String>,
    /// Mount a tmpfs at this path.
    #[arg(long, allow_hyphen_values = true)]
    tmpfs: Vec<String>,
    /// Mount the root filesystem read-only.
    #[arg(long)]
    read_only: bool,
    /// Memory limit (`512m`, `1g`; at least 6 MB).
    #[arg(short, long, allow_hyphen_values = true)]
    memory: Option<String>,
    /// Maximum number of processes.
    #[arg(long, allow_hyphen_values = true)]
    pids_limit: Option<i64>,
    /// Number of CPUs (`1.5`).
    #[arg(long, allow_hyphen_values = true)]
    cpus: Option<f64>,
    /// Relative CPU weight.
    #[arg(long, allow_hyphen_values = true)]
    cpu_shares: Option<u64>,
    /// Container hostname (default: the short container ID).
    #[arg(short = 'h', long, allow_hyphen_values = true)]
    hostname: Option<String>,
    /// Keep standard input open.
    #[arg(short, long)]
    interactive: bool,
    /// Allocate a pseudo-terminal.
    #[arg(short, long)]
    tty: bool,
    /// Run a tiny init as PID 1 that reaps zombies and forwards signals.
    #[arg(long)]
    init: bool,
    /// Add Linux capabilities.
    #[arg(long, allow_hyphen_values = true)]
    cap_add: Vec<String>,
    /// Drop Linux capabilities.
    #[arg(long, allow_hyphen_values = true)]
    cap_drop: Vec<String>,
    /// Security options: `no-new-privileges`, `seccomp=unconfined`.
    #[arg(long, allow_hyphen_values = true)]
    security_opt: Vec<String>,
    /// Platform of the image to pull when missing.
    #[arg(long, allow_hyphen_values = true)]
    platform: Option<String>,
    /// Remove the container when it exits.
    #[arg(long)]
    rm: bool,
    /// Add a line to /etc/hosts (`NAME:IP`).
    #[arg(long = "add-host", value_name = "NAME:IP", allow_hyphen_values = true)]
    add_host: Vec<String>,
    /// DNS server for /etc/resolv.conf.
    #[arg(long, allow_hyphen_values = true)]
    dns: Vec<String>,
    /// DNS search domain for /etc/resolv.conf (`.`: none).
    #[arg(long = "dns-search", allow_hyphen_values = true)]
    dns_search: Vec<String>,
    /// DNS resolver option for /etc/resolv.conf (`ndots:2`).
    #[arg(long = "dns-option", alias = "dns-opt", allow_hyphen_values = true)]
    dns_option: Vec<String>,
    /// Signal that stops the container (default: the image's, else SIGTERM).
    #[arg(long, allow_hyphen_values = true)]
    stop_signal: Option<String>,
    /// Seconds `kiln stop` waits before SIGKILL (default 10).
    #[arg(long, allow_hyphen_values = true)]
    stop_timeout: Option<u64>,
    /// Size of /dev/shm (`64m`).
    #[arg(long, allow_hyphen_values = true)]
    shm_size: Option<String>,
    /// Write the container ID to this file (which must not exist).
    #[arg(long, allow_hyphen_values = true)]
    cidfile: Option<std::path::PathBuf>,
    /// Set metadata on the container (`KEY=VALUE`).
    #[arg(short = 'l', long, allow_hyphen_values = true)]
    label: Vec<String>,
    /// Read labels from a file (`KEY=VALUE` lines).
    #[arg(long = "label-file", allow_hyphen_values = true)]
    label_file: Vec<String>,
    /// Memory plus swap limit (`-1`: unlimited swap; default twice `--memory`).
    #[arg(long, allow_hyphen_values = true)]
    memory_swap: Option<String>,
    /// Resource limit (`nofile=1024:2048`, `nproc=100`).
    #[arg(long, allow_hyphen_values = true)]
    ulimit: Vec<String>,
    /// Mount: `type=bind,source=/x,target=/y[,readonly]` or
    /// `type=tmpfs,target=/y[,tmpfs-size=64m][,tmpfs-mode=1770]`.
    #[arg(long, allow_hyphen_values = true)]
    mount: Vec<String>,
    /// Namespaced kernel parameter (`net.ipv4.ip_forward=1`, `kernel.shmmax=...`).
    #[arg(long, allow_hyphen_values = true)]
    sysctl: Vec<String>,
    /// Give the container every capability, no seccomp filter, a writable
    /// /sys and the host's devices.
    #[arg(
        long,
        num_args = 0..=1,
        require_equals = true,
        default_value_t = false,
        default_missing_value = "true",
        action = clap::ArgAction::Set
    )]
    privileged: bool,
    /// Add a host device (`/dev/sdc[:/dev/xvdc][:rwm]`).
    #[arg(
        long,
        value_name = "HOST[:CONTAINER][:PERMS]",
        allow_hyphen_values = true
    )]
    device: Vec<String>,
    /// Additional group for the container's processes (name or number).
    #[arg(long = "group-add", value_name = "GROUP", allow_hyphen_values = true)]
    group_add: Vec<String>,
    /// Disable the OOM killer (cgroup v1 only).
    #[arg(
        long,
        num_args = 0..=1,
        require_equals = true,
        default_value_t = false,
        default_missing_value = "true",
        action = clap::ArgAction::Set
    )]
    oom_kill_disable: bool,
    /// CPUs the container may run on (`0-3`, `0,1`).
    #[arg(long, value_name = "CPUS", allow_hyphen_values = true)]
    cpuset_cpus: Option<String>,
    /// Pull the image: `missing` (default), `always` or `never`.
    #[arg(long, default_value = "missing", allow_hyphen_values = true)]
    pull: String,
    /// User namespace: `--userns` (or `--userns=remap`) maps the container's root to
    /// an unprivileged host range (`kiln` in /etc/subuid, else
    /// 1000000000:65536); `--userns=host` keeps the host's ids. Rootless kiln
    /// always uses one.
    #[arg(
        long,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "remap",
        value_name = "MODE"
    )]
    userns: Option<String>,
    /// The image.
    image: String,
    /// The command and its arguments (default: the image's).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

/// `-e`: Docker refuses an empty name (`-e ""`, `-e =x`).
fn env_var(s: &str) -> std::result::Result<String, String> {
    let name = s.split('=').next().unwrap_or_default();
    if name.trim().is_empty() {
        return Err(format!("invalid environment variable: {s}"));
    }
    Ok(s.to_owned())
}

/// `kiln run`.
#[derive(Debug, clap::Args)]
#[command(disable_help_flag = true, args_override_self = true)]
pub(crate) struct RunArgs {
    /// Run in the background and print the container ID.
    #[arg(short, long)]
    detach: bool,
    #[command(flatten)]
    create: CreateArgs,
}

/// `kiln start`.
#[derive(Debug, clap::Args)]
pub(crate) struct StartArgs {
    /// Attach to the container's output and wait for it.
    #[arg(short, long)]
    attach: bool,
    /// Attach the container's stdin (implies `--attach`; the container
    /// must have been created with `-i`).
    #[arg(short, long)]
    interactive: bool,
    /// Containers.
    #[arg(required = true)]
    containers: Vec<String>,
}

/// `kiln ps`.
#[derive(Debug, clap::Args)]
pub(crate) struct PsArgs {
    /// Show all containers (default: running ones).
    #[arg(short, long)]
    all: bool,
    /// Print only IDs.
    #[arg(short, long)]
    quiet: bool,
    /// Do not truncate output.
    #[arg(long)]
    no_trunc: bool,
    /// Show the N last created containers, in every state.
    #[arg(short = 'n', long, allow_hyphen_values = true, default_value_t = -1)]
    last: i64,
    /// Show the last created container, in any state (`-n 1`).
    #[arg(short, long)]
    latest: bool,
    /// Filter output (`status=`, `name=`, `id=`, `label=KEY[=VALUE]`,
    /// `ancestor=`, `exited=CODE`; repeatable: different keys must all
    /// match, the same key any of its values).
    #[arg(short, long = "filter", value_name = "FILTER")]
    filter: Vec<String>,
    /// Format the output using the given Go template (`table` for a table
    /// of the chosen fields: `.ID`, `.Image`, `.Command`, `.CreatedAt`,
    /// `.RunningFor`, `.Status`, `.State`, `.Names`, `.Labels`, `.Ports`).
    #[arg(long)]
    format: Option<String>,
}

/// `ps --filter` conditions, grouped by key as Docker groups them.
struct PsFilter(std::collections::BTreeMap<String, Vec<String>>);

impl PsFilter {
    fn parse(items: &[String]) -> Result<PsFilter> {
        let mut map: std::collections::BTreeMap<String, Vec<String>> = Default::default();
        for item in items {
            let Some((key, value)) = item.split_once('=') else {
                bail!("Bad format of filter (expected name=value)");
            };
            if !matches!(
                key,
                "status" | "name" | "id" | "label" | "ancestor" | "exited"
            ) {
                bail!("invalid filter '{key}'");
            }
            if key == "status"
                && !matches!(
                    value,
                    "created"
                        | "restarting"
                        | "running"
                        | "removing"
                        | "paused"
                        | "exited"
                        | "dead"
                )
            {
                bail!(
                    "invalid filter 'status={value}': invalid status, must be one of created, restarting, running, removing, paused, exited, dead"
                );
            }
            if key == "exited" && value.parse::<i32>().is_err() {
                bail!("invalid filter 'exited={value}'");
            }
            map.entry(key.to_owned())
                .or_default()
                .push(value.to_owned());
        }
        Ok(PsFilter(map))
    }

    /// Whether a container passes: every key matches one of its values.
    fn matches(&self, rec: &ContainerRecord, state: &str, exit: Option<i32>) -> bool {
        self.0.iter().all(|(key, values)| {
            values.iter().any(|v| match key.as_str() {
                "status" => v == state,
                "name" => rec.name.contains(v.as_str()),
                "id" => rec.id.starts_with(v.as_str()),
                "label" => match v.split_once('=') {
                    Some((k, want)) => rec.labels.get(k).is_some_and(|have| have == want),
                    None => rec.labels.contains_key(v.as_str()),
                },
                "ancestor" => {
                    rec.image == *v
                        || rec.image_id.to_string() == *v
                        || rec.image_id.hex().starts_with(v.as_str())
                }
                "exited" => state == "exited" && v.parse::<i32>().ok() == exit,
                _ => false,
            })
        })
    }
}

/// `kiln logs`.
#[derive(Debug, clap::Args)]
pub(crate) struct LogsArgs {
    /// Follow the output until the container exits.
    #[arg(short, long)]
    follow: bool,
    /// Number of lines to show from the end of the log (`all`: every line).
    #[arg(short = 'n', long, default_value = "all", allow_hyphen_values = true)]
    tail: String,
    /// Show each line's time (RFC 3339, nanoseconds).
    #[arg(short, long)]
    timestamps: bool,
    /// Only lines since this time: a timestamp (`2026-01-02T15:04:05Z`,
    /// `2026-01-02`), Unix seconds, or a duration before now (`10m`, `1h30m`).
    #[arg(long, allow_hyphen_values = true)]
    since: Option<String>,
    /// Only lines before this time (same forms as `--since`).
    #[arg(long, allow_hyphen_values = true)]
    until: Option<String>,
    /// The container.
    container: String,
}

/// Which log lines `kiln logs` shows, and how.
#[derive(Debug, Default, Clone, Copy)]
struct LogView {
    since: Option<SystemTime>,
    until: Option<SystemTime>,
    timestamps: bool,
}

impl LogView {
    /// Whether an entry written at `time` is shown (a line without a
    /// readable time always is).
    fn shows(&self, time: Option<SystemTime>) -> bool {
        let Some(t) = time else { return true };
        self.since.is_none_or(|s| t >= s) && self.until.is_none_or(|u| t <= u)
    }
}

/// `--tail`: `None` for every line. As Docker, anything but a
/// non-negative number (`all`, `-1`, `random`) means every line.
fn tail_count(s: &str) -> Option<usize> {
    s.parse::<usize>().ok()
}

/// Docker's `--since`/`--until` forms (its `timetypes.GetTimestamp`):
/// Unix seconds (`1700000000`, `1700000000.5`), RFC 3339 with or without a
/// zone (then UTC) or a bare date, or a Go duration before `now` (`10m`,
/// `1h30m`, `1.5s`).
fn parse_log_time(flag: &str, value: &str, now: SystemTime) -> Result<SystemTime> {
    let bad = || {
        anyhow::anyhow!(
            "invalid value for \"{flag}\": {value:?} is no timestamp, Unix time or duration"
        )
    };
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        let secs: f64 = value.parse().map_err(|_| bad())?;
        return Ok(std::time::UNIX_EPOCH + Duration::from_secs_f64(secs));
    }
    if let Some(d) = parse_go_duration(value) {
        return Ok(now.checked_sub(d).unwrap_or(std::time::UNIX_EPOCH));
    }
    let full = match value.len() {
        10 => format!("{value}T00:00:00Z"),
        19 => format!("{value}Z"),
        _ if !value.ends_with(['Z', 'z'])
            && value.len() > 19
            && !value[19..].contains(['+', '-']) =>
        {
            format!("{value}Z")
        }
        _ => value.to_owned(),
    };
    full.parse::<kiln_image::Timestamp>()
        .map(|t| t.to_system_time())
        .map_err(|_| bad())
}

/// A Go duration (`300ms`, `1.5h`, `2h45m`); `None` when it is none.
fn parse_go_duration(s: &str) -> Option<Duration> {
    let mut total = 0f64;
    let mut rest = s;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let n: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += n * scale;
        rest = &rest[unit_len..];
    }
    Some(Duration::from_secs_f64(total))
}

/// A log entry's time as `docker logs -t` prints it: RFC 3339 in UTC with
/// exactly nine fractional digits.
fn fixed_nanos(t: SystemTime) -> String {
    let s = kiln_image::Timestamp::from_system_time(t).to_string();
    let base = s.trim_end_matches('Z');
    let (whole, frac) = base.split_once('.').unwrap_or((base, ""));
    format!("{whole}.{frac:0<9}Z")
}

/// `kiln stop`.
#[derive(Debug, clap::Args)]
pub(crate) struct StopArgs {
    /// Seconds to wait before killing the container (default: the
    /// container's `--stop-timeout`, else 10).
    #[arg(short, long, visible_alias = "timeout")]
    time: Option<u64>,
    /// Signal to send first (default: the image's StopSignal, else SIGTERM).
    #[arg(short, long)]
    signal: Option<String>,
    /// Containers.
    #[arg(required = true)]
    containers: Vec<String>,
}

/// `kiln restart`.
#[derive(Debug, clap::Args)]
pub(crate) struct RestartArgs {
    /// Seconds to wait before killing the container (default: the
    /// container's `--stop-timeout`, else 10).
    #[arg(short, long, visible_alias = "timeout")]
    time: Option<u64>,
    /// Signal to send first (default: the image's StopSignal, else SIGTERM).
    #[arg(short, long)]
    signal: Option<String>,
    /// Containers.
    #[arg(required = true)]
    containers: Vec<String>,
}

/// `kiln rename`.
#[derive(Debug, clap::Args)]
pub(crate) struct RenameArgs {
    /// The container (name or ID).
    container: String,
    /// Its new name.
    new_name: String,
}

/// `kiln port`.
#[derive(Debug, clap::Args)]
pub(crate) struct PortArgs {
    /// The container (name or ID).
    container: String,
    /// A private port (`80`, `80/tcp`): its public port.
    port: Option<String>,
}

/// `kiln kill`.
#[derive(Debug, clap::Args)]
pub(crate) struct KillArgs {
    /// Signal to send.
    #[arg(short, long, default_value = "KILL")]
    signal: String,
    /// Containers.
    #[arg(required = true)]
    containers: Vec<String>,
}

/// `kiln wait`.
#[derive(Debug, clap::Args)]
pub(crate) struct WaitArgs {
    /// Containers.
    #[arg(required = true)]
    containers: Vec<String>,
}

/// `kiln rm`.
#[derive(Debug, clap::Args)]
pub(crate) struct RmArgs {
    /// Kill and remove running containers.
    #[arg(short, long)]
    force: bool,
    /// Remove the anonymous volumes of the containers.
    #[arg(short, long)]
    volumes: bool,
    /// Containers.
    #[arg(required = true)]
    containers: Vec<String>,
}

/// `kiln exec`.
#[derive(Debug, clap::Args)]
pub(crate) struct ExecArgs {
    /// Run the command in the background (its output is discarded).
    #[arg(short, long)]
    detach: bool,
    /// Keep standard input open.
    #[arg(short, long)]
    interactive: bool,
    /// Allocate a pseudo-terminal.
    #[arg(short, long)]
    tty: bool,
    /// User.
    #[arg(short, long)]
    user: Option<String>,
    /// Working directory.
    #[arg(short, long)]
    workdir: Option<String>,
    /// Extra environment variables.
    #[arg(short, long = "env", allow_hyphen_values = true, value_parser = env_var)]
    env: Vec<String>,
    /// Read extra environment variables from a file.
    #[arg(long = "env-file", value_name = "FILE")]
    env_file: Vec<String>,
    /// The container.
    container: String,
    /// The command.
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

fn records(app: &Engine) -> Result<Records<ContainerRecord>> {
    Ok(app.containers()?)
}

fn runtime() -> Runtime {
    Runtime::default()
}

/// Resolves a container by ID, ID prefix or name.
fn find(app: &Engine, name: &str) -> Result<ContainerRecord> {
    Ok(app.find_container(name)?)
}

/// Looks an image up locally, pulling it when missing.
pub(crate) fn image_or_pull(
    app: &mut Engine,
    name: &str,
    platform: Option<&str>,
) -> Result<kiln_content::ImageRecord> {
    match app.store.resolve_image(name) {
        Ok(r) => Ok(r),
        Err(kiln_content::Error::NoSuchImage(_)) => {
            let reference: Reference = name
                .parse()
                .with_context(|| format!("invalid reference {name:?}"))?;
            eprintln!("Unable to find image '{}' locally", reference.familiar());
            let platform = crate::flags::platform(platform)?;
            let quiet = false;
            crate::progress::pull_image_to(app, &reference, &platform, quiet, true)
        }
        Err(e) => Err(e.into()),
    }
}

/// An image of another platform: Docker's warning when none was asked
/// for, and (for any foreign image) whether this machine can run its
/// programs at all (an emulator registered with binfmt_misc), said before
/// anything is created instead of "exec format error" after.
fn check_image_platform(config: &kiln_model::ImageConfig, requested: bool) -> Result<()> {
    let Some(image) = config.platform() else {
        return Ok(());
    };
    let host = kiln_model::Platform::native();
    if host.matches(&image) {
        return Ok(());
    }
    if !requested {
        eprintln!(
            "WARNING: The requested image's platform ({image}) does not match the detected host platform ({host}) and no specific platform was requested"
        );
    }
    kiln_engine::emulation::check(&image).map_err(|e| anyhow::anyhow!(e))
}

/// What Docker refuses before creating anything: bad ids, too little
/// memory, duplicate mount points, unsupported networks, published ports.
/// Returns the memory limit (Docker's 0 is no limit).
fn check_create_args(a: &CreateArgs, volumes: &[VolumeSpec]) -> Result<Option<i64>> {
    if let Some(u) = &a.user {
        container::check_user_ids(u)?;
    }
    let memory = a
        .memory
        .as_deref()
        .map(container::parse_bytes)
        .transpose()?
        .filter(|m| *m > 0);
    if memory.is_some_and(|m| m < container::MIN_MEMORY) {
        bail!("Minimum memory limit allowed is 6MB");
    }
    container::check_mount_points(volumes)?;
    container::network_mode(&a.network)?;
    if !a.publish.is_empty() || a.publish_all {
        if a.network == "host" {
            eprintln!("WARNING: Published ports are discarded when using host network mode");
        } else {
            bail!(
                "port publishing (-p/--publish, -P/--publish-all) is not supported: it needs a bridge network with port forwarding, which kiln does not create; use --network host and the container listens on the host's ports directly"
            );
        }
    }
    Ok(memory)
}

/// What `create` takes from its flags alone, checked in Docker's order
/// before the image is looked at.
struct HostOptions {
    volumes: Vec<VolumeSpec>,
    memory: Option<i64>,
    memory_swap: Option<i64>,
    ulimits: Vec<(String, u64, u64)>,
    sysctls: Vec<(String, String)>,
    label_lines: Vec<String>,
    extra_hosts: Vec<(String, String)>,
    devices: Vec<container::DeviceSpec>,
    oom_kill_disable: bool,
    shm_size: Option<i64>,
}

fn host_options(a: &CreateArgs) -> Result<HostOptions> {
    let mut volumes: Vec<VolumeSpec> = a
        .volume
        .iter()
        .map(|v| container::parse_volume(v))
        .collect::<kiln_engine::Result<_>>()?;
    for t in &a.tmpfs {
        volumes.push(container::parse_tmpfs(t)?);
    }
    for m in &a.mount {
        volumes.push(container::parse_mount(m)?);
    }
    let memory = check_create_args(a, &volumes)?;
    let memory_swap = match a.memory_swap.as_deref() {
        None => None,
        Some("-1") => Some(-1),
        Some(s) => Some(container::parse_bytes(s)?),
    };
    if let Some(swap) = memory_swap.filter(|s| *s > 0) {
        match memory {
            None => bail!(
                "You should always set the Memory limit when using Memoryswap limit, see usage"
            ),
            Some(m) if swap < m => {
                bail!("Minimum memoryswap limit should be larger than memory limit, see usage")
            }
            Some(_) => {}
        }
    }
    let ulimits = a
        .ulimit
        .iter()
        .map(|u| container::parse_ulimit(u))
        .collect::<kiln_engine::Result<Vec<_>>>()?;
    let sysctls = a
        .sysctl
        .iter()
        .map(|s| {
            let (k, v) = s
                .split_once('=')
                .with_context(|| format!("invalid --sysctl {s:?}: expected NAME=VALUE"))?;
            kiln_runtime::check_sysctl(k, a.network != "host").map_err(|e| match e {
                kiln_runtime::Error::InvalidSpec { reason, .. } => anyhow::anyhow!(reason),
                other => other.into(),
            })?;
            Ok((k.to_owned(), v.to_owned()))
        })
        .collect::<Result<Vec<_>>>()?;
    let mut label_lines = Vec::new();
    for f in &a.label_file {
        label_lines.extend(container::read_env_file(f)?);
    }
    label_lines.extend(a.label.iter().cloned());
    let extra_hosts = a
        .add_host
        .iter()
        .map(|h| container::parse_add_host(h))
        .collect::<kiln_engine::Result<Vec<_>>>()?;
    if let Some(s) = &a.stop_signal {
        container::parse_signal(s)?;
    }
    let devices = a
        .device
        .iter()
        .map(|d| container::DeviceSpec::parse(d))
        .collect::<kiln_engine::Result<Vec<_>>>()?;
    if a.group_add.iter().any(String::is_empty) {
        bail!("invalid --group-add \"\": a group name or number is needed");
    }
    if let Some(cpus) = &a.cpuset_cpus {
        container::check_cpuset_cpus(cpus)?;
    }
    // Docker's daemon warnings (its CLI prints them for `create` and `run`;
    // Docker 20.10's CLI has no warning of its own about a missing `-m`).
    let oom_kill_disable = if a.oom_kill_disable && !container::oom_kill_disable_supported() {
        eprintln!(
            "WARNING: Your kernel does not support OomKillDisable. OomKillDisable discarded."
        );
        false
    } else {
        a.oom_kill_disable
    };
    if oom_kill_disable && memory.is_none() {
        eprintln!(
            "WARNING: OOM killer is disabled for the container, but no memory limit is set, this can result in the system running out of resources."
        );
    }
    let shm_size = a
        .shm_size
        .as_deref()
        .map(container::parse_bytes)
        .transpose()?
        .filter(|s| *s > 0);
    if let Some(path) = &a.cidfile
        && path.exists()
    {
        bail!(
            "Container ID file found, make sure the other container isn't running or delete {}",
            path.display()
        );
    }
    Ok(HostOptions {
        volumes,
        memory,
        memory_swap,
        ulimits,
        sysctls,
        label_lines,
        extra_hosts,
        devices,
        oom_kill_disable,
        shm_size,
    })
}

/// The image of `create`, as `--pull` says.
fn create_image(app: &mut Engine, a: &CreateArgs) -> Result<kiln_content::ImageRecord> {
    Ok(match a.pull.as_str() {
        "missing" => image_or_pull(app, &a.image, a.platform.as_deref())?,
        "never" => match app.store.resolve_image(&a.image) {
            Err(kiln_content::Error::NoSuchImage(_)) => bail!("No such image: {}", a.image),
            other => other?,
        },
        "always" => {
            let reference: Reference = a
                .image
                .parse()
                .with_context(|| format!("invalid reference {:?}", a.image))?;
            let platform = crate::flags::platform(a.platform.as_deref())?;
            crate::progress::pull_image_to(app, &reference, &platform, false, true)?
        }
        other => bail!("invalid --pull {other:?}: use always, missing or never"),
    })
}

/// `--security-opt`: (no-new-privileges, seccomp unconfined).
fn security_options(a: &CreateArgs) -> Result<(bool, bool)> {
    let mut no_new_privileges = false;
    let mut seccomp_unconfined = false;
    for o in &a.security_opt {
        match o.as_str() {
            "no-new-privileges" | "no-new-privileges=true" | "no-new-privileges:true" => {
                no_new_privileges = true
            }
            "seccomp=unconfined" | "seccomp:unconfined" => seccomp_unconfined = true,
            other => bail!("unsupported --security-opt {other:?}"),
        }
    }
    Ok((no_new_privileges, seccomp_unconfined))
}

/// `--name`, checked, or a random name not taken yet.
fn container_name(app: &Engine, a: &CreateArgs, id: &str, seed: &[u8]) -> Result<String> {
    Ok(match &a.name {
        Some(n) => {
            if !container::valid_name(n) {
                bail!("invalid container name {n:?}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed");
            }
            n.clone()
        }
        None => {
            let base = container::random_name(seed);
            let taken = records(app)?.list()?.iter().any(|r| r.name == base);
            if taken {
                format!("{base}_{}", id.get(..6).unwrap_or(id))
            } else {
                base
            }
        }
    })
}

/// As Docker: `--hostname`, else the short ID, or the host's name with
/// `--network host`.
fn container_hostname(a: &CreateArgs, id: &str) -> String {
    a.hostname.clone().unwrap_or_else(|| {
        let host = (a.network == "host")
            .then(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
            .flatten()
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty());
        host.unwrap_or_else(|| id.get(..12).unwrap_or(id).to_owned())
    })
}

/// The image's labels, then the container's own (as Docker).
fn container_labels(
    cc: &kiln_model::ContainerConfig,
    label_lines: &[String],
) -> std::collections::BTreeMap<String, String> {
    let mut labels: std::collections::BTreeMap<String, String> =
        cc.labels.clone().unwrap_or_default().into_iter().collect();
    for l in label_lines {
        let (k, v) = l.split_once('=').unwrap_or((l.as_str(), ""));
        labels.insert(k.to_owned(), v.to_owned());
    }
    labels
}

/// Rootless kiln has no cgroup to set limits in: say so when some are asked.
fn warn_rootless_limits(a: &CreateArgs, userns: bool) {
    if userns
        && kiln_sys::process::geteuid() != 0
        && (a.memory.is_some()
            || a.pids_limit.is_some()
            || a.cpus.is_some()
            || a.cpu_shares.is_some())
    {
        eprintln!(
            "kiln: rootless: no cgroup is delegated to this user, so the container runs without --memory, --pids-limit, --cpus or --cpu-shares limits"
        );
    }
}

fn create_record(app: &mut Engine, a: &CreateArgs) -> Result<ContainerRecord> {
    let HostOptions {
        mut volumes,
        memory,
        memory_swap,
        ulimits,
        sysctls,
        label_lines,
        extra_hosts,
        devices,
        oom_kill_disable,
        shm_size,
    } = host_options(a)?;
    let image = create_image(app, a)?;
    let top = app.ensure_unpacked(&image.id)?;
    let config = kiln_image::image_config(&app.store, &image.id)?;
    check_image_platform(&config, a.platform.is_some())?;
    let cc = config.config.clone().unwrap_or_default();
    let fresh_volumes = crate::volumes::resolve(app, &mut volumes, cc.volumes.as_ref())?;
    let (entrypoint, cmd) = container::entrypoint_and_cmd(
        cc.entrypoint.as_deref(),
        cc.cmd.as_deref(),
        a.entrypoint.as_deref(),
        &a.command,
    );
    let args: Vec<String> = entrypoint.iter().chain(&cmd).cloned().collect();
    if args.is_empty() {
        bail!("no command specified");
    }
    let mut overrides = Vec::new();
    for f in &a.env_file {
        overrides.extend(container::read_env_file(f)?);
    }
    overrides.extend(a.env.iter().cloned());
    let env = container::merge_env(cc.env.as_deref().unwrap_or_default(), &overrides);
    let userns = container::user_namespace(a.userns.as_deref())?;
    warn_rootless_limits(a, userns.is_some());
    let (no_new_privileges, seccomp_unconfined) = security_options(a)?;
    let (id, seed) = container::new_id()?;
    let name = container_name(app, a, &id, &seed)?;
    let rec = ContainerRecord {
        // As Docker: the short ID, or the host's name with `--network host`.
        hostname: container_hostname(a, &id),
        id: id.clone(),
        name,
        image: a.image.clone(),
        image_id: image.id,
        created: kiln_image::Timestamp::from_system_time(SystemTime::now()).to_string(),
        args,
        env,
        cwd: a
            .workdir
            .clone()
            .or(cc.working_dir.clone())
            .filter(|w| !w.is_empty())
            .unwrap_or_else(|| "/".into()),
        user: a.user.clone().or(cc.user.clone()).unwrap_or_default(),
        network: a.network.clone(),
        tty: a.tty,
        interactive: a.interactive,
        init: a.init,
        read_only: a.read_only,
        auto_remove: a.rm,
        volumes,
        cap_add: a.cap_add.clone(),
        cap_drop: a.cap_drop.clone(),
        no_new_privileges,
        seccomp_unconfined,
        memory,
        pids_limit: a.pids_limit,
        cpus: a.cpus,
        cpu_shares: a.cpu_shares,
        stop_signal: a.stop_signal.clone().or(cc.stop_signal.clone()),
        stop_timeout: a.stop_timeout,
        labels: container_labels(&cc, &label_lines),
        memory_swap,
        ulimits,
        sysctls,
        privileged: a.privileged,
        devices,
        group_add: a.group_add.clone(),
        oom_kill_disable,
        cpuset_cpus: a.cpuset_cpus.clone().filter(|c| !c.is_empty()),
        extra_hosts,
        dns: a.dns.clone(),
        dns_search: a.dns_search.clone(),
        dns_options: a.dns_option.clone(),
        shm_size,
        snapshot: id,
        started: false,
        started_at: None,
        entrypoint_cmd: Some((entrypoint, cmd)),
        userns,
    };
    app.create_container(&rec, top.as_deref())?;
    let mut rec = rec;
    if let Err(e) = crate::volumes::fill_new(app, &mut rec, &fresh_volumes) {
        let _ = remove(app, &rec, true);
        let _ = crate::volumes::remove_anonymous(app, &rec);
        return Err(e);
    }
    Ok(rec)
}

/// `--cidfile`: the new container's ID, written once it exists.
fn write_cidfile(a: &CreateArgs, id: &str) -> Result<()> {
    if let Some(path) = &a.cidfile {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .and_then(|mut f| f.write_all(id.as_bytes()))
            .with_context(|| format!("cannot write the container ID file {}", path.display()))?;
    }
    Ok(())
}

pub(crate) fn create(app: &mut Engine, a: &CreateArgs) -> Result<u8> {
    let rec = create_record(app, a)?;
    write_cidfile(a, &rec.id)?;
    println!("{}", rec.id);
    Ok(0)
}

/// Runs a container in the foreground and returns its exit code.
fn run_attached(app: &mut Engine, rec: &ContainerRecord) -> Result<i32> {
    let cfg = app.prepare_run(rec)?;
    let mut stdio = StdioConfig {
        stdin: if rec.interactive {
            kiln_runtime::Stdio::Inherit
        } else {
            kiln_runtime::Stdio::Null
        },
        tty: rec.tty,
        ..StdioConfig::default()
    };
    // As Docker, keep the output for `kiln logs` (a terminal's too: the
    // runtime copies the terminal into the tee's pipe), unless the
    // container goes at exit (--rm: no copy on the fast path).
    let mut tee = None;
    if !rec.auto_remove {
        match OutputLog::start(&rec.log_path(app)) {
            Ok((t, out, err)) => {
                stdio.stdout = kiln_runtime::Stdio::Fd(out);
                stdio.stderr = kiln_runtime::Stdio::Fd(err);
                tee = Some(t);
            }
            Err(e) => eprintln!("kiln: the container's output is not logged: {e:#}"),
        }
    }
    let exited = app.run_prepared(rec, &cfg, stdio);
    if let Some(t) = tee {
        t.finish();
    }
    if let Some(e) = &exited.error {
        eprintln!("kiln: {e}");
    }
    Ok(exited.code)
}

/// Copies a foreground container's stdout and stderr to kiln's own and to
/// its log file, in two threads.
struct OutputLog {
    done: std::sync::mpsc::Receiver<()>,
}

impl OutputLog {
    /// Starts the copiers; returns the write ends to give the container.
    fn start(
        log: &std::path::Path,
    ) -> Result<(OutputLog, std::os::fd::OwnedFd, std::os::fd::OwnedFd)> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("cannot open {}", log.display()))?;
        let file = std::sync::Arc::new(std::sync::Mutex::new(file));
        let (out_r, out_w) = std::io::pipe().context("cannot make a pipe")?;
        let (err_r, err_w) = std::io::pipe().context("cannot make a pipe")?;
        let (tx, done) = std::sync::mpsc::channel();
        // The signals kiln forwards to the container must reach the thread
        // that forwards them: the copiers start with every signal blocked.
        let old = kiln_sys::process::block_signals(&kiln_sys::process::SigSet::all())
            .context("cannot block signals")?;
        for (reader, to_stderr) in [(out_r, false), (err_r, true)] {
            let (file, tx) = (file.clone(), tx.clone());
            std::thread::spawn(move || {
                copy_stream(reader, to_stderr, &file);
                let _ = tx.send(());
            });
        }
        kiln_sys::process::set_signal_mask(&old).context("cannot restore the signal mask")?;
        Ok((OutputLog { done }, out_w.into(), err_w.into()))
    }

    /// Waits (briefly: a leaked writer must not hang kiln) for both
    /// copiers to reach the end of their streams.
    fn finish(self) {
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        for _ in 0..2 {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if self.done.recv_timeout(left).is_err() {
                break;
            }
        }
    }
}

fn copy_stream(
    mut from: std::io::PipeReader,
    to_stderr: bool,
    log: &std::sync::Mutex<std::fs::File>,
) {
    let stream = if to_stderr {
        LogStream::Stderr
    } else {
        LogStream::Stdout
    };
    let mut lines = LineSplitter::default();
    let write_log = |line: &[u8]| {
        let entry = LogEntry {
            log: String::from_utf8_lossy(line).into_owned(),
            stream,
            time: kiln_image::Timestamp::from_system_time(SystemTime::now()).to_string(),
        };
        if let Ok(mut f) = log.lock() {
            let _ = f.write_all(&entry.to_line());
        }
    };
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        let chunk = &buf[..n];
        // A closed terminal or pipe on kiln's side must not stop the log.
        if to_stderr {
            let _ = std::io::stderr().lock().write_all(chunk);
        } else {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(chunk).and_then(|()| out.flush());
        }
        for line in lines.push(chunk) {
            write_log(&line);
        }
    }
    if let Some(rest) = lines.finish() {
        write_log(&rest);
    }
}

pub(crate) fn run(app: &mut Engine, a: &RunArgs) -> Result<u8> {
    let rec = create_record(app, &a.create)?;
    write_cidfile(&a.create, &rec.id)?;
    if a.detach {
        // With --rm, the supervisor cannot remove store records: the next
        // `ps`, `wait`, `stop` or `rm` that sees the container exited does.
        if let Err(e) = app.start_detached(&rec) {
            // As Docker: 127/126 when the command is missing or not
            // executable, 125 for kiln's own failures.
            eprintln!("kiln: {}", kiln_engine::chain(&e));
            let code = e
                .find::<kiln_runtime::Error>()
                .map_or(125, kiln_runtime::Error::exit_code);
            if rec.auto_remove {
                let _ = remove(app, &rec, true);
            }
            return Ok(exit_u8(code));
        }
        println!("{}", rec.id);
        return Ok(0);
    }
    let code = run_attached(app, &rec);
    if rec.auto_remove {
        remove(app, &rec, true)?;
    }
    Ok(exit_u8(code?))
}

fn exit_u8(code: i32) -> u8 {
    u8::try_from(code).unwrap_or(125)
}

fn start_detached(app: &mut Engine, rec: &ContainerRecord) -> Result<()> {
    Ok(app.start_detached(rec)?)
}

pub(crate) fn start(app: &mut Engine, a: &StartArgs) -> Result<u8> {
    let attach = a.attach || a.interactive;
    if attach && a.containers.len() > 1 {
        bail!("you cannot start and attach multiple containers at once");
    }
    let mut last = 0;
    for name in &a.containers {
        let rec = find(app, name)?;
        if is_running(app, &rec) {
            if attach {
                // As Docker: attach to the running container's output.
                return Ok(exit_u8(attach_running(app, &rec)?));
            }
            println!("{name}");
            continue;
        }
        // A restart begins from a clean runtime state; the writable layer stays.
        let _ = runtime().delete(&rec.state_dir(app), true);
        if attach {
            last = run_attached(app, &rec)?;
            if rec.auto_remove {
                remove(app, &rec, true)?;
            }
        } else {
            start_detached(app, &rec)?;
            println!("{name}");
        }
    }
    Ok(exit_u8(last))
}

/// `start -a` of a running container: prints what it writes from now on
/// (from its log, which its supervisor or foreground `kiln run` keeps)
/// until it exits, then returns its exit code.
fn attach_running(app: &Engine, rec: &ContainerRecord) -> Result<i32> {
    use std::io::Seek as _;
    let path = rec.log_path(app);
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .read(true)
        .open(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    file.seek(std::io::SeekFrom::End(0))?;
    let mut pending = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n > 0 {
            pending.extend_from_slice(&buf[..n]);
            write_log_lines(&mut pending, false, LogView::default())?;
            continue;
        }
        if !is_running(app, rec) {
            let mut rest = Vec::new();
            file.read_to_end(&mut rest)?;
            pending.extend_from_slice(&rest);
            write_log_lines(&mut pending, true, LogView::default())?;
            break;
        }
        std::io::stdout().flush()?;
        std::thread::sleep(Duration::from_millis(50));
    }
    std::io::stdout().flush()?;
    Ok(exit_code_after_end(app, rec))
}

/// The exit code of a container that has just ended (its supervisor's
/// record, else the one a foreground `kiln run` wrote, which may take a
/// moment after the container's end).
fn exit_code_after_end(app: &Engine, rec: &ContainerRecord) -> i32 {
    let dir = rec.state_dir(app);
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    loop {
        let recorded = runtime()
            .wait(&dir, Some(Duration::ZERO))
            .ok()
            .flatten()
            .and_then(|s| s.exit.map(|e| e.code()))
            .or_else(|| read_exit_file(app, rec));
        if let Some(code) = recorded {
            return code;
        }
        if std::time::Instant::now() > deadline {
            return status_of(app, rec).2.unwrap_or(255);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn is_running(app: &Engine, rec: &ContainerRecord) -> bool {
    app.container_running(rec)
}

/// Status text and exit code of a container, as `docker ps` shows them.
fn status_of(app: &Engine, rec: &ContainerRecord) -> (bool, String, Option<i32>) {
    let (running, status, code, _) = state_of(app, rec);
    (running, status, code)
}

fn parse_time(t: Option<&str>) -> Option<SystemTime> {
    t?.parse::<kiln_image::Timestamp>()
        .ok()
        .map(|t| t.to_system_time())
}

/// Running or not, Docker's STATUS text (`Up 5 seconds`, `Exited (0) 3
/// seconds ago`), the exit code, and the runtime's state when it has one.
fn state_of(
    app: &Engine,
    rec: &ContainerRecord,
) -> (
    bool,
    String,
    Option<i32>,
    Option<kiln_runtime::ContainerState>,
) {
    let dir = rec.state_dir(app);
    let state = match runtime().state(&dir) {
        // The init is gone but its supervisor may still be recording how it
        // ended: give it its moment (no wait when the supervisor is dead).
        Ok(s) if s.status == Status::Exited && s.exit.is_none() => runtime()
            .wait(&dir, Some(Duration::ZERO))
            .ok()
            .flatten()
            .map_or(Ok(s), Ok),
        other => other,
    };
    let now = SystemTime::now();
    // When the supervisor did not record the end (older state, or it
    // died), the state directory's last change stands in for it.
    let ended = |s: Option<&kiln_runtime::ContainerState>| {
        parse_time(s.and_then(|s| s.finished_at.as_deref()))
            .or_else(|| std::fs::metadata(&dir).and_then(|m| m.modified()).ok())
            .map_or(String::new(), |t| format!(" {}", format::ago(t, now)))
    };
    match state {
        Ok(s) if s.status == Status::Running => {
            let since = parse_time(s.started_at.as_deref())
                .or_else(|| parse_time(rec.started_at.as_deref()));
            let up = match since {
                Some(t) => {
                    let ago = format::ago(t, now);
                    format!("Up {}", ago.strip_suffix(" ago").unwrap_or(&ago))
                }
                None => "Up".to_owned(),
            };
            (true, up, None, Some(s))
        }
        Ok(s) if s.status == Status::Exited => {
            let code = s
                .exit
                .map(|e| e.code())
                .or_else(|| read_exit_file(app, rec))
                .unwrap_or(255);
            let text = format!("Exited ({code}){}", ended(Some(&s)));
            (false, text, Some(code), Some(s))
        }
        _ => match read_exit_file(app, rec) {
            Some(code) => (
                false,
                format!("Exited ({code}){}", ended(None)),
                Some(code),
                None,
            ),
            None if rec.started => (
                false,
                format!("Exited (255){}", ended(None)),
                Some(255),
                None,
            ),
            None => (false, "Created".to_owned(), None, None),
        },
    }
}

fn read_exit_file(app: &Engine, rec: &ContainerRecord) -> Option<i32> {
    rec.recorded_exit(app)
}

pub(crate) fn ps(app: &mut Engine, a: &PsArgs) -> Result<u8> {
    let mut recs = records(app)?.list()?;
    recs.sort_by(|x, y| y.created.cmp(&x.created));
    // `-n N` / `-l`: the N last created, whatever their state (as Docker).
    let last = if a.latest { 1 } else { a.last };
    let show_all = a.all || last >= 0;
    let limit = usize::try_from(last).ok();
    let filter = PsFilter::parse(&a.filter)?;
    let template = a
        .format
        .as_deref()
        .map(crate::template::Format::parse)
        .transpose()?;
    let now = SystemTime::now();
    let mut rows = Vec::new();
    let mut fields = Vec::new();
    for rec in &recs {
        if limit.is_some_and(|n| rows.len() >= n) {
            break;
        }
        let (running, status, exit) = status_of(app, rec);
        if rec.auto_remove && !running && rec.started {
            // `run -d --rm`: remove it now that it has exited.
            let _ = remove(app, rec, true);
            continue;
        }
        // Docker's state names; an explicit status filter shows every state.
        let state = if running {
            "running"
        } else if rec.started || exit.is_some() {
            "exited"
        } else {
            "created"
        };
        if !filter.matches(rec, state, exit) {
            continue;
        }
        if !show_all
            && !running
            && !filter.0.contains_key("status")
            && !filter.0.contains_key("exited")
        {
            continue;
        }
        let (row, field) = ps_entry(rec, a, status, state, now);
        rows.push(row);
        fields.extend(field);
    }
    print_ps(a, template, &rows, &fields)
}

/// One container's `ps` row (only the ID under `-q`) and its `--format`
/// fields.
fn ps_entry(
    rec: &ContainerRecord,
    a: &PsArgs,
    status: String,
    state: &str,
    now: SystemTime,
) -> (Vec<String>, Option<serde_json::Value>) {
    let id = if a.no_trunc {
        rec.id.clone()
    } else {
        rec.id.get(..12).unwrap_or(&rec.id).to_owned()
    };
    if a.quiet {
        return (vec![id], None);
    }
    let mut command = format!("\"{}\"", rec.args.join(" "));
    if !a.no_trunc && command.chars().count() > 22 {
        command = command.chars().take(20).collect::<String>() + "…\"";
    }
    let created = rec.created.parse::<kiln_image::Timestamp>().map_or_else(
        |_| "N/A".to_owned(),
        |t| format::ago(t.to_system_time(), now),
    );
    let labels: Vec<String> = rec.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let field = serde_json::json!({
        "ID": id,
        "Image": rec.image,
        "Command": command,
        "CreatedAt": rec.created,
        "RunningFor": created,
        "Status": status,
        "State": state,
        "Names": rec.name,
        "Labels": labels.join(","),
        "Ports": "",
        "Networks": rec.network,
    });
    let row = vec![
        id,
        rec.image.clone(),
        command,
        created,
        status,
        String::new(),
        rec.name.clone(),
    ];
    (row, Some(field))
}

/// Prints `ps`'s IDs (`-q`), its `--format` or its table.
fn print_ps(
    a: &PsArgs,
    template: Option<crate::template::Format>,
    rows: &[Vec<String>],
    fields: &[serde_json::Value],
) -> Result<u8> {
    let mut out = std::io::stdout().lock();
    if a.quiet {
        for r in rows {
            writeln!(out, "{}", r[0])?;
        }
        return Ok(0);
    }
    if let Some(t) = template {
        const HEADERS: &[(&str, &str)] = &[
            ("ID", "CONTAINER ID"),
            ("Image", "IMAGE"),
            ("Command", "COMMAND"),
            ("CreatedAt", "CREATED AT"),
            ("RunningFor", "CREATED"),
            ("Status", "STATUS"),
            ("State", "STATE"),
            ("Names", "NAMES"),
            ("Labels", "LABELS"),
            ("Ports", "PORTS"),
            ("Networks", "NETWORKS"),
        ];
        out.write_all(t.render_rows(HEADERS, fields)?.as_bytes())?;
        return Ok(0);
    }
    out.write_all(
        format::table(
            &[
                "CONTAINER ID",
                "IMAGE",
                "COMMAND",
                "CREATED",
                "STATUS",
                "PORTS",
                "NAMES",
            ],
            rows,
        )
        .as_bytes(),
    )?;
    Ok(0)
}

pub(crate) fn logs(app: &mut Engine, a: &LogsArgs) -> Result<u8> {
    let rec = find(app, &a.container)?;
    let now = SystemTime::now();
    let view = LogView {
        since: a
            .since
            .as_deref()
            .map(|s| parse_log_time("since", s, now))
            .transpose()?,
        until: a
            .until
            .as_deref()
            .map(|s| parse_log_time("until", s, now))
            .transpose()?,
        timestamps: a.timestamps,
    };
    let path = rec.log_path(app);
    let mut file = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    // JSON lines tagged with their stream (as Docker's json-file driver):
    // stdout entries go to kiln's stdout, stderr entries to its stderr.
    // What the log holds now: its last `--tail` lines.
    let mut pending = Vec::new();
    file.read_to_end(&mut pending)?;
    if let Some(n) = tail_count(&a.tail) {
        let complete = pending
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        let starts: Vec<usize> = std::iter::once(0)
            .chain(
                pending[..complete]
                    .iter()
                    .enumerate()
                    .filter(|(_, b)| **b == b'\n')
                    .map(|(i, _)| i + 1),
            )
            .filter(|&i| i < complete)
            .collect();
        let from = if n == 0 {
            complete
        } else {
            starts.len().checked_sub(n).map_or(0, |k| starts[k])
        };
        pending.drain(..from);
    }
    write_log_lines(&mut pending, false, view)?;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n > 0 {
            pending.extend_from_slice(&buf[..n]);
            write_log_lines(&mut pending, false, view)?;
            continue;
        }
        let past_until = view.until.is_some_and(|u| SystemTime::now() > u);
        if !a.follow || past_until || !is_running(app, &rec) {
            // One more read: output written just before the exit.
            let mut rest = Vec::new();
            file.read_to_end(&mut rest)?;
            pending.extend_from_slice(&rest);
            write_log_lines(&mut pending, true, view)?;
            break;
        }
        std::io::stdout().flush()?;
        std::thread::sleep(Duration::from_millis(100));
    }
    std::io::stdout().flush()?;
    Ok(0)
}

/// Writes the complete lines of `pending` (all of it at the end) to
/// stdout or stderr as their entries say; a line that is no entry (a log
/// from before kiln tagged streams) goes to stdout as it is.
fn write_log_lines(pending: &mut Vec<u8>, all: bool, view: LogView) -> Result<()> {
    let end = if all {
        pending.len()
    } else {
        match pending.iter().rposition(|&b| b == b'\n') {
            Some(i) => i + 1,
            None => return Ok(()),
        }
    };
    let rest = pending.split_off(end);
    let mut out = std::io::stdout().lock();
    let mut err = std::io::stderr().lock();
    for line in pending.split_inclusive(|&b| b == b'\n') {
        let Some(e) = LogEntry::parse(line.trim_ascii_end()) else {
            out.write_all(line)?;
            continue;
        };
        let time = e
            .time
            .parse::<kiln_image::Timestamp>()
            .ok()
            .map(|t| t.to_system_time());
        if !view.shows(time) {
            continue;
        }
        let stamp = match time.filter(|_| view.timestamps) {
            Some(t) => format!("{} ", fixed_nanos(t)),
            None => String::new(),
        };
        if e.stream == LogStream::Stderr {
            out.flush()?;
            err.write_all(stamp.as_bytes())?;
            err.write_all(e.log.as_bytes())?;
        } else {
            out.write_all(stamp.as_bytes())?;
            out.write_all(e.log.as_bytes())?;
        }
    }
    *pending = rest;
    Ok(())
}

/// Runs `each` for every named container as Docker's multi-container
/// commands do: the name on success, `Error response from kiln: ...` on
/// failure, and exit status 1 when any failed.
fn for_each_container(
    app: &mut Engine,
    names: &[String],
    mut each: impl FnMut(&mut Engine, &str) -> Result<()>,
) -> u8 {
    let mut failed = false;
    for name in names {
        match each(app, name) {
            Ok(()) => println!("{name}"),
            Err(e) => {
                eprintln!("Error response from kiln: {e:#}");
                failed = true;
            }
        }
    }
    u8::from(failed)
}

/// How `stop` and `restart` stop a container: `--signal`, else its own
/// stop signal, else SIGTERM; `--time`, else its own timeout, else 10 s.
fn stop_how(
    signal: Option<&str>,
    time: Option<u64>,
    rec: &ContainerRecord,
) -> Result<(i32, Duration)> {
    let sig = container::parse_signal(signal.or(rec.stop_signal.as_deref()).unwrap_or("SIGTERM"))?;
    Ok((
        sig,
        Duration::from_secs(time.or(rec.stop_timeout).unwrap_or(10)),
    ))
}

pub(crate) fn stop(app: &mut Engine, a: &StopArgs) -> Result<u8> {
    Ok(for_each_container(app, &a.containers, |app, name| {
        let rec = find(app, name)?;
        if !is_running(app, &rec) {
            return Ok(());
        }
        let (sig, wait) = stop_how(a.signal.as_deref(), a.time, &rec)?;
        Ok(app.stop_container(&rec, sig, wait)?)
    }))
}

pub(crate) fn kill(app: &mut Engine, a: &KillArgs) -> Result<u8> {
    let sig = container::parse_signal(&a.signal)?;
    Ok(for_each_container(app, &a.containers, |app, name| {
        let rec = find(app, name)?;
        Ok(app.kill_container(&rec, sig)?)
    }))
}

pub(crate) fn wait(app: &mut Engine, a: &WaitArgs) -> Result<u8> {
    for name in &a.containers {
        let mut rec = find(app, name)?;
        // As Docker: a created container is waited for until it has run.
        while !rec.started {
            std::thread::sleep(Duration::from_millis(100));
            rec = find(app, name)?;
        }
        let dir = rec.state_dir(app);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while runtime()
            .state(&dir)
            .is_ok_and(|s| s.status == Status::Created)
            && read_exit_file(app, &rec).is_none()
            && std::time::Instant::now() < deadline
        {
            // Started a moment ago: its supervisor has not written its state yet.
            std::thread::sleep(Duration::from_millis(10));
        }
        let code = match runtime().wait(&dir, None) {
            Ok(Some(state)) => state
                .exit
                .map(|e| e.code())
                .or_else(|| read_exit_file(app, &rec))
                .unwrap_or(255),
            Ok(None) => 255,
            Err(_) => status_of(app, &rec).2.unwrap_or(0),
        };
        println!("{code}");
        if rec.auto_remove {
            remove(app, &rec, true)?;
        }
    }
    Ok(0)
}

/// Removes a container: its runtime state, its snapshot and its record.
/// `--rm` containers take their anonymous volumes with them, as Docker's.
fn remove(app: &mut Engine, rec: &ContainerRecord, force: bool) -> Result<()> {
    app.remove_container(rec, force)?;
    if rec.auto_remove {
        crate::volumes::remove_anonymous(app, rec)?;
    }
    Ok(())
}

/// `kiln restart`: each container stopped (as `kiln stop`) and started
/// again in the background; the name is printed for each one done.
pub(crate) fn restart(app: &mut Engine, a: &RestartArgs) -> Result<u8> {
    Ok(for_each_container(app, &a.containers, |app, name| {
        let rec = find(app, name)?;
        let (sig, wait) = stop_how(a.signal.as_deref(), a.time, &rec)?;
        Ok(app.restart_container(&rec, sig, wait)?)
    }))
}

/// `kiln rename`: prints nothing, as Docker; a refusal is Docker's
/// daemon error (exit 1).
pub(crate) fn rename(app: &mut Engine, a: &RenameArgs) -> Result<u8> {
    // Docker's daemon errors: said on stderr, exit 1.
    let done = find(app, &a.container).and_then(|rec| Ok(app.rename_container(&rec, &a.new_name)?));
    match done {
        Ok(()) => Ok(0),
        Err(e) => {
            eprintln!("Error response from kiln: {e:#}");
            Ok(1)
        }
    }
}

/// `kiln port`: kiln publishes no ports (no bridge network to publish
/// from), so as Docker for a container without published ports: nothing
/// for the whole list, and for one private port Docker's error, exit 1.
pub(crate) fn port(app: &mut Engine, a: &PortArgs) -> Result<u8> {
    if let Err(e) = find(app, &a.container) {
        eprintln!("Error: {e:#}");
        return Ok(1);
    }
    let Some(port) = &a.port else {
        return Ok(0);
    };
    let number = port.split_once('/').map_or(port.as_str(), |(n, _)| n);
    if number.parse::<u16>().is_err() {
        eprintln!("Error: invalid port ({number})");
        return Ok(1);
    }
    eprintln!(
        "Error: No public port '{port}' published for {} (kiln publishes no ports: with --network host a container listens on the host's own)",
        a.container
    );
    Ok(1)
}

pub(crate) fn rm(app: &mut Engine, a: &RmArgs) -> Result<u8> {
    Ok(for_each_container(app, &a.containers, |app, name| {
        let rec = find(app, name)?;
        remove(app, &rec, a.force)?;
        if a.volumes {
            crate::volumes::remove_anonymous(app, &rec)?;
        }
        Ok(())
    }))
}

pub(crate) fn exec(app: &mut Engine, a: &ExecArgs) -> Result<u8> {
    let rec = find(app, &a.container)?;
    if !is_running(app, &rec) {
        bail!("container {} is not running", &rec.id[..12]);
    }
    let mut overrides = Vec::new();
    for f in &a.env_file {
        overrides.extend(container::read_env_file(f)?);
    }
    overrides.extend(a.env.iter().cloned());
    let mut env = container::merge_env(&rec.env, &overrides);
    // As Docker's exec -t (and run -t): TERM=xterm unless the env sets it.
    if a.tty && !env.iter().any(|e| e.starts_with("TERM=")) {
        env.push("TERM=xterm".into());
    }
    let mut process = kiln_runtime::oci_spec::runtime::ProcessBuilder::default()
        .args(a.command.clone())
        .env(env)
        .cwd(a.workdir.clone().unwrap_or_else(|| rec.cwd.clone()))
        .terminal(a.tty)
        .build()
        .context("invalid exec process")?;
    if a.tty {
        process.set_terminal(Some(true));
    }
    let user = a
        .user
        .clone()
        .or_else(|| (!rec.user.is_empty()).then(|| rec.user.clone()));
    let stdio = StdioConfig {
        stdin: if a.interactive {
            kiln_runtime::Stdio::Inherit
        } else {
            kiln_runtime::Stdio::Null
        },
        tty: a.tty,
        ..StdioConfig::default()
    };
    if a.detach {
        return match runtime().exec_detached(&rec.state_dir(app), &process, user.as_deref()) {
            Ok(_) => Ok(0),
            Err(e) => {
                eprintln!("kiln: {e}");
                Ok(exit_u8(e.exit_code()))
            }
        };
    }
    let status = runtime().exec(&rec.state_dir(app), &process, user.as_deref(), stdio);
    match status {
        Ok(s) => Ok(exit_u8(s.code())),
        Err(e) => {
            eprintln!("kiln: {e}");
            Ok(exit_u8(e.exit_code()))
        }
    }
}

/// `docker container inspect`-shaped JSON.
pub(crate) fn inspect_container(app: &mut Engine, name: &str) -> Result<serde_json::Value> {
    let rec = find(app, name)?;
    let (running, status, code, state) = state_of(app, &rec);
    let zero = "0001-01-01T00:00:00Z";
    let started = state
        .as_ref()
        .and_then(|s| s.started_at.clone())
        .or_else(|| rec.started_at.clone());
    let finished = state
        .as_ref()
        .and_then(|s| s.finished_at.clone())
        .or_else(|| {
            code.and_then(|_| std::fs::metadata(rec.state_dir(app)).ok())
                .and_then(|m| m.modified().ok())
                .map(|t| kiln_image::Timestamp::from_system_time(t).to_string())
        })
        .filter(|_| !running);
    let pid = state.as_ref().and_then(|s| s.pid).filter(|_| running);
    let mut inspected = serde_json::json!({
        "Id": rec.id,
        "Created": rec.created,
        "Path": rec.args.first(),
        "Args": rec.args.get(1..).unwrap_or_default(),
        "State": {
            "Status": if running { "running" } else if status == "Created" { "created" } else { "exited" },
            "Running": running,
            "Pid": pid.unwrap_or(0),
            "ExitCode": code.unwrap_or(0),
            "StartedAt": started.as_deref().unwrap_or(zero),
            "FinishedAt": finished.as_deref().unwrap_or(zero),
        },
        "Image": rec.image_id.to_string(),
        "Name": format!("/{}", rec.name),
        "LogPath": rec.log_path(app),
        "HostConfig": {
            "NetworkMode": rec.network,
            "AutoRemove": rec.auto_remove,
            "ReadonlyRootfs": rec.read_only,
            "Memory": rec.memory.unwrap_or(0),
            "PidsLimit": rec.pids_limit,
            "NanoCpus": rec.cpus.map_or(0, |c| (c * 1e9) as i64),
            "CpuShares": rec.cpu_shares.unwrap_or(0),
            "CapAdd": rec.cap_add,
            "CapDrop": rec.cap_drop,
            "Init": rec.init,
            "Dns": rec.dns,
            "DnsSearch": rec.dns_search,
            "DnsOptions": rec.dns_options,
            "ExtraHosts": rec.extra_hosts.iter().map(|(n, ip)| format!("{n}:{ip}")).collect::<Vec<_>>(),
            "ShmSize": rec.shm_size.unwrap_or(kiln_runtime::DEFAULT_SHM_SIZE),
            "MemorySwap": rec.memory_swap.unwrap_or(0),
            "Sysctls": rec.sysctls.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
            "Ulimits": rec.ulimits.iter().map(|(n, s, h)| serde_json::json!({"Name": n, "Soft": s, "Hard": h})).collect::<Vec<_>>(),
            "UsernsMode": if rec.userns.is_some() { "private" } else { "host" },
            "Privileged": rec.privileged,
            "Devices": rec.devices,
            "GroupAdd": (!rec.group_add.is_empty()).then_some(&rec.group_add),
            "OomKillDisable": rec.oom_kill_disable,
            "CpusetCpus": rec.cpuset_cpus.as_deref().unwrap_or_default(),
        },
        "Config": {
            "Hostname": rec.hostname,
            "User": rec.user,
            "Env": rec.env,
            "Cmd": rec.args,
            "Image": rec.image,
            "WorkingDir": rec.cwd,
            "Tty": rec.tty,
            "OpenStdin": rec.interactive,
            "Labels": rec.labels,
            "StopSignal": rec.stop_signal,
            "StopTimeout": rec.stop_timeout,
        },
        "Mounts": rec.volumes.iter().map(|v| match &v.volume {
            Some(name) => serde_json::json!({
                "Type": "volume",
                "Name": name,
                "Source": v.source,
                "Destination": v.target,
                "Driver": "local",
                "Mode": "",
                "RW": !v.readonly,
                "Propagation": "",
            }),
            None => serde_json::json!({
                "Type": if v.tmpfs { "tmpfs" } else { "bind" },
                "Source": v.source,
                "Destination": v.target,
                "RW": !v.readonly,
            }),
        }).collect::<Vec<_>>(),
    });
    // As Docker's: the container's config has its image's health check
    // (omitted when the image has none). Its stop signal is the record's.
    if let Ok(image) = kiln_image::read_image(&app.store, &rec.image_id)
        && let Some(h) = image.config.config.and_then(|c| c.healthcheck)
    {
        inspected["Config"]["Healthcheck"] = serde_json::to_value(h)?;
    }
    Ok(inspected)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_times_take_dockers_forms() {
        let now = std::time::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let t = |v: &str| {
            parse_log_time("since", v, now)
                .expect(v)
                .duration_since(std::time::UNIX_EPOCH)
                .expect("after the epoch")
                .as_secs_f64()
        };
        assert_eq!(t("1700000000"), 1_700_000_000.0);
        assert_eq!(t("1700000000.5"), 1_700_000_000.5);
        assert_eq!(t("10m"), 1_800_000_000.0 - 600.0);
        assert_eq!(t("1h30m"), 1_800_000_000.0 - 5400.0);
        assert_eq!(t("2023-11-14T22:13:20Z"), 1_700_000_000.0);
        assert_eq!(t("2023-11-14T22:13:20"), 1_700_000_000.0);
        assert_eq!(t("2023-11-14T23:13:20+01:00"), 1_700_000_000.0);
        assert_eq!(t("2023-11-14"), 1_699_920_000.0);
        for bad in ["", "yesterday", "10x", "2006-01-02T15:04:0Z"] {
            assert!(parse_log_time("since", bad, now).is_err(), "{bad:?}");
        }
        assert_eq!(tail_count("5"), Some(5));
        assert_eq!(tail_count("0"), Some(0));
        for all in ["all", "-1", "random"] {
            assert_eq!(tail_count(all), None, "{all}");
        }
        let at = std::time::UNIX_EPOCH + Duration::new(1_700_000_000, 5_000);
        assert_eq!(fixed_nanos(at), "2023-11-14T22:13:20.000005000Z");
        assert_eq!(
            fixed_nanos(std::time::UNIX_EPOCH + Duration::from_secs(1_700_000_000)),
            "2023-11-14T22:13:20.000000000Z"
        );
    }
}
