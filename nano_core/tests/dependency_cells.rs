//! Every crate a cell: the crates.io crates the cells use are dependency cells of their own, loaded
//! once per namespace chain, in two releases side by side, with their thread-locals served across
//! cells, and moved to a new release by a live swap.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use crate_metadata::{CellId, CellKind, CellState, Manifest, SlotKind};
use loader::{CellSpec, LoadError, ManifestCatalog, MissingCause, SwapError, SwapOptions, System};
use nano_core::upgrade_set::UpgradeSetError;
use nano_core::Kernel;

use cell_abi::kvstore as kv;

fn boot() -> Kernel {
    Kernel::boot(common::cells_dir()).expect("boot")
}

/// The live cells named `name` in any namespace, with their versions and namespaces' names.
fn live(kernel: &Kernel, name: &str) -> Vec<(CellId, String, String)> {
    let system = kernel.system();
    system
        .registry()
        .cells()
        .filter(|c| c.name == name && c.state == CellState::Live)
        .map(|c| {
            let ns = c
                .namespace
                .and_then(|n| system.namespaces().get(n))
                .map(|n| n.name.clone())
                .unwrap_or_default();
            (c.id, c.version.clone(), ns)
        })
        .collect()
}

/// The cells that `cell` binds to through slots, by name.
fn providers(kernel: &Kernel, cell: CellId) -> Vec<CellId> {
    let registry = kernel.system().registry();
    let mut out: Vec<CellId> = registry
        .cell(cell)
        .map(|c| c.uses.iter().filter_map(|e| registry.edge(*e)))
        .into_iter()
        .flatten()
        .map(|e| e.provider)
        .collect();
    out.sort();
    out.dedup();
    out
}

#[test]
fn a_dependency_two_cells_use_is_loaded_once_and_both_bind_to_it() {
    let kernel = boot();
    let manifest = common::manifest();
    // crc32fast is used by the kernel cell kvstore and by the library cell textkit.
    let entry = manifest
        .cells
        .iter()
        .find(|e| e.kind == CellKind::Deps && e.name == "crc32fast")
        .expect("crc32fast is a dependency cell");
    let users: Vec<&str> = manifest
        .users_of(entry.key())
        .iter()
        .map(|e| e.name.as_str())
        .collect();
    assert!(
        users.contains(&"kvstore") && users.contains(&"textkit"),
        "{users:?}"
    );
    let crc = live(&kernel, "crc32fast");
    assert_eq!(crc.len(), 1, "one crc32fast cell: {crc:?}");
    assert_eq!(crc[0].2, "_kernel");
    for user in ["kvstore", "textkit"] {
        let id = kernel.cell_id(user).expect("user loaded");
        assert!(
            providers(&kernel, id).contains(&crc[0].0),
            "{user} binds to the crc32fast cell"
        );
    }
    // And every dependency cell loaded is one the manifest lists for some cell, loaded once.
    for b in kernel.booted() {
        if b.entry.kind == CellKind::Deps {
            assert_eq!(live(&kernel, &b.entry.name).len(), 1, "{}", b.entry.name);
            assert!(!manifest.users_of(b.entry.key()).is_empty());
        }
    }
}

#[test]
fn dependency_cells_load_before_the_cells_that_need_them() {
    let kernel = boot();
    let manifest = common::manifest();
    let position = |name: &str| kernel.booted().iter().position(|b| b.entry.name == name);
    for b in kernel.booted() {
        for key in &b.entry.crates {
            let dep = manifest.dep(key).expect("known dependency");
            if let Some(p) = position(&dep.name) {
                assert!(
                    p < position(&b.entry.name).unwrap(),
                    "{} before {}",
                    dep.name,
                    b.entry.name
                );
            } else {
                // Not loaded: the base image links that very build.
                let platform = kernel.system().platform();
                assert!(
                    dep.provided_by(&mut |s| {
                        loader::platform::SymbolSource::image_symbol(platform, s).is_some()
                    }),
                    "{} was neither loaded nor provided by the image",
                    dep.name
                );
            }
        }
    }
}

#[test]
fn the_kernel_cell_runs_its_third_party_crates() {
    let mut kernel = boot();
    let put = kernel.bind(kv::PUT).unwrap();
    let get = kernel.bind(kv::GET).unwrap();
    let checksum = kernel.bind(kv::CHECKSUM).unwrap();
    let tag = kernel.bind(kv::TAG).unwrap();
    let tagged = kernel.bind(kv::TAGGED).unwrap();
    let split = kernel.bind(kv::SPLIT_PATH).unwrap();
    // CRC-32 of "123456789" is the standard check value.
    assert_eq!((put.get())("check", b"123456789"), Ok(0xcbf4_3926));
    assert_eq!((checksum.get())("check"), Some(0xcbf4_3926));
    assert_eq!((get.get())("motd").as_deref(), Some(&b"kvstore ready"[..]));
    assert_eq!((tag.get())("check", "test"), Ok(1));
    assert_eq!((tag.get())("motd", "test"), Ok(2));
    assert_eq!((tagged.get())("test"), ["check", "motd"]);
    assert_eq!((split.get())("/a//b/c/"), ["a", "b", "c"]);
    assert!((put.get())(&"k".repeat(40), b"x")
        .unwrap_err()
        .contains("longer than"));
}

#[test]
fn each_application_gets_its_own_release_of_a_crate() {
    let mut kernel = boot();
    let app = kernel.start_app("banner").expect("banner starts");
    let outcome = kernel
        .call_app(app, &["a\nb".into(), "\r\n".into(), "abc".into()])
        .unwrap();
    assert_eq!(outcome, nano_core::apps::Outcome::Exited(0));
    let ns = kernel
        .apps()
        .into_iter()
        .find(|a| a.id == app)
        .unwrap()
        .namespace;
    let ns_id = kernel
        .system()
        .namespaces()
        .iter()
        .find(|n| n.name == ns)
        .unwrap()
        .id;
    let widths = kernel.bind_in(ns_id, cell_abi::banner::WIDTHS).unwrap();
    // unicode-width 0.2 counts a newline as one column, 0.1 as none: each caller its own release.
    assert_eq!((widths.get())(), [(3, 2), (1, 0), (3, 3)]);
    let releases = live(&kernel, "unicode_width");
    assert_eq!(releases.len(), 2, "{releases:?}");
    assert!(
        releases
            .iter()
            .any(|r| r.1.starts_with("0.1") && r.2 == "_kernel"),
        "{releases:?}"
    );
    assert!(
        releases.iter().any(|r| r.1.starts_with("0.2") && r.2 == ns),
        "{releases:?}"
    );
    drop(widths);
    kernel.end_app(app).unwrap();
    // Its release went with its namespace; the kernel's stays.
    let releases = live(&kernel, "unicode_width");
    assert_eq!(releases.len(), 1, "{releases:?}");
    assert!(releases[0].1.starts_with("0.1"));
}

#[test]
fn thread_locals_of_another_cell_serve_every_thread() {
    let mut kernel = boot();
    let find_all = kernel.bind(cell_abi::textkit::FIND_ALL).unwrap();
    let words = kernel.bind(cell_abi::textkit::WORD_COUNT).unwrap();
    // textkit's object reaches regex-automata's thread-local (the pool's thread id) through a
    // TLS pair in its GOT: the module regex-automata got and the variable's offset.
    let registry = kernel.system().registry();
    // (This test binary does not link regex, so regex-automata is a cell here.)
    let automata = kernel.cell_id("regex_automata");
    assert!(automata.is_some(), "regex_automata is loaded as a cell");
    let pairs: Vec<_> = kernel
        .system()
        .registry()
        .edges()
        .map(|(_, e)| e)
        .filter(|e| e.kind == SlotKind::TlsPair && Some(e.provider) == automata)
        .collect();
    assert!(!pairs.is_empty(), "a TLS pair into regex_automata");
    let module = registry.cell(automata.unwrap()).unwrap().tls_module;
    assert!(module.is_some(), "regex_automata has a TLS module");
    let values: std::collections::BTreeMap<u64, u64> =
        kernel.system().slot_values().into_iter().collect();
    for e in &pairs {
        assert_eq!(
            values.get(&e.slot).copied(),
            module,
            "the pair's module word"
        );
    }
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let (find_all, words) = (find_all.clone(), words.clone());
            std::thread::spawn(move || {
                let mut checked = 0;
                for i in 0..200 {
                    let text = format!("thread {t} round {i}: a1 b22 c333");
                    let found = (find_all.get())(r"[a-z]\d+", &text).unwrap();
                    assert_eq!(found, ["a1", "b22", "c333"]);
                    assert_eq!((words.get())(&text), 7);
                    checked += 1;
                }
                checked
            })
        })
        .collect();
    let total: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert_eq!(total, 1600);
}

#[test]
fn an_undefined_symbol_names_the_crate_that_is_not_loaded() {
    let manifest: Manifest = common::manifest();
    let mut system = System::new(loader::hosted::Hosted::new().unwrap(), "test");
    system.set_catalog(Arc::new(ManifestCatalog::new(&manifest)));
    let ns = system.create_namespace("_kernel", None).unwrap();
    let entry = manifest.get(CellKind::Libs, "textkit").unwrap();
    let bytes = common::object(CellKind::Libs, "textkit");
    let before = (system.namespaces().snapshot(), system.registry().clone());
    let err = system
        .load(ns, CellSpec::named("textkit"), &bytes)
        .expect_err("textkit without regex");
    assert!(before.0 == system.namespaces().snapshot());
    assert!(before.1 == *system.registry());
    let LoadError::UndefinedSymbols { missing, cause, .. } = &err else {
        panic!("wrong error: {err}");
    };
    assert_eq!(*cause, Some(MissingCause::NotLoaded), "{err}");
    let crates: Vec<&str> = missing
        .iter()
        .filter_map(|m| m.defined_by.as_deref())
        .collect();
    let regex = manifest.dep(&entry.crates[0]).map(|d| &d.version);
    assert!(crates.iter().any(|c| c.starts_with("regex ")), "{crates:?}");
    assert!(
        crates.iter().any(|c| c.starts_with("regex_automata ")),
        "the generic instances regex-automata exports are traced to it: {crates:?}"
    );
    assert!(regex.is_some());
    assert!(missing.iter().all(|m| m.defined_by.is_some()), "{err}");
    let text = err.to_string();
    assert!(!text.contains("toolchain"), "{text}");
    assert!(text.contains("not loaded"), "{text}");
}

#[test]
fn a_dependency_upgrade_moves_the_crate_under_load_and_keeps_the_state() {
    let mut kernel = boot();
    let manifest = common::manifest();
    let upgrade = manifest
        .get(CellKind::Upgrades, "kvstore")
        .expect("cells/upgrades/kvstore");
    let info = upgrade
        .dependency_upgrade
        .as_ref()
        .expect("a dependency upgrade");
    assert_eq!(
        info.bumped,
        [("heapless-0.9.3".to_owned(), "heapless-0.9.4".to_owned())]
    );
    // kvquery is compiled against kvstore: rebuilt unchanged, swapped in the same transaction.
    assert_eq!(info.rebuilt, ["kvquery"]);
    let rebuilt = manifest
        .cells
        .iter()
        .find(|e| e.name == "kvquery" && e.rebuilt_for.as_deref() == Some("kvstore"))
        .expect("the rebuilt kvquery");
    assert_ne!(
        Some(&rebuilt.sha256),
        manifest.get(CellKind::Libs, "kvquery").map(|e| &e.sha256)
    );
    let put = kernel.bind(kv::PUT).unwrap();
    let get = kernel.bind(kv::GET).unwrap();
    let len = kernel.bind(kv::LEN).unwrap();
    let revision = kernel.bind(cell_abi::REVISION.of("kvstore")).unwrap();
    let summary = kernel.bind(cell_abi::kvquery::SUMMARY).unwrap();
    for i in 0..20 {
        (put.get())(&format!("key{i}"), format!("value {i}").as_bytes()).unwrap();
    }
    let stop = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..3)
        .map(|t| {
            let (put, get) = (put.clone(), get.clone());
            let (stop, calls, failed) = (stop.clone(), calls.clone(), failed.clone());
            std::thread::spawn(move || {
                let key = format!("worker{t}");
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let value = n.to_le_bytes();
                    let ok = (put.get())(&key, &value).is_ok()
                        && (get.get())(&key).as_deref() == Some(&value[..])
                        && (get.get())("key7").as_deref() == Some(&b"value 7"[..]);
                    calls.fetch_add(3, Ordering::Relaxed);
                    if !ok {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    let path = kernel.cells_dir().join(&upgrade.object);
    let mut reports = Vec::new();
    for round in 0..4 {
        std::thread::sleep(std::time::Duration::from_millis(20));
        let target = if round % 2 == 0 {
            path.clone()
        } else {
            kernel.default_swap_object("kvstore").expect("the way back")
        };
        let report = kernel
            .swap_cell("kvstore", &target, &SwapOptions::default())
            .unwrap_or_else(|e| panic!("round {round}: {e:#}"));
        let expected = if round % 2 == 0 { "v2" } else { "v1" };
        assert!((revision.get())().contains(expected), "round {round}");
        // The rebuilt kvquery calls the kvstore of its own build.
        assert!((summary.get())().contains(expected), "round {round}");
        reports.push(report);
    }
    std::thread::sleep(std::time::Duration::from_millis(20));
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "calls failed during the swaps"
    );
    assert!(calls.load(Ordering::Relaxed) > 0);
    // The first swap moved kvstore and heapless together and rebound the store.
    let first = &reports[0];
    let names: Vec<&str> = first.cells.iter().map(|c| c.name.as_str()).collect();
    assert!(
        names.contains(&"kvstore") && names.contains(&"heapless"),
        "{names:?}"
    );
    assert!(
        first
            .statics
            .iter()
            .any(|s| s.path == "kvstore::STORE" && s.outcome == loader::StaticOutcome::Rebound),
        "{:?}",
        first.statics
    );
    // The way back reused the retired versions.
    assert!(
        reports[3].cells.iter().all(|c| c.reused),
        "{:?}",
        reports[3].cells
    );
    // Every entry is still there (20, motd, 3 workers).
    assert_eq!((len.get())(), 24);
    assert_eq!((get.get())("key19").as_deref(), Some(&b"value 19"[..]));
    let heapless = live(&kernel, "heapless");
    assert_eq!(heapless.len(), 1, "{heapless:?}");
    assert_eq!(heapless[0].1, "0.9.3");
}

#[test]
fn a_dependency_upgrade_that_cannot_be_verified_changes_nothing() {
    let mut kernel = boot();
    let manifest = common::manifest();
    let upgrade = manifest.get(CellKind::Upgrades, "kvstore").unwrap();
    let info = upgrade.dependency_upgrade.as_ref().unwrap();
    // A handle to a symbol the build could not vouch for: a trait method generated by a macro.
    let unverified = info
        .unverified
        .iter()
        .find(|u| u.from.contains("kvstore") && u.from.contains("Display"))
        .expect("an unverified kvstore symbol");
    // SAFETY: never called; only held, so that the host binds to the symbol.
    let held = unsafe {
        kernel
            .handle::<fn()>(&unverified.from)
            .expect("handle to an exported symbol")
    };
    let system = kernel.system();
    let before = (
        system.namespaces().snapshot(),
        system.registry().clone(),
        system.slot_values(),
        system.platform().live_mappings(),
    );
    let path = kernel.cells_dir().join(&upgrade.object);
    let err = kernel
        .swap_cell("kvstore", &path, &SwapOptions::default())
        .expect_err("the host binds to a symbol whose rename is not verified");
    let system = kernel.system();
    assert!(
        before.0 == system.namespaces().snapshot(),
        "namespaces changed"
    );
    assert!(before.1 == *system.registry(), "registry changed");
    assert!(before.2 == system.slot_values(), "slots changed");
    assert_eq!(
        before.3,
        system.platform().live_mappings(),
        "mappings changed"
    );
    let set = err
        .downcast_ref::<UpgradeSetError>()
        .unwrap_or_else(|| panic!("not an upgrade-set error: {err:#}"));
    let SwapError::MissingSymbols { cell, missing } = &set.error else {
        panic!("wrong error: {set}");
    };
    assert_eq!(cell, "kvstore");
    assert_eq!(missing.len(), 1, "{set}");
    assert_eq!(missing[0].mangled, unverified.from);
    assert_eq!(missing[0].dependents, ["nano_core"]);
    assert_eq!(set.unverified.len(), 1, "{set}");
    assert!(
        set.to_string().contains("cannot follow the rename"),
        "{set}"
    );
    drop(held);
    // Without that handle, the same swap goes through.
    kernel
        .swap_cell("kvstore", &path, &SwapOptions::default())
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(live(&kernel, "heapless")[0].1, "0.9.4");
}

/// A copy of the built cells in a directory of its own, with `damage` applied to the object of
/// the dependency cell named `crate_name`.
fn cells_with_damaged(crate_name: &str, tag: &str) -> std::path::PathBuf {
    let from = common::cells_dir();
    let to = std::env::temp_dir().join(format!("cells-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&to);
    for entry in walk(from) {
        let rel = entry.strip_prefix(from).unwrap();
        let dest = to.join(rel);
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::copy(&entry, &dest).unwrap();
    }
    let manifest = common::manifest();
    let dep = manifest
        .cells
        .iter()
        .find(|e| e.kind == CellKind::Deps && e.name == crate_name)
        .unwrap_or_else(|| panic!("no dependency cell {crate_name}"));
    let path = to.join(&dep.object);
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    to
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else if path.extension().is_some_and(|e| e == "o" || e == "json") {
            out.push(path);
        }
    }
    out
}

#[test]
fn a_library_whose_dependency_fails_is_left_out_and_the_rest_boots() {
    let dir = cells_with_damaged("regex_syntax", "lib");
    let kernel = Kernel::boot(&dir).expect("the kernel boots without textkit");
    let failures = kernel.boot_failures();
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[0].cell, "textkit");
    assert!(
        matches!(
            &failures[0].load_error,
            Some(LoadError::IntegrityMismatch { cell, .. }) if cell == "regex_syntax"
        ),
        "{}",
        failures[0].error
    );
    // Nothing loaded for it stayed: no regex cell, no textkit; the rest is there.
    for gone in [
        "textkit",
        "regex",
        "regex_automata",
        "regex_syntax",
        "aho_corasick",
    ] {
        assert!(live(&kernel, gone).is_empty(), "{gone} stayed loaded");
    }
    for here in ["kvstore", "memfs", "columns", "kvquery", "crc32fast"] {
        assert_eq!(live(&kernel, here).len(), 1, "{here}");
    }
    drop(kernel);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_kernel_cell_whose_dependency_fails_stops_the_boot_naming_both() {
    let dir = cells_with_damaged("heapless", "kernel");
    let error = match Kernel::boot(&dir) {
        Ok(_) => panic!("the boot must stop"),
        Err(e) => e,
    };
    std::fs::remove_dir_all(&dir).unwrap();
    let err = nano_core::errors::render(&error);
    assert!(err.contains("kernel cell `kvstore`"), "{err}");
    assert!(err.contains("dependency cell `heapless` 0.9.3"), "{err}");
    assert!(
        matches!(
            nano_core::errors::find::<LoadError>(&error),
            Some(LoadError::IntegrityMismatch { cell, .. }) if cell == "heapless"
        ),
        "{err}"
    );
}
