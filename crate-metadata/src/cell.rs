//! Cells, their sections and their symbols.

use alloc::string::String;
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

use crate::digest::Sha256;
use crate::ids::{CellId, EdgeId, NamespaceId, SectionId, SymbolId};
use crate::manifest::CellKind;
use crate::name::{Name, NameArena, NameSpan};
use crate::shared::SharedList;

/// What a cell of the registry stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// A cell object the loader mapped and linked.
    Object,
    /// The base image (`nano_core`): the root every cell binds to for `core`, `alloc`, `std`.
    BaseImage,
    /// The platform beneath the base image (`dlsym`: libc, libm, libgcc, the loader's TLS).
    Platform,
}

/// Whether a cell is in use or has been replaced by a swap.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CellState {
    /// Visible in its namespace; new bindings go to it.
    Live,
    /// Replaced by a newer version; still mapped while anything may run it.
    Retired,
}

/// What a section holds, which decides the region (and so the permissions) it is placed in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SectionKind {
    /// Code (`.text.*`): read + execute.
    Text,
    /// Call stubs the loader writes (`jmp *slot`): read + execute.
    Stubs,
    /// Read-only data (`.rodata.*`, `.gcc_except_table.*`): read only.
    ReadOnly,
    /// Unwind tables (`.eh_frame`), registered with the unwinder: read only.
    EhFrame,
    /// Data that only relocations write (`.data.rel.ro.*`, `.init_array`): read only after load,
    /// writable only inside a swap's commit.
    RelRo,
    /// The cell's global offset table: read only after load, writable only inside a commit.
    Got,
    /// Writable data (`.data.*`).
    Data,
    /// Zero-initialized writable data (`.bss.*`).
    Bss,
    /// The initial image of thread-local data (`.tdata.*`), copied into each thread's block.
    TlsData,
    /// Zero-initialized thread-local data (`.tbss.*`): not mapped, only sized.
    TlsBss,
}

/// One placed section of a cell.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Section {
    /// The section's name in the object (`.text._ZN4klog4push17h…E`) or a loader-made name
    /// (`.got`, `.stubs`).
    pub name: Name,
    /// What it holds.
    pub kind: SectionKind,
    /// Where it was placed (0 for `.tbss`, which is not mapped).
    pub addr: u64,
    /// Its size in bytes.
    pub size: u64,
    /// Its alignment in bytes (1 when the object did not ask for one).
    pub align: u64,
}

/// What a symbol names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SymbolKind {
    /// Code.
    Function,
    /// A static or other data.
    Object,
    /// A thread-local variable; its address is an offset in the owner's TLS block.
    Tls,
    /// Anything else (`STT_NOTYPE`).
    Other,
}

/// A symbol a cell defines and others may bind to.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(from = "StoredSymbol", into = "StoredSymbol")]
pub struct Symbol {
    /// The mangled name, exactly as in the object.
    pub name: Name,
    /// The section that holds it (`None` for the base image and the platform).
    pub section: Option<SectionId>,
    /// Its address (for [`SymbolKind::Tls`], its offset in the TLS block).
    pub addr: u64,
    /// Its size in bytes, where known.
    pub size: u64,
    /// What it names.
    pub kind: SymbolKind,
    /// Where its demangled path lies, when the object carried it (a function's, from
    /// `.cell.paths`, [`crate::paths`]): a span of the string `name` is a slice of, pushed into the
    /// same [`crate::NameArena`] ([`Symbol::path`] reads it). A span, not a [`Name`], so that a
    /// function's path costs no reference count of its own at load and unload.
    pub path_span: Option<NameSpan>,
}

impl Symbol {
    /// Its demangled path, when the object carried it; readers demangle `name` otherwise.
    pub fn path(&self) -> Option<&str> {
        self.path_span.and_then(|span| self.name.sibling(span))
    }
}

impl PartialEq for Symbol {
    fn eq(&self, other: &Symbol) -> bool {
        self.name == other.name
            && self.section == other.section
            && self.addr == other.addr
            && self.size == other.size
            && self.kind == other.kind
            && self.path() == other.path()
    }
}

impl Eq for Symbol {}

/// A [`Symbol`] as it is serialized: its path as a string of its own.
#[derive(Clone, Serialize, Deserialize)]
struct StoredSymbol {
    name: String,
    section: Option<SectionId>,
    addr: u64,
    size: u64,
    kind: SymbolKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    path: Option<String>,
}

impl From<Symbol> for StoredSymbol {
    fn from(s: Symbol) -> StoredSymbol {
        StoredSymbol {
            name: s.name.as_str().into(),
            section: s.section,
            addr: s.addr,
            size: s.size,
            kind: s.kind,
            path: s.path().map(String::from),
        }
    }
}

impl From<StoredSymbol> for Symbol {
    fn from(s: StoredSymbol) -> Symbol {
        // The name and the path in one string, as a load makes them.
        let mut arena =
            NameArena::with_capacity(s.name.len() + s.path.as_ref().map_or(0, String::len));
        let name = arena.push(&s.name);
        let path = s.path.as_deref().and_then(|p| arena.push(p));
        let names = arena.finish();
        Symbol {
            // A name too long for an arena (never from an object) is kept whole, without path.
            name: name.map_or_else(|| Name::from(s.name.as_str()), |n| names.name(n)),
            section: s.section,
            addr: s.addr,
            size: s.size,
            kind: s.kind,
            path_span: path.filter(|_| name.is_some()),
        }
    }
}

/// Numbers about how a cell was loaded, for people and benchmarks.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadStats {
    /// Relocations applied by the load.
    pub relocations: u32,
    /// Relocations `cargo cell build` applied already (the object's `.cell.prelink`).
    #[serde(default)]
    pub prelinked: u32,
    /// Whether the unwind table registered is the one `cargo cell build` checked (its hash in
    /// `.cell.prelink`), so the load did not check it again.
    #[serde(default)]
    pub unwind_checked_at_build: bool,
    /// Whether the names of the cell's metadata were read from the object's `.cell.names`,
    /// laid out by `cargo cell build`, rather than found one by one in its symbol table.
    #[serde(default)]
    pub names_from_build: bool,
    /// GOT slots made.
    pub got_slots: u32,
    /// Call stubs made.
    pub stubs: u32,
    /// Bytes mapped for the cell (all regions, page aligned).
    pub mapped_bytes: u64,
    /// Time from the first byte parsed to the cell being visible, in nanoseconds (0 when the
    /// platform has no clock).
    pub load_nanos: u64,
}

/// A cell: one loaded object, or the base image, or the platform.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cell {
    /// Its id.
    pub id: CellId,
    /// Its crate name.
    pub name: String,
    /// Its crate version.
    pub version: String,
    /// Where in `cells/` it came from (`None` for the base image and the platform).
    pub kind: Option<CellKind>,
    /// What it stands for.
    pub origin: Origin,
    /// The namespace it was loaded into (`None` for the base image and the platform).
    pub namespace: Option<NamespaceId>,
    /// Live or retired.
    pub state: CellState,
    /// SHA-256 of the object, when known.
    pub sha256: Option<Sha256>,
    /// Size of the object file in bytes.
    pub object_size: u64,
    /// Start of the cell's mapping (0 when not mapped).
    pub base_addr: u64,
    /// The placed sections (shared with the debuggers' table: [`SharedList`]).
    pub sections: SharedList<Section>,
    /// The symbols the cell defines that others may bind to (for the base image and the
    /// platform: the ones something bound to).
    pub symbols: SharedList<Symbol>,
    /// The functions the cell defines but does not export (`STT_FUNC` symbols of local binding),
    /// by which backtraces, fault reports, debuggers and profilers name its code: a cell object's
    /// text is one merged section, so no section name tells one function from the next. Not in
    /// any namespace; nothing binds to them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub local_functions: SharedList<Symbol>,
    /// Edges whose dependent is this cell (what it uses).
    pub uses: Vec<EdgeId>,
    /// Edges whose provider is this cell (what uses it).
    pub used_by: Vec<EdgeId>,
    /// How loading went.
    pub stats: LoadStats,
    /// The thread-local storage module the loader made for the cell's `thread_local!`s, if it
    /// has any: other cells that use them (`TLSGD` against its `STT_TLS` symbols) get this module
    /// id and the variable's offset, as `ld.so` serves a `dlopen`ed library's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_module: Option<u64>,
}

impl Cell {
    /// A cell with no sections, symbols or edges yet.
    pub fn new(name: &str, version: &str, origin: Origin) -> Cell {
        Cell {
            id: CellId(u32::MAX),
            name: name.into(),
            version: version.into(),
            kind: None,
            origin,
            namespace: None,
            state: CellState::Live,
            sha256: None,
            object_size: 0,
            base_addr: 0,
            sections: SharedList::new(),
            symbols: SharedList::new(),
            local_functions: SharedList::new(),
            uses: Vec::new(),
            used_by: Vec::new(),
            stats: LoadStats::default(),
            tls_module: None,
        }
    }

    /// The symbol `id`.
    pub fn symbol(&self, id: SymbolId) -> Option<&Symbol> {
        self.symbols.get(id.index())
    }

    /// The section `id`.
    pub fn section(&self, id: SectionId) -> Option<&Section> {
        self.sections.get(id.index())
    }

    /// The symbol with the mangled name `name` (a linear search).
    pub fn find_symbol(&self, name: &str) -> Option<SymbolId> {
        self.symbols
            .iter()
            .position(|s| s.name == name)
            .map(|i| SymbolId(i as u32))
    }

    /// The section that contains `addr`, if any.
    pub fn section_at(&self, addr: u64) -> Option<SectionId> {
        self.sections
            .iter()
            .position(|s| s.size > 0 && addr >= s.addr && addr - s.addr < s.size)
            .map(|i| SectionId(i as u32))
    }

    /// Total size of the cell's sections in bytes.
    pub fn size(&self) -> u64 {
        self.sections.iter().map(|s| s.size).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_symbol_reads_its_path_from_its_names_string_and_serializes_it_as_a_string() {
        let mut arena = NameArena::default();
        let name = arena.push("_ZN5memfs4read17h0123456789abcdefE").unwrap();
        let path = arena.push("memfs::read").unwrap();
        let names = arena.finish();
        let symbol = Symbol {
            name: names.name(name),
            section: Some(SectionId(0)),
            addr: 0x1000,
            size: 0x40,
            kind: SymbolKind::Function,
            path_span: Some(path),
        };
        assert_eq!(symbol.path(), Some("memfs::read"));
        let text = serde_json::to_string(&symbol).unwrap();
        assert!(text.contains(r#""path":"memfs::read""#), "{text}");
        assert!(!text.contains("path_span"), "{text}");
        let back: Symbol = serde_json::from_str(&text).unwrap();
        assert_eq!(back, symbol);
        assert_eq!(back.path(), Some("memfs::read"));
        // Without a path, none is written, and none read back.
        let bare = Symbol {
            path_span: None,
            ..symbol.clone()
        };
        let text = serde_json::to_string(&bare).unwrap();
        assert!(!text.contains("path"), "{text}");
        let back: Symbol = serde_json::from_str(&text).unwrap();
        assert_eq!(back.path(), None);
        assert_eq!(back, bare);
        assert_ne!(bare, symbol, "symbols with and without a path differ");
    }
}
