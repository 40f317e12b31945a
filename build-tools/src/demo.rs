//! `cargo cell demo`: boot the base image on the cells a build just wrote.

use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::build::BuildReport;

/// Runs the `nano_core` that `report`'s build produced on `report`'s cells, with `args` after
/// `--cells <dir>`, its output going to this process's terminal. Fails when it exits non-zero.
pub fn run_nano_core(report: &BuildReport, args: &[&str]) -> Result<()> {
    let Some(exe) = &report.nano_core else {
        bail!(
            "the workspace at {} has no nano_core binary to boot",
            report.workspace_root.display()
        );
    };
    let status = Command::new(exe)
        .arg("--cells")
        .arg(&report.cells_dir)
        .args(args)
        .current_dir(&report.workspace_root)
        .status()
        .with_context(|| format!("starting {}", exe.display()))?;
    if !status.success() {
        bail!("nano_core exited with {status}");
    }
    Ok(())
}
