//! `load <cell|object> [--ns <namespace>]` and `unload <cell> [--ns <namespace>]`: their
//! arguments and replies (the work is [`Kernel::load_cell`] and [`Kernel::unload_cell`]).

use std::path::PathBuf;

use super::protocol::Response;
use crate::errors::render;
use crate::kernel::Kernel;
use crate::load_unload::{CellChanges, LoadTarget};

/// `<what> [--ns <namespace>]`: the flag comes last; `what` is the rest of the line, so a path
/// may hold spaces.
fn parse<'a>(rest: &'a str, usage: &str) -> Result<(&'a str, Option<&'a str>), String> {
    let rest = rest.trim();
    let (what, ns) = match rest.rsplit_once(char::is_whitespace) {
        Some((before, ns)) => match before.trim_end().strip_suffix("--ns") {
            Some(what) if what.is_empty() || what.ends_with(char::is_whitespace) => {
                (what.trim(), Some(ns))
            }
            _ => (rest, None),
        },
        None => (rest, None),
    };
    if what.is_empty() {
        return Err(format!("usage: {usage}"));
    }
    if what.starts_with('-') || what.ends_with("--ns") {
        return Err(format!(
            "unknown option or missing value in `{rest}` ({usage})"
        ));
    }
    if ns.is_some_and(|n| n.starts_with('-')) {
        return Err(format!("--ns needs a namespace ({usage})"));
    }
    Ok((what, ns))
}

/// `load <cell|object> [--ns <namespace>]`: an argument with a `/` is an object file.
pub fn load(kernel: &mut Kernel, rest: &str) -> Response {
    let (what, ns) = match parse(rest, "load <cell|object> [--ns <namespace>]") {
        Ok(args) => args,
        Err(message) => return Response::error(message),
    };
    let target = if what.contains('/') {
        LoadTarget::Object(PathBuf::from(what))
    } else if what.contains(char::is_whitespace) {
        return Response::error(format!(
            "`{what}` is not a cell name (an object path has a `/`)"
        ));
    } else {
        LoadTarget::Cell(what.to_string())
    };
    match kernel.load_cell(&target, ns) {
        Ok(changes) => Response::ok(render_load(&changes)),
        Err(e) => Response::error(render(&e)),
    }
}

/// `unload <cell> [--ns <namespace>]`.
pub fn unload(kernel: &mut Kernel, rest: &str) -> Response {
    let (cell, ns) = match parse(rest, "unload <cell> [--ns <namespace>]") {
        Ok(args) => args,
        Err(message) => return Response::error(message),
    };
    if cell.contains(char::is_whitespace) {
        return Response::error(format!("`{cell}` is not a cell name"));
    }
    match kernel.unload_cell(cell, ns) {
        Ok(changes) => Response::ok(render_unload(&changes)),
        Err(e) => Response::error(render(&e)),
    }
}

fn render_load(changes: &CellChanges) -> Vec<String> {
    let mut out = Vec::new();
    if changes.namespace_changed {
        out.push(format!(
            "made namespace `{}` under {}",
            changes.namespace,
            crate::KERNEL_NAMESPACE
        ));
    }
    for c in &changes.cells {
        out.push(format!(
            "loaded {} {} ({}) into {}{}",
            c.name,
            c.version,
            c.id,
            changes.namespace,
            if c.dependency {
                ": a dependency cell it needs"
            } else if c.had_init {
                "; init ran"
            } else {
                ""
            }
        ));
    }
    out
}

fn render_unload(changes: &CellChanges) -> Vec<String> {
    let mut out: Vec<String> = changes
        .cells
        .iter()
        .map(|c| {
            format!(
                "unloaded {} {} ({}) from {}{}",
                c.name,
                c.version,
                c.id,
                changes.namespace,
                if c.dependency {
                    ": a dependency cell nothing uses any more"
                } else {
                    ""
                }
            )
        })
        .collect();
    if changes.namespace_changed {
        out.push(format!("removed namespace `{}`", changes.namespace));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn arguments() {
        let u = "usage";
        assert_eq!(parse("greet", u), Ok(("greet", None)));
        assert_eq!(parse(" greet --ns test ", u), Ok(("greet", Some("test"))));
        assert_eq!(
            parse("/a dir/greet.o --ns app:hello#1", u),
            Ok(("/a dir/greet.o", Some("app:hello#1")))
        );
        assert_eq!(parse("/a dir/greet.o", u), Ok(("/a dir/greet.o", None)));
        assert!(parse("", u).is_err());
        assert!(parse("--ns test", u).is_err());
        assert!(parse("greet --ns", u).is_err());
        assert!(parse("greet --ns --ns", u).is_err());
        assert!(parse("--fresh", u).is_err());
    }
}
