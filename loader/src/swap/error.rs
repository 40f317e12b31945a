//! Why a swap was refused.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use crate::error::LoadError;
use crate::platform::PlatformError;
use crate_metadata::{demangle, CellId};

/// A symbol a dependent binds to that the new version lacks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MissingExport {
    /// The symbol, demangled.
    pub symbol: String,
    /// The mangled name.
    pub mangled: String,
    /// When the new version has the same path under another hash: its mangled name. Then the
    /// function's signature, or the crate's identity (name, version, features, profile), changed.
    pub changed_to: Option<String>,
    /// The dependents that bind to it.
    pub dependents: Vec<String>,
}

/// Why a swap was refused. The system is exactly as it was before the call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SwapError {
    /// Nothing to swap.
    Empty,
    /// No loaded cell has this id.
    NoSuchCell(CellId),
    /// The cell to replace is not live.
    NotLive {
        /// The cell.
        cell: String,
    },
    /// The same cell appears twice in one swap.
    Duplicate {
        /// The cell.
        cell: String,
    },
    /// The cells of one swap must share a namespace.
    MixedNamespaces {
        /// The cells.
        cells: Vec<String>,
    },
    /// The new version has another name than the cell it replaces.
    WrongName {
        /// The cell replaced.
        cell: String,
        /// The new version's name.
        new: String,
    },
    /// `NewVersion::Retired` names a cell that is not a retired version of the cell.
    NotRetired {
        /// The cell replaced.
        cell: String,
        /// The id given.
        id: CellId,
    },
    /// Loading a new version failed.
    Stage(LoadError),
    /// Dependents bind to symbols the new version does not export.
    MissingSymbols {
        /// The cell.
        cell: String,
        /// Every missing symbol.
        missing: Vec<MissingExport>,
    },
    /// Dependents reach the cell without a slot, so they cannot be moved.
    DirectReferences {
        /// The cell.
        cell: String,
        /// The dependents.
        dependents: Vec<String>,
    },
    /// A static changed size or alignment, and the new version has no `transfer_state` and no
    /// fresh state was asked for.
    StaticLayoutChanged {
        /// The cell.
        cell: String,
        /// The static's path.
        name: String,
        /// (size, alignment) in the old version.
        old: (u64, u64),
        /// (size, alignment) in the new version.
        new: (u64, u64),
        /// Whether its type changed (the mangled name's hash covers the type), whatever the size.
        type_changed: bool,
    },
    /// A static to rebind is reached by the new version's code without a slot.
    StaticReferencedDirectly {
        /// The cell.
        cell: String,
        /// The static's path.
        name: String,
    },
    /// The new version's `transfer_state` returned an error.
    Transfer {
        /// The cell.
        cell: String,
        /// Its message.
        message: String,
    },
    /// The new version's `transfer_state` panicked.
    TransferPanicked {
        /// The cell.
        cell: String,
        /// The panic message.
        message: String,
    },
    /// The namespace would refuse the new version's exports (a duplicate symbol).
    Namespace {
        /// The cell.
        cell: String,
        /// What the namespace said.
        error: namespace::NamespaceError,
    },
    /// A slot to rewrite is not an aligned word in its cell's relro or data region (text and
    /// read-only data are never written after load).
    UnwritableSlot {
        /// The cell the slot belongs to.
        cell: String,
        /// The slot's address.
        slot: u64,
    },
    /// A dependent's slot would not hold the new address plus its addend (a 64-bit data word
    /// whose addend pushes the sum out of range).
    SlotValueOverflow {
        /// The dependent.
        cell: String,
        /// The symbol, demangled.
        symbol: String,
        /// The slot's addend.
        addend: i64,
    },
    /// The platform failed (protecting pages for the commit or the rebinding).
    Platform {
        /// The cell.
        cell: String,
        /// What failed.
        error: PlatformError,
    },
    /// The state moves (a transfer runs), and threads were still inside the old versions when
    /// the drain's deadline passed: the gate was opened again and the callers went on into the
    /// old versions.
    StillInside {
        /// The cells swapped.
        cells: Vec<String>,
        /// The threads still inside, and where.
        threads: Vec<ThreadInside>,
        /// How long the swap waited, in nanoseconds.
        waited: u64,
    },
    /// The swap was asked for from a thread that is itself inside a cell it replaces (it would
    /// wait for itself).
    FromInside {
        /// The cell.
        cell: String,
        /// Where on the calling thread's stack (`frame_alloc::alloc_frame+0x1f`).
        at: String,
    },
    /// The new version's thread-local storage has another layout than the old one's, and fresh
    /// thread-locals were not asked for.
    ThreadLocalsChanged {
        /// The cell.
        cell: String,
        /// The old block's (size, alignment).
        old: (u64, u64),
        /// The new block's (size, alignment).
        new: (u64, u64),
    },
    /// The state moves, and a dependent outside the swap binds to one of the old version's
    /// statics (not a function): its accesses could not be held at the gate.
    StateReachedFromOutside {
        /// The cell.
        cell: String,
        /// The static, demangled.
        symbol: String,
        /// The dependents that bind to it.
        dependents: Vec<String>,
    },
    /// The new version breaks an export policy: an application binds to a symbol it no longer
    /// offers applications.
    Policy(alloc::boxed::Box<crate::policy::types::PolicyError>),
}

/// A thread found inside an old version by the drain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ThreadInside {
    /// The thread's id (the kernel's, hosted; a CPU on bare metal).
    pub thread: u64,
    /// Its name.
    pub name: String,
    /// Where (`frame_alloc::alloc_frame+0x1f`), or what made it look inside.
    pub at: String,
}

impl core::error::Error for SwapError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            SwapError::Stage(error) => Some(error),
            SwapError::Platform { error, .. } => Some(error),
            SwapError::Namespace { error, .. } => Some(error),
            _ => None,
        }
    }
}

impl fmt::Display for SwapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use SwapError::*;
        match self {
            Empty => f.write_str("nothing to swap"),
            NoSuchCell(id) => write!(f, "no loaded cell {id}"),
            NotLive { cell } => write!(f, "cell `{cell}` is not live"),
            Duplicate { cell } => write!(f, "cell `{cell}` appears twice in one swap"),
            MixedNamespaces { cells } => write!(
                f,
                "the cells of one swap must be in one namespace: {}",
                cells.join(", ")
            ),
            WrongName { cell, new } => {
                write!(
                    f,
                    "cell `{cell}` cannot be replaced by a cell named `{new}`"
                )
            }
            NotRetired { cell, id } => write!(f, "{id} is not a retired version of `{cell}`"),
            Stage(e) => write!(f, "staging the new version failed: {e}"),
            MissingSymbols { cell, missing } => {
                write!(
                    f,
                    "the new version of `{cell}` lacks {} symbol{} its dependents bind to:",
                    missing.len(),
                    if missing.len() == 1 { "" } else { "s" }
                )?;
                for m in missing {
                    write!(f, "\n  {} (used by {})", m.symbol, m.dependents.join(", "))?;
                    if let Some(to) = &m.changed_to {
                        write!(
                            f,
                            "\n    the same path exists as {}: its signature or the crate's \
                             identity (name, version, features, profile) changed",
                            demangle::demangle(to)
                        )?;
                    }
                }
                Ok(())
            }
            DirectReferences { cell, dependents } => write!(
                f,
                "`{cell}` is reached without a slot by {}, which cannot be moved",
                dependents.join(", ")
            ),
            StaticLayoutChanged {
                cell,
                name,
                old,
                new,
                type_changed,
            } => write!(
                f,
                "static `{name}` of `{cell}` changed {}from {} bytes (align {}) to {} bytes \
                 (align {}): the new version needs a `transfer_state` function, or ask for fresh \
                 state",
                if *type_changed { "its type, " } else { "" },
                old.0,
                old.1,
                new.0,
                new.1
            ),
            StaticReferencedDirectly { cell, name } => write!(
                f,
                "static `{name}` of the new `{cell}` is reached without a slot, so it cannot be \
                 bound to the old version's memory (make it a `pub static`)"
            ),
            Transfer { cell, message } => {
                write!(f, "`{cell}::transfer_state` failed: {message}")
            }
            TransferPanicked { cell, message } => {
                write!(f, "`{cell}::transfer_state` panicked: {message}")
            }
            Namespace { cell, error } => write!(f, "cell `{cell}`: {error}"),
            UnwritableSlot { cell, slot } => write!(
                f,
                "cell `{cell}`: the slot at {slot:#x} lies in neither its relro nor its data region"
            ),
            SlotValueOverflow {
                cell,
                symbol,
                addend,
            } => write!(
                f,
                "cell `{cell}`: the new address of `{symbol}` plus the addend {addend} does not \
                 fit its 64-bit slot"
            ),
            Platform { cell, error } => write!(f, "cell `{cell}`: {error}"),
            StillInside {
                cells,
                threads,
                waited,
            } => {
                write!(
                    f,
                    "{}: the state moves, and {} thread{} stayed inside the old version{} for \
                     {} ms; the swap was undone and the callers went on in the old version:",
                    cells.join(", "),
                    threads.len(),
                    if threads.len() == 1 { "" } else { "s" },
                    if cells.len() == 1 { "" } else { "s" },
                    waited / 1_000_000
                )?;
                for t in threads {
                    write!(f, "\n  thread {} `{}` at {}", t.thread, t.name, t.at)?;
                }
                Ok(())
            }
            ThreadLocalsChanged { cell, old, new } => write!(
                f,
                "cell `{cell}`: its thread-locals changed layout (a block of {} bytes aligned to \
                 {} before, {} aligned to {} now, or other variables): ask for fresh \
                 thread-locals to swap it",
                old.0, old.1, new.0, new.1
            ),
            FromInside { cell, at } => write!(
                f,
                "cell `{cell}`: the swap was asked for from inside it ({at} is on the calling \
                 thread's stack); it would wait for itself"
            ),
            StateReachedFromOutside {
                cell,
                symbol,
                dependents,
            } => write!(
                f,
                "cell `{cell}`: its state moves, but {} bind{} to its static `{symbol}` directly, \
                 which the gate cannot hold",
                dependents.join(", "),
                if dependents.len() == 1 { "s" } else { "" }
            ),
            Policy(error) => write!(f, "{error}"),
        }
    }
}
