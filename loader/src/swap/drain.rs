//! Closing the gate, draining the old versions, and opening the gate again (after the commit, or
//! when the swap is undone). The model is in [`super::gate`].

use alloc::collections::BTreeSet;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use super::gate::{Gate, GateReport, GateUndo};
use super::undo::Undo;
use super::{Pair, SlotWrite, SwapError, SwapOptions, ThreadInside, DRAIN_DEADLINE};
use crate::platform::{Inside, Platform, TextRange};
use crate::region::Region;
use crate::system::System;
use crate_metadata::{demangle, CellId, SlotKind, SymbolKind};

/// How many pauses the callers the gate woke are waited for before the report is read.
const LEAVE_ROUNDS: u32 = 200;

impl<P: Platform> System<P> {
    /// The text ranges and function entry points of the old versions.
    fn old_code(&self, pairs: &[Pair]) -> (Vec<TextRange>, Vec<u64>) {
        let mut ranges = Vec::new();
        let mut entries = Vec::new();
        for p in pairs {
            if let Some(m) = self.mapped.get(&p.old) {
                let text = m.mapping.region(Region::Text);
                ranges.push(TextRange {
                    start: text.start,
                    end: text.start + text.len as u64,
                });
            }
            if let Some(c) = self.registry.cell(p.old) {
                entries.extend(
                    c.symbols
                        .iter()
                        .filter(|s| s.kind == SymbolKind::Function)
                        .map(|s| s.addr),
                );
            }
        }
        (ranges, entries)
    }

    /// `addr` as a place in the old versions (`frame_alloc::alloc_frame+0x1f`).
    fn place(&self, pairs: &[Pair], addr: u64) -> String {
        if addr == 0 {
            return String::from("(it did not answer in time)");
        }
        for p in pairs {
            let (Some(m), Some(c)) = (self.mapped.get(&p.old), self.registry.cell(p.old)) else {
                continue;
            };
            let text = m.mapping.region(Region::Text);
            if !text.contains(addr) {
                continue;
            }
            let nearest = c
                .symbols
                .iter()
                .filter(|s| s.kind == SymbolKind::Function && s.addr <= addr)
                .max_by_key(|s| s.addr);
            return match nearest {
                Some(s) => format!("{}+{:#x}", demangle::path(&s.name), addr - s.addr),
                None => format!("{}+{:#x}", c.name, addr - text.start),
            };
        }
        format!("{addr:#x}")
    }

    /// Points every gated slot at a stub of a closed gate. Refuses, before anything changes, a swap
    /// asked for from inside an old version, and one whose old versions' statics are bound from
    /// outside. On success the gate is in `undo`, which opens it again if the swap fails.
    pub(super) fn close_gate(
        &mut self,
        pairs: &[Pair],
        writes: &[SlotWrite],
        undo: &mut Undo,
    ) -> Result<(), SwapError> {
        let (ranges, _) = self.old_code(pairs);
        if let Some(addr) = self.platform.current_inside(&ranges) {
            return Err(SwapError::FromInside {
                cell: pairs
                    .first()
                    .map(|p| self.name_of(p.old))
                    .unwrap_or_default(),
                at: self.place(pairs, addr),
            });
        }
        // What each slot holds now, and that it is a function.
        let mut originals = Vec::with_capacity(writes.len());
        for w in writes {
            let edge = self
                .registry
                .edge(w.edge)
                .ok_or(SwapError::NoSuchCell(w.dependent))?;
            let symbol = self
                .registry
                .cell(edge.provider)
                .and_then(|c| c.symbol(edge.symbol))
                .ok_or(SwapError::NoSuchCell(edge.provider))?;
            if symbol.kind != SymbolKind::Function || w.addend != 0 {
                let dependents: BTreeSet<String> = writes
                    .iter()
                    .filter(|o| {
                        self.registry
                            .edge(o.edge)
                            .is_some_and(|e| e.provider == edge.provider && e.symbol == edge.symbol)
                    })
                    .map(|o| self.name_of(o.dependent))
                    .collect();
                return Err(SwapError::StateReachedFromOutside {
                    cell: self.name_of(edge.provider),
                    symbol: demangle::demangle(&symbol.name),
                    dependents: dependents.into_iter().collect(),
                });
            }
            originals.push(self.current_slot_value(w)?);
        }
        let mut targets: Vec<u64> = originals.clone();
        targets.sort_unstable();
        targets.dedup();
        let gate =
            Gate::make(&self.platform, &targets, self.platform.gate_hooks()).map_err(|error| {
                SwapError::Platform {
                    cell: self.name_of(pairs[0].old),
                    error,
                }
            })?;
        let stubs: Vec<u64> = originals
            .iter()
            .map(|o| gate.stub(*o).unwrap_or(*o))
            .collect();
        let report = GateReport {
            slots: writes.len(),
            ..GateReport::default()
        };
        let keeper = pairs[0].old;
        // Stores nothing when it fails: the windows are opened before the first store.
        let warnings = match self.store_slots(writes, &stubs) {
            Ok(warnings) => warnings,
            Err(e) => {
                self.keep_gate(keeper, gate);
                return Err(e);
            }
        };
        let _ = warnings;
        undo.gate = Some(GateUndo {
            gate,
            writes: writes.to_vec(),
            originals,
            keeper,
            report,
        });
        Ok(())
    }

    /// What the slot of write `w` holds now.
    fn current_slot_value(&self, w: &SlotWrite) -> Result<u64, SwapError> {
        let value = if w.kind == SlotKind::Handle {
            self.handles
                .iter()
                .find(|h| h.edge == w.edge)
                .map(|h| h.slot.target())
        } else {
            self.mapped
                .get(&w.dependent)
                .and_then(|m| m.mapping.load_slot(w.slot))
        };
        value.ok_or(SwapError::UnwritableSlot {
            cell: self.name_of(w.dependent),
            slot: w.slot,
        })
    }

    /// Waits until no other thread is inside the old versions, or the deadline passes.
    pub(super) fn drain(
        &self,
        pairs: &[Pair],
        options: &SwapOptions,
        undo: &mut Undo,
    ) -> Result<(), SwapError> {
        let (ranges, entries) = self.old_code(pairs);
        let deadline = if options.drain_deadline == 0 {
            DRAIN_DEADLINE
        } else {
            options.drain_deadline
        };
        let start = self.platform.now_nanos();
        let mut inside: Vec<Inside> = Vec::new();
        let mut checks = 0u32;
        loop {
            inside.clear();
            checks += 1;
            self.platform
                .threads_inside(&ranges, &entries, &mut inside)
                .map_err(|error| SwapError::Platform {
                    cell: self.name_of(pairs[0].old),
                    error,
                })?;
            let waited = self.platform.now_nanos().saturating_sub(start);
            if let Some(g) = &mut undo.gate {
                g.report.drain = waited;
                g.report.checks = checks;
            }
            if inside.is_empty() {
                return Ok(());
            }
            // Without a clock the deadline counts checks (each one pauses).
            let late = if start == 0 && waited == 0 {
                u64::from(checks) * 100_000 > deadline
            } else {
                waited > deadline
            };
            if late {
                return Err(SwapError::StillInside {
                    cells: pairs.iter().map(|p| self.name_of(p.old)).collect(),
                    threads: inside
                        .iter()
                        .map(|i| ThreadInside {
                            thread: i.thread,
                            name: i.name.clone(),
                            at: self.place(pairs, i.addr),
                        })
                        .collect(),
                    waited,
                });
            }
            self.platform.pause();
        }
    }

    /// After the commit wrote the new addresses into the slots: each stub forwards to its new
    /// address, the gate opens, and once the callers it held have left, the report is complete.
    pub(super) fn open_gate_after_commit(&mut self, undo: &mut Undo) -> Option<GateReport> {
        let g = undo.gate.take()?;
        for (w, old) in g.writes.iter().zip(&g.originals) {
            if let Ok(new) = self.slot_value(w) {
                g.gate.forward(*old, new);
            }
        }
        g.gate.open();
        Some(self.finish_gate(g, true))
    }

    /// Undoing a swap after the gate closed: the gated slots get their old addresses back, the
    /// stubs still forward to them, and the gate opens: the callers go on into the old version.
    pub(super) fn open_gate_on_undo(&mut self, undo: &mut Undo) {
        let Some(g) = undo.gate.take() else { return };
        let _ = self.store_slots(&g.writes, &g.originals);
        g.gate.open();
        let _ = self.finish_gate(g, false);
    }

    /// Waits (briefly: they were woken) for the callers to leave the wait, and reads the report.
    /// After a commit the gate's memory stays with the old version that keeps it (freed when that
    /// retired cell is); after an undo it goes now if nothing can be in its stubs any more, so that
    /// a refused swap leaves the mappings as they were.
    fn finish_gate(&mut self, g: GateUndo, committed: bool) -> GateReport {
        let mut rounds = 0;
        while g.gate.waiting() != 0 && rounds < LEAVE_ROUNDS {
            rounds += 1;
            self.platform.pause();
        }

        let mut report = g.gate.report(g.report.slots);
        report.drain = g.report.drain;
        report.checks = g.report.checks;
        if committed {
            self.hand_over_gate(g.keeper, g.gate);
        } else {
            self.keep_gate(g.keeper, g.gate);
        }
        report
    }

    /// The gate's memory goes now when no thread can be in its stubs any more (none holds an
    /// address in them: the same check as the drain's); otherwise it stays mapped with the old
    /// version `keeper` and goes when that cell does.
    fn keep_gate(&mut self, keeper: CellId, gate: Gate) {
        let text = gate.mapping.region(Region::Text);
        let stubs = [TextRange {
            start: text.start,
            end: text.start + text.len as u64,
        }];
        let mut inside = Vec::new();
        let unused = self
            .platform
            .threads_inside(&stubs, &[], &mut inside)
            .is_ok()
            && inside.is_empty()
            && self.platform.current_inside(&stubs).is_none();
        if unused {
            // SAFETY: the slots no longer hold the stubs' addresses (the commit or the undo
            // rewrote them), no caller waits in the gate (`finish_gate`), and no thread holds an
            // address in the stubs in a register or on its stack: nothing can enter them again.
            unsafe { gate.mapping.unmap(&self.platform) };
            return;
        }
        self.hand_over_gate(keeper, gate);
    }

    /// The gate's memory stays mapped with `keeper` and goes when it does.
    fn hand_over_gate(&mut self, keeper: CellId, gate: Gate) {
        match self.mapped.get_mut(&keeper) {
            Some(m) => m.gates.push(gate.mapping),
            // The keeper is always mapped during a swap; should it not be, the memory is kept
            // mapped forever (a `Mapping` does not unmap when it goes) rather than freed under a
            // caller.
            None => {
                let _kept_mapped = gate.mapping;
            }
        }
    }
}
