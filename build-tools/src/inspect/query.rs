//! The cell-level views: `ls`, `info`, `deps --symbols` and `deps --addr`.

use std::collections::BTreeMap;

use anyhow::{bail, Result};
use crate_metadata::{Cell, CellId, CellKind, CrateInfo, Origin, SlotKind};

use super::crates::EntryId;
use super::model::{Index, SnapshotSource};
use super::views::{
    AddrHit, CellRef, CrateUse, EdgeRow, EntryRef, ExportRow, ImportRow, InfoView, LsRow,
    SectionRow, UseCount, View,
};

/// `ls`: every object cell (with `all`, also the base image and the platform), in id order.
pub fn ls(index: &Index<'_>, namespace: Option<&str>, all: bool) -> View {
    let cells = index
        .registry()
        .cells()
        .filter(|c| all || c.origin == Origin::Object)
        .filter(|c| {
            c.origin != Origin::Object
                || namespace.is_none()
                || index.namespace_name(c) == namespace
        })
        .map(|c| LsRow {
            cell: CellRef::of(index, c),
            kind: c.kind,
            crate_info: crate_info(index, c),
            size: c.size(),
            object_size: c.object_size,
            mapped_bytes: c.stats.mapped_bytes,
            dependents: index.dependents(c.id).count(),
            dependencies: index.providers(c.id).count(),
            base_addr: c.base_addr,
        })
        .collect();
    View::Ls { cells }
}

/// `info <cell>`: identity, sections, exports with their users, imports with their providers.
pub fn info(index: &Index<'_>, cell: &Cell) -> View {
    let sections = cell
        .sections
        .iter()
        .map(|s| SectionRow {
            name: s.name.to_string(),
            kind: s.kind,
            addr: s.addr,
            size: s.size,
            align: s.align,
        })
        .collect();
    // Users per exported symbol: symbol -> dependent -> slots.
    let mut users: BTreeMap<u32, BTreeMap<CellId, usize>> = BTreeMap::new();
    for (dependent, edges) in index.dependents(cell.id) {
        for e in edges.iter().filter_map(|e| index.registry().edge(*e)) {
            *users
                .entry(e.symbol.0)
                .or_default()
                .entry(dependent)
                .or_default() += 1;
        }
    }
    let exports: Vec<ExportRow> = cell
        .symbols
        .iter()
        .enumerate()
        .map(|(i, s)| ExportRow {
            symbol: s.name.to_string(),
            demangled: crate_metadata::demangle::path(&s.name),
            kind: s.kind,
            size: s.size,
            section: s
                .section
                .and_then(|id| cell.section(id))
                .map(|sec| sec.name.to_string()),
            addr: s.addr,
            users: users
                .get(&(i as u32))
                .into_iter()
                .flatten()
                .filter_map(|(c, n)| {
                    Some(UseCount {
                        cell: CellRef::of(index, index.cell(*c)?),
                        slots: *n,
                    })
                })
                .collect(),
        })
        .collect();
    // Imports: (provider, symbol) -> slots and kinds, in provider then name order.
    let mut imports: BTreeMap<(CellId, String), (usize, Vec<SlotKind>)> = BTreeMap::new();
    for (provider, edges) in index.providers(cell.id) {
        let Some(p) = index.cell(provider) else {
            continue;
        };
        for e in edges.iter().filter_map(|e| index.registry().edge(*e)) {
            let name = p
                .symbol(e.symbol)
                .map(|s| s.name.to_string())
                .unwrap_or_default();
            let entry = imports.entry((provider, name)).or_default();
            entry.0 += 1;
            if !entry.1.contains(&e.kind) {
                entry.1.push(e.kind);
            }
        }
    }
    let mut exports: Vec<ExportRow> = exports;
    exports.sort_by(|a, b| (&a.demangled, &a.symbol).cmp(&(&b.demangled, &b.symbol)));
    let mut imports: Vec<ImportRow> = imports
        .into_iter()
        .filter_map(|((provider, symbol), (slots, kinds))| {
            let p = index.cell(provider)?;
            Some(ImportRow {
                demangled: crate_metadata::demangle::path(&symbol),
                rule: super::policy::crossing_rule(index, cell, p, &symbol),
                symbol,
                provider: CellRef::of(index, p),
                slots,
                kinds,
            })
        })
        .collect();
    imports.sort_by(|a, b| {
        (a.provider.id, &a.demangled, &a.symbol).cmp(&(b.provider.id, &b.demangled, &b.symbol))
    });
    let entry = index.crates.entry_of(cell.id);
    let mut users: Vec<EntryRef> = entry
        .map(|e| index.crates.users(e))
        .unwrap_or_default()
        .iter()
        .filter_map(|u| index.crates.entry(*u))
        .map(EntryRef::of)
        .collect();
    users.sort_by(|a, b| (a.kind, &a.name, &a.version).cmp(&(b.kind, &b.name, &b.version)));
    View::Info(Box::new(InfoView {
        app_interface: super::policy::app_interface(index, cell),
        cell: CellRef::of(index, cell),
        kind: cell.kind,
        crate_info: crate_info(index, cell),
        crates: entry
            .map(|e| crate_uses(index, cell, e))
            .unwrap_or_default(),
        users,
        dependents: index
            .dependents(cell.id)
            .filter_map(|(d, edges)| {
                Some(UseCount {
                    cell: CellRef::of(index, index.cell(d)?),
                    slots: edges.len(),
                })
            })
            .collect(),
        sha256: cell.sha256,
        object_size: cell.object_size,
        size: cell.size(),
        base_addr: cell.base_addr,
        stats: cell.stats.clone(),
        sections,
        exports,
        imports,
    }))
}

/// For a dependency cell: which build of which crate it is, from the manifest.
fn crate_info(index: &Index<'_>, cell: &Cell) -> Option<CrateInfo> {
    let entry = index.crates.entry_of(cell.id)?;
    index.crates.entry(entry)?.crate_info.clone()
}

/// The dependency crates `cell` (loaded from manifest entry `entry`) is compiled against: for
/// each, the cells it is loaded as where `cell` can see them, and `cell`'s slots bound to it.
fn crate_uses(index: &Index<'_>, cell: &Cell, entry: EntryId) -> Vec<CrateUse> {
    let mut out: Vec<CrateUse> = index
        .crates
        .uses(entry)
        .iter()
        .filter_map(|u| Some((*u, index.crates.entry(*u)?)))
        .filter(|(_, e)| e.kind == CellKind::Deps)
        .map(|(u, e)| CrateUse {
            entry: EntryRef::of(e),
            cells: index
                .visible_loaded(cell, u)
                .into_iter()
                .filter_map(|c| index.cell(c))
                .map(|c| CellRef::of(index, c))
                .collect(),
            slots: index.slots_into(cell.id, u).len(),
            exports: e.exports.len(),
        })
        .collect();
    out.sort_by(|a, b| (&a.entry.name, &a.entry.version).cmp(&(&b.entry.name, &b.entry.version)));
    out
}

/// `deps --symbols <cell>`: the cell's slots and the slots that bind to it, by section and offset.
pub fn symbols(index: &Index<'_>, cell: &Cell) -> View {
    let rows = |ids: &[crate_metadata::EdgeId]| {
        let mut rows: Vec<EdgeRow> = ids.iter().filter_map(|e| EdgeRow::of(index, *e)).collect();
        rows.sort_by(|a, b| {
            (&a.dependent, &a.section, a.offset, &a.symbol).cmp(&(
                &b.dependent,
                &b.section,
                b.offset,
                &b.symbol,
            ))
        });
        rows
    };
    let own = |ids: &[crate_metadata::EdgeId]| -> Vec<crate_metadata::EdgeId> {
        ids.iter()
            .copied()
            .filter(|e| {
                index
                    .registry()
                    .edge(*e)
                    .is_some_and(|e| e.dependent != e.provider)
            })
            .collect()
    };
    View::Symbols {
        cell: CellRef::of(index, cell),
        uses: rows(&own(&cell.uses)),
        used_by: rows(&own(&cell.used_by)),
    }
}

/// `deps --addr <addr>`: the cell, section, nearest symbol and offset of an address of a live
/// system.
pub fn addr(index: &Index<'_>, addr: u64) -> Result<View> {
    if index.snapshot.source == SnapshotSource::Offline {
        bail!(
            "--addr needs a live system (--live, or --snapshot of a live one): the addresses of an \
             offline snapshot are heap addresses of a dry link"
        );
    }
    let hit = index.registry().cells().find_map(|cell| {
        let at = cell.locate(addr)?;
        let section = cell.section(at.section)?;
        let slot = cell
            .uses
            .iter()
            .find(|e| index.registry().edge(**e).is_some_and(|e| e.slot == addr))
            .and_then(|e| EdgeRow::of(index, *e));
        Some(AddrHit {
            cell: CellRef::of(index, cell),
            section: section.name.to_string(),
            section_addr: section.addr,
            section_offset: at.section_offset,
            symbol: at.name.map(str::to_string),
            demangled: at.name.map(crate_metadata::demangle::path),
            symbol_offset: at.offset,
            slot,
        })
    });
    Ok(View::Addr { addr, hit })
}

/// Parses an address as people write it: `0x7f12_3456`, `7f123456`.
pub fn parse_addr(text: &str) -> Result<u64> {
    let digits: String = text
        .trim()
        .trim_start_matches("0x")
        .trim_start_matches("0X")
        .chars()
        .filter(|c| *c != '_')
        .collect();
    match u64::from_str_radix(&digits, 16) {
        Ok(v) => Ok(v),
        Err(_) => bail!("`{text}` is not a hexadecimal address"),
    }
}
