//! Load + link one cell vs `dlopen(RTLD_NOW)` + `dlclose` of the same crate built as a cdylib.
//!
//! The cell side loads the cell into a namespace (a child of `_kernel`, where its dependencies
//! live) of a booted system and unloads it again, so memory does not grow; `load` times the load
//! alone, `load+unload` both. The dlopen side opens the cell's cdylib (built at start, with `std`
//! dynamic and already loaded, see `support::cell_cdylib`) and closes it.

mod support;

use std::time::{Duration, Instant};

use crate_metadata::CellKind;
use criterion::{criterion_group, criterion_main, Criterion};
use loader::hosted::Hosted;
use loader::{CellSpec, System};

fn bench(c: &mut Criterion) {
    nano_core::logger::install(log::LevelFilter::Off);
    let mut system = System::new(Hosted::new().expect("hosted"), "nano_core");
    let kns = system.create_namespace("_kernel", None).expect("namespace");
    // The dependencies of sched and memfs.
    for dep in ["klog", "frame_alloc"] {
        let bytes = support::object(CellKind::Kernel, dep);
        system
            .load(kns, CellSpec::named(dep), &bytes)
            .expect("dependency loads");
    }
    let ns = system
        .create_namespace("bench", Some(kns))
        .expect("namespace");
    // The cdylibs bind to this libstd, as the cells bind to the base image; it stays loaded.
    let _std = support::dlopen(&support::libstd_so(), libc::RTLD_NOW | libc::RTLD_GLOBAL);

    let mut group = c.benchmark_group("load");
    group
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    for cell in ["sched", "memfs"] {
        let bytes = support::object(CellKind::Kernel, cell);
        let so = support::cell_cdylib(cell);
        let (relocs, so_size) = support::so_stats(&so);
        let id = system.load(ns, CellSpec::named(cell), &bytes).unwrap();
        let stats = system.registry().cell(id).unwrap().stats.clone();
        system.unload(id).unwrap();
        eprintln!(
            "{cell}: object {} bytes, {} relocations, {} GOT slots, {} stubs, {} mapped bytes; \
             cdylib {so_size} bytes, {relocs} dynamic relocations",
            bytes.len(),
            stats.relocations,
            stats.got_slots,
            stats.stubs,
            stats.mapped_bytes
        );

        group.bench_function(format!("{cell}/cell load"), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let t = Instant::now();
                    let id = system.load(ns, CellSpec::named(cell), &bytes).unwrap();
                    total += t.elapsed();
                    system.unload(id).unwrap();
                }
                total
            })
        });
        group.bench_function(format!("{cell}/cell load+unload"), |b| {
            b.iter(|| {
                let id = system.load(ns, CellSpec::named(cell), &bytes).unwrap();
                system.unload(id).unwrap();
            })
        });
        group.bench_function(format!("{cell}/dlopen"), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let t = Instant::now();
                    let h = support::dlopen(&so, libc::RTLD_NOW | libc::RTLD_LOCAL);
                    total += t.elapsed();
                    support::dlclose(h);
                }
                total
            })
        });
        group.bench_function(format!("{cell}/dlopen+dlclose"), |b| {
            b.iter(|| {
                let h = support::dlopen(&so, libc::RTLD_NOW | libc::RTLD_LOCAL);
                support::dlclose(h);
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
