//! Test helpers: a tree fingerprint that compares everything a snapshot
//! must preserve.

#![allow(dead_code, unreachable_pub)]

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

/// A tree fingerprint: path → description.
pub type Print = BTreeMap<String, String>;

/// Everything a layer should reproduce about a tree, keyed by path.
/// Hardlinks show as a shared group number; directory mtimes are included.
pub fn fingerprint(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut inodes: HashMap<(u64, u64), Vec<String>> = HashMap::new();
    walk(root, root, &mut out, &mut inodes);
    // Only inodes reachable by several paths of this tree are hardlinks here
    // (overlayfs reports a lower inode's link count even after a copy-up).
    let mut groups: Vec<&Vec<String>> = inodes.values().filter(|p| p.len() > 1).collect();
    groups.sort();
    for (n, paths) in groups.into_iter().enumerate() {
        for p in paths {
            if let Some(v) = out.get_mut(p) {
                *v = format!("{v} link#{n}");
            }
        }
    }
    out
}

fn walk(
    root: &Path,
    dir: &Path,
    out: &mut BTreeMap<String, String>,
    inodes: &mut HashMap<(u64, u64), Vec<String>>,
) {
    let mut names: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    for name in names {
        let path = dir.join(&name);
        let rel = path.strip_prefix(root).unwrap().display().to_string();
        let m = fs::symlink_metadata(&path).unwrap();
        let ft = m.file_type();
        let mut xattrs: Vec<String> = xattr::list(&path)
            .map(|it| {
                it.filter(|n| !n.as_bytes().starts_with(b"trusted.overlay."))
                    .map(|n| {
                        let v = xattr::get(&path, &n).unwrap().unwrap_or_default();
                        format!("{}={}", n.to_string_lossy(), String::from_utf8_lossy(&v))
                    })
                    .collect()
            })
            .unwrap_or_default();
        xattrs.sort();
        let kind = if ft.is_dir() {
            "dir".to_owned()
        } else if ft.is_symlink() {
            format!("symlink->{}", fs::read_link(&path).unwrap().display())
        } else if ft.is_file() {
            let data = fs::read(&path).unwrap();
            if m.nlink() > 1 {
                inodes
                    .entry((m.dev(), m.ino()))
                    .or_default()
                    .push(rel.clone());
            }
            format!("file len={} sum={}", data.len(), simple_sum(&data))
        } else if ft.is_char_device() {
            format!("chr {}", m.rdev())
        } else if ft.is_block_device() {
            format!("blk {}", m.rdev())
        } else {
            "fifo".to_owned()
        };
        let mtime = if ft.is_symlink() { 0 } else { m.mtime() };
        out.insert(
            rel,
            format!(
                "{kind} mode={:o} uid={} gid={} mtime={mtime} xattrs={xattrs:?}",
                m.mode() & 0o7777,
                m.uid(),
                m.gid()
            ),
        );
        if ft.is_dir() {
            walk(root, &path, out, inodes);
        }
    }
}

fn simple_sum(data: &[u8]) -> u64 {
    // FNV-1a: enough to tell contents apart in a test.
    let mut h: u64 = 0xcbf29ce484222325;
    for b in data {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

/// Lists a directory's names, sorted.
pub fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}
