//! The registry's tests: edges on both cells, removal, slot reuse, checkpoints, serialization.

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
fn loading_and_unloading_for_ever_keeps_the_registry_the_size_of_what_is_loaded() {
    let (mut r, a, b) = two_cells();
    r.add_edge(edge(a, b, 0x1000)).unwrap();
    let mut last = CellId(0);
    for round in 0..100 {
        let c = r.add_cell(Cell::new("c", "0.1.0", Origin::Object));
        assert!(c > last, "a cell id is never reused");
        last = c;
        for k in 0..5 {
            r.add_edge(edge(c, b, 0x2000 + k)).unwrap();
        }
        r.add_edge(edge(c, Registry::BASE, 0x3000)).unwrap();
        r.remove_cell(c).unwrap();
        assert_eq!(r.edge_count(), 1, "round {round}");
        assert_eq!(
            r.edge_slots(),
            7,
            "round {round}: the freed slots are reused"
        );
        assert_eq!(r.cell_count(), 4, "round {round}");
    }
    assert!(r.cell(last).is_none());
    assert_eq!(r.cell(b).unwrap().used_by.len(), 1);
}

#[test]
fn an_open_checkpoint_keeps_freed_slots_so_that_rollback_finds_every_new_edge() {
    let (mut r, a, b) = two_cells();
    let kept = r.add_edge(edge(a, b, 0x1000)).unwrap();
    let freed = r.add_edge(edge(a, b, 0x1008)).unwrap();
    r.remove_edge(freed).unwrap();
    let before = r.clone();
    let checkpoint = r.checkpoint();
    let c = r.add_cell(Cell::new("c", "0.1.0", Origin::Object));
    let new = r.add_edge(edge(c, a, 0x2000)).unwrap();
    assert_eq!(new, EdgeId(2), "a new slot, not the freed one");
    r.add_edge(edge(a, c, 0x1010)).unwrap();
    r.rollback(&checkpoint);
    assert_eq!(r, before);
    assert_eq!(r.cell(b).unwrap().used_by, [kept]);
    assert_eq!(r.next_cell_id(), before.next_cell_id());
    // Closed again: the freed slot is the next one used.
    assert_eq!(r.add_edge(edge(a, b, 0x1018)), Some(freed));
    // Kept instead of rolled back: the same.
    let checkpoint = r.checkpoint();
    assert_eq!(r.add_edge(edge(a, b, 0x1020)), Some(EdgeId(2)));
    r.keep(&checkpoint);
    r.remove_edge(kept).unwrap();
    assert_eq!(r.add_edge(edge(a, b, 0x1028)), Some(kept));
}

#[test]
fn edges_added_together_are_recorded_as_edges_added_one_by_one() {
    let (mut one_by_one, a, b) = two_cells();
    let mut together = one_by_one.clone();
    let edges = [
        edge(a, b, 0x1000),
        edge(a, Registry::BASE, 0x1008),
        edge(a, b, 0x1010),
        edge(a, CellId(99), 0x1018),
        edge(a, a, 0x1020),
    ];
    for e in edges.clone() {
        one_by_one.add_edge(e);
    }
    assert_eq!(together.add_edges(a, edges), 4);
    assert_eq!(together, one_by_one);
    assert_eq!(together.dependencies(a), [Registry::BASE, b]);
    assert_eq!(together.add_edges(CellId(99), [edge(a, b, 0)]), 0);
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
    let gone = r.add_edge(edge(a, b, 0x1008)).unwrap();
    r.remove_edge(gone).unwrap();
    let c = r.add_cell(Cell::new("c", "0.1.0", Origin::Object));
    r.remove_cell(c).unwrap();
    let json = serde_json::to_string(&r).unwrap();
    let mut back: Registry = serde_json::from_str(&json).unwrap();
    assert_eq!(back, r);
    assert_eq!(
        back.next_cell_id(),
        CellId(5),
        "the removed cell's id stays taken"
    );
    assert_eq!(back.add_edge(edge(a, b, 0x1010)), Some(gone));
    // A file of the earlier format: a `null` per removed cell, no `next_cell`.
    let old = json
        .replace("\"cells\":[", "\"cells\":[null,")
        .replace(",\"next_cell\":5", "");
    assert!(old.contains("[null,") && !old.contains("next_cell"));
    let back: Registry = serde_json::from_str(&old).unwrap();
    assert_eq!(
        back.cells().map(|c| c.id).collect::<Vec<_>>(),
        [CellId(0), CellId(1), a, b]
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
