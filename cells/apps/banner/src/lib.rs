//! `banner`: an application with its own release of a third-party crate.
//!
//! It depends on `unicode-width` 0.2 while the kernel's `columns` library uses 0.1. Starting it
//! loads `unicode-width` 0.2 as a dependency cell into the application's namespace; `columns`
//! keeps binding to 0.1 in `_kernel`. For each argument it records both widths: its own (0.2)
//! and the kernel's (through `columns`, 0.1).
#![cfg_attr(not(test), no_std)]
#![deny(missing_docs)]

extern crate alloc;

use alloc::string::String;
use alloc::vec::Vec;

use unicode_width::UnicodeWidthStr;

/// `(own width, kernel's width)` of each argument of the last run.
pub static LAST: spin::Mutex<Vec<(usize, usize)>> = spin::Mutex::new(Vec::new());

/// Measures every argument with both releases; returns 0.
#[inline(never)]
pub fn main(args: &[String]) -> i32 {
    let mut last = LAST.lock();
    last.clear();
    for a in args {
        last.push((a.width(), columns::width(a)));
    }
    0
}

/// The widths of the last run: `(unicode-width 0.2, unicode-width 0.1 through columns)`.
#[inline(never)]
pub fn widths() -> Vec<(usize, usize)> {
    LAST.lock().clone()
}

/// Releases what the statics hold.
#[inline(never)]
pub fn deinit() {
    *LAST.lock() = Vec::new();
}

// The interface, checked against cell-abi at compile time: hosts bind these functions by the
// types declared there.
const _: cell_abi::Main = main;
const _: cell_abi::banner::Widths = widths;
const _: cell_abi::Deinit = deinit;
