//! `cargo cell info` as text.

use std::fmt::Write as _;

use super::util::{bytes, cols, count, dash, entry, indent, kind, label, list, table};
use super::TextOptions;
use crate::inspect::crates::source_label;
use crate::inspect::model::state_name;
use crate::inspect::views::InfoView;
use crate_metadata::CellKind;

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
    if let Some(c) = &i.crate_info {
        let _ = writeln!(
            out,
            "  crate     package {} from {}{}",
            c.package,
            source_label(&c.source),
            if c.in_base_image {
                "; the base image links this build too"
            } else {
                ""
            }
        );
        let _ = writeln!(out, "  features  {}", list(&c.features));
    }
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
        "  linked    {} ({} at build), {}, {}",
        count(
            (i.stats.relocations + i.stats.prelinked) as usize,
            "relocation"
        ),
        i.stats.prelinked,
        count(i.stats.got_slots as usize, "GOT slot"),
        count(i.stats.stubs as usize, "call stub")
    );
    if o.live && i.base_addr != 0 {
        let _ = writeln!(out, "  mapped at {:#x}", i.base_addr);
    }
    match (&i.app_interface, i.kind) {
        (Some(a), _) => {
            let _ = writeln!(out, "  application interface  {}", a.items.join(", "));
        }
        (None, Some(CellKind::Kernel | CellKind::Libs | CellKind::Upgrades)) => {
            let _ = writeln!(
                out,
                "  application interface  none (only kernel cells bind to it)"
            );
        }
        _ => {}
    }
    if !i.users.is_empty() {
        let users: Vec<String> = i.users.iter().map(entry).collect();
        let _ = writeln!(out, "  built into {}", users.join(", "));
    }
    let dependents: Vec<String> = i
        .dependents
        .iter()
        .map(|u| format!("{} ({})", label(&u.cell, o), count(u.slots, "slot")))
        .collect();
    let _ = writeln!(out, "  bound by  {}", list(&dependents));
    if !i.crates.is_empty() {
        let _ = writeln!(out, "\ncrates ({}):", i.crates.len());
        let mut rows = vec![cols(&["CRATE", "VERSION", "PROVIDED BY", "SLOTS"])];
        for c in &i.crates {
            let by: Vec<String> = c.cells.iter().map(|c| label(c, o)).collect();
            let by = match (by.is_empty(), c.entry.base_image, c.exports) {
                (false, _, _) => by.join(", "),
                (true, true, _) => "the base image (linked by it)".into(),
                (true, false, 0) => "nothing to load (no symbols)".into(),
                (true, false, _) => "nothing: not loaded".into(),
            };
            rows.push(vec![
                c.entry.name.clone(),
                c.entry.version.clone(),
                by,
                c.slots.to_string(),
            ]);
        }
        indent(out, &table(&rows));
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
        let rule = im
            .rule
            .as_ref()
            .map(|r| format!("  [{r}]"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "    {}  ({}: {}){rule}",
            o.names.symbol(&im.symbol),
            count(im.slots, "slot"),
            kinds.join(", ")
        );
    }
}
