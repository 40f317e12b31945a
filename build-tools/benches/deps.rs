//! `cargo cell deps` on a generated system of 500 cells: every view in every format, from a
//! snapshot already in memory, and the JSON round trip a live snapshot takes.
//!
//! Run with `cargo bench -p build-tools --bench deps`; the numbers are in BENCHMARKS.md.

use build_tools::inspect::model::{self, Index, Model};
use build_tools::inspect::synth::{generate, SynthOptions};
use build_tools::inspect::{render, view, Format, Options, Query};
use criterion::{criterion_group, criterion_main, Criterion};

fn deps(c: &mut Criterion) {
    let snapshot = Model::from(generate(&SynthOptions::default()));
    let json = serde_json::to_string(&snapshot.snapshot).expect("serializable");
    let queries = [
        ("tree", Query::Tree),
        ("invert", Query::Invert("cell_000".into())),
        ("why", Query::Why("cell_499".into(), "cell_000".into())),
        ("symbols", Query::Symbols("cell_250".into())),
        ("cycles", Query::Cycles),
        ("ls", Query::Ls),
    ];
    let formats = [
        ("text", Format::Text),
        ("json", Format::Json),
        ("dot", Format::Dot),
        ("html", Format::Html),
    ];
    let mut group = c.benchmark_group("deps-500-cells");
    group
        .sample_size(20)
        .warm_up_time(std::time::Duration::from_millis(500))
        .measurement_time(std::time::Duration::from_secs(2));
    for (qname, q) in &queries {
        for (fname, format) in formats {
            let options = Options {
                format,
                ..Options::default()
            };
            group.bench_function(format!("{qname}/{fname}"), |b| {
                b.iter(|| {
                    let index = Index::new(&snapshot);
                    let v = view(&index, q, &options).expect("view");
                    render(&index, &v, &options).expect("render")
                })
            });
        }
    }
    group.bench_function("parse-live-snapshot-json", |b| {
        b.iter(|| model::parse(&json).expect("parses"))
    });
    group.finish();
}

criterion_group!(benches, deps);
criterion_main!(benches);
