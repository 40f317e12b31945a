//! Reclaim: a retired version is freed only when nothing binds to it and every registered thread
//! passed a quiescent point; data pages that hold a newer version's state are handed over.

use alloc::vec;

use crate::region::Region;
use crate::swap::{NewVersion, SwapOptions, SwapRequest};
use crate::system::System;
use crate::testing::cells::{provider, user, Provider};
use crate::testing::{system, HeapPlatform, PAGE};
use crate::{CellSpec, ReclaimError};
use crate_metadata::{CellId, NamespaceId};

/// Swaps the live `p` of `ns` for `version`; returns the new id.
pub(super) fn swap(
    system: &mut System<HeapPlatform>,
    ns: NamespaceId,
    version: Provider,
    options: &SwapOptions,
) -> CellId {
    let old = system.cell_in(ns, "p").unwrap();
    let bytes = version.object();
    let report = system
        .swap(
            &[SwapRequest {
                old,
                new: NewVersion::Object {
                    spec: CellSpec::named("p"),
                    bytes: &bytes,
                },
            }],
            options,
        )
        .unwrap();
    report.cells[0].new
}

#[test]
fn a_version_that_shares_its_state_is_reclaimed_only_unchecked_and_hands_its_data_over() {
    let (mut system, ns) = system();
    let old = system.load(ns, CellSpec::named("p"), &provider()).unwrap();
    let new = swap(
        &mut system,
        ns,
        Provider::default(),
        &SwapOptions::default(),
    );
    assert_eq!(
        system.reclaim(new),
        Err(ReclaimError::NotRetired { cell: "p".into() })
    );
    assert_eq!(
        system.reclaim(old),
        Err(ReclaimError::SharesState {
            cell: "p".into(),
            statics: vec!["p::STATE".into()],
            with: vec![alloc::format!("p ({new})")],
        })
    );
    let data = system.mapped[&old].mapping.region(Region::Data);
    let total = system.mapped[&old].mapping.len() as u64;
    // SAFETY: p's state is eight plain bytes: no pointer into the old version's code.
    let reclaimed = unsafe { system.reclaim_unchecked(old) }.unwrap();
    assert_eq!(reclaimed.handed_over, Some((new, data.len as u64)));
    assert_eq!(reclaimed.unmapped, total - data.len as u64);
    assert_eq!(system.mapped[&new].adopted, [data]);
    // The state lives on, mapped, in the new version's hands.
    assert!(system.platform().protection(data.start).is_some());
    assert_eq!(system.reclaim(old), Err(ReclaimError::NoSuchCell(old)));
    // Unloading the new version frees the adopted pages too.
    system.unload(new).unwrap();
    assert_eq!(system.platform().live(), (0, 0));
    assert!(system.platform().protection(data.start).is_none());
}

#[test]
fn a_version_with_fresh_state_is_reclaimed_whole() {
    let (mut system, ns) = system();
    let old = system.load(ns, CellSpec::named("p"), &provider()).unwrap();
    let fresh = SwapOptions {
        fresh_all: true,
        ..SwapOptions::default()
    };
    swap(&mut system, ns, Provider::default(), &fresh);
    let total = system.mapped[&old].mapping.len() as u64;
    let reclaimed = system.reclaim(old).unwrap();
    assert_eq!(reclaimed.unmapped, total);
    assert_eq!(reclaimed.handed_over, None);
    assert_eq!(
        system.platform().live().0,
        1,
        "only the live version is mapped"
    );
    assert_eq!(total, 3 * PAGE as u64);
}

#[test]
fn a_thread_that_may_still_run_the_old_version_holds_it() {
    let (mut system, ns) = system();
    let old = system.load(ns, CellSpec::named("p"), &provider()).unwrap();
    let thread = system.epochs().register();
    let fresh = SwapOptions {
        fresh_all: true,
        ..SwapOptions::default()
    };
    swap(&mut system, ns, Provider::default(), &fresh);
    assert_eq!(
        system.reclaim(old),
        Err(ReclaimError::GracePeriod {
            cell: "p".into(),
            pending: 1,
        })
    );
    thread.quiescent();
    system.reclaim(old).unwrap();
}

#[test]
fn a_retired_version_something_still_binds_to_is_kept() {
    let (mut system, ns) = system();
    let p = system.load(ns, CellSpec::named("p"), &provider()).unwrap();
    let u = system.load(ns, CellSpec::named("u"), &user()).unwrap();
    // Swap both at once: the retired u keeps its slots into the retired p.
    let (p2, u2) = (Provider::default().object(), user());
    system
        .swap(
            &[
                SwapRequest {
                    old: p,
                    new: NewVersion::Object {
                        spec: CellSpec::named("p"),
                        bytes: &p2,
                    },
                },
                SwapRequest {
                    old: u,
                    new: NewVersion::Object {
                        spec: CellSpec::named("u"),
                        bytes: &u2,
                    },
                },
            ],
            &SwapOptions {
                fresh_all: true,
                ..SwapOptions::default()
            },
        )
        .unwrap();
    assert_eq!(
        system.reclaim(p),
        Err(ReclaimError::InUse {
            cell: "p".into(),
            dependents: vec!["u".into()],
        })
    );
    system.reclaim(u).unwrap();
    system.reclaim(p).unwrap();
    assert_eq!(system.platform().live().0, 2, "the live p and u");
}
