//! Memory of the metadata: bytes per edge and per section, in the registry as the loader keeps it
//! (`Registry` stores edges as `Option<Edge>` in one vector, plus an `EdgeId` in the dependent's
//! `uses` and one in the provider's `used_by`). Measured on the kernel cells as booted. Prints; no
//! timing (`harness = false`, run with `cargo bench -p nano_core --bench memory`).

mod support;

use std::mem::size_of;

use crate_metadata::{CellKind, Edge, EdgeId, Section};
use loader::hosted::Hosted;
use loader::{CellSpec, System};

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing special: both print.
    let edge = size_of::<Edge>();
    let slot = size_of::<Option<Edge>>();
    let ids = 2 * size_of::<EdgeId>();
    println!("size_of::<Edge>() = {edge} bytes; as stored (Option<Edge>) = {slot} bytes");
    println!(
        "per edge: {slot} (registry vector) + {ids} (EdgeId in `uses` and in `used_by`) = {} bytes",
        slot + ids
    );
    let section = size_of::<Section>();
    println!(
        "size_of::<Section>() = {section} bytes + its name on the heap (the object's section name)"
    );

    let mut system = System::new(Hosted::new().expect("hosted"), "nano_core");
    let ns = system.create_namespace("_kernel", None).unwrap();
    for cell in ["klog", "frame_alloc", "sched", "memfs"] {
        let bytes = support::object(CellKind::Kernel, cell);
        system.load(ns, CellSpec::named(cell), &bytes).unwrap();
    }
    let registry = system.registry();
    let edges = registry.edge_count();
    let (mut sections, mut name_bytes, mut cells) = (0usize, 0usize, 0usize);
    for c in registry.cells() {
        cells += 1;
        sections += c.sections.len();
        name_bytes += c.sections.iter().map(|s| s.name.len()).sum::<usize>();
    }
    println!(
        "kernel cells booted: {cells} cells (with base image and platform), {edges} edges \
         ({} bytes at {} bytes each), {sections} sections ({} bytes of Section + {name_bytes} \
         bytes of names = {:.1} bytes per section)",
        edges * (slot + ids),
        slot + ids,
        sections * section,
        (sections * section + name_bytes) as f64 / sections.max(1) as f64
    );
}
