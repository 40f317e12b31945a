//! `counter` (v1): a process-wide event counter and a small configuration record.
//!
//! It is the live-swap fixture: `COUNTER` keeps its layout in every version, so a swap binds the
//! new version to the old memory and no count is lost; `CONFIG` changes layout in v2
//! (`cells/upgrades/counter`), which moves it with `transfer_state`.
//!
//! Interface: [`bump`], [`count`], [`mode`], [`set_mode`], [`revision`], [`init`], and for the
//! tests of swaps that wait for callers, [`hold`] and [`call`].

#![cfg_attr(not(test), no_std)]
#![deny(missing_docs)]

extern crate alloc;

use alloc::string::String;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Stays inside this cell until `release` is set (checking it in a loop), counting the turns: a
/// thread parked inside the cell, for the tests of a swap's drain deadline.
#[inline(never)]
pub fn hold(release: &AtomicBool) -> u64 {
    let mut turns = 0u64;
    while !release.load(Ordering::Acquire) {
        turns = core::hint::black_box(turns.wrapping_add(1));
        core::hint::spin_loop();
    }
    turns
}

/// Calls `f` from inside this cell and returns what it returns: a swap asked for from there is
/// asked for from inside the cell.
#[inline(never)]
pub fn call(f: &dyn Fn() -> u64) -> u64 {
    core::hint::black_box(f())
}

/// The number of events counted, by every version.
pub static COUNTER: AtomicU64 = AtomicU64::new(0);

/// v1's configuration: a mode number.
#[repr(C)]
pub struct Config {
    /// The mode.
    pub mode: AtomicU64,
}

/// The configuration.
pub static CONFIG: Config = Config {
    mode: AtomicU64::new(1),
};

/// Counts one event; returns the count after it.
#[inline(never)]
pub fn bump() -> u64 {
    COUNTER.fetch_add(1, Ordering::Relaxed) + 1
}

/// The count.
#[inline(never)]
pub fn count() -> u64 {
    COUNTER.load(Ordering::Relaxed)
}

/// The configured mode.
#[inline(never)]
pub fn mode() -> u64 {
    CONFIG.mode.load(Ordering::Relaxed)
}

/// Sets the mode.
#[inline(never)]
pub fn set_mode(mode: u64) {
    CONFIG.mode.store(mode, Ordering::Relaxed);
}

/// Which version this is.
#[inline(never)]
pub fn revision() -> String {
    String::from("counter v1")
}

/// Nothing to set up.
#[inline(never)]
pub fn init() -> Result<(), String> {
    Ok(())
}

// The interface, checked against cell-abi at compile time: hosts bind these functions by the
// types declared there.
const _: cell_abi::counter::Bump = bump;
const _: cell_abi::counter::Count = count;
const _: cell_abi::counter::Mode = mode;
const _: cell_abi::counter::SetMode = set_mode;
const _: cell_abi::counter::Hold = hold;
const _: cell_abi::counter::Call = call;
const _: cell_abi::Revision = revision;
const _: cell_abi::Init = init;

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
    fn counts_and_keeps_a_mode() {
        let before = count();
        assert_eq!(bump(), before + 1);
        set_mode(5);
        assert_eq!(mode(), 5);
        assert_eq!(revision(), "counter v1");
    }
}
