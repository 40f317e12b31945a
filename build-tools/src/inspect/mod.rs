//! Inspecting the dependency graph: `cargo cell ls`, `cargo cell info` and `cargo cell deps`.
//!
//! **One model, two sources.** Every view reads a [`Model`](model::Model): a
//! [`Snapshot`](model::Snapshot) (the loader's own [`Registry`](crate_metadata::Registry) and
//! [`Namespaces`](namespace::Namespaces)) with the build [`Manifest`](crate_metadata::Manifest),
//! which says which crate each dependency cell is and which cells use which crates.
//!
//! - *Offline* ([`offline`]): a dry link of the objects `cargo cell build` wrote, done by the
//!   loader's own [`System::load`](loader::System::load) on a [`DryPlatform`](dry::DryPlatform)
//!   that maps heap memory, reads the base image's symbols from the `nano_core` file, and never
//!   runs cell code; each cell's dependency cells are linked before it, as `nano_core` loads
//!   them. Cells that would fail to link are recorded, not fatal.
//! - *Live* ([`live`]): the snapshot a running `nano_core` sends for the control request
//!   `snapshot` (with the workspace's manifest), or one saved to a file (`cargo cell snapshot -o
//!   FILE`).
//!
//! | file | what |
//! |------|------|
//! | `model.rs` | the model, the cell-level index over its edges, names as people read them |
//! | `crates.rs` | the manifest's crate graph, matched to the cells |
//! | `dry.rs`, `offline.rs` | the dry-link platform and the offline source |
//! | `live.rs` | the live source |
//! | `views.rs` | what each command shows, as data ([`views::View`]) |
//! | `query.rs`, `deps.rs`, `crate_views.rs` | building the views: `ls`, `info`, `--symbols`, `--addr`; the tree, `--invert`, `--why`, `--unresolved`, `--cycles`; `ls --crates` and `--invert <crate>` |
//! | `policy.rs` | export policies: a cell's application interface, the rule that allowed each edge from an application into the kernel |
//! | `graph.rs` | the picture of a view for the graph formats |
//! | `text/`, `json.rs`, `dot.rs`, `html.rs` (+ `page/`) | the formats (`json.rs` documents the JSON schema) |
//! | `synth.rs` | generated systems for benchmarks and tests |
//! | `cli.rs` | the command line |

pub mod cli;
pub mod crate_views;
pub mod crates;
pub mod deps;
pub mod dot;
pub mod dry;
pub mod graph;
pub mod html;
pub mod json;
pub mod live;
pub mod model;
pub mod offline;
pub mod policy;
pub mod query;
pub mod synth;
pub mod text;
pub mod views;

use anyhow::{bail, Result};

use model::{Index, Model, Names};
use views::View;

/// The output formats.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Format {
    /// For people (the default).
    #[default]
    Text,
    /// For scripts; the schema is in [`json`].
    Json,
    /// For Graphviz.
    Dot,
    /// A self-contained interactive page.
    Html,
}

impl Format {
    /// Parses `text`, `json`, `dot` or `html`.
    pub fn parse(s: &str) -> Result<Format> {
        Ok(match s {
            "text" => Format::Text,
            "json" => Format::Json,
            "dot" => Format::Dot,
            "html" => Format::Html,
            other => bail!("unknown format `{other}` (text, json, dot or html)"),
        })
    }
}

/// What to show.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Query {
    /// `ls`.
    Ls,
    /// `ls --crates`.
    Crates,
    /// `info <cell>`.
    Info(String),
    /// `deps`: the tree.
    Tree,
    /// `deps --invert <cell>`, or `deps --invert <crate>` when it names a dependency crate
    /// (`regex`, `unicode_width@0.2.3`).
    Invert(String),
    /// `deps --why <a> <b>`.
    Why(String, String),
    /// `deps --symbols <cell>`.
    Symbols(String),
    /// `deps --unresolved`.
    Unresolved,
    /// `deps --cycles`.
    Cycles,
    /// `deps --addr <hex>`.
    Addr(u64),
}

/// How to show it.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// The output format.
    pub format: Format,
    /// Mangled or demangled names.
    pub names: Names,
    /// Show the base image and the platform in full (their symbols in the tree, their rows in
    /// `ls`).
    pub all: bool,
    /// Only cells of this namespace.
    pub namespace: Option<String>,
    /// The tree's depth limit.
    pub depth: Option<usize>,
}

/// Builds the view `query` asks for.
pub fn view(index: &Index<'_>, q: &Query, options: &Options) -> Result<View> {
    let ns = options.namespace.as_deref();
    if let Some(ns) = ns {
        if index.snapshot.namespaces.by_name(ns).is_none() {
            let known: Vec<&str> = index
                .snapshot
                .namespaces
                .iter()
                .map(|n| n.name.as_str())
                .collect();
            bail!("no namespace `{ns}` (namespaces: {})", known.join(", "));
        }
    }
    Ok(match q {
        Query::Ls => query::ls(index, ns, options.all),
        Query::Crates => crate_views::crates(index, ns)?,
        Query::Info(cell) => query::info(index, index.find(cell, ns)?),
        Query::Tree => deps::tree(index, ns, options.depth, options.all),
        Query::Invert(spec) => match index.crates.find(spec)? {
            Some(krate) => crate_views::invert(index, krate)?,
            None => deps::invert(index, index.find(spec, ns)?),
        },
        Query::Why(a, b) => {
            let a = index.find(a, ns)?;
            let uses = |c: &crate_metadata::Cell| index.providers(a.id).any(|(p, _)| p == c.id);
            deps::why(index, a, index.find_preferring(b, ns, uses)?)
        }
        Query::Symbols(cell) => query::symbols(index, index.find(cell, ns)?),
        Query::Unresolved => deps::unresolved(index, ns),
        Query::Cycles => deps::cycles(index, ns),
        Query::Addr(addr) => query::addr(index, *addr)?,
    })
}

/// Renders `view` in `options.format`.
pub fn render(index: &Index<'_>, view: &View, options: &Options) -> Result<String> {
    let snapshot = index.snapshot;
    Ok(match options.format {
        Format::Text => {
            let o = text::TextOptions::new(
                options.names,
                snapshot.source,
                snapshot.namespaces.iter().count(),
            );
            text::render(view, &o)
        }
        Format::Json => json::render(view, snapshot.source)?,
        Format::Dot => dot::render(&graph::of(index, view, options.names), view, options.names),
        Format::Html => html::render(&graph::of(index, view, options.names))?,
    })
}

/// Builds and renders: what `cargo cell ls|info|deps` prints for `model`.
pub fn show(model: &Model, q: &Query, options: &Options) -> Result<String> {
    let index = Index::new(model);
    let view = view(&index, q, options)?;
    render(&index, &view, options)
}
