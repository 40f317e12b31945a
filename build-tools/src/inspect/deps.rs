//! The graph views of `cargo cell deps`: the tree, `--invert`, `--why`, `--unresolved` and
//! `--cycles`.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate_metadata::{Cell, CellId, EdgeId, Origin, Registry};
use loader::{Catalog, ManifestCatalog};

use super::model::Index;
use super::views::{
    CellRef, Dependent, EdgeRow, Hop, MissingRow, SymbolUse, TreeNode, UnresolvedRow, View,
};

/// The crate graph as a tree (`cargo tree` style): every object cell that no other object cell
/// shown (with `namespace`, of that namespace) uses is a root, its dependencies below it: the cells it binds to, and the dependency cells it
/// is compiled against (the manifest's `crates`) even when it binds to nothing in them (`slots`
/// 0). A cell shown in full once is marked `repeated` where it occurs again. The base image and
/// the platform appear only as leaves; the base image's leaf names the parent's dependency
/// crates it links; with `all`, each such leaf lists the symbols its parent binds there.
pub fn tree(index: &Index<'_>, namespace: Option<&str>, depth: Option<usize>, all: bool) -> View {
    let cells = index.object_cells(namespace);
    // A cell is below another when one of the cells shown binds to it or is compiled against it.
    let shown: BTreeSet<CellId> = cells.iter().map(|c| c.id).collect();
    let crate_children: BTreeSet<CellId> =
        cells.iter().flat_map(|c| index.crate_cells(c)).collect();
    let mut roots: Vec<&Cell> = cells
        .iter()
        .copied()
        .filter(|c| index.dependents(c.id).all(|(d, _)| !shown.contains(&d)))
        .filter(|c| !crate_children.contains(&c.id))
        .collect();
    roots.sort_by(|a, b| (&a.name, a.id).cmp(&(&b.name, b.id)));
    let mut builder = TreeBuilder {
        index,
        depth,
        all,
        expanded: BTreeSet::new(),
        shown: BTreeSet::new(),
    };
    let mut nodes: Vec<TreeNode> = roots
        .iter()
        .map(|c| builder.node(c, None, &[], 0))
        .collect();
    // Cells only reachable through a cycle have no root above them: show them as roots too.
    for c in &cells {
        if !builder.shown.contains(&c.id) {
            nodes.push(builder.node(c, None, &[], 0));
        }
    }
    View::Tree {
        roots: nodes,
        depth,
    }
}

struct TreeBuilder<'i, 'a> {
    index: &'i Index<'a>,
    depth: Option<usize>,
    all: bool,
    /// Cells whose dependencies are listed somewhere in the tree.
    expanded: BTreeSet<CellId>,
    /// Cells that appear somewhere in the tree.
    shown: BTreeSet<CellId>,
}

impl TreeBuilder<'_, '_> {
    fn node(
        &mut self,
        cell: &Cell,
        parent: Option<CellId>,
        edges: &[EdgeId],
        level: usize,
    ) -> TreeNode {
        let index = self.index;
        let mut node = TreeNode {
            cell: CellRef::of(index, cell),
            size: cell.size(),
            slots: edges.len(),
            repeated: false,
            children: Vec::new(),
            symbols: Vec::new(),
            crates: Vec::new(),
            rules: parent
                .and_then(|p| index.cell(p))
                .map(|p| super::policy::crossing_rules(index, p, cell, edges))
                .unwrap_or_default(),
        };
        if cell.origin != Origin::Object {
            if let (Registry::BASE, Some(parent)) = (cell.id, parent) {
                node.crates = image_crates(index, parent);
            }
            if self.all {
                let names: BTreeSet<String> = edges
                    .iter()
                    .filter_map(|e| index.registry().edge(*e))
                    .filter_map(|e| cell.symbol(e.symbol))
                    .map(|s| s.name.to_string())
                    .collect();
                node.symbols = names.into_iter().collect();
            }
            return node;
        }
        self.shown.insert(cell.id);
        if self.depth.is_some_and(|d| level >= d) {
            return node;
        }
        let crate_cells: Vec<&Cell> = index
            .crate_cells(cell)
            .into_iter()
            .filter(|c| index.providers(cell.id).all(|(p, _)| p != *c))
            .filter_map(|c| index.cell(c))
            .collect();
        if !self.expanded.insert(cell.id) {
            node.repeated = index.providers(cell.id).next().is_some() || !crate_cells.is_empty();
            return node;
        }
        let mut children: Vec<(&Cell, &[EdgeId])> = index
            .providers(cell.id)
            .filter_map(|(p, e)| Some((index.cell(p)?, e)))
            .chain(crate_cells.into_iter().map(|c| (c, &[] as &[EdgeId])))
            .collect();
        // Object cells by name, then the base image, then the platform.
        children.sort_by_key(|(c, _)| {
            let rank = (c.origin != Origin::Object, c.id == Registry::PLATFORM);
            (rank, c.name.clone(), c.id)
        });
        node.children = children
            .into_iter()
            .map(|(c, e)| self.node(c, Some(cell.id), e, level + 1))
            .collect();
        node
    }
}

/// The dependency crates of `cell` that the base image provides and `cell` binds to there, as
/// `name version`.
fn image_crates(index: &Index<'_>, cell: CellId) -> Vec<String> {
    let Some(entry) = index.crates.entry_of(cell) else {
        return Vec::new();
    };
    let mut out: Vec<String> = index
        .crates
        .uses(entry)
        .iter()
        .filter(|d| index.crates.in_base_image(**d) && index.crates.loaded(**d).is_empty())
        .filter(|d| !index.slots_into(cell, **d).is_empty())
        .filter_map(|d| index.crates.entry(*d))
        .map(|e| format!("{} {}", e.name, e.version))
        .collect();
    out.sort();
    out
}

/// Every cell a swap or removal of `cell` touches, transitively, nearest first, with the slots
/// of each that bind to the cell before it ([`namespace::graph::dependents_transitive`]).
///
/// The base image and the platform are never swapped along with a cell: the host's handles into
/// `cell` are touched (the base image is a direct dependent), but nothing that merely uses the
/// base image is. So the walk goes through object cells only.
pub fn invert(index: &Index<'_>, cell: &Cell) -> View {
    let registry = index.registry();
    let is_object = |c: CellId| registry.cell(c).is_some_and(|c| c.origin == Origin::Object);
    let host_edges: Vec<EdgeId> = registry
        .edges()
        .filter(|(_, e)| !is_object(e.dependent))
        .map(|(id, _)| id)
        .collect();
    let walked = if host_edges.is_empty() {
        namespace::graph::dependents_transitive(registry, cell.id)
    } else {
        let mut objects_only = registry.clone();
        for e in host_edges {
            objects_only.remove_edge(e);
        }
        namespace::graph::dependents_transitive(&objects_only, cell.id)
    };
    // The host joins where it first holds a slot (a handle) into the cell or one of its
    // object dependents: removing that one breaks the handle.
    let mut host: Vec<(CellId, Vec<EdgeId>)> = Vec::new();
    for r in std::iter::once(cell.id).chain(walked.iter().map(|(d, _)| *d)) {
        for (d, e) in index.dependents(r).filter(|(d, _)| !is_object(*d)) {
            if d != cell.id && host.iter().all(|(h, _)| *h != d) {
                host.push((d, e.to_vec()));
            }
        }
    }
    let mut depth: BTreeMap<CellId, usize> = BTreeMap::from([(cell.id, 0)]);
    let mut dependents = Vec::new();
    for (d, edges) in walked.into_iter().chain(host) {
        let Some(dc) = index.cell(d) else { continue };
        let via = edges
            .first()
            .and_then(|e| index.registry().edge(*e))
            .map(|e| e.provider)
            .unwrap_or(cell.id);
        let level = depth.get(&via).copied().unwrap_or(0) + 1;
        let Some(via) = index.cell(via) else { continue };
        depth.insert(d, level);
        let mut slots: Vec<EdgeRow> = edges
            .iter()
            .filter_map(|e| EdgeRow::of(index, *e))
            .collect();
        slots.sort_by(|a, b| (&a.section, a.offset).cmp(&(&b.section, b.offset)));
        dependents.push(Dependent {
            cell: CellRef::of(index, dc),
            depth: level,
            via: CellRef::of(index, via),
            slots,
        });
    }
    dependents.sort_by_key(|d| d.depth);
    View::Invert {
        cell: CellRef::of(index, cell),
        dependents,
    }
}

/// Why `from` depends on `to`: the symbols of each hop on the shortest chain of uses (one hop
/// when `from` uses `to` directly; none when it does not depend on it at all).
pub fn why(index: &Index<'_>, from: &Cell, to: &Cell) -> View {
    // Breadth-first over "uses", remembering how each cell was reached.
    let mut came_from: BTreeMap<CellId, CellId> = BTreeMap::new();
    let mut queue = VecDeque::from([from.id]);
    while let Some(c) = queue.pop_front() {
        if c == to.id {
            break;
        }
        for (p, _) in index.providers(c) {
            if p != from.id && !came_from.contains_key(&p) {
                came_from.insert(p, c);
                queue.push_back(p);
            }
        }
    }
    let mut chain = vec![to.id];
    while let Some(prev) = chain.last().and_then(|c| came_from.get(c)) {
        chain.push(*prev);
    }
    chain.reverse();
    let path = if chain.first() == Some(&from.id) && from.id != to.id {
        chain
            .windows(2)
            .filter_map(|w| hop(index, w[0], w[1]))
            .collect()
    } else {
        Vec::new()
    };
    View::Why {
        from: CellRef::of(index, from),
        to: CellRef::of(index, to),
        path,
    }
}

/// The symbols through which `from` uses `to` directly, each with its slots.
fn hop(index: &Index<'_>, from: CellId, to: CellId) -> Option<Hop> {
    let edges = index.providers(from).find(|(p, _)| *p == to)?.1;
    let mut by_symbol: BTreeMap<String, Vec<EdgeRow>> = BTreeMap::new();
    for row in edges.iter().filter_map(|e| EdgeRow::of(index, *e)) {
        by_symbol.entry(row.symbol.clone()).or_default().push(row);
    }
    let mut symbols: Vec<SymbolUse> = by_symbol
        .into_iter()
        .map(|(symbol, slots)| SymbolUse {
            demangled: crate_metadata::demangle::path(&symbol),
            symbol,
            slots,
        })
        .collect();
    symbols.sort_by(|a, b| (&a.demangled, &a.symbol).cmp(&(&b.demangled, &b.symbol)));
    Some(Hop {
        from: CellRef::of(index, index.cell(from)?),
        to: CellRef::of(index, index.cell(to)?),
        symbols,
    })
}

/// The cells that failed to link (offline: nothing is loaded; live: always none). Each missing
/// symbol names the cell of the manifest that exports it, as the loader's catalog does.
pub fn unresolved(index: &Index<'_>, namespace: Option<&str>) -> View {
    let catalog = index.crates.manifest().map(ManifestCatalog::new);
    let cells = index
        .snapshot
        .unresolved
        .iter()
        .filter(|u| namespace.is_none_or(|ns| u.namespace == ns))
        .map(|u| UnresolvedRow {
            name: u.name.clone(),
            version: u.version.clone(),
            namespace: u.namespace.clone(),
            message: u.message.clone(),
            missing: u
                .missing
                .iter()
                .map(|m| MissingRow {
                    defined_by: catalog.as_ref().and_then(|c| c.defined_by(&m.name)),
                    symbol: m.clone(),
                })
                .collect(),
        })
        .collect();
    View::Unresolved { cells }
}

/// The strongly connected components of more than one object cell (Tarjan's algorithm), each
/// sorted by name, in order of their first cell.
pub fn cycles(index: &Index<'_>, namespace: Option<&str>) -> View {
    let cells: Vec<CellId> = index.object_cells(namespace).iter().map(|c| c.id).collect();
    let members: BTreeSet<CellId> = cells.iter().copied().collect();
    let mut t = Tarjan {
        index,
        members: &members,
        next: 0,
        number: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        components: Vec::new(),
    };
    for c in &cells {
        if !t.number.contains_key(c) {
            t.visit(*c);
        }
    }
    let mut cycles: Vec<Vec<CellRef>> = t
        .components
        .into_iter()
        .filter(|c| c.len() > 1)
        .map(|c| {
            let mut refs: Vec<CellRef> = c
                .iter()
                .filter_map(|id| Some(CellRef::of(index, index.cell(*id)?)))
                .collect();
            refs.sort_by(|a, b| (&a.name, a.id).cmp(&(&b.name, b.id)));
            refs
        })
        .collect();
    cycles.sort_by(|a, b| a.first().map(|c| &c.name).cmp(&b.first().map(|c| &c.name)));
    View::Cycles { cycles }
}

struct Tarjan<'i, 'a> {
    index: &'i Index<'a>,
    members: &'i BTreeSet<CellId>,
    next: usize,
    number: BTreeMap<CellId, usize>,
    low: BTreeMap<CellId, usize>,
    stack: Vec<CellId>,
    on_stack: BTreeSet<CellId>,
    components: Vec<Vec<CellId>>,
}

impl Tarjan<'_, '_> {
    fn visit(&mut self, v: CellId) {
        self.number.insert(v, self.next);
        self.low.insert(v, self.next);
        self.next += 1;
        self.stack.push(v);
        self.on_stack.insert(v);
        let index = self.index;
        for (w, _) in index.providers(v) {
            if !self.members.contains(&w) {
                continue;
            }
            if !self.number.contains_key(&w) {
                self.visit(w);
                let lw = self.low[&w];
                let lv = self.low.entry(v).or_default();
                *lv = (*lv).min(lw);
            } else if self.on_stack.contains(&w) {
                let nw = self.number[&w];
                let lv = self.low.entry(v).or_default();
                *lv = (*lv).min(nw);
            }
        }
        if self.low.get(&v) == self.number.get(&v) {
            let mut component = Vec::new();
            while let Some(w) = self.stack.pop() {
                self.on_stack.remove(&w);
                component.push(w);
                if w == v {
                    break;
                }
            }
            self.components.push(component);
        }
    }
}
