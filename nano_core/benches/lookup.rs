//! Symbol lookup in a namespace of 100,000 symbols, hit and miss (`Namespaces::lookup`), and a
//! hit found in the parent of an empty child namespace.

use std::hint::black_box;
use std::time::Duration;

use crate_metadata::{CellId, SymbolId};
use criterion::{criterion_group, criterion_main, Criterion};
use namespace::{Export, Namespaces, SymbolRef};

const SYMBOLS: usize = 100_000;

/// A legacy-mangled name of realistic length (~50 bytes), distinct per `i`.
fn name(i: usize) -> String {
    format!(
        "_ZN9synthetic7module{}8function{i}17h{:016x}E",
        i % 97,
        i * 2654435761
    )
}

fn bench(c: &mut Criterion) {
    let mut namespaces = Namespaces::new();
    let ns = namespaces.create("big", None).unwrap();
    let child = namespaces.create("child", Some(ns)).unwrap();
    let exports: Vec<Export> = (0..SYMBOLS)
        .map(|i| Export {
            name: name(i).into(),
            target: SymbolRef {
                cell: CellId(2),
                symbol: SymbolId(i as u32),
                addr: 0x1000 + i as u64 * 16,
                weak: false,
            },
        })
        .collect();
    namespaces.add_cell(ns, CellId(2), &exports).unwrap();
    assert_eq!(namespaces.get(ns).unwrap().symbol_count(), SYMBOLS);
    // Probe names: hits spread over the table; misses of the same shape and length.
    let hits: Vec<String> = (0..1024).map(|i| name(i * 97 % SYMBOLS)).collect();
    let misses: Vec<String> = (0..1024)
        .map(|i| name(SYMBOLS + i).replace("synthetic", "synthetix"))
        .collect();
    assert!(misses.iter().all(|m| namespaces.lookup(ns, m).is_none()));

    let mut group = c.benchmark_group("lookup_100k");
    group
        .sample_size(50)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    let mut i = 0usize;
    group.bench_function("hit", |b| {
        b.iter(|| {
            i = (i + 1) & 1023;
            black_box(namespaces.lookup(ns, black_box(&hits[i])))
        })
    });
    group.bench_function("miss", |b| {
        b.iter(|| {
            i = (i + 1) & 1023;
            black_box(namespaces.lookup(ns, black_box(&misses[i])))
        })
    });
    group.bench_function("hit in parent", |b| {
        b.iter(|| {
            i = (i + 1) & 1023;
            black_box(namespaces.lookup(child, black_box(&hits[i])))
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
