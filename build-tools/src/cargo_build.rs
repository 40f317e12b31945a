//! Running the one `cargo build` that compiles the base image and every cell, and reading its
//! JSON messages.

use std::collections::HashMap;
use std::fmt;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result};
use serde::Deserialize;

use crate::workspace::{cargo_binary, Workspace};

/// What the build produced.
#[derive(Debug, Default)]
pub struct CargoArtifacts {
    /// Package id to the `.rlib` of its library target.
    pub rlibs: HashMap<String, PathBuf>,
    /// The `nano_core` executable, if it was built.
    pub nano_core: Option<PathBuf>,
    /// Every library unit the build compiled (a package can have several, built with other
    /// features for build scripts and proc macros than for the code that runs).
    pub units: Vec<LibUnit>,
}

/// One library unit of a build: a package compiled with one set of features.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LibUnit {
    /// Cargo's package id.
    pub package_id: String,
    /// Its `.rlib`.
    pub rlib: PathBuf,
    /// The features it was compiled with.
    pub features: Vec<String>,
}

/// The error `build_cells` returns when `cargo build` fails. Its `Display` shows the summary and the
/// compiler's errors; unless the build was quiet, those were already forwarded to stderr while it
/// ran, and [`BuildFailed::summary`] gives the form without them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildFailed {
    /// The workspace packages that had compile errors (empty when cargo failed otherwise).
    pub crates: Vec<String>,
    /// The rendered compiler errors.
    pub errors: Vec<String>,
    /// Cargo's exit status, as text.
    pub status: String,
}

impl BuildFailed {
    /// One line naming the failing crates, without the diagnostics.
    pub fn summary(&self) -> String {
        if self.crates.is_empty() {
            format!(
                "cargo build failed ({}); see cargo's output above",
                self.status
            )
        } else {
            let names: Vec<String> = self.crates.iter().map(|c| format!("`{c}`")).collect();
            format!(
                "cargo build failed: {} did not compile ({})",
                names.join(", "),
                self.status
            )
        }
    }
}

impl fmt::Display for BuildFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.summary())?;
        for error in &self.errors {
            write!(f, "\n\n{}", error.trim_end())?;
        }
        Ok(())
    }
}

impl std::error::Error for BuildFailed {}

/// Runs `cargo build --message-format=json -p <nano_core> -p <cell>...` in the workspace root.
///
/// Normally compiler diagnostics are forwarded to stderr as rendered text and cargo's own output
/// goes straight to stderr. With `quiet`, nothing is printed: cargo runs with `--quiet`, its stderr
/// is collected, and a failure carries the diagnostics (or, when there are none, cargo's stderr).
/// Fails with [`BuildFailed`] when the build fails.
pub fn run_cargo_build(
    ws: &Workspace,
    target_dir: Option<&Path>,
    quiet: bool,
) -> Result<CargoArtifacts> {
    let mut packages: Vec<&str> = ws.nano_core.iter().map(String::as_str).collect();
    packages.extend(ws.cells.iter().map(|c| c.id.as_str()));
    run_cargo(&CargoRun {
        ws,
        packages,
        target_dir,
        quiet,
        crate_label: &|name| name.to_owned(),
        path_rewrites: &[],
    })
}

/// One `cargo build --message-format=json` of some packages of a workspace.
pub(crate) struct CargoRun<'a> {
    /// The workspace to build in.
    pub ws: &'a Workspace,
    /// The `-p` specs.
    pub packages: Vec<&'a str>,
    /// Overrides cargo's target directory.
    pub target_dir: Option<&'a Path>,
    /// See [`run_cargo_build`].
    pub quiet: bool,
    /// How a failing package is named in [`BuildFailed::crates`], given its package name.
    pub crate_label: &'a dyn Fn(&str) -> String,
    /// `(from, to)` replacements applied to the compiler's rendered diagnostics (the upgrades'
    /// shadow workspace names their source by the path of the cell they replace).
    pub path_rewrites: &'a [(String, String)],
}

/// Runs the build `run` describes; see [`run_cargo_build`].
pub(crate) fn run_cargo(run: &CargoRun<'_>) -> Result<CargoArtifacts> {
    let CargoRun {
        ws,
        ref packages,
        target_dir,
        quiet,
        crate_label,
        path_rewrites,
    } = *run;
    if packages.is_empty() {
        return Ok(CargoArtifacts::default());
    }
    let mut cmd = Command::new(cargo_binary());
    // Plain `json` (not `json-render-diagnostics`): only then does cargo put the compiler's
    // diagnostics on stdout, where we can tell which crate failed and keep the text for the error.
    cmd.args(["build", "--message-format=json"])
        .current_dir(&ws.root)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(if quiet {
            Stdio::piped()
        } else {
            Stdio::inherit()
        });
    for package in packages {
        cmd.args(["-p", package]);
    }
    if quiet {
        cmd.arg("--quiet");
    }
    if let Some(dir) = target_dir {
        cmd.env("CARGO_TARGET_DIR", dir);
    }
    let mut child = cmd.spawn().context("cannot run `cargo build`")?;
    let stdout = child
        .stdout
        .take()
        .context("`cargo build` has no stdout pipe")?;
    // Drain a piped stderr on its own thread so that neither pipe can fill up and block cargo.
    let stderr_reader = child.stderr.take().map(|mut pipe| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    });

    let mut artifacts = CargoArtifacts::default();
    let mut failed = BuildFailed {
        crates: Vec::new(),
        errors: Vec::new(),
        status: String::new(),
    };
    let mut finished_ok = None;
    let stderr = std::io::stderr();
    for line in BufReader::new(stdout).lines() {
        let line = line.context("cannot read the output of `cargo build`")?;
        let Ok(message) = serde_json::from_str::<Event>(&line) else {
            // Not one of cargo's messages (should not happen): pass it on.
            if !quiet {
                let _ = writeln!(stderr.lock(), "{line}");
            }
            continue;
        };
        match message {
            Event::CompilerArtifact {
                package_id,
                target,
                filenames,
                executable,
                features,
            } => {
                if target.kind.iter().any(|k| k == "lib" || k == "rlib") {
                    let rlib = filenames
                        .into_iter()
                        .find(|f| f.extension().is_some_and(|e| e == "rlib"));
                    if let Some(rlib) = rlib {
                        artifacts.units.push(LibUnit {
                            package_id: package_id.clone(),
                            rlib: rlib.clone(),
                            features,
                        });
                        artifacts.rlibs.insert(package_id, rlib);
                    }
                } else if ws.nano_core.as_deref() == Some(package_id.as_str()) {
                    // Prefer the binary named like the package when there are several.
                    if artifacts.nano_core.is_none() || target.name == crate::workspace::NANO_CORE {
                        artifacts.nano_core = executable.or(artifacts.nano_core.take());
                    }
                }
            }
            Event::CompilerMessage {
                package_id,
                target,
                mut message,
            } => {
                if let Some(rendered) = &mut message.rendered {
                    for (from, to) in path_rewrites {
                        if rendered.contains(from.as_str()) {
                            *rendered = rendered.replace(from.as_str(), to);
                        }
                    }
                }
                if let (Some(rendered), false) = (&message.rendered, quiet) {
                    let _ = write!(stderr.lock(), "{rendered}");
                }
                if message.level.starts_with("error") {
                    let name = crate_label(ws.package_name(&package_id).unwrap_or(&target.name));
                    if !failed.crates.contains(&name) {
                        failed.crates.push(name);
                    }
                    if let Some(rendered) = message.rendered {
                        failed.errors.push(rendered);
                    }
                }
            }
            Event::BuildFinished { success } => finished_ok = Some(success),
            Event::Other => {}
        }
    }
    let status = child.wait().context("cannot wait for `cargo build`")?;
    let cargo_stderr = stderr_reader.and_then(|reader| reader.join().ok());
    if status.success() && finished_ok != Some(false) {
        return Ok(artifacts);
    }
    failed.status = status.to_string();
    if let (Some(text), true) = (cargo_stderr, failed.errors.is_empty()) {
        failed.errors.push(text);
    }
    Err(failed.into())
}

/// The cargo JSON messages this module reads (`reason` selects the variant).
#[derive(Deserialize)]
#[serde(tag = "reason", rename_all = "kebab-case")]
enum Event {
    CompilerArtifact {
        package_id: String,
        target: Target,
        #[serde(default)]
        filenames: Vec<PathBuf>,
        executable: Option<PathBuf>,
        #[serde(default)]
        features: Vec<String>,
    },
    CompilerMessage {
        package_id: String,
        target: Target,
        message: Diagnostic,
    },
    BuildFinished {
        success: bool,
    },
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
struct Target {
    name: String,
    #[serde(default)]
    kind: Vec<String>,
}

#[derive(Deserialize)]
struct Diagnostic {
    level: String,
    rendered: Option<String>,
}
