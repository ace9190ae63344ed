//! Layer compression: the [`Compression`] kinds, media-type mapping, magic-byte
//! detection, and the streaming decoders used by apply.

use std::fmt;
use std::io::{self, BufRead, Read};

use crate::{Error, Result};

/// How a layer blob is compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Compression {
    /// A plain tar.
    #[default]
    None,
    /// gzip (RFC 1952), possibly several members.
    Gzip,
    /// zstd frames.
    Zstd,
}

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

impl Compression {
    /// The compression a layer media type declares (OCI and Docker schema 2,
    /// including the non-distributable variants).
    pub fn from_media_type(media_type: &str) -> Result<Self> {
        let known_tar = [
            "application/vnd.oci.image.layer.v1.tar",
            "application/vnd.oci.image.layer.nondistributable.v1.tar",
            "application/vnd.docker.image.rootfs.diff.tar",
            "application/vnd.docker.image.rootfs.foreign.diff.tar",
        ];
        let (base, suffix) = match media_type.rsplit_once('+') {
            Some((base, suffix)) => (base, Some(suffix)),
            None => (media_type, None),
        };
        if media_type == "application/vnd.docker.image.rootfs.diff.tar.gzip"
            || media_type == "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
        {
            return Ok(Self::Gzip);
        }
        if known_tar.contains(&base) {
            match suffix {
                None => return Ok(Self::None),
                Some("gzip") => return Ok(Self::Gzip),
                Some("zstd") => return Ok(Self::Zstd),
                Some(_) => {}
            }
        }
        Err(Error::UnknownMediaType {
            media_type: media_type.to_owned(),
        })
    }

    /// The OCI layer media type for this compression.
    pub fn oci_media_type(self) -> &'static str {
        match self {
            Self::None => "application/vnd.oci.image.layer.v1.tar",
            Self::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
            Self::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
        }
    }

    /// Detects the compression from the first bytes of a blob.
    pub fn from_magic(head: &[u8]) -> Self {
        if head.starts_with(&GZIP_MAGIC) {
            Self::Gzip
        } else if head.starts_with(&ZSTD_MAGIC) {
            Self::Zstd
        } else {
            Self::None
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::None => "uncompressed",
            Self::Gzip => "gzip",
            Self::Zstd => "zstd",
        })
    }
}

/// Peeks at the start of a buffered stream (without consuming it) and tells
/// its compression from the magic bytes.
pub fn detect_compression<R: BufRead>(reader: &mut R) -> io::Result<Compression> {
    Ok(Compression::from_magic(reader.fill_buf()?))
}

/// Wraps a buffered reader in the decoder for `compression`.
pub(crate) fn decoder<'a, R: BufRead + 'a>(
    reader: R,
    compression: Compression,
) -> io::Result<Box<dyn Read + 'a>> {
    Ok(match compression {
        Compression::None => Box::new(reader),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(reader)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(reader)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_types_map_to_compression() {
        let cases = [
            ("application/vnd.oci.image.layer.v1.tar", Compression::None),
            (
                "application/vnd.oci.image.layer.v1.tar+gzip",
                Compression::Gzip,
            ),
            (
                "application/vnd.oci.image.layer.v1.tar+zstd",
                Compression::Zstd,
            ),
            (
                "application/vnd.docker.image.rootfs.diff.tar.gzip",
                Compression::Gzip,
            ),
            (
                "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
                Compression::Gzip,
            ),
        ];
        for (mt, want) in cases {
            assert_eq!(Compression::from_media_type(mt).unwrap(), want, "{mt}");
        }
        assert!(Compression::from_media_type("application/json").is_err());
        assert!(
            Compression::from_media_type("application/vnd.oci.image.layer.v1.tar+lz4").is_err()
        );
        for c in [Compression::None, Compression::Gzip, Compression::Zstd] {
            assert_eq!(Compression::from_media_type(c.oci_media_type()).unwrap(), c);
        }
    }

    #[test]
    fn magic_bytes_are_detected() {
        assert_eq!(
            Compression::from_magic(&[0x1f, 0x8b, 8, 0]),
            Compression::Gzip
        );
        assert_eq!(
            Compression::from_magic(&[0x28, 0xb5, 0x2f, 0xfd, 0]),
            Compression::Zstd
        );
        assert_eq!(Compression::from_magic(b"etc/\0\0\0"), Compression::None);
        let mut r = io::BufReader::new(&[0x1f, 0x8b, 1, 2][..]);
        assert_eq!(detect_compression(&mut r).unwrap(), Compression::Gzip);
        // Peeking does not consume.
        assert_eq!(r.fill_buf().unwrap().len(), 4);
    }
}
