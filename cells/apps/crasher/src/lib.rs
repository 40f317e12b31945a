//! `crasher`: an application cell that panics, to show that a panic in an application unwinds to
//! its entry point and takes nothing else down.

#![cfg_attr(not(test), no_std)]
#![deny(missing_docs)]

extern crate alloc;

use alloc::string::String;

/// Greets its first argument, then panics.
#[inline(never)]
pub fn main(args: &[String]) -> i32 {
    let who = args.first().map(String::as_str).unwrap_or("nobody");
    let g = greet::greeting(who);
    panic!("crasher: deliberately panicking after `{g}`");
}

// The interface, checked against cell-abi at compile time: hosts bind these functions by the
// types declared there.
const _: cell_abi::Main = main;
