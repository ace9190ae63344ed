//! ADD of local tar archives: detection (plain, gzip, bzip2, xz, zstd, from
//! the content, as Docker does) and extraction into a mounted rootfs, every
//! path resolved inside it.

use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path};

use crate::apply::resolve_in_root;
use crate::error::{Error, Result};
use crate::perms::Owner;

/// How an archive is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Compression {
    None,
    Gzip,
    Zstd,
    Bzip2,
    Xz,
}

fn looks_like_tar(block: &[u8]) -> bool {
    if block.len() < 512 {
        return false;
    }
    if &block[257..262] == b"ustar" {
        return true;
    }
    // Old (v7) tar: check the header checksum.
    let stored = std::str::from_utf8(&block[148..156])
        .ok()
        .map(|s| s.trim_matches(|c: char| c == '\0' || c == ' '))
        .and_then(|s| u32::from_str_radix(s, 8).ok());
    let sum: u32 = block
        .iter()
        .enumerate()
        .map(|(i, b)| {
            if (148..156).contains(&i) {
                32
            } else {
                u32::from(*b)
            }
        })
        .sum();
    stored == Some(sum) && block[0] != 0
}

fn read_block(r: &mut dyn Read) -> Vec<u8> {
    let mut buf = vec![0u8; 512];
    let mut n = 0;
    while n < 512 {
        match r.read(&mut buf[n..]) {
            Ok(0) | Err(_) => break,
            Ok(k) => n += k,
        }
    }
    buf.truncate(n);
    buf
}

fn open(path: &Path, c: Compression) -> io::Result<Box<dyn Read>> {
    let f = io::BufReader::new(fs::File::open(path)?);
    Ok(match c {
        Compression::None => Box::new(f),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(f)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(f)?),
        Compression::Bzip2 => Box::new(bzip2::read::MultiBzDecoder::new(f)),
        Compression::Xz => {
            // lzma-rs decodes into a writer: stream it through a pipe.
            let (reader, mut writer) = io::pipe()?;
            let mut input = f;
            std::thread::spawn(move || {
                // A decode error closes the pipe early; tar then reports a truncated archive.
                let _ = lzma_rs::xz_decompress(&mut input, &mut writer);
            });
            Box::new(reader)
        }
    })
}

/// Whether `path` is a tar archive ADD must extract, and how it is compressed.
pub(crate) fn detect(path: &Path) -> Option<Compression> {
    let mut f = fs::File::open(path).ok()?;
    let head = read_block(&mut f);
    let c = if head.starts_with(&[0x1f, 0x8b]) {
        Compression::Gzip
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Compression::Zstd
    } else if head.starts_with(b"BZh") {
        Compression::Bzip2
    } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        Compression::Xz
    } else {
        return looks_like_tar(&head).then_some(Compression::None);
    };
    let mut r = open(path, c).ok()?;
    looks_like_tar(&read_block(&mut r)).then_some(c)
}

/// Extracts the archive at `src` into `dest` (absolute, inside the rootfs at
/// `root`). Ownership comes from the archive unless `owner` is given.
pub(crate) fn extract(
    src: &Path,
    c: Compression,
    root: &Path,
    dest: &str,
    owner: Option<Owner>,
    ignore_chown_errors: bool,
) -> Result<()> {
    let io_err = |op: &'static str, p: &Path| {
        let p = p.to_path_buf();
        move |e: io::Error| Error::io(op, p, e)
    };
    let reader = open(src, c).map_err(io_err("open", src))?;
    let mut archive = tar::Archive::new(reader);
    let entries = archive.entries().map_err(io_err("read archive", src))?;
    let dest_host = resolve_in_root(root, dest, Some(owner.unwrap_or_default()), true)?;
    if !dest_host.exists() {
        fs::create_dir_all(&dest_host).map_err(io_err("create directory", &dest_host))?;
    }
    for entry in entries {
        let mut entry = entry.map_err(io_err("read archive", src))?;
        let raw = entry
            .path()
            .map_err(io_err("read archive", src))?
            .into_owned();
        // Clean the name; `..` may not climb above the destination.
        let mut parts: Vec<String> = Vec::new();
        for comp in raw.components() {
            match comp {
                Component::Normal(p) => parts.push(p.to_string_lossy().into_owned()),
                Component::ParentDir if parts.pop().is_none() => {
                    return Err(Error::io(
                        "extract",
                        src,
                        io::Error::other(format!(
                            "entry {} escapes the destination",
                            raw.display()
                        )),
                    ));
                }
                _ => {}
            }
        }
        if parts.is_empty() {
            continue;
        }
        let rel = format!("{}/{}", dest.trim_end_matches('/'), parts.join("/"));
        let (parent, name) = rel.rsplit_once('/').unwrap_or(("", rel.as_str()));
        let parent_host = resolve_in_root(root, parent, Some(owner.unwrap_or_default()), true)?;
        let target = parent_host.join(name);
        let header = entry.header().clone();
        let mode = header.mode().unwrap_or(0o644) & 0o7777;
        let existing = fs::symlink_metadata(&target).ok();
        let kind = header.entry_type();
        if existing.as_ref().is_some_and(|m| !m.is_dir()) || (existing.is_some() && !kind.is_dir())
        {
            if existing.as_ref().is_some_and(|m| m.is_dir()) {
                fs::remove_dir_all(&target).map_err(io_err("remove", &target))?;
            } else {
                fs::remove_file(&target).map_err(io_err("remove", &target))?;
            }
        }
        if kind.is_dir() {
            if !target.is_dir() {
                fs::create_dir(&target).map_err(io_err("create directory", &target))?;
            }
            fs::set_permissions(&target, fs::Permissions::from_mode(mode))
                .map_err(io_err("chmod", &target))?;
        } else if kind.is_symlink() {
            let link = entry
                .link_name()
                .map_err(io_err("read archive", src))?
                .ok_or_else(|| {
                    Error::io(
                        "extract",
                        &target,
                        io::Error::other("symlink without target"),
                    )
                })?;
            std::os::unix::fs::symlink(&link, &target).map_err(io_err("symlink", &target))?;
        } else if kind.is_hard_link() {
            let link = entry
                .link_name()
                .map_err(io_err("read archive", src))?
                .ok_or_else(|| {
                    Error::io(
                        "extract",
                        &target,
                        io::Error::other("hard link without target"),
                    )
                })?;
            let link_rel = format!("{}/{}", dest.trim_end_matches('/'), link.to_string_lossy());
            let link_host = resolve_in_root(root, &link_rel, None, false)?;
            fs::hard_link(&link_host, &target).map_err(io_err("link", &target))?;
            continue;
        } else if kind.is_file() || kind == tar::EntryType::Continuous {
            let mut out = fs::File::create(&target).map_err(io_err("create", &target))?;
            io::copy(&mut entry, &mut out).map_err(io_err("write", &target))?;
            fs::set_permissions(&target, fs::Permissions::from_mode(mode))
                .map_err(io_err("chmod", &target))?;
        } else {
            // Devices, fifos and metadata entries are not created by ADD here.
            continue;
        }
        let (uid, gid) = match owner {
            Some(o) => (o.uid, o.gid),
            None => (
                header.uid().unwrap_or(0) as u32,
                header.gid().unwrap_or(0) as u32,
            ),
        };
        if let Err(e) = std::os::unix::fs::lchown(&target, Some(uid), Some(gid))
            && !ignore_chown_errors
        {
            return Err(Error::io("chown", &target, e));
        }
        if let Ok(mtime) = header.mtime() {
            let t = filetime::FileTime::from_unix_time(mtime as i64, 0);
            filetime::set_symlink_file_times(&target, t, t)
                .map_err(io_err("set times", &target))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn make_tar(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o640);
            h.set_mtime(1_000);
            h.set_cksum();
            b.append_data(&mut h, name, *data).expect("append");
        }
        b.into_inner().expect("finish")
    }

    #[test]
    fn detects_and_extracts_every_compression() {
        let dir = tempfile::tempdir().expect("tempdir");
        let tar = make_tar(&[("a/b.txt", b"bee"), ("c.txt", b"see")]);
        let plain = dir.path().join("x.tar");
        fs::write(&plain, &tar).expect("write");
        let gz = dir.path().join("x.tar.gz");
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        io::Write::write_all(&mut enc, &tar).expect("gzip");
        fs::write(&gz, enc.finish().expect("gzip")).expect("write");
        let zst = dir.path().join("x.tar.zst");
        fs::write(&zst, zstd::encode_all(&tar[..], 1).expect("zstd")).expect("write");
        let bz = dir.path().join("x.tar.bz2");
        let mut enc = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
        io::Write::write_all(&mut enc, &tar).expect("bzip2");
        fs::write(&bz, enc.finish().expect("bzip2")).expect("write");
        let xz = dir.path().join("x.tar.xz");
        let mut xz_bytes = Vec::new();
        lzma_rs::xz_compress(&mut &tar[..], &mut xz_bytes).expect("xz");
        fs::write(&xz, xz_bytes).expect("write");
        let not = dir.path().join("plain.txt");
        fs::write(&not, "just text").expect("write");
        assert_eq!(detect(&plain), Some(Compression::None));
        assert_eq!(detect(&gz), Some(Compression::Gzip));
        assert_eq!(detect(&zst), Some(Compression::Zstd));
        assert_eq!(detect(&bz), Some(Compression::Bzip2));
        assert_eq!(detect(&xz), Some(Compression::Xz));
        assert_eq!(detect(&not), None);
        for (src, c) in [
            (&gz, Compression::Gzip),
            (&zst, Compression::Zstd),
            (&bz, Compression::Bzip2),
            (&xz, Compression::Xz),
        ] {
            let root = tempfile::tempdir().expect("tempdir");
            extract(src, c, root.path(), "/opt", None, true).expect("extract");
            assert_eq!(
                fs::read_to_string(root.path().join("opt/a/b.txt")).expect("read"),
                "bee"
            );
            let m = fs::metadata(root.path().join("opt/c.txt")).expect("stat");
            assert_eq!(m.permissions().mode() & 0o777, 0o640);
        }
    }

    #[test]
    fn refuses_to_climb_out() {
        let dir = tempfile::tempdir().expect("tempdir");
        // tar::Builder refuses `..` in names, so write the header by hand.
        let mut h = tar::Header::new_old();
        h.as_old_mut().name[..9].copy_from_slice(b"../../evi");
        h.set_size(1);
        h.set_mode(0o644);
        h.set_cksum();
        let mut data = h.as_bytes().to_vec();
        data.extend_from_slice(b"x");
        data.resize(512 * 4, 0);
        let p = dir.path().join("evil.tar");
        fs::write(&p, &data).expect("write");
        let root = tempfile::tempdir().expect("tempdir");
        let r = extract(&p, Compression::None, root.path(), "/d", None, true);
        assert!(r.is_err());
        assert!(!root.path().join("../evi").exists());
    }
}
