//! Tearing down a namespace: the order in which its cells are freed, observed through the
//! debuggers' "released" calls, which `release` makes for each cell as it frees it.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use crate::swap::{NewVersion, StaticOutcome, SwapOptions, SwapRequest};
use crate::system::System;
use crate::testing::cells::{provider, user, Provider};
use crate::testing::debuggers::Event;
use crate::testing::{system, HeapPlatform};
use crate::CellSpec;
use crate_metadata::{CellId, CellState, NamespaceId};

/// `p`, then `u` (which uses `p`), in a namespace; `p` swapped to a new version with its static
/// rebound into the old version's memory, so that the new `p` is newer than its dependent `u` and
/// the retired `p` lends it its data. Torn down, every cell goes after the cells that depend on
/// it (the edges as they were before the teardown), newest first where that is free. The retired
/// version is not the namespace's any more and stays until it is reclaimed; then nothing stays
/// mapped or registered.
#[test]
fn a_teardown_frees_dependents_first_and_newest_first_after_a_swap() {
    let (mut system, _) = system();
    let empty = (system.platform().live(), system.platform().eh_frames());
    let ns = system.create_namespace("app", None).unwrap();
    let p = system.load(ns, CellSpec::named("p"), &provider()).unwrap();
    let u = system.load(ns, CellSpec::named("u"), &user()).unwrap();
    let bytes = Provider {
        answer: 43,
        ..Provider::default()
    }
    .object();
    let report = system
        .swap(
            &[SwapRequest {
                old: p,
                new: NewVersion::Object {
                    spec: CellSpec::named("p"),
                    bytes: &bytes,
                },
            }],
            &SwapOptions::default(),
        )
        .unwrap();
    assert_eq!(report.statics[0].outcome, StaticOutcome::Rebound);
    let new = system.cell_in(ns, "p").unwrap();
    assert!(new > u, "the new version is newer than its dependent");
    assert_eq!(system.registry().cell(p).unwrap().state, CellState::Retired);

    let registry = system.registry();
    let by_base: BTreeMap<u64, CellId> = [p, u, new]
        .into_iter()
        .map(|c| (registry.cell(c).unwrap().base_addr, c))
        .collect();
    // (dependent, provider) between the namespace's cells, before the teardown.
    let mut uses: Vec<(CellId, CellId)> = Vec::new();
    for c in [p, u, new] {
        for d in registry.dependents(c) {
            uses.push((d, c));
        }
    }
    assert!(uses.contains(&(u, new)), "u binds to the new version");

    let freed: Vec<CellId> = released_by_teardown(&mut system, ns)
        .into_iter()
        .filter_map(|base| by_base.get(&base).copied())
        .collect();
    let at = |c: CellId| freed.iter().position(|f| *f == c).unwrap();
    for (dependent, provider) in &uses {
        assert!(
            at(*dependent) < at(*provider),
            "{dependent} was freed after {provider}, which it depends on: {freed:?}"
        );
    }
    // Newest first would free the new p first; its dependent u goes before it.
    assert_eq!(freed, [u, new]);
    // SAFETY: `p::STATE` holds bytes, no pointer into the retired version; nothing runs cells on
    // the heap platform.
    unsafe { system.reclaim_unchecked(p) }.unwrap();
    assert_eq!(
        (system.platform().live(), system.platform().eh_frames()),
        empty,
        "every mapping and unwind table is gone, the lent data range too"
    );
}

/// Without a swap, the cells go in exactly the reverse of their load order.
#[test]
fn a_teardown_without_a_swap_frees_in_reverse_load_order() {
    let (mut system, _) = system();
    let ns = system.create_namespace("app", None).unwrap();
    let p = system.load(ns, CellSpec::named("p"), &provider()).unwrap();
    let u = system.load(ns, CellSpec::named("u"), &user()).unwrap();
    let registry = system.registry();
    let bases = [u, p].map(|c| registry.cell(c).unwrap().base_addr);
    assert_eq!(released_by_teardown(&mut system, ns), bases);
}

/// Tears `ns` (two cells) down; the mapping starts of the cells it freed, in the order freed.
fn released_by_teardown(system: &mut System<HeapPlatform>, ns: NamespaceId) -> Vec<u64> {
    system.platform().debugger.take();
    assert_eq!(system.remove_namespace(ns), Ok(2));
    system
        .platform()
        .debugger
        .take()
        .into_iter()
        .filter_map(|e| match e {
            Event::Released { base } => Some(base),
            Event::Told { .. } => None,
        })
        .collect()
}
