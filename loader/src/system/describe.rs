//! Describing a cell: its metadata for the registry (sections, exported symbols with their
//! addresses) and the exports it adds to its namespace.

use alloc::vec::Vec;

use goblin::elf::sym::{STB_WEAK, STT_FUNC, STT_OBJECT};

use super::{CellSpec, System};
use crate::error::{malformed, LoadError};
use crate::index::{IndexVec, SectionIndex, SymbolIndex};
use crate::layout::{self, Layout, Placed, TLS_SYMBOL};
use crate::malformation::Malformation;
use crate::mapping::Mapping;
use crate::names::{self, CellNames};
use crate::parse::Object;
use crate::platform::Platform;
use crate_metadata::{
    demangle, Cell, CellId, Name, Origin, Section, SectionId, SectionKind, Symbol, SymbolId,
    SymbolKind,
};
use namespace::{Export, SymbolRef};

/// The address of a symbol at `st_value` in the section placed at `placed`: its absolute address
/// in the mapping, or, `in_tls_block`, its offset in the cell's TLS block. `None` when the sum does
/// not fit (`parse` checked the value lies inside its section, so it always does for a sane
/// object).
pub(crate) fn symbol_address(
    mapping: &Mapping,
    placed: &Placed,
    st_value: u64,
    in_tls_block: bool,
) -> Option<u64> {
    if in_tls_block {
        return (placed.tls_offset as u64).checked_add(st_value);
    }
    mapping.checked_addr(placed.offset_of(st_value)?)
}

/// One symbol the cell exports, before the cell has an id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct NewExport {
    /// The mangled name, shared with the cell's metadata.
    pub(crate) name: Name,
    /// Its id in the cell's metadata.
    pub(crate) symbol: SymbolId,
    /// Its address (its offset in the TLS block for a thread-local).
    pub(crate) addr: u64,
    /// Whether it is a weak definition.
    pub(crate) weak: bool,
}

/// Ids of the cell's metadata, by object section and symbol index.
#[derive(Debug)]
pub(crate) struct SectionIds {
    /// The metadata section of each loaded object section.
    pub(crate) by_index: IndexVec<SectionIndex, Option<SectionId>>,
    /// The metadata section of the GOT, when the cell has one.
    pub(crate) got: Option<SectionId>,
    /// The metadata symbol of each exported object symbol.
    pub(crate) symbols: IndexVec<SymbolIndex, Option<SymbolId>>,
}

/// A cell described: its metadata, its exports (one per symbol of the metadata, in the same
/// order) and the ids that map the object's indices to the metadata's.
#[derive(Debug)]
pub(crate) struct Described {
    /// The metadata.
    pub(crate) cell: Cell,
    /// What the cell adds to its namespace.
    pub(crate) exports: Vec<NewExport>,
    /// Object indices to metadata ids.
    pub(crate) ids: SectionIds,
    /// Whether the names came from the object's `.cell.names`.
    pub(crate) names_from_build: bool,
}

/// The cell's metadata (sections and exported symbols) and its namespace exports. Every section
/// and symbol name is a slice of one string made for the cell ([`crate::names`]): one allocation
/// for all of them, and the namespace's map shares them. `digest` is the layout digest of the
/// `.cell.prelink` the load took, if it took one: the object's `.cell.names` is read only when
/// it was made for that layout.
pub(crate) fn describe(
    spec: CellSpec<'_>,
    object: &Object<'_>,
    layout: &Layout,
    mapping: &Mapping,
    digest: Option<u64>,
) -> Result<Described, LoadError> {
    let mut cell = Cell::new(spec.name, spec.version, Origin::Object);
    cell.kind = spec.kind;
    cell.sha256 = spec.sha256;
    cell.object_size = object.bytes.len() as u64;
    cell.base_addr = mapping.addr(0);
    let named = names::cell_names(spec.name, object, layout, digest)?;
    let CellNames {
        names,
        from_table,
        sections: section_names,
        by_index,
        exported,
        locals,
        got: got_name,
        stubs: stubs_name,
    } = named;

    // Built as plain lists and handed to the cell once: every change of a cell's shared list
    // checks atomically whether another holder shares it ([`crate_metadata::SharedList`]).
    let mut sections = Vec::with_capacity(section_names.len() + 2);
    for (i, span) in &section_names {
        let Some(p) = layout.sections[*i] else {
            continue;
        };
        let addr = if p.kind == SectionKind::TlsBss {
            0
        } else {
            mapping.addr(p.offset)
        };
        sections.push(Section {
            name: names.name(*span),
            kind: p.kind,
            addr,
            size: p.size as u64,
            align: object.sections[*i].sh_addralign.max(1),
        });
    }
    let got = add_loader_sections(
        layout,
        mapping,
        [got_name, stubs_name].map(|s| names.name(s)),
        &mut sections,
    );
    cell.sections = sections.into();

    let mut exports = Vec::with_capacity(exported.len());
    let mut exported_symbols = Vec::with_capacity(exported.len());
    let mut symbols = IndexVec::from_elem(None, object.syms.len());
    for n in &exported {
        let (i, sym) = (n.symbol, &object.syms[n.symbol]);
        let Some(shndx) = sym.section() else { continue };
        let (Some(section), Some(p)) = (by_index[shndx], layout.sections[shndx]) else {
            continue;
        };
        let kind = match sym.st_type() {
            STT_FUNC => SymbolKind::Function,
            STT_OBJECT => SymbolKind::Object,
            TLS_SYMBOL => SymbolKind::Tls,
            _ => SymbolKind::Other,
        };
        let tls = kind == SymbolKind::Tls;
        let Some(addr) = symbol_address(mapping, &p, sym.st_value, tls) else {
            let symbol = demangle::demangle(&object.symbol_label(i));
            return Err(malformed(
                spec.name,
                Malformation::AddressOverflow { symbol },
            ));
        };
        let name = names.name(n.name);
        let id = SymbolId(exported_symbols.len() as u32);
        exports.push(NewExport {
            name: name.clone(),
            symbol: id,
            addr,
            weak: sym.st_bind() == STB_WEAK,
        });
        exported_symbols.push(Symbol {
            name,
            section: Some(section),
            addr,
            size: sym.st_size,
            kind,
            path_span: n.path,
        });
        symbols[i] = Some(id);
    }
    cell.symbols = exported_symbols.into();
    let mut local_functions = Vec::with_capacity(locals.len());
    for n in &locals {
        let sym = &object.syms[n.symbol];
        let Some(shndx) = sym.section() else { continue };
        let (Some(section), Some(p)) = (by_index[shndx], layout.sections[shndx]) else {
            continue;
        };
        let Some(addr) = symbol_address(mapping, &p, sym.st_value, false) else {
            continue; // `parse` checked the value lies inside its section: never for a sane object
        };
        local_functions.push(Symbol {
            name: names.name(n.name),
            section: Some(section),
            addr,
            size: sym.st_size,
            kind: SymbolKind::Function,
            path_span: n.path,
        });
    }
    cell.local_functions = local_functions.into();
    Ok(Described {
        cell,
        exports,
        ids: SectionIds {
            by_index,
            got,
            symbols,
        },
        names_from_build: from_table,
    })
}

/// Adds the sections the loader made (the GOT and the call stubs, named `got_and_stubs`); returns
/// the GOT's id.
fn add_loader_sections(
    layout: &Layout,
    mapping: &Mapping,
    got_and_stubs: [Name; 2],
    sections: &mut Vec<Section>,
) -> Option<SectionId> {
    let [got_name, stubs_name] = got_and_stubs;
    let mut got = None;
    if layout.got_len > 0 {
        got = Some(SectionId(sections.len() as u32));
        sections.push(Section {
            name: got_name,
            kind: SectionKind::Got,
            addr: mapping.addr(layout.got_offset),
            size: layout.got_len as u64,
            align: 8,
        });
    }
    if layout.stub_count > 0 {
        sections.push(Section {
            name: stubs_name,
            kind: SectionKind::Stubs,
            addr: mapping.addr(layout.stubs_offset),
            size: (layout.stub_count * layout::STUB_SIZE) as u64,
            align: 16,
        });
    }
    got
}

/// The namespace exports of the loaded cell `cell` (id `id`), borrowed from its metadata: one per
/// symbol, in order.
pub(crate) fn exports_in(
    id: CellId,
    cell: &Cell,
) -> impl Iterator<Item = (&str, SymbolRef)> + Clone + '_ {
    cell.symbols.iter().enumerate().map(move |(i, s)| {
        let target = SymbolRef {
            cell: id,
            symbol: SymbolId(i as u32),
            addr: s.addr,
            weak: false,
        };
        (s.name.as_str(), target)
    })
}

impl<P: Platform> System<P> {
    /// The namespace exports of a loaded cell, from its metadata.
    pub(crate) fn exports_of(&self, id: CellId) -> Vec<Export> {
        let Some(c) = self.registry.cell(id) else {
            return Vec::new();
        };
        exports_in(id, c)
            .zip(&c.symbols)
            .map(|((_, target), s)| Export {
                name: s.name.clone(),
                target,
            })
            .collect()
    }
}
