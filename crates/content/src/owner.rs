//! Owner marks: what a kiln process is in the middle of creating (a
//! snapshot being unpacked, a build step's mount or scratch directory), so
//! that the next process can clean up after one that was killed.
//!
//! A process that is about to create such a thing first takes a [`Claim`]
//! on it ([`Store::claim`]): a line appended to `owners/<owner>`, where
//! `<owner>` names the process by its pid namespace, pid and start time
//! ([`ProcessId`]), so a reused pid is never taken for the same process.
//! Dropping the claim appends a release line; when a process holds no claim
//! any more its file is removed. A file whose process is gone is the mark
//! of an unclean stop: [`Store::abandoned`] lists the items such files
//! still claim, for the caller (who knows what a snapshot or a mount is) to
//! reclaim and then [`Store::settle`]. Listing costs one `readdir` of a
//! directory that is empty or absent when nothing is in progress.
//!
//! Marks are not fsynced: after a machine crash, mounts are gone anyway.

use std::collections::HashMap;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use crate::store::io_err;
use crate::{Error, Result, Store};

const OWNERS: &str = "owners";

/// A process, named so that a reused pid is not taken for it: its pid
/// namespace (inode of `/proc/self/ns/pid`), pid and start time (clock
/// ticks since boot, field 22 of `/proc/<pid>/stat`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ProcessId {
    /// The pid namespace's inode number.
    pub pid_ns: u64,
    /// The pid in that namespace.
    pub pid: u32,
    /// The process's start time in clock ticks since boot.
    pub start: u64,
}

/// Whether the process a [`ProcessId`] names still runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Liveness {
    /// It runs.
    Alive,
    /// It is gone (no such pid, or the pid now belongs to a process that
    /// started at another time).
    Gone,
    /// It lives in another pid namespace: this process cannot tell.
    Unknown,
}

impl ProcessId {
    /// This process (computed once).
    pub fn current() -> Result<ProcessId> {
        static CURRENT: OnceLock<std::result::Result<ProcessId, String>> = OnceLock::new();
        CURRENT
            .get_or_init(|| {
                let pid = std::process::id();
                let start = start_time(pid)
                    .ok_or_else(|| format!("cannot read the start time of process {pid}"))?;
                let pid_ns =
                    own_pid_ns().ok_or_else(|| "cannot read /proc/self/ns/pid".to_owned())?;
                Ok(ProcessId { pid_ns, pid, start })
            })
            .clone()
            .map_err(|reason| Error::Io {
                op: "identify this process",
                path: PathBuf::from("/proc/self"),
                source: io::Error::other(reason),
            })
    }

    /// Whether this process still runs, as far as this process can tell.
    pub fn liveness(&self) -> Liveness {
        if own_pid_ns() != Some(self.pid_ns) {
            return Liveness::Unknown;
        }
        match start_time(self.pid) {
            Some(s) if s == self.start => Liveness::Alive,
            _ => Liveness::Gone,
        }
    }

    fn file_name(&self) -> String {
        format!("{}-{}-{}", self.pid_ns, self.pid, self.start)
    }

    fn parse(name: &str) -> Option<ProcessId> {
        let mut it = name.split('-');
        let id = ProcessId {
            pid_ns: it.next()?.parse().ok()?,
            pid: it.next()?.parse().ok()?,
            start: it.next()?.parse().ok()?,
        };
        it.next().is_none().then_some(id)
    }
}

impl std::fmt::Display for ProcessId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "process {} (started at tick {})", self.pid, self.start)
    }
}

fn own_pid_ns() -> Option<u64> {
    let link = fs::read_link("/proc/self/ns/pid").ok()?;
    let s = link.to_str()?;
    s.strip_prefix("pid:[")?.strip_suffix(']')?.parse().ok()
}

/// Field 22 of `/proc/<pid>/stat` (counted after the command name, which
/// may hold spaces and parentheses).
fn start_time(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(19)?.parse().ok()
}

/// One thing a claim is about: a kind the caller defines (`snapshot`,
/// `mount`, `dir`, ...) and a name (a snapshot key, a path).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClaimItem {
    /// What it is.
    pub kind: String,
    /// Which one.
    pub name: String,
}

/// Claims a dead (or this) process left: the items that were still claimed
/// when it stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Abandoned {
    /// The process that made them.
    pub owner: ProcessId,
    /// What it still claimed, in the order it claimed them.
    pub items: Vec<ClaimItem>,
    path: PathBuf,
}

/// Live claims per owner file in this process; the file goes when the
/// count drops to zero. The mutex also orders appends against that unlink.
fn counts() -> &'static Mutex<HashMap<PathBuf, usize>> {
    static COUNTS: OnceLock<Mutex<HashMap<PathBuf, usize>>> = OnceLock::new();
    COUNTS.get_or_init(Default::default)
}

fn append(path: &Path, line: &str) -> io::Result<()> {
    let mut f = OpenOptions::new().create(true).append(true).open(path)?;
    // One write: O_APPEND keeps lines whole.
    f.write_all(line.as_bytes())
}

/// A claim on an item this process is creating; see [`Store::claim`].
/// Dropping it records that the item is no longer this process's business
/// (created and handed over, or cleaned up).
#[derive(Debug)]
pub struct Claim {
    path: PathBuf,
    line: String,
}

impl Drop for Claim {
    fn drop(&mut self) {
        let mut counts = counts().lock().unwrap_or_else(|e| e.into_inner());
        let n = counts.entry(self.path.clone()).or_insert(1);
        *n = n.saturating_sub(1);
        if *n == 0 {
            counts.remove(&self.path);
            let _ = fs::remove_file(&self.path);
        } else {
            let _ = append(&self.path, &format!("-{}", self.line));
        }
    }
}

impl Store {
    fn owners_dir(&self) -> PathBuf {
        self.root().join(OWNERS)
    }

    /// Records, before creating it, that this process is creating `name`
    /// of `kind` (neither may hold a newline; `kind` no space), so that if
    /// the process dies before dropping the returned [`Claim`], the next
    /// kiln process finds it in [`Store::abandoned`].
    pub fn claim(&self, kind: &str, name: &str) -> Result<Claim> {
        if kind.is_empty() || kind.contains([' ', '\n']) || name.contains('\n') {
            return Err(Error::Io {
                op: "claim",
                path: PathBuf::from(name),
                source: io::Error::new(io::ErrorKind::InvalidInput, "invalid claim name"),
            });
        }
        let me = ProcessId::current()?;
        let dir = self.owners_dir();
        let path = dir.join(me.file_name());
        let line = format!("{kind} {name}\n");
        let mut counts = counts().lock().unwrap_or_else(|e| e.into_inner());
        let res = append(&path, &format!("+{line}")).or_else(|e| {
            if e.kind() != io::ErrorKind::NotFound {
                return Err(e);
            }
            fs::create_dir_all(&dir)?;
            append(&path, &format!("+{line}"))
        });
        res.map_err(io_err("write owner mark", &path))?;
        *counts.entry(path.clone()).or_insert(0) += 1;
        Ok(Claim { path, line })
    }

    /// The claims of kiln processes that are gone (killed, or crashed):
    /// what they were creating and never finished or cleaned. Cheap when
    /// there is nothing: one `readdir` of `owners/`. Owners in another pid
    /// namespace are left alone (their liveness cannot be told).
    pub fn abandoned(&self) -> Result<Vec<Abandoned>> {
        let dir = self.owners_dir();
        let rd = match fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err("read directory", &dir)(e)),
        };
        let mut out = Vec::new();
        for entry in rd {
            let entry = entry.map_err(io_err("read directory", &dir))?;
            let path = entry.path();
            let Some(owner) = entry.file_name().to_str().and_then(ProcessId::parse) else {
                // Not a mark (a `settle` being written): not ours to judge.
                continue;
            };
            if owner.liveness() != Liveness::Gone {
                continue;
            }
            let text = match fs::read_to_string(&path) {
                Ok(t) => t,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err("read owner mark", &path)(e)),
            };
            out.push(Abandoned {
                owner,
                items: parse_items(&text),
                path,
            });
        }
        out.sort_by_key(|a| (a.owner.pid, a.owner.start));
        Ok(out)
    }

    /// After the caller reclaimed what it could of `abandoned`: forgets
    /// the mark, or keeps only `left` (what could not be reclaimed yet).
    pub fn settle(&self, abandoned: &Abandoned, left: &[ClaimItem]) -> Result<()> {
        if left.is_empty() {
            return match fs::remove_file(&abandoned.path) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(io_err("remove owner mark", &abandoned.path)(e)),
            };
        }
        let text: String = left
            .iter()
            .map(|i| format!("+{} {}\n", i.kind, i.name))
            .collect();
        self.atomic_write(&abandoned.path, text.as_bytes())
    }

    /// Every item a live kiln process of this pid namespace claims now
    /// (its own included): things no cleanup may touch.
    pub fn claimed_by_live(&self) -> Result<Vec<ClaimItem>> {
        let dir = self.owners_dir();
        let rd = match fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err("read directory", &dir)(e)),
        };
        let mut out = Vec::new();
        for entry in rd {
            let entry = entry.map_err(io_err("read directory", &dir))?;
            let Some(owner) = entry.file_name().to_str().and_then(ProcessId::parse) else {
                continue;
            };
            if owner.liveness() == Liveness::Gone {
                continue;
            }
            if let Ok(text) = fs::read_to_string(entry.path()) {
                out.extend(parse_items(&text));
            }
        }
        Ok(out)
    }
}

/// `+kind name` lines claim, `-kind name` lines release (one each).
fn parse_items(text: &str) -> Vec<ClaimItem> {
    let mut items: Vec<ClaimItem> = Vec::new();
    for line in text.lines() {
        let (sign, rest) = line.split_at(line.len().min(1));
        let Some((kind, name)) = rest.split_once(' ') else {
            continue;
        };
        let item = ClaimItem {
            kind: kind.to_owned(),
            name: name.to_owned(),
        };
        match sign {
            "+" => items.push(item),
            "-" => {
                if let Some(i) = items.iter().position(|x| *x == item) {
                    items.remove(i);
                }
            }
            _ => {}
        }
    }
    items
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_changed_start_time_is_not() {
        let me = ProcessId::current().unwrap();
        assert_eq!(me.liveness(), Liveness::Alive);
        let reused = ProcessId {
            start: me.start + 1,
            ..me
        };
        assert_eq!(reused.liveness(), Liveness::Gone);
        let elsewhere = ProcessId {
            pid_ns: me.pid_ns + 1,
            ..me
        };
        assert_eq!(elsewhere.liveness(), Liveness::Unknown);
        assert_eq!(ProcessId::parse(&me.file_name()), Some(me));
        assert_eq!(ProcessId::parse("1-2"), None);
    }

    #[test]
    fn claims_are_listed_until_released_and_the_file_goes_with_the_last() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let a = store.claim("snapshot", "unpack-1").unwrap();
        let b = store.claim("dir", "/x y/z").unwrap();
        let live = store.claimed_by_live().unwrap();
        assert_eq!(live.len(), 2, "{live:?}");
        assert_eq!(live[1].name, "/x y/z");
        // This process is alive: nothing is abandoned.
        assert!(store.abandoned().unwrap().is_empty());
        drop(a);
        assert_eq!(store.claimed_by_live().unwrap().len(), 1);
        drop(b);
        assert!(store.claimed_by_live().unwrap().is_empty());
        assert_eq!(fs::read_dir(dir.path().join(OWNERS)).unwrap().count(), 0);
        assert!(store.claim("bad kind", "x").is_err());
        assert!(store.claim("dir", "a\nb").is_err());
    }

    #[test]
    fn a_dead_owners_claims_are_abandoned_then_settled() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let me = ProcessId::current().unwrap();
        // A process with this pid that started earlier: gone.
        let dead = ProcessId {
            start: me.start.saturating_sub(1),
            ..me
        };
        fs::create_dir_all(dir.path().join(OWNERS)).unwrap();
        let path = dir.path().join(OWNERS).join(dead.file_name());
        fs::write(
            &path,
            "+snapshot unpack-1\n+mount /m/1\n-snapshot unpack-1\n+dir /s/1\n",
        )
        .unwrap();
        let ab = store.abandoned().unwrap();
        assert_eq!(ab.len(), 1);
        assert_eq!(ab[0].owner, dead);
        let names: Vec<&str> = ab[0].items.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["/m/1", "/s/1"]);
        assert!(store.claimed_by_live().unwrap().is_empty());
        store.settle(&ab[0], &ab[0].items[..1]).unwrap();
        let again = store.abandoned().unwrap();
        assert_eq!(again[0].items, ab[0].items[..1]);
        store.settle(&again[0], &[]).unwrap();
        assert!(store.abandoned().unwrap().is_empty());
        assert!(!path.exists());
    }
}
