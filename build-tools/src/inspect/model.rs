//! The one model every view reads: [`Snapshot`] (the loader's registry and namespaces, offline or
//! live), plus an index of the crate-level graph and the names people read.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use crate_metadata::{demangle, Cell, CellId, CellState, EdgeId, Origin, Registry};
use loader::platform::Platform;
use loader::System;

pub use namespace::{SnapshotSource, SystemSnapshot as Snapshot, UnresolvedCell, UnresolvedSymbol};

/// A snapshot of `system`'s registry and namespaces. `source` says whether the system runs
/// ([`SnapshotSource::Live`]) or is a dry link ([`SnapshotSource::Offline`]).
pub fn from_system<P: Platform>(system: &System<P>, source: SnapshotSource) -> Snapshot {
    let (registry, namespaces) = (system.registry().clone(), system.namespaces().clone());
    match source {
        SnapshotSource::Live => Snapshot::live(registry, namespaces),
        SnapshotSource::Offline => Snapshot::offline(registry, namespaces, Vec::new()),
    }
}

/// Parses a snapshot from its JSON.
pub fn parse(json: &str) -> Result<Snapshot> {
    serde_json::from_str(json).context("the text is not a cell-system snapshot (JSON)")
}

/// Reads a snapshot that `cargo cell snapshot` (or a running `nano_core`) wrote.
pub fn read(path: &Path) -> Result<Snapshot> {
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

/// The crate-level graph of a snapshot: for each cell, the cells it uses and the cells that use
/// it, each with the edges (slots) between them. Built once per command.
pub struct Index<'a> {
    /// The snapshot.
    pub snapshot: &'a Snapshot,
    /// Cell -> provider -> edges.
    pub uses: BTreeMap<CellId, BTreeMap<CellId, Vec<EdgeId>>>,
    /// Cell -> dependent -> edges.
    pub used_by: BTreeMap<CellId, BTreeMap<CellId, Vec<EdgeId>>>,
}

impl<'a> Index<'a> {
    /// Indexes `snapshot`'s edges.
    pub fn new(snapshot: &'a Snapshot) -> Index<'a> {
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

    /// The cells the views show: every object cell, or only those in namespace `namespace`.
    pub fn object_cells(&self, namespace: Option<&str>) -> Vec<&'a Cell> {
        self.registry()
            .cells()
            .filter(|c| c.origin == Origin::Object)
            .filter(|c| namespace.is_none() || self.namespace_name(c) == namespace)
            .collect()
    }

    /// Finds the cell a person means by `spec`: a name (`klog`), a name in a namespace
    /// (`klog@_kernel`), or an id (`cell#5`, `#5`). A name that several cells share picks the
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
        let (name, ns) = match spec.split_once('@') {
            Some((name, ns)) => (name, Some(ns)),
            None => (spec, namespace),
        };
        let matches: Vec<&Cell> = self
            .registry()
            .cells()
            .filter(|c| c.name == name)
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
