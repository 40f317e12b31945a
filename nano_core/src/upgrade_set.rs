//! Swapping a dependency upgrade: one transaction for the cell, the cells rebuilt with it and the
//! dependency cells that move to another release.
//!
//! `cargo cell build` records in the manifest what a dependency upgrade moves
//! ([`crate_metadata::DependencyUpgrade`]): the dependency cells (`heapless-0.9.3` ->
//! `heapless-0.9.4`), the cells rebuilt unchanged against them, and the renamed symbols whose
//! signatures it checked in both versions' sources. A swap of the cell to that new version (or back
//! from it) becomes:
//!
//! - a swap request for the cell and for each rebuilt cell;
//! - for each moving dependency cell: a swap request when every cell that binds to the old release
//!   is replaced in the same transaction (its statics are matched by path, size and alignment),
//!   otherwise the new release is loaded beside the old one, which keeps its other users;
//! - the dependency cells the new versions need that nothing provides yet, loaded first;
//! - the verified renames, so that what is not rebuilt (the host's handles) moves to the new
//!   names, and nothing else: a caller bound to a symbol the build could not vouch for makes the
//!   swap refuse, naming the symbol and why.
//!
//! Anything that fails leaves the system as it was: the loader's transaction rolls itself back, and
//! the dependency cells loaded for it are unloaded again.

use anyhow::{Context, Result};
use crate_metadata::{CellId, CellKind, DependencyUpgrade, ManifestEntry, Sha256};
use loader::{CellSpec, NewVersion, SwapError, SwapOptions, SwapReport, SwapRequest};

use crate::kernel::Kernel;

/// One cell of a transaction: the live one and the manifest entry of its new version.
struct Step {
    old: CellId,
    entry: ManifestEntry,
    bytes: Vec<u8>,
}

impl Kernel {
    /// The dependency upgrade a swap of `cell` to `target` carries out, and in which direction:
    /// `Some((upgrade, false))` when `target` is a dependency upgrade, `Some((upgrade, true))`
    /// when the live version is one and `target` goes back. `None` for an ordinary swap.
    pub fn dependency_upgrade_of(
        &self,
        cell: &str,
        target: &ManifestEntry,
    ) -> Option<(DependencyUpgrade, bool)> {
        if let Some(upgrade) = &target.dependency_upgrade {
            return Some((upgrade.clone(), false));
        }
        let live_sha = self
            .cell_id(cell)
            .and_then(|id| self.system().registry().cell(id))
            .and_then(|c| c.sha256)?;
        let live = self
            .manifest()
            .cells
            .iter()
            .find(|e| e.name == cell && e.sha256 == live_sha)?;
        live.dependency_upgrade.clone().map(|u| (u, true))
    }

    /// Swaps `cell` to `target` (a manifest entry of it) together with everything its dependency
    /// upgrade moves (see the module docs). `backwards` undoes the upgrade: the rebuilt cells go
    /// back to their own objects, the dependency cells to their old releases.
    pub fn swap_dependency_upgrade(
        &mut self,
        cell: &str,
        target: &ManifestEntry,
        upgrade: &DependencyUpgrade,
        backwards: bool,
        options: &SwapOptions,
    ) -> Result<SwapReport> {
        let manifest = self.manifest().clone();
        // The new versions: the cell, the rebuilt cells, and the dependency cells that move.
        let mut targets: Vec<ManifestEntry> = vec![target.clone()];
        for name in &upgrade.rebuilt {
            let entry = if backwards {
                manifest
                    .cells
                    .iter()
                    .find(|e| &e.name == name && e.kind != CellKind::Upgrades)
            } else {
                manifest
                    .cells
                    .iter()
                    .find(|e| &e.name == name && e.rebuilt_for.as_deref() == Some(cell))
            };
            targets.push(entry.cloned().with_context(|| {
                format!("the manifest has no object of `{name}` for the upgrade of `{cell}`")
            })?);
        }
        let mut moving: Vec<(ManifestEntry, ManifestEntry)> = Vec::new();
        for (from, to) in &upgrade.bumped {
            let (from, to) = if backwards { (to, from) } else { (from, to) };
            let dep = |key: &str| {
                manifest
                    .dep(key)
                    .cloned()
                    .with_context(|| format!("the manifest has no dependency cell `{key}`"))
            };
            moving.push((dep(from)?, dep(to)?));
        }

        let mut steps: Vec<Step> = Vec::new();
        for entry in &targets {
            let old = self
                .cell_id(&entry.name)
                .with_context(|| format!("no live cell `{}` in _kernel", entry.name))?;
            steps.push(self.step(old, entry)?);
        }
        let replaced: Vec<CellId> = steps.iter().map(|s| s.old).collect();
        let mut loaded: Vec<CellId> = Vec::new();
        let result = (|| -> Result<SwapReport> {
            let mut by_path = Vec::new();
            for (from, to) in &moving {
                let Some(old) = self.live_with_sha(from.sha256) else {
                    // The old release is not loaded (the image provided it): load the new one.
                    loaded.extend(self.load_beside(to)?);
                    continue;
                };
                let users = self.system().registry().dependents(old);
                if users.iter().all(|u| replaced.contains(u)) {
                    by_path.push(to.name.clone());
                    steps.push(self.step(old, to)?);
                } else {
                    loaded.extend(self.load_beside(to)?);
                }
            }
            // Dependency cells the new versions need that nothing provides yet (new crates).
            let moving_keys: Vec<&str> = moving.iter().map(|(_, to)| to.key()).collect();
            for entry in &targets {
                let ns = self.kernel_namespace();
                for dep in self.dependency_plan(ns, entry)? {
                    if !moving_keys.contains(&dep.key()) {
                        loaded.extend(self.load_beside(&dep)?);
                    }
                }
            }
            let renames = upgrade.renames.iter().map(|r| {
                if backwards {
                    (r.to.clone(), r.from.clone())
                } else {
                    (r.from.clone(), r.to.clone())
                }
            });
            let options = SwapOptions {
                renames: renames.collect(),
                match_statics_by_path: by_path,
                ..options.clone()
            };
            let requests: Vec<SwapRequest<'_>> = steps
                .iter()
                .map(|s| SwapRequest {
                    old: s.old,
                    new: NewVersion::Object {
                        spec: CellSpec {
                            name: &s.entry.name,
                            version: &s.entry.version,
                            kind: Some(s.entry.kind),
                            sha256: Some(s.entry.sha256),
                        },
                        bytes: &s.bytes,
                    },
                })
                .collect();
            self.system_mut()
                .swap(&requests, &options)
                .map_err(|e| unverified_reasons(e, upgrade, cell))
        })();
        if result.is_err() {
            for id in loaded.iter().rev() {
                let _ = self.system_mut().unload(*id);
            }
        }
        result
    }

    /// The live cell in `_kernel` whose object has this SHA-256.
    fn live_with_sha(&self, sha: Sha256) -> Option<CellId> {
        let registry = self.system().registry();
        let ns = self.system().namespaces().get(self.kernel_namespace())?;
        ns.cells.iter().copied().find(|c| {
            registry.cell(*c).is_some_and(|c| {
                c.state == crate_metadata::CellState::Live && c.sha256 == Some(sha)
            })
        })
    }

    /// Reads and checks (signature, when keys are trusted) the object of `entry`, the new version
    /// of the live cell `old`.
    fn step(&self, old: CellId, entry: &ManifestEntry) -> Result<Step> {
        let path = self.cells_dir().join(&entry.object);
        let bytes = crate::files::read_regular(&path, entry.size)
            .with_context(|| format!("cell `{}`", entry.name))?;
        self.check_signature(entry, &bytes)?;
        Ok(Step {
            old,
            entry: entry.clone(),
            bytes,
        })
    }

    /// Loads the dependency cell `entry` into `_kernel` beside what is there (another release of
    /// the same crate keeps its users).
    fn load_beside(&mut self, entry: &ManifestEntry) -> Result<Vec<CellId>> {
        let ns = self.kernel_namespace();
        if self.live_with_sha(entry.sha256).is_some() {
            return Ok(Vec::new());
        }
        let id = self
            .load_entry(ns, entry)
            .with_context(|| format!("dependency cell `{}` {}", entry.name, entry.version))?;
        Ok(vec![id])
    }
}

/// A refused swap of a dependency upgrade: the loader's error, with the build's reason for each
/// renamed symbol a caller binds to that the build could not vouch for.
#[derive(Debug)]
pub struct UpgradeSetError {
    /// The cell whose upgrade it is.
    pub cell: String,
    /// What the loader said.
    pub error: SwapError,
    /// `(symbol, why the build could not vouch for its rename)` for the missing symbols.
    pub unverified: Vec<(String, String)>,
}

impl std::fmt::Display for UpgradeSetError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "swapping `{}` (a dependency upgrade): {}",
            self.cell, self.error
        )?;
        for (symbol, reason) in &self.unverified {
            write!(f, "\n  `{symbol}` cannot follow the rename: {reason}")?;
        }
        Ok(())
    }
}

impl std::error::Error for UpgradeSetError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

fn unverified_reasons(error: SwapError, upgrade: &DependencyUpgrade, cell: &str) -> anyhow::Error {
    let mut unverified = Vec::new();
    if let SwapError::MissingSymbols { missing, .. } = &error {
        for m in missing {
            if let Some(u) = upgrade.unverified.iter().find(|u| u.from == m.mangled) {
                unverified.push((m.symbol.clone(), u.reason.clone()));
            }
        }
    }
    anyhow::Error::new(UpgradeSetError {
        cell: cell.into(),
        error,
        unverified,
    })
}
