//! The system: the registry, the namespaces, and the mapped cells, with the operations that
//! change them. One file per concern:
//!
//! | file | what |
//! |------|------|
//! | `mod.rs` | [`System`], what it keeps per mapped cell ([`Mapped`]), accessors and inspection |
//! | `load.rs` | [`System::load`]: checks, parse, layout, resolve, map, link, then publish; all or nothing |
//! | `debuggers.rs` | telling the platform's debuggers and profilers about published, changed and freed cells |
//! | `describe.rs` | the cell's metadata (sections, exported symbols) and its namespace exports |
//! | `publish.rs` | protections, `.eh_frame` and TLS registration, the namespace entry, the edges, `.init_array` |
//! | `handles.rs` | host handles: [`System::find_symbol`], [`System::handle`] |
//! | `unload.rs` | [`System::unload`], [`System::remove_namespace`], releasing a cell's platform state |
//! | `unwind.rs` | the unwind-table check at load (before publish registers it), [`System::unwind_table`] |

mod debuggers;
pub(crate) mod describe;
mod handles;
pub(crate) mod load;
mod publish;
pub(crate) mod unload;
mod unwind;

use alloc::collections::BTreeMap;
use alloc::string::{String, ToString};
use alloc::sync::Arc;
use alloc::vec::Vec;

use crate::handle::HandleSlot;
use crate::link::OwnSlot;
use crate::mapping::{AddrRange, Mapping};
use crate::platform::Platform;
use crate::quiesce::Epochs;
use crate::region::Region;
use crate::resolve::{Catalog, Resolver};
use crate_metadata::{
    CellId, CellKind, CellState, EdgeId, NamespaceId, Registry, Section, SectionKind, Sha256,
    SlotKind, SymbolId,
};
use namespace::{NamespaceError, Namespaces};

/// What the caller knows about a cell it loads.
#[derive(Clone, Copy, Debug)]
pub struct CellSpec<'a> {
    /// The crate name.
    pub name: &'a str,
    /// The crate version.
    pub version: &'a str,
    /// Where in `cells/` it comes from.
    pub kind: Option<CellKind>,
    /// SHA-256 of the object as the manifest records it. When given, the loader
    /// checks the bytes against it before anything else and refuses a mismatch; it is recorded in
    /// the metadata.
    pub sha256: Option<Sha256>,
}

impl<'a> CellSpec<'a> {
    /// A spec with only a name.
    pub fn named(name: &'a str) -> CellSpec<'a> {
        CellSpec {
            name,
            version: "",
            kind: None,
            sha256: None,
        }
    }
}

/// The runtime side of a loaded cell: what must be undone to unload it.
#[derive(Debug)]
pub(crate) struct Mapped {
    /// The cell's memory and where its regions are.
    pub(crate) mapping: Mapping,
    pub(crate) eh_frame: Option<usize>,
    pub(crate) tls_module: Option<u64>,
    /// GOT slots that hold the address of one of the cell's own exported symbols.
    pub(crate) own_slots: Vec<OwnSlot<SymbolId>>,
    /// Exported symbols the cell's code or data reaches without a slot.
    pub(crate) direct_refs: Vec<SymbolId>,
    /// The epoch in which a swap retired the cell.
    pub(crate) retired_epoch: Option<u64>,
    /// Data regions of reclaimed cells that this cell's statics were bound to.
    pub(crate) adopted: Vec<AddrRange>,
    /// Whether a swap rebound a newer version's statics to this cell's (so that its data, or a
    /// range it adopted, may hold another cell's state when it is freed).
    pub(crate) lent: bool,
    /// The memory of swap gates this cell keeps (stubs a caller may still be leaving), freed with
    /// the cell.
    pub(crate) gates: Vec<Mapping>,
    /// GOT words holding the cell's TLS module id (see `Linked::tls_slots`).
    pub(crate) tls_slots: Vec<u64>,
    /// The template the cell's TLS module was made from (its own `.tdata` image).
    pub(crate) tls_template: Option<TlsImage>,
}

/// A TLS template as numbers (the image's address among them), so that it can live in a `Send`
/// system; [`TlsImage::template`] gives it back to the platform.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TlsImage {
    pub(crate) init: usize,
    pub(crate) init_len: usize,
    pub(crate) size: usize,
    pub(crate) align: usize,
}

impl TlsImage {
    /// The template.
    pub(crate) fn template(self) -> crate::platform::TlsTemplate {
        crate::platform::TlsTemplate {
            init: self.init as *const u8,
            init_len: self.init_len,
            size: self.size,
            align: self.align,
        }
    }

    /// The numbers of `template`.
    pub(crate) fn of(template: crate::platform::TlsTemplate) -> TlsImage {
        TlsImage {
            init: template.init as usize,
            init_len: template.init_len,
            size: template.size,
            align: template.align,
        }
    }
}

impl Mapped {
    /// A cell just mapped: nothing registered, linked or adopted yet.
    pub(crate) fn new(mapping: Mapping) -> Mapped {
        Mapped {
            mapping,
            eh_frame: None,
            tls_module: None,
            own_slots: Vec::new(),
            direct_refs: Vec::new(),
            retired_epoch: None,
            adopted: Vec::new(),
            lent: false,
            gates: Vec::new(),
            tls_slots: Vec::new(),
            tls_template: None,
        }
    }
}

/// A slot the host calls a cell through, and the edge that records it.
#[derive(Debug)]
pub(crate) struct HostHandle {
    /// The edge from the base image.
    pub(crate) edge: EdgeId,
    /// The slot every [`crate::Handle`] made for the edge reads.
    pub(crate) slot: Arc<HandleSlot>,
}

/// The running cell system on platform `P`.
pub struct System<P: Platform> {
    pub(crate) platform: P,
    pub(crate) registry: Registry,
    pub(crate) namespaces: Namespaces,
    pub(crate) mapped: BTreeMap<CellId, Mapped>,
    pub(crate) handles: Vec<HostHandle>,
    pub(crate) epochs: Arc<Epochs>,
    /// Counts staging namespaces, so each swap gets a fresh name.
    pub(crate) swaps: u64,
    /// Cells that could be loaded, to name the crate behind a missing symbol.
    pub(crate) catalog: Option<Arc<dyn Catalog>>,
    /// Export policies and admitted applications (`policy.rs`).
    pub(crate) policies: crate::policy::types::Policies,
}

impl<P: Platform> System<P> {
    /// A system with no cells; the base image is called `base_name` in the registry.
    pub fn new(platform: P, base_name: &str) -> System<P> {
        let mut registry = Registry::new(base_name);
        if let Some(base) = registry.cell_mut(Registry::BASE) {
            base.sections.push(Section {
                name: ".handles".into(),
                kind: SectionKind::Got,
                addr: 0,
                size: 0,
                align: 8,
            });
        }
        System {
            platform,
            registry,
            namespaces: Namespaces::new(),
            mapped: BTreeMap::new(),
            handles: Vec::new(),
            epochs: Epochs::new(),
            swaps: 0,
            catalog: None,
            policies: Default::default(),
        }
    }

    /// The grace-period tracker: threads that call cells register here and report quiescent
    /// points, so that retired cells can be reclaimed safely.
    pub fn epochs(&self) -> &Arc<Epochs> {
        &self.epochs
    }

    /// Sets the catalog of cells that could be loaded (the build manifest), which a failed load
    /// asks who exports a missing symbol, so that its error names the crate that is not loaded.
    pub fn set_catalog(&mut self, catalog: Arc<dyn Catalog>) {
        self.catalog = Some(catalog);
    }

    /// The platform.
    pub fn platform(&self) -> &P {
        &self.platform
    }

    /// The registry of cells and edges.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The namespaces.
    pub fn namespaces(&self) -> &Namespaces {
        &self.namespaces
    }

    /// Creates a namespace.
    pub fn create_namespace(
        &mut self,
        name: &str,
        parent: Option<NamespaceId>,
    ) -> Result<NamespaceId, NamespaceError> {
        self.namespaces.create(name, parent)
    }

    /// The live cell named `name` in namespace `ns` itself.
    pub fn cell_in(&self, ns: NamespaceId, name: &str) -> Option<CellId> {
        let n = self.namespaces.get(ns)?;
        n.cells.iter().copied().find(|c| {
            self.registry
                .cell(*c)
                .is_some_and(|c| c.name == name && c.state == CellState::Live)
        })
    }

    /// The resolver this system links with.
    pub fn resolver(&self) -> Resolver<'_> {
        Resolver {
            namespaces: &self.namespaces,
            registry: &self.registry,
            symbols: &self.platform,
            tls_get_addr: self.platform.tls_get_addr() as u64,
            catalog: self.catalog.as_deref(),
        }
    }

    /// A cell's name for messages (its id when it is not in the registry).
    pub(crate) fn name_of(&self, id: CellId) -> String {
        self.registry
            .cell(id)
            .map(|c| c.name.clone())
            .unwrap_or_else(|| id.to_string())
    }

    /// The start and length of each region of a loaded cell's mapping (text, read-only, relro,
    /// data), for inspection and W^X checks.
    pub fn regions(&self, id: CellId) -> Option<[(u64, u64); 4]> {
        let m = self.mapped.get(&id)?;
        Some(Region::ALL.map(|r| {
            let range = m.mapping.region(r);
            (range.start, range.len as u64)
        }))
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
                    self.handles.iter().find(|h| h.edge == id)?.slot.target()
                } else if e.dependent != Registry::BASE {
                    self.mapped.get(&e.dependent)?.mapping.load_slot(e.slot)?
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

impl<P: Platform> Drop for System<P> {
    fn drop(&mut self) {
        self.prune_handles();
        if !self.handles.is_empty() {
            // Handles outlive the system: keep every cell mapped so they stay callable.
            log::warn!(
                "{} handle slot(s) outlive the cell system; its cells stay mapped",
                self.handles.len()
            );
            return;
        }
        let mapped = core::mem::take(&mut self.mapped);
        for (_, m) in mapped.into_iter().rev() {
            // SAFETY: the system is going away and no handle can reach a cell (checked above);
            // cells only reach each other, and all of them go together.
            unsafe { self.release(m) };
        }
    }
}
