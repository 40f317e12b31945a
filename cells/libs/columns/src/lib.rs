//! `columns`: text measured in terminal columns with `unicode-width` 0.1, loaded into `_kernel`.
//!
//! The `banner` application uses `unicode-width` 0.2, a semver-incompatible release that counts
//! a newline as one column where 0.1 counts none: both releases run side by side as two
//! dependency cells, each caller getting its own release's answer.
//!
//! Interface: `width(text: &str) -> usize`, `pad(text: &str, columns: usize) -> String`.
#![cfg_attr(not(test), no_std)]
#![deny(missing_docs)]

extern crate alloc;

use alloc::string::String;

use unicode_width::UnicodeWidthStr;

/// The width of `text` in columns, as `unicode-width` 0.1 measures it.
#[inline(never)]
pub fn width(text: &str) -> usize {
    text.width()
}

/// `text` padded with spaces to `columns` columns.
#[inline(never)]
pub fn pad(text: &str, columns: usize) -> String {
    let mut out = String::from(text);
    for _ in text.width()..columns {
        out.push(' ');
    }
    out
}

// The interface, checked against cell-abi at compile time: hosts bind these functions by the
// types declared there.
const _: cell_abi::columns::Width = width;
const _: cell_abi::columns::Pad = pad;
