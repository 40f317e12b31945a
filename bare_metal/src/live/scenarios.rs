//! The scenarios the kernel command line picks: the swaps under load, the faults, the uart test.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::driver;
use crate::kernel::Booted;
use crate::percpu;
use crate::sync::IrqMutex;
use crate::task;
use crate::{cpu, println, shell, us};

use super::swaps::{print_swap, reclaim_retired, swap};
use super::workers::{
    calls_line, stop_and_check, wait_for_progress, wait_until, FAILED, ITERATIONS, WORKERS,
};
use super::{cell_fn, cells, field, kernel};

/// Prints the boot's numbers: time to the first task and to every CPU online.
fn print_boot_times() {
    let entry = crate::boot::entry_tsc();
    let first = task::FIRST_TASK_TSC.load(Ordering::Relaxed);
    println!(
        "boot: first task ran {} us after the kernel's first instruction (TSC, {} ticks per us)",
        us(first.saturating_sub(entry)),
        crate::tsc_per_us()
    );
}

/// The default run: swaps under load, faults, reclaim, exact state.
pub(super) fn swaps_scenario() -> Result<(), String> {
    wait_for_progress(300, 3)?;
    print_boot_times();
    println!(
        "load: every CPU runs tasks that call cells; calls so far by CPU: {}",
        calls_line()
    );
    let before: Vec<u64> = percpu::online()
        .map(|c| c.calls.load(Ordering::Relaxed))
        .collect();

    // memfs: same state layout, rebound: the no-wait path.
    let r = swap("memfs", None)?;
    print_swap(&r);
    check_memfs_v2()?;
    task::sleep_us(50_000);

    // sched: the policy itself, moved by transfer while every CPU keeps switching tasks.
    let tasks_before = ids(&cells().sched_tasks.call(|f| f()));
    let r = swap("sched", None)?;
    print_swap(&r);
    let revision = cells().sched_revision.call(|f| f());
    let tasks_after = ids(&cells().sched_tasks.call(|f| f()));
    println!("after swap: sched::revision() = {revision:?}");
    if !revision.contains("v2") || !tasks_before.iter().all(|t| tasks_after.contains(t)) {
        return Err(format!(
            "sched v2 lost tasks: {tasks_before:?} -> {tasks_after:?} ({revision})"
        ));
    }
    println!(
        "state kept: the {} tasks in sched v1 are in sched v2 with their ids, and it picks for every CPU now",
        tasks_before.len()
    );
    let picks = task::PICKS.load(Ordering::Relaxed);
    wait_until("a task switch picked by sched v2", || {
        task::PICKS.load(Ordering::Relaxed) > picks
    })?;
    task::sleep_us(50_000);
    println!(
        "after swap: sched v2 made {} picks in the next 50 ms",
        task::PICKS.load(Ordering::Relaxed) - picks
    );

    // frame_alloc: bitmap -> buddy, with memfs and sched (which call it) behind the gate.
    let free_before = cells().free_count.call(|f| f());
    let r = swap("frame_alloc", None)?;
    print_swap(&r);
    println!(
        "after swap: frame_alloc::revision() = {:?}; free frames {free_before} before the swap, {} now (the workers keep allocating)",
        cells().frame_alloc_revision.call(|f| f()),
        cells().free_count.call(|f| f())
    );
    task::sleep_us(50_000);

    // counter: COUNTER rebound, CONFIG transferred (behind the gate): no bump lost.
    let r = swap("counter", None)?;
    print_swap(&r);
    println!(
        "after swap: counter::revision() = {:?}, count {}",
        cells().counter_revision.call(|f| f()),
        cells().count.call(|f| f())
    );
    task::sleep_us(50_000);

    // uart: the driver, with its interrupt live (the gate masks it for the swap).
    let r = swap("uart", None)?;
    print_swap(&r);
    println!("after swap: uart: {}", driver::describe());
    task::sleep_us(50_000);

    let after: Vec<u64> = percpu::online()
        .map(|c| c.calls.load(Ordering::Relaxed))
        .collect();
    println!("load: calls by CPU after the swaps: {}", calls_line());
    let during: Vec<String> = before
        .iter()
        .zip(&after)
        .enumerate()
        .map(|(i, (b, a))| format!("cpu{i} +{}", a - b))
        .collect();
    println!("load: calls made during the swaps: {}", during.join(", "));
    if before.iter().zip(&after).any(|(b, a)| a <= b) {
        return Err("a CPU made no calls during the swaps".into());
    }

    faults()?;

    for line in reclaim_retired()? {
        println!("{line}");
    }
    {
        let b = kernel();
        crate::kernel::check_w_xor_x(&b.k)?;
        let windows = b.k.system.platform().memory.write_windows();
        println!(
            "GOT write windows: the swaps made {} read-only pages writable (dependents' slots) and {} of them read-only again; {} left writable",
            windows.opened, windows.closed, windows.open_now
        );
        if windows.opened == 0 || windows.open_now != 0 {
            return Err(format!(
                "the swaps' write windows do not add up: {windows:?}"
            ));
        }
    }

    for line in stop_and_check()? {
        println!("{line}");
    }
    shell::script(&["cpus", "tasks", "stats"]);
    Ok(())
}

/// The task ids in `sched::tasks()` lines.
fn ids(lines: &[String]) -> Vec<String> {
    let mut v: Vec<String> = lines.iter().filter_map(|l| field(l, "id=")).collect();
    v.sort();
    v
}

/// After the memfs swap: v2 answers, the state is the same, a function only v2 has works.
fn check_memfs_v2() -> Result<(), String> {
    let revision = cells().memfs_revision.call(|f| f());
    println!(
        "after swap: the handle to memfs::revision taken before the swap now says {revision:?}"
    );
    if !revision.contains("v2") {
        return Err(format!("memfs::revision after the swap is {revision:?}"));
    }
    let stat = {
        let mut b = kernel();
        cell_fn(&mut b, cell_abi::memfs::STAT)?
    };
    let stat = stat.call(|f| f("/home/notes.txt"))?;
    println!(
        "after swap: memfs::stat(\"/home/notes.txt\") = {stat:?} (a function v1 does not have)"
    );
    let notes = cells().read.call(|f| f("/home/notes.txt"))?;
    if notes != kernel().notes.as_bytes() {
        return Err("/home/notes.txt changed across the memfs swap".into());
    }
    println!(
        "state kept: /home/notes.txt reads back the same {} bytes through memfs v2",
        notes.len()
    );
    Ok(())
}

/// Two tasks that fault inside cells' memory: a write to `memfs`'s text, and an invalid opcode in
/// a cell's text. Each is reported with the cell and symbol and ends; the rest goes on.
fn faults() -> Result<(), String> {
    let (create, ud2) = {
        let b = kernel();
        let create =
            b.k.system
                .find_symbol(b.k.ns, "memfs::create")
                .map_err(|e| e.to_string())?
                .addr;
        (create, find_ud2(&b)?)
    };
    let iterations = |id: usize| ITERATIONS[id].load(Ordering::Relaxed);
    let before: Vec<u64> = (0..WORKERS.load(Ordering::Relaxed))
        .map(iterations)
        .collect();
    println!(
        "faults: a task writes to memfs's text at {create:#x} (memfs::create); this must fault"
    );
    let wx = task::spawn("wx", move || {
        // SAFETY: deliberately unsound if it succeeds: the page is a cell's text, which W^X maps
        // read+execute. The write must raise a page fault, which ends this task.
        unsafe { (create as *mut u8).write_volatile(0xcc) };
        println!("faults: FAILED: the write to memfs's text succeeded");
        FAILED.fetch_add(1, Ordering::Relaxed);
    })?;
    println!(
        "faults: a task jumps to a ud2 instruction in a cell's text at {ud2:#x}; this must fault"
    );
    let ud = task::spawn("ud", move || {
        // SAFETY: deliberately faulting: `ud2` raises an invalid opcode exception at once,
        // before anything of the cell's code runs or any state is touched; the exception ends
        // this task.
        let f: extern "C" fn() = unsafe { core::mem::transmute(ud2 as usize) };
        f();
        println!("faults: FAILED: the ud2 returned");
        FAILED.fetch_add(1, Ordering::Relaxed);
    })?;
    let start = cpu::rdtsc();
    loop {
        let states = task::states();
        let ended = [wx, ud]
            .iter()
            .all(|i| matches!(states.get(*i), Some((_, task::State::Faulted(_)))));
        if ended {
            break;
        }
        if cpu::rdtsc() - start > 10_000_000 * crate::tsc_per_us() {
            return Err(format!("the faulting tasks did not end: {states:?}"));
        }
        task::sleep_us(1_000);
    }
    // By name: which of the two faults first depends on which CPU runs it first.
    let mut forgotten = task::forget_faulted();
    forgotten.sort_unstable();
    wait_until("every worker's progress after the faults", || {
        before.iter().enumerate().all(|(i, b)| iterations(i) > *b)
    })?;
    println!(
        "faults: {} tasks ended by faults ({}), their sched entries removed; the kernel went on, and all {} workers made progress since",
        forgotten.len(),
        forgotten.join(", "),
        before.len()
    );
    Ok(())
}

/// The address of a `ud2` instruction (0f 0b) in the text of a live kernel cell.
fn find_ud2(b: &Booted) -> Result<u64, String> {
    for name in ["memfs", "frame_alloc", "sched", "klog"] {
        let Some(id) = b.k.system.cell_in(b.k.ns, name) else {
            continue;
        };
        let Some(regions) = b.k.system.regions(id) else {
            continue;
        };
        let (start, len) = regions[0];
        // SAFETY: the cell's text region is mapped readable (RX) for as long as the cell is
        // loaded, and the kernel holds the loader's lock, so it stays.
        let text = unsafe { core::slice::from_raw_parts(start as *const u8, len as usize) };
        if let Some(at) = text.windows(2).position(|w| w == [0x0f, 0x0b]) {
            return Ok(start + at as u64);
        }
    }
    Err("no ud2 instruction in the kernel cells' text".into())
}

/// `uart-test`: the host feeds numbered lines through the serial port; a reader task checks that
/// every line arrives, in order, while this task swaps `uart` back and forth.
pub(super) fn uart_scenario() -> Result<(), String> {
    wait_for_progress(100, 1)?;
    let reader = task::spawn("reader", uart_reader)?;
    println!("uart-test: ready");
    // Swap while bytes arrive: after each 2 KiB the reader took, until the host's `end` line.
    let mut swaps = 0;
    let mut next = 2048;
    while !READER_DONE.load(Ordering::SeqCst) {
        let got = READER_BYTES.load(Ordering::SeqCst);
        if got >= next && swaps < 16 {
            let r = swap("uart", None)?;
            println!(
                "uart-test: swap {}: `uart` -> {} at byte {got}; drained in {} us, {} calls parked",
                swaps + 1,
                r.object,
                r.drain_us,
                r.parked.0
            );
            swaps += 1;
            next = got + 2048;
        }
        task::sleep_us(500);
    }
    let _ = reader;
    let result = READER_RESULT.lock().clone();
    println!("uart-test: {}", result.as_deref().unwrap_or("no result"));
    println!(
        "uart-test: {swaps} swaps while input arrived; {} interrupts handled by the driver cell, {} found the gate closed (input masked until the swap ended), {} bytes taken by the new version right after a swap; the ring was full {} times (the bytes waited in the UART)",
        driver::HANDLED.load(Ordering::Relaxed),
        driver::DEFERRED.load(Ordering::Relaxed),
        driver::DRAINED_AFTER_SWAP.load(Ordering::Relaxed),
        driver::THROTTLE_RESUMES.load(Ordering::Relaxed)
    );
    println!("uart-test: {}", driver::describe());
    for line in reclaim_retired()? {
        println!("{line}");
    }
    let verdict = result.ok_or("the reader left no result")?;
    if !verdict.starts_with("received") || swaps == 0 {
        return Err(format!("uart-test failed: {verdict} ({swaps} swaps)"));
    }
    for line in stop_and_check()? {
        println!("{line}");
    }
    Ok(())
}

static READER_BYTES: AtomicU64 = AtomicU64::new(0);
static READER_DONE: AtomicBool = AtomicBool::new(false);
static READER_RESULT: IrqMutex<Option<String>> = IrqMutex::new(None);

/// Reads lines `NNNNNN` (six digits, counting from 0) until `end`, checking that none is missing
/// or out of order.
fn uart_reader() {
    let mut line = Vec::new();
    let mut expected: u64 = 0;
    let mut bytes: u64 = 0;
    let mut buf = [0u8; 256];
    let mut error: Option<String> = None;
    loop {
        let n = driver::read(&mut buf);
        if n == 0 {
            task::sleep_us(200);
            continue;
        }
        bytes += n as u64;
        READER_BYTES.store(bytes, Ordering::SeqCst);
        for &byte in &buf[..n] {
            if byte != b'\n' {
                line.push(byte);
                continue;
            }
            let text = core::str::from_utf8(&line).unwrap_or("");
            if text == "end" {
                let verdict = match error.take() {
                    None => format!(
                        "received {bytes} bytes: lines 0..{expected} in order, none missing, then `end`"
                    ),
                    Some(e) => format!("FAILED after {bytes} bytes: {e}"),
                };
                *READER_RESULT.lock() = Some(verdict);
                READER_DONE.store(true, Ordering::SeqCst);
                return;
            }
            match text.parse::<u64>() {
                Ok(n) if n == expected => expected += 1,
                _ if error.is_none() => {
                    error = Some(format!("line {expected} expected, got {text:?}"));
                }
                _ => {}
            }
            line.clear();
        }
    }
}
