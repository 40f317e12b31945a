//! The offline source: a dry link of the built objects through the loader's own code.
//!
//! [`dry_link`] does what `nano_core` does (`nano_core/src/boot.rs`, `apps.rs`) with
//! [`loader::System::load`] on a [`DryPlatform`]:
//!
//! 1. a `_kernel` namespace, and every kernel cell and then every library cell in
//!    [`Manifest::load_order`], each preceded by its [dependency plan](Manifest::dependency_plan):
//!    the dependency cells (crates.io crates and the like) it needs that the namespace chain does
//!    not hold yet (same SHA-256) and that the base image does not provide
//!    ([`ManifestEntry::provided_by`] against the `nano_core` file the platform reads);
//! 2. each application in a namespace of its own (`app:<name>`, parent `_kernel`): the libraries
//!    it brings from `cells/upgrades`, then the application, each after its own plan, so an
//!    application's own release of a crate is loaded into its namespace.
//!
//! The export policies hold as they do in `nano_core`
//! ([`System::declare_manifest_policies`], [`System::confine_application`]): each application's
//! namespace is confined with its entry's grants, so an application that binds to what the
//! kernel does not export to it is refused (`LoadError::Policy`) before anything is mapped and
//! recorded like any other cell that fails. An application is admitted when its entry claims it
//! was built with `unsafe` forbidden; offline no key is trusted for unsafe applications, so one
//! without the claim is recorded as refused, as a `nano_core` without `--trust-unsafe-apps` would.
//!
//! The system carries a [`ManifestCatalog`], so an undefined symbol names the cell that exports
//! it. A cell that fails to link is recorded in [`Snapshot::unresolved`] with the loader's error
//! and left out with the dependency cells loaded for it (as `nano_core` leaves a library out), and
//! the others go on, so `cargo cell deps --unresolved` tells what would fail before anything is
//! loaded for real. A dependency cell that fails is recorded once and not tried again in that
//! namespace chain; the cells that need it then fail on its symbols and name it.

use std::path::Path;
use std::sync::Arc;

use anyhow::{anyhow, Context, Result};
use crate_metadata::{CellId, CellKind, CellState, Manifest, ManifestEntry, NamespaceId, Sha256};
use loader::platform::SymbolSource;
use loader::{CellSpec, LoadError, ManifestCatalog, System};

use super::dry::DryPlatform;
use super::model::{from_system, Model, SnapshotSource, UnresolvedCell, UnresolvedSymbol};
use crate::build::BuildReport;

/// The namespace the kernel and library cells are linked into.
pub const KERNEL_NAMESPACE: &str = "_kernel";

/// Dry-links what `report`'s build wrote, against its `nano_core` executable.
pub fn from_build(report: &BuildReport) -> Result<Model> {
    from_build_with(report, &report.manifest)
}

/// [`from_build`] of the cells `manifest` lists (a part of the build's manifest, say), with the
/// objects and the base image of `report`.
pub fn from_build_with(report: &BuildReport, manifest: &Manifest) -> Result<Model> {
    let nano_core = report.nano_core.clone().unwrap_or_else(|| {
        report
            .target_dir
            .join("debug")
            .join(crate::workspace::NANO_CORE)
    });
    let platform = DryPlatform::new(&nano_core)?;
    dry_link(manifest, &report.cells_dir, platform)
}

/// Dry-links every cell of `manifest` (objects under `cells_dir`) on `platform`. The model
/// carries the manifest, so the views can show the dependency crates as crates.
pub fn dry_link(manifest: &Manifest, cells_dir: &Path, platform: DryPlatform) -> Result<Model> {
    let mut system = System::new(platform, crate::workspace::NANO_CORE);
    system.set_catalog(Arc::new(ManifestCatalog::new(manifest)));
    system.declare_manifest_policies(manifest);
    let kernel = system
        .create_namespace(KERNEL_NAMESPACE, None)
        .map_err(|e| anyhow!("{e}"))?;
    let mut link = DryLink {
        system,
        manifest,
        cells_dir,
        unresolved: Vec::new(),
        failed: Vec::new(),
    };
    for kind in [CellKind::Kernel, CellKind::Libs, CellKind::Apps] {
        for entry in load_order(manifest, kind)? {
            if kind != CellKind::Apps {
                link.with_dependencies(kernel, entry)?;
                continue;
            }
            let ns = link
                .system
                .create_namespace(&format!("app:{}", entry.name), Some(kernel))
                .map_err(|e| anyhow!("{e}"))?;
            link.system.confine_application(ns, entry, false);
            // An application first gets its own versions of the libraries it brings.
            let brought = entry
                .brings
                .iter()
                .filter_map(|lib| manifest.get(CellKind::Upgrades, lib));
            for e in brought.chain(std::iter::once(entry)) {
                link.with_dependencies(ns, e)?;
            }
        }
    }
    let DryLink {
        system,
        mut unresolved,
        failed,
        ..
    } = link;
    name_failed_providers(&failed, &mut unresolved);
    let mut snapshot = from_system(&system, SnapshotSource::Offline);
    snapshot.unresolved = unresolved;
    Ok(Model {
        snapshot,
        manifest: Some(manifest.clone()),
    })
}

fn load_order(manifest: &Manifest, kind: CellKind) -> Result<Vec<&ManifestEntry>> {
    manifest.load_order(kind).map_err(|cycle| {
        anyhow!(
            "the {} cells depend on each other in a cycle: {}",
            kind.dir(),
            cycle.join(", ")
        )
    })
}

/// A dry link in progress.
struct DryLink<'m> {
    system: System<DryPlatform>,
    manifest: &'m Manifest,
    cells_dir: &'m Path,
    /// The cells that failed, in the order they did.
    unresolved: Vec<UnresolvedCell>,
    /// The entries that failed, with the namespace each was to be loaded into.
    failed: Vec<(NamespaceId, &'m ManifestEntry)>,
}

impl<'m> DryLink<'m> {
    /// Links `entry`'s dependency plan and then `entry` into `ns`. When `entry` fails, the
    /// dependency cells loaded for it are unloaded again, dependents first.
    fn with_dependencies(&mut self, ns: NamespaceId, entry: &'m ManifestEntry) -> Result<()> {
        let plan = match self.plan(ns, entry) {
            Ok(plan) => plan,
            Err(error) => {
                let namespace = self.namespace_name(ns);
                self.unresolved.push(UnresolvedCell {
                    name: entry.name.clone(),
                    version: entry.version.clone(),
                    namespace,
                    message: error.to_string(),
                    missing: Vec::new(),
                });
                self.failed.push((ns, entry));
                return Ok(());
            }
        };
        let mut loaded = Vec::with_capacity(plan.len());
        for dep in plan {
            if let Some(id) = self.link_one(ns, dep)? {
                loaded.push(id);
            }
        }
        if self.link_one(ns, entry)?.is_none() {
            for id in loaded.iter().rev() {
                // Only the cells just loaded bind to these, and they are gone already.
                let _ = self.system.unload(*id);
            }
        }
        Ok(())
    }

    /// The dependency cells `entry` needs in `ns`, as `nano_core`'s `Kernel::dependency_plan`
    /// decides, less those that already failed in the namespace chain.
    fn plan(
        &self,
        ns: NamespaceId,
        entry: &'m ManifestEntry,
    ) -> Result<Vec<&'m ManifestEntry>, crate_metadata::PlanError> {
        let chain = self.system.namespaces().chain(ns);
        let registry = self.system.registry();
        let visible: Vec<Sha256> = chain
            .iter()
            .filter_map(|n| self.system.namespaces().get(*n))
            .flat_map(|n| &n.cells)
            .filter_map(|c| registry.cell(*c))
            .filter(|c| c.state == CellState::Live)
            .filter_map(|c| c.sha256)
            .collect();
        let failed: Vec<Sha256> = self
            .failed
            .iter()
            .filter(|(n, _)| chain.contains(n))
            .map(|(_, e)| e.sha256)
            .collect();
        let platform = self.system.platform();
        self.manifest.dependency_plan(entry, &mut |dep| {
            visible.contains(&dep.sha256)
                || failed.contains(&dep.sha256)
                || dep.provided_by(&mut |s| platform.image_symbol(s).is_some())
        })
    }

    fn namespace_name(&self, ns: NamespaceId) -> String {
        self.system
            .namespaces()
            .get(ns)
            .map(|n| n.name.clone())
            .unwrap_or_default()
    }

    /// Links one cell into `ns`: its id, or `None` when the loader refused it (recorded). An
    /// unreadable object is an error.
    fn link_one(&mut self, ns: NamespaceId, entry: &'m ManifestEntry) -> Result<Option<CellId>> {
        let path = self.cells_dir.join(&entry.object);
        let bytes = std::fs::read(&path).with_context(|| {
            format!(
                "reading {} ({} cell `{}` {}; run `cargo cell build`)",
                path.display(),
                entry.kind.dir(),
                entry.name,
                entry.version
            )
        })?;
        let spec = CellSpec {
            name: &entry.name,
            version: &entry.version,
            kind: Some(entry.kind),
            sha256: Some(entry.sha256),
        };
        match self.system.load(ns, spec, &bytes) {
            Ok(id) => Ok(Some(id)),
            Err(error) => {
                let namespace = self.namespace_name(ns);
                self.unresolved
                    .push(unresolved_cell(entry, namespace, &error));
                self.failed.push((ns, entry));
                Ok(None)
            }
        }
    }
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
fn name_failed_providers(
    failed: &[(NamespaceId, &ManifestEntry)],
    unresolved: &mut [UnresolvedCell],
) {
    for cell in unresolved.iter_mut() {
        for sym in &mut cell.missing {
            sym.failed_provider = failed
                .iter()
                .find(|(_, e)| e.exports.contains(&sym.name))
                .map(|(_, e)| e.name.clone());
        }
    }
}
