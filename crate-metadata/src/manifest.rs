//! The build manifest: what `cargo cell build` knows about every cell object it wrote.
//!
//! The build tool writes one [`Manifest`] as `target/cells/manifest.json`; `nano_core` reads it to
//! find the objects, load them in dependency order and check their hashes.
//!
//! # Dependency cells
//!
//! Every library crate in a cell's dependency closure (crates.io crates, git and path crates that
//! are not cells themselves) is a cell of its own, of kind [`CellKind::Deps`]: its object is
//! `deps/<crate>-<version>.o` and its entry carries a [`CrateInfo`] with the key other entries name
//! it by in [`ManifestEntry::crates`]. Build scripts and proc macros are not cells. A dependency
//! cell is loaded before the cells that need it, once per namespace chain, unless the running base
//! image already links that very build of the crate (it defines every symbol the object exports):
//! then its dependents bind to the image. [`Manifest::dependency_plan`] makes that decision.

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use serde::{Deserialize, Serialize};

use crate::digest::Sha256;
use crate::policy::AppInterface;

/// Where a cell lives in the source tree, and so which namespace it is loaded into by default.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CellKind {
    /// `cells/kernel/*`: loaded into `_kernel` at boot.
    Kernel,
    /// `cells/libs/*`: library cells that kernel cells or applications use.
    Libs,
    /// `cells/apps/*`: applications, each run in its own namespace.
    Apps,
    /// `cells/upgrades/*`: new versions of other cells, loaded only by a swap.
    Upgrades,
    /// A library crate in a cell's dependency closure that is not a cell crate itself (a
    /// crates.io crate, say): loaded before the cells that use it, unless the base image links it.
    Deps,
}

impl CellKind {
    /// The directory name under `cells/` (and under `target/cells/`).
    pub fn dir(self) -> &'static str {
        match self {
            CellKind::Kernel => "kernel",
            CellKind::Libs => "libs",
            CellKind::Apps => "apps",
            CellKind::Upgrades => "upgrades",
            CellKind::Deps => "deps",
        }
    }

    /// The kind whose directory is `dir`, if any.
    pub fn from_dir(dir: &str) -> Option<CellKind> {
        match dir {
            "kernel" => Some(CellKind::Kernel),
            "libs" => Some(CellKind::Libs),
            "apps" => Some(CellKind::Apps),
            "upgrades" => Some(CellKind::Upgrades),
            "deps" => Some(CellKind::Deps),
            _ => None,
        }
    }
}

/// One cell object as the build tool wrote it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestEntry {
    /// The crate name (`kernel_fs`), which is also the cell's name.
    pub name: String,
    /// The crate version from its `Cargo.toml`.
    pub version: String,
    /// Which part of `cells/` the crate lives in.
    pub kind: CellKind,
    /// The object's path relative to the manifest's directory (`kernel/kernel_fs.o`).
    pub object: String,
    /// The object's size in bytes.
    pub size: u64,
    /// SHA-256 of the object.
    pub sha256: Sha256,
    /// Mangled names of the global symbols the object defines.
    pub exports: Vec<String>,
    /// Names of the cells this cell depends on (its cell dependencies in `Cargo.toml`).
    pub depends_on: Vec<String>,
    /// Library cells an application brings in its own version of
    /// (`[package.metadata.cell] brings = ["greet"]`): loaded from `cells/upgrades` into the
    /// application's namespace, where they shadow the kernel's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub brings: Vec<String>,
    /// Ed25519 signature of the object's bytes, lowercase hex (`cargo cell build --sign KEY`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
    /// The dependency cells this cell uses directly (its normal dependencies that are not cells),
    /// by [`CrateInfo::key`], sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub crates: Vec<String>,
    /// For a dependency cell ([`CellKind::Deps`]): which build of which crate it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crate_info: Option<CrateInfo>,
    /// For a new version ([`CellKind::Upgrades`]) that moves dependency crates to other releases:
    /// what moved, what was rebuilt with it, and which renamed symbols the build verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dependency_upgrade: Option<DependencyUpgrade>,
    /// For a cell the build recompiled, unchanged, against another cell's dependency upgrade
    /// ([`CellKind::Upgrades`]): the name of the cell whose upgrade it belongs to. It is swapped in
    /// the same transaction as that upgrade.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rebuilt_for: Option<String>,
    /// For a kernel or library cell: the symbols applications may bind to
    /// (`[package.metadata.cell] app_interface`, see [`crate::policy`]). `None`: it declares none,
    /// and only kernel cells bind to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_interface: Option<AppInterface>,
    /// For an application: the cells of its own namespace its namespace policy grants it, internals
    /// included (`[package.metadata.cell] grants = ["greet"]`, a library it brings).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub grants: Vec<String>,
    /// For an application: whether the build compiled its own code with `unsafe` forbidden
    /// (`-F unsafe_code`). Signatures cover it, so the claim is bound to the object's bytes.
    #[serde(default, skip_serializing_if = "core::ops::Not::not")]
    pub unsafe_forbidden: bool,
}

/// A new version that moves dependency crates to other releases (issue "every crate a cell").
///
/// A new release of a crate changes its crate hash, and cargo folds every dependency's identity
/// into its dependents': every mangled name in the bumped crate and in every crate compiled
/// against it changes. So the upgrade is a set: the new releases of the bumped crates, the cell,
/// and every cell rebuilt against them ([`ManifestEntry::rebuilt_for`]), swapped in one
/// transaction. The compiler checked the rebuilt cells against each other; what is not rebuilt
/// (the host's handles) binds through [`DependencyUpgrade::renames`], which the build verified
/// from both versions' sources.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DependencyUpgrade {
    /// The dependency cells that move: `(old key, new key)`, sorted.
    pub bumped: Vec<(String, String)>,
    /// The cells rebuilt unchanged against the new releases (their new objects are
    /// [`CellKind::Upgrades`] entries with `rebuilt_for` set), sorted.
    pub rebuilt: Vec<String>,
    /// Symbols of the cells in the set whose mangled name changed and whose signature the build
    /// found equal in both versions' sources, with only `core`/`alloc`/`std` types in it: a caller
    /// outside the set may be moved from `from` to `to`.
    pub renames: Vec<Rename>,
    /// Exported symbols whose new name the build could not vouch for, with the reason: a caller
    /// outside the set that binds to one makes the swap refuse, naming it.
    pub unverified: Vec<Unverified>,
}

/// A symbol renamed by a dependency upgrade, checked by the build.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rename {
    /// The old mangled name.
    pub from: String,
    /// The new mangled name.
    pub to: String,
    /// The signature (or a static's type) both versions declare, as the build read it.
    pub signature: String,
}

/// A renamed symbol the build could not vouch for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unverified {
    /// The old mangled name.
    pub from: String,
    /// Why (`its signature mentions `Store`, which is not a core/alloc/std type`).
    pub reason: String,
}

/// Which build of a crate a dependency cell is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CrateInfo {
    /// How other entries name it in [`ManifestEntry::crates`]: `<crate>-<version>`, with the first
    /// eight digits of cargo's metadata hash appended when two builds of one release are present.
    pub key: String,
    /// The package name (`regex-automata`; the entry's name is the crate name, `regex_automata`).
    pub package: String,
    /// Where the package comes from: cargo's source id (`registry+https://...`), or `path` for a
    /// local crate.
    pub source: String,
    /// The features it was built with, sorted.
    pub features: Vec<String>,
    /// cargo's metadata hash of this build (from the rlib's file name): two builds with the same
    /// one carry the same symbol hashes.
    pub metadata_hash: String,
    /// Whether the hosted base image (`nano_core`) links this build (its executable defines every
    /// symbol the object exports), so that hosted cells bind to the image instead of loading it.
    pub in_base_image: bool,
}

/// The manifest's file name in a cells directory (`target/cells/manifest.json`).
pub const MANIFEST_FILE: &str = "manifest.json";

/// Everything `cargo cell build` produced.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The rustc that built the cells (`rustc -V`); the base image must come from the same one.
    pub rustc: String,
    /// For a signed manifest: the signing's serial number, which only grows (`cargo cell sign`
    /// takes the larger of the previous serial + 1 and the time in seconds). Every signature
    /// covers it, so entries of two signings cannot be mixed, and a verifier that remembers the
    /// highest serial it accepted refuses an older manifest (a rollback).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<u64>,
    /// The cells, sorted by kind and name.
    pub cells: Vec<ManifestEntry>,
}

impl Manifest {
    /// The entry for the cell `name` of kind `kind`.
    pub fn get(&self, kind: CellKind, name: &str) -> Option<&ManifestEntry> {
        self.cells.iter().find(|c| c.kind == kind && c.name == name)
    }

    /// [`Manifest::get`], to change the entry.
    pub fn get_mut(&mut self, kind: CellKind, name: &str) -> Option<&mut ManifestEntry> {
        self.cells
            .iter_mut()
            .find(|c| c.kind == kind && c.name == name)
    }

    /// The dependency cell whose [`CrateInfo::key`] is `key`.
    pub fn dep(&self, key: &str) -> Option<&ManifestEntry> {
        self.cells
            .iter()
            .find(|c| c.crate_info.as_ref().is_some_and(|i| i.key == key))
    }

    /// The cells of `kind` in an order where every cell comes after the cells it depends on
    /// (dependencies of another kind are ignored). Returns the names of the cells that form a
    /// cycle as the error. Linear in the cells and their dependencies (Kahn's algorithm).
    pub fn load_order(&self, kind: CellKind) -> Result<Vec<&ManifestEntry>, Vec<String>> {
        let cells: Vec<&ManifestEntry> = self.cells.iter().filter(|c| c.kind == kind).collect();
        let index: BTreeMap<&str, usize> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| (c.name.as_str(), i))
            .collect();
        let edges = cells.iter().map(|c| {
            c.depends_on
                .iter()
                .filter_map(|d| index.get(d.as_str()).copied())
                .collect::<Vec<usize>>()
        });
        topological(&cells, edges.collect())
            .map_err(|stuck| stuck.iter().map(|i| cells[*i].name.clone()).collect())
    }

    /// Every dependency cell `root` needs, directly or not, each after the dependency cells it
    /// needs itself (and so in an order they can be loaded in). `root` itself is not included.
    pub fn dependency_closure(
        &self,
        root: &ManifestEntry,
    ) -> Result<Vec<&ManifestEntry>, PlanError> {
        // Collect the closure breadth first, then order it.
        let mut found: Vec<&ManifestEntry> = Vec::new();
        let mut index: BTreeMap<&str, usize> = BTreeMap::new();
        let mut todo: Vec<(&ManifestEntry, &str)> =
            root.crates.iter().map(|k| (root, k.as_str())).collect();
        while let Some((from, key)) = todo.pop() {
            if index.contains_key(key) {
                continue;
            }
            let entry = self.dep(key).ok_or_else(|| PlanError::UnknownCrate {
                cell: from.name.clone(),
                key: key.into(),
            })?;
            index.insert(key, found.len());
            found.push(entry);
            todo.extend(entry.crates.iter().map(|k| (entry, k.as_str())));
        }
        let edges = found
            .iter()
            .map(|e| {
                e.crates
                    .iter()
                    .filter_map(|k| index.get(k.as_str()).copied())
                    .collect()
            })
            .collect();
        topological(&found, edges).map_err(|stuck| PlanError::Cycle {
            cells: stuck.iter().map(|i| found[*i].name.clone()).collect(),
        })
    }

    /// The dependency cells to load before `root`: its [closure](Manifest::dependency_closure)
    /// without those for which `skip` says true (already loaded where `root` will see them, or
    /// linked by the base image; see [`ManifestEntry::provided_by`]).
    pub fn dependency_plan(
        &self,
        root: &ManifestEntry,
        skip: &mut dyn FnMut(&ManifestEntry) -> bool,
    ) -> Result<Vec<&ManifestEntry>, PlanError> {
        let mut plan = self.dependency_closure(root)?;
        plan.retain(|e| !skip(e));
        Ok(plan)
    }

    /// The entries that use the dependency cell `key` directly, sorted by kind and name.
    pub fn users_of(&self, key: &str) -> Vec<&ManifestEntry> {
        self.cells
            .iter()
            .filter(|c| c.crates.iter().any(|k| k == key))
            .collect()
    }
}

impl ManifestEntry {
    /// What a signature of this entry covers in a manifest with serial number `serial`: the
    /// cell's identity (name, kind, version, dependency key) and its object's SHA-256, so that a
    /// signed object cannot be presented as another cell, another kind or another version, and the
    /// serial, so that it cannot be carried into another signing's manifest. Signing the object's
    /// bytes alone bound none of that.
    pub fn signed_statement(&self, serial: u64) -> String {
        alloc::format!(
            "cells-signature v1\nname {}\nkind {}\nversion {}\nkey {}\nsha256 {}\nserial {serial}\n",
            self.name,
            self.kind.dir(),
            self.version,
            self.key(),
            self.sha256
        ) + &self.policy_statement()
    }

    /// The policy claims a signature covers besides the identity: an application's safety claim
    /// and grants, a cell's application interface. Empty for an entry that makes none, so the
    /// statement of such an entry is what it was before policies.
    fn policy_statement(&self) -> String {
        let mut out = String::new();
        if self.unsafe_forbidden {
            out.push_str("unsafe forbidden\n");
        }
        for g in &self.grants {
            out += &alloc::format!("grant {g}\n");
        }
        if let Some(i) = &self.app_interface {
            for item in &i.items {
                out += &alloc::format!("interface {item}\n");
            }
        }
        out
    }

    /// The key other entries name this one by in [`ManifestEntry::crates`] (dependency cells), or
    /// its name.
    pub fn key(&self) -> &str {
        self.crate_info.as_ref().map_or(&self.name, |i| &i.key)
    }

    /// Whether an image for which `defines` says which symbols it has already provides this
    /// crate: it defines every symbol the object exports, so dependents can bind to the image and
    /// the cell need not be loaded. An image that links another build of the crate (other
    /// features, another profile) has other symbol hashes and does not provide it.
    pub fn provided_by(&self, defines: &mut dyn FnMut(&str) -> bool) -> bool {
        self.kind == CellKind::Deps && self.exports.iter().all(|s| defines(s))
    }
}

/// Why a dependency plan cannot be made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PlanError {
    /// An entry names a dependency cell that the manifest does not have.
    UnknownCrate {
        /// The entry that names it.
        cell: String,
        /// The key it names.
        key: String,
    },
    /// Dependency cells that need each other in a cycle.
    Cycle {
        /// Their names.
        cells: Vec<String>,
    },
}

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlanError::UnknownCrate { cell, key } => write!(
                f,
                "cell `{cell}` needs the dependency cell `{key}`, which the manifest does not have \
                 (rebuild with `cargo cell build`)"
            ),
            PlanError::Cycle { cells } => write!(
                f,
                "dependency cells need each other in a cycle: {}",
                cells.join(", ")
            ),
        }
    }
}

impl core::error::Error for PlanError {}

/// `items` in an order where each comes after the ones `edges[i]` lists for it (Kahn's
/// algorithm, stable: among the ready ones, the lowest index first). Returns the indices of the
/// items left in a cycle as the error.
fn topological<'m>(
    items: &[&'m ManifestEntry],
    edges: Vec<Vec<usize>>,
) -> Result<Vec<&'m ManifestEntry>, Vec<usize>> {
    let n = items.len();
    let mut waiting: Vec<usize> = edges.iter().map(Vec::len).collect();
    let mut users: Vec<Vec<usize>> = alloc::vec![Vec::new(); n];
    for (i, deps) in edges.iter().enumerate() {
        for d in deps {
            users[*d].push(i);
        }
    }
    let mut ready: BTreeSet<usize> = (0..n).filter(|i| waiting[*i] == 0).collect();
    let mut order = Vec::with_capacity(n);
    while let Some(i) = ready.pop_first() {
        order.push(items[i]);
        for u in &users[i] {
            waiting[*u] -= 1;
            if waiting[*u] == 0 {
                ready.insert(*u);
            }
        }
    }
    if order.len() < n {
        return Err((0..n).filter(|i| waiting[*i] > 0).collect());
    }
    Ok(order)
}
