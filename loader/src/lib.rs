//! The loader: links cell objects into a running system.
//!
//! A cell is a relocatable x86_64 ELF object (`ET_REL`), one per crate. Loading one runs these
//! phases, one file each:
//!
//! | phase | file | what it does |
//! |-------|------|--------------|
//! | parse | `parse.rs`, `index.rs` | checks the header (class, endianness, machine, type) and that every table and section lies inside the file; typed section and symbol indices |
//! | layout | `layout.rs` | places sections into four page-aligned regions of one mapping; numbers GOT slots, TLS pairs and call stubs (from `.cell.prelink`'s lists when the build wrote them, else from the relocations; checked arithmetic) |
//! | resolve | `resolve.rs`, `system/load.rs` | binds each undefined symbol: the cell, its namespace and parents, the base image, the platform |
//! | policy | `policy.rs` | in a confined (application) namespace: every binding allowed by an export policy rule, the application admitted as safe; before anything is mapped |
//! | link | `link.rs`, `reloc.rs`, `prelink/` | copies sections, fills the GOT and stubs, applies relocations from the table through one checked writer; `prelink/` applies at build time those the layout alone decides (DESIGN §3) |
//! | check unwind table | `eh_frame.rs`, `system/unwind.rs` | walks the relocated `.eh_frame` as libgcc's unwinder will (records, CIEs, pointer encodings, FDE ranges inside the text, call-frame instructions) and refuses it, with the offset at fault, before it is registered |
//! | describe | `system/describe.rs` | the cell's metadata (sections, exported symbols) and its namespace exports |
//! | rebind | `swap/rebind.rs` | statics shared with the base image bound to its memory on load; statics rebound to the old version's memory, or state transferred, on swap |
//! | publish | `system/publish.rs`, `mapping/permissions.rs` | protects the regions (text RX, read-only R, relro and GOT R, data RW), registers `.eh_frame` and TLS, adds the cell to its namespace and its edges to the registry, runs `.init_array` |
//! | swap | `swap/` (`stage.rs`, `verify.rs`, `rebind.rs`, `commit.rs`, `undo.rs`) | stage, verify, rebind statics / transfer state, commit (slot stores through relro write windows), retire — all or nothing |
//! | unload | `system/unload.rs` | removes a cell or a namespace with nothing bound to it; releases TLS, unwind information and memory (the hosted platform keeps a released mapping, inaccessible, for the next mapping of its length: `hosted/pool.rs`) |
//! | reclaim | `reclaim.rs`, `quiesce.rs` | frees a retired cell once no edge points into it and every registered thread passed a quiescent point |
//! | debuggers | `system/debuggers.rs`, `hosted/debug/` | tells the platform's [`platform::Debuggers`] of each cell published, changed by a swap or freed; hosted: GDB JIT registration, the perf map, backtraces that name cells |
//!
//! Around the phases: `system/mod.rs` (the [`System`] and what it keeps per cell), `system/handles.rs`
//! (host handles), `region.rs` (the four regions of a mapping), `mapping/` (the only raw memory
//! access; `mapping/permissions.rs` is the one permission API), `platform.rs` (what a platform
//! provides), `overlay.rs` (a platform that is another with a few methods changed, for test and
//! fuzz platforms), `error.rs` and `malformation.rs` (typed errors).
//!
//! Tests: `tests/`, one file per phase, load objects that `testing/elf.rs` writes (with
//! `object::write`) on `testing/`'s heap platform; `nano_core/tests/differential_link.rs` compares
//! every word the loader relocates with what the system linker and `ld.so` make of the same cells.
//!
//! # Invariants
//!
//! - **Text is never patched after load.** Every reference that leaves a cell goes through a
//!   slot (a GOT entry, the word a call stub jumps through, an `R_X86_64_64` data word, or a host
//!   handle) and is recorded as an [`crate_metadata::Edge`].
//! - **W^X at every moment.** No region is writable and executable at once.
//! - **All or nothing.** A failed load leaves the system exactly as it was: nothing mapped, nothing
//!   registered, the namespaces and the registry unchanged.
//! - **The platform is a trait.** The core is `#![no_std]` + `alloc`; [`platform`] says what a
//!   platform provides, and the `hosted` feature implements it for a Linux process.
//! - **Raw memory is touched in one module** (`mapping/`), through bounds-checked offsets, and
//!   permissions change only through its two operations: publish a layout, or open a relro write
//!   window that checks every slot store and closes itself.
//! - **Checked arithmetic**: every address and offset computed from object data or the registry
//!   is a checked sum, and a value that does not fit is a typed error.

#![no_std]
#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

extern crate alloc;
#[cfg(any(feature = "std", test))]
extern crate std;

mod catalog;
pub mod eh_frame;
mod error;
mod handle;
mod image;
mod index;
mod layout;
mod le;
mod link;
mod malformation;
mod mapping;
mod names;
pub mod overlay;
mod parse;
pub mod platform;
mod policy;
pub mod prelink;
mod quiesce;
mod reclaim;
mod region;
mod reloc;
mod resolve;
mod swap;
mod system;

#[cfg(feature = "hosted")]
pub mod hosted;

#[cfg(test)]
mod testing;
#[cfg(test)]
mod tests;

pub use catalog::ManifestCatalog;
pub use error::{LoadError, MissingCause, MissingSymbol};
pub use handle::{Handle, HandleSlot};
pub use image::ImageSymbols;
pub use index::{SectionIndex, SymbolIndex};
pub use malformation::{EhField, EhFrameFault, EhPointer, Malformation, Truncation};
pub use policy::{NamespacePolicy, PolicyError, RefusedBinding};
pub use quiesce::{Epochs, ThreadRegistration};
pub use reclaim::{ReclaimError, Reclaimed};
pub use resolve::Catalog;
pub use resolve::{Provider, Resolution, Resolved, Resolver};
pub use swap::{
    parked_frames_in, GateReport, MissingExport, NewVersion, PhaseTimes, StaticOutcome,
    StaticReport, SwapError, SwapOptions, SwapReport, SwapRequest, SwappedCell, ThreadInside,
    TlsOutcome, TransferFn, DRAIN_DEADLINE,
};
pub use system::load::sha256;
pub use system::unload::UnloadError;
pub use system::{CellSpec, System};
