//! Loading, publishing, unloading and handles, on the heap platform.

use alloc::string::ToString;
use alloc::vec;

use crate::error::LoadError;
use crate::platform::{PlatformError, Protection};
use crate::region::Region;
use crate::testing::cells::{p_f, p_state, provider, user};
use crate::testing::{system, SystemState};
use crate::{CellSpec, UnloadError};
use crate_metadata::{CellState, Registry, Sha256, SlotKind};

#[test]
fn a_loaded_cell_is_published_with_w_xor_x_and_unloads_without_a_trace() {
    let (mut system, ns) = system();
    let before = system.platform().live();
    let id = system.load(ns, CellSpec::named("p"), &provider()).unwrap();
    let cell = system.registry().cell(id).unwrap();
    assert_eq!(cell.state, CellState::Live);
    assert_eq!(cell.namespace, Some(ns));
    assert!(cell.symbols.iter().any(|s| s.name == p_f()));
    assert!(system.namespaces().lookup(ns, &p_state()).is_some());

    // Each region's pages have their final protection, and only two calls made them so (text;
    // read-only data and relro together).
    let mapping = &system.mapped[&id].mapping;
    for (region, prot) in [
        (Region::Text, Protection::ReadExecute),
        (Region::ReadOnly, Protection::ReadOnly),
        (Region::RelRo, Protection::ReadOnly),
        (Region::Data, Protection::ReadWrite),
    ] {
        let range = mapping.region(region);
        if range.len > 0 {
            assert_eq!(
                system.platform().protection(range.start),
                Some(prot),
                "{region:?}"
            );
        }
    }
    assert!(system.platform().protections().len() <= 2);

    system.unload(id).unwrap();
    assert_eq!(system.platform().live(), before, "the mapping is gone");
    assert!(system.namespaces().lookup(ns, &p_f()).is_none());
    assert!(system.registry().cell(id).is_none());
}

#[test]
fn every_memory_failure_during_a_load_leaves_the_system_as_it_was() {
    let (mut system, ns) = system();
    system.load(ns, CellSpec::named("p"), &provider()).unwrap();
    let bytes = user();
    system.platform().fail_call(None);
    let probe = system.load(ns, CellSpec::named("u"), &bytes).unwrap();
    let calls = system.platform().calls();
    assert_eq!(calls, 3, "map, then text and read-only + relro");
    system.unload(probe).unwrap();
    for n in 0..calls {
        let before = SystemState::of(&system);
        system.platform().fail_call(Some(n));
        let err = system.load(ns, CellSpec::named("u"), &bytes).unwrap_err();
        system.platform().fail_call(None);
        assert!(matches!(err, LoadError::Platform { .. }), "call {n}: {err}");
        before.assert_same(&SystemState::of(&system), &alloc::format!("call {n}"));
    }
}

#[test]
fn a_cell_cannot_be_unloaded_while_another_binds_to_it() {
    let (mut system, ns) = system();
    let p = system.load(ns, CellSpec::named("p"), &provider()).unwrap();
    let u = system.load(ns, CellSpec::named("u"), &user()).unwrap();
    let before = SystemState::of(&system);
    assert_eq!(
        system.unload(p),
        Err(UnloadError::InUse {
            cell: "p".into(),
            dependents: vec!["u".into()],
        })
    );
    before.assert_same(&SystemState::of(&system), "refused unload");
    system.unload(u).unwrap();
    system.unload(p).unwrap();
    assert_eq!(system.platform().live(), (0, 0));
    assert_eq!(system.unload(p), Err(UnloadError::NoSuchCell(p)));
}

#[test]
fn a_namespace_is_torn_down_only_without_children_and_users_outside() {
    let (mut system, kernel) = system();
    let lib = system.create_namespace("lib", None).unwrap();
    let app = system.create_namespace("app", Some(lib)).unwrap();
    system.load(lib, CellSpec::named("p"), &provider()).unwrap();
    system.load(app, CellSpec::named("u"), &user()).unwrap();
    assert_eq!(
        system.remove_namespace(lib),
        Err(UnloadError::HasChildren {
            namespace: "lib".into()
        })
    );
    assert_eq!(system.remove_namespace(app), Ok(1));
    // SAFETY: `fn() -> u32` is `p::f`'s signature (mov eax, 42; ret); it is never called here.
    let handle = unsafe { system.handle::<fn() -> u32>(lib, "p::f") }.unwrap();
    assert_eq!(
        system.remove_namespace(lib),
        Err(UnloadError::NamespaceInUse {
            namespace: "lib".into(),
            cell: "p".into(),
            dependents: vec!["base".into()],
        })
    );
    drop(handle);
    assert_eq!(system.remove_namespace(lib), Ok(1));
    assert_eq!(system.platform().live(), (0, 0));
    assert_eq!(
        system.remove_namespace(lib),
        Err(UnloadError::NoSuchNamespace(lib))
    );
    assert!(system.namespaces().get(kernel).is_some());
}

#[test]
fn the_same_release_twice_and_a_wrong_hash_are_refused_before_anything_is_mapped() {
    let (mut system, ns) = system();
    let bytes = provider();
    system.load(ns, CellSpec::named("p"), &bytes).unwrap();
    let before = SystemState::of(&system);
    assert_eq!(
        system.load(ns, CellSpec::named("p"), &bytes),
        Err(LoadError::AlreadyLoaded {
            cell: "p".into(),
            namespace: "_kernel".into(),
        })
    );
    let other = system.create_namespace("other", None).unwrap();
    let spec = CellSpec {
        sha256: Some(Sha256([0; 32])),
        ..CellSpec::named("p")
    };
    let err = system.load(other, spec, &bytes).unwrap_err();
    assert_eq!(
        err,
        LoadError::IntegrityMismatch {
            cell: "p".into(),
            expected: Sha256([0; 32]),
            actual: crate::sha256(&bytes),
        }
    );
    // The namespace was created after `before`; everything else is unchanged.
    let after = SystemState::of(&system);
    assert_eq!(after.live, before.live);
    assert!(after.registry == before.registry);
    assert_eq!(after.slots, before.slots);
}

#[test]
fn handles_are_edges_from_the_base_image_and_go_with_the_last_handle() {
    let (mut system, ns) = system();
    let p = system.load(ns, CellSpec::named("p"), &provider()).unwrap();
    let f = system.registry().cell(p).unwrap().symbols[0].addr;
    // SAFETY: `fn() -> u32` is `p::f`'s signature; it is never called here.
    let a = unsafe { system.handle::<fn() -> u32>(ns, "p::f") }.unwrap();
    // SAFETY: as for `a`: the same function.
    let b = unsafe { system.handle::<fn() -> u32>(ns, &p_f()) }.unwrap();
    assert_eq!((a.target(), b.target()), (f, f));
    let handles: vec::Vec<_> = system
        .registry()
        .edges()
        .filter(|(_, e)| e.kind == SlotKind::Handle)
        .map(|(_, e)| (e.dependent, e.provider))
        .collect();
    assert_eq!(handles, [(Registry::BASE, p)], "one slot for both handles");
    assert!(matches!(
        system.unload(p),
        Err(UnloadError::InUse { dependents, .. }) if dependents == ["base"]
    ));
    drop((a, b));
    system.unload(p).unwrap();
    assert_eq!(system.registry().edges().count(), 0);
    // SAFETY: never called; the lookup fails.
    let missing = unsafe { system.handle::<fn()>(ns, "p::nothing") }.unwrap_err();
    assert_eq!(
        missing,
        LoadError::NoSuchSymbol {
            namespace: "_kernel".into(),
            symbol: "p::nothing".into(),
        }
    );
    // SAFETY: never called: the type is refused before the lookup.
    let wrong = unsafe { system.handle::<u128>(ns, "p::f") }.unwrap_err();
    assert!(matches!(wrong, LoadError::BadHandleType { .. }));
}

#[test]
fn a_platform_failure_names_the_cell() {
    let (mut system, ns) = system();
    system.platform().fail_call(Some(0));
    let err = system
        .load(ns, CellSpec::named("p"), &provider())
        .unwrap_err();
    assert_eq!(
        err,
        LoadError::Platform {
            cell: "p".into(),
            // Text, relro (the GOT) and data, a page each (no read-only data).
            error: PlatformError::OutOfMemory { len: 3 * 4096 },
        }
    );
    assert!(err.to_string().contains("`p`"));
    assert!(core::error::Error::source(&err).is_some());
}

#[test]
fn eh_frame_is_registered_while_the_cell_is_loaded() {
    let (mut system, ns) = system();
    let mut cell = crate::testing::elf::Cell::new();
    let (_, x) = cell.func("x", &[0xc3]);
    cell.unwind_table(x, 1);
    let id = system
        .load(ns, CellSpec::named("x"), &cell.bytes())
        .unwrap();
    assert_eq!(system.platform().eh_frames(), 1);
    let eh = system.mapped[&id].eh_frame.unwrap() as u64;
    let read_only = system.mapped[&id].mapping.region(Region::ReadOnly);
    assert!(read_only.contains(eh), "in the read-only region");
    // The zero terminator the layout adds after it.
    let mapping = &system.mapped[&id].mapping;
    let mut size = system.registry().cell(id).unwrap().sections.iter();
    let size = size.find(|s| s.addr == eh).map(|s| s.size as usize);
    let end = mapping.offset_of(eh).unwrap() + size.unwrap();
    assert_eq!(mapping.read(end, 4).unwrap(), &[0; 4]);
    system.unload(id).unwrap();
    assert_eq!(system.platform().eh_frames(), 0);
}
