//! User namespaces: the uid/gid maps of a container (`--userns`, rootless;
//! kiln-model's `IdMap`),
//! how to read them from `/etc/subuid`-style text, and how the supervisor
//! writes them for the container's init.
//!
//! Decided defaults (see the README): as root, `--userns` maps container
//! ids `0..65536` to the range `/etc/subuid` gives the user `kiln`, else to
//! [`DEFAULT_REMAP_START`]`..+65536`, above the ranges `useradd` allocates.
//! Rootless, container root is the calling user and container ids
//! `1..` come from the user's own `/etc/subuid` range when `newuidmap` can
//! write it; otherwise only the caller's own id is mapped.

use std::path::Path;
use std::process::Command;

use kiln_model::{IdMap, IdRange};

/// The first host id of `--userns` without a `kiln` entry in `/etc/subuid`.
pub const DEFAULT_REMAP_START: u32 = 1_000_000_000;
/// How many ids `--userns` maps by default (Docker's `dockremap` size).
pub const DEFAULT_REMAP_SIZE: u32 = 65_536;

/// The first `name` (or numeric `id`) entry of `/etc/subuid`-style text
/// (`name:start:count` lines): `(start, count)`.
pub fn subordinate_range(text: &str, name: &str, id: u32) -> Option<(u32, u32)> {
    let id = id.to_string();
    text.lines().find_map(|l| {
        let mut f = l.trim().split(':');
        let (who, start, count) = (f.next()?, f.next()?, f.next()?);
        if who != name && who != id {
            return None;
        }
        Some((start.parse().ok()?, count.parse().ok()?))
    })
}

/// The `/proc/PID/uid_map` text of `ranges`.
pub(crate) fn map_text(ranges: &[IdRange]) -> String {
    ranges
        .iter()
        .map(|r| format!("{} {} {}\n", r.container_id, r.host_id, r.size))
        .collect()
}

/// Whether `ranges` is just the caller's own id, which an unprivileged
/// process may map itself (after `setgroups` is denied, for gids).
fn only_own(ranges: &[IdRange], own: u32) -> bool {
    ranges.len() == 1 && ranges[0].size == 1 && ranges[0].host_id == own
}

/// Writes the maps of the user namespace of `pid` (its parent, in the
/// parent namespace): directly as root or for a single own-id map, else
/// through the setuid helpers `newuidmap`/`newgidmap` (Debian `uidmap`).
pub(crate) fn write_maps(pid: i32, m: &IdMap, euid: u32, egid: u32) -> Result<(), String> {
    let proc = Path::new("/proc").join(pid.to_string());
    let write = |file: &str, text: &str| {
        std::fs::write(proc.join(file), text).map_err(|e| format!("write {file}: {e}"))
    };
    if euid == 0 {
        write("uid_map", &map_text(&m.uids))?;
        return write("gid_map", &map_text(&m.gids));
    }
    if only_own(&m.uids, euid) {
        write("uid_map", &map_text(&m.uids))?;
    } else {
        helper("newuidmap", pid, &m.uids)?;
    }
    if only_own(&m.gids, egid) {
        write("setgroups", "deny")?;
        write("gid_map", &map_text(&m.gids))
    } else {
        helper("newgidmap", pid, &m.gids)
    }
}

fn helper(name: &str, pid: i32, ranges: &[IdRange]) -> Result<(), String> {
    let mut cmd = Command::new(name);
    cmd.arg(pid.to_string());
    for r in ranges {
        cmd.args([
            r.container_id.to_string(),
            r.host_id.to_string(),
            r.size.to_string(),
        ]);
    }
    let out = cmd
        .output()
        .map_err(|e| format!("run {name} (Debian package uidmap): {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{name} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Whether `newuidmap` and `newgidmap` are on `path` (a `PATH` value).
pub fn helpers_available(path: &str) -> bool {
    ["newuidmap", "newgidmap"]
        .iter()
        .all(|h| path.split(':').any(|d| Path::new(d).join(h).is_file()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subuid_entries_by_name_or_id() {
        let text = "alice:100000:65536\nkiln:200000:1000\n1001:300000:10\n";
        assert_eq!(subordinate_range(text, "kiln", 0), Some((200_000, 1000)));
        assert_eq!(subordinate_range(text, "bob", 1001), Some((300_000, 10)));
        assert_eq!(subordinate_range(text, "carol", 5), None);
    }

    #[test]
    fn maps_translate_ids_and_print_as_proc_wants() {
        let m = IdMap::remap(DEFAULT_REMAP_START, DEFAULT_REMAP_START, 65_536);
        assert_eq!(m.host_uid(0), Some(1_000_000_000));
        assert_eq!(m.host_uid(1000), Some(1_000_001_000));
        assert_eq!(m.host_uid(65_536), None);
        assert_eq!(map_text(&m.uids), "0 1000000000 65536\n");
        let r = IdMap::rootless(1000, 1000, Some((100_000, 65_536)), Some((100_000, 65_536)));
        assert_eq!(map_text(&r.gids), "0 1000 1\n1 100000 65536\n");
        assert_eq!(r.host_uid(0), Some(1000));
        assert_eq!(r.host_uid(2), Some(100_001));
        let single = IdMap::rootless(1000, 1000, None, Some((1, 1)));
        assert_eq!(single.uids.len(), 1, "both ranges or none");
        assert!(only_own(&single.uids, 1000));
        assert!(!only_own(&r.uids, 1000));
    }
}
