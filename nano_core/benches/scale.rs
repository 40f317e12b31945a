//! Loading N synthetic cells: how load time and metadata grow with the number of cells.
//!
//! For each N (10, 30, 100, 300 by default) the system of `build_tools::synth_cells` (N `no_std`
//! crates with a seeded random DAG, statics, heap use and trait objects across cells) is generated
//! and built once under `target/bench-gen/scale_<N>_<seed>/` (a second run reuses it: nothing is
//! rewritten and cargo rebuilds nothing). Each iteration creates a fresh namespace, loads all N
//! cells into it in dependency order (timed: what criterion reports) and tears the namespace down
//! again (untimed). Every criterion sample starts from a fresh `System`. Unloading is timed
//! separately, in 10 load/teardown rounds in a fresh system, and a history probe shows whether one
//! load or teardown slows down after 2,000 cycles in one system (a cell id is never reused; the
//! registry reuses the slots of removed edges and keeps nothing of a removed cell).
//!
//! After the runs it prints, per N, the objects' size, the loader's edges (slots), the metadata
//! the registry keeps for the cells (counted as `--bench memory` counts it) and the mapped bytes,
//! as a markdown table and CSV, and writes an SVG plot of load time and memory against N:
//! `target/bench-gen/scale.svg` always, and `BENCHMARKS-scale.svg` at the workspace root when the
//! default set of N was measured (so a partial run does not replace the plot BENCHMARKS.md shows).
//!
//! Environment: `SCALE_CELLS=10,30` measures other sizes, `SCALE_SEED=7` another DAG (default 1),
//! `SCALE_UNWIND=1` unwinds once between each load and teardown of the unload rounds (libgcc then
//! keeps the cells' unwind tables in its sorted list, which a deregistration searches).
//! Run with `cargo bench -p nano_core --bench scale`.

mod support;

use std::fmt::Write as _;
use std::mem::size_of;
use std::time::{Duration, Instant};

use build_tools::synth_cells::{generate_and_build, SynthOptions, SynthSystem};
use crate_metadata::{CellId, Edge, EdgeId, Section, Symbol};
use criterion::{criterion_group, criterion_main, Criterion, SamplingMode};
use loader::hosted::Hosted;
use loader::{CellSpec, NewVersion, SwapOptions, SwapRequest, System};

const DEFAULT_CELLS: [usize; 4] = [10, 30, 100, 300];
const DEFAULT_SEED: u64 = 1;
const SAMPLES: usize = 10;
/// Timed load/unload rounds per N for the unload time.
const UNLOAD_ROUNDS: usize = 10;
/// Rounds of the one-cell operations (`OneCell`).
const ONE_CELL_ROUNDS: usize = 50;
/// The cell the one-cell swap replaces: an early one, which later cells depend on.
const SWAP_CELL: usize = 5;
/// Load/unload cycles of the history probe.
const HISTORY_CYCLES: usize = 2000;
/// The history probe runs when the smallest N is at most this.
const HISTORY_MAX_CELLS: usize = 30;

/// Everything measured for one N.
struct Row {
    n: usize,
    object_bytes: usize,
    crate_deps: usize,
    /// All edges (slots) of the N cells.
    edges: usize,
    /// Those whose provider is another synthetic cell (the rest bind to the base image).
    cross_edges: usize,
    sections: usize,
    section_bytes: usize,
    symbols: usize,
    symbol_bytes: usize,
    mapped_bytes: u64,
    /// Per-iteration load times of the measured samples, in nanoseconds.
    load: Vec<f64>,
    /// The loader's own time of each cell's load (`LoadStats::load_nanos`), in load order.
    cell_nanos: Vec<f64>,
    /// Unload (namespace teardown) times of `UNLOAD_ROUNDS` rounds, in nanoseconds.
    unload: Vec<f64>,
    /// With all N cells loaded: one unload and one load of the last cell (nothing depends on
    /// it), and one staged swap of cell `SWAP_CELL` to a new copy of its object, per round, in
    /// nanoseconds.
    one: OneCell,
}

/// Operations on one cell of a system that holds N: what they cost must not grow with N.
#[derive(Default)]
struct OneCell {
    unload: Vec<f64>,
    load: Vec<f64>,
    swap: Vec<f64>,
    /// Slots the swap rewrote (the swapped cell's dependents' references to it).
    swap_slots: usize,
}

/// Bytes per edge as the registry stores it: the `Option<Edge>` in the arena and an `EdgeId` in
/// each of the two cells' lists (vector over-allocation not counted).
const EDGE_BYTES: usize = size_of::<Option<Edge>>() + 2 * size_of::<EdgeId>();

impl Row {
    fn edge_bytes(&self) -> usize {
        self.edges * EDGE_BYTES
    }

    fn metadata_bytes(&self) -> usize {
        self.edge_bytes() + self.section_bytes + self.symbol_bytes
    }

    fn load_ms(&self) -> f64 {
        median(&self.load) / 1e6
    }

    fn unload_ms(&self) -> f64 {
        median(&self.unload) / 1e6
    }
}

fn median(v: &[f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

fn cell_counts() -> Vec<usize> {
    match std::env::var("SCALE_CELLS") {
        Ok(list) => list
            .split(',')
            .map(|n| {
                n.trim()
                    .parse()
                    .expect("SCALE_CELLS: a comma-separated list of numbers")
            })
            .collect(),
        Err(_) => DEFAULT_CELLS.to_vec(),
    }
}

fn seed() -> u64 {
    std::env::var("SCALE_SEED")
        .map(|s| s.parse().expect("SCALE_SEED: a number"))
        .unwrap_or(DEFAULT_SEED)
}

fn build(n: usize, seed: u64) -> SynthSystem {
    let dir = support::gen_dir().join(format!("scale_{n}_{seed}"));
    let t = Instant::now();
    let system = generate_and_build(
        &SynthOptions::new(n, seed),
        &support::workspace_root(),
        &dir,
        true,
    )
    .unwrap_or_else(|e| panic!("building {} failed: {e:#}", dir.display()));
    eprintln!(
        "scale: {n} cells (seed {seed}, {} crate dependencies) built or found fresh in {:.1} s",
        system.plan.crate_edges(),
        t.elapsed().as_secs_f64()
    );
    system
}

/// Loads every cell of `synth` into a new namespace `scale`; returns their ids.
fn load_all(system: &mut System<Hosted>, synth: &SynthSystem) -> Vec<CellId> {
    let ns = system.create_namespace("scale", None).expect("namespace");
    synth
        .cells
        .iter()
        .map(|c| {
            system
                .load(ns, CellSpec::named(&c.name), &c.object)
                .unwrap_or_else(|e| panic!("{} does not load: {e}", c.name))
        })
        .collect()
}

fn tear_down(system: &mut System<Hosted>, n: usize) {
    let ns = system
        .namespaces()
        .iter()
        .find(|ns| ns.name == "scale")
        .map(|ns| ns.id)
        .expect("the namespace exists");
    assert_eq!(system.remove_namespace(ns), Ok(n));
}

/// Counts the metadata of the loaded cells `ids`.
fn measure_memory(system: &System<Hosted>, synth: &SynthSystem, ids: &[CellId]) -> Row {
    let registry = system.registry();
    let mut row = Row {
        n: ids.len(),
        object_bytes: synth.cells.iter().map(|c| c.object.len()).sum(),
        crate_deps: synth.plan.crate_edges(),
        edges: 0,
        cross_edges: 0,
        sections: 0,
        section_bytes: 0,
        symbols: 0,
        symbol_bytes: 0,
        mapped_bytes: 0,
        load: Vec::new(),
        cell_nanos: Vec::new(),
        unload: Vec::new(),
        one: OneCell::default(),
    };
    for id in ids {
        let cell = registry.cell(*id).expect("loaded");
        row.sections += cell.sections.len();
        row.section_bytes += cell.sections.len() * size_of::<Section>()
            + cell.sections.iter().map(|s| s.name.len()).sum::<usize>();
        row.symbols += cell.symbols.len();
        row.symbol_bytes += cell.symbols.len() * size_of::<Symbol>()
            + cell.symbols.iter().map(|s| s.name.len()).sum::<usize>();
        row.mapped_bytes += cell.stats.mapped_bytes;
        row.cell_nanos.push(cell.stats.load_nanos as f64);
        for e in &cell.uses {
            let edge = registry.edge(*e).expect("a live edge");
            row.edges += 1;
            if ids.contains(&edge.provider) {
                row.cross_edges += 1;
            }
        }
    }
    row
}

/// With all of `synth` loaded in a fresh system: `rounds` times (after one untimed round) an
/// unload and a load of the last cell, and a staged swap of cell `SWAP_CELL` to a new copy of its
/// object (the old version reclaimed, untimed).
fn one_cell(synth: &SynthSystem, rounds: usize) -> OneCell {
    let mut system = fresh_system();
    let ids = load_all(&mut system, synth);
    let ns = system.registry().cell(ids[0]).and_then(|c| c.namespace);
    let ns = ns.expect("the cells have a namespace");
    let last = synth.cells.last().expect("cells");
    let swapped = &synth.cells[SWAP_CELL.min(synth.cells.len() - 1)];
    let mut out = OneCell::default();
    for round in 0..=rounds {
        let id = system.cell_in(ns, &last.name).expect("loaded");
        let t = Instant::now();
        system.unload(id).expect("nothing depends on the last cell");
        let unload = t.elapsed();
        let t = Instant::now();
        system
            .load(ns, CellSpec::named(&last.name), &last.object)
            .expect("the last cell loads again");
        let load = t.elapsed();
        let old = system.cell_in(ns, &swapped.name).expect("loaded");
        let t = Instant::now();
        let report = system
            .swap(
                &[SwapRequest {
                    old,
                    new: NewVersion::Object {
                        spec: CellSpec::named(&swapped.name),
                        bytes: &swapped.object,
                    },
                }],
                &SwapOptions::default(),
            )
            .unwrap_or_else(|e| panic!("{} swaps: {e}", swapped.name));
        let swap = t.elapsed();
        // SAFETY: the synthetic cells' statics hold no pointers into their code or constants,
        // and no thread runs their code.
        unsafe { system.reclaim_unchecked(old) }.expect("the old version is freed");
        out.swap_slots = report.slots_rewritten;
        if round > 0 {
            out.unload.push(unload.as_nanos() as f64);
            out.load.push(load.as_nanos() as f64);
            out.swap.push(swap.as_nanos() as f64);
        }
    }
    out
}

/// A system with no cells, on a fresh platform.
fn fresh_system() -> System<Hosted> {
    System::new(Hosted::new().expect("hosted"), "nano_core")
}

/// Whether `SCALE_UNWIND=1` asks for an unwind between each load and teardown of `cycles`.
fn unwind_between() -> bool {
    std::env::var("SCALE_UNWIND").is_ok_and(|v| v == "1")
}

/// Unwinds through this frame once (a caught `resume_unwind`, which runs no panic hook): libgcc
/// then looks up FDEs, which sorts every table registered since its last lookup into its list
/// of seen tables. Returns how long that took.
fn unwind_once() -> Duration {
    let t = Instant::now();
    let caught = std::panic::catch_unwind(|| std::panic::resume_unwind(Box::new(0u8)));
    assert!(caught.is_err(), "the unwind was caught");
    t.elapsed()
}

/// Load and tear down `synth` `rounds` times in one fresh system, after one untimed round; the
/// times of each round, in nanoseconds. With `SCALE_UNWIND=1`, an unwind between each load and
/// its teardown (untimed; its median time is printed).
fn cycles(synth: &SynthSystem, rounds: usize) -> (Vec<f64>, Vec<f64>) {
    let mut system = fresh_system();
    let n = synth.cells.len();
    let (mut load, mut unload, mut unwinds) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..=rounds {
        let t = Instant::now();
        load_all(&mut system, synth);
        let l = t.elapsed();
        if unwind_between() {
            unwinds.push(unwind_once().as_nanos() as f64);
        }
        let t = Instant::now();
        tear_down(&mut system, n);
        let u = t.elapsed();
        if round > 0 {
            load.push(l.as_nanos() as f64);
            unload.push(u.as_nanos() as f64);
        }
    }
    if !unwinds.is_empty() {
        eprintln!(
            "scale: {n} cells: the first unwind after loading them took {:.3} ms (median)",
            median(&unwinds) / 1e6
        );
    }
    (load, unload)
}

fn bench(c: &mut Criterion) {
    nano_core::logger::install(log::LevelFilter::Off);
    let seed = seed();
    let counts = cell_counts();
    // `cargo bench` passes `--bench`; under `cargo test --benches` criterion runs every routine
    // once, and the rounds, the history probe and the plot are skipped.
    let measuring = std::env::args().any(|a| a == "--bench");
    let unload_rounds = if measuring { UNLOAD_ROUNDS } else { 1 };
    let t = Instant::now();
    drop(fresh_system());
    eprintln!(
        "scale: a fresh System (reads the executable's symbols) takes {:.1} ms",
        t.elapsed().as_secs_f64() * 1e3
    );
    let mut rows = Vec::new();
    for &n in &counts {
        let synth = build(n, seed);
        let mut system = fresh_system();
        load_all(&mut system, &synth);
        tear_down(&mut system, n);
        // The second load of the same cells (the base image's symbols are resolved by now).
        let t = Instant::now();
        let ids = load_all(&mut system, &synth);
        let wall = t.elapsed();
        let mut row = measure_memory(&system, &synth, &ids);
        eprintln!(
            "scale: {n} cells: one load {:.3} ms, of which inside the loader's per-cell timers \
             {:.3} ms",
            wall.as_secs_f64() * 1e3,
            row.cell_nanos.iter().sum::<f64>() / 1e6
        );
        tear_down(&mut system, n);

        // Unloading, timed per round in a fresh system, so that the unload time cannot depend on
        // how many iterations criterion chose (`history_probe` shows what many cycles in one
        // system do).
        let (loads, unloads) = cycles(&synth, unload_rounds);
        row.unload = unloads;
        row.one = one_cell(&synth, if measuring { ONE_CELL_ROUNDS } else { 1 });
        eprintln!(
            "scale: {n} cells, {unload_rounds} rounds in a fresh system: load {:.3} ms, \
             unload {:.3} ms (medians)",
            median(&loads) / 1e6,
            row.unload_ms()
        );

        // Loading, by criterion. Every sample starts from a fresh system (untimed), for the same
        // reason; `samples` gets each sample's time per iteration (warm-up calls come first).
        let mut samples: Vec<f64> = Vec::new();
        let mut group = c.benchmark_group("scale");
        group
            .sample_size(SAMPLES)
            .sampling_mode(SamplingMode::Flat)
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(if n >= 100 { 8 } else { 3 }));
        group.bench_function(format!("load/{n}"), |b| {
            b.iter_custom(|iters| {
                system = fresh_system();
                let mut load = Duration::ZERO;
                for _ in 0..iters {
                    let t = Instant::now();
                    load_all(&mut system, &synth);
                    load += t.elapsed();
                    tear_down(&mut system, n);
                }
                samples.push(load.as_nanos() as f64 / iters as f64);
                load
            })
        });
        group.finish();
        row.load = samples.split_off(samples.len().saturating_sub(SAMPLES));
        rows.push(row);
    }
    // On the smallest system only (2,000 cycles of 300 cells would take a minute).
    let smallest = counts.iter().min().filter(|n| **n <= HISTORY_MAX_CELLS);
    if let (Some(&n), true) = (smallest, measuring) {
        history_probe(&build(n, seed));
    }

    print_tables(&rows);
    if !measuring || rows.iter().any(|r| r.load.is_empty()) {
        return;
    }
    let svg = svg(&rows, seed);
    let scratch = support::gen_dir().join("scale.svg");
    std::fs::write(&scratch, &svg).expect("write the plot");
    eprintln!("scale: wrote {}", scratch.display());
    if counts == DEFAULT_CELLS && seed == DEFAULT_SEED {
        let path = support::workspace_root().join("BENCHMARKS-scale.svg");
        std::fs::write(&path, &svg).expect("write the plot");
        eprintln!("scale: wrote {}", path.display());
    }
}

/// How the time of one load and one teardown changes over many load/unload cycles of the same
/// cells in one system.
fn history_probe(synth: &SynthSystem) {
    let (load, unload) = cycles(synth, HISTORY_CYCLES);
    let first = |v: &[f64]| median(&v[..10]) / 1e6;
    let last = |v: &[f64]| median(&v[v.len() - 10..]) / 1e6;
    println!(
        "\nHistory: {} cells loaded and torn down {HISTORY_CYCLES} times in one system: \
         load {:.3} ms -> {:.3} ms, unload {:.3} ms -> {:.3} ms (median of the first 10 \
         cycles -> of the last 10)",
        synth.cells.len(),
        first(&load),
        last(&load),
        first(&unload),
        last(&unload)
    );
}

fn print_tables(rows: &[Row]) {
    let mut md = String::from(
        "| cells | objects | crate deps | edges (to cells) | load | per cell | unload | \
         metadata | per edge | per section | symbols | mapped |\n\
         |---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    let mut csv = String::from(
        "cells,object_bytes,crate_deps,edges,cross_edges,sections,symbols,load_ms,unload_ms,\
         edge_bytes,section_bytes,symbol_bytes,metadata_bytes,mapped_bytes\n",
    );
    let mut positions = String::from(
        "Loader's own time per cell (LoadStats::load_nanos) by position in the load order:\n",
    );
    for r in rows {
        let _ = writeln!(
            md,
            "| {} | {:.0} KiB | {} | {} ({}) | {:.2} ms | {:.1} µs | {:.2} ms | {:.0} KiB | {} B | \
             {:.0} B | {:.0} KiB | {:.0} KiB |",
            r.n,
            r.object_bytes as f64 / 1024.0,
            r.crate_deps,
            r.edges,
            r.cross_edges,
            r.load_ms(),
            r.load_ms() * 1000.0 / r.n as f64,
            r.unload_ms(),
            r.metadata_bytes() as f64 / 1024.0,
            EDGE_BYTES,
            r.section_bytes as f64 / r.sections.max(1) as f64,
            r.symbol_bytes as f64 / 1024.0,
            r.mapped_bytes as f64 / 1024.0,
        );
        let tenth = (r.n / 10).max(1);
        let _ = writeln!(
            positions,
            "{} cells: {:.1} µs per cell for the first {tenth} loaded, {:.1} µs for the last {tenth}",
            r.n,
            mean(&r.cell_nanos[..tenth]) / 1e3,
            mean(&r.cell_nanos[r.n - tenth..]) / 1e3,
        );
        let _ = writeln!(
            csv,
            "{},{},{},{},{},{},{},{:.4},{:.4},{},{},{},{},{}",
            r.n,
            r.object_bytes,
            r.crate_deps,
            r.edges,
            r.cross_edges,
            r.sections,
            r.symbols,
            r.load_ms(),
            r.unload_ms(),
            r.edge_bytes(),
            r.section_bytes,
            r.symbol_bytes,
            r.metadata_bytes(),
            r.mapped_bytes
        );
    }
    let mut one = String::from(
        "| cells | unload the last cell | load it again | swap of scell_005 (staged) | slots \
         rewritten |\n|---:|---:|---:|---:|---:|\n",
    );
    for r in rows {
        let _ = writeln!(
            one,
            "| {} | {:.1} µs | {:.1} µs | {:.1} µs | {} |",
            r.n,
            median(&r.one.unload) / 1e3,
            median(&r.one.load) / 1e3,
            median(&r.one.swap) / 1e3,
            r.one.swap_slots,
        );
    }
    println!("\nOne cell in a system of N (medians of {ONE_CELL_ROUNDS} rounds):\n\n{one}");
    println!(
        "\nLoading N synthetic cells (load: median of criterion's {} samples; unload: median \
         of {} rounds):\n\n{md}\n{csv}\n{positions}",
        rows.first().map_or(0, |r| r.load.len()),
        rows.first().map_or(0, |r| r.unload.len()),
    );
}

// ---- the plot ----

/// A chart panel: its position on the page and its data ranges.
struct Panel {
    x: f64,
    y: f64,
    w: f64,
    h: f64,
    x_max: f64,
    y_max: f64,
}

impl Panel {
    fn px(&self, v: f64) -> f64 {
        self.x + v / self.x_max * self.w
    }

    fn py(&self, v: f64) -> f64 {
        self.y + self.h - v / self.y_max * self.h
    }
}

/// Tick step: 1, 2 or 5 times a power of ten, giving about five ticks up to `max`.
fn tick_step(max: f64) -> f64 {
    let raw = max / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    let norm = raw / mag;
    let nice = if norm <= 1.0 {
        1.0
    } else if norm <= 2.0 {
        2.0
    } else if norm <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * mag
}

/// A tick label without trailing zeros.
fn label(v: f64) -> String {
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// One series: (label, colour, dashed, points).
type Series<'a> = (&'a str, &'a str, bool, Vec<(f64, f64)>);

fn panel(
    out: &mut String,
    p: &Panel,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
) {
    let x_step = tick_step(p.x_max);
    let y_step = tick_step(p.y_max);
    let _ = writeln!(
        out,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="15" font-weight="bold">{title}</text>"#,
        p.x + p.w / 2.0,
        p.y - 14.0
    );
    let mut v = 0.0;
    while v <= p.y_max + 1e-9 {
        let y = p.py(v);
        let _ = writeln!(
            out,
            r##"<line x1="{:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end" font-size="11">{}</text>"##,
            p.x,
            p.x + p.w,
            p.x - 6.0,
            y + 4.0,
            label(v)
        );
        v += y_step;
    }
    let mut v = 0.0;
    while v <= p.x_max + 1e-9 {
        let x = p.px(v);
        let _ = writeln!(
            out,
            r##"<line x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{:.1}" stroke="#ddd"/><text x="{x:.1}" y="{:.1}" text-anchor="middle" font-size="11">{}</text>"##,
            p.y,
            p.y + p.h,
            p.y + p.h + 16.0,
            label(v)
        );
        v += x_step;
    }
    let _ = writeln!(
        out,
        r#"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="none" stroke="black"/>"#,
        p.x, p.y, p.w, p.h
    );
    let _ = writeln!(
        out,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="12">{x_label}</text>"#,
        p.x + p.w / 2.0,
        p.y + p.h + 36.0
    );
    let _ = writeln!(
        out,
        r#"<text transform="translate({:.1},{:.1}) rotate(-90)" text-anchor="middle" font-size="12">{y_label}</text>"#,
        p.x - 46.0,
        p.y + p.h / 2.0
    );
    for (i, (name, colour, dashed, points)) in series.iter().enumerate() {
        let path: Vec<String> = points
            .iter()
            .map(|(x, y)| format!("{:.1},{:.1}", p.px(*x), p.py(*y)))
            .collect();
        let dash = if *dashed {
            r#" stroke-dasharray="6,4""#
        } else {
            ""
        };
        let _ = writeln!(
            out,
            r#"<polyline points="{}" fill="none" stroke="{colour}" stroke-width="2"{dash}/>"#,
            path.join(" ")
        );
        if !dashed {
            for (x, y) in points {
                let _ = writeln!(
                    out,
                    r#"<circle cx="{:.1}" cy="{:.1}" r="3.5" fill="{colour}"><title>{} cells: {:.3}</title></circle>"#,
                    p.px(*x),
                    p.py(*y),
                    x,
                    y
                );
            }
        }
        let ly = p.y + 16.0 + 18.0 * i as f64;
        let _ = writeln!(
            out,
            r#"<line x1="{:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{colour}" stroke-width="2"{dash}/><text x="{:.1}" y="{:.1}" font-size="11">{name}</text>"#,
            p.x + 12.0,
            p.x + 36.0,
            p.x + 42.0,
            ly + 4.0
        );
    }
}

/// The plot: load and unload time against N (with a line proportional to N through the
/// smallest N, to show the growth), and the metadata and mapped memory against N.
fn svg(rows: &[Row], seed: u64) -> String {
    let (w, h) = (960.0, 420.0);
    let x_max = rows.iter().map(|r| r.n).max().unwrap_or(1) as f64;
    let nice_max = |m: f64| (m / tick_step(m)).ceil() * tick_step(m);
    let load: Vec<(f64, f64)> = rows.iter().map(|r| (r.n as f64, r.load_ms())).collect();
    let unload: Vec<(f64, f64)> = rows.iter().map(|r| (r.n as f64, r.unload_ms())).collect();
    let first = &rows[0];
    let slope = first.load_ms() / first.n as f64;
    let load_max = load.iter().map(|p| p.1).fold(0.0, f64::max);
    let t_max = unload.iter().map(|p| p.1).fold(load_max, f64::max);
    let t_axis = nice_max(t_max.max((slope * x_max).min(2.0 * load_max)));
    // Clipped to the panel.
    let linear_end = x_max.min(t_axis / slope);
    let linear = vec![(0.0, 0.0), (linear_end, slope * linear_end)];
    let kib = |b: f64| b / 1024.0;
    let meta: Vec<(f64, f64)> = rows
        .iter()
        .map(|r| (r.n as f64, kib(r.metadata_bytes() as f64)))
        .collect();
    let mapped: Vec<(f64, f64)> = rows
        .iter()
        .map(|r| (r.n as f64, kib(r.mapped_bytes as f64)))
        .collect();
    let objects: Vec<(f64, f64)> = rows
        .iter()
        .map(|r| (r.n as f64, kib(r.object_bytes as f64)))
        .collect();
    let m_max = meta
        .iter()
        .chain(&mapped)
        .chain(&objects)
        .map(|p| p.1)
        .fold(0.0, f64::max);

    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif">"#
    );
    let _ = writeln!(
        out,
        r#"<rect width="{w}" height="{h}" fill="white"/><text x="{:.1}" y="22" text-anchor="middle" font-size="13">cargo bench -p nano_core --bench scale: build_tools::synth_cells, seed {seed}; load: median of {SAMPLES} criterion samples, unload: of {UNLOAD_ROUNDS} rounds</text>"#,
        w / 2.0
    );
    let time = Panel {
        x: 80.0,
        y: 70.0,
        w: 360.0,
        h: 270.0,
        x_max: nice_max(x_max),
        y_max: t_axis,
    };
    panel(
        &mut out,
        &time,
        "Load time against number of cells",
        "number of cells",
        "time (ms)",
        &[
            ("load all cells", "#1f77b4", false, load),
            ("unload (tear the namespace down)", "#d62728", false, unload),
            (
                "proportional to N (from the smallest N)",
                "#1f77b4",
                true,
                linear,
            ),
        ],
    );
    let memory = Panel {
        x: 570.0,
        y: 70.0,
        w: 360.0,
        h: 270.0,
        x_max: nice_max(x_max),
        y_max: nice_max(m_max),
    };
    panel(
        &mut out,
        &memory,
        "Memory against number of cells",
        "number of cells",
        "KiB",
        &[
            (
                "mapped (all regions, page aligned)",
                "#2ca02c",
                false,
                mapped,
            ),
            ("objects (input)", "#7f7f7f", false, objects),
            (
                "metadata (edges, sections, symbols)",
                "#9467bd",
                false,
                meta,
            ),
        ],
    );
    out.push_str("</svg>\n");
    out
}

criterion_group!(benches, bench);
criterion_main!(benches);
