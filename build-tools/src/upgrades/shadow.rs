//! Shadow workspaces: a copy of the workspace's source with upgrades in place of the cells they
//! replace, kept in step file by file (so that cargo's freshness checks see an unchanged shadow as
//! unchanged), locked while written and built, and removed when their group is gone.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use super::find::{find_upgrades, relative, Upgrade, SHADOW_DIR, UPGRADES_DIR};
use super::groups::{plan_groups, ShadowGroup};
use crate::files::write_if_changed;
use crate::workspace::{cargo_binary, CellPackage, Workspace};

/// What [`sync_shadow`] changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyncStats {
    /// Files written because they were missing or their bytes differed.
    pub written: usize,
    /// Files removed because the source no longer has them.
    pub removed: usize,
}

/// Whether a walk of the source skips the directory `dir`: build output and version control.
fn skipped_dir(dir: &Path, ws: &Workspace) -> bool {
    let name = dir.file_name().unwrap_or_default();
    name == "target" || name == ".git" || dir == ws.target_dir
}

/// Calls `found` with every file below `dir`, skipping what [`skipped_dir`] skips and `exclude`.
fn walk_files(
    dir: &Path,
    ws: &Workspace,
    exclude: &[PathBuf],
    found: &mut dyn FnMut(PathBuf),
) -> Result<()> {
    let entries = fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))?;
    let mut paths = Vec::new();
    for entry in entries {
        paths.push(
            entry
                .with_context(|| format!("cannot read {}", dir.display()))?
                .path(),
        );
    }
    paths.sort();
    for path in paths {
        if exclude.iter().any(|e| path.starts_with(e)) {
            continue;
        }
        if path.is_dir() {
            if !skipped_dir(&path, ws) {
                walk_files(&path, ws, exclude, found)?;
            }
        } else if path.is_file() {
            found(path);
        }
    }
    Ok(())
}

/// The files of `group`'s shadow workspace: path relative to the shadow root, and the file it is a
/// copy of.
pub fn shadow_files(ws: &Workspace, group: &ShadowGroup) -> Result<BTreeMap<PathBuf, PathBuf>> {
    let mut files = BTreeMap::new();
    let mut top = vec![
        "Cargo.toml",
        "Cargo.lock",
        "rust-toolchain.toml",
        "rust-toolchain",
    ];
    // Cargo reads the configuration of the directories above where it runs: a shadow inside the
    // workspace sees the workspace's own `.cargo/config.toml`; one elsewhere needs a copy.
    if !group.workspace.starts_with(&ws.root) {
        top.extend([".cargo/config.toml", ".cargo/config"]);
    }
    for name in top {
        let path = ws.root.join(name);
        if path.is_file() {
            files.insert(PathBuf::from(name), path);
        }
    }
    let mut exclude = vec![ws.root.join(UPGRADES_DIR), ws.target_dir.join(SHADOW_DIR)];
    exclude.extend(group.upgrades.iter().map(|u| u.live.dir.clone()));
    for dir in &ws.source_dirs {
        walk_files(dir, ws, &exclude, &mut |path| {
            files.insert(relative(&path, &ws.root), path);
        })?;
    }
    for upgrade in &group.upgrades {
        let live_rel = upgrade.live_rel_dir(&ws.root);
        walk_files(&upgrade.dir, ws, &[], &mut |path| {
            files.insert(live_rel.join(relative(&path, &upgrade.dir)), path);
        })?;
    }
    Ok(files)
}

/// Brings `group`'s shadow workspace up to date: writes the files whose bytes differ from the
/// source (or that are missing), removes the files the source no longer has, and leaves every other
/// file, and so its modification time, alone.
pub fn sync_shadow(ws: &Workspace, group: &ShadowGroup) -> Result<SyncStats> {
    let files = shadow_files(ws, group)?;
    let mut stats = SyncStats::default();
    for (rel, source) in &files {
        let bytes =
            fs::read(source).with_context(|| format!("cannot read {}", source.display()))?;
        if write_if_changed(&group.workspace.join(rel), &bytes)? {
            stats.written += 1;
        }
    }
    let mut stale = Vec::new();
    if group.workspace.is_dir() {
        walk_files(&group.workspace, ws, &[], &mut |path| {
            if !files.contains_key(&relative(&path, &group.workspace)) {
                stale.push(path);
            }
        })?;
    }
    for path in stale {
        match fs::remove_file(&path) {
            Ok(()) => stats.removed += 1,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("cannot remove {}", path.display())),
        }
        // Drop the directories this emptied (never the shadow root).
        let mut dir = path.parent();
        while let Some(d) = dir.filter(|d| *d != group.workspace) {
            if fs::remove_dir(d).is_err() {
                break;
            }
            dir = d.parent();
        }
    }
    Ok(stats)
}

/// Removes the shadow workspaces and target directories of groups that no longer exist.
pub(super) fn remove_stale_groups(base: &Path, groups: &[ShadowGroup]) -> Result<()> {
    for sub in ["ws", "target"] {
        let dir = base.join(sub);
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            if !groups.iter().any(|g| *g.name == *name) {
                fs::remove_dir_all(entry.path()).with_context(|| {
                    format!("cannot remove the stale {}", entry.path().display())
                })?;
            }
        }
    }
    Ok(())
}

/// An exclusive lock on `<target>/cell-upgrades`, held while shadows are written and built.
pub(super) fn lock_shadows(base: &Path) -> Result<fs::File> {
    fs::create_dir_all(base).with_context(|| format!("cannot create {}", base.display()))?;
    let path = base.join(".lock");
    let file =
        fs::File::create(&path).with_context(|| format!("cannot open {}", path.display()))?;
    file.lock()
        .with_context(|| format!("cannot lock {}", path.display()))?;
    Ok(file)
}

/// The group's upgrades as packages of its (synced) shadow workspace.
pub(super) fn shadow_packages(
    ws: &Workspace,
    group: &ShadowGroup,
) -> Result<(Workspace, Vec<(Upgrade, CellPackage)>)> {
    sync_shadow(ws, group)?;
    let shadow = Workspace::load(&group.workspace, Some(&group.target_dir)).with_context(|| {
        format!(
            "cannot read the shadow workspace {} of {}",
            group.workspace.display(),
            group
                .upgrades
                .iter()
                .map(Upgrade::label)
                .collect::<Vec<_>>()
                .join(", ")
        )
    })?;
    let mut packages = Vec::with_capacity(group.upgrades.len());
    for upgrade in &group.upgrades {
        let dir = group.workspace.join(upgrade.live_rel_dir(&ws.root));
        let package = shadow
            .cells
            .iter()
            .find(|c| c.dir == dir && c.package == upgrade.package)
            .with_context(|| {
                format!(
                    "{} is not a cell of its shadow workspace {}",
                    upgrade.label(),
                    group.workspace.display()
                )
            })?;
        packages.push((upgrade.clone(), package.clone()));
    }
    Ok((shadow, packages))
}

/// `cargo cell upgrades <cargo-command> [args...]`: runs `cargo <cargo-command> -p <upgrade>...
/// [args...]` in each shadow workspace (synced first) with its target directory, e.g.
/// `test`, `clippy --all-targets -- -D warnings` or `doc --no-deps`. Its output names files by
/// their shadow paths: `cells/<kind>/<crate>` there is `cells/upgrades/<crate>` here.
pub fn run_cargo_in_shadows(ws: &Workspace, args: &[String]) -> Result<()> {
    let Some((command, rest)) = args.split_first() else {
        bail!("`cargo cell upgrades` needs a cargo command, e.g. `cargo cell upgrades test`");
    };
    let upgrades = find_upgrades(ws)?;
    if upgrades.is_empty() {
        eprintln!("no upgrades in {}", ws.root.join(UPGRADES_DIR).display());
        return Ok(());
    }
    let base = ws.target_dir.join(SHADOW_DIR);
    let _lock = lock_shadows(&base)?;
    for group in plan_groups(ws, &upgrades) {
        let (_, packages) = shadow_packages(ws, &group)?;
        let mut cmd = Command::new(cargo_binary());
        cmd.arg(command);
        for (_, package) in &packages {
            cmd.args(["-p", &package.package]);
        }
        cmd.args(rest)
            .current_dir(&group.workspace)
            .env("CARGO_TARGET_DIR", &group.target_dir);
        let mapping: Vec<String> = packages
            .iter()
            .map(|(u, _)| {
                format!(
                    "{} is {}",
                    u.live_rel_dir(&ws.root).display(),
                    u.rel_dir(&ws.root).display()
                )
            })
            .collect();
        let specs: Vec<String> = packages
            .iter()
            .map(|(_, p)| format!("-p {}", p.package))
            .collect();
        let mut shown = vec![format!("cargo {command}")];
        shown.extend(specs);
        shown.extend(rest.iter().cloned());
        eprintln!(
            "cargo cell upgrades: `{}` in {} ({})",
            shown.join(" "),
            group.workspace.display(),
            mapping.join(", ")
        );
        let status = cmd
            .status()
            .with_context(|| format!("cannot run `cargo {command}`"))?;
        if !status.success() {
            bail!(
                "`cargo {command}` failed for {} ({status})",
                packages
                    .iter()
                    .map(|(u, _)| u.label())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }
    Ok(())
}
