//! The real cells, built by `cargo cell build`'s library, loaded by the loader into this test
//! process, initialised and driven through handles.

mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Mutex;

use crate_metadata::{CellState, Origin, Registry, SectionKind, SlotKind};
use nano_core::{workload, Kernel};

/// Tests boot their own kernel each; they share the process-wide logger, so they take turns.
static SERIAL: Mutex<()> = Mutex::new(());

fn boot() -> Kernel {
    nano_core::logger::install(log::LevelFilter::Off);
    Kernel::boot(common::cells_dir()).unwrap_or_else(|e| panic!("boot failed: {e:#}"))
}

#[test]
fn boot_loads_every_kernel_cell_in_dependency_order_and_runs_init() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let kernel = boot();
    let names: Vec<&str> = kernel
        .booted()
        .iter()
        .map(|b| b.entry.name.as_str())
        .collect();
    for cell in ["klog", "frame_alloc", "sched", "memfs", "tls_stats"] {
        assert!(names.contains(&cell), "{cell} not loaded: {names:?}");
    }
    let pos = |n: &str| names.iter().position(|c| *c == n).unwrap();
    assert!(pos("frame_alloc") < pos("sched"));
    assert!(pos("frame_alloc") < pos("memfs"));
    assert!(pos("klog") < pos("memfs"));
    assert!(
        kernel
            .booted()
            .iter()
            .filter(|b| b.entry.kind == crate_metadata::CellKind::Kernel)
            .all(|b| b.had_init),
        "every kernel cell has init"
    );
    let ns = kernel
        .namespaces()
        .by_name("_kernel")
        .expect("_kernel exists");
    assert_eq!(ns.cells.len(), names.len());
}

#[test]
fn workload_runs_across_the_cells() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut kernel = boot();
    let r = workload::run(&mut kernel).unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(r.frames_total, 1024);
    assert_eq!(r.frames_allocated.len(), 4);
    let mut distinct = r.frames_allocated.clone();
    distinct.dedup();
    assert_eq!(distinct.len(), 4, "frames are distinct");
    assert!(r.frames_allocated.iter().all(|f| f % 4096 == 0));
    assert!(
        r.double_free_error.contains("free"),
        "{}",
        r.double_free_error
    );
    // Three new tasks (plus the idle task init made); round robin visits each before repeating.
    assert_eq!(r.spawned.len(), 3);
    let first_round: std::collections::BTreeSet<u64> =
        r.schedule_order[..4].iter().copied().collect();
    assert_eq!(first_round.len(), 4, "round robin: {:?}", r.schedule_order);
    assert_eq!(r.schedule_order[..4], r.schedule_order[4..8]);
    assert_eq!(r.notes, "cells are linked at run time\n".repeat(200));
    assert!(
        r.root_listing.iter().any(|e| e.contains("home")),
        "{:?}",
        r.root_listing
    );
    assert!(
        r.missing_file_error.contains("/no/such/file"),
        "{}",
        r.missing_file_error
    );
    // The notes (5800 bytes) take 2 frames, each task stack 1.
    assert!(r.frames_free_after < r.frames_free_before - 3);
    let msg = r.panic_caught.as_deref().expect("the panic was caught");
    assert!(msg.contains("/no/such/file"), "{msg}");
    assert!(r.fs_works_after_panic);
    // Cells log through the base image's `log`, which forwards to klog.
    assert!(r.klog_lines > 0);
    assert!(r.klog_tail.iter().any(|l| !l.is_empty()));
    assert_eq!(
        r.tls_per_thread,
        vec![10, 20, 30],
        "each thread has its own counter"
    );
}

#[test]
fn every_cross_cell_reference_is_an_edge_stored_on_both_sides() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let kernel = boot();
    let reg = kernel.system().registry();
    let by_name = |n: &str| {
        reg.cells()
            .find(|c| c.name == n && c.origin == Origin::Object)
            .unwrap()
    };
    let sched = by_name("sched");
    let frame_alloc = by_name("frame_alloc");
    assert!(reg.dependencies(sched.id).contains(&frame_alloc.id));
    assert!(reg.dependents(frame_alloc.id).contains(&sched.id));
    assert!(
        reg.dependencies(sched.id).contains(&Registry::BASE),
        "binds to core/alloc"
    );
    for (id, e) in reg.edges() {
        let dep = reg.cell(e.dependent).unwrap();
        let prov = reg.cell(e.provider).unwrap();
        assert!(dep.uses.contains(&id) && prov.used_by.contains(&id));
        assert!(prov.symbol(e.symbol).is_some(), "edge names a real symbol");
        if dep.origin == Origin::Object {
            // The slot lies in the section the edge names.
            let s = dep.section(e.section).unwrap();
            assert!(
                e.slot >= s.addr && e.slot < s.addr + s.size,
                "{e:?} outside {s:?}"
            );
            assert_eq!(e.slot % 8, 0, "slots are aligned 8-byte words");
        }
        assert_ne!(
            e.kind,
            SlotKind::Direct,
            "no text patched for a cross-cell reference"
        );
    }
    // The host's handles are edges from the base image too.
    assert!(reg
        .cell(Registry::BASE)
        .unwrap()
        .uses
        .iter()
        .any(|e| reg.edge(*e).unwrap().kind == SlotKind::Handle));
    assert!(reg.cells().all(|c| c.state == CellState::Live));
}

#[test]
fn no_mapping_is_writable_and_executable() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut kernel = boot();
    workload::run(&mut kernel).unwrap();
    assert_eq!(common::wx_mappings(), Vec::<String>::new());
    // Each cell's regions: text executable, nothing else.
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    for b in kernel.booted() {
        let regions = kernel.system().regions(b.id).unwrap();
        for (i, (start, len)) in regions.iter().enumerate() {
            if *len == 0 {
                continue;
            }
            let line = maps
                .lines()
                .find(|l| {
                    let range = l.split_whitespace().next().unwrap();
                    let (lo, hi) = range.split_once('-').unwrap();
                    let lo = u64::from_str_radix(lo, 16).unwrap();
                    let hi = u64::from_str_radix(hi, 16).unwrap();
                    lo <= *start && *start < hi
                })
                .unwrap_or_else(|| panic!("region {i} of {} not mapped", b.entry.name));
            let perms = line.split_whitespace().nth(1).unwrap();
            let expected = ["r-xp", "r--p", "r--p", "rw-p"][i];
            assert_eq!(perms, expected, "{} region {i}: {line}", b.entry.name);
        }
        let cell = kernel.system().registry().cell(b.id).unwrap();
        assert!(cell.sections.iter().any(|s| s.kind == SectionKind::Text));
    }
}

#[test]
fn a_panic_in_a_cell_unwinds_to_the_host() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut kernel = boot();
    let f = kernel.bind(cell_abi::memfs::READ_OR_PANIC).unwrap();
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let caught = catch_unwind(AssertUnwindSafe(|| (f.get())("/missing")));
    std::panic::set_hook(hook);
    let payload = caught.expect_err("read_or_panic must panic on a missing file");
    assert!(workload::panic_message(&*payload).contains("/missing"));
    // The cell is fine afterwards.
    assert!(!(f.get())("/etc/motd").is_empty());
}

#[test]
fn thread_local_blocks_are_per_thread_and_freed_at_thread_exit() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut kernel = boot();
    let record = kernel.bind(cell_abi::tls_stats::RECORD).unwrap();
    let note = kernel.bind(cell_abi::tls_stats::NOTE).unwrap();
    let before = loader::hosted::live_tls_blocks();
    let threads: Vec<_> = (1..=4u64)
        .map(|t| {
            let (record, note) = (record.clone(), note.clone());
            std::thread::spawn(move || {
                let mut last = 0;
                for _ in 0..t {
                    last = (record.get())(t);
                    (note.get())("x");
                }
                (
                    last,
                    (note.get())("last"),
                    loader::hosted::live_tls_blocks(),
                )
            })
        })
        .collect();
    for (t, h) in threads.into_iter().enumerate() {
        let t = t as u64 + 1;
        let (total, notes, live) = h.join().unwrap();
        assert_eq!(total, t * t, "thread {t} counts alone");
        assert_eq!(notes as u64, t + 1);
        assert!(live > before, "the thread had a block while it ran");
    }
    assert_eq!(
        loader::hosted::live_tls_blocks(),
        before,
        "exited threads' blocks are freed"
    );
}

#[test]
fn unloading_is_refused_while_dependents_exist_and_frees_the_cell_when_not() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut kernel = boot();
    let id_of = |k: &Kernel, n: &str| k.booted().iter().find(|b| b.entry.name == n).unwrap().id;
    let frame_alloc = id_of(&kernel, "frame_alloc");
    let err = kernel.system_mut().unload(frame_alloc).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("sched") && text.contains("memfs"), "{text}");
    let tls_stats = id_of(&kernel, "tls_stats");
    let text = kernel.system().regions(tls_stats).unwrap()[0].0;
    // The permissions of the mapping that holds `addr`, if one does.
    let perms = |addr: u64| {
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        maps.lines().find_map(|l| {
            let mut fields = l.split_whitespace();
            let (lo, hi) = fields.next().unwrap().split_once('-').unwrap();
            let inside = u64::from_str_radix(lo, 16).unwrap() <= addr
                && addr < u64::from_str_radix(hi, 16).unwrap();
            inside.then(|| fields.next().unwrap().to_string())
        })
    };
    assert_eq!(perms(text).as_deref(), Some("r-xp"));
    kernel.system_mut().unload(tls_stats).unwrap();
    assert!(kernel.system().registry().cell(tls_stats).is_none());
    assert!(kernel
        .namespaces()
        .by_name("_kernel")
        .unwrap()
        .cells
        .iter()
        .all(|c| *c != tls_stats));
    // Its memory is kept for the next cell of its size, inaccessible, until the platform is
    // trimmed.
    assert_eq!(perms(text).as_deref(), Some("---p"), "no longer accessible");
    kernel.system().platform().trim();
    assert_eq!(perms(text), None, "its memory is unmapped");
}

#[test]
fn a_crate_the_base_image_links_shares_its_statics_with_the_loaded_cell() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut kernel = boot();
    let push = kernel.bind(cell_abi::klog::PUSH).unwrap();
    let dump = kernel.bind(cell_abi::klog::DUMP).unwrap();
    // The host's own (statically linked) klog and the loaded cell write one ring.
    let from_host = format!(
        "written by the base image {:?}",
        std::thread::current().id()
    );
    klog::push(3, "test", &from_host);
    assert!(
        (dump.get())().iter().any(|l| l.contains(&from_host)),
        "the cell sees the host's write"
    );
    let from_cell = format!("written through the cell {:?}", std::time::Instant::now());
    (push.get())(3, "test", &from_cell);
    assert!(
        klog::dump().iter().any(|l| l.contains(&from_cell)),
        "the host sees the cell's write"
    );
    // The boot's early message, logged before any cell was loaded, is in the cell's ring.
    assert!((dump.get())().iter().any(|l| l.contains("early boot")) || klog::dropped() > 0);
    // The binding is an edge from the cell to the base image, for klog's `LOG`.
    let reg = kernel.system().registry();
    let cell = reg
        .cells()
        .find(|c| c.name == "klog" && c.origin == Origin::Object)
        .unwrap();
    let log = cell
        .symbols
        .iter()
        .find(|s| crate_metadata::demangle::path(&s.name) == "klog::LOG")
        .unwrap();
    assert!(
        log.addr < cell.base_addr || log.addr >= cell.base_addr + cell.stats.mapped_bytes,
        "LOG is not the cell's own copy"
    );
    assert!(cell
        .uses
        .iter()
        .filter_map(|e| reg.edge(*e))
        .any(|e| e.provider == Registry::BASE
            && reg
                .cell(Registry::BASE)
                .unwrap()
                .symbol(e.symbol)
                .is_some_and(|s| s.name == log.name)));
}

#[test]
fn init_array_functions_get_argc_argv_envp() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut kernel = boot();
    let argc = kernel.bind(cell_abi::tls_stats::INIT_ARRAY_ARGC).unwrap();
    assert_eq!((argc.get())(), std::env::args().count() as i64);
}
