use super::*;
use alloc::vec;

fn export(name: &str, cell: u32, addr: u64, weak: bool) -> Export {
    Export {
        name: name.into(),
        target: SymbolRef {
            cell: CellId(cell),
            symbol: SymbolId(0),
            addr,
            weak,
        },
    }
}

#[test]
fn lookup_walks_parents_and_child_shadows() {
    let mut all = Namespaces::new();
    let kernel = all.create("_kernel", None).unwrap();
    let app = all.create("app", Some(kernel)).unwrap();
    let other = all.create("other", Some(kernel)).unwrap();
    all.add_cell(kernel, CellId(2), &[export("lib_f", 2, 0x1000, false)])
        .unwrap();
    all.add_cell(app, CellId(3), &[export("lib_f", 3, 0x2000, false)])
        .unwrap();
    all.add_cell(other, CellId(4), &[export("only_other", 4, 0x3000, false)])
        .unwrap();

    assert_eq!(
        all.lookup(app, "lib_f").unwrap(),
        (app, all.get(app).unwrap().get("lib_f").copied().unwrap())
    );
    assert_eq!(all.lookup(app, "lib_f").unwrap().1.addr, 0x2000);
    assert_eq!(all.lookup(kernel, "lib_f").unwrap().1.addr, 0x1000);
    assert_eq!(all.lookup(other, "lib_f").unwrap().1.addr, 0x1000);
    // Siblings and children are invisible.
    assert!(all.lookup(app, "only_other").is_none());
    assert!(all.lookup(kernel, "only_other").is_none());
    assert_eq!(all.chain(app), vec![app, kernel]);
}

#[test]
fn duplicate_strong_symbol_is_refused_and_nothing_changes() {
    let mut all = Namespaces::new();
    let k = all.create("_kernel", None).unwrap();
    all.add_cell(k, CellId(2), &[export("f", 2, 1, false)])
        .unwrap();
    let before = all.snapshot();
    let err = all
        .add_cell(
            k,
            CellId(3),
            &[export("g", 3, 2, false), export("f", 3, 3, false)],
        )
        .unwrap_err();
    assert_eq!(
        err,
        NamespaceError::DuplicateSymbol {
            namespace: "_kernel".into(),
            symbol: "f".into(),
            existing: CellId(2)
        }
    );
    assert_eq!(all.snapshot(), before);
}

#[test]
fn weak_definitions_yield_to_strong_ones() {
    let mut all = Namespaces::new();
    let k = all.create("_kernel", None).unwrap();
    all.add_cell(k, CellId(2), &[export("w", 2, 1, true)])
        .unwrap();
    all.add_cell(k, CellId(3), &[export("w", 3, 2, false)])
        .unwrap();
    assert_eq!(all.lookup(k, "w").unwrap().1.cell, CellId(3));
    all.add_cell(k, CellId(4), &[export("w", 4, 3, true)])
        .unwrap();
    assert_eq!(all.lookup(k, "w").unwrap().1.cell, CellId(3));
}

#[test]
fn remove_and_replace_cell() {
    let mut all = Namespaces::new();
    let k = all.create("_kernel", None).unwrap();
    all.add_cell(k, CellId(2), &[export("a", 2, 1, false)])
        .unwrap();
    all.add_cell(k, CellId(3), &[export("b", 3, 2, false)])
        .unwrap();
    all.replace_cell(k, CellId(2), CellId(5), &[export("a", 5, 9, false)])
        .unwrap();
    assert_eq!(all.get(k).unwrap().cells, vec![CellId(5), CellId(3)]);
    assert_eq!(all.lookup(k, "a").unwrap().1.addr, 9);
    all.remove_cell(k, CellId(3)).unwrap();
    assert!(all.lookup(k, "b").is_none());
    assert_eq!(all.get(k).unwrap().cells, vec![CellId(5)]);
}

#[test]
fn replace_cell_in_place_keeps_others_and_refuses_collisions() {
    let mut all = Namespaces::new();
    let k = all.create("_kernel", None).unwrap();
    all.add_cell(
        k,
        CellId(2),
        &[export("a", 2, 1, false), export("gone", 2, 2, false)],
    )
    .unwrap();
    all.add_cell(k, CellId(3), &[export("b", 3, 3, false)])
        .unwrap();
    let before = all.snapshot();
    // A collision with a cell that stays is refused, and nothing changes.
    assert!(matches!(
        all.replace_cell(k, CellId(2), CellId(5), &[export("b", 5, 9, false)]),
        Err(NamespaceError::DuplicateSymbol { .. })
    ));
    assert_eq!(all.snapshot(), before);
    // A name both export is repointed, a name only the old one had goes, a new one comes.
    all.replace_cell(
        k,
        CellId(2),
        CellId(5),
        &[export("a", 5, 7, false), export("new", 5, 8, false)],
    )
    .unwrap();
    assert_eq!(all.lookup(k, "a").unwrap().1.addr, 7);
    assert_eq!(all.lookup(k, "new").unwrap().1.cell, CellId(5));
    assert!(all.lookup(k, "gone").is_none());
    assert_eq!(all.lookup(k, "b").unwrap().1.cell, CellId(3));
    assert_eq!(all.get(k).unwrap().cells, vec![CellId(5), CellId(3)]);
}

#[test]
fn repoint_cell_moves_every_entry_to_the_new_version() {
    let mut all = Namespaces::new();
    let k = all.create("_kernel", None).unwrap();
    all.add_cell(
        k,
        CellId(2),
        &[export("a", 2, 1, false), export("c", 2, 2, false)],
    )
    .unwrap();
    all.add_cell(k, CellId(3), &[export("b", 3, 3, false)])
        .unwrap();
    assert!(matches!(
        all.repoint_cell(k, CellId(2), CellId(3), ["a", "c"], |_| None),
        Err(NamespaceError::CellPresent(CellId(3)))
    ));
    all.repoint_cell(k, CellId(2), CellId(6), ["a", "c"], |id| {
        Some(100 + u64::from(id.0))
    })
    .unwrap();
    let (_, a) = all.lookup(k, "a").unwrap();
    assert_eq!((a.cell, a.addr), (CellId(6), 100 + u64::from(a.symbol.0)));
    assert_eq!(all.lookup(k, "c").unwrap().1.cell, CellId(6));
    assert_eq!(all.lookup(k, "b").unwrap().1.cell, CellId(3));
    assert_eq!(all.get(k).unwrap().cells, vec![CellId(6), CellId(3)]);
}

#[test]
fn namespaces_with_cells_or_children_are_not_removed() {
    let mut all = Namespaces::new();
    let k = all.create("_kernel", None).unwrap();
    let app = all.create("app", Some(k)).unwrap();
    assert_eq!(
        all.create("app", Some(k)),
        Err(NamespaceError::NameTaken("app".into()))
    );
    assert!(matches!(all.remove(k), Err(NamespaceError::NotEmpty(_))));
    all.add_cell(app, CellId(2), &[]).unwrap();
    assert!(matches!(all.remove(app), Err(NamespaceError::NotEmpty(_))));
    all.remove_cell(app, CellId(2)).unwrap();
    all.remove(app).unwrap();
    all.remove(k).unwrap();
    assert_eq!(all.iter().count(), 0);
}

#[test]
fn snapshot_serializes() {
    let mut all = Namespaces::new();
    let k = all.create("_kernel", None).unwrap();
    all.add_cell(k, CellId(2), &[export("a", 2, 1, false)])
        .unwrap();
    let json = serde_json::to_string(&all.snapshot()).unwrap();
    let back: Snapshot = serde_json::from_str(&json).unwrap();
    assert_eq!(back, all.snapshot());
}

/// A registry of `n` cells and the edges `(dependent, provider)` between them.
fn graph(n: usize, uses: &[(usize, usize)]) -> (crate_metadata::Registry, Vec<CellId>) {
    use crate_metadata::{Cell, Edge, Origin, SectionId, SlotKind};
    let mut registry = crate_metadata::Registry::new("base");
    let ids: Vec<CellId> = (0..n)
        .map(|i| registry.add_cell(Cell::new(&alloc::format!("c{i}"), "0.1.0", Origin::Object)))
        .collect();
    for &(dependent, provider) in uses {
        let edge = Edge {
            dependent: ids[dependent],
            section: SectionId(0),
            slot: 0,
            kind: SlotKind::Got,
            addend: 0,
            provider: ids[provider],
            symbol: SymbolId(0),
        };
        registry.add_edge(edge);
    }
    (registry, ids)
}

#[test]
fn dependency_order_puts_providers_first_in_rounds_and_names_cycles() {
    // 0 <- 1 <- 3, 0 <- 2 <- 3, 4 alone; 5 <-> 6 a cycle and 7 depends on it.
    let (registry, ids) = graph(8, &[(1, 0), (2, 0), (3, 1), (3, 2), (5, 6), (6, 5), (7, 5)]);
    let acyclic = [ids[3], ids[2], ids[4], ids[1], ids[0]];
    let order = graph::dependency_order(&registry, &acyclic).unwrap();
    // Round 1: 0 and 4 (id order), round 2: 1 and 2, round 3: 3.
    assert_eq!(order, vec![ids[0], ids[4], ids[1], ids[2], ids[3]]);
    // Edges to cells outside the set do not hold a cell back.
    assert_eq!(
        graph::dependency_order(&registry, &[ids[3], ids[1]]).unwrap(),
        vec![ids[1], ids[3]]
    );
    let err = graph::dependency_order(&registry, &ids).unwrap_err();
    assert_eq!(err, vec![ids[5], ids[6], ids[7]]);
}

#[test]
fn teardown_order_frees_dependents_first_and_newest_first() {
    // 0 <- 1 <- 3, 0 <- 2 <- 3, 4 alone: without a swap, the reverse load (id) order.
    let (registry, ids) = graph(5, &[(1, 0), (2, 0), (3, 1), (3, 2)]);
    let order = graph::teardown_order(&registry, &[ids[2], ids[0], ids[4], ids[3], ids[1]]);
    assert_eq!(order, vec![ids[4], ids[3], ids[2], ids[1], ids[0]]);
    // As after a swap: 1 and 2 now depend on 4, newer than both; 3 depends on 1 and 2. Newest
    // first would free 4 before its dependents; they go first, then 4, then 0.
    let (registry, ids) = graph(5, &[(1, 4), (2, 4), (3, 1), (3, 2)]);
    let order = graph::teardown_order(&registry, &ids);
    assert_eq!(order, vec![ids[3], ids[2], ids[1], ids[4], ids[0]]);
    // A cycle (5 <-> 6; 7 depends on it) loses no cell: 7 goes in turn, the cycle last,
    // newest first.
    let (registry, ids) = graph(8, &[(1, 0), (5, 6), (6, 5), (7, 5)]);
    let order = graph::teardown_order(&registry, &ids);
    let expected = [7, 4, 3, 2, 1, 0, 6, 5].map(|i| ids[i]);
    assert_eq!(order, expected);
}

#[test]
fn remove_cell_exports_removes_only_that_cells_entries() {
    let mut all = Namespaces::new();
    let k = all.create("_kernel", None).unwrap();
    all.add_cell(k, CellId(2), &[export("w", 2, 1, true)])
        .unwrap();
    all.add_cell(
        k,
        CellId(3),
        &[export("a", 3, 2, false), export("w", 3, 3, false)],
    )
    .unwrap();
    all.add_cell(k, CellId(4), &[export("b", 4, 4, false)])
        .unwrap();
    // Cell 2's weak `w` was replaced by cell 3's strong one: removing cell 2 leaves it.
    all.remove_cell_exports(k, CellId(2), ["w"]).unwrap();
    assert_eq!(all.lookup(k, "w").unwrap().1.cell, CellId(3));
    all.remove_cell_exports(k, CellId(3), ["a", "w"]).unwrap();
    assert!(all.lookup(k, "a").is_none());
    assert!(all.lookup(k, "w").is_none());
    assert_eq!(all.lookup(k, "b").unwrap().1.cell, CellId(4));
    assert_eq!(all.get(k).unwrap().cells, vec![CellId(4)]);
    // The same as `remove_cell` would have left.
    let mut again = Namespaces::new();
    let k2 = again.create("_kernel", None).unwrap();
    again
        .add_cell(k2, CellId(4), &[export("b", 4, 4, false)])
        .unwrap();
    assert_eq!(all.snapshot(), again.snapshot());
}

#[test]
fn adding_exports_by_value_does_what_adding_them_by_reference_does() {
    // Cell 2 defines `w` weak and `s` strong; each case adds cell 3's exports both ways.
    let cases: [&[Export]; 5] = [
        // A strong export replaces the weak `w`; a weak one yields to the strong `s`.
        &[
            export("w", 3, 10, false),
            export("s", 3, 11, true),
            export("n", 3, 12, false),
        ],
        // The weak `w` is replaced, then the strong `s` collides: the replacement is undone.
        &[
            export("n", 3, 10, false),
            export("w", 3, 11, false),
            export("s", 3, 12, false),
        ],
        // A name the cell exports twice: the first strong one stays.
        &[
            export("d", 3, 10, false),
            export("d", 3, 11, false),
            export("e", 3, 12, true),
            export("e", 3, 13, false),
        ],
        // Only new names.
        &[export("x", 3, 10, false), export("y", 3, 11, true)],
        // Nothing.
        &[],
    ];
    for (i, exports) in cases.iter().enumerate() {
        let mut by_ref = Namespaces::new();
        let k = by_ref.create("_kernel", None).unwrap();
        by_ref
            .add_cell(
                k,
                CellId(2),
                &[export("w", 2, 1, true), export("s", 2, 2, false)],
            )
            .unwrap();
        let mut by_value = by_ref.clone();
        let before = by_ref.snapshot();
        let a = by_ref.add_cell(k, CellId(3), exports);
        let b = by_value.add_cell_owned(k, CellId(3), exports.to_vec());
        assert_eq!(a, b, "case {i}");
        assert_eq!(by_ref.snapshot(), by_value.snapshot(), "case {i}");
        if b.is_err() {
            assert_eq!(
                by_value.snapshot(),
                before,
                "case {i}: a refused add changes nothing"
            );
        }
        // Removing cell 3 by its names leaves cell 2's definitions as they were.
        let names: Vec<&str> = exports.iter().map(|e| e.name.as_str()).collect();
        by_value.remove_cell_exports(k, CellId(3), names).unwrap();
        by_ref.remove_cell(k, CellId(3)).unwrap();
        assert_eq!(by_ref.snapshot(), by_value.snapshot(), "case {i}");
    }
}
