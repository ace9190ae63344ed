//! Block-parallel gzip: the input is cut into fixed 1 MiB blocks, each
//! compressed as raw deflate on its own (sync-flushed, the last one
//! finished) by a pool of threads, and the results are written in order as
//! one gzip member with the combined CRC. The output depends on the block
//! size and level only, never on the number of threads, so layers are
//! byte-identical across machines.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use flate2::{Compress, Crc, FlushCompress, Status};

const BLOCK: usize = 1 << 20;
/// gzip header: magic, deflate, no flags, mtime 0, no extra flags, OS unknown.
const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];

struct Job {
    seq: u64,
    data: Vec<u8>,
    last: bool,
}

struct Done {
    seq: u64,
    out: io::Result<Vec<u8>>,
    crc: Crc,
}

/// The block-parallel gzip writer.
pub(crate) struct ParGzip<W: Write> {
    inner: W,
    level: u32,
    buf: Vec<u8>,
    crc: Crc,
    next_seq: u64,
    next_write: u64,
    pending: BTreeMap<u64, Done>,
    in_flight: usize,
    max_in_flight: usize,
    pool: Option<Pool>,
}

struct Pool {
    jobs: Sender<Job>,
    results: Receiver<Done>,
    workers: Vec<JoinHandle<()>>,
}

/// Closing the job channel ends the workers; they are joined so that none
/// outlives the writer, also when it is dropped unfinished (a failed diff).
impl Drop for Pool {
    fn drop(&mut self) {
        let (closed, _) = mpsc::channel();
        drop(std::mem::replace(&mut self.jobs, closed));
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

impl<W: Write> ParGzip<W> {
    /// A compressor using `threads` worker threads (1: compress inline).
    pub(crate) fn new(mut inner: W, level: u32, threads: usize) -> io::Result<Self> {
        inner.write_all(&HEADER)?;
        let pool = (threads > 1).then(|| {
            let (jobs, job_rx) = mpsc::channel::<Job>();
            let (done_tx, results) = mpsc::channel::<Done>();
            let job_rx = Arc::new(Mutex::new(job_rx));
            let workers = (0..threads)
                .map(|_| {
                    let job_rx = Arc::clone(&job_rx);
                    let done_tx = done_tx.clone();
                    std::thread::spawn(move || {
                        loop {
                            let job = {
                                let rx = job_rx.lock().unwrap_or_else(|p| p.into_inner());
                                rx.recv()
                            };
                            let Ok(job) = job else { return };
                            let done = compress_block(job.seq, &job.data, level, job.last);
                            if done_tx.send(done).is_err() {
                                return;
                            }
                        }
                    })
                })
                .collect();
            Pool {
                jobs,
                results,
                workers,
            }
        });
        Ok(Self {
            inner,
            level,
            buf: Vec::with_capacity(BLOCK),
            crc: Crc::new(),
            next_seq: 0,
            next_write: 0,
            pending: BTreeMap::new(),
            in_flight: 0,
            max_in_flight: threads * 2,
            pool,
        })
    }

    fn dispatch(&mut self, last: bool) -> io::Result<()> {
        let data = std::mem::replace(
            &mut self.buf,
            Vec::with_capacity(if last { 0 } else { BLOCK }),
        );
        let seq = self.next_seq;
        self.next_seq += 1;
        match &self.pool {
            None => {
                let done = compress_block(seq, &data, self.level, last);
                self.pending.insert(seq, done);
            }
            Some(pool) => {
                pool.jobs
                    .send(Job { seq, data, last })
                    .map_err(|_| io::Error::other("gzip worker thread exited"))?;
                self.in_flight += 1;
                while self.in_flight >= self.max_in_flight {
                    self.receive_one()?;
                }
            }
        }
        self.write_ready()
    }

    fn receive_one(&mut self) -> io::Result<()> {
        let pool = self.pool.as_ref().expect("only called with a pool");
        let done = pool
            .results
            .recv()
            .map_err(|_| io::Error::other("gzip worker thread exited"))?;
        self.in_flight -= 1;
        self.pending.insert(done.seq, done);
        self.write_ready()
    }

    fn write_ready(&mut self) -> io::Result<()> {
        while let Some(done) = self.pending.remove(&self.next_write) {
            self.inner.write_all(&done.out?)?;
            self.crc.combine(&done.crc);
            self.next_write += 1;
        }
        Ok(())
    }

    /// Compresses what is left, writes the trailer and returns the sink.
    pub(crate) fn finish(mut self) -> io::Result<W> {
        self.dispatch(true)?;
        while self.in_flight > 0 {
            self.receive_one()?;
        }
        self.write_ready()?;
        let mut trailer = [0u8; 8];
        trailer[..4].copy_from_slice(&self.crc.sum().to_le_bytes());
        trailer[4..].copy_from_slice(&self.crc.amount().to_le_bytes());
        self.inner.write_all(&trailer)?;
        // Dropping the pool ends and joins its workers.
        drop(self.pool.take());
        Ok(self.inner)
    }
}

impl<W: Write> Write for ParGzip<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let room = BLOCK - self.buf.len();
        let n = room.min(buf.len());
        self.buf.extend_from_slice(&buf[..n]);
        if self.buf.len() == BLOCK {
            self.dispatch(false)?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        // Blocks are fixed-size for determinism: a partial block is not
        // cut early, only what is already compressed is flushed.
        self.write_ready()?;
        self.inner.flush()
    }
}

fn compress_block(seq: u64, data: &[u8], level: u32, last: bool) -> Done {
    let mut crc = Crc::new();
    crc.update(data);
    let mut c = Compress::new(flate2::Compression::new(level), false);
    let mut out = Vec::with_capacity(data.len() / 2 + 4096);
    let flush = if last {
        FlushCompress::Finish
    } else {
        FlushCompress::Sync
    };
    let out = loop {
        let consumed = c.total_in() as usize;
        let status = match c.compress_vec(&data[consumed..], &mut out, flush) {
            Ok(s) => s,
            Err(e) => break Err(io::Error::other(e)),
        };
        let all_in = c.total_in() as usize == data.len();
        match status {
            Status::StreamEnd => break Ok(out),
            _ if all_in && !last && out.len() < out.capacity() => break Ok(out),
            _ => out.reserve(out.capacity().max(64 << 10)),
        }
    };
    Done { seq, out, crc }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn gz(data: &[u8], threads: usize, chunk: usize) -> Vec<u8> {
        let mut w = ParGzip::new(Vec::new(), 1, threads).unwrap();
        for c in data.chunks(chunk.max(1)) {
            w.write_all(c).unwrap();
        }
        w.finish().unwrap()
    }

    #[test]
    fn output_decodes_and_does_not_depend_on_threads() {
        let mut seed = 7u64;
        let data: Vec<u8> = (0..(3 * BLOCK + 12345))
            .map(|i| {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                if i % 3 == 0 { (seed >> 60) as u8 } else { b'a' }
            })
            .collect();
        let one = gz(&data, 1, 70_000);
        for threads in [2, 3, 8] {
            assert_eq!(gz(&data, threads, 4096), one, "{threads} threads");
        }
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(one.as_slice())
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, data);
    }

    #[test]
    fn empty_and_exact_block_inputs_are_valid_gzip() {
        for len in [0, 1, BLOCK, 2 * BLOCK] {
            let data = vec![5u8; len];
            let out = gz(&data, 2, BLOCK);
            let mut back = Vec::new();
            flate2::read::GzDecoder::new(out.as_slice())
                .read_to_end(&mut back)
                .unwrap();
            assert_eq!(back.len(), len);
        }
    }
}
