//! What each command shows, as plain data: [`View`]. The renderers (`text`, `json`, `dot`,
//! `html`) only format a view; everything they show is decided here and in `deps.rs`.
//!
//! Views hold raw (mangled) names; the text renderer demangles them unless `--mangled`, and the
//! JSON has both.

use crate_metadata::{
    Cell, CellKind, CellState, EdgeId, LoadStats, Origin, SectionKind, SlotKind, SymbolKind,
};
use serde::Serialize;

use super::model::{Index, UnresolvedCell};

/// A cell as views name it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CellRef {
    /// Its id in the registry.
    pub id: u32,
    /// Its crate name (`nano_core` and `platform` for the base image and the platform).
    pub name: String,
    /// Its version (empty for the base image and the platform).
    pub version: String,
    /// Its namespace (`None` for the base image and the platform).
    pub namespace: Option<String>,
    /// Object, base image or platform.
    pub origin: Origin,
    /// Live or retired.
    pub state: CellState,
}

impl CellRef {
    /// The reference to `cell`.
    pub fn of(index: &Index<'_>, cell: &Cell) -> CellRef {
        CellRef {
            id: cell.id.0,
            name: cell.name.clone(),
            version: cell.version.clone(),
            namespace: index.namespace_name(cell).map(str::to_string),
            origin: cell.origin,
            state: cell.state,
        }
    }
}

/// One edge: a slot of the dependent that holds the address of the provider's symbol.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EdgeRow {
    /// The edge's id.
    pub edge: u32,
    /// The cell that holds the slot.
    pub dependent: String,
    /// The dependent's section the slot lives in (mangled name).
    pub section: String,
    /// The slot's offset in that section.
    pub offset: u64,
    /// The slot's address (a heap address in an offline snapshot).
    pub slot: u64,
    /// The slot's kind.
    pub kind: SlotKind,
    /// Added to the symbol's address.
    pub addend: i64,
    /// The cell that defines the symbol.
    pub provider: String,
    /// The symbol (mangled).
    pub symbol: String,
    /// The symbol's demangled path.
    pub demangled: String,
}

impl EdgeRow {
    /// The row for edge `id`, if it exists.
    pub fn of(index: &Index<'_>, id: EdgeId) -> Option<EdgeRow> {
        let e = index.registry().edge(id)?;
        let dependent = index.cell(e.dependent)?;
        let provider = index.cell(e.provider)?;
        let section = dependent.section(e.section);
        let symbol = provider
            .symbol(e.symbol)
            .map(|s| s.name.clone())
            .unwrap_or_default();
        Some(EdgeRow {
            edge: id.0,
            dependent: dependent.name.clone(),
            section: section.map(|s| s.name.clone()).unwrap_or_default(),
            // The host's handle slots live outside any cell (`.handles` is a placeholder).
            offset: section
                .filter(|s| s.size > 0)
                .map_or(0, |s| e.slot.wrapping_sub(s.addr)),
            slot: e.slot,
            kind: e.kind,
            addend: e.addend,
            provider: provider.name.clone(),
            demangled: crate_metadata::demangle::path(&symbol),
            symbol,
        })
    }
}

/// `cargo cell ls`: one row per cell.
#[derive(Clone, Debug, Serialize)]
pub struct LsRow {
    /// The cell.
    pub cell: CellRef,
    /// Where in `cells/` it came from.
    pub kind: Option<CellKind>,
    /// Total size of its sections in bytes.
    pub size: u64,
    /// Size of its object file.
    pub object_size: u64,
    /// Bytes mapped for it.
    pub mapped_bytes: u64,
    /// Distinct cells that use it (`nano_core` counts when the host holds a handle).
    pub dependents: usize,
    /// Distinct cells it uses.
    pub dependencies: usize,
    /// Start of its mapping.
    pub base_addr: u64,
}

/// A section of a cell, for `info`.
#[derive(Clone, Debug, Serialize)]
pub struct SectionRow {
    /// Its name (mangled).
    pub name: String,
    /// What it holds.
    pub kind: SectionKind,
    /// Where it was placed.
    pub addr: u64,
    /// Its size in bytes.
    pub size: u64,
    /// Its alignment.
    pub align: u64,
}

/// How many slots of one cell bind to something.
#[derive(Clone, Debug, Serialize)]
pub struct UseCount {
    /// The cell.
    pub cell: CellRef,
    /// Its slots.
    pub slots: usize,
}

/// A symbol a cell exports, for `info`.
#[derive(Clone, Debug, Serialize)]
pub struct ExportRow {
    /// The mangled name.
    pub symbol: String,
    /// Its demangled path.
    pub demangled: String,
    /// What it names.
    pub kind: SymbolKind,
    /// Its size.
    pub size: u64,
    /// The section that holds it (mangled).
    pub section: Option<String>,
    /// Its address.
    pub addr: u64,
    /// Who binds to it.
    pub users: Vec<UseCount>,
}

/// A symbol a cell imports, for `info`.
#[derive(Clone, Debug, Serialize)]
pub struct ImportRow {
    /// The mangled name.
    pub symbol: String,
    /// Its demangled path.
    pub demangled: String,
    /// Who defines it.
    pub provider: CellRef,
    /// How many slots of the cell hold it.
    pub slots: usize,
    /// The kinds of those slots.
    pub kinds: Vec<SlotKind>,
}

/// `cargo cell info <cell>`.
#[derive(Clone, Debug, Serialize)]
pub struct InfoView {
    /// The cell.
    pub cell: CellRef,
    /// Where in `cells/` it came from.
    pub kind: Option<CellKind>,
    /// SHA-256 of its object.
    pub sha256: Option<String>,
    /// Size of its object file.
    pub object_size: u64,
    /// Total size of its sections.
    pub size: u64,
    /// Start of its mapping.
    pub base_addr: u64,
    /// How loading went.
    pub stats: LoadStats,
    /// Its sections.
    pub sections: Vec<SectionRow>,
    /// Its exported symbols and who uses each.
    pub exports: Vec<ExportRow>,
    /// The symbols it imports and who provides each.
    pub imports: Vec<ImportRow>,
}

/// A node of the dependency tree.
#[derive(Clone, Debug, Serialize)]
pub struct TreeNode {
    /// The cell.
    pub cell: CellRef,
    /// Total size of its sections.
    pub size: u64,
    /// Slots by which the parent uses this cell (0 for a root).
    pub slots: usize,
    /// Shown in full elsewhere in the tree (`(*)`), so not expanded here.
    pub repeated: bool,
    /// Its dependencies.
    pub children: Vec<TreeNode>,
    /// With `--all`, for the base image and the platform: the symbols the parent binds there.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub symbols: Vec<String>,
}

/// A cell that a swap or removal touches.
#[derive(Clone, Debug, Serialize)]
pub struct Dependent {
    /// The dependent.
    pub cell: CellRef,
    /// 1 for a direct dependent, 2 for one of its dependents, ...
    pub depth: usize,
    /// The cell it depends on, on the way to the inverted cell.
    pub via: CellRef,
    /// Its slots that bind to `via`.
    pub slots: Vec<EdgeRow>,
}

/// The symbols through which one cell uses another.
#[derive(Clone, Debug, Serialize)]
pub struct Hop {
    /// The dependent.
    pub from: CellRef,
    /// The provider.
    pub to: CellRef,
    /// Each symbol with the slots that hold it.
    pub symbols: Vec<SymbolUse>,
}

/// One symbol and the slots that bind to it.
#[derive(Clone, Debug, Serialize)]
pub struct SymbolUse {
    /// The mangled name.
    pub symbol: String,
    /// Its demangled path.
    pub demangled: String,
    /// The slots.
    pub slots: Vec<EdgeRow>,
}

/// Where an address lies.
#[derive(Clone, Debug, Serialize)]
pub struct AddrHit {
    /// The cell.
    pub cell: CellRef,
    /// The section (mangled).
    pub section: String,
    /// The section's address.
    pub section_addr: u64,
    /// The address's offset in the section.
    pub section_offset: u64,
    /// The nearest exported symbol at or below the address in that section (mangled).
    pub symbol: Option<String>,
    /// Its demangled path.
    pub demangled: Option<String>,
    /// The address's offset from that symbol.
    pub symbol_offset: u64,
    /// When the address is a slot: its edge.
    pub slot: Option<EdgeRow>,
}

/// Everything the commands show.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "view", rename_all = "snake_case")]
pub enum View {
    /// `ls`.
    Ls {
        /// One row per cell.
        cells: Vec<LsRow>,
    },
    /// `info <cell>`.
    Info(Box<InfoView>),
    /// `deps`: the crate graph as a tree.
    Tree {
        /// Cells nothing else uses, each with its dependencies below it.
        roots: Vec<TreeNode>,
        /// The depth limit, if any.
        depth: Option<usize>,
    },
    /// `deps --invert <cell>`.
    Invert {
        /// The cell swapped or removed.
        cell: CellRef,
        /// Everything that depends on it, nearest first.
        dependents: Vec<Dependent>,
    },
    /// `deps --why <a> <b>`.
    Why {
        /// The dependent.
        from: CellRef,
        /// The provider.
        to: CellRef,
        /// The shortest chain of uses from `from` to `to` (one hop when direct, empty when
        /// `from` does not depend on `to`).
        path: Vec<Hop>,
    },
    /// `deps --symbols <cell>`.
    Symbols {
        /// The cell.
        cell: CellRef,
        /// Its slots.
        uses: Vec<EdgeRow>,
        /// Other cells' slots that bind to it.
        used_by: Vec<EdgeRow>,
    },
    /// `deps --unresolved`.
    Unresolved {
        /// The cells that failed to link.
        cells: Vec<UnresolvedCell>,
    },
    /// `deps --cycles`.
    Cycles {
        /// Each strongly connected component of more than one object cell.
        cycles: Vec<Vec<CellRef>>,
    },
    /// `deps --addr <hex>`.
    Addr {
        /// The address asked about.
        addr: u64,
        /// Where it lies, if in a cell.
        hit: Option<AddrHit>,
    },
}
