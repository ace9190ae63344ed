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

/// Written by the shim once the container's init exists.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct StateFile {
    pub(crate) id: String,
    pub(crate) pid: i32,
    pub(crate) pid_start: u64,
    pub(crate) shim_pid: i32,
    pub(crate) cgroup: Option<Cgroup>,
}

/// Written by the shim when the container's init ended.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub(crate) struct ExitFile {
    pub(crate) status: ExitStatus,
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

pub(crate) fn paths(dir: &Path) -> (PathBuf, PathBuf) {
    (dir.join(STATE_FILE), dir.join(EXIT_FILE))
}

/// Reads the state of the container in `dir`.
pub(crate) fn query(dir: &Path) -> Result<ContainerState> {
    let (state_path, exit_path) = paths(dir);
    let state: Option<StateFile> = read_json(&state_path)?;
    let exit: Option<ExitFile> = read_json(&exit_path)?;
    let id = state.as_ref().map(|s| s.id.clone()).unwrap_or_default();
    Ok(match (state, exit) {
        (_, Some(e)) => ContainerState {
            id,
            status: Status::Exited,
            pid: None,
            exit: Some(e.status),
        },
        (None, None) => ContainerState {
            id,
            status: Status::Created,
            pid: None,
            exit: None,
        },
        (Some(s), None) if alive(&s) => ContainerState {
            id,
            status: Status::Running,
            pid: Some(s.pid),
            exit: None,
        },
        (Some(_), None) => ContainerState {
            id,
            status: Status::Exited,
            pid: None,
            exit: None,
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
            cgroup: None,
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
                exit: None
            }
        );
        write_json(
            &d.path().join(EXIT_FILE),
            &ExitFile {
                status: ExitStatus::Signal(9),
            },
        )
        .expect("write");
        assert_eq!(
            query(d.path()).expect("query").exit.map(ExitStatus::code),
            Some(137)
        );
    }
}
