//! Commit and retire: every slot a dependent binds through is rewritten, then the edges, the
//! namespace entries and the cells' states follow.
//!
//! Where each slot goes is decided first (a relro slot through a write window on its cell, a data
//! slot directly, a host handle through its slot), then the windows are opened — the only step
//! that can fail, and it fails before anything is written — then each slot gets one aligned
//! atomic store, then the windows close. Text is never patched.

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use super::undo::Undo;
use super::{Pair, SlotWrite, SwapError, SwapReport};
use crate::handle::HandleSlot;
use crate::mapping::permissions::RelroWindow;
use crate::platform::Platform;
use crate::region::Region;
use crate::reloc;
use crate::system::describe::exports_in;
use crate::system::System;
use crate_metadata::{demangle, CellId, CellState, EdgeId, NamespaceId, SlotKind, SymbolId};

impl<P: Platform> System<P> {
    /// Writes every slot, moves the edges, the namespace entries and the cells' states. Only
    /// opening the relro write windows can fail, and that comes first.
    pub(super) fn commit(
        &mut self,
        ns: NamespaceId,
        pairs: &[Pair],
        writes: &[SlotWrite],
        undo: &mut Undo,
        report: &mut SwapReport,
    ) -> Result<(), SwapError> {
        let window = self.platform.now_nanos();
        report.warnings.extend(self.write_slots(writes)?);
        report.times.commit = self.platform.now_nanos().saturating_sub(window);
        let mut dependents = BTreeSet::new();
        for w in writes {
            self.registry
                .retarget_edge(w.edge, w.new_cell, w.new_symbol);
            dependents.insert(self.name_of(w.dependent));
        }
        report.slots_rewritten = writes.len();
        report.dependents = dependents.into_iter().collect();
        self.retire(ns, pairs, undo);
        Ok(())
    }

    /// Opens a relro write window on every dependent with a relro slot to write, stores every
    /// slot, and closes the windows. Returns a warning for each window that could not be closed
    /// (its region stays writable, never executable).
    fn write_slots(&self, writes: &[SlotWrite]) -> Result<Vec<String>, SwapError> {
        // What each slot gets, checked before anything is opened or written.
        let values = writes
            .iter()
            .map(|w| self.slot_value(w))
            .collect::<Result<Vec<u64>, SwapError>>()?;
        self.store_slots(writes, &values)
    }

    /// Stores `values[i]` into the slot of `writes[i]`: the relro windows are opened first (the
    /// only step that can fail, and it fails before anything is written), then each slot gets one
    /// aligned atomic store, then the windows close. Returns a warning for each window that could
    /// not be closed. Used by the commit, and by the gate to point slots at its stubs and back.
    pub(super) fn store_slots(
        &self,
        writes: &[SlotWrite],
        values: &[u64],
    ) -> Result<Vec<String>, SwapError> {
        let mut relro: BTreeSet<CellId> = BTreeSet::new();
        for w in writes.iter().filter(|w| w.kind != SlotKind::Handle) {
            let m = self
                .mapped
                .get(&w.dependent)
                .ok_or(SwapError::NoSuchCell(w.dependent))?;
            match m.mapping.slot_region(w.slot) {
                Some(Region::RelRo) => {
                    relro.insert(w.dependent);
                }
                Some(_) => {} // the data region: always writable
                None => {
                    return Err(SwapError::UnwritableSlot {
                        cell: self.name_of(w.dependent),
                        slot: w.slot,
                    })
                }
            }
        }
        let mut windows: BTreeMap<CellId, RelroWindow<'_>> = BTreeMap::new();
        for c in relro {
            match self.mapped[&c].mapping.open_relro(&self.platform) {
                Ok(window) => {
                    windows.insert(c, window);
                }
                // The windows opened so far close as they are dropped.
                Err(error) => {
                    return Err(SwapError::Platform {
                        cell: self.name_of(c),
                        error,
                    })
                }
            }
        }
        // The point of no return: nothing below fails.
        let handles: BTreeMap<EdgeId, &HandleSlot> =
            self.handles.iter().map(|h| (h.edge, &*h.slot)).collect();
        let mut warnings = Vec::new();
        for (w, value) in writes.iter().zip(values.iter().copied()) {
            let stored = match (w.kind, windows.get(&w.dependent)) {
                (SlotKind::Handle, _) => {
                    if let Some(slot) = handles.get(&w.edge) {
                        slot.set(value);
                    }
                    Ok(())
                }
                (_, Some(window)) if window.contains(w.slot) => window.store(w.slot, value),
                (_, _) => self.mapped[&w.dependent]
                    .mapping
                    .store_data_slot(w.slot, value),
            };
            // Each slot's region was checked above, so this never happens; if it did, the slot
            // keeps its old value and the report says so.
            if let Err(outside) = stored {
                warnings.push(format!(
                    "{}: slot {:#x} was not written",
                    self.name_of(w.dependent),
                    outside.slot
                ));
            }
        }
        for (c, window) in windows {
            if let Err(e) = window.close() {
                warnings.push(format!("{}: relro stays writable: {e}", self.name_of(c)));
            }
        }
        Ok(warnings)
    }

    /// What slot write `w` stores: the new symbol's address now (after rebinding) plus the edge's
    /// addend, a 64-bit word checked as the relocation writer checks it.
    pub(super) fn slot_value(&self, w: &SlotWrite) -> Result<u64, SwapError> {
        let symbol = self
            .registry
            .cell(w.new_cell)
            .and_then(|c| c.symbol(w.new_symbol))
            .ok_or(SwapError::NoSuchCell(w.new_cell))?;
        reloc::word64(i128::from(symbol.addr) + i128::from(w.addend)).ok_or_else(|| {
            SwapError::SlotValueOverflow {
                cell: self.name_of(w.dependent),
                symbol: demangle::demangle(&symbol.name),
                addend: w.addend,
            }
        })
    }

    /// After the slots are written: the new versions take the old ones' places in the namespace
    /// and become live, the old ones are retired in a new epoch, the staging namespace goes.
    fn retire(&mut self, ns: NamespaceId, pairs: &[Pair], undo: &mut Undo) {
        let staging = undo.staging.take();
        let epoch = self.epochs.advance();
        for p in pairs {
            if let Some(s) = staging {
                let _ = self.namespaces.remove_cell(s, p.new);
            }
            // Checked by `check_namespace`; cannot fail here.
            if let (Some(was), Some(cell)) = (self.registry.cell(p.old), self.registry.cell(p.new))
            {
                let same_interface = was.symbols.len() == cell.symbols.len()
                    && was
                        .symbols
                        .iter()
                        .zip(&cell.symbols)
                        .all(|(a, b)| a.name == b.name);
                // Only the old version's own names are looked at: a swap costs the cell's
                // exports, not the namespace's size.
                let old_names = was.symbols.iter().map(|s| s.name.as_str());
                let _ = if same_interface {
                    let addr_of = |id: SymbolId| cell.symbol(id).map(|s| s.addr);
                    self.namespaces
                        .repoint_cell(ns, p.old, p.new, old_names, addr_of)
                } else {
                    let exports = exports_in(p.new, cell);
                    self.namespaces
                        .replace_cell_by(ns, p.old, p.new, exports, old_names)
                };
            }
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
            self.forget_staging(s);
        }
        for p in pairs {
            self.tell_debuggers_changed(p.old);
            self.tell_debuggers_changed(p.new);
        }
        self.prune_handles();
        undo.loaded.clear();
        undo.reused.clear();
    }
}
