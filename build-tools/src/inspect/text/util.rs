//! Small pieces of the text format: tables, counts, sizes, cell and slot labels.

use std::fmt::Write as _;

use crate_metadata::{CellKind, SlotKind};

use super::TextOptions;
use crate::inspect::views::{CellRef, EdgeRow, EntryRef};

/// A slot as people read it: section plus offset (and, live, the address).
pub(super) fn slot(r: &EdgeRow, o: &TextOptions) -> String {
    if r.kind == SlotKind::Handle {
        // The host's handle slots live outside any cell: only their address means something.
        return format!("host handle @{:#x}", r.slot);
    }
    let mut s = format!("{}+{:#x}", o.names.section(&r.section), r.offset);
    if o.live {
        let _ = write!(s, " @{:#x}", r.slot);
    }
    s
}

/// A cell's name, with its version and (when there are several namespaces) its namespace.
pub(super) fn label(c: &CellRef, o: &TextOptions) -> String {
    let mut s = c.name.clone();
    if !c.version.is_empty() {
        let _ = write!(s, " v{}", c.version);
    }
    if c.kind == Some(CellKind::Deps) {
        s.push_str(" (dep)");
    }
    if let (true, Some(ns)) = (o.namespaces, &c.namespace) {
        let _ = write!(s, " [{ns}]");
    }
    if c.state != crate_metadata::CellState::Live {
        s.push_str(" (retired)");
    }
    s
}

pub(super) fn kind(k: SlotKind) -> &'static str {
    match k {
        SlotKind::Got => "got",
        SlotKind::Data => "data",
        SlotKind::TlsPair => "tls",
        SlotKind::Handle => "handle",
        SlotKind::Direct => "direct",
    }
}

pub(super) fn cols(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

pub(super) fn dash(s: &str) -> String {
    if s.is_empty() {
        "-".into()
    } else {
        s.into()
    }
}

pub(super) fn count(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// A byte count as people read it.
pub fn bytes(n: u64) -> String {
    match n {
        0..1024 => format!("{n} B"),
        1024..1_048_576 => format!("{:.1} KiB", n as f64 / 1024.0),
        _ => format!("{:.1} MiB", n as f64 / 1_048_576.0),
    }
}

pub(super) fn indent(out: &mut String, text: &str) {
    for line in text.lines() {
        let _ = writeln!(out, "  {line}");
    }
}

/// Left-aligned columns, two spaces apart, no trailing spaces.
pub(super) fn table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|c| c.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (i, c) in r.iter().enumerate() {
            if i + 1 == r.len() {
                line.push_str(c);
            } else {
                let _ = write!(line, "{c:<w$}  ", w = widths[i]);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// A manifest entry: `regex 1.13.2 (dep)`, `textkit 0.1.0 (libs)`.
pub(super) fn entry(e: &EntryRef) -> String {
    format!("{} {} ({})", e.name, e.version, short_kind(Some(e.kind)))
}

/// A cell kind as the tables show it: `kernel`, `libs`, `apps`, `upgrades`, `dep`; `-`.
pub(super) fn short_kind(k: Option<CellKind>) -> &'static str {
    match k {
        Some(CellKind::Deps) => "dep",
        Some(k) => k.dir(),
        None => "-",
    }
}

/// A list, or `-` when empty.
pub(super) fn list(items: &[String]) -> String {
    if items.is_empty() {
        "-".into()
    } else {
        items.join(", ")
    }
}
