//! Swaps lose nothing: four threads allocate and free frames, write and read files and bump a
//! counter through the cells while the main thread swaps `frame_alloc` between its bitmap (v1) and
//! buddy (v2) versions, whose state moves by a transfer each time, a thousand times. At the end
//! every count is exact. The same workload with the gate switched off loses updates: the test can
//! fail.

mod common;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use cell_abi::{counter, frame_alloc, memfs};
use crate_metadata::CellKind;
use loader::{Handle, StaticOutcome, SwapOptions};
use nano_core::Kernel;

const WORKERS: usize = 4;

/// One test of this file at a time. A swap whose state moves checks every thread of the process
/// for callers inside the old version, and a stale stack word of another test's thread that
/// equals an entry point of this test's cell (its address reused from an earlier kernel of the
/// same process) counts as a caller inside: that swap then waits and gives up, as it should for
/// a real one. The tests here assert which threads are inside, so they do not share the process
/// with each other's churn.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The handles the workers call.
#[derive(Clone)]
struct Calls {
    alloc: Handle<frame_alloc::AllocFrame>,
    free: Handle<frame_alloc::FreeFrame>,
    create: Handle<memfs::Create>,
    write: Handle<memfs::Write>,
    read: Handle<memfs::Read>,
    bump: Handle<counter::Bump>,
}

/// What one worker did.
#[derive(Default)]
struct Work {
    held: Vec<u64>,
    last_write: Vec<u8>,
    bumps: u64,
    errors: Vec<String>,
}

fn worker(t: usize, calls: Calls, stop: Arc<AtomicBool>) -> Work {
    let mut w = Work::default();
    let path = format!("/tmp/consistency-{t}");
    if let Err(e) = (calls.create.get())(&path, b"start") {
        w.errors.push(e);
    }
    w.last_write = b"start".to_vec();
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        match (calls.alloc.get())() {
            Some(frame) => w.held.push(frame),
            None => w.errors.push("out of frames".into()),
        }
        if w.held.len() > 6 {
            let frame = w.held.remove(0);
            if let Err(e) = (calls.free.get())(frame) {
                w.errors.push(e);
            }
        }
        let data = format!("worker {t} write {n}").into_bytes();
        match (calls.write.get())(&path, &data) {
            Ok(()) => w.last_write = data,
            Err(e) => w.errors.push(e),
        }
        (calls.bump.get())();
        w.bumps += 1;
        // Four busy threads on a machine of two cores: let the swapping thread run too.
        std::thread::yield_now();
    }
    w
}

/// A workload of [`WORKERS`] threads while `swaps` swaps of `frame_alloc` happen, back and forth,
/// with the gate or without. Returns what the counts show: the problems found (empty when every
/// count is exact).
fn run(kernel: &mut Kernel, swaps: usize, options: &SwapOptions) -> Vec<String> {
    let calls = Calls {
        alloc: kernel.bind(frame_alloc::ALLOC_FRAME).unwrap(),
        free: kernel.bind(frame_alloc::FREE_FRAME).unwrap(),
        create: kernel.bind(memfs::CREATE).unwrap(),
        write: kernel.bind(memfs::WRITE).unwrap(),
        read: kernel.bind(memfs::READ).unwrap(),
        bump: kernel.bind(counter::BUMP).unwrap(),
    };
    let allocated = kernel.bind(frame_alloc::ALLOCATED_FRAMES).unwrap();
    let memfs_frames = kernel.bind(memfs::FRAMES_USED).unwrap();
    let bumped = kernel.bind(counter::BUMP).unwrap();
    let baseline = (allocated.get())().len() - (memfs_frames.get())();
    let counter_before = (bumped.get())();
    let manifest = common::manifest();
    let objects: Vec<PathBuf> = [CellKind::Upgrades, CellKind::Kernel]
        .iter()
        .map(|k| common::cells_dir().join(&manifest.get(*k, "frame_alloc").unwrap().object))
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<JoinHandle<Work>> = (0..WORKERS)
        .map(|t| {
            let (calls, stop) = (calls.clone(), stop.clone());
            std::thread::spawn(move || worker(t, calls, stop))
        })
        .collect();
    let mut problems = Vec::new();
    let mut transfers = 0;
    let mut totals: Vec<u64> = Vec::new();
    let mut phases: Vec<[u64; 5]> = Vec::new();
    let mut drains: Vec<(u64, u32, u64, u64)> = Vec::new();
    for i in 0..swaps {
        match kernel.swap_cell("frame_alloc", &objects[i % 2], options) {
            Ok(report) => {
                totals.push(report.times.total);
                phases.push([
                    report.times.stage,
                    report.times.verify,
                    report.times.rebind,
                    report.times.commit,
                    report.times.retire,
                ]);
                if let Some(g) = &report.gate {
                    drains.push((g.drain, g.checks, g.parked, g.longest_wait));
                }
                transfers += report
                    .statics
                    .iter()
                    .filter(|s| s.outcome == StaticOutcome::Transferred)
                    .count();
            }
            Err(e) => problems.push(format!("swap {i}: {e:#}")),
        }
    }
    stop.store(true, Ordering::Relaxed);
    totals.sort_unstable();
    for k in 0..5 {
        let mut v: Vec<u64> = phases.iter().map(|p| p[k]).collect();
        v.sort_unstable();
        if let Some(m) = v.get(v.len() / 2) {
            eprintln!("phase {k}: median {} µs", m / 1000);
        }
    }
    drains.sort_unstable();
    if !totals.is_empty() {
        eprintln!(
            "swaps: median total {} µs, max {} µs; drains (median): {:?}; max drain {:?}",
            totals[totals.len() / 2] / 1000,
            totals[totals.len() - 1] / 1000,
            drains.get(drains.len() / 2),
            drains.last()
        );
    }
    let works: Vec<Work> = workers.into_iter().map(|w| w.join().unwrap()).collect();
    assert_eq!(transfers, swaps, "every swap moved the allocator's state");
    // Every frame a worker holds is held by it alone and allocated in the live version.
    let live: BTreeSet<u64> = (allocated.get())().into_iter().collect();
    let mut held = BTreeSet::new();
    for (t, w) in works.iter().enumerate() {
        for frame in &w.held {
            if !held.insert(*frame) {
                problems.push(format!("frame {frame:#x} is held twice (worker {t})"));
            }
            if !live.contains(frame) {
                problems.push(format!(
                    "frame {frame:#x} held by worker {t} is free in the live version"
                ));
            }
        }
        problems.extend(w.errors.iter().map(|e| format!("worker {t}: {e}")));
        // Every write is readable.
        match (calls.read.get())(&format!("/tmp/consistency-{t}")) {
            Ok(data) if data == w.last_write => {}
            Ok(data) => problems.push(format!(
                "worker {t}'s file holds {:?}, not its last write {:?}",
                String::from_utf8_lossy(&data),
                String::from_utf8_lossy(&w.last_write)
            )),
            Err(e) => problems.push(format!("worker {t}'s file: {e}")),
        }
    }
    // Nothing allocated that nobody holds: the boot's frames, the workers', the files'.
    let expected = baseline + held.len() + (memfs_frames.get())();
    if live.len() != expected {
        problems.push(format!(
            "{} frames allocated in the live version, {expected} held",
            live.len()
        ));
    }
    // Every bump counted.
    let bumps: u64 = works.iter().map(|w| w.bumps).sum();
    let counter_after = (bumped.get())();
    if counter_after - counter_before != bumps + 1 {
        problems.push(format!(
            "the counter moved by {}, the workers bumped {bumps} times",
            counter_after - counter_before - 1
        ));
    }
    // Clean up for a next run: free the workers' frames, remove their files.
    for frame in held {
        let _ = (calls.free.get())(frame);
    }
    let remove = kernel.bind(memfs::REMOVE).unwrap();
    for t in 0..WORKERS {
        let _ = (remove.get())(&format!("/tmp/consistency-{t}"));
    }
    problems
}

#[test]
fn a_thousand_transfer_swaps_under_load_lose_nothing() {
    let _alone = one_at_a_time();
    nano_core::logger::install(log::LevelFilter::Warn);
    let mut kernel = Kernel::boot(common::cells_dir()).expect("boot");
    let problems = run(&mut kernel, 1000, &SwapOptions::default());
    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

#[test]
fn without_the_gate_the_same_workload_loses_updates() {
    let _alone = one_at_a_time();
    let mut kernel = Kernel::boot(common::cells_dir()).expect("boot");
    let options = SwapOptions {
        without_gate_for_tests: true,
        ..SwapOptions::default()
    };
    // Losses need a transfer to overlap a call: a few rounds make that all but certain.
    let mut problems = Vec::new();
    for _ in 0..5 {
        problems = run(&mut kernel, 1000, &options);
        if !problems.is_empty() {
            break;
        }
    }
    assert!(
        !problems.is_empty(),
        "5,000 transfer swaps without the gate lost nothing: the test cannot tell the gate's work"
    );
    eprintln!(
        "without the gate: {} problems, e.g. {}",
        problems.len(),
        problems[0]
    );
}

/// The swap of `counter` to its new version (its `CONFIG` moves by a transfer), with options.
fn swap_counter(kernel: &mut Kernel, options: &SwapOptions) -> anyhow::Result<loader::SwapReport> {
    let manifest = common::manifest();
    let object =
        common::cells_dir().join(&manifest.get(CellKind::Upgrades, "counter").unwrap().object);
    kernel.swap_cell("counter", &object, options)
}

#[test]
fn a_thread_that_stays_inside_makes_the_swap_give_up_by_its_deadline_and_change_nothing() {
    let _alone = one_at_a_time();
    let mut kernel = Kernel::boot(common::cells_dir()).expect("boot");
    let hold = kernel.bind(counter::HOLD).unwrap();
    let bump = kernel.bind(counter::BUMP).unwrap();
    let release = Arc::new(AtomicBool::new(false));
    let (r, h) = (release.clone(), hold.clone());
    let holder = std::thread::Builder::new()
        .name("holder".into())
        .spawn(move || (h.get())(&r))
        .unwrap();
    // Until the holder is inside: it spins there.
    while kernel.system().registry().cells().count() == 0 {}
    std::thread::sleep(std::time::Duration::from_millis(20));
    let system = kernel.system();
    let before = (
        system.namespaces().snapshot(),
        system.registry().clone(),
        system.slot_values(),
        system.platform().live_mappings(),
    );
    let options = SwapOptions {
        drain_deadline: 200_000_000,
        ..SwapOptions::default()
    };
    let err = swap_counter(&mut kernel, &options).expect_err("the holder is inside");
    let system = kernel.system();
    assert!(
        before.0 == system.namespaces().snapshot(),
        "namespaces changed"
    );
    assert!(before.1 == *system.registry(), "registry changed");
    assert!(before.2 == system.slot_values(), "slots changed");
    assert_eq!(
        before.3,
        system.platform().live_mappings(),
        "mappings changed"
    );
    let swap = err
        .chain()
        .find_map(|e| e.downcast_ref::<loader::SwapError>())
        .unwrap_or_else(|| panic!("not a swap error: {err:#}"));
    let loader::SwapError::StillInside { cells, threads, .. } = swap else {
        panic!("wrong error: {swap}");
    };
    assert_eq!(cells, &["counter"]);
    let holder_inside = threads
        .iter()
        .find(|t| t.name == "holder")
        .unwrap_or_else(|| panic!("the holder is not named: {swap}"));
    assert!(holder_inside.at.starts_with("counter::hold+"), "{swap}");
    // The callers held at the gate went on in the old version; calls work.
    let before_bump = (bump.get())();
    assert_eq!((bump.get())(), before_bump + 1);
    // Released, the holder leaves, and the same swap goes through.
    release.store(true, Ordering::Release);
    holder.join().unwrap();
    let report = swap_counter(&mut kernel, &options).unwrap_or_else(|e| panic!("{e:#}"));
    assert!(report.gate.is_some(), "the state moved through the gate");
}

#[test]
fn a_swap_asked_for_from_inside_the_cell_is_refused() {
    let _alone = one_at_a_time();
    let kernel = std::sync::Mutex::new(Kernel::boot(common::cells_dir()).expect("boot"));
    let call = kernel.lock().unwrap().bind(counter::CALL).unwrap();
    let refused = std::sync::Mutex::new(None);
    let from_inside = || {
        let mut k = kernel.lock().unwrap();
        let err = swap_counter(&mut k, &SwapOptions::default()).expect_err("from inside");
        *refused.lock().unwrap() = Some(format!("{err:#}"));
        let is_from_inside = err
            .chain()
            .filter_map(|e| e.downcast_ref::<loader::SwapError>())
            .any(|e| matches!(e, loader::SwapError::FromInside { cell, .. } if cell == "counter"));
        u64::from(is_from_inside)
    };
    assert_eq!(
        (call.get())(&from_inside),
        1,
        "{:?}",
        refused.lock().unwrap()
    );
    let text = refused.lock().unwrap().clone().unwrap();
    assert!(text.contains("counter::call"), "{text}");
    // From outside, the same swap goes through.
    let mut k = kernel.lock().unwrap();
    swap_counter(&mut k, &SwapOptions::default()).unwrap_or_else(|e| panic!("{e:#}"));
}
