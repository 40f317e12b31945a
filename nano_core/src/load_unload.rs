//! Loading and unloading cells while the system runs: `load` and `unload` on the control channel
//! and at the prompt, like Linux's `insmod`/`rmmod` or Theseus' `loadc`.
//!
//! **Load** ([`Kernel::load_cell`]) takes a cell by name from the manifest (a kernel, library or
//! dependency cell) or an object file by path. The object goes through the checks of the boot
//! and of a swap, by the same functions: a regular file read up to a bound
//! ([`crate::files::read_regular`]), its SHA-256 against the manifest and its signature when keys
//! are trusted ([`Kernel::check_signature`]), and the loader's own checks. The dependency cells it
//! needs that its namespace does not see yet are loaded first, in dependency order, then the cell,
//! then its `init` runs ([`Kernel::load_with_dependencies`], the boot's code). An object that is
//! not in the manifest (a cell built elsewhere) is loaded without dependency cells, and only when
//! no keys are trusted: nothing vouches for it. The cell goes into `_kernel`, or the namespace
//! named; a namespace that does not exist is made under `_kernel`, and goes again when its last
//! cell is unloaded. Any failure unloads what the load loaded, so the system is as it was.
//!
//! **Unload** ([`Kernel::unload_cell`]) is refused while anything binds to the cell: another cell
//! (a running application's included) or the host through a handle; the error names each of
//! them with its namespace. Otherwise the cell's `deinit` runs and the loader's teardown frees it
//! ([`loader::System::unload`]: namespace entries, edges, unwind and debugger registrations, TLS,
//! memory). Then the dependency cells of its namespace that it used and that nothing else uses any
//! more are unloaded too, like `modprobe -r`: a load followed by an unload leaves the system as it
//! was before the load. Dependency cells that other cells still use stay.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use crate_metadata::{CellId, CellKind, CellState, ManifestEntry, NamespaceId, Origin, Registry};
use loader::{CellSpec, LoadError, UnloadError};

use crate::kernel::{Booted, Kernel, KERNEL_NAMESPACE};
use crate::load_unload_error::CellError;

/// What `load` loads: a cell of the manifest by name, or an object file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LoadTarget {
    /// A kernel, library or dependency cell of the manifest, by name.
    Cell(String),
    /// An object file.
    Object(PathBuf),
}

/// One cell a load or an unload brought in or took out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CellChange {
    /// Its id.
    pub id: CellId,
    /// Its name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// Whether it is a dependency cell (loaded for the cell, or unloaded after it).
    pub dependency: bool,
    /// Whether its `init` ran (loads only).
    pub had_init: bool,
}

/// What a load or an unload did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CellChanges {
    /// The namespace.
    pub namespace: String,
    /// The cells, in the order they were loaded or unloaded.
    pub cells: Vec<CellChange>,
    /// Whether the namespace was made (load) or removed (unload) on the way.
    pub namespace_changed: bool,
}

impl Kernel {
    /// Loads `target` into the namespace `namespace` (`_kernel` when `None`); see the module docs.
    pub fn load_cell(
        &mut self,
        target: &LoadTarget,
        namespace: Option<&str>,
    ) -> Result<CellChanges> {
        let ns_name = namespace.unwrap_or(KERNEL_NAMESPACE);
        let (entry, bytes) = self.find_object(target)?;
        let name = match (&entry, target) {
            (Some(e), _) => e.name.clone(),
            (None, LoadTarget::Object(path)) => object_name(path)?,
            (None, LoadTarget::Cell(name)) => name.clone(),
        };
        let existing = self.namespaces().by_name(ns_name).map(|n| n.id);
        // By name: a name is how `unload`, `swap` and handles find a cell in its namespace.
        if existing.is_some_and(|ns| self.system.cell_in(ns, &name).is_some()) {
            return Err(LoadError::AlreadyLoaded {
                cell: name,
                namespace: ns_name.into(),
            }
            .into());
        }
        if let Some(entry) = &entry {
            self.check_cell_dependencies(existing, ns_name, entry)?;
        }
        let (ns, made) = match existing {
            Some(ns) => (ns, false),
            None if ns_name.starts_with("app:") => {
                return Err(CellError::ReservedNamespace {
                    namespace: ns_name.into(),
                }
                .into())
            }
            None => {
                let parent = self.kernel_ns;
                (self.system.create_namespace(ns_name, Some(parent))?, true)
            }
        };
        let loaded = match &entry {
            Some(entry) => self
                .load_with_dependencies(ns, entry, bytes.as_deref())
                .map(|loaded| loaded.iter().map(change).collect::<Vec<_>>()),
            None => self
                .load_unlisted(ns, &name, bytes.as_deref().unwrap_or_default())
                .map(|one| vec![one]),
        };
        let mut cells = match loaded {
            Ok(cells) => cells,
            Err(error) => {
                if made {
                    let _ = self.system.remove_namespace(ns);
                }
                return Err(error);
            }
        };
        if made {
            self.load_namespaces.push(ns);
        }
        // Every cell but the last was loaded for it.
        let last = cells.len().saturating_sub(1);
        for c in &mut cells[..last] {
            c.dependency = true;
        }
        Ok(CellChanges {
            namespace: ns_name.into(),
            cells,
            namespace_changed: made,
        })
    }

    /// Unloads the live cell `name` from the namespace `namespace` (`_kernel` when `None`), then
    /// the dependency cells it leaves unused; see the module docs.
    pub fn unload_cell(&mut self, name: &str, namespace: Option<&str>) -> Result<CellChanges> {
        let ns_name = namespace.unwrap_or(KERNEL_NAMESPACE);
        let ns = self
            .namespaces()
            .by_name(ns_name)
            .map(|n| n.id)
            .ok_or_else(|| CellError::NoSuchNamespace {
                namespace: ns_name.into(),
            })?;
        let id = self
            .system
            .cell_in(ns, name)
            .ok_or_else(|| CellError::NotLoaded {
                cell: name.into(),
                namespace: ns_name.into(),
            })?;
        let dependents = self.system.dependents(id);
        if !dependents.is_empty() {
            return Err(UnloadError::InUse {
                cell: name.into(),
                dependents: dependents.iter().map(|d| self.describe_user(*d)).collect(),
            })
            .with_context(|| format!("unloading `{name}` from {ns_name}"));
        }
        self.call_deinit(ns, name)?;
        let providers = self.dependency_providers(id, ns);
        let first = self.unload_one(id, false)?;
        let mut cells = vec![first];
        // The dependency cells it used that nothing uses any more, dependents before the cells
        // they use.
        let mut todo = providers;
        while let Some(dep) = todo.pop() {
            if cells.iter().any(|c| c.id == dep) || !self.system.dependents(dep).is_empty() {
                continue;
            }
            let next = self.dependency_providers(dep, ns);
            if let Ok(change) = self.unload_one(dep, true) {
                cells.push(change);
                todo.extend(next);
            }
        }
        let mut removed = false;
        if let Some(at) = self.load_namespaces.iter().position(|n| *n == ns) {
            if self.system.remove_namespace(ns).is_ok() {
                self.load_namespaces.remove(at);
                removed = true;
            }
        }
        Ok(CellChanges {
            namespace: ns_name.into(),
            cells,
            namespace_changed: removed,
        })
    }

    /// The manifest entry `target` names, and the object's bytes when they were read from a path
    /// (checked against the manifest when it lists them). `None` for an object the manifest does
    /// not list, which only an untrusting system loads.
    fn find_object(&self, target: &LoadTarget) -> Result<(Option<ManifestEntry>, Option<Vec<u8>>)> {
        match target {
            LoadTarget::Cell(name) => Ok((Some(self.manifest_cell(name)?.clone()), None)),
            LoadTarget::Object(path) => {
                let bytes = crate::files::read_regular(path, crate::files::MAX_OBJECT)
                    .with_context(|| format!("loading {}", path.display()))?;
                let sha = loader::sha256(&bytes);
                let entry = self.manifest.cells.iter().find(|e| e.sha256 == sha);
                match entry {
                    Some(e) if e.kind == CellKind::Apps => Err(CellError::Application {
                        cell: e.name.clone(),
                    }
                    .into()),
                    Some(e) => Ok((Some(e.clone()), Some(bytes))),
                    None if !self.trusted.is_empty() => Err(CellError::Unlisted {
                        object: path.clone(),
                    }
                    .into()),
                    None => Ok((None, Some(bytes))),
                }
            }
        }
    }

    /// The manifest's kernel, library or dependency cell `name`.
    fn manifest_cell(&self, name: &str) -> Result<&ManifestEntry, CellError> {
        let manifest = &self.manifest;
        if let Some(e) = manifest
            .get(CellKind::Kernel, name)
            .or_else(|| manifest.get(CellKind::Libs, name))
        {
            return Ok(e);
        }
        if manifest.get(CellKind::Apps, name).is_some() {
            return Err(CellError::Application { cell: name.into() });
        }
        let deps: Vec<&ManifestEntry> = manifest
            .cells
            .iter()
            .filter(|e| e.kind == CellKind::Deps && (e.name == name || e.key() == name))
            .collect();
        match deps.as_slice() {
            [one] => Ok(one),
            [] => Err(CellError::NotInManifest { cell: name.into() }),
            many => Err(CellError::Ambiguous {
                cell: name.into(),
                keys: many.iter().map(|e| e.key().to_string()).collect(),
            }),
        }
    }

    /// Refuses `entry` when a cell it depends on (`depends_on`) is not live where namespace
    /// `ns_name` (`ns`, if it exists; else a new namespace under `_kernel`) would see it.
    fn check_cell_dependencies(
        &self,
        ns: Option<NamespaceId>,
        ns_name: &str,
        entry: &ManifestEntry,
    ) -> Result<(), CellError> {
        let chain = self.namespaces().chain(ns.unwrap_or(self.kernel_ns));
        let missing: Vec<String> = entry
            .depends_on
            .iter()
            .filter(|d| !chain.iter().any(|n| self.system.cell_in(*n, d).is_some()))
            .cloned()
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        Err(CellError::MissingCells {
            cell: entry.name.clone(),
            namespace: ns_name.into(),
            missing,
        })
    }

    /// Loads an object the manifest does not list, named `name`, into `ns` and calls its `init`.
    fn load_unlisted(&mut self, ns: NamespaceId, name: &str, bytes: &[u8]) -> Result<CellChange> {
        let sha = loader::sha256(bytes);
        let spec = CellSpec {
            name,
            version: "",
            kind: None,
            sha256: Some(sha),
        };
        let id = self.system.load(ns, spec, bytes)?;
        match self.call_init(ns, name) {
            Ok(had_init) => Ok(CellChange {
                id,
                name: name.into(),
                version: String::new(),
                dependency: false,
                had_init,
            }),
            Err(error) => {
                let _ = self.system.unload(id);
                Err(error)
            }
        }
    }

    /// Runs `<cell>::deinit`, as `ns` sees it, when the cell has one (the convention of
    /// [`cell_abi::DEINIT`]). A panic in it is refused: the cell stays loaded.
    fn call_deinit(&mut self, ns: NamespaceId, cell: &str) -> Result<(), CellError> {
        let Ok(deinit) = self.system.bind(ns, cell_abi::DEINIT.of(cell)) else {
            return Ok(());
        };
        let f = deinit.get();
        std::panic::catch_unwind(f).map_err(|payload| CellError::Deinit {
            cell: cell.into(),
            panic: crate::panic::panic_message(&*payload),
        })
    }

    /// The live dependency cells of namespace `ns` that the cell `id` binds to.
    fn dependency_providers(&self, id: CellId, ns: NamespaceId) -> Vec<CellId> {
        let registry = self.system.registry();
        let mut out = registry.dependencies(id);
        out.retain(|p| {
            registry.cell(*p).is_some_and(|c| {
                c.origin == Origin::Object
                    && c.kind == Some(CellKind::Deps)
                    && c.state == CellState::Live
                    && c.namespace == Some(ns)
            })
        });
        out
    }

    /// Unloads the cell `id` through the loader's teardown and forgets it in the boot's record.
    fn unload_one(&mut self, id: CellId, dependency: bool) -> Result<CellChange> {
        let (name, version) = self
            .system
            .registry()
            .cell(id)
            .map(|c| (c.name.clone(), c.version.clone()))
            .unwrap_or_default();
        self.system.unload(id)?;
        self.booted.retain(|b| b.id != id);
        log::info!(target: "nano_core", "unloaded cell `{name}` {version} ({id})");
        Ok(CellChange {
            id,
            name,
            version,
            dependency,
            had_init: false,
        })
    }

    /// A user of a cell, for an error: `kvquery in _kernel`, `hello in app:hello#1 (retired)`,
    /// or the host.
    fn describe_user(&self, user: CellId) -> String {
        if user == Registry::BASE {
            return "nano_core (a handle the host holds)".into();
        }
        let registry = self.system.registry();
        let Some(c) = registry.cell(user) else {
            return user.to_string();
        };
        let ns = c
            .namespace
            .and_then(|n| self.namespaces().get(n))
            .map_or("no namespace", |n| n.name.as_str());
        let retired = if c.state == CellState::Retired {
            ", retired"
        } else {
            ""
        };
        format!("{} in {ns} ({}{retired})", c.name, c.id)
    }
}

/// A cell the boot's code loaded, as a change.
fn change(b: &Booted) -> CellChange {
    CellChange {
        id: b.id,
        name: b.entry.name.clone(),
        version: b.entry.version.clone(),
        dependency: false,
        had_init: b.had_init,
    }
}

/// The cell name an object file not in the manifest is loaded as: its file name without `.o`.
fn object_name(path: &Path) -> Result<String, CellError> {
    path.file_stem()
        .and_then(|s| s.to_str())
        .filter(|s| !s.is_empty() && !s.contains(char::is_whitespace))
        .map(str::to_string)
        .ok_or_else(|| CellError::Unlisted {
            object: path.to_path_buf(),
        })
}
