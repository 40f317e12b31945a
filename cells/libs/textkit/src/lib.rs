//! `textkit`: text search with the `regex` crate, a library cell that uses `std`.
//!
//! `regex` and its crates (`regex-automata`, `regex-syntax`, `aho-corasick`; `memchr` when the
//! base image does not link it) are dependency cells. They exercise what a popular crate brings:
//! heavy generics, trait objects (`regex-automata`'s search strategies are `Arc<dyn Strategy>`),
//! and thread-locals reached from this cell's code (the pool that hands each thread its search
//! cache keys it by a `thread_local!` of `regex-automata`, inlined here: a `TLSGD` reference from
//! this object to another cell's thread-local).
//!
//! Interface (all `pub`, non-generic, `#[inline(never)]`):
//! - `find_all(pattern: &str, text: &str) -> Result<Vec<String>, String>`
//! - `replace_all(pattern: &str, text: &str, with: &str) -> Result<String, String>`
//! - `captures(pattern: &str, text: &str) -> Result<Vec<Option<String>>, String>`: the groups
//!   of the first match.
//! - `word_count(text: &str) -> usize`: through one compiled, shared `Regex`.
//! - `line_checksums(text: &str) -> Vec<u32>`: the CRC-32 of each line, with `crc32fast`, a
//!   dependency cell the kernel cell `kvstore` uses too (one cell serves both).
#![deny(missing_docs)]

use std::sync::LazyLock;

use regex::Regex;

/// A regex compiled once and shared by every thread: each thread that searches with it takes a
/// cache from the pool, keyed by its thread id (a thread-local of `regex-automata`).
static WORD: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\b\w+\b").expect("valid regex"));

fn compile(pattern: &str) -> Result<Regex, String> {
    Regex::new(pattern).map_err(|e| e.to_string())
}

/// Every non-overlapping match of `pattern` in `text`.
#[inline(never)]
pub fn find_all(pattern: &str, text: &str) -> Result<Vec<String>, String> {
    let re = compile(pattern)?;
    Ok(re.find_iter(text).map(|m| m.as_str().to_owned()).collect())
}

/// `text` with every match of `pattern` replaced by `with` (`$1` names a group).
#[inline(never)]
pub fn replace_all(pattern: &str, text: &str, with: &str) -> Result<String, String> {
    Ok(compile(pattern)?.replace_all(text, with).into_owned())
}

/// The groups of the first match of `pattern` in `text` (group 0 is the whole match); empty when
/// nothing matches.
#[inline(never)]
pub fn captures(pattern: &str, text: &str) -> Result<Vec<Option<String>>, String> {
    let re = compile(pattern)?;
    Ok(re
        .captures(text)
        .map(|c| c.iter().map(|g| g.map(|m| m.as_str().to_owned())).collect())
        .unwrap_or_default())
}

/// The number of words in `text`.
#[inline(never)]
pub fn word_count(text: &str) -> usize {
    WORD.find_iter(text).count()
}

/// The CRC-32 of each line of `text`.
#[inline(never)]
pub fn line_checksums(text: &str) -> Vec<u32> {
    text.lines()
        .map(|l| crc32fast::hash(l.as_bytes()))
        .collect()
}

// The interface, checked against cell-abi at compile time: hosts bind these functions by the
// types declared there.
const _: cell_abi::textkit::FindAll = find_all;
const _: cell_abi::textkit::ReplaceAll = replace_all;
const _: cell_abi::textkit::Captures = captures;
const _: cell_abi::textkit::WordCount = word_count;
const _: cell_abi::textkit::LineChecksums = line_checksums;
