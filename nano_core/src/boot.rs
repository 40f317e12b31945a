//! Booting: loading the kernel cells into `_kernel` in dependency order and initialising them.

use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use crate_metadata::{CellId, CellKind, CellState, Manifest, ManifestEntry, NamespaceId, Sha256};
use ed25519_dalek::{Signature, VerifyingKey};
use loader::hosted::Hosted;
use loader::platform::SymbolSource;
use loader::{CellSpec, ManifestCatalog, System};

use crate::kernel::{BootFailure, BootOptions, Booted, Kernel, KERNEL_NAMESPACE};
use crate::logger;

impl Kernel {
    /// Boots from the cells `cargo cell build` wrote into `cells_dir` (`target/cells`): loads the
    /// kernel cells (`cells/kernel`) and then the library cells (`cells/libs`) into `_kernel`,
    /// each kind in dependency order, and calls each cell's `init`.
    pub fn boot(cells_dir: &Path) -> Result<Kernel> {
        Kernel::boot_trusting(cells_dir, &[])
    }

    /// [`Kernel::boot`], refusing every cell (at boot, for applications and for swaps) that is
    /// not signed by one of the `trusted` Ed25519 public keys when any is given (see
    /// `build_tools::sign`). With no key, signatures are not checked.
    pub fn boot_trusting(cells_dir: &Path, trusted: &[[u8; 32]]) -> Result<Kernel> {
        Kernel::boot_with(
            cells_dir,
            &BootOptions {
                trusted: trusted.to_vec(),
                ..BootOptions::default()
            },
        )
    }

    /// Boots as [`Kernel::boot_trusting`] does, with the choices of `options`.
    pub fn boot_with(cells_dir: &Path, options: &BootOptions) -> Result<Kernel> {
        let trusted = options
            .trusted
            .iter()
            .map(|k| {
                VerifyingKey::from_bytes(k)
                    .map_err(|e| anyhow::anyhow!("a trusted key is not an Ed25519 public key: {e}"))
            })
            .collect::<Result<Vec<_>>>()?;
        let manifest = crate::files::read_manifest(cells_dir)
            .context("the cells' manifest (run `cargo cell build` first)")?;
        if !trusted.is_empty() {
            check_serial(&manifest, options.min_serial)?;
        }
        // The base image links klog statically: this lands in the same ring the klog cell will
        // use once loaded, because the loader binds the cell's statics to the base image's.
        klog::push(
            3,
            "nano_core",
            &format!("early boot: {} cells in the manifest", manifest.cells.len()),
        );
        let platform = Hosted::new().context("reading the base image's symbols")?;
        let mut system = System::new(platform, "nano_core");
        system.set_catalog(Arc::new(ManifestCatalog::new(&manifest)));
        system.declare_manifest_policies(&manifest);
        let kernel_ns = system.create_namespace(KERNEL_NAMESPACE, None)?;
        // The thread that boots drives the kernel: it calls `init`s and, later, whatever it is
        // asked to (reclaim.rs).
        let driver = system.epochs().register();
        let mut kernel = Kernel {
            system,
            kernel_ns,
            manifest,
            cells_dir: cells_dir.to_path_buf(),
            booted: Vec::new(),
            log_token: None,
            apps: Default::default(),
            trusted,
            failed: Vec::new(),
            load_provided: options.load_provided_dependencies,
            driver,
            reclaimed: Default::default(),
            unsafe_app_keys: Vec::new(),
            load_namespaces: Vec::new(),
        };
        for kind in [CellKind::Kernel, CellKind::Libs] {
            let order = kernel.manifest.load_order(kind).map_err(|cycle| {
                anyhow::anyhow!(
                    "the {} cells depend on each other in a cycle: {}",
                    kind.dir(),
                    cycle.join(", ")
                )
            })?;
            let order: Vec<ManifestEntry> = order.into_iter().cloned().collect();
            for entry in order {
                match kernel.load_with_dependencies(kernel_ns, &entry, None) {
                    Ok(loaded) => kernel.booted.extend(loaded),
                    // A library that fails is reported and left out; the rest boots.
                    Err(error) if kind == CellKind::Libs => {
                        log::warn!(target: "nano_core", "library cell `{}` left out: {}", entry.name, crate::errors::render(&error));
                        kernel.failed.push(BootFailure {
                            cell: entry.name.clone(),
                            version: entry.version.clone(),
                            error: crate::errors::render(&error),
                            load_error: crate::errors::find::<loader::LoadError>(&error).cloned(),
                        });
                    }
                    Err(error) => {
                        return Err(error.context(format!(
                            "kernel cell `{}` failed to load, so the boot stops",
                            entry.name
                        )))
                    }
                }
            }
        }
        Ok(kernel)
    }

    /// Loads the manifest's cell `entry` into namespace `ns`: reads its object, checks its
    /// signature when keys are trusted, and lets the loader check its hash against the manifest's
    /// before anything is mapped.
    pub(crate) fn load_entry(&mut self, ns: NamespaceId, entry: &ManifestEntry) -> Result<CellId> {
        let path = self.cells_dir.join(&entry.object);
        // Never more than the manifest says the object is: a FIFO, a device or a growing file
        // in its place is refused before anything is allocated.
        let bytes = crate::files::read_regular(&path, entry.size)
            .with_context(|| format!("cell `{}`", entry.name))?;
        self.load_entry_bytes(ns, entry, &bytes)
    }

    /// [`Kernel::load_entry`] with the object's bytes, read already (from a path a person named).
    pub(crate) fn load_entry_bytes(
        &mut self,
        ns: NamespaceId,
        entry: &ManifestEntry,
        bytes: &[u8],
    ) -> Result<CellId> {
        self.check_signature(entry, bytes)?;
        let spec = CellSpec {
            name: &entry.name,
            version: &entry.version,
            kind: Some(entry.kind),
            sha256: Some(entry.sha256),
        };
        self.system
            .load(ns, spec, bytes)
            .map_err(anyhow::Error::new)
    }

    /// The dependency cells `entry` needs that namespace `ns` does not see yet and the base image
    /// does not provide, in the order to load them.
    pub fn dependency_plan(
        &self,
        ns: NamespaceId,
        entry: &ManifestEntry,
    ) -> Result<Vec<ManifestEntry>> {
        let visible: Vec<Sha256> = self
            .system
            .namespaces()
            .chain(ns)
            .into_iter()
            .filter_map(|n| self.system.namespaces().get(n))
            .flat_map(|n| &n.cells)
            .filter_map(|c| self.system.registry().cell(*c))
            .filter(|c| c.state == CellState::Live)
            .filter_map(|c| c.sha256)
            .collect();
        let platform = self.system.platform();
        let load_provided = self.load_provided;
        let plan = self.manifest.dependency_plan(entry, &mut |dep| {
            visible.contains(&dep.sha256)
                || (!load_provided && dep.provided_by(&mut |s| platform.image_symbol(s).is_some()))
        })?;
        Ok(plan.into_iter().cloned().collect())
    }

    /// Loads the dependency cells `entry` needs (see [`Kernel::dependency_plan`]) into `ns`, then
    /// `entry` itself (from `bytes` when given, else from its object in the cells directory), and
    /// calls its `init`. Returns what it loaded, in load order. On any failure, everything loaded
    /// here is unloaded again, dependents first, and the error names the cell that failed.
    pub(crate) fn load_with_dependencies(
        &mut self,
        ns: NamespaceId,
        entry: &ManifestEntry,
        bytes: Option<&[u8]>,
    ) -> Result<Vec<Booted>> {
        let deps = self.load_dependencies(ns, entry)?;
        let mut loaded: Vec<Booted> = Vec::with_capacity(deps.len() + 1);
        for (id, dep) in deps {
            log::info!(target: "nano_core", "loaded dependency cell `{}` {}", dep.name, dep.version);
            loaded.push(Booted {
                id,
                entry: dep,
                had_init: false,
            });
        }
        let result = match bytes {
            Some(bytes) => self.load_entry_bytes(ns, entry, bytes),
            None => self.load_entry(ns, entry),
        }
        .and_then(|id| {
            loaded.push(Booted {
                id,
                entry: entry.clone(),
                had_init: false,
            });
            self.init_loaded(ns, id, entry)
        });
        match result {
            Ok(had_init) => {
                if let Some(last) = loaded.last_mut() {
                    last.had_init = had_init;
                }
                Ok(loaded)
            }
            Err(error) => {
                for b in loaded.iter().rev() {
                    let _ = self.system.unload(b.id);
                }
                Err(error)
            }
        }
    }

    /// Loads into `ns` the dependency cells `entry` needs that `ns` does not see yet (see
    /// [`Kernel::dependency_plan`]). On failure, those it loaded are unloaded again.
    pub(crate) fn load_dependencies(
        &mut self,
        ns: NamespaceId,
        entry: &ManifestEntry,
    ) -> Result<Vec<(CellId, ManifestEntry)>> {
        let plan = self.dependency_plan(ns, entry)?;
        let mut loaded = Vec::with_capacity(plan.len());
        for dep in plan {
            match self.load_entry(ns, &dep) {
                Ok(id) => loaded.push((id, dep)),
                Err(error) => {
                    for (id, _) in loaded.iter().rev() {
                        let _ = self.system.unload(*id);
                    }
                    return Err(error.context(format!(
                        "dependency cell `{}` {} of `{}`",
                        dep.name, dep.version, entry.name
                    )));
                }
            }
        }
        Ok(loaded)
    }

    /// Calls the init of `entry`, just loaded into `ns` as `id`; returns whether it had one.
    fn init_loaded(&mut self, ns: NamespaceId, id: CellId, entry: &ManifestEntry) -> Result<bool> {
        let had_init = self.call_init(ns, &entry.name)?;
        if entry.name == "klog" && ns == self.kernel_ns {
            let push = self.bind(cell_abi::klog::PUSH)?;
            self.log_token = Some(logger::attach(push));
        }
        log::info!(target: "nano_core", "loaded cell `{}` {} ({id})", entry.name, entry.version);
        Ok(had_init)
    }

    /// Calls `<cell>::init`, as namespace `ns` sees it, if the cell has one. Returns whether it
    /// had one.
    pub(crate) fn call_init(&mut self, ns: NamespaceId, cell: &str) -> Result<bool> {
        let init = match self.system.bind(ns, cell_abi::INIT.of(cell)) {
            Ok(h) => h,
            Err(loader::LoadError::NoSuchSymbol { .. }) => return Ok(false),
            Err(e) => return Err(e.into()),
        };
        (init.get())().map_err(|e| anyhow::anyhow!("cell `{cell}`: init failed: {e}"))?;
        Ok(true)
    }

    /// Reads the manifest again (after `cargo cell build` rewrote it) and returns it. With
    /// trusted keys, a manifest older than the one running (a lower serial: a rollback) is refused
    /// and the running one kept.
    pub fn reload_manifest(&mut self) -> Result<&Manifest> {
        let manifest = crate::files::read_manifest(&self.cells_dir)?;
        if !self.trusted.is_empty() {
            check_serial(&manifest, self.manifest.serial.unwrap_or(0))?;
        }
        self.system.declare_manifest_policies(&manifest);
        self.manifest = manifest;
        Ok(&self.manifest)
    }

    /// With trusted keys: refuses `bytes` unless they are the object `entry` describes (its
    /// SHA-256) and `entry` carries a signature, by one of the keys, of what it says the object is
    /// (name, kind, version, dependency key, SHA-256) in this manifest (its serial). Without
    /// trusted keys: accepts everything (the loader still checks the SHA-256).
    pub fn check_signature(&self, entry: &ManifestEntry, bytes: &[u8]) -> Result<()> {
        if self.trusted.is_empty() {
            return Ok(());
        }
        let who = format!(
            "cell `{}` ({} {})",
            entry.name,
            entry.kind.dir(),
            entry.version
        );
        let Some(serial) = self.manifest.serial else {
            bail!("{who}: the manifest is not signed (no serial), and nano_core only runs signed cells");
        };
        let Some(hex_sig) = &entry.signature else {
            bail!("{who} is not signed, and nano_core only runs signed cells");
        };
        let sig = crate_metadata::hex::decode::<64>(hex_sig)
            .map(|b| Signature::from_bytes(&b))
            .with_context(|| format!("{who}: its signature is not 64 hex bytes"))?;
        if loader::sha256(bytes) != entry.sha256 {
            bail!("{who}: the object is not the one the manifest lists (its SHA-256 differs)");
        }
        let statement = entry.signed_statement(serial);
        if self
            .trusted
            .iter()
            .any(|k| k.verify_strict(statement.as_bytes(), &sig).is_ok())
        {
            return Ok(());
        }
        bail!(
            "{who}: its signature does not verify with any trusted key for what this manifest \
             (serial {serial}) says it is: signed by another key, for another cell, kind or \
             version, or carried over from another signing"
        )
    }
}

/// Refuses a manifest that is not signed, or whose serial is below `min`: one rolled back to an
/// older signing.
fn check_serial(manifest: &Manifest, min: u64) -> Result<()> {
    match manifest.serial {
        None => bail!(
            "the manifest is not signed (no serial; sign it with `cargo cell sign KEY`), and \
             nano_core only runs signed cells"
        ),
        Some(serial) if serial < min => bail!(
            "the manifest's serial {serial} is older than {min}, which was accepted before: a \
             manifest rolled back to an older signing is refused"
        ),
        Some(_) => Ok(()),
    }
}
