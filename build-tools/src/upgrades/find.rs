//! Finding the new versions under `cells/upgrades/` and the live cells they replace.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use crate_metadata::CellKind;

use crate::dependency_upgrade;
use crate::workspace::{CellPackage, Workspace};

/// Where upgrades live, relative to the workspace root.
pub const UPGRADES_DIR: &str = "cells/upgrades";

/// Where the shadow workspaces and their target directories live, relative to the target dir.
pub const SHADOW_DIR: &str = "cell-upgrades";

/// One crate under `cells/upgrades/`: a new version of a live cell.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upgrade {
    /// Its directory, `<root>/cells/upgrades/<dir>`.
    pub dir: PathBuf,
    /// Its package name: the live cell's.
    pub package: String,
    /// The live cell it is a new version of.
    pub live: CellPackage,
    /// Whether its dependency tables differ from the live cell's: a dependency upgrade, built in a
    /// shadow of its own with every cell compiled against what moved (see
    /// [`crate::dependency_upgrade`]).
    pub moves_dependencies: bool,
}

impl Upgrade {
    /// Its directory relative to the workspace root (`cells/upgrades/frame_alloc`).
    pub fn rel_dir(&self, root: &Path) -> PathBuf {
        relative(&self.dir, root)
    }

    /// The live cell's directory relative to the workspace root (`cells/kernel/frame_alloc`): where
    /// the shadow workspace puts the upgrade.
    pub fn live_rel_dir(&self, root: &Path) -> PathBuf {
        relative(&self.live.dir, root)
    }

    /// How errors name it: `upgrades/<dir>`.
    pub fn label(&self) -> String {
        let dir = self.dir.file_name().unwrap_or_default().to_string_lossy();
        format!("upgrades/{dir}")
    }
}

pub(super) fn relative(path: &Path, root: &Path) -> PathBuf {
    path.strip_prefix(root).unwrap_or(path).to_path_buf()
}

/// The `name` in the `[package]` table of the `Cargo.toml` text `manifest` (a line-based reading
/// that covers `name = "..."` and `name = '...'`).
pub fn package_name(manifest: &str) -> Option<String> {
    let mut in_package = false;
    for line in manifest.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.starts_with('[') {
            in_package = line == "[package]";
            continue;
        }
        if !in_package {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        if key.trim() != "name" {
            continue;
        }
        let value = value.trim();
        for quote in ['"', '\''] {
            if let Some(name) = value
                .strip_prefix(quote)
                .and_then(|v| v.strip_suffix(quote))
            {
                return Some(name.to_owned());
            }
        }
    }
    None
}

/// The upgrades of the workspace, sorted by directory. Every directory in `cells/upgrades/` must
/// be a crate whose package name is that of a live cell, and no cell may have two upgrades.
pub fn find_upgrades(ws: &Workspace) -> Result<Vec<Upgrade>> {
    let base = ws.root.join(UPGRADES_DIR);
    if !base.is_dir() {
        return Ok(Vec::new());
    }
    let mut dirs = Vec::new();
    for entry in fs::read_dir(&base).with_context(|| format!("cannot read {}", base.display()))? {
        let entry = entry.with_context(|| format!("cannot read {}", base.display()))?;
        if entry.path().is_dir() {
            dirs.push(entry.path());
        }
    }
    dirs.sort();
    let mut upgrades: Vec<Upgrade> = Vec::with_capacity(dirs.len());
    for dir in dirs {
        let rel = relative(&dir, &ws.root);
        let manifest = dir.join("Cargo.toml");
        let text = fs::read_to_string(&manifest).with_context(|| {
            format!(
                "{} has no readable Cargo.toml: every directory in {UPGRADES_DIR} is a new \
                 version of a cell",
                rel.display()
            )
        })?;
        let package = package_name(&text)
            .with_context(|| format!("{} names no [package]", manifest.display()))?;
        let live = ws
            .cells
            .iter()
            .find(|c| c.package == package && c.kind != CellKind::Upgrades)
            .with_context(|| {
                format!(
                    "upgrade {}: the workspace has no cell named `{package}` (an upgrade has \
                     exactly the package name of the cell it replaces)",
                    rel.display()
                )
            })?;
        if let Some(other) = upgrades.iter().find(|u| u.package == package) {
            bail!(
                "{} and {} are both new versions of `{package}`",
                relative(&other.dir, &ws.root).display(),
                rel.display()
            );
        }
        let live_manifest = fs::read_to_string(live.dir.join("Cargo.toml"))
            .with_context(|| format!("cannot read the Cargo.toml of `{}`", live.name))?;
        upgrades.push(Upgrade {
            moves_dependencies: dependency_upgrade::moves_dependencies(&live_manifest, &text),
            dir,
            package,
            live: live.clone(),
        });
    }
    Ok(upgrades)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_names_from_manifests() {
        let toml =
            "# a comment\n[package]\nname = \"frame_alloc\" # trailing\nversion = \"0.1.0\"\n\
                    [dependencies]\nname = \"not this\"\n";
        assert_eq!(package_name(toml).as_deref(), Some("frame_alloc"));
        assert_eq!(package_name("[package]\nname='x'\n").as_deref(), Some("x"));
        assert_eq!(package_name("[dependencies]\nname = \"y\"\n"), None);
        assert_eq!(package_name("[package]\nnamed = \"y\"\n"), None);
    }
}
