//! `tls_stats`: per-thread statistics, a hosted library cell that uses `std`.
//!
//! Each thread has its own counter (a `Cell<u64>` with a `const` initializer, no destructor) and
//! its own list of notes (a lazily initialised `RefCell<Vec<String>>`, dropped when the thread
//! exits). Both are the cell's own `thread_local!`s, so loading this cell exercises the loader's
//! cell TLS (`TLSLD`/`DTPOFF32`); `report` also reads `std`'s thread handle and prints with
//! `println!`, which use the base image's thread-locals. A process-wide total of everything
//! recorded on any thread lives in the `pub static` [`PROCESS_TOTAL`].
//!
//! Interface (all `pub`, non-generic, `#[inline(never)]`):
//! - `init() -> Result<(), String>`: print a greeting.
//! - `record(n: u64) -> u64`: add `n` to this thread's counter, return its new value.
//! - `thread_total() -> u64`: this thread's counter.
//! - `process_total() -> u64`: everything recorded on all threads.
//! - `note(s: &str) -> usize`: push `s` into this thread's notes, return their number.
//! - `notes() -> Vec<String>`: this thread's notes.
//! - `report(label: &str) -> String`: a one-line summary of this thread, also printed.
//! - `generation() -> u64`: a `const`-initialised thread-local (`.tdata`), 1 in this version, 2
//!   in the new one (`cells/upgrades/tls_stats`): a thread that starts after a swap sees the new
//!   version's initial value, one that existed keeps its own.
//! - `revision() -> String`.
#![deny(missing_docs)]

use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

thread_local! {
    static COUNTER: Cell<u64> = const { Cell::new(0) };
    static NOTES: RefCell<Vec<String>> = RefCell::new(Vec::with_capacity(4));
    /// A thread's starting generation: this version's initial value (v2 starts threads at 2).
    static GENERATION: Cell<u64> = const { Cell::new(1) };
}

/// This version's name.
pub const REVISION: &str = "tls_stats v1";

/// Which version of the cell this is.
#[inline(never)]
pub fn revision() -> String {
    String::from(REVISION)
}

/// This thread's generation: the initial value of the version under which the thread first read
/// it, plus its [`advance`]s (kept by a swap that carries thread-locals over, as every
/// thread-local is).
#[inline(never)]
pub fn generation() -> u64 {
    GENERATION.with(Cell::get)
}

/// Moves this thread's generation on by one; returns the new one.
#[inline(never)]
pub fn advance() -> u64 {
    GENERATION.with(|g| {
        g.set(g.get() + 1);
        g.get()
    })
}

/// Sum of all `record` calls on all threads.
#[doc(hidden)]
pub static PROCESS_TOTAL: AtomicU64 = AtomicU64::new(0);

/// `argc` as this cell's `.init_array` function saw it (-1 until it ran).
pub static INIT_ARRAY_ARGC: AtomicI64 = AtomicI64::new(-1);

/// Called by the loader from this cell's `.init_array` with `(argc, argv, envp)`, as glibc calls
/// a program's.
extern "C" fn record_init_args(argc: i32, _argv: *const *const u8, _envp: *const *const u8) {
    INIT_ARRAY_ARGC.store(i64::from(argc), Ordering::Relaxed);
}

#[used]
#[unsafe(link_section = ".init_array")]
static RECORD_INIT_ARGS: extern "C" fn(i32, *const *const u8, *const *const u8) = record_init_args;

/// The `argc` this cell's `.init_array` function received (-1 if it never ran).
#[inline(never)]
pub fn init_array_argc() -> i64 {
    INIT_ARRAY_ARGC.load(Ordering::Relaxed)
}

/// Cell entry point: prints a greeting.
#[inline(never)]
pub fn init() -> Result<(), String> {
    println!("tls_stats: ready (thread total {})", thread_total());
    log::info!("tls_stats: ready");
    Ok(())
}

/// Adds `n` to this thread's counter; returns the counter's new value.
#[inline(never)]
pub fn record(n: u64) -> u64 {
    PROCESS_TOTAL.fetch_add(n, Ordering::Relaxed);
    COUNTER.with(|c| {
        let value = c.get().wrapping_add(n);
        c.set(value);
        value
    })
}

/// This thread's counter.
#[inline(never)]
pub fn thread_total() -> u64 {
    COUNTER.with(Cell::get)
}

/// Everything recorded on all threads.
#[inline(never)]
pub fn process_total() -> u64 {
    PROCESS_TOTAL.load(Ordering::Relaxed)
}

/// Pushes `s` into this thread's notes; returns how many notes the thread has.
#[inline(never)]
pub fn note(s: &str) -> usize {
    NOTES.with(|notes| {
        let mut notes = notes.borrow_mut();
        notes.push(s.to_owned());
        notes.len()
    })
}

/// This thread's notes, oldest first.
#[inline(never)]
pub fn notes() -> Vec<String> {
    NOTES.with(|notes| notes.borrow().clone())
}

/// A one-line summary of this thread's statistics; also printed to standard output.
#[inline(never)]
pub fn report(label: &str) -> String {
    let thread = std::thread::current();
    let name = thread.name().unwrap_or("<unnamed>");
    let (count, last) = NOTES.with(|notes| {
        let notes = notes.borrow();
        (notes.len(), notes.last().cloned().unwrap_or_default())
    });
    let line = format!(
        "{label}: thread {name} total={} notes={count} last={last:?}",
        thread_total()
    );
    println!("{line}");
    line
}

// The interface, checked against cell-abi at compile time: hosts bind these functions by the
// types declared there.
const _: cell_abi::tls_stats::InitArrayArgc = init_array_argc;
const _: cell_abi::Init = init;
const _: cell_abi::tls_stats::Record = record;
const _: cell_abi::tls_stats::ThreadTotal = thread_total;
const _: cell_abi::tls_stats::ProcessTotal = process_total;
const _: cell_abi::tls_stats::Note = note;
const _: cell_abi::tls_stats::Notes = notes;
const _: cell_abi::tls_stats::Report = report;
const _: cell_abi::tls_stats::Generation = generation;
const _: cell_abi::tls_stats::Advance = advance;
const _: cell_abi::Revision = revision;

#[cfg(test)]
mod tests {
    use super::*;
    use std::thread;

    #[test]
    fn counters_are_per_thread() {
        let handles: Vec<_> = (1..=4u64)
            .map(|k| {
                thread::Builder::new()
                    .name(format!("worker{k}"))
                    .spawn(move || {
                        assert_eq!(thread_total(), 0);
                        for _ in 0..10 {
                            record(k);
                        }
                        assert_eq!(record(0), 10 * k);
                        thread_total()
                    })
                    .unwrap()
            })
            .collect();
        let totals: Vec<u64> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        assert_eq!(totals, vec![10, 20, 30, 40]);
        assert!(process_total() >= 100);
    }

    #[test]
    fn notes_are_per_thread_and_reported() {
        let main_before = notes().len();
        let line = thread::Builder::new()
            .name(String::from("noter"))
            .spawn(|| {
                assert_eq!(note("a"), 1);
                assert_eq!(note("b"), 2);
                record(5);
                assert_eq!(notes(), vec!["a", "b"]);
                report("stats")
            })
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(line, "stats: thread noter total=5 notes=2 last=\"b\"");
        assert_eq!(
            notes().len(),
            main_before,
            "other threads' notes are not ours"
        );
        init().unwrap();
    }
}
