//! Which upgrades share a shadow workspace: an upgrade is built against the live versions of the
//! cells it uses, so it cannot share a shadow with an upgrade of one of them (or of one of its
//! dependents); a dependency upgrade changes the resolution of everything in its shadow and gets
//! one of its own.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use super::find::{Upgrade, SHADOW_DIR};
use crate::workspace::Workspace;

/// Upgrades built in one shadow workspace.
#[derive(Clone, Debug)]
pub struct ShadowGroup {
    /// The group's name: its first upgrade's cell name.
    pub name: String,
    /// The shadow workspace root, `<target>/cell-upgrades/ws/<name>`.
    pub workspace: PathBuf,
    /// Its target directory, `<target>/cell-upgrades/target/<name>`.
    pub target_dir: PathBuf,
    /// The upgrades overlaid in it.
    pub upgrades: Vec<Upgrade>,
}

/// The cells `cell` depends on, directly or not.
fn dependency_closure(ws: &Workspace, cell: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut todo = vec![cell.to_owned()];
    while let Some(name) = todo.pop() {
        let Some(package) = ws.cells.iter().find(|c| c.name == name) else {
            continue;
        };
        for dep in &package.depends_on {
            if seen.insert(dep.clone()) {
                todo.push(dep.clone());
            }
        }
    }
    seen
}

/// Splits `upgrades` into shadow groups: an upgrade joins the first group in which no upgrade
/// depends on the cell it replaces and it depends on none of theirs, so that every upgrade is
/// compiled against the live versions of the cells it uses.
pub fn plan_groups(ws: &Workspace, upgrades: &[Upgrade]) -> Vec<ShadowGroup> {
    let base = ws.target_dir.join(SHADOW_DIR);
    let closures: BTreeMap<&str, BTreeSet<String>> = upgrades
        .iter()
        .map(|u| (u.live.name.as_str(), dependency_closure(ws, &u.live.name)))
        .collect();
    // A dependency upgrade changes the resolution of everything in its shadow: it gets its own.
    let conflict = |a: &Upgrade, b: &Upgrade| {
        a.moves_dependencies
            || b.moves_dependencies
            || closures[a.live.name.as_str()].contains(&b.live.name)
            || closures[b.live.name.as_str()].contains(&a.live.name)
    };
    let mut groups: Vec<ShadowGroup> = Vec::new();
    for upgrade in upgrades {
        match groups
            .iter_mut()
            .find(|g| g.upgrades.iter().all(|other| !conflict(upgrade, other)))
        {
            Some(group) => group.upgrades.push(upgrade.clone()),
            None => {
                let name = upgrade.live.name.clone();
                groups.push(ShadowGroup {
                    workspace: base.join("ws").join(&name),
                    target_dir: base.join("target").join(&name),
                    name,
                    upgrades: vec![upgrade.clone()],
                });
            }
        }
    }
    groups
}
