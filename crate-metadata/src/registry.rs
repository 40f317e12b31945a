//! The registry: an arena of cells and edges, with every edge stored on both of its cells.

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;
use hashbrown::HashMap;
use serde::{Deserialize, Serialize};

use crate::cell::{Cell, Origin, Symbol, SymbolKind};
use crate::edge::Edge;
use crate::ids::{CellId, EdgeId, SymbolId};

/// Where the registry was, for [`Registry::rollback`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    cells: usize,
    edges: usize,
    base_symbols: usize,
    platform_symbols: usize,
}

/// Every cell the system knows and every edge between them.
///
/// Cells `0` and `1` are always the base image and the platform. Removed cells and edges leave a
/// hole, so ids stay stable and are never reused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "Stored")]
pub struct Registry {
    cells: Vec<Option<Cell>>,
    edges: Vec<Option<Edge>>,
    /// The cells by crate name, ids ascending (a function of `cells`, kept in step by every
    /// change to them and rebuilt on deserialization): finding a cell by name does not walk every
    /// cell, so a load's "is this release here already" check does not grow with the system.
    #[serde(skip)]
    by_name: HashMap<String, Vec<CellId>>,
    /// Name index of the base image's and the platform's symbols, which grow on demand: per
    /// cell, name -> symbol (looked up by `&str`, without building a key). Hashed (foldhash) rather
    /// than ordered: a load looks up every name it binds to, and the names are long mangled paths
    /// with common prefixes, which an ordered map compares several times per lookup.
    #[serde(skip)]
    index: BTreeMap<CellId, HashMap<String, SymbolId>>,
}

/// What a serialized registry holds; the indexes are rebuilt from it.
#[derive(Deserialize)]
struct Stored {
    cells: Vec<Option<Cell>>,
    edges: Vec<Option<Edge>>,
}

impl From<Stored> for Registry {
    fn from(stored: Stored) -> Registry {
        let mut by_name: HashMap<String, Vec<CellId>> = HashMap::new();
        for (i, cell) in stored.cells.iter().enumerate() {
            if let Some(c) = cell {
                by_name
                    .entry(c.name.clone())
                    .or_default()
                    .push(CellId(i as u32));
            }
        }
        Registry {
            cells: stored.cells,
            edges: stored.edges,
            by_name,
            index: BTreeMap::new(),
        }
    }
}

impl Default for Registry {
    fn default() -> Self {
        Self::new("nano_core")
    }
}

impl Registry {
    /// The base image's cell.
    pub const BASE: CellId = CellId(0);
    /// The platform's cell.
    pub const PLATFORM: CellId = CellId(1);

    /// A registry that holds only the base image (named `base_name`) and the platform.
    pub fn new(base_name: &str) -> Registry {
        let mut base = Cell::new(base_name, "", Origin::BaseImage);
        base.id = Self::BASE;
        let mut platform = Cell::new("platform", "", Origin::Platform);
        platform.id = Self::PLATFORM;
        let mut by_name: HashMap<String, Vec<CellId>> = HashMap::new();
        by_name
            .entry(base.name.clone())
            .or_default()
            .push(Self::BASE);
        by_name
            .entry(platform.name.clone())
            .or_default()
            .push(Self::PLATFORM);
        Registry {
            cells: alloc::vec![Some(base), Some(platform)],
            edges: Vec::new(),
            by_name,
            index: BTreeMap::new(),
        }
    }

    /// The cell `id`, if it exists.
    pub fn cell(&self, id: CellId) -> Option<&Cell> {
        self.cells.get(id.index()).and_then(Option::as_ref)
    }

    /// The cell `id`, mutably.
    pub fn cell_mut(&mut self, id: CellId) -> Option<&mut Cell> {
        self.cells.get_mut(id.index()).and_then(Option::as_mut)
    }

    /// The cells named `name` (every release, live or retired), in id order.
    pub fn cells_named<'r>(&'r self, name: &str) -> impl Iterator<Item = &'r Cell> + 'r {
        self.by_name
            .get(name)
            .into_iter()
            .flatten()
            .filter_map(|id| self.cell(*id))
    }

    /// Drops `id` from the name index (its cell, named `name`, is gone).
    fn unindex(&mut self, name: &str, id: CellId) {
        if let Some(ids) = self.by_name.get_mut(name) {
            ids.retain(|i| *i != id);
            if ids.is_empty() {
                self.by_name.remove(name);
            }
        }
    }

    /// Every cell, in id order.
    pub fn cells(&self) -> impl Iterator<Item = &Cell> {
        self.cells.iter().flatten()
    }

    /// The id the next added cell gets.
    pub fn next_cell_id(&self) -> CellId {
        CellId(self.cells.len() as u32)
    }

    /// Adds a cell (its `id`, `uses` and `used_by` are set here) and returns its id.
    pub fn add_cell(&mut self, mut cell: Cell) -> CellId {
        let id = self.next_cell_id();
        cell.id = id;
        cell.uses.clear();
        cell.used_by.clear();
        match self.by_name.get_mut(cell.name.as_str()) {
            Some(ids) => ids.push(id),
            None => {
                self.by_name.insert(cell.name.clone(), alloc::vec![id]);
            }
        }
        self.cells.push(Some(cell));
        id
    }

    /// The edge `id`, if it exists.
    pub fn edge(&self, id: EdgeId) -> Option<&Edge> {
        self.edges.get(id.index()).and_then(Option::as_ref)
    }

    /// Every edge with its id, in id order.
    pub fn edges(&self) -> impl Iterator<Item = (EdgeId, &Edge)> {
        self.edges
            .iter()
            .enumerate()
            .filter_map(|(i, e)| e.as_ref().map(|e| (EdgeId(i as u32), e)))
    }

    /// Number of edges.
    pub fn edge_count(&self) -> usize {
        self.edges.iter().flatten().count()
    }

    /// Adds an edge and records it on both cells. Returns `None` (and adds nothing) when either
    /// cell does not exist.
    pub fn add_edge(&mut self, edge: Edge) -> Option<EdgeId> {
        if self.cell(edge.dependent).is_none() || self.cell(edge.provider).is_none() {
            return None;
        }
        let id = EdgeId(self.edges.len() as u32);
        let (dependent, provider) = (edge.dependent, edge.provider);
        self.edges.push(Some(edge));
        self.cell_mut(dependent)?.uses.push(id);
        self.cell_mut(provider)?.used_by.push(id);
        Some(id)
    }

    /// Removes an edge from the arena and from both of its cells.
    pub fn remove_edge(&mut self, id: EdgeId) -> Option<Edge> {
        let edge = self.edges.get_mut(id.index())?.take()?;
        if let Some(c) = self.cell_mut(edge.dependent) {
            remove_from_tail(&mut c.uses, 1, |e| *e == id);
        }
        if let Some(c) = self.cell_mut(edge.provider) {
            remove_from_tail(&mut c.used_by, 1, |e| *e == id);
        }
        Some(edge)
    }

    /// Points an existing edge at another provider's symbol, keeping both sides in step.
    pub fn retarget_edge(&mut self, id: EdgeId, provider: CellId, symbol: SymbolId) -> bool {
        let Some(old) = self.edge(id).map(|e| e.provider) else {
            return false;
        };
        if self.cell(provider).is_none() {
            return false;
        }
        if let Some(c) = self.cell_mut(old) {
            c.used_by.retain(|e| *e != id);
        }
        if let Some(c) = self.cell_mut(provider) {
            c.used_by.push(id);
        }
        if let Some(Some(e)) = self.edges.get_mut(id.index()) {
            e.provider = provider;
            e.symbol = symbol;
        }
        true
    }

    /// Removes a cell and every edge it is the dependent of. Refuses (and changes nothing) while
    /// another cell still uses it: the error lists those dependents.
    ///
    /// Each provider's `used_by` is filtered once for all the removed edges, not once per edge
    /// (a provider such as the base image is used by every cell, through many edges).
    pub fn remove_cell(&mut self, id: CellId) -> Result<Cell, Vec<CellId>> {
        let dependents = self.dependents(id);
        if !dependents.is_empty() {
            return Err(dependents);
        }
        let mut cell = self
            .cells
            .get_mut(id.index())
            .and_then(Option::take)
            .ok_or_else(Vec::new)?;
        self.unindex(&cell.name, id);
        let mut removed: Vec<(CellId, EdgeId)> = core::mem::take(&mut cell.uses)
            .into_iter()
            .filter_map(|e| {
                let edge = self.edges.get_mut(e.index())?.take()?;
                Some((edge.provider, e))
            })
            .collect();
        removed.sort_unstable();
        for group in removed.chunk_by(|a, b| a.0 == b.0) {
            let gone = |e: &EdgeId| group.binary_search_by(|(_, g)| g.cmp(e)).is_ok();
            let provider = group[0].0;
            let used_by = if provider == id {
                Some(&mut cell.used_by)
            } else {
                self.cell_mut(provider).map(|c| &mut c.used_by)
            };
            if let Some(used_by) = used_by {
                remove_from_tail(used_by, group.len(), gone);
            }
        }
        Ok(cell)
    }

    /// Removes the cells `ids` together (a namespace torn down), with every edge any of them is
    /// the dependent of. Refuses, changing nothing, while a cell outside `ids` uses one of them:
    /// the error names that cell and its outside dependents. Each provider outside `ids` has its
    /// `used_by` filtered once for all of them; the edges among the cells just go.
    pub fn remove_cells(&mut self, ids: &[CellId]) -> Result<Vec<Cell>, (CellId, Vec<CellId>)> {
        let mut set: Vec<CellId> = ids.to_vec();
        set.sort_unstable();
        set.dedup();
        let inside = |c: &CellId| set.binary_search(c).is_ok();
        for id in &set {
            let outside: Vec<CellId> = self
                .dependents(*id)
                .into_iter()
                .filter(|d| !inside(d))
                .collect();
            if !outside.is_empty() {
                return Err((*id, outside));
            }
        }
        let mut out = Vec::with_capacity(set.len());
        let mut removed: Vec<(CellId, EdgeId)> = Vec::new();
        for id in &set {
            let Some(mut cell) = self.cells.get_mut(id.index()).and_then(Option::take) else {
                continue;
            };
            self.unindex(&cell.name, *id);
            for e in core::mem::take(&mut cell.uses) {
                if let Some(edge) = self.edges.get_mut(e.index()).and_then(Option::take) {
                    if !inside(&edge.provider) {
                        removed.push((edge.provider, e));
                    }
                }
            }
            cell.used_by.clear();
            out.push(cell);
        }
        removed.sort_unstable();
        for group in removed.chunk_by(|a, b| a.0 == b.0) {
            let gone = |e: &EdgeId| group.binary_search_by(|(_, g)| g.cmp(e)).is_ok();
            if let Some(c) = self.cell_mut(group[0].0) {
                c.used_by.retain(|e| !gone(e));
            }
        }
        Ok(out)
    }

    /// The distinct cells (other than `id` itself) that have an edge into `id`, sorted.
    pub fn dependents(&self, id: CellId) -> Vec<CellId> {
        let mut out: Vec<CellId> = self
            .cell(id)
            .map(|c| {
                c.used_by
                    .iter()
                    .filter_map(|e| self.edge(*e))
                    .map(|e| e.dependent)
                    .filter(|d| *d != id)
                    .collect()
            })
            .unwrap_or_default();
        out.sort();
        out.dedup();
        out
    }

    /// The distinct cells (other than `id` itself) that `id` has an edge into, sorted.
    pub fn dependencies(&self, id: CellId) -> Vec<CellId> {
        let mut out: Vec<CellId> = self
            .cell(id)
            .map(|c| {
                c.uses
                    .iter()
                    .filter_map(|e| self.edge(*e))
                    .map(|e| e.provider)
                    .filter(|p| *p != id)
                    .collect()
            })
            .unwrap_or_default();
        out.sort();
        out.dedup();
        out
    }

    /// A point to come back to with [`Registry::rollback`].
    pub fn checkpoint(&self) -> Checkpoint {
        let symbols = |id| self.cell(id).map_or(0, |c| c.symbols.len());
        Checkpoint {
            cells: self.cells.len(),
            edges: self.edges.len(),
            base_symbols: symbols(Self::BASE),
            platform_symbols: symbols(Self::PLATFORM),
        }
    }

    /// Removes every cell, edge and base-image or platform symbol added since `checkpoint`, so the
    /// registry compares equal to what it was then (provided nothing older was changed since).
    pub fn rollback(&mut self, checkpoint: &Checkpoint) {
        for i in (checkpoint.edges..self.edges.len()).rev() {
            self.remove_edge(EdgeId(i as u32));
        }
        self.edges.truncate(checkpoint.edges);
        let gone: Vec<(String, CellId)> = self.cells[checkpoint.cells.min(self.cells.len())..]
            .iter()
            .flatten()
            .map(|c| (c.name.clone(), c.id))
            .collect();
        for (name, id) in gone {
            self.unindex(&name, id);
        }
        self.cells.truncate(checkpoint.cells);
        for (id, len) in [
            (Self::BASE, checkpoint.base_symbols),
            (Self::PLATFORM, checkpoint.platform_symbols),
        ] {
            if let Some(c) = self.cell_mut(id) {
                c.symbols.truncate(len);
            }
            if let Some(names) = self.index.get_mut(&id) {
                names.retain(|_, sym| sym.index() < len);
                if names.is_empty() {
                    self.index.remove(&id);
                }
            }
        }
    }

    /// The id of `cell`'s symbol `name`, adding it (with `addr`, `kind`) when it is not there
    /// yet. Used for the base image and the platform, whose symbols are recorded as they are
    /// bound to. Returns `None` when the cell does not exist.
    pub fn intern_symbol(
        &mut self,
        cell: CellId,
        name: &str,
        addr: u64,
        kind: SymbolKind,
    ) -> Option<SymbolId> {
        if let Some(id) = self.index.get(&cell).and_then(|names| names.get(name)) {
            return Some(*id);
        }
        let c = self.cell_mut(cell)?;
        let id = match c.find_symbol(name) {
            Some(id) => id,
            None => {
                c.symbols.push(Symbol {
                    name: name.into(),
                    section: None,
                    addr,
                    size: 0,
                    kind,
                    path_span: None,
                });
                SymbolId(c.symbols.len() as u32 - 1)
            }
        };
        self.index
            .entry(cell)
            .or_default()
            .insert(String::from(name), id);
        Some(id)
    }
}

/// Removes from `list` the `count` entries for which `gone` holds (fewer if fewer are there),
/// scanning from the end: edge lists grow by appending, and the edges removed together (a cell's
/// when it is unloaded, newest cells first on a namespace teardown) are the recent ones, so the
/// base image's list of every cell's edges to it is not walked whole for each cell.
fn remove_from_tail(list: &mut Vec<EdgeId>, count: usize, gone: impl Fn(&EdgeId) -> bool) {
    let mut found = 0;
    let mut start = list.len();
    while found < count && start > 0 {
        start -= 1;
        if gone(&list[start]) {
            found += 1;
        }
    }
    let mut write = start;
    for read in start..list.len() {
        if !gone(&list[read]) {
            list[write] = list[read];
            write += 1;
        }
    }
    list.truncate(write);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{SectionId, SlotKind};

    fn edge(dependent: CellId, provider: CellId, slot: u64) -> Edge {
        Edge {
            dependent,
            section: SectionId(0),
            slot,
            kind: SlotKind::Got,
            addend: 0,
            provider,
            symbol: SymbolId(0),
        }
    }

    fn two_cells() -> (Registry, CellId, CellId) {
        let mut r = Registry::new("nano_core");
        let a = r.add_cell(Cell::new("a", "0.1.0", Origin::Object));
        let b = r.add_cell(Cell::new("b", "0.1.0", Origin::Object));
        (r, a, b)
    }

    #[test]
    fn edges_are_stored_on_both_cells() {
        let (mut r, a, b) = two_cells();
        let e = r.add_edge(edge(a, b, 0x1000)).unwrap();
        assert_eq!(r.cell(a).unwrap().uses, [e]);
        assert_eq!(r.cell(b).unwrap().used_by, [e]);
        assert_eq!(r.dependents(b), [a]);
        assert_eq!(r.dependencies(a), [b]);
        assert!(r.add_edge(edge(a, CellId(99), 0)).is_none());
        assert_eq!(r.edge_count(), 1);
    }

    #[test]
    fn a_used_cell_is_not_removed() {
        let (mut r, a, b) = two_cells();
        r.add_edge(edge(a, b, 0x1000)).unwrap();
        let before = r.clone();
        assert_eq!(r.remove_cell(b), Err(alloc::vec![a]));
        assert_eq!(r, before);
        // Removing the dependent removes its edges from the provider too.
        r.remove_cell(a).unwrap();
        assert!(r.cell(b).unwrap().used_by.is_empty());
        assert_eq!(r.edge_count(), 0);
        r.remove_cell(b).unwrap();
        assert!(r.cell(b).is_none());
        // Ids are not reused.
        let c = r.add_cell(Cell::new("c", "", Origin::Object));
        assert_eq!(c, CellId(4));
    }

    #[test]
    fn retarget_moves_the_edge_between_providers() {
        let (mut r, a, b) = two_cells();
        let b2 = r.add_cell(Cell::new("b", "0.1.0", Origin::Object));
        let e = r.add_edge(edge(a, b, 0x1000)).unwrap();
        assert!(r.retarget_edge(e, b2, SymbolId(3)));
        assert!(r.cell(b).unwrap().used_by.is_empty());
        assert_eq!(r.cell(b2).unwrap().used_by, [e]);
        assert_eq!(r.edge(e).unwrap().symbol, SymbolId(3));
        assert_eq!(r.dependents(b2), [a]);
    }

    #[test]
    fn base_image_symbols_are_interned_once() {
        let mut r = Registry::new("nano_core");
        let s1 = r
            .intern_symbol(Registry::BASE, "memcpy", 0x10, SymbolKind::Function)
            .unwrap();
        let s2 = r
            .intern_symbol(Registry::BASE, "memcpy", 0x10, SymbolKind::Function)
            .unwrap();
        let s3 = r
            .intern_symbol(Registry::BASE, "memmove", 0x20, SymbolKind::Function)
            .unwrap();
        assert_eq!(s1, s2);
        assert_ne!(s1, s3);
        assert_eq!(r.cell(Registry::BASE).unwrap().symbols.len(), 2);
    }

    #[test]
    fn the_model_round_trips_through_json() {
        let (mut r, a, b) = two_cells();
        r.add_edge(edge(a, b, 0x1000)).unwrap();
        let json = serde_json::to_string(&r).unwrap();
        let back: Registry = serde_json::from_str(&json).unwrap();
        assert_eq!(back.cells().count(), r.cells().count());
        assert_eq!(
            back.edges().collect::<alloc::vec::Vec<_>>(),
            r.edges().collect::<alloc::vec::Vec<_>>()
        );
    }

    #[test]
    fn cells_removed_together_take_their_edges_and_only_theirs() {
        let (mut r, a, b) = two_cells();
        let c = r.add_cell(Cell::new("c", "0.1.0", Origin::Object));
        let base = Registry::BASE;
        let ab = r.add_edge(edge(a, b, 0x1000)).unwrap();
        let a_base = r.add_edge(edge(a, base, 0x1008)).unwrap();
        let c_base = r.add_edge(edge(c, base, 0x2000)).unwrap();
        let b_base = r.add_edge(edge(b, base, 0x1010)).unwrap();
        // c uses b: removing a and b alone would strand c's edge.
        let c_b = r.add_edge(edge(c, b, 0x2008)).unwrap();
        assert_eq!(r.remove_cells(&[a, b]).unwrap_err(), (b, alloc::vec![c]));
        assert!(r.cell(a).is_some() && r.edge(ab).is_some());

        assert!(r.remove_edge(c_b).is_some());
        let removed = r.remove_cells(&[b, a]).unwrap();
        assert_eq!(removed.len(), 2);
        assert!(r.cell(a).is_none() && r.cell(b).is_none());
        for e in [ab, a_base, b_base] {
            assert!(r.edge(e).is_none());
        }
        assert_eq!(r.cell(base).unwrap().used_by, [c_base]);
        assert_eq!(r.edge_count(), 1);
    }

    #[test]
    fn cells_are_found_by_name_through_every_change() {
        let named = |r: &Registry, name: &str| -> alloc::vec::Vec<CellId> {
            r.cells_named(name).map(|c| c.id).collect()
        };
        let (mut r, a, b) = two_cells();
        let checkpoint = r.checkpoint();
        let a2 = r.add_cell(Cell::new("a", "0.2.0", Origin::Object));
        assert_eq!(named(&r, "a"), [a, a2]);
        r.rollback(&checkpoint);
        assert_eq!(named(&r, "a"), [a]);
        r.remove_cell(a).unwrap();
        assert!(named(&r, "a").is_empty());
        let c = r.add_cell(Cell::new("c", "0.1.0", Origin::Object));
        r.remove_cells(&[b]).unwrap();
        assert!(named(&r, "b").is_empty());
        assert_eq!(named(&r, "c"), [c]);
        assert_eq!(named(&r, "nano_core"), [Registry::BASE]);
        // Rebuilt on deserialization, so a registry read back compares equal.
        let json = serde_json::to_string(&r).unwrap();
        let back: Registry = serde_json::from_str(&json).unwrap();
        assert_eq!(named(&back, "c"), [c]);
        assert_eq!(back, r);
    }
}
