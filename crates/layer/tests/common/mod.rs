//! Test helpers: a raw tar writer that can say things tar-rs refuses to
//! (`..`, absolute paths, hostile link targets), and a tree fingerprint.

#![allow(dead_code, unreachable_pub)]

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use kiln_layer::{ApplyOptions, WhiteoutMode};
use tar::{EntryType, Header};

pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

pub fn opts(whiteouts: WhiteoutMode) -> ApplyOptions {
    ApplyOptions {
        whiteouts,
        allow_devices: false,
        preserve_owners: is_root(),
        expected_diff_id: None,
    }
}

/// A tar written header by header, names and link names copied verbatim.
#[derive(Default)]
pub struct RawTar {
    pub bytes: Vec<u8>,
}

impl RawTar {
    pub fn entry(&mut self, name: &[u8], kind: EntryType, link: &[u8], data: &[u8], mode: u32) {
        let mut h = Header::new_gnu();
        {
            let old = h.as_old_mut();
            old.name[..name.len()].copy_from_slice(name);
            old.linkname[..link.len()].copy_from_slice(link);
        }
        h.set_entry_type(kind);
        h.set_size(data.len() as u64);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_600_000_000);
        h.set_cksum();
        self.bytes.extend_from_slice(h.as_bytes());
        self.bytes.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        self.bytes.extend(std::iter::repeat_n(0, pad));
    }
    pub fn file(&mut self, name: &str, data: &[u8]) -> &mut Self {
        self.entry(name.as_bytes(), EntryType::Regular, b"", data, 0o644);
        self
    }
    pub fn dir(&mut self, name: &str) -> &mut Self {
        self.entry(name.as_bytes(), EntryType::Directory, b"", b"", 0o755);
        self
    }
    pub fn symlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.entry(
            name.as_bytes(),
            EntryType::Symlink,
            target.as_bytes(),
            b"",
            0o777,
        );
        self
    }
    pub fn hardlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.entry(
            name.as_bytes(),
            EntryType::Link,
            target.as_bytes(),
            b"",
            0o644,
        );
        self
    }
    /// A PAX extended header applying `records` to the next entry.
    pub fn pax(&mut self, records: &[(&str, &[u8])]) -> &mut Self {
        let mut data = Vec::new();
        for (k, v) in records {
            let body_len = 1 + k.len() + 1 + v.len() + 1;
            let mut len = body_len + 1;
            while len != body_len + len.to_string().len() {
                len = body_len + len.to_string().len();
            }
            data.extend_from_slice(format!("{len} {k}=").as_bytes());
            data.extend_from_slice(v);
            data.push(b'\n');
        }
        self.entry(b"PaxHeaders/x", EntryType::XHeader, b"", &data, 0o644);
        self
    }
    pub fn finish(&mut self) -> Vec<u8> {
        let mut out = self.bytes.clone();
        out.extend(std::iter::repeat_n(0, 1024));
        out
    }
}

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

/// Entries of a tar: (path, type byte, link name).
pub fn tar_entries(bytes: &[u8]) -> Vec<(String, char, String)> {
    let mut ar = tar::Archive::new(bytes);
    ar.entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.path().unwrap().display().to_string(),
                e.header().entry_type().as_byte() as char,
                e.link_name()
                    .unwrap()
                    .map(|l| l.display().to_string())
                    .unwrap_or_default(),
            )
        })
        .collect()
}
