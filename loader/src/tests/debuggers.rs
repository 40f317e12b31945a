//! The platform's debuggers are told of every published cell, of a swap's changes, and of every
//! cell freed (unload, reclaim, a failed load), with the cell's registry entry.

use alloc::vec;

use crate::swap::SwapOptions;
use crate::testing::cells::{provider, Provider};
use crate::testing::debuggers::Event;
use crate::testing::{system, HeapPlatform};
use crate::CellSpec;
use crate_metadata::CellState;

#[test]
fn debuggers_follow_load_swap_reclaim_and_unload() {
    let (mut system, ns) = system();
    let old = system.load(ns, CellSpec::named("p"), &provider()).unwrap();
    let old_base = system.registry().cell(old).unwrap().base_addr;
    let events = system.platform().debugger.take();
    let [Event::Told {
        published: true,
        cell,
        base,
        namespace,
        state: CellState::Live,
        functions,
        in_text: true,
    }] = events.as_slice()
    else {
        panic!("one publication: {events:?}");
    };
    assert_eq!(
        (*cell, *base, namespace.as_str()),
        (old, old_base, "_kernel")
    );
    assert!(*functions > 0, "p's functions are listed");

    let fresh = SwapOptions {
        fresh_all: true,
        ..SwapOptions::default()
    };
    let version = Provider {
        answer: 2,
        ..Provider::default()
    };
    let new = super::reclaim::swap(&mut system, ns, version, &fresh);
    let new_base = system.registry().cell(new).unwrap().base_addr;
    let told: vec::Vec<_> = system
        .platform()
        .debugger
        .take()
        .into_iter()
        .map(|e| match e {
            Event::Told {
                published,
                cell,
                namespace,
                state,
                ..
            } => (published, cell, namespace, state),
            Event::Released { .. } => panic!("nothing is freed by the swap"),
        })
        .collect();
    assert_eq!(
        told,
        [
            (true, new, "_swap#0".into(), CellState::Live),
            (false, old, "_kernel".into(), CellState::Retired),
            (false, new, "_kernel".into(), CellState::Live),
        ],
        "the new version is published where it is staged, then both are told of the commit"
    );

    system.reclaim(old).unwrap();
    assert_eq!(
        system.platform().debugger.take(),
        [Event::Released { base: old_base }]
    );
    system.unload(new).unwrap();
    assert_eq!(
        system.platform().debugger.take(),
        [Event::Released { base: new_base }]
    );
}

#[test]
fn a_failed_load_is_released_without_being_published() {
    let (mut system, ns) = crate::testing::system_on(HeapPlatform::default());
    // The second memory call (the first protection change) fails: the cell is mapped and
    // linked but never published.
    system.platform().fail_call(Some(1));
    assert!(system.load(ns, CellSpec::named("p"), &provider()).is_err());
    let events = system.platform().debugger.take();
    assert!(
        matches!(events.as_slice(), [Event::Released { .. }]),
        "{events:?}"
    );
}
