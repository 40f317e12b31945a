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
//! | `view` | string | which view follows: `ls`, `crates`, `info`, `tree`, `invert`, `invert_crate`, `why`, `symbols`, `unresolved`, `cycles`, `addr` |
//!
//! Shared shapes:
//!
//! - **cell** `{id, name, version, namespace, origin, kind, state}`: `id` is the registry id (`0`
//!   is the base image `nano_core`, `1` the platform); `namespace` is `null` for those two;
//!   `origin` is `object` \| `base_image` \| `platform`; `kind` is where in `cells/` it came
//!   from, `kernel` \| `libs` \| `apps` \| `upgrades` \| `deps` (a dependency crate: `name` is
//!   the crate name, `version` its release) or `null`; `state` is `live` \| `retired`.
//! - **entry** `{name, version, kind, key, base_image}`: a crate of the build manifest, loaded or
//!   not: a cell's crate or a dependency crate (`kind` `deps`). `key` is how the manifest names it
//!   (`regex-1.13.2`; a cell's name); `base_image` says that the base image links this build of a
//!   dependency crate, so cells bind to the image instead of loading it.
//! - **build** `{key, package, source, features, metadata_hash, in_base_image}`: which build of a
//!   crate a dependency cell is (`crate_metadata::CrateInfo`); `source` is cargo's source id
//!   (`registry+https://github.com/rust-lang/crates.io-index`) or `path`.
//! - **edge** `{edge, dependent, section, offset, slot, kind, addend, provider, symbol,
//!   demangled}`: the slot at `offset` in the dependent's section `section` (address `slot`)
//!   holds the address of the provider's `symbol` (+ `addend`). `kind` is `got` \| `data` \|
//!   `tls_pair` \| `handle` \| `direct`. Names are mangled; `demangled` is the path without hash.
//!   An edge from an application's cell carries `rule`, the export-policy rule that allowed it
//!   (`app→kernel: interface `greet::greeting``, `app→own: granted `greet``, or `… refused: …`).
//!
//! Views:
//!
//! - `ls`: `cells: [{cell, kind, crate, size, object_size, mapped_bytes, dependents,
//!   dependencies, base_addr}]`; `kind` as in a cell; `crate` is the build (for a dependency
//!   cell) or `null`; `dependents` and `dependencies` count distinct cells.
//! - `crates` (`ls --crates`): `crates: [{name, version, exports, key, package, source,
//!   features, metadata_hash, in_base_image, cells: [cell], users: [entry], bound_by: [{cell,
//!   slots}]}]`, every dependency crate of the manifest: `cells` where it is loaded (empty when
//!   the base image links it, or when it exports nothing, `exports` 0), `users` the entries
//!   compiled against it directly (the manifest's `crates` lists), `bound_by` the cells whose
//!   slots bind to it (to its cells, or to the base image's copy of it).
//! - `info`: `cell`, `kind`, `crate` (build or `null`), `crates: [{crate: entry, cells: [cell],
//!   slots, exports}]` (the dependency crates it is compiled against, the cells each is loaded as
//!   where this cell can see them, and this cell's slots bound to it), `users: [entry]` (what is
//!   compiled against it), `dependents: [{cell, slots}]` (what binds to it), `sha256`,
//!   `object_size`, `size`, `base_addr`, `stats` `{relocations, prelinked, got_slots, stubs,
//!   mapped_bytes, load_nanos, unwind_checked_at_build, names_from_build}` (`relocations`
//!   applied by the load, `prelinked` by the build; the unwind table checked by the build or at
//!   load; the metadata's names read from the build's `.cell.names` or found one by one),
//!   `sections: [{name, kind, addr, size, align}]`, `exports: [{symbol, demangled,
//!   kind, size, section, addr, users: [{cell, slots}]}]`, `imports: [{symbol, demangled,
//!   provider: cell, slots, kinds, rule?}]` (`rule` as on an edge), and `app_interface:
//!   {items}` when the cell declares an application interface.
//! - `tree`: `depth` (`null` or the limit), `roots: [node]`; a node is `{cell, size, slots,
//!   repeated, children: [node]}` plus `symbols` (mangled) for a base-image or platform leaf
//!   under `--all`, and `crates` (`["log 0.4.35"]`) for a base-image leaf whose parent uses
//!   dependency crates the image links; `slots` counts the parent's slots that bind to this cell
//!   (0 for a dependency cell the parent is compiled against but binds nothing in); `repeated`
//!   means the node's dependencies are listed where it first occurs; `rules` lists the distinct
//!   export-policy rules of the parent's slots when the parent is an application's cell.
//! - `invert`: `cell`, `dependents: [{cell, depth, via: cell, slots: [edge]}]`, nearest first;
//!   `via` is the cell that `slots` bind to (the inverted cell, or a dependent nearer to it).
//! - `invert_crate` (`--invert` of a dependency crate): `crate: entry`, `info: build`,
//!   `exports`, `cells: [cell]` (where it is loaded), `others: [entry]` (its other releases in
//!   the manifest), `prepared: [{upgrade: entry, to, rebuilt: [name]}]` (the prepared dependency
//!   upgrades that move it, the key they move it to and the cells the build rebuilt with them),
//!   `dependents: [{crate: entry, depth, via: entry, cells: [{cell, slots: [edge]}]}]`: every
//!   entry compiled against the crate,
//!   transitively, nearest first (a bump changes the symbol hashes of each), `via` the entry it
//!   reaches the crate through, and for each cell it is loaded as, the slots bound to `via`'s
//!   cells or to the base image's copy of `via`.
//! - `why`: `from`, `to`, `path: [{from, to, symbols: [{symbol, demangled, slots: [edge]}]}]`,
//!   the shortest chain of uses; one hop when `from` uses `to` directly, empty when it does not
//!   depend on it.
//! - `symbols`: `cell`, `uses: [edge]` (its slots), `used_by: [edge]` (slots that bind to it).
//! - `unresolved`: `cells: [{name, version, namespace, message, missing: [{name, other_hash,
//!   hidden_in, failed_provider, defined_by}]}]`; `failed_provider` names a cell that exports the
//!   symbol but failed to link itself; `defined_by` the cell of the manifest that exports it
//!   (`unicode_width 0.1.14`), as the loader's catalog names it.
//! - `cycles`: `cycles: [[cell]]`, each a strongly connected component of object cells.
//! - `addr`: `addr`, `hit`: `null` or `{cell, section, section_addr, section_offset, symbol,
//!   demangled, symbol_offset, slot}` where `slot` is the edge when the address is a slot.
//!
//! The whole snapshot (`cargo cell snapshot`) is the model itself: `{source, registry,
//! namespaces, unresolved, manifest}` with the registry's, namespaces' and manifest's serde form
//! (`crate_metadata::Registry`, `namespace::Namespaces`, `crate_metadata::Manifest`);
//! `manifest` is absent when unknown (what a running `nano_core` sends has none).

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
