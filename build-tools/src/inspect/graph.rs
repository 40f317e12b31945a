//! The picture of a view for the graph formats (DOT and HTML): nodes, edges between them with
//! their slots and symbols, and the cells the view is about.

use std::collections::{BTreeMap, BTreeSet};

use crate_metadata::{CellId, CellKind, CellState, NamespaceId, Origin, Registry};
use serde::Serialize;

use super::crates::source_label;
use super::model::{source_name, Index, Names};
use super::views::{TreeNode, UnresolvedRow, View};

/// Ids of unresolved cells in a picture start here (they have no id in the registry).
pub const UNRESOLVED_BASE: u32 = 1 << 30;

/// How many symbol names an edge carries for display; the rest are counted.
const SYMBOLS_PER_EDGE: usize = 12;

/// A node: one cell.
#[derive(Clone, Debug, Serialize)]
pub struct Node {
    /// The cell's id (for an unresolved cell, [`UNRESOLVED_BASE`] plus its position).
    pub id: u32,
    /// Its name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// Its namespace (`""` for the base image and the platform).
    pub namespace: String,
    /// Total size of its sections.
    pub size: u64,
    /// `object`, `base`, `platform` or `unresolved`.
    pub kind: &'static str,
    /// A dependency crate's cell (`cells/` kind `deps`).
    pub dep: bool,
    /// Replaced by a swap.
    pub retired: bool,
    /// More to say in the page's side panel: a dependency crate's source, features and users;
    /// the crates the base image provides.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// A namespace of the picture, for grouping its cells.
#[derive(Clone, Debug, Serialize)]
pub struct GraphNamespace {
    /// Its name.
    pub name: String,
    /// Its parent's name.
    pub parent: Option<String>,
}

/// An edge: one cell uses another.
#[derive(Clone, Debug, Serialize)]
pub struct GraphEdge {
    /// The dependent.
    pub from: u32,
    /// The provider.
    pub to: u32,
    /// How many slots of `from` bind to `to`.
    pub slots: usize,
    /// The symbols (display names), at most a dozen.
    pub symbols: Vec<String>,
    /// How many more symbols there are.
    pub more: usize,
}

/// What the DOT and HTML formats draw.
#[derive(Clone, Debug, Serialize)]
pub struct Graph {
    /// What the picture shows.
    pub title: String,
    /// `offline` or `live`.
    pub source: &'static str,
    /// The cells.
    pub nodes: Vec<Node>,
    /// The uses between them.
    pub edges: Vec<GraphEdge>,
    /// The cells the view is about (highlighted first).
    pub focus: Vec<u32>,
    /// The namespaces of the nodes, parents before children.
    pub namespaces: Vec<GraphNamespace>,
}

/// The picture of `view`.
pub fn of(index: &Index<'_>, view: &View, names: Names) -> Graph {
    let mut cells: BTreeSet<CellId> = BTreeSet::new();
    let mut pairs: BTreeSet<(CellId, CellId)> = BTreeSet::new();
    let mut focus: Vec<CellId> = Vec::new();
    let title;
    match view {
        View::Ls { cells: rows } => {
            title = "cells".to_string();
            cells.extend(rows.iter().map(|r| CellId(r.cell.id)));
            with_neighbours(index, &mut cells);
            pairs = all_pairs(index, &cells);
        }
        View::Tree { roots, .. } => {
            title = "dependency tree".to_string();
            for r in roots {
                walk(r, None, &mut cells, &mut pairs);
            }
        }
        View::Info(info) => {
            title = format!("{} and its neighbours", info.cell.name);
            around(
                index,
                CellId(info.cell.id),
                &mut cells,
                &mut pairs,
                &mut focus,
            );
        }
        View::Symbols { cell, .. } => {
            title = format!("{}: slots and symbols", cell.name);
            around(index, CellId(cell.id), &mut cells, &mut pairs, &mut focus);
        }
        View::Addr { addr, hit } => {
            title = format!("{addr:#x}");
            if let Some(h) = hit {
                around(index, CellId(h.cell.id), &mut cells, &mut pairs, &mut focus);
            }
        }
        View::Crates { crates } => {
            title = "dependency crates".to_string();
            for c in crates {
                cells.extend(c.cells.iter().map(|r| CellId(r.id)));
                cells.extend(c.bound_by.iter().map(|u| CellId(u.cell.id)));
            }
            pairs = all_pairs(index, &cells);
        }
        View::InvertCrate {
            entry,
            cells: loaded,
            dependents,
            ..
        } => {
            title = format!("what a bump of {} {} touches", entry.name, entry.version);
            focus.extend(loaded.iter().map(|c| CellId(c.id)));
            cells.extend(focus.iter().copied());
            for d in dependents {
                let via = index.crates.by_key(&d.via.key, d.via.kind);
                for t in &d.cells {
                    let id = CellId(t.cell.id);
                    cells.insert(id);
                    for s in &t.slots {
                        let e = index.registry().edge(crate_metadata::EdgeId(s.edge));
                        if let Some(e) = e {
                            cells.insert(e.provider);
                            pairs.insert((e.dependent, e.provider));
                        }
                    }
                    // Compiled against it, bound to nothing in it: still a use of the crate.
                    let compiled = via.zip(index.cell(id));
                    if t.slots.is_empty() {
                        for v in compiled
                            .map(|(v, c)| index.visible_loaded(c, v))
                            .unwrap_or_default()
                        {
                            cells.insert(v);
                            pairs.insert((id, v));
                        }
                    }
                }
            }
        }
        View::Invert { cell, dependents } => {
            title = format!("what a swap of {} touches", cell.name);
            let id = CellId(cell.id);
            cells.insert(id);
            focus.push(id);
            for d in dependents {
                cells.insert(CellId(d.cell.id));
                pairs.insert((CellId(d.cell.id), CellId(d.via.id)));
            }
        }
        View::Why { from, to, path } => {
            title = format!("why {} depends on {}", from.name, to.name);
            cells.extend([CellId(from.id), CellId(to.id)]);
            focus.extend([CellId(from.id), CellId(to.id)]);
            for h in path {
                cells.extend([CellId(h.from.id), CellId(h.to.id)]);
                pairs.insert((CellId(h.from.id), CellId(h.to.id)));
            }
        }
        View::Cycles { cycles } => {
            title = "cycles".to_string();
            for c in cycles {
                cells.extend(c.iter().map(|r| CellId(r.id)));
            }
            focus.extend(cells.iter().copied());
            pairs = all_pairs(index, &cells);
        }
        View::Unresolved { .. } => {
            title = "cells that would fail to link".to_string();
            cells.extend(index.object_cells(None).iter().map(|c| c.id));
            with_neighbours(index, &mut cells);
            pairs = all_pairs(index, &cells);
        }
    }
    let mut graph = Graph {
        title,
        source: source_name(index.snapshot.source),
        nodes: cells
            .iter()
            .filter_map(|c| index.cell(*c))
            .map(|c| Node {
                id: c.id.0,
                name: c.name.clone(),
                version: c.version.clone(),
                namespace: index.namespace_name(c).unwrap_or("").to_string(),
                size: c.size(),
                kind: match c.origin {
                    Origin::Object => "object",
                    Origin::BaseImage => "base",
                    Origin::Platform => "platform",
                },
                dep: c.kind == Some(CellKind::Deps),
                retired: c.state == CellState::Retired,
                notes: notes(index, c),
            })
            .collect(),
        edges: pairs
            .iter()
            .map(|(from, to)| edge(index, *from, *to, names))
            .collect(),
        focus: focus.iter().map(|c| c.0).collect(),
        namespaces: Vec::new(),
    };
    if let View::Unresolved { cells } = view {
        add_unresolved(&mut graph, cells, names);
    }
    graph.namespaces = namespaces(index, &graph.nodes);
    graph
}

/// The namespaces `nodes` are in, with their ancestors, parents first.
fn namespaces(index: &Index<'_>, nodes: &[Node]) -> Vec<GraphNamespace> {
    let all = &index.snapshot.namespaces;
    let mut wanted: BTreeSet<NamespaceId> = BTreeSet::new();
    for n in nodes.iter().filter(|n| !n.namespace.is_empty()) {
        if let Some(ns) = all.by_name(&n.namespace) {
            wanted.extend(all.chain(ns.id));
        }
    }
    let depth = |id: NamespaceId| all.chain(id).len();
    let mut ids: Vec<NamespaceId> = wanted.into_iter().collect();
    ids.sort_by_key(|id| (depth(*id), *id));
    ids.into_iter()
        .filter_map(|id| all.get(id))
        .map(|ns| GraphNamespace {
            name: ns.name.clone(),
            parent: ns.parent.and_then(|p| all.get(p)).map(|p| p.name.clone()),
        })
        .collect()
}

/// What the page's side panel says about `cell` beyond its name: for a dependency crate, its
/// source, features and the cells compiled against it; for the base image, the crates it links.
fn notes(index: &Index<'_>, cell: &crate_metadata::Cell) -> Vec<String> {
    let crates = &index.crates;
    if cell.id == Registry::BASE {
        let linked: Vec<String> = crates
            .dependency_crates()
            .into_iter()
            .filter(|d| crates.in_base_image(*d))
            .filter_map(|d| crates.entry(d))
            .map(|e| format!("{} {}", e.name, e.version))
            .collect();
        if linked.is_empty() {
            return Vec::new();
        }
        return vec![format!("links the crates {}", linked.join(", "))];
    }
    let Some(entry) = crates.entry_of(cell.id) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    if let Some(info) = crates.entry(entry).and_then(|e| e.crate_info.as_ref()) {
        out.push(format!(
            "dependency crate {} from {}",
            info.package,
            source_label(&info.source)
        ));
        if !info.features.is_empty() {
            out.push(format!("features: {}", info.features.join(", ")));
        }
    }
    let users: Vec<String> = crates
        .users(entry)
        .iter()
        .filter_map(|u| crates.entry(*u))
        .map(|u| format!("{} {}", u.name, u.version))
        .collect();
    if !users.is_empty() {
        out.push(format!("compiled into: {}", users.join(", ")));
    }
    out
}

/// Adds the base image and the platform when a cell of `cells` uses them.
fn with_neighbours(index: &Index<'_>, cells: &mut BTreeSet<CellId>) {
    let used = |p: CellId| {
        cells
            .iter()
            .any(|c| index.providers(*c).any(|(q, _)| q == p))
    };
    let extra: Vec<CellId> = [Registry::BASE, Registry::PLATFORM]
        .into_iter()
        .filter(|p| used(*p))
        .collect();
    cells.extend(extra);
}

/// Every use between two cells of `cells`.
fn all_pairs(index: &Index<'_>, cells: &BTreeSet<CellId>) -> BTreeSet<(CellId, CellId)> {
    let mut pairs = BTreeSet::new();
    for c in cells {
        for (p, _) in index.providers(*c) {
            if cells.contains(&p) {
                pairs.insert((*c, p));
            }
        }
    }
    pairs
}

/// `cell`, what it uses and what uses it.
fn around(
    index: &Index<'_>,
    cell: CellId,
    cells: &mut BTreeSet<CellId>,
    pairs: &mut BTreeSet<(CellId, CellId)>,
    focus: &mut Vec<CellId>,
) {
    cells.insert(cell);
    focus.push(cell);
    for (p, _) in index.providers(cell) {
        cells.insert(p);
        pairs.insert((cell, p));
    }
    for (d, _) in index.dependents(cell) {
        cells.insert(d);
        pairs.insert((d, cell));
    }
}

fn walk(
    n: &TreeNode,
    parent: Option<CellId>,
    cells: &mut BTreeSet<CellId>,
    pairs: &mut BTreeSet<(CellId, CellId)>,
) {
    let id = CellId(n.cell.id);
    cells.insert(id);
    if let Some(p) = parent {
        pairs.insert((p, id));
    }
    for c in &n.children {
        walk(c, Some(id), cells, pairs);
    }
}

/// The edge from `from` to `to`: its slots and its symbols' display names.
fn edge(index: &Index<'_>, from: CellId, to: CellId, names: Names) -> GraphEdge {
    let edges = index
        .providers(from)
        .find(|(p, _)| *p == to)
        .map(|(_, e)| e)
        .unwrap_or(&[]);
    let provider = index.cell(to);
    let symbols: BTreeSet<String> = edges
        .iter()
        .filter_map(|e| index.registry().edge(*e))
        .filter_map(|e| provider?.symbol(e.symbol))
        .map(|s| names.symbol(&s.name))
        .collect();
    let more = symbols.len().saturating_sub(SYMBOLS_PER_EDGE);
    GraphEdge {
        from: from.0,
        to: to.0,
        slots: edges.len(),
        symbols: symbols.into_iter().take(SYMBOLS_PER_EDGE).collect(),
        more,
    }
}

fn add_unresolved(graph: &mut Graph, cells: &[UnresolvedRow], names: Names) {
    let mut ids: BTreeMap<&str, u32> = BTreeMap::new();
    for (i, u) in cells.iter().enumerate() {
        let id = UNRESOLVED_BASE + i as u32;
        ids.insert(&u.name, id);
        graph.focus.push(id);
        graph.nodes.push(Node {
            id,
            name: u.name.clone(),
            version: u.version.clone(),
            namespace: u.namespace.clone(),
            size: 0,
            kind: "unresolved",
            dep: false,
            retired: false,
            notes: Vec::new(),
        });
    }
    for (i, u) in cells.iter().enumerate() {
        let mut by_provider: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for m in &u.missing {
            if let Some(p) = &m.symbol.failed_provider {
                by_provider
                    .entry(p)
                    .or_default()
                    .push(names.symbol(&m.symbol.name));
            }
        }
        for (p, symbols) in by_provider {
            if let Some(to) = ids.get(p) {
                graph.edges.push(GraphEdge {
                    from: UNRESOLVED_BASE + i as u32,
                    to: *to,
                    slots: 0,
                    more: symbols.len().saturating_sub(SYMBOLS_PER_EDGE),
                    symbols: symbols.into_iter().take(SYMBOLS_PER_EDGE).collect(),
                });
            }
        }
    }
}
