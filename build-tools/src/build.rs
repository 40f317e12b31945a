//! `cargo cell build`: compile every cell, extract its object, and write the manifest.
//!
//! The base image (`nano_core`) and all cells are built by one `cargo build` in the workspace's
//! dev profile, so feature unification, and with it every symbol hash, is the same for all of
//! them (DESIGN §3). Each cell's rlib then yields its single object, written to
//! `<target>/cells/<kind>/<cell>.o` next to `<target>/cells/manifest.json`. Then every new version
//! in `cells/upgrades/` is built in its shadow workspace ([`crate::upgrades`]) into
//! `<target>/cells/upgrades/<cell>.o`. Files are written only when their bytes change, so a build
//! with nothing changed touches nothing.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use crate_metadata::{CellKind, Manifest, ManifestEntry};

use crate::cargo_build::run_cargo_build;
use crate::dependency_cells::{self, CrateGraph, DepCell};
use crate::files::write_if_changed;
use crate::objects::{cell_object, exported_symbols, sha256};
use crate::safe_apps::build_safe_apps;
use crate::upgrades::{build_upgrades, LiveCell, SymbolComparison};
use crate::workspace::{find_workspace_root, Workspace};

/// What to build and how.
#[derive(Clone, Debug, Default)]
pub struct BuildOptions {
    /// The workspace root; by default the workspace containing the current directory.
    pub workspace_root: Option<PathBuf>,
    /// Overrides cargo's target directory (as `CARGO_TARGET_DIR` does).
    pub target_dir: Option<PathBuf>,
    /// Pass `--quiet` to cargo.
    pub quiet: bool,
}

/// Takes `arg` (and its value from `args`) if it is one of the options every building command
/// has (`--workspace-root`, `--target-dir`, `-q`); returns whether it was one.
pub fn take_build_option(
    arg: &str,
    args: &mut impl Iterator<Item = String>,
    options: &mut BuildOptions,
) -> Result<bool> {
    match arg {
        "--workspace-root" => {
            let dir = args.next().context("--workspace-root needs a directory")?;
            options.workspace_root = Some(PathBuf::from(dir));
        }
        "--target-dir" => {
            let dir = args.next().context("--target-dir needs a directory")?;
            options.target_dir = Some(PathBuf::from(dir));
        }
        "-q" | "--quiet" => options.quiet = true,
        _ => return Ok(false),
    }
    Ok(true)
}

/// What a build produced and what it wrote.
#[derive(Clone, Debug)]
pub struct BuildReport {
    /// The manifest as written (or as already on disk, which is the same).
    pub manifest: Manifest,
    /// `<target>/cells/manifest.json`.
    pub manifest_path: PathBuf,
    /// `<target>/cells`: the directory the manifest's object paths are relative to.
    pub cells_dir: PathBuf,
    /// The workspace root the build ran in.
    pub workspace_root: PathBuf,
    /// Cargo's target directory.
    pub target_dir: PathBuf,
    /// The cells whose objects were (re)written by this build, in manifest order.
    pub rewritten: Vec<(CellKind, String)>,
    /// Whether the manifest file was (re)written by this build.
    pub manifest_rewritten: bool,
    /// The `nano_core` executable, when the workspace has that package.
    pub nano_core: Option<PathBuf>,
    /// For every upgrade (by cell name, sorted), how its exports compare with the live cell's.
    pub upgrades: Vec<(String, SymbolComparison)>,
    /// The `.rlib` of every library the build compiled, cells' dependencies included, by cargo
    /// package id (the bare-metal image takes `log`'s object from it).
    pub rlibs: HashMap<String, PathBuf>,
}

impl BuildReport {
    /// Whether this build wrote no file at all.
    pub fn nothing_rewritten(&self) -> bool {
        self.rewritten.is_empty() && !self.manifest_rewritten
    }

    /// The absolute path of the object that `entry` describes.
    pub fn object_path(&self, entry: &ManifestEntry) -> PathBuf {
        self.cells_dir.join(&entry.object)
    }

    /// A human-readable account of what was written, one line per file.
    pub fn summary(&self) -> String {
        let count = self.manifest.cells.len();
        let cells = if count == 1 { "cell" } else { "cells" };
        if self.nothing_rewritten() {
            return format!(
                "{count} {cells} up to date, nothing rewritten ({})",
                self.manifest_path.display()
            );
        }
        let mut out = String::new();
        for (kind, name) in &self.rewritten {
            let entry = self
                .manifest
                .cells
                .iter()
                .find(|e| e.kind == *kind && e.key() == name);
            if let Some(entry) = entry {
                let _ = writeln!(
                    out,
                    "wrote {:<24} {:<8} {:>9} bytes  sha256 {}",
                    entry.object,
                    kind.dir(),
                    entry.size,
                    entry.sha256.short()
                );
            }
            if *kind == CellKind::Upgrades {
                if let Some((_, symbols)) = self.upgrades.iter().find(|(n, _)| n == name) {
                    let _ = writeln!(out, "      {}", describe_comparison(symbols));
                }
            }
        }
        let unchanged = count - self.rewritten.len();
        let manifest = if self.manifest_rewritten {
            "manifest written"
        } else {
            "manifest unchanged"
        };
        let _ = write!(
            out,
            "{count} {cells}, {} rewritten, {unchanged} unchanged; {manifest}: {}",
            self.rewritten.len(),
            self.manifest_path.display()
        );
        out
    }
}

/// Builds every cell of the workspace (and `nano_core`, when present) and writes the objects and
/// the manifest under `<target>/cells`.
pub fn build_cells(options: &BuildOptions) -> Result<BuildReport> {
    let root = match &options.workspace_root {
        Some(root) => root.clone(),
        None => {
            let cwd = std::env::current_dir().context("cannot read the current directory")?;
            find_workspace_root(&cwd)?
        }
    };
    if !root.join("Cargo.toml").is_file() {
        bail!(
            "{} is not a workspace: it has no Cargo.toml",
            root.display()
        );
    }
    let ws = Workspace::load(&root, options.target_dir.as_deref())
        .with_context(|| format!("cannot read the workspace at {}", root.display()))?;
    let mut artifacts = run_cargo_build(&ws, options.target_dir.as_deref(), options.quiet)?;
    let safe_apps = build_safe_apps(&ws, options.target_dir.as_deref(), &mut artifacts)?;
    let rustc = rustc_version(&ws.root)?;

    let cells_dir = ws.target_dir.join("cells");
    let mut manifest = Manifest {
        rustc,
        serial: None,
        cells: Vec::with_capacity(ws.cells.len()),
    };
    let mut rewritten = Vec::new();
    for cell in &ws.cells {
        let rlib = artifacts
            .rlibs
            .get(&cell.id)
            .with_context(|| format!("cargo reported no rlib for cell `{}`", cell.name))?;
        let archive = std::fs::read(rlib)
            .with_context(|| format!("cannot read {} (cell `{}`)", rlib.display(), cell.name))?;
        let object = cell_object(&archive, &cell.name)?;
        let exports = exported_symbols(&object)
            .with_context(|| format!("cannot read the object of cell `{}`", cell.name))?;
        let relative = format!("{}/{}.o", cell.kind.dir(), cell.name);
        let path = cells_dir.join(&relative);
        if write_if_changed(&path, &object)? {
            rewritten.push((cell.kind, cell.name.clone()));
        }
        manifest.cells.push(ManifestEntry {
            name: cell.name.clone(),
            version: cell.version.clone(),
            kind: cell.kind,
            object: relative,
            size: object.len() as u64,
            sha256: sha256(&object),
            exports,
            depends_on: cell.depends_on.clone(),
            brings: cell.brings.clone(),
            signature: None,
            crates: Vec::new(),
            crate_info: None,
            dependency_upgrade: None,
            rebuilt_for: None,
            app_interface: cell.app_interface.clone(),
            grants: cell.grants.clone(),
            unsafe_forbidden: safe_apps.contains(&cell.id),
        });
    }

    // Every library crate the cells depend on that is not a cell: a dependency cell.
    let graph = CrateGraph::load(&ws.root, options.target_dir.as_deref())
        .with_context(|| format!("cannot read the crate graph of {}", ws.root.display()))?;
    let cell_ids: HashSet<&str> = ws.cells.iter().map(|c| c.id.as_str()).collect();
    let roots: Vec<&str> = ws.cells.iter().map(|c| c.id.as_str()).collect();
    let deps = dependency_cells::collect(&graph, &artifacts, &roots, &cell_ids)?;
    let mut crate_units: HashMap<(CellKind, String), Vec<String>> = ws
        .cells
        .iter()
        .map(|c| ((c.kind, c.name.clone()), deps.direct(&graph, &c.id)))
        .collect();
    let mut dep_cells = deps.cells;

    // New versions, built with the identity of the cells they replace.
    let live = |name: &str| {
        let cell = ws.cells.iter().find(|c| c.name == name)?;
        let entry = manifest.get(cell.kind, name)?;
        Some(LiveCell {
            exports: entry.exports.clone(),
            rlib: artifacts.rlibs.get(&cell.id)?.clone(),
            dep_units: dependency_cells::closure_of(
                crate_units.get(&(cell.kind, name.to_owned()))?,
                &dep_cells,
            ),
        })
    };
    let built = build_upgrades(&ws, &live, options.quiet)?;
    let mut upgrades = Vec::with_capacity(built.len());
    for upgrade in built {
        // A cell rebuilt for another cell's dependency upgrade may have a new version of its own
        // too: its rebuilt object goes under the upgrade it belongs to.
        let relative = match &upgrade.rebuilt_for {
            Some(owner) => format!("{}/{owner}/{}.o", CellKind::Upgrades.dir(), upgrade.name),
            None => format!("{}/{}.o", CellKind::Upgrades.dir(), upgrade.name),
        };
        if write_if_changed(&cells_dir.join(&relative), &upgrade.object)? {
            rewritten.push((CellKind::Upgrades, upgrade.name.clone()));
        }
        manifest.cells.push(ManifestEntry {
            name: upgrade.name.clone(),
            version: upgrade.version,
            kind: CellKind::Upgrades,
            object: relative,
            size: upgrade.object.len() as u64,
            sha256: sha256(&upgrade.object),
            exports: upgrade.exports,
            depends_on: upgrade.depends_on,
            brings: upgrade.brings,
            signature: None,
            crates: Vec::new(),
            crate_info: None,
            dependency_upgrade: upgrade.dependency_upgrade,
            rebuilt_for: upgrade.rebuilt_for,
            app_interface: upgrade.app_interface,
            grants: Vec::new(),
            unsafe_forbidden: upgrade.unsafe_forbidden,
        });
        crate_units.insert(
            (CellKind::Upgrades, upgrade.name.clone()),
            upgrade.crate_units,
        );
        dep_cells.extend(upgrade.dep_cells);
        upgrades.push((upgrade.name, upgrade.symbols));
    }
    write_dep_cells(
        &cells_dir,
        artifacts.nano_core.as_deref(),
        dep_cells,
        &crate_units,
        &mut manifest,
        &mut rewritten,
    )?;
    manifest
        .cells
        .sort_by(|a, b| (a.kind, &a.name).cmp(&(b.kind, &b.name)));
    // A build writes an unsigned manifest: signatures come from `cargo cell sign` (or
    // `build --sign`) afterwards, over the new manifest's serial. Carrying the old ones over
    // would leave a manifest that claims to be signed while a plain build meant to go back to
    // unsigned cells.
    rewritten.sort();

    let manifest_path = crate::manifest::path(&cells_dir);
    let manifest_rewritten = crate::manifest::write(&cells_dir, &manifest)?;
    Ok(BuildReport {
        manifest,
        manifest_path,
        cells_dir,
        workspace_root: ws.root,
        target_dir: ws.target_dir,
        rewritten,
        manifest_rewritten,
        nano_core: artifacts.nano_core,
        upgrades,
        rlibs: artifacts.rlibs,
    })
}

/// Writes the objects of the dependency cells (one per unit, whichever build made it) to
/// `<cells_dir>/deps/`, adds their manifest entries, fills in every entry's `crates`, and removes
/// objects of dependency cells the build no longer has.
fn write_dep_cells(
    cells_dir: &Path,
    nano_core: Option<&Path>,
    mut dep_cells: Vec<DepCell>,
    crate_units: &HashMap<(CellKind, String), Vec<String>>,
    manifest: &mut Manifest,
    rewritten: &mut Vec<(CellKind, String)>,
) -> Result<()> {
    dep_cells.sort_by_key(DepCell::unit_id);
    dep_cells.dedup_by_key(|c| c.unit_id());
    let keys = dependency_cells::assign_keys(&dep_cells);
    let key_of: HashMap<String, String> = dep_cells
        .iter()
        .zip(&keys)
        .map(|(c, k)| (c.unit_id(), k.clone()))
        .collect();
    let image = match nano_core {
        Some(path) => Some(dependency_cells::image_symbols(path)?),
        None => None,
    };
    let mut wanted = HashSet::new();
    for (cell, key) in dep_cells.iter().zip(&keys) {
        let entry = dependency_cells::manifest_entry(
            cell,
            key,
            &|unit| key_of.get(unit).cloned(),
            image.as_ref(),
        );
        if write_if_changed(&cells_dir.join(&entry.object), &cell.object)? {
            rewritten.push((CellKind::Deps, key.clone()));
        }
        wanted.insert(format!("{key}.o"));
        manifest.cells.push(entry);
    }
    for entry in &mut manifest.cells {
        // A dependency upgrade names the releases that move by key, as `crates` does.
        if let Some(upgrade) = &mut entry.dependency_upgrade {
            for (from, to) in &mut upgrade.bumped {
                for unit in [from, to] {
                    if let Some(key) = key_of.get(unit.as_str()) {
                        *unit = key.clone();
                    }
                }
            }
        }
        if let Some(units) = crate_units.get(&(entry.kind, entry.name.clone())) {
            let mut crates: Vec<String> = units
                .iter()
                .filter_map(|u| key_of.get(u).cloned())
                .collect();
            crates.sort();
            crates.dedup();
            entry.crates = crates;
        }
    }
    let dir = cells_dir.join(CellKind::Deps.dir());
    if let Ok(files) = std::fs::read_dir(&dir) {
        for file in files.flatten() {
            let name = file.file_name().to_string_lossy().into_owned();
            if name.ends_with(".o") && !wanted.contains(&name) {
                std::fs::remove_file(file.path())
                    .with_context(|| format!("cannot remove {}", file.path().display()))?;
            }
        }
    }
    Ok(())
}

/// One line on how an upgrade's exports compare with the live cell's.
fn describe_comparison(symbols: &SymbolComparison) -> String {
    let count = |paths: &[String]| {
        if paths.is_empty() {
            String::from("0")
        } else {
            format!("{} ({})", paths.len(), paths.join(", "))
        }
    };
    format!(
        "same names as the live cell: {}; other hash: {}; new: {}; gone: {}",
        symbols.kept.len(),
        count(&symbols.changed),
        count(&symbols.added),
        count(&symbols.removed),
    )
}

/// `rustc -V`, run in `dir` so that its `rust-toolchain.toml` applies (honours `$RUSTC`).
pub fn rustc_version(dir: &Path) -> Result<String> {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let output = Command::new(&rustc)
        .arg("-V")
        .current_dir(dir)
        .output()
        .with_context(|| format!("cannot run `{} -V`", rustc.to_string_lossy()))?;
    if !output.status.success() {
        bail!(
            "`rustc -V` failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let version = String::from_utf8(output.stdout).context("`rustc -V` printed non-UTF-8")?;
    Ok(version.trim().to_owned())
}
