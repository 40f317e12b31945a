//! `swap <cell> [<object>] [--fresh]`: a live cell for a new version, and what the swap changed.

use std::path::PathBuf;

use loader::{StaticOutcome, SwapOptions, SwapReport};

use super::load::Load;
use super::protocol::Response;
use super::views::short_sha;
use crate::kernel::Kernel;
use crate::report::bytes;

/// The arguments of `swap`.
#[derive(Clone, Debug, PartialEq, Eq)]
struct SwapArgs {
    cell: String,
    object: Option<PathBuf>,
    fresh: bool,
}

/// `<cell> [<object>] [--fresh]`; the object is the rest of the line, so it may hold spaces.
fn parse_swap(rest: &str) -> Result<SwapArgs, String> {
    let usage = "usage: swap <cell> [<object>] [--fresh]";
    let mut rest = rest.trim();
    let mut fresh = false;
    if let Some(r) = rest.strip_suffix("--fresh") {
        if r.is_empty() || r.ends_with(char::is_whitespace) {
            fresh = true;
            rest = r.trim();
        }
    }
    let (cell, object) = match rest.split_once(char::is_whitespace) {
        Some((c, o)) => (c, o.trim()),
        None => (rest, ""),
    };
    if cell.is_empty() {
        return Err(format!("swap needs a cell ({usage})"));
    }
    if cell.starts_with('-') {
        return Err(format!("unknown option `{cell}` ({usage})"));
    }
    if object.starts_with("--") {
        return Err(format!("unknown option `{object}` ({usage})"));
    }
    Ok(SwapArgs {
        cell: cell.to_string(),
        object: (!object.is_empty()).then(|| PathBuf::from(object)),
        fresh,
    })
}

/// `swap <cell> [<object>] [--fresh]`.
pub fn swap(kernel: &mut Kernel, _load: Option<&Load>, rest: &str) -> Response {
    let args = match parse_swap(rest) {
        Ok(args) => args,
        Err(message) => return Response::error(message),
    };
    let args = &args;
    if kernel.cell_id(&args.cell).is_none() {
        return Response::error(format!(
            "no live cell `{}` in {} (see `ls`)",
            args.cell,
            crate::KERNEL_NAMESPACE
        ));
    }
    let object = match args
        .object
        .clone()
        .or_else(|| kernel.default_swap_object(&args.cell))
    {
        Some(object) => object,
        None => {
            return Response::error(format!(
                "no new version of `{}` to swap to: the manifest has no object for it that \
                 differs from the live one; name one \
                 (`swap {} <object>`)",
                args.cell, args.cell
            ))
        }
    };
    let options = SwapOptions {
        fresh_all: args.fresh,
        ..SwapOptions::default()
    };
    match kernel.swap_cell(&args.cell, &object, &options) {
        Ok(report) => {
            let mut lines = vec![format!("object {}", object.display())];
            lines.extend(render_swap(kernel, &report));
            Response::ok(lines)
        }
        Err(e) => Response::error(crate::errors::render(&e)),
    }
}

/// What a swap changed, for people: one line per cell, the slots, one line per static, the times.
pub fn render_swap(kernel: &Kernel, report: &SwapReport) -> Vec<String> {
    let mut out = Vec::new();
    for c in &report.cells {
        out.push(format!(
            "swapped {} {} -> {} ({})",
            c.name,
            c.old,
            c.new,
            if c.reused {
                "reused a retired version, nothing loaded"
            } else {
                "loaded"
            }
        ));
        if let Some(new) = kernel.system().registry().cell(c.new) {
            out.push(format!(
                "  now live: {} {} · mapped {} · sha256 {}",
                new.name,
                new.version,
                bytes(new.stats.mapped_bytes),
                short_sha(new.sha256.as_deref())
            ));
        }
    }
    out.push(format!(
        "slots rewritten: {} in {}",
        report.slots_rewritten,
        if report.dependents.is_empty() {
            "(no dependents)".to_string()
        } else {
            report.dependents.join(", ")
        }
    ));
    if report.statics.is_empty() {
        out.push("statics: none".into());
    }
    for s in &report.statics {
        let outcome = match s.outcome {
            StaticOutcome::Rebound => "rebound",
            StaticOutcome::Transferred => "transferred",
            StaticOutcome::Fresh => "fresh",
        };
        out.push(format!(
            "static {} {outcome} ({} -> {} bytes)",
            s.path, s.sizes.0, s.sizes.1
        ));
    }
    let t = report.times;
    let us = |ns: u64| ns as f64 / 1000.0;
    out.push(format!(
        "phases (µs): stage {:.1} · verify {:.1} · rebind/transfer {:.1} · commit {:.1} · total {:.1}",
        us(t.stage),
        us(t.verify),
        us(t.rebind),
        us(t.commit),
        us(t.total)
    ));
    for w in &report.warnings {
        out.push(format!("warning: {w}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swap_arguments() {
        let p = |s: &str| parse_swap(s);
        assert_eq!(
            p("memfs"),
            Ok(SwapArgs {
                cell: "memfs".into(),
                object: None,
                fresh: false
            })
        );
        assert_eq!(
            p("memfs /a b/memfs.o --fresh"),
            Ok(SwapArgs {
                cell: "memfs".into(),
                object: Some("/a b/memfs.o".into()),
                fresh: true
            })
        );
        assert_eq!(
            p("memfs --fresh"),
            Ok(SwapArgs {
                cell: "memfs".into(),
                object: None,
                fresh: true
            })
        );
        assert!(p("").is_err());
        assert!(p("--fresh").is_err());
        assert!(p("memfs --frsh").is_err());
    }
}
