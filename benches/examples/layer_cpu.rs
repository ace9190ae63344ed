//! Wall-clock and CPU time of making one uncompressed layer (walk + tar +
//! sha256) of a directory, as `kiln build` does for a step's upper dir. On a
//! loaded machine criterion's wall-clock figures say little; CPU time per
//! byte says what the code costs.
//!
//! `cargo run --release -p kiln-benches --example layer_cpu -- DIR [RUNS] [none|gzip|zstd] [unpack]`
//!
//! With `unpack`, the layer is made once into memory and then unpacked
//! `RUNS` times into fresh directories next to `DIR` (delete-form whiteouts,
//! owners kept, diffID checked).

use std::io;
use std::path::PathBuf;
use std::time::Instant;

use kiln_layer::{
    ApplyOptions, Compression, DiffOptions, LayerWriter, WhiteoutMode, apply_layer,
    diff_overlay_upper,
};

/// User + system CPU seconds so far of `who` (`self`: all threads of the
/// process; `thread-self`: the calling thread).
fn cpu_seconds(who: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{who}/stat")).expect("reading stat");
    // Fields after the command name (which ends with ')').
    let rest = &stat[stat.rfind(')').expect("stat has a command name") + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let ticks = |i: usize| fields[i].parse::<f64>().expect("numeric stat field");
    // utime and stime are fields 14 and 15 (1-based), 12 and 13 here.
    (ticks(11) + ticks(12)) / 100.0
}

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(
        args.next()
            .expect("usage: layer_cpu DIR [RUNS] [none|gzip|zstd]"),
    );
    let runs: usize = args
        .next()
        .map_or(5, |r| r.parse().expect("RUNS is a number"));
    let compression = match args.next().as_deref() {
        None | Some("none") => Compression::None,
        Some("gzip") => Compression::Gzip,
        Some("zstd") => Compression::Zstd,
        Some(other) => panic!("unknown compression {other}"),
    };
    if args.next().as_deref() == Some("unpack") {
        unpack(&dir, runs, compression);
        return;
    }
    for _ in 0..runs {
        let (t0, c0, m0) = (
            Instant::now(),
            cpu_seconds("self"),
            cpu_seconds("thread-self"),
        );
        let w = LayerWriter::new(io::sink(), compression).expect("layer writer");
        let w = diff_overlay_upper(&dir, &DiffOptions::default(), w).expect("diff");
        let (d, _) = w.finish().expect("finish");
        let wall = t0.elapsed().as_secs_f64();
        let cpu = cpu_seconds("self") - c0;
        let main = cpu_seconds("thread-self") - m0;
        let mb = d.uncompressed_size as f64 / 1e6;
        // With a free core per thread, the busiest thread bounds the time.
        let busiest = main.max(cpu - main);
        println!(
            "{compression}: {mb:.0} MB tar, wall {wall:.3} s ({:.0} MB/s), cpu {cpu:.2} s \
             (calling thread {main:.2} s, others {:.2} s; {:.0} MB/s by the busiest thread)",
            mb / wall,
            cpu - main,
            mb / busiest.max(0.001)
        );
    }
}

fn unpack(dir: &std::path::Path, runs: usize, compression: Compression) {
    let w = LayerWriter::new(Vec::new(), compression).expect("layer writer");
    let w = diff_overlay_upper(dir, &DiffOptions::default(), w).expect("diff");
    let (d, blob) = w.finish().expect("finish");
    let parent = dir.parent().expect("DIR has a parent");
    for i in 0..runs {
        let root = parent.join(format!("layer-cpu-unpack-{}-{i}", std::process::id()));
        std::fs::create_dir(&root).expect("unpack root");
        let opts = ApplyOptions {
            whiteouts: WhiteoutMode::Delete,
            expected_diff_id: Some(d.diff_id.clone()),
            ..ApplyOptions::default()
        };
        let (t0, c0, m0) = (
            Instant::now(),
            cpu_seconds("self"),
            cpu_seconds("thread-self"),
        );
        apply_layer(blob.as_slice(), compression, &root, &opts).expect("apply");
        let wall = t0.elapsed().as_secs_f64();
        let cpu = cpu_seconds("self") - c0;
        let main = cpu_seconds("thread-self") - m0;
        let mb = d.uncompressed_size as f64 / 1e6;
        println!(
            "unpack {compression}: {mb:.0} MB tar, wall {wall:.3} s ({:.0} MB/s), cpu {cpu:.2} s \
             (calling thread {main:.2} s)",
            mb / wall
        );
        std::fs::remove_dir_all(&root).expect("removing unpack root");
    }
}
