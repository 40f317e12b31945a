//! Edges: every reference that crosses a cell boundary, one per slot.

use serde::{Deserialize, Serialize};

use crate::ids::{CellId, SectionId, SymbolId};

/// What kind of word an edge's slot is, which decides how a swap rewrites it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SlotKind {
    /// A GOT entry of the dependent (read through `GOTPCREL` loads and `jmp *slot` call stubs):
    /// holds the provider's address.
    Got,
    /// A data word written by `R_X86_64_64` (a vtable entry, a pointer in a static): holds the
    /// provider's address plus the edge's addend.
    Data,
    /// A `TLSGD` GOT pair naming a thread-local variable of the provider (module, offset).
    TlsPair,
    /// A slot the host reads through a handle.
    Handle,
    /// A PC-relative field patched into the dependent's own code or data. It cannot be
    /// rewritten by a swap; the swap refuses a provider that has such edges.
    Direct,
}

impl SlotKind {
    /// Whether a swap can move this reference to a new provider with one 8-byte store.
    pub fn is_rewritable(self) -> bool {
        matches!(self, SlotKind::Got | SlotKind::Data | SlotKind::Handle)
    }
}

/// One reference across a cell boundary: the slot at `slot` in `dependent`'s section `section`
/// holds the address of `provider`'s symbol `symbol` (plus `addend`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Edge {
    /// The cell that holds the slot.
    pub dependent: CellId,
    /// The dependent's section the slot lives in.
    pub section: SectionId,
    /// The slot's address.
    pub slot: u64,
    /// What kind of word the slot is.
    pub kind: SlotKind,
    /// Added to the symbol's address when the slot is written.
    pub addend: i64,
    /// The cell that defines the symbol.
    pub provider: CellId,
    /// The symbol, in the provider's symbol table.
    pub symbol: SymbolId,
}
