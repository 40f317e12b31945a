//! `cargo cell <command>`: the cell system's command-line tool.
//!
//! Run as `cargo cell ...` through the workspace alias (`cargo run -p build-tools --bin cargo-cell
//! -- ...`), or as an installed cargo subcommand (`cargo-cell cell ...`). Every subcommand lives
//! in the library; this file only parses arguments and dispatches.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use build_tools::{build_cells, BuildFailed, BuildOptions};

const USAGE: &str = "\
cargo cell: build and drive the cell system

USAGE:
    cargo cell <COMMAND> [OPTIONS]

COMMANDS:
    build    Build nano_core and every cell; write target/cells/<kind>/<cell>.o and
             target/cells/manifest.json (files are rewritten only when they change)
    demo     Build what is stale, boot nano_core on the cells and run its workload
    help     Print this help

OPTIONS (build, demo):
    --workspace-root <DIR>   The workspace to build (default: the one containing the current dir)
    --target-dir <DIR>       Cargo's target directory (default: the workspace's)
    -q, --quiet              Print nothing unless the build fails
";

/// A parsed command line.
enum Cli {
    Help,
    Build(BuildOptions),
    Demo(BuildOptions),
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
        "build" | "demo" => {
            let mut options = BuildOptions::default();
            while let Some(arg) = args.next() {
                match arg.as_str() {
                    "--workspace-root" => {
                        let dir = args.next().context("--workspace-root needs a directory")?;
                        options.workspace_root = Some(PathBuf::from(dir));
                    }
                    "--target-dir" => {
                        let dir = args.next().context("--target-dir needs a directory")?;
                        options.target_dir = Some(PathBuf::from(dir));
                    }
                    "-q" | "--quiet" => options.quiet = true,
                    "-h" | "--help" => return Ok(Cli::Help),
                    other => bail!("unknown option `{other}` for `cargo cell {command}`"),
                }
            }
            Ok(if command == "demo" {
                Cli::Demo(options)
            } else {
                Cli::Build(options)
            })
        }
        other => bail!("unknown command `{other}`"),
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli {
        Cli::Help => print!("{USAGE}"),
        Cli::Build(options) => {
            let report = build_cells(&options)?;
            if !options.quiet {
                println!("{}", report.summary());
            }
        }
        Cli::Demo(options) => {
            let report = build_cells(&options)?;
            if !options.quiet {
                println!("{}\n", report.summary());
            }
            build_tools::demo::run_nano_core(&report, &[])?;
        }
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
    let quiet = matches!(&cli, Cli::Build(options) | Cli::Demo(options) if options.quiet);
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
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
