//! Build progress as events, and the legacy Docker text rendering of them.
//!
//! The builder never prints: it sends [`Event`]s to a [`Progress`] sink. The
//! CLI renders them (live view, plain lines) or uses [`LegacyWriter`], which
//! writes exactly what `docker build` (legacy builder) writes.

use std::io::Write;
use std::sync::Mutex;

use crate::backend::Stream;

/// Something that happened during a build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A step starts: `Step 2/4 : RUN echo hello`.
    Step {
        /// 1-based step number over the stages being built.
        number: usize,
        /// Total number of steps.
        total: usize,
        /// Stage index (0-based, file order).
        stage: usize,
        /// The instruction as written (continuations joined).
        text: String,
    },
    /// `# Executing N build triggers` (ONBUILD of a base image).
    Triggers {
        /// Number of triggers.
        count: usize,
    },
    /// The step's result came from the cache.
    UsingCache,
    /// Why the step missed the cache (only with `explain_cache`).
    CacheMiss {
        /// Human-readable reason.
        reason: String,
    },
    /// An intermediate container started (12-digit ID).
    RunningIn {
        /// Short container ID.
        container: String,
    },
    /// Output of the step's command.
    Output {
        /// Which stream.
        stream: Stream,
        /// Raw bytes.
        data: Vec<u8>,
    },
    /// The intermediate container is removed.
    Removing {
        /// Short container ID.
        container: String,
    },
    /// The step's resulting image (12-digit ID).
    StepImage {
        /// Short image ID.
        image: String,
    },
    /// A warning (unused build args, deprecated instruction).
    Warning {
        /// The message.
        message: String,
    },
    /// The build finished: `Successfully built <id>`.
    Built {
        /// Short image ID.
        image: String,
    },
    /// A tag was set: `Successfully tagged <name>`.
    Tagged {
        /// The normalised name.
        name: String,
    },
}

/// A sink for build events; shared by the threads of parallel stages.
pub trait Progress: Send + Sync {
    /// Receives one event.
    fn event(&self, event: Event);
}

/// Discards every event.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn event(&self, _event: Event) {}
}

/// Renders events as the legacy `docker build` output into a writer.
pub struct LegacyWriter<W: Write + Send> {
    out: Mutex<W>,
}

impl<W: Write + Send> LegacyWriter<W> {
    /// Wraps a writer.
    pub fn new(out: W) -> Self {
        LegacyWriter {
            out: Mutex::new(out),
        }
    }

    /// Returns the writer.
    pub fn into_inner(self) -> W {
        self.out
            .into_inner()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The legacy text of one event (`None` for events legacy Docker does not show).
pub fn legacy_text(event: &Event) -> Option<Vec<u8>> {
    let line = match event {
        Event::Step {
            number,
            total,
            text,
            ..
        } => format!("Step {number}/{total} : {text}\n"),
        Event::Triggers { count } => {
            let s = if *count == 1 { "" } else { "s" };
            format!("# Executing {count} build trigger{s}\n")
        }
        Event::UsingCache => " ---> Using cache\n".to_string(),
        Event::CacheMiss { reason } => format!(" ---> Cache miss: {reason}\n"),
        Event::RunningIn { container } => format!(" ---> Running in {container}\n"),
        Event::Output { data, .. } => return Some(data.clone()),
        Event::Removing { container } => format!("Removing intermediate container {container}\n"),
        Event::StepImage { image } => format!(" ---> {image}\n"),
        Event::Warning { message } => format!("[Warning] {message}\n"),
        Event::Built { image } => format!("Successfully built {image}\n"),
        Event::Tagged { name } => format!("Successfully tagged {name}\n"),
    };
    Some(line.into_bytes())
}

impl<W: Write + Send> Progress for LegacyWriter<W> {
    fn event(&self, event: Event) {
        if let Some(bytes) = legacy_text(&event) {
            let mut out = self
                .out
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            // Progress is best effort: a closed pipe must not fail the build.
            let _ = out.write_all(&bytes);
            let _ = out.flush();
        }
    }
}

/// Collects events in memory (useful for tests and for `--progress` renderers).
#[derive(Debug, Default)]
pub struct EventLog(pub Mutex<Vec<Event>>);

impl EventLog {
    /// A copy of the events so far.
    pub fn events(&self) -> Vec<Event> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The legacy text of the events so far.
    pub fn legacy(&self) -> String {
        let bytes: Vec<u8> = self
            .events()
            .iter()
            .filter_map(legacy_text)
            .flatten()
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

impl Progress for EventLog {
    fn event(&self, event: Event) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).push(event);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_lines() {
        let w = LegacyWriter::new(Vec::new());
        w.event(Event::Step {
            number: 2,
            total: 4,
            stage: 0,
            text: "RUN echo hello".into(),
        });
        w.event(Event::RunningIn {
            container: "8b5e0ebd4f6c".into(),
        });
        w.event(Event::Output {
            stream: Stream::Stdout,
            data: b"hello\n".to_vec(),
        });
        w.event(Event::Removing {
            container: "8b5e0ebd4f6c".into(),
        });
        w.event(Event::StepImage {
            image: "3c5a1bd4b1c9".into(),
        });
        w.event(Event::Triggers { count: 1 });
        let text = String::from_utf8(w.into_inner()).expect("utf8");
        assert_eq!(
            text,
            "Step 2/4 : RUN echo hello\n ---> Running in 8b5e0ebd4f6c\nhello\n\
             Removing intermediate container 8b5e0ebd4f6c\n ---> 3c5a1bd4b1c9\n\
             # Executing 1 build trigger\n"
        );
    }
}
