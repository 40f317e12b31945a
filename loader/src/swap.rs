//! Live swap: replacing cells with new versions while the system runs, as one transaction.
//!
//! ```text
//!  stage ──► verify ──► rebind statics / transfer state ──► commit ──► retire
//!  (load the new versions   (every symbol a      (new versions use the     (8-byte slot    (old versions stay
//!   into a staging          dependent binds to   old versions' memory, or  stores; text    mapped until
//!   namespace, resolved     exists by exact      build their own from it)  never patched)  reclaimed)
//!   against the live system) name)
//! ```
//!
//! Everything before commit can fail, and a failure undoes it all: the staged cells are unloaded,
//! any slot written is restored, and the namespaces, the registry and every slot are exactly as
//! before. Commit cannot fail: the pages it writes were made writable beforehand, and each store
//! is one aligned atomic 8-byte write, so a caller on another thread reads either the old or the
//! new address and each call runs wholly in one version.

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

use crate::error::LoadError;
use crate::layout::Region;
use crate::mapping::{load_slot, store_slot};
use crate::platform::{Platform, PlatformError, Protection};
use crate::system::{CellSpec, System};
use crate_metadata::{
    demangle, Cell, CellId, CellState, Checkpoint, EdgeId, NamespaceId, Origin, Registry,
    SectionKind, SlotKind, SymbolId, SymbolKind,
};
use namespace::{Export, SymbolRef};

/// Where the new version of a cell comes from.
#[derive(Clone, Copy, Debug)]
pub enum NewVersion<'a> {
    /// An object to load. If a retired cell of the same name has the same SHA-256 (given in the
    /// spec), that cell is reused instead of loading the object again.
    Object {
        /// Its identity.
        spec: CellSpec<'a>,
        /// Its bytes.
        bytes: &'a [u8],
    },
    /// A retired version still mapped, reused as it is.
    Retired(CellId),
}

/// Replace the live cell `old` by `new`.
#[derive(Clone, Copy, Debug)]
pub struct SwapRequest<'a> {
    /// The live cell to replace.
    pub old: CellId,
    /// Its new version.
    pub new: NewVersion<'a>,
}

/// Choices a swap cannot make by itself.
#[derive(Clone, Debug, Default)]
pub struct SwapOptions {
    /// Start every static of the new versions fresh (no rebinding, no transfer).
    pub fresh_all: bool,
    /// Start these statics fresh, by path (`frame_alloc::ALLOCATOR`).
    pub fresh: Vec<String>,
    /// Symbols whose mangled name changed on purpose and that the caller vouches for, as
    /// `(old, new)` mangled names: a dependency upgrade moves crates to new releases, which renames
    /// every symbol of the cells compiled against them, and the build tool checked that each of
    /// these keeps its signature. A dependent outside the swap that binds to `old` is moved to
    /// `new`; a static named `old` is rebound to `new` (size and alignment still checked).
    pub renames: Vec<(String, String)>,
    /// Cells (by name) whose crate identity changes in this swap and whose source the caller could
    /// not compare (third-party crates moved to another release): their statics are matched by
    /// demangled path, with size and alignment checked, as the state to keep.
    pub match_statics_by_path: Vec<String>,
}

impl SwapOptions {
    /// The new name `old` is renamed to, if the caller vouched for one.
    fn renamed(&self, old: &str) -> Option<&str> {
        self.renames
            .iter()
            .find(|(from, _)| from == old)
            .map(|(_, to)| to.as_str())
    }
}

/// What happened to one static of a new version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StaticOutcome {
    /// Bound to the old version's memory: the state is the same bytes, untouched.
    Rebound,
    /// Rebuilt by the new version's `transfer_state` from the old version's.
    Transferred,
    /// Started from the new version's own initial value.
    Fresh,
}

/// One static of a new version and what the swap did with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StaticReport {
    /// The static's path (`memfs::FS`).
    pub path: String,
    /// What happened.
    pub outcome: StaticOutcome,
    /// Its size in the old version (0 when new) and in the new one.
    pub sizes: (u64, u64),
}

/// One swapped cell.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SwappedCell {
    /// The name.
    pub name: String,
    /// The version replaced (now retired).
    pub old: CellId,
    /// The version now live.
    pub new: CellId,
    /// Whether the new version was a retired one reused without loading.
    pub reused: bool,
}

/// How long each phase took, in nanoseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PhaseTimes {
    /// Loading the new versions into the staging namespace.
    pub stage: u64,
    /// Checking every dependent's symbols.
    pub verify: u64,
    /// Rebinding statics and running state transfers.
    pub rebind: u64,
    /// The commit window: the dependents' pages opened, the slot stores, the pages closed. Slots
    /// change only inside it.
    pub commit: u64,
    /// Moving the edges, the namespace entries and the cells' states after the commit.
    pub retire: u64,
    /// The whole swap.
    pub total: u64,
}

/// What a swap did.
#[derive(Clone, Debug, Default)]
pub struct SwapReport {
    /// The cells swapped.
    pub cells: Vec<SwappedCell>,
    /// Slots rewritten by the commit.
    pub slots_rewritten: usize,
    /// The cells whose slots were rewritten (`nano_core` for the host's handles), by name.
    pub dependents: Vec<String>,
    /// Every static of the new versions.
    pub statics: Vec<StaticReport>,
    /// Phase times.
    pub times: PhaseTimes,
    /// Regions that could not be made read-only again after the commit (they stay writable, never
    /// executable). Empty unless the platform failed.
    pub warnings: Vec<String>,
}

/// A symbol a dependent binds to that the new version lacks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MissingExport {
    /// The symbol, demangled.
    pub symbol: String,
    /// The mangled name.
    pub mangled: String,
    /// When the new version has the same path under another hash: its mangled name. Then the
    /// function's signature, or the crate's identity (name, version, features, profile), changed.
    pub changed_to: Option<String>,
    /// The dependents that bind to it.
    pub dependents: Vec<String>,
}

/// Why a swap was refused. The system is exactly as it was before the call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SwapError {
    /// Nothing to swap.
    Empty,
    /// No loaded cell has this id.
    NoSuchCell(CellId),
    /// The cell to replace is not live.
    NotLive {
        /// The cell.
        cell: String,
    },
    /// The same cell appears twice in one swap.
    Duplicate {
        /// The cell.
        cell: String,
    },
    /// The cells of one swap must share a namespace.
    MixedNamespaces {
        /// The cells.
        cells: Vec<String>,
    },
    /// The new version has another name than the cell it replaces.
    WrongName {
        /// The cell replaced.
        cell: String,
        /// The new version's name.
        new: String,
    },
    /// `NewVersion::Retired` names a cell that is not a retired version of the cell.
    NotRetired {
        /// The cell replaced.
        cell: String,
        /// The id given.
        id: CellId,
    },
    /// Loading a new version failed.
    Stage(LoadError),
    /// Dependents bind to symbols the new version does not export.
    MissingSymbols {
        /// The cell.
        cell: String,
        /// Every missing symbol.
        missing: Vec<MissingExport>,
    },
    /// Dependents reach the cell without a slot, so they cannot be moved.
    DirectReferences {
        /// The cell.
        cell: String,
        /// The dependents.
        dependents: Vec<String>,
    },
    /// A static changed size or alignment, and the new version has no `transfer_state` and no
    /// fresh state was asked for.
    StaticLayoutChanged {
        /// The cell.
        cell: String,
        /// The static's path.
        name: String,
        /// (size, alignment) in the old version.
        old: (u64, u64),
        /// (size, alignment) in the new version.
        new: (u64, u64),
        /// Whether its type changed (the mangled name's hash covers the type), whatever the size.
        type_changed: bool,
    },
    /// A static to rebind is reached by the new version's code without a slot.
    StaticReferencedDirectly {
        /// The cell.
        cell: String,
        /// The static's path.
        name: String,
    },
    /// The new version's `transfer_state` returned an error.
    Transfer {
        /// The cell.
        cell: String,
        /// Its message.
        message: String,
    },
    /// The new version's `transfer_state` panicked.
    TransferPanicked {
        /// The cell.
        cell: String,
        /// The panic message.
        message: String,
    },
    /// The namespace would refuse the new version's exports (a duplicate symbol).
    Namespace {
        /// The cell.
        cell: String,
        /// What the namespace said.
        error: namespace::NamespaceError,
    },
    /// The platform failed (protecting pages for the commit or the rebinding).
    Platform {
        /// The cell.
        cell: String,
        /// What failed.
        error: PlatformError,
    },
}

impl core::error::Error for SwapError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            SwapError::Stage(error) => Some(error),
            SwapError::Platform { error, .. } => Some(error),
            SwapError::Namespace { error, .. } => Some(error),
            _ => None,
        }
    }
}

impl fmt::Display for SwapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use SwapError::*;
        match self {
            Empty => f.write_str("nothing to swap"),
            NoSuchCell(id) => write!(f, "no loaded cell {id}"),
            NotLive { cell } => write!(f, "cell `{cell}` is not live"),
            Duplicate { cell } => write!(f, "cell `{cell}` appears twice in one swap"),
            MixedNamespaces { cells } => write!(
                f,
                "the cells of one swap must be in one namespace: {}",
                cells.join(", ")
            ),
            WrongName { cell, new } => {
                write!(
                    f,
                    "cell `{cell}` cannot be replaced by a cell named `{new}`"
                )
            }
            NotRetired { cell, id } => write!(f, "{id} is not a retired version of `{cell}`"),
            Stage(e) => write!(f, "staging the new version failed: {e}"),
            MissingSymbols { cell, missing } => {
                write!(
                    f,
                    "the new version of `{cell}` lacks {} symbol{} its dependents bind to:",
                    missing.len(),
                    if missing.len() == 1 { "" } else { "s" }
                )?;
                for m in missing {
                    write!(f, "\n  {} (used by {})", m.symbol, m.dependents.join(", "))?;
                    if let Some(to) = &m.changed_to {
                        write!(
                            f,
                            "\n    the same path exists as {}: its signature or the crate's \
                             identity (name, version, features, profile) changed",
                            demangle::demangle(to)
                        )?;
                    }
                }
                Ok(())
            }
            DirectReferences { cell, dependents } => write!(
                f,
                "`{cell}` is reached without a slot by {}, which cannot be moved",
                dependents.join(", ")
            ),
            StaticLayoutChanged {
                cell,
                name,
                old,
                new,
                type_changed,
            } => write!(
                f,
                "static `{name}` of `{cell}` changed {}from {} bytes (align {}) to {} bytes \
                 (align {}): the new version needs a `transfer_state` function, or ask for fresh \
                 state",
                if *type_changed { "its type, " } else { "" },
                old.0,
                old.1,
                new.0,
                new.1
            ),
            StaticReferencedDirectly { cell, name } => write!(
                f,
                "static `{name}` of the new `{cell}` is reached without a slot, so it cannot be \
                 bound to the old version's memory (make it a `pub static`)"
            ),
            Transfer { cell, message } => {
                write!(f, "`{cell}::transfer_state` failed: {message}")
            }
            TransferPanicked { cell, message } => {
                write!(f, "`{cell}::transfer_state` panicked: {message}")
            }
            Namespace { cell, error } => write!(f, "cell `{cell}`: {error}"),
            Platform { cell, error } => write!(f, "cell `{cell}`: {error}"),
        }
    }
}

/// The signature of the state-transfer convention.
pub type TransferFn = fn(&dyn Fn(&str) -> Option<usize>) -> Result<(), String>;

/// One old version and its new version during a swap.
#[derive(Clone, Copy, Debug)]
struct Pair {
    old: CellId,
    new: CellId,
    reused: bool,
}

/// What a swap has done so far, so that a failure can undo it.
struct Undo {
    registry: Checkpoint,
    staging: Option<NamespaceId>,
    loaded: Vec<CellId>,
    reused: Vec<CellId>,
    /// (slot, previous value) of slots written before commit.
    slots: Vec<(u64, u64)>,
    /// (cell, symbol, previous address) of symbols moved by rebinding.
    symbols: Vec<(CellId, SymbolId, u64)>,
}

/// A static of a cell: an exported object in a writable data section.
fn statics(cell: &Cell) -> impl Iterator<Item = (SymbolId, &crate_metadata::Symbol, u64)> {
    cell.symbols.iter().enumerate().filter_map(|(i, s)| {
        let section = cell.section(s.section?)?;
        let writable = matches!(section.kind, SectionKind::Data | SectionKind::Bss);
        (s.kind == SymbolKind::Object && writable).then_some((SymbolId(i as u32), s, section.align))
    })
}

impl<P: Platform> System<P> {
    /// Swaps each request's live cell for its new version, all at once. See the module docs.
    pub fn swap(
        &mut self,
        requests: &[SwapRequest<'_>],
        options: &SwapOptions,
    ) -> Result<SwapReport, SwapError> {
        let start = self.platform.now_nanos();
        let ns = self.check_requests(requests)?;
        let mut undo = Undo {
            registry: self.registry.checkpoint(),
            staging: None,
            loaded: Vec::new(),
            reused: Vec::new(),
            slots: Vec::new(),
            symbols: Vec::new(),
        };
        match self.swap_staged(ns, requests, options, &mut undo, start) {
            Ok(report) => Ok(report),
            Err(e) => {
                self.undo(undo);
                Err(e)
            }
        }
    }

    fn name_of(&self, id: CellId) -> String {
        self.registry
            .cell(id)
            .map(|c| c.name.clone())
            .unwrap_or_else(|| id.to_string())
    }

    fn check_requests(&self, requests: &[SwapRequest<'_>]) -> Result<NamespaceId, SwapError> {
        let first = requests.first().ok_or(SwapError::Empty)?;
        let mut seen = BTreeSet::new();
        let mut namespaces = BTreeSet::new();
        for r in requests {
            let cell = self
                .registry
                .cell(r.old)
                .filter(|c| c.origin == Origin::Object)
                .ok_or(SwapError::NoSuchCell(r.old))?;
            if cell.state != CellState::Live {
                return Err(SwapError::NotLive {
                    cell: cell.name.clone(),
                });
            }
            if !seen.insert(r.old) {
                return Err(SwapError::Duplicate {
                    cell: cell.name.clone(),
                });
            }
            namespaces.insert(cell.namespace);
        }
        if namespaces.len() > 1 {
            return Err(SwapError::MixedNamespaces {
                cells: requests.iter().map(|r| self.name_of(r.old)).collect(),
            });
        }
        self.registry
            .cell(first.old)
            .and_then(|c| c.namespace)
            .ok_or(SwapError::NoSuchCell(first.old))
    }

    fn swap_staged(
        &mut self,
        ns: NamespaceId,
        requests: &[SwapRequest<'_>],
        options: &SwapOptions,
        undo: &mut Undo,
        start: u64,
    ) -> Result<SwapReport, SwapError> {
        let mut report = SwapReport::default();
        let pairs = self.stage(ns, requests, undo)?;
        let staged = self.platform.now_nanos();
        report.times.stage = staged - start;

        let olds: BTreeSet<CellId> = pairs.iter().map(|p| p.old).collect();
        let mut writes = Vec::new();
        for p in &pairs {
            writes.extend(self.verify(p, &olds, options)?);
        }
        self.check_namespace(ns, &pairs)?;
        let verified = self.platform.now_nanos();
        report.times.verify = verified - staged;

        for p in &pairs {
            report.statics.extend(self.rebind(p, options, undo)?);
        }
        let rebound = self.platform.now_nanos();
        report.times.rebind = rebound - verified;

        self.commit(ns, &pairs, &writes, undo, &mut report)?;
        let end = self.platform.now_nanos();
        report.times.retire = end.saturating_sub(rebound + report.times.commit);
        report.times.total = end - start;
        report.cells = pairs
            .iter()
            .map(|p| SwappedCell {
                name: self.name_of(p.new),
                old: p.old,
                new: p.new,
                reused: p.reused,
            })
            .collect();
        Ok(report)
    }

    /// Loads (or finds) every new version into a fresh staging namespace under `ns`, in the old
    /// versions' dependency order, so that a new version binds to the other new versions.
    fn stage(
        &mut self,
        ns: NamespaceId,
        requests: &[SwapRequest<'_>],
        undo: &mut Undo,
    ) -> Result<Vec<Pair>, SwapError> {
        let name = format!("_swap#{}", self.swaps);
        self.swaps += 1;
        let staging =
            self.namespaces
                .create(&name, Some(ns))
                .map_err(|error| SwapError::Namespace {
                    cell: self.name_of(requests[0].old),
                    error,
                })?;
        undo.staging = Some(staging);
        let olds: Vec<CellId> = requests.iter().map(|r| r.old).collect();
        let order = namespace::graph::dependency_order(&self.registry, &olds).unwrap_or(olds);
        let mut pairs = Vec::new();
        for old in order {
            let Some(r) = requests.iter().find(|r| r.old == old) else {
                continue;
            };
            let old_name = self.name_of(old);
            let reuse = match r.new {
                NewVersion::Retired(id) => {
                    let ok = self.registry.cell(id).is_some_and(|c| {
                        c.name == old_name
                            && c.state == CellState::Retired
                            && self.mapped.contains_key(&id)
                    });
                    if !ok {
                        return Err(SwapError::NotRetired { cell: old_name, id });
                    }
                    Some(id)
                }
                NewVersion::Object { spec, .. } => {
                    if spec.name != old_name {
                        return Err(SwapError::WrongName {
                            cell: old_name,
                            new: spec.name.into(),
                        });
                    }
                    self.retired_with_hash(spec.name, spec.sha256)
                }
            };
            let new = match (reuse, r.new) {
                (Some(id), _) => {
                    let exports = self.exports_of(id);
                    self.namespaces
                        .add_cell(staging, id, &exports)
                        .map_err(|error| SwapError::Namespace {
                            cell: old_name.clone(),
                            error,
                        })?;
                    undo.reused.push(id);
                    id
                }
                (None, NewVersion::Object { spec, bytes }) => {
                    let id = self.load(staging, spec, bytes).map_err(SwapError::Stage)?;
                    undo.loaded.push(id);
                    id
                }
                (None, NewVersion::Retired(id)) => {
                    return Err(SwapError::NotRetired { cell: old_name, id })
                }
            };
            pairs.push(Pair {
                old,
                new,
                reused: reuse.is_some(),
            });
        }
        Ok(pairs)
    }

    /// A retired, still mapped cell named `name` whose object had this SHA-256.
    fn retired_with_hash(&self, name: &str, sha256: Option<&str>) -> Option<CellId> {
        let sha = sha256?;
        self.mapped
            .keys()
            .filter_map(|id| self.registry.cell(*id))
            .find(|c| {
                c.name == name && c.state == CellState::Retired && c.sha256.as_deref() == Some(sha)
            })
            .map(|c| c.id)
    }

    /// The namespace exports of a loaded cell, from its metadata.
    pub(crate) fn exports_of(&self, id: CellId) -> Vec<Export> {
        let Some(c) = self.registry.cell(id) else {
            return Vec::new();
        };
        c.symbols
            .iter()
            .enumerate()
            .map(|(i, s)| Export {
                name: s.name.clone(),
                target: SymbolRef {
                    cell: id,
                    symbol: SymbolId(i as u32),
                    addr: s.addr,
                    weak: false,
                },
            })
            .collect()
    }

    /// Checks that the new version exports every symbol any dependent of the old version binds
    /// to, and returns the slot writes that will move those dependents.
    fn verify(
        &self,
        p: &Pair,
        olds: &BTreeSet<CellId>,
        options: &SwapOptions,
    ) -> Result<Vec<SlotWrite>, SwapError> {
        let (Some(old), Some(new)) = (self.registry.cell(p.old), self.registry.cell(p.new)) else {
            return Err(SwapError::NoSuchCell(p.old));
        };
        let by_name: BTreeMap<&str, SymbolId> = new
            .symbols
            .iter()
            .enumerate()
            .map(|(i, s)| (s.name.as_str(), SymbolId(i as u32)))
            .collect();
        let mut missing: BTreeMap<String, MissingExport> = BTreeMap::new();
        let mut direct = BTreeSet::new();
        let mut writes = Vec::new();
        for e in &old.used_by {
            let Some(edge) = self.registry.edge(*e) else {
                continue;
            };
            if olds.contains(&edge.dependent) {
                continue; // it is replaced too: its slots stay with the retired version
            }
            if edge.kind == SlotKind::Handle && !self.handle_alive(*e) {
                continue; // a handle the host dropped binds nothing; the commit forgets it
            }
            let Some(sym) = old.symbol(edge.symbol) else {
                continue;
            };
            let dependent = self.name_of(edge.dependent);
            if !edge.kind.is_rewritable() {
                direct.insert(dependent.clone());
                continue;
            }
            let found = by_name.get(sym.name.as_str()).or_else(|| {
                let to = options.renamed(&sym.name)?;
                by_name.get(to)
            });
            match found {
                Some(new_sym) => {
                    let addr = new.symbols[new_sym.index()].addr;
                    writes.push(SlotWrite {
                        edge: *e,
                        slot: edge.slot,
                        kind: edge.kind,
                        dependent: edge.dependent,
                        new_cell: p.new,
                        new_symbol: *new_sym,
                        value: (addr as i64).wrapping_add(edge.addend) as u64,
                    });
                }
                None => {
                    let entry = missing.entry(sym.name.clone()).or_insert_with(|| {
                        let path = demangle::path(&sym.name);
                        MissingExport {
                            symbol: demangle::demangle(&sym.name),
                            mangled: sym.name.clone(),
                            changed_to: new
                                .symbols
                                .iter()
                                .find(|s| demangle::path(&s.name) == path)
                                .map(|s| s.name.clone()),
                            dependents: Vec::new(),
                        }
                    });
                    if !entry.dependents.contains(&dependent) {
                        entry.dependents.push(dependent);
                    }
                }
            }
        }
        if !missing.is_empty() {
            return Err(SwapError::MissingSymbols {
                cell: old.name.clone(),
                missing: missing.into_values().collect(),
            });
        }
        if !direct.is_empty() {
            return Err(SwapError::DirectReferences {
                cell: old.name.clone(),
                dependents: direct.into_iter().collect(),
            });
        }
        Ok(writes)
    }

    /// Tries the namespace change on a copy, so that commit cannot meet a refusal.
    fn check_namespace(&self, ns: NamespaceId, pairs: &[Pair]) -> Result<(), SwapError> {
        let replaced: Vec<CellId> = pairs.iter().map(|p| p.old).collect();
        for p in pairs {
            let exports = self.exports_of(p.new);
            self.namespaces
                .check_replace(ns, &replaced, &exports)
                .map_err(|error| SwapError::Namespace {
                    cell: self.name_of(p.old),
                    error,
                })?;
        }
        Ok(())
    }

    /// Decides and applies what happens to each static of the new version: rebinding to the old
    /// version's memory, a state transfer, or fresh state.
    fn rebind(
        &mut self,
        p: &Pair,
        options: &SwapOptions,
        undo: &mut Undo,
    ) -> Result<Vec<StaticReport>, SwapError> {
        let (Some(old), Some(new)) = (self.registry.cell(p.old), self.registry.cell(p.new)) else {
            return Err(SwapError::NoSuchCell(p.old));
        };
        let cell = new.name.clone();
        let transfer_path = format!("{cell}::transfer_state");
        let transfer = new
            .symbols
            .iter()
            .find(|s| s.kind == SymbolKind::Function && demangle::path(&s.name) == transfer_path)
            .map(|s| s.addr);
        // Statics are matched by path: the mangled hash of a static covers its type, so a type
        // that changed (even at the same size) gives the same path another mangled name.
        let old_statics: BTreeMap<String, (&str, u64, u64, u64)> = statics(old)
            .map(|(_, s, align)| {
                (
                    demangle::path(&s.name),
                    (s.name.as_str(), s.addr, s.size, align),
                )
            })
            .collect();
        let direct: &[SymbolId] = self
            .mapped
            .get(&p.new)
            .map(|m| m.direct_refs.as_slice())
            .unwrap_or(&[]);
        let mut reports = Vec::new();
        let mut moves: Vec<(SymbolId, u64)> = Vec::new();
        for (id, s, align) in statics(new) {
            let path = demangle::path(&s.name);
            let fresh = options.fresh_all || options.fresh.contains(&path);
            let Some(&(old_name, old_addr, old_size, old_align)) = old_statics.get(&path) else {
                reports.push(StaticReport {
                    path,
                    outcome: StaticOutcome::Fresh,
                    sizes: (0, s.size),
                });
                continue;
            };
            // The same static: the same mangled name, one the caller vouched for, or (for a crate
            // whose identity changes and whose source could not be compared) the same path.
            let same_static = old_name == s.name
                || options.renamed(old_name) == Some(s.name.as_str())
                || options.match_statics_by_path.contains(&cell);
            let same = same_static && old_size == s.size && old_align == align;
            let outcome = if fresh {
                StaticOutcome::Fresh
            } else if same {
                if direct.contains(&id) {
                    return Err(SwapError::StaticReferencedDirectly { cell, name: path });
                }
                moves.push((id, old_addr));
                StaticOutcome::Rebound
            } else if transfer.is_some() {
                StaticOutcome::Transferred
            } else {
                return Err(SwapError::StaticLayoutChanged {
                    cell,
                    name: path,
                    old: (old_size, old_align),
                    new: (s.size, align),
                    type_changed: !same_static,
                });
            };
            reports.push(StaticReport {
                path,
                outcome,
                sizes: (old_size, s.size),
            });
        }
        self.apply_rebinding(p.new, &moves, undo)?;
        if !moves.is_empty() {
            // Kept even if the swap is rolled back: it only makes freeing `p.old` look for heirs.
            if let Some(m) = self.mapped.get_mut(&p.old) {
                m.lent = true;
            }
        }
        if let (Some(addr), false) = (transfer, options.fresh_all) {
            self.run_transfer(&cell, addr, p.old)?;
        }
        Ok(reports)
    }

    /// Points the new version's own GOT slots of each moved static at the old memory, and its
    /// metadata with them.
    fn apply_rebinding(
        &mut self,
        new: CellId,
        moves: &[(SymbolId, u64)],
        undo: &mut Undo,
    ) -> Result<(), SwapError> {
        if moves.is_empty() {
            return Ok(());
        }
        let cell = self.name_of(new);
        let Some(mapped) = self.mapped.get(&new) else {
            return Err(SwapError::NoSuchCell(new));
        };
        let (off, len) = mapped.regions[Region::RelRo as usize];
        let platform_err = |error| SwapError::Platform {
            cell: cell.clone(),
            error,
        };
        mapped
            .mapping
            .protect(&self.platform, off, len, Protection::ReadWrite)
            .map_err(platform_err)?;
        for (sym, addr) in moves {
            for (s, slot) in &mapped.own_slots {
                if s == sym {
                    // SAFETY: `slot` is one of this cell's GOT slots (recorded while linking),
                    // an aligned word in its relro region, which was just made writable.
                    unsafe {
                        undo.slots.push((*slot, load_slot(*slot)));
                        store_slot(*slot, *addr);
                    }
                }
            }
        }
        let reprotect = mapped
            .mapping
            .protect(&self.platform, off, len, Protection::ReadOnly);
        for (sym, addr) in moves {
            if let Some(s) = self
                .registry
                .cell_mut(new)
                .and_then(|c| c.symbols.get_mut(sym.index()))
            {
                undo.symbols.push((new, *sym, s.addr));
                s.addr = *addr;
            }
        }
        reprotect.map_err(platform_err)
    }

    /// Calls the new version's `transfer_state` with the old version's statics.
    fn run_transfer(&mut self, cell: &str, addr: u64, old: CellId) -> Result<(), SwapError> {
        let old_statics: Vec<(String, usize)> = self
            .registry
            .cell(old)
            .map(|c| {
                statics(c)
                    .map(|(_, s, _)| (demangle::path(&s.name), s.addr as usize))
                    .collect()
            })
            .unwrap_or_default();
        let lookup = |path: &str| old_statics.iter().find(|(p, _)| p == path).map(|(_, a)| *a);
        // SAFETY: `addr` is the new version's `<cell>::transfer_state`, whose signature the
        // state-transfer convention fixes as `TransferFn` (README, "Live swap").
        let transfer: TransferFn =
            unsafe { core::mem::transmute::<usize, TransferFn>(addr as usize) };
        let mut result = Ok(());
        self.platform
            .guarded(&mut || result = transfer(&lookup))
            .map_err(|message| SwapError::TransferPanicked {
                cell: cell.into(),
                message,
            })?;
        result.map_err(|message| SwapError::Transfer {
            cell: cell.into(),
            message,
        })
    }

    /// Writes every slot, moves the edges, the namespace entries and the cells' states. The only
    /// fallible part, making the dependents' relro pages writable, comes first.
    fn commit(
        &mut self,
        ns: NamespaceId,
        pairs: &[Pair],
        writes: &[SlotWrite],
        undo: &mut Undo,
        report: &mut SwapReport,
    ) -> Result<(), SwapError> {
        // Which dependents' relro regions hold slots to write.
        let mut relro: BTreeSet<CellId> = BTreeSet::new();
        for w in writes {
            if let Some(m) = self.mapped.get(&w.dependent) {
                if m.in_region(Region::RelRo, w.slot) {
                    relro.insert(w.dependent);
                }
            }
        }
        let handles: BTreeMap<EdgeId, &crate::handle::HandleSlot> =
            self.handles.iter().map(|(e, h)| (*e, &**h)).collect();
        let window = self.platform.now_nanos();
        let mut opened: Vec<CellId> = Vec::new();
        for c in &relro {
            let m = &self.mapped[c];
            let (off, len) = m.regions[Region::RelRo as usize];
            if let Err(error) = m
                .mapping
                .protect(&self.platform, off, len, Protection::ReadWrite)
            {
                for o in &opened {
                    let m = &self.mapped[o];
                    let (off, len) = m.regions[Region::RelRo as usize];
                    let _ = m
                        .mapping
                        .protect(&self.platform, off, len, Protection::ReadOnly);
                }
                return Err(SwapError::Platform {
                    cell: self.name_of(*c),
                    error,
                });
            }
            opened.push(*c);
        }
        // The point of no return: nothing below fails.
        for w in writes {
            match w.kind {
                SlotKind::Handle => {
                    if let Some(slot) = handles.get(&w.edge) {
                        slot.set(w.value);
                    }
                }
                // SAFETY: `w.slot` is an aligned slot word of a mapped dependent (an edge the
                // loader recorded); its page is writable: data regions always, relro regions
                // since the loop above.
                _ => unsafe { store_slot(w.slot, w.value) },
            }
        }
        for c in &opened {
            let m = &self.mapped[c];
            let (off, len) = m.regions[Region::RelRo as usize];
            if let Err(e) = m
                .mapping
                .protect(&self.platform, off, len, Protection::ReadOnly)
            {
                report
                    .warnings
                    .push(format!("{}: relro stays writable: {e}", self.name_of(*c)));
            }
        }
        report.times.commit = self.platform.now_nanos().saturating_sub(window);
        let mut dependents = BTreeSet::new();
        for w in writes {
            self.registry
                .retarget_edge(w.edge, w.new_cell, w.new_symbol);
            dependents.insert(self.name_of(w.dependent));
        }
        report.slots_rewritten = writes.len();
        report.dependents = dependents.into_iter().collect();
        let staging = undo.staging.take();
        let epoch = self.epochs.advance();
        for p in pairs {
            if let Some(s) = staging {
                let _ = self.namespaces.remove_cell(s, p.new);
            }
            let exports = self.exports_of(p.new);
            // Checked on a copy by `check_namespace`; cannot fail here.
            let _ = self.namespaces.replace_cell(ns, p.old, p.new, &exports);
            if let Some(c) = self.registry.cell_mut(p.old) {
                c.state = CellState::Retired;
            }
            if let Some(c) = self.registry.cell_mut(p.new) {
                c.state = CellState::Live;
                c.namespace = Some(ns);
            }
            if let Some(m) = self.mapped.get_mut(&p.old) {
                m.retired_epoch = Some(epoch);
            }
            if let Some(m) = self.mapped.get_mut(&p.new) {
                m.retired_epoch = None;
            }
        }
        if let Some(s) = staging {
            let _ = self.namespaces.remove(s);
        }
        self.prune_handles();
        undo.loaded.clear();
        undo.reused.clear();
        Ok(())
    }

    /// Undoes a failed swap: restores slots and symbol addresses, unloads the staged cells, removes
    /// the staging namespace.
    fn undo(&mut self, undo: Undo) {
        for (cell, sym, addr) in undo.symbols.iter().rev() {
            if let Some(s) = self
                .registry
                .cell_mut(*cell)
                .and_then(|c| c.symbols.get_mut(sym.index()))
            {
                s.addr = *addr;
            }
        }
        if !undo.slots.is_empty() {
            self.restore_own_slots(&undo);
        }
        if let Some(staging) = undo.staging {
            for id in undo.reused.iter().chain(&undo.loaded) {
                let _ = self.namespaces.remove_cell(staging, *id);
            }
        }
        for id in undo.loaded.iter().rev() {
            let _ = self.registry.remove_cell(*id);
            if let Some(m) = self.mapped.remove(id) {
                // SAFETY: a staged cell was never visible: no slot outside the staged cells
                // points into it and no code of it ran but its `.init_array`.
                unsafe { self.release(m) };
            }
        }
        if let Some(staging) = undo.staging {
            let _ = self.namespaces.remove(staging);
        }
        self.registry.rollback(&undo.registry);
    }

    /// Puts back the GOT slots a failed swap's rebinding wrote (in reused retired cells; staged
    /// cells are unloaded anyway).
    fn restore_own_slots(&mut self, undo: &Undo) {
        for id in &undo.reused {
            let Some(m) = self.mapped.get(id) else {
                continue;
            };
            let (off, len) = m.regions[Region::RelRo as usize];
            if m.mapping
                .protect(&self.platform, off, len, Protection::ReadWrite)
                .is_err()
            {
                continue;
            }
            for (slot, value) in undo.slots.iter().rev() {
                if m.in_region(Region::RelRo, *slot) {
                    // SAFETY: a GOT slot of this cell that the failed swap wrote; the page was
                    // just made writable.
                    unsafe { store_slot(*slot, *value) };
                }
            }
            let _ = m
                .mapping
                .protect(&self.platform, off, len, Protection::ReadOnly);
        }
    }

    /// The value of every slot the registry records (GOT entries, data words, host handles, the
    /// module word of TLS pairs), sorted by slot address: what "the system is exactly as it was"
    /// compares.
    pub fn slot_values(&self) -> Vec<(u64, u64)> {
        let mut out: Vec<(u64, u64)> = self
            .registry
            .edges()
            .filter_map(|(id, e)| {
                let value = if e.kind == SlotKind::Handle {
                    self.handles.iter().find(|(h, _)| *h == id)?.1.target()
                } else if e.dependent != Registry::BASE && self.mapped.contains_key(&e.dependent) {
                    // SAFETY: an edge's slot is an aligned word inside its dependent's mapping,
                    // which is mapped (checked) and readable in every region.
                    unsafe { load_slot(e.slot) }
                } else {
                    return None;
                };
                Some((e.slot, value))
            })
            .collect();
        out.sort_unstable();
        out
    }

    /// The retired versions of cells, oldest first.
    pub fn retired(&self) -> Vec<CellId> {
        self.registry
            .cells()
            .filter(|c| c.state == CellState::Retired)
            .map(|c| c.id)
            .collect()
    }
}

/// One slot the commit writes.
#[derive(Clone, Copy, Debug)]
struct SlotWrite {
    edge: EdgeId,
    slot: u64,
    kind: SlotKind,
    dependent: CellId,
    new_cell: CellId,
    new_symbol: SymbolId,
    value: u64,
}
