//! The inspection views checked against the edges the loader recorded: `--invert` and `--why`
//! on the real cells (offline snapshot) and on a generated system, what `--unresolved` reports
//! when a cell is missing or broken, `--cycles`, `--addr`, snapshot files, and the live source
//! over a control socket.

mod inspect_support;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixListener;

use build_tools::inspect::dry::DryPlatform;
use build_tools::inspect::model::{self, Index, Snapshot, SnapshotSource};
use build_tools::inspect::synth::{generate, SynthOptions};
use build_tools::inspect::views::View;
use build_tools::inspect::{live, offline, show, view, Format, Options, Query};
use crate_metadata::{CellId, CellKind, Edge, Origin, Registry, SectionId, SlotKind, SymbolId};
use inspect_support::{report, snapshot, TempDir};

/// Dependent -> provider -> mangled symbol names, straight from the registry's edges.
fn uses(s: &Snapshot) -> BTreeMap<CellId, BTreeMap<CellId, Vec<String>>> {
    let mut out: BTreeMap<CellId, BTreeMap<CellId, Vec<String>>> = BTreeMap::new();
    for (_, e) in s.registry.edges() {
        if e.dependent == e.provider {
            continue;
        }
        let name = s
            .registry
            .cell(e.provider)
            .and_then(|c| c.symbol(e.symbol))
            .map(|s| s.name.clone())
            .expect("every edge names a symbol of its provider");
        out.entry(e.dependent)
            .or_default()
            .entry(e.provider)
            .or_default()
            .push(name);
    }
    out
}

/// Every cell that reaches `cell` through edges, with its distance. The base image and the
/// platform are dependents when they hold a slot, but nothing is reached through them.
fn expected_dependents(s: &Snapshot, cell: CellId) -> BTreeMap<CellId, usize> {
    let uses = uses(s);
    let mut dist = BTreeMap::from([(cell, 0)]);
    let mut queue = VecDeque::from([cell]);
    while let Some(c) = queue.pop_front() {
        let object = s
            .registry
            .cell(c)
            .is_some_and(|c| c.origin == Origin::Object);
        if c != cell && !object {
            continue;
        }
        for (d, providers) in &uses {
            if providers.contains_key(&c) && !dist.contains_key(d) {
                dist.insert(*d, dist[&c] + 1);
                queue.push_back(*d);
            }
        }
    }
    dist.remove(&cell);
    dist
}

fn check_invert(s: &Snapshot, cell: CellId) {
    let index = Index::new(s);
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

fn check_why(s: &Snapshot, from: CellId, to: CellId) {
    let index = Index::new(s);
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
    let s = snapshot();
    let cells: Vec<CellId> = s.registry.cells().map(|c| c.id).collect();
    assert!(cells.len() >= 6, "the real cells were linked: {cells:?}");
    for c in &cells {
        check_invert(s, *c);
        for d in &cells {
            if c != d {
                check_why(s, *c, *d);
            }
        }
    }
}

#[test]
fn invert_and_why_match_the_edges_of_a_generated_system() {
    let s = generate(&SynthOptions {
        cells: 60,
        ..SynthOptions::default()
    });
    for i in [0, 1, 7, 30] {
        check_invert(&s, CellId(2 + i));
    }
    // The host holds a handle into cell_005: it is touched by a swap of cell_005, but nothing is
    // reached through the base image.
    let mut s = s;
    let target = CellId(2 + 5);
    s.registry
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
fn the_dry_link_records_what_the_loader_links() {
    let s = snapshot();
    assert_eq!(s.source, SnapshotSource::Offline);
    assert!(s.unresolved.is_empty(), "{:?}", s.unresolved);
    let kernel = s.namespaces.by_name("_kernel").expect("_kernel");
    for entry in &report().manifest.cells {
        if entry.kind == CellKind::Upgrades {
            continue;
        }
        let cell = s
            .registry
            .cells()
            .find(|c| c.name == entry.name && c.origin == Origin::Object)
            .unwrap_or_else(|| panic!("`{}` was linked", entry.name));
        assert_eq!(cell.sha256.as_deref(), Some(entry.sha256.as_str()));
        if entry.kind != CellKind::Apps {
            assert!(kernel.cells.contains(&cell.id), "{} in _kernel", entry.name);
        }
    }
    // sched calls frame_alloc and klog through its GOT.
    let text = show(
        s,
        &Query::Why("sched".into(), "frame_alloc".into()),
        &Options::default(),
    )
    .unwrap();
    assert!(text.contains("frame_alloc::alloc_frame"), "{text}");
}

/// A copy of the built cells in which `edit` changes the manifest and the objects.
fn dry_link_edited(edit: impl FnOnce(&mut crate_metadata::Manifest, &std::path::Path)) -> Snapshot {
    let r = report();
    let tmp = TempDir::new("unresolved");
    let mut manifest = r.manifest.clone();
    for e in &manifest.cells {
        let to = tmp.0.join(&e.object);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(r.object_path(e), &to).unwrap();
    }
    edit(&mut manifest, &tmp.0);
    let nano_core = r.nano_core.clone().expect("nano_core was built");
    offline::dry_link(&manifest, &tmp.0, DryPlatform::new(&nano_core).unwrap()).unwrap()
}

#[test]
fn unresolved_names_the_missing_symbols_and_the_cell_that_failed() {
    // Without frame_alloc, sched and memfs cannot link.
    let s = dry_link_edited(|m, _| m.cells.retain(|c| c.name != "frame_alloc"));
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
    let text = show(&s, &Query::Unresolved, &Options::default()).unwrap();
    assert!(
        text.contains("sched 0.1.0 [_kernel] would fail to link"),
        "{text}"
    );
    assert!(text.contains("frame_alloc::alloc_frame"), "{text}");

    // A broken frame_alloc object: it fails itself, and its dependents name it.
    let s = dry_link_edited(|m, dir| {
        let e = m.cells.iter().find(|c| c.name == "frame_alloc").unwrap();
        std::fs::write(dir.join(&e.object), b"not an object").unwrap();
    });
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
        &s,
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
fn cycles_are_found() {
    assert!(show(snapshot(), &Query::Cycles, &Options::default())
        .unwrap()
        .contains("no cycles"));
    let s = generate(&SynthOptions {
        cells: 40,
        cycles: true,
        ..SynthOptions::default()
    });
    let index = Index::new(&s);
    let View::Cycles { cycles } = view(&index, &Query::Cycles, &Options::default()).unwrap() else {
        panic!("not a cycles view")
    };
    assert!(!cycles.is_empty());
    // Every member of a reported cycle reaches every other member.
    for c in &cycles {
        for a in c {
            let deps = expected_dependents(&s, CellId(a.id));
            for b in c.iter().filter(|b| b.id != a.id) {
                assert!(deps.contains_key(&CellId(b.id)), "{} -> {}", b.name, a.name);
            }
        }
    }
}

#[test]
fn addr_finds_cell_section_symbol_and_offset() {
    let s = generate(&SynthOptions {
        cells: 20,
        ..SynthOptions::default()
    });
    let cell = s.registry.cells().find(|c| c.name == "cell_007").unwrap();
    let sym = &cell.symbols[3];
    let text = show(&s, &Query::Addr(sym.addr + 5), &Options::default()).unwrap();
    assert!(text.contains("cell_007::func_3+0x5"), "{text}");
    assert!(text.contains("cell_007"), "{text}");
    let text = show(&s, &Query::Addr(1), &Options::default()).unwrap();
    assert!(text.contains("not in any cell"), "{text}");
    // Offline addresses are heap addresses: refused with the reason.
    let err = show(snapshot(), &Query::Addr(0x1000), &Options::default()).unwrap_err();
    assert!(format!("{err:#}").contains("heap addresses"), "{err:#}");
}

#[test]
fn snapshots_round_trip_through_files_and_the_control_socket() {
    let s = snapshot();
    let json = serde_json::to_string(s).unwrap();
    let back = model::parse(&json).unwrap();
    let options = Options::default();
    for q in [Query::Ls, Query::Tree, Query::Invert("klog".into())] {
        assert_eq!(
            show(&back, &q, &options).unwrap(),
            show(s, &q, &options).unwrap()
        );
    }

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
