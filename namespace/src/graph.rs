//! Queries over the crate-level graph that the edges of a [`Registry`] form.

use alloc::collections::{BTreeMap, BTreeSet, VecDeque};
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
    let set: BTreeSet<CellId> = cells.iter().copied().collect();
    let mut remaining: BTreeMap<CellId, BTreeSet<CellId>> = set
        .iter()
        .map(|c| {
            let deps = registry
                .dependencies(*c)
                .into_iter()
                .filter(|d| set.contains(d))
                .collect();
            (*c, deps)
        })
        .collect();
    let mut out = Vec::with_capacity(set.len());
    while !remaining.is_empty() {
        let ready: Vec<CellId> = remaining
            .iter()
            .filter(|(_, deps)| deps.is_empty())
            .map(|(c, _)| *c)
            .collect();
        if ready.is_empty() {
            return Err(remaining.keys().copied().collect());
        }
        for c in ready {
            remaining.remove(&c);
            for deps in remaining.values_mut() {
                deps.remove(&c);
            }
            out.push(c);
        }
    }
    Ok(out)
}
