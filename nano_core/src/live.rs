//! The live-swap part of the demo: kernel cells swapped to their new versions (and back) while
//! threads keep calling through them.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{anyhow, Result};
use cell_abi::{counter, frame_alloc, memfs};
use crate_metadata::CellKind;
use loader::{SwapOptions, SwapReport};

use crate::kernel::Kernel;

/// What the state looked like, for before/after comparison.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateView {
    /// `memfs::list("/home")`.
    pub home: Vec<String>,
    /// Bytes of `/home/notes.txt` (0 if missing).
    pub notes_len: usize,
    /// `frame_alloc::allocated_frames()`.
    pub frames: Vec<u64>,
    /// `counter::count()`.
    pub counter: u64,
}

/// One swap of the demo.
#[derive(Clone, Debug)]
pub struct Step {
    /// What was attempted.
    pub label: String,
    /// The revision string answering before and after.
    pub revisions: (String, String),
    /// The swap's report, or the error that refused it.
    pub outcome: Result<SwapReport, String>,
}

/// What the live-swap demo did.
#[derive(Clone, Debug)]
pub struct LiveReport {
    /// The swaps, in order.
    pub steps: Vec<Step>,
    /// Calls the worker threads made while the swaps ran.
    pub calls: u64,
    /// Calls that failed (an error or a wrong answer).
    pub failed: u64,
    /// Worker threads.
    pub threads: usize,
    /// `counter::bump` calls the workers made.
    pub bumps: u64,
    /// State before the swaps.
    pub before: StateView,
    /// State after them.
    pub after: StateView,
}

struct Load {
    stop: Arc<AtomicBool>,
    calls: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    bumps: Arc<AtomicU64>,
    threads: Vec<JoinHandle<()>>,
}

fn view(kernel: &mut Kernel) -> Result<StateView> {
    let list = kernel.bind(memfs::LIST)?;
    let read = kernel.bind(memfs::READ)?;
    let frames = kernel.bind(frame_alloc::ALLOCATED_FRAMES)?;
    let count = kernel.bind(counter::COUNT)?;
    Ok(StateView {
        home: (list.get())("/home").unwrap_or_default(),
        notes_len: (read.get())("/home/notes.txt")
            .map(|v| v.len())
            .unwrap_or(0),
        frames: (frames.get())(),
        counter: (count.get())(),
    })
}

fn start_load(kernel: &mut Kernel, threads: usize) -> Result<Load> {
    let stop = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let bumps = Arc::new(AtomicU64::new(0));
    let read = kernel.bind(memfs::READ)?;
    let free = kernel.bind(frame_alloc::FREE_COUNT)?;
    let bump = kernel.bind(counter::BUMP)?;
    let motd = (read.get())("/etc/motd").map_err(|e| anyhow!("memfs: {e}"))?;
    let mut handles = Vec::new();
    for _ in 0..threads {
        let (read, free, bump, motd) = (read.clone(), free.clone(), bump.clone(), motd.clone());
        let (stop, calls, failed, bumps) =
            (stop.clone(), calls.clone(), failed.clone(), bumps.clone());
        let me = kernel.system().epochs().register();
        handles.push(std::thread::spawn(move || {
            let mut last = 0;
            while !stop.load(Ordering::Relaxed) {
                let ok_read = (read.get())("/etc/motd").is_ok_and(|m| m == motd);
                let ok_free = (free.get())() <= 1024;
                let b = (bump.get())();
                let ok_bump = b > last;
                last = b;
                bumps.fetch_add(1, Ordering::Relaxed);
                calls.fetch_add(3, Ordering::Relaxed);
                let bad = [ok_read, ok_free, ok_bump]
                    .iter()
                    .filter(|ok| !**ok)
                    .count();
                failed.fetch_add(bad as u64, Ordering::Relaxed);
                me.quiescent();
            }
        }));
    }
    Ok(Load {
        stop,
        calls,
        failed,
        bumps,
        threads: handles,
    })
}

fn revision(kernel: &mut Kernel, cell: &str) -> String {
    kernel
        .bind(cell_abi::REVISION.of(cell))
        .map(|h| (h.get())())
        .unwrap_or_else(|_| "(no revision)".into())
}

fn step(kernel: &mut Kernel, label: &str, cell: &str, object: Option<std::path::PathBuf>) -> Step {
    step_with(kernel, label, cell, object, &SwapOptions::default())
}

fn step_with(
    kernel: &mut Kernel,
    label: &str,
    cell: &str,
    object: Option<std::path::PathBuf>,
    options: &SwapOptions,
) -> Step {
    let before = revision(kernel, cell);
    let outcome = match object {
        Some(path) => kernel
            .swap_cell(cell, &path, options)
            .map_err(|e| crate::errors::render(&e)),
        None => Err(format!("no object to swap `{cell}` to")),
    };
    std::thread::sleep(Duration::from_millis(30));
    let after = revision(kernel, cell);
    Step {
        label: label.into(),
        revisions: (before, after),
        outcome,
    }
}

/// Runs the live-swap demo: `threads` workers call memfs, frame_alloc and counter while memfs is
/// swapped to its new version and back (state rebound), frame_alloc to its buddy-allocator
/// version and back to the bitmap (state transferred each way while the gate holds the callers),
/// and counter while a thread stays inside it (refused at the drain's deadline, nothing changed).
pub fn run(kernel: &mut Kernel, threads: usize) -> Result<LiveReport> {
    let before = view(kernel)?;
    let upgrade = |kernel: &Kernel, cell: &str| {
        kernel
            .manifest()
            .get(CellKind::Upgrades, cell)
            .map(|e| kernel.cells_dir().join(&e.object))
    };
    let original = |kernel: &Kernel, cell: &str| {
        kernel
            .manifest()
            .get(CellKind::Kernel, cell)
            .map(|e| kernel.cells_dir().join(&e.object))
    };
    let load = start_load(kernel, threads)?;
    std::thread::sleep(Duration::from_millis(30));
    let mut steps = Vec::new();
    let to_v2 = upgrade(kernel, "memfs");
    steps.push(step(
        kernel,
        "memfs → v2 (files kept by rebinding)",
        "memfs",
        to_v2,
    ));
    let back = original(kernel, "memfs");
    steps.push(step(
        kernel,
        "memfs → v1 again (retired version reused)",
        "memfs",
        back,
    ));
    let buddy = upgrade(kernel, "frame_alloc");
    steps.push(step(
        kernel,
        "frame_alloc → v2 (bitmap moved into a buddy allocator)",
        "frame_alloc",
        buddy,
    ));
    let bitmap = original(kernel, "frame_alloc");
    steps.push(step(
        kernel,
        "frame_alloc → v1 (the buddy state moved back into the bitmap)",
        "frame_alloc",
        bitmap,
    ));
    steps.push(held_inside(kernel, upgrade(kernel, "counter"))?);
    load.stop.store(true, Ordering::Relaxed);
    for t in load.threads {
        t.join().map_err(|_| anyhow!("a worker thread panicked"))?;
    }
    let after = view(kernel)?;
    Ok(LiveReport {
        steps,
        calls: load.calls.load(Ordering::Relaxed),
        failed: load.failed.load(Ordering::Relaxed),
        threads,
        bumps: load.bumps.load(Ordering::Relaxed),
        before,
        after,
    })
}

/// counter swapped to its new version (its `CONFIG` moves by a transfer) while a thread stays
/// inside `counter::hold`: the drain gives up at its deadline and the swap is undone.
fn held_inside(kernel: &mut Kernel, object: Option<std::path::PathBuf>) -> Result<Step> {
    let hold = kernel.bind(counter::HOLD)?;
    let release = Arc::new(AtomicBool::new(false));
    let (r, h) = (release.clone(), hold.clone());
    let holder = std::thread::Builder::new()
        .name("holder".into())
        .spawn(move || (h.get())(&r))?;
    std::thread::sleep(Duration::from_millis(20));
    let options = SwapOptions {
        drain_deadline: 100_000_000,
        ..SwapOptions::default()
    };
    let s = step_with(
        kernel,
        "counter → v2 while a thread stays inside counter::hold (must be refused at the drain's deadline)",
        "counter",
        object,
        &options,
    );
    release.store(true, Ordering::Release);
    holder
        .join()
        .map_err(|_| anyhow!("the holding thread panicked"))?;
    Ok(s)
}

/// The live-swap demo's results, for people.
pub fn render(r: &LiveReport) -> String {
    let mut out = String::new();
    for s in &r.steps {
        let _ = writeln!(out, "{}", s.label);
        match &s.outcome {
            Ok(rep) => {
                let c = &rep.cells[0];
                let _ = writeln!(
                    out,
                    "  swapped {} {} → {}{}; {} slots rewritten in {}",
                    c.name,
                    c.old,
                    c.new,
                    if c.reused {
                        " (reused, nothing loaded)"
                    } else {
                        ""
                    },
                    rep.slots_rewritten,
                    rep.dependents.join(", ")
                );
                for st in &rep.statics {
                    let _ = writeln!(
                        out,
                        "  static {:<24} {:?} ({} → {} bytes)",
                        st.path, st.outcome, st.sizes.0, st.sizes.1
                    );
                }
                let t = rep.times;
                let us = |n: u64| n as f64 / 1000.0;
                if let Some(g) = &rep.gate {
                    let _ = writeln!(
                        out,
                        "  gate: {} slots held, {} callers waited (longest {:.1} µs, median {:.1} µs); old version drained in {:.1} µs ({} checks)",
                        g.slots, g.parked, us(g.longest_wait), us(g.median_wait), us(g.drain), g.checks
                    );
                }
                let _ = writeln!(
                    out,
                    "  phases: stage {:.1} µs · verify {:.1} µs · rebind/transfer {:.1} µs · commit {:.1} µs · total {:.1} µs",
                    us(t.stage), us(t.verify), us(t.rebind), us(t.commit), us(t.total)
                );
            }
            Err(e) => {
                let _ = writeln!(out, "  refused, nothing changed: {e}");
            }
        }
        let _ = writeln!(
            out,
            "  answering before: {:?}; after: {:?}",
            s.revisions.0, s.revisions.1
        );
    }
    let _ = writeln!(
        out,
        "calls during the swaps: {} from {} threads, {} failed",
        r.calls, r.threads, r.failed
    );
    let same =
        |a: &dyn std::fmt::Debug, b: &dyn std::fmt::Debug| format!("{a:?}") == format!("{b:?}");
    let _ = writeln!(
        out,
        "state: /home {:?} → {:?} ({}); notes {} → {} bytes; allocated frames {} → {} ({}); counter {} → {} (+{} bumps: {})",
        r.before.home,
        r.after.home,
        if same(&r.before.home, &r.after.home) { "kept" } else { "CHANGED" },
        r.before.notes_len,
        r.after.notes_len,
        r.before.frames.len(),
        r.after.frames.len(),
        if r.before.frames == r.after.frames { "every frame still allocated" } else { "CHANGED" },
        r.before.counter,
        r.after.counter,
        r.bumps,
        if r.after.counter == r.before.counter + r.bumps { "exact" } else { "LOST UPDATES" },
    );
    out
}
