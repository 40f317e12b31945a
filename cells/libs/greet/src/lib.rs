//! `greet` v1: a library cell that formats greetings and counts them.
//!
//! Its second version (`cells/upgrades/greet`) has the same crate identity and a different
//! greeting: an application that brings it gets it in its own namespace while the kernel and
//! other applications keep this one.
//!
//! Interface: [`greeting`], [`greeted`], [`revision`].

#![cfg_attr(not(test), no_std)]
#![deny(missing_docs)]

extern crate alloc;

use alloc::format;
use alloc::string::String;
use core::sync::atomic::{AtomicU64, Ordering};

/// Greetings made by this copy of the library.
pub static GREETED: AtomicU64 = AtomicU64::new(0);

/// A greeting for `name`.
#[inline(never)]
pub fn greeting(name: &str) -> String {
    GREETED.fetch_add(1, Ordering::Relaxed);
    format!("Hello, {name}!")
}

/// How many greetings this copy made.
#[inline(never)]
pub fn greeted() -> u64 {
    GREETED.load(Ordering::Relaxed)
}

/// Which version this is.
#[inline(never)]
pub fn revision() -> String {
    String::from("greet v1")
}

// The interface, checked against cell-abi at compile time: hosts bind these functions by the
// types declared there.
const _: cell_abi::greet::Greeting = greeting;
const _: cell_abi::greet::Greeted = greeted;
const _: cell_abi::Revision = revision;

/// The plain-state promise ([`cell_abi::PLAIN_STATE`]): nothing reachable from this cell's statics
/// points into its own code or read-only data, so a retired version of it may be freed while a
/// newer version runs on its statics.
#[inline(never)]
pub fn plain_state() {}
const _: cell_abi::PlainState = plain_state;

#[cfg(test)]
mod tests {
    #[test]
    fn greets_and_counts() {
        let before = super::greeted();
        assert_eq!(super::greeting("cells"), "Hello, cells!");
        assert_eq!(super::greeted(), before + 1);
    }
}
