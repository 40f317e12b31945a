//! `nano_core`: the hosted base image of the cell system.
//!
//! It runs the cell system as a Linux process (the "libos" mode): it reads the manifest that
//! `cargo cell build` wrote, loads every kernel cell into the `_kernel` namespace in dependency
//! order with the [`loader`], calls each cell's init entry point, and runs a workload that goes
//! across the cells.
//!
//! # The init convention
//!
//! A cell may export `pub fn init() -> Result<(), String>` (non-generic, `#[inline(never)]`).
//! After a cell is loaded and every cell it depends on has been initialised, `nano_core` looks the
//! function up by its path (`<crate>::init`) and calls it once through a handle; an `Err` stops
//! the boot with the cell's message. A cell without `init` needs none.
//!
//! The base image is also where cells bind to `core`, `alloc`, `std` and `log`: it links with
//! `-Wl,--export-dynamic` (see `build.rs`).

#![deny(missing_docs)]

mod app_table;
pub mod apps;
pub mod boot;
pub mod control;
pub mod errors;
pub mod faults;
pub mod files;
pub mod kernel;
pub mod live;
pub mod load_unload;
pub mod load_unload_error;
pub mod logger;
pub mod panic;
mod policy;
pub mod reclaim;
pub mod report;
pub mod swap;
pub mod upgrade_set;
pub mod workload;

pub use kernel::{BootFailure, BootOptions, Kernel, KERNEL_NAMESPACE};
pub use load_unload::{CellChange, CellChanges, LoadTarget};
pub use load_unload_error::CellError;

// A kernel may be handed to another thread (behind a lock, for concurrent swaps and loads).
const _: fn() = || {
    fn is_send<T: Send>() {}
    is_send::<Kernel>();
};
