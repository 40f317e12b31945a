//! What each command shows, as plain data: [`View`]. The renderers (`text`, `json`, `dot`,
//! `html`) only format a view; everything they show is decided here and in `deps.rs`.
//!
//! Views hold raw (mangled) names; the text renderer demangles them unless `--mangled`, and the
//! JSON has both.

use crate_metadata::{
    Cell, CellKind, CellState, CrateInfo, EdgeId, LoadStats, ManifestEntry, Origin, SectionKind,
    Sha256, SlotKind, SymbolKind,
};
use serde::Serialize;

use super::model::{Index, UnresolvedSymbol};

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
    /// Where in `cells/` it came from; `deps` for a dependency crate (`None` for the base image
    /// and the platform).
    pub kind: Option<CellKind>,
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
            kind: cell.kind,
            state: cell.state,
        }
    }
}

/// A manifest entry as views name it: a cell's crate or a dependency crate, loaded or not.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EntryRef {
    /// The crate name.
    pub name: String,
    /// The version.
    pub version: String,
    /// Where in `cells/` it lives; `deps` for a dependency crate.
    pub kind: CellKind,
    /// How the manifest names it (`regex-1.13.2` for a dependency crate; a cell's name).
    pub key: String,
    /// A dependency crate that the base image links (the build found every symbol it exports in
    /// `nano_core`), so that cells bind to the image instead of loading it.
    pub base_image: bool,
}

impl EntryRef {
    /// The reference to `entry`.
    pub fn of(entry: &ManifestEntry) -> EntryRef {
        EntryRef {
            name: entry.name.clone(),
            version: entry.version.clone(),
            kind: entry.kind,
            key: entry.key().to_string(),
            base_image: entry.crate_info.as_ref().is_some_and(|c| c.in_base_image),
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
    /// For an edge from an application's namespace into the kernel, the base image or the
    /// platform: the export-policy rule that allowed it (`app→kernel: interface `greet::greeting``).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
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
            .map(|s| s.name.to_string())
            .unwrap_or_default();
        Some(EdgeRow {
            edge: id.0,
            dependent: dependent.name.clone(),
            section: section.map(|s| s.name.to_string()).unwrap_or_default(),
            // The host's handle slots live outside any cell (`.handles` is a placeholder).
            offset: section
                .filter(|s| s.size > 0)
                .map_or(0, |s| e.slot.wrapping_sub(s.addr)),
            slot: e.slot,
            kind: e.kind,
            addend: e.addend,
            provider: provider.name.clone(),
            demangled: crate_metadata::demangle::path(&symbol),
            rule: super::policy::crossing_rule(index, dependent, provider, &symbol),
            symbol,
        })
    }
}

/// `cargo cell ls`: one row per cell.
#[derive(Clone, Debug, Serialize)]
pub struct LsRow {
    /// The cell.
    pub cell: CellRef,
    /// Where in `cells/` it came from (`deps` for a dependency crate).
    pub kind: Option<CellKind>,
    /// For a dependency crate: which build of which crate it is (from the manifest).
    #[serde(rename = "crate")]
    pub crate_info: Option<CrateInfo>,
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
    /// For an import of an application's cell from outside its namespace: the export-policy rule
    /// that allowed it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
}

/// A crate a cell is compiled against, for `info`.
#[derive(Clone, Debug, Serialize)]
pub struct CrateUse {
    /// The crate.
    #[serde(rename = "crate")]
    pub entry: EntryRef,
    /// The cells it is loaded as where the cell can see them (empty when the base image provides
    /// it, or when it is not loaded).
    pub cells: Vec<CellRef>,
    /// The cell's slots bound to it (to those cells, or to the base image's copy).
    pub slots: usize,
    /// How many symbols its object exports (none: nothing to load).
    pub exports: usize,
}

/// `cargo cell info <cell>`.
#[derive(Clone, Debug, Serialize)]
pub struct InfoView {
    /// The cell.
    pub cell: CellRef,
    /// Where in `cells/` it came from.
    pub kind: Option<CellKind>,
    /// For a dependency crate: which build of which crate it is.
    #[serde(rename = "crate")]
    pub crate_info: Option<CrateInfo>,
    /// The dependency crates it is compiled against (the manifest's `crates`), and where each is.
    pub crates: Vec<CrateUse>,
    /// The entries compiled against it (the manifest's crate graph), loaded or not.
    pub users: Vec<EntryRef>,
    /// The cells that hold slots bound to it, with how many.
    pub dependents: Vec<UseCount>,
    /// SHA-256 of its object.
    pub sha256: Option<Sha256>,
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
    /// For a kernel or library cell: what applications may bind to (`None`: it declares nothing).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_interface: Option<crate_metadata::AppInterface>,
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
    /// For the base image: the parent's dependency crates it links, so the parent binds to it
    /// instead of loading them (`log 0.4.35`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub crates: Vec<String>,
    /// When the parent is an application's cell: the export-policy rules that allowed its slots
    /// into this cell, distinct (`app→kernel: interface `greet::greeting``).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<String>,
}

/// A dependency crate, for `ls --crates`.
#[derive(Clone, Debug, Serialize)]
pub struct CrateRow {
    /// The crate name.
    pub name: String,
    /// The release.
    pub version: String,
    /// How many symbols its object exports (none: nothing to load, as for `cfg_if`).
    pub exports: usize,
    /// Which build it is: key, package, source, features, metadata hash, `in_base_image`.
    #[serde(flatten)]
    pub info: CrateInfo,
    /// The cells it is loaded as.
    pub cells: Vec<CellRef>,
    /// The entries compiled against it directly (the manifest's `crates` lists).
    pub users: Vec<EntryRef>,
    /// The cells whose slots bind to it (to its cells, or to the base image's copy).
    pub bound_by: Vec<UseCount>,
}

/// An entry that a bump of a dependency crate touches.
#[derive(Clone, Debug, Serialize)]
pub struct CrateDependent {
    /// The entry.
    #[serde(rename = "crate")]
    pub entry: EntryRef,
    /// 1 when it uses the crate directly, 2 when it uses one of those, ...
    pub depth: usize,
    /// The entry it is compiled against, one step nearer to the bumped crate.
    pub via: EntryRef,
    /// The cells it is loaded as, each with its slots bound to `via` (empty when not loaded).
    pub cells: Vec<TouchedCell>,
}

/// A prepared dependency upgrade that moves a crate to another release.
#[derive(Clone, Debug, Serialize)]
pub struct PreparedBump {
    /// The upgrade (a new version of a cell).
    pub upgrade: EntryRef,
    /// The key of the release it moves the crate to.
    pub to: String,
    /// The cells the build rebuilt with it (their symbols changed with the bump).
    pub rebuilt: Vec<String>,
}

/// A loaded cell a bump touches, with its slots bound to the crate it is compiled against.
#[derive(Clone, Debug, Serialize)]
pub struct TouchedCell {
    /// The cell.
    pub cell: CellRef,
    /// Its slots bound to the cells of `via` (or to the base image's copy of it).
    pub slots: Vec<EdgeRow>,
}

/// A cell that would fail to link, for `--unresolved`.
#[derive(Clone, Debug, Serialize)]
pub struct UnresolvedRow {
    /// The crate name.
    pub name: String,
    /// The crate version.
    pub version: String,
    /// The namespace it was to be loaded into.
    pub namespace: String,
    /// The loader's error.
    pub message: String,
    /// The symbols nothing visible defines.
    pub missing: Vec<MissingRow>,
}

/// A symbol nothing visible defines.
#[derive(Clone, Debug, Serialize)]
pub struct MissingRow {
    /// Its name and what the loader found out about it.
    #[serde(flatten)]
    pub symbol: UnresolvedSymbol,
    /// The cell of the manifest that exports it (`unicode_width 0.1.14`), as the loader's catalog
    /// names it.
    pub defined_by: Option<String>,
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
    /// What the address lies in (mangled): the nearest exported symbol at or below it in that
    /// section, or the function the section is named after ([`crate_metadata::Cell::locate`]).
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
    /// `ls --crates`.
    Crates {
        /// Every dependency crate of the manifest, loaded or not.
        crates: Vec<CrateRow>,
    },
    /// `deps --invert <cell>`.
    Invert {
        /// The cell swapped or removed.
        cell: CellRef,
        /// Everything that depends on it, nearest first.
        dependents: Vec<Dependent>,
    },
    /// `deps --invert <crate>`: what a bump of a dependency crate touches.
    InvertCrate {
        /// The crate bumped.
        #[serde(rename = "crate")]
        entry: EntryRef,
        /// Which build it is.
        info: CrateInfo,
        /// How many symbols its object exports.
        exports: usize,
        /// The cells it is loaded as.
        cells: Vec<CellRef>,
        /// The other releases (or builds) of the crate in the manifest.
        others: Vec<EntryRef>,
        /// The prepared upgrades (`cells/upgrades`) that move it to another release.
        prepared: Vec<PreparedBump>,
        /// Every entry compiled against it, transitively, nearest first.
        dependents: Vec<CrateDependent>,
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
        cells: Vec<UnresolvedRow>,
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
