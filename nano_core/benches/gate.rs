//! The consistency model's costs (issue "swaps lose nothing"):
//!
//! - `call/handle (no swap)`: a call through a handle to `frame_alloc::free_count` while no swap
//!   happens — the gate adds nothing to this path; compare with `call`'s rows in BENCHMARKS.md.
//! - `transfer swap/under load`: `frame_alloc` swapped between its bitmap and buddy versions (the
//!   state moves each time, so the gate closes, the old version drains, the transfer runs) while
//!   one thread keeps allocating and freeing frames through it. Printed: over every swap, the
//!   longest and the median time a caller waited at the gate, and the drain's time and checks.

mod support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cell_abi::frame_alloc;
use crate_metadata::CellKind;
use criterion::{criterion_group, criterion_main, Criterion};
use loader::SwapOptions;
use nano_core::Kernel;

fn median(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or(0)
}

fn bench(c: &mut Criterion) {
    nano_core::logger::install(log::LevelFilter::Off);
    let mut kernel = Kernel::boot(support::cells_dir()).expect("boot");
    let mut group = c.benchmark_group("gate");
    group
        .sample_size(40)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    let free_count = kernel.bind(frame_alloc::FREE_COUNT).unwrap();
    let alloc = kernel.bind(frame_alloc::ALLOC_FRAME).unwrap();
    let free = kernel.bind(frame_alloc::FREE_FRAME).unwrap();
    group.bench_function("call/handle (no swap)", |b| {
        b.iter(|| std::hint::black_box((free_count.get())()))
    });

    let manifest = support::manifest();
    let objects = [CellKind::Upgrades, CellKind::Kernel]
        .map(|k| support::cells_dir().join(&manifest.get(k, "frame_alloc").unwrap().object));
    let stop = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(AtomicU64::new(0));
    let (s, n) = (stop.clone(), calls.clone());
    let caller = std::thread::spawn(move || {
        while !s.load(Ordering::Relaxed) {
            if let Some(frame) = (alloc.get())() {
                let _ = (free.get())(frame);
            }
            n.fetch_add(2, Ordering::Relaxed);
        }
    });
    let mut longest = Vec::new();
    let mut medians = Vec::new();
    let mut drains = Vec::new();
    let mut checks = Vec::new();
    let mut parked = 0;
    let mut i = 0usize;
    group.bench_function("transfer swap/under load", |b| {
        b.iter(|| {
            let report = kernel
                .swap_cell("frame_alloc", &objects[i % 2], &SwapOptions::default())
                .expect("swap");
            i += 1;
            if let Some(g) = report.gate {
                longest.push(g.longest_wait);
                medians.push(g.median_wait);
                drains.push(g.drain);
                checks.push(u64::from(g.checks));
                parked += g.parked;
            }
        })
    });
    stop.store(true, Ordering::Relaxed);
    caller.join().unwrap();
    group.finish();
    let us = |n: u64| n as f64 / 1e3;
    eprintln!(
        "\n{} transfer swaps while a thread called ({} calls): {} callers waited at the gate; \
         longest wait {:.1} µs (median over swaps of each swap's longest {:.1} µs); median wait \
         {:.1} µs; drain median {:.1} µs, max {:.1} µs; checks median {}",
        longest.len(),
        calls.load(Ordering::Relaxed),
        parked,
        us(longest.iter().copied().max().unwrap_or(0)),
        us(median(longest.clone())),
        us(median(medians)),
        us(median(drains.clone())),
        us(drains.iter().copied().max().unwrap_or(0)),
        median(checks)
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
