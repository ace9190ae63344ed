//! Committing a container: its filesystem change becomes a new layer on its
//! image, with a history entry, and `--change` applies Dockerfile
//! instructions to the config, as `docker commit` does.

use std::path::{Path, PathBuf};

use kiln_content::ImageRecord;
use kiln_image::CommitOptions;
use kiln_layer::DiffOptions;
use kiln_model::{History, IdMap};
use kiln_snapshot::{ApplyTarget, DiffSource, Info, Mount, Snapshotter, Usage};

use crate::FrozenForCommit;
use crate::container::ContainerRecord;
use crate::engine::Engine;
use crate::error::{Context as _, Result};

/// What a commit of a container records besides its changes.
#[derive(Debug, Clone)]
pub struct CommitContainer {
    /// Dockerfile instructions applied to the image's config (CMD,
    /// ENTRYPOINT, ENV, EXPOSE, LABEL, USER, VOLUME, WORKDIR, STOPSIGNAL,
    /// ONBUILD).
    pub changes: Vec<String>,
    /// Commit message (the image's comment and its history entry's).
    pub message: Option<String>,
    /// Author (`Name <email>`).
    pub author: Option<String>,
    /// Freeze the container while its changes are read (Docker's default).
    pub pause: bool,
    /// The new image's name (`repo[:tag]`), if any.
    pub repository: Option<String>,
}

impl Engine {
    /// `docker commit`: the container's filesystem change becomes a new
    /// layer on its image (the runtime's mount-point stubs left out, owners
    /// as the container saw them), its config the container's own plus
    /// `opts.changes`; the new image records its parent.
    pub fn commit_container(
        &mut self,
        rec: &ContainerRecord,
        a: &CommitContainer,
    ) -> Result<ImageRecord> {
        let app = self;
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
            for change in &a.changes {
                kiln_image::apply_change(cc, change)
                    .with_context(|| format!("invalid --change {change:?}"))?;
            }
        }
        let now = kiln_image::Timestamp::from_system_time(std::time::SystemTime::now()).to_string();
        config.created = Some(now.clone());
        if let Some(author) = &a.author {
            config.author = Some(author.clone());
        }
        // As Docker's: the image's own comment is the commit message (none
        // without one), never the base image's.
        match &a.message {
            Some(m) => {
                config
                    .extra
                    .insert("comment".to_owned(), serde_json::Value::String(m.clone()));
            }
            None => {
                config.extra.remove("comment");
            }
        }
        let tags = match &a.repository {
            Some(r) => vec![
                r.parse()
                    .with_context(|| format!("invalid reference {r:?}"))?,
            ],
            None => Vec::new(),
        };
        let snapshotter = app.snapshotter()?;
        let exclude = runtime_stubs(&*snapshotter, &rec.snapshot)?;
        // A container in a user namespace wrote its files as host ids: the
        // layer records them as the ids the container saw.
        let snapshotter: &dyn Snapshotter = &IdMapped {
            inner: &*snapshotter,
            ids: rec.userns.clone(),
        };
        let opts = CommitOptions {
            history: History {
                created: Some(now),
                created_by: Some(rec.args.join(" ")),
                author: a.author.clone(),
                comment: a.message.clone(),
                ..History::default()
            },
            tags,
            // The mount points kiln-runtime made for /proc, /dev, /sys and the
            // /etc files stay out of the layer, as Docker's init layer keeps
            // them out of `docker commit`.
            diff: DiffOptions {
                exclude,
                ..DiffOptions::default()
            },
            // Local layers are stored uncompressed (as Docker does); push and
            // save compress them on the way out.
            compression: kiln_layer::Compression::None,
            skip_empty_layer: false,
            // The container keeps its writable layer: it may go on running.
            commit_snapshot: false,
        };
        // Frozen (unless `--pause=false`) until the layer is written: thawed
        // when this guard goes, whatever the outcome.
        let frozen = if a.pause {
            Some(FrozenForCommit::new(app, rec)?)
        } else {
            None
        };
        let committed = kiln_image::commit_layer(
            &app.store,
            snapshotter,
            &rec.snapshot,
            config,
            img.manifest.layers.clone(),
            &opts,
        )
        .with_context(|| {
            format!(
                "cannot commit container {}",
                rec.id.get(..12).unwrap_or(&rec.id)
            )
        });
        drop(frozen);
        let mut record = committed?.record;
        record.annotations.insert(
            crate::PARENT_ANNOTATION.to_owned(),
            rec.image_id.to_string(),
        );
        app.store.put_image(&record)?;
        Ok(record)
    }
}

/// The runtime's mount points (relative paths) that the container's layer
/// holds only as the stubs the runtime created: absent from every lower layer
/// and still an empty directory or an empty file. A parent directory that the
/// runtime created for them alone (an image without `/etc`) goes too.
pub fn runtime_stubs(snapshotter: &dyn Snapshotter, key: &str) -> Result<Vec<PathBuf>> {
    let (upper, lowers) = match snapshotter.diff_source(key)? {
        DiffSource::Dirs { lower, upper } => (upper, vec![lower]),
        DiffSource::OverlayUpper { upper } => {
            let lowers = snapshotter
                .mounts(key)?
                .iter()
                .flat_map(|m| m.options.iter())
                .filter_map(|o| o.strip_prefix("lowerdir="))
                .flat_map(|l| l.split(':').map(PathBuf::from).collect::<Vec<_>>())
                .collect();
            (upper, lowers)
        }
        // Snapshotters never return a mapped source themselves.
        _ => return Ok(Vec::new()),
    };
    Ok(stubs_in(&upper, &lowers))
}

fn stubs_in(upper: &Path, lowers: &[PathBuf]) -> Vec<PathBuf> {
    let in_lowers = |rel: &Path| {
        lowers
            .iter()
            .any(|l| l.join(rel).symlink_metadata().is_ok())
    };
    let mut stubs: Vec<PathBuf> = Vec::new();
    for p in kiln_runtime::MOUNT_POINTS {
        let rel = PathBuf::from(p.trim_start_matches('/'));
        if in_lowers(&rel) {
            continue;
        }
        let Ok(meta) = upper.join(&rel).symlink_metadata() else {
            continue;
        };
        let empty = if meta.is_dir() {
            std::fs::read_dir(upper.join(&rel)).is_ok_and(|mut d| d.next().is_none())
        } else {
            meta.is_file() && meta.len() == 0
        };
        if empty {
            stubs.push(rel);
        }
    }
    // Parents made only to hold stubs (e.g. /etc in an image without one).
    let parents: Vec<PathBuf> = stubs
        .iter()
        .filter_map(|s| s.parent())
        .filter(|p| !p.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .collect();
    for parent in parents {
        if stubs.contains(&parent) || in_lowers(&parent) {
            continue;
        }
        let only_stubs = std::fs::read_dir(upper.join(&parent)).is_ok_and(|d| {
            d.flatten()
                .all(|e| stubs.contains(&parent.join(e.file_name())))
        });
        if only_stubs {
            stubs.push(parent);
        }
    }
    stubs
}

/// A snapshotter whose diff sources map owners through `ids` (when set);
/// everything else is `inner`'s.
struct IdMapped<'a> {
    inner: &'a dyn Snapshotter,
    ids: Option<IdMap>,
}

impl Snapshotter for IdMapped<'_> {
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    fn prepare(&self, key: &str, parent: Option<&str>) -> kiln_snapshot::Result<Vec<Mount>> {
        self.inner.prepare(key, parent)
    }
    fn view(&self, key: &str, parent: Option<&str>) -> kiln_snapshot::Result<Vec<Mount>> {
        self.inner.view(key, parent)
    }
    fn commit(&self, name: &str, key: &str) -> kiln_snapshot::Result<()> {
        self.inner.commit(name, key)
    }
    fn remove(&self, key: &str) -> kiln_snapshot::Result<()> {
        self.inner.remove(key)
    }
    fn mounts(&self, key: &str) -> kiln_snapshot::Result<Vec<Mount>> {
        self.inner.mounts(key)
    }
    fn usage(&self, key: &str) -> kiln_snapshot::Result<Usage> {
        self.inner.usage(key)
    }
    fn stat(&self, key: &str) -> kiln_snapshot::Result<Info> {
        self.inner.stat(key)
    }
    fn exists(&self, key: &str) -> kiln_snapshot::Result<bool> {
        self.inner.exists(key)
    }
    fn list(&self) -> kiln_snapshot::Result<Vec<Info>> {
        self.inner.list()
    }
    fn apply_target(&self, key: &str) -> kiln_snapshot::Result<ApplyTarget> {
        self.inner.apply_target(key)
    }
    fn diff_source(&self, key: &str) -> kiln_snapshot::Result<DiffSource> {
        let source = self.inner.diff_source(key)?;
        Ok(match &self.ids {
            Some(ids) => source.with_id_map(ids.clone()),
            None => source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_stubs_are_left_out_but_real_content_stays() {
        let t = tempfile::tempdir().expect("tempdir");
        let (upper, lower) = (t.path().join("upper"), t.path().join("lower"));
        for d in ["proc", "dev", "sys/x", "etc"] {
            std::fs::create_dir_all(upper.join(d)).expect("mkdir");
        }
        std::fs::create_dir_all(lower.join("dev")).expect("mkdir");
        std::fs::write(upper.join("etc/hostname"), "").expect("write");
        std::fs::write(upper.join("etc/hosts"), "").expect("write");
        std::fs::write(upper.join("etc/resolv.conf"), "nameserver 127.0.0.1\n").expect("write");
        let stubs = stubs_in(&upper, std::slice::from_ref(&lower));
        // /proc: an empty stub absent below. /dev: the image has it (the
        // copy-up is the container's business). /sys: not empty. /etc: holds
        // a file with content, so it and that file stay.
        let want: Vec<PathBuf> = ["proc", "etc/hostname", "etc/hosts"]
            .iter()
            .map(PathBuf::from)
            .collect();
        assert_eq!(stubs, want);
        std::fs::write(upper.join("etc/resolv.conf"), "").expect("write");
        let stubs = stubs_in(&upper, &[lower]);
        assert!(stubs.contains(&PathBuf::from("etc")), "{stubs:?}");
    }
}
