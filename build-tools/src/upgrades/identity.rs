//! How an upgrade compares with the live cell: its exports by symbol path, and its crate identity
//! (the hash cargo put in the rlib's file name).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

use super::find::Upgrade;
use crate::objects::{hashed_rlib, mangled_path, rlib_hash};
use crate::workspace::Workspace;

/// What the build of the workspace produced for a live cell.
#[derive(Clone, Debug)]
pub struct LiveCell {
    /// Its exports.
    pub exports: Vec<String>,
    /// Its rlib, as cargo reported it (see [`hashed_rlib`]).
    pub rlib: PathBuf,
    /// The unit ids of its dependency cells, direct and indirect.
    pub dep_units: BTreeSet<String>,
}

/// How the mangled names of an upgrade's exports compare with the live cell's, by symbol path
/// (`frame_alloc::alloc_frame`; the name itself for unmangled symbols).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SymbolComparison {
    /// Paths whose mangled names are identical: dependents bind to the new version by name.
    pub kept: Vec<String>,
    /// Paths defined by both whose hashes differ: a changed signature (or type, for a static).
    pub changed: Vec<String>,
    /// Paths only the upgrade defines.
    pub added: Vec<String>,
    /// Paths only the live cell defines.
    pub removed: Vec<String>,
}

/// The path of a legacy-mangled symbol (`_ZN11frame_alloc11alloc_frame17h0123456789abcdefE` is
/// `frame_alloc::alloc_frame`), or `None` for any other name.
/// Compares the exports of a live cell and of its upgrade (see [`SymbolComparison`]).
pub fn compare_exports(live: &[String], upgrade: &[String]) -> SymbolComparison {
    fn by_path(names: &[String]) -> BTreeMap<String, BTreeSet<&str>> {
        let mut map: BTreeMap<String, BTreeSet<&str>> = BTreeMap::new();
        for name in names {
            let path = mangled_path(name).unwrap_or_else(|| name.clone());
            map.entry(path).or_default().insert(name);
        }
        map
    }
    let (live, upgrade) = (by_path(live), by_path(upgrade));
    let mut out = SymbolComparison::default();
    for (path, names) in &upgrade {
        match live.get(path) {
            Some(old) if old == names => out.kept.push(path.clone()),
            Some(_) => out.changed.push(path.clone()),
            None => out.added.push(path.clone()),
        }
    }
    out.removed = live
        .keys()
        .filter(|p| !upgrade.contains_key(*p))
        .cloned()
        .collect();
    out
}

/// Fails when cargo built the upgrade with another crate identity than the live cell (the hashes
/// in their rlibs' file names differ): then every symbol hash differs and no dependent could bind
/// to it by name. When a hash cannot be found, falls back to the symbols: the identity differs
/// when both define mangled symbols of the same paths and not one has the same name.
pub(super) fn check_identity(
    ws: &Workspace,
    upgrade: &Upgrade,
    live: &LiveCell,
    rlib: &Path,
    exports: &[String],
) -> Result<()> {
    let (old_rlib, new_rlib) = (hashed_rlib(&live.rlib), hashed_rlib(rlib));
    let hashes = (
        old_rlib.as_deref().and_then(rlib_hash),
        new_rlib.as_deref().and_then(rlib_hash),
    );
    let same = match hashes {
        (Some(old), Some(new)) => old == new,
        _ => {
            // Paths of mangled symbols have `::`; unmangled names never change.
            let symbols = compare_exports(&live.exports, exports);
            let mangled = |p: &String| p.contains("::");
            !symbols.changed.iter().any(mangled) || symbols.kept.iter().any(mangled)
        }
    };
    if same {
        return Ok(());
    }
    let name = |p: Option<PathBuf>, fallback: &Path| {
        p.as_deref()
            .unwrap_or(fallback)
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned()
    };
    let (old_name, new_name) = (name(old_rlib, &live.rlib), name(new_rlib, rlib));
    // An example: a symbol both define, with its two names.
    let example = live.exports.iter().find_map(|old| {
        let path = mangled_path(old)?;
        let new = exports
            .iter()
            .find(|n| *n != old && mangled_path(n).as_deref() == Some(path.as_str()))?;
        Some(format!(
            " (`{path}` is `{old}` in the live cell, `{new}` in the upgrade)"
        ))
    });
    bail!(
        "{} does not keep the crate identity of {}: cargo built it as {}, the live cell as {}, so \
         its symbols carry other hashes{}. An upgrade needs exactly the live cell's package name, \
         version, features and dependencies.",
        upgrade.label(),
        upgrade.live_rel_dir(&ws.root).display(),
        new_name,
        old_name,
        example.unwrap_or_default()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn export_comparison() {
        let live = [
            "_ZN1c4init17h0000000000000001E",
            "_ZN1c5alloc17h0000000000000002E",
            "_ZN1c3old17h0000000000000003E",
            "c_exported",
        ]
        .map(String::from);
        let upgrade = [
            "_ZN1c4init17h0000000000000001E",
            "_ZN1c5alloc17h00000000000000ffE",
            "_ZN1c3new17h0000000000000004E",
            "c_exported",
        ]
        .map(String::from);
        let cmp = compare_exports(&live, &upgrade);
        assert_eq!(cmp.kept, ["c::init", "c_exported"]);
        assert_eq!(cmp.changed, ["c::alloc"]);
        assert_eq!(cmp.added, ["c::new"]);
        assert_eq!(cmp.removed, ["c::old"]);
    }
}
