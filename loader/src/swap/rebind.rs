//! Rebinding statics: pointing a cell's own GOT slots of a static at memory that is not its own,
//! so that two copies of a crate share one state. Two cases, one mechanism:
//!
//! - **on swap** ([`System::rebind`]): a `pub static` of the new version with the same mangled
//!   name (or a rename the caller vouched for), size and alignment as one of the old version is
//!   bound to the old version's memory, through a relro write window on the new version; a static
//!   whose layout changed needs the new version's `transfer_state` (run here) or fresh state.
//! - **on load** ([`System::bind_image_statics`]): a cell of a crate the base image links
//!   statically (a shared kernel crate) has every static the base image also defines bound to the
//!   base image's initialized memory, before the cell is published, and recorded as an edge to
//!   the base image.
//!
//! Either way the cell's code must reach the static only through GOT slots: a direct reference
//! cannot be moved, and is refused.

use alloc::borrow::Cow;
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use super::undo::{MovedSymbol, SlotValue, Undo};
use super::{Pair, StaticOutcome, StaticReport, SwapError, SwapOptions, TransferFn};
use crate::error::{malformed, LoadError};
use crate::link::{PendingEdge, SlotSection};
use crate::malformation::Malformation;
use crate::mapping::permissions::SlotOutside;
use crate::platform::Platform;
use crate::resolve::Provider;
use crate::system::describe::Described;
use crate::system::{Mapped, System};
use crate_metadata::{demangle, Cell, CellId, SectionKind, SlotKind, Symbol, SymbolId, SymbolKind};

/// A static of a cell: an exported object in a writable data section.
#[derive(Clone, Copy, Debug)]
struct Static<'c> {
    /// Its id in the cell's metadata.
    id: SymbolId,
    /// The symbol.
    symbol: &'c Symbol,
    /// Its section's alignment.
    align: u64,
}

/// The statics of a cell.
fn statics(cell: &Cell) -> impl Iterator<Item = Static<'_>> {
    cell.symbols.iter().enumerate().filter_map(|(i, s)| {
        let section = cell.section(s.section?)?;
        let writable = matches!(section.kind, SectionKind::Data | SectionKind::Bss);
        (s.kind == SymbolKind::Object && writable).then_some(Static {
            id: SymbolId(i as u32),
            symbol: s,
            align: section.align,
        })
    })
}

/// What a swap does with one new version's statics, decided before anything changes.
pub(super) struct StaticPlan {
    /// Every static and its outcome.
    pub(super) reports: Vec<StaticReport>,
    /// The statics bound to the old version's memory.
    moves: Vec<StaticMove>,
    /// The new version's `transfer_state`, when it runs.
    pub(super) transfer: Option<u64>,
}

/// A static of the new version bound to other memory: its symbol, and the address it now uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct StaticMove {
    symbol: SymbolId,
    to: u64,
}

impl<P: Platform> System<P> {
    /// Decides what happens to each static of the new version: rebinding to the old version's
    /// memory, a state transfer, or fresh state. Changes nothing.
    pub(super) fn plan_statics(
        &self,
        p: &Pair,
        options: &SwapOptions,
    ) -> Result<StaticPlan, SwapError> {
        let (Some(old), Some(new)) = (self.registry.cell(p.old), self.registry.cell(p.new)) else {
            return Err(SwapError::NoSuchCell(p.old));
        };
        let cell = new.name.clone();
        let transfer_path = format!("{cell}::transfer_state");
        let transfer = new
            .symbols
            .iter()
            // Both manglings spell the identifier out: only those symbols are demangled.
            .find(|s| {
                s.kind == SymbolKind::Function
                    && s.name.contains("transfer_state")
                    && demangle::path(&s.name) == transfer_path
            })
            .map(|s| s.addr);
        // Statics are matched by path: the mangled hash of a static covers its type, so a type
        // that changed (even at the same size) gives the same path another mangled name.
        let old_statics: BTreeMap<String, Static<'_>> = statics(old)
            .map(|s| (demangle::path(&s.symbol.name), s))
            .collect();
        let direct: &[SymbolId] = self
            .mapped
            .get(&p.new)
            .map(|m| m.direct_refs.as_slice())
            .unwrap_or(&[]);
        let mut reports = Vec::new();
        let mut moves: Vec<StaticMove> = Vec::new();
        for s in statics(new) {
            let path = demangle::path(&s.symbol.name);
            let size = s.symbol.size;
            let fresh = options.fresh_all || options.fresh.contains(&path);
            let Some(o) = old_statics.get(&path) else {
                reports.push(StaticReport {
                    path,
                    outcome: StaticOutcome::Fresh,
                    sizes: (0, size),
                });
                continue;
            };
            let old_name = o.symbol.name.as_str();
            // The same static: the same mangled name, one the caller vouched for, or (for a crate
            // whose identity changes and whose source could not be compared) the same path.
            let same_static = old_name == s.symbol.name
                || options.renamed(old_name) == Some(s.symbol.name.as_str())
                || options.match_statics_by_path.contains(&cell);
            let same = same_static && o.symbol.size == size && o.align == s.align;
            let outcome = if fresh {
                StaticOutcome::Fresh
            } else if same {
                if direct.contains(&s.id) {
                    return Err(SwapError::StaticReferencedDirectly { cell, name: path });
                }
                moves.push(StaticMove {
                    symbol: s.id,
                    to: o.symbol.addr,
                });
                StaticOutcome::Rebound
            } else if transfer.is_some() {
                StaticOutcome::Transferred
            } else {
                return Err(SwapError::StaticLayoutChanged {
                    cell,
                    name: path,
                    old: (o.symbol.size, o.align),
                    new: (size, s.align),
                    type_changed: !same_static,
                });
            };
            reports.push(StaticReport {
                path,
                outcome,
                sizes: (o.symbol.size, size),
            });
        }
        // The transfer runs when some static's state has to move; a new version whose statics
        // all keep their memory (or start fresh) needs none, whatever it exports.
        let moves_state = reports
            .iter()
            .any(|r| r.outcome == StaticOutcome::Transferred);
        Ok(StaticPlan {
            reports,
            moves,
            transfer: transfer.filter(|_| moves_state),
        })
    }

    /// Carries out a plan: rebinds the moved statics, then runs the new version's
    /// `transfer_state` (the gate holds every caller out of the old version while it runs, when
    /// the swap has one).
    pub(super) fn apply_statics(
        &mut self,
        p: &Pair,
        plan: StaticPlan,
        undo: &mut Undo,
    ) -> Result<Vec<StaticReport>, SwapError> {
        self.apply_rebinding(p.new, &plan.moves, undo)?;
        if !plan.moves.is_empty() {
            // Kept even if the swap is rolled back: it only makes freeing `p.old` look for heirs.
            if let Some(m) = self.mapped.get_mut(&p.old) {
                m.lent = true;
            }
        }
        if let Some(addr) = plan.transfer {
            let cell = self.name_of(p.new);
            self.run_transfer(&cell, addr, p.old)?;
        }
        Ok(plan.reports)
    }

    /// Points the new version's own GOT slots of each moved static at the old memory, through a
    /// relro write window, and its metadata with them.
    fn apply_rebinding(
        &mut self,
        new: CellId,
        moves: &[StaticMove],
        undo: &mut Undo,
    ) -> Result<(), SwapError> {
        if moves.is_empty() {
            return Ok(());
        }
        let cell = self.name_of(new);
        let Some(mapped) = self.mapped.get(&new) else {
            return Err(SwapError::NoSuchCell(new));
        };
        let platform_err = |error| SwapError::Platform {
            cell: cell.clone(),
            error,
        };
        let unwritable = |SlotOutside { slot }| SwapError::UnwritableSlot {
            cell: cell.clone(),
            slot,
        };
        let window = mapped
            .mapping
            .open_relro(&self.platform)
            .map_err(platform_err)?;
        for m in moves {
            for own in mapped.own_slots.iter().filter(|o| o.symbol == m.symbol) {
                let value = window.load(own.slot).map_err(unwritable)?;
                undo.slots.push(SlotValue {
                    slot: own.slot,
                    value,
                });
                window.store(own.slot, m.to).map_err(unwritable)?;
            }
        }
        let closed = window.close();
        for m in moves {
            if let Some(s) = self
                .registry
                .cell_mut(new)
                .and_then(|c| c.symbols.get_mut(m.symbol.index()))
            {
                undo.symbols.push(MovedSymbol {
                    cell: new,
                    symbol: m.symbol,
                    addr: s.addr,
                });
                s.addr = m.to;
            }
        }
        closed.map_err(platform_err)
    }

    /// Calls the new version's `transfer_state` with the old version's statics.
    fn run_transfer(&mut self, cell: &str, addr: u64, old: CellId) -> Result<(), SwapError> {
        let old_statics: Vec<(String, usize)> = self
            .registry
            .cell(old)
            .map(|c| {
                statics(c)
                    .map(|s| (demangle::path(&s.symbol.name), s.symbol.addr as usize))
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

    /// A crate the base image links statically (a shared kernel crate) keeps one state: every
    /// static of the cell that the base image also defines, by exact mangled name, is bound to
    /// the base image's initialized memory through the cell's own GOT slots, and recorded as an
    /// edge to the base image. The cell's own copy is never used. Runs before the cell is
    /// published, while its GOT is still writable.
    pub(crate) fn bind_image_statics<'a>(
        &self,
        cell: &str,
        described: &mut Described,
        mapped: &mut Mapped,
        edges: &mut Vec<PendingEdge<'a>>,
    ) -> Result<(), LoadError> {
        let Described {
            cell: meta,
            exports,
            ..
        } = described;
        // `describe` made one export per symbol of the metadata, in the same order.
        debug_assert!(exports
            .iter()
            .enumerate()
            .all(|(i, e)| e.symbol.index() == i));
        for (i, s) in meta.symbols.iter_mut().enumerate() {
            let id = SymbolId(i as u32);
            let in_data = s
                .section
                .and_then(|id| meta.sections.get(id.index()))
                .is_some_and(|sec| matches!(sec.kind, SectionKind::Data | SectionKind::Bss));
            let Some(export) = exports.get_mut(i) else {
                continue;
            };
            if s.kind != SymbolKind::Object || !in_data {
                continue;
            }
            let name = export.name.clone();
            let Some(image) = self.platform.image_symbol(&name) else {
                continue;
            };
            if mapped.direct_refs.contains(&id) {
                let symbol = demangle::demangle(&name);
                return Err(malformed(
                    cell,
                    Malformation::SharedStaticReachedDirectly { symbol },
                ));
            }
            let image = image as u64;
            for own in mapped.own_slots.iter().filter(|o| o.symbol == id) {
                let outside = || malformed(cell, Malformation::GotOutsideMapping);
                let offset = mapped.mapping.offset_of(own.slot).ok_or_else(outside)?;
                mapped
                    .mapping
                    .write(offset, &image.to_le_bytes())
                    .map_err(|_| outside())?;
                edges.push(PendingEdge {
                    section: SlotSection::Got,
                    slot: own.slot,
                    kind: SlotKind::Got,
                    addend: 0,
                    provider: Provider::Base,
                    // A shared static is rare: its edge's name is copied, not borrowed.
                    name: Cow::Owned(name.to_string()),
                    addr: image,
                });
            }
            s.addr = image;
            export.addr = image;
        }
        Ok(())
    }
}
