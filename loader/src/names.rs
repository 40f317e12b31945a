//! The names of a cell's metadata: its loaded sections, the symbols it exports and its local
//! functions, each with its name (and a function with its demangled path), all slices of one
//! string made for the cell ([`Names`]).
//!
//! They come from the object's `.cell.names` ([`crate::prelink::names`]) when `cargo cell build`
//! laid them out for the load's layout: one copy of one string, and checks that need no name.
//! Otherwise the load walks the symbol table, finds each name in the string table, checks it and
//! copies it ([`walk`]); the build makes the table with that same walk.

use alloc::string::String;
use alloc::vec::Vec;

use goblin::elf::sym::{STB_GLOBAL, STB_LOCAL, STB_WEAK, STT_FILE, STT_FUNC, STT_SECTION};
use goblin::elf::sym::{STV_HIDDEN, STV_INTERNAL};

use crate::error::{malformed, LoadError};
use crate::index::{IndexVec, SectionIndex, SymbolIndex};
use crate::layout::Layout;
use crate::malformation::Malformation;
use crate::parse::{Object, Sym};
use crate::prelink::names::{self as table, Entry, RawSymbol, Table};
use crate_metadata::{NameArena, NameSpan, Names, SectionId};

/// A named symbol: its index in the object, its name and its demangled path (functions only).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Named {
    pub(crate) symbol: SymbolIndex,
    pub(crate) name: NameSpan,
    pub(crate) path: Option<NameSpan>,
}

/// The names of a cell's metadata.
#[derive(Debug)]
pub(crate) struct CellNames {
    /// The string every name is a slice of.
    pub(crate) names: Names,
    /// Each loaded section, in index order, with its name.
    pub(crate) sections: Vec<(SectionIndex, NameSpan)>,
    /// The metadata section of each loaded object section (its place in `sections`).
    pub(crate) by_index: IndexVec<SectionIndex, Option<SectionId>>,
    /// The symbols the cell exports, in index order.
    pub(crate) exported: Vec<Named>,
    /// Its local functions that have a name, in index order.
    pub(crate) locals: Vec<Named>,
    /// The names of the sections the loader makes.
    pub(crate) got: NameSpan,
    pub(crate) stubs: NameSpan,
    /// Whether they came from the object's `.cell.names`.
    pub(crate) from_table: bool,
}

impl CellNames {
    /// Whether `self` and `other` name the same things the same way (wherever they came from).
    pub(crate) fn same_as(&self, other: &CellNames) -> bool {
        self.names.text() == other.names.text()
            && self.sections == other.sections
            && self.by_index == other.by_index
            && self.exported == other.exported
            && self.locals == other.locals
            && (self.got, self.stubs) == (other.got, other.stubs)
    }

    /// The bytes of a `.cell.names` for these names, made for the layout of digest `digest`.
    pub(crate) fn encode(&self, digest: u64) -> Vec<u8> {
        let entry = |n: &Named| -> Entry { (n.symbol.0 as u32, n.name, n.path) };
        table::encode(&table::Parts {
            digest,
            text: self.names.text(),
            got: self.got,
            stubs: self.stubs,
            sections: self
                .sections
                .iter()
                .map(|(i, s)| (i.0 as u32, *s))
                .collect(),
            exported: self.exported.iter().map(entry).collect(),
            locals: self.locals.iter().map(entry).collect(),
        })
    }
}

/// The names of cell `cell`'s metadata: from the object's `.cell.names` when it was made for the
/// layout of digest `digest` (the `.cell.prelink` the load took) and passes every check, else
/// from a [`walk`].
pub(crate) fn cell_names(
    cell: &str,
    object: &Object<'_>,
    layout: &Layout,
    digest: Option<u64>,
) -> Result<CellNames, LoadError> {
    let made_for_this_layout = object.names.filter(|t| Some(t.digest) == digest);
    if let Some(names) = made_for_this_layout.and_then(|t| from_table(&t, object, layout)) {
        return Ok(names);
    }
    walk(cell, object, layout)
}

/// Whether symbol `sym` is exported: defined, global or weak, visible, not a section or file
/// symbol, in a loaded section.
fn is_exported(sym: &Sym, by_index: &IndexVec<SectionIndex, Option<SectionId>>) -> bool {
    let (bind, vis, ty) = (sym.st_bind(), sym.st_visibility(), sym.st_type());
    (bind == STB_GLOBAL || bind == STB_WEAK)
        && vis != STV_HIDDEN
        && vis != STV_INTERNAL
        && ty != STT_SECTION
        && ty != STT_FILE
        && sym
            .section()
            .and_then(|s| by_index.get(s).copied().flatten())
            .is_some()
}

/// Whether symbol `sym` is a function the cell does not export, in a loaded section: named in
/// the metadata for backtraces and debuggers.
fn is_local_function(sym: &Sym, by_index: &IndexVec<SectionIndex, Option<SectionId>>) -> bool {
    sym.st_type() == STT_FUNC
        && sym.st_bind() == STB_LOCAL
        && sym
            .section()
            .and_then(|s| by_index.get(s).copied().flatten())
            .is_some()
}

/// The metadata section of each loaded section, the loaded ones given in index order.
fn by_index(
    layout: &Layout,
    loaded: impl Iterator<Item = SectionIndex>,
) -> IndexVec<SectionIndex, Option<SectionId>> {
    let mut by_index = IndexVec::from_elem(None, layout.sections.len());
    for (n, i) in loaded.enumerate() {
        by_index[i] = Some(SectionId(n as u32));
    }
    by_index
}

/// A name before it is copied into the cell's string: borrowed from the object, or a section's
/// index for a section that has no name.
#[derive(Clone, Copy)]
enum RawName<'a> {
    Str(&'a str),
    Index(SectionIndex),
}

/// The names found in the object: every loaded section's, then every exported symbol's and local
/// function's name and path, copied one by one into one string.
pub(crate) fn walk(
    cell: &str,
    object: &Object<'_>,
    layout: &Layout,
) -> Result<CellNames, LoadError> {
    let section_names = section_names(cell, layout, object)?;
    let by_index = by_index(layout, section_names.iter().map(|(i, _)| *i));
    let mut exported: Vec<(SymbolIndex, &str)> = Vec::new();
    let mut locals: Vec<(SymbolIndex, &str)> = Vec::new();
    for (i, sym) in object.syms.iter_enumerated() {
        if is_exported(sym, &by_index) {
            exported.push((i, object.symbol_name(cell, i)?));
        } else if is_local_function(sym, &by_index) {
            // A name that is not UTF-8 only goes unnamed: it is for people, nothing binds to it.
            if let Some(name) = object.symbol_name(cell, i).ok().filter(|n| !n.is_empty()) {
                locals.push((i, name));
            }
        }
    }
    // The functions' paths the object carries (`.cell.paths`), for `exported` then `locals`.
    let paths: Vec<Option<&str>> = exported
        .iter()
        .chain(&locals)
        .map(|(i, _)| {
            let function = object.syms[*i].st_type() == STT_FUNC;
            function.then(|| object.paths.get(i.0)).flatten()
        })
        .collect();
    let bytes = section_names
        .iter()
        .map(|(_, n)| match n {
            RawName::Str(s) => s.len(),
            RawName::Index(_) => 20,
        })
        .chain(exported.iter().chain(&locals).map(|(_, n)| n.len()))
        .chain(paths.iter().flatten().map(|p| p.len()))
        .sum::<usize>()
        + ".got.stubs".len();
    let mut arena = NameArena::with_capacity(bytes);
    let too_long = || malformed(cell, Malformation::LayoutOverflow);
    let mut sections = Vec::with_capacity(section_names.len());
    for (i, name) in &section_names {
        let span = match *name {
            RawName::Str(s) => arena.push(s),
            RawName::Index(i) => arena.push_number(i.0),
        };
        sections.push((*i, span.ok_or_else(too_long)?));
    }
    let mut named = Vec::with_capacity(exported.len() + locals.len());
    for (i, name) in exported.iter().chain(&locals) {
        let name = arena.push(name).ok_or_else(too_long)?;
        named.push(Named {
            symbol: *i,
            name,
            path: None,
        });
    }
    for (n, path) in named.iter_mut().zip(&paths) {
        if let Some(p) = path {
            n.path = Some(arena.push(p).ok_or_else(too_long)?);
        }
    }
    let got = arena.push(".got").ok_or_else(too_long)?;
    let stubs = arena.push(".stubs").ok_or_else(too_long)?;
    let locals = named.split_off(exported.len());
    Ok(CellNames {
        names: arena.finish(),
        sections,
        by_index,
        exported: named,
        locals,
        got,
        stubs,
        from_table: false,
    })
}

/// The name of every loaded section, in index order; a loaded section's name goes into the
/// metadata, so it must be UTF-8.
fn section_names<'a>(
    cell_name: &str,
    layout: &Layout,
    object: &Object<'a>,
) -> Result<Vec<(SectionIndex, RawName<'a>)>, LoadError> {
    let placed = layout.sections.iter().flatten().count();
    let mut names = Vec::with_capacity(placed);
    for (i, p) in layout.sections.iter_enumerated() {
        if p.is_none() {
            continue;
        }
        names.push((
            i,
            match object.section_name_str(i) {
                Some("") => RawName::Index(i),
                Some(name) => RawName::Str(name),
                None => {
                    return Err(malformed(
                        cell_name,
                        Malformation::SectionNameNotUtf8 { section: i },
                    ))
                }
            },
        ));
    }
    Ok(names)
}

/// The names in `table`, checked against the object and its layout; `None` when any check fails.
fn from_table(table: &Table<'_>, object: &Object<'_>, layout: &Layout) -> Option<CellNames> {
    let names = Names::from_text(String::from(core::str::from_utf8(table.text).ok()?));
    let span = |(start, len): (u32, u32)| names.span(start, len);
    // Exactly the loaded sections, in index order.
    let mut loaded = layout
        .sections
        .iter_enumerated()
        .filter_map(|(i, p)| p.map(|_| i));
    let mut sections = Vec::with_capacity(table.sections().len());
    for (index, name) in table.sections() {
        let i = loaded.next().filter(|i| i.0 == index as usize)?;
        sections.push((i, span(name)?));
    }
    if loaded.next().is_some() {
        return None;
    }
    let by_index = by_index(layout, sections.iter().map(|(i, _)| *i));
    let symbols = |entries: &mut dyn ExactSizeIterator<Item = RawSymbol>,
                   wanted: &dyn Fn(&Sym) -> bool|
     -> Option<Vec<Named>> {
        let mut out: Vec<Named> = Vec::with_capacity(entries.len());
        for (symbol, name, path) in entries {
            let i = SymbolIndex(symbol as usize);
            let ascending = out.last().is_none_or(|last| last.symbol < i);
            if !ascending || !wanted(object.syms.get(i)?) {
                return None;
            }
            let path = match path {
                Some(p) => Some(span(p)?),
                None => None,
            };
            out.push(Named {
                symbol: i,
                name: span(name)?,
                path,
            });
        }
        Some(out)
    };
    let exported = symbols(&mut table.exported(), &|s| is_exported(s, &by_index))?;
    // Every symbol the cell exports, and each under the name its symbol table gives: what the
    // namespace binds by must be what the object says (the locals' names and the paths are for
    // people, as `.cell.paths` is).
    let exports = object.syms.iter().filter(|s| is_exported(s, &by_index));
    if exports.count() != exported.len() {
        return None;
    }
    let text = names.text();
    let named_as_in_object = |n: &Named| {
        let (start, len) = (n.name.start() as usize, n.name.len() as usize);
        text.get(start..start + len)
            .is_some_and(|name| object.symbol_name_is(n.symbol, name))
    };
    if !exported.iter().all(named_as_in_object) {
        return None;
    }
    let locals = symbols(&mut table.locals(), &|s| is_local_function(s, &by_index))?;
    let (got, stubs) = (span(table.got)?, span(table.stubs)?);
    Some(CellNames {
        names,
        sections,
        by_index,
        exported,
        locals,
        got,
        stubs,
        from_table: true,
    })
}
