//! The base image's logger. Every `log` record, from the base image or from any cell (cells bind
//! to the base image's `log` crate), is printed to stderr when its level is enabled, and pushed
//! into the kernel log ring buffer cell (`klog`) once that cell is loaded.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::RwLock;

use loader::Handle;
use log::{LevelFilter, Log, Metadata, Record};

/// The `klog::push` interface ([`cell_abi::klog::PUSH`]).
pub type PushFn = cell_abi::klog::Push;

struct Sink {
    owner: u64,
    push: Handle<PushFn>,
}

static SINK: RwLock<Option<Sink>> = RwLock::new(None);
static PRINT_LEVEL: AtomicUsize = AtomicUsize::new(0);
static NEXT_OWNER: AtomicU64 = AtomicU64::new(1);

std::thread_local! {
    /// Set while this thread is inside the logger, so a record logged by the sink itself is
    /// printed but not pushed again.
    static IN_LOGGER: Cell<bool> = const { Cell::new(false) };
}

struct NanoLogger;

static LOGGER: NanoLogger = NanoLogger;

impl Log for NanoLogger {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &Record<'_>) {
        let level = record.level();
        if (level as usize) <= PRINT_LEVEL.load(Ordering::Relaxed) {
            eprintln!("[{:5} {}] {}", level, record.target(), record.args());
        }
        if IN_LOGGER.with(|f| f.replace(true)) {
            return;
        }
        if let Ok(sink) = SINK.read() {
            if let Some(sink) = sink.as_ref() {
                let message = record.args().to_string();
                (sink.push.get())(level as u32, record.target(), &message);
            }
        }
        IN_LOGGER.with(|f| f.set(false));
    }

    fn flush(&self) {}
}

/// Installs the logger (once per process; later calls only change the print level). Records at
/// `print` or more severe are printed to stderr; every record reaches the sink.
pub fn install(print: LevelFilter) {
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(LevelFilter::Trace);
    PRINT_LEVEL.store(print as usize, Ordering::Relaxed);
}

/// Sends every record to `push` from now on. Returns a token for [`detach`].
pub fn attach(push: Handle<PushFn>) -> u64 {
    let owner = NEXT_OWNER.fetch_add(1, Ordering::Relaxed);
    if let Ok(mut sink) = SINK.write() {
        *sink = Some(Sink { owner, push });
    }
    owner
}

/// Stops sending records to the sink attached with token `owner`, if it is still the current one.
pub fn detach(owner: u64) {
    if let Ok(mut sink) = SINK.write() {
        if sink.as_ref().is_some_and(|s| s.owner == owner) {
            *sink = None;
        }
    }
}
