//! Reclaiming retired versions in the running system.
//!
//! A swap leaves the old version mapped (retired): a thread may still be running it. The loader
//! frees one ([`loader::System::reclaim`]) once no edge points into it and every thread registered
//! with [`loader::System::epochs`] has passed a quiescent point since the swap. `nano_core`
//! registers every thread that calls cells:
//!
//! - the thread that drives the kernel (the one that booted it; in `--serve` mode the thread that
//!   handles the requests): its registration lives in the [`Kernel`] and reports at the start of
//!   each reclaim pass, when that thread is between operations and holds no pointer into a cell;
//! - the load threads of `--load N`, between calls;
//! - each application's thread, from before `main` until the thread ends (a long-running
//!   application therefore holds back reclaiming until it returns);
//! - the live-swap demo's worker threads.
//!
//! A thread that calls cells through a handle without registering (a test's own threads) is not
//! waited for, so reclaiming runs only where `nano_core` knows every such thread: in the serve
//! loop (after swaps, at most every [`RECLAIM_INTERVAL`]) and on the `reclaim` request, never on
//! its own inside a swap.
//!
//! When a newer version runs on the retired version's statics (they were rebound), objects the
//! retired version made may live there and point into its code, and the loader refuses
//! ([`ReclaimError::SharesState`]). A cell that exports `plain_state` ([`cell_abi::PLAIN_STATE`])
//! promises that its statics hold nothing of the kind; a retired version of such a cell is freed
//! with [`loader::System::reclaim_unchecked`] on that promise (its data pages pass to the version
//! that runs on them). Without the promise (memfs: its files are trait objects) it stays mapped.

use std::time::Duration;

use crate_metadata::{demangle, CellId};
use loader::ReclaimError;

use crate::kernel::Kernel;
pub use crate::kernel::ReclaimTotals;

/// How often the serve loop tries again while retired versions wait for a grace period.
pub const RECLAIM_INTERVAL: Duration = Duration::from_millis(100);

/// A retired version a pass freed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReclaimedCell {
    /// The cell's name.
    pub name: String,
    /// Its id.
    pub id: CellId,
    /// Bytes unmapped.
    pub unmapped: u64,
    /// Whether it was freed on its plain-state promise (its statics live on in a newer version).
    pub on_promise: bool,
}

/// A retired version a pass left mapped, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeptCell {
    /// The cell's name.
    pub name: String,
    /// Its id.
    pub id: CellId,
    /// Why the loader refused.
    pub why: ReclaimError,
}

impl KeptCell {
    /// Whether trying again later may succeed: a grace period that has not ended yet, or users
    /// that may go (as opposed to state shared without the plain-state promise, which stays).
    pub fn waiting(&self) -> bool {
        matches!(
            self.why,
            ReclaimError::GracePeriod { .. } | ReclaimError::InUse { .. }
        )
    }
}

/// What one reclaim pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReclaimPass {
    /// The versions freed.
    pub reclaimed: Vec<ReclaimedCell>,
    /// The versions left mapped.
    pub kept: Vec<KeptCell>,
}

impl ReclaimPass {
    /// Whether some version waits only for a grace period.
    pub fn waiting(&self) -> bool {
        self.kept.iter().any(KeptCell::waiting)
    }
}

impl Kernel {
    /// Frees every retired version that can go (see the module docs): the loader's checks, and
    /// for a version whose statics a newer one runs on, its plain-state promise. Returns what it
    /// freed and what it kept, and why.
    pub fn reclaim_retired(&mut self) -> ReclaimPass {
        // This thread is between operations: it runs no cell code and holds no pointer into one.
        self.driver.quiescent();
        let mut pass = ReclaimPass::default();
        // A retired version may be used only by another retired one: go again while one goes.
        loop {
            let before = pass.reclaimed.len();
            pass.kept.clear();
            for id in self.system.retired() {
                let name = self
                    .system
                    .registry()
                    .cell(id)
                    .map(|c| c.name.clone())
                    .unwrap_or_default();
                let result = match self.system.reclaim(id) {
                    Err(ReclaimError::SharesState { .. }) if self.promises_plain_state(id) => {
                        // SAFETY: the cell exports `plain_state`, its promise that nothing
                        // reachable from its statics points into its code, read-only or relro
                        // data (cell_abi::PLAIN_STATE); the edges and the grace period are still
                        // checked by the loader.
                        unsafe { self.system.reclaim_unchecked(id) }.map(|r| (r, true))
                    }
                    other => other.map(|r| (r, false)),
                };
                match result {
                    Ok((r, on_promise)) => pass.reclaimed.push(ReclaimedCell {
                        name,
                        id,
                        unmapped: r.unmapped,
                        on_promise,
                    }),
                    Err(why) => pass.kept.push(KeptCell { name, id, why }),
                }
            }
            if pass.reclaimed.len() == before || pass.kept.is_empty() {
                break;
            }
        }
        for r in &pass.reclaimed {
            self.reclaimed.cells += 1;
            self.reclaimed.unmapped += r.unmapped;
            log::info!(target: "nano_core", "reclaimed retired `{}` {} ({} bytes unmapped)", r.name, r.id, r.unmapped);
        }
        pass
    }

    /// What was reclaimed since the boot.
    pub fn reclaimed(&self) -> ReclaimTotals {
        self.reclaimed
    }

    /// Whether the cell `id` exports `<name>::plain_state` (see the module docs).
    fn promises_plain_state(&self, id: CellId) -> bool {
        let Some(cell) = self.system.registry().cell(id) else {
            return false;
        };
        let path = cell_abi::PLAIN_STATE.of(&cell.name);
        cell.symbols
            .iter()
            .any(|s| demangle::path(&s.name) == path.path())
    }
}
