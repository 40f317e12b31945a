//! Finding the workspace and its cells through `cargo locate-project` and `cargo metadata`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use crate_metadata::{AppInterface, CellKind};
use serde::Deserialize;

/// The package name of the base image; built together with the cells when the workspace has it.
pub const NANO_CORE: &str = "nano_core";

/// The cargo binary to run: `$CARGO` (set when running under cargo), else `cargo`.
pub fn cargo_binary() -> OsString {
    std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into())
}

/// The root directory of the workspace that contains `dir` (the directory of the `Cargo.toml`
/// with `[workspace]`), as `cargo locate-project --workspace` reports it.
pub fn find_workspace_root(dir: &Path) -> Result<PathBuf> {
    let output = Command::new(cargo_binary())
        .args(["locate-project", "--workspace", "--message-format", "plain"])
        .current_dir(dir)
        .output()
        .context("cannot run `cargo locate-project`")?;
    if !output.status.success() {
        bail!(
            "`cargo locate-project --workspace` failed in {}: {}",
            dir.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let manifest = String::from_utf8(output.stdout)
        .context("`cargo locate-project` printed a path that is not UTF-8")?;
    let manifest = PathBuf::from(manifest.trim());
    match manifest.parent() {
        Some(root) => Ok(root.to_path_buf()),
        None => bail!("`cargo locate-project` printed `{}`", manifest.display()),
    }
}

/// One workspace package that is a cell: its manifest is `<root>/cells/<kind>/<dir>/Cargo.toml`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CellPackage {
    /// Cargo's package id, also usable as a `-p` spec.
    pub id: String,
    /// The package name from `Cargo.toml`.
    pub package: String,
    /// The crate name of its library target, which is the cell's name.
    pub name: String,
    /// The package version.
    pub version: String,
    /// The directory under `cells/` it lives in.
    pub kind: CellKind,
    /// The directory holding its `Cargo.toml`.
    pub dir: PathBuf,
    /// Names of the cells among its normal dependencies, sorted.
    pub depends_on: Vec<String>,
    /// Library cells it brings its own version of (`[package.metadata.cell] brings`).
    pub brings: Vec<String>,
    /// Its application interface (`[package.metadata.cell] app_interface`), if it declares one.
    pub app_interface: Option<AppInterface>,
    /// Cells of its namespace an application grants itself (`[package.metadata.cell] grants`).
    pub grants: Vec<String>,
}

/// What `cargo metadata` says about the workspace, as far as building cells needs it.
#[derive(Clone, Debug)]
pub struct Workspace {
    /// The workspace root directory.
    pub root: PathBuf,
    /// Cargo's target directory for this workspace.
    pub target_dir: PathBuf,
    /// The cells, sorted by kind and name.
    pub cells: Vec<CellPackage>,
    /// The package id of `nano_core`, if the workspace has it.
    pub nano_core: Option<String>,
    /// Package id to package name, for every workspace package.
    pub package_names: Vec<(String, String)>,
    /// The directories that hold the workspace's source: every member's, and those of the
    /// members' path dependencies that lie inside the workspace root. Sorted, none inside another.
    pub source_dirs: Vec<PathBuf>,
}

impl Workspace {
    /// Reads the workspace at `root` with `cargo metadata --no-deps`. `target_dir`, when given,
    /// overrides cargo's target directory (passed as `CARGO_TARGET_DIR`).
    pub fn load(root: &Path, target_dir: Option<&Path>) -> Result<Workspace> {
        let mut cmd = Command::new(cargo_binary());
        cmd.args(["metadata", "--no-deps", "--format-version", "1"])
            .current_dir(root);
        if let Some(dir) = target_dir {
            cmd.env("CARGO_TARGET_DIR", dir);
        }
        let output = cmd.output().context("cannot run `cargo metadata`")?;
        if !output.status.success() {
            bail!(
                "`cargo metadata` failed in {}:\n{}",
                root.display(),
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        let metadata: Metadata = serde_json::from_slice(&output.stdout)
            .context("cannot parse the output of `cargo metadata`")?;
        Workspace::from_metadata(metadata)
    }

    fn from_metadata(metadata: Metadata) -> Result<Workspace> {
        let root = metadata.workspace_root;
        let cells_root = root.join("cells");
        // First pass: which packages are cells.
        let mut cells = Vec::new();
        for package in &metadata.packages {
            let Some(dir) = package.manifest_path.parent() else {
                continue;
            };
            let Ok(rel) = dir.strip_prefix(&cells_root) else {
                continue;
            };
            let parts: Vec<_> = rel.iter().collect();
            let [kind_dir, _crate_dir] = parts.as_slice() else {
                continue;
            };
            let Some(kind) = kind_dir.to_str().and_then(CellKind::from_dir) else {
                continue;
            };
            let lib = package
                .targets
                .iter()
                .find(|t| t.kind.iter().any(|k| k == "lib" || k == "rlib"))
                .with_context(|| {
                    format!(
                        "cell `{}` ({}) has no library target",
                        package.name,
                        package.manifest_path.display()
                    )
                })?;
            let cell_meta = package.metadata.as_ref().and_then(|m| m.cell.as_ref());
            cells.push(CellPackage {
                id: package.id.clone(),
                package: package.name.clone(),
                name: lib.name.clone(),
                version: package.version.clone(),
                kind,
                dir: dir.to_path_buf(),
                depends_on: Vec::new(),
                brings: cell_meta.map(|c| c.brings.clone()).unwrap_or_default(),
                app_interface: cell_meta
                    .and_then(|c| c.app_interface.clone())
                    .map(AppInterface::new),
                grants: cell_meta.map(|c| c.grants.clone()).unwrap_or_default(),
            });
        }
        // Second pass: a cell's normal dependencies that are themselves cells, matched by path.
        let by_dir: Vec<(PathBuf, String)> = cells
            .iter()
            .map(|c| (c.dir.clone(), c.name.clone()))
            .collect();
        for cell in &mut cells {
            let Some(package) = metadata.packages.iter().find(|p| p.id == cell.id) else {
                continue;
            };
            let mut deps: Vec<String> = package
                .dependencies
                .iter()
                .filter(|d| d.kind.is_none())
                .filter_map(|d| d.path.as_deref())
                .filter_map(|path| {
                    by_dir
                        .iter()
                        .find(|(dir, _)| dir == path)
                        .map(|(_, name)| name.clone())
                })
                .collect();
            deps.sort();
            deps.dedup();
            cell.depends_on = deps;
        }
        cells.sort_by(|a, b| (a.kind, &a.name).cmp(&(b.kind, &b.name)));
        let nano_core = metadata
            .packages
            .iter()
            .find(|p| p.name == NANO_CORE)
            .map(|p| p.id.clone());
        let package_names = metadata
            .packages
            .iter()
            .map(|p| (p.id.clone(), p.name.clone()))
            .collect();
        let mut source_dirs: Vec<PathBuf> = metadata
            .packages
            .iter()
            .filter_map(|p| p.manifest_path.parent().map(Path::to_path_buf))
            .chain(
                metadata
                    .packages
                    .iter()
                    .flat_map(|p| &p.dependencies)
                    .filter_map(|d| d.path.clone())
                    .filter(|path| path.starts_with(&root)),
            )
            .collect();
        source_dirs.sort();
        source_dirs.dedup();
        // Sorted, a directory comes right before the ones inside it.
        let mut outermost: Vec<PathBuf> = Vec::with_capacity(source_dirs.len());
        for dir in source_dirs {
            if !outermost.last().is_some_and(|outer| dir.starts_with(outer)) {
                outermost.push(dir);
            }
        }
        Ok(Workspace {
            root,
            target_dir: metadata.target_directory,
            cells,
            nano_core,
            package_names,
            source_dirs: outermost,
        })
    }

    /// The package name of the package with id `id`, if it is in the workspace.
    pub fn package_name(&self, id: &str) -> Option<&str> {
        self.package_names
            .iter()
            .find(|(pid, _)| pid == id)
            .map(|(_, name)| name.as_str())
    }
}

/// The parts of `cargo metadata --format-version 1` output this crate reads.
#[derive(Deserialize)]
struct Metadata {
    packages: Vec<Package>,
    workspace_root: PathBuf,
    target_directory: PathBuf,
}

#[derive(Deserialize)]
struct Package {
    name: String,
    version: String,
    id: String,
    manifest_path: PathBuf,
    #[serde(default)]
    dependencies: Vec<Dependency>,
    #[serde(default)]
    targets: Vec<Target>,
    /// `[package.metadata]`.
    #[serde(default)]
    metadata: Option<PackageMetadata>,
}

/// `[package.metadata]`: only the `cell` table is read.
#[derive(Deserialize)]
struct PackageMetadata {
    cell: Option<CellMetadata>,
}

/// `[package.metadata.cell]`.
#[derive(Deserialize)]
struct CellMetadata {
    /// Library cells the application brings its own version of.
    #[serde(default)]
    brings: Vec<String>,
    /// The paths applications may bind to (see `crate_metadata::policy`).
    #[serde(default)]
    app_interface: Option<Vec<String>>,
    /// Cells of the application's namespace it grants itself.
    #[serde(default)]
    grants: Vec<String>,
}

#[derive(Deserialize)]
struct Dependency {
    /// `null` for normal dependencies, `"dev"` or `"build"` otherwise.
    kind: Option<String>,
    /// Set for path dependencies.
    path: Option<PathBuf>,
}

#[derive(Deserialize)]
struct Target {
    name: String,
    kind: Vec<String>,
}
