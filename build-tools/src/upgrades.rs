//! New versions of cells: the crates under `cells/upgrades/`, built with the crate identity of the
//! cells they replace.
//!
//! A new version is swappable by exact symbol name only when its symbols carry the hashes of the
//! live cell's: rustc derives them from the crate's name, version, features, profile, its
//! dependencies' hashes, and the package's path relative to the workspace root (measured: the same
//! crate at `cells/kernel/frame_alloc` in two workspace roots gets identical hashes, at another
//! relative path different ones). And two packages of one name cannot both be members of one
//! workspace. So an upgrade is its own crate in `cells/upgrades/<crate>/` (outside the workspace:
//! the root `Cargo.toml` excludes `cells/upgrades`) with exactly the live cell's package name,
//! version, features and dependencies, and it is built in a **shadow workspace**: a copy of the
//! workspace's source under `<target>/cell-upgrades/ws/<group>/` in which the upgrade's source
//! replaces the live cell's directory, so that it sits at the live cell's relative path.
//!
//! An upgrade is built against the *live* versions of every other cell: upgrades go into one
//! shadow together unless one depends (transitively) on the cell another replaces; then they get
//! separate shadows ("groups"), each with its own target directory
//! (`<target>/cell-upgrades/target/<group>/`), because the live and the new version of a crate
//! have the same output file names. Shadows and target directories persist between builds and
//! only files whose bytes changed are rewritten, so cargo's freshness checks see an unchanged
//! shadow as unchanged and a build with nothing changed rebuilds nothing. Each shadow build is one
//! `cargo build -p <upgrade>...`: the base image and the loader are not built there.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use crate_metadata::{CellKind, DependencyUpgrade};

use crate::build::write_if_changed;
use crate::cargo_build::{run_cargo, CargoRun};
use crate::dependency_cells::{self, CrateGraph, DepCell};
use crate::dependency_upgrade::{self, check_renames, closure_change, ClosureChange};
use crate::objects::{exported_symbols, extract_single_object};
use crate::workspace::{cargo_binary, CellPackage, Workspace};

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

fn relative(path: &Path, root: &Path) -> PathBuf {
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

/// Upgrades built in one shadow workspace.
#[derive(Clone, Debug)]
pub struct ShadowGroup {
    /// The group's name: its first upgrade's cell name.
    pub name: String,
    /// The shadow workspace root, `<target>/cell-upgrades/ws/<name>`.
    pub workspace: PathBuf,
    /// Its target directory, `<target>/cell-upgrades/target/<name>`.
    pub target_dir: PathBuf,
    /// The upgrades overlaid in it.
    pub upgrades: Vec<Upgrade>,
}

/// The cells `cell` depends on, directly or not.
fn dependency_closure(ws: &Workspace, cell: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut todo = vec![cell.to_owned()];
    while let Some(name) = todo.pop() {
        let Some(package) = ws.cells.iter().find(|c| c.name == name) else {
            continue;
        };
        for dep in &package.depends_on {
            if seen.insert(dep.clone()) {
                todo.push(dep.clone());
            }
        }
    }
    seen
}

/// Splits `upgrades` into shadow groups: an upgrade joins the first group in which no upgrade
/// depends on the cell it replaces and it depends on none of theirs, so that every upgrade is
/// compiled against the live versions of the cells it uses.
pub fn plan_groups(ws: &Workspace, upgrades: &[Upgrade]) -> Vec<ShadowGroup> {
    let base = ws.target_dir.join(SHADOW_DIR);
    let closures: BTreeMap<&str, BTreeSet<String>> = upgrades
        .iter()
        .map(|u| (u.live.name.as_str(), dependency_closure(ws, &u.live.name)))
        .collect();
    // A dependency upgrade changes the resolution of everything in its shadow: it gets its own.
    let conflict = |a: &Upgrade, b: &Upgrade| {
        a.moves_dependencies
            || b.moves_dependencies
            || closures[a.live.name.as_str()].contains(&b.live.name)
            || closures[b.live.name.as_str()].contains(&a.live.name)
    };
    let mut groups: Vec<ShadowGroup> = Vec::new();
    for upgrade in upgrades {
        match groups
            .iter_mut()
            .find(|g| g.upgrades.iter().all(|other| !conflict(upgrade, other)))
        {
            Some(group) => group.upgrades.push(upgrade.clone()),
            None => {
                let name = upgrade.live.name.clone();
                groups.push(ShadowGroup {
                    workspace: base.join("ws").join(&name),
                    target_dir: base.join("target").join(&name),
                    name,
                    upgrades: vec![upgrade.clone()],
                });
            }
        }
    }
    groups
}

/// What [`sync_shadow`] changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyncStats {
    /// Files written because they were missing or their bytes differed.
    pub written: usize,
    /// Files removed because the source no longer has them.
    pub removed: usize,
}

/// Whether a walk of the source skips the directory `dir`: build output and version control.
fn skipped_dir(dir: &Path, ws: &Workspace) -> bool {
    let name = dir.file_name().unwrap_or_default();
    name == "target" || name == ".git" || dir == ws.target_dir
}

/// Calls `found` with every file below `dir`, skipping what [`skipped_dir`] skips and `exclude`.
fn walk_files(
    dir: &Path,
    ws: &Workspace,
    exclude: &[PathBuf],
    found: &mut dyn FnMut(PathBuf),
) -> Result<()> {
    let entries = fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))?;
    let mut paths = Vec::new();
    for entry in entries {
        paths.push(
            entry
                .with_context(|| format!("cannot read {}", dir.display()))?
                .path(),
        );
    }
    paths.sort();
    for path in paths {
        if exclude.iter().any(|e| path.starts_with(e)) {
            continue;
        }
        if path.is_dir() {
            if !skipped_dir(&path, ws) {
                walk_files(&path, ws, exclude, found)?;
            }
        } else if path.is_file() {
            found(path);
        }
    }
    Ok(())
}

/// The files of `group`'s shadow workspace: path relative to the shadow root, and the file it is a
/// copy of.
pub fn shadow_files(ws: &Workspace, group: &ShadowGroup) -> Result<BTreeMap<PathBuf, PathBuf>> {
    let mut files = BTreeMap::new();
    let mut top = vec![
        "Cargo.toml",
        "Cargo.lock",
        "rust-toolchain.toml",
        "rust-toolchain",
    ];
    // Cargo reads the configuration of the directories above where it runs: a shadow inside the
    // workspace sees the workspace's own `.cargo/config.toml`; one elsewhere needs a copy.
    if !group.workspace.starts_with(&ws.root) {
        top.extend([".cargo/config.toml", ".cargo/config"]);
    }
    for name in top {
        let path = ws.root.join(name);
        if path.is_file() {
            files.insert(PathBuf::from(name), path);
        }
    }
    let mut exclude = vec![ws.root.join(UPGRADES_DIR), ws.target_dir.join(SHADOW_DIR)];
    exclude.extend(group.upgrades.iter().map(|u| u.live.dir.clone()));
    for dir in &ws.source_dirs {
        walk_files(dir, ws, &exclude, &mut |path| {
            files.insert(relative(&path, &ws.root), path);
        })?;
    }
    for upgrade in &group.upgrades {
        let live_rel = upgrade.live_rel_dir(&ws.root);
        walk_files(&upgrade.dir, ws, &[], &mut |path| {
            files.insert(live_rel.join(relative(&path, &upgrade.dir)), path);
        })?;
    }
    Ok(files)
}

/// Brings `group`'s shadow workspace up to date: writes the files whose bytes differ from the
/// source (or that are missing), removes the files the source no longer has, and leaves every other
/// file, and so its modification time, alone.
pub fn sync_shadow(ws: &Workspace, group: &ShadowGroup) -> Result<SyncStats> {
    let files = shadow_files(ws, group)?;
    let mut stats = SyncStats::default();
    for (rel, source) in &files {
        let bytes =
            fs::read(source).with_context(|| format!("cannot read {}", source.display()))?;
        if write_if_changed(&group.workspace.join(rel), &bytes)? {
            stats.written += 1;
        }
    }
    let mut stale = Vec::new();
    if group.workspace.is_dir() {
        walk_files(&group.workspace, ws, &[], &mut |path| {
            if !files.contains_key(&relative(&path, &group.workspace)) {
                stale.push(path);
            }
        })?;
    }
    for path in stale {
        match fs::remove_file(&path) {
            Ok(()) => stats.removed += 1,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("cannot remove {}", path.display())),
        }
        // Drop the directories this emptied (never the shadow root).
        let mut dir = path.parent();
        while let Some(d) = dir.filter(|d| *d != group.workspace) {
            if fs::remove_dir(d).is_err() {
                break;
            }
            dir = d.parent();
        }
    }
    Ok(stats)
}

/// Removes the shadow workspaces and target directories of groups that no longer exist.
fn remove_stale_groups(base: &Path, groups: &[ShadowGroup]) -> Result<()> {
    for sub in ["ws", "target"] {
        let dir = base.join(sub);
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            if !groups.iter().any(|g| *g.name == *name) {
                fs::remove_dir_all(entry.path()).with_context(|| {
                    format!("cannot remove the stale {}", entry.path().display())
                })?;
            }
        }
    }
    Ok(())
}

/// An exclusive lock on `<target>/cell-upgrades`, held while shadows are written and built.
fn lock_shadows(base: &Path) -> Result<fs::File> {
    fs::create_dir_all(base).with_context(|| format!("cannot create {}", base.display()))?;
    let path = base.join(".lock");
    let file =
        fs::File::create(&path).with_context(|| format!("cannot open {}", path.display()))?;
    file.lock()
        .with_context(|| format!("cannot lock {}", path.display()))?;
    Ok(file)
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
pub fn legacy_path(mangled: &str) -> Option<String> {
    let mut rest = mangled.strip_prefix("_ZN")?;
    let mut parts: Vec<&str> = Vec::new();
    while !rest.starts_with('E') {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let len: usize = rest[..digits].parse().ok()?;
        let ident = rest.get(digits..digits + len)?;
        parts.push(ident);
        rest = &rest[digits + len..];
    }
    if rest != "E" {
        return None;
    }
    let hash = parts.pop()?;
    let is_hash = hash.len() == 17
        && hash.starts_with('h')
        && hash[1..].bytes().all(|b| b.is_ascii_hexdigit());
    (is_hash && !parts.is_empty()).then(|| parts.join("::"))
}

/// Compares the exports of a live cell and of its upgrade (see [`SymbolComparison`]).
pub fn compare_exports(live: &[String], upgrade: &[String]) -> SymbolComparison {
    fn by_path(names: &[String]) -> BTreeMap<String, BTreeSet<&str>> {
        let mut map: BTreeMap<String, BTreeSet<&str>> = BTreeMap::new();
        for name in names {
            let path = legacy_path(name).unwrap_or_else(|| name.clone());
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

/// The hash cargo puts in an rlib's file name (`libfoo-0123abcd.rlib` gives `0123abcd`): it is
/// derived from what makes the crate's identity (package, version, features, dependencies,
/// profile), so two builds with the same one share the symbol hashes.
pub fn rlib_hash(rlib: &Path) -> Option<&str> {
    let stem = rlib.file_stem()?.to_str()?;
    Some(stem.rsplit_once('-')?.1)
}

/// The rlib with the hash in its file name that `rlib` is: itself, or for cargo's uplifted copy
/// `<profile>/lib<crate>.rlib` (what cargo reports for workspace members), the file in
/// `<profile>/deps/` that it is a hard link to (or, failing that, the only one with its bytes).
pub fn hashed_rlib(rlib: &Path) -> Option<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    if rlib_hash(rlib).is_some() {
        return Some(rlib.to_path_buf());
    }
    let prefix = format!("{}-", rlib.file_stem()?.to_str()?);
    let meta = fs::metadata(rlib).ok()?;
    let mut candidates = Vec::new();
    for entry in fs::read_dir(rlib.parent()?.join("deps")).ok()?.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(&prefix) && name.ends_with(".rlib") {
            let other = entry.metadata().ok()?;
            if (other.dev(), other.ino()) == (meta.dev(), meta.ino()) {
                return Some(entry.path());
            }
            candidates.push(entry.path());
        }
    }
    let bytes = fs::read(rlib).ok()?;
    let mut same = candidates
        .into_iter()
        .filter(|c| fs::read(c).is_ok_and(|b| b == bytes));
    match (same.next(), same.next()) {
        (Some(one), None) => Some(one),
        _ => None,
    }
}

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

/// The group's upgrades as packages of its (synced) shadow workspace.
fn shadow_packages(
    ws: &Workspace,
    group: &ShadowGroup,
) -> Result<(Workspace, Vec<(Upgrade, CellPackage)>)> {
    sync_shadow(ws, group)?;
    let shadow = Workspace::load(&group.workspace, Some(&group.target_dir)).with_context(|| {
        format!(
            "cannot read the shadow workspace {} of {}",
            group.workspace.display(),
            group
                .upgrades
                .iter()
                .map(Upgrade::label)
                .collect::<Vec<_>>()
                .join(", ")
        )
    })?;
    let mut packages = Vec::with_capacity(group.upgrades.len());
    for upgrade in &group.upgrades {
        let dir = group.workspace.join(upgrade.live_rel_dir(&ws.root));
        let package = shadow
            .cells
            .iter()
            .find(|c| c.dir == dir && c.package == upgrade.package)
            .with_context(|| {
                format!(
                    "{} is not a cell of its shadow workspace {}",
                    upgrade.label(),
                    group.workspace.display()
                )
            })?;
        packages.push((upgrade.clone(), package.clone()));
    }
    Ok((shadow, packages))
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
    let artifacts = run_cargo(&CargoRun {
        ws: &shadow,
        packages: targets.clone(),
        target_dir: Some(&group.target_dir),
        quiet,
        crate_label: &label,
        path_rewrites: &rewrites,
    })?;
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
                ws, &upgrade, &live_cell, &exports, &change, &rebuilt, &artifacts,
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
            symbols,
            crate_units,
            dep_cells: deps.cells.clone(),
            rebuilt_for: None,
            dependency_upgrade,
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
            crate_units: deps.direct(&graph, &cell.id),
            dep_cells: deps.cells.clone(),
            rebuilt_for: Some(owner.clone()),
            dependency_upgrade: None,
            upgrade,
        });
    }
    Ok(built)
}

/// The object in `rlib` and its exports.
fn read_object(rlib: &Path, crate_name: &str, label: &str) -> Result<(Vec<u8>, Vec<String>)> {
    let archive =
        fs::read(rlib).with_context(|| format!("cannot read {} ({label})", rlib.display()))?;
    let object = extract_single_object(&archive, crate_name)?;
    let exports =
        exported_symbols(&object).with_context(|| format!("cannot read the object of {label}"))?;
    Ok((object, exports))
}

/// What a dependency upgrade moves and rebuilds, and the renames both versions' sources vouch for
/// (its own and those of every rebuilt cell).
fn describe_dependency_upgrade(
    ws: &Workspace,
    upgrade: &Upgrade,
    live_cell: &LiveCell,
    exports: &[String],
    change: &ClosureChange,
    rebuilt: &[(&CellPackage, LiveCell)],
    artifacts: &crate::cargo_build::CargoArtifacts,
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
    let _ = ws;
    let mut rebuilt: Vec<String> = rebuilt.iter().map(|(c, _)| c.name.clone()).collect();
    rebuilt.sort();
    Ok(DependencyUpgrade {
        bumped: change.moved.clone(),
        rebuilt,
        renames,
        unverified,
    })
}

/// Fails when cargo built the upgrade with another crate identity than the live cell (the hashes
/// in their rlibs' file names differ): then every symbol hash differs and no dependent could bind
/// to it by name. When a hash cannot be found, falls back to the symbols: the identity differs
/// when both define mangled symbols of the same paths and not one has the same name.
fn check_identity(
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
        let path = legacy_path(old)?;
        let new = exports
            .iter()
            .find(|n| *n != old && legacy_path(n).as_deref() == Some(path.as_str()))?;
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

/// `cargo cell upgrades <cargo-command> [args...]`: runs `cargo <cargo-command> -p <upgrade>...
/// [args...]` in each shadow workspace (synced first) with its target directory, e.g.
/// `test`, `clippy --all-targets -- -D warnings` or `doc --no-deps`. Its output names files by
/// their shadow paths: `cells/<kind>/<crate>` there is `cells/upgrades/<crate>` here.
pub fn run_cargo_in_shadows(ws: &Workspace, args: &[String]) -> Result<()> {
    let Some((command, rest)) = args.split_first() else {
        bail!("`cargo cell upgrades` needs a cargo command, e.g. `cargo cell upgrades test`");
    };
    let upgrades = find_upgrades(ws)?;
    if upgrades.is_empty() {
        eprintln!("no upgrades in {}", ws.root.join(UPGRADES_DIR).display());
        return Ok(());
    }
    let base = ws.target_dir.join(SHADOW_DIR);
    let _lock = lock_shadows(&base)?;
    for group in plan_groups(ws, &upgrades) {
        let (_, packages) = shadow_packages(ws, &group)?;
        let mut cmd = Command::new(cargo_binary());
        cmd.arg(command);
        for (_, package) in &packages {
            cmd.args(["-p", &package.package]);
        }
        cmd.args(rest)
            .current_dir(&group.workspace)
            .env("CARGO_TARGET_DIR", &group.target_dir);
        let mapping: Vec<String> = packages
            .iter()
            .map(|(u, _)| {
                format!(
                    "{} is {}",
                    u.live_rel_dir(&ws.root).display(),
                    u.rel_dir(&ws.root).display()
                )
            })
            .collect();
        let specs: Vec<String> = packages
            .iter()
            .map(|(_, p)| format!("-p {}", p.package))
            .collect();
        let mut shown = vec![format!("cargo {command}")];
        shown.extend(specs);
        shown.extend(rest.iter().cloned());
        eprintln!(
            "cargo cell upgrades: `{}` in {} ({})",
            shown.join(" "),
            group.workspace.display(),
            mapping.join(", ")
        );
        let status = cmd
            .status()
            .with_context(|| format!("cannot run `cargo {command}`"))?;
        if !status.success() {
            bail!(
                "`cargo {command}` failed for {} ({status})",
                packages
                    .iter()
                    .map(|(u, _)| u.label())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }
    Ok(())
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

    #[test]
    fn legacy_paths() {
        assert_eq!(
            legacy_path("_ZN11frame_alloc11alloc_frame17h0123456789abcdefE").as_deref(),
            Some("frame_alloc::alloc_frame")
        );
        assert_eq!(
            legacy_path("_ZN5memfs2FS17hfedcba9876543210E").as_deref(),
            Some("memfs::FS")
        );
        assert_eq!(legacy_path("rust_begin_unwind"), None);
        assert_eq!(legacy_path("_ZN3foo3barE"), None, "no hash");
        assert_eq!(
            legacy_path("_ZN3foo17h0123456789abcdefE"),
            Some("foo".into())
        );
        assert_eq!(legacy_path("_ZN3fo"), None);
        assert_eq!(legacy_path("_ZN99fooE"), None);
        assert_eq!(legacy_path("_RNvCs123_4core3foo"), None);
    }

    #[test]
    fn rlib_hashes_and_uplifted_copies() {
        assert_eq!(
            rlib_hash(Path::new("x/libfoo_bar-0a1b2c.rlib")),
            Some("0a1b2c")
        );
        assert_eq!(rlib_hash(Path::new("x/libfoo_bar.rlib")), None);
        let dir = std::env::temp_dir().join(format!("upgrades-rlib-{}", std::process::id()));
        let deps = dir.join("deps");
        fs::create_dir_all(&deps).unwrap();
        fs::write(deps.join("libfoo-1111.rlib"), b"old").unwrap();
        fs::write(deps.join("libfoo-2222.rlib"), b"new").unwrap();
        fs::write(deps.join("libfoobar-3333.rlib"), b"new").unwrap();
        // A hard link, as cargo uplifts.
        fs::hard_link(deps.join("libfoo-2222.rlib"), dir.join("libfoo.rlib")).unwrap();
        assert_eq!(
            hashed_rlib(&dir.join("libfoo.rlib")),
            Some(deps.join("libfoo-2222.rlib"))
        );
        // A copy: found by its bytes.
        fs::remove_file(dir.join("libfoo.rlib")).unwrap();
        fs::write(dir.join("libfoo.rlib"), b"old").unwrap();
        assert_eq!(
            hashed_rlib(&dir.join("libfoo.rlib")),
            Some(deps.join("libfoo-1111.rlib"))
        );
        fs::write(dir.join("libfoo.rlib"), b"neither").unwrap();
        assert_eq!(hashed_rlib(&dir.join("libfoo.rlib")), None);
        fs::remove_dir_all(&dir).unwrap();
    }

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
