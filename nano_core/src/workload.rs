//! The workload: real work across the kernel cells, through handles, with the results collected
//! so that the demo can print them and the tests can check them.

use std::panic::{catch_unwind, AssertUnwindSafe};

use anyhow::{anyhow, Result};
use cell_abi::{frame_alloc, klog, memfs, sched, tls_stats};

use crate::kernel::Kernel;
pub use crate::panic::panic_message;

/// What the workload did and saw.
#[derive(Clone, Debug, Default)]
pub struct WorkloadReport {
    /// `frame_alloc::total_frames`.
    pub frames_total: usize,
    /// Free frames before the workload.
    pub frames_free_before: usize,
    /// Frames the workload allocated directly.
    pub frames_allocated: Vec<u64>,
    /// The error `frame_alloc::free_frame` gave for a double free.
    pub double_free_error: String,
    /// Free frames after the tasks and files of the workload exist.
    pub frames_free_after: usize,
    /// Task ids spawned by the workload.
    pub spawned: Vec<u64>,
    /// The next eight tasks the scheduler picked.
    pub schedule_order: Vec<u64>,
    /// `sched::tasks` afterwards.
    pub tasks: Vec<String>,
    /// `memfs::list("/")` afterwards.
    pub root_listing: Vec<String>,
    /// The contents read back from `/home/notes.txt`.
    pub notes: String,
    /// Whether the error for reading a missing file named the path.
    pub missing_file_error: String,
    /// The panic message caught from `memfs::read_or_panic`, if it panicked.
    pub panic_caught: Option<String>,
    /// Whether the file system still worked after the panic.
    pub fs_works_after_panic: bool,
    /// Number of lines in the kernel log ring buffer.
    pub klog_lines: usize,
    /// The last few of them.
    pub klog_tail: Vec<String>,
    /// `tls_stats::record` totals seen by each of several threads.
    pub tls_per_thread: Vec<u64>,
}

/// Runs the workload.
pub fn run(kernel: &mut Kernel) -> Result<WorkloadReport> {
    let mut r = WorkloadReport::default();
    let total = kernel.bind(frame_alloc::TOTAL_FRAMES)?;
    let free_count = kernel.bind(frame_alloc::FREE_COUNT)?;
    let alloc = kernel.bind(frame_alloc::ALLOC_FRAME)?;
    let free = kernel.bind(frame_alloc::FREE_FRAME)?;
    r.frames_total = (total.get())();
    r.frames_free_before = (free_count.get())();
    for _ in 0..4 {
        let frame = (alloc.get())().ok_or_else(|| anyhow!("frame_alloc is out of frames"))?;
        r.frames_allocated.push(frame);
    }
    let last = *r.frames_allocated.last().unwrap_or(&0);
    (free.get())(last).map_err(|e| anyhow!("freeing frame {last:#x}: {e}"))?;
    r.double_free_error = match (free.get())(last) {
        Ok(()) => String::from("(no error: double free accepted)"),
        Err(e) => e,
    };

    let spawn = kernel.bind(sched::SPAWN)?;
    let schedule = kernel.bind(sched::SCHEDULE)?;
    let tasks = kernel.bind(sched::TASKS)?;
    for (name, prio) in [("shell", 2), ("netd", 1), ("fsd", 3)] {
        r.spawned
            .push((spawn.get())(name, prio).map_err(|e| anyhow!("spawning {name}: {e}"))?);
    }
    for _ in 0..8 {
        if let Some(t) = (schedule.get())() {
            r.schedule_order.push(t);
        }
    }
    r.tasks = (tasks.get())();

    let create = kernel.bind(memfs::CREATE)?;
    let read = kernel.bind(memfs::READ)?;
    let list = kernel.bind(memfs::LIST)?;
    let read_or_panic = kernel.bind(memfs::READ_OR_PANIC)?;
    let notes = "cells are linked at run time\n".repeat(200);
    (create.get())("/home/notes.txt", notes.as_bytes())
        .map_err(|e| anyhow!("memfs::create: {e}"))?;
    r.notes = String::from_utf8_lossy(
        &(read.get())("/home/notes.txt").map_err(|e| anyhow!("memfs::read: {e}"))?,
    )
    .into_owned();
    r.root_listing = (list.get())("/").map_err(|e| anyhow!("memfs::list: {e}"))?;
    r.missing_file_error = (read.get())("/no/such/file").err().unwrap_or_default();
    r.frames_free_after = (free_count.get())();

    let f = read_or_panic.get();
    // The panic is expected: keep the default hook from printing it as if it were a crash.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let caught = catch_unwind(AssertUnwindSafe(|| f("/no/such/file")));
    std::panic::set_hook(hook);
    r.panic_caught = caught.err().map(|p| panic_message(&*p));
    r.fs_works_after_panic = (read.get())("/home/notes.txt").is_ok();

    let dump = kernel.bind(klog::DUMP)?;
    let lines = (dump.get())();
    r.klog_lines = lines.len();
    r.klog_tail = lines.iter().rev().take(5).rev().cloned().collect();

    if let Ok(record) = kernel.bind(tls_stats::RECORD) {
        let mut threads = Vec::new();
        for t in 0..3u64 {
            let record = record.clone();
            threads.push(std::thread::spawn(move || {
                let mut last = 0;
                for _ in 0..=t {
                    last = (record.get())(10);
                }
                last
            }));
        }
        for t in threads {
            r.tls_per_thread.push(
                t.join()
                    .map_err(|_| anyhow!("a tls_stats thread panicked"))?,
            );
        }
    }
    log::info!(target: "nano_core", "workload finished");
    Ok(r)
}
