//! A guard that owns the processes and temporary directories a task started:
//! dropping it (on success, error or panic) kills the processes and removes
//! the directories.

use std::path::PathBuf;
use std::process::Child;

/// Processes and directories to clean up when dropped.
#[derive(Default)]
pub(crate) struct Guard {
    children: Vec<(String, Child)>,
    dirs: Vec<tempfile::TempDir>,
}

impl Guard {
    /// Takes ownership of a started process, killed on drop.
    pub(crate) fn adopt(&mut self, name: &str, child: Child) -> &mut Child {
        self.children.push((name.to_owned(), child));
        &mut self.children.last_mut().expect("just pushed").1
    }

    /// Makes a temporary directory removed on drop and returns its path.
    pub(crate) fn temp_dir(&mut self, prefix: &str) -> anyhow::Result<PathBuf> {
        let dir = tempfile::Builder::new().prefix(prefix).tempdir()?;
        let path = dir.path().to_path_buf();
        self.dirs.push(dir);
        Ok(path)
    }

    /// Whether every adopted process is still running; names the first that is not.
    pub(crate) fn check_alive(&mut self) -> anyhow::Result<()> {
        for (name, child) in &mut self.children {
            if let Some(status) = child.try_wait()? {
                anyhow::bail!("{name} exited early: {status}");
            }
        }
        Ok(())
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        for (name, child) in self.children.iter_mut().rev() {
            if let Ok(None) = child.try_wait() {
                eprintln!("stopping {name} (pid {})", child.id());
                let _ = child.kill();
            }
            let _ = child.wait();
        }
        // TempDir removes itself when dropped.
        self.dirs.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn drop_kills_children_and_removes_dirs() {
        let mut guard = Guard::default();
        let dir = guard.temp_dir("xtask-guard-test").unwrap();
        assert!(dir.is_dir());
        let child = Command::new("sleep").arg("30").spawn().unwrap();
        let pid = child.id();
        guard.adopt("sleep", child);
        guard.check_alive().unwrap();
        drop(guard);
        assert!(!dir.exists());
        // The process was reaped: /proc has no entry for it any more (or,
        // if the pid was reused already, not a sleep).
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        assert_ne!(comm.trim(), "sleep");
    }
}
