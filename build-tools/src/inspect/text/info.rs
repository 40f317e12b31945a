//! `cargo cell info` as text.

use std::fmt::Write as _;

use super::util::{bytes, cols, count, dash, indent, kind, table};
use super::TextOptions;
use crate::inspect::model::state_name;
use crate::inspect::views::InfoView;

/// Renders the `info` view.
pub(super) fn render(out: &mut String, i: &InfoView, o: &TextOptions) {
    let kind_dir = i.kind.map(|k| k.dir()).unwrap_or("-");
    let _ = writeln!(
        out,
        "{} {} (cell #{}, {kind_dir}, namespace {}, {})",
        i.cell.name,
        dash(&i.cell.version),
        i.cell.id,
        i.cell.namespace.as_deref().unwrap_or("-"),
        state_name(i.cell.state)
    );
    if let Some(sha) = &i.sha256 {
        let _ = writeln!(out, "  sha256    {sha}");
    }
    let _ = writeln!(
        out,
        "  object    {}; sections {}; mapped {}",
        bytes(i.object_size),
        bytes(i.size),
        bytes(i.stats.mapped_bytes)
    );
    let _ = writeln!(
        out,
        "  linked    {}, {}, {}",
        count(i.stats.relocations as usize, "relocation"),
        count(i.stats.got_slots as usize, "GOT slot"),
        count(i.stats.stubs as usize, "call stub")
    );
    if o.live && i.base_addr != 0 {
        let _ = writeln!(out, "  mapped at {:#x}", i.base_addr);
    }
    let _ = writeln!(out, "\nsections ({}):", i.sections.len());
    let mut rows = vec![cols(&["KIND", "SIZE", "ALIGN", "NAME"])];
    if o.live {
        rows[0].insert(3, "ADDRESS".into());
    }
    for s in &i.sections {
        let mut row = vec![
            format!("{:?}", s.kind).to_lowercase(),
            s.size.to_string(),
            s.align.to_string(),
            o.names.section(&s.name),
        ];
        if o.live {
            row.insert(3, format!("{:#x}", s.addr));
        }
        rows.push(row);
    }
    indent(out, &table(&rows));
    let used = i.exports.iter().filter(|e| !e.users.is_empty()).count();
    let _ = writeln!(
        out,
        "\nexports ({}, {used} used by other cells):",
        i.exports.len()
    );
    let mut rows = vec![cols(&["SYMBOL", "KIND", "SIZE", "USED BY"])];
    for e in &i.exports {
        let users: Vec<String> = e
            .users
            .iter()
            .map(|u| format!("{} ({})", u.cell.name, count(u.slots, "slot")))
            .collect();
        rows.push(vec![
            o.names.symbol(&e.symbol),
            format!("{:?}", e.kind).to_lowercase(),
            e.size.to_string(),
            users.join(", "),
        ]);
    }
    indent(out, &table(&rows));
    let _ = writeln!(out, "\nimports ({}):", i.imports.len());
    let mut provider = None;
    for im in &i.imports {
        if provider != Some(im.provider.id) {
            provider = Some(im.provider.id);
            let _ = writeln!(out, "  from {}:", im.provider.name);
        }
        let kinds: Vec<&str> = im.kinds.iter().map(|k| kind(*k)).collect();
        let _ = writeln!(
            out,
            "    {}  ({}: {})",
            o.names.symbol(&im.symbol),
            count(im.slots, "slot"),
            kinds.join(", ")
        );
    }
}
