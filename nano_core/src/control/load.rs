//! The background load of `--load N`: threads that keep calling through cell handles while the
//! server runs, each registered with the system's epochs and quiescent between calls, counting
//! calls and wrong answers.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use anyhow::{bail, Context, Result};
use cell_abi::{counter, frame_alloc, memfs};
use loader::Handle;

use crate::kernel::Kernel;
use crate::panic::panic_message;

/// One kind of call the load makes, with what a right answer is.
#[derive(Clone)]
enum Probe {
    /// `memfs::read("/etc/motd")` must give back what it gave at the start.
    Read {
        handle: Handle<memfs::Read>,
        expect: Vec<u8>,
    },
    /// `frame_alloc::free_count()` must not exceed the frames there are.
    FreeCount {
        handle: Handle<frame_alloc::FreeCount>,
        total: usize,
    },
    /// `counter::bump()` must count up from what this thread saw last.
    Bump { handle: Handle<counter::Bump> },
}

impl Probe {
    fn name(&self) -> &'static str {
        match self {
            Probe::Read { .. } => "memfs::read(\"/etc/motd\")",
            Probe::FreeCount { .. } => "frame_alloc::free_count",
            Probe::Bump { .. } => "counter::bump",
        }
    }

    /// Makes the call; `Err` says what was wrong.
    fn call(&self, last_bump: &mut u64) -> Result<(), String> {
        match self {
            Probe::Read { handle, expect } => match (handle.get())("/etc/motd") {
                Ok(got) if got == *expect => Ok(()),
                Ok(got) => Err(format!(
                    "read {} bytes, expected the {} bytes read at the start",
                    got.len(),
                    expect.len()
                )),
                Err(e) => Err(e),
            },
            Probe::FreeCount { handle, total } => {
                let free = (handle.get())();
                if free <= *total {
                    Ok(())
                } else {
                    Err(format!("{free} free frames of {total}"))
                }
            }
            Probe::Bump { handle } => {
                let now = (handle.get())();
                let before = std::mem::replace(last_bump, now);
                if now > before {
                    Ok(())
                } else {
                    Err(format!("counted {now} after {before}: a count was lost"))
                }
            }
        }
    }
}

#[derive(Default)]
struct Counter {
    calls: AtomicU64,
    failed: AtomicU64,
}

struct Shared {
    stop: AtomicBool,
    names: Vec<&'static str>,
    counters: Vec<Counter>,
    last_failure: Mutex<Option<String>>,
}

/// The background load of `--load N`: threads that keep calling through cell handles.
pub struct Load {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

/// The load's counters at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoadStatus {
    /// Threads running.
    pub threads: usize,
    /// Calls made, in all.
    pub calls: u64,
    /// Calls that failed: an error, a wrong answer or a panic.
    pub failed: u64,
    /// Per kind of call.
    pub probes: Vec<ProbeStatus>,
    /// The last failure, if any.
    pub last_failure: Option<String>,
}

/// The counters of one kind of call.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProbeStatus {
    /// The call (`counter::bump`).
    pub name: String,
    /// Calls made.
    pub calls: u64,
    /// Calls that failed.
    pub failed: u64,
}

impl Load {
    /// Starts `threads` threads that call `memfs::read("/etc/motd")`, `frame_alloc::free_count`
    /// and `counter::bump` (those of these cells that are loaded) in a loop, each registered with
    /// the system's epochs and quiescent between calls.
    pub fn start(kernel: &mut Kernel, threads: usize) -> Result<Load> {
        let mut probes = Vec::new();
        if let Ok(handle) = kernel.bind(memfs::READ) {
            if let Ok(expect) = (handle.get())("/etc/motd") {
                probes.push(Probe::Read { handle, expect });
            }
        }
        if let (Ok(handle), Ok(total)) = (
            kernel.bind(frame_alloc::FREE_COUNT),
            kernel.bind(frame_alloc::TOTAL_FRAMES),
        ) {
            let total = (total.get())();
            probes.push(Probe::FreeCount { handle, total });
        }
        if let Ok(handle) = kernel.bind(counter::BUMP) {
            probes.push(Probe::Bump { handle });
        }
        if probes.is_empty() {
            bail!("none of memfs, frame_alloc and counter is loaded: nothing to call");
        }
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            names: probes.iter().map(Probe::name).collect(),
            counters: probes.iter().map(|_| Counter::default()).collect(),
            last_failure: Mutex::new(None),
        });
        let mut handles = Vec::new();
        for i in 0..threads {
            let probes = probes.clone();
            let mine = shared.clone();
            let epochs = kernel.system().epochs().clone();
            let thread = std::thread::Builder::new()
                .name(format!("load-{i}"))
                .spawn(move || run_load(&probes, &mine, &epochs));
            match thread {
                Ok(t) => handles.push(t),
                Err(e) => {
                    let load = Load {
                        shared,
                        threads: handles,
                    };
                    load.stop();
                    return Err(e).context("spawning a load thread");
                }
            }
        }
        Ok(Load {
            shared,
            threads: handles,
        })
    }

    /// How many threads were started.
    pub fn threads(&self) -> usize {
        self.threads.len()
    }

    /// The calls the threads make, by name.
    pub fn names(&self) -> &[&'static str] {
        &self.shared.names
    }

    /// The counters now.
    pub fn status(&self) -> LoadStatus {
        let s = &self.shared;
        let probes: Vec<ProbeStatus> = s
            .names
            .iter()
            .zip(&s.counters)
            .map(|(name, c)| ProbeStatus {
                name: (*name).to_string(),
                calls: c.calls.load(Ordering::Relaxed),
                failed: c.failed.load(Ordering::Relaxed),
            })
            .collect();
        LoadStatus {
            threads: self.threads.iter().filter(|t| !t.is_finished()).count(),
            calls: probes.iter().map(|p| p.calls).sum(),
            failed: probes.iter().map(|p| p.failed).sum(),
            probes,
            last_failure: s.last_failure.lock().ok().and_then(|f| f.clone()),
        }
    }

    /// Stops the threads, waits for them, and returns the final counters.
    pub fn stop(mut self) -> LoadStatus {
        self.shared.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        self.status()
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn run_load(probes: &[Probe], shared: &Shared, epochs: &Arc<loader::Epochs>) {
    let me = epochs.register();
    let mut last_bump = 0;
    while !shared.stop.load(Ordering::Relaxed) {
        for (probe, counter) in probes.iter().zip(&shared.counters) {
            let result = catch_unwind(AssertUnwindSafe(|| probe.call(&mut last_bump)))
                .unwrap_or_else(|p| Err(format!("panicked: {}", panic_message(&*p))));
            counter.calls.fetch_add(1, Ordering::Relaxed);
            if let Err(e) = result {
                counter.failed.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut last) = shared.last_failure.lock() {
                    *last = Some(format!("{}: {e}", probe.name()));
                }
            }
            me.quiescent();
        }
    }
}
