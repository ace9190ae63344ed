//! ADD of local archives: which files are tar archives ADD extracts (plain,
//! gzip, bzip2, xz, zstd, recognised from the content as Docker does) and
//! their decompressed streams. The extraction itself is kiln-layer's
//! [`kiln_layer::extract_archive`], the one unpacker kiln has.

use std::io::{self, Read};
use std::path::Path;

use kiln_fs::{FinalLink, Root};

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

/// The decompressed stream of the regular file `rel` in `root`.
pub(crate) fn open(root: &Root, rel: &Path, c: Compression) -> io::Result<Box<dyn Read>> {
    let f = io::BufReader::new(root.open_file(rel, FinalLink::NoFollow)?);
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
                // A decode error closes the pipe early: the unpacker then
                // fails on the truncated archive.
                let _ = lzma_rs::xz_decompress(&mut input, &mut writer);
            });
            Box::new(reader)
        }
    })
}

/// Whether the regular file `rel` in `root` is a tar archive ADD must
/// extract, and how it is compressed.
pub(crate) fn detect(root: &Root, rel: &Path) -> Option<Compression> {
    let mut f = root.open_file(rel, FinalLink::NoFollow).ok()?;
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
    let mut r = open(root, rel, c).ok()?;
    looks_like_tar(&read_block(&mut r)).then_some(c)
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
    fn detects_every_compression_and_decompresses_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = Root::open(dir.path()).expect("root");
        let tar = make_tar(&[("a/b.txt", b"bee"), ("c.txt", b"see")]);
        root.write("x.tar", &tar, 0o644).expect("write");
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        io::Write::write_all(&mut enc, &tar).expect("gzip");
        root.write("x.tar.gz", &enc.finish().expect("gzip"), 0o644)
            .expect("write");
        root.write(
            "x.tar.zst",
            &zstd::encode_all(&tar[..], 1).expect("zstd"),
            0o644,
        )
        .expect("write");
        let mut enc = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
        io::Write::write_all(&mut enc, &tar).expect("bzip2");
        root.write("x.tar.bz2", &enc.finish().expect("bzip2"), 0o644)
            .expect("write");
        let mut xz_bytes = Vec::new();
        lzma_rs::xz_compress(&mut &tar[..], &mut xz_bytes).expect("xz");
        root.write("x.tar.xz", &xz_bytes, 0o644).expect("write");
        root.write("plain.txt", b"just text", 0o644).expect("write");
        let d = |n: &str| detect(&root, Path::new(n));
        assert_eq!(d("x.tar"), Some(Compression::None));
        assert_eq!(d("x.tar.gz"), Some(Compression::Gzip));
        assert_eq!(d("x.tar.zst"), Some(Compression::Zstd));
        assert_eq!(d("x.tar.bz2"), Some(Compression::Bzip2));
        assert_eq!(d("x.tar.xz"), Some(Compression::Xz));
        assert_eq!(d("plain.txt"), None);
        for (n, c) in [
            ("x.tar.gz", Compression::Gzip),
            ("x.tar.zst", Compression::Zstd),
            ("x.tar.bz2", Compression::Bzip2),
            ("x.tar.xz", Compression::Xz),
        ] {
            let mut out = Vec::new();
            open(&root, Path::new(n), c)
                .expect("open")
                .read_to_end(&mut out)
                .expect("read");
            assert_eq!(out, tar, "{n}");
        }
    }
}
