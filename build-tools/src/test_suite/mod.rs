//! `cargo cell test`: the whole test suite in one command, on a fresh machine.
//!
//! First the programs the tests need ([`programs::PROGRAMS`]: Chromium, QEMU, gdb, perf, the
//! nightly toolchain and cargo-fuzz for the fuzz targets, ...) are looked for; what is missing is
//! installed with the system's package manager when this process can (apt-get as root, or through
//! `sudo -n`; rustup and `cargo install` for the toolchain pieces), and otherwise the run stops
//! with the exact commands to type. Then every step of [`steps::STEPS`] runs in order, the first
//! failure ends the run and names its step and command. `.ci/run` is this command.
//!
//! `--check` only looks: it prints what is missing and what would be run to install it, and runs
//! nothing (exit status 1 when something is missing). `--list` prints the steps.

pub mod programs;
pub mod steps;

use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Result};

use programs::{InstallPlan, Machine};

/// `cargo cell test`'s options.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TestOptions {
    /// Only report what is missing and how it would be installed.
    pub check: bool,
    /// Only list the steps.
    pub list: bool,
}

/// Parses `cargo cell test`'s arguments.
pub fn parse(args: impl Iterator<Item = String>) -> Result<TestOptions> {
    let mut options = TestOptions::default();
    for arg in args {
        match arg.as_str() {
            "--check" => options.check = true,
            "--list" => options.list = true,
            other => bail!("unknown option `{other}` for `cargo cell test` (--check, --list)"),
        }
    }
    Ok(options)
}

/// The run stopped before the steps: programs are missing that this process cannot install (the
/// message names the commands to run), or `--check` found some missing.
#[derive(Debug)]
pub struct MissingPrograms(pub String);

impl std::fmt::Display for MissingPrograms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for MissingPrograms {}

/// A step failed (the message names it and its command).
#[derive(Debug)]
pub struct StepFailed(pub String);

impl std::fmt::Display for StepFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StepFailed {}

/// Runs `cargo cell test` in the workspace at `root` on `machine`.
pub fn run(root: &Path, options: TestOptions, machine: &Machine) -> Result<()> {
    if options.list {
        for (i, step) in steps::STEPS.iter().enumerate() {
            println!("{:2}. {}: {step}", i + 1, step.name);
        }
        return Ok(());
    }
    ensure_programs(root, options.check, machine)?;
    if options.check {
        println!("cargo cell test: every program the tests need is here");
        return Ok(());
    }
    let started = Instant::now();
    let total = steps::STEPS.len();
    for (i, step) in steps::STEPS.iter().enumerate() {
        println!(
            "\n== cargo cell test [{}/{total}] {}: {step}",
            i + 1,
            step.name
        );
        if let Err(err) = steps::run_step(step, root) {
            return Err(StepFailed(format!(
                "step {} of {total}, `{}`, failed ({err:#}): {step}\n\
                 (fix it, then run `cargo cell test` again; the command above runs that step alone)",
                i + 1,
                step.name
            ))
            .into());
        }
    }
    let secs = started.elapsed().as_secs();
    println!(
        "\ncargo cell test: all {total} steps passed in {}m {:02}s",
        secs / 60,
        secs % 60
    );
    Ok(())
}

/// Finds the missing programs and installs them, or stops with what to run.
fn ensure_programs(root: &Path, check: bool, machine: &Machine) -> Result<()> {
    let missing = programs::missing(machine);
    if missing.is_empty() {
        return Ok(());
    }
    let mut report = String::from("cargo cell test: the tests need programs this machine lacks:\n");
    for p in &missing {
        report.push_str(&format!("  {:<20} for {}\n", p.command, p.needed_by));
    }
    let commands = |commands: &[programs::InstallCommand]| {
        commands
            .iter()
            .map(|c| format!("  {c}\n"))
            .collect::<String>()
    };
    match programs::plan(&missing, machine) {
        InstallPlan::Nothing => Ok(()),
        InstallPlan::Manual {
            reason,
            commands: c,
        } => {
            report.push_str(&format!(
                "they cannot be installed from here ({reason}); install them with\n{}\
                 then run `cargo cell test` again",
                commands(&c)
            ));
            Err(MissingPrograms(report).into())
        }
        InstallPlan::Install(c) if check => {
            report.push_str(&format!(
                "`cargo cell test` would install them with\n{}",
                commands(&c)
            ));
            Err(MissingPrograms(report).into())
        }
        InstallPlan::Install(c) => {
            print!("{report}installing them:\n{}", commands(&c));
            for command in &c {
                println!("+ {command}");
                command.run(root).map_err(|e| {
                    MissingPrograms(format!(
                        "{report}installing them failed: {e}\nrun these yourself, then `cargo \
                         cell test` again:\n{}",
                        commands(&c)
                    ))
                })?;
            }
            let still: Vec<&str> = programs::missing(machine)
                .iter()
                .map(|p| p.command)
                .collect();
            if !still.is_empty() {
                bail!(MissingPrograms(format!(
                    "installed, yet still missing: {}",
                    still.join(", ")
                )));
            }
            Ok(())
        }
    }
}
