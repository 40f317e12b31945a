//! Host handles: how the base image calls into cells. A handle reads a loader-owned slot on
//! every call, recorded as an edge from the base image, so a swap moves the host's calls too.

use alloc::string::ToString;
use alloc::sync::Arc;
use alloc::vec::Vec;

use super::{HostHandle, System};
use crate::error::LoadError;
use crate::handle::{Handle, HandleSlot};
use crate::platform::Platform;
use crate_metadata::{
    demangle, Edge, EdgeId, NamespaceId, Registry, SectionId, SlotKind, Symbol, SymbolId,
};
use namespace::SymbolRef;

impl<P: Platform> System<P> {
    /// Finds a symbol visible from `ns` by mangled name, or by demangled path without hash
    /// (`klog::push`), which names the cell by its first segment.
    pub fn find_symbol(&self, ns: NamespaceId, symbol: &str) -> Result<SymbolRef, LoadError> {
        let ns_name = || {
            self.namespaces
                .get(ns)
                .map(|n| n.name.clone())
                .unwrap_or_default()
        };
        if let Some((_, s)) = self.namespaces.lookup(ns, symbol) {
            return Ok(s);
        }
        let cell_name = symbol.split("::").next().unwrap_or("");
        for n in self.namespaces.chain(ns) {
            let Some(cell) = self.cell_in(n, cell_name) else {
                continue;
            };
            let Some(c) = self.registry.cell(cell) else {
                continue;
            };
            let hits: Vec<(usize, &Symbol)> = c
                .symbols
                .iter()
                .enumerate()
                .filter(|(_, s)| demangle::path(&s.name) == symbol)
                .collect();
            return match hits.as_slice() {
                [] => Err(LoadError::NoSuchSymbol {
                    namespace: ns_name(),
                    symbol: symbol.into(),
                }),
                [(i, s)] => Ok(SymbolRef {
                    cell,
                    symbol: SymbolId(*i as u32),
                    addr: s.addr,
                    weak: false,
                }),
                many => Err(LoadError::AmbiguousSymbol {
                    symbol: symbol.into(),
                    candidates: many.iter().map(|(_, s)| s.name.to_string()).collect(),
                }),
            };
        }
        Err(LoadError::NoSuchSymbol {
            namespace: ns_name(),
            symbol: symbol.into(),
        })
    }

    /// A handle through which the host calls the function `symbol` (a mangled name or a path
    /// such as `klog::push`) visible from `ns`. The handle reads a loader-owned slot on every call,
    /// recorded as an edge from the base image, so a swap moves the host's calls too.
    ///
    /// # Safety
    /// `F` must be a function pointer type with exactly the function's signature and ABI.
    pub unsafe fn handle<F: Copy>(
        &mut self,
        ns: NamespaceId,
        symbol: &str,
    ) -> Result<Handle<F>, LoadError> {
        if core::mem::size_of::<F>() != core::mem::size_of::<usize>() {
            return Err(LoadError::BadHandleType {
                symbol: symbol.into(),
            });
        }
        let target = self.find_symbol(ns, symbol)?;
        let existing = self.handles.iter().find(|h| {
            self.registry
                .edge(h.edge)
                .is_some_and(|e| e.provider == target.cell && e.symbol == target.symbol)
        });
        let slot = match existing {
            Some(h) => h.slot.clone(),
            None => {
                let slot = HandleSlot::new(target.addr);
                let edge = self.registry.add_edge(Edge {
                    dependent: Registry::BASE,
                    section: SectionId(0),
                    slot: slot.slot_addr(),
                    kind: SlotKind::Handle,
                    addend: 0,
                    provider: target.cell,
                    symbol: target.symbol,
                });
                if let Some(edge) = edge {
                    self.handles.push(HostHandle {
                        edge,
                        slot: slot.clone(),
                    });
                }
                slot
            }
        };
        // SAFETY: the caller promises `F` is the function's signature; the slot holds the
        // function's address and the cell stays mapped while the slot's edge exists (`unload`
        // refuses a cell with edges into it).
        Ok(unsafe { Handle::new(slot) })
    }

    /// A handle to the interface function `interface` visible from `ns`: [`System::handle`] with
    /// the path and the type the interface crate declares (`system.bind(ns,
    /// cell_abi::memfs::READ)` is a `Handle<cell_abi::memfs::Read>`), so the caller writes
    /// neither.
    pub fn bind<F: Copy>(
        &mut self,
        ns: NamespaceId,
        interface: cell_abi::Interface<F>,
    ) -> Result<Handle<F>, LoadError> {
        // SAFETY: an `Interface` is made only by cell-abi's declarations (its constructor is
        // unsafe), each the promise that every cell exporting the path exports it with type `F`,
        // which the cells check against their own functions at compile time.
        unsafe { self.handle::<F>(ns, interface.path()) }
    }

    /// Whether the host still holds a handle that reads the slot of edge `edge`.
    pub(crate) fn handle_alive(&self, edge: EdgeId) -> bool {
        self.handles
            .iter()
            .any(|h| h.edge == edge && Arc::strong_count(&h.slot) > 1)
    }

    /// Forgets handle slots that no handle uses any more, with their edges.
    pub(crate) fn prune_handles(&mut self) {
        let registry = &mut self.registry;
        self.handles.retain(|h| {
            if Arc::strong_count(&h.slot) > 1 {
                return true;
            }
            registry.remove_edge(h.edge);
            false
        });
    }
}
