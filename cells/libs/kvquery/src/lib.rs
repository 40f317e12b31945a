//! `kvquery`: reports over the kernel cell `kvstore`.
//!
//! It is compiled against `kvstore` (a cell dependency), and so against `heapless` through it:
//! when `kvstore`'s new version moves `heapless` to another release, `cargo cell build` rebuilds
//! this cell unchanged against the new one and the swap replaces both together.
//!
//! Interface: `summary() -> String`, `tagged_values(tag: &str) -> Vec<(String, usize)>`.
#![cfg_attr(not(test), no_std)]
#![deny(missing_docs)]

extern crate alloc;

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

/// One line about the store: how many entries, and which version of `kvstore` answered.
#[inline(never)]
pub fn summary() -> String {
    format!("{} entries ({})", kvstore::len(), kvstore::revision())
}

/// The keys tagged `tag` with the length of each value.
#[inline(never)]
pub fn tagged_values(tag: &str) -> Vec<(String, usize)> {
    kvstore::tagged(tag)
        .into_iter()
        .map(|k| {
            let len = kvstore::get(&k).map_or(0, |v| v.len());
            (k, len)
        })
        .collect()
}

// The interface, checked against cell-abi at compile time: hosts bind these functions by the
// types declared there.
const _: cell_abi::kvquery::Summary = summary;
const _: cell_abi::kvquery::TaggedValues = tagged_values;
