//! The inspection views checked against the edges the loader recorded: `--invert` and `--why`
//! on the real cells (offline snapshot) and on a generated system, what `--unresolved` reports
//! when a cell is missing or broken, `--cycles`, `--addr`, snapshot files, and the live source
//! over a control socket.

mod inspect_support;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixListener;

use build_tools::inspect::model::{self, Index, Model, Snapshot, SnapshotSource};
use build_tools::inspect::synth::{generate, SynthOptions};
use build_tools::inspect::views::View;
use build_tools::inspect::{live, show, view, Format, Options, Query};
use crate_metadata::{
    Cell, CellId, CellKind, Edge, ManifestEntry, Registry, SectionId, SlotKind, SymbolId,
};
use inspect_support::expect::{check_bump, expected_dependents, uses};
use inspect_support::{dry_link_edited, model, report, TempDir};

fn check_invert(m: &Model, cell: CellId) {
    let s = &m.snapshot;
    let index = Index::new(m);
    let q = Query::Invert(format!("#{}", cell.0));
    let View::Invert { dependents, .. } = view(&index, &q, &Options::default()).unwrap() else {
        panic!("not an invert view")
    };
    let expected = expected_dependents(s, cell);
    let got: BTreeMap<CellId, usize> = dependents
        .iter()
        .map(|d| (CellId(d.cell.id), d.depth))
        .collect();
    assert_eq!(got, expected, "dependents of cell #{}", cell.0);
    let uses = uses(s);
    for d in &dependents {
        let via = CellId(d.via.id);
        let via_depth = expected.get(&via).copied().unwrap_or(0);
        assert_eq!(
            via_depth + 1,
            d.depth,
            "{} is one further than {}",
            d.cell.name,
            d.via.name
        );
        let mut want = uses[&CellId(d.cell.id)][&via].clone();
        let mut have: Vec<String> = d.slots.iter().map(|r| r.symbol.clone()).collect();
        want.sort();
        have.sort();
        assert_eq!(have, want, "slots of {} into {}", d.cell.name, d.via.name);
    }
}

fn check_why(m: &Model, from: CellId, to: CellId) {
    let s = &m.snapshot;
    let index = Index::new(m);
    let q = Query::Why(format!("#{}", from.0), format!("#{}", to.0));
    let View::Why { path, .. } = view(&index, &q, &Options::default()).unwrap() else {
        panic!("not a why view")
    };
    let uses = uses(s);
    // The shortest chain, by breadth-first search over the raw edges.
    let mut dist = BTreeMap::from([(from, 0usize)]);
    let mut queue = VecDeque::from([from]);
    while let Some(c) = queue.pop_front() {
        for p in uses.get(&c).into_iter().flat_map(|m| m.keys()) {
            if !dist.contains_key(p) {
                dist.insert(*p, dist[&c] + 1);
                queue.push_back(*p);
            }
        }
    }
    match dist.get(&to) {
        None => assert!(path.is_empty(), "no chain from #{} to #{}", from.0, to.0),
        Some(n) => {
            assert_eq!(path.len(), *n, "chain length from #{} to #{}", from.0, to.0);
            assert_eq!(path.first().map(|h| h.from.id), Some(from.0));
            assert_eq!(path.last().map(|h| h.to.id), Some(to.0));
            for (i, h) in path.iter().enumerate() {
                if i > 0 {
                    assert_eq!(h.from.id, path[i - 1].to.id, "a chain");
                }
                let want: BTreeSet<&String> =
                    uses[&CellId(h.from.id)][&CellId(h.to.id)].iter().collect();
                let have: BTreeSet<&String> = h.symbols.iter().map(|s| &s.symbol).collect();
                assert_eq!(have, want, "symbols of {} -> {}", h.from.name, h.to.name);
                let slots: usize = h.symbols.iter().map(|s| s.slots.len()).sum();
                assert_eq!(slots, uses[&CellId(h.from.id)][&CellId(h.to.id)].len());
            }
        }
    }
}

#[test]
fn invert_and_why_match_the_recorded_edges_of_the_real_cells() {
    // The cell view of every cell (`#id`: for a dependency cell, the crate view is the default).
    let m = model();
    let cells: Vec<CellId> = m.snapshot.registry.cells().map(|c| c.id).collect();
    assert!(cells.len() >= 6, "the real cells were linked: {cells:?}");
    for c in &cells {
        check_invert(m, *c);
        for d in &cells {
            if c != d {
                check_why(m, *c, *d);
            }
        }
    }
}

#[test]
fn invert_and_why_match_the_edges_of_a_generated_system() {
    let s = Model::from(generate(&SynthOptions {
        cells: 60,
        ..SynthOptions::default()
    }));
    for i in [0, 1, 7, 30] {
        check_invert(&s, CellId(2 + i));
    }
    // The host holds a handle into cell_005: it is touched by a swap of cell_005, but nothing is
    // reached through the base image.
    let mut s = s;
    let target = CellId(2 + 5);
    s.snapshot
        .registry
        .add_edge(Edge {
            dependent: Registry::BASE,
            section: SectionId(0),
            slot: 0x5555_1000,
            kind: SlotKind::Handle,
            addend: 0,
            provider: target,
            symbol: SymbolId(0),
        })
        .unwrap();
    check_invert(&s, target);
    check_invert(&s, CellId(2));
    let index = Index::new(&s);
    let View::Invert { dependents, .. } = view(
        &index,
        &Query::Invert("cell_005".into()),
        &Options::default(),
    )
    .unwrap() else {
        panic!("not an invert view")
    };
    let host = dependents
        .iter()
        .find(|d| d.cell.name == "nano_core")
        .expect("the host is touched");
    assert_eq!((host.depth, host.slots.len()), (1, 1));
    assert_eq!(host.slots[0].kind, SlotKind::Handle);
    for (a, b) in [(59, 0), (40, 3), (3, 40), (10, 9)] {
        check_why(&s, CellId(2 + a), CellId(2 + b));
    }
}

#[test]
fn the_dry_link_loads_dependency_cells_as_nano_core_does() {
    let m = model();
    let s = &m.snapshot;
    let manifest = &inspect_support::fixture_manifest(&report().manifest);
    assert_eq!(s.source, SnapshotSource::Offline);
    assert_eq!(
        m.manifest.as_ref(),
        Some(manifest),
        "the model carries the manifest of the fixture's cells"
    );
    assert!(s.unresolved.is_empty(), "{:?}", s.unresolved);
    let namespace_of = |c: &Cell| Some(s.namespaces.get(c.namespace?)?.name.clone());
    let needs = |user: &ManifestEntry, dep: &ManifestEntry| {
        let closure = manifest.dependency_closure(user).expect("a plan");
        closure.iter().any(|d| d.key() == dep.key())
    };
    for entry in &manifest.cells {
        let mut want: Vec<String> = match entry.kind {
            CellKind::Upgrades => continue,
            CellKind::Kernel | CellKind::Libs => vec!["_kernel".into()],
            CellKind::Apps => vec![format!("app:{}", entry.name)],
            // The base image links it (every cell binds to the image instead), or it exports
            // nothing (every image provides all of nothing: `ManifestEntry::provided_by`).
            CellKind::Deps
                if entry.crate_info.as_ref().unwrap().in_base_image || entry.exports.is_empty() =>
            {
                Vec::new()
            }
            CellKind::Deps => {
                let by_kernel = manifest
                    .cells
                    .iter()
                    .filter(|u| matches!(u.kind, CellKind::Kernel | CellKind::Libs))
                    .any(|u| needs(u, entry));
                if by_kernel {
                    vec!["_kernel".into()]
                } else {
                    // Once in each application's namespace whose cells need it.
                    let brought = |a: &ManifestEntry| {
                        a.brings.iter().any(|b| {
                            manifest
                                .get(CellKind::Upgrades, b)
                                .is_some_and(|u| needs(u, entry))
                        })
                    };
                    manifest
                        .cells
                        .iter()
                        .filter(|a| a.kind == CellKind::Apps && (needs(a, entry) || brought(a)))
                        .map(|a| format!("app:{}", a.name))
                        .collect()
                }
            }
        };
        let mut have: Vec<String> = s
            .registry
            .cells()
            .filter(|c| c.sha256 == Some(entry.sha256))
            .filter_map(namespace_of)
            .collect();
        want.sort();
        have.sort();
        assert_eq!(
            have,
            want,
            "where {} {} ({}) is linked",
            entry.name,
            entry.version,
            entry.kind.dir()
        );
    }
    // What the base image links is bound there: klog's slots into `log` are the image's.
    let index = Index::new(m);
    let klog = index.find("klog", None).unwrap();
    let log = index
        .crates
        .find("log")
        .unwrap()
        .expect("log is a dependency crate");
    assert!(index.crates.loaded(log).is_empty());
    assert!(index
        .slots_into(klog.id, log)
        .iter()
        .all(|e| s.registry.edge(*e).unwrap().provider == Registry::BASE));
    assert!(!index.slots_into(klog.id, log).is_empty());
    // sched calls frame_alloc and klog through its GOT.
    let text = show(
        m,
        &Query::Why("sched".into(), "frame_alloc".into()),
        &Options::default(),
    )
    .unwrap();
    assert!(text.contains("frame_alloc::alloc_frame"), "{text}");
}

#[test]
fn a_bump_of_a_crate_touches_every_crate_and_cell_compiled_against_it() {
    let m = model();
    let manifest = m.manifest.as_ref().unwrap();
    for dep in manifest.cells.iter().filter(|e| e.kind == CellKind::Deps) {
        check_bump(m, dep.key());
    }
    // byteorder is used only through hash32, which heapless uses, which kvstore uses.
    let dependents = check_bump(m, "byteorder");
    let kvstore = dependents
        .iter()
        .find(|d| d.entry.name == "kvstore")
        .expect("a bump of byteorder touches kvstore");
    assert_eq!((kvstore.depth, kvstore.via.name.as_str()), (3, "heapless"));
    // memchr is linked by the base image; what binds to the image's copy is touched through it.
    let dependents = check_bump(m, "memchr");
    let textkit = dependents
        .iter()
        .find(|d| d.entry.name == "textkit")
        .unwrap();
    assert_eq!((textkit.depth, textkit.via.name.as_str()), (2, "regex"));
    let slots: usize = dependents
        .iter()
        .filter(|d| d.depth == 1)
        .flat_map(|d| &d.cells)
        .map(|c| c.slots.len())
        .sum();
    assert!(slots > 0, "cells bind to the image's memchr");
    // Each prepared dependency upgrade rebuilt exactly the cells the crate graph says a bump of
    // what it moves touches (the build found them by cargo's unit hashes).
    let prepared: Vec<(&ManifestEntry, _)> = manifest
        .cells
        .iter()
        .filter_map(|e| Some((e, e.dependency_upgrade.as_ref()?)))
        .collect();
    assert!(
        !prepared.is_empty(),
        "the real cells have a dependency upgrade"
    );
    for (upgrade, moved) in prepared {
        for (from, _) in &moved.bumped {
            let dependents = check_bump(m, from);
            let touched: BTreeSet<&str> = dependents
                .iter()
                .filter(|d| {
                    matches!(
                        d.entry.kind,
                        CellKind::Kernel | CellKind::Libs | CellKind::Apps
                    )
                })
                .map(|d| d.entry.name.as_str())
                .collect();
            let mut rebuilt: BTreeSet<&str> = moved.rebuilt.iter().map(String::as_str).collect();
            rebuilt.insert(upgrade.name.as_str());
            assert_eq!(touched, rebuilt, "a bump of {from}");
        }
    }
    let text = show(m, &Query::Invert("memchr".into()), &Options::default()).unwrap();
    assert!(text.contains("linked by the base image"), "{text}");
    assert!(text.contains("textkit 0.1.0 (libs) → regex"), "{text}");
}

#[test]
fn two_releases_of_a_crate_are_named_not_guessed() {
    let m = model();
    let manifest = m.manifest.as_ref().unwrap();
    let releases: Vec<&ManifestEntry> = manifest
        .cells
        .iter()
        .filter(|e| e.kind == CellKind::Deps && e.name == "unicode_width")
        .collect();
    assert_eq!(releases.len(), 2, "columns and banner use two releases");
    let err = show(
        m,
        &Query::Invert("unicode_width".into()),
        &Options::default(),
    )
    .unwrap_err();
    for r in &releases {
        let spec = format!("unicode_width@{}", r.version);
        assert!(format!("{err:#}").contains(&spec), "{err:#}");
        let dependents = check_bump(m, &spec);
        let users: BTreeSet<&str> = manifest
            .users_of(r.key())
            .iter()
            .map(|u| u.name.as_str())
            .collect();
        let direct: BTreeSet<&str> = dependents
            .iter()
            .filter(|d| d.depth == 1)
            .map(|d| d.entry.name.as_str())
            .collect();
        assert_eq!(direct, users);
    }
    // A crate with one release in the running system and others only in the manifest (for a
    // prepared upgrade) means the running one, and the view names the others.
    let index = Index::new(m);
    let mut names: Vec<&str> = manifest
        .cells
        .iter()
        .filter(|e| e.kind == CellKind::Deps)
        .map(|e| e.name.as_str())
        .collect();
    names.sort();
    let mut checked = 0;
    for pair in names.windows(2).filter(|w| w[0] == w[1]) {
        let name = pair[0];
        let present: Vec<&ManifestEntry> = manifest
            .cells
            .iter()
            .filter(|e| e.kind == CellKind::Deps && e.name == name)
            .filter(|e| {
                e.crate_info.as_ref().unwrap().in_base_image
                    || m.snapshot
                        .registry
                        .cells()
                        .any(|c| c.sha256 == Some(e.sha256))
            })
            .collect();
        let got = view(&index, &Query::Invert(name.into()), &Options::default());
        match (present.as_slice(), got) {
            ([one], Ok(View::InvertCrate { entry, others, .. })) => {
                assert_eq!(entry.key, one.key(), "`{name}` means the running release");
                assert!(!others.is_empty(), "the view names the other releases");
                checked += 1;
            }
            ([_, _, ..], Err(e)) => assert!(format!("{e:#}").contains("say which"), "{e:#}"),
            (present, got) => panic!("`{name}` ({} present): {:?}", present.len(), got.is_ok()),
        }
    }
    assert!(
        checked > 0,
        "a prepared upgrade moves a crate to a release not loaded"
    );

    // A cell name shared by both releases is ambiguous too, and `name@version` picks one.
    let err = show(m, &Query::Info("unicode_width".into()), &Options::default()).unwrap_err();
    assert!(format!("{err:#}").contains("say which"), "{err:#}");
    let text = show(
        m,
        &Query::Info(format!("unicode_width@{}", releases[1].version)),
        &Options::default(),
    )
    .unwrap();
    assert!(
        text.starts_with(&format!("unicode_width {}", releases[1].version)),
        "{text}"
    );
}

#[test]
fn dependency_cells_show_as_crates_in_ls_info_and_the_crate_list() {
    let m = model();
    let s = &m.snapshot;
    let manifest = m.manifest.as_ref().unwrap();
    let index = Index::new(m);
    let regex = manifest
        .cells
        .iter()
        .find(|e| e.kind == CellKind::Deps && e.name == "regex")
        .expect("textkit uses regex");
    let regex_cell = s
        .registry
        .cells()
        .find(|c| c.sha256 == Some(regex.sha256))
        .expect("regex is loaded");
    assert_eq!(regex_cell.kind, Some(CellKind::Deps));
    // ls: kind and crate.
    let View::Ls { cells } = view(&index, &Query::Ls, &Options::default()).unwrap() else {
        panic!("not ls")
    };
    let row = cells.iter().find(|r| r.cell.id == regex_cell.id.0).unwrap();
    assert_eq!(row.kind, Some(CellKind::Deps));
    assert_eq!(row.crate_info.as_ref(), regex.crate_info.as_ref());
    let text = show(m, &Query::Ls, &Options::default()).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with(&format!("#{} ", regex_cell.id.0)))
        .unwrap();
    assert!(
        line.contains(" dep ") && line.contains(&regex.version),
        "{line}"
    );
    // info of the dependency cell: its build, what is built with it, what binds to it.
    let q = Query::Info("regex".into());
    let View::Info(info) = view(&index, &q, &Options::default()).unwrap() else {
        panic!("not info")
    };
    assert_eq!(info.crate_info.as_ref(), regex.crate_info.as_ref());
    let built_into: Vec<&str> = info.users.iter().map(|u| u.name.as_str()).collect();
    let want: Vec<&str> = manifest
        .users_of(regex.key())
        .iter()
        .map(|u| u.name.as_str())
        .collect();
    assert_eq!(built_into, want);
    let bound: BTreeMap<u32, usize> = info
        .dependents
        .iter()
        .map(|u| (u.cell.id, u.slots))
        .collect();
    let raw: BTreeMap<u32, usize> = uses(s)
        .iter()
        .filter_map(|(d, p)| Some((d.0, p.get(&regex_cell.id)?.len())))
        .collect();
    assert_eq!(bound, raw);
    // info of a cell that uses it: the crate, where it is, and how many slots bind to it.
    let textkit = index.find("textkit", None).unwrap();
    let q = Query::Info("textkit".into());
    let View::Info(info) = view(&index, &q, &Options::default()).unwrap() else {
        panic!("not info")
    };
    let used = info
        .crates
        .iter()
        .find(|c| c.entry.name == "regex")
        .unwrap();
    assert_eq!(
        used.cells.iter().map(|c| c.id).collect::<Vec<_>>(),
        [regex_cell.id.0]
    );
    assert_eq!(used.slots, uses(s)[&textkit.id][&regex_cell.id].len());
    // The crate list has every dependency crate, the ones the base image links too.
    let View::Crates { crates } = view(&index, &Query::Crates, &Options::default()).unwrap() else {
        panic!("not the crate list")
    };
    let deps = manifest
        .cells
        .iter()
        .filter(|e| e.kind == CellKind::Deps)
        .count();
    assert_eq!(crates.len(), deps);
    for c in &crates {
        let e = manifest.dep(&c.info.key).unwrap();
        let loaded = s
            .registry
            .cells()
            .filter(|x| x.sha256 == Some(e.sha256))
            .count();
        assert_eq!(c.cells.len(), loaded, "{}", c.info.key);
        assert_eq!(
            c.users.len(),
            manifest.users_of(e.key()).len(),
            "{}",
            c.info.key
        );
    }
    let text = show(m, &Query::Crates, &Options::default()).unwrap();
    let log = text
        .lines()
        .find(|l| l.starts_with("log "))
        .expect("log is listed");
    assert!(
        log.contains("linked by the base image") && log.contains("klog"),
        "{log}"
    );
}

#[test]
fn unresolved_names_the_missing_symbols_and_the_cell_that_failed() {
    // Without frame_alloc, sched and memfs cannot link.
    let m = dry_link_edited(|m, _| m.cells.retain(|c| c.name != "frame_alloc"));
    let s = &m.snapshot;
    let failed: BTreeSet<&str> = s.unresolved.iter().map(|u| u.name.as_str()).collect();
    assert!(
        failed.contains("sched") && failed.contains("memfs"),
        "{failed:?}"
    );
    let sched = s.unresolved.iter().find(|u| u.name == "sched").unwrap();
    let missing: Vec<String> = sched
        .missing
        .iter()
        .map(|m| crate_metadata::demangle::path(&m.name))
        .collect();
    assert!(
        missing.contains(&"frame_alloc::alloc_frame".to_string()),
        "{missing:?}"
    );
    // The others still linked, and the views work on what did.
    assert!(s.registry.cells().any(|c| c.name == "klog"));
    let text = show(&m, &Query::Unresolved, &Options::default()).unwrap();
    assert!(
        text.contains("sched 0.1.0 [_kernel] would fail to link"),
        "{text}"
    );
    assert!(text.contains("frame_alloc::alloc_frame"), "{text}");

    // A broken frame_alloc object: it fails itself, and its dependents name it.
    let m = dry_link_edited(|m, dir| {
        let e = m.cells.iter().find(|c| c.name == "frame_alloc").unwrap();
        std::fs::write(dir.join(&e.object), b"not an object").unwrap();
    });
    let s = &m.snapshot;
    let fa = s
        .unresolved
        .iter()
        .find(|u| u.name == "frame_alloc")
        .expect("frame_alloc fails");
    assert!(
        fa.missing.is_empty() && fa.message.contains("frame_alloc"),
        "{fa:?}"
    );
    let sched = s.unresolved.iter().find(|u| u.name == "sched").unwrap();
    assert!(sched
        .missing
        .iter()
        .all(|m| m.failed_provider.as_deref() == Some("frame_alloc")));
    let json = show(
        &m,
        &Query::Unresolved,
        &Options {
            format: Format::Json,
            ..Options::default()
        },
    )
    .unwrap();
    assert!(
        json.contains("\"failed_provider\": \"frame_alloc\""),
        "{json}"
    );
}

#[test]
fn unresolved_names_the_dependency_crate_that_is_not_loaded() {
    // A manifest in which `columns` forgot its unicode-width: nothing loads it for columns, and
    // the loader's catalog names the crate.
    let m = dry_link_edited(|m, _| {
        let columns = m.cells.iter_mut().find(|c| c.name == "columns").unwrap();
        columns.crates.retain(|k| !k.starts_with("unicode_width"));
    });
    let built = &report().manifest;
    let width = built
        .get(CellKind::Libs, "columns")
        .and_then(|c| c.crates.iter().find(|k| k.starts_with("unicode_width")))
        .and_then(|k| built.dep(k))
        .map(|e| format!("{} {}", e.name, e.version))
        .expect("columns uses unicode-width");
    let index = Index::new(&m);
    let View::Unresolved { cells } = view(&index, &Query::Unresolved, &Options::default()).unwrap()
    else {
        panic!("not unresolved")
    };
    let columns = cells
        .iter()
        .find(|c| c.name == "columns")
        .expect("columns fails");
    let named: Vec<&str> = columns
        .missing
        .iter()
        .filter_map(|m| m.defined_by.as_deref())
        .collect();
    assert!(
        !named.is_empty() && named.iter().all(|d| *d == width),
        "{named:?}"
    );
    let text = show(&m, &Query::Unresolved, &Options::default()).unwrap();
    assert!(
        text.contains(&format!("exported by `{width}`, which is not loaded")),
        "{text}"
    );
    let json = show(
        &m,
        &Query::Unresolved,
        &Options {
            format: Format::Json,
            ..Options::default()
        },
    )
    .unwrap();
    assert!(
        json.contains(&format!("\"defined_by\": \"{width}\"")),
        "{json}"
    );

    // A broken dependency cell fails once; the cell that needs it fails on its symbols and
    // names it, and is left out with the dependency cells loaded for it.
    let m = dry_link_edited(|m, dir| {
        let e = m
            .cells
            .iter()
            .find(|c| c.kind == CellKind::Deps && c.name == "regex")
            .unwrap();
        std::fs::write(dir.join(&e.object), b"not an object").unwrap();
    });
    let s = &m.snapshot;
    let regex: Vec<_> = s.unresolved.iter().filter(|u| u.name == "regex").collect();
    assert_eq!(regex.len(), 1, "{:?}", s.unresolved);
    let textkit = s
        .unresolved
        .iter()
        .find(|u| u.name == "textkit")
        .expect("textkit fails");
    assert!(textkit
        .missing
        .iter()
        .any(|m| m.failed_provider.as_deref() == Some("regex")));
    for gone in ["textkit", "regex_automata", "regex_syntax", "aho_corasick"] {
        assert!(
            !s.registry.cells().any(|c| c.name == gone),
            "{gone} is left out"
        );
    }
}

#[test]
fn cycles_are_found() {
    assert!(show(model(), &Query::Cycles, &Options::default())
        .unwrap()
        .contains("no cycles"));
    let s = Model::from(generate(&SynthOptions {
        cells: 40,
        cycles: true,
        ..SynthOptions::default()
    }));
    let index = Index::new(&s);
    let View::Cycles { cycles } = view(&index, &Query::Cycles, &Options::default()).unwrap() else {
        panic!("not a cycles view")
    };
    assert!(!cycles.is_empty());
    // Every member of a reported cycle reaches every other member.
    for c in &cycles {
        for a in c {
            let deps = expected_dependents(&s.snapshot, CellId(a.id));
            for b in c.iter().filter(|b| b.id != a.id) {
                assert!(deps.contains_key(&CellId(b.id)), "{} -> {}", b.name, a.name);
            }
        }
    }
}

#[test]
fn addr_finds_cell_section_symbol_and_offset() {
    let s = Model::from(generate(&SynthOptions {
        cells: 20,
        ..SynthOptions::default()
    }));
    let cell = s
        .snapshot
        .registry
        .cells()
        .find(|c| c.name == "cell_007")
        .unwrap();
    let sym = &cell.symbols[3];
    let text = show(&s, &Query::Addr(sym.addr + 5), &Options::default()).unwrap();
    assert!(text.contains("cell_007::func_3+0x5"), "{text}");
    assert!(text.contains("cell_007"), "{text}");
    let text = show(&s, &Query::Addr(1), &Options::default()).unwrap();
    assert!(text.contains("not in any cell"), "{text}");
    // Offline addresses are heap addresses: refused with the reason.
    let err = show(model(), &Query::Addr(0x1000), &Options::default()).unwrap_err();
    assert!(format!("{err:#}").contains("heap addresses"), "{err:#}");
}

#[test]
fn snapshots_round_trip_through_files_and_the_control_socket() {
    let m = model();
    let s = &m.snapshot;
    let json = serde_json::to_string(m).unwrap();
    let back = model::parse(&json).unwrap();
    assert!(back.manifest == m.manifest, "the manifest round-trips");
    let options = Options::default();
    for q in [
        Query::Ls,
        Query::Tree,
        Query::Invert("klog".into()),
        Query::Crates,
    ] {
        assert_eq!(
            show(&back, &q, &options).unwrap(),
            show(m, &q, &options).unwrap()
        );
    }
    // A snapshot without a manifest (what nano_core sends) still reads, and shows the
    // dependency cells as the registry knows them.
    let bare = model::parse(&serde_json::to_string(s).unwrap()).unwrap();
    assert_eq!(bare.manifest, None);
    let text = show(&bare, &Query::Ls, &options).unwrap();
    assert!(text.contains(" dep "), "{text}");
    assert!(show(&bare, &Query::Crates, &options).is_err());

    // A stand-in for nano_core's control channel: one `snapshot` request, one JSON line, `ok`.
    let tmp = TempDir::new("socket");
    let socket = tmp.0.join("nano_core.sock");
    let listener = UnixListener::bind(&socket).unwrap();
    let live = Snapshot::live(s.registry.clone(), s.namespaces.clone());
    let line = serde_json::to_string(&live).unwrap();
    let server = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut request = String::new();
        BufReader::new(&stream).read_line(&mut request).unwrap();
        let mut stream = stream;
        write!(stream, "{line}\nok\n").unwrap();
        request
    });
    let fetched = live::fetch(&socket).unwrap();
    assert_eq!(server.join().unwrap(), "snapshot\n");
    assert_eq!(fetched.source, SnapshotSource::Live);
    assert_eq!(fetched.registry.edge_count(), s.registry.edge_count());
}
