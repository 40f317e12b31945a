//! The DOT format, for Graphviz (`cargo cell deps --format dot | dot -Tsvg > deps.svg`).
//!
//! Every view is drawn as cells (boxes, green for dependency crates; the base image and the
//! platform as ellipses, cells that fail to link dashed red), one cluster per namespace when
//! there are several, and uses between them, labelled with the number of slots (and, for
//! `--why`, the symbols); dashed where a cell is compiled against a crate but binds to nothing
//! in it. `--symbols <cell>` is drawn one level down: the cell's sections on one
//! side, each provider's symbols clustered by provider on the other, one arrow per slot.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::graph::Graph;
use super::model::Names;
use super::text::bytes;
use super::views::{EdgeRow, View};

/// Renders `graph` (the picture of `view`) as a DOT digraph.
pub fn render(graph: &Graph, view: &View, names: Names) -> String {
    if let View::Symbols {
        cell,
        uses,
        used_by,
    } = view
    {
        return symbols(&cell.name, uses, used_by, names);
    }
    let why = matches!(view, View::Why { .. });
    let mut out = String::new();
    header(&mut out, &format!("{} ({})", graph.title, graph.source));
    for n in &graph.nodes {
        let focus = graph.focus.contains(&n.id);
        let (label, attrs) = match n.kind {
            "object" => {
                let mut label = n.name.clone();
                if !n.version.is_empty() {
                    let _ = write!(label, "\\nv{}", n.version);
                }
                let _ = write!(label, " · {}", bytes(n.size));
                if n.dep {
                    label.push_str("\\ndependency crate");
                }
                let fill = match (focus, n.dep) {
                    (true, _) => "#ffd966",
                    (false, true) => "#e2f0d9",
                    (false, false) => "#dde8f6",
                };
                let style = if n.retired {
                    "rounded,filled,dashed"
                } else {
                    "rounded,filled"
                };
                (label, format!("fillcolor=\"{fill}\", style=\"{style}\""))
            }
            "unresolved" => (
                format!("{}\\nfails to link", n.name),
                "color=\"#c00000\", fontcolor=\"#c00000\", style=\"rounded,dashed\"".to_string(),
            ),
            _ => (
                n.name.clone(),
                "shape=ellipse, fillcolor=\"#eeeeee\"".to_string(),
            ),
        };
        let _ = writeln!(out, "  n{} [label=\"{}\", {attrs}];", n.id, escape(&label));
    }
    // Cells of one namespace are drawn together when there are several namespaces.
    let mut by_namespace: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
    for n in graph.nodes.iter().filter(|n| !n.namespace.is_empty()) {
        by_namespace.entry(&n.namespace).or_default().push(n.id);
    }
    if by_namespace.len() > 1 {
        for (i, (ns, ids)) in by_namespace.iter().enumerate() {
            let ids: Vec<String> = ids.iter().map(|id| format!("n{id}")).collect();
            let _ = writeln!(
                out,
                "  subgraph cluster_ns{i} {{ label=\"{}\"; style=dashed; color=\"#999999\"; {}; }}",
                escape(ns),
                ids.join("; ")
            );
        }
    }
    for e in &graph.edges {
        let mut label = match e.slots {
            0 => String::new(),
            1 => "1 slot".to_string(),
            n => format!("{n} slots"),
        };
        if why || e.slots == 0 {
            for s in &e.symbols {
                if !label.is_empty() {
                    label.push_str("\\n");
                }
                label.push_str(&escape(s));
            }
            if e.more > 0 {
                let _ = write!(label, "\\n+{} more", e.more);
            }
        }
        if e.slots == 0 && e.symbols.is_empty() {
            // Compiled against it, bound to nothing in it.
            let _ = writeln!(
                out,
                "  n{} -> n{} [label=\"no slots\", style=dashed];",
                e.from, e.to
            );
            continue;
        }
        let _ = writeln!(out, "  n{} -> n{} [label=\"{label}\"];", e.from, e.to);
    }
    out.push_str("}\n");
    out
}

fn header(out: &mut String, title: &str) {
    let _ = writeln!(out, "digraph cells {{");
    let _ = writeln!(
        out,
        "  graph [rankdir=LR, label=\"{}\", labelloc=t, fontname=\"Helvetica\"];",
        escape(title)
    );
    out.push_str(
        "  node [shape=box, style=\"rounded,filled\", fillcolor=\"#dde8f6\", fontname=\"Helvetica\"];\n",
    );
    out.push_str("  edge [fontname=\"Helvetica\", fontsize=10, color=\"#555555\"];\n");
}

/// Section and symbol level: `cell`'s sections -> providers' symbols, and dependents' sections
/// -> `cell`'s symbols.
fn symbols(cell: &str, uses: &[EdgeRow], used_by: &[EdgeRow], names: Names) -> String {
    let mut out = String::new();
    header(&mut out, &format!("{cell}: slots and symbols"));
    // Cluster per cell: cell -> (node key -> label).
    let mut clusters: BTreeMap<&str, BTreeMap<String, String>> = BTreeMap::new();
    let mut arrows: Vec<(String, String, String)> = Vec::new();
    for r in uses.iter().chain(used_by) {
        let from = format!("s|{}|{}", r.dependent, r.section);
        let to = format!("y|{}|{}", r.provider, r.symbol);
        clusters
            .entry(&r.dependent)
            .or_default()
            .insert(from.clone(), names.section(&r.section));
        clusters
            .entry(&r.provider)
            .or_default()
            .insert(to.clone(), names.symbol(&r.symbol));
        arrows.push((
            from,
            to,
            format!("+{:#x} {:?}", r.offset, r.kind).to_lowercase(),
        ));
    }
    for (i, (name, nodes)) in clusters.iter().enumerate() {
        let _ = writeln!(out, "  subgraph cluster_{i} {{");
        let _ = writeln!(out, "    label=\"{}\";", escape(name));
        for (key, label) in nodes {
            let _ = writeln!(
                out,
                "    \"{}\" [label=\"{}\"];",
                escape(key),
                escape(label)
            );
        }
        out.push_str("  }\n");
    }
    for (from, to, label) in arrows {
        let _ = writeln!(
            out,
            "  \"{}\" -> \"{}\" [label=\"{}\"];",
            escape(&from),
            escape(&to),
            escape(&label)
        );
    }
    out.push_str("}\n");
    out
}

/// Escapes a DOT string (its quotes and backslashes; `\n` the caller writes stays a line break).
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' if chars.peek() == Some(&'n') => out.push('\\'),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}
