//! What the views should show, computed by the tests themselves from the registry's raw edges
//! and the manifest, and the checks of the views against it.

use std::collections::{BTreeMap, VecDeque};

use build_tools::inspect::model::{Index, Model, Snapshot};
use build_tools::inspect::views::{CrateDependent, View};
use build_tools::inspect::{view, Options, Query};
use crate_metadata::{CellId, CellKind, Manifest, ManifestEntry, Origin, Registry, Sha256};

/// Dependent -> provider -> mangled symbol names, straight from the registry's edges.
pub fn uses(s: &Snapshot) -> BTreeMap<CellId, BTreeMap<CellId, Vec<String>>> {
    let mut out: BTreeMap<CellId, BTreeMap<CellId, Vec<String>>> = BTreeMap::new();
    for (_, e) in s.registry.edges() {
        if e.dependent == e.provider {
            continue;
        }
        let name = s
            .registry
            .cell(e.provider)
            .and_then(|c| c.symbol(e.symbol))
            .map(|s| s.name.to_string())
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
pub fn expected_dependents(s: &Snapshot, cell: CellId) -> BTreeMap<CellId, usize> {
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

/// The entries compiled against `target`, transitively, with their distance from it: this
/// test's own walk of the manifest (dependency crates by key, cells by `depends_on`; a rebuilt
/// cell by its `rebuilt_for`).
pub fn compiled_against(manifest: &Manifest, target: &ManifestEntry) -> BTreeMap<String, usize> {
    let id = |e: &ManifestEntry| format!("{} {} {}", e.kind.dir(), e.name, e.version);
    // A cell rebuilt against another cell's dependency upgrade was compiled against that upgrade.
    let uses = |user: &ManifestEntry, e: &ManifestEntry| {
        user.crates.iter().any(|k| k == e.key())
            || (user.depends_on.contains(&e.name)
                && match user.rebuilt_for.as_deref() {
                    Some(owner) if owner == e.name => {
                        e.kind == CellKind::Upgrades && e.rebuilt_for.is_none()
                    }
                    _ => matches!(e.kind, CellKind::Kernel | CellKind::Libs),
                })
    };
    let mut dist = BTreeMap::from([(id(target), 0)]);
    let mut queue = VecDeque::from([target]);
    while let Some(e) = queue.pop_front() {
        for user in manifest.cells.iter().filter(|u| uses(u, e)) {
            if !dist.contains_key(&id(user)) {
                dist.insert(id(user), dist[&id(e)] + 1);
                queue.push_back(user);
            }
        }
    }
    dist.remove(&id(target));
    dist
}

/// Checks `--invert <spec>` of a dependency crate against the manifest and the registry's edges.
pub fn check_bump(m: &Model, spec: &str) -> Vec<CrateDependent> {
    let manifest = m.manifest.as_ref().unwrap();
    let index = Index::new(m);
    let q = Query::Invert(spec.into());
    let View::InvertCrate {
        entry, dependents, ..
    } = view(&index, &q, &Options::default()).unwrap()
    else {
        panic!("`--invert {spec}` is not the crate view")
    };
    let target = manifest.dep(&entry.key).expect("the crate's entry");
    let got: BTreeMap<String, usize> = dependents
        .iter()
        .map(|d| {
            let e = &d.entry;
            (
                format!("{} {} {}", e.kind.dir(), e.name, e.version),
                d.depth,
            )
        })
        .collect();
    assert_eq!(
        got,
        compiled_against(manifest, target),
        "what a bump of {spec} touches"
    );
    let uses = uses(&m.snapshot);
    let by_sha = |sha: &Sha256| -> Vec<CellId> {
        m.snapshot
            .registry
            .cells()
            .filter(|c| c.sha256.as_ref() == Some(sha))
            .map(|c| c.id)
            .collect()
    };
    for d in &dependents {
        let via = manifest
            .cells
            .iter()
            .find(|e| e.key() == d.via.key && e.kind == d.via.kind)
            .expect("via is an entry");
        let mine = manifest
            .cells
            .iter()
            .find(|e| e.key() == d.entry.key && e.kind == d.entry.kind)
            .expect("an entry");
        assert_eq!(
            d.cells.len(),
            by_sha(&mine.sha256).len(),
            "{} is loaded",
            mine.name
        );
        for t in &d.cells {
            let from = uses.get(&CellId(t.cell.id));
            let mut want: Vec<&String> = by_sha(&via.sha256)
                .iter()
                .filter_map(|p| from.and_then(|f| f.get(p)))
                .flatten()
                .collect();
            if via.kind == CellKind::Deps {
                let image = from
                    .and_then(|f| f.get(&Registry::BASE))
                    .into_iter()
                    .flatten();
                want.extend(image.filter(|s| via.exports.contains(s)));
            }
            let mut have: Vec<&String> = t.slots.iter().map(|r| &r.symbol).collect();
            want.sort();
            have.sort();
            assert_eq!(have, want, "slots of {} bound to {}", t.cell.name, via.name);
        }
    }
    dependents
}
