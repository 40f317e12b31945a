//! Shared by the integration tests: the cells, built once per test binary by the project's own
//! build tool (a second build in the same run finds nothing to do).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use build_tools::build::{build_cells, BuildOptions};
use crate_metadata::{CellKind, Manifest};

/// `target/cells`, built by `cargo cell build`'s library on first use.
pub fn cells_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("nano_core sits in the workspace")
            .to_path_buf();
        let report = build_cells(&BuildOptions {
            workspace_root: Some(root),
            target_dir: None,
            quiet: true,
        })
        .unwrap_or_else(|e| panic!("building the cells failed: {e:#}"));
        report.cells_dir
    })
}

/// The manifest the build wrote.
pub fn manifest() -> Manifest {
    let text = std::fs::read_to_string(cells_dir().join("manifest.json")).expect("manifest");
    serde_json::from_str(&text).expect("manifest parses")
}

/// The bytes of a cell's object.
pub fn object(kind: CellKind, name: &str) -> Vec<u8> {
    let m = manifest();
    let entry = m
        .get(kind, name)
        .unwrap_or_else(|| panic!("no {} cell `{name}` in the manifest", kind.dir()));
    std::fs::read(cells_dir().join(&entry.object)).expect("object readable")
}

/// `/proc/self/maps` lines that are both writable and executable.
pub fn wx_mappings() -> Vec<String> {
    std::fs::read_to_string("/proc/self/maps")
        .expect("/proc/self/maps")
        .lines()
        .filter(|l| {
            let perms = l.split_whitespace().nth(1).unwrap_or("");
            perms.contains('w') && perms.contains('x')
        })
        .map(str::to_string)
        .collect()
}
