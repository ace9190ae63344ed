//! `kiln commit`: a container's filesystem change becomes a new layer on its
//! image, with a history entry, and `-c` applies Dockerfile instructions to
//! the config, as `docker commit` does.

use anyhow::{Context as _, Result};
use kiln_image::{CommitOptions, HistoryEntry};
use kiln_layer::DiffOptions;

use crate::app::App;

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
    /// Accepted for Docker compatibility (kiln commits without pausing).
    #[arg(short, long)]
    pause: bool,
    /// The container.
    container: String,
    /// The new image's name (`repo[:tag]`).
    repository: Option<String>,
}

pub(crate) fn commit(app: &mut App, a: &CommitArgs) -> Result<u8> {
    let _ = a.pause;
    let rec = crate::container_cmd::find(app, &a.container)?;
    let img = kiln_image::read_image(&app.store, &rec.image_id)?;
    let mut config = img.config.clone();
    {
        let cc = config.container_config_mut();
        // As `docker commit`: the image takes the container's own config
        // (its command, environment, working directory and user as run),
        // then the --change instructions.
        if let Some((entrypoint, cmd)) = &rec.entrypoint_cmd {
            cc.entrypoint = (!entrypoint.is_empty()).then(|| entrypoint.clone());
            cc.cmd = (!cmd.is_empty()).then(|| cmd.clone());
            cc.env = Some(rec.env.clone());
            if rec.cwd != "/" {
                cc.working_dir = Some(rec.cwd.clone());
            }
            if !rec.user.is_empty() {
                cc.user = Some(rec.user.clone());
            }
        }
        for change in &a.change {
            kiln_image::apply_change(cc, change)
                .with_context(|| format!("invalid --change {change:?}"))?;
        }
    }
    let now = kiln_image::Timestamp::from_system_time(std::time::SystemTime::now()).to_string();
    config.created = Some(now.clone());
    if let Some(author) = &a.author {
        config.author = Some(author.clone());
    }
    let tags = match &a.repository {
        Some(r) => vec![
            r.parse()
                .with_context(|| format!("invalid reference {r:?}"))?,
        ],
        None => Vec::new(),
    };
    let snapshotter = app.snapshotter()?;
    let opts = CommitOptions {
        history: HistoryEntry {
            created: Some(now),
            created_by: Some(rec.args.join(" ")),
            author: a.author.clone(),
            comment: a.message.clone(),
            ..HistoryEntry::default()
        },
        tags,
        diff: DiffOptions::default(),
        // Local layers are stored uncompressed (as Docker does); push and
        // save compress them on the way out.
        compression: kiln_layer::Compression::None,
        skip_empty_layer: false,
        // The container keeps its writable layer: it may go on running.
        commit_snapshot: false,
    };
    let committed = kiln_image::commit_layer(
        &app.store,
        &*snapshotter,
        &rec.snapshot,
        config,
        img.manifest.layers.clone(),
        &opts,
    )
    .with_context(|| format!("cannot commit container {}", &rec.id[..12]))?;
    let mut record = committed.record;
    record.annotations.insert(
        crate::gc::PARENT_ANNOTATION.to_owned(),
        rec.image_id.to_string(),
    );
    app.store.put_image(&record)?;
    println!("{}", record.id);
    Ok(0)
}
