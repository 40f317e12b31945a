//! The JSON format: one object per command, for scripts.
//!
//! # Schema (version 1)
//!
//! Every document is an object with these members, plus the members of its `view`:
//!
//! | member | type | meaning |
//! |--------|------|---------|
//! | `schema` | number | `1`; raised when a member changes meaning or disappears |
//! | `source` | `"offline"` \| `"live"` | a dry link of the built objects, or a running `nano_core`. **Offline addresses (`addr`, `slot`, `base_addr`, `section_addr`) are heap addresses of the dry link**, not where the cell will be loaded |
//! | `view` | string | which view follows: `ls`, `info`, `tree`, `invert`, `why`, `symbols`, `unresolved`, `cycles`, `addr` |
//!
//! Shared shapes:
//!
//! - **cell** `{id, name, version, namespace, origin, state}`: `id` is the registry id (`0` is
//!   the base image `nano_core`, `1` the platform); `namespace` is `null` for those two;
//!   `origin` is `object` \| `base_image` \| `platform`; `state` is `live` \| `retired`.
//! - **edge** `{edge, dependent, section, offset, slot, kind, addend, provider, symbol,
//!   demangled}`: the slot at `offset` in the dependent's section `section` (address `slot`)
//!   holds the address of the provider's `symbol` (+ `addend`). `kind` is `got` \| `data` \|
//!   `tls_pair` \| `handle` \| `direct`. Names are mangled; `demangled` is the path without hash.
//!
//! Views:
//!
//! - `ls`: `cells: [{cell, kind, size, object_size, mapped_bytes, dependents, dependencies,
//!   base_addr}]`; `kind` is `kernel` \| `libs` \| `apps` \| `null`; `dependents` and
//!   `dependencies` count distinct cells.
//! - `info`: `cell`, `kind`, `sha256`, `object_size`, `size`, `base_addr`, `stats`
//!   `{relocations, got_slots, stubs, mapped_bytes, load_nanos}`, `sections: [{name, kind, addr,
//!   size, align}]`, `exports: [{symbol, demangled, kind, size, section, addr, users: [{cell,
//!   slots}]}]`, `imports: [{symbol, demangled, provider: cell, slots, kinds}]`.
//! - `tree`: `depth` (`null` or the limit), `roots: [node]`; a node is `{cell, size, slots,
//!   repeated, children: [node]}` plus `symbols` (mangled) for a base-image or platform leaf
//!   under `--all`; `slots` counts the parent's slots that bind to this cell; `repeated` means
//!   the node's dependencies are listed where it first occurs.
//! - `invert`: `cell`, `dependents: [{cell, depth, via: cell, slots: [edge]}]`, nearest first;
//!   `via` is the cell that `slots` bind to (the inverted cell, or a dependent nearer to it).
//! - `why`: `from`, `to`, `path: [{from, to, symbols: [{symbol, demangled, slots: [edge]}]}]`,
//!   the shortest chain of uses; one hop when `from` uses `to` directly, empty when it does not
//!   depend on it.
//! - `symbols`: `cell`, `uses: [edge]` (its slots), `used_by: [edge]` (slots that bind to it).
//! - `unresolved`: `cells: [{name, version, namespace, message, missing: [{name, other_hash,
//!   hidden_in, failed_provider}]}]`; `failed_provider` names a cell that exports the symbol but
//!   failed to link itself.
//! - `cycles`: `cycles: [[cell]]`, each a strongly connected component of object cells.
//! - `addr`: `addr`, `hit`: `null` or `{cell, section, section_addr, section_offset, symbol,
//!   demangled, symbol_offset, slot}` where `slot` is the edge when the address is a slot.
//!
//! The whole snapshot (`cargo cell snapshot`) is the model itself: `{source, registry,
//! namespaces, unresolved}` with the registry's and namespaces' serde form
//! (`crate_metadata::Registry`, `namespace::Namespaces`).

use anyhow::{Context, Result};
use serde::Serialize;

use super::model::SnapshotSource;
use super::views::View;

/// The schema version of the documents.
pub const SCHEMA: u32 = 1;

#[derive(Serialize)]
struct Document<'a> {
    schema: u32,
    source: SnapshotSource,
    #[serde(flatten)]
    view: &'a View,
}

/// Renders `view` as a pretty-printed JSON document.
pub fn render(view: &View, source: SnapshotSource) -> Result<String> {
    let doc = Document {
        schema: SCHEMA,
        source,
        view,
    };
    let mut text = serde_json::to_string_pretty(&doc).context("serializing the view as JSON")?;
    text.push('\n');
    Ok(text)
}
