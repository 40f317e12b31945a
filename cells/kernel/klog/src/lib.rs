//! `klog`: the kernel log cell.
//!
//! A fixed-capacity ring buffer of [`CAPACITY`] log entries. When the ring is full the oldest
//! entry is overwritten and counted as dropped. Every entry is also handed to the built-in
//! [`Sink`], which counts entries per level, and entries are formatted through
//! `&mut dyn core::fmt::Write`.
//!
//! The base image links this crate too and the loader binds the cell's [`LOG`] to the image's,
//! so `LOG` outlives every loaded copy of the cell: it must never hold a pointer into one (a
//! boxed trait object's vtable, a function pointer). That is why the sink is held by value and
//! called through `&mut dyn Sink` made on the spot, not kept as a `Box<dyn Sink>`: a box made by
//! one cell's code and left in the image's ring would call into unmapped memory once that cell
//! is gone.
//!
//! Interface (all `pub`, non-generic, `#[inline(never)]`):
//! - `init() -> Result<(), String>`: log a greeting.
//! - `push(level: u32, target: &str, message: &str) -> u64`: append, returns the sequence number.
//! - `len() -> usize`: number of entries held.
//! - `is_empty() -> bool`: whether no entry is held.
//! - `dropped() -> u64`: number of entries overwritten since the last `clear`.
//! - `dump() -> Vec<String>`: the held entries as formatted lines, oldest first.
//! - `clear()`: drop all entries and reset the dropped counter (sequence numbers keep growing).
//! - `count_at_level(level: u32) -> u64`: entries ever pushed at `level`, as seen by the sinks.
//! - `revision() -> String`: which version of the cell this is.
//!
//! Levels follow `log::Level`: 1 = ERROR, 2 = WARN, 3 = INFO, 4 = DEBUG, 5 = TRACE.
#![cfg_attr(not(test), no_std)]
#![deny(missing_docs)]

extern crate alloc;

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::{self, Write};

/// Number of entries the ring holds before it starts dropping the oldest.
pub const CAPACITY: usize = 256;

/// Highest level number that gets its own counter; higher levels count as TRACE.
const MAX_LEVEL: usize = 5;

/// One log entry.
#[derive(Clone, Debug)]
pub struct Entry {
    /// Sequence number, starting at 1, never reused.
    pub seq: u64,
    /// Level (1 = ERROR .. 5 = TRACE).
    pub level: u32,
    /// Module or subsystem that produced the entry.
    pub target: String,
    /// The message text.
    pub message: String,
}

impl Entry {
    /// Writes the entry as one line (no trailing newline) into any formatter.
    pub fn format_into(&self, out: &mut dyn Write) -> fmt::Result {
        write!(
            out,
            "[{:>6}] {:<5} {}: {}",
            self.seq,
            level_name(self.level),
            self.target,
            self.message
        )
    }
}

/// Receives every entry pushed into the log.
pub trait Sink: Send {
    /// Called once per pushed entry, with the log lock held: must not call back into `klog`.
    fn accept(&mut self, entry: &Entry);
    /// Number of entries at `level` this sink has seen, if it counts them.
    fn count(&self, _level: u32) -> Option<u64> {
        None
    }
}

/// The built-in sink: counts entries per level.
struct LevelCounter {
    counts: [u64; MAX_LEVEL + 1],
}

impl Sink for LevelCounter {
    fn accept(&mut self, entry: &Entry) {
        self.counts[clamp_level(entry.level)] += 1;
    }

    fn count(&self, level: u32) -> Option<u64> {
        Some(self.counts[clamp_level(level)])
    }
}

fn clamp_level(level: u32) -> usize {
    (level as usize).min(MAX_LEVEL)
}

fn level_name(level: u32) -> &'static str {
    match level {
        0 => "OFF",
        1 => "ERROR",
        2 => "WARN",
        3 => "INFO",
        4 => "DEBUG",
        _ => "TRACE",
    }
}

/// The state of the log: the ring, its counters and the sinks.
pub struct Ring {
    slots: Vec<Entry>,
    /// Index of the oldest entry once the ring is full.
    head: usize,
    next_seq: u64,
    dropped: u64,
    counter: LevelCounter,
}

impl Ring {
    /// An empty ring (usable in a `static`).
    pub const fn new() -> Self {
        Ring {
            slots: Vec::new(),
            head: 0,
            next_seq: 1,
            dropped: 0,
            counter: LevelCounter {
                counts: [0; MAX_LEVEL + 1],
            },
        }
    }

    /// The sinks every entry goes to (see the crate documentation for why they are not boxed).
    fn sinks(&mut self) -> [&mut dyn Sink; 1] {
        [&mut self.counter]
    }

    /// Appends an entry, overwriting the oldest one when full; returns its sequence number.
    pub fn push(&mut self, level: u32, target: &str, message: &str) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        let entry = Entry {
            seq,
            level,
            target: String::from(target),
            message: String::from(message),
        };
        for sink in self.sinks() {
            sink.accept(&entry);
        }
        if self.slots.len() < CAPACITY {
            self.slots.push(entry);
        } else {
            self.slots[self.head] = entry;
            self.head = (self.head + 1) % CAPACITY;
            self.dropped += 1;
        }
        seq
    }

    /// Entries oldest first.
    fn iter(&self) -> impl Iterator<Item = &Entry> {
        let (newer, older) = self.slots.split_at(self.head);
        older.iter().chain(newer.iter())
    }

    /// Formatted lines, oldest first.
    pub fn dump(&self) -> Vec<String> {
        self.iter()
            .map(|e| {
                let mut line = String::new();
                // Writing into a String cannot fail.
                let _ = e.format_into(&mut line);
                line
            })
            .collect()
    }

    /// Removes all entries and resets the dropped counter.
    pub fn clear(&mut self) {
        self.slots.clear();
        self.head = 0;
        self.dropped = 0;
    }

    /// Sum of what the sinks counted at `level`.
    pub fn count_at_level(&self, level: u32) -> u64 {
        let sink: &dyn Sink = &self.counter;
        sink.count(level).unwrap_or(0)
    }
}

impl Default for Ring {
    fn default() -> Self {
        Self::new()
    }
}

/// The log. `pub` so that a new version of this cell rebinds to it on a live swap.
#[doc(hidden)]
pub static LOG: spin::Mutex<Ring> = spin::Mutex::new(Ring::new());

/// Cell entry point: logs a greeting.
#[inline(never)]
pub fn init() -> Result<(), String> {
    let seq = push(3, "klog", "kernel log ready");
    log::info!("klog: ring of {CAPACITY} entries ready (seq {seq})");
    Ok(())
}

/// Appends an entry; returns its sequence number.
#[inline(never)]
pub fn push(level: u32, target: &str, message: &str) -> u64 {
    LOG.lock().push(level, target, message)
}

/// Number of entries currently held (at most [`CAPACITY`]).
#[inline(never)]
pub fn len() -> usize {
    LOG.lock().slots.len()
}

/// Whether the log holds no entry.
#[inline(never)]
pub fn is_empty() -> bool {
    LOG.lock().slots.is_empty()
}

/// Number of entries overwritten because the ring was full.
#[inline(never)]
pub fn dropped() -> u64 {
    LOG.lock().dropped
}

/// The held entries as formatted lines, oldest first.
#[inline(never)]
pub fn dump() -> Vec<String> {
    LOG.lock().dump()
}

/// Drops all entries and resets the dropped counter; sequence numbers keep growing.
#[inline(never)]
pub fn clear() {
    LOG.lock().clear()
}

/// Number of entries ever pushed at `level` (as counted by the sinks).
#[inline(never)]
pub fn count_at_level(level: u32) -> u64 {
    LOG.lock().count_at_level(level)
}

/// Which version of this cell is running, as one line.
#[inline(never)]
pub fn revision() -> String {
    String::from("klog v1: ring buffer of 256 entries with level-counting sinks")
}

// The interface, checked against cell-abi at compile time: hosts bind these functions by the
// types declared there.
const _: cell_abi::Init = init;
const _: cell_abi::klog::Push = push;
const _: cell_abi::klog::Len = len;
const _: cell_abi::klog::IsEmpty = is_empty;
const _: cell_abi::klog::Dropped = dropped;
const _: cell_abi::klog::Dump = dump;
const _: cell_abi::klog::Clear = clear;
const _: cell_abi::klog::CountAtLevel = count_at_level;
const _: cell_abi::Revision = revision;

/// The plain-state promise ([`cell_abi::PLAIN_STATE`]): nothing reachable from this cell's statics
/// points into its own code or read-only data, so a retired version of it may be freed while a
/// newer version runs on its statics.
#[inline(never)]
pub fn plain_state() {}
const _: cell_abi::PlainState = plain_state;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_and_dump_in_order() {
        let mut ring = Ring::new();
        assert_eq!(ring.push(1, "a", "first"), 1);
        assert_eq!(ring.push(3, "b", "second"), 2);
        let lines = ring.dump();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0], "[     1] ERROR a: first");
        assert_eq!(lines[1], "[     2] INFO  b: second");
        assert_eq!(ring.count_at_level(1), 1);
        assert_eq!(ring.count_at_level(3), 1);
        assert_eq!(ring.count_at_level(4), 0);
    }

    #[test]
    fn wraps_around_and_counts_drops() {
        let mut ring = Ring::new();
        let extra = 10;
        for i in 0..CAPACITY + extra {
            ring.push(4, "t", &format!("m{i}"));
        }
        assert_eq!(ring.slots.len(), CAPACITY);
        assert_eq!(ring.dropped, extra as u64);
        let lines = ring.dump();
        assert_eq!(lines.len(), CAPACITY);
        assert!(lines[0].ends_with(&format!("t: m{extra}")), "{}", lines[0]);
        let last = CAPACITY + extra - 1;
        assert!(lines[CAPACITY - 1].ends_with(&format!("t: m{last}")));
        // Sequence numbers are strictly increasing, oldest first.
        let seqs: Vec<u64> = ring.iter().map(|e| e.seq).collect();
        assert!(seqs.windows(2).all(|w| w[0] + 1 == w[1]));
        assert_eq!(ring.count_at_level(4), (CAPACITY + extra) as u64);
    }

    #[test]
    fn clear_keeps_sequence() {
        let mut ring = Ring::new();
        for _ in 0..CAPACITY + 1 {
            ring.push(2, "t", "x");
        }
        ring.clear();
        assert!(ring.dump().is_empty());
        assert_eq!(ring.dropped, 0);
        assert_eq!(ring.push(2, "t", "y"), CAPACITY as u64 + 2);
    }

    #[test]
    fn global_interface() {
        let before = count_at_level(5);
        init().unwrap();
        let seq = push(5, "test", "hello");
        assert!(seq >= 2);
        assert!(len() >= 1 && !is_empty());
        assert!(dump().iter().any(|l| l.ends_with("test: hello")));
        assert!(count_at_level(5) > before);
        assert!(count_at_level(99) >= 1, "levels above TRACE count as TRACE");
        assert!(revision().starts_with("klog v1:"));
    }
}
