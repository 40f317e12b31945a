//! Dependency upgrades: a new version of a cell that moves one of its dependency crates to another
//! published release (`cells/upgrades/<cell>` with another `[dependencies]` table).
//!
//! A new release changes the crate's hash, and cargo folds every dependency's identity into its
//! dependents' `-C metadata`: every mangled name in the bumped crate and in every crate compiled
//! against it changes (measured: itoa 1.0.14 -> 1.0.15 renamed a dependent's `pub fn` and
//! `pub static`). So such an upgrade is never swappable by exact name. Instead, the build:
//!
//! 1. builds the upgrade in its own shadow workspace (so nothing else shares its resolution), and
//!    with it every other cell of the workspace; each cell whose unit hash differs from the live
//!    build's was compiled against something that moved, and is *rebuilt* (its new object is an
//!    upgrade entry with `rebuilt_for` set): one swap transaction replaces them all, and the
//!    compiler has checked them against each other and against the new releases;
//! 2. lists the dependency cells that move (old release -> new release);
//! 3. checks, from both versions' sources ([`crate::signatures`]), which renamed symbols keep their
//!    signature: what is not rebuilt (the host's handles) may follow a rename only when both
//!    sources declare the same signature with only `core`/`alloc`/`std` types in it. The others are
//!    listed with the reason, and a swap that needs one is refused naming it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::Result;
use crate_metadata::{Rename, Unverified};

use crate::objects::mangled_path;
use crate::signatures::{declared_items, Declared};

/// Whether the dependency tables of two `Cargo.toml` texts differ (`[dependencies]`,
/// `[target.*.dependencies]` and `[features]`, compared line by line without comments and blank
/// lines): an upgrade that moves its dependencies gets a shadow workspace of its own.
pub fn moves_dependencies(live_manifest: &str, upgrade_manifest: &str) -> bool {
    dependency_tables(live_manifest) != dependency_tables(upgrade_manifest)
}

fn dependency_tables(manifest: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut inside = false;
    for line in manifest.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        if line.starts_with('[') {
            let header = line.trim_matches(|c| c == '[' || c == ']');
            inside = header == "dependencies"
                || header.starts_with("dependencies.")
                || header == "features"
                || (header.starts_with("target.") && header.ends_with("dependencies"));
        }
        if inside {
            out.push(line.split_whitespace().collect::<Vec<_>>().join(" "));
        }
    }
    out
}

/// How two dependency closures (unit ids `<crate>@<version>#<hash>`) differ.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClosureChange {
    /// A crate in both, built another way (another release, other features): `(old, new)`.
    pub moved: Vec<(String, String)>,
    /// Units only the new closure has, of crates the old one does not have at all.
    pub added: Vec<String>,
    /// Units only the old closure has, of crates the new one does not have at all.
    pub removed: Vec<String>,
}

impl ClosureChange {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.moved.is_empty() && self.added.is_empty() && self.removed.is_empty()
    }
}

/// Compares the dependency closure of a live cell with its new version's.
pub fn closure_change(old: &BTreeSet<String>, new: &BTreeSet<String>) -> ClosureChange {
    let crate_of = |unit: &str| unit.split('@').next().unwrap_or(unit).to_owned();
    let gone: Vec<&String> = old.difference(new).collect();
    let came: Vec<&String> = new.difference(old).collect();
    let mut change = ClosureChange::default();
    let mut paired = BTreeSet::new();
    for g in &gone {
        match came
            .iter()
            .find(|c| crate_of(c) == crate_of(g) && !paired.contains(**c))
        {
            Some(c) => {
                paired.insert((*c).clone());
                change.moved.push(((*g).clone(), (*c).clone()));
            }
            None => change.removed.push((*g).clone()),
        }
    }
    change.added = came
        .into_iter()
        .filter(|c| !paired.contains(*c))
        .cloned()
        .collect();
    change
}

/// Which renamed exports of crate `crate_name` the sources vouch for: its old version's `lib.rs`
/// is `old_lib`, the new one's `new_lib` (the same file for a cell rebuilt unchanged). Symbols
/// whose mangled name did not change need nothing; symbols the new version lacks are not listed
/// (a dependent that binds to one makes the swap refuse it as missing).
pub fn check_renames(
    crate_name: &str,
    old_lib: &Path,
    new_lib: &Path,
    old_exports: &[String],
    new_exports: &[String],
) -> Result<(Vec<Rename>, Vec<Unverified>)> {
    let old_items = declared_items(old_lib)?;
    let new_items = if old_lib == new_lib {
        old_items.clone()
    } else {
        declared_items(new_lib)?
    };
    let kept: BTreeSet<&str> = new_exports.iter().map(String::as_str).collect();
    let mut by_path: BTreeMap<String, Vec<&String>> = BTreeMap::new();
    for n in new_exports {
        if let Some(path) = mangled_path(n) {
            by_path.entry(path).or_default().push(n);
        }
    }
    let prefix = format!("{crate_name}::");
    let mut renames = Vec::new();
    let mut unverified = Vec::new();
    for old in old_exports {
        if kept.contains(old.as_str()) {
            continue;
        }
        let Some(path) = mangled_path(old) else {
            continue;
        };
        let new = match by_path.get(&path).map(Vec::as_slice) {
            Some([one]) => *one,
            Some(_) => {
                unverified.push(Unverified {
                    from: old.clone(),
                    reason: format!("the new version defines `{path}` more than once"),
                });
                continue;
            }
            None => continue,
        };
        let item = path.strip_prefix(&prefix).unwrap_or(&path);
        match verdict(item, old_items.get(item), new_items.get(item)) {
            Ok(signature) => renames.push(Rename {
                from: old.clone(),
                to: new.clone(),
                signature,
            }),
            Err(reason) => unverified.push(Unverified {
                from: old.clone(),
                reason,
            }),
        }
    }
    Ok((renames, unverified))
}

/// Whether item `item`, declared as `old` and `new`, keeps its ABI: its signature, or the reason
/// it cannot be vouched for.
fn verdict(
    item: &str,
    old: Option<&Declared>,
    new: Option<&Declared>,
) -> std::result::Result<String, String> {
    let (Some(old), Some(new)) = (old, new) else {
        return Err(format!(
            "`{item}` is not declared as a plain item in the source (a macro's, a trait \
             method or a generic instance), so its signature cannot be compared"
        ));
    };
    if old.signature != new.signature {
        return Err(format!(
            "its declaration changed: `{}` became `{}`",
            old.signature, new.signature
        ));
    }
    match &new.portable {
        Ok(()) => Ok(new.signature.clone()),
        Err(ty) => Err(format!(
            "its signature names {ty}, which is not a core/alloc/std type and may have \
             changed with the new releases"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dependency_tables_ignore_everything_else() {
        let a = "[package]\nname = \"kv\"\ndescription = \"one\"\n[dependencies]\nheapless = \"=0.9.3\" # pinned\n";
        let b = "[package]\nname = \"kv\"\ndescription = \"two\"\n\n[dependencies]\nheapless   = \"=0.9.3\"\n";
        let c = "[package]\nname = \"kv\"\n[dependencies]\nheapless = \"=0.9.4\"\n";
        assert!(!moves_dependencies(a, b));
        assert!(moves_dependencies(a, c));
        let d =
            "[package]\nname = \"kv\"\n[dependencies]\nheapless = \"=0.9.3\"\n[features]\nx = []\n";
        assert!(moves_dependencies(a, d));
    }

    #[test]
    fn closure_changes_pair_releases_of_one_crate() {
        let old: BTreeSet<String> = ["heapless@0.9.3#aa", "hash32@0.3.1#bb", "gone@1.0.0#cc"]
            .map(String::from)
            .into();
        let new: BTreeSet<String> = ["heapless@0.9.4#dd", "hash32@0.3.1#bb", "fresh@2.0.0#ee"]
            .map(String::from)
            .into();
        let change = closure_change(&old, &new);
        assert_eq!(
            change.moved,
            [(
                "heapless@0.9.3#aa".to_owned(),
                "heapless@0.9.4#dd".to_owned()
            )]
        );
        assert_eq!(change.added, ["fresh@2.0.0#ee"]);
        assert_eq!(change.removed, ["gone@1.0.0#cc"]);
        assert!(closure_change(&old, &old).is_empty());
    }

    #[test]
    fn renames_are_vouched_for_only_with_portable_equal_signatures() {
        let dir = std::env::temp_dir().join(format!("renames-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("old")).unwrap();
        std::fs::create_dir_all(dir.join("new")).unwrap();
        std::fs::write(
            dir.join("old/lib.rs"),
            "pub fn get(k: &str) -> Option<Vec<u8>> { None }
             pub fn flags() -> Flags { todo!() }
             pub fn len() -> usize { 0 }
             pub static STORE: Mutex<Store> = todo!();",
        )
        .unwrap();
        std::fs::write(
            dir.join("new/lib.rs"),
            "pub fn get(k: &str) -> Option<Vec<u8>> { None }
             pub fn flags() -> Flags { todo!() }
             pub fn len() -> u64 { 0 }
             pub static STORE: Mutex<Store> = todo!();",
        )
        .unwrap();
        let sym = |name: &str, hash: &str| format!("_ZN2kv{}{name}17h{hash}E", name.len());
        let old = [
            sym("get", "0000000000000001"),
            sym("flags", "0000000000000002"),
            sym("len", "0000000000000003"),
            sym("STORE", "0000000000000004"),
            sym("kept", "0000000000000005"),
        ];
        let new = [
            sym("get", "1000000000000001"),
            sym("flags", "1000000000000002"),
            sym("len", "1000000000000003"),
            sym("STORE", "1000000000000004"),
            sym("kept", "0000000000000005"),
        ];
        let (renames, unverified) = check_renames(
            "kv",
            &dir.join("old/lib.rs"),
            &dir.join("new/lib.rs"),
            &old,
            &new,
        )
        .unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let renamed: Vec<(&str, &str)> = renames
            .iter()
            .map(|r| (r.from.as_str(), r.to.as_str()))
            .collect();
        assert_eq!(
            renamed,
            [
                (old[0].as_str(), new[0].as_str()),
                (old[3].as_str(), new[3].as_str())
            ]
        );
        let refused: Vec<&str> = unverified.iter().map(|u| u.from.as_str()).collect();
        assert_eq!(refused, [old[1].as_str(), old[2].as_str()]);
        assert!(
            unverified[0].reason.contains("`Flags`"),
            "{:?}",
            unverified[0]
        );
        assert!(
            unverified[1].reason.contains("changed"),
            "{:?}",
            unverified[1]
        );
    }
}
