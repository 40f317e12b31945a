//! The workers: tasks on every CPU that call the cells continuously, and the exact check of the
//! state they leave.

use alloc::collections::VecDeque;
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use crate::percpu;
use crate::quiesce;
use crate::sync::IrqMutex;
use crate::task;
use crate::{cpu, println, us};

use super::swaps::{SWAP_NAMES, SWAP_WINDOWS};
use super::{cells, kernel, sched_stacks, MAX_WORKERS};

/// How many workers run.
pub static WORKERS: AtomicUsize = AtomicUsize::new(0);
/// Tells the workers to stop.
static STOP: AtomicBool = AtomicBool::new(false);
/// Iterations each worker made.
pub static ITERATIONS: [AtomicU64; MAX_WORKERS] = [const { AtomicU64::new(0) }; MAX_WORKERS];
/// Calls that failed (an error where none was due, or other bytes than were written).
pub static FAILED: AtomicU64 = AtomicU64::new(0);

/// What a worker leaves when it stops.
#[derive(Clone, Debug, Default)]
struct WorkerLog {
    id: usize,
    held: Vec<u64>,
    files: Vec<(String, Vec<u8>)>,
    bumps: u64,
    iterations: u64,
    /// The longest time between two of its iterations that overlapped a swap, and which swap.
    pause_in_swap: (u64, String),
    /// The longest outside swaps.
    pause_outside: u64,
}

static LOGS: IrqMutex<Vec<WorkerLog>> = IrqMutex::new(Vec::new());

/// The files and the counter before the workers started.
#[derive(Clone, Copy)]
pub(super) struct Baseline {
    pub(super) files: usize,
    pub(super) count: u64,
}

pub(super) static BASELINE: IrqMutex<Option<Baseline>> = IrqMutex::new(None);

fn fail(worker: usize, what: String) {
    FAILED.fetch_add(1, Ordering::Relaxed);
    println!("worker{worker}: FAILED call: {what}");
}

/// A worker: allocates and frees frames, writes and reads back files, bumps the counter, until
/// told to stop; keeps what it holds so that the state can be checked exactly afterwards.
pub(super) fn worker(id: usize) {
    let cells = cells();
    let mut held: VecDeque<u64> = VecDeque::new();
    let mut files: Vec<Option<Vec<u8>>> = vec![None; 4];
    let mut log = WorkerLog {
        id,
        ..WorkerLog::default()
    };
    let mut last = cpu::rdtsc();
    let mut window = SWAP_WINDOWS.load(Ordering::SeqCst);
    let mut i: u64 = 0;
    while !STOP.load(Ordering::Relaxed) {
        for _ in 0..2 {
            match cells.alloc_frame.call(|f| f()) {
                Some(frame) => held.push_back(frame),
                None => fail(id, "frame_alloc::alloc_frame gave no frame".into()),
            }
        }
        while held.len() > 6 {
            let frame = held.pop_front().expect("more than six");
            if let Err(e) = cells.free_frame.call(|f| f(frame)) {
                fail(id, format!("frame_alloc::free_frame({frame:#x}): {e}"));
            }
        }
        let slot = (i % 4) as usize;
        let path = format!("/w{id}/f{slot}");
        let line = format!(
            "worker {id} iteration {i} on cpu {} holds {:x?}\n",
            percpu::this_cpu().index(),
            held
        );
        let content = line.repeat(1 + (i % 3) as usize * 40).into_bytes();
        let written = if files[slot].is_some() {
            cells.write.call(|f| f(&path, &content))
        } else {
            cells.create.call(|f| f(&path, &content))
        };
        match written {
            Ok(()) => files[slot] = Some(content),
            Err(e) => fail(id, format!("memfs write of {path}: {e}")),
        }
        match cells.read.call(|f| f(&path)) {
            Ok(back) if Some(&back) == files[slot].as_ref() => {}
            Ok(back) => fail(
                id,
                format!("memfs::read({path}) gave {} other bytes", back.len()),
            ),
            Err(e) => fail(id, format!("memfs::read({path}): {e}")),
        }
        cells.bump.call(|f| f());
        log.bumps += 1;
        i += 1;
        ITERATIONS[id].fetch_add(1, Ordering::Relaxed);
        let now = cpu::rdtsc();
        let w = SWAP_WINDOWS.load(Ordering::SeqCst);
        let gap = now - last;
        if w != window || w % 2 == 1 {
            if gap > log.pause_in_swap.0 {
                let n = (w.max(window).saturating_sub(1) / 2) as usize;
                let name = SWAP_NAMES.lock().get(n).cloned().unwrap_or_default();
                log.pause_in_swap = (gap, name);
            }
        } else {
            log.pause_outside = log.pause_outside.max(gap);
        }
        last = now;
        window = w;
    }
    log.iterations = i;
    log.held = held.into_iter().collect();
    log.files = files
        .into_iter()
        .enumerate()
        .filter_map(|(slot, f)| f.map(|f| (format!("/w{id}/f{slot}"), f)))
        .collect();
    LOGS.lock().push(log);
}

/// Per-CPU calls, as one line.
pub fn calls_line() -> String {
    let calls: Vec<String> = percpu::online()
        .map(|c| format!("cpu{} {}", c.index(), c.calls.load(Ordering::Relaxed)))
        .collect();
    calls.join(", ")
}

/// Waits until `done` says yes, for at most 20 s (a hang guard: the wait itself is not a check of
/// time).
pub(super) fn wait_until(what: &str, done: impl Fn() -> bool) -> Result<(), String> {
    let start = cpu::rdtsc();
    while !done() {
        if cpu::rdtsc() - start > 20_000_000 * crate::tsc_per_us() {
            return Err(format!("waited 20 s for {what}"));
        }
        task::sleep_us(1_000);
    }
    Ok(())
}

/// Waits until every CPU has made `calls` calls and every worker `iterations` iterations.
pub(super) fn wait_for_progress(calls: u64, iterations: u64) -> Result<(), String> {
    let start = cpu::rdtsc();
    let limit = 30_000_000 * crate::tsc_per_us();
    loop {
        let cpus_ok = percpu::online().all(|c| c.calls.load(Ordering::Relaxed) >= calls);
        let workers = WORKERS.load(Ordering::Relaxed);
        let workers_ok = ITERATIONS[..workers]
            .iter()
            .all(|n| n.load(Ordering::Relaxed) >= iterations);
        if cpus_ok && workers_ok {
            return Ok(());
        }
        if cpu::rdtsc() - start > limit {
            return Err(format!(
                "no progress in 30 s: calls {}, iterations {:?}",
                calls_line(),
                ITERATIONS[..workers]
                    .iter()
                    .map(|n| n.load(Ordering::Relaxed))
                    .collect::<Vec<_>>()
            ));
        }
        task::sleep_us(2_000);
    }
}

/// Stops the workers, waits until each left its log, and checks the state of the cells against
/// them: every frame, every file, every count. Returns the lines to print.
pub fn stop_and_check() -> Result<Vec<String>, String> {
    STOP.store(true, Ordering::SeqCst);
    let workers = WORKERS.load(Ordering::SeqCst);
    let start = cpu::rdtsc();
    while LOGS.lock().len() < workers {
        if cpu::rdtsc() - start > 10_000_000 * crate::tsc_per_us() {
            return Err("the workers did not stop within 10 s".into());
        }
        task::sleep_us(1_000);
    }
    // Let the workers' tasks end (their `sched` entries and stack frames go).
    let start = cpu::rdtsc();
    while task::states()
        .iter()
        .any(|(n, s)| n.starts_with("worker") && !matches!(s, task::State::Exited))
    {
        if cpu::rdtsc() - start > 10_000_000 * crate::tsc_per_us() {
            return Err(format!(
                "the workers did not end within 10 s: {:?}",
                task::describe()
            ));
        }
        task::sleep_us(1_000);
    }
    task::forget_faulted();
    let stacks_freed = task::reap();
    let logs = LOGS.lock().clone();
    let cells = cells();
    let mut lines = Vec::new();

    // Frames: what the workers hold, the tasks' stack frames in `sched` and the boot workload's
    // frames are all allocated, none twice, and with memfs's file frames they are all there is.
    let allocated = cells.allocated_frames.call(|f| f());
    let stacks = sched_stacks();
    let boot_frames = kernel().boot_frames.clone();
    let mut owned: Vec<u64> = logs.iter().flat_map(|l| l.held.iter().copied()).collect();
    let held_by_workers = owned.len();
    owned.extend(&stacks);
    owned.extend(&boot_frames);
    let mut sorted = owned.clone();
    sorted.sort_unstable();
    let distinct = {
        let mut d = sorted.clone();
        d.dedup();
        d.len()
    };
    if distinct != sorted.len() {
        return Err(format!(
            "a frame is held twice: {} frames held, {distinct} distinct",
            sorted.len()
        ));
    }
    let missing: Vec<u64> = owned
        .iter()
        .copied()
        .filter(|f| allocated.binary_search(f).is_err())
        .collect();
    if !missing.is_empty() {
        return Err(format!("frames held but free in frame_alloc: {missing:x?}"));
    }
    let memfs_frames = cells.frames_used.call(|f| f());
    if allocated.len() != owned.len() + memfs_frames {
        return Err(format!(
            "frame_alloc has {} frames allocated, but the workers hold {held_by_workers}, the tasks' stacks are {}, the boot workload keeps {} and memfs's files {memfs_frames}",
            allocated.len(),
            stacks.len(),
            boot_frames.len()
        ));
    }
    lines.push(format!(
        "exact state: frames: {} allocated in {} = {held_by_workers} held by the workers + {} task stacks in sched + {} kept by the boot workload + {memfs_frames} of memfs's files; none held twice, none lost",
        allocated.len(),
        cells.frame_alloc_revision.call(|f| f()),
        stacks.len(),
        boot_frames.len()
    ));

    // Files: every file each worker wrote reads back as last written.
    let baseline = BASELINE.lock().ok_or("no baseline")?;
    let mut files = 0;
    for log in &logs {
        for (path, expected) in &log.files {
            let back = cells
                .read
                .call(|f| f(path))
                .map_err(|e| format!("memfs::read({path}): {e}"))?;
            if &back != expected {
                return Err(format!("{path} reads back other bytes than last written"));
            }
            files += 1;
        }
    }
    let count_files = cells.file_count.call(|f| f());
    if count_files != baseline.files + files {
        return Err(format!(
            "memfs has {count_files} files, not the {} there were plus the workers' {files}",
            baseline.files
        ));
    }
    let notes = cells
        .read
        .call(|f| f("/home/notes.txt"))
        .map_err(|e| format!("memfs::read(/home/notes.txt): {e}"))?;
    if notes != kernel().notes.as_bytes() {
        return Err("/home/notes.txt changed".into());
    }
    lines.push(format!(
        "exact state: files: the workers' {files} files read back as last written through {}; {count_files} files in all ({} before), /home/notes.txt unchanged",
        cells.memfs_revision.call(|f| f()),
        baseline.files
    ));

    // Counters: every bump counted, across the counter's own swap.
    let bumps: u64 = logs.iter().map(|l| l.bumps).sum();
    let count = cells.count.call(|f| f());
    if count != baseline.count + bumps {
        return Err(format!(
            "counter::count() is {count}, the workers bumped {bumps} times (from {})",
            baseline.count
        ));
    }
    let iterations: u64 = logs.iter().map(|l| l.iterations).sum();
    lines.push(format!(
        "exact state: counter: {count} = the workers' {bumps} bumps, through {}; {iterations} iterations in all",
        cells.counter_revision.call(|f| f())
    ));
    let failed = FAILED.load(Ordering::SeqCst);
    let calls = quiesce::sum(|c| c.calls.load(Ordering::Relaxed));
    lines.push(format!(
        "calls: {calls} calls into cells, {failed} failed; {stacks_freed} ended tasks' stacks freed"
    ));
    if failed != 0 {
        return Err(format!("{failed} calls failed"));
    }
    // The pauses.
    if let Some(worst) = logs.iter().max_by_key(|l| l.pause_in_swap.0) {
        let outside = logs.iter().map(|l| l.pause_outside).max().unwrap_or(0);
        lines.push(format!(
            "pauses: the longest a worker waited between two iterations across a swap: {} us (worker{}, during the `{}` swap); outside swaps: {} us (the tasks share the CPUs: {} workers and the control task on {} CPUs, {} us per tick)",
            us(worst.pause_in_swap.0),
            worst.id,
            worst.pause_in_swap.1,
            us(outside),
            workers,
            percpu::ONLINE.load(Ordering::Relaxed),
            crate::TICK_US
        ));
    }
    lines.push(format!(
        "gate: {} calls waited at a gate, the longest {} us",
        quiesce::GATE_WAITS.load(Ordering::Relaxed),
        quiesce::GATE_WAIT_MAX_US.load(Ordering::Relaxed)
    ));
    Ok(lines)
}
