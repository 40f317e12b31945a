//! `cargo cell <command>`: the cell system's command-line tool.
//!
//! Run as `cargo cell ...` through the workspace alias (`cargo run -p build-tools --bin cargo-cell
//! -- ...`), or as an installed cargo subcommand (`cargo-cell cell ...`). Every subcommand lives
//! in the library; this file only parses arguments and dispatches.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
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
             cells, runs tasks on every CPU that call them, swaps cells under that load, and
             powers off with a verdict
             --timeout <SECS> (default 60; 3600 with --shell), --build-only, --smp <N>,
             --append <WORDS> (the kernel command line), --shell (the kernel's shell on
             this terminal: what you type goes to its serial port)
    run      Build what is stale, boot nano_core and serve its control socket in the
             foreground until `cargo cell ctl quit` (or Ctrl-C)
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
    Qemu(QemuOptions),
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
}

/// `cargo cell qemu`'s options.
#[derive(Debug)]
struct QemuOptions {
    build: BuildOptions,
    /// `None`: 60 s, or an hour with `--shell`.
    timeout_secs: Option<u64>,
    build_only: bool,
    cpus: usize,
    append: String,
    shell: bool,
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

/// Takes `arg` (and its value from `args`) if it is one of the options every building command
/// has (`--workspace-root`, `--target-dir`, `-q`); returns whether it was one.
fn take_build_option(
    arg: &str,
    args: &mut impl Iterator<Item = String>,
    options: &mut BuildOptions,
) -> Result<bool> {
    match arg {
        "--workspace-root" => {
            let dir = args.next().context("--workspace-root needs a directory")?;
            options.workspace_root = Some(PathBuf::from(dir));
        }
        "--target-dir" => {
            let dir = args.next().context("--target-dir needs a directory")?;
            options.target_dir = Some(PathBuf::from(dir));
        }
        "-q" | "--quiet" => options.quiet = true,
        _ => return Ok(false),
    }
    Ok(true)
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
        "qemu" => {
            let mut options = QemuOptions {
                build: BuildOptions::default(),
                timeout_secs: None,
                build_only: false,
                cpus: build_tools::qemu::DEFAULT_CPUS,
                append: String::new(),
                shell: false,
            };
            while let Some(arg) = args.next() {
                match arg.as_str() {
                    a if take_build_option(a, &mut args, &mut options.build)? => {}
                    "--build-only" => options.build_only = true,
                    "--shell" => options.shell = true,
                    "--append" => {
                        options.append = args.next().context("--append needs kernel words")?;
                    }
                    "--smp" => {
                        let n = args.next().context("--smp needs a number of CPUs")?;
                        options.cpus = n
                            .parse::<usize>()
                            .ok()
                            .filter(|n| (1..=16).contains(n))
                            .with_context(|| format!("--smp takes 1 to 16 CPUs, not `{n}`"))?;
                    }
                    "--timeout" => {
                        let secs = args.next().context("--timeout needs a number of seconds")?;
                        options.timeout_secs = Some(
                            secs.parse::<u64>()
                                .ok()
                                .filter(|s| (1..=3600).contains(s))
                                .with_context(|| {
                                    format!("--timeout takes 1 to 3600 seconds, not `{secs}`")
                                })?,
                        );
                    }
                    "-h" | "--help" => return Ok(Cli::Help),
                    other => bail!("unknown option `{other}` for `cargo cell qemu`"),
                }
            }
            Ok(Cli::Qemu(options))
        }
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
                    "-h" | "--help" => return Ok(Cli::Help),
                    other => bail!("unknown option `{other}` for `cargo cell run`"),
                }
            }
            Ok(Cli::Run(options))
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
            let socket = socket
                .to_str()
                .with_context(|| format!("the socket path {} is not UTF-8", socket.display()))?
                .to_string();
            let load = options.load.map(|n| n.to_string());
            let mut args = vec!["--serve", socket.as_str()];
            if options.watch {
                args.push("--watch");
            }
            if let Some(load) = &load {
                args.extend(["--load", load.as_str()]);
            }
            build_tools::demo::run_nano_core(&report, &args)?;
        }
        Cli::Qemu(options) => {
            let report = build_cells(&options.build)?;
            if !options.build.quiet {
                println!("{}", report.summary());
            }
            let image = build_tools::qemu::build_image(&report, options.build.quiet)?;
            if !options.build.quiet {
                println!(
                    "bare-metal kernel: {} (build id {})\nboot module: {} ({} members; {} symbols kept in the image for the cells)",
                    image.kernel.display(),
                    crate_metadata::hex::encode(&image.build_id),
                    image.module.display(),
                    image.members.len(),
                    image.kept_symbols
                );
            }
            if !options.build_only {
                let default_secs = if options.shell { 3600 } else { 60 };
                let timeout =
                    std::time::Duration::from_secs(options.timeout_secs.unwrap_or(default_secs));
                if !options.build.quiet {
                    println!(
                        "booting under qemu-system-x86_64 on {} CPUs (serial console below)\n",
                        options.cpus
                    );
                }
                let mut cmdline = options.append.clone();
                if options.shell {
                    cmdline = format!("shell {cmdline}").trim().to_string();
                }
                let boot = build_tools::qemu::BootOptions {
                    cmdline,
                    cpus: options.cpus,
                    timeout,
                    echo: true,
                };
                // With the shell, every line typed here goes to the kernel's serial port.
                let mut forwarding = false;
                let mut forward = |_line: &str, input: &build_tools::qemu::Input| {
                    if std::mem::replace(&mut forwarding, true) {
                        return;
                    }
                    let input = input.clone();
                    std::thread::spawn(move || {
                        for line in std::io::stdin().lines() {
                            let Ok(line) = line else { break };
                            if input.send(format!("{line}\r").into_bytes()).is_err() {
                                break;
                            }
                        }
                    });
                };
                let on_line: Option<build_tools::qemu::OnLine<'_>> =
                    options.shell.then_some(&mut forward);
                let run = build_tools::qemu::boot_with(&image, &boot, on_line)?;
                if !run.succeeded() {
                    bail!("{}", build_tools::qemu::describe_failure(&run, timeout));
                }
                if !options.build.quiet {
                    println!(
                        "\nQEMU powered off with the kernel's success code after {:.1} s",
                        run.elapsed.as_secs_f64()
                    );
                }
            }
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
    fn qemu_takes_timeout_build_only_smp_append_shell_and_the_build_options() {
        let Cli::Qemu(o) =
            parse(args("qemu --timeout 30 --build-only --target-dir /t -q")).unwrap()
        else {
            panic!("not qemu")
        };
        assert_eq!(o.timeout_secs, Some(30));
        assert!(o.build_only && o.build.quiet);
        assert_eq!(o.build.target_dir.as_deref(), Some(Path::new("/t")));
        let Cli::Qemu(o) = parse(args("qemu")).unwrap() else {
            panic!("not qemu")
        };
        assert_eq!(
            (o.timeout_secs, o.build_only, o.shell),
            (None, false, false)
        );
        assert_eq!((o.cpus, o.append.as_str()), (4, ""));
        let Cli::Qemu(o) = parse(args("qemu --smp 2 --append uart-test --shell")).unwrap() else {
            panic!("not qemu")
        };
        assert_eq!((o.cpus, o.append.as_str(), o.shell), (2, "uart-test", true));
        for bad in [
            "qemu --timeout 0",
            "qemu --timeout soon",
            "qemu --timeout",
            "qemu --fast",
            "qemu --smp 0",
            "qemu --smp 17",
            "qemu --append",
        ] {
            assert!(parse(args(bad)).is_err(), "{bad}");
        }
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
