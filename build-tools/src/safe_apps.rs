//! Safe applications: every application cell is compiled with `unsafe` forbidden in its own code.
//!
//! After the one `cargo build` of the workspace, each application's library is compiled again
//! with `cargo rustc -p <app> --lib -- -F unsafe_code`: the flag reaches that crate alone, so its
//! dependency cells (vetted crates, listed in the manifest) and the kernel's cells are built as
//! before, and no other crate's symbol hash moves. The object cut from that rlib is the one the
//! manifest lists, with [`ManifestEntry::unsafe_forbidden`](crate_metadata::ManifestEntry) set; a
//! signature covers the claim with the object's SHA-256. An application whose code uses `unsafe`
//! fails the build with [`UnsafeApplication`], naming it, with the compiler's diagnostics. New
//! versions of applications (`cells/upgrades/<app>`) and applications rebuilt against a
//! dependency upgrade (`upgrades/<cell>/<app>.o`) are compiled the same way in their shadow
//! workspaces ([`build_safe_cells`]) and carry the same claim.
//!
//! `-F` (forbid) cannot be lifted by an `#[allow(unsafe_code)]` inside the crate. What it does not
//! cover: `unsafe` inside macros of other crates marked `allow_internal_unsafe` (the toolchain's
//! own, such as `thread_local!`), and the code of the dependency crates.

use std::collections::HashSet;
use std::fmt;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::{Context, Result};
use crate_metadata::CellKind;

use crate::cargo_build::CargoArtifacts;
use crate::workspace::{cargo_binary, CellPackage, Workspace};

/// The flags an application's own crate is compiled with.
pub const SAFE_APP_FLAGS: &[&str] = &["-F", "unsafe_code"];

/// An application cell whose own code uses `unsafe`: the build refuses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsafeApplication {
    /// The application cell.
    pub cell: String,
    /// The compiler's rendered errors.
    pub errors: Vec<String>,
}

impl fmt::Display for UnsafeApplication {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "application cell `{}` does not compile with `unsafe` forbidden ({}); applications \
             are safe Rust (move the unsafe code into a kernel or library cell and export a safe \
             function to applications)",
            self.cell,
            SAFE_APP_FLAGS.join(" ")
        )?;
        for e in &self.errors {
            write!(f, "\n{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for UnsafeApplication {}

/// Compiles every application cell of `ws` again with [`SAFE_APP_FLAGS`] and points
/// `artifacts.rlibs` at the rlibs so built. Returns the package ids of the applications built so.
pub fn build_safe_apps(
    ws: &Workspace,
    target_dir: Option<&std::path::Path>,
    artifacts: &mut CargoArtifacts,
) -> Result<HashSet<String>> {
    build_safe_cells(ws, target_dir, &ws.cells, artifacts)
}

/// [`build_safe_apps`] for the application cells among `cells` (packages of `ws`): a shadow
/// workspace's new version of an application, or the applications rebuilt against a dependency
/// upgrade, are compiled as the main build compiles the live ones.
pub fn build_safe_cells<'a>(
    ws: &Workspace,
    target_dir: Option<&std::path::Path>,
    cells: impl IntoIterator<Item = &'a CellPackage>,
    artifacts: &mut CargoArtifacts,
) -> Result<HashSet<String>> {
    let mut safe = HashSet::new();
    for cell in cells.into_iter().filter(|c| c.kind == CellKind::Apps) {
        let rlib = compile_forbidding_unsafe(ws, target_dir, &cell.id, &cell.name)?;
        artifacts.rlibs.insert(cell.id.clone(), rlib);
        safe.insert(cell.id.clone());
    }
    Ok(safe)
}

/// `cargo rustc -p <package> --lib -- -F unsafe_code`: the rlib it wrote.
fn compile_forbidding_unsafe(
    ws: &Workspace,
    target_dir: Option<&std::path::Path>,
    package: &str,
    cell: &str,
) -> Result<PathBuf> {
    let mut cmd = Command::new(cargo_binary());
    cmd.args([
        "rustc",
        "--quiet",
        "--message-format=json",
        "--lib",
        "-p",
        package,
        "--",
    ])
    .args(SAFE_APP_FLAGS)
    .current_dir(&ws.root)
    .stdin(Stdio::null());
    if let Some(dir) = target_dir {
        cmd.env("CARGO_TARGET_DIR", dir);
    }
    let output = cmd
        .output()
        .with_context(|| format!("cannot run `cargo rustc` for application `{cell}`"))?;
    let mut rlib = None;
    let mut errors = Vec::new();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let Ok(message) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let ours = message["package_id"].as_str() == Some(package);
        match message["reason"].as_str() {
            Some("compiler-artifact") if ours => {
                rlib = message["filenames"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|f| f.as_str())
                    .find(|f| f.ends_with(".rlib"))
                    .map(PathBuf::from);
            }
            Some("compiler-message") if ours => {
                let diagnostic = &message["message"];
                let is_error = diagnostic["level"]
                    .as_str()
                    .is_some_and(|l| l.starts_with("error"));
                if let (true, Some(text)) = (is_error, diagnostic["rendered"].as_str()) {
                    errors.push(text.to_owned());
                }
            }
            _ => {}
        }
    }
    if !output.status.success() {
        if errors.is_empty() {
            errors.push(String::from_utf8_lossy(&output.stderr).trim().to_owned());
        }
        return Err(UnsafeApplication {
            cell: cell.into(),
            errors,
        }
        .into());
    }
    rlib.with_context(|| format!("`cargo rustc` reported no rlib for application `{cell}`"))
}
