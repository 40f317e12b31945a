//! The command line of `cargo cell ls`, `info`, `deps` and `snapshot`: parsing, finding the
//! snapshot (offline, live or from a file), and writing the output.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use crate_metadata::Manifest;

use super::model::{self, Model, Names};
use super::query::parse_addr;
use super::{live, offline, show, Format, Options, Query};
use crate::build::{build_cells, BuildOptions};
use crate::control;
use crate::workspace::{find_workspace_root, Workspace};

/// The help of the inspection commands.
pub const USAGE: &str = "\
cargo cell ls|info|deps|snapshot: inspect the dependency graph, offline or on the running system

USAGE:
    cargo cell ls [OPTIONS]              every cell: kind, namespace, version, size, dependents
    cargo cell ls --crates [OPTIONS]     every dependency crate: source, features, where it is
                                         (loaded, or linked by the base image), what uses it
    cargo cell info <CELL> [OPTIONS]     identity, crates, sections, exports and their users,
                                         imports and their providers
    cargo cell deps [VIEW] [OPTIONS]     the dependency graph
    cargo cell snapshot [-o FILE]        the whole model as JSON (to read back with --snapshot)

VIEWS (deps):
    (none)                   the crate graph as a tree with sizes; --depth N limits it
    --invert <CELL>          every cell a swap or removal of CELL touches, with their slots
    --invert <CRATE>         every crate and cell a bump of dependency crate CRATE touches
                             (compiled against it, transitively), with their slots
    --why <A> <B>            the symbols through which A depends on B
    --symbols <CELL>         CELL's slots and the slots bound to it: section, offset, kind, symbol
    --unresolved             what would fail to link, and why
    --cycles                 cycles among the cells
    --addr <HEX>             (live) the cell, section, symbol and offset of an address

SOURCE (default: offline, a dry link of the cells `cargo cell build` writes, built if stale):
    --live                   ask the running nano_core (`cargo cell run`) over its socket
    --socket <PATH>          its control socket (default: <target>/cells/nano_core.sock)
    --snapshot <FILE>        read a snapshot saved with `cargo cell snapshot -o FILE`
    --workspace-root <DIR>, --target-dir <DIR>
                             which workspace to build, or where the socket is

OPTIONS:
    --format <F>             text (default), json, dot (Graphviz) or html (interactive page)
    -o, --output <FILE>      write to FILE instead of standard output
    --namespace <NS>         only the cells of namespace NS
    --all                    show the base image and the platform in full (their symbols)
    --mangled                mangled symbol names instead of demangled ones
    --depth <N>              (tree) show N levels below the roots

A CELL is a name (`klog`), a name in a namespace (`klog@_kernel`), a release
(`unicode_width@0.2.3`) or an id (`#3`). A CRATE is a dependency crate's name (`regex`), a
release (`unicode_width@0.2.3`) or its manifest key; `--invert '#N'` is the cell view of a
dependency cell.
";

/// Where the snapshot comes from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Source {
    /// A dry link of the built cells.
    #[default]
    Offline,
    /// The running `nano_core`, on this socket (default: the workspace's).
    Live(Option<PathBuf>),
    /// A snapshot file.
    File(PathBuf),
}

/// A parsed inspection command.
#[derive(Clone, Debug, Default)]
pub struct Args {
    /// Print the help instead.
    pub help: bool,
    /// What to show (`None`: the whole snapshot, for `cargo cell snapshot`).
    pub query: Option<Query>,
    /// How to show it.
    pub options: Options,
    /// Where the snapshot comes from.
    pub source: Source,
    /// The workspace and target directory (for building, or for the default socket).
    pub build: BuildOptions,
    /// Where to write the output.
    pub output: Option<PathBuf>,
}

/// Parses the arguments after `cargo cell <command>` for `ls`, `info`, `deps` or `snapshot`.
pub fn parse(command: &str, args: impl IntoIterator<Item = String>) -> Result<Args> {
    let mut out = Args {
        query: match command {
            "ls" => Some(Query::Ls),
            "deps" => Some(Query::Tree),
            "info" | "snapshot" => None,
            other => bail!("`{other}` is not an inspection command"),
        },
        ..Args::default()
    };
    out.build.quiet = true;
    let mut args = args.into_iter();
    let mut socket = None;
    let mut live = false;
    let mut positional = Vec::new();
    let mut view = None;
    let mut crates = false;
    while let Some(arg) = args.next() {
        let mut value = |what: &str| args.next().with_context(|| format!("{arg} needs {what}"));
        match arg.as_str() {
            "-h" | "--help" => out.help = true,
            "--live" => live = true,
            "--socket" => socket = Some(PathBuf::from(value("a path")?)),
            "--snapshot" => out.source = Source::File(PathBuf::from(value("a file")?)),
            "--workspace-root" => {
                out.build.workspace_root = Some(PathBuf::from(value("a directory")?))
            }
            "--target-dir" => out.build.target_dir = Some(PathBuf::from(value("a directory")?)),
            "--format" => out.options.format = Format::parse(&value("a format")?)?,
            "-o" | "--output" => out.output = Some(PathBuf::from(value("a file")?)),
            "--namespace" => out.options.namespace = Some(value("a namespace")?),
            "--all" => out.options.all = true,
            "--crates" => crates = true,
            "--mangled" => out.options.names = Names { mangled: true },
            "--depth" => {
                let n = value("a number")?;
                let n = n
                    .parse()
                    .with_context(|| format!("--depth takes a number, not `{n}`"))?;
                out.options.depth = Some(n);
            }
            "--invert" | "--symbols" => {
                let cell = value("a cell")?;
                let q = if arg == "--invert" {
                    Query::Invert(cell)
                } else {
                    Query::Symbols(cell)
                };
                set_view(&mut view, &arg, q)?;
            }
            "--why" => {
                let a = value("two cells")?;
                let b = value("two cells")?;
                set_view(&mut view, &arg, Query::Why(a, b))?;
            }
            "--unresolved" => set_view(&mut view, &arg, Query::Unresolved)?,
            "--cycles" => set_view(&mut view, &arg, Query::Cycles)?,
            "--addr" => {
                let addr = parse_addr(&value("an address")?)?;
                set_view(&mut view, &arg, Query::Addr(addr))?;
            }
            other if other.starts_with('-') => {
                bail!("unknown option `{other}` for `cargo cell {command}`")
            }
            _ => positional.push(arg),
        }
    }
    if live || socket.is_some() {
        if matches!(out.source, Source::File(_)) {
            bail!("--live and --snapshot are two different sources: pick one");
        }
        out.source = Source::Live(socket);
    }
    if out.help {
        return Ok(out);
    }
    if crates {
        if command != "ls" {
            bail!("--crates belongs to `cargo cell ls`");
        }
        out.query = Some(Query::Crates);
    }
    match (command, view, positional.as_slice()) {
        ("deps", Some(v), []) => out.query = Some(v),
        ("deps", None, []) | ("ls", None, []) | ("snapshot", None, []) => {}
        ("info", None, [cell]) => out.query = Some(Query::Info(cell.clone())),
        ("info", None, []) => bail!("`cargo cell info` needs a cell name"),
        (_, Some(_), _) => bail!("views (--invert, --why, ...) belong to `cargo cell deps`"),
        (_, None, extra) => bail!("unexpected argument(s): {}", extra.join(" ")),
    }
    if out.options.depth.is_some() && out.query != Some(Query::Tree) {
        bail!("--depth applies to the tree (`cargo cell deps` without a view)");
    }
    Ok(out)
}

fn set_view(view: &mut Option<Query>, arg: &str, q: Query) -> Result<()> {
    if view.is_some() {
        bail!("{arg}: one view at a time");
    }
    *view = Some(q);
    Ok(())
}

/// Gets the model `source` names. A live snapshot comes with the workspace's manifest (what
/// `nano_core` booted from, unless it was started elsewhere) when one can be read.
pub fn snapshot(source: &Source, build: &BuildOptions) -> Result<Model> {
    match source {
        Source::Offline => {
            let report = build_cells(build).context("building the cells for a dry link")?;
            offline::from_build(&report).context("dry-linking the built cells")
        }
        Source::File(path) => model::read(path),
        Source::Live(socket) => {
            let workspace = workspace(build);
            let socket = match (socket, &workspace) {
                (Some(s), _) => s.clone(),
                (None, Ok(ws)) => control::default_socket(&ws.target_dir),
                (None, Err(e)) => bail!("{e:#}"),
            };
            let snapshot = live::fetch(&socket)?;
            let manifest = match workspace {
                Ok(ws) => read_manifest(&crate::manifest::path(&ws.target_dir.join("cells")))?,
                Err(_) => None,
            };
            Ok(Model { snapshot, manifest })
        }
    }
}

fn workspace(build: &BuildOptions) -> Result<Workspace> {
    let root = match &build.workspace_root {
        Some(root) => root.clone(),
        None => {
            let cwd = std::env::current_dir().context("cannot read the current directory")?;
            find_workspace_root(&cwd)
                .context("finding the workspace whose target directory holds the socket (or pass --socket PATH)")?
        }
    };
    Workspace::load(&root, build.target_dir.as_deref())
        .with_context(|| format!("cannot read the workspace at {}", root.display()))
}

/// The manifest at `path`, or `None` when there is none.
fn read_manifest(path: &Path) -> Result<Option<Manifest>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    crate::manifest::parse(&text, path).map(Some)
}

/// Runs a parsed inspection command: prints (or writes) what it shows.
pub fn run(args: &Args) -> Result<()> {
    if args.help {
        print!("{USAGE}");
        return Ok(());
    }
    let snapshot = snapshot(&args.source, &args.build)?;
    let text = match &args.query {
        Some(q) => show(&snapshot, q, &args.options)?,
        None => {
            let mut json = serde_json::to_string(&snapshot).context("serializing the snapshot")?;
            json.push('\n');
            json
        }
    };
    match &args.output {
        Some(path) => {
            std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?
        }
        None => {
            use std::io::Write as _;
            let mut stdout = std::io::stdout().lock();
            // A closed pipe (`| head`) is not an error worth a message.
            match stdout
                .write_all(text.as_bytes())
                .and_then(|()| stdout.flush())
            {
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
                other => other.context("writing to standard output")?,
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(command: &str, args: &[&str]) -> Result<Args> {
        parse(command, args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn views_sources_and_formats_parse() {
        let a = p("deps", &["--why", "sched", "klog", "--format", "json"]).unwrap();
        assert_eq!(a.query, Some(Query::Why("sched".into(), "klog".into())));
        assert_eq!(a.options.format, Format::Json);
        assert_eq!(a.source, Source::Offline);
        let a = p(
            "deps",
            &["--live", "--socket", "/tmp/s", "--addr", "0x7f_0010"],
        )
        .unwrap();
        assert_eq!(a.query, Some(Query::Addr(0x7f0010)));
        assert_eq!(a.source, Source::Live(Some("/tmp/s".into())));
        let a = p("info", &["klog", "--snapshot", "s.json", "--mangled"]).unwrap();
        assert_eq!(a.query, Some(Query::Info("klog".into())));
        assert_eq!(a.source, Source::File("s.json".into()));
        assert!(a.options.names.mangled);
        let a = p("deps", &["--depth", "2", "--namespace", "_kernel", "--all"]).unwrap();
        assert_eq!((a.query, a.options.depth), (Some(Query::Tree), Some(2)));
        assert!(a.options.all);
        assert_eq!(p("snapshot", &["-o", "x.json"]).unwrap().query, None);
        assert_eq!(p("ls", &["--crates"]).unwrap().query, Some(Query::Crates));
        let a = p("deps", &["--invert", "unicode_width@0.2.3"]).unwrap();
        assert_eq!(a.query, Some(Query::Invert("unicode_width@0.2.3".into())));
    }

    #[test]
    fn mistakes_are_named() {
        let err = |command: &str, args: &[&str]| format!("{:#}", p(command, args).unwrap_err());
        assert!(err("deps", &["--invert", "a", "--cycles"]).contains("one view"));
        assert!(err("deps", &["--format", "svg"]).contains("unknown format"));
        assert!(err("deps", &["--why", "a"]).contains("two cells"));
        assert!(err("info", &[]).contains("needs a cell"));
        assert!(err("ls", &["--invert", "a"]).contains("belong to `cargo cell deps`"));
        assert!(err("deps", &["--cycles", "--depth", "1"]).contains("--depth"));
        assert!(err("deps", &["--live", "--snapshot", "f"]).contains("pick one"));
        assert!(err("deps", &["--addr", "xyz"]).contains("hexadecimal"));
        assert!(err("deps", &["--bogus"]).contains("unknown option"));
        assert!(err("deps", &["--crates"]).contains("belongs to `cargo cell ls`"));
    }
}
