//! A [`Catalog`] made from the build manifest: which cell's object exports a symbol, so that a
//! load that fails on a missing symbol names the dependency cell that is not loaded.

use alloc::format;
use alloc::string::String;

use crate::resolve::Catalog;
use crate_metadata::{CellKind, Manifest};
use hashbrown::HashMap;

/// Every symbol the manifest's cells export, with the cell that exports it (`regex 1.13.2`).
/// New versions (`cells/upgrades`) are left out: they are never what a load is missing.
#[derive(Clone, Debug, Default)]
pub struct ManifestCatalog {
    exporters: HashMap<String, String>,
}

impl ManifestCatalog {
    /// The catalog of `manifest`.
    pub fn new(manifest: &Manifest) -> ManifestCatalog {
        let mut exporters = HashMap::new();
        for entry in manifest
            .cells
            .iter()
            .filter(|e| e.kind != CellKind::Upgrades)
        {
            let label = format!("{} {}", entry.name, entry.version);
            for symbol in &entry.exports {
                exporters
                    .entry(symbol.clone())
                    .or_insert_with(|| label.clone());
            }
        }
        ManifestCatalog { exporters }
    }
}

impl Catalog for ManifestCatalog {
    fn defined_by(&self, symbol: &str) -> Option<String> {
        self.exporters.get(symbol).cloned()
    }
}
