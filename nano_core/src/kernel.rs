//! The kernel: the loader's system on the hosted platform, the `_kernel` namespace, the manifest
//! it booted from and what the boot did. A leaf: the operations on it live with their concerns
//! (`boot.rs`, `swap.rs`, `apps.rs`, `reclaim.rs`).

use std::path::{Path, PathBuf};

use anyhow::Result;
use crate_metadata::{CellId, Manifest, ManifestEntry, NamespaceId};
use ed25519_dalek::VerifyingKey;
use loader::hosted::Hosted;
use loader::{Handle, System};
use namespace::Namespaces;

use crate::app_table::Apps;
use crate::logger;

/// The namespace that holds the kernel cells.
pub const KERNEL_NAMESPACE: &str = "_kernel";

/// The signature of the init convention ([`cell_abi::INIT`]).
pub type InitFn = cell_abi::Init;

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
///
/// Its methods live with their concerns: booting and loading in `boot.rs`, swaps in `swap.rs`,
/// applications in `apps.rs`, loading and unloading while it runs in `load_unload.rs`.
pub struct Kernel {
    pub(crate) system: System<Hosted>,
    pub(crate) kernel_ns: NamespaceId,
    pub(crate) manifest: Manifest,
    pub(crate) cells_dir: PathBuf,
    pub(crate) booted: Vec<Booted>,
    pub(crate) log_token: Option<u64>,
    pub(crate) apps: Apps,
    pub(crate) trusted: Vec<VerifyingKey>,
    pub(crate) failed: Vec<BootFailure>,
    pub(crate) load_provided: bool,
    /// The thread that drives the kernel, registered for grace periods (`reclaim.rs`).
    pub(crate) driver: loader::ThreadRegistration,
    /// What was reclaimed since the boot.
    pub(crate) reclaimed: ReclaimTotals,
    /// Keys trusted for unsafe applications (`policy.rs`).
    pub(crate) unsafe_app_keys: Vec<VerifyingKey>,
    /// The namespaces a run-time `load` made, which go when their last cell is unloaded
    /// (`load_unload.rs`).
    pub(crate) load_namespaces: Vec<NamespaceId>,
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
    /// The loader's error under it, when the loader refused a cell.
    pub load_error: Option<loader::LoadError>,
}

impl Kernel {
    /// A handle to the function `path` (`memfs::read`) in `_kernel`.
    ///
    /// # Safety
    /// `F` must be the function's exact signature.
    pub unsafe fn handle<F: Copy>(&mut self, path: &str) -> Result<Handle<F>> {
        // SAFETY: passed on from the caller.
        unsafe { self.system.handle::<F>(self.kernel_ns, path) }.map_err(anyhow::Error::new)
    }

    /// A handle to an interface function of a cell in `_kernel`, with the type `cell-abi`
    /// declares for it: `kernel.bind(cell_abi::memfs::READ)`.
    pub fn bind<F: Copy>(&mut self, interface: cell_abi::Interface<F>) -> Result<Handle<F>> {
        let ns = self.kernel_ns;
        self.bind_in(ns, interface)
    }

    /// [`Kernel::bind`] in the namespace `ns` (an application's).
    pub fn bind_in<F: Copy>(
        &mut self,
        ns: NamespaceId,
        interface: cell_abi::Interface<F>,
    ) -> Result<Handle<F>> {
        Ok(self.system.bind(ns, interface)?)
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
    pub fn kernel_namespace(&self) -> NamespaceId {
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

    /// The live cell named `name` in `_kernel`.
    pub fn cell_id(&self, name: &str) -> Option<CellId> {
        self.system.cell_in(self.kernel_ns, name)
    }

    /// The serial of the manifest the kernel runs (a signed manifest's).
    pub fn manifest_serial(&self) -> Option<u64> {
        self.manifest.serial
    }
}

/// How long dropping a kernel waits for each application still running on its thread.
const DROP_DEADLINE: std::time::Duration = std::time::Duration::from_secs(2);

impl Drop for Kernel {
    fn drop(&mut self) {
        self.end_apps_within(DROP_DEADLINE);
        if let Some(token) = self.log_token.take() {
            logger::detach(token);
        }
    }
}

/// What the kernel reclaimed since it booted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReclaimTotals {
    /// Retired versions freed.
    pub cells: u64,
    /// Bytes unmapped.
    pub unmapped: u64,
}
