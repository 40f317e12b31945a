//! `hola`: an application cell that brings its own version of `greet` (v2) and greets with it.
//!
//! Entry point (the application convention): [`main`] takes the arguments and returns the exit
//! code.

#![cfg_attr(not(test), no_std)]
#![deny(missing_docs)]

extern crate alloc;

use alloc::string::String;
use alloc::vec::Vec;

/// The last greetings this application made, for the host to read.
pub static LAST: spin::Mutex<Vec<String>> = spin::Mutex::new(Vec::new());

/// Greets every argument; returns 0, or 2 without arguments.
#[inline(never)]
pub fn main(args: &[String]) -> i32 {
    if args.is_empty() {
        return 2;
    }
    let mut last = LAST.lock();
    last.clear();
    for a in args {
        let g = greet::greeting(a);
        log::info!("hola: {g}");
        last.push(g);
    }
    0
}

/// The greetings of the last run.
#[inline(never)]
pub fn output() -> Vec<String> {
    LAST.lock().clone()
}

/// Releases what the application's statics hold, before its namespace is torn down (the
/// `deinit` convention: statics are never dropped, and their memory goes away with the cell).
#[inline(never)]
pub fn deinit() {
    *LAST.lock() = Vec::new();
}

// The interface, checked against cell-abi at compile time: hosts bind these functions by the
// types declared there.
const _: cell_abi::Main = main;
const _: cell_abi::hola::Output = output;
const _: cell_abi::Deinit = deinit;
