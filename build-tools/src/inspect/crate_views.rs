//! The views of dependency crates: `ls --crates` (every crate of the manifest, loaded or linked
//! by the base image) and `deps --invert <crate>` (what a bump of a crate touches).
//!
//! A bump of a crate changes its version, and with it the hash in every symbol of the crate and
//! of every crate compiled against it (their metadata includes their dependencies'). So what a
//! bump touches is the manifest's crate graph walked backwards from the crate
//! ([`Crates::compiled_against`](super::crates::Crates::compiled_against)), and for each entry
//! reached, the cells it is loaded as with their slots bound to the entry before it.

use std::collections::BTreeSet;

use anyhow::{bail, Result};
use crate_metadata::{CellId, Registry};

use super::crates::EntryId;
use super::model::Index;
use super::views::{
    CellRef, CrateDependent, CrateRow, EdgeRow, EntryRef, PreparedBump, TouchedCell, UseCount, View,
};

/// `ls --crates`: every dependency crate of the manifest, with where it is loaded (or that the
/// base image links it), what is compiled against it and what binds to it. With `namespace`,
/// the crates loaded there or bound to from there.
pub fn crates(index: &Index<'_>, namespace: Option<&str>) -> Result<View> {
    if index.crates.manifest().is_none() {
        bail!(
            "the crate list needs the build manifest, which this snapshot does not carry \
             (offline it always does; live, it is read from <target>/cells/manifest.json)"
        );
    }
    let in_namespace = |c: &CellRef| namespace.is_none() || c.namespace.as_deref() == namespace;
    let rows = index
        .crates
        .dependency_crates()
        .into_iter()
        .filter_map(|id| crate_row(index, id))
        .filter(|r| {
            namespace.is_none()
                || r.cells.iter().any(in_namespace)
                || r.bound_by.iter().any(|u| in_namespace(&u.cell))
        })
        .collect();
    Ok(View::Crates { crates: rows })
}

fn crate_row(index: &Index<'_>, id: EntryId) -> Option<CrateRow> {
    let e = index.crates.entry(id)?;
    let info = e.crate_info.clone()?;
    let mut users: Vec<EntryRef> = index
        .crates
        .users(id)
        .iter()
        .filter_map(|u| index.crates.entry(*u))
        .map(EntryRef::of)
        .collect();
    users.sort_by(|a, b| (a.kind, &a.name, &a.version).cmp(&(b.kind, &b.name, &b.version)));
    Some(CrateRow {
        name: e.name.clone(),
        version: e.version.clone(),
        exports: e.exports.len(),
        info,
        cells: cell_refs(index, index.crates.loaded(id)),
        users,
        bound_by: bound_by(index, id),
    })
}

/// The cells with slots bound to entry `id`: to a cell loaded from it, or to the base image's
/// copy of it.
fn bound_by(index: &Index<'_>, id: EntryId) -> Vec<UseCount> {
    let mut providers: Vec<CellId> = index.crates.loaded(id).to_vec();
    if index.crates.in_base_image(id) {
        providers.push(Registry::BASE);
    }
    let candidates: BTreeSet<CellId> = providers
        .iter()
        .flat_map(|p| index.dependents(*p).map(|(d, _)| d))
        .collect();
    candidates
        .into_iter()
        .filter_map(|d| {
            let slots = index.slots_into(d, id).len();
            let cell = index.cell(d)?;
            (slots > 0).then(|| UseCount {
                cell: CellRef::of(index, cell),
                slots,
            })
        })
        .collect()
}

fn cell_refs(index: &Index<'_>, ids: &[CellId]) -> Vec<CellRef> {
    ids.iter()
        .filter_map(|c| index.cell(*c))
        .map(|c| CellRef::of(index, c))
        .collect()
}

/// `deps --invert <crate>`: every entry a bump of dependency crate `id` touches, nearest first,
/// each with the cells it is loaded as and their slots bound to the entry it reaches the crate
/// through.
pub fn invert(index: &Index<'_>, id: EntryId) -> Result<View> {
    let Some(e) = index.crates.entry(id) else {
        bail!("the manifest has no entry #{id}");
    };
    let Some(info) = e.crate_info.clone() else {
        bail!("`{}` is a cell, not a dependency crate", e.name);
    };
    let dependents = index
        .crates
        .compiled_against(id)
        .into_iter()
        .filter_map(|r| {
            let entry = index.crates.entry(r.entry)?;
            let via = index.crates.entry(r.via)?;
            let cells = index
                .crates
                .loaded(r.entry)
                .iter()
                .filter_map(|c| index.cell(*c))
                .map(|c| {
                    let mut slots: Vec<EdgeRow> = index
                        .slots_into(c.id, r.via)
                        .into_iter()
                        .filter_map(|e| EdgeRow::of(index, e))
                        .collect();
                    slots.sort_by(|a, b| (&a.section, a.offset).cmp(&(&b.section, b.offset)));
                    TouchedCell {
                        cell: CellRef::of(index, c),
                        slots,
                    }
                })
                .collect();
            Some(CrateDependent {
                entry: EntryRef::of(entry),
                depth: r.depth,
                via: EntryRef::of(via),
                cells,
            })
        })
        .collect();
    let others = index
        .crates
        .siblings(id)
        .into_iter()
        .filter_map(|i| index.crates.entry(i))
        .map(EntryRef::of)
        .collect();
    let prepared = index
        .crates
        .upgrades_moving(id)
        .into_iter()
        .filter_map(|(u, to)| {
            let upgrade = index.crates.entry(u)?;
            Some(PreparedBump {
                upgrade: EntryRef::of(upgrade),
                to,
                rebuilt: upgrade.dependency_upgrade.as_ref()?.rebuilt.clone(),
            })
        })
        .collect();
    Ok(View::InvertCrate {
        entry: EntryRef::of(e),
        info,
        exports: e.exports.len(),
        cells: cell_refs(index, index.crates.loaded(id)),
        others,
        prepared,
        dependents,
    })
}
