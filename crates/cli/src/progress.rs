//! Docker's pull and push progress (a bar per layer on a terminal, plain
//! lines otherwise), and `pull_image_to`: a pull through the engine with
//! Docker's messages, shared by `pull`, `run`/`create` and `build`.

use std::io::{IsTerminal as _, Write as _};
use std::sync::Mutex;

use anyhow::Result;
use kiln_content::{ImageRecord, Reference};
use kiln_engine::Engine;
use kiln_model::{Digest, Platform};
use kiln_registry::Progress;

/// Pull progress as Docker shows it, for layers only (the config blob gets
/// no line): a bar per layer on a terminal, plain lines
/// (`<id>: Download complete`) otherwise.
pub(crate) struct LineProgress {
    enabled: bool,
    verbs: &'static Verbs,
    out: Mutex<Box<dyn std::io::Write + Send>>,
    pub(crate) config: std::sync::OnceLock<Digest>,
    /// On a terminal: the bars, one per layer.
    bars: Option<Bars>,
}

struct Bars {
    multi: indicatif::MultiProgress,
    by_digest: Mutex<std::collections::HashMap<Digest, indicatif::ProgressBar>>,
}

impl Bars {
    fn new(target: indicatif::ProgressDrawTarget) -> Bars {
        Bars {
            multi: indicatif::MultiProgress::with_draw_target(target),
            by_digest: Mutex::new(std::collections::HashMap::new()),
        }
    }

    /// The bar of `digest`, made on first use.
    fn bar(&self, digest: &Digest, size: u64) -> Option<indicatif::ProgressBar> {
        let mut map = self.by_digest.lock().ok()?;
        let bar = map.entry(*digest).or_insert_with(|| {
            let style = indicatif::ProgressStyle::with_template(
                "{prefix}: {msg:<17} [{bar:30}] {bytes}/{total_bytes}",
            )
            .expect("a valid template")
            .progress_chars("=> ");
            let bar = self
                .multi
                .add(indicatif::ProgressBar::new(size).with_style(style));
            bar.set_prefix(digest.hex()[..12].to_owned());
            bar
        });
        Some(bar.clone())
    }
}

/// What [`LineProgress`] says at each stage of a transfer.
pub(crate) struct Verbs {
    started: &'static str,
    progress: &'static str,
    exists: &'static str,
    done: &'static str,
}

const PULL_VERBS: Verbs = Verbs {
    started: "Pulling fs layer",
    progress: "Downloading",
    exists: "Already exists",
    done: "Download complete",
};

/// Docker's push lines: only `Layer already exists` and `Pushed` are
/// printed in lines mode (started and progress only move bars).
pub(crate) const PUSH_VERBS: Verbs = Verbs {
    started: "Preparing",
    progress: "Pushing",
    exists: "Layer already exists",
    done: "Pushed",
};

impl LineProgress {
    fn new(enabled: bool, stderr: bool) -> LineProgress {
        Self::with_verbs(enabled, stderr, &PULL_VERBS)
    }

    pub(crate) fn with_verbs(enabled: bool, stderr: bool, verbs: &'static Verbs) -> LineProgress {
        let (out, tty, target): (
            Box<dyn std::io::Write + Send>,
            bool,
            indicatif::ProgressDrawTarget,
        ) = if stderr {
            (
                Box::new(std::io::stderr()),
                std::io::stderr().is_terminal(),
                indicatif::ProgressDrawTarget::stderr(),
            )
        } else {
            (
                Box::new(std::io::stdout()),
                std::io::stdout().is_terminal(),
                indicatif::ProgressDrawTarget::stdout(),
            )
        };
        LineProgress {
            enabled,
            verbs,
            out: Mutex::new(out),
            config: std::sync::OnceLock::new(),
            bars: (enabled && tty).then(|| Bars::new(target)),
        }
    }

    pub(crate) fn say(&self, line: &str) {
        if !self.enabled {
            return;
        }
        if let Some(bars) = &self.bars {
            let _ = bars.multi.println(line);
        } else if let Ok(mut out) = self.out.lock() {
            let _ = writeln!(out, "{line}");
        }
    }

    /// Updates the layer's bar, or prints its line.
    fn layer(&self, digest: &Digest, what: &str, done: Option<(u64, u64)>, finished: bool) {
        if !self.enabled || self.config.get() == Some(digest) {
            return;
        }
        match &self.bars {
            Some(bars) => {
                let Some(bar) = bars.bar(digest, done.map_or(0, |d| d.1)) else {
                    return;
                };
                if let Some((pos, len)) = done {
                    bar.set_length(len);
                    bar.set_position(pos);
                }
                if finished {
                    bar.finish_with_message(what.to_owned());
                } else {
                    bar.set_message(what.to_owned());
                }
            }
            None => self.say(&format!("{}: {what}", &digest.hex()[..12])),
        }
    }
}

impl Progress for LineProgress {
    fn resolved(&self, _manifest: &Digest, config: &Digest, _layers: usize) {
        let _ = self.config.set(*config);
    }
    fn blob_started(&self, digest: &Digest, size: u64) {
        // A push prints no "Preparing" line in lines mode.
        if self.bars.is_some() || std::ptr::eq(self.verbs, &PULL_VERBS) {
            self.layer(digest, self.verbs.started, Some((0, size)), false);
        }
    }
    fn blob_progress(&self, digest: &Digest, done: u64, size: u64) {
        // Lines mode prints no line per chunk, as Docker's plain output.
        if self.bars.is_some() {
            self.layer(digest, self.verbs.progress, Some((done, size)), false);
        }
    }
    fn blob_exists(&self, digest: &Digest, size: u64) {
        self.layer(digest, self.verbs.exists, Some((size, size)), true);
    }
    fn blob_mounted(&self, digest: &Digest, size: u64, repository: &str) {
        // Docker's push line for a cross-repository mount.
        self.layer(
            digest,
            &format!("Mounted from {repository}"),
            Some((size, size)),
            true,
        );
    }
    fn blob_done(&self, digest: &Digest, size: u64) {
        self.layer(digest, self.verbs.done, Some((size, size)), true);
    }
    fn blob_retry(&self, digest: &Digest, error: &kiln_registry::Error) {
        self.layer(digest, &format!("Retrying ({error})"), None, false);
    }
}

/// Pulls `reference` and unpacks it, printing Docker-like progress on
/// stdout (or stderr, for `run` and `build`) unless `quiet`.
pub(crate) fn pull_image_to(
    app: &mut Engine,
    reference: &Reference,
    platform: &Platform,
    quiet: bool,
    stderr: bool,
) -> Result<ImageRecord> {
    let registry = app.registry()?;
    let progress = LineProgress::new(!quiet, stderr);
    let say = |line: String| progress.say(&line);
    if !quiet {
        let what = match (reference.tag(), reference.digest()) {
            (Some(t), _) => t.to_owned(),
            (None, Some(d)) => d.to_string(),
            (None, None) => "latest".to_owned(),
        };
        say(format!(
            "{what}: Pulling from {}",
            reference.familiar_name()
        ));
    }
    let before = app
        .store
        .resolve_image(&reference.to_string())
        .ok()
        .map(|r| r.id);
    let record = app.pull_with(&registry, reference, platform, &progress)?;
    if !quiet {
        if let Some(d) = record
            .repo_digests
            .first()
            .and_then(|d| d.rsplit('@').next())
        {
            say(format!("Digest: {d}"));
        }
        if before == Some(record.id) {
            say(format!(
                "Status: Image is up to date for {}",
                reference.familiar()
            ));
        } else {
            say(format!(
                "Status: Downloaded newer image for {}",
                reference.familiar()
            ));
        }
    }
    Ok(record)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn progress_with_hidden_bars() -> LineProgress {
        hidden(&PULL_VERBS)
    }

    fn hidden(verbs: &'static Verbs) -> LineProgress {
        LineProgress {
            enabled: true,
            verbs,
            out: Mutex::new(Box::new(std::io::sink())),
            config: std::sync::OnceLock::new(),
            bars: Some(Bars::new(indicatif::ProgressDrawTarget::hidden())),
        }
    }

    #[test]
    fn terminal_bars_follow_each_layer_and_skip_the_config() {
        let p = progress_with_hidden_bars();
        let (config, layer, cached) = (
            Digest::of(b"config"),
            Digest::of(b"layer"),
            Digest::of(b"cached"),
        );
        p.resolved(&Digest::of(b"manifest"), &config, 2);
        p.blob_started(&config, 10);
        p.blob_started(&layer, 100);
        p.blob_progress(&layer, 40, 100);
        let bars = p.bars.as_ref().expect("bars");
        let bar = bars
            .by_digest
            .lock()
            .expect("lock")
            .get(&layer)
            .cloned()
            .expect("a bar for the layer");
        assert_eq!((bar.position(), bar.length()), (40, Some(100)));
        assert_eq!(bar.message(), "Downloading");
        p.blob_done(&layer, 100);
        assert!(bar.is_finished());
        assert_eq!(bar.message(), "Download complete");
        p.blob_exists(&cached, 7);
        let map = bars.by_digest.lock().expect("lock");
        assert_eq!(
            map.get(&cached).map(|b| b.message()),
            Some("Already exists".to_owned())
        );
        assert!(!map.contains_key(&config), "the config blob gets no bar");
    }

    #[test]
    fn push_bars_say_pushing_then_pushed() {
        let p = hidden(&PUSH_VERBS);
        let (config, layer, there) = (
            Digest::of(b"config"),
            Digest::of(b"layer"),
            Digest::of(b"there"),
        );
        p.resolved(&Digest::of(b"manifest"), &config, 2);
        p.blob_started(&layer, 100);
        p.blob_progress(&layer, 60, 100);
        let bars = p.bars.as_ref().expect("bars");
        let bar = bars
            .by_digest
            .lock()
            .expect("lock")
            .get(&layer)
            .cloned()
            .expect("a bar for the layer");
        assert_eq!((bar.position(), bar.message()), (60, "Pushing".to_owned()));
        p.blob_done(&layer, 100);
        assert!(bar.is_finished());
        assert_eq!(bar.message(), "Pushed");
        p.blob_exists(&there, 5);
        p.blob_done(&config, 10);
        let map = bars.by_digest.lock().expect("lock");
        assert_eq!(
            map.get(&there).map(|b| b.message()),
            Some("Layer already exists".to_owned())
        );
        assert!(!map.contains_key(&config), "the config blob gets no bar");
    }
}
