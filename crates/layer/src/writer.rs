//! [`LayerWriter`]: one pass from tar bytes to a compressed blob, hashing the
//! tar (diffID) before compression and the blob (digest, size) after it.

use std::io::{self, BufWriter, Write};

use sha2::{Digest as _, Sha256};

use crate::hash::{CHUNK, ChunkHasher};
use crate::{Compression, Error, Result, sha256_digest};

/// The identities of a layer written by [`LayerWriter`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerDigests {
    /// sha256 of the uncompressed tar, `sha256:<hex>` (goes in the image config).
    pub diff_id: String,
    /// sha256 of the blob as written to the sink, `sha256:<hex>` (goes in the manifest).
    pub digest: String,
    /// Size of the blob as written to the sink.
    pub size: u64,
    /// Size of the uncompressed tar.
    pub uncompressed_size: u64,
    /// The compression of the blob.
    pub compression: Compression,
}

/// An [`io::Write`] that takes an uncompressed layer tar and, in one pass,
/// hashes it, compresses it and writes it to a sink while hashing and counting
/// the compressed bytes.
///
/// Gzip uses level 1 by default (speed over size; see the README for figures)
/// and compresses 1 MiB blocks on all cores. zstd uses level 3 and zstd's own
/// worker threads (`zstdmt`), one per core. For both, the bytes do not depend
/// on the number of threads (for a given zstd library version: zstd promises
/// no identical bytes across its versions). Call [`LayerWriter::finish`] to
/// flush and get the digests back along with the sink.
pub struct LayerWriter<W: Write> {
    /// Uncompressed bytes not yet handed to the encoder and the hasher.
    chunk: Vec<u8>,
    diff: ChunkHasher,
    uncompressed: u64,
    encoder: Encoder<W>,
}

enum Encoder<W: Write> {
    None(Counting<W>),
    Gzip(crate::pargz::ParGzip<Counting<W>>),
    Zstd(zstd::stream::write::Encoder<'static, Counting<W>>),
}

struct Counting<W: Write> {
    inner: BufWriter<W>,
    /// Off when uncompressed: the blob digest is then the diffID.
    hash: bool,
    hasher: Sha256,
    count: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        if self.hash {
            self.hasher.update(&buf[..n]);
        }
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<W: Write> LayerWriter<W> {
    /// A writer with the default level for `compression`.
    pub fn new(sink: W, compression: Compression) -> Result<Self> {
        let level = match compression {
            Compression::Gzip => 1,
            Compression::Zstd => 3,
            Compression::None => 0,
        };
        Self::with_level(sink, compression, level)
    }

    /// A writer with an explicit compression level (gzip 0–9, zstd 1–22;
    /// ignored when uncompressed), compressing on every core.
    pub fn with_level(sink: W, compression: Compression, level: i32) -> Result<Self> {
        let threads = std::thread::available_parallelism().map_or(1, usize::from);
        Self::with_threads(sink, compression, level, threads)
    }

    /// A writer with an explicit level and number of compression threads
    /// (gzip, 1: compress on the calling thread; zstd: that many workers,
    /// at least one). The output is the same for any number of threads.
    pub fn with_threads(
        sink: W,
        compression: Compression,
        level: i32,
        threads: usize,
    ) -> Result<Self> {
        let counting = Counting {
            inner: BufWriter::with_capacity(1 << 20, sink),
            hash: compression != Compression::None,
            hasher: Sha256::new(),
            count: 0,
        };
        let write_err = |source| Error::Write { source };
        let encoder = match compression {
            Compression::None => Encoder::None(counting),
            Compression::Gzip => Encoder::Gzip(
                crate::pargz::ParGzip::new(counting, level.clamp(0, 9) as u32, threads.max(1))
                    .map_err(write_err)?,
            ),
            Compression::Zstd => {
                let mut enc =
                    zstd::stream::write::Encoder::new(counting, level).map_err(write_err)?;
                // Always at least one worker: zstd's multithreaded mode cuts
                // the input into jobs sized from the level, not from the
                // worker count, so 1 or N workers give the same bytes (tested
                // below); 0 workers is zstd's separate single-threaded path.
                let workers = u32::try_from(threads.max(1)).unwrap_or(u32::MAX);
                enc.multithread(workers).map_err(write_err)?;
                Encoder::Zstd(enc)
            }
        };
        Ok(Self {
            chunk: Vec::with_capacity(CHUNK),
            diff: ChunkHasher::new(threads),
            uncompressed: 0,
            encoder,
        })
    }

    /// Bytes of uncompressed tar written so far.
    pub fn uncompressed_len(&self) -> u64 {
        self.uncompressed
    }

    /// Finishes compression, flushes the sink and returns the digests and the sink.
    pub fn finish(mut self) -> Result<(LayerDigests, W)> {
        let write_err = |source| Error::Write { source };
        self.flush_chunk().map_err(write_err)?;
        let (counting, compression) = match self.encoder {
            Encoder::None(c) => (c, Compression::None),
            Encoder::Gzip(e) => (e.finish().map_err(write_err)?, Compression::Gzip),
            Encoder::Zstd(e) => (e.finish().map_err(write_err)?, Compression::Zstd),
        };
        let sink = counting
            .inner
            .into_inner()
            .map_err(|e| write_err(e.into_error()))?;
        let diff_id = sha256_digest(self.diff.finish().map_err(write_err)?);
        let digest = if counting.hash {
            sha256_digest(counting.hasher)
        } else {
            diff_id.clone()
        };
        Ok((
            LayerDigests {
                diff_id,
                digest,
                size: counting.count,
                uncompressed_size: self.uncompressed,
                compression,
            },
            sink,
        ))
    }
}

impl<W: Write> LayerWriter<W> {
    /// Hands the gathered chunk to the encoder, then to the hasher.
    fn flush_chunk(&mut self) -> io::Result<()> {
        if self.chunk.is_empty() {
            return Ok(());
        }
        match &mut self.encoder {
            Encoder::None(w) => w.write_all(&self.chunk)?,
            Encoder::Gzip(w) => w.write_all(&self.chunk)?,
            Encoder::Zstd(w) => w.write_all(&self.chunk)?,
        }
        let full = std::mem::take(&mut self.chunk);
        self.chunk = self.diff.consume(full)?;
        Ok(())
    }
}

impl<W: Write> Write for LayerWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = (CHUNK - self.chunk.len()).min(buf.len());
        self.chunk.extend_from_slice(&buf[..n]);
        self.uncompressed += n as u64;
        if self.chunk.len() == CHUNK {
            self.flush_chunk()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.flush_chunk()?;
        match &mut self.encoder {
            Encoder::None(w) => w.flush(),
            Encoder::Gzip(w) => w.flush(),
            Encoder::Zstd(w) => w.flush(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn sha(data: &[u8]) -> String {
        let mut h = Sha256::new();
        h.update(data);
        sha256_digest(h)
    }

    #[test]
    fn digests_match_independent_hashes_for_every_compression() {
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        for c in [Compression::None, Compression::Gzip, Compression::Zstd] {
            let mut w = LayerWriter::new(Vec::new(), c).unwrap();
            for chunk in data.chunks(7000) {
                w.write_all(chunk).unwrap();
            }
            let (d, blob) = w.finish().unwrap();
            assert_eq!(d.diff_id, sha(&data), "{c}");
            assert_eq!(d.digest, sha(&blob), "{c}");
            assert_eq!(d.size, blob.len() as u64);
            assert_eq!(d.uncompressed_size, data.len() as u64);
            assert_eq!(Compression::from_magic(&blob), c);
            let mut back = Vec::new();
            crate::compression::decoder(&blob[..], c)
                .unwrap()
                .read_to_end(&mut back)
                .unwrap();
            assert_eq!(back, data);
        }
    }

    #[test]
    fn output_is_deterministic() {
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 253) as u8).collect();
        let run = |threads| {
            let mut w =
                LayerWriter::with_threads(Vec::new(), Compression::Gzip, 1, threads).unwrap();
            w.write_all(&data).unwrap();
            w.finish().unwrap()
        };
        let (d1, one) = run(1);
        let (d4, four) = run(4);
        assert_eq!(one, four);
        assert_eq!(d1, d4);
    }

    #[test]
    fn flushes_and_write_sizes_do_not_change_the_layer() {
        // The writer gathers 1 MiB chunks; flushing mid-chunk and writes
        // straddling chunk boundaries must give the same bytes and digests.
        let data: Vec<u8> = (0..2_500_000u32).map(|i| (i % 199) as u8).collect();
        for c in [Compression::None, Compression::Gzip, Compression::Zstd] {
            let whole = {
                let mut w = LayerWriter::with_threads(Vec::new(), c, 3, 2).unwrap();
                w.write_all(&data).unwrap();
                w.finish().unwrap()
            };
            let pieces = {
                let mut w = LayerWriter::with_threads(Vec::new(), c, 3, 2).unwrap();
                for (i, chunk) in data.chunks(700_001).enumerate() {
                    w.write_all(chunk).unwrap();
                    if i % 2 == 0 {
                        w.flush().unwrap();
                    }
                }
                assert_eq!(w.uncompressed_len(), data.len() as u64);
                w.finish().unwrap()
            };
            assert_eq!(whole.0.diff_id, sha(&data), "{c}");
            assert_eq!(pieces.0.diff_id, whole.0.diff_id, "{c}");
            let mut back = Vec::new();
            crate::compression::decoder(&pieces.1[..], c)
                .unwrap()
                .read_to_end(&mut back)
                .unwrap();
            assert_eq!(back, data, "{c}");
            if c == Compression::None {
                assert_eq!(pieces.1, whole.1);
            }
        }
    }

    #[test]
    fn an_unfinished_writer_ends_its_threads_when_dropped() {
        let data = vec![7u8; 3 << 20];
        for c in [Compression::None, Compression::Gzip, Compression::Zstd] {
            let mut w = LayerWriter::with_threads(Vec::new(), c, 1, 4).unwrap();
            w.write_all(&data).unwrap();
            let start = std::time::Instant::now();
            drop(w); // joins the hashing thread and the gzip workers
            assert!(start.elapsed() < std::time::Duration::from_secs(30), "{c}");
        }
    }

    #[test]
    fn zstd_output_does_not_depend_on_the_number_of_workers() {
        // Several zstd jobs (the level-3 job size is a few MiB), a poorly
        // compressible part, and the empty and tiny edge cases (zstd takes
        // another path when the first call already ends the frame).
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut big: Vec<u8> = (0..9_000_000u32).map(|i| (i * 7 % 253) as u8).collect();
        big.extend((0..3_000_000).map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as u8
        }));
        for data in [Vec::new(), b"x".to_vec(), big] {
            let run = |threads, chunk: usize| {
                let mut w =
                    LayerWriter::with_threads(Vec::new(), Compression::Zstd, 3, threads).unwrap();
                for c in data.chunks(chunk.max(1)) {
                    w.write_all(c).unwrap();
                }
                w.finish().unwrap()
            };
            let (d1, one) = run(1, 1 << 20);
            for (threads, chunk) in [(2, 7000), (3, 1 << 20), (8, 5 << 20)] {
                let (dn, many) = run(threads, chunk);
                assert_eq!(one, many, "{threads} workers, {} bytes", data.len());
                assert_eq!(d1, dn);
            }
            let mut back = Vec::new();
            crate::compression::decoder(&one[..], Compression::Zstd)
                .unwrap()
                .read_to_end(&mut back)
                .unwrap();
            assert_eq!(back, data);
        }
    }
}
