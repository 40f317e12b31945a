//! The one model every view reads: [`Model`], a [`Snapshot`] (the loader's registry and
//! namespaces, offline or live) with the build [`Manifest`] when it is known, plus an index of the
//! cell-level graph and the names people read.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::{bail, Context, Result};
use crate_metadata::{
    demangle, Cell, CellId, CellKind, CellState, EdgeId, Manifest, Origin, Registry,
};
use loader::platform::Platform;
use loader::System;
use serde::{Deserialize, Serialize};

use super::crates::{looks_like_version, Crates, EntryId};

pub use namespace::{SnapshotSource, SystemSnapshot as Snapshot, UnresolvedCell, UnresolvedSymbol};

/// What the views read: the loader's snapshot, and the build manifest that says which crate each
/// dependency cell is and which cells use which crates (`None` when it is not known: a generated
/// system, or a live system whose workspace manifest could not be read). Serialized as the
/// snapshot's members plus `manifest`, so a snapshot file without one still reads.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Model {
    /// The registry, the namespaces and what failed to link.
    #[serde(flatten)]
    pub snapshot: Snapshot,
    /// The build manifest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest: Option<Manifest>,
}

impl From<Snapshot> for Model {
    fn from(snapshot: Snapshot) -> Model {
        Model {
            snapshot,
            manifest: None,
        }
    }
}

/// A snapshot of `system`'s registry and namespaces. `source` says whether the system runs
/// ([`SnapshotSource::Live`]) or is a dry link ([`SnapshotSource::Offline`]).
pub fn from_system<P: Platform>(system: &System<P>, source: SnapshotSource) -> Snapshot {
    let (registry, namespaces) = (system.registry().clone(), system.namespaces().clone());
    match source {
        SnapshotSource::Live => Snapshot::live(registry, namespaces),
        SnapshotSource::Offline => Snapshot::offline(registry, namespaces, Vec::new()),
    }
}

/// Parses a snapshot (with or without a manifest) from its JSON.
pub fn parse(json: &str) -> Result<Model> {
    serde_json::from_str(json).context("the text is not a cell-system snapshot (JSON)")
}

/// Reads a snapshot that `cargo cell snapshot` (or a running `nano_core`) wrote.
pub fn read(path: &Path) -> Result<Model> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the snapshot {}", path.display()))?;
    parse(&text).with_context(|| format!("parsing {}", path.display()))
}

/// How names are shown.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Names {
    /// Show mangled symbol names instead of demangled paths.
    pub mangled: bool,
}

impl Names {
    /// A symbol as people read it: its demangled path without hash (`klog::push`), or the
    /// mangled name when asked for.
    pub fn symbol(&self, mangled: &str) -> String {
        if self.mangled {
            mangled.to_string()
        } else {
            demangle::path(mangled)
        }
    }

    /// A section name with the symbol in it demangled (`.text.klog::push`).
    pub fn section(&self, name: &str) -> String {
        if self.mangled {
            return name.to_string();
        }
        match ["._ZN", "._R"].iter().filter_map(|p| name.find(p)).min() {
            Some(at) => format!("{}.{}", &name[..at], demangle::path(&name[at + 1..])),
            None => name.to_string(),
        }
    }
}

/// The cell-level graph of a snapshot: for each cell, the cells it uses and the cells that use
/// it, each with the edges (slots) between them; and the crate graph of the manifest. Built once
/// per command.
pub struct Index<'a> {
    /// The snapshot.
    pub snapshot: &'a Snapshot,
    /// The manifest's crate graph, matched to the snapshot's cells.
    pub crates: Crates<'a>,
    /// Cell -> provider -> edges.
    pub uses: BTreeMap<CellId, BTreeMap<CellId, Vec<EdgeId>>>,
    /// Cell -> dependent -> edges.
    pub used_by: BTreeMap<CellId, BTreeMap<CellId, Vec<EdgeId>>>,
}

impl<'a> Index<'a> {
    /// Indexes `model`'s edges and crate graph.
    pub fn new(model: &'a Model) -> Index<'a> {
        let snapshot = &model.snapshot;
        let mut uses: BTreeMap<CellId, BTreeMap<CellId, Vec<EdgeId>>> = BTreeMap::new();
        let mut used_by: BTreeMap<CellId, BTreeMap<CellId, Vec<EdgeId>>> = BTreeMap::new();
        for (id, e) in snapshot.registry.edges() {
            if e.dependent == e.provider {
                continue;
            }
            uses.entry(e.dependent)
                .or_default()
                .entry(e.provider)
                .or_default()
                .push(id);
            used_by
                .entry(e.provider)
                .or_default()
                .entry(e.dependent)
                .or_default()
                .push(id);
        }
        Index {
            snapshot,
            crates: Crates::new(&snapshot.registry, model.manifest.as_ref()),
            uses,
            used_by,
        }
    }

    /// The registry.
    pub fn registry(&self) -> &'a Registry {
        &self.snapshot.registry
    }

    /// The cell `id`.
    pub fn cell(&self, id: CellId) -> Option<&'a Cell> {
        self.snapshot.registry.cell(id)
    }

    /// The name of the namespace of `cell` (`None` for the base image and the platform).
    pub fn namespace_name(&self, cell: &Cell) -> Option<&'a str> {
        let ns = cell.namespace?;
        self.snapshot.namespaces.get(ns).map(|n| n.name.as_str())
    }

    /// The providers `id` uses, with the edges to each.
    pub fn providers(&self, id: CellId) -> impl Iterator<Item = (CellId, &[EdgeId])> + '_ {
        self.uses
            .get(&id)
            .into_iter()
            .flatten()
            .map(|(c, e)| (*c, e.as_slice()))
    }

    /// The dependents of `id`, with the edges from each.
    pub fn dependents(&self, id: CellId) -> impl Iterator<Item = (CellId, &[EdgeId])> + '_ {
        self.used_by
            .get(&id)
            .into_iter()
            .flatten()
            .map(|(c, e)| (*c, e.as_slice()))
    }

    /// The slots of `cell` bound to the manifest entry `entry`: to a cell loaded from it, or, for
    /// a dependency crate the base image provides, to the image's copy (symbols of the image
    /// that the crate's object exports).
    pub fn slots_into(&self, cell: CellId, entry: EntryId) -> Vec<EdgeId> {
        let loaded = self.crates.loaded(entry);
        let image_copy: BTreeSet<&str> = self
            .crates
            .entry(entry)
            .filter(|e| e.kind == CellKind::Deps)
            .map(|e| e.exports.iter().map(String::as_str).collect())
            .unwrap_or_default();
        let base = self.cell(Registry::BASE);
        let mut out = Vec::new();
        for (p, edges) in self.providers(cell) {
            if loaded.contains(&p) {
                out.extend_from_slice(edges);
            } else if p == Registry::BASE && !image_copy.is_empty() {
                out.extend(edges.iter().copied().filter(|e| {
                    self.registry()
                        .edge(*e)
                        .and_then(|e| base?.symbol(e.symbol))
                        .is_some_and(|s| image_copy.contains(s.name.as_str()))
                }));
            }
        }
        out
    }

    /// The cells loaded from manifest entry `entry` that `cell` can see (in its namespace or one
    /// of the namespace's ancestors), live ones first.
    pub fn visible_loaded(&self, cell: &Cell, entry: EntryId) -> Vec<CellId> {
        let chain = cell
            .namespace
            .map(|ns| self.snapshot.namespaces.chain(ns))
            .unwrap_or_default();
        let mut out: Vec<&Cell> = self
            .crates
            .loaded(entry)
            .iter()
            .filter_map(|c| self.cell(*c))
            .filter(|c| c.namespace.is_some_and(|ns| chain.contains(&ns)))
            .collect();
        out.sort_by_key(|c| (c.state != CellState::Live, c.id));
        out.into_iter().map(|c| c.id).collect()
    }

    /// The cells loaded from the dependency crates `cell` is compiled against directly, where it
    /// can see them (whether or not it binds to them).
    pub fn crate_cells(&self, cell: &Cell) -> Vec<CellId> {
        let Some(entry) = self.crates.entry_of(cell.id) else {
            return Vec::new();
        };
        self.crates
            .uses(entry)
            .iter()
            .filter(|d| {
                self.crates
                    .entry(**d)
                    .is_some_and(|e| e.kind == CellKind::Deps)
            })
            .flat_map(|d| self.visible_loaded(cell, *d))
            .collect()
    }

    /// The cells the views show: every object cell, or only those in namespace `namespace`.
    pub fn object_cells(&self, namespace: Option<&str>) -> Vec<&'a Cell> {
        self.registry()
            .cells()
            .filter(|c| c.origin == Origin::Object)
            .filter(|c| namespace.is_none() || self.namespace_name(c) == namespace)
            .collect()
    }

    /// Finds the cell a person means by `spec`: a name (`klog`), a name in a namespace
    /// (`klog@_kernel`), a release (`unicode_width@0.2.3`), or an id (`cell#5`, `#5`). A name that several cells share picks the
    /// live one when exactly one is live; otherwise the error lists the candidates.
    pub fn find(&self, spec: &str, namespace: Option<&str>) -> Result<&'a Cell> {
        self.find_preferring(spec, namespace, |_| false)
    }

    /// Like [`Index::find`], but when a name is ambiguous and exactly one of the candidates
    /// satisfies `prefer`, that one (`--why hola greet` means the `greet` that `hola` uses).
    pub fn find_preferring(
        &self,
        spec: &str,
        namespace: Option<&str>,
        prefer: impl Fn(&Cell) -> bool,
    ) -> Result<&'a Cell> {
        let id = spec
            .strip_prefix("cell#")
            .or_else(|| spec.strip_prefix('#'))
            .and_then(|n| n.parse::<u32>().ok());
        if let Some(id) = id {
            return self
                .cell(CellId(id))
                .with_context(|| format!("the snapshot has no cell #{id}"));
        }
        // `name@0.2.3` is a release (dependency cells), `name@_kernel` a namespace.
        let (name, ns, version) = match spec.split_once('@') {
            Some((name, v)) if looks_like_version(v) => (name, namespace, Some(v)),
            Some((name, ns)) => (name, Some(ns), None),
            None => (spec, namespace, None),
        };
        let matches: Vec<&Cell> = self
            .registry()
            .cells()
            .filter(|c| c.name == name)
            .filter(|c| version.is_none_or(|v| c.version == v))
            .filter(|c| ns.is_none() || c.origin != Origin::Object || self.namespace_name(c) == ns)
            .collect();
        let live: Vec<&Cell> = matches
            .iter()
            .copied()
            .filter(|c| c.state == CellState::Live)
            .collect();
        let preferred: Vec<&Cell> = matches.iter().copied().filter(|c| prefer(c)).collect();
        if let ([_, _, ..], [one]) = (matches.as_slice(), preferred.as_slice()) {
            return Ok(one);
        }
        match (matches.as_slice(), live.as_slice()) {
            ([], _) => {
                let dep = self.crates.find(spec).ok().flatten();
                if let Some((dep, e)) = dep.and_then(|d| Some((d, self.crates.entry(d)?))) {
                    let (name, version) = (&e.name, &e.version);
                    let why = if self.crates.in_base_image(dep) {
                        "the base image links it, so the cells that use it bind to the image"
                    } else {
                        "no cell that needs it was linked"
                    };
                    bail!(
                        "no cell `{spec}`: the dependency crate {name} {version} is not loaded \
                         ({why}); `cargo cell ls --crates` lists the crates, and \
                         `cargo cell deps --invert {spec}` what uses it"
                    )
                }
                let mut known: Vec<&str> =
                    self.registry().cells().map(|c| c.name.as_str()).collect();
                known.sort();
                known.dedup();
                bail!("no cell `{spec}` (cells: {})", known.join(", "))
            }
            ([one], _) | (_, [one]) => Ok(*one),
            (many, _) => bail!(
                "`{spec}` names {} cells; say which: {}",
                many.len(),
                many.iter()
                    .map(|c| format!(
                        "#{} ({} {}, {})",
                        c.id.0,
                        self.namespace_name(c).unwrap_or("-"),
                        c.version,
                        state_name(c.state)
                    ))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
}

/// `live` or `retired`.
pub fn state_name(state: CellState) -> &'static str {
    match state {
        CellState::Live => "live",
        CellState::Retired => "retired",
    }
}

/// `offline` or `live`.
pub fn source_name(source: SnapshotSource) -> &'static str {
    match source {
        SnapshotSource::Offline => "offline",
        SnapshotSource::Live => "live",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn section_names_are_demangled() {
        let n = Names::default();
        assert_eq!(
            n.section(".text._ZN4klog4push17h0123456789abcdefE"),
            ".text.klog::push"
        );
        assert_eq!(n.section(".got"), ".got");
        assert_eq!(
            Names { mangled: true }.section(".text._ZN4klog4push17h0123456789abcdefE"),
            ".text._ZN4klog4push17h0123456789abcdefE"
        );
    }
}
