//! Layer benchmarks: a synthetic tree of many small files plus one large
//! file, made into a layer (tar + sha256, then gzip and zstd on top), diffed
//! against a copy of itself (the copy snapshotter's case), and unpacked.
//!
//! The tree's size comes from `KILN_BENCH_SMALL_FILES` and
//! `KILN_BENCH_BIG_MIB` (defaults 20000 and 256, the figures).

use std::fs;
use std::io;
use std::path::Path;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use kiln_layer::{
    ApplyOptions, Compression, DiffOptions, LayerWriter, WhiteoutMode, apply_layer, diff_dirs,
    diff_overlay_upper,
};

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `small` files of 1–4 KiB in 100 directories, and one file of `big_mib` MiB.
fn make_tree(dir: &Path, small: usize, big_mib: usize) {
    for i in 0..small {
        let d = dir.join(format!("d{:03}", i % 100));
        if i < 100 {
            fs::create_dir_all(&d).expect("creating bench dir");
        }
        let len = 1024 + (i * 37) % 3072;
        let data: Vec<u8> = (0..len).map(|j| ((i + j) % 251) as u8).collect();
        fs::write(d.join(format!("f{i}")), data).expect("writing small file");
    }
    // Compressible but not trivially: a repeating 4 KiB pseudo-random block.
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let block: Vec<u8> = (0..4096)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % 64) as u8
        })
        .collect();
    let big = fs::File::create(dir.join("big")).expect("creating big file");
    let mut w = io::BufWriter::with_capacity(1 << 20, big);
    for _ in 0..big_mib * 256 {
        io::Write::write_all(&mut w, &block).expect("writing big file");
    }
    io::Write::flush(&mut w).expect("flushing big file");
}

fn opts() -> ApplyOptions {
    ApplyOptions {
        whiteouts: WhiteoutMode::Delete,
        allow_devices: false,
        preserve_owners: false,
        expected_diff_id: None,
    }
}

fn layer_benches(c: &mut Criterion) {
    let small = env_or("KILN_BENCH_SMALL_FILES", 20_000);
    let big = env_or("KILN_BENCH_BIG_MIB", 256);
    let tmp = tempfile::tempdir().expect("bench temp dir");
    let (empty, tree) = (tmp.path().join("empty"), tmp.path().join("tree"));
    fs::create_dir(&empty).expect("empty dir");
    fs::create_dir(&tree).expect("tree dir");
    make_tree(&tree, small, big);

    let layer = |compression| {
        let w = LayerWriter::new(Vec::new(), compression).expect("layer writer");
        let w = diff_dirs(&empty, &tree, &DiffOptions::default(), w).expect("diff");
        w.finish().expect("finish")
    };
    let (plain_digests, plain) = layer(Compression::None);
    let (_, gz) = layer(Compression::Gzip);
    let (_, zst) = layer(Compression::Zstd);
    let tar_bytes = plain_digests.uncompressed_size;

    let mut g = c.benchmark_group("layer");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(tar_bytes));
    // Compression alone, of the tar already in memory: 1 thread against
    // all of them (the bytes are the same either way).
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    for (name, compression, level, n) in [
        ("compress/sha256-only", Compression::None, 0, 1),
        ("compress/gzip-1/1-thread", Compression::Gzip, 1, 1),
        ("compress/gzip-1/all-threads", Compression::Gzip, 1, threads),
        ("compress/zstd-3/1-worker", Compression::Zstd, 3, 1),
        ("compress/zstd-3/all-workers", Compression::Zstd, 3, threads),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut w = LayerWriter::with_threads(io::sink(), compression, level, n)
                    .expect("layer writer");
                io::Write::write_all(&mut w, &plain).expect("compressing");
                w.finish().expect("finish").0
            })
        });
    }
    // `kiln build`'s path with the overlay snapshotter: the upper dir (here
    // the whole tree) walked into a LayerWriter.
    for (name, compression) in [
        ("make/tar+sha256", Compression::None),
        ("make/gzip-1", Compression::Gzip),
        ("make/zstd-3", Compression::Zstd),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| {
                let w = LayerWriter::new(io::sink(), compression).expect("layer writer");
                let w = diff_overlay_upper(&tree, &DiffOptions::default(), w).expect("diff");
                w.finish().expect("finish").0
            })
        });
    }
    // The same, stored as a blob file (uncompressed, as `kiln build` keeps
    // local layers) next to the tree.
    let blob_path = tmp.path().join("blob");
    g.bench_function("make/tar+sha256+file", |b| {
        b.iter(|| {
            let file = fs::File::create(&blob_path).expect("blob file");
            let w = LayerWriter::new(file, Compression::None).expect("layer writer");
            let w = diff_overlay_upper(&tree, &DiffOptions::default(), w).expect("diff");
            let (d, file) = w.finish().expect("finish");
            drop(file);
            d
        })
    });
    let _ = fs::remove_file(&blob_path);
    for (name, blob, compression) in [
        ("unpack/tar", &plain, Compression::None),
        ("unpack/gzip", &gz, Compression::Gzip),
        ("unpack/zstd", &zst, Compression::Zstd),
    ] {
        g.bench_function(name, |b| {
            b.iter_batched(
                || {
                    let dst = tempfile::tempdir_in(tmp.path()).expect("unpack dir");
                    fs::create_dir(dst.path().join("root")).expect("root");
                    dst
                },
                |dst| {
                    apply_layer(
                        blob.as_slice(),
                        compression,
                        &dst.path().join("root"),
                        &opts(),
                    )
                    .expect("apply");
                    dst
                },
                BatchSize::PerIteration,
            )
        });
    }
    // The copy snapshotter's diff: an unchanged copy, so every file's
    // contents are compared.
    let copy = tmp.path().join("copy");
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(&tree)
        .arg(&copy)
        .status()
        .expect("running cp -a");
    assert!(status.success(), "cp -a failed");
    g.bench_function("diff_dirs/unchanged-copy", |b| {
        b.iter(|| diff_dirs(&tree, &copy, &DiffOptions::default(), io::sink()).expect("diff"))
    });
    g.finish();
}

criterion_group!(benches, layer_benches);
criterion_main!(benches);
