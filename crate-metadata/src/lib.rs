//! The data model of the cell system: cells, their sections and symbols, and the edges that
//! connect them.
//!
//! A **cell** is one crate compiled into one relocatable object and linked into the running system
//! by the loader. Every reference a cell makes to another cell (or to the base image, or to the
//! platform) lands in a **slot**: an aligned 8-byte word that holds the absolute address of the
//! thing referred to — a GOT entry, the target word of a call stub, a data word written by an
//! `R_X86_64_64` relocation, or a slot the host calls through. Each slot is one [`Edge`]:
//!
//! ```text
//!   (dependent cell, section, slot address)  ──►  (provider cell, symbol)
//! ```
//!
//! # Invariants
//!
//! - Everything is named by a typed id ([`CellId`], [`SectionId`], [`SymbolId`], [`EdgeId`],
//!   [`NamespaceId`]) into plain vectors: no pointers, no `Arc` cycles, so the whole model
//!   serializes with serde and the inspection tools read exactly what the loader wrote. (The one
//!   `Arc` is inside [`Name`]: the names of a cell's sections and symbols are slices of one shared
//!   string, which serializes as the names themselves.)
//! - Every edge is stored once in the [`Registry`] and referenced from both of its cells
//!   ([`Cell::uses`] on the dependent, [`Cell::used_by`] on the provider). The registry keeps the
//!   two sides in step; nothing else writes them.
//! - Cells `0` and `1` are the base image and the platform. They are cells like the others, so a
//!   binding to `core::fmt::write` in the base image is an edge like a binding to `klog::push`.
//!
//! # Walk-through: what a swap reads from here
//!
//! The crate-level graph is derived from the edges. To replace `frame_alloc` with a new version,
//! the loader reads `frame_alloc`'s [`Cell::used_by`]: each edge names a dependent slot and the
//! symbol it binds to. Verification asks the new version for each such symbol by exact name;
//! commit writes the new address into each slot (one 8-byte store), then
//! [`Registry::retarget_edge`] moves the edge to the new cell. The old cell becomes
//! [`CellState::Retired`] and is reclaimed once nothing points into it.
//!
//! This crate knows nothing of ELF or memory: it is the model, shared by the loader, the
//! namespaces and the tools.

#![no_std]
#![deny(missing_docs)]
#![deny(unsafe_code)]

extern crate alloc;

mod cell;
pub mod demangle;
mod digest;
mod edge;
pub mod hex;
mod ids;
mod locate;
pub mod manifest;
mod name;
pub mod paths;
pub mod policy;
mod registry;
mod shared;

pub use cell::{Cell, CellState, LoadStats, Origin, Section, SectionKind, Symbol, SymbolKind};
pub use digest::{BadDigest, Sha256};
pub use edge::{Edge, SlotKind};
pub use ids::{CellId, EdgeId, NamespaceId, SectionId, SymbolId};
pub use locate::{section_function, Function, Location};
pub use manifest::{
    CellKind, CrateInfo, DependencyUpgrade, Manifest, ManifestEntry, PlanError, Rename, Unverified,
    MANIFEST_FILE,
};
pub use name::{Name, NameArena, NameSpan, Names};
pub use policy::{AppInterface, Refusal, Rule};
pub use registry::{Checkpoint, Registry};
pub use shared::SharedList;
