//! Host-side tools of the cell system.
//!
//! [`build::build_cells`] is `cargo cell build`: it compiles the base image and every cell crate
//! (`cells/{kernel,libs,apps}/<crate>`) in one `cargo build`, takes the single relocatable object
//! out of each cell's rlib ([`objects`]), and writes the objects and a
//! [`Manifest`](crate_metadata::Manifest) under `<target>/cells/`; new versions of cells
//! (`cells/upgrades/<crate>`) are built with the identity of the cells they replace, in shadow
//! workspaces ([`upgrades`]). The `cargo-cell` binary is a thin command-line front end over this
//! library; [`control`] is the client side of the running
//! `nano_core`'s control socket (`cargo cell swap`, `cargo cell ctl`); [`inspect`] is
//! `cargo cell ls`, `info` and `deps`, on a dry link of the built cells or on the running system.
#![deny(missing_docs)]

pub mod build;
pub mod cargo_build;
pub mod control;
pub mod demo;
pub mod dependency_cells;
pub mod dependency_upgrade;
pub mod files;
pub mod inspect;
pub mod manifest;
pub mod merge;
pub mod new_cell;
pub mod objects;
pub mod qemu;
pub mod qemu_cli;
pub mod safe_apps;
pub mod sign;
pub mod signatures;
pub mod synth_cells;
pub mod test_suite;
pub mod upgrades;
pub mod workspace;

pub use build::{build_cells, BuildOptions, BuildReport};
pub use cargo_build::BuildFailed;
