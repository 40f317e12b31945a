//! `counter` (v2): the same counter, and a configuration with a changed layout.
//!
//! `COUNTER` has v1's exact type, so a swap binds v2 to v1's memory: no event is lost. `CONFIG`
//! grows a field, so [`transfer_state`] builds it from v1's. The transfer refuses mode 777 with
//! an error and panics on mode 666, which is how the tests show that a failed transfer leaves
//! the system as it was.
//!
//! Interface: v1's ([`bump`], [`count`], [`mode`], [`set_mode`], [`revision`], [`init`], [`hold`],
//! [`call`]) plus [`generation`] and [`transfer_state`].

#![cfg_attr(not(test), no_std)]
#![deny(missing_docs)]

extern crate alloc;

use alloc::format;
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

/// The number of events counted, by every version (v1's layout, kept).
pub static COUNTER: AtomicU64 = AtomicU64::new(0);

/// v2's configuration: the mode, and how many times the state was transferred into v2.
#[repr(C)]
pub struct Config {
    /// The mode.
    pub mode: AtomicU64,
    /// Transfers into this version so far.
    pub generation: AtomicU64,
}

/// v1's configuration, as v2 reads it during a transfer.
#[repr(C)]
struct ConfigV1 {
    mode: AtomicU64,
}

/// The configuration.
pub static CONFIG: Config = Config {
    mode: AtomicU64::new(1),
    generation: AtomicU64::new(0),
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

/// How many times state was transferred into v2.
#[inline(never)]
pub fn generation() -> u64 {
    CONFIG.generation.load(Ordering::Relaxed)
}

/// Which version this is.
#[inline(never)]
pub fn revision() -> String {
    format!("counter v2 (generation {})", generation())
}

/// Nothing to set up.
#[inline(never)]
pub fn init() -> Result<(), String> {
    Ok(())
}

/// The state-transfer convention: builds v2's `CONFIG` from v1's, read through `old`, which
/// gives the address of the old version's static of a path. The old state is only read.
#[inline(never)]
pub fn transfer_state(old: &dyn Fn(&str) -> Option<usize>) -> Result<(), String> {
    let addr = old("counter::CONFIG").ok_or("the old version has no counter::CONFIG")?;
    // SAFETY: the loader passes the address of v1's `CONFIG`, a live `ConfigV1` (same
    // definition, `repr(C)`) that stays mapped while the swap runs.
    let v1 = unsafe { &*(addr as *const ConfigV1) };
    let mode = v1.mode.load(Ordering::Relaxed);
    match mode {
        777 => return Err(format!("mode {mode} cannot be carried into v2")),
        666 => panic!("counter v2 refuses mode {mode}"),
        _ => {}
    }
    CONFIG.mode.store(mode, Ordering::Relaxed);
    CONFIG.generation.fetch_add(1, Ordering::Relaxed);
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
const _: cell_abi::counter::Generation = generation;
const _: cell_abi::Revision = revision;
const _: cell_abi::Init = init;
const _: cell_abi::TransferState = transfer_state;

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
    fn transfer_reads_the_old_config_and_refuses_the_bad_modes() {
        let old = ConfigV1 {
            mode: AtomicU64::new(9),
        };
        let addr = &old as *const ConfigV1 as usize;
        transfer_state(&|p: &str| (p == "counter::CONFIG").then_some(addr)).unwrap();
        assert_eq!(mode(), 9);
        assert_eq!(generation(), 1);
        old.mode.store(777, Ordering::Relaxed);
        assert!(transfer_state(&|_: &str| Some(addr))
            .unwrap_err()
            .contains("777"));
        assert!(transfer_state(&|_: &str| None).is_err());
        assert_ne!(
            core::mem::size_of::<Config>(),
            core::mem::size_of::<ConfigV1>()
        );
    }
}
