//! Building the upgrades in their shadow workspaces and reading their objects; for a dependency
//! upgrade, also every cell compiled against what moved, and what its sources vouch for.

use std::collections::HashSet;
use std::fs;
use std::path::Path;

use anyhow::{bail, Context, Result};
use crate_metadata::{CellKind, DependencyUpgrade};

use super::find::SHADOW_DIR;
use super::find::{find_upgrades, Upgrade};
use super::groups::{plan_groups, ShadowGroup};
use super::identity::{check_identity, compare_exports, LiveCell, SymbolComparison};
use super::shadow::{lock_shadows, remove_stale_groups, shadow_packages};
use crate::cargo_build::{run_cargo, CargoArtifacts, CargoRun};
use crate::dependency_cells::{self, CrateGraph, DepCell};
use crate::dependency_upgrade::{check_renames, closure_change, ClosureChange};
use crate::objects::{
    cell_object, exported_symbols, extract_single_object, hashed_rlib, rlib_hash,
};
use crate::safe_apps::build_safe_cells;
use crate::workspace::{CellPackage, Workspace};

/// An upgrade that was built.
#[derive(Clone, Debug)]
pub struct BuiltUpgrade {
    /// The upgrade.
    pub upgrade: Upgrade,
    /// The cell name (its library's crate name, the live cell's).
    pub name: String,
    /// Its version.
    pub version: String,
    /// The relocatable object.
    pub object: Vec<u8>,
    /// Its exports (see [`exported_symbols`]).
    pub exports: Vec<String>,
    /// The cells it depends on.
    pub depends_on: Vec<String>,
    /// The library cells it brings its own version of (`[package.metadata.cell] brings`).
    pub brings: Vec<String>,
    /// Its application interface, as its `Cargo.toml` declares it.
    pub app_interface: Option<crate_metadata::AppInterface>,
    /// Its exports next to the live cell's.
    pub symbols: SymbolComparison,
    /// The unit ids of the dependency cells it uses directly.
    pub crate_units: Vec<String>,
    /// The dependency cells of its shadow build (its own and those of the other upgrades there).
    pub dep_cells: Vec<DepCell>,
    /// For a dependency upgrade: what moved, what was rebuilt, which renames the sources vouch for
    /// (`bumped` as unit ids; the manifest names them by key).
    pub dependency_upgrade: Option<DependencyUpgrade>,
    /// For a cell rebuilt unchanged against a dependency upgrade: that upgrade's cell.
    pub rebuilt_for: Option<String>,
    /// Whether it is an application compiled with `unsafe` forbidden
    /// ([`crate::safe_apps::build_safe_cells`]), as the main build compiles the live one.
    pub unsafe_forbidden: bool,
}

/// Builds every upgrade of `ws` in its shadow workspace and checks that it keeps the crate identity
/// of the cell it replaces. `live` gives what the build of the workspace (which must come first)
/// made of the live cell of a name. Compile errors fail with
/// [`BuildFailed`](crate::BuildFailed) naming the upgrade as `upgrades/<dir>`, with the compiler's
/// paths pointing into `cells/upgrades/`.
pub fn build_upgrades(
    ws: &Workspace,
    live: &dyn Fn(&str) -> Option<LiveCell>,
    quiet: bool,
) -> Result<Vec<BuiltUpgrade>> {
    let upgrades = find_upgrades(ws)?;
    let base = ws.target_dir.join(SHADOW_DIR);
    if upgrades.is_empty() && !base.exists() {
        return Ok(Vec::new());
    }
    let _lock = lock_shadows(&base)?;
    let groups = plan_groups(ws, &upgrades);
    remove_stale_groups(&base, &groups)?;
    let mut built = Vec::with_capacity(upgrades.len());
    for group in &groups {
        built.extend(build_group(ws, group, live, quiet)?);
    }
    built.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(built)
}

fn build_group(
    ws: &Workspace,
    group: &ShadowGroup,
    live: &dyn Fn(&str) -> Option<LiveCell>,
    quiet: bool,
) -> Result<Vec<BuiltUpgrade>> {
    let (shadow, packages) = shadow_packages(ws, group)?;
    let mut rewrites = Vec::new();
    for (upgrade, _) in &packages {
        let live_rel = upgrade.live_rel_dir(&ws.root);
        rewrites.push((
            format!("{}/", group.workspace.join(&live_rel).display()),
            format!("{}/", upgrade.dir.display()),
        ));
        rewrites.push((
            format!("{}/", live_rel.display()),
            format!("{}/", upgrade.rel_dir(&ws.root).display()),
        ));
    }
    let label = |name: &str| {
        packages
            .iter()
            .find(|(u, _)| u.package == name)
            .map_or_else(|| name.to_owned(), |(u, _)| u.label())
    };
    // A dependency upgrade: every other cell is built too, to find those compiled against what
    // moved.
    let moving = group.upgrades.iter().any(|u| u.moves_dependencies);
    let others: Vec<&CellPackage> = if moving {
        shadow
            .cells
            .iter()
            .filter(|c| c.kind != CellKind::Upgrades && !packages.iter().any(|(_, p)| p.id == c.id))
            .collect()
    } else {
        Vec::new()
    };
    let mut targets: Vec<&str> = packages.iter().map(|(_, p)| p.id.as_str()).collect();
    targets.extend(others.iter().map(|c| c.id.as_str()));
    let mut artifacts = run_cargo(&CargoRun {
        ws: &shadow,
        packages: targets.clone(),
        target_dir: Some(&group.target_dir),
        quiet,
        crate_label: &label,
        path_rewrites: &rewrites,
    })?;
    // The applications as the main build makes them (`-F unsafe_code`, which moves their unit
    // hash): only then does an application that is not compiled against what moved compare equal
    // to its live build, and a new version of an application keep its identity. For a dependency
    // upgrade every application of the shadow; otherwise the upgrades that are applications.
    let apps: Vec<&CellPackage> = if moving {
        shadow.cells.iter().collect()
    } else {
        packages.iter().map(|(_, p)| p).collect()
    };
    let safe = build_safe_cells(&shadow, Some(&group.target_dir), apps, &mut artifacts)?;
    let graph = CrateGraph::load(&group.workspace, Some(&group.target_dir)).with_context(|| {
        format!(
            "cannot read the crate graph of the shadow workspace {}",
            group.workspace.display()
        )
    })?;
    let cell_ids: HashSet<&str> = shadow.cells.iter().map(|c| c.id.as_str()).collect();
    let deps = dependency_cells::collect(&graph, &artifacts, &targets, &cell_ids)?;
    let unit_hash = |rlib: &Path| hashed_rlib(rlib).and_then(|r| rlib_hash(&r).map(str::to_owned));
    let mut rebuilt: Vec<(&CellPackage, LiveCell)> = Vec::new();
    for cell in others {
        let live_cell = live(&cell.name)
            .with_context(|| format!("the build made nothing of `{}`", cell.name))?;
        let rlib = artifacts
            .rlibs
            .get(&cell.id)
            .with_context(|| format!("cargo reported no rlib for `{}`", cell.name))?;
        if unit_hash(rlib) != unit_hash(&live_cell.rlib) {
            rebuilt.push((cell, live_cell));
        }
    }
    let mut built = Vec::with_capacity(packages.len() + rebuilt.len());
    for (upgrade, package) in packages {
        let label = upgrade.label();
        let rlib = artifacts
            .rlibs
            .get(&package.id)
            .with_context(|| format!("cargo reported no rlib for {label}"))?;
        let (object, exports) = read_object(rlib, &package.name, &label)?;
        let live_cell = live(&upgrade.live.name)
            .with_context(|| format!("the build made nothing of `{}`", upgrade.live.name))?;
        let symbols = compare_exports(&live_cell.exports, &exports);
        let crate_units = deps.direct(&graph, &package.id);
        let change = closure_change(
            &live_cell.dep_units,
            &dependency_cells::closure_of(&crate_units, &deps.cells),
        );
        let dependency_upgrade = if upgrade.moves_dependencies && !change.is_empty() {
            Some(describe_dependency_upgrade(
                &upgrade, &live_cell, &exports, &change, &rebuilt, &artifacts,
            )?)
        } else {
            check_identity(ws, &upgrade, &live_cell, rlib, &exports)?;
            None
        };
        built.push(BuiltUpgrade {
            name: package.name.clone(),
            version: package.version.clone(),
            object,
            exports,
            depends_on: package.depends_on.clone(),
            brings: package.brings.clone(),
            app_interface: package.app_interface.clone(),
            symbols,
            crate_units,
            dep_cells: deps.cells.clone(),
            rebuilt_for: None,
            dependency_upgrade,
            unsafe_forbidden: safe.contains(&package.id),
            upgrade,
        });
    }
    let owner = built
        .iter()
        .find(|b| b.dependency_upgrade.is_some())
        .map(|b| b.name.clone());
    for (cell, live_cell) in &rebuilt {
        let Some(owner) = &owner else {
            bail!(
                "`{}` was rebuilt in the shadow of {} although no dependency moved",
                cell.name,
                group.name
            );
        };
        let label = format!("`{}` (rebuilt for {owner})", cell.name);
        let rlib = &artifacts.rlibs[&cell.id];
        let (object, exports) = read_object(rlib, &cell.name, &label)?;
        let upgrade = Upgrade {
            dir: cell.dir.clone(),
            package: cell.package.clone(),
            live: (*cell).clone(),
            moves_dependencies: false,
        };
        built.push(BuiltUpgrade {
            name: cell.name.clone(),
            version: cell.version.clone(),
            symbols: compare_exports(&live_cell.exports, &exports),
            object,
            exports,
            depends_on: cell.depends_on.clone(),
            brings: cell.brings.clone(),
            app_interface: cell.app_interface.clone(),
            crate_units: deps.direct(&graph, &cell.id),
            dep_cells: deps.cells.clone(),
            rebuilt_for: Some(owner.clone()),
            dependency_upgrade: None,
            unsafe_forbidden: safe.contains(&cell.id),
            upgrade,
        });
    }
    Ok(built)
}

/// The object in `rlib` and its exports.
fn read_object(rlib: &Path, crate_name: &str, label: &str) -> Result<(Vec<u8>, Vec<String>)> {
    let archive =
        fs::read(rlib).with_context(|| format!("cannot read {} ({label})", rlib.display()))?;
    let object = cell_object(&archive, crate_name)?;
    let exports =
        exported_symbols(&object).with_context(|| format!("cannot read the object of {label}"))?;
    Ok((object, exports))
}

/// What a dependency upgrade moves and rebuilds, and the renames both versions' sources vouch for
/// (its own and those of every rebuilt cell).
fn describe_dependency_upgrade(
    upgrade: &Upgrade,
    live_cell: &LiveCell,
    exports: &[String],
    change: &ClosureChange,
    rebuilt: &[(&CellPackage, LiveCell)],
    artifacts: &CargoArtifacts,
) -> Result<DependencyUpgrade> {
    let lib = |dir: &Path| dir.join("src").join("lib.rs");
    let (mut renames, mut unverified) = check_renames(
        &upgrade.live.name,
        &lib(&upgrade.live.dir),
        &lib(&upgrade.dir),
        &live_cell.exports,
        exports,
    )
    .with_context(|| format!("cannot compare the sources of {}", upgrade.label()))?;
    for (cell, live) in rebuilt {
        let archive = fs::read(&artifacts.rlibs[&cell.id])?;
        let object = extract_single_object(&archive, &cell.name)?;
        let new_exports = exported_symbols(&object)?;
        let source = lib(&cell.dir);
        let (r, u) = check_renames(&cell.name, &source, &source, &live.exports, &new_exports)
            .with_context(|| format!("cannot read the source of `{}`", cell.name))?;
        renames.extend(r);
        unverified.extend(u);
    }
    let mut rebuilt: Vec<String> = rebuilt.iter().map(|(c, _)| c.name.clone()).collect();
    rebuilt.sort();
    Ok(DependencyUpgrade {
        bumped: change.moved.clone(),
        rebuilt,
        renames,
        unverified,
    })
}
