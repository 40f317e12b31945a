//! Namespaces: which cells a lookup can see, and in what order.
//!
//! A [`Namespace`] is a set of loaded cells with a map from mangled symbol name to the cell that
//! defines it, and an optional parent. `_kernel` holds the kernel cells; an application's
//! namespace has `_kernel` as its parent. The loader resolves a cell's undefined symbol in this
//! order, and the first hit wins:
//!
//! 1. the cell itself (done by the loader, which has the object's own symbol table),
//! 2. the cell's namespace,
//! 3. each parent namespace in turn, up to the root ([`Namespaces::lookup`]),
//! 4. the base image, then 5. the platform (done by the loader through its platform traits).
//!
//! A child's cell thus shadows a parent's cell of the same symbols for that child only, and no
//! namespace ever sees into a sibling or a child: a kernel cell cannot bind to an application.
//!
//! # Invariants
//!
//! - A symbol name appears at most once per namespace; adding a cell whose exports collide with
//!   another cell's in the same namespace fails and changes nothing ([`NamespaceError`]).
//! - Namespaces know only the model ([`crate_metadata`]): ids, names, addresses. They never touch
//!   object bytes or memory.

#![no_std]
#![deny(missing_docs)]
#![deny(unsafe_code)]

extern crate alloc;

pub mod graph;
mod snapshot;
mod system_snapshot;

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

use crate_metadata::{CellId, Name, NamespaceId, SymbolId};
use hashbrown::hash_map::{Entry, EntryRef};
use hashbrown::HashMap;
use serde::{Deserialize, Serialize};

pub use snapshot::{NamespaceSnapshot, Snapshot};
pub use system_snapshot::{SnapshotSource, SystemSnapshot, UnresolvedCell, UnresolvedSymbol};

/// Where a namespace's symbol is defined.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SymbolRef {
    /// The defining cell.
    pub cell: CellId,
    /// The symbol in that cell's symbol table.
    pub symbol: SymbolId,
    /// Its address (for a thread-local, its offset in the cell's TLS block).
    pub addr: u64,
    /// Whether the definition is weak (a later strong definition may not replace it).
    pub weak: bool,
}

/// One symbol a cell offers to its namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Export {
    /// The mangled name (shared with the defining cell's metadata: moving it into the map copies
    /// no bytes).
    pub name: Name,
    /// Where it is defined.
    pub target: SymbolRef,
}

/// A namespace: cells and the symbols they export.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Namespace {
    /// Its id.
    pub id: NamespaceId,
    /// Its name (`_kernel`, `app:hello#3`).
    pub name: String,
    /// Its parent, searched after it.
    pub parent: Option<NamespaceId>,
    /// The cells it holds, in load order.
    pub cells: Vec<CellId>,
    symbols: HashMap<Name, SymbolRef>,
}

impl Namespace {
    /// The definition of `name` in this namespace alone.
    pub fn get(&self, name: &str) -> Option<&SymbolRef> {
        self.symbols.get(name)
    }

    /// Number of symbols visible in this namespace alone.
    pub fn symbol_count(&self) -> usize {
        self.symbols.len()
    }

    /// Whether adding `export` (checked by `check_add`) changes the map: a weak export never
    /// replaces an existing definition, a strong one replaces only a weak one.
    fn takes(&self, export: &Export) -> bool {
        !matches!(self.symbols.get(&export.name), Some(existing) if !existing.weak || export.target.weak)
    }

    /// Every symbol of this namespace alone, in no particular order.
    pub fn symbols(&self) -> impl Iterator<Item = (&str, &SymbolRef)> {
        self.symbols.iter().map(|(k, v)| (k.as_str(), v))
    }
}

/// Why a namespace operation was refused. Nothing was changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NamespaceError {
    /// No namespace has this id.
    NoSuchNamespace(NamespaceId),
    /// A namespace with this name exists already.
    NameTaken(String),
    /// Two cells in one namespace define the same strong symbol.
    DuplicateSymbol {
        /// The namespace.
        namespace: String,
        /// The mangled symbol.
        symbol: String,
        /// The cell that defines it already.
        existing: CellId,
    },
    /// The cell is already in the namespace.
    CellPresent(CellId),
    /// The namespace still holds cells or has children.
    NotEmpty(String),
}

impl fmt::Display for NamespaceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NamespaceError::NoSuchNamespace(id) => write!(f, "no namespace {id}"),
            NamespaceError::NameTaken(n) => write!(f, "a namespace named `{n}` exists already"),
            NamespaceError::DuplicateSymbol {
                namespace,
                symbol,
                existing,
            } => write!(
                f,
                "`{}` is already defined in namespace `{namespace}` by {existing}",
                crate_metadata::demangle::demangle(symbol)
            ),
            NamespaceError::CellPresent(c) => write!(f, "{c} is already in the namespace"),
            NamespaceError::NotEmpty(n) => write!(f, "namespace `{n}` still holds cells"),
        }
    }
}

/// Every namespace of the system, as a tree.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Namespaces {
    list: Vec<Option<Namespace>>,
}

impl Namespaces {
    /// No namespaces.
    pub fn new() -> Namespaces {
        Namespaces::default()
    }

    /// Creates an empty namespace named `name` under `parent`.
    pub fn create(
        &mut self,
        name: &str,
        parent: Option<NamespaceId>,
    ) -> Result<NamespaceId, NamespaceError> {
        if let Some(p) = parent {
            self.get(p).ok_or(NamespaceError::NoSuchNamespace(p))?;
        }
        if self.by_name(name).is_some() {
            return Err(NamespaceError::NameTaken(name.into()));
        }
        let id = NamespaceId(self.list.len() as u32);
        self.list.push(Some(Namespace {
            id,
            name: name.into(),
            parent,
            cells: Vec::new(),
            symbols: HashMap::new(),
        }));
        Ok(id)
    }

    /// Removes an empty namespace that has no children.
    pub fn remove(&mut self, id: NamespaceId) -> Result<Namespace, NamespaceError> {
        let ns = self.get(id).ok_or(NamespaceError::NoSuchNamespace(id))?;
        if !ns.cells.is_empty() || self.iter().any(|n| n.parent == Some(id)) {
            return Err(NamespaceError::NotEmpty(ns.name.clone()));
        }
        let removed = self.list[id.index()]
            .take()
            .ok_or(NamespaceError::NoSuchNamespace(id));
        // Transient namespaces (a swap's staging namespace) come and go at the end of the list:
        // do not let their holes pile up.
        while matches!(self.list.last(), Some(None)) {
            self.list.pop();
        }
        removed
    }

    /// Whether [`Namespaces::replace_cell`] of each `(old, new, exports)` in `ns` would succeed,
    /// without changing or copying anything: no export may collide with a strong definition of a
    /// cell that stays.
    pub fn check_replace(
        &self,
        ns: NamespaceId,
        replaced: &[CellId],
        exports: &[Export],
    ) -> Result<(), NamespaceError> {
        self.check_replace_by(
            ns,
            replaced,
            exports
                .iter()
                .map(|e| (e.name.as_str(), e.target.cell, e.target.weak)),
        )
    }

    /// [`Namespaces::check_replace`] of exports given as `(name, cell, weak)`, borrowed from
    /// wherever they live (a swap checks a cell's symbols without copying their names).
    pub fn check_replace_by<'a>(
        &self,
        ns: NamespaceId,
        replaced: &[CellId],
        exports: impl IntoIterator<Item = (&'a str, CellId, bool)>,
    ) -> Result<(), NamespaceError> {
        let n = self.get(ns).ok_or(NamespaceError::NoSuchNamespace(ns))?;
        for (name, cell, weak) in exports {
            if let Some(existing) = n.symbols.get(name) {
                let stays = !replaced.contains(&existing.cell) && existing.cell != cell;
                if stays && !existing.weak && !weak {
                    return Err(NamespaceError::DuplicateSymbol {
                        namespace: n.name.clone(),
                        symbol: name.into(),
                        existing: existing.cell,
                    });
                }
            }
        }
        Ok(())
    }

    /// The namespace `id`.
    pub fn get(&self, id: NamespaceId) -> Option<&Namespace> {
        self.list.get(id.index()).and_then(Option::as_ref)
    }

    fn get_mut(&mut self, id: NamespaceId) -> Result<&mut Namespace, NamespaceError> {
        self.list
            .get_mut(id.index())
            .and_then(Option::as_mut)
            .ok_or(NamespaceError::NoSuchNamespace(id))
    }

    /// The namespace named `name`.
    pub fn by_name(&self, name: &str) -> Option<&Namespace> {
        self.iter().find(|n| n.name == name)
    }

    /// Every namespace, in id order.
    pub fn iter(&self) -> impl Iterator<Item = &Namespace> {
        self.list.iter().flatten()
    }

    /// `id` and its ancestors, nearest first: the order [`Namespaces::lookup`] searches.
    pub fn chain(&self, id: NamespaceId) -> Vec<NamespaceId> {
        let mut out = Vec::new();
        let mut cur = Some(id);
        while let Some(c) = cur {
            let Some(ns) = self.get(c) else { break };
            if out.contains(&c) {
                break; // a cycle cannot be built through `create`; never loop on one anyway
            }
            out.push(c);
            cur = ns.parent;
        }
        out
    }

    /// Looks `name` up in `ns`, then in each parent. Returns the namespace that had it and the
    /// definition.
    pub fn lookup(&self, ns: NamespaceId, name: &str) -> Option<(NamespaceId, SymbolRef)> {
        let mut cur = Some(ns);
        let mut hops = 0;
        while let Some(c) = cur {
            let n = self.get(c)?;
            if let Some(s) = n.symbols.get(name) {
                return Some((c, *s));
            }
            cur = n.parent;
            hops += 1;
            if hops > self.list.len() {
                return None;
            }
        }
        None
    }

    /// Adds `cell` and its exports to `ns`, all or nothing. A weak export that collides with an
    /// existing definition is skipped; a strong one that collides with a strong one is an error.
    /// A strong export replaces a weak definition of another cell.
    pub fn add_cell(
        &mut self,
        ns: NamespaceId,
        cell: CellId,
        exports: &[Export],
    ) -> Result<(), NamespaceError> {
        self.check_add(ns, cell, exports)?;
        let n = self.get_mut(ns)?;
        n.cells.push(cell);
        n.symbols.reserve(exports.len());
        for e in exports {
            if n.takes(e) {
                n.symbols.insert(e.name.clone(), e.target);
            }
        }
        Ok(())
    }

    /// [`Namespaces::add_cell`] with the exports given by value: their names move into the
    /// namespace's map (what the loader does on every load). Each name is hashed and looked up
    /// once: an export is checked where it is placed, and a collision with another cell's strong
    /// symbol takes back what this call placed (the error path walks the namespace; the load's
    /// path does not).
    pub fn add_cell_owned(
        &mut self,
        ns: NamespaceId,
        cell: CellId,
        exports: Vec<Export>,
    ) -> Result<(), NamespaceError> {
        let n = self.get_mut(ns)?;
        if n.cells.contains(&cell) {
            return Err(NamespaceError::CellPresent(cell));
        }
        n.symbols.reserve(exports.len());
        // Another cell's weak definitions that a strong export of this one replaced.
        let mut displaced: Vec<(Name, SymbolRef)> = Vec::new();
        for e in exports {
            match n.symbols.entry(e.name) {
                Entry::Vacant(v) => {
                    v.insert(e.target);
                }
                Entry::Occupied(mut o) => {
                    let existing = *o.get();
                    if !existing.weak && !e.target.weak && existing.cell != cell {
                        let error = NamespaceError::DuplicateSymbol {
                            namespace: n.name.clone(),
                            symbol: o.key().to_string(),
                            existing: existing.cell,
                        };
                        // Nothing of `cell` was in the namespace before this call.
                        n.symbols.retain(|_, s| s.cell != cell);
                        n.symbols.extend(displaced);
                        return Err(error);
                    }
                    // As `Namespace::takes`: a strong export replaces a weak definition.
                    if existing.weak && !e.target.weak {
                        if existing.cell != cell {
                            displaced.push((o.key().clone(), existing));
                        }
                        o.insert(e.target);
                    }
                }
            }
        }
        n.cells.push(cell);
        Ok(())
    }

    /// Whether `cell` with `exports` can be added to `ns` (see [`Namespaces::add_cell`]).
    fn check_add(
        &self,
        ns: NamespaceId,
        cell: CellId,
        exports: &[Export],
    ) -> Result<(), NamespaceError> {
        let n = self.get(ns).ok_or(NamespaceError::NoSuchNamespace(ns))?;
        if n.cells.contains(&cell) {
            return Err(NamespaceError::CellPresent(cell));
        }
        for e in exports {
            if let Some(existing) = n.symbols.get(&e.name) {
                if !existing.weak && !e.target.weak && existing.cell != cell {
                    return Err(NamespaceError::DuplicateSymbol {
                        namespace: n.name.clone(),
                        symbol: e.name.to_string(),
                        existing: existing.cell,
                    });
                }
            }
        }
        Ok(())
    }

    /// Removes every cell of `ns` and all their symbols at once (a namespace being torn down):
    /// one pass, where [`Namespaces::remove_cell`] for each cell would walk the symbols each time.
    pub fn clear(&mut self, ns: NamespaceId) -> Result<(), NamespaceError> {
        let n = self.get_mut(ns)?;
        n.cells.clear();
        n.symbols.clear();
        Ok(())
    }

    /// Removes `cell` and every symbol it defines from `ns`.
    pub fn remove_cell(&mut self, ns: NamespaceId, cell: CellId) -> Result<(), NamespaceError> {
        let n = self.get_mut(ns)?;
        n.cells.retain(|c| *c != cell);
        n.symbols.retain(|_, s| s.cell != cell);
        Ok(())
    }

    /// [`Namespaces::remove_cell`] given the names `cell` exported (the loader's metadata of it,
    /// which holds every name the namespace has for it): only those entries are looked at, so
    /// unloading one cell costs its own exports, not the namespace's size.
    pub fn remove_cell_exports<'a>(
        &mut self,
        ns: NamespaceId,
        cell: CellId,
        names: impl IntoIterator<Item = &'a str>,
    ) -> Result<(), NamespaceError> {
        let n = self.get_mut(ns)?;
        // A cell is in the list at most once; the recent ones are at its end.
        if let Some(pos) = n.cells.iter().rposition(|c| *c == cell) {
            n.cells.remove(pos);
        }
        for name in names {
            // One lookup a name: the entry, removed only when it is this cell's.
            if let EntryRef::Occupied(o) = n.symbols.entry_ref(name) {
                if o.get().cell == cell {
                    o.remove();
                }
            }
        }
        Ok(())
    }

    /// Replaces `old` by `new` in `ns`: `new` takes `old`'s place in the cell list, `old`'s
    /// symbols are removed and `new`'s exports added. All or nothing.
    pub fn replace_cell(
        &mut self,
        ns: NamespaceId,
        old: CellId,
        new: CellId,
        exports: &[Export],
    ) -> Result<(), NamespaceError> {
        let old_names: Vec<Name> = self
            .get(ns)
            .map(|n| {
                n.symbols
                    .iter()
                    .filter(|(_, s)| s.cell == old)
                    .map(|(k, _)| k.clone())
                    .collect()
            })
            .unwrap_or_default();
        self.replace_cell_by(
            ns,
            old,
            new,
            exports.iter().map(|e| (e.name.as_str(), e.target)),
            old_names.iter().map(Name::as_str),
        )
    }

    /// Replaces `old` by `new` in `ns` when `new` exports exactly `old`'s symbols, with the same
    /// ids (a new version with the same interface): every entry of `old` points at the same
    /// symbol of `new`, at the address `addr_of` gives. `names` are the names `old` exported
    /// (every name the namespace has for it): only those entries are looked at. Nothing is added
    /// or removed.
    pub fn repoint_cell<'a>(
        &mut self,
        ns: NamespaceId,
        old: CellId,
        new: CellId,
        names: impl IntoIterator<Item = &'a str>,
        addr_of: impl Fn(SymbolId) -> Option<u64>,
    ) -> Result<(), NamespaceError> {
        let n = self.get_mut(ns)?;
        if new != old && n.cells.contains(&new) {
            return Err(NamespaceError::CellPresent(new));
        }
        for name in names {
            if let Some(s) = n.symbols.get_mut(name).filter(|s| s.cell == old) {
                s.cell = new;
                s.addr = addr_of(s.symbol).unwrap_or(s.addr);
            }
        }
        match n.cells.iter().position(|c| *c == old) {
            Some(pos) => n.cells[pos] = new,
            None => n.cells.push(new),
        }
        Ok(())
    }

    /// [`Namespaces::replace_cell`] with the exports borrowed from wherever they live (a swap
    /// passes the new version's symbols). Checked first, then changed in place: a name both
    /// versions export keeps its entry, which now points at the new version; only names the old
    /// version alone exported are removed and names the new one alone exports copied in. The
    /// namespace's other symbols are neither copied nor rehashed. `old_names` are the names `old`
    /// exported (every name the namespace has for it): only those are looked at for removal.
    pub fn replace_cell_by<'a, 'o, I>(
        &mut self,
        ns: NamespaceId,
        old: CellId,
        new: CellId,
        exports: I,
        old_names: impl IntoIterator<Item = &'o str>,
    ) -> Result<(), NamespaceError>
    where
        I: IntoIterator<Item = (&'a str, SymbolRef)>,
        I::IntoIter: Clone,
    {
        let exports = exports.into_iter();
        let n = self.get(ns).ok_or(NamespaceError::NoSuchNamespace(ns))?;
        if new != old && n.cells.contains(&new) {
            return Err(NamespaceError::CellPresent(new));
        }
        self.check_replace_by(
            ns,
            &[old],
            exports.clone().map(|(name, t)| (name, t.cell, t.weak)),
        )?;
        let n = self.get_mut(ns)?;
        for (name, target) in exports {
            match n.symbols.get_mut(name) {
                Some(existing) if existing.cell == old => *existing = target,
                Some(existing) if !existing.weak || target.weak => {}
                Some(existing) => *existing = target,
                None => {
                    n.symbols.insert(name.into(), target);
                }
            }
        }
        // What the old version alone exported (nothing, when both export the same names).
        for name in old_names {
            if n.symbols.get(name).is_some_and(|s| s.cell == old) {
                n.symbols.remove(name);
            }
        }
        match n.cells.iter().position(|c| *c == old) {
            Some(pos) => n.cells[pos] = new,
            None => n.cells.push(new),
        }
        Ok(())
    }

    /// A sorted, comparable picture of every namespace.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot::of(self)
    }
}

#[cfg(test)]
mod tests;

impl core::error::Error for NamespaceError {}
