//! The offline source: a dry link of the built objects through the loader's own code.
//!
//! [`dry_link`] does what `nano_core` does — a `_kernel` namespace, every kernel cell and then
//! every library cell in [`Manifest::load_order`]; then each application in a namespace of its
//! own (`app:<name>`, parent `_kernel`) with the libraries it brings from `cells/upgrades` — with [`loader::System::load`] on a [`DryPlatform`]. A
//! cell that fails to link is recorded in [`Snapshot::unresolved`] with the loader's error, and
//! the others go on, so `cargo cell deps --unresolved` tells what would fail before anything is
//! loaded for real.

use std::path::Path;

use anyhow::{anyhow, Context, Result};
use crate_metadata::{CellKind, Manifest, ManifestEntry, NamespaceId};
use loader::{CellSpec, LoadError, System};

use super::dry::DryPlatform;
use super::model::{from_system, Snapshot, SnapshotSource, UnresolvedCell, UnresolvedSymbol};
use crate::build::BuildReport;

/// The namespace the kernel and library cells are linked into.
pub const KERNEL_NAMESPACE: &str = "_kernel";

/// Dry-links what `report`'s build wrote, against its `nano_core` executable.
pub fn from_build(report: &BuildReport) -> Result<Snapshot> {
    let nano_core = report.nano_core.clone().unwrap_or_else(|| {
        report
            .target_dir
            .join("debug")
            .join(crate::workspace::NANO_CORE)
    });
    let platform = DryPlatform::new(&nano_core)?;
    dry_link(&report.manifest, &report.cells_dir, platform)
}

/// Dry-links every cell of `manifest` (objects under `cells_dir`) on `platform`.
pub fn dry_link(manifest: &Manifest, cells_dir: &Path, platform: DryPlatform) -> Result<Snapshot> {
    let mut system = System::new(platform, crate::workspace::NANO_CORE);
    let kernel = system
        .create_namespace(KERNEL_NAMESPACE, None)
        .map_err(|e| anyhow!("{e}"))?;
    let mut unresolved = Vec::new();
    for kind in [CellKind::Kernel, CellKind::Libs, CellKind::Apps] {
        let order = manifest.load_order(kind).map_err(|cycle| {
            anyhow!(
                "the {} cells depend on each other in a cycle: {}",
                kind.dir(),
                cycle.join(", ")
            )
        })?;
        for entry in order {
            let ns = match kind {
                CellKind::Apps => {
                    let name = format!("app:{}", entry.name);
                    system
                        .create_namespace(&name, Some(kernel))
                        .map_err(|e| anyhow!("{e}"))?
                }
                _ => kernel,
            };
            // An application first gets its own versions of the libraries it brings.
            let brought = entry
                .brings
                .iter()
                .filter_map(|lib| manifest.get(CellKind::Upgrades, lib));
            for e in brought.chain(std::iter::once(entry)) {
                if let Err(u) = link_one(&mut system, ns, cells_dir, e)? {
                    unresolved.push(u);
                }
            }
        }
    }
    name_failed_providers(manifest, &mut unresolved);
    let mut snapshot = from_system(&system, SnapshotSource::Offline);
    snapshot.unresolved = unresolved;
    Ok(snapshot)
}

/// Links one cell into `ns`; a link error is returned as the unresolved cell, an unreadable
/// object as an error.
fn link_one(
    system: &mut System<DryPlatform>,
    ns: NamespaceId,
    cells_dir: &Path,
    entry: &ManifestEntry,
) -> Result<Result<(), UnresolvedCell>> {
    let path = cells_dir.join(&entry.object);
    let bytes = std::fs::read(&path).with_context(|| {
        format!(
            "reading {} (cell `{}`; run `cargo cell build`)",
            path.display(),
            entry.name
        )
    })?;
    let spec = CellSpec {
        name: &entry.name,
        version: &entry.version,
        kind: Some(entry.kind),
        sha256: Some(&entry.sha256),
    };
    Ok(match system.load(ns, spec, &bytes) {
        Ok(_) => Ok(()),
        Err(error) => {
            let namespace = system
                .namespaces()
                .get(ns)
                .map(|n| n.name.clone())
                .unwrap_or_default();
            Err(unresolved_cell(entry, namespace, &error))
        }
    })
}

/// What a failed load says, in the model's terms.
fn unresolved_cell(entry: &ManifestEntry, namespace: String, error: &LoadError) -> UnresolvedCell {
    let missing = match error {
        LoadError::UndefinedSymbols { missing, .. } => missing
            .iter()
            .map(|m| UnresolvedSymbol {
                name: m.mangled.clone(),
                other_hash: m.other_hash.clone(),
                hidden_in: m.hidden_in.clone(),
                failed_provider: None,
            })
            .collect(),
        _ => Vec::new(),
    };
    UnresolvedCell {
        name: entry.name.clone(),
        version: entry.version.clone(),
        namespace,
        message: error.to_string(),
        missing,
    }
}

/// For each missing symbol, the cell that exports it but failed to link itself, if any.
fn name_failed_providers(manifest: &Manifest, unresolved: &mut [UnresolvedCell]) {
    let failed: Vec<&ManifestEntry> = unresolved
        .iter()
        .filter_map(|u| manifest.cells.iter().find(|c| c.name == u.name))
        .collect();
    let failed: Vec<(String, &ManifestEntry)> =
        failed.into_iter().map(|e| (e.name.clone(), e)).collect();
    for cell in unresolved.iter_mut() {
        for sym in &mut cell.missing {
            sym.failed_provider = failed
                .iter()
                .find(|(_, e)| e.exports.contains(&sym.name))
                .map(|(name, _)| name.clone());
        }
    }
}
