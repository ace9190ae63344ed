//! cgroups per container under a common parent, on v2, v1 and the hybrid
//! layout (v1 controllers plus a v2 tree at `unified/`). Plain file writes:
//! tested against a temporary directory laid out like `/sys/fs/cgroup`.

use std::fs;
use std::io;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use kiln_sys::bpf::Insn;
use oci_spec::runtime::LinuxResources;
use serde::{Deserialize, Serialize};

use crate::devices::{self, DeviceRule};
use crate::error::{Error, Result};

/// v1 controllers kiln uses: the three it sets limits with and `devices`,
/// which keeps the container from opening device nodes it may create.
/// Others (cpuacct, freezer, blkio, cpuset) are left alone: each hierarchy
/// costs a directory, a migration and a removal per container.
const V1_CONTROLLERS: [&str; 4] = ["memory", "pids", "cpu", "devices"];

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
        let cpus = cpuset_cpus(resources);
        match layout {
            Layout::V2(root) => {
                enable_v2_controllers(root, parent, cpus.is_some());
                dirs.push((String::new(), root.join(parent).join(id)));
            }
            Layout::V1 {
                root,
                controllers,
                unified,
                ..
            } => {
                // The v2 tree of a hybrid host has no controllers: joining it
                // would cost a migration for nothing, unless no v1 devices
                // hierarchy filters device access: then a BPF program on the
                // v2 cgroup does.
                for c in controllers {
                    dirs.push((c.clone(), root.join(c).join(parent).join(id)));
                }
                if !controllers.iter().any(|c| c == "devices")
                    && let Some(u) = unified
                {
                    dirs.push((String::new(), u.join(parent).join(id)));
                }
                // cpuset only when asked: another migration per container.
                if cpus.is_some() {
                    let cpuset = root.join("cpuset");
                    if !cpuset.join("cgroup.procs").exists() {
                        return Err(Error::io(
                            "--cpuset-cpus needs the cpuset controller",
                            cpuset,
                            io::Error::from(io::ErrorKind::NotFound),
                        ));
                    }
                    prepare_v1_cpuset_parents(&cpuset, parent)?;
                    dirs.push(("cpuset".into(), cpuset.join(parent).join(id)));
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
            for rule in devices::effective_rules(r) {
                let (file, line) = devices::v1_line(&rule);
                write(&d.join(file), &line)?;
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
        if let (Some(m), Some(d)) = (r.memory().as_ref(), mem_dir)
            && m.disable_oom_killer() == Some(true)
            && !v2
        {
            // cgroup v2 has no switch for it: Docker ignores the option
            // there (with a warning, which is the caller's to print).
            write(&d.join("memory.oom_control"), "1")?;
        }
        if let Some(cpus) = cpuset_cpus(Some(r)) {
            let d = if v2 { self.dir("") } else { self.dir("cpuset") };
            if let Some(d) = d {
                if !v2 {
                    // A new v1 cpuset has no memory nodes: the parent's.
                    let parent = d.parent().unwrap_or(d);
                    copy_cpuset_file(parent, d, "cpuset.mems")?;
                }
                write(&d.join("cpuset.cpus"), cpus)?;
            }
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

    /// Makes sure the container can use only the devices `rules` allow.
    /// A v1 devices hierarchy got its files in [`Cgroup::create`]; a v2
    /// cgroup gets a device program from `attach` (normally
    /// [`attach_device_program`]). When neither can filter, starting is
    /// refused, except for a rootless container: its user namespace already
    /// keeps it from creating device nodes (`mknod` needs `CAP_MKNOD` in the
    /// initial user namespace) and from opening the host's (the nodes it
    /// can see are the host's, with the host's owners and modes), so no
    /// cgroup filter is needed to keep it off the host's devices.
    pub(crate) fn filter_devices(
        &self,
        rules: &[DeviceRule],
        rootless: bool,
        attach: impl FnOnce(&Path, &[Insn]) -> io::Result<()>,
    ) -> std::result::Result<(), String> {
        if self.dir("devices").is_some() {
            return Ok(());
        }
        let Some(dir) = self.dir("") else {
            if rootless {
                return Ok(());
            }
            return Err(
                "this host has neither a cgroup v1 devices hierarchy nor a cgroup2 \
                        tree: kiln cannot keep the container from opening host devices"
                    .to_string(),
            );
        };
        match attach(dir, &devices::program(rules)) {
            Ok(()) => Ok(()),
            Err(_) if rootless => Ok(()),
            Err(e) => Err(format!(
                "cannot filter device access on cgroup v2 ({}): {e}; loading and attaching a \
                 BPF device program needs CAP_BPF or CAP_SYS_ADMIN and a kernel built with \
                 CONFIG_CGROUP_BPF, and kiln does not run a container whose root could open \
                 any host device",
                dir.display()
            )),
        }
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

/// Loads the device program and attaches it to the cgroup v2 directory
/// `dir`, which holds it from then on.
pub(crate) fn attach_device_program(dir: &Path, insns: &[Insn]) -> io::Result<()> {
    let prog = kiln_sys::bpf::load_cgroup_device_program(insns, "Apache-2.0")?;
    let cgroup = fs::File::open(dir)?;
    kiln_sys::bpf::attach_cgroup_device_program(cgroup.as_fd(), prog.as_fd())
}

fn enable_v2_controllers(root: &Path, parent: &str, cpuset: bool) {
    // Best effort: a controller the kernel lacks or the root does not
    // delegate simply stays off; its limit files then fail loudly.
    let want = ["+memory", "+pids", "+cpu", "+cpuset"];
    let want = if cpuset { &want[..] } else { &want[..3] };
    let parent_dir = root.join(parent);
    let _ = fs::create_dir_all(&parent_dir);
    for dir in [root.to_path_buf(), parent_dir] {
        for c in want {
            let _ = fs::write(dir.join("cgroup.subtree_control"), c);
        }
    }
}

/// The spec's `cpu.cpus` (`--cpuset-cpus`).
fn cpuset_cpus(r: Option<&LinuxResources>) -> Option<&str> {
    r?.cpu()
        .as_ref()?
        .cpus()
        .as_deref()
        .filter(|c| !c.is_empty())
}

/// Copies a cpuset file from `from` to `to` when `to`'s is empty (a new v1
/// cpuset cgroup starts with no CPUs and no memory nodes, and takes no
/// process until it has both).
fn copy_cpuset_file(from: &Path, to: &Path, name: &str) -> Result<()> {
    let current = fs::read_to_string(to.join(name)).unwrap_or_default();
    if !current.trim().is_empty() {
        return Ok(());
    }
    let path = from.join(name);
    let value = fs::read_to_string(&path).map_err(|e| Error::io("read cgroup file", path, e))?;
    write(&to.join(name), value.trim())
}

/// Creates each level of `parent` in the v1 cpuset hierarchy at `root`,
/// giving each the CPUs and memory nodes of the level above.
fn prepare_v1_cpuset_parents(root: &Path, parent: &str) -> Result<()> {
    let mut above = root.to_path_buf();
    for part in Path::new(parent).components() {
        let dir = above.join(part);
        fs::create_dir_all(&dir).map_err(|e| Error::io("create cgroup", &dir, e))?;
        copy_cpuset_file(&above, &dir, "cpuset.cpus")?;
        copy_cpuset_file(&above, &dir, "cpuset.mems")?;
        above = dir;
    }
    Ok(())
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
        for c in ["memory", "pids", "cpu", "cpuacct", "devices", "systemd"] {
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
        assert_eq!(controllers, &["memory", "pids", "cpu", "devices"]);
        assert!(unified.is_some());
        assert!(mountable.contains(&"name=systemd".to_string()));
        let cg = Cgroup::create(&layout, "kiln", "c1", Some(&resources())).expect("create");
        let read = |p: &str| fs::read_to_string(root.join(p)).expect("read");
        assert_eq!(read("memory/kiln/c1/memory.limit_in_bytes"), "1048576");
        assert_eq!(read("pids/kiln/c1/pids.max"), "20");
        assert_eq!(read("cpu/kiln/c1/cpu.cfs_quota_us"), "50000");
        assert_eq!(read("cpu/kiln/c1/cpu.shares"), "512");
        assert_eq!(
            read("devices/kiln/c1/devices.deny"),
            "a",
            "Docker's list starts by denying everything"
        );
        assert_eq!(
            cg.dirs.len(),
            4,
            "one directory per controller in use, none in the v2 tree: {:?}",
            cg.dirs
        );
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
    fn no_attach(_: &Path, _: &[Insn]) -> io::Result<()> {
        panic!("a v1 devices hierarchy needs no program")
    }

    #[test]
    fn device_rules_go_to_v1_files_or_to_a_v2_program() {
        let t = tempfile::tempdir().expect("tempdir");
        let root = t.path();
        for c in ["memory", "pids", "cpu", "devices"] {
            touch(&root.join(c).join("cgroup.procs"));
        }
        let layout = Layout::detect(root);
        let cg = Cgroup::create(&layout, "kiln", "d1", None).expect("create");
        let rules = devices::effective_rules(None);
        assert_eq!(
            fs::read_to_string(root.join("devices/kiln/d1/devices.allow")).expect("read"),
            "c 10:200 rwm",
            "the last allow line written (each write replaces a plain file)"
        );
        cg.filter_devices(&rules, false, no_attach)
            .expect("v1 filters");

        // Pure v2: the program is attached to the container's directory.
        let t = tempfile::tempdir().expect("tempdir");
        touch(&t.path().join("cgroup.controllers"));
        let cg = Cgroup::create(&Layout::detect(t.path()), "kiln", "d2", None).expect("create");
        let mut seen = None;
        cg.filter_devices(&rules, false, |dir, insns| {
            seen = Some((dir.to_path_buf(), insns.len()));
            Ok(())
        })
        .expect("attached");
        assert_eq!(
            seen,
            Some((t.path().join("kiln/d2"), devices::program(&rules).len()))
        );
        // Refused (no CAP_BPF, old kernel): root fails with a clear message,
        // a rootless container runs (its user namespace keeps it off the
        // host's devices).
        let refuse = |_: &Path, _: &[Insn]| Err(io::Error::from_raw_os_error(libc::EPERM));
        let err = cg
            .filter_devices(&rules, false, refuse)
            .expect_err("refused");
        assert!(
            err.contains("cannot filter device access on cgroup v2")
                && err.contains("CAP_BPF")
                && err.contains("kiln/d2"),
            "{err}"
        );
        cg.filter_devices(&rules, true, refuse)
            .expect("rootless runs");
    }

    #[test]
    fn hybrid_without_v1_devices_joins_the_v2_tree_for_the_filter() {
        let t = tempfile::tempdir().expect("tempdir");
        let root = t.path();
        for c in ["memory", "pids"] {
            touch(&root.join(c).join("cgroup.procs"));
        }
        let no_unified = Cgroup::create(&Layout::detect(root), "kiln", "h0", None).expect("create");
        let err = no_unified
            .filter_devices(&[], false, no_attach)
            .expect_err("nothing can filter");
        assert!(
            err.contains("cannot keep the container from opening host devices"),
            "{err}"
        );
        touch(&root.join("unified/cgroup.controllers"));
        let cg = Cgroup::create(&Layout::detect(root), "kiln", "h1", None).expect("create");
        assert_eq!(cg.dir(""), Some(root.join("unified/kiln/h1").as_path()));
        let mut attached = false;
        cg.filter_devices(&[], false, |_, _| {
            attached = true;
            Ok(())
        })
        .expect("filtered");
        assert!(attached);
    }
    #[test]
    fn cpuset_and_oom_kill_disable() {
        let r: LinuxResources = serde_json::from_value(serde_json::json!({
            "memory": {"limit": 1048576, "disableOOMKiller": true},
            "cpu": {"cpus": "0"}
        }))
        .expect("resources");
        let t = tempfile::tempdir().expect("tempdir");
        let root = t.path();
        for c in ["memory", "pids", "cpu", "devices", "cpuset"] {
            touch(&root.join(c).join("cgroup.procs"));
        }
        fs::write(root.join("cpuset/cpuset.cpus"), "0-1\n").expect("cpus");
        fs::write(root.join("cpuset/cpuset.mems"), "0\n").expect("mems");
        let layout = Layout::detect(root);
        let cg = Cgroup::create(&layout, "kiln/ci", "c3", Some(&r)).expect("create");
        let read = |p: &str| fs::read_to_string(root.join(p)).expect(p);
        assert_eq!(read("memory/kiln/ci/c3/memory.oom_control"), "1");
        assert_eq!(
            read("cpuset/kiln/cpuset.cpus"),
            "0-1",
            "each level gets its parent's"
        );
        assert_eq!(read("cpuset/kiln/ci/cpuset.mems"), "0");
        assert_eq!(read("cpuset/kiln/ci/c3/cpuset.mems"), "0");
        assert_eq!(read("cpuset/kiln/ci/c3/cpuset.cpus"), "0");
        assert_eq!(
            cg.dir("cpuset"),
            Some(root.join("cpuset/kiln/ci/c3").as_path())
        );
        // Without --cpuset-cpus the cpuset hierarchy is not joined.
        let cg = Cgroup::create(&layout, "kiln", "c4", None).expect("create");
        assert!(cg.dir("cpuset").is_none());
        // No cpuset hierarchy: refused, saying what is missing.
        fs::remove_file(root.join("cpuset/cgroup.procs")).expect("rm");
        let err = Cgroup::create(&Layout::detect(root), "kiln", "c5", Some(&r))
            .expect_err("no cpuset controller");
        assert!(
            err.to_string()
                .contains("--cpuset-cpus needs the cpuset controller"),
            "{err}"
        );

        // v2: cpuset.cpus in the one directory, the controller enabled;
        // no OOM switch exists there.
        let t = tempfile::tempdir().expect("tempdir");
        touch(&t.path().join("cgroup.controllers"));
        Cgroup::create(&Layout::detect(t.path()), "kiln", "c6", Some(&r)).expect("create");
        let read = |p: &str| fs::read_to_string(t.path().join(p)).expect(p);
        assert_eq!(read("kiln/c6/cpuset.cpus"), "0");
        assert_eq!(read("kiln/cgroup.subtree_control"), "+cpuset");
        assert!(!t.path().join("kiln/c6/memory.oom_control").exists());
    }
}
