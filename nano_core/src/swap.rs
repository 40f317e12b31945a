//! Swapping a live kernel cell for a new version of it: the object named or the manifest's, with
//! a dependency upgrade carried out as one transaction (`upgrade_set.rs`).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use crate_metadata::{demangle, CellKind, ManifestEntry, SymbolKind};
use loader::platform::SymbolSource;
use loader::{CellSpec, NewVersion, SwapOptions, SwapReport, SwapRequest};

use crate::kernel::{Kernel, KERNEL_NAMESPACE};

impl Kernel {
    /// The object a swap of `cell` loads when none is named: its new version from
    /// `cells/upgrades` if the manifest has one whose hash differs from the live cell's, else the
    /// manifest's object for the cell's own kind when that differs (so a second swap goes back,
    /// and the retired version with that hash is reused). `None` when the live cell is both.
    pub fn default_swap_object(&self, cell: &str) -> Option<PathBuf> {
        let live_sha = self
            .cell_id(cell)
            .and_then(|id| self.system.registry().cell(id))
            .and_then(|c| c.sha256);
        let differs = |e: &&ManifestEntry| Some(&e.sha256) != live_sha.as_ref();
        let upgrade = self
            .manifest
            .cells
            .iter()
            .filter(|e| e.kind == CellKind::Upgrades && e.name == cell)
            .filter(|e| e.rebuilt_for.is_none())
            .find(differs);
        // Not another release of a dependency cell: that moves with a dependency upgrade of
        // the cells that use it.
        let own = self
            .manifest
            .cells
            .iter()
            .filter(|e| e.name == cell && !matches!(e.kind, CellKind::Upgrades | CellKind::Deps))
            .find(differs);
        upgrade.or(own).map(|e| self.cells_dir.join(&e.object))
    }

    /// Swaps the live cell `cell` for the object at `object` (its SHA-256 is computed here; a
    /// retired version with the same hash is reused). State is kept by rebinding or moved by the
    /// new version's `transfer_state`, as `options` allow.
    pub fn swap_cell(
        &mut self,
        cell: &str,
        object: &Path,
        options: &SwapOptions,
    ) -> Result<SwapReport> {
        self.swap_cell_with(cell, object, options, FreshShared::Refuse)
    }

    /// [`Kernel::swap_cell`] with the object's bytes.
    pub fn swap_bytes(
        &mut self,
        cell: &str,
        bytes: &[u8],
        options: &SwapOptions,
    ) -> Result<SwapReport> {
        self.swap_bytes_with(cell, bytes, options, FreshShared::Refuse)
    }

    /// [`Kernel::swap_cell`] with a choice for fresh state of statics the base image shares.
    pub fn swap_cell_with(
        &mut self,
        cell: &str,
        object: &Path,
        options: &SwapOptions,
        shared: FreshShared,
    ) -> Result<SwapReport> {
        let bytes = crate::files::read_regular(object, crate::files::MAX_OBJECT)
            .with_context(|| format!("swapping `{cell}`"))?;
        self.swap_bytes_with(cell, &bytes, options, shared)
    }

    /// The statics of the live cell `cell` that the base image shares with it (it links the
    /// cell's crate statically, and the cell's statics were bound to the image's), by path.
    pub fn statics_shared_with_image(&self, cell: &str) -> Vec<String> {
        let Some(c) = self
            .cell_id(cell)
            .and_then(|id| self.system.registry().cell(id))
        else {
            return Vec::new();
        };
        let platform = self.system.platform();
        c.symbols
            .iter()
            .filter(|s| s.kind == SymbolKind::Object)
            .filter(|s| platform.image_symbol(&s.name) == Some(s.addr as usize))
            .map(|s| demangle::path(&s.name))
            .collect()
    }

    /// [`Kernel::swap_bytes`] with a choice for fresh state of statics the base image shares.
    pub fn swap_bytes_with(
        &mut self,
        cell: &str,
        bytes: &[u8],
        options: &SwapOptions,
        shared: FreshShared,
    ) -> Result<SwapReport> {
        if shared == FreshShared::Refuse {
            let statics: Vec<String> = self
                .statics_shared_with_image(cell)
                .into_iter()
                .filter(|path| options.fresh_all || options.fresh.contains(path))
                .collect();
            if !statics.is_empty() {
                return Err(FreshSharedState {
                    cell: cell.to_string(),
                    statics,
                }
                .into());
            }
        }
        let old = self
            .cell_id(cell)
            .with_context(|| format!("no live cell `{cell}` in {KERNEL_NAMESPACE}"))?;
        let sha = loader::sha256(bytes);
        // A dependency upgrade (or the way back from one) is a transaction of several cells.
        let target = self
            .manifest
            .cells
            .iter()
            .find(|e| e.name == cell && e.sha256 == sha)
            .cloned();
        if let Some(target) = target {
            if let Some((upgrade, backwards)) = self.dependency_upgrade_of(cell, &target) {
                return self.swap_dependency_upgrade(cell, &target, &upgrade, backwards, options);
            }
        }
        if !self.trusted.is_empty() {
            let entry = self
                .manifest
                .cells
                .iter()
                .find(|e| e.name == cell && e.sha256 == sha)
                .cloned()
                .with_context(|| {
                    format!("cell `{cell}`: the object is not in the manifest, so it is not signed")
                })?;
            self.check_signature(&entry, bytes)?;
        }
        let version = self
            .system
            .registry()
            .cell(old)
            .map(|c| c.version.clone())
            .unwrap_or_default();
        let spec = CellSpec {
            name: cell,
            version: &version,
            kind: self.system.registry().cell(old).and_then(|c| c.kind),
            sha256: Some(sha),
        };
        let request = SwapRequest {
            old,
            new: NewVersion::Object { spec, bytes },
        };
        self.system
            .swap(&[request], options)
            .with_context(|| format!("swapping `{cell}`"))
    }
}

/// What a swap that asks for fresh state does with a static the base image shares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FreshShared {
    /// Refuse the swap ([`FreshSharedState`]): the cell and the image would no longer share one
    /// state (for `klog`, one kernel log).
    Refuse,
    /// Swap anyway; the caller was told.
    Force,
}

/// A swap asked for fresh state for statics the base image shares with the cell: refused, since
/// the image keeps using its own copy and the two would no longer see one state. Nothing changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FreshSharedState {
    /// The cell.
    pub cell: String,
    /// The statics the base image shares, by path.
    pub statics: Vec<String>,
}

impl std::fmt::Display for FreshSharedState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "fresh state for `{}` refused: the base image links it and shares {} with it; a \
             fresh copy would split what the image and the cell see (for klog: two kernel logs). \
             Swap without --fresh to keep the state, or add --force",
            self.cell,
            self.statics
                .iter()
                .map(|s| format!("`{s}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    }
}

impl std::error::Error for FreshSharedState {}
