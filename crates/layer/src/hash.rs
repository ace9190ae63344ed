//! sha256 of a stream on its own thread: the diffID of a layer being made
//! ([`crate::LayerWriter`]) or unpacked ([`crate::apply_layer`]), fed 1 MiB
//! chunks in order.

use std::io;
use std::sync::mpsc;
use std::thread::JoinHandle;

use sha2::{Digest as _, Sha256};

/// The size of the chunks the callers gather before hashing.
pub(crate) const CHUNK: usize = 1 << 20;
/// Chunks queued for the diffID thread before the writer waits for it.
const HASH_QUEUE: usize = 4;

/// The diffID hash (sha256 of the uncompressed tar). With more than one
/// thread it runs on a thread of its own, fed the chunks in order, so that
/// hashing overlaps the caller's work (the walk and file reads when making
/// a layer, file writes when unpacking one; sha256 is the largest single
/// CPU cost of an uncompressed layer). The digest is the same either way.
pub(crate) enum ChunkHasher {
    Inline(Sha256),
    Thread {
        chunks: Option<mpsc::SyncSender<Vec<u8>>>,
        spare: mpsc::Receiver<Vec<u8>>,
        thread: Option<JoinHandle<Sha256>>,
    },
}

impl ChunkHasher {
    pub(crate) fn new(threads: usize) -> Self {
        if threads <= 1 {
            return Self::Inline(Sha256::new());
        }
        let (chunks, rx) = mpsc::sync_channel::<Vec<u8>>(HASH_QUEUE);
        let (spare_tx, spare) = mpsc::sync_channel::<Vec<u8>>(HASH_QUEUE + 2);
        let spawned = std::thread::Builder::new()
            .name("kiln-diffid".to_owned())
            .spawn(move || {
                let mut h = Sha256::new();
                for mut chunk in rx {
                    h.update(&chunk);
                    chunk.clear();
                    // The writer may be gone or have enough spares: either is fine.
                    let _ = spare_tx.try_send(chunk);
                }
                h
            });
        let Ok(thread) = spawned else {
            // No thread to be had (a pids limit, say): hash inline.
            return Self::Inline(Sha256::new());
        };
        Self::Thread {
            chunks: Some(chunks),
            spare,
            thread: Some(thread),
        }
    }

    /// Hashes `chunk` (or hands it to the thread) and returns an empty
    /// buffer to gather the next one in.
    pub(crate) fn consume(&mut self, mut chunk: Vec<u8>) -> io::Result<Vec<u8>> {
        match self {
            Self::Inline(h) => {
                h.update(&chunk);
                chunk.clear();
                Ok(chunk)
            }
            Self::Thread { chunks, spare, .. } => {
                let next = spare
                    .try_recv()
                    .unwrap_or_else(|_| Vec::with_capacity(CHUNK));
                chunks
                    .as_ref()
                    .expect("the sender lives until finish")
                    .send(chunk)
                    .map_err(|_| io::Error::other("the diffID hashing thread stopped"))?;
                Ok(next)
            }
        }
    }

    pub(crate) fn finish(mut self) -> io::Result<Sha256> {
        match &mut self {
            Self::Inline(h) => Ok(std::mem::take(h)),
            Self::Thread { chunks, thread, .. } => {
                drop(chunks.take());
                thread
                    .take()
                    .expect("joined once")
                    .join()
                    .map_err(|_| io::Error::other("the diffID hashing thread panicked"))
            }
        }
    }
}

/// A hasher dropped unfinished (the apply or the layer failed) still ends
/// and joins its thread, so no thread outlives the call that started it.
impl Drop for ChunkHasher {
    fn drop(&mut self) {
        if let Self::Thread { chunks, thread, .. } = self {
            drop(chunks.take());
            if let Some(t) = thread.take() {
                let _ = t.join();
            }
        }
    }
}
