//! cgroups per container under a common parent, on v2, v1 and the hybrid
//! layout (v1 controllers plus a v2 tree at `unified/`). Plain file writes:
//! tested against a temporary directory laid out like `/sys/fs/cgroup`.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use oci_spec::runtime::LinuxResources;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// v1 controllers kiln uses: the three it sets limits with and `devices`,
/// which keeps the container from opening device nodes it may create.
/// Others (cpuacct, freezer, blkio, cpuset) are left alone: each hierarchy
/// costs a directory, a migration and a removal per container.
const V1_CONTROLLERS: [&str; 4] = ["memory", "pids", "cpu", "devices"];

/// Device access Docker grants by default (everything else is denied).
const DEVICE_ALLOW: [&str; 12] = [
    "c *:* m",
    "b *:* m",
    "c 1:3 rwm",
    "c 1:5 rwm",
    "c 1:7 rwm",
    "c 1:8 rwm",
    "c 1:9 rwm",
    "c 5:0 rwm",
    "c 5:1 rwm",
    "c 5:2 rwm",
    "c 136:* rwm",
    "c 10:200 rwm",
];

/// How cgroups are mounted on this host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Layout {
    /// A single v2 hierarchy at the root.
    V2(PathBuf),
    /// v1 hierarchies, one directory per controller, maybe plus a v2 tree.
    V1 {
        /// `/sys/fs/cgroup`.
        root: PathBuf,
        /// The hierarchy directories in use (`memory`, `pids`, ...).
        controllers: Vec<String>,
        /// Every v1 hierarchy directory with its mount option (for mounting inside).
        mountable: Vec<String>,
        /// The v2 tree of a hybrid layout.
        unified: Option<PathBuf>,
    },
}

impl Layout {
    /// Looks at `root` (normally `/sys/fs/cgroup`).
    pub(crate) fn detect(root: &Path) -> Layout {
        if root.join("cgroup.controllers").exists() {
            return Layout::V2(root.to_path_buf());
        }
        let is_hierarchy = |name: &str| {
            let p = root.join(name);
            p.symlink_metadata().is_ok_and(|m| m.is_dir()) && p.join("cgroup.procs").exists()
        };
        let controllers = V1_CONTROLLERS
            .iter()
            .filter(|c| is_hierarchy(c))
            .map(|c| c.to_string())
            .collect();
        let mut mountable: Vec<String> = fs::read_dir(root)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| n != "unified" && is_hierarchy(n))
            .map(|n| {
                if n == "systemd" {
                    "name=systemd".to_string()
                } else {
                    n
                }
            })
            .collect();
        mountable.sort();
        let unified = root.join("unified");
        let unified = unified
            .join("cgroup.controllers")
            .exists()
            .then_some(unified);
        Layout::V1 {
            root: root.to_path_buf(),
            controllers,
            mountable,
            unified,
        }
    }

    /// Controllers to mount inside the container (empty for v2).
    pub(crate) fn mountable(&self) -> Vec<String> {
        match self {
            Layout::V2(_) => Vec::new(),
            Layout::V1 { mountable, .. } => mountable.clone(),
        }
    }
}

/// One container's cgroup: a directory per hierarchy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Cgroup {
    /// `(controller or "" for v2, directory)`.
    pub(crate) dirs: Vec<(String, PathBuf)>,
}

fn write(path: &Path, value: &str) -> Result<()> {
    fs::write(path, value).map_err(|e| Error::io("write cgroup file", path, e))
}

impl Cgroup {
    /// Creates `parent/id` in every hierarchy and applies `resources`.
    pub(crate) fn create(
        layout: &Layout,
        parent: &str,
        id: &str,
        resources: Option<&LinuxResources>,
    ) -> Result<Cgroup> {
        let mut dirs = Vec::new();
        match layout {
            Layout::V2(root) => {
                enable_v2_controllers(root, parent);
                dirs.push((String::new(), root.join(parent).join(id)));
            }
            Layout::V1 {
                root, controllers, ..
            } => {
                // The v2 tree of a hybrid host has no controllers: joining it
                // would cost a migration for nothing.
                for c in controllers {
                    dirs.push((c.clone(), root.join(c).join(parent).join(id)));
                }
            }
        }
        for (_, d) in &dirs {
            fs::create_dir_all(d).map_err(|e| Error::io("create cgroup", d, e))?;
        }
        let cg = Cgroup { dirs };
        if let Err(e) = cg.apply(layout, resources) {
            let _ = cg.remove();
            return Err(e);
        }
        Ok(cg)
    }

    fn dir(&self, controller: &str) -> Option<&Path> {
        self.dirs
            .iter()
            .find(|(c, _)| c == controller)
            .map(|(_, d)| d.as_path())
    }

    fn apply(&self, layout: &Layout, r: Option<&LinuxResources>) -> Result<()> {
        let v2 = matches!(layout, Layout::V2(_));
        if !v2 && let Some(d) = self.dir("devices") {
            write(&d.join("devices.deny"), "a")?;
            for rule in DEVICE_ALLOW {
                write(&d.join("devices.allow"), rule)?;
            }
        }
        let Some(r) = r else { return Ok(()) };
        let (mem_dir, pids_dir, cpu_dir) = if v2 {
            (self.dir(""), self.dir(""), self.dir(""))
        } else {
            (self.dir("memory"), self.dir("pids"), self.dir("cpu"))
        };
        if let (Some(m), Some(d)) = (r.memory().as_ref(), mem_dir)
            && let Some(limit) = m.limit().filter(|l| *l > 0)
        {
            if v2 {
                write(&d.join("memory.max"), &limit.to_string())?;
                let swap = m.swap().unwrap_or(limit * 2);
                let extra = if swap < 0 {
                    "max".to_string()
                } else {
                    swap.saturating_sub(limit).max(0).to_string()
                };
                let swap_file = d.join("memory.swap.max");
                if swap_file.exists() {
                    write(&swap_file, &extra)?;
                }
            } else {
                write(&d.join("memory.limit_in_bytes"), &limit.to_string())?;
                let memsw = d.join("memory.memsw.limit_in_bytes");
                if memsw.exists() {
                    let swap = m.swap().unwrap_or(limit * 2);
                    write(
                        &memsw,
                        &if swap < 0 {
                            "-1".to_string()
                        } else {
                            swap.max(limit).to_string()
                        },
                    )?;
                }
            }
        }
        if let (Some(p), Some(d)) = (r.pids().as_ref(), pids_dir) {
            let v = if p.limit() > 0 {
                p.limit().to_string()
            } else {
                "max".to_string()
            };
            write(&d.join("pids.max"), &v)?;
        }
        if let (Some(c), Some(d)) = (r.cpu().as_ref(), cpu_dir) {
            let period = c.period().unwrap_or(100_000);
            if v2 {
                if let Some(q) = c.quota().filter(|q| *q > 0) {
                    write(&d.join("cpu.max"), &format!("{q} {period}"))?;
                }
                if let Some(s) = c.shares().filter(|s| *s > 0) {
                    let weight = 1 + (s.clamp(2, 262_144) - 2) * 9999 / 262_142;
                    write(&d.join("cpu.weight"), &weight.to_string())?;
                }
            } else {
                if let Some(q) = c.quota().filter(|q| *q > 0) {
                    write(&d.join("cpu.cfs_period_us"), &period.to_string())?;
                    write(&d.join("cpu.cfs_quota_us"), &q.to_string())?;
                }
                if let Some(s) = c.shares().filter(|s| *s > 0) {
                    write(&d.join("cpu.shares"), &s.to_string())?;
                }
            }
        }
        Ok(())
    }

    /// Moves a process (0: the caller) into every hierarchy of the cgroup.
    pub(crate) fn join(&self, pid: i32) -> Result<()> {
        for (_, d) in &self.dirs {
            write(&d.join("cgroup.procs"), &pid.to_string())?;
        }
        Ok(())
    }

    /// The pids in the cgroup (union over hierarchies).
    pub(crate) fn pids(&self) -> Vec<i32> {
        let mut pids: Vec<i32> = self
            .dirs
            .iter()
            .filter_map(|(_, d)| fs::read_to_string(d.join("cgroup.procs")).ok())
            .flat_map(|s| {
                s.lines()
                    .filter_map(|l| l.trim().parse().ok())
                    .collect::<Vec<i32>>()
            })
            .collect();
        pids.sort_unstable();
        pids.dedup();
        pids
    }

    /// SIGKILLs every process in the cgroup until none is left (bounded wait).
    pub(crate) fn kill_all(&self, kill: impl Fn(i32)) {
        for _ in 0..200 {
            let pids = self.pids();
            if pids.is_empty() {
                return;
            }
            for p in pids {
                kill(p);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Removes the cgroup's directories (retrying while the kernel still
    /// lists exiting processes); missing directories are fine.
    pub(crate) fn remove(&self) -> Result<()> {
        for (_, d) in &self.dirs {
            let mut tries = 0;
            loop {
                match fs::remove_dir(d) {
                    Ok(()) => break,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                    Err(e) if e.raw_os_error() == Some(libc::EBUSY) && tries < 200 => {
                        tries += 1;
                        std::thread::sleep(Duration::from_millis(2));
                    }
                    Err(e) => return Err(Error::io("remove cgroup", d, e)),
                }
            }
        }
        Ok(())
    }
}

fn enable_v2_controllers(root: &Path, parent: &str) {
    // Best effort: a controller the kernel lacks or the root does not
    // delegate simply stays off; its limit files then fail loudly.
    let want = ["+memory", "+pids", "+cpu"];
    let parent_dir = root.join(parent);
    let _ = fs::create_dir_all(&parent_dir);
    for dir in [root.to_path_buf(), parent_dir] {
        for c in want {
            let _ = fs::write(dir.join("cgroup.subtree_control"), c);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(p: &Path) {
        fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        fs::write(p, "").expect("touch");
    }

    fn resources() -> LinuxResources {
        serde_json::from_value(serde_json::json!({
            "memory": {"limit": 1048576},
            "pids": {"limit": 20},
            "cpu": {"quota": 50000, "period": 100000, "shares": 512}
        }))
        .expect("resources")
    }

    #[test]
    fn hybrid_layout_writes_v1_files() {
        let t = tempfile::tempdir().expect("tempdir");
        let root = t.path();
        for c in ["memory", "pids", "cpu", "cpuacct", "systemd"] {
            touch(&root.join(c).join("cgroup.procs"));
        }
        touch(&root.join("unified/cgroup.controllers"));
        let layout = Layout::detect(root);
        let Layout::V1 {
            controllers,
            unified,
            mountable,
            ..
        } = &layout
        else {
            panic!("v1 expected")
        };
        assert_eq!(controllers, &["memory", "pids", "cpu"]);
        assert!(unified.is_some());
        assert!(mountable.contains(&"name=systemd".to_string()));
        let cg = Cgroup::create(&layout, "kiln", "c1", Some(&resources())).expect("create");
        let read = |p: &str| fs::read_to_string(root.join(p)).expect("read");
        assert_eq!(read("memory/kiln/c1/memory.limit_in_bytes"), "1048576");
        assert_eq!(read("pids/kiln/c1/pids.max"), "20");
        assert_eq!(read("cpu/kiln/c1/cpu.cfs_quota_us"), "50000");
        assert_eq!(read("cpu/kiln/c1/cpu.shares"), "512");
        assert_eq!(cg.dirs.len(), 3, "one directory per controller in use");
        // cgroupfs lets rmdir remove a directory with its control files; a
        // plain directory needs them gone first.
        for (_, d) in &cg.dirs {
            for f in fs::read_dir(d).expect("list").flatten() {
                fs::remove_file(f.path()).expect("rm");
            }
        }
        cg.remove().expect("remove");
        assert!(!root.join("memory/kiln/c1").exists());
    }

    #[test]
    fn v2_layout_writes_unified_files() {
        let t = tempfile::tempdir().expect("tempdir");
        let root = t.path();
        touch(&root.join("cgroup.controllers"));
        let layout = Layout::detect(root);
        assert_eq!(layout, Layout::V2(root.to_path_buf()));
        let cg = Cgroup::create(&layout, "kiln", "c2", Some(&resources())).expect("create");
        let read = |p: &str| fs::read_to_string(root.join(p)).expect("read");
        assert_eq!(read("kiln/c2/memory.max"), "1048576");
        assert_eq!(read("kiln/c2/cpu.max"), "50000 100000");
        assert_eq!(
            read("kiln/c2/cpu.weight"),
            (1 + 510 * 9999 / 262_142).to_string()
        );
        assert_eq!(cg.dirs.len(), 1);
    }
}
