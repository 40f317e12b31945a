//! Swap: stage, verify, rebind, commit and undo, on the heap platform. Nothing runs: the tests
//! read the slots the commit wrote.

use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use crate::platform::Protection;
use crate::region::Region;
use crate::swap::{NewVersion, StaticOutcome, SwapError, SwapOptions, SwapReport, SwapRequest};
use crate::system::System;
use crate::testing::cells::{p_f, p_h, p_state, provider, u_layout, user, Provider};
use crate::testing::elf::{mangle, Cell, Kind, R_64};
use crate::testing::{system, HeapPlatform, SystemState};
use crate::{CellSpec, Handle};
use crate_metadata::{CellId, CellState, NamespaceId, SlotKind};
use object::SymbolKind;

struct Booted {
    system: System<HeapPlatform>,
    ns: NamespaceId,
    p: CellId,
    u: CellId,
    f: Handle<fn() -> u32>,
}

/// `p` and `u` in `_kernel`, and a host handle to `p::f`.
fn boot() -> Booted {
    let (mut system, ns) = system();
    let p = system.load(ns, CellSpec::named("p"), &provider()).unwrap();
    let u = system.load(ns, CellSpec::named("u"), &user()).unwrap();
    // SAFETY: `fn() -> u32` is `p::f`'s signature (it returns eax); it is never called here.
    let f = unsafe { system.handle::<fn() -> u32>(ns, "p::f") }.unwrap();
    Booted {
        system,
        ns,
        p,
        u,
        f,
    }
}

fn symbol(system: &System<HeapPlatform>, id: CellId, name: &str) -> u64 {
    let cell = system.registry().cell(id).unwrap();
    cell.symbols.iter().find(|s| s.name == name).unwrap().addr
}

fn swap_to(
    b: &mut Booted,
    version: Provider,
    options: &SwapOptions,
) -> Result<SwapReport, SwapError> {
    let bytes = version.object();
    let old = b.system.cell_in(b.ns, "p").unwrap();
    b.system.swap(
        &[SwapRequest {
            old,
            new: NewVersion::Object {
                spec: CellSpec::named("p"),
                bytes: &bytes,
            },
        }],
        options,
    )
}

/// The value of `u`'s slot edges to `symbol`, by kind.
fn u_slots(b: &Booted, u: CellId) -> Vec<(SlotKind, u64)> {
    let values = b.system.slot_values();
    let mut out: Vec<(SlotKind, u64)> = b
        .system
        .registry()
        .edges()
        .filter(|(_, e)| e.dependent == u)
        .map(|(_, e)| {
            let v = values.iter().find(|(s, _)| *s == e.slot).unwrap().1;
            (e.kind, v)
        })
        .collect();
    out.sort_unstable_by_key(|s| s.1);
    out
}

#[test]
fn a_swap_rewrites_every_slot_and_keeps_the_state() {
    let mut b = boot();
    let old_f = symbol(&b.system, b.p, &p_f());
    let old_state = symbol(&b.system, b.p, &p_state());
    let report = swap_to(
        &mut b,
        Provider {
            answer: 43,
            ..Provider::default()
        },
        &SwapOptions::default(),
    )
    .unwrap();
    let new = b.system.cell_in(b.ns, "p").unwrap();
    assert_ne!(new, b.p);
    assert_eq!(report.cells.len(), 1);
    assert_eq!((report.cells[0].old, report.cells[0].new), (b.p, new));
    assert!(!report.cells[0].reused);
    // u's four slots and the host's handle.
    assert_eq!(report.slots_rewritten, 5);
    assert_eq!(report.dependents, ["base", "u"]);
    assert!(report.warnings.is_empty());
    assert_eq!(report.statics.len(), 1);
    assert_eq!(report.statics[0].path, "p::STATE");
    assert_eq!(report.statics[0].outcome, StaticOutcome::Rebound);
    assert_eq!(report.statics[0].sizes, (8, 8));

    let new_f = symbol(&b.system, new, &p_f());
    assert_ne!(new_f, old_f);
    // The new version's STATE is the old one's memory: rebound through its own GOT slot.
    assert_eq!(symbol(&b.system, new, &p_state()), old_state);
    let own = b.system.mapped[&new].own_slots[0];
    assert_eq!(
        b.system.mapped[&new].mapping.load_slot(own.slot),
        Some(old_state)
    );
    let mut expected = vec![
        (SlotKind::Got, new_f),
        (SlotKind::Got, old_state),
        (SlotKind::Data, new_f),
        (SlotKind::Data, old_state + u_layout::RELRO_ADDEND as u64),
    ];
    expected.sort_unstable_by_key(|s| s.1);
    assert_eq!(u_slots(&b, b.u), expected);
    assert_eq!(b.f.target(), new_f, "the host's handle moved too");

    // The old version is retired but still mapped; the namespace has the new one.
    let old = b.system.registry().cell(b.p).unwrap();
    assert_eq!(old.state, CellState::Retired);
    assert_eq!(b.system.retired(), [b.p]);
    assert_eq!(
        b.system.namespaces().lookup(b.ns, &p_f()).unwrap().1.cell,
        new
    );
    // Every relro region is read-only again, and each window opened was closed.
    for id in [b.u, new] {
        let relro = b.system.mapped[&id].mapping.region(Region::RelRo);
        assert_eq!(
            b.system.platform().protection(relro.start),
            Some(Protection::ReadOnly)
        );
    }
    let log = b.system.platform().protections();
    let opened = log.iter().filter(|p| p.2 == Protection::ReadWrite).count();
    assert_eq!(
        opened, 2,
        "u's relro for the commit, the new p's for the rebinding"
    );
    assert!(log.iter().all(|p| p.2 != Protection::ReadWrite
        || log
            .iter()
            .any(|q| q.0 == p.0 && q.2 == Protection::ReadOnly)));
}

#[test]
fn a_missing_or_renamed_symbol_is_refused_with_its_dependents() {
    let mut b = boot();
    // SAFETY: `fn() -> u32` is `p::h`'s signature; it is never called here.
    let _h = unsafe { b.system.handle::<fn() -> u32>(b.ns, "p::h") }.unwrap();
    let before = SystemState::of(&b.system);
    let err = swap_to(
        &mut b,
        Provider {
            h_hash: None,
            ..Provider::default()
        },
        &SwapOptions::default(),
    )
    .unwrap_err();
    match &err {
        SwapError::MissingSymbols { cell, missing } => {
            assert_eq!(cell, "p");
            assert_eq!(missing.len(), 1);
            assert_eq!(missing[0].mangled, p_h());
            assert_eq!(missing[0].dependents, ["base"]);
            assert_eq!(missing[0].changed_to, None);
        }
        other => panic!("{other}"),
    }
    before.assert_same(&SystemState::of(&b.system), "a refused swap");
    let renamed = Provider {
        h_hash: Some(99),
        ..Provider::default()
    };
    match swap_to(&mut b, renamed, &SwapOptions::default()).unwrap_err() {
        SwapError::MissingSymbols { missing, .. } => {
            assert_eq!(missing[0].changed_to, Some(mangle("p::h", 99)))
        }
        other => panic!("{other}"),
    }
    // A rename the caller vouches for moves the dependents to the new name.
    let options = SwapOptions {
        renames: vec![(p_h(), mangle("p::h", 99))],
        ..SwapOptions::default()
    };
    swap_to(&mut b, renamed, &options).unwrap();
    let new = b.system.cell_in(b.ns, "p").unwrap();
    assert_eq!(_h.target(), symbol(&b.system, new, &mangle("p::h", 99)));
}

#[test]
fn a_static_whose_layout_changed_needs_fresh_state() {
    let mut b = boot();
    let before = SystemState::of(&b.system);
    let grown = Provider {
        state_size: 16,
        ..Provider::default()
    };
    assert_eq!(
        swap_to(&mut b, grown, &SwapOptions::default()).unwrap_err(),
        SwapError::StaticLayoutChanged {
            cell: "p".into(),
            name: "p::STATE".into(),
            old: (8, 8),
            new: (16, 8),
            type_changed: false,
        }
    );
    // Another type (another hash) at the same size: `u` binds to the old name, so verify refuses
    // first, naming the new one ...
    let retyped = Provider {
        state_hash: 5,
        ..Provider::default()
    };
    match swap_to(&mut b, retyped, &SwapOptions::default()).unwrap_err() {
        SwapError::MissingSymbols { missing, .. } => {
            assert_eq!(missing[0].mangled, p_state());
            assert_eq!(missing[0].changed_to, Some(mangle("p::STATE", 5)));
            assert_eq!(missing[0].dependents, ["u"]);
        }
        other => panic!("{other}"),
    }
    // ... and with no dependent of the static, rebinding refuses the type change.
    let (mut alone, ns) = system();
    let p = alone.load(ns, CellSpec::named("p"), &provider()).unwrap();
    let bytes = retyped.object();
    let request = SwapRequest {
        old: p,
        new: NewVersion::Object {
            spec: CellSpec::named("p"),
            bytes: &bytes,
        },
    };
    assert!(matches!(
        alone.swap(&[request], &SwapOptions::default()),
        Err(SwapError::StaticLayoutChanged {
            type_changed: true,
            ..
        })
    ));
    let direct = Provider {
        direct_state: true,
        ..Provider::default()
    };
    assert_eq!(
        swap_to(&mut b, direct, &SwapOptions::default()).unwrap_err(),
        SwapError::StaticReferencedDirectly {
            cell: "p".into(),
            name: "p::STATE".into(),
        }
    );
    before.assert_same(&SystemState::of(&b.system), "refused swaps");
    let options = SwapOptions {
        fresh: vec![String::from("p::STATE")],
        ..SwapOptions::default()
    };
    let report = swap_to(&mut b, grown, &options).unwrap();
    assert_eq!(report.statics[0].outcome, StaticOutcome::Fresh);
    assert_eq!(report.statics[0].sizes, (8, 16));
    let new = b.system.cell_in(b.ns, "p").unwrap();
    assert_ne!(
        symbol(&b.system, new, &p_state()),
        symbol(&b.system, b.p, &p_state())
    );
}

#[test]
fn requests_are_checked_before_anything_is_staged() {
    let mut b = boot();
    let before = SystemState::of(&b.system);
    let bytes = provider();
    let request = |old, name| SwapRequest {
        old,
        new: NewVersion::Object {
            spec: CellSpec::named(name),
            bytes: &bytes,
        },
    };
    let none = SwapOptions::default();
    assert_eq!(b.system.swap(&[], &none).unwrap_err(), SwapError::Empty);
    assert_eq!(
        b.system
            .swap(&[request(CellId(99), "p")], &none)
            .unwrap_err(),
        SwapError::NoSuchCell(CellId(99))
    );
    assert_eq!(
        b.system.swap(&[request(b.p, "q")], &none).unwrap_err(),
        SwapError::WrongName {
            cell: "p".into(),
            new: "q".into(),
        }
    );
    assert_eq!(
        b.system
            .swap(&[request(b.p, "p"), request(b.p, "p")], &none)
            .unwrap_err(),
        SwapError::Duplicate { cell: "p".into() }
    );
    let after = SystemState::of(&b.system);
    assert!(after.registry == before.registry);
    assert_eq!(after.slots, before.slots);
    assert_eq!(after.live, before.live);
    let other = b.system.create_namespace("other", None).unwrap();
    let q = b.system.load(other, CellSpec::named("p"), &bytes).unwrap();
    assert_eq!(
        b.system
            .swap(&[request(b.p, "p"), request(q, "p")], &none)
            .unwrap_err(),
        SwapError::MixedNamespaces {
            cells: vec!["p".into(), "p".into()],
        }
    );
    b.system.unload(q).unwrap();
    b.system.remove_namespace(other).unwrap();
    assert_eq!(
        b.system
            .swap(
                &[SwapRequest {
                    old: b.p,
                    new: NewVersion::Retired(b.u),
                }],
                &none
            )
            .unwrap_err(),
        SwapError::NotRetired {
            cell: "p".into(),
            id: b.u,
        }
    );
    let broken = [0u8; 10];
    assert!(matches!(
        b.system
            .swap(
                &[SwapRequest {
                    old: b.p,
                    new: NewVersion::Object {
                        spec: CellSpec::named("p"),
                        bytes: &broken,
                    },
                }],
                &none
            )
            .unwrap_err(),
        SwapError::Stage(crate::LoadError::NotElf { .. })
    ));
    assert_eq!(b.system.slot_values(), before.slots);
    assert_eq!(b.system.platform().live(), before.live);
    // A retired version is not live: it cannot be replaced.
    swap_to(&mut b, Provider::default(), &none).unwrap();
    assert_eq!(
        b.system.swap(&[request(b.p, "p")], &none).unwrap_err(),
        SwapError::NotLive { cell: "p".into() }
    );
}

#[test]
fn a_retired_version_is_reused_by_id_or_by_hash() {
    let mut b = boot();
    let second = Provider {
        answer: 43,
        ..Provider::default()
    }
    .object();
    let sha = crate::sha256(&second);
    let with_hash = |old| SwapRequest {
        old,
        new: NewVersion::Object {
            spec: CellSpec {
                sha256: Some(sha),
                ..CellSpec::named("p")
            },
            bytes: &second,
        },
    };
    let none = SwapOptions::default();
    let report = b.system.swap(&[with_hash(b.p)], &none).unwrap();
    let v2 = report.cells[0].new;
    assert!(!report.cells[0].reused);
    // Back to the first version by id: nothing is loaded.
    let report = b
        .system
        .swap(
            &[SwapRequest {
                old: v2,
                new: NewVersion::Retired(b.p),
            }],
            &none,
        )
        .unwrap();
    assert!(report.cells[0].reused);
    assert_eq!(b.system.cell_in(b.ns, "p"), Some(b.p));
    assert_eq!(b.f.target(), symbol(&b.system, b.p, &p_f()));
    // And to the second again by its object's hash: the retired one is reused, not reloaded.
    let live = b.system.platform().live();
    let report = b.system.swap(&[with_hash(b.p)], &none).unwrap();
    assert_eq!((report.cells[0].new, report.cells[0].reused), (v2, true));
    assert_eq!(b.system.platform().live(), live, "nothing mapped");
    assert_eq!(b.f.target(), symbol(&b.system, v2, &p_f()));
}

#[test]
fn every_memory_failure_during_a_swap_leaves_the_system_as_it_was() {
    let mut b = boot();
    let version = Provider {
        answer: 44,
        ..Provider::default()
    };
    b.system.platform().fail_call(None);
    swap_to(&mut b, version, &SwapOptions::default()).unwrap();
    let calls = b.system.platform().calls();
    // map, publish (2), the rebinding window (2), the commit window (2).
    assert_eq!(calls, 7);
    let (live, retired) = (b.system.cell_in(b.ns, "p").unwrap(), b.p);
    b.system
        .swap(
            &[SwapRequest {
                old: live,
                new: NewVersion::Retired(retired),
            }],
            &SwapOptions::default(),
        )
        .unwrap();
    let mut refused = 0;
    for n in 0..calls {
        let before = SystemState::of(&b.system);
        b.system.platform().fail_call(Some(n));
        let result = swap_to(&mut b, version, &SwapOptions::default());
        b.system.platform().fail_call(None);
        match result {
            Err(err) => {
                assert!(
                    matches!(err, SwapError::Stage(_) | SwapError::Platform { .. }),
                    "call {n}: {err}"
                );
                before.assert_same(&SystemState::of(&b.system), &alloc::format!("call {n}"));
                refused += 1;
            }
            Ok(report) => {
                // Only closing the commit's window may fail without undoing the swap: the slots
                // are written by then. It is reported; the region stays writable, not executable.
                assert_eq!(report.warnings.len(), 1, "call {n}: {:?}", report.warnings);
                assert!(report.warnings[0].contains("relro stays writable"));
                let new = b.system.cell_in(b.ns, "p").unwrap();
                b.system
                    .swap(
                        &[SwapRequest {
                            old: new,
                            new: NewVersion::Retired(retired),
                        }],
                        &SwapOptions::default(),
                    )
                    .unwrap();
            }
        }
    }
    assert_eq!(refused, calls - 1);
}

#[test]
fn a_dependent_that_reaches_the_cell_without_a_slot_cannot_be_moved() {
    let (mut system, ns) = system();
    let p = system.load(ns, CellSpec::named("p"), &provider()).unwrap();
    // An unaligned 64-bit word: recorded as a direct reference, not as a slot.
    let mut cell = Cell::new();
    let data = cell.section(".data.d", Kind::Data, &[0; 16], 8);
    let f = cell.undefined(&p_f(), SymbolKind::Text, false);
    cell.reloc(data, 4, f, R_64, 0);
    system
        .load(ns, CellSpec::named("d"), &cell.bytes())
        .unwrap();
    let before = SystemState::of(&system);
    let bytes = provider();
    let err = system
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
        .unwrap_err();
    assert_eq!(
        err,
        SwapError::DirectReferences {
            cell: "p".into(),
            dependents: vec!["d".into()],
        }
    );
    before.assert_same(&SystemState::of(&system), "a refused swap");
}
