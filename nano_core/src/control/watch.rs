//! `--watch`: swapping in every live cell whose object a rebuild changed.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate_metadata::{CellKind, Manifest, ManifestEntry};
use loader::SwapOptions;

use super::swap::render_swap;
use crate::kernel::Kernel;

/// `--watch`: notices when `cargo cell build` rewrote the manifest and swaps in every live cell
/// of `_kernel` whose object changed.
///
/// A manifest entry counts as changed when its SHA-256 differs from the manifest the watch saw
/// before (the one the boot read, at first). For each live cell with a changed entry whose hash
/// differs from the live cell's, the object is checked against the manifest's hash and swapped
/// in. When both the cell's own entry (kernel or libs) and its `upgrades` entry changed, the one
/// the cell runs now is followed; otherwise its own.
pub struct Watch {
    path: PathBuf,
    /// The manifest file's (mtime, inode, length) last acted on.
    seen: Option<Stamp>,
    /// The stamp seen at the last poll, acted on once it holds for two polls.
    settling: Option<Stamp>,
    manifest: Manifest,
}

type Stamp = (Option<std::time::SystemTime>, u64, u64);

fn stamp(path: &Path) -> Option<Stamp> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok(), meta.ino(), meta.len()))
}

impl Watch {
    /// Watches the manifest of `kernel`'s cells directory, starting from the manifest it booted.
    pub fn new(kernel: &Kernel) -> Watch {
        let path = kernel.cells_dir().join(crate_metadata::MANIFEST_FILE);
        let seen = stamp(&path);
        Watch {
            path,
            seen,
            settling: seen,
            manifest: kernel.manifest().clone(),
        }
    }

    /// Looks at the manifest once; when it changed (and has not changed again since the last
    /// poll), swaps the cells whose objects changed. Returns the lines to print.
    pub fn poll(&mut self, kernel: &mut Kernel) -> Vec<String> {
        let now = stamp(&self.path);
        let settled = now == self.settling;
        self.settling = now;
        if now.is_none() || now == self.seen || !settled {
            return Vec::new();
        }
        self.seen = now;
        let mut out = vec![format!("nano_core: watch: {} changed", self.path.display())];
        let manifest = match kernel.reload_manifest() {
            Ok(m) => m.clone(),
            Err(e) => {
                out.push(format!(
                    "nano_core: watch: {}; keeping the cells as they are",
                    crate::errors::render(&e)
                ));
                return out;
            }
        };
        let plan = self.plan(kernel, &manifest);
        self.manifest = manifest;
        if plan.is_empty() {
            out.push("nano_core: watch: no live cell has a new object".into());
        }
        for entry in plan {
            out.extend(swap_entry(kernel, &entry));
        }
        out
    }

    /// The entries to swap in: one per live cell with a changed, different object.
    fn plan(&self, kernel: &Kernel, manifest: &Manifest) -> Vec<ManifestEntry> {
        let changed = |e: &&ManifestEntry| {
            self.manifest
                .get(e.kind, &e.name)
                .is_none_or(|old| old.sha256 != e.sha256)
        };
        let mut plan: Vec<ManifestEntry> = Vec::new();
        for entry in manifest.cells.iter().filter(changed) {
            // Dependency cells and cells rebuilt for a dependency upgrade move only with the
            // upgrade that needs them (its entry changes too).
            if !matches!(
                entry.kind,
                CellKind::Kernel | CellKind::Libs | CellKind::Upgrades
            ) || entry.rebuilt_for.is_some()
            {
                continue;
            }
            let Some(live) = kernel
                .cell_id(&entry.name)
                .and_then(|id| kernel.system().registry().cell(id))
            else {
                continue;
            };
            if live.sha256 == Some(entry.sha256) {
                continue;
            }
            let runs = |e: &ManifestEntry| {
                self.manifest
                    .get(e.kind, &e.name)
                    .is_some_and(|old| live.sha256 == Some(old.sha256))
            };
            match plan.iter_mut().find(|p| p.name == entry.name) {
                None => plan.push(entry.clone()),
                Some(planned) => {
                    // Both the cell's own entry and its upgrade changed: follow the one it runs,
                    // else its own kind.
                    let prefer_new = if runs(entry) != runs(planned) {
                        runs(entry)
                    } else {
                        entry.kind != CellKind::Upgrades
                    };
                    if prefer_new {
                        *planned = entry.clone();
                    }
                }
            }
        }
        plan
    }
}

/// Swaps the live cell named by `entry` for `entry`'s object; the lines to print.
fn swap_entry(kernel: &mut Kernel, entry: &ManifestEntry) -> Vec<String> {
    let path = kernel.cells_dir().join(&entry.object);
    let mut out = vec![format!(
        "nano_core: watch: swapping {} for {}",
        entry.name,
        path.display()
    )];
    let bytes = match crate::files::read_regular(&path, entry.size) {
        Ok(b) => b,
        Err(e) => {
            out.push(format!(
                "nano_core: watch: swapping {} failed: {e}",
                entry.name
            ));
            return out;
        }
    };
    if loader::sha256(&bytes) != entry.sha256 {
        out.push(format!(
            "nano_core: watch: swapping {} failed: {} does not match the manifest's SHA-256",
            entry.name,
            path.display()
        ));
        return out;
    }
    match kernel.swap_bytes(&entry.name, &bytes, &SwapOptions::default()) {
        Ok(report) => {
            out.extend(
                render_swap(kernel, &report)
                    .into_iter()
                    .map(|l| format!("  {l}")),
            );
            out.push(format!("nano_core: watch: swapped {}", entry.name));
        }
        Err(e) => {
            let message = crate::errors::render(&e);
            let mut lines = message.lines();
            out.push(format!(
                "nano_core: watch: swapping {} failed: {}",
                entry.name,
                lines.next().unwrap_or("")
            ));
            out.extend(lines.map(|l| format!("  {l}")));
            out.push("nano_core: watch: the system keeps running the old version".into());
        }
    }
    out
}
