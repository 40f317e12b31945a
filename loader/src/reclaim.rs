//! Reclaiming retired cells, and handing a freed cell's data pages to the cell whose statics were
//! bound to them.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use crate::mapping::AddrRange;
use crate::platform::Platform;
use crate::region::Region;
use crate::system::System;
use crate_metadata::{demangle, CellId, CellState, Origin, SymbolKind};

/// Why a retired cell could not be reclaimed. Nothing was changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReclaimError {
    /// No loaded cell has this id.
    NoSuchCell(CellId),
    /// The cell is live, not retired.
    NotRetired {
        /// The cell.
        cell: String,
    },
    /// Edges still point into the cell.
    InUse {
        /// The cell.
        cell: String,
        /// The dependents.
        dependents: Vec<String>,
    },
    /// Registered threads have not all passed a quiescent point since the swap that retired the
    /// cell: one of them may still be running it.
    GracePeriod {
        /// The cell.
        cell: String,
        /// How many registered threads have not reported since.
        pending: usize,
    },
    /// The cell's statics are shared with mapped versions (a swap rebound them). Objects the cell
    /// made may live in that state and point into its code or read-only data (trait-object
    /// vtables, function pointers, string literals), so freeing it could leave the live version
    /// calling into unmapped memory. [`System::reclaim_unchecked`] frees it anyway, on the
    /// caller's word that the state holds no such pointer.
    SharesState {
        /// The cell.
        cell: String,
        /// The statics, by path.
        statics: Vec<String>,
        /// The versions that share them.
        with: Vec<String>,
    },
}

impl fmt::Display for ReclaimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReclaimError::NoSuchCell(id) => write!(f, "no loaded cell {id}"),
            ReclaimError::NotRetired { cell } => write!(f, "cell `{cell}` is live, not retired"),
            ReclaimError::InUse { cell, dependents } => write!(
                f,
                "retired cell `{cell}` is still used by: {}",
                dependents.join(", ")
            ),
            ReclaimError::GracePeriod { cell, pending } => write!(
                f,
                "retired cell `{cell}` may still run: {pending} registered thread(s) have not \
                 passed a quiescent point since it was retired"
            ),
            ReclaimError::SharesState {
                cell,
                statics,
                with,
            } => write!(
                f,
                "retired cell `{cell}` shares {} with {}: objects it made may live there and \
                 point into its code; reclaim it unchecked only if its state holds no trait \
                 objects, function pointers or string literals of its own",
                statics.join(", "),
                with.join(", ")
            ),
        }
    }
}

/// Statics of a retired cell that other versions (or the base image) share.
struct SharedState {
    /// The statics, by path.
    statics: Vec<String>,
    /// Who shares them.
    with: Vec<String>,
}

/// A data range of a freed cell that another cell's statics live in, and that cell.
#[derive(Clone, Copy, Debug)]
struct Heir {
    range: AddrRange,
    cell: CellId,
}

impl core::error::Error for ReclaimError {}

/// What a reclaim freed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reclaimed {
    /// Bytes unmapped.
    pub unmapped: u64,
    /// Bytes of data kept mapped for the cell whose statics live there, and that cell.
    pub handed_over: Option<(CellId, u64)>,
}

impl<P: Platform> System<P> {
    /// Frees a retired cell: unmaps it, deregisters its unwind information and frees its TLS
    /// blocks. Refused while an edge points into it or a registered thread may still run it.
    /// Its data pages stay mapped, owned by the new version, when the new version's statics were
    /// bound to them.
    pub fn reclaim(&mut self, id: CellId) -> Result<Reclaimed, ReclaimError> {
        self.check_reclaim(id)?;
        if let Some(shared) = self.shared_state(id) {
            return Err(ReclaimError::SharesState {
                cell: self
                    .registry
                    .cell(id)
                    .map(|c| c.name.clone())
                    .unwrap_or_default(),
                statics: shared.statics,
                with: shared.with,
            });
        }
        Ok(self.free_cell(id))
    }

    /// [`System::reclaim`] without the shared-state check: the edges and the grace period are
    /// still checked.
    ///
    /// # Safety
    /// Nothing reachable from the statics the cell shares with other versions (see
    /// [`ReclaimError::SharesState`]) points into the cell's code, read-only data or relro data.
    pub unsafe fn reclaim_unchecked(&mut self, id: CellId) -> Result<Reclaimed, ReclaimError> {
        self.check_reclaim(id)?;
        Ok(self.free_cell(id))
    }

    /// The statics of `id` that other mapped cells share (same address), and those cells.
    fn shared_state(&self, id: CellId) -> Option<SharedState> {
        let cell = self.registry.cell(id)?;
        let mine: Vec<(u64, &str)> = cell
            .symbols
            .iter()
            .filter(|s| s.kind == SymbolKind::Object)
            .map(|s| (s.addr, s.name.as_str()))
            .collect();
        let (mut statics, mut with) = (Vec::new(), Vec::new());
        for (addr, name) in &mine {
            if self.platform.image_symbol(name) == Some(*addr as usize) {
                statics.push(demangle::path(name));
                let base = self.registry.cell(crate_metadata::Registry::BASE);
                with.push(base.map_or_else(|| "the base image".into(), |c| c.name.clone()));
            }
        }
        // Only versions of the same cell share statics (a swap rebinds a new version's statics
        // to the old one's): those, through the registry's name index, not every loaded cell.
        for other in self.registry.cells_named(&cell.name) {
            if other.id == id || !self.mapped.contains_key(&other.id) {
                continue;
            }
            for s in other
                .symbols
                .iter()
                .filter(|s| s.kind == SymbolKind::Object)
            {
                if let Some((_, name)) = mine.iter().find(|(a, _)| *a == s.addr) {
                    let path = demangle::path(name);
                    if !statics.contains(&path) {
                        statics.push(path);
                    }
                    let who = alloc::format!("{} ({})", other.name, other.id);
                    if !with.contains(&who) {
                        with.push(who);
                    }
                }
            }
        }
        (!statics.is_empty()).then_some(SharedState { statics, with })
    }

    fn check_reclaim(&self, id: CellId) -> Result<(), ReclaimError> {
        let Some(cell) = self
            .registry
            .cell(id)
            .filter(|c| c.origin == Origin::Object && self.mapped.contains_key(&id))
        else {
            return Err(ReclaimError::NoSuchCell(id));
        };
        let name = cell.name.clone();
        if cell.state != CellState::Retired {
            return Err(ReclaimError::NotRetired { cell: name });
        }
        let dependents = self.registry.dependents(id);
        if !dependents.is_empty() {
            return Err(ReclaimError::InUse {
                cell: name,
                dependents: dependents
                    .iter()
                    .filter_map(|d| self.registry.cell(*d))
                    .map(|c| c.name.clone())
                    .collect(),
            });
        }
        let epoch = self.mapped[&id].retired_epoch.unwrap_or(0);
        let pending = self.epochs.pending_since(epoch);
        if pending > 0 {
            return Err(ReclaimError::GracePeriod {
                cell: name,
                pending,
            });
        }
        Ok(())
    }

    /// Removes a cell that nothing depends on from the registry and frees its memory, handing
    /// data ranges that other cells' statics live in over to those cells.
    pub(crate) fn free_cell(&mut self, id: CellId) -> Reclaimed {
        // Only a cell a swap rebound statics into (lent) can hold another version's state, and
        // the heir is a version of the same cell: its name, before the cell's metadata goes.
        let lent_name = self
            .mapped
            .get(&id)
            .filter(|m| m.lent)
            .and_then(|_| self.registry.cell(id))
            .map(|c| c.name.clone());
        let _ = self.registry.remove_cell(id);
        let Some(mapped) = self.mapped.remove(&id) else {
            return Reclaimed::default();
        };
        let mut ranges: Vec<AddrRange> = mapped.adopted.clone();
        let data = mapped.mapping.region(Region::Data);
        if data.len > 0 {
            ranges.push(data);
        }
        // The others are freed without a look at any other cell's symbols.
        let heirs: Vec<Heir> = match &lent_name {
            Some(name) => ranges
                .iter()
                .filter_map(|r| {
                    self.static_owner(name, *r)
                        .map(|cell| Heir { range: *r, cell })
                })
                .collect(),
            None => Vec::new(),
        };
        // Lengths of memory that is mapped: no sum of them overflows a `u64`.
        let total =
            mapped.mapping.len() as u64 + mapped.adopted.iter().map(|r| r.len as u64).sum::<u64>();
        // SAFETY: nothing points into the cell any more (no edges: checked by the callers) and
        // no registered thread runs it; the ranges kept are exactly those other cells' statics
        // live in.
        unsafe {
            self.release_keeping(mapped, &mut |range| heirs.iter().any(|h| h.range == range));
        }
        let kept: u64 = heirs.iter().map(|h| h.range.len as u64).sum();
        for heir in &heirs {
            if let Some(m) = self.mapped.get_mut(&heir.cell) {
                m.adopted.push(heir.range);
            }
        }
        Reclaimed {
            unmapped: total.saturating_sub(kept),
            handed_over: heirs.first().map(|h| (h.cell, kept)),
        }
    }

    /// A mapped version of the cell `name` one of whose statics lies in `range`. Only versions
    /// of the same cell share statics (a swap rebinds a new version's statics to the old one's),
    /// so this looks at those through the registry's name index, not at every loaded cell.
    fn static_owner(&self, name: &str, range: AddrRange) -> Option<CellId> {
        self.registry
            .cells_named(name)
            .filter(|c| self.mapped.contains_key(&c.id))
            .find(|c| {
                c.symbols
                    .iter()
                    .any(|s| s.kind == SymbolKind::Object && range.contains(s.addr))
            })
            .map(|c| c.id)
    }
}
