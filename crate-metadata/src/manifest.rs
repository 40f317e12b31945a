//! The build manifest: what `cargo cell build` knows about every cell object it wrote.
//!
//! The build tool writes one [`Manifest`] as `target/cells/manifest.json`; `nano_core` reads it to
//! find the objects, load them in dependency order and check their hashes.

use alloc::string::String;
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

/// Where a cell lives in the source tree, and so which namespace it is loaded into by default.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CellKind {
    /// `cells/kernel/*`: loaded into `_kernel` at boot.
    Kernel,
    /// `cells/libs/*`: library cells that kernel cells or applications use.
    Libs,
    /// `cells/apps/*`: applications, each run in its own namespace.
    Apps,
    /// `cells/upgrades/*`: new versions of other cells, loaded only by a swap.
    Upgrades,
}

impl CellKind {
    /// The directory name under `cells/` (and under `target/cells/`).
    pub fn dir(self) -> &'static str {
        match self {
            CellKind::Kernel => "kernel",
            CellKind::Libs => "libs",
            CellKind::Apps => "apps",
            CellKind::Upgrades => "upgrades",
        }
    }

    /// The kind whose directory is `dir`, if any.
    pub fn from_dir(dir: &str) -> Option<CellKind> {
        match dir {
            "kernel" => Some(CellKind::Kernel),
            "libs" => Some(CellKind::Libs),
            "apps" => Some(CellKind::Apps),
            "upgrades" => Some(CellKind::Upgrades),
            _ => None,
        }
    }
}

/// One cell object as the build tool wrote it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestEntry {
    /// The crate name (`kernel_fs`), which is also the cell's name.
    pub name: String,
    /// The crate version from its `Cargo.toml`.
    pub version: String,
    /// Which part of `cells/` the crate lives in.
    pub kind: CellKind,
    /// The object's path relative to the manifest's directory (`kernel/kernel_fs.o`).
    pub object: String,
    /// The object's size in bytes.
    pub size: u64,
    /// SHA-256 of the object, lowercase hex.
    pub sha256: String,
    /// Mangled names of the global symbols the object defines.
    pub exports: Vec<String>,
    /// Names of the cells this cell depends on (its cell dependencies in `Cargo.toml`).
    pub depends_on: Vec<String>,
    /// Library cells an application brings in its own version of
    /// (`[package.metadata.cell] brings = ["greet"]`): loaded from `cells/upgrades` into the
    /// application's namespace, where they shadow the kernel's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub brings: Vec<String>,
    /// Ed25519 signature of the object's bytes, lowercase hex (`cargo cell build --sign KEY`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

/// Everything `cargo cell build` produced.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The rustc that built the cells (`rustc -V`); the base image must come from the same one.
    pub rustc: String,
    /// The cells, sorted by kind and name.
    pub cells: Vec<ManifestEntry>,
}

impl Manifest {
    /// The entry for the cell `name` of kind `kind`.
    pub fn get(&self, kind: CellKind, name: &str) -> Option<&ManifestEntry> {
        self.cells.iter().find(|c| c.kind == kind && c.name == name)
    }

    /// The cells of `kind` in an order where every cell comes after the cells it depends on
    /// (dependencies of another kind are ignored). Returns the names of the cells that form a
    /// cycle as the error.
    pub fn load_order(&self, kind: CellKind) -> Result<Vec<&ManifestEntry>, Vec<String>> {
        let cells: Vec<&ManifestEntry> = self.cells.iter().filter(|c| c.kind == kind).collect();
        let mut done: Vec<bool> = alloc::vec![false; cells.len()];
        let mut order = Vec::with_capacity(cells.len());
        while order.len() < cells.len() {
            let before = order.len();
            for (i, cell) in cells.iter().enumerate() {
                if done[i] {
                    continue;
                }
                let ready = cell.depends_on.iter().all(|dep| {
                    cells
                        .iter()
                        .position(|c| &c.name == dep)
                        .is_none_or(|j| done[j])
                });
                if ready {
                    done[i] = true;
                    order.push(*cell);
                }
            }
            if order.len() == before {
                let stuck = cells
                    .iter()
                    .zip(&done)
                    .filter(|(_, d)| !**d)
                    .map(|(c, _)| c.name.clone())
                    .collect();
                return Err(stuck);
            }
        }
        Ok(order)
    }
}
