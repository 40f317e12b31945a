//! `cargo cell <command>`: the cell system's command-line tool.
//!
//! Run as `cargo cell ...` through the workspace alias (`cargo run -p build-tools --bin cargo-cell
//! -- ...`), or as an installed cargo subcommand (`cargo-cell cell ...`). Every subcommand lives
//! in the library; this file only parses arguments and dispatches.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use build_tools::build::take_build_option;
use build_tools::workspace::{find_workspace_root, Workspace};
use build_tools::{build_cells, control, BuildFailed, BuildOptions};

const USAGE: &str = "\
cargo cell: build and drive the cell system

USAGE:
    cargo cell <COMMAND> [OPTIONS]

COMMANDS:
    build    Build nano_core and every cell; write target/cells/<kind>/<cell>.o and
             target/cells/manifest.json (files are rewritten only when they change); new
             versions of cells (cells/upgrades/<cell>) go to target/cells/upgrades/<cell>.o
             --sign <KEY>: then sign every object with the secret key KEY (Ed25519)
    sign <KEY>
             Build, then sign every object listed in the manifest with KEY
    keygen [DIR]
             Make an Ed25519 key pair in DIR (default ~/.config/cells): cell-signing.key
             (secret, 0600), cell-signing.pub
             (for `nano_core --trust`)
    demo     Build what is stale, boot nano_core on the cells and run its workload
    qemu     Build the cells and the bare-metal nano_core (bare_metal/), boot it under
             qemu-system-x86_64 on 4 CPUs and show its serial console: it links the kernel
             cells, runs tasks on every CPU that call them, swaps five cells under that load
             (memfs, sched, frame_alloc, counter, uart), and powers off with a verdict
             --timeout <SECS> (default 60; 3600 with --shell), --build-only, --smp <N>,
             --append <WORDS> (the kernel command line), --shell (the kernel's shell on
             this terminal: what you type goes to its serial port)
    run      Build what is stale, boot nano_core and serve its control socket in the
             foreground until `cargo cell ctl quit` (or Ctrl-C)
    test     The whole test suite, as CI runs it: installs the programs the tests need
             (Chromium, QEMU, gdb, perf, nightly + cargo-fuzz, ...) with apt-get, rustup and
             cargo install when it can, else stops with the exact commands; then fmt, clippy,
             the shape gates, bare_metal's gates, the upgrades' tests, fuzz/ci.sh and
             `cargo test --workspace`, stopping at the first failure
             --check: only say what is missing and how it would be installed; --list: the steps
    new <kernel|lib|app> <NAME>
             Write a cell that follows the conventions to cells/<kind>/<NAME> (with its
             interface in cell-abi and a test that loads it: `cargo test -p NAME`), then build
    swap <CELL> [<OBJECT>] [--fresh [--force]]
             Swap a cell of the running nano_core for a new version: OBJECT (default: the
             cell's rebuilt or upgrade object from the manifest); --fresh starts its statics
             fresh instead of keeping their state (refused for a static the base image shares,
             such as klog's log, unless --force). Prints what changed.
    load <CELL|OBJECT> [--ns <NAMESPACE>]
             Load a cell of the manifest (or an object file: a path with a `/` or ending in
             `.o`) into the running nano_core, its dependency cells first; into _kernel or
             NAMESPACE (made if need be)
    unload <CELL> [--ns <NAMESPACE>]
             Unload a cell nothing uses (else name its users), then the dependency cells
             only it used
    ctl <REQUEST>...
             Send a request to the running nano_core and print the reply: ping, ls, ns,
             status, reclaim, apps, quit, swap <cell> [<object>] [--fresh [--force]],
             load ..., unload ...
             (`cargo cell ctl help` lists them all)
    ls       List the cells: namespace, version, size, dependents, state
    info <CELL>
             A cell's identity, sections, exports and their users, imports and providers
    deps     The dependency graph: a tree, or --invert, --why, --symbols, --unresolved,
             --cycles, --addr; text, json, dot or html (`cargo cell deps --help`)
    snapshot Write the whole model as JSON (offline, or --live from the running nano_core)
    upgrades <CARGO-COMMAND> [ARGS...]
             Run `cargo <CARGO-COMMAND> -p <upgrade>... [ARGS...]` on the new versions in
             the shadow workspaces they are built in, e.g. `cargo cell upgrades test` or
             `cargo cell upgrades clippy --all-targets -- -D warnings`
    help     Print this help

OPTIONS (build, demo, run, qemu):
    --workspace-root <DIR>   The workspace to build (default: the one containing the current dir)
    --target-dir <DIR>       Cargo's target directory (default: the workspace's)
    -q, --quiet              Print nothing unless the build fails

OPTIONS (run):
    --watch                  Swap in every cell whose object a later `cargo cell build` changes
    --load <N>               Keep N threads calling through cell handles (see `ctl status`)
    --socket <PATH>          The control socket (default: <target>/cells/nano_core.sock)
    --trust <KEY>            Refuse every cell not signed by the public key KEY
                             (passed on: nano_core --trust KEY; see `cargo cell keygen`)

OPTIONS (swap, load, unload, ctl):
    --socket <PATH>          The control socket (default: <target>/cells/nano_core.sock)
    --workspace-root <DIR>, --target-dir <DIR>
                             Where to find the default socket

OPTIONS (upgrades, before its cargo command):
    --workspace-root <DIR>, --target-dir <DIR>
                             The workspace and target directory, as for build

A relative OBJECT is resolved against the current directory. `swap`, `load`, `unload` and `ctl`
exit non-zero
when the server answers `error:` or when no server listens on the socket.
";

/// A parsed command line.
#[derive(Debug)]
enum Cli {
    Help,
    Inspect(build_tools::inspect::cli::Args),
    Build(BuildOptions),
    /// `build --sign KEY` and `sign KEY`: build, then sign every object.
    Sign(BuildOptions, PathBuf),
    Keygen(PathBuf),
    Demo(BuildOptions),
    Upgrades(BuildOptions, Vec<String>),
    Run(RunOptions),
    Qemu(build_tools::qemu_cli::QemuOptions),
    Test(build_tools::test_suite::TestOptions),
    New {
        kind: build_tools::new_cell::Kind,
        name: String,
        build: BuildOptions,
    },
    Swap {
        target: SocketTarget,
        cell: String,
        object: Option<PathBuf>,
        fresh: bool,
        force: bool,
    },
    /// `load` and `unload`: the request line, made at parsing.
    Request {
        target: SocketTarget,
        line: String,
    },
    Ctl {
        target: SocketTarget,
        request: Vec<String>,
    },
}

/// `cargo cell run`'s options.
#[derive(Debug, Default)]
struct RunOptions {
    build: BuildOptions,
    watch: bool,
    load: Option<usize>,
    socket: Option<PathBuf>,
    trust: Option<PathBuf>,
}

impl RunOptions {
    /// nano_core's arguments after `--cells`: serve `socket`, and what the options ask for.
    fn nano_core_args(&self, socket: &std::path::Path) -> Result<Vec<String>> {
        let utf8 = |path: &std::path::Path| {
            path.to_str()
                .map(str::to_string)
                .with_context(|| format!("the path {} is not UTF-8", path.display()))
        };
        let mut args = vec!["--serve".to_string(), utf8(socket)?];
        if self.watch {
            args.push("--watch".into());
        }
        if let Some(load) = self.load {
            args.extend(["--load".into(), load.to_string()]);
        }
        if let Some(key) = &self.trust {
            // nano_core runs in the workspace root: a relative key is this directory's.
            let key = std::path::absolute(key).context("the --trust key's path")?;
            args.extend(["--trust".into(), utf8(&key)?]);
        }
        Ok(args)
    }
}

/// Where the control socket is: given, or found from the workspace's target directory.
#[derive(Debug, Default)]
struct SocketTarget {
    socket: Option<PathBuf>,
    workspace_root: Option<PathBuf>,
    target_dir: Option<PathBuf>,
}

impl SocketTarget {
    /// Takes `arg` (and its value from `args`) if it is one of the socket options.
    fn take(&mut self, arg: &str, args: &mut impl Iterator<Item = String>) -> Result<bool> {
        let slot = match arg {
            "--socket" => &mut self.socket,
            "--workspace-root" => &mut self.workspace_root,
            "--target-dir" => &mut self.target_dir,
            _ => return Ok(false),
        };
        let value = args.next().with_context(|| format!("{arg} needs a path"))?;
        *slot = Some(PathBuf::from(value));
        Ok(true)
    }

    fn socket(&self) -> Result<PathBuf> {
        if let Some(socket) = &self.socket {
            return Ok(socket.clone());
        }
        let root = match &self.workspace_root {
            Some(root) => root.clone(),
            None => {
                let cwd = std::env::current_dir().context("cannot read the current directory")?;
                find_workspace_root(&cwd).context(
                    "finding the workspace whose target directory holds the socket \
                     (or pass --socket PATH)",
                )?
            }
        };
        let ws = Workspace::load(&root, self.target_dir.as_deref())
            .with_context(|| format!("cannot read the workspace at {}", root.display()))?;
        Ok(control::default_socket(&ws.target_dir))
    }
}

fn parse(mut args: Vec<String>) -> Result<Cli> {
    // As an installed cargo subcommand, cargo passes the subcommand name first.
    if args.first().map(String::as_str) == Some("cell") {
        args.remove(0);
    }
    let mut args = args.into_iter();
    let Some(command) = args.next() else {
        return Ok(Cli::Help);
    };
    match command.as_str() {
        "help" | "--help" | "-h" => Ok(Cli::Help),
        "upgrades" => {
            let mut options = BuildOptions::default();
            let mut args = args.peekable();
            while let Some(arg) = args.next_if(|a| a.starts_with('-')) {
                match arg.as_str() {
                    // `upgrades` has no quiet mode: `-q` is refused as before.
                    "-q" | "--quiet" => bail!("unknown option `{arg}` for `cargo cell upgrades`"),
                    a if take_build_option(a, &mut args, &mut options)? => {}
                    "-h" | "--help" => return Ok(Cli::Help),
                    other => bail!("unknown option `{other}` for `cargo cell upgrades`"),
                }
            }
            let cargo_args: Vec<String> = args.collect();
            if cargo_args.is_empty() {
                bail!(
                    "`cargo cell upgrades` needs a cargo command, e.g. `cargo cell upgrades test`"
                );
            }
            Ok(Cli::Upgrades(options, cargo_args))
        }
        "keygen" => {
            // By default outside any repository: a secret key must never be committed.
            let dir = match args.next() {
                Some(dir) => dir,
                None => std::env::var("XDG_CONFIG_HOME")
                    .map(PathBuf::from)
                    .or_else(|_| std::env::var("HOME").map(|h| PathBuf::from(h).join(".config")))
                    .context("no DIR given, and neither XDG_CONFIG_HOME nor HOME is set")?
                    .join("cells")
                    .to_string_lossy()
                    .into_owned(),
            };
            if let Some(extra) = args.next() {
                bail!("unexpected argument `{extra}` for `cargo cell keygen [DIR]`");
            }
            Ok(Cli::Keygen(PathBuf::from(dir)))
        }
        "build" | "demo" | "sign" => {
            let mut options = BuildOptions::default();
            let mut sign: Option<PathBuf> = None;
            if command == "sign" {
                sign = Some(PathBuf::from(
                    args.next().context("usage: cargo cell sign KEY")?,
                ));
            }
            while let Some(arg) = args.next() {
                match arg.as_str() {
                    "--sign" if command == "build" => {
                        let key = args.next().context("--sign needs a secret key file")?;
                        sign = Some(PathBuf::from(key));
                    }
                    a if take_build_option(a, &mut args, &mut options)? => {}
                    "-h" | "--help" => return Ok(Cli::Help),
                    other => bail!("unknown option `{other}` for `cargo cell {command}`"),
                }
            }
            Ok(match (command.as_str(), sign) {
                ("demo", _) => Cli::Demo(options),
                (_, Some(key)) => Cli::Sign(options, key),
                _ => Cli::Build(options),
            })
        }
        "qemu" => Ok(match build_tools::qemu_cli::parse(args)? {
            Some(options) => Cli::Qemu(options),
            None => Cli::Help,
        }),
        "run" => {
            let mut options = RunOptions::default();
            while let Some(arg) = args.next() {
                match arg.as_str() {
                    a if take_build_option(a, &mut args, &mut options.build)? => {}
                    "--watch" => options.watch = true,
                    "--load" => {
                        let n = args.next().context("--load needs a number of threads")?;
                        let n = n
                            .parse::<usize>()
                            .ok()
                            .filter(|n| *n <= 64)
                            .with_context(|| format!("--load takes 0 to 64 threads, not `{n}`"))?;
                        options.load = Some(n);
                    }
                    "--socket" => {
                        let path = args.next().context("--socket needs a path")?;
                        options.socket = Some(PathBuf::from(path));
                    }
                    "--trust" => {
                        let key = args.next().context("--trust needs a public key file")?;
                        options.trust = Some(PathBuf::from(key));
                    }
                    "-h" | "--help" => return Ok(Cli::Help),
                    other => bail!("unknown option `{other}` for `cargo cell run`"),
                }
            }
            Ok(Cli::Run(options))
        }
        "test" => Ok(Cli::Test(build_tools::test_suite::parse(args)?)),
        "new" => {
            const NEW: &str = "usage: cargo cell new <kernel|lib|app> <NAME>";
            let kind = args.next().context(NEW)?;
            let kind = build_tools::new_cell::Kind::parse(&kind)
                .with_context(|| format!("`{kind}` is not a kind of cell; {NEW}"))?;
            let name = args.next().context(NEW)?;
            let mut build = BuildOptions::default();
            while let Some(arg) = args.next() {
                if !take_build_option(&arg, &mut args, &mut build)? {
                    bail!("unexpected argument `{arg}`; {NEW}");
                }
            }
            Ok(Cli::New { kind, name, build })
        }
        "swap" => {
            let mut target = SocketTarget::default();
            let (mut fresh, mut force) = (false, false);
            let mut positional = Vec::new();
            while let Some(arg) = args.next() {
                if target.take(&arg, &mut args)? {
                    continue;
                }
                match arg.as_str() {
                    "--fresh" => fresh = true,
                    "--force" => force = true,
                    "-h" | "--help" => return Ok(Cli::Help),
                    other if other.starts_with('-') => {
                        bail!("unknown option `{other}` for `cargo cell swap`")
                    }
                    _ => positional.push(arg),
                }
            }
            let mut positional = positional.into_iter();
            let cell = positional
                .next()
                .context("`cargo cell swap` needs a cell: cargo cell swap <CELL> [<OBJECT>]")?;
            let object = positional.next().map(PathBuf::from);
            if let Some(extra) = positional.next() {
                bail!("unexpected argument `{extra}` for `cargo cell swap`");
            }
            if force && !fresh {
                bail!(
                    "--force goes with --fresh: cargo cell swap <CELL> [<OBJECT>] --fresh --force"
                );
            }
            Ok(Cli::Swap {
                target,
                cell,
                object,
                fresh,
                force,
            })
        }
        "load" | "unload" => {
            let mut target = SocketTarget::default();
            let mut namespace = None;
            let mut positional = Vec::new();
            while let Some(arg) = args.next() {
                if target.take(&arg, &mut args)? {
                    continue;
                }
                match arg.as_str() {
                    "--ns" => namespace = Some(args.next().context("--ns needs a namespace")?),
                    "-h" | "--help" => return Ok(Cli::Help),
                    other if other.starts_with('-') => {
                        bail!("unknown option `{other}` for `cargo cell {command}`")
                    }
                    _ => positional.push(arg),
                }
            }
            let [what] = <[String; 1]>::try_from(positional).map_err(|_| {
                anyhow::anyhow!("usage: cargo cell {command} <CELL> [--ns <NAMESPACE>]")
            })?;
            let line = if command == "unload" {
                control::unload_request(&what, namespace.as_deref())?
            } else {
                let cwd = std::env::current_dir().context("cannot read the current directory")?;
                control::load_request(&what, namespace.as_deref(), &cwd)?
            };
            Ok(Cli::Request { target, line })
        }
        "ctl" => {
            let mut target = SocketTarget::default();
            let mut request = Vec::new();
            while let Some(arg) = args.next() {
                if !target.take(&arg, &mut args)? {
                    request.push(arg);
                }
            }
            if request.is_empty() {
                bail!("`cargo cell ctl` needs a request (ping, ls, ns, status, quit, swap ...)");
            }
            Ok(Cli::Ctl { target, request })
        }
        "ls" | "info" | "deps" | "snapshot" => Ok(Cli::Inspect(build_tools::inspect::cli::parse(
            &command, args,
        )?)),
        other => bail!("unknown command `{other}`"),
    }
}

/// Sends `line`, prints the reply; an `error:` reply is an error (already printed).
fn send(target: &SocketTarget, line: &str) -> Result<()> {
    let socket = target.socket()?;
    let reply = control::request(&socket, line)?;
    match &reply.error {
        None => {
            print!("{}", reply.render());
            Ok(())
        }
        Some(_) => {
            eprint!("{}", reply.render());
            Err(ServerRefused.into())
        }
    }
}

/// The server answered `error:` (the reply was printed already).
#[derive(Debug)]
struct ServerRefused;

impl std::fmt::Display for ServerRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the server refused the request")
    }
}

impl std::error::Error for ServerRefused {}

fn run(cli: Cli) -> Result<()> {
    match cli {
        Cli::Help => print!("{USAGE}"),
        Cli::Inspect(args) => build_tools::inspect::cli::run(&args)?,
        Cli::Build(options) => {
            let report = build_cells(&options)?;
            if !options.quiet {
                println!("{}", report.summary());
            }
        }
        Cli::Sign(options, key) => {
            let report = build_cells(&options)?;
            let signed = build_tools::sign::sign_manifest(&report.cells_dir, &key)?;
            if !options.quiet {
                println!("{}", report.summary());
                println!(
                    "signed {signed} object(s) anew with {}; {} listed in {}",
                    key.display(),
                    report.manifest.cells.len(),
                    report.manifest_path.display()
                );
            }
        }
        Cli::Keygen(dir) => {
            let (secret, public) = build_tools::sign::keygen(&dir)?;
            println!(
                "wrote {} (secret: keep it private) and {} (give it to nano_core --trust)",
                secret.display(),
                public.display()
            );
        }
        Cli::Demo(options) => {
            let report = build_cells(&options)?;
            if !options.quiet {
                println!("{}\n", report.summary());
            }
            build_tools::demo::run_nano_core(&report, &[])?;
        }
        Cli::Upgrades(options, cargo_args) => {
            let root = match options.workspace_root {
                Some(root) => root,
                None => find_workspace_root(
                    &std::env::current_dir().context("cannot read the current directory")?,
                )?,
            };
            let ws = Workspace::load(&root, options.target_dir.as_deref())
                .with_context(|| format!("cannot read the workspace at {}", root.display()))?;
            build_tools::upgrades::run_cargo_in_shadows(&ws, &cargo_args)?;
        }
        Cli::Run(options) => {
            let report = build_cells(&options.build)?;
            if !options.build.quiet {
                println!("{}\n", report.summary());
            }
            let socket = options
                .socket
                .clone()
                .unwrap_or_else(|| control::default_socket(&report.target_dir));
            let args = options.nano_core_args(&socket)?;
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            build_tools::demo::run_nano_core(&report, &args)?;
        }
        Cli::Qemu(options) => build_tools::qemu_cli::run(&options)?,
        Cli::Test(options) => {
            let root = find_workspace_root(
                &std::env::current_dir().context("cannot read the current directory")?,
            )?;
            let machine = build_tools::test_suite::programs::Machine::current();
            build_tools::test_suite::run(&root, options, &machine)?;
        }
        Cli::New { kind, name, build } => {
            build_tools::new_cell::create_and_build(kind, &name, build)?
        }
        Cli::Swap {
            target,
            cell,
            object,
            fresh,
            force,
        } => {
            let cwd = std::env::current_dir().context("cannot read the current directory")?;
            let flags = control::SwapFlags { fresh, force };
            let line = control::swap_request(&cell, object.as_deref(), flags, &cwd)?;
            send(&target, &line)?;
        }
        Cli::Request { target, line } => send(&target, &line)?,
        Cli::Ctl { target, request } => send(&target, &request.join(" "))?,
    }
    Ok(())
}

fn main() -> ExitCode {
    // `cargo cell ... | head -1`: a closed pipe ends the process quietly, as it ends `cat`, instead
    // of making `print!` panic (Rust ignores SIGPIPE by default).
    // SAFETY: restoring a signal's default disposition before any thread starts.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    let cli = match parse(std::env::args().skip(1).collect()) {
        Ok(cli) => cli,
        Err(err) => {
            eprintln!("error: {err:#}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let quiet = match &cli {
        Cli::Build(options) | Cli::Demo(options) | Cli::Sign(options, _) => options.quiet,
        Cli::Run(options) => options.build.quiet,
        _ => false,
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) if err.is::<ServerRefused>() => ExitCode::FAILURE,
        Err(err) => {
            // Unless quiet, the compiler's diagnostics were already forwarded while cargo ran:
            // then name the failing crates without repeating them.
            match err.downcast_ref::<BuildFailed>() {
                Some(failed) if !quiet => eprintln!("error: {}", failed.summary()),
                _ => eprintln!("error: {err:#}"),
            }
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn run_takes_watch_load_and_socket() {
        let Cli::Run(o) = parse(args("run --watch --load 3 --socket /tmp/s.sock -q")).unwrap()
        else {
            panic!("not run")
        };
        assert!(o.watch && o.build.quiet);
        assert_eq!(o.load, Some(3));
        assert_eq!(o.socket.as_deref(), Some(Path::new("/tmp/s.sock")));
        let Cli::Run(o) = parse(args("run --trust keys/cell-signing.pub")).unwrap() else {
            panic!("not run")
        };
        assert_eq!(o.trust.as_deref(), Some(Path::new("keys/cell-signing.pub")));
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(
            o.nano_core_args(Path::new("/s.sock")).unwrap(),
            [
                "--serve".to_string(),
                "/s.sock".into(),
                "--trust".into(),
                cwd.join("keys/cell-signing.pub").to_str().unwrap().into(),
            ]
        );
        assert!(parse(args("run --trust")).is_err());
        assert!(parse(args("run --load many")).is_err());
        assert!(parse(args("run --load")).is_err());
        assert!(parse(args("run --fresh")).is_err());
    }

    #[test]
    fn swap_takes_a_cell_an_optional_object_and_fresh() {
        let Cli::Swap {
            target,
            cell,
            object,
            fresh,
            force,
        } = parse(args("cell swap memfs x/memfs.o --fresh --socket s")).unwrap()
        else {
            panic!("not swap")
        };
        assert_eq!(cell, "memfs");
        assert_eq!(object.as_deref(), Some(Path::new("x/memfs.o")));
        assert!(fresh && !force);
        assert_eq!(target.socket.as_deref(), Some(Path::new("s")));
        assert!(matches!(
            parse(args("swap klog --fresh --force")).unwrap(),
            Cli::Swap {
                fresh: true,
                force: true,
                ..
            }
        ));
        assert!(parse(args("swap klog --force")).is_err());
        assert!(matches!(
            parse(args("swap memfs")).unwrap(),
            Cli::Swap {
                object: None,
                fresh: false,
                ..
            }
        ));
        assert!(parse(args("swap")).is_err());
        assert!(parse(args("swap memfs a b")).is_err());
        assert!(parse(args("swap memfs --frsh")).is_err());
    }

    #[test]
    fn load_and_unload_take_one_argument_and_a_namespace() {
        let Cli::Request { target, line } =
            parse(args("cell load greet --ns test --socket s")).unwrap()
        else {
            panic!("not load")
        };
        assert_eq!(line, "load greet --ns test");
        assert_eq!(target.socket.as_deref(), Some(Path::new("s")));
        assert!(
            matches!(parse(args("unload x")), Ok(Cli::Request { line, .. }) if line == "unload x")
        );
        for bad in [
            "load",
            "unload",
            "load a b",
            "load a --ns",
            "unload a --fresh",
        ] {
            assert!(parse(args(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn ctl_passes_the_request_through() {
        let Cli::Ctl { target, request } =
            parse(args("ctl swap memfs --fresh --socket /s")).unwrap()
        else {
            panic!("not ctl")
        };
        assert_eq!(request, ["swap", "memfs", "--fresh"]);
        assert_eq!(target.socket.as_deref(), Some(Path::new("/s")));
        assert!(parse(args("ctl")).is_err());
        assert!(parse(args("ctl --socket")).is_err());
    }
}
