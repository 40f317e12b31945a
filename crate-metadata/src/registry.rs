//! The registry: the cells by id and an arena of edges, with every edge stored on both of its
//! cells.

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;
use hashbrown::HashMap;
use serde::{Deserialize, Serialize, Serializer};

use crate::cell::{Cell, Origin, Symbol, SymbolKind};
use crate::edge::Edge;
use crate::ids::{CellId, EdgeId, SymbolId};

/// Where the registry was, for [`Registry::rollback`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    next_cell: u32,
    edges: usize,
    base_symbols: usize,
    platform_symbols: usize,
}

/// Every cell the system knows and every edge between them.
///
/// Cells `0` and `1` are always the base image and the platform. A cell's id is never reused
/// while the registry lives (a stale id finds nothing); a removed cell leaves nothing behind. A
/// removed edge's slot is reused by a later edge, except while a [`Checkpoint`] is open, so a
/// system that loads and unloads for ever keeps a registry the size of what is loaded.
#[derive(Clone, Debug, Deserialize)]
#[serde(from = "Stored")]
pub struct Registry {
    /// The cells, by id.
    cells: HashMap<CellId, Cell>,
    /// The id the next added cell gets.
    next_cell: u32,
    edges: Vec<Option<Edge>>,
    /// The empty slots of `edges`, reused last freed first.
    free_edges: Vec<EdgeId>,
    /// Whether a checkpoint is open: new edges then go after every slot, so that
    /// [`Registry::rollback`] finds them all past the checkpoint's length.
    checkpoint_open: bool,
    /// The cells by crate name, ids ascending (a function of `cells`, kept in step by every
    /// change to them and rebuilt on deserialization): finding a cell by name does not walk every
    /// cell, so a load's "is this release here already" check does not grow with the system.
    by_name: HashMap<String, Vec<CellId>>,
    /// Name index of the base image's and the platform's symbols, which grow on demand: per
    /// cell, name -> symbol (looked up by `&str`, without building a key). Hashed (foldhash) rather
    /// than ordered: a load looks up every name it binds to, and the names are long mangled paths
    /// with common prefixes, which an ordered map compares several times per lookup.
    index: BTreeMap<CellId, HashMap<String, SymbolId>>,
}

/// Two registries are equal when they hold the same cells under the same ids and the same
/// edges in the same slots, and would give the next cell the same id (the indexes and the free
/// slots follow from those).
impl PartialEq for Registry {
    fn eq(&self, other: &Registry) -> bool {
        self.cells == other.cells && self.edges == other.edges && self.next_cell == other.next_cell
    }
}

impl Eq for Registry {}

/// What a serialized registry holds; the indexes are rebuilt from it. `cells` lists the cells in
/// id order (older files have a `null` for each removed cell, which is skipped); `next_cell` is
/// absent in older files, which never reused an id: it is then one past the last slot.
#[derive(Deserialize)]
struct Stored {
    cells: Vec<Option<Cell>>,
    edges: Vec<Option<Edge>>,
    #[serde(default)]
    next_cell: Option<u32>,
}

impl From<Stored> for Registry {
    fn from(stored: Stored) -> Registry {
        let slots = stored.cells.len() as u32;
        let mut registry = Registry {
            cells: HashMap::new(),
            next_cell: stored.next_cell.unwrap_or(slots),
            free_edges: free_slots(&stored.edges),
            edges: stored.edges,
            checkpoint_open: false,
            by_name: HashMap::new(),
            index: BTreeMap::new(),
        };
        let mut cells: Vec<Cell> = stored.cells.into_iter().flatten().collect();
        cells.sort_unstable_by_key(|c| c.id);
        for cell in cells {
            registry.next_cell = registry.next_cell.max(cell.id.0 + 1);
            registry.insert(cell);
        }
        registry
    }
}

impl Serialize for Registry {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Out<'r> {
            cells: Vec<&'r Cell>,
            edges: &'r [Option<Edge>],
            next_cell: u32,
        }
        Out {
            cells: self.cells().collect(),
            edges: &self.edges,
            next_cell: self.next_cell,
        }
        .serialize(serializer)
    }
}

/// The empty slots of `edges`, the lowest reused first.
fn free_slots(edges: &[Option<Edge>]) -> Vec<EdgeId> {
    let holes = edges.iter().enumerate().rev().filter(|(_, e)| e.is_none());
    holes.map(|(i, _)| EdgeId(i as u32)).collect()
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
        let mut registry = Registry {
            cells: HashMap::new(),
            next_cell: 2,
            edges: Vec::new(),
            free_edges: Vec::new(),
            checkpoint_open: false,
            by_name: HashMap::new(),
            index: BTreeMap::new(),
        };
        registry.insert(base);
        registry.insert(platform);
        registry
    }

    /// Stores `cell` under its id and indexes its name (cells are inserted in id order, so each
    /// name's ids stay ascending).
    fn insert(&mut self, cell: Cell) {
        let id = cell.id;
        match self.by_name.get_mut(cell.name.as_str()) {
            Some(ids) => ids.push(id),
            None => {
                self.by_name.insert(cell.name.clone(), alloc::vec![id]);
            }
        }
        self.cells.insert(id, cell);
    }

    /// The cell `id`, if it exists.
    pub fn cell(&self, id: CellId) -> Option<&Cell> {
        self.cells.get(&id)
    }

    /// The cell `id`, mutably.
    pub fn cell_mut(&mut self, id: CellId) -> Option<&mut Cell> {
        self.cells.get_mut(&id)
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
        let mut cells: Vec<&Cell> = self.cells.values().collect();
        cells.sort_unstable_by_key(|c| c.id);
        cells.into_iter()
    }

    /// The number of cells.
    pub fn cell_count(&self) -> usize {
        self.cells.len()
    }

    /// The id the next added cell gets.
    pub fn next_cell_id(&self) -> CellId {
        CellId(self.next_cell)
    }

    /// Adds a cell (its `id`, `uses` and `used_by` are set here) and returns its id.
    pub fn add_cell(&mut self, mut cell: Cell) -> CellId {
        let id = self.next_cell_id();
        self.next_cell += 1;
        cell.id = id;
        cell.uses.clear();
        cell.used_by.clear();
        self.insert(cell);
        id
    }

    /// The number of edge slots, used or empty: what the registry holds for edges.
    pub fn edge_slots(&self) -> usize {
        self.edges.len()
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
        self.edges.len() - self.free_edges.len()
    }

    /// Stores `edge` in a free slot (a new one while a checkpoint is open) and returns its id.
    fn store_edge(&mut self, edge: Edge) -> EdgeId {
        if !self.checkpoint_open {
            if let Some(id) = self.free_edges.pop() {
                self.edges[id.index()] = Some(edge);
                return id;
            }
        }
        self.edges.push(Some(edge));
        EdgeId(self.edges.len() as u32 - 1)
    }

    /// Takes edge `id` out of its slot, which becomes free.
    fn take_edge(&mut self, id: EdgeId) -> Option<Edge> {
        let edge = self.edges.get_mut(id.index())?.take()?;
        self.free_edges.push(id);
        Some(edge)
    }

    /// Adds an edge and records it on both cells. Returns `None` (and adds nothing) when either
    /// cell does not exist.
    pub fn add_edge(&mut self, edge: Edge) -> Option<EdgeId> {
        if !self.cells.contains_key(&edge.provider) || !self.cells.contains_key(&edge.dependent) {
            return None;
        }
        let (dependent, provider) = (edge.dependent, edge.provider);
        let id = self.store_edge(edge);
        self.cell_mut(dependent)?.uses.push(id);
        self.cell_mut(provider)?.used_by.push(id);
        Some(id)
    }

    /// Adds the edges of dependent `dependent` that `edges` gives, as [`Registry::add_edge`]
    /// does each (an edge whose provider does not exist is left out), looking each provider up
    /// once rather than once per edge. Returns how many were added.
    pub fn add_edges(&mut self, dependent: CellId, edges: impl IntoIterator<Item = Edge>) -> usize {
        if !self.cells.contains_key(&dependent) {
            return 0;
        }
        let mut added: Vec<(CellId, EdgeId)> = Vec::new();
        let mut known: Option<CellId> = None;
        for mut edge in edges {
            edge.dependent = dependent;
            let provider = edge.provider;
            if known != Some(provider) && !self.cells.contains_key(&provider) {
                continue;
            }
            known = Some(provider);
            added.push((provider, self.store_edge(edge)));
        }
        if let Some(c) = self.cells.get_mut(&dependent) {
            c.uses.extend(added.iter().map(|(_, e)| *e));
        }
        added.sort_by_key(|(provider, _)| *provider);
        for group in added.chunk_by(|a, b| a.0 == b.0) {
            if let Some(c) = self.cells.get_mut(&group[0].0) {
                c.used_by.extend(group.iter().map(|(_, e)| *e));
            }
        }
        added.len()
    }

    /// Removes an edge from the arena and from both of its cells.
    pub fn remove_edge(&mut self, id: EdgeId) -> Option<Edge> {
        let edge = self.take_edge(id)?;
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
        let mut cell = self.cells.remove(&id).ok_or_else(Vec::new)?;
        self.unindex(&cell.name, id);
        let uses = core::mem::take(&mut cell.uses);
        let mut removed: Vec<(CellId, EdgeId)> = Vec::with_capacity(uses.len());
        for e in uses {
            if let Some(edge) = self.take_edge(e) {
                removed.push((edge.provider, e));
            }
        }
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
            let Some(mut cell) = self.cells.remove(id) else {
                continue;
            };
            self.unindex(&cell.name, *id);
            for e in core::mem::take(&mut cell.uses) {
                if let Some(edge) = self.take_edge(e) {
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

    /// A point to come back to with [`Registry::rollback`]. Until the rollback or
    /// [`Registry::keep`], new edges take new slots rather than freed ones.
    pub fn checkpoint(&mut self) -> Checkpoint {
        self.checkpoint_open = true;
        let symbols = |id| self.cell(id).map_or(0, |c| c.symbols.len());
        Checkpoint {
            next_cell: self.next_cell,
            edges: self.edges.len(),
            base_symbols: symbols(Self::BASE),
            platform_symbols: symbols(Self::PLATFORM),
        }
    }

    /// Keeps everything done since `checkpoint`: freed edge slots are reused again.
    pub fn keep(&mut self, checkpoint: &Checkpoint) {
        let _ = checkpoint;
        self.checkpoint_open = false;
    }

    /// Removes every cell, edge and base-image or platform symbol added since `checkpoint`, so the
    /// registry compares equal to what it was then (provided nothing older was changed since).
    pub fn rollback(&mut self, checkpoint: &Checkpoint) {
        for i in (checkpoint.edges..self.edges.len()).rev() {
            self.remove_edge(EdgeId(i as u32));
        }
        self.edges.truncate(checkpoint.edges);
        self.free_edges.retain(|e| e.index() < checkpoint.edges);
        self.checkpoint_open = false;
        let gone: Vec<CellId> = (self.cells.keys())
            .filter(|id| id.0 >= checkpoint.next_cell)
            .copied()
            .collect();
        for id in gone {
            if let Some(cell) = self.cells.remove(&id) {
                self.unindex(&cell.name, id);
            }
        }
        self.next_cell = checkpoint.next_cell;
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
mod tests;
