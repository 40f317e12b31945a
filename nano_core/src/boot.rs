//! Booting: loading the kernel cells into `_kernel` in dependency order and initialising them.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use std::sync::Arc;

use crate_metadata::{CellId, CellKind, CellState, Manifest, ManifestEntry, NamespaceId};
use ed25519_dalek::{Signature, VerifyingKey};
use loader::hosted::Hosted;
use loader::platform::SymbolSource;
use loader::{
    CellSpec, Handle, ManifestCatalog, NewVersion, SwapOptions, SwapReport, SwapRequest, System,
};
use namespace::Namespaces;
use sha2::{Digest, Sha256};

use crate::logger;

/// The namespace that holds the kernel cells.
pub const KERNEL_NAMESPACE: &str = "_kernel";

/// The signature of the init convention.
pub type InitFn = fn() -> Result<(), String>;

/// One cell as the boot loaded it.
#[derive(Clone, Debug)]
pub struct Booted {
    /// The cell's id.
    pub id: CellId,
    /// Its manifest entry.
    pub entry: ManifestEntry,
    /// Whether it had an init entry point.
    pub had_init: bool,
}

/// A booted system: the loader's [`System`] on the hosted platform, with the kernel cells loaded.
pub struct Kernel {
    system: System<Hosted>,
    kernel_ns: crate_metadata::NamespaceId,
    manifest: Manifest,
    cells_dir: PathBuf,
    booted: Vec<Booted>,
    log_token: Option<u64>,
    pub(crate) apps: crate::apps::Apps,
    trusted: Vec<VerifyingKey>,
    failed: Vec<BootFailure>,
    load_provided: bool,
    /// Keys trusted for unsafe applications (`policy.rs`).
    pub(crate) unsafe_app_keys: Vec<VerifyingKey>,
}

/// Choices for [`Kernel::boot_with`].
#[derive(Clone, Debug, Default)]
pub struct BootOptions {
    /// Ed25519 public keys: when any is given, every cell must be signed by one of them.
    pub trusted: Vec<[u8; 32]>,
    /// With trusted keys: the lowest manifest serial to accept (the highest one accepted before),
    /// so that a manifest rolled back to an older signing is refused.
    pub min_serial: u64,
    /// Load every dependency cell, even those the running image already links (whose symbols
    /// it defines): the cells then bind to the dependency cells first (the namespace comes before
    /// the image), and the dependency cells' statics are bound to the image's. For comparing a
    /// crate linked statically with the same crate as a cell.
    pub load_provided_dependencies: bool,
}

/// A library cell the boot left out because it (or a dependency cell loaded for it) failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootFailure {
    /// The library cell.
    pub cell: String,
    /// Its version.
    pub version: String,
    /// Why, with the failing dependency cell named when it was one.
    pub error: String,
}

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
        let manifest_path = cells_dir.join("manifest.json");
        let text = crate::files::read_manifest_text(&manifest_path).with_context(|| {
            format!(
                "reading {} (run `cargo cell build` first)",
                manifest_path.display()
            )
        })?;
        let manifest: Manifest = serde_json::from_str(&text)
            .with_context(|| format!("parsing {}", manifest_path.display()))?;
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
        crate::policy::declare_policies(&mut system, &manifest);
        let kernel_ns = system
            .create_namespace(KERNEL_NAMESPACE, None)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
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
            unsafe_app_keys: Vec::new(),
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
                match kernel.load_with_dependencies(kernel_ns, &entry) {
                    Ok(()) => {}
                    // A library that fails is reported and left out; the rest boots.
                    Err(error) if kind == CellKind::Libs => {
                        log::warn!(target: "nano_core", "library cell `{}` left out: {error:#}", entry.name);
                        kernel.failed.push(BootFailure {
                            cell: entry.name.clone(),
                            version: entry.version.clone(),
                            error: format!("{error:#}"),
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
        self.check_signature(entry, &bytes)?;
        let spec = CellSpec {
            name: &entry.name,
            version: &entry.version,
            kind: Some(entry.kind),
            sha256: Some(&entry.sha256),
        };
        self.system.load(ns, spec, &bytes).map_err(|e| match e {
            // Typed, so that callers and tests can tell a policy refusal by its variant.
            loader::LoadError::Policy(_) => anyhow::Error::new(e),
            e => anyhow::anyhow!("{e}"),
        })
    }

    /// The dependency cells `entry` needs that namespace `ns` does not see yet and the base image
    /// does not provide, in the order to load them.
    pub fn dependency_plan(
        &self,
        ns: NamespaceId,
        entry: &ManifestEntry,
    ) -> Result<Vec<ManifestEntry>> {
        let visible: Vec<&str> = self
            .system
            .namespaces()
            .chain(ns)
            .into_iter()
            .filter_map(|n| self.system.namespaces().get(n))
            .flat_map(|n| &n.cells)
            .filter_map(|c| self.system.registry().cell(*c))
            .filter(|c| c.state == CellState::Live)
            .filter_map(|c| c.sha256.as_deref())
            .collect();
        let platform = self.system.platform();
        let load_provided = self.load_provided;
        let plan = self.manifest.dependency_plan(entry, &mut |dep| {
            visible.contains(&dep.sha256.as_str())
                || (!load_provided && dep.provided_by(&mut |s| platform.image_symbol(s).is_some()))
        })?;
        Ok(plan.into_iter().cloned().collect())
    }

    /// Loads the dependency cells `entry` needs (see [`Kernel::dependency_plan`]) into `ns`, then
    /// `entry` itself, and calls its `init`. On any failure, everything loaded here is unloaded
    /// again, dependents first, and the error names the cell that failed.
    pub(crate) fn load_with_dependencies(
        &mut self,
        ns: NamespaceId,
        entry: &ManifestEntry,
    ) -> Result<()> {
        let deps = self.load_dependencies(ns, entry)?;
        let mut loaded: Vec<CellId> = deps.iter().map(|(id, _)| *id).collect();
        for (id, dep) in deps {
            log::info!(target: "nano_core", "loaded dependency cell `{}` {}", dep.name, dep.version);
            self.booted.push(Booted {
                id,
                entry: dep,
                had_init: false,
            });
        }
        let result = self.load_entry(ns, entry).and_then(|id| {
            loaded.push(id);
            self.init_loaded(id, entry)
        });
        if let Err(error) = result {
            for id in loaded.iter().rev() {
                let _ = self.system.unload(*id);
            }
            self.booted.retain(|b| !loaded.contains(&b.id));
            return Err(error);
        }
        Ok(())
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

    /// Calls the init of `entry`, just loaded into `_kernel` as `id`, and records it as booted.
    fn init_loaded(&mut self, id: CellId, entry: &ManifestEntry) -> Result<()> {
        let had_init = self.call_init(&entry.name)?;
        if entry.name == "klog" {
            // SAFETY: `klog::push` has exactly this signature (cells/kernel/klog).
            let push = unsafe { self.handle::<logger::PushFn>("klog::push") }?;
            self.log_token = Some(logger::attach(push));
        }
        log::info!(target: "nano_core", "loaded cell `{}` {}", entry.name, entry.version);
        self.booted.push(Booted {
            id,
            entry: entry.clone(),
            had_init,
        });
        Ok(())
    }

    /// Calls `<cell>::init` if the cell has one. Returns whether it had one.
    fn call_init(&mut self, cell: &str) -> Result<bool> {
        let path = format!("{cell}::init");
        // SAFETY: the init convention's signature is `fn() -> Result<(), String>`.
        let init = match unsafe { self.system.handle::<InitFn>(self.kernel_ns, &path) } {
            Ok(h) => h,
            Err(loader::LoadError::NoSuchSymbol { .. }) => return Ok(false),
            Err(e) => bail!("{e}"),
        };
        (init.get())().map_err(|e| anyhow::anyhow!("cell `{cell}`: init failed: {e}"))?;
        Ok(true)
    }

    /// A handle to the function `path` (`memfs::read`) in `_kernel`.
    ///
    /// # Safety
    /// `F` must be the function's exact signature.
    pub unsafe fn handle<F: Copy>(&mut self, path: &str) -> Result<Handle<F>> {
        // SAFETY: passed on from the caller.
        unsafe { self.system.handle::<F>(self.kernel_ns, path) }.map_err(|e| anyhow::anyhow!("{e}"))
    }

    /// The loader's system.
    pub fn system(&self) -> &System<Hosted> {
        &self.system
    }

    /// The loader's system, mutably (to load more cells).
    pub fn system_mut(&mut self) -> &mut System<Hosted> {
        &mut self.system
    }

    /// The `_kernel` namespace.
    pub fn kernel_namespace(&self) -> crate_metadata::NamespaceId {
        self.kernel_ns
    }

    /// The namespaces.
    pub fn namespaces(&self) -> &Namespaces {
        self.system.namespaces()
    }

    /// The cells the boot loaded, in load order (dependency cells before the cells that need
    /// them).
    pub fn booted(&self) -> &[Booted] {
        &self.booted
    }

    /// The library cells the boot left out, and why.
    pub fn boot_failures(&self) -> &[BootFailure] {
        &self.failed
    }

    /// The manifest the boot read.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The directory the cells came from (`target/cells`).
    pub fn cells_dir(&self) -> &Path {
        &self.cells_dir
    }

    /// Reads the manifest again (after `cargo cell build` rewrote it) and returns it. With
    /// trusted keys, a manifest older than the one running (a lower serial: a rollback) is refused
    /// and the running one kept.
    pub fn reload_manifest(&mut self) -> Result<&Manifest> {
        let path = self.cells_dir.join("manifest.json");
        let text = crate::files::read_manifest_text(&path)?;
        let manifest: Manifest =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        if !self.trusted.is_empty() {
            check_serial(&manifest, self.manifest.serial.unwrap_or(0))?;
        }
        crate::policy::declare_policies(&mut self.system, &manifest);
        self.manifest = manifest;
        Ok(&self.manifest)
    }

    /// The live cell named `name` in `_kernel`.
    pub fn cell_id(&self, name: &str) -> Option<CellId> {
        self.system.cell_in(self.kernel_ns, name)
    }

    /// The object a swap of `cell` loads when none is named: its new version from
    /// `cells/upgrades` if the manifest has one whose hash differs from the live cell's, else the
    /// manifest's object for the cell's own kind when that differs (so a second swap goes back,
    /// and the retired version with that hash is reused). `None` when the live cell is both.
    pub fn default_swap_object(&self, cell: &str) -> Option<PathBuf> {
        let live_sha = self
            .cell_id(cell)
            .and_then(|id| self.system.registry().cell(id))
            .and_then(|c| c.sha256.clone());
        let differs = |e: &&ManifestEntry| Some(&e.sha256) != live_sha.as_ref();
        let upgrade = self
            .manifest
            .cells
            .iter()
            .filter(|e| e.kind == CellKind::Upgrades && e.name == cell)
            .filter(|e| e.rebuilt_for.is_none())
            .find(differs);
        // Not another release of a dependency cell: that moves with a dependency upgrade of
        // the cells that use it.
        let own = self
            .manifest
            .cells
            .iter()
            .filter(|e| e.name == cell && !matches!(e.kind, CellKind::Upgrades | CellKind::Deps))
            .find(differs);
        upgrade.or(own).map(|e| self.cells_dir.join(&e.object))
    }

    /// Swaps the live cell `cell` for the object at `object` (its SHA-256 is computed here; a
    /// retired version with the same hash is reused). State is kept by rebinding or moved by the
    /// new version's `transfer_state`, as `options` allow.
    pub fn swap_cell(
        &mut self,
        cell: &str,
        object: &Path,
        options: &SwapOptions,
    ) -> Result<SwapReport> {
        let bytes = crate::files::read_regular(object, crate::files::MAX_OBJECT)
            .with_context(|| format!("swapping `{cell}`"))?;
        self.swap_bytes(cell, &bytes, options)
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
        if hex(&Sha256::digest(bytes)) != entry.sha256 {
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

    /// The serial of the manifest the kernel runs (a signed manifest's).
    pub fn manifest_serial(&self) -> Option<u64> {
        self.manifest.serial
    }

    /// [`Kernel::swap_cell`] with the object's bytes.
    pub fn swap_bytes(
        &mut self,
        cell: &str,
        bytes: &[u8],
        options: &SwapOptions,
    ) -> Result<SwapReport> {
        let old = self
            .cell_id(cell)
            .with_context(|| format!("no live cell `{cell}` in {KERNEL_NAMESPACE}"))?;
        let sha = hex(&Sha256::digest(bytes));
        // A dependency upgrade (or the way back from one) is a transaction of several cells.
        let target = self
            .manifest
            .cells
            .iter()
            .find(|e| e.name == cell && e.sha256 == sha)
            .cloned();
        if let Some(target) = target {
            if let Some((upgrade, backwards)) = self.dependency_upgrade_of(cell, &target) {
                return self.swap_dependency_upgrade(cell, &target, &upgrade, backwards, options);
            }
        }
        if !self.trusted.is_empty() {
            let entry = self
                .manifest
                .cells
                .iter()
                .find(|e| e.name == cell && e.sha256 == sha)
                .cloned()
                .with_context(|| {
                    format!("cell `{cell}`: the object is not in the manifest, so it is not signed")
                })?;
            self.check_signature(&entry, bytes)?;
        }
        let version = self
            .system
            .registry()
            .cell(old)
            .map(|c| c.version.clone())
            .unwrap_or_default();
        let spec = CellSpec {
            name: cell,
            version: &version,
            kind: self.system.registry().cell(old).and_then(|c| c.kind),
            sha256: Some(&sha),
        };
        let request = SwapRequest {
            old,
            new: NewVersion::Object { spec, bytes },
        };
        self.system
            .swap(&[request], options)
            .map_err(|e| anyhow::Error::new(e).context(format!("swapping `{cell}`")))
    }
}

/// How long dropping a kernel waits for each application still running on its thread.
const DROP_DEADLINE: std::time::Duration = std::time::Duration::from_secs(2);

impl Drop for Kernel {
    fn drop(&mut self) {
        let ids: Vec<u64> = self.apps().iter().map(|a| a.id).collect();
        for id in ids {
            // An application still running after the deadline keeps its cells: its thread may
            // still be in them (the system leaves mapped what a live handle can reach).
            if self.wait_app_within(id, DROP_DEADLINE).is_err() && self.app_namespace(id).is_some()
            {
                let running = self
                    .apps()
                    .iter()
                    .any(|a| a.id == id && a.state == crate::apps::AppState::Running);
                if running {
                    log::warn!(target: "nano_core", "application #{id} still runs; its cells stay mapped");
                    continue;
                }
            }
            let _ = self.end_app(id);
        }
        if let Some(token) = self.log_token.take() {
            logger::detach(token);
        }
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

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    crate_metadata::hex::encode(bytes)
}
