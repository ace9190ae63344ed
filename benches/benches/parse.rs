//! Parser throughput: BuildKit's conformance Dockerfiles concatenated and
//! repeated to about 1 MB, parsed to the raw tree (and, separately, typed),
//! plus word expansion of a typical build-arg-heavy word.
//!
//! Each parse benchmark runs twice: with criterion's wall clock
//! (`dockerfile/...`) and with the benchmark thread's own CPU time
//! (`dockerfile_cpu/...`, from `/proc/thread-self/schedstat`), which stays
//! meaningful when other processes share the machine.

use std::path::Path;

use std::time::Duration;

use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

/// CPU time of the calling thread (Linux), in nanoseconds.
fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// A criterion measurement of the benchmark thread's CPU time.
struct CpuTime;

impl Measurement for CpuTime {
    type Intermediate = u64;
    type Value = Duration;

    fn start(&self) -> u64 {
        thread_cpu_ns()
    }
    fn end(&self, start: u64) -> Duration {
        Duration::from_nanos(thread_cpu_ns().saturating_sub(start))
    }
    fn add(&self, a: &Duration, b: &Duration) -> Duration {
        *a + *b
    }
    fn zero(&self) -> Duration {
        Duration::ZERO
    }
    fn to_f64(&self, v: &Duration) -> f64 {
        v.as_nanos() as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        static WALL: WallTime = WallTime;
        WALL.formatter()
    }
}

const TARGET_BYTES: usize = 1 << 20;

/// The conformance Dockerfiles that parse without errors, concatenated and
/// repeated to about 1 MB.
fn corpus() -> Vec<u8> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../crates/dockerfile/test_data/buildkit-parser/testfiles");
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .expect("conformance test files")
        .map(|e| e.expect("dir entry").path())
        .collect();
    names.sort();
    let mut one = Vec::new();
    for p in names {
        let text = std::fs::read(p.join("Dockerfile")).expect("Dockerfile");
        // Directives only count at the top of a file: drop them here.
        for line in text.split_inclusive(|b| *b == b'\n') {
            if !line.starts_with(b"#") {
                one.extend_from_slice(line);
            }
        }
        if !one.ends_with(b"\n") {
            one.push(b'\n');
        }
    }
    let mut all = Vec::with_capacity(TARGET_BYTES + one.len());
    while all.len() < TARGET_BYTES {
        all.extend_from_slice(&one);
    }
    all
}

fn parse_group<M: Measurement>(c: &mut Criterion<M>, name: &str) {
    let input = corpus();
    let parsed = kiln_dockerfile::parse(&input);
    assert!(!parsed.ast.nodes.is_empty());
    let mut group = c.benchmark_group(name);
    group.throughput(Throughput::Bytes(input.len() as u64));
    group.sample_size(20);
    group.bench_function("parse_1mb", |b| b.iter(|| kiln_dockerfile::parse(&input)));
    group.bench_function("parse_and_type_1mb", |b| {
        b.iter(|| kiln_dockerfile::instructions::parse_dockerfile(&input))
    });
    group.finish();
}

fn bench_parse(c: &mut Criterion) {
    parse_group(c, "dockerfile");
    let env = [
        ("VERSION", "1.2.3"),
        ("TARGETOS", "linux"),
        ("TARGETARCH", "arm64"),
    ];
    let word =
        "something-${VERSION}.${TARGETOS}-${TARGETARCH}${TARGETVARIANT:+-${TARGETVARIANT}}.tar.gz";
    c.bench_function("expand_word", |b| {
        b.iter(|| kiln_dockerfile::shell::process_word(word, &env[..]))
    });
}

fn bench_parse_cpu(c: &mut Criterion<CpuTime>) {
    parse_group(c, "dockerfile_cpu");
}

criterion_group!(benches, bench_parse);
criterion_group! {
    name = cpu;
    config = Criterion::default().with_measurement(CpuTime);
    targets = bench_parse_cpu
}
criterion_main!(benches, cpu);
