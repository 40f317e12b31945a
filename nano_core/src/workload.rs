//! The workload: real work across the kernel cells, through handles, with the results collected
//! so that the demo can print them and the tests can check them.

use std::panic::{catch_unwind, AssertUnwindSafe};

use anyhow::{anyhow, Result};

use crate::kernel::Kernel;
pub use crate::panic::panic_message;

type AllocFrame = fn() -> Option<u64>;
type FreeFrame = fn(u64) -> Result<(), String>;
type Count = fn() -> usize;
type Spawn = fn(&str, u8) -> Result<u64, String>;
type Schedule = fn() -> Option<u64>;
type Strings = fn() -> Vec<String>;
type Create = fn(&str, &[u8]) -> Result<(), String>;
type Read = fn(&str) -> Result<Vec<u8>, String>;
type List = fn(&str) -> Result<Vec<String>, String>;
type ReadOrPanic = fn(&str) -> Vec<u8>;
type Record = fn(u64) -> u64;

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
    // Each handle's type is the exact signature of the cell function it names, as declared in the
    // cell's source under cells/: that is what every `SAFETY` comment below refers to.
    // SAFETY: `Count` is `fn() -> usize`, the signature of `frame_alloc::total_frames`.
    let total = unsafe { kernel.handle::<Count>("frame_alloc::total_frames") }?;
    // SAFETY: `Count` is `fn() -> usize`, the signature of `frame_alloc::free_count`.
    let free_count = unsafe { kernel.handle::<Count>("frame_alloc::free_count") }?;
    // SAFETY: `AllocFrame` is the signature of `frame_alloc::alloc_frame`.
    let alloc = unsafe { kernel.handle::<AllocFrame>("frame_alloc::alloc_frame") }?;
    // SAFETY: `FreeFrame` is the signature of `frame_alloc::free_frame`.
    let free = unsafe { kernel.handle::<FreeFrame>("frame_alloc::free_frame") }?;
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

    // SAFETY: `Spawn` is the signature of `sched::spawn`.
    let spawn = unsafe { kernel.handle::<Spawn>("sched::spawn") }?;
    // SAFETY: `Schedule` is the signature of `sched::schedule`.
    let schedule = unsafe { kernel.handle::<Schedule>("sched::schedule") }?;
    // SAFETY: `Strings` is `fn() -> Vec<String>`, the signature of `sched::tasks`.
    let tasks = unsafe { kernel.handle::<Strings>("sched::tasks") }?;
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

    // SAFETY: `Create` is the signature of `memfs::create`.
    let create = unsafe { kernel.handle::<Create>("memfs::create") }?;
    // SAFETY: `Read` is the signature of `memfs::read`.
    let read = unsafe { kernel.handle::<Read>("memfs::read") }?;
    // SAFETY: `List` is the signature of `memfs::list`.
    let list = unsafe { kernel.handle::<List>("memfs::list") }?;
    // SAFETY: `ReadOrPanic` is the signature of `memfs::read_or_panic`.
    let read_or_panic = unsafe { kernel.handle::<ReadOrPanic>("memfs::read_or_panic") }?;
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

    // SAFETY: `Strings` is `fn() -> Vec<String>`, the signature of `klog::dump`.
    let dump = unsafe { kernel.handle::<Strings>("klog::dump") }?;
    let lines = (dump.get())();
    r.klog_lines = lines.len();
    r.klog_tail = lines.iter().rev().take(5).rev().cloned().collect();

    // SAFETY: `Record` is the signature of `tls_stats::record`.
    if let Ok(record) = unsafe { kernel.handle::<Record>("tls_stats::record") } {
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
