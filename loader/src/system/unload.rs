//! Unloading: a single cell, or a whole namespace, and releasing what a cell holds of the
//! platform (debugger registration, TLS module, unwind registration, memory).

use alloc::string::String;
use alloc::vec::Vec;

use super::{Mapped, System};
use crate::mapping::AddrRange;
use crate::platform::Platform;
use crate::region::Region;
use crate_metadata::{CellId, NamespaceId, Origin, SlotKind};

/// Why a cell could not be unloaded. Nothing was changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UnloadError {
    /// No loaded cell has this id.
    NoSuchCell(CellId),
    /// No namespace has this id.
    NoSuchNamespace(NamespaceId),
    /// A cell of the namespace is still used from outside it.
    NamespaceInUse {
        /// The namespace.
        namespace: String,
        /// Its cell that is used.
        cell: String,
        /// The users outside the namespace (`nano_core` for the host's handles).
        dependents: Vec<String>,
    },
    /// The namespace has child namespaces; tear those down first.
    HasChildren {
        /// The namespace.
        namespace: String,
    },
    /// Other cells (or the host, through handles) still bind to the cell.
    InUse {
        /// The cell.
        cell: String,
        /// Its dependents' names (`nano_core` for the host's handles).
        dependents: Vec<String>,
    },
}

impl core::fmt::Display for UnloadError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            UnloadError::NoSuchCell(id) => write!(f, "no loaded cell {id}"),
            UnloadError::NoSuchNamespace(id) => write!(f, "no namespace {id}"),
            UnloadError::NamespaceInUse {
                namespace,
                cell,
                dependents,
            } => write!(
                f,
                "namespace `{namespace}` cannot be torn down: its cell `{cell}` is used by {}",
                dependents.join(", ")
            ),
            UnloadError::HasChildren { namespace } => {
                write!(f, "namespace `{namespace}` has child namespaces")
            }
            UnloadError::InUse { cell, dependents } => write!(
                f,
                "cell `{cell}` is still used by: {}",
                dependents.join(", ")
            ),
        }
    }
}

impl core::error::Error for UnloadError {}

impl<P: Platform> System<P> {
    /// What binds to the cell `id` now: the cells with an edge into it, and
    /// [`Registry::BASE`](crate_metadata::Registry::BASE) while the host holds a handle to it.
    /// Exactly what [`System::unload`] refuses for; changes nothing (a handle the host dropped is
    /// left for the next unload to forget).
    pub fn dependents(&self, id: CellId) -> Vec<CellId> {
        let Some(cell) = self.registry.cell(id) else {
            return Vec::new();
        };
        let mut out: Vec<CellId> = cell
            .used_by
            .iter()
            .filter_map(|e| Some((*e, self.registry.edge(*e)?)))
            .filter(|(e, edge)| edge.kind != SlotKind::Handle || self.handle_alive(*e))
            .map(|(_, edge)| edge.dependent)
            .filter(|d| *d != id)
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Unloads a cell: removes it from its namespace and the registry, deregisters its unwind
    /// information, frees its TLS blocks and unmaps it. Refused while anything binds to it.
    pub fn unload(&mut self, id: CellId) -> Result<(), UnloadError> {
        self.prune_handles();
        let Some(cell) = self
            .registry
            .cell(id)
            .filter(|c| c.origin == Origin::Object)
        else {
            return Err(UnloadError::NoSuchCell(id));
        };
        let dependents = self.registry.dependents(id);
        if !dependents.is_empty() {
            return Err(UnloadError::InUse {
                cell: cell.name.clone(),
                dependents: dependents
                    .iter()
                    .filter_map(|d| self.registry.cell(*d))
                    .map(|c| c.name.clone())
                    .collect(),
            });
        }
        if let Some(ns) = cell.namespace {
            let names = cell.symbols.iter().map(|s| s.name.as_str());
            let _ = self.namespaces.remove_cell_exports(ns, id, names);
        }
        // No edge points into the cell (checked above), so no other cell and no handle reaches it.
        self.free_cell(id);
        Ok(())
    }

    /// Tears a namespace down: unloads every cell in its list, dependents first, then removes the
    /// namespace. A version a swap retired is no longer in the list: it stays mapped, as every
    /// retired version does, until [`System::reclaim`] finds no thread in it and frees it (the
    /// namespace being gone does not stop that). Refused, with nothing changed, while a cell outside the namespace
    /// (or a host handle) still binds to one of its cells, or while it has child namespaces.
    pub fn remove_namespace(&mut self, ns: NamespaceId) -> Result<usize, UnloadError> {
        // Forgetting dropped handles matters only to the check of its cells' users: an empty
        // namespace goes without touching anything else.
        if self.namespaces.get(ns).is_some_and(|n| !n.cells.is_empty()) {
            self.prune_handles();
        }
        let Some(n) = self.namespaces.get(ns) else {
            return Err(UnloadError::NoSuchNamespace(ns));
        };
        let name = n.name.clone();
        if self.namespaces.iter().any(|c| c.parent == Some(ns)) {
            return Err(UnloadError::HasChildren { namespace: name });
        }
        // The namespace's own list, not a walk of the registry (which keeps a hole for every
        // cell ever removed).
        let cells: Vec<CellId> = n
            .cells
            .iter()
            .copied()
            .filter(|c| {
                self.registry
                    .cell(*c)
                    .is_some_and(|c| c.origin == Origin::Object && c.namespace == Some(ns))
            })
            .collect();
        let mut sorted = cells.clone();
        sorted.sort_unstable();
        let inside = |d: &CellId| sorted.binary_search(d).is_ok();
        for c in &cells {
            let outside: Vec<String> = self
                .registry
                .dependents(*c)
                .iter()
                .filter(|d| !inside(d))
                .filter_map(|d| self.registry.cell(*d))
                .map(|d| d.name.clone())
                .collect();
            if !outside.is_empty() {
                return Err(UnloadError::NamespaceInUse {
                    namespace: name,
                    cell: self
                        .registry
                        .cell(*c)
                        .map(|c| c.name.clone())
                        .unwrap_or_default(),
                    dependents: outside,
                });
            }
        }
        // Dependents first, and newest first where that is free: the reverse load order unless
        // a swap put a newer version under older dependents (`teardown_order`).
        let order = namespace::graph::teardown_order(&self.registry, &cells);
        // Nothing below can fail (no cell outside uses these, checked above): the namespace's
        // map and the cells' metadata and edges go at once rather than cell by cell, then each
        // cell's memory is freed in that order.
        let _ = self.namespaces.clear(ns);
        let _ = self.registry.remove_cells(&cells);
        for c in order {
            self.free_cell(c);
        }
        let _ = self.namespaces.remove(ns);
        self.forget_namespace_policy(ns);
        Ok(cells.len())
    }

    /// Undoes a cell's platform state: TLS module, unwind registration, memory.
    ///
    /// # Safety
    /// No code of the cell runs and nothing refers to it.
    pub(crate) unsafe fn release(&self, mapped: Mapped) {
        // SAFETY: passed on from the caller.
        unsafe { self.release_keeping(mapped, &mut |_| false) };
    }

    /// Like [`System::release`], but a data range (the cell's data region or one it adopted) for
    /// which `keep(range)` says true stays mapped: some other cell's statics live there now,
    /// and that cell took it over.
    ///
    /// # Safety
    /// No code of the cell runs and nothing refers to it, but through the kept ranges.
    pub(crate) unsafe fn release_keeping(
        &self,
        mapped: Mapped,
        keep: &mut dyn FnMut(AddrRange) -> bool,
    ) {
        self.tell_debuggers_released(&mapped);
        if let Some(module) = mapped.tls_module {
            // SAFETY: the caller promises no code of the cell runs any more.
            unsafe { self.platform.destroy_module(module) };
        }
        let Mapped {
            mapping,
            eh_frame,
            adopted,
            gates,
            ..
        } = mapped;
        for gate in gates {
            // SAFETY: a gate's stubs send callers into this cell only; nothing runs the cell any
            // more (caller), so no caller is in its stubs either.
            unsafe { gate.unmap(&self.platform) };
        }
        if let Some(eh) = eh_frame {
            // SAFETY: registered by `load`; no frame of the cell is on a stack (caller).
            unsafe { self.platform.deregister(eh as *const u8) };
        }
        for range in adopted.iter().copied() {
            if !keep(range) {
                // SAFETY: an adopted range is a page-aligned part of a mapping that a reclaimed
                // cell left behind for this one; nothing else uses it (caller).
                unsafe {
                    self.platform
                        .unmap(range.start as usize as *mut u8, range.len)
                };
            }
        }
        let data = mapping.region(Region::Data);
        if data.len > 0 && keep(data) {
            // SAFETY: the caller promises nothing runs or reads the cell but through the kept
            // ranges; everything before the data region (code, read-only data, GOT) is outside
            // them, and the data region stays mapped.
            unsafe { mapping.unmap_all_but_data(&self.platform) };
        } else {
            // SAFETY: the caller promises nothing runs or reads the cell, and no range of it is
            // kept; the mapping is exactly what `Mapping::for_overwrite` made.
            unsafe { mapping.unmap(&self.platform) };
        }
    }
}
