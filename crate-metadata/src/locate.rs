//! Addresses to names: which section and function of a cell an address lies in.
//!
//! One lookup serves every reader that starts from an address: `cargo cell deps --addr`, the
//! hosted backtraces and fault reports, and the function lists that debuggers and profilers get
//! (the GDB JIT interface, perf maps). A code address is named by the nearest function symbol of
//! its section at or below it, exported ([`Cell::symbols`]) or not ([`Cell::local_functions`]).
//! rustc compiles every function into a section of its own (`.text.<mangled name>`), which
//! `cargo cell build` merges into one `.text` (DESIGN §3); in an object whose local symbols are
//! gone, a text section named after a function still names it.

use alloc::vec::Vec;

use crate::cell::{Cell, Section, SectionKind, Symbol, SymbolKind};
use crate::ids::{SectionId, SymbolId};

/// Where an address lies in a cell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Location<'c> {
    /// The section that contains it.
    pub section: SectionId,
    /// How far into the section it is.
    pub section_offset: u64,
    /// The nearest exported symbol of the section at or below it, when that is what names it.
    pub symbol: Option<SymbolId>,
    /// The mangled name of what it lies in: the nearest symbol's (exported, or a local function),
    /// or the function's name from its section name (`.text._ZN7crasher4main17h…E` names
    /// `_ZN7crasher4main17h…E`); `None` for a section that names no function (`.stubs`,
    /// `.rodata.…`) with no symbol in it.
    pub name: Option<&'c str>,
    /// How far past the start of `name` (or of the section, without a name) it is.
    pub offset: u64,
}

/// One function of a cell, as a debugger's symbol table or a profiler's map lists it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Function<'c> {
    /// Its mangled name.
    pub name: &'c str,
    /// Its first byte.
    pub addr: u64,
    /// Its size in bytes (at least 1).
    pub size: u64,
    /// Its demangled path, when the object carried it ([`crate::paths`]).
    pub path: Option<&'c str>,
}

/// The function a text section is named after (`.text.<name>`), if it is named after one.
pub fn section_function(section_name: &str) -> Option<&str> {
    section_name
        .strip_prefix(".text.")
        .filter(|n| n.starts_with("_ZN") || n.starts_with("_R") || !n.contains('.'))
        .filter(|n| !n.is_empty())
}

impl Cell {
    /// Where `addr` lies in this cell: its section, the nearest symbol of that section at or below
    /// it, and the name of what it lies in. `None` when no section of the cell contains it.
    pub fn locate(&self, addr: u64) -> Option<Location<'_>> {
        let section_id = self.section_at(addr)?;
        let section = self.section(section_id)?;
        let below = |s: &&Symbol| s.section == Some(section_id) && s.addr <= addr;
        let exported = self
            .symbols
            .iter()
            .enumerate()
            .filter(|(_, s)| below(s))
            .max_by_key(|(_, s)| s.addr);
        // An exported symbol wins a tie: it has an id.
        let local = self
            .local_functions
            .iter()
            .filter(below)
            .max_by_key(|s| s.addr)
            .filter(|l| exported.is_none_or(|(_, e)| l.addr > e.addr));
        let section_offset = addr - section.addr;
        let by_section = || {
            matches!(section.kind, SectionKind::Text)
                .then(|| section_function(&section.name))
                .flatten()
        };
        let (symbol, name, offset) = match (local, exported) {
            (Some(l), _) => (None, Some(l.name.as_str()), addr - l.addr),
            (None, Some((i, s))) => (
                Some(SymbolId(i as u32)),
                Some(s.name.as_str()),
                addr - s.addr,
            ),
            (None, None) => (None, by_section(), section_offset),
        };
        Some(Location {
            section: section_id,
            section_offset,
            symbol,
            name,
            offset,
        })
    }

    /// Every function of the cell with its address and size, by address: each function symbol,
    /// exported or local, and each text section without one at its start under the name the
    /// section carries. Aliases at one address keep the order of [`Cell::functions_unordered`].
    pub fn functions(&self) -> Vec<Function<'_>> {
        let out = self.functions_unordered();
        // Sorted as (address, index) pairs of 16 bytes rather than moving the 40-byte entries (a
        // cell of a thousand functions is named at every load; the stable sort, which merges
        // runs, measured slower: the symbol table's runs in address order are short).
        let mut keys: Vec<(u64, u32)> = (out.iter().enumerate())
            .map(|(i, f)| (f.addr, i as u32))
            .collect();
        keys.sort_unstable();
        keys.iter().map(|&(_, i)| out[i as usize]).collect()
    }

    /// The functions of [`Cell::functions`] in the metadata's order (the symbols, the functions
    /// not exported, then the text sections named by their section), for the readers that need
    /// no order: a debugger's symbol file and the perf map are sets of functions, and a load
    /// names every function for them, so it does not sort what they do not need sorted (a tenth
    /// of a large cell's load, measured).
    pub fn functions_unordered(&self) -> Vec<Function<'_>> {
        let is_text = |s: &Section| s.kind == SectionKind::Text && s.size > 0;
        // One pass over the symbols and one over the sections (a cell of thousands of sections
        // and symbols is named at every load: no walk of the symbols per section).
        let mut covered = alloc::vec![false; self.sections.len()];
        let mut out = Vec::with_capacity(self.symbols.len() + self.local_functions.len());
        for s in self.symbols.iter().chain(&self.local_functions) {
            let Some(id) = s.section else { continue };
            let Some(section) = self.sections.get(id.index()) else {
                continue;
            };
            if s.kind != SymbolKind::Function || !is_text(section) {
                continue;
            }
            covered[id.index()] |= s.addr == section.addr;
            out.push(Function {
                name: s.name.as_str(),
                addr: s.addr,
                size: s.size.max(1),
                path: s.path(),
            });
        }
        for (section, covered) in self.sections.iter().zip(covered) {
            if !is_text(section) || covered {
                continue;
            }
            if let Some(name) = section_function(&section.name) {
                out.push(Function {
                    name,
                    addr: section.addr,
                    size: section.size,
                    path: None,
                });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cell::Origin;

    fn cell() -> Cell {
        let mut c = Cell::new("memfs", "0.1.0", Origin::Object);
        let text = |name: &str, addr, size| Section {
            name: name.into(),
            kind: SectionKind::Text,
            addr,
            size,
            align: 16,
        };
        c.sections.push(text(
            ".text._ZN5memfs4read17h0123456789abcdefE",
            0x1000,
            0x80,
        ));
        c.sections.push(text(
            ".text._ZN5memfs6helper17h0123456789abcdefE",
            0x1080,
            0x20,
        ));
        c.sections.push(Section {
            name: ".stubs".into(),
            kind: SectionKind::Stubs,
            addr: 0x10a0,
            size: 0x10,
            align: 16,
        });
        c.symbols.push(Symbol {
            name: "_ZN5memfs4read17h0123456789abcdefE".into(),
            section: Some(SectionId(0)),
            addr: 0x1000,
            size: 0x80,
            kind: SymbolKind::Function,
            path_span: None,
        });
        c
    }

    #[test]
    fn an_exported_function_is_named_by_its_symbol() {
        let c = cell();
        let at = c.locate(0x104f).unwrap();
        assert_eq!(at.name, Some("_ZN5memfs4read17h0123456789abcdefE"));
        assert_eq!((at.symbol, at.offset), (Some(SymbolId(0)), 0x4f));
    }

    #[test]
    fn a_local_function_is_named_by_its_section() {
        let c = cell();
        let at = c.locate(0x1085).unwrap();
        assert_eq!(at.name, Some("_ZN5memfs6helper17h0123456789abcdefE"));
        assert_eq!((at.symbol, at.offset, at.section), (None, 5, SectionId(1)));
        let stub = c.locate(0x10a4).unwrap();
        assert_eq!((stub.name, stub.offset), (None, 4));
        assert_eq!(c.locate(0x10b0), None);
    }

    #[test]
    fn functions_list_symbols_and_unexported_sections() {
        let c = cell();
        let f = c.functions();
        let names: Vec<(&str, u64, u64)> = f.iter().map(|f| (f.name, f.addr, f.size)).collect();
        assert_eq!(
            names,
            [
                ("_ZN5memfs4read17h0123456789abcdefE", 0x1000, 0x80),
                ("_ZN5memfs6helper17h0123456789abcdefE", 0x1080, 0x20),
            ]
        );
    }

    #[test]
    fn functions_cover_each_text_section_once_whatever_the_symbol_order() {
        let mut c = cell();
        // An object (not a function) at the start of the second section does not name it; a
        // symbol of a section the cell does not have is ignored; an alias keeps its order.
        c.symbols.insert(
            0,
            Symbol {
                name: "_ZN5memfs5TABLE17h0123456789abcdefE".into(),
                section: Some(SectionId(1)),
                addr: 0x1080,
                size: 8,
                kind: SymbolKind::Object,
                path_span: None,
            },
        );
        c.symbols.push(Symbol {
            name: "memfs_read_alias".into(),
            section: Some(SectionId(0)),
            addr: 0x1000,
            size: 0,
            kind: SymbolKind::Function,
            path_span: None,
        });
        c.symbols.push(Symbol {
            name: "nowhere".into(),
            section: Some(SectionId(9)),
            addr: 0x2000,
            size: 4,
            kind: SymbolKind::Function,
            path_span: None,
        });
        let names: Vec<(&str, u64, u64)> = c
            .functions()
            .iter()
            .map(|f| (f.name, f.addr, f.size))
            .collect();
        assert_eq!(
            names,
            [
                ("_ZN5memfs4read17h0123456789abcdefE", 0x1000, 0x80),
                ("memfs_read_alias", 0x1000, 1),
                ("_ZN5memfs6helper17h0123456789abcdefE", 0x1080, 0x20),
            ]
        );
        // The same functions in the metadata's order: the symbols, then the unexported ones.
        let unordered: Vec<&str> = c.functions_unordered().iter().map(|f| f.name).collect();
        assert_eq!(
            unordered,
            [
                "_ZN5memfs4read17h0123456789abcdefE",
                "memfs_read_alias",
                "_ZN5memfs6helper17h0123456789abcdefE",
            ]
        );
    }

    #[test]
    fn in_a_merged_text_section_each_function_is_named_by_its_own_symbol() {
        let mut c = Cell::new("memfs", "0.1.0", Origin::Object);
        c.sections.push(Section {
            name: ".text".into(),
            kind: SectionKind::Text,
            addr: 0x2000,
            size: 0x100,
            align: 16,
        });
        let function = |name: &str, addr, size| Symbol {
            name: name.into(),
            section: Some(SectionId(0)),
            addr,
            size,
            kind: SymbolKind::Function,
            path_span: None,
        };
        c.symbols
            .push(function("_ZN5memfs4read17h0123456789abcdefE", 0x2000, 0x40));
        c.symbols.push(function(
            "_ZN5memfs5write17h0123456789abcdefE",
            0x2070,
            0x20,
        ));
        c.local_functions.push(function(
            "_ZN5memfs2Fs6lookup17h0123456789abcdefE",
            0x2040,
            0x30,
        ));
        // Tied with an exported symbol, the exported one names the address.
        c.local_functions.push(function(
            "_ZN5memfs10read_alias17h0123456789abcdefE",
            0x2000,
            0x40,
        ));
        let at = |addr| {
            let l = c.locate(addr).unwrap();
            (l.name.unwrap(), l.symbol, l.offset)
        };
        assert_eq!(
            at(0x2010),
            (
                "_ZN5memfs4read17h0123456789abcdefE",
                Some(SymbolId(0)),
                0x10
            )
        );
        assert_eq!(
            at(0x2050),
            ("_ZN5memfs2Fs6lookup17h0123456789abcdefE", None, 0x10)
        );
        assert_eq!(
            at(0x2075),
            ("_ZN5memfs5write17h0123456789abcdefE", Some(SymbolId(1)), 5)
        );
        let names: Vec<&str> = c.functions().iter().map(|f| f.name).collect();
        assert_eq!(
            names,
            [
                "_ZN5memfs4read17h0123456789abcdefE",
                "_ZN5memfs10read_alias17h0123456789abcdefE",
                "_ZN5memfs2Fs6lookup17h0123456789abcdefE",
                "_ZN5memfs5write17h0123456789abcdefE",
            ]
        );
    }
}
