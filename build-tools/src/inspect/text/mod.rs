//! The text format: what people read in a terminal. Addresses are shown only for a live system
//! (an offline snapshot's are heap addresses of the dry link); slots are shown as section plus
//! offset, which is the same offline and live.

use std::fmt::Write as _;

use crate_metadata::Origin;

use super::model::{state_name, Names, SnapshotSource};
use super::views::{EdgeRow, TreeNode, View};

mod crates;
mod info;
mod util;

pub use util::bytes;
use util::{cols, count, dash, indent, kind, label, short_kind, slot, table};

/// How to render.
#[derive(Clone, Copy, Debug)]
pub struct TextOptions {
    /// Symbol names.
    pub names: Names,
    /// Whether addresses mean anything (a live system).
    pub live: bool,
    /// Whether cells should be shown with their namespace (the system has more than one).
    pub namespaces: bool,
}

impl TextOptions {
    /// The options for a snapshot from `source` with `namespace_count` namespaces.
    pub fn new(names: Names, source: SnapshotSource, namespace_count: usize) -> TextOptions {
        TextOptions {
            names,
            live: source == SnapshotSource::Live,
            namespaces: namespace_count > 1,
        }
    }
}

/// Renders `view` as text.
pub fn render(view: &View, o: &TextOptions) -> String {
    let mut out = String::new();
    match view {
        View::Ls { cells } => {
            let mut rows = vec![cols(&[
                "ID",
                "NAME",
                "KIND",
                "NAMESPACE",
                "VERSION",
                "STATE",
                "SIZE",
                "OBJECT",
                "USED BY",
                "USES",
            ])];
            if o.live {
                rows[0].push("ADDRESS".into());
            }
            for r in cells {
                let mut row = vec![
                    format!("#{}", r.cell.id),
                    r.cell.name.clone(),
                    short_kind(r.kind).into(),
                    r.cell.namespace.clone().unwrap_or_else(|| "-".into()),
                    dash(&r.cell.version),
                    state_name(r.cell.state).into(),
                    bytes(r.size),
                    bytes(r.object_size),
                    r.dependents.to_string(),
                    r.dependencies.to_string(),
                ];
                if o.live {
                    row.push(format!("{:#x}", r.base_addr));
                }
                rows.push(row);
            }
            out.push_str(&table(&rows));
            let _ = writeln!(out, "{} cells", cells.len());
        }
        View::Crates { crates: rows } => crates::list_crates(&mut out, rows, o),
        View::InvertCrate {
            entry,
            info,
            exports,
            cells,
            others,
            prepared,
            dependents,
        } => {
            let about = crates::Bumped {
                entry,
                info,
                exports: *exports,
                cells,
                others,
                prepared,
            };
            crates::invert(&mut out, &about, dependents, o)
        }
        View::Info(i) => info::render(&mut out, i, o),
        View::Tree { roots, .. } => {
            for root in roots {
                tree_node(&mut out, root, "", "", o);
            }
            if roots.is_empty() {
                out.push_str("no cells\n");
            }
        }
        View::Invert { cell, dependents } => {
            let slots: usize = dependents.iter().map(|d| d.slots.len()).sum();
            let _ = writeln!(
                out,
                "{}: a swap or removal touches {} cells through {slots} slots",
                label(cell, o),
                dependents.len()
            );
            for d in dependents {
                let pad = "  ".repeat(d.depth);
                let _ = writeln!(
                    out,
                    "{pad}{} → {} ({})",
                    label(&d.cell, o),
                    d.via.name,
                    count(d.slots.len(), "slot")
                );
                let rows: Vec<Vec<String>> = d
                    .slots
                    .iter()
                    .map(|s| vec![slot(s, o), kind(s.kind).into(), o.names.symbol(&s.symbol)])
                    .collect();
                for line in table(&rows).lines() {
                    let _ = writeln!(out, "{pad}    {line}");
                }
            }
        }
        View::Why { from, to, path } => match path.as_slice() {
            [] => {
                let _ = writeln!(out, "`{}` does not depend on `{}`", from.name, to.name);
            }
            hops => {
                if hops.len() > 1 {
                    let chain: Vec<&str> = std::iter::once(from.name.as_str())
                        .chain(hops.iter().map(|h| h.to.name.as_str()))
                        .collect();
                    let _ = writeln!(
                        out,
                        "`{}` does not use `{}` directly; the shortest chain is {}",
                        from.name,
                        to.name,
                        chain.join(" → ")
                    );
                }
                for h in hops {
                    let slots: usize = h.symbols.iter().map(|s| s.slots.len()).sum();
                    let _ = writeln!(
                        out,
                        "{} uses {} through {} ({}):",
                        label(&h.from, o),
                        label(&h.to, o),
                        count(h.symbols.len(), "symbol"),
                        count(slots, "slot")
                    );
                    for s in &h.symbols {
                        let places: Vec<String> = s
                            .slots
                            .iter()
                            .map(|r| format!("{} {}", slot(r, o), kind(r.kind)))
                            .collect();
                        let _ = writeln!(
                            out,
                            "  {}  [{}]",
                            o.names.symbol(&s.symbol),
                            places.join(", ")
                        );
                    }
                }
            }
        },
        View::Symbols {
            cell,
            uses,
            used_by,
        } => {
            let _ = writeln!(
                out,
                "{} uses ({}):",
                label(cell, o),
                count(uses.len(), "slot")
            );
            edge_table(&mut out, uses, false, o);
            let _ = writeln!(
                out,
                "{} is used by ({}):",
                label(cell, o),
                count(used_by.len(), "slot")
            );
            edge_table(&mut out, used_by, true, o);
        }
        View::Unresolved { cells } => {
            if cells.is_empty() {
                out.push_str("every cell links: no undefined symbols\n");
            }
            for c in cells {
                let _ = writeln!(
                    out,
                    "{} {} [{}] would fail to link{}",
                    c.name,
                    c.version,
                    c.namespace,
                    match c.missing.len() {
                        0 => String::new(),
                        n => format!(": {}", count(n, "undefined symbol")),
                    }
                );
                if c.missing.is_empty() {
                    let _ = writeln!(out, "  {}", c.message);
                }
                for m in &c.missing {
                    let sym = &m.symbol;
                    let _ = write!(out, "  {}", o.names.symbol(&sym.name));
                    if let Some(p) = &sym.failed_provider {
                        let _ = write!(out, "  (exported by `{p}`, which fails to link itself)");
                    } else if let Some(ns) = &sym.hidden_in {
                        let _ =
                            write!(out, "  (defined in namespace `{ns}`, which is not visible)");
                    } else if let Some(cell) = &m.defined_by {
                        let _ = write!(
                            out,
                            "  (exported by `{cell}`, which is not loaded where `{}` can see it)",
                            c.namespace
                        );
                    }
                    if let Some(other) = &sym.other_hash {
                        let _ =
                            write!(out, "  (the base image has it under another hash: {other})");
                    }
                    out.push('\n');
                }
            }
        }
        View::Cycles { cycles } => {
            if cycles.is_empty() {
                out.push_str("no cycles among the object cells\n");
            }
            for (i, c) in cycles.iter().enumerate() {
                let names: Vec<&str> = c.iter().map(|c| c.name.as_str()).collect();
                let _ = writeln!(out, "cycle {}: {}", i + 1, names.join(", "));
            }
        }
        View::Addr { addr, hit } => match hit {
            None => {
                let _ = writeln!(out, "{addr:#x}: not in any cell");
            }
            Some(h) => {
                let what = match &h.symbol {
                    Some(s) => format!("{}+{:#x}", o.names.symbol(s), h.symbol_offset),
                    None => format!("{}+{:#x}", o.names.section(&h.section), h.section_offset),
                };
                let _ = writeln!(
                    out,
                    "{addr:#x}: {what}\n  cell     {}\n  section  {} at {:#x} (+{:#x})",
                    label(&h.cell, o),
                    o.names.section(&h.section),
                    h.section_addr,
                    h.section_offset
                );
                if let Some(s) = &h.slot {
                    let _ = writeln!(
                        out,
                        "  slot     {} slot bound to {} in {}",
                        kind(s.kind),
                        o.names.symbol(&s.symbol),
                        s.provider
                    );
                }
            }
        },
    }
    out
}

fn tree_node(out: &mut String, n: &TreeNode, first: &str, rest: &str, o: &TextOptions) {
    let _ = write!(out, "{first}{}", label(&n.cell, o));
    if n.cell.origin == Origin::Object {
        let _ = write!(out, " ({})", bytes(n.size));
    }
    if n.slots > 0 {
        let _ = write!(out, " [{}]", count(n.slots, "slot"));
    } else if !first.is_empty() {
        // Below a cell that is compiled against it but binds to none of its symbols.
        out.push_str(" [no slots]");
    }
    if !n.crates.is_empty() {
        let _ = write!(out, " (links {})", n.crates.join(", "));
    }
    if n.repeated {
        out.push_str(" (*)");
    }
    if !n.rules.is_empty() {
        let _ = write!(out, " {{{}}}", rules_label(&n.rules));
    }
    out.push('\n');
    let total = n.children.len() + n.symbols.len();
    for (i, s) in n.symbols.iter().enumerate() {
        let last = i + 1 == total;
        let _ = writeln!(
            out,
            "{rest}{}{}",
            if last { "└── " } else { "├── " },
            o.names.symbol(s)
        );
    }
    for (i, c) in n.children.iter().enumerate() {
        let last = n.symbols.len() + i + 1 == total;
        let (f, r) = if last {
            ("└── ", "    ")
        } else {
            ("├── ", "│   ")
        };
        tree_node(out, c, &format!("{rest}{f}"), &format!("{rest}{r}"), o);
    }
}

fn edge_table(out: &mut String, rows: &[EdgeRow], incoming: bool, o: &TextOptions) {
    if rows.is_empty() {
        return;
    }
    let peer = if incoming { "DEPENDENT" } else { "PROVIDER" };
    // Edges from an application into the kernel carry the export-policy rule that allowed them.
    let rules = rows.iter().any(|r| r.rule.is_some());
    let mut t = vec![cols(&["SLOT", "KIND", peer, "SYMBOL"])];
    if rules {
        t[0].push("RULE".into());
    }
    for r in rows {
        let who = if incoming { &r.dependent } else { &r.provider };
        let mut row = vec![
            slot(r, o),
            kind(r.kind).into(),
            who.clone(),
            o.names.symbol(&r.symbol),
        ];
        if rules {
            row.push(r.rule.clone().unwrap_or_default());
        }
        t.push(row);
    }
    indent(out, &table(&t));
}

/// `app→kernel: runtime; toolchain `core`` for rules that share their prefix, else them all.
fn rules_label(rules: &[String]) -> String {
    let prefix = rules
        .first()
        .and_then(|r| r.split_once(": "))
        .map(|(p, _)| p);
    let split: Option<Vec<&str>> = prefix.and_then(|p| {
        rules
            .iter()
            .map(|r| r.strip_prefix(p)?.strip_prefix(": "))
            .collect()
    });
    match (prefix, split) {
        (Some(p), Some(rest)) => format!("{p}: {}", rest.join("; ")),
        _ => rules.join("; "),
    }
}
