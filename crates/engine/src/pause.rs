//! Pausing and unpausing containers, and the freeze a commit does by
//! default: a running container's processes stopped with the cgroup freezer,
//! as Docker (runc) does.
//!
//! On cgroup v2 the container's own cgroup is frozen (`cgroup.freeze`). On
//! v1, kiln's containers are not in the `freezer` hierarchy (a hierarchy
//! costs every start a migration), so pausing moves the container's
//! processes into a freezer cgroup of their own, `kiln/<id>`, and freezes
//! it; children forked meanwhile are born in it. Unpausing thaws it, moves
//! them back to the root of that hierarchy and removes it. A paused
//! container must be unpaused before it can be stopped, as with Docker.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kiln_runtime::{Runtime, Status};

use crate::bail;
use crate::container::ContainerRecord;
use crate::engine::Engine;
use crate::error::{Context as _, Result, chain};

const CGROUP_ROOT: &str = "/sys/fs/cgroup";
/// The cgroup (below each hierarchy's root) kiln's v1 freezer cgroups go in.
const FREEZER_PARENT: &str = "kiln";
const FREEZE_TIMEOUT: Duration = Duration::from_secs(10);

/// Where a container's freezer is.
#[derive(Debug)]
enum Freezer {
    /// cgroup v2: the container's own cgroup directory.
    V2(PathBuf),
    /// cgroup v1: the directory of the cgroup its processes are listed in
    /// (another hierarchy), and the freezer hierarchy's root.
    V1 { procs_from: PathBuf, root: PathBuf },
}

fn read(path: &Path) -> Result<String> {
    fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

fn write(path: &Path, value: &str) -> Result<()> {
    fs::write(path, value).with_context(|| format!("cannot write {}", path.display()))
}

fn pids(dir: &Path) -> Result<Vec<String>> {
    Ok(read(&dir.join("cgroup.procs"))?
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect())
}

/// The host pid of a running container's init.
fn running_pid(app: &Engine, rec: &ContainerRecord) -> Option<i32> {
    let state = Runtime::default().state(&rec.state_dir(app)).ok()?;
    (state.status == Status::Running)
        .then_some(state.pid)
        .flatten()
}

/// Finds the freezer of the container whose init is `pid` (with ID `id`).
fn freezer_of(pid: i32, id: &str) -> Result<Freezer> {
    let root = Path::new(CGROUP_ROOT);
    let lines = read(Path::new(&format!("/proc/{pid}/cgroup")))?;
    let entries: Vec<(&str, &str)> = lines
        .lines()
        .filter_map(|l| {
            let mut parts = l.splitn(3, ':');
            let _ = parts.next()?;
            Some((parts.next()?, parts.next()?))
        })
        .collect();
    if root.join("cgroup.controllers").exists() {
        let path = entries
            .iter()
            .find(|(c, _)| c.is_empty())
            .map(|(_, p)| p.trim_start_matches('/'))
            .context("the container's process has no cgroup v2 path")?;
        return Ok(Freezer::V2(root.join(path)));
    }
    let freezer_root = root.join("freezer");
    if !freezer_root.join("cgroup.procs").exists() {
        bail!(
            "the cgroup v1 freezer is not mounted at {}",
            freezer_root.display()
        );
    }
    // The container's cgroup in a hierarchy kiln uses (its path ends with
    // the container's ID).
    let (controllers, path) = entries
        .iter()
        .find(|(c, p)| !c.is_empty() && *c != "freezer" && p.ends_with(id))
        .context("the container's process is in no cgroup of its own")?;
    let controller = controllers.split(',').next().unwrap_or(controllers);
    Ok(Freezer::V1 {
        procs_from: root.join(controller).join(path.trim_start_matches('/')),
        root: freezer_root,
    })
}

fn v1_dir(root: &Path, id: &str) -> PathBuf {
    root.join(FREEZER_PARENT).join(id)
}

/// Whether the container is frozen now.
fn is_paused(freezer: &Freezer, id: &str) -> bool {
    match freezer {
        Freezer::V2(dir) => read(&dir.join("cgroup.freeze")).is_ok_and(|s| s.trim() == "1"),
        Freezer::V1 { root, .. } => read(&v1_dir(root, id).join("freezer.state"))
            .is_ok_and(|s| matches!(s.trim(), "FROZEN" | "FREEZING")),
    }
}

fn wait_until(what: &str, mut done: impl FnMut() -> Result<bool>) -> Result<()> {
    let deadline = Instant::now() + FREEZE_TIMEOUT;
    while !done()? {
        if Instant::now() > deadline {
            bail!("timed out waiting for the container to be {what}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

fn freeze(freezer: &Freezer, id: &str) -> Result<()> {
    match freezer {
        Freezer::V2(dir) => {
            write(&dir.join("cgroup.freeze"), "1")?;
            wait_until("frozen", || {
                Ok(read(&dir.join("cgroup.events"))?
                    .lines()
                    .any(|l| l.trim() == "frozen 1"))
            })
        }
        Freezer::V1 { procs_from, root } => {
            let dir = v1_dir(root, id);
            fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
            // Move every process; one forked meanwhile may still be outside:
            // repeat until the container's cgroup lists none that is not in
            // the freezer cgroup.
            wait_until("moved to its freezer cgroup", || {
                let inside = pids(&dir)?;
                let mut moved = false;
                for pid in pids(procs_from)? {
                    if !inside.contains(&pid) {
                        // A process that exited meanwhile cannot be moved.
                        let _ = write(&dir.join("cgroup.procs"), &pid);
                        moved = true;
                    }
                }
                Ok(!moved)
            })?;
            write(&dir.join("freezer.state"), "FROZEN")?;
            wait_until("frozen", || {
                Ok(read(&dir.join("freezer.state"))?.trim() == "FROZEN")
            })
        }
    }
}

fn thaw(freezer: &Freezer, id: &str) -> Result<()> {
    match freezer {
        Freezer::V2(dir) => write(&dir.join("cgroup.freeze"), "0"),
        Freezer::V1 { root, .. } => {
            let dir = v1_dir(root, id);
            write(&dir.join("freezer.state"), "THAWED")?;
            wait_until("thawed", || {
                Ok(read(&dir.join("freezer.state"))?.trim() == "THAWED")
            })?;
            // Back to the root of the freezer hierarchy, where kiln's
            // containers live; then the freezer cgroup can go. Children
            // forked meanwhile are born in it: repeat until it is empty.
            wait_until("moved out of its freezer cgroup", || {
                let left = pids(&dir)?;
                for pid in &left {
                    // A process that exited meanwhile cannot be moved.
                    let _ = write(&root.join("cgroup.procs"), pid);
                }
                Ok(left.is_empty())
            })?;
            fs::remove_dir(&dir).with_context(|| format!("cannot remove {}", dir.display()))
        }
    }
}

/// A container frozen for the time of a commit; thawed when dropped, unless
/// it was paused before.
pub struct FrozenForCommit {
    freezer: Option<(Freezer, String)>,
    notice: fn(&str),
}

impl FrozenForCommit {
    /// Freezes `rec` if it is running and not paused already.
    pub fn new(app: &Engine, rec: &ContainerRecord) -> Result<FrozenForCommit> {
        let notice = app.opts.notice;
        let Some(pid) = running_pid(app, rec) else {
            return Ok(FrozenForCommit {
                freezer: None,
                notice,
            });
        };
        let freezer = freezer_of(pid, &rec.id)?;
        if is_paused(&freezer, &rec.id) {
            return Ok(FrozenForCommit {
                freezer: None,
                notice,
            });
        }
        freeze(&freezer, &rec.id)
            .with_context(|| format!("cannot pause container {}", short(&rec.id)))?;
        Ok(FrozenForCommit {
            freezer: Some((freezer, rec.id.clone())),
            notice,
        })
    }
}

impl Drop for FrozenForCommit {
    fn drop(&mut self) {
        if let Some((freezer, id)) = &self.freezer
            && let Err(e) = thaw(freezer, id)
        {
            (self.notice)(&format!(
                "cannot unpause container {}: {}",
                short(id),
                chain(&e)
            ));
        }
    }
}

fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

impl Engine {
    /// Freezes a running container's processes (`docker pause`).
    pub fn pause_container(&self, rec: &ContainerRecord) -> Result<()> {
        let short = short(&rec.id);
        let Some(pid) = running_pid(self, rec) else {
            bail!("Container {short} is not running");
        };
        let freezer = freezer_of(pid, &rec.id)?;
        if is_paused(&freezer, &rec.id) {
            bail!("Container {short} is already paused");
        }
        freeze(&freezer, &rec.id).with_context(|| format!("cannot pause container {short}"))
    }

    /// Thaws a paused container (`docker unpause`).
    pub fn unpause_container(&self, rec: &ContainerRecord) -> Result<()> {
        let short = short(&rec.id);
        let freezer = running_pid(self, rec)
            .map(|pid| freezer_of(pid, &rec.id))
            .transpose()?;
        match freezer {
            Some(f) if is_paused(&f, &rec.id) => {
                thaw(&f, &rec.id).with_context(|| format!("cannot unpause container {short}"))
            }
            _ => bail!("Container {short} is not paused"),
        }
    }

    /// Whether a container is running and frozen (`docker pause`d).
    pub fn container_paused(&self, rec: &ContainerRecord) -> bool {
        running_pid(self, rec)
            .and_then(|pid| freezer_of(pid, &rec.id).ok())
            .is_some_and(|f| is_paused(&f, &rec.id))
    }
}
