//! `kvstore`: a kernel key-value store built from crates.io crates.
//!
//! The entries live in a `heapless` index map (fixed capacity, no allocation) inside the
//! `pub static` [`STORE`], so a new version of this cell keeps them; each carries a CRC-32 of its
//! value (`crc32fast`) and `bitflags` flags; tags are indexed in a `hashbrown` map; paths are split
//! into a `smallvec`. None of these crates is linked into the base image: each is a dependency
//! cell, loaded before this cell and shared with every other cell that uses the same build.
//!
//! Interface (all `pub`, non-generic, `#[inline(never)]`):
//! - `init() -> Result<(), String>`: store `motd`.
//! - `put(key: &str, value: &[u8]) -> Result<u32, String>`: insert or replace; returns the CRC-32.
//! - `get(key: &str) -> Option<Vec<u8>>`, `remove(key: &str) -> bool`, `len() -> usize`.
//! - `checksum(key: &str) -> Option<u32>`: the stored CRC-32, checked against the value.
//! - `set_flags(key: &str, flags: u8) -> Result<u8, String>`, `flags(key: &str) -> Option<u8>`.
//! - `tag(key: &str, tag: &str) -> Result<usize, String>`, `tagged(tag: &str) -> Vec<String>`.
//! - `split_path(path: &str) -> Vec<String>`: the non-empty components of a `/` path.
//! - `crc32(data: &[u8]) -> u32`, `revision() -> String`.
#![cfg_attr(not(test), no_std)]
#![deny(missing_docs)]

extern crate alloc;

use alloc::string::{String, ToString};
use alloc::vec::Vec;

use heapless::index_map::FnvIndexMap;
use smallvec::SmallVec;

/// How many entries the store holds at most (a power of two, as `FnvIndexMap` wants).
pub const CAPACITY: usize = 64;
/// The longest key.
pub const KEY_MAX: usize = 32;
/// The longest value.
pub const VALUE_MAX: usize = 128;

bitflags::bitflags! {
    /// What an entry is.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Flags: u8 {
        /// May not be removed.
        const PINNED = 1;
        /// Changed since the last `checksum` call.
        const DIRTY = 2;
        /// Holds text (valid UTF-8).
        const TEXT = 4;
    }
}

/// One stored value.
#[derive(Clone, Debug)]
pub struct Entry {
    value: heapless::Vec<u8, VALUE_MAX>,
    crc: u32,
    flags: Flags,
}

/// The whole state of the cell.
pub struct Store {
    entries: FnvIndexMap<heapless::String<KEY_MAX>, Entry, CAPACITY>,
    tags: Option<hashbrown::HashMap<String, Vec<String>>>,
}

/// The store; a new version of this cell is bound to this memory.
pub static STORE: spin::Mutex<Store> = spin::Mutex::new(Store {
    entries: FnvIndexMap::new(),
    tags: None,
});

fn key_of(key: &str) -> Result<heapless::String<KEY_MAX>, String> {
    heapless::String::try_from(key)
        .map_err(|_| alloc::format!("kvstore: key `{key}` is longer than {KEY_MAX} bytes"))
}

/// Cell entry point: stores `motd`.
#[inline(never)]
pub fn init() -> Result<(), String> {
    put("motd", b"kvstore ready").map(|_| ())
}

/// Inserts or replaces `key`; returns the value's CRC-32.
#[inline(never)]
pub fn put(key: &str, value: &[u8]) -> Result<u32, String> {
    let k = key_of(key)?;
    let value: heapless::Vec<u8, VALUE_MAX> = heapless::Vec::from_slice(value)
        .map_err(|_| alloc::format!("kvstore: the value of `{key}` is over {VALUE_MAX} bytes"))?;
    let crc = crc32fast::hash(&value);
    let mut flags = Flags::DIRTY;
    if core::str::from_utf8(&value).is_ok() {
        flags |= Flags::TEXT;
    }
    let mut store = STORE.lock();
    if let Some(old) = store.entries.get(&k) {
        flags |= old.flags & Flags::PINNED;
    }
    store
        .entries
        .insert(k, Entry { value, crc, flags })
        .map_err(|_| alloc::format!("kvstore: full ({CAPACITY} entries)"))?;
    Ok(crc)
}

/// The value of `key`.
#[inline(never)]
pub fn get(key: &str) -> Option<Vec<u8>> {
    let k = key_of(key).ok()?;
    STORE.lock().entries.get(&k).map(|e| e.value.to_vec())
}

/// Removes `key` unless it is pinned; returns whether it was removed.
#[inline(never)]
pub fn remove(key: &str) -> bool {
    let Ok(k) = key_of(key) else { return false };
    let mut store = STORE.lock();
    let pinned = store
        .entries
        .get(&k)
        .is_some_and(|e| e.flags.contains(Flags::PINNED));
    !pinned && store.entries.remove(&k).is_some()
}

/// Number of entries.
#[inline(never)]
pub fn len() -> usize {
    STORE.lock().entries.len()
}

/// The CRC-32 stored with `key`, after checking it against the value (clears `DIRTY`).
#[inline(never)]
pub fn checksum(key: &str) -> Option<u32> {
    let k = key_of(key).ok()?;
    let mut store = STORE.lock();
    let entry = store.entries.get_mut(&k)?;
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&entry.value);
    if hasher.finalize() != entry.crc {
        return None;
    }
    entry.flags.remove(Flags::DIRTY);
    Some(entry.crc)
}

/// Replaces the flags of `key` (unknown bits dropped); returns the flags now set.
#[inline(never)]
pub fn set_flags(key: &str, flags: u8) -> Result<u8, String> {
    let k = key_of(key)?;
    let mut store = STORE.lock();
    let entry = store
        .entries
        .get_mut(&k)
        .ok_or_else(|| alloc::format!("kvstore: no key `{key}`"))?;
    entry.flags = Flags::from_bits_truncate(flags);
    Ok(entry.flags.bits())
}

/// The flags of `key`.
#[inline(never)]
pub fn flags(key: &str) -> Option<u8> {
    let k = key_of(key).ok()?;
    STORE.lock().entries.get(&k).map(|e| e.flags.bits())
}

/// Tags `key` with `tag`; returns how many keys carry the tag.
#[inline(never)]
pub fn tag(key: &str, tag: &str) -> Result<usize, String> {
    let k = key_of(key)?;
    let mut store = STORE.lock();
    if !store.entries.contains_key(&k) {
        return Err(alloc::format!("kvstore: no key `{key}`"));
    }
    let keys = store
        .tags
        .get_or_insert_with(hashbrown::HashMap::new)
        .entry(tag.to_string())
        .or_default();
    if !keys.iter().any(|existing| existing == key) {
        keys.push(key.to_string());
    }
    Ok(keys.len())
}

/// The keys tagged `tag`, sorted.
#[inline(never)]
pub fn tagged(tag: &str) -> Vec<String> {
    let store = STORE.lock();
    let mut keys = store
        .tags
        .as_ref()
        .and_then(|t| t.get(tag))
        .cloned()
        .unwrap_or_default();
    keys.sort();
    keys
}

/// The non-empty components of the `/`-separated `path`.
#[inline(never)]
pub fn split_path(path: &str) -> Vec<String> {
    let parts: SmallVec<[&str; 8]> = path.split('/').filter(|p| !p.is_empty()).collect();
    parts.iter().map(|p| (*p).to_string()).collect()
}

/// CRC-32 (IEEE) of `data`.
#[inline(never)]
pub fn crc32(data: &[u8]) -> u32 {
    crc32fast::hash(data)
}

/// Which version of the cell this is.
#[inline(never)]
pub fn revision() -> String {
    String::from("kvstore v1 (heapless 0.9.3)")
}

// The interface, checked against cell-abi at compile time: hosts bind these functions by the
// types declared there.
const _: cell_abi::Init = init;
const _: cell_abi::kvstore::Put = put;
const _: cell_abi::kvstore::Get = get;
const _: cell_abi::kvstore::Remove = remove;
const _: cell_abi::kvstore::Len = len;
const _: cell_abi::kvstore::Checksum = checksum;
const _: cell_abi::kvstore::SetFlags = set_flags;
const _: cell_abi::kvstore::Flags = flags;
const _: cell_abi::kvstore::Tag = tag;
const _: cell_abi::kvstore::Tagged = tagged;
const _: cell_abi::kvstore::SplitPath = split_path;
const _: cell_abi::kvstore::Crc32 = crc32;
const _: cell_abi::Revision = revision;
