//! Dependency cells: every library crate in a cell's dependency closure that is not a cell crate
//! itself (a crates.io crate, a git or path crate) becomes a cell of its own.
//!
//! What is a dependency comes from cargo, never from guessing: `cargo metadata` gives the resolved
//! package graph (normal dependencies on this host; build dependencies, dev dependencies and proc
//! macros are left out, and so is everything only they need), and the JSON messages of the build
//! that compiled the cells give the unit of each package (its rlib, features and metadata hash).
//! Each unit's rlib holds one object (the profile's `codegen-units = 1` applies to every package),
//! which is written to `<target>/cells/deps/<crate>-<version>.o`.
//!
//! A dependency is keyed by the exact unit cargo built, not by its name: two builds of one release
//! (other features) are two dependency cells, and two releases of one crate are too. Whether the
//! hosted base image links a unit is measured on the built `nano_core` executable: it does when it
//! defines every symbol the object exports (an image that merely has the package somewhere in its
//! dependency graph may not have pulled its object in, and one built with other features has other
//! symbol hashes).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use crate_metadata::{CellKind, CrateInfo, ManifestEntry};
use serde::Deserialize;

use crate::cargo_build::{CargoArtifacts, LibUnit};
use crate::objects::{cell_object, exported_symbols, hashed_rlib, rlib_hash, sha256};
use crate::workspace::cargo_binary;

/// The resolved package graph of a workspace, as far as dependency cells need it.
#[derive(Clone, Debug, Default)]
pub struct CrateGraph {
    packages: HashMap<String, PackageInfo>,
    /// Package id to its normal dependencies on this host: (package id, the name it is used by).
    deps: HashMap<String, Vec<String>>,
    /// Package id to the features the resolver enabled.
    features: HashMap<String, Vec<String>>,
}

#[derive(Clone, Debug)]
struct PackageInfo {
    name: String,
    version: String,
    source: Option<String>,
    /// The library target's crate name, and whether it is a proc macro; `None` without a library.
    lib: Option<(String, bool)>,
}

impl CrateGraph {
    /// Runs `cargo metadata` (the whole resolve, filtered to the host platform) in `root`.
    pub fn load(root: &Path, target_dir: Option<&Path>) -> Result<CrateGraph> {
        let host = host_triple(root)?;
        let mut cmd = Command::new(cargo_binary());
        cmd.args([
            "metadata",
            "--format-version",
            "1",
            "--filter-platform",
            &host,
        ])
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
        Ok(CrateGraph::from_metadata(metadata))
    }

    fn from_metadata(metadata: Metadata) -> CrateGraph {
        let mut graph = CrateGraph::default();
        for p in metadata.packages {
            let lib = p.targets.iter().find_map(|t| {
                let proc_macro = t.kind.iter().any(|k| k == "proc-macro");
                let lib = t.kind.iter().any(|k| k == "lib" || k == "rlib");
                (lib || proc_macro).then(|| (t.name.replace('-', "_"), proc_macro))
            });
            graph.packages.insert(
                p.id,
                PackageInfo {
                    name: p.name,
                    version: p.version,
                    source: p.source,
                    lib,
                },
            );
        }
        for node in metadata.resolve.map(|r| r.nodes).unwrap_or_default() {
            let normal = node
                .deps
                .into_iter()
                .filter(|d| d.dep_kinds.iter().any(|k| k.kind.is_none()))
                .map(|d| d.pkg)
                .collect();
            graph.deps.insert(node.id.clone(), normal);
            graph.features.insert(node.id, node.features);
        }
        graph
    }

    /// The direct normal dependencies of package `id` that are libraries linked into its code
    /// (proc macros and packages without a library left out).
    fn library_deps(&self, id: &str) -> Vec<&str> {
        self.deps
            .get(id)
            .into_iter()
            .flatten()
            .filter(|d| {
                self.packages
                    .get(d.as_str())
                    .is_some_and(|p| matches!(p.lib, Some((_, false))))
            })
            .map(String::as_str)
            .collect()
    }

    /// Every package the packages `roots` depend on through normal library dependencies,
    /// directly or not, without descending into `cells` (which are cells of their own). For each:
    /// its direct dependencies among them. Sorted by package id.
    pub fn closure(&self, roots: &[&str], cells: &HashSet<&str>) -> BTreeMap<String, Vec<String>> {
        let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut todo: Vec<&str> = roots
            .iter()
            .flat_map(|r| self.library_deps(r))
            .filter(|d| !cells.contains(d))
            .collect();
        while let Some(id) = todo.pop() {
            if out.contains_key(id) {
                continue;
            }
            let deps: Vec<&str> = self
                .library_deps(id)
                .into_iter()
                .filter(|d| !cells.contains(d))
                .collect();
            todo.extend(&deps);
            out.insert(
                id.to_owned(),
                deps.iter().map(|d| (*d).to_owned()).collect(),
            );
        }
        out
    }

    /// The direct dependencies of `id` among `set` (see [`CrateGraph::closure`]).
    pub fn direct_deps_in(&self, id: &str, set: &BTreeMap<String, Vec<String>>) -> Vec<String> {
        let mut deps: Vec<String> = self
            .library_deps(id)
            .into_iter()
            .filter(|d| set.contains_key(*d))
            .map(str::to_owned)
            .collect();
        deps.sort();
        deps.dedup();
        deps
    }
}

/// The unit ids of the dependency cells reachable from `direct` through `cells`' dependencies,
/// `direct` included.
pub fn closure_of(direct: &[String], cells: &[DepCell]) -> BTreeSet<String> {
    let by_unit: HashMap<String, &DepCell> = cells.iter().map(|c| (c.unit_id(), c)).collect();
    let mut seen = BTreeSet::new();
    let mut todo: Vec<&String> = direct.iter().collect();
    while let Some(unit) = todo.pop() {
        if seen.insert(unit.clone()) {
            if let Some(cell) = by_unit.get(unit) {
                todo.extend(&cell.deps);
            }
        }
    }
    seen
}

/// A dependency crate's unit, with its object.
#[derive(Clone, Debug)]
pub struct DepCell {
    /// Cargo's package id.
    pub package_id: String,
    /// The crate name (`regex_automata`): the cell's name.
    pub name: String,
    /// The package name (`regex-automata`).
    pub package: String,
    /// The package version.
    pub version: String,
    /// Cargo's source id, or `path` for a local package.
    pub source: String,
    /// The unit's features, sorted.
    pub features: Vec<String>,
    /// Cargo's metadata hash of the unit.
    pub metadata_hash: String,
    /// The object.
    pub object: Vec<u8>,
    /// Its exports.
    pub exports: Vec<String>,
    /// The [unit ids](DepCell::unit_id) of its direct dependencies among the dependency cells.
    pub deps: Vec<String>,
}

impl DepCell {
    /// The unit's identity, `<crate>@<version>#<metadata hash>`: two dependency cells are the same
    /// build when it is equal, whichever workspace (the shadow of an upgrade, say) built them.
    pub fn unit_id(&self) -> String {
        format!("{}@{}#{}", self.name, self.version, self.metadata_hash)
    }
}

/// The dependency cells of one build, and which of them each package of that build uses.
#[derive(Clone, Debug, Default)]
pub struct DepCells {
    /// The dependency cells, sorted by package id.
    pub cells: Vec<DepCell>,
    /// Package id (of that build's workspace) to unit id.
    pub unit_of: HashMap<String, String>,
}

impl DepCells {
    /// The unit ids of the dependency cells that the package `id` uses directly, sorted.
    pub fn direct(&self, graph: &CrateGraph, id: &str) -> Vec<String> {
        let mut units: Vec<String> = graph
            .library_deps(id)
            .into_iter()
            .filter_map(|d| self.unit_of.get(d).cloned())
            .collect();
        units.sort();
        units.dedup();
        units
    }
}

/// The dependency cells of the packages `roots` (cells of the workspace the graph and the build
/// came from; `cells` are the ids of every cell package there). Each unit's object is read from
/// the rlib cargo reported.
pub fn collect(
    graph: &CrateGraph,
    artifacts: &CargoArtifacts,
    roots: &[&str],
    cells: &HashSet<&str>,
) -> Result<DepCells> {
    let closure = graph.closure(roots, cells);
    let mut out: Vec<DepCell> = Vec::with_capacity(closure.len());
    for id in closure.keys() {
        let Some(info) = graph.packages.get(id) else {
            continue;
        };
        let Some((crate_name, _)) = &info.lib else {
            continue;
        };
        let unit = pick_unit(graph, artifacts, id, &info.name)?;
        let archive = std::fs::read(&unit.rlib).with_context(|| {
            format!(
                "cannot read {} (crate `{}` {})",
                unit.rlib.display(),
                info.name,
                info.version
            )
        })?;
        let object = cell_object(&archive, crate_name)?;
        let exports = exported_symbols(&object).with_context(|| {
            format!(
                "cannot read the object of crate `{}` {}",
                info.name, info.version
            )
        })?;
        let rlib = hashed_rlib(&unit.rlib).unwrap_or_else(|| unit.rlib.clone());
        let metadata_hash = rlib_hash(&rlib).unwrap_or_default().to_owned();
        let mut features = unit.features.clone();
        features.sort();
        out.push(DepCell {
            package_id: id.clone(),
            name: crate_name.clone(),
            package: info.name.clone(),
            version: info.version.clone(),
            source: info.source.clone().unwrap_or_else(|| "path".into()),
            features,
            metadata_hash,
            object,
            exports,
            deps: graph.direct_deps_in(id, &closure),
        });
    }
    // Dependencies by unit id rather than by this workspace's package ids.
    let unit_of: HashMap<String, String> = out
        .iter()
        .map(|c| (c.package_id.clone(), c.unit_id()))
        .collect();
    for cell in &mut out {
        let mut deps: Vec<String> = cell
            .deps
            .iter()
            .filter_map(|d| unit_of.get(d).cloned())
            .collect();
        deps.sort();
        cell.deps = deps;
    }
    Ok(DepCells {
        cells: out,
        unit_of,
    })
}

/// The unit of package `id` that the cells link: the only library unit cargo built for it, or,
/// when it built several (other features for build scripts and proc macros), the one with the
/// features the resolver gave the package.
fn pick_unit<'a>(
    graph: &CrateGraph,
    artifacts: &'a CargoArtifacts,
    id: &str,
    name: &str,
) -> Result<&'a LibUnit> {
    let units: Vec<&LibUnit> = artifacts
        .units
        .iter()
        .filter(|u| u.package_id == id)
        .collect();
    match units.as_slice() {
        [] => bail!("cargo built no library of `{name}` ({id}), which a cell depends on"),
        [one] => Ok(one),
        many => {
            let wanted: BTreeSet<&str> = graph
                .features
                .get(id)
                .into_iter()
                .flatten()
                .map(String::as_str)
                .collect();
            let matching: Vec<&&LibUnit> = many
                .iter()
                .filter(|u| {
                    u.features
                        .iter()
                        .map(String::as_str)
                        .collect::<BTreeSet<_>>()
                        == wanted
                })
                .collect();
            match matching.as_slice() {
                [one] => Ok(one),
                _ => bail!(
                    "cargo built {} units of `{name}` ({id}) and none has exactly the features the \
                     resolver gave it ({}): cannot tell which one the cells link",
                    many.len(),
                    wanted.into_iter().collect::<Vec<_>>().join(", ")
                ),
            }
        }
    }
}

/// Gives every dependency cell its key: `<crate>-<version>`, and where two builds of one release
/// are present, `<crate>-<version>-<first 8 digits of the metadata hash>` for each of them.
pub fn assign_keys(cells: &[DepCell]) -> Vec<String> {
    let mut count: HashMap<(&str, &str), usize> = HashMap::new();
    for c in cells {
        *count.entry((&c.name, &c.version)).or_default() += 1;
    }
    cells
        .iter()
        .map(|c| {
            let base = format!("{}-{}", c.name, c.version);
            if count[&(c.name.as_str(), c.version.as_str())] > 1 {
                format!(
                    "{base}-{}",
                    c.metadata_hash.get(..8).unwrap_or(&c.metadata_hash)
                )
            } else {
                base
            }
        })
        .collect()
}

/// The manifest entry of dependency cell `cell` with key `key`; `key_of` gives the key of a
/// dependency by unit id; `image` is the set of symbols the hosted base image defines.
pub fn manifest_entry(
    cell: &DepCell,
    key: &str,
    key_of: &dyn Fn(&str) -> Option<String>,
    image: Option<&HashSet<String>>,
) -> ManifestEntry {
    let in_base_image = image.is_some_and(|image| {
        !cell.exports.is_empty() && cell.exports.iter().all(|s| image.contains(s))
    });
    let mut crates: Vec<String> = cell.deps.iter().filter_map(|d| key_of(d)).collect();
    crates.sort();
    crates.dedup();
    ManifestEntry {
        name: cell.name.clone(),
        version: cell.version.clone(),
        kind: CellKind::Deps,
        object: format!("{}/{key}.o", CellKind::Deps.dir()),
        size: cell.object.len() as u64,
        sha256: sha256(&cell.object),
        exports: cell.exports.clone(),
        depends_on: Vec::new(),
        brings: Vec::new(),
        signature: None,
        crates,
        crate_info: Some(CrateInfo {
            key: key.to_owned(),
            package: cell.package.clone(),
            source: cell.source.clone(),
            features: cell.features.clone(),
            metadata_hash: cell.metadata_hash.clone(),
            in_base_image,
        }),
        dependency_upgrade: None,
        rebuilt_for: None,
        app_interface: None,
        grants: Vec::new(),
        unsafe_forbidden: false,
    }
}

/// The names of every symbol the executable at `path` defines (`.dynsym` and `.symtab`).
pub fn image_symbols(path: &Path) -> Result<HashSet<String>> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let elf = goblin::elf::Elf::parse(&bytes)
        .with_context(|| format!("{} is not an ELF file", path.display()))?;
    let mut names = HashSet::new();
    for sym in elf.dynsyms.iter().filter(|s| s.st_shndx != 0) {
        if let Some(name) = elf.dynstrtab.get_at(sym.st_name) {
            names.insert(name.to_owned());
        }
    }
    for sym in elf.syms.iter().filter(|s| s.st_shndx != 0) {
        if let Some(name) = elf.strtab.get_at(sym.st_name) {
            names.insert(name.to_owned());
        }
    }
    Ok(names)
}

/// The host's target triple (`rustc -vV`), run in `dir` so its toolchain file applies.
pub fn host_triple(dir: &Path) -> Result<String> {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let output = Command::new(&rustc)
        .arg("-vV")
        .current_dir(dir)
        .output()
        .with_context(|| format!("cannot run `{} -vV`", rustc.to_string_lossy()))?;
    let text = String::from_utf8_lossy(&output.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix("host: "))
        .map(|h| h.trim().to_owned())
        .context("`rustc -vV` names no host triple")
}

/// Where a dependency cell's object goes, relative to `<target>/cells`.
pub fn object_path(key: &str) -> PathBuf {
    PathBuf::from(CellKind::Deps.dir()).join(format!("{key}.o"))
}

/// The parts of `cargo metadata --format-version 1` this module reads.
#[derive(Deserialize)]
struct Metadata {
    packages: Vec<Package>,
    resolve: Option<Resolve>,
}

#[derive(Deserialize)]
struct Package {
    name: String,
    version: String,
    id: String,
    source: Option<String>,
    #[serde(default)]
    targets: Vec<Target>,
}

#[derive(Deserialize)]
struct Target {
    name: String,
    kind: Vec<String>,
}

#[derive(Deserialize)]
struct Resolve {
    nodes: Vec<Node>,
}

#[derive(Deserialize)]
struct Node {
    id: String,
    #[serde(default)]
    deps: Vec<NodeDep>,
    #[serde(default)]
    features: Vec<String>,
}

#[derive(Deserialize)]
struct NodeDep {
    pkg: String,
    #[serde(default)]
    dep_kinds: Vec<DepKind>,
}

#[derive(Deserialize)]
struct DepKind {
    kind: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dep(name: &str, version: &str, hash: &str) -> DepCell {
        DepCell {
            package_id: format!("{name}@{version}"),
            name: name.into(),
            package: name.into(),
            version: version.into(),
            source: "path".into(),
            features: Vec::new(),
            metadata_hash: hash.into(),
            object: Vec::new(),
            exports: Vec::new(),
            deps: Vec::new(),
        }
    }

    #[test]
    fn keys_name_the_release_and_the_build_only_when_needed() {
        let cells = [
            dep("heapless", "0.9.3", "0123456789abcdef"),
            dep("heapless", "0.8.0", "1111111111111111"),
            dep("log", "0.4.35", "aaaaaaaabbbbbbbb"),
            dep("log", "0.4.35", "ccccccccdddddddd"),
        ];
        assert_eq!(
            assign_keys(&cells),
            [
                "heapless-0.9.3",
                "heapless-0.8.0",
                "log-0.4.35-aaaaaaaa",
                "log-0.4.35-cccccccc"
            ]
        );
    }

    #[test]
    fn the_closure_stops_at_cells_and_proc_macros() {
        let json = r#"{
          "packages": [
            {"name":"app","version":"0.1.0","id":"app","source":null,"targets":[{"name":"app","kind":["lib"]}]},
            {"name":"kcell","version":"0.1.0","id":"kcell","source":null,"targets":[{"name":"kcell","kind":["lib"]}]},
            {"name":"regex","version":"1.0.0","id":"regex","source":"registry","targets":[{"name":"regex","kind":["lib"]}]},
            {"name":"memchr","version":"2.0.0","id":"memchr","source":"registry","targets":[{"name":"memchr","kind":["lib"]}]},
            {"name":"derive-it","version":"1.0.0","id":"derive","source":"registry","targets":[{"name":"derive-it","kind":["proc-macro"]}]},
            {"name":"syn","version":"2.0.0","id":"syn","source":"registry","targets":[{"name":"syn","kind":["lib"]}]},
            {"name":"cc","version":"1.0.0","id":"cc","source":"registry","targets":[{"name":"cc","kind":["lib"]}]}
          ],
          "resolve": {"nodes": [
            {"id":"app","deps":[
              {"pkg":"kcell","dep_kinds":[{"kind":null}]},
              {"pkg":"regex","dep_kinds":[{"kind":null}]},
              {"pkg":"derive","dep_kinds":[{"kind":null}]},
              {"pkg":"cc","dep_kinds":[{"kind":"build"}]}]},
            {"id":"kcell","deps":[{"pkg":"memchr","dep_kinds":[{"kind":null}]}]},
            {"id":"regex","deps":[{"pkg":"memchr","dep_kinds":[{"kind":null}]}]},
            {"id":"derive","deps":[{"pkg":"syn","dep_kinds":[{"kind":null}]}]}
          ]}
        }"#;
        let graph = CrateGraph::from_metadata(serde_json::from_str(json).unwrap());
        let cells: HashSet<&str> = ["app", "kcell"].into();
        let closure = graph.closure(&["app"], &cells);
        // kcell is a cell (its own dependencies are its business), derive-it a proc macro (syn is
        // only its dependency), cc a build dependency.
        assert_eq!(
            closure,
            BTreeMap::from([
                ("memchr".to_owned(), vec![]),
                ("regex".to_owned(), vec!["memchr".to_owned()]),
            ])
        );
        assert_eq!(graph.closure(&["kcell"], &cells).len(), 1);
    }
}
