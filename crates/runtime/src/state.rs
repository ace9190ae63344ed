//! The files in a container's state directory, and what they say about
//! the container even after its supervisor died.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::cgroups::Cgroup;
use crate::config::ExitStatus;
use crate::error::{Error, Result};

pub(crate) const STATE_FILE: &str = "state.json";
pub(crate) const EXIT_FILE: &str = "exit.json";
pub(crate) const REQUEST_FILE: &str = "request.json";
/// Present while a stop signal sent through the runtime (`kill -s STOP`)
/// holds the container's init: its supervisor then leaves it stopped.
pub(crate) const STOP_REQUESTED: &str = "stop-requested";

/// Whether `sig` stops a process whose disposition is the default.
pub(crate) fn is_stop_signal(sig: i32) -> bool {
    matches!(
        sig,
        libc::SIGSTOP | libc::SIGTSTP | libc::SIGTTIN | libc::SIGTTOU
    )
}

/// Records a stop (or the continue) that the caller sends the init of the
/// container in `dir`, for its supervisor (see `STOP_REQUESTED`).
pub(crate) fn note_stop_request(dir: &Path, sig: i32) {
    let mark = dir.join(STOP_REQUESTED);
    if is_stop_signal(sig) {
        let _ = fs::write(&mark, sig.to_string());
    } else if sig == libc::SIGCONT {
        let _ = fs::remove_file(&mark);
    }
}

/// Written by the shim once the container's init exists.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct StateFile {
    pub(crate) id: String,
    pub(crate) pid: i32,
    pub(crate) pid_start: u64,
    pub(crate) shim_pid: i32,
    /// The supervisor's start time (`/proc/PID/stat` field 22), so that
    /// `delete` waits for that process and not a later one with its pid.
    #[serde(default)]
    pub(crate) shim_start: u64,
    pub(crate) cgroup: Option<Cgroup>,
    /// RFC 3339 time the container's process was started.
    #[serde(default)]
    pub(crate) started_at: Option<String>,
}

/// Written by the shim when the container's init ended.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct ExitFile {
    pub(crate) status: ExitStatus,
    /// RFC 3339 time the container's process ended.
    #[serde(default)]
    pub(crate) finished_at: Option<String>,
}

/// Whether a container runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Status {
    /// Created but its process is not started yet (or failed to start).
    Created,
    /// Its init process is alive.
    Running,
    /// Its init process ended.
    Exited,
}

/// What the runtime knows about a container.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerState {
    /// The container's ID.
    pub id: String,
    /// Running or not.
    pub status: Status,
    /// Host pid of the container's init while running.
    pub pid: Option<i32>,
    /// How it ended, when known. `None` with [`Status::Exited`] means the
    /// supervisor died before recording it (Docker then reports 255... kiln
    /// leaves the choice to the caller).
    pub exit: Option<ExitStatus>,
    /// When its process started (RFC 3339, UTC, nanoseconds), as Docker's
    /// `State.StartedAt`; `None` before the supervisor recorded it.
    pub started_at: Option<String>,
    /// When its process ended (RFC 3339), as Docker's `State.FinishedAt`;
    /// `None` while running or when the supervisor died first.
    pub finished_at: Option<String>,
}

/// `t` as RFC 3339 in UTC with nanoseconds (`2026-11-29T03:04:05.123456789Z`),
/// the form Docker uses for `StartedAt` and `FinishedAt`.
pub(crate) fn rfc3339(t: std::time::SystemTime) -> String {
    let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_nanos()
    )
}

pub(crate) fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let data = serde_json::to_vec(value).map_err(|e| Error::State {
        path: path.to_path_buf(),
        source: e,
    })?;
    fs::write(&tmp, data).map_err(|e| Error::io("write", &tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| Error::io("rename", path, e))
}

pub(crate) fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Option<T>> {
    match fs::read(path) {
        Ok(data) => serde_json::from_slice(&data)
            .map(Some)
            .map_err(|e| Error::State {
                path: path.to_path_buf(),
                source: e,
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io("read", path, e)),
    }
}

/// Field 22 of `/proc/PID/stat`: the start time, which tells a live
/// process from a later one reusing its pid.
pub(crate) fn start_time(pid: i32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(19)?.parse().ok()
}

/// Whether the process recorded in `state` still runs (and is not a zombie).
pub(crate) fn alive(state: &StateFile) -> bool {
    if start_time(state.pid) != Some(state.pid_start) {
        return false;
    }
    let stat = fs::read_to_string(format!("/proc/{}/stat", state.pid)).unwrap_or_default();
    let run_state = stat
        .rfind(')')
        .and_then(|i| stat[i + 1..].split_whitespace().next().map(str::to_owned));
    run_state.as_deref() != Some("Z") && run_state.as_deref() != Some("X")
}

/// The run state letter of `/proc/PID/stat` (`R`, `S`, `T`, `t`, `Z`, ...).
fn run_state(pid: i32) -> Option<char> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 1..]
        .split_whitespace()
        .next()?
        .chars()
        .next()
}

/// Whether `pid` is in a group stop with no tracer (`T`, not ptrace's
/// `t`): stopped until someone sends it SIGCONT.
pub(crate) fn group_stopped(pid: i32) -> bool {
    run_state(pid) == Some('T')
        && fs::read_to_string(format!("/proc/{pid}/status")).is_ok_and(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("TracerPid:"))
                .is_some_and(|t| t.trim() == "0")
        })
}

pub(crate) fn paths(dir: &Path) -> (PathBuf, PathBuf) {
    (dir.join(STATE_FILE), dir.join(EXIT_FILE))
}

/// Reads the state of the container in `dir`.
pub(crate) fn query(dir: &Path) -> Result<ContainerState> {
    let (state_path, exit_path) = paths(dir);
    let state: Option<StateFile> = read_json(&state_path)?;
    let exit: Option<ExitFile> = read_json(&exit_path)?;
    let id = state.as_ref().map(|s| s.id.clone()).unwrap_or_default();
    let started_at = state.as_ref().and_then(|s| s.started_at.clone());
    Ok(match (state, exit) {
        (_, Some(e)) => ContainerState {
            id,
            status: Status::Exited,
            pid: None,
            exit: Some(e.status),
            started_at,
            finished_at: e.finished_at,
        },
        (None, None) => ContainerState {
            id,
            status: Status::Created,
            pid: None,
            exit: None,
            started_at,
            finished_at: None,
        },
        (Some(s), None) if alive(&s) => ContainerState {
            id,
            status: Status::Running,
            pid: Some(s.pid),
            exit: None,
            started_at,
            finished_at: None,
        },
        (Some(_), None) => ContainerState {
            id,
            status: Status::Exited,
            pid: None,
            exit: None,
            started_at,
            finished_at: None,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_follows_the_files() {
        let d = tempfile::tempdir().expect("tempdir");
        assert_eq!(query(d.path()).expect("query").status, Status::Created);
        let me = std::process::id() as i32;
        let s = StateFile {
            id: "c".into(),
            pid: me,
            pid_start: start_time(me).expect("own stat"),
            shim_pid: me,
            shim_start: 0,
            cgroup: None,
            started_at: Some("2026-01-02T03:04:05.000000006Z".into()),
        };
        write_json(&d.path().join(STATE_FILE), &s).expect("write");
        let st = query(d.path()).expect("query");
        assert_eq!((st.status, st.pid), (Status::Running, Some(me)));
        // A recorded pid whose start time differs is a reused pid: exited.
        let stale = StateFile {
            pid_start: s.pid_start + 1,
            ..s.clone()
        };
        write_json(&d.path().join(STATE_FILE), &stale).expect("write");
        assert_eq!(
            query(d.path()).expect("query"),
            ContainerState {
                id: "c".into(),
                status: Status::Exited,
                pid: None,
                exit: None,
                started_at: Some("2026-01-02T03:04:05.000000006Z".into()),
                finished_at: None,
            }
        );
        write_json(
            &d.path().join(EXIT_FILE),
            &ExitFile {
                status: ExitStatus::Signal(9),
                finished_at: Some("2026-01-02T03:04:06.000000000Z".into()),
            },
        )
        .expect("write");
        let st = query(d.path()).expect("query");
        assert_eq!(st.exit.map(ExitStatus::code), Some(137));
        assert_eq!(
            st.finished_at.as_deref(),
            Some("2026-01-02T03:04:06.000000000Z")
        );
    }

    #[test]
    fn rfc3339_formats_utc_dates() {
        use std::time::{Duration, UNIX_EPOCH};
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000000000Z");
        // 2000-02-29 (a leap day) 12:34:56.5
        let t = UNIX_EPOCH + Duration::new(951_827_696, 500_000_000);
        assert_eq!(rfc3339(t), "2000-02-29T12:34:56.500000000Z");
        let t = UNIX_EPOCH + Duration::from_secs(1_798_761_599);
        assert_eq!(rfc3339(t), "2026-12-31T23:59:59.000000000Z");
    }
}
