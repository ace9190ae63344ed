//! The `kiln` binary: thin glue over kiln's library crates.
//!
//! `main` first lets the runtime take over when this process is a
//! container's init or supervisor (a re-execution of this binary), then
//! parses the command line, dispatches to one module per command family, and
//! turns the outcome into an exit status in one place: the command's own
//! status, or 125 for kiln's errors, as Docker does.

#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod app;
mod build_cmd;
mod commit_cmd;
mod container_cmd;
mod flags;
mod format;
mod fs_cmd;
mod image_cmd;
mod manifest_cmd;
mod output;
mod parse_cmd;
mod pause_cmd;
mod progress;
mod prune_cmd;
mod system_cmd;
mod template;
mod transfer_cmd;
mod volume_cmd;
mod volumes;

use app::GlobalOpts;
use kiln_engine::Engine;

/// kiln: a daemonless, Docker-compatible image builder and container runtime.
#[derive(Debug, Parser)]
#[command(name = "kiln", version, about, propagate_version = true)]
struct Cli {
    #[command(flatten)]
    global: GlobalOpts,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Build an image from a Dockerfile.
    Build(build_cmd::BuildArgs),
    /// Parse a Dockerfile and print its syntax tree.
    Parse(parse_cmd::ParseArgs),
    /// Create and start a container.
    Run(container_cmd::RunArgs),
    /// Create a container without starting it.
    Create(container_cmd::CreateArgs),
    /// Start stopped containers.
    Start(container_cmd::StartArgs),
    /// List containers.
    Ps(container_cmd::PsArgs),
    /// Print a container's output.
    Logs(container_cmd::LogsArgs),
    /// Stop running containers (the stop signal, then SIGKILL).
    Stop(container_cmd::StopArgs),
    /// Stop and start containers again.
    Restart(container_cmd::RestartArgs),
    /// Give a container another name.
    Rename(container_cmd::RenameArgs),
    /// List a container's published ports (kiln publishes none).
    Port(container_cmd::PortArgs),
    /// Send a signal to running containers.
    Kill(container_cmd::KillArgs),
    /// Wait for containers to stop and print their exit codes.
    Wait(container_cmd::WaitArgs),
    /// Remove containers.
    Rm(container_cmd::RmArgs),
    /// Run a command in a running container.
    Exec(container_cmd::ExecArgs),
    /// Create a new image from a container's changes.
    Commit(commit_cmd::CommitArgs),
    /// Copy files/folders between a container and the local filesystem.
    Cp(fs_cmd::CpArgs),
    /// Show the files a container added, changed or deleted.
    Diff(fs_cmd::DiffArgs),
    /// Write a container's filesystem as a tar archive.
    Export(fs_cmd::ExportArgs),
    /// Pause all processes of running containers (cgroup freezer).
    Pause(pause_cmd::PauseArgs),
    /// Unpause paused containers.
    Unpause(pause_cmd::PauseArgs),
    /// Show low-level information on images or containers, as JSON.
    Inspect(InspectArgs),
    /// Download an image from a registry.
    Pull(image_cmd::PullArgs),
    /// Upload an image to a registry.
    Push(image_cmd::PushArgs),
    /// Give an image another name.
    Tag(image_cmd::TagArgs),
    /// List images.
    Images(image_cmd::ImagesArgs),
    /// Remove images.
    Rmi(image_cmd::RmiArgs),
    /// Show the history of an image.
    History(image_cmd::HistoryArgs),
    /// Save images to a tar archive (docker-archive or OCI layout).
    Save(transfer_cmd::SaveArgs),
    /// Load images from a tar archive.
    Load(transfer_cmd::LoadArgs),
    /// Make an image from a root filesystem tarball.
    Import(transfer_cmd::ImportArgs),
    /// Log in to a registry.
    Login(image_cmd::LoginArgs),
    /// Log out from a registry.
    Logout(image_cmd::LogoutArgs),
    /// Manage images.
    #[command(subcommand)]
    Image(ImageCommand),
    /// Manage containers.
    #[command(subcommand)]
    Container(ContainerCommand),
    /// Manage the build cache.
    #[command(subcommand)]
    Builder(BuilderCommand),
    /// Assemble, inspect and push manifest lists (multi-platform indexes).
    #[command(subcommand)]
    Manifest(manifest_cmd::ManifestCommand),
    /// Manage kiln's store.
    #[command(subcommand)]
    System(SystemCommand),
    /// Manage volumes.
    #[command(subcommand)]
    Volume(volume_cmd::VolumeCommand),
    /// Show kiln's version.
    Version(system_cmd::VersionArgs),
    /// Show what this machine and store give kiln.
    Info(system_cmd::InfoArgs),
    /// Write a shell completion script (bash, zsh, fish, elvish, powershell).
    Completion(system_cmd::CompletionArgs),
}

#[derive(Debug, Subcommand)]
enum ImageCommand {
    /// List images.
    Ls(image_cmd::ImagesArgs),
    /// Show low-level information on images.
    Inspect(InspectArgs),
    /// Remove images.
    Rm(image_cmd::RmiArgs),
    /// Remove unused images.
    Prune(prune_cmd::PruneArgs),
    /// Build an image from a Dockerfile.
    Build(Box<build_cmd::BuildArgs>),
    /// Download an image from a registry.
    Pull(image_cmd::PullArgs),
    /// Upload an image to a registry.
    Push(image_cmd::PushArgs),
    /// Give an image another name.
    Tag(image_cmd::TagArgs),
    /// Show the history of an image.
    History(image_cmd::HistoryArgs),
    /// Save images to a tar archive (docker-archive or OCI layout).
    Save(transfer_cmd::SaveArgs),
    /// Load images from a tar archive.
    Load(transfer_cmd::LoadArgs),
    /// Make an image from a root filesystem tarball.
    Import(transfer_cmd::ImportArgs),
}

#[derive(Debug, Subcommand)]
enum ContainerCommand {
    /// List containers.
    Ls(container_cmd::PsArgs),
    /// Show low-level information on containers.
    Inspect(InspectArgs),
    /// Remove containers.
    Rm(container_cmd::RmArgs),
    /// Copy files/folders between a container and the local filesystem.
    Cp(fs_cmd::CpArgs),
    /// Show the files a container added, changed or deleted.
    Diff(fs_cmd::DiffArgs),
    /// Write a container's filesystem as a tar archive.
    Export(fs_cmd::ExportArgs),
    /// Create and start a container.
    Run(container_cmd::RunArgs),
    /// Create a container without starting it.
    Create(container_cmd::CreateArgs),
    /// Start stopped containers.
    Start(container_cmd::StartArgs),
    /// Stop running containers (the stop signal, then SIGKILL).
    Stop(container_cmd::StopArgs),
    /// Stop and start containers again.
    Restart(container_cmd::RestartArgs),
    /// Send a signal to running containers.
    Kill(container_cmd::KillArgs),
    /// Wait for containers to stop and print their exit codes.
    Wait(container_cmd::WaitArgs),
    /// Print a container's output.
    Logs(container_cmd::LogsArgs),
    /// Run a command in a running container.
    Exec(container_cmd::ExecArgs),
    /// Create a new image from a container's changes.
    Commit(commit_cmd::CommitArgs),
    /// Pause all processes of running containers (cgroup freezer).
    Pause(pause_cmd::PauseArgs),
    /// Unpause paused containers.
    Unpause(pause_cmd::PauseArgs),
    /// Give a container another name.
    Rename(container_cmd::RenameArgs),
    /// List a container's published ports (kiln publishes none).
    Port(container_cmd::PortArgs),
    /// Remove all stopped containers.
    Prune(prune_cmd::ContainerPruneArgs),
}

#[derive(Debug, Subcommand)]
enum BuilderCommand {
    /// Remove the build cache.
    Prune(prune_cmd::BuilderPruneArgs),
}

#[derive(Debug, Subcommand)]
enum SystemCommand {
    /// Show disk usage.
    Df,
    /// Remove stopped containers, unused images and the build cache.
    Prune(prune_cmd::PruneArgs),
}

/// `kiln inspect`.
#[derive(Debug, clap::Args)]
struct InspectArgs {
    /// Format the output using the given Go template (e.g. '{{.Id}}').
    #[arg(short = 'f', long)]
    format: Option<String>,
    /// Names or IDs.
    #[arg(required = true)]
    names: Vec<String>,
}

#[derive(Clone, Copy)]
enum InspectKind {
    Any,
    Image,
    Container,
}

fn inspect(app: &mut Engine, args: &InspectArgs, kind: InspectKind) -> anyhow::Result<u8> {
    let format = args
        .format
        .as_deref()
        .map(template::Format::parse)
        .transpose()?;
    let mut out = Vec::new();
    let mut failed = false;
    for name in &args.names {
        let found = match kind {
            InspectKind::Image => image_cmd::inspect_image(app, name),
            InspectKind::Container => container_cmd::inspect_container(app, name),
            InspectKind::Any => container_cmd::inspect_container(app, name)
                .or_else(|_| image_cmd::inspect_image(app, name)),
        };
        match found {
            Ok(v) => out.push(v),
            Err(e) => {
                eprintln!("Error: no such object: {name} ({e:#})");
                failed = true;
            }
        }
    }
    match format {
        // Docker prints one rendered line per object.
        Some(f) => {
            for v in &out {
                println!("{}", f.render(v)?);
            }
        }
        None => println!("{}", serde_json::to_string_pretty(&out)?),
    }
    Ok(u8::from(failed))
}

fn dispatch(cli: Cli) -> anyhow::Result<u8> {
    match &cli.command {
        Command::Parse(args) => return parse_cmd::run(args),
        Command::Version(args) => return system_cmd::version(args),
        Command::Completion(args) => {
            return system_cmd::completion(args, <Cli as clap::CommandFactory>::command());
        }
        _ => {}
    }
    let mut app = app::open(cli.global)?;
    let app = &mut app;
    match cli.command {
        Command::Parse(_) | Command::Version(_) | Command::Completion(_) => {
            unreachable!("handled above")
        }
        Command::Build(a) => build_cmd::build(app, &a),
        Command::Image(ImageCommand::Build(a)) => build_cmd::build(app, &a),
        Command::Run(a) | Command::Container(ContainerCommand::Run(a)) => {
            container_cmd::run(app, &a)
        }
        Command::Create(a) | Command::Container(ContainerCommand::Create(a)) => {
            container_cmd::create(app, &a)
        }
        Command::Start(a) | Command::Container(ContainerCommand::Start(a)) => {
            container_cmd::start(app, &a)
        }
        Command::Ps(a) | Command::Container(ContainerCommand::Ls(a)) => container_cmd::ps(app, &a),
        Command::Logs(a) | Command::Container(ContainerCommand::Logs(a)) => {
            container_cmd::logs(app, &a)
        }
        Command::Stop(a) | Command::Container(ContainerCommand::Stop(a)) => {
            container_cmd::stop(app, &a)
        }
        Command::Restart(a) | Command::Container(ContainerCommand::Restart(a)) => {
            container_cmd::restart(app, &a)
        }
        Command::Rename(a) | Command::Container(ContainerCommand::Rename(a)) => {
            container_cmd::rename(app, &a)
        }
        Command::Port(a) | Command::Container(ContainerCommand::Port(a)) => {
            container_cmd::port(app, &a)
        }
        Command::Container(ContainerCommand::Prune(a)) => prune_cmd::container_prune(app, &a),
        Command::Kill(a) | Command::Container(ContainerCommand::Kill(a)) => {
            container_cmd::kill(app, &a)
        }
        Command::Wait(a) | Command::Container(ContainerCommand::Wait(a)) => {
            container_cmd::wait(app, &a)
        }
        Command::Rm(a) | Command::Container(ContainerCommand::Rm(a)) => container_cmd::rm(app, &a),
        Command::Exec(a) | Command::Container(ContainerCommand::Exec(a)) => {
            container_cmd::exec(app, &a)
        }
        Command::Commit(a) | Command::Container(ContainerCommand::Commit(a)) => {
            commit_cmd::commit(app, &a)
        }
        Command::Cp(a) | Command::Container(ContainerCommand::Cp(a)) => fs_cmd::cp(app, &a),
        Command::Diff(a) | Command::Container(ContainerCommand::Diff(a)) => fs_cmd::diff(app, &a),
        Command::Export(a) | Command::Container(ContainerCommand::Export(a)) => {
            fs_cmd::export(app, &a)
        }
        Command::Info(a) => system_cmd::info(app, &a),
        Command::Pause(a) | Command::Container(ContainerCommand::Pause(a)) => {
            pause_cmd::pause(app, &a)
        }
        Command::Unpause(a) | Command::Container(ContainerCommand::Unpause(a)) => {
            pause_cmd::unpause(app, &a)
        }
        Command::Inspect(a) => inspect(app, &a, InspectKind::Any),
        Command::Image(ImageCommand::Inspect(a)) => inspect(app, &a, InspectKind::Image),
        Command::Container(ContainerCommand::Inspect(a)) => {
            inspect(app, &a, InspectKind::Container)
        }
        Command::Pull(a) | Command::Image(ImageCommand::Pull(a)) => image_cmd::pull(app, &a),
        Command::Push(a) | Command::Image(ImageCommand::Push(a)) => image_cmd::push(app, &a),
        Command::Tag(a) | Command::Image(ImageCommand::Tag(a)) => image_cmd::tag(app, &a),
        Command::Images(a) | Command::Image(ImageCommand::Ls(a)) => image_cmd::images(app, &a),
        Command::Rmi(a) | Command::Image(ImageCommand::Rm(a)) => image_cmd::rmi(app, &a),
        Command::History(a) | Command::Image(ImageCommand::History(a)) => {
            image_cmd::history(app, &a)
        }
        Command::Save(a) | Command::Image(ImageCommand::Save(a)) => transfer_cmd::save(app, &a),
        Command::Load(a) | Command::Image(ImageCommand::Load(a)) => transfer_cmd::load(app, &a),
        Command::Import(a) | Command::Image(ImageCommand::Import(a)) => {
            transfer_cmd::import(app, &a)
        }
        Command::Login(a) => image_cmd::login(app, &a),
        Command::Logout(a) => image_cmd::logout(app, &a),
        Command::Image(ImageCommand::Prune(a)) => prune_cmd::image_prune(app, &a),
        Command::Builder(BuilderCommand::Prune(a)) => prune_cmd::builder_prune(app, &a),
        Command::Manifest(c) => manifest_cmd::run(app, &c),
        Command::Volume(c) => volume_cmd::run(app, &c),
        Command::System(SystemCommand::Df) => prune_cmd::df(app),
        Command::System(SystemCommand::Prune(a)) => prune_cmd::system_prune(app, &a),
    }
}

fn main() -> ExitCode {
    // A container's init or supervisor is this binary run again: the runtime
    // takes over here and never returns.
    kiln_runtime::init_entry();
    // Like other Unix tools, end quietly when the reader of our output goes
    // away (`kiln images | head`) instead of panicking on EPIPE. Sockets are
    // unaffected: Rust writes to them with MSG_NOSIGNAL.
    let _ = kiln_sys::process::reset_signal_handlers(&[libc::SIGPIPE]);
    // Usage errors (unknown flags or commands, bad flag values) exit 125,
    // as Docker's CLI does; help and version are not errors.
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 125 } else { 0 });
        }
    };
    kiln_engine::build_backend::set_trace_timing(
        std::env::var_os("KILN_TRACE_TIMING").is_some_and(|v| v != "0"),
    );
    match dispatch(cli) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            eprintln!("kiln: {err:#}");
            ExitCode::from(125)
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    #[test]
    fn command_line_definition_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
