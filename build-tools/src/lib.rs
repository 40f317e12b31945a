//! Host-side tools of the cell system.
//!
//! [`build::build_cells`] is `cargo cell build`: it compiles the base image and every cell crate
//! (`cells/{kernel,libs,apps}/<crate>`) in one `cargo build`, takes the single relocatable object
//! out of each cell's rlib ([`objects`]), and writes the objects and a
//! [`Manifest`](crate_metadata::Manifest) under `<target>/cells/`. The `cargo-cell` binary is a
//! thin command-line front end over this library.
#![deny(missing_docs)]

pub mod build;
pub mod cargo_build;
pub mod demo;
pub mod objects;
pub mod workspace;

pub use build::{build_cells, BuildOptions, BuildReport};
pub use cargo_build::BuildFailed;
