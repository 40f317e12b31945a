//! The dependency-crate views as text: `ls --crates` and `deps --invert <crate>`.

use std::fmt::Write as _;

use crate_metadata::CrateInfo;

use super::util::{cols, count, entry, kind, label, list, slot, table};
use super::TextOptions;
use crate::inspect::crates::source_label;
use crate::inspect::views::{CellRef, CrateDependent, CrateRow, EntryRef, PreparedBump};

/// Where a crate is: the namespaces it is loaded in, the base image, or nowhere.
fn whereabouts(cells: &[CellRef], base_image: bool, exports: usize) -> String {
    let mut namespaces: Vec<&str> = cells
        .iter()
        .filter_map(|c| c.namespace.as_deref())
        .collect();
    namespaces.dedup();
    match (namespaces.as_slice(), base_image, exports) {
        ([], true, _) => "linked by the base image".into(),
        // Every image provides all of nothing, so nothing loads it.
        ([], false, 0) => "nothing to load (no symbols)".into(),
        ([], false, _) => "not loaded".into(),
        (ns, _, _) => format!("loaded in {}", ns.join(", ")),
    }
}

/// At most two features, then how many more.
fn features(all: &[String]) -> String {
    match all {
        [] => "-".into(),
        [a] => a.clone(),
        [a, b] => format!("{a}, {b}"),
        [a, b, rest @ ..] => format!("{a}, {b} +{}", rest.len()),
    }
}

/// Names, each once, in order.
fn names<'a>(items: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for n in items {
        if !out.iter().any(|o| o == n) {
            out.push(n.to_string());
        }
    }
    out
}

/// `ls --crates`.
pub(super) fn list_crates(out: &mut String, rows: &[CrateRow], _o: &TextOptions) {
    let mut t = vec![cols(&[
        "CRATE", "VERSION", "SOURCE", "FEATURES", "WHERE", "USED BY", "SLOTS",
    ])];
    for r in rows {
        let slots: usize = r.bound_by.iter().map(|u| u.slots).sum();
        t.push(vec![
            r.name.clone(),
            r.version.clone(),
            source_label(&r.info.source),
            features(&r.info.features),
            whereabouts(&r.cells, r.info.in_base_image, r.exports),
            list(&names(r.users.iter().map(|u| u.name.as_str()))),
            slots.to_string(),
        ]);
    }
    out.push_str(&table(&t));
    let loaded = rows.iter().filter(|r| !r.cells.is_empty()).count();
    let image = rows
        .iter()
        .filter(|r| r.cells.is_empty() && r.info.in_base_image)
        .count();
    let empty = rows
        .iter()
        .filter(|r| r.cells.is_empty() && !r.info.in_base_image && r.exports == 0)
        .count();
    let _ = writeln!(
        out,
        "{}: {loaded} loaded, {image} linked by the base image, {empty} with nothing to load, {} \
         not loaded",
        count(rows.len(), "dependency crate"),
        rows.len() - loaded - image - empty
    );
}

/// The crate `deps --invert <crate>` is about.
pub(super) struct Bumped<'v> {
    pub entry: &'v EntryRef,
    pub info: &'v CrateInfo,
    pub exports: usize,
    pub cells: &'v [CellRef],
    pub others: &'v [EntryRef],
    pub prepared: &'v [PreparedBump],
}

/// `deps --invert <crate>`.
pub(super) fn invert(
    out: &mut String,
    about: &Bumped<'_>,
    dependents: &[CrateDependent],
    o: &TextOptions,
) {
    let Bumped {
        entry: e,
        info,
        exports,
        cells,
        others,
        prepared,
    } = *about;
    let touched: usize = dependents.iter().map(|d| d.cells.len()).sum();
    let slots: usize = dependents
        .iter()
        .flat_map(|d| &d.cells)
        .map(|c| c.slots.len())
        .sum();
    let _ = writeln!(
        out,
        "{} {} (dep from {}, {}): a bump touches {} compiled against it ({}, {})",
        e.name,
        e.version,
        source_label(&info.source),
        whereabouts(cells, info.in_base_image, exports),
        count(dependents.len(), "crate"),
        count(touched, "loaded cell"),
        count(slots, "slot")
    );
    if info.in_base_image {
        let _ = writeln!(
            out,
            "  the base image links it: after a bump the cells load their own copy until \
             nano_core is rebuilt"
        );
    }
    for p in prepared {
        let _ = writeln!(
            out,
            "  a prepared upgrade moves it: {} takes {}, rebuilding {}",
            entry(&p.upgrade),
            p.to,
            list(&p.rebuilt)
        );
    }
    if !others.is_empty() {
        let specs: Vec<String> = others
            .iter()
            .map(|o| format!("{}@{}", o.name, o.version))
            .collect();
        let _ = writeln!(
            out,
            "  other releases in the manifest: {}",
            specs.join(", ")
        );
    }
    for d in dependents {
        let pad = "  ".repeat(d.depth);
        let mut line = format!(
            "{pad}{} → {} {}",
            entry(&d.entry),
            d.via.name,
            d.via.version
        );
        if d.entry.base_image {
            line.push_str(" (the base image links it too)");
        }
        if d.cells.is_empty() {
            line.push_str(": not loaded");
        }
        let _ = writeln!(out, "{line}");
        for c in &d.cells {
            let _ = writeln!(
                out,
                "{pad}    {} ({})",
                label(&c.cell, o),
                count(c.slots.len(), "slot")
            );
            let rows: Vec<Vec<String>> = c
                .slots
                .iter()
                .map(|s| vec![slot(s, o), kind(s.kind).into(), o.names.symbol(&s.symbol)])
                .collect();
            for line in table(&rows).lines() {
                let _ = writeln!(out, "{pad}        {line}");
            }
        }
    }
}
