//! The steps of the test suite, in `.ci/run`'s order: the style and shape gates first (cheap next
//! to the build), then the bare-metal workspace's gates, the new versions' tests, the fuzz
//! targets' replay, and the workspace's tests.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

/// The hard limit on a Rust file's lines (the house's shape, issue 18).
pub const MAX_LINES: usize = 800;

/// What a step does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Runs `argv` in the directory `dir` (relative to the workspace root).
    Run {
        /// The program and its arguments.
        argv: &'static [&'static str],
        /// Where, relative to the workspace root.
        dir: &'static str,
    },
    /// Runs the script `path` (relative to the workspace root) if it exists and is executable.
    Script {
        /// The script.
        path: &'static str,
    },
    /// Fails naming every Rust file git tracks with more than [`MAX_LINES`] lines.
    LineGate,
}

/// One step of the suite.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Step {
    /// A short name for people.
    pub name: &'static str,
    /// What it runs.
    pub action: Action,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.action {
            Action::Run { argv, dir: "." } => write!(f, "{}", argv.join(" ")),
            Action::Run { argv, dir } => write!(f, "(cd {dir} && {})", argv.join(" ")),
            Action::Script { path } => write!(f, "{path}"),
            Action::LineGate => write!(
                f,
                "no Rust file over {MAX_LINES} lines (git ls-files '*.rs' | xargs wc -l)"
            ),
        }
    }
}

const fn run(name: &'static str, argv: &'static [&'static str]) -> Step {
    Step {
        name,
        action: Action::Run { argv, dir: "." },
    }
}

/// Every step, in order: what `.ci/run` ran before it called `cargo cell test`.
pub const STEPS: &[Step] = &[
    run("toolchain", &["rustup", "show", "active-toolchain"]),
    run("cargo version", &["cargo", "--version"]),
    run("qemu version", &["qemu-system-x86_64", "--version"]),
    run("fmt", &["cargo", "fmt", "--all", "--check"]),
    run(
        "clippy",
        &[
            "cargo",
            "clippy",
            "--workspace",
            "--all-targets",
            "--quiet",
            "--",
            "-D",
            "warnings",
        ],
    ),
    run("import circles", &["python3", ".ci/import_cycles.py", "."]),
    Step {
        name: "file length",
        action: Action::LineGate,
    },
    Step {
        name: "bare_metal fmt",
        action: Action::Run {
            argv: &["cargo", "fmt", "--check"],
            dir: "bare_metal",
        },
    },
    Step {
        name: "bare_metal clippy",
        action: Action::Run {
            argv: &[
                "cargo",
                "clippy",
                "--release",
                "--quiet",
                "--",
                "-D",
                "warnings",
            ],
            dir: "bare_metal",
        },
    },
    run(
        "upgrades' tests",
        &["cargo", "cell", "upgrades", "test", "--quiet"],
    ),
    Step {
        name: "fuzz targets",
        action: Action::Script { path: "fuzz/ci.sh" },
    },
    run("workspace tests", &["cargo", "test", "--workspace"]),
];

/// Variables `cargo run` sets for the program it runs, which describe `build-tools` and would
/// mislead the cargo commands the steps start.
fn is_cargo_run_variable(name: &str) -> bool {
    [
        "CARGO_PKG_",
        "CARGO_MANIFEST_",
        "CARGO_CRATE_",
        "CARGO_BIN_",
    ]
    .iter()
    .any(|p| name.starts_with(p))
        || name == "CARGO_PRIMARY_PACKAGE"
}

/// Runs `step` in the workspace at `root`; `Err` says how it failed.
pub fn run_step(step: &Step, root: &Path) -> Result<()> {
    let (argv, dir): (Vec<String>, PathBuf) = match step.action {
        Action::LineGate => {
            let over = files_over_limit(root, &tracked_rust_files(root)?, MAX_LINES)?;
            for (file, lines) in &over {
                println!("over {MAX_LINES} lines: {} {lines}", file.display());
            }
            if !over.is_empty() {
                bail!("{} file(s) over {MAX_LINES} lines", over.len());
            }
            return Ok(());
        }
        Action::Script { path } => {
            let script = root.join(path);
            if !is_executable(&script) {
                println!("{path} is not there or not executable: nothing to run");
                return Ok(());
            }
            (vec![script.to_string_lossy().into_owned()], root.into())
        }
        Action::Run { argv, dir } => (argv.iter().map(|a| a.to_string()).collect(), root.join(dir)),
    };
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..]).current_dir(&dir);
    for (name, _) in std::env::vars_os() {
        if name.to_str().is_some_and(is_cargo_run_variable) {
            cmd.env_remove(name);
        }
    }
    let status = cmd
        .status()
        .with_context(|| format!("cannot run `{}`", argv.join(" ")))?;
    if !status.success() {
        bail!("{status}");
    }
    Ok(())
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The Rust files git tracks under `root`, relative to it.
fn tracked_rust_files(root: &Path) -> Result<Vec<PathBuf>> {
    let output = Command::new("git")
        .args(["ls-files", "-z", "*.rs"])
        .current_dir(root)
        .output()
        .context("cannot run `git ls-files`")?;
    if !output.status.success() {
        bail!(
            "`git ls-files` failed in {}: {}",
            root.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(output
        .stdout
        .split(|b| *b == 0)
        .filter(|name| !name.is_empty())
        .map(|name| PathBuf::from(String::from_utf8_lossy(name).into_owned()))
        .collect())
}

/// Each of `files` (relative to `root`) with more than `limit` lines, and its line count (lines
/// as `wc -l` counts them: newline characters). A tracked file deleted from the work tree is
/// skipped.
pub fn files_over_limit(
    root: &Path,
    files: &[PathBuf],
    limit: usize,
) -> Result<Vec<(PathBuf, usize)>> {
    let mut over = Vec::new();
    for file in files {
        let bytes = match std::fs::read(root.join(file)) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", file.display())),
        };
        let lines = bytes.iter().filter(|b| **b == b'\n').count();
        if lines > limit {
            over.push((file.clone(), lines));
        }
    }
    Ok(over)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_gate_names_each_file_over_the_limit_with_its_count() {
        let dir = std::env::temp_dir().join(format!("cell-test-lines-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("a")).unwrap();
        std::fs::write(dir.join("a/long.rs"), "x\n".repeat(5)).unwrap();
        std::fs::write(dir.join("short.rs"), "x\n".repeat(4)).unwrap();
        let files = ["a/long.rs", "short.rs", "gone.rs"].map(PathBuf::from);
        let over = files_over_limit(&dir, &files, 4).unwrap();
        assert_eq!(over, [(PathBuf::from("a/long.rs"), 5)]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_steps_are_ci_runs_in_its_order_ending_with_the_workspace_tests() {
        let names: Vec<&str> = STEPS.iter().map(|s| s.name).collect();
        let at = |n: &str| names.iter().position(|x| *x == n).unwrap();
        assert!(at("fmt") < at("clippy") && at("clippy") < at("import circles"));
        assert!(at("file length") < at("bare_metal fmt"));
        assert!(at("upgrades' tests") < at("fuzz targets"));
        assert_eq!(names.last(), Some(&"workspace tests"));
        assert_eq!(
            STEPS[at("bare_metal clippy")].to_string(),
            "(cd bare_metal && cargo clippy --release --quiet -- -D warnings)"
        );
    }

    #[test]
    fn cargo_runs_own_variables_are_not_passed_on() {
        assert!(is_cargo_run_variable("CARGO_PKG_NAME"));
        assert!(is_cargo_run_variable("CARGO_MANIFEST_DIR"));
        assert!(!is_cargo_run_variable("CARGO_HOME"));
        assert!(!is_cargo_run_variable("CARGO_TARGET_DIR"));
    }
}
