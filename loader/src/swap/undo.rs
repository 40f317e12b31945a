//! Undo: what a swap has done before its commit, and putting it all back when it is refused, so
//! that the slots, the namespaces and the registry are exactly as before the swap.

use alloc::vec::Vec;

use crate::platform::Platform;
use crate::system::System;
use crate_metadata::{CellId, Checkpoint, NamespaceId, SymbolId};

/// A slot written before the commit, and the value it held.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct SlotValue {
    /// The slot's address.
    pub(super) slot: u64,
    /// What it held before.
    pub(super) value: u64,
}

/// A symbol whose address rebinding changed in the metadata, and its address before.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct MovedSymbol {
    pub(super) cell: CellId,
    pub(super) symbol: SymbolId,
    pub(super) addr: u64,
}

/// What a swap has done so far, so that a failure can undo it.
pub(super) struct Undo {
    /// The registry before the swap.
    pub(super) registry: Checkpoint,
    /// The staging namespace, once made.
    pub(super) staging: Option<NamespaceId>,
    /// New versions loaded into the staging namespace.
    pub(super) loaded: Vec<CellId>,
    /// Retired versions added to the staging namespace for reuse.
    pub(super) reused: Vec<CellId>,
    /// Slots of the new versions written by rebinding, in order.
    pub(super) slots: Vec<SlotValue>,
    /// Symbols moved by rebinding, in order.
    pub(super) symbols: Vec<MovedSymbol>,
    /// The gate, while it is closed.
    pub(super) gate: Option<super::gate::GateUndo>,
    /// TLS modules given a new version's template, with the template they had.
    pub(super) templates: Vec<(u64, crate::system::TlsImage)>,
    /// TLS modules made for the swap (fresh thread-locals of a reused version).
    pub(super) modules: Vec<u64>,
}

impl Undo {
    /// Nothing done yet; the registry as it is at `registry`.
    pub(super) fn new(registry: Checkpoint) -> Undo {
        Undo {
            registry,
            staging: None,
            loaded: Vec::new(),
            reused: Vec::new(),
            slots: Vec::new(),
            symbols: Vec::new(),
            gate: None,
            templates: Vec::new(),
            modules: Vec::new(),
        }
    }
}

impl<P: Platform> System<P> {
    /// Undoes a failed swap: restores slots and symbol addresses, unloads the staged cells, removes
    /// the staging namespace.
    pub(super) fn undo(&mut self, mut undo: Undo) {
        // First the callers held at the gate: their slots get the old addresses back and they go
        // on into the old version.
        self.open_gate_on_undo(&mut undo);
        for (module, template) in undo.templates.iter().rev() {
            // SAFETY: the template was the module's before the swap: the old version's image,
            // which is mapped (the old version is live).
            let _ = unsafe { self.platform.replace_template(*module, template.template()) };
        }
        for module in undo.modules.iter().rev() {
            // SAFETY: made by this swap for a new version that never ran with it (the commit did
            // not happen); its GOT words are restored below or the cell is unloaded.
            unsafe { self.platform.destroy_module(*module) };
        }
        for moved in undo.symbols.iter().rev() {
            if let Some(s) = self
                .registry
                .cell_mut(moved.cell)
                .and_then(|c| c.symbols.get_mut(moved.symbol.index()))
            {
                s.addr = moved.addr;
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
            self.forget_staging(staging);
        }
        self.registry.rollback(&undo.registry);
    }

    /// Puts back the GOT slots a failed swap's rebinding wrote (in reused retired cells; staged
    /// cells are unloaded anyway), each through a relro write window on its cell.
    fn restore_own_slots(&self, undo: &Undo) {
        for id in &undo.reused {
            let Some(m) = self.mapped.get(id) else {
                continue;
            };
            let Ok(window) = m.mapping.open_relro(&self.platform) else {
                continue;
            };
            for s in undo.slots.iter().rev() {
                if window.contains(s.slot) {
                    // Inside this window (checked), so the store cannot be refused.
                    let _ = window.store(s.slot, s.value);
                }
            }
            // A region that stays writable is reported nowhere: the swap is refused anyway, and
            // it is never executable.
            let _ = window.close();
        }
    }
}
