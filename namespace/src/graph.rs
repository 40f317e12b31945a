//! Queries over the crate-level graph that the edges of a [`Registry`] form.

use alloc::collections::{BTreeMap, BTreeSet, BinaryHeap, VecDeque};
use alloc::vec::Vec;

use crate_metadata::{CellId, EdgeId, Registry};

/// Every cell that depends on `cell`, directly or through others, in breadth-first order (nearest
/// first), with the edges (slots) by which each one depends on the cell before it.
pub fn dependents_transitive(registry: &Registry, cell: CellId) -> Vec<(CellId, Vec<EdgeId>)> {
    let mut seen = BTreeSet::new();
    seen.insert(cell);
    let mut queue = VecDeque::from([cell]);
    let mut out = Vec::new();
    while let Some(c) = queue.pop_front() {
        let Some(provider) = registry.cell(c) else {
            continue;
        };
        let mut by_dependent: BTreeMap<CellId, Vec<EdgeId>> = BTreeMap::new();
        for e in &provider.used_by {
            if let Some(edge) = registry.edge(*e) {
                if edge.dependent != c {
                    by_dependent.entry(edge.dependent).or_default().push(*e);
                }
            }
        }
        for (d, edges) in by_dependent {
            if seen.insert(d) {
                queue.push_back(d);
                out.push((d, edges));
            }
        }
    }
    out
}

/// The cells of `cells` ordered so that every cell comes after the cells (of `cells`) it depends
/// on. Cells on a cycle are returned, in id order, as the error.
pub fn dependency_order(registry: &Registry, cells: &[CellId]) -> Result<Vec<CellId>, Vec<CellId>> {
    // Kahn's algorithm in rounds: each round takes, in id order, every cell whose dependencies
    // (inside `cells`) all came in earlier rounds. Linear in cells and edges.
    let set: BTreeSet<CellId> = cells.iter().copied().collect();
    let mut waiting_on: BTreeMap<CellId, usize> = BTreeMap::new();
    let mut dependents: BTreeMap<CellId, Vec<CellId>> = BTreeMap::new();
    for c in &set {
        let deps: Vec<CellId> = registry
            .dependencies(*c)
            .into_iter()
            .filter(|d| set.contains(d))
            .collect();
        waiting_on.insert(*c, deps.len());
        for d in deps {
            dependents.entry(d).or_default().push(*c);
        }
    }
    let mut out = Vec::with_capacity(set.len());
    let mut round: Vec<CellId> = waiting_on
        .iter()
        .filter(|(_, n)| **n == 0)
        .map(|(c, _)| *c)
        .collect();
    while !round.is_empty() {
        let mut next = Vec::new();
        for c in &round {
            for d in dependents.get(c).map(Vec::as_slice).unwrap_or(&[]) {
                if let Some(n) = waiting_on.get_mut(d) {
                    *n -= 1;
                    if *n == 0 {
                        next.push(*d);
                    }
                }
            }
        }
        out.append(&mut round);
        next.sort_unstable();
        round = next;
    }
    if out.len() < set.len() {
        return Err(waiting_on
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .map(|(c, _)| c)
            .collect());
    }
    Ok(out)
}

/// The cells of `cells` in an order to free them in: every cell comes after the cells (of `cells`)
/// that depend on it, and among the cells free to go next the newest (highest id) goes first.
///
/// Ids grow with every load, so without a swap this is exactly the reverse load order. That is
/// the order in which libgcc's list of registered unwind tables (newest first) finds each table at
/// its head, which makes tearing down N cells linear in N where another dependents-first order
/// walks much of the list per cell. A swap puts a newer version under older dependents; those
/// dependents still go first. Cells on a cycle (which a loader never builds) follow the others,
/// newest first. Linear in cells and edges, but for the heap's logarithm.
pub fn teardown_order(registry: &Registry, cells: &[CellId]) -> Vec<CellId> {
    let set: BTreeSet<CellId> = cells.iter().copied().collect();
    // For each cell, how many of its dependents (inside `cells`) are still to go.
    let mut users: BTreeMap<CellId, usize> = BTreeMap::new();
    let mut ready = BinaryHeap::new();
    for c in &set {
        let n = registry
            .dependents(*c)
            .into_iter()
            .filter(|d| set.contains(d))
            .count();
        users.insert(*c, n);
        if n == 0 {
            ready.push(*c);
        }
    }
    let mut out = Vec::with_capacity(set.len());
    while let Some(c) = ready.pop() {
        out.push(c);
        for p in registry.dependencies(c) {
            if let Some(n) = users.get_mut(&p) {
                *n -= 1;
                if *n == 0 {
                    ready.push(p);
                }
            }
        }
    }
    if out.len() < set.len() {
        let left: BTreeSet<CellId> = set
            .difference(&out.iter().copied().collect())
            .copied()
            .collect();
        out.extend(left.into_iter().rev());
    }
    out
}
