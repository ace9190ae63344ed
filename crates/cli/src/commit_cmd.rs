//! `kiln commit`: the engine's `commit_container` with Docker's flags and
//! output (the new image's ID).

use anyhow::Result;
use kiln_engine::Engine;
use kiln_engine::commit::CommitContainer;

/// `kiln commit`.
#[derive(Debug, clap::Args)]
pub(crate) struct CommitArgs {
    /// Apply a Dockerfile instruction to the image (CMD, ENTRYPOINT, ENV,
    /// EXPOSE, LABEL, USER, VOLUME, WORKDIR, STOPSIGNAL, ONBUILD).
    #[arg(short, long)]
    change: Vec<String>,
    /// Commit message.
    #[arg(short, long)]
    message: Option<String>,
    /// Author (`Name <email>`).
    #[arg(short, long)]
    author: Option<String>,
    /// Pause the container during the commit (default true, as Docker):
    /// its processes are frozen with the cgroup freezer while its changes
    /// are read. `--pause=false` commits while it runs.
    #[arg(
        short,
        long,
        default_value_t = true,
        action = clap::ArgAction::Set,
        num_args = 0..=1,
        default_missing_value = "true",
        require_equals = true
    )]
    pause: bool,
    /// The container.
    container: String,
    /// The new image's name (`repo[:tag]`).
    repository: Option<String>,
}

pub(crate) fn commit(app: &mut Engine, a: &CommitArgs) -> Result<u8> {
    let rec = app.find_container(&a.container)?;
    let record = app.commit_container(
        &rec,
        &CommitContainer {
            changes: a.change.clone(),
            message: a.message.clone(),
            author: a.author.clone(),
            pause: a.pause,
            repository: a.repository.clone(),
        },
    )?;
    println!("{}", record.id);
    Ok(0)
}
