//! The crate graph of the build manifest, matched to the cells of a snapshot: which manifest
//! entry each cell was loaded from (by SHA-256), which entries are compiled against which (a
//! cell's dependency crates, [`ManifestEntry::crates`], and its cell dependencies,
//! [`ManifestEntry::depends_on`]), and the names people give dependency crates (`regex`,
//! `unicode_width@0.2.3`, or a key).
//!
//! Without a manifest (a generated system, a live one whose workspace manifest is unknown) the
//! graph is empty and the views fall back to what the registry says.

use std::collections::{BTreeMap, VecDeque};

use anyhow::{bail, Result};
use crate_metadata::{CellId, CellKind, Manifest, ManifestEntry, Origin, Registry, Sha256};

/// A manifest entry, by its position in [`Manifest::cells`].
pub type EntryId = usize;

/// An entry that a bump of a crate touches: how far it is from the crate, and the entry it is
/// compiled against on the way there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reached {
    /// The entry.
    pub entry: EntryId,
    /// 1 when it uses the crate directly, 2 when it uses one of those, ...
    pub depth: usize,
    /// The entry it is compiled against, one step nearer to the crate.
    pub via: EntryId,
}

/// The crate graph.
#[derive(Clone, Debug, Default)]
pub struct Crates<'a> {
    manifest: Option<&'a Manifest>,
    /// Per entry: the registry cells loaded from it.
    loaded: Vec<Vec<CellId>>,
    /// Per object cell: its entry.
    entry_of: BTreeMap<CellId, EntryId>,
    /// Per entry: the entries it is compiled against directly.
    uses: Vec<Vec<EntryId>>,
    /// Per entry: the entries compiled against it directly.
    users: Vec<Vec<EntryId>>,
}

impl<'a> Crates<'a> {
    /// The crate graph of `manifest`, matched to `registry`'s cells.
    pub fn new(registry: &Registry, manifest: Option<&'a Manifest>) -> Crates<'a> {
        let Some(m) = manifest else {
            return Crates::default();
        };
        let n = m.cells.len();
        let mut by_sha: BTreeMap<Sha256, Vec<EntryId>> = BTreeMap::new();
        for (i, e) in m.cells.iter().enumerate() {
            by_sha.entry(e.sha256).or_default().push(i);
        }
        let mut loaded = vec![Vec::new(); n];
        let mut entry_of = BTreeMap::new();
        for cell in registry.cells().filter(|c| c.origin == Origin::Object) {
            let Some(candidates) = cell.sha256.and_then(|s| by_sha.get(&s)) else {
                continue;
            };
            // The same object may be two entries (an upgrade identical to its cell): the one of
            // the cell's own kind.
            let entry = candidates
                .iter()
                .copied()
                .find(|i| Some(m.cells[*i].kind) == cell.kind)
                .unwrap_or(candidates[0]);
            loaded[entry].push(cell.id);
            entry_of.insert(cell.id, entry);
        }
        // A cell's `depends_on` names a kernel or library cell; a cell rebuilt against another
        // cell's dependency upgrade was compiled against that upgrade.
        let cell_named = |user: &ManifestEntry, name: &str| {
            if user.rebuilt_for.as_deref() == Some(name) {
                return m.cells.iter().position(|e| {
                    e.kind == CellKind::Upgrades && e.name == name && e.rebuilt_for.is_none()
                });
            }
            [CellKind::Kernel, CellKind::Libs]
                .into_iter()
                .find_map(|k| m.cells.iter().position(|e| e.kind == k && e.name == name))
        };
        let mut uses = vec![Vec::new(); n];
        let mut users = vec![Vec::new(); n];
        for (i, e) in m.cells.iter().enumerate() {
            let crates = e.crates.iter().filter_map(|key| {
                m.cells
                    .iter()
                    .position(|d| d.crate_info.as_ref().is_some_and(|c| &c.key == key))
            });
            let cells = e.depends_on.iter().filter_map(|d| cell_named(e, d));
            for d in crates.chain(cells) {
                if d != i && !uses[i].contains(&d) {
                    uses[i].push(d);
                    users[d].push(i);
                }
            }
        }
        Crates {
            manifest,
            loaded,
            entry_of,
            uses,
            users,
        }
    }

    /// The manifest, when known.
    pub fn manifest(&self) -> Option<&'a Manifest> {
        self.manifest
    }

    /// The entry `id`.
    pub fn entry(&self, id: EntryId) -> Option<&'a ManifestEntry> {
        self.manifest?.cells.get(id)
    }

    /// The entry of kind `kind` that the manifest names `key` ([`ManifestEntry::key`]).
    pub fn by_key(&self, key: &str, kind: CellKind) -> Option<EntryId> {
        self.manifest?
            .cells
            .iter()
            .position(|e| e.kind == kind && e.key() == key)
    }

    /// The entry `cell` was loaded from.
    pub fn entry_of(&self, cell: CellId) -> Option<EntryId> {
        self.entry_of.get(&cell).copied()
    }

    /// The cells loaded from entry `id`.
    pub fn loaded(&self, id: EntryId) -> &[CellId] {
        self.loaded.get(id).map_or(&[], Vec::as_slice)
    }

    /// The entries `id` is compiled against directly: its dependency crates, then its cells.
    pub fn uses(&self, id: EntryId) -> &[EntryId] {
        self.uses.get(id).map_or(&[], Vec::as_slice)
    }

    /// The entries compiled against `id` directly.
    pub fn users(&self, id: EntryId) -> &[EntryId] {
        self.users.get(id).map_or(&[], Vec::as_slice)
    }

    /// The dependency crates (entries of kind [`CellKind::Deps`]), by name and version.
    pub fn dependency_crates(&self) -> Vec<EntryId> {
        let Some(m) = self.manifest else {
            return Vec::new();
        };
        let mut ids: Vec<EntryId> = (0..m.cells.len())
            .filter(|i| m.cells[*i].kind == CellKind::Deps)
            .collect();
        ids.sort_by(|a, b| {
            let (a, b) = (&m.cells[*a], &m.cells[*b]);
            (&a.name, &a.version, a.key()).cmp(&(&b.name, &b.version, b.key()))
        });
        ids
    }

    /// Whether the base image links entry `id` (a dependency crate the build found in it).
    pub fn in_base_image(&self, id: EntryId) -> bool {
        self.entry(id)
            .and_then(|e| e.crate_info.as_ref())
            .is_some_and(|c| c.in_base_image)
    }

    /// Whether the running system has entry `id`: a cell was loaded from it, or it is a
    /// dependency crate the base image links.
    pub fn present(&self, id: EntryId) -> bool {
        !self.loaded(id).is_empty() || self.in_base_image(id)
    }

    /// The dependency crate a person means by `spec`: a crate name (`regex`), a release
    /// (`unicode_width@0.2.3`) or a key (`unicode_width-0.2.3`). A name with several releases
    /// means the one the running system has when it has exactly one (the others are only in the
    /// manifest, for an upgrade). `None` when no dependency crate has that name; an error listing
    /// the choices when several could be meant.
    pub fn find(&self, spec: &str) -> Result<Option<EntryId>> {
        let (name, version) = match spec.split_once('@') {
            Some((name, version)) if looks_like_version(version) => (name, Some(version)),
            Some(_) => return Ok(None),
            None => (spec, None),
        };
        let deps = self.dependency_crates();
        let by_key: Vec<EntryId> = deps
            .iter()
            .copied()
            .filter(|i| self.entry(*i).is_some_and(|e| e.key() == spec))
            .collect();
        if let [one] = by_key.as_slice() {
            return Ok(Some(*one));
        }
        let matches: Vec<EntryId> = deps
            .into_iter()
            .filter(|i| {
                self.entry(*i)
                    .is_some_and(|e| e.name == name && version.is_none_or(|v| e.version == v))
            })
            .collect();
        let present: Vec<EntryId> = matches
            .iter()
            .copied()
            .filter(|i| self.present(*i))
            .collect();
        if let ([_, _, ..], [one]) = (matches.as_slice(), present.as_slice()) {
            return Ok(Some(*one));
        }
        match matches.as_slice() {
            [] if version.is_some() => {
                let releases = self.releases(name);
                if releases.is_empty() {
                    bail!("no dependency crate `{name}`");
                }
                bail!(
                    "no release {spec} of `{name}` (releases: {})",
                    releases.join(", ")
                )
            }
            [] => Ok(None),
            [one] => Ok(Some(*one)),
            many => bail!(
                "`{spec}` names {} {} of a dependency crate; say which: {}",
                many.len(),
                if self.releases(name).len() == many.len() {
                    "releases"
                } else {
                    "builds"
                },
                many.iter()
                    .map(|i| self.describe(*i))
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        }
    }

    /// Every release of dependency crate `name`, as `name@version`.
    fn releases(&self, name: &str) -> Vec<String> {
        self.dependency_crates()
            .into_iter()
            .filter_map(|i| self.entry(i))
            .filter(|e| e.name == name)
            .map(|e| format!("{}@{}", e.name, e.version))
            .fold(Vec::new(), |mut all: Vec<String>, r| {
                if !all.contains(&r) {
                    all.push(r);
                }
                all
            })
    }

    /// `name@version` (or the key, when one release has several builds), with what uses it.
    fn describe(&self, id: EntryId) -> String {
        let Some(e) = self.entry(id) else {
            return String::new();
        };
        let same_release = self
            .dependency_crates()
            .into_iter()
            .filter_map(|i| self.entry(i))
            .filter(|o| o.name == e.name && o.version == e.version)
            .count();
        let spec = if same_release > 1 {
            e.key().to_string()
        } else {
            format!("{}@{}", e.name, e.version)
        };
        let users: Vec<String> = self
            .users(id)
            .iter()
            .filter_map(|u| self.entry(*u))
            .map(|u| format!("{} ({})", u.name, u.kind.dir()))
            .collect();
        let state = if !self.loaded(id).is_empty() {
            "loaded"
        } else if self.in_base_image(id) {
            "linked by the base image"
        } else {
            "not loaded"
        };
        format!("{spec} ({state}; used by {})", dash_join(&users))
    }

    /// The other releases and builds of the crate entry `id` is a build of.
    pub fn siblings(&self, id: EntryId) -> Vec<EntryId> {
        let Some(e) = self.entry(id) else {
            return Vec::new();
        };
        self.dependency_crates()
            .into_iter()
            .filter(|i| *i != id && self.entry(*i).is_some_and(|o| o.name == e.name))
            .collect()
    }

    /// The prepared dependency upgrades that move entry `id` to another release: each upgrade
    /// entry with the key it moves to.
    pub fn upgrades_moving(&self, id: EntryId) -> Vec<(EntryId, String)> {
        let (Some(m), Some(key)) = (self.manifest, self.entry(id).map(|e| e.key())) else {
            return Vec::new();
        };
        m.cells
            .iter()
            .enumerate()
            .filter_map(|(i, e)| {
                let moved = e.dependency_upgrade.as_ref()?;
                let (_, to) = moved.bumped.iter().find(|(from, _)| from == key)?;
                Some((i, to.clone()))
            })
            .collect()
    }

    /// Every entry a bump of `id` touches: the entries compiled against it, transitively,
    /// nearest first (breadth first, each reached through the first entry that reached it).
    pub fn compiled_against(&self, id: EntryId) -> Vec<Reached> {
        let mut seen = vec![false; self.users.len()];
        let Some(first) = seen.get_mut(id) else {
            return Vec::new();
        };
        *first = true;
        let mut queue = VecDeque::from([(id, 0)]);
        let mut out = Vec::new();
        while let Some((e, depth)) = queue.pop_front() {
            let mut users = self.users(e).to_vec();
            users.sort_by_key(|u| self.entry(*u).map(|u| (u.kind, u.name.clone())));
            for u in users {
                if !seen[u] {
                    seen[u] = true;
                    out.push(Reached {
                        entry: u,
                        depth: depth + 1,
                        via: e,
                    });
                    queue.push_back((u, depth + 1));
                }
            }
        }
        out
    }
}

/// Whether `s` reads as a version (`0.2.3`) rather than a namespace (`_kernel`, `app:hello`).
pub fn looks_like_version(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_digit())
}

fn dash_join(items: &[String]) -> String {
    if items.is_empty() {
        "nothing".into()
    } else {
        items.join(", ")
    }
}

/// Where a package comes from, as people read it: `crates.io`, `path`, `git <url>`, or the
/// registry's URL.
pub fn source_label(source: &str) -> String {
    const CRATES_IO: &str = "registry+https://github.com/rust-lang/crates.io-index";
    if source == CRATES_IO || source == "sparse+https://index.crates.io/" {
        return "crates.io".into();
    }
    if let Some(url) = source.strip_prefix("git+") {
        return format!("git {}", url.split(['?', '#']).next().unwrap_or(url));
    }
    source
        .strip_prefix("registry+")
        .or_else(|| source.strip_prefix("sparse+"))
        .unwrap_or(source)
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate_metadata::CrateInfo;

    fn entry(name: &str, version: &str, kind: CellKind, crates: &[&str]) -> ManifestEntry {
        let key = format!("{name}-{version}");
        ManifestEntry {
            name: name.into(),
            version: version.into(),
            kind,
            object: format!("{}/{key}.o", kind.dir()),
            size: 0,
            sha256: loader::sha256(format!("{key}-{}", kind.dir()).as_bytes()),
            exports: Vec::new(),
            depends_on: Vec::new(),
            brings: Vec::new(),
            signature: None,
            crates: crates.iter().map(|s| s.to_string()).collect(),
            crate_info: (kind == CellKind::Deps).then(|| CrateInfo {
                key,
                package: name.replace('_', "-"),
                source: "registry+https://github.com/rust-lang/crates.io-index".into(),
                features: Vec::new(),
                metadata_hash: "0".into(),
                in_base_image: false,
            }),
            dependency_upgrade: None,
            rebuilt_for: None,
            app_interface: None,
            grants: Vec::new(),
            unsafe_forbidden: false,
        }
    }

    fn manifest() -> Manifest {
        let mut app = entry("app", "0.1.0", CellKind::Apps, &["w-0.2.0"]);
        app.depends_on = vec!["lib".into()];
        Manifest {
            cells: vec![
                entry("lib", "0.1.0", CellKind::Libs, &["mid-1.0.0", "w-0.1.0"]),
                app,
                entry("mid", "1.0.0", CellKind::Deps, &["low-1.0.0"]),
                entry("low", "1.0.0", CellKind::Deps, &[]),
                entry("w", "0.1.0", CellKind::Deps, &[]),
                entry("w", "0.2.0", CellKind::Deps, &[]),
            ],
            ..Manifest::default()
        }
    }

    #[test]
    fn a_bump_reaches_through_crates_and_cells() {
        let m = manifest();
        let c = Crates::new(&Registry::new("nano_core"), Some(&m));
        let low = c.find("low").unwrap().unwrap();
        let reached: Vec<(&str, usize, &str)> = c
            .compiled_against(low)
            .iter()
            .map(|r| {
                let e = c.entry(r.entry).unwrap();
                (
                    e.name.as_str(),
                    r.depth,
                    c.entry(r.via).unwrap().name.as_str(),
                )
            })
            .collect();
        assert_eq!(
            reached,
            [("mid", 1, "low"), ("lib", 2, "mid"), ("app", 3, "lib")]
        );
    }

    #[test]
    fn two_releases_are_named_not_guessed() {
        let m = manifest();
        let c = Crates::new(&Registry::new("nano_core"), Some(&m));
        let err = format!("{:#}", c.find("w").unwrap_err());
        assert!(
            err.contains("w@0.1.0 (not loaded; used by lib (libs))"),
            "{err}"
        );
        assert!(
            err.contains("w@0.2.0 (not loaded; used by app (apps))"),
            "{err}"
        );
        let v2 = c.find("w@0.2.0").unwrap().unwrap();
        assert_eq!(c.entry(v2).unwrap().version, "0.2.0");
        assert_eq!(c.find("w-0.1.0").unwrap(), c.find("w@0.1.0").unwrap());
        assert!(format!("{:#}", c.find("w@9").unwrap_err()).contains("w@0.1.0, w@0.2.0"));
        assert_eq!(c.find("lib").unwrap(), None);
        // When the running system has one release, the name means that one.
        let mut m = manifest();
        m.cells[5].crate_info.as_mut().unwrap().in_base_image = true;
        let c = Crates::new(&Registry::new("nano_core"), Some(&m));
        let w = c.find("w").unwrap().unwrap();
        assert_eq!(c.entry(w).unwrap().version, "0.2.0");
        assert_eq!(c.siblings(w).len(), 1);
        assert_eq!(c.find("w@_kernel").unwrap(), None);
    }

    #[test]
    fn sources_read_as_people_say_them() {
        assert_eq!(
            source_label("registry+https://github.com/rust-lang/crates.io-index"),
            "crates.io"
        );
        assert_eq!(source_label("path"), "path");
        assert_eq!(
            source_label("git+https://github.com/a/b?branch=x#abc"),
            "git https://github.com/a/b"
        );
    }
}
