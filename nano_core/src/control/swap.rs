//! `swap <cell> [<object>] [--fresh [--force]]`: a live cell for a new version, and what the swap
//! changed.
//!
//! `--fresh` starts every static of the new version from its initial value instead of keeping
//! the old state; the reply warns for each static that starts empty, and when load threads call
//! the cell, that their calls may now fail. A static the base image shares with the cell (it links
//! the crate statically: `klog::LOG`) is never given fresh state silently: the swap is refused,
//! naming it, unless `--force` is given too.

use std::path::PathBuf;

use loader::{StaticOutcome, SwapOptions, SwapReport};

use super::load::Load;
use super::protocol::Response;
use super::views::short_sha;
use crate::kernel::Kernel;
use crate::report::bytes;
use crate::swap::FreshShared;

/// The arguments of `swap`.
#[derive(Clone, Debug, PartialEq, Eq)]
struct SwapArgs {
    cell: String,
    object: Option<PathBuf>,
    fresh: bool,
    force: bool,
}

/// `<cell> [<object>] [--fresh [--force]]`; the object is the rest of the line, so it may hold
/// spaces; the flags come last, in any order.
fn parse_swap(rest: &str) -> Result<SwapArgs, String> {
    let usage = "usage: swap <cell> [<object>] [--fresh [--force]]";
    let mut rest = rest.trim();
    let (mut fresh, mut force) = (false, false);
    loop {
        let flag = ["--fresh", "--force"].into_iter().find_map(|flag| {
            let r = rest.strip_suffix(flag)?;
            (r.is_empty() || r.ends_with(char::is_whitespace)).then_some((flag, r.trim()))
        });
        let Some((flag, r)) = flag else { break };
        match flag {
            "--fresh" => fresh = true,
            _ => force = true,
        }
        rest = r;
    }
    if force && !fresh {
        return Err(format!("--force goes with --fresh ({usage})"));
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
        force,
    })
}

/// `swap <cell> [<object>] [--fresh [--force]]`.
pub fn swap(kernel: &mut Kernel, load: Option<&Load>, rest: &str) -> Response {
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
    let shared_before = kernel.statics_shared_with_image(&args.cell);
    let shared = if args.force {
        FreshShared::Force
    } else {
        FreshShared::Refuse
    };
    match kernel.swap_cell_with(&args.cell, &object, &options, shared) {
        Ok(report) => {
            let mut lines = vec![format!("object {}", object.display())];
            lines.extend(render_swap(kernel, &report));
            lines.extend(fresh_warnings(
                kernel,
                load,
                &args.cell,
                &report,
                &shared_before,
            ));
            Response::ok(lines)
        }
        Err(e) => Response::error(crate::errors::render(&e)),
    }
}

/// What fresh state did: each static of the old version that starts empty (or that stays the base
/// image's after all), and the load threads that call the cell.
fn fresh_warnings(
    kernel: &Kernel,
    load: Option<&Load>,
    cell: &str,
    report: &SwapReport,
    shared_before: &[String],
) -> Vec<String> {
    let fresh: Vec<&str> = report
        .statics
        .iter()
        // Statics the old version had (a new one starts from its initial value anyway).
        .filter(|s| s.outcome == StaticOutcome::Fresh && s.sizes.0 > 0)
        .map(|s| s.path.as_str())
        .collect();
    if fresh.is_empty() {
        return Vec::new();
    }
    let shared_after = kernel.statics_shared_with_image(cell);
    let mut out = Vec::new();
    for path in &fresh {
        let path = path.to_string();
        out.push(if shared_after.contains(&path) {
            format!(
                "warning: fresh state: `{path}` is still the base image's (the image links \
                 `{cell}` and shares it): it kept its contents"
            )
        } else if shared_before.contains(&path) {
            format!(
                "warning: fresh state: `{path}` starts empty in `{cell}` while the base image \
                 keeps its own copy: they no longer share one state"
            )
        } else {
            format!(
                "warning: fresh state: `{path}` starts empty: what the old version held is gone \
                 for every caller"
            )
        });
    }
    if let Some(load) = load {
        let prefix = format!("{cell}::");
        let calls: Vec<&str> = load
            .names()
            .iter()
            .copied()
            .filter(|n| n.starts_with(&prefix))
            .collect();
        if !calls.is_empty() {
            out.push(format!(
                "warning: {} load threads call {}: a call that needs the old state fails from \
                 now on (see `status`)",
                load.threads(),
                calls.join(", ")
            ));
        }
    }
    out
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
                short_sha(new.sha256)
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
                fresh: false,
                force: false
            })
        );
        assert_eq!(
            p("memfs /a b/memfs.o --fresh"),
            Ok(SwapArgs {
                cell: "memfs".into(),
                object: Some("/a b/memfs.o".into()),
                fresh: true,
                force: false
            })
        );
        assert_eq!(
            p("memfs --fresh"),
            Ok(SwapArgs {
                cell: "memfs".into(),
                object: None,
                fresh: true,
                force: false
            })
        );
        assert_eq!(
            p("klog --fresh --force"),
            Ok(SwapArgs {
                cell: "klog".into(),
                object: None,
                fresh: true,
                force: true
            })
        );
        assert_eq!(p("klog /k.o --force --fresh").map(|a| a.force), Ok(true));
        assert!(p("klog --force").is_err());
        assert!(p("").is_err());
        assert!(p("--fresh").is_err());
        assert!(p("memfs --frsh").is_err());
    }
}
