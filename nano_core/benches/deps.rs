//! Dependency cells (issue "every crate a cell"):
//!
//! - `boot/whole closure`: `Kernel::boot` of every kernel and library cell with the dependency
//!   cells they need (the manifest read, the objects read from disk, loaded, linked, initialised);
//!   and, printed, each cell's own load time (its `LoadStats`), median over the boots.
//! - `dep/<crate>/cell load+unload` against `dep/<crate>/dlopen+dlclose`: the same object, loaded
//!   by the loader into a namespace where its own dependency cells are loaded, and linked by the
//!   system linker into a shared library (`cc -shared`) that `dlopen(RTLD_NOW)` loads next to
//!   shared libraries of its dependencies (opened once, `RTLD_GLOBAL`) and the toolchain's
//!   `libstd`. Same bytes, same relocations: what differs is the loader.
//! - `upgrade/kvstore heapless 0.9.3 <-> 0.9.4`: the dependency upgrade swap (kvstore, kvquery
//!   rebuilt, heapless moved) and back; each phase's median is printed.

mod support;

use std::time::{Duration, Instant};

use crate_metadata::{CellKind, ManifestEntry};
use criterion::{criterion_group, criterion_main, Criterion};
use loader::hosted::Hosted;
use loader::{CellSpec, SwapOptions, System};
use nano_core::{BootOptions, Kernel};

/// The dependency cells measured: the largest ones, and small ones of the kernel cell.
const DEPS: &[&str] = &[
    "regex_syntax",
    "regex_automata",
    "aho_corasick",
    "regex",
    "crc32fast",
    "hashbrown",
    "heapless",
];

fn median(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or(0)
}

fn bench(c: &mut Criterion) {
    nano_core::logger::install(log::LevelFilter::Off);
    let manifest = support::manifest();
    let cells_dir = support::cells_dir();
    let mut group = c.benchmark_group("deps");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));

    // Boot of the whole closure, and each cell's own load time. The bench binary links
    // criterion, which links `regex`, `regex-syntax`, `aho-corasick` and `memchr`: loading the
    // dependency cells the image provides too boots the same cells as `nano_core` itself does.
    let boot_options = BootOptions {
        load_provided_dependencies: true,
        ..BootOptions::default()
    };
    let mut per_cell: Vec<(String, String, Vec<u64>)> = Vec::new();
    group.bench_function("boot/whole closure", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let t = Instant::now();
                let kernel = Kernel::boot_with(cells_dir, &boot_options).expect("boot");
                total += t.elapsed();
                for booted in kernel.booted() {
                    let Some(cell) = kernel.system().registry().cell(booted.id) else {
                        continue;
                    };
                    let nanos = cell.stats.load_nanos;
                    match per_cell.iter_mut().find(|(n, _, _)| *n == cell.name) {
                        Some((_, _, v)) => v.push(nanos),
                        None => per_cell.push((
                            cell.name.clone(),
                            format!("{:?}", booted.entry.kind).to_lowercase(),
                            vec![nanos],
                        )),
                    }
                }
            }
            total
        })
    });
    eprintln!("\nper cell, median load time over the boots above (LoadStats::load_nanos):");
    let mut sum = 0;
    for (name, kind, v) in &per_cell {
        let m = median(v.clone());
        sum += m;
        eprintln!("  {name:<16} {kind:<7} {:>9.1} µs", m as f64 / 1e3);
    }
    eprintln!("  {:<24} {:>9.1} µs", "sum of the loads", sum as f64 / 1e3);
    // What a boot spends outside the loader: reading each object and checking its SHA-256.
    let entries: Vec<ManifestEntry> = Kernel::boot_with(cells_dir, &boot_options)
        .expect("boot")
        .booted()
        .iter()
        .map(|b| b.entry.clone())
        .collect();
    let mut reads = Vec::new();
    let mut hashes = Vec::new();
    for _ in 0..20 {
        let (mut read, mut hash) = (Duration::ZERO, Duration::ZERO);
        for entry in &entries {
            let t = Instant::now();
            let bytes = std::fs::read(cells_dir.join(&entry.object)).expect("object");
            read += t.elapsed();
            let t = Instant::now();
            std::hint::black_box(loader::sha256(&bytes));
            hash += t.elapsed();
        }
        reads.push(read.as_nanos() as u64);
        hashes.push(hash.as_nanos() as u64);
    }
    let object_bytes: u64 = entries
        .iter()
        .filter_map(|e| std::fs::metadata(cells_dir.join(&e.object)).ok())
        .map(|m| m.len())
        .sum();
    eprintln!(
        "  outside the loader, median of 20: reading the {} objects ({:.1} MiB) {:.1} µs, their SHA-256 {:.1} µs",
        entries.len(),
        object_bytes as f64 / (1024.0 * 1024.0),
        median(reads) as f64 / 1e3,
        median(hashes) as f64 / 1e3
    );

    // Each dependency cell against dlopen of the same object as a shared library.
    let _std = support::dlopen(&support::libstd_so(), libc::RTLD_NOW | libc::RTLD_GLOBAL);
    let mut system = System::new(Hosted::new().expect("hosted"), "nano_core");
    let ns = system.create_namespace("_kernel", None).unwrap();
    let platform_defines = |s: &str| {
        let name = std::ffi::CString::new(s).unwrap();
        // SAFETY: a valid C string; RTLD_DEFAULT searches the process's global scope.
        !unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) }.is_null()
    };
    for name in DEPS {
        let entry = manifest
            .cells
            .iter()
            .find(|e| e.kind == CellKind::Deps && e.name == *name)
            .unwrap_or_else(|| panic!("no dependency cell {name}"));
        // Its own dependencies: loaded as cells for the loader, opened as libraries for ld.so.
        for dep in manifest.dependency_closure(entry).unwrap() {
            if dep.provided_by(&mut |s| platform_defines(s))
                || system.cell_in(ns, &dep.name).is_some()
            {
                continue;
            }
            let bytes = std::fs::read(cells_dir.join(&dep.object)).unwrap();
            system.load(ns, CellSpec::named(&dep.name), &bytes).unwrap();
            support::dlopen_global(&support::shared_library(dep));
        }
        let bytes = std::fs::read(cells_dir.join(&entry.object)).unwrap();
        let so = support::shared_library(entry);
        let child = system
            .create_namespace(&format!("bench-{name}"), Some(ns))
            .unwrap();
        let (relocs, so_size) = support::so_stats(&so);
        let id = system.load(child, CellSpec::named(name), &bytes).unwrap();
        let stats = system.registry().cell(id).unwrap().stats.clone();
        system.unload(id).unwrap();
        eprintln!(
            "{name}: object {} bytes, {} relocations, {} mapped bytes; shared library {so_size} \
             bytes, {relocs} dynamic relocations",
            bytes.len(),
            stats.relocations,
            stats.mapped_bytes
        );
        group.bench_function(format!("dep/{name}/cell load+unload"), |b| {
            b.iter(|| {
                let id = system.load(child, CellSpec::named(name), &bytes).unwrap();
                system.unload(id).unwrap();
            })
        });
        group.bench_function(format!("dep/{name}/dlopen+dlclose"), |b| {
            b.iter(|| {
                let h = support::dlopen(&so, libc::RTLD_NOW | libc::RTLD_LOCAL);
                support::dlclose(h);
            })
        });
    }

    // The dependency upgrade swap, back and forth.
    let mut kernel = Kernel::boot(cells_dir).expect("boot");
    let upgrade = manifest
        .get(CellKind::Upgrades, "kvstore")
        .expect("cells/upgrades/kvstore");
    let forward = cells_dir.join(&upgrade.object);
    let back = cells_dir.join(&manifest.get(CellKind::Kernel, "kvstore").unwrap().object);
    let mut phases: Vec<loader::PhaseTimes> = Vec::new();
    let mut there = false;
    group.bench_function("upgrade/kvstore heapless 0.9.3 <-> 0.9.4", |b| {
        b.iter(|| {
            let target = if there { &back } else { &forward };
            let report = kernel
                .swap_cell("kvstore", target, &SwapOptions::default())
                .expect("swap");
            there = !there;
            phases.push(report.times);
        })
    });
    let first = phases.first().copied().unwrap_or_default();
    let rest = |f: fn(&loader::PhaseTimes) -> u64| {
        median(phases.iter().skip(2).map(f).collect()) as f64 / 1e3
    };
    eprintln!(
        "\nkvstore dependency upgrade: first swap (loads kvstore, kvquery, heapless 0.9.4): \
         stage {:.1} µs, verify {:.1}, rebind {:.1}, commit {:.1}, retire {:.1}, total {:.1}",
        first.stage as f64 / 1e3,
        first.verify as f64 / 1e3,
        first.rebind as f64 / 1e3,
        first.commit as f64 / 1e3,
        first.retire as f64 / 1e3,
        first.total as f64 / 1e3
    );
    eprintln!(
        "later swaps (retired versions reused), median of {}: stage {:.1} µs, verify {:.1}, \
         rebind {:.1}, commit {:.1}, retire {:.1}, total {:.1}",
        phases.len().saturating_sub(2),
        rest(|t| t.stage),
        rest(|t| t.verify),
        rest(|t| t.rebind),
        rest(|t| t.commit),
        rest(|t| t.retire),
        rest(|t| t.total)
    );
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
