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

/// One step as a live view shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepLine {
    /// 1-based step number.
    pub number: usize,
    /// Total number of steps.
    pub total: usize,
    /// The instruction as written.
    pub text: String,
    /// Time spent in the step so far (or in all, once done).
    pub elapsed: std::time::Duration,
    /// The step is over (a later step started, or the build ended).
    pub done: bool,
    /// Its result came from the cache.
    pub cached: bool,
    /// The last lines of its output (at most the timeline's tail length).
    pub tail: Vec<String>,
}

impl StepLine {
    /// `Step 2/4 : RUN echo hi` with its time: `0.31s`, and `CACHED`.
    pub fn summary(&self) -> String {
        let cached = if self.cached { " CACHED" } else { "" };
        format!(
            "Step {}/{} : {} {:.2}s{cached}",
            self.number,
            self.total,
            self.text,
            self.elapsed.as_secs_f64()
        )
    }
}

#[derive(Debug, Clone)]
struct TimedStep {
    number: usize,
    total: usize,
    text: String,
    started: std::time::Duration,
    ended: Option<std::time::Duration>,
    cached: bool,
    output: Vec<u8>,
}

/// Folds build events into steps with their timing and output, for live
/// views (`--progress tty`). The time of each event is passed in (time since
/// the build started), so the library reads no clock.
#[derive(Debug)]
pub struct Timeline {
    steps: Vec<TimedStep>,
    tail_lines: usize,
    finished: bool,
}

impl Timeline {
    /// A timeline that keeps the last `tail_lines` lines of the running step.
    pub fn new(tail_lines: usize) -> Timeline {
        Timeline {
            steps: Vec::new(),
            tail_lines,
            finished: false,
        }
    }

    /// Takes in `event`, which happened at `at`.
    pub fn event(&mut self, event: &Event, at: std::time::Duration) {
        match event {
            Event::Step {
                number,
                total,
                text,
                ..
            } => {
                self.end_current(at);
                self.steps.push(TimedStep {
                    number: *number,
                    total: *total,
                    text: text.clone(),
                    started: at,
                    ended: None,
                    cached: false,
                    output: Vec::new(),
                });
            }
            Event::UsingCache => {
                if let Some(s) = self.steps.last_mut() {
                    s.cached = true;
                }
            }
            Event::Output { data, .. } => {
                if let Some(s) = self.steps.last_mut() {
                    s.output.extend_from_slice(data);
                }
            }
            Event::Built { .. } => {
                self.end_current(at);
                self.finished = true;
            }
            _ => {}
        }
    }

    /// Marks the running step as over (the build ended or failed).
    pub fn end_current(&mut self, at: std::time::Duration) {
        if let Some(s) = self.steps.last_mut()
            && s.ended.is_none()
        {
            s.ended = Some(at);
        }
    }

    /// The steps so far, as of `now`.
    pub fn lines(&self, now: std::time::Duration) -> Vec<StepLine> {
        self.steps
            .iter()
            .map(|s| {
                let end = s.ended.unwrap_or(now);
                StepLine {
                    number: s.number,
                    total: s.total,
                    text: s.text.clone(),
                    elapsed: end.saturating_sub(s.started),
                    done: s.ended.is_some(),
                    cached: s.cached,
                    tail: if s.ended.is_none() {
                        tail(&s.output, self.tail_lines)
                    } else {
                        Vec::new()
                    },
                }
            })
            .collect()
    }

    /// The whole output of the last step (for a failed step).
    pub fn last_output(&self) -> &[u8] {
        self.steps.last().map_or(&[], |s| &s.output)
    }
}

/// The last `n` non-empty lines of `data` (a partial last line counts).
fn tail(data: &[u8], n: usize) -> Vec<String> {
    let text = String::from_utf8_lossy(data);
    let lines: Vec<&str> = text
        .split(['\n', '\r'])
        .filter(|l| !l.trim().is_empty())
        .collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|l| l.to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timeline_times_steps_and_keeps_the_tail() {
        let ms = Duration::from_millis;
        let mut t = Timeline::new(2);
        let step = |n: usize, text: &str| Event::Step {
            number: n,
            total: 3,
            stage: 0,
            text: text.into(),
        };
        t.event(&step(1, "FROM busybox"), ms(0));
        t.event(&step(2, "RUN make"), ms(10));
        t.event(&Event::UsingCache, ms(12));
        t.event(&step(3, "RUN test"), ms(40));
        for l in ["one\n", "two\n", "thr", "ee\n"] {
            t.event(
                &Event::Output {
                    stream: Stream::Stdout,
                    data: l.as_bytes().to_vec(),
                },
                ms(50),
            );
        }
        let lines = t.lines(ms(340));
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0].summary(), "Step 1/3 : FROM busybox 0.01s");
        assert_eq!(lines[1].summary(), "Step 2/3 : RUN make 0.03s CACHED");
        assert!(lines[1].done && !lines[2].done);
        assert_eq!(lines[2].elapsed, ms(300));
        assert_eq!(lines[2].tail, vec!["two".to_string(), "three".to_string()]);
        assert_eq!(t.last_output(), b"one\ntwo\nthree\n");
        t.event(&Event::Built { image: "x".into() }, ms(400));
        let lines = t.lines(ms(999));
        assert!(lines[2].done);
        assert_eq!(lines[2].elapsed, ms(360));
        assert!(lines[2].tail.is_empty(), "a finished step shows no tail");
    }

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
