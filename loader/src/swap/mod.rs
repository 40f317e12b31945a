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
//! before. Commit cannot fail once it stores: the relro write windows it needs are opened first
//! (the only step that can fail), and each store is one aligned atomic 8-byte write, so a caller
//! on another thread reads either the old or the new address and each call runs wholly in one
//! version.
//!
//! | phase | file |
//! |-------|------|
//! | the request, options and report types; the transaction | `mod.rs` |
//! | why a swap is refused | `error.rs` |
//! | stage: check the requests, load or reuse the new versions | `stage.rs` |
//! | verify: every bound symbol exists in the new version; the namespace accepts it | `verify.rs` |
//! | rebind statics / transfer state (and, on load, statics shared with the base image) | `rebind.rs` |
//! | commit: slot stores through relro write windows, then retire | `commit.rs` |
//! | undo a refused swap | `undo.rs` |

mod commit;
mod drain;
mod error;
pub(crate) mod gate;
pub(crate) mod rebind;
mod stage;
mod thread_locals;
mod undo;
mod verify;

use alloc::collections::BTreeSet;
use alloc::string::String;
use alloc::vec::Vec;

pub use error::{MissingExport, SwapError, ThreadInside};
pub use gate::{parked_frames_in, GateReport};
pub use thread_locals::TlsOutcome;
use undo::Undo;

use crate::platform::Platform;
use crate::system::{CellSpec, System};
use crate_metadata::{CellId, EdgeId, NamespaceId, SlotKind, SymbolId};

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
    /// How long a swap whose state moves waits for the old versions to drain, in nanoseconds
    /// (0: [`DRAIN_DEADLINE`]). Past it, the swap is undone ([`SwapError::StillInside`]).
    pub drain_deadline: u64,
    /// Starts every thread's thread-locals of the new versions from their initial values, instead
    /// of carrying them over (which needs the same thread-local layout).
    pub fresh_thread_locals: bool,
    /// Transfers state without the gate: calls into the old version keep running during the
    /// transfer and their updates are lost. Only for the test that shows what the gate prevents.
    #[doc(hidden)]
    pub without_gate_for_tests: bool,
}

/// How long a swap whose state moves waits for the old versions to drain, unless told otherwise.
pub const DRAIN_DEADLINE: u64 = 2_000_000_000;

impl SwapOptions {
    /// The new name `old` is renamed to, if the caller vouched for one.
    pub(crate) fn renamed(&self, old: &str) -> Option<&str> {
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
    /// When the state moved: how the gate held the callers (`None` for a swap that only rebinds,
    /// which never waits).
    pub gate: Option<GateReport>,
    /// The cells with thread-locals, and what happened to them.
    pub thread_locals: Vec<(String, TlsOutcome)>,
}

/// The signature of the state-transfer convention.
pub type TransferFn = fn(&dyn Fn(&str) -> Option<usize>) -> Result<(), String>;

/// One old version and its new version during a swap.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Pair {
    /// The live version being replaced.
    pub(crate) old: CellId,
    /// Its new version (staged, or a retired one reused).
    pub(crate) new: CellId,
    /// Whether the new version is a retired one reused without loading.
    pub(crate) reused: bool,
}

/// One slot the commit writes.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SlotWrite {
    /// The edge whose slot it is.
    pub(crate) edge: EdgeId,
    /// The slot's address.
    pub(crate) slot: u64,
    /// What kind of slot.
    pub(crate) kind: SlotKind,
    /// The cell (or the base image, for a handle) the slot belongs to.
    pub(crate) dependent: CellId,
    /// The new provider.
    pub(crate) new_cell: CellId,
    /// The symbol of the new provider the edge moves to.
    pub(crate) new_symbol: SymbolId,
    /// The edge's addend: the slot gets the new symbol's address plus it. The address is read
    /// when the commit writes, after rebinding may have moved the symbol (a static bound to the
    /// old version's memory), so dependents and the new version share one copy.
    pub(crate) addend: i64,
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
        let mut undo = Undo::new(self.registry.checkpoint());
        match self.swap_staged(ns, requests, options, &mut undo, start) {
            Ok(report) => {
                self.registry.keep(&undo.registry);
                Ok(report)
            }
            Err(e) => {
                self.undo(undo);
                Err(e)
            }
        }
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
        report.times.stage = staged.saturating_sub(start);

        let olds: BTreeSet<CellId> = pairs.iter().map(|p| p.old).collect();
        let mut writes = Vec::new();
        for p in &pairs {
            writes.extend(self.verify(p, &olds, options)?);
        }
        self.check_namespace(ns, &pairs)?;
        let verified = self.platform.now_nanos();
        report.times.verify = verified.saturating_sub(staged);

        let plans = pairs
            .iter()
            .map(|p| self.plan_statics(p, options))
            .collect::<Result<Vec<_>, SwapError>>()?;
        // The state moves: hold every caller out of the old versions until the commit.
        if plans.iter().any(|plan| plan.transfer.is_some()) && !options.without_gate_for_tests {
            self.close_gate(&pairs, &writes, undo)?;
            self.drain(&pairs, options, undo)?;
        }
        let tls_plans = pairs
            .iter()
            .map(|p| self.plan_thread_locals(p, options))
            .collect::<Result<Vec<_>, SwapError>>()?;
        for (p, plan) in pairs.iter().zip(plans) {
            report.statics.extend(self.apply_statics(p, plan, undo)?);
        }
        let tls_plans = pairs
            .iter()
            .zip(tls_plans)
            .map(|(p, plan)| self.apply_thread_locals(p, plan, undo))
            .collect::<Result<Vec<_>, SwapError>>()?;
        let rebound = self.platform.now_nanos();
        report.times.rebind = rebound.saturating_sub(verified);

        self.commit(ns, &pairs, &writes, undo, &mut report)?;
        report.gate = self.open_gate_after_commit(undo);
        for (p, plan) in pairs.iter().zip(tls_plans) {
            if let Some(outcome) = self.finish_thread_locals(p, plan) {
                report.thread_locals.push((self.name_of(p.new), outcome));
            }
        }
        let end = self.platform.now_nanos();
        report.times.retire = end.saturating_sub(rebound.saturating_add(report.times.commit));
        report.times.total = end.saturating_sub(start);
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
}
