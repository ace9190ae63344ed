//! Parser throughput: BuildKit's conformance Dockerfiles concatenated and
//! repeated to about 1 MB, parsed to the raw tree (and, separately, typed),
//! plus word expansion of a typical build-arg-heavy word.

use std::path::Path;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

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

fn bench_parse(c: &mut Criterion) {
    let input = corpus();
    let parsed = kiln_dockerfile::parse(&input);
    assert!(!parsed.ast.nodes.is_empty());
    let mut group = c.benchmark_group("dockerfile");
    group.throughput(Throughput::Bytes(input.len() as u64));
    group.sample_size(20);
    group.bench_function("parse_1mb", |b| b.iter(|| kiln_dockerfile::parse(&input)));
    group.bench_function("parse_and_type_1mb", |b| {
        b.iter(|| kiln_dockerfile::instructions::parse_dockerfile(&input))
    });
    group.finish();

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

criterion_group!(benches, bench_parse);
criterion_main!(benches);
