//! The log format of detached containers: JSON lines tagged with the stream
//! they came from, the shape of Docker's `json-file` driver
//! (`{"log":"hello\n","stream":"stdout","time":"2026-...Z"}`), so that
//! `logs` can write stdout and stderr back to separate streams.

use serde::{Deserialize, Serialize};

/// Which standard stream a log entry came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogStream {
    /// The container's standard output.
    Stdout,
    /// The container's standard error.
    Stderr,
}

/// One line of a container log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry {
    /// The text, with its trailing newline when the line was complete
    /// (bytes that are not UTF-8 are replaced, as Docker does).
    pub log: String,
    /// Where it was written.
    pub stream: LogStream,
    /// When the supervisor read it (RFC 3339).
    pub time: String,
}

impl LogEntry {
    /// The entry as one JSON line, newline included.
    pub fn to_line(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec(self).expect("a log entry always serialises");
        v.push(b'\n');
        v
    }

    /// Parses one line of a log file; `None` when it is not an entry
    /// (e.g. a log written before kiln tagged streams).
    pub fn parse(line: &[u8]) -> Option<LogEntry> {
        serde_json::from_slice(line).ok()
    }
}

/// Cuts a stream of chunks into lines, keeping an incomplete last line
/// until its newline arrives (or it grows past 16 KiB, as Docker splits
/// long lines).
#[derive(Debug, Default)]
pub struct LineSplitter {
    pending: Vec<u8>,
}

const MAX_LINE: usize = 16 * 1024;

impl LineSplitter {
    /// Adds `chunk` and returns the lines it completed.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<Vec<u8>> {
        self.pending.extend_from_slice(chunk);
        let mut out = Vec::new();
        while let Some(i) = self.pending.iter().position(|&b| b == b'\n') {
            let rest = self.pending.split_off(i + 1);
            out.push(std::mem::replace(&mut self.pending, rest));
        }
        while self.pending.len() >= MAX_LINE {
            let rest = self.pending.split_off(MAX_LINE);
            out.push(std::mem::replace(&mut self.pending, rest));
        }
        out
    }

    /// What is left at the end of the stream (an unterminated last line).
    pub fn finish(&mut self) -> Option<Vec<u8>> {
        (!self.pending.is_empty()).then(|| std::mem::take(&mut self.pending))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_as_docker_json_file_lines() {
        let e = LogEntry {
            log: "hi\n".into(),
            stream: LogStream::Stderr,
            time: "2026-01-01T00:00:00.000000000Z".into(),
        };
        let line = e.to_line();
        assert_eq!(
            String::from_utf8_lossy(&line),
            "{\"log\":\"hi\\n\",\"stream\":\"stderr\",\"time\":\"2026-01-01T00:00:00.000000000Z\"}\n"
        );
        assert_eq!(LogEntry::parse(line.trim_ascii_end()), Some(e));
        assert_eq!(LogEntry::parse(b"plain text"), None);
    }

    #[test]
    fn splitter_keeps_partial_lines_until_complete() {
        let mut s = LineSplitter::default();
        assert_eq!(s.push(b"a\nb"), vec![b"a\n".to_vec()]);
        assert!(s.push(b"c").is_empty());
        assert_eq!(s.push(b"\nd\n"), vec![b"bc\n".to_vec(), b"d\n".to_vec()]);
        assert!(s.push(b"tail").is_empty());
        assert_eq!(s.finish(), Some(b"tail".to_vec()));
        assert_eq!(s.finish(), None);
        let long = vec![b'x'; MAX_LINE + 5];
        let lines = s.push(&long);
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].len(), MAX_LINE);
        assert_eq!(s.finish().map(|r| r.len()), Some(5));
    }
}
