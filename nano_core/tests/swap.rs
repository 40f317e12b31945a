//! Live swap on the real cells: statics rebound, dependents and handles moved, retired versions
//! reused and reclaimed, and every refusal leaving the system exactly as it was.

mod common;

use std::sync::{Mutex, MutexGuard};

use crate_metadata::{CellId, CellKind, CellState, NamespaceId, Registry};
use loader::platform::Platform;
use loader::{
    CellSpec, Handle, NewVersion, ReclaimError, StaticOutcome, SwapError, SwapOptions, SwapRequest,
    System,
};
use namespace::Snapshot;

/// Mapping counts are process-wide, and cells share the process's logger: tests take turns.
static SERIAL: Mutex<()> = Mutex::new(());

struct Sys<P: Platform> {
    system: System<P>,
    ns: NamespaceId,
    _serial: MutexGuard<'static, ()>,
}

/// klog, frame_alloc, sched, memfs and counter, loaded and initialised in `_kernel`.
fn boot<P: Platform>(platform: P) -> Sys<P> {
    let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut system = System::new(platform, "nano_core");
    let ns = system.create_namespace("_kernel", None).unwrap();
    for (kind, name) in [
        (CellKind::Kernel, "klog"),
        (CellKind::Kernel, "frame_alloc"),
        (CellKind::Kernel, "sched"),
        (CellKind::Kernel, "memfs"),
        (CellKind::Libs, "counter"),
    ] {
        let bytes = common::object(kind, name);
        let hash = loader::sha256(&bytes);
        let spec = CellSpec {
            name,
            version: "0.1.0",
            kind: Some(kind),
            sha256: Some(hash),
        };
        system
            .load(ns, spec, &bytes)
            .unwrap_or_else(|e| panic!("{e}"));
        let init = system.bind(ns, cell_abi::INIT.of(name)).unwrap();
        (init.get())().unwrap();
    }
    Sys {
        system,
        ns,
        _serial: serial,
    }
}

impl<P: Platform + common::LiveMappings> Sys<P> {
    fn id(&self, name: &str) -> CellId {
        self.system
            .cell_in(self.ns, name)
            .unwrap_or_else(|| panic!("{name} is not live"))
    }

    fn bind<F: Copy>(&mut self, interface: cell_abi::Interface<F>) -> Handle<F> {
        self.system
            .bind(self.ns, interface)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    fn swap_object(
        &mut self,
        name: &str,
        bytes: &[u8],
        options: &SwapOptions,
    ) -> Result<loader::SwapReport, SwapError> {
        let hash = loader::sha256(bytes);
        let old = self.id(name);
        let spec = CellSpec {
            name,
            version: "0.1.0",
            kind: Some(CellKind::Upgrades),
            sha256: Some(hash),
        };
        self.system.swap(
            &[SwapRequest {
                old,
                new: NewVersion::Object { spec, bytes },
            }],
            options,
        )
    }

    fn state(&self) -> State {
        (
            self.system.namespaces().snapshot(),
            self.system.registry().clone(),
            self.system.slot_values(),
            self.system.platform().live(),
        )
    }
}

/// Namespaces, registry, slot contents, and the loader's mappings (count, bytes).
type State = (Snapshot, Registry, Vec<(u64, u64)>, (usize, usize));

fn assert_unchanged(before: &State, after: &State, what: &str) {
    assert!(before.0 == after.0, "{what}: the namespaces changed");
    assert!(before.1 == after.1, "{what}: the registry changed");
    assert!(before.2 == after.2, "{what}: slot contents changed");
    assert_eq!(before.3, after.3, "{what}: the loader's mappings changed");
}

#[test]
fn a_new_copy_of_memfs_keeps_the_files_and_moves_the_host_handles() {
    let mut s = boot(loader::hosted::Hosted::new().unwrap());
    let (create, read) = (
        s.bind(cell_abi::memfs::CREATE),
        s.bind(cell_abi::memfs::READ),
    );
    (create.get())("/home/kept.txt", b"state survives").unwrap();
    let old = s.id("memfs");
    let old_target = read.target();

    let report = s
        .swap_object(
            "memfs",
            &common::object(CellKind::Kernel, "memfs"),
            &SwapOptions::default(),
        )
        .unwrap();
    let new = s.id("memfs");
    assert_ne!(new, old);
    assert_eq!(report.cells.len(), 1);
    assert!(!report.cells[0].reused);
    let fs = report
        .statics
        .iter()
        .find(|r| r.path == "memfs::FS")
        .expect("memfs::FS reported");
    assert_eq!(fs.outcome, StaticOutcome::Rebound);
    assert!(
        report.dependents.contains(&"nano_core".to_string()),
        "{:?}",
        report.dependents
    );
    assert_ne!(read.target(), old_target, "the host's handle moved");
    assert_eq!((read.get())("/home/kept.txt").unwrap(), b"state survives");
    // The new version's static is the old version's memory.
    let reg = s.system.registry();
    let fs_addr = |id| {
        let c = reg.cell(id).unwrap();
        c.symbols
            .iter()
            .find(|x| crate_metadata::demangle::path(&x.name) == "memfs::FS")
            .unwrap()
            .addr
    };
    assert_eq!(fs_addr(new), fs_addr(old));
    assert_eq!(reg.cell(old).unwrap().state, CellState::Retired);
    assert!(
        reg.dependents(old).is_empty(),
        "nothing binds to the retired version"
    );
    assert!(s
        .system
        .namespaces()
        .by_name("_kernel")
        .unwrap()
        .cells
        .contains(&new));
    assert!(!s
        .system
        .namespaces()
        .by_name("_kernel")
        .unwrap()
        .cells
        .contains(&old));
    assert!(report.times.total >= report.times.commit);
}

#[test]
fn swapping_frame_alloc_moves_sched_and_memfs_and_keeps_every_frame() {
    let mut s = boot(loader::hosted::Hosted::new().unwrap());
    let (spawn, free_count) = (
        s.bind(cell_abi::sched::SPAWN),
        s.bind(cell_abi::frame_alloc::FREE_COUNT),
    );
    (spawn.get())("worker", 1).unwrap();
    let free_before = (free_count.get())();
    let old = s.id("frame_alloc");
    let dependents_before = s.system.registry().dependents(old);
    let report = s
        .swap_object(
            "frame_alloc",
            &common::object(CellKind::Kernel, "frame_alloc"),
            &SwapOptions::default(),
        )
        .unwrap();
    let new = s.id("frame_alloc");
    let reg = s.system.registry();
    assert_eq!(
        reg.dependents(new),
        dependents_before,
        "every dependent moved"
    );
    for name in ["sched", "memfs", "nano_core"] {
        assert!(
            report.dependents.contains(&name.to_string()),
            "{name}: {:?}",
            report.dependents
        );
    }
    assert_eq!(
        (free_count.get())(),
        free_before,
        "the bitmap was rebound, not reset"
    );
    // sched now calls the new frame_alloc: a new task takes one more frame from the same bitmap.
    (spawn.get())("worker2", 1).unwrap();
    assert_eq!((free_count.get())(), free_before - 1);
    // Every slot of every dependent that named frame_alloc now holds an address inside `new`.
    let base = reg.cell(new).unwrap().base_addr;
    let end = base + reg.cell(new).unwrap().stats.mapped_bytes;
    let values: std::collections::BTreeMap<u64, u64> = s.system.slot_values().into_iter().collect();
    for e in reg
        .cell(new)
        .unwrap()
        .used_by
        .iter()
        .filter_map(|e| reg.edge(*e))
    {
        let v = values[&e.slot];
        assert!(v >= base && v < end, "slot {:#x} holds {v:#x}", e.slot);
    }
}

#[test]
fn swapping_back_reuses_the_retired_version_without_loading() {
    let mut s = boot(loader::hosted::Hosted::new().unwrap());
    let bytes = common::object(CellKind::Kernel, "memfs");
    let v1 = s.id("memfs");
    s.swap_object("memfs", &bytes, &SwapOptions::default())
        .unwrap();
    let maps = s.system.platform().live_mappings();
    // The same bytes again: the retired v1 has that hash.
    let report = s
        .swap_object("memfs", &bytes, &SwapOptions::default())
        .unwrap();
    assert!(report.cells[0].reused);
    assert_eq!(s.id("memfs"), v1, "v1 is live again");
    assert_eq!(
        s.system.platform().live_mappings(),
        maps,
        "nothing was mapped"
    );
    // And explicitly, by id.
    let v2 = s.system.retired()[0];
    let report = s
        .system
        .swap(
            &[SwapRequest {
                old: v1,
                new: NewVersion::Retired(v2),
            }],
            &SwapOptions::default(),
        )
        .unwrap();
    assert!(report.cells[0].reused);
    assert_eq!(s.id("memfs"), v2);
}

#[test]
fn a_missing_symbol_is_refused_with_the_signature_change_named() {
    let mut s = boot(loader::hosted::Hosted::new().unwrap());
    let bytes = common::object(CellKind::Kernel, "frame_alloc");
    let name = common::mangled(&bytes, "frame_alloc::alloc_frame");
    // Another hash for the same path, as a changed signature gives.
    let hash_at = name.len() - 2;
    let changed = common::rename_symbol(
        &bytes,
        &name,
        hash_at,
        if name.as_bytes()[hash_at] == b'0' {
            b'1'
        } else {
            b'0'
        },
    );
    let before = s.state();
    let err = s
        .swap_object("frame_alloc", &changed, &SwapOptions::default())
        .unwrap_err();
    assert_unchanged(&before, &s.state(), "missing symbol");
    let SwapError::MissingSymbols { cell, missing } = &err else {
        panic!("wrong error: {err}")
    };
    assert_eq!(cell, "frame_alloc");
    let m = missing
        .iter()
        .find(|m| m.symbol.starts_with("frame_alloc::alloc_frame"))
        .expect("alloc_frame named");
    assert!(m.changed_to.is_some());
    assert!(
        m.dependents.iter().any(|d| d == "sched") && m.dependents.iter().any(|d| d == "memfs"),
        "{:?}",
        m.dependents
    );
    assert!(
        err.to_string()
            .contains("signature or the crate's identity"),
        "{err}"
    );
}

#[test]
fn a_static_that_changed_size_needs_a_transfer_or_fresh_state() {
    // counter v1 has no `transfer_state` (frame_alloc v1 has one now, for the way back from
    // its buddy version, which would read a resized v1 state as the buddy's).
    let mut s = boot(loader::hosted::Hosted::new().unwrap());
    let bytes = common::object(CellKind::Libs, "counter");
    let name = common::mangled(&bytes, "counter::COUNTER");
    let grown = common::resize_symbol(&bytes, &name, 4096);
    let before = s.state();
    let err = s
        .swap_object("counter", &grown, &SwapOptions::default())
        .unwrap_err();
    assert_unchanged(&before, &s.state(), "layout changed");
    match &err {
        SwapError::StaticLayoutChanged {
            cell, name, new, ..
        } => {
            assert_eq!(
                (cell.as_str(), name.as_str(), new.0),
                ("counter", "counter::COUNTER", 4096)
            );
        }
        other => panic!("wrong error: {other}"),
    }
    // Asking for fresh state makes it go through.
    let options = SwapOptions {
        fresh: vec!["counter::COUNTER".into()],
        ..Default::default()
    };
    let report = s.swap_object("counter", &grown, &options).unwrap();
    let r = report
        .statics
        .iter()
        .find(|r| r.path == "counter::COUNTER")
        .unwrap();
    assert_eq!(r.outcome, StaticOutcome::Fresh);
}

#[test]
fn every_memory_failure_during_a_swap_leaves_the_system_as_it_was() {
    let mut s = boot(common::flaky::new());
    let bytes = common::object(CellKind::Kernel, "frame_alloc");
    // Count the memory calls of a whole swap, then undo it by swapping back.
    s.system.platform().layer().fail_call(None);
    s.swap_object("frame_alloc", &bytes, &SwapOptions::default())
        .unwrap();
    let calls = s.system.platform().layer().calls();
    assert!(calls >= 4, "a swap maps and protects: {calls} calls");
    let retired = s.system.retired()[0];
    let live = s.id("frame_alloc");
    s.system
        .swap(
            &[SwapRequest {
                old: live,
                new: NewVersion::Retired(retired),
            }],
            &SwapOptions::default(),
        )
        .unwrap();
    // SAFETY: frame_alloc's state is a bitmap: no pointer into its code.
    unsafe { s.system.reclaim_unchecked(live) }.unwrap();
    let mut refused = 0;
    for n in 0..calls {
        let before = s.state();
        s.system.platform().layer().fail_call(Some(n));
        let result = s.swap_object("frame_alloc", &bytes, &SwapOptions::default());
        s.system.platform().layer().fail_call(None);
        match result {
            Err(err) => {
                assert!(
                    matches!(err, SwapError::Stage(_) | SwapError::Platform { .. }),
                    "call {n}: {err}"
                );
                assert_unchanged(&before, &s.state(), &format!("failure at memory call {n}"));
                refused += 1;
            }
            Ok(report) => {
                // Only the re-protection after the commit may fail without undoing the swap:
                // the slots are written by then. It is reported, and the pages stay RW, never X.
                assert_eq!(report.warnings.len(), 1, "call {n}: {:?}", report.warnings);
                assert!(common::wx_mappings().is_empty());
                let (new, old) = (s.id("frame_alloc"), s.system.retired()[0]);
                s.system
                    .swap(
                        &[SwapRequest {
                            old: new,
                            new: NewVersion::Retired(old),
                        }],
                        &SwapOptions::default(),
                    )
                    .unwrap();
                // SAFETY: frame_alloc's state (this very object, swapped for itself) is a
                // bitmap: no pointer into the code of the version reclaimed.
                unsafe { s.system.reclaim_unchecked(new) }.unwrap();
            }
        }
    }
    assert!(
        refused >= calls - 3,
        "{refused} of {calls} failures refused the swap"
    );
}

#[test]
fn reclaim_waits_for_the_edges_and_the_grace_period() {
    let mut s = boot(loader::hosted::Hosted::new().unwrap());
    let (alloc, free_count) = (
        s.bind(cell_abi::frame_alloc::ALLOC_FRAME),
        s.bind(cell_abi::frame_alloc::FREE_COUNT),
    );
    let frame = (alloc.get())().unwrap();
    let worker = s.system.epochs().register();
    let old = s.id("frame_alloc");
    assert_eq!(
        s.system.reclaim(old),
        Err(ReclaimError::NotRetired {
            cell: "frame_alloc".into()
        })
    );
    s.swap_object(
        "frame_alloc",
        &common::object(CellKind::Kernel, "frame_alloc"),
        &SwapOptions::default(),
    )
    .unwrap();
    let text = s.system.regions(old).unwrap()[0].0;
    let err = s.system.reclaim(old).unwrap_err();
    assert_eq!(
        err,
        ReclaimError::GracePeriod {
            cell: "frame_alloc".into(),
            pending: 1
        }
    );
    assert!(err.to_string().contains("quiescent"));
    worker.quiescent();
    // The new version runs on the old version's bitmap: reclaim says so.
    let err = s.system.reclaim(old).unwrap_err();
    assert!(
        matches!(&err, ReclaimError::SharesState { statics, .. } if statics == &["frame_alloc::ALLOCATOR"]),
        "{err}"
    );
    let free = (free_count.get())();
    // SAFETY: the allocator's state is a bitmap and counters: nothing in it points into code.
    let reclaimed = unsafe { s.system.reclaim_unchecked(old) }.unwrap();
    assert!(reclaimed.unmapped > 0);
    let new = s.id("frame_alloc");
    assert_eq!(
        reclaimed.handed_over.map(|h| h.0),
        Some(new),
        "the bitmap lives in the old data pages"
    );
    assert!(s.system.registry().cell(old).is_none());
    assert!(!mapped(text), "the old text is unmapped");
    // The state, in the old version's data pages, now owned by the new version.
    assert_eq!((free_count.get())(), free);
    let next = (alloc.get())().unwrap();
    assert_ne!(
        next, frame,
        "the frame allocated before the swap is still allocated"
    );
}

#[test]
fn a_version_whose_objects_live_in_shared_state_is_not_reclaimed() {
    let mut s = boot(loader::hosted::Hosted::new().unwrap());
    let create = s.bind(cell_abi::memfs::CREATE);
    let old = s.id("memfs");
    s.swap_object(
        "memfs",
        &common::object(CellKind::Kernel, "memfs"),
        &SwapOptions::default(),
    )
    .unwrap();
    // Files made by the old version hold `Box<dyn Inode>`s whose vtables are in its relro pages.
    (create.get())("/tmp/after", b"made by the new version").unwrap();
    let before = s.state();
    let err = s.system.reclaim(old).unwrap_err();
    assert!(matches!(err, ReclaimError::SharesState { .. }), "{err}");
    assert!(err.to_string().contains("memfs::FS"), "{err}");
    assert_unchanged(&before, &s.state(), "refused reclaim");
}

fn mapped(addr: u64) -> bool {
    std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .any(|l| {
            let (lo, hi) = l
                .split_whitespace()
                .next()
                .unwrap()
                .split_once('-')
                .unwrap();
            u64::from_str_radix(lo, 16).unwrap() <= addr
                && addr < u64::from_str_radix(hi, 16).unwrap()
        })
}

#[test]
fn bad_requests_are_refused() {
    let mut s = boot(loader::hosted::Hosted::new().unwrap());
    let bytes = common::object(CellKind::Kernel, "klog");
    let memfs = s.id("memfs");
    let before = s.state();
    let spec = CellSpec::named("klog");
    let req = SwapRequest {
        old: memfs,
        new: NewVersion::Object {
            spec,
            bytes: &bytes,
        },
    };
    assert!(matches!(
        s.system.swap(&[req], &SwapOptions::default()),
        Err(SwapError::WrongName { .. })
    ));
    assert_eq!(
        s.system.swap(&[], &SwapOptions::default()).unwrap_err(),
        SwapError::Empty
    );
    let req = SwapRequest {
        old: memfs,
        new: NewVersion::Retired(memfs),
    };
    assert!(matches!(
        s.system.swap(&[req, req], &SwapOptions::default()),
        Err(SwapError::Duplicate { .. })
    ));
    assert!(matches!(
        s.system.swap(&[req], &SwapOptions::default()),
        Err(SwapError::NotRetired { .. })
    ));
    let req = SwapRequest {
        old: CellId(999),
        new: NewVersion::Retired(memfs),
    };
    assert_eq!(
        s.system.swap(&[req], &SwapOptions::default()).unwrap_err(),
        SwapError::NoSuchCell(CellId(999))
    );
    let garbage = SwapRequest {
        old: memfs,
        new: NewVersion::Object {
            spec: CellSpec::named("memfs"),
            bytes: b"not an object",
        },
    };
    assert!(matches!(
        s.system.swap(&[garbage], &SwapOptions::default()),
        Err(SwapError::Stage(_))
    ));
    assert_unchanged(&before, &s.state(), "bad requests");
}

#[test]
fn a_transfer_that_fails_or_panics_leaves_the_system_as_it_was() {
    let mut s = boot(loader::hosted::Hosted::new().unwrap());
    let v2 = common::object(CellKind::Upgrades, "counter");
    let (set_mode, mode, bump) = (
        s.bind(cell_abi::counter::SET_MODE),
        s.bind(cell_abi::counter::MODE),
        s.bind(cell_abi::counter::BUMP),
    );
    (bump.get())();
    (set_mode.get())(777);
    let before = s.state();
    let err = s
        .swap_object("counter", &v2, &SwapOptions::default())
        .unwrap_err();
    assert!(
        matches!(&err, SwapError::Transfer { cell, message } if cell == "counter" && message.contains("777")),
        "{err}"
    );
    assert_unchanged(&before, &s.state(), "transfer error");

    (set_mode.get())(666);
    let before = s.state();
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let err = s
        .swap_object("counter", &v2, &SwapOptions::default())
        .unwrap_err();
    std::panic::set_hook(hook);
    assert!(
        matches!(&err, SwapError::TransferPanicked { message, .. } if message.contains("refuses mode 666")),
        "{err}"
    );
    assert_unchanged(&before, &s.state(), "transfer panic");

    (set_mode.get())(5);
    let count = (bump.get())();
    let report = s
        .swap_object("counter", &v2, &SwapOptions::default())
        .unwrap();
    let outcome = |p: &str| report.statics.iter().find(|r| r.path == p).unwrap().outcome;
    assert_eq!(outcome("counter::COUNTER"), StaticOutcome::Rebound);
    assert_eq!(outcome("counter::CONFIG"), StaticOutcome::Transferred);
    assert_eq!((mode.get())(), 5, "the mode was transferred");
    assert_eq!((bump.get())(), count + 1, "the counter was rebound");
}

#[test]
fn a_swap_across_namespaces_is_refused() {
    let mut s = boot(loader::hosted::Hosted::new().unwrap());
    let app = s.system.create_namespace("app:x#1", Some(s.ns)).unwrap();
    let greet = common::object(CellKind::Libs, "greet");
    let in_app = s
        .system
        .load(app, CellSpec::named("greet"), &greet)
        .unwrap();
    let memfs = s.id("memfs");
    let before = s.state();
    let bytes = common::object(CellKind::Kernel, "memfs");
    let err = s
        .system
        .swap(
            &[
                SwapRequest {
                    old: memfs,
                    new: NewVersion::Object {
                        spec: CellSpec::named("memfs"),
                        bytes: &bytes,
                    },
                },
                SwapRequest {
                    old: in_app,
                    new: NewVersion::Object {
                        spec: CellSpec::named("greet"),
                        bytes: &greet,
                    },
                },
            ],
            &SwapOptions::default(),
        )
        .unwrap_err();
    assert!(matches!(err, SwapError::MixedNamespaces { .. }), "{err}");
    assert_unchanged(&before, &s.state(), "mixed namespaces");
}

#[test]
fn two_cells_swap_together_and_bind_to_each_other() {
    let mut s = boot(loader::hosted::Hosted::new().unwrap());
    let (spawn, free_count) = (
        s.bind(cell_abi::sched::SPAWN),
        s.bind(cell_abi::frame_alloc::FREE_COUNT),
    );
    (spawn.get())("before", 1).unwrap();
    let free = (free_count.get())();
    let fa = common::object(CellKind::Upgrades, "frame_alloc");
    let sched = common::object(CellKind::Upgrades, "sched");
    let (old_fa, old_sched) = (s.id("frame_alloc"), s.id("sched"));
    let report = s
        .system
        .swap(
            &[
                SwapRequest {
                    old: old_sched,
                    new: NewVersion::Object {
                        spec: CellSpec::named("sched"),
                        bytes: &sched,
                    },
                },
                SwapRequest {
                    old: old_fa,
                    new: NewVersion::Object {
                        spec: CellSpec::named("frame_alloc"),
                        bytes: &fa,
                    },
                },
            ],
            &SwapOptions::default(),
        )
        .unwrap();
    assert_eq!(report.cells.len(), 2);
    let (new_fa, new_sched) = (s.id("frame_alloc"), s.id("sched"));
    let reg = s.system.registry();
    assert!(
        reg.dependencies(new_sched).contains(&new_fa),
        "the new sched binds to the new frame_alloc"
    );
    assert!(!reg.dependencies(new_sched).contains(&old_fa));
    assert_eq!(
        (free_count.get())(),
        free,
        "every allocated frame stayed allocated"
    );
    (spawn.get())("after", 1).unwrap();
    assert_eq!((free_count.get())(), free - 1);
}
