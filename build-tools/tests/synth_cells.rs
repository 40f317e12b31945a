//! `build_tools::synth_cells`: the plan is deterministic and a DAG that only points back, the
//! sources follow from the plan alone, the manifests cargo reads say what the plan says, and a
//! small system builds into cells that load and run.

#[allow(dead_code)]
mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use build_tools::synth_cells::{
    build_workspace, cell_name, plan, sources, write_workspace, Base, SynthOptions, CELLS_DIR,
};
use build_tools::workspace::Workspace;
use common::TempDir;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("build-tools sits in the workspace")
        .to_path_buf()
}

fn base() -> Base {
    Base::of_workspace(&workspace_root()).expect("the workspace has the cell profile")
}

/// The crate names `lib.rs` text refers to as `scell_NNN::`, except its own.
fn referenced_cells(lib_rs: &str, own: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = lib_rs;
    while let Some(at) = rest.find("scell_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        if tail[end..].starts_with("::") && &tail[..end] != own {
            out.insert(tail[..end].to_string());
        }
        rest = &tail[end..];
    }
    out
}

/// The crate names in the `[dependencies]` table of a generated `Cargo.toml`.
fn dependency_names(cargo_toml: &str) -> Vec<String> {
    let (_, deps) = cargo_toml
        .split_once("[dependencies]\n")
        .expect("a [dependencies] table");
    deps.lines()
        .take_while(|l| !l.starts_with('['))
        .filter_map(|l| l.split_once(" = "))
        .map(|(name, _)| name.trim().to_string())
        .collect()
}

#[test]
fn the_same_seed_gives_identical_sources_and_another_seed_other_ones() {
    let base = base();
    let options = SynthOptions::new(40, 7);
    let a = sources(&plan(&options), &base);
    let b = sources(&plan(&options), &base);
    assert_eq!(a, b);
    // 40 cells, two files each, the workspace manifest and the toolchain file.
    assert_eq!(a.len(), 2 * 40 + 2);

    let other = sources(&plan(&SynthOptions::new(40, 8)), &base);
    assert_eq!(
        a.keys().collect::<Vec<_>>(),
        other.keys().collect::<Vec<_>>()
    );
    let differing = a
        .iter()
        .filter(|(path, text)| other[*path] != **text)
        .count();
    // Every lib.rs has seed-dependent constants; the DAG differs too.
    assert!(differing >= 40, "only {differing} files differ");
    assert_ne!(plan(&options).cells, plan(&SynthOptions::new(40, 8)).cells);
}

#[test]
fn written_files_are_the_sources_byte_for_byte_and_a_smaller_plan_prunes() {
    let base = base();
    let dir = TempDir::new("synth-write");
    let big = plan(&SynthOptions::new(12, 3));
    write_workspace(&big, &base, dir.path()).unwrap();
    for (rel, text) in sources(&big, &base) {
        let on_disk = std::fs::read(dir.path().join(&rel)).unwrap();
        assert_eq!(on_disk, text.as_bytes(), "{}", rel.display());
    }
    let small = plan(&SynthOptions::new(5, 3));
    write_workspace(&small, &base, dir.path()).unwrap();
    let mut left: Vec<String> = std::fs::read_dir(dir.path().join(CELLS_DIR))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, (0..5).map(cell_name).collect::<Vec<_>>());
}

#[test]
fn the_dag_only_points_to_earlier_cells_and_respects_the_limit() {
    for seed in 0..20 {
        let options = SynthOptions {
            cells: 100,
            seed,
            max_deps: 5,
        };
        let p = plan(&options);
        assert_eq!(p.cells.len(), 100);
        let mut max_seen = 0;
        for (i, cell) in p.cells.iter().enumerate() {
            assert_eq!(cell.name, cell_name(i));
            assert!(
                cell.deps.len() <= 5.min(i),
                "{}: {:?}",
                cell.name,
                cell.deps
            );
            // Strictly ascending (so distinct) and all below `i`: index order is topological,
            // which rules out cycles.
            assert!(cell.deps.windows(2).all(|w| w[0] < w[1]), "{:?}", cell.deps);
            assert!(
                cell.deps.iter().all(|&d| d < i),
                "{}: {:?}",
                cell.name,
                cell.deps
            );
            max_seen = max_seen.max(cell.deps.len());
        }
        assert_eq!(max_seen, 5, "seed {seed}: the limit is reached somewhere");
        assert!(p.cells[0].deps.is_empty());
    }
}

#[test]
fn manifests_and_code_follow_the_dag() {
    let base = base();
    let p = plan(&SynthOptions::new(60, 11));
    let files = sources(&p, &base);
    assert!(p.crate_edges() > 60, "a DAG with some edges");
    for cell in &p.cells {
        let expected: Vec<String> = cell.deps.iter().map(|&d| cell_name(d)).collect();
        let dir = Path::new(CELLS_DIR).join(&cell.name);
        let toml = &files[&dir.join("Cargo.toml")];
        assert_eq!(dependency_names(toml), expected, "{}", cell.name);
        let lib = &files[&dir.join("src/lib.rs")];
        assert_eq!(
            referenced_cells(lib, &cell.name),
            expected.iter().cloned().collect::<BTreeSet<_>>(),
            "{}",
            cell.name
        );
        assert!(lib.starts_with(&format!("//! `{}`", cell.name)));
        assert!(lib.contains("#![no_std]"));
    }
    // The profile of the base image's workspace is in the generated workspace's manifest.
    assert!(files[Path::new("Cargo.toml")].contains(&base.profile));
}

#[test]
fn cargo_metadata_of_the_written_workspace_matches_the_dag() {
    let dir = TempDir::new("synth-metadata");
    let p = plan(&SynthOptions::new(25, 5));
    write_workspace(&p, &base(), dir.path()).unwrap();
    let ws = Workspace::load(dir.path(), Some(&dir.path().join("target"))).unwrap();
    assert_eq!(ws.cells.len(), 25);
    for cell in &p.cells {
        let package = ws.cells.iter().find(|c| c.name == cell.name).unwrap();
        let expected: Vec<String> = cell.deps.iter().map(|&d| cell_name(d)).collect();
        assert_eq!(package.depends_on, expected, "{}", cell.name);
    }
}

#[test]
fn a_small_system_builds_in_dependency_order_with_one_object_per_cell() {
    let dir = TempDir::new("synth-build");
    // Seed 2 gives six cells with dependencies between them (checked below).
    let p = plan(&SynthOptions::new(6, 2));
    assert!(p.crate_edges() >= 3, "{:?}", p.cells);
    write_workspace(&p, &base(), dir.path()).unwrap();
    let built = build_workspace(dir.path(), true).unwrap();
    let names: Vec<&str> = built.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, (0..6).map(cell_name).collect::<Vec<_>>());
    let mut seen = BTreeSet::new();
    for (cell, planned) in built.iter().zip(&p.cells) {
        let expected: Vec<String> = planned.deps.iter().map(|&d| cell_name(d)).collect();
        assert_eq!(cell.depends_on, expected);
        assert!(cell.depends_on.iter().all(|d| seen.contains(d)));
        seen.insert(cell.name.clone());
        // A relocatable object that exports the cell's interface.
        let exports = build_tools::objects::exported_symbols(&cell.object).unwrap();
        for f in [
            "calls",
            "name",
            "bump",
            "mix",
            "make_op",
            "apply_dyn",
            "describe",
            "run",
        ] {
            let path = format!("{}::{f}", cell.name);
            assert!(
                exports
                    .iter()
                    .any(|e| crate_metadata::demangle::path(e) == path),
                "{path} not exported: {exports:?}"
            );
        }
    }
}

#[test]
fn a_small_system_loads_into_one_namespace_and_its_cells_call_each_other() {
    use loader::hosted::Hosted;
    use loader::{CellSpec, System};

    let dir = TempDir::new("synth-load");
    let p = plan(&SynthOptions::new(6, 2));
    write_workspace(&p, &base(), dir.path()).unwrap();
    let built = build_workspace(dir.path(), true).unwrap();

    let mut system = System::new(Hosted::new().expect("hosted platform"), "build-tools-test");
    let ns = system.create_namespace("synth", None).unwrap();
    for cell in &built {
        system
            .load(ns, CellSpec::named(&cell.name), &cell.object)
            .unwrap_or_else(|e| panic!("{} does not load: {e}", cell.name));
    }
    // Cross-cell edges, one or more per planned crate dependency.
    for (i, cell) in p.cells.iter().enumerate() {
        let id = system.cell_in(ns, &cell.name).unwrap();
        let mut providers: Vec<String> = system
            .registry()
            .cell(id)
            .unwrap()
            .uses
            .iter()
            .filter_map(|e| system.registry().edge(*e))
            .filter_map(|e| system.registry().cell(e.provider))
            .map(|c| c.name.clone())
            .filter(|n| n.starts_with("scell_"))
            .collect();
        providers.sort();
        providers.dedup();
        let expected: Vec<String> = cell.deps.iter().map(|&d| cell_name(d)).collect();
        assert_eq!(providers, expected, "cell {i}");
    }

    let last = p.cells.iter().rposition(|c| !c.deps.is_empty()).unwrap();
    let cell = &p.cells[last];
    // SAFETY: the generated interface has exactly these signatures.
    let (describe, run, calls) = unsafe {
        (
            system
                .handle::<fn() -> String>(ns, &format!("{}::describe", cell.name))
                .unwrap(),
            system
                .handle::<fn(u64) -> u64>(ns, &format!("{}::run", cell.name))
                .unwrap(),
            system
                .handle::<fn() -> u64>(ns, &format!("{}::calls", cell.name))
                .unwrap(),
        )
    };
    // Heap strings made by the dependencies, joined here.
    let mut expected = format!("{}:", cell.name);
    for &d in &cell.deps {
        expected.push(' ');
        expected.push_str(&cell_name(d));
    }
    assert_eq!((describe.get())(), expected);
    // `run` goes through every dependency's interface and trait objects; it is deterministic and
    // counts its calls in the cell's `.bss`.
    let before = (calls.get())();
    let first = (run.get())(12345);
    assert_eq!((run.get())(12345), first);
    assert_ne!((run.get())(54321), first);
    assert!((calls.get())() > before + 3);
    drop((describe, run, calls));
    assert_eq!(system.remove_namespace(ns), Ok(6));
}
