//! Export policies and safe applications at load time (the rules are `crate_metadata::policy`).
//!
//! A namespace the caller **confines** ([`System::confine_namespace`], `nano_core` does it for
//! every application's namespace) holds application code: every cell loaded into it binds to a
//! symbol outside it only where a [`Rule`] allows, and to a cell inside it that declares an
//! interface only through that interface or a [`NamespacePolicy::grants`] entry. The check runs
//! after resolution and before anything is mapped, and names every refused symbol, its cell and
//! the rule ([`PolicyError::Refused`]). An application cell ([`CellKind::Apps`]) loaded into a
//! confined namespace must be **admitted** ([`System::admit_application`]): its object's SHA-256
//! is one the caller vouches for — built with `unsafe` forbidden, or signed by a key trusted for
//! unsafe applications; otherwise [`PolicyError::UnsafeApplication`].
//!
//! Interfaces are declared per object ([`System::declare_interface`], by SHA-256), so a new
//! version brings its own and a swap compares the two (`swap/verify.rs`). A new version of an
//! application's cell is staged in a namespace confined like the application's and must be
//! admitted itself, whatever kind its caller names it ([`System::check_new_version`]).
//!
//! [`System::declare_manifest_policies`] and [`System::confine_application`] set all of this up
//! from a manifest, the same way for `nano_core` and for the build tool's dry link.

pub(crate) mod types;

pub use types::{NamespacePolicy, PolicyError, RefusedBinding};

use alloc::boxed::Box;

use alloc::string::String;
use alloc::vec::Vec;

use crate::error::LoadError;
use crate::index::SymbolIndex;
use crate::link::{Bindings, Target};
use crate::parse::Object;
use crate::platform::Platform;
use crate::swap::{Pair, SlotWrite, SwapError};
use crate::system::{CellSpec, System};
use crate_metadata::policy::{decide, AppInterface, Provider, Refusal, Rule};
use crate_metadata::{
    demangle, CellId, CellKind, Manifest, ManifestEntry, NamespaceId, Registry, Sha256,
};

impl<P: Platform> System<P> {
    /// Declares the application interface of the object whose SHA-256 is `sha256`.
    pub fn declare_interface(&mut self, sha256: Sha256, interface: AppInterface) {
        self.policies.interfaces.insert(sha256, interface);
    }

    /// The dependency crates the base image links that applications may use.
    pub fn set_vetted_crates(&mut self, crates: Vec<String>) {
        self.policies.vetted = crates;
    }

    /// Confines namespace `ns`: what its cells may bind to is checked (see the module doc).
    pub fn confine_namespace(&mut self, ns: NamespaceId, policy: NamespacePolicy) {
        self.policies.namespaces.insert(ns, policy);
    }

    /// Admits the application object whose SHA-256 is `sha256` into confined namespaces.
    pub fn admit_application(&mut self, sha256: Sha256) {
        self.policies.admitted.insert(sha256);
    }

    /// Declares the policies `manifest` carries: every entry's application interface (by its
    /// object's SHA-256, new versions in `cells/upgrades` included, so a swap compares the two),
    /// and the manifest's dependency crates as the vetted crates applications may use.
    pub fn declare_manifest_policies(&mut self, manifest: &Manifest) {
        for entry in &manifest.cells {
            if let Some(interface) = &entry.app_interface {
                self.declare_interface(entry.sha256, interface.clone());
            }
        }
        let mut vetted: Vec<String> = manifest
            .cells
            .iter()
            .filter(|e| e.kind == CellKind::Deps)
            .map(|e| e.name.clone())
            .collect();
        vetted.sort();
        vetted.dedup();
        self.set_vetted_crates(vetted);
    }

    /// Confines namespace `ns` of the application `entry` with the grants its entry lists, and
    /// admits its object when the entry claims it was built with `unsafe` forbidden or when
    /// `signed_for_unsafe` (the caller checked that a key trusted for unsafe applications signed
    /// the entry).
    pub fn confine_application(
        &mut self,
        ns: NamespaceId,
        entry: &ManifestEntry,
        signed_for_unsafe: bool,
    ) {
        let policy = NamespacePolicy {
            grants: entry.grants.clone(),
        };
        self.confine_namespace(ns, policy);
        if entry.unsafe_forbidden || signed_for_unsafe {
            self.admit_application(entry.sha256);
        }
    }

    /// Whether the object whose SHA-256 is `sha256` is admitted.
    fn is_admitted(&self, sha256: Option<Sha256>) -> bool {
        sha256.is_some_and(|s| self.policies.admitted.contains(&s))
    }

    /// Whether namespace `ns` is confined.
    pub fn is_confined(&self, ns: NamespaceId) -> bool {
        self.policies.namespaces.contains_key(&ns)
    }

    /// The interface declared for cell `id`'s object.
    pub fn interface_of(&self, id: CellId) -> Option<&AppInterface> {
        let sha = self.registry.cell(id)?.sha256?;
        self.policies.interfaces.get(&sha)
    }

    /// Which rule lets a cell of confined namespace `ns` bind to `symbol` of `provider` (a cell
    /// id, [`Registry::BASE`] or [`Registry::PLATFORM`]); `None` when `ns` is not confined.
    pub fn binding_rule(
        &self,
        ns: NamespaceId,
        provider: CellId,
        symbol: &str,
    ) -> Option<Result<Rule, Refusal>> {
        let policy = self.policies.namespaces.get(&ns)?;
        let interface = self.interface_of(provider);
        Some(self.decide_with(ns, policy, provider, interface, symbol))
    }

    /// [`System::binding_rule`] with the provider's interface given (a new version's, in a swap).
    pub(crate) fn decide_with(
        &self,
        ns: NamespaceId,
        policy: &NamespacePolicy,
        provider: CellId,
        interface: Option<&AppInterface>,
        symbol: &str,
    ) -> Result<Rule, Refusal> {
        let view = match provider {
            Registry::BASE => Provider::Base {
                vetted: &self.policies.vetted,
            },
            Registry::PLATFORM => Provider::Platform,
            id => {
                let cell = self.registry.cell(id);
                let kind = cell.and_then(|c| c.kind);
                let name = cell.map_or("", |c| c.name.as_str());
                let home = cell.and_then(|c| c.namespace);
                let home = home.map(|h| *self.policies.staging.get(&h).unwrap_or(&h));
                if home == Some(ns) {
                    let declares = !matches!(kind, Some(CellKind::Deps | CellKind::Apps));
                    Provider::Own {
                        cell: name,
                        interface: declares.then(|| interface.unwrap_or(&EMPTY)),
                        granted: policy.grants.iter().any(|g| g == name),
                    }
                } else {
                    Provider::Kernel {
                        interface,
                        vetted: (kind == Some(CellKind::Deps)).then_some(name),
                    }
                }
            }
        };
        decide(view, symbol)
    }

    /// The policy check of a load into `ns`, before anything is mapped: an application must be
    /// admitted, and every binding outside the cell must be allowed.
    pub(crate) fn check_policy(
        &self,
        ns: NamespaceId,
        spec: CellSpec<'_>,
        object: &Object<'_>,
        bindings: &Bindings<'_>,
    ) -> Result<(), LoadError> {
        let Some(policy) = self.policies.namespaces.get(&ns) else {
            return Ok(());
        };
        let cell = spec.name;
        if spec.kind == Some(CellKind::Apps) && !self.is_admitted(spec.sha256) {
            return Err(LoadError::Policy(Box::new(
                PolicyError::UnsafeApplication { cell: cell.into() },
            )));
        }
        let mut refused = Vec::new();
        for (i, target) in bindings.targets.iter_enumerated() {
            let Some(Target::External(r)) = target else {
                continue;
            };
            if i == SymbolIndex(0) {
                continue;
            }
            let name = object.symbol_name(cell, i)?;
            let provider = r.provider.cell();
            let interface = self.interface_of(provider);
            if let Err(refusal) = self.decide_with(ns, policy, provider, interface, name) {
                refused.push(RefusedBinding {
                    symbol: demangle::demangle(name),
                    provider: self.name_of(provider),
                    refusal,
                });
            }
        }
        if refused.is_empty() {
            return Ok(());
        }
        // A new version staged for a swap is named by the namespace it is to join.
        let home = *self.policies.staging.get(&ns).unwrap_or(&ns);
        let namespace = self
            .namespaces
            .get(home)
            .map(|n| n.name.clone())
            .unwrap_or_default();
        Err(LoadError::Policy(Box::new(PolicyError::Refused {
            cell: cell.into(),
            namespace,
            bindings: refused,
        })))
    }

    /// The admission check of a new version `spec` of the live cell `old`, staged in `staging`:
    /// when `old` is an application's cell in a confined namespace (loaded as one, or admitted as
    /// a new version of one), the new version is one too and must be admitted, whatever kind
    /// `spec` names (a new version from `cells/upgrades` says `upgrades`). Runs before the new
    /// version is loaded; its bindings are then checked by the load itself, under the
    /// application's policy.
    pub(crate) fn check_new_version(
        &self,
        staging: NamespaceId,
        old: CellId,
        spec: CellSpec<'_>,
    ) -> Result<(), LoadError> {
        if !self.policies.namespaces.contains_key(&staging) {
            return Ok(());
        }
        let replaces_app = self
            .registry
            .cell(old)
            .is_some_and(|c| c.kind == Some(CellKind::Apps) || self.is_admitted(c.sha256));
        if replaces_app && !self.is_admitted(spec.sha256) {
            return Err(LoadError::Policy(Box::new(
                PolicyError::UnsafeApplication {
                    cell: spec.name.into(),
                },
            )));
        }
        Ok(())
    }

    /// Forgets the policy of a namespace that is removed.
    pub(crate) fn forget_namespace_policy(&mut self, ns: NamespaceId) {
        self.policies.namespaces.remove(&ns);
    }

    /// Confines a swap's staging namespace `staging` under `ns` as `ns` is (when it is), so that
    /// a new version of an application's cell is held to the same policy as its first load.
    pub(crate) fn confine_staging(&mut self, ns: NamespaceId, staging: NamespaceId) {
        if let Some(policy) = self.policies.namespaces.get(&ns).cloned() {
            self.policies.namespaces.insert(staging, policy);
            self.policies.staging.insert(staging, ns);
        }
    }

    /// Forgets a staging namespace (the swap is over).
    pub(crate) fn forget_staging(&mut self, staging: NamespaceId) {
        self.policies.staging.remove(&staging);
        self.policies.namespaces.remove(&staging);
    }

    /// A swap's check that the new version `p.new` still offers every application that binds to
    /// the old one what it binds to, under the new version's interface: the slot writes `writes`
    /// move those applications' slots.
    pub(crate) fn check_interfaces(&self, p: &Pair, writes: &[SlotWrite]) -> Result<(), SwapError> {
        let (Some(old), Some(new)) = (self.registry.cell(p.old), self.registry.cell(p.new)) else {
            return Ok(());
        };
        let interface = self.interface_by_sha(new.sha256);
        for w in writes {
            let Some(dependent) = self.registry.cell(w.dependent) else {
                continue;
            };
            let Some(ns) = dependent.namespace else {
                continue;
            };
            let Some(policy) = self.policies.namespaces.get(&ns) else {
                continue;
            };
            let Some(symbol) = new.symbol(w.new_symbol) else {
                continue;
            };
            if let Err(refusal) = self.decide_with(ns, policy, p.new, interface, &symbol.name) {
                return Err(SwapError::Policy(Box::new(
                    PolicyError::InterfaceNarrowed {
                        cell: old.name.clone(),
                        app: dependent.name.clone(),
                        namespace: self
                            .namespaces
                            .get(ns)
                            .map(|n| n.name.clone())
                            .unwrap_or_default(),
                        symbol: demangle::demangle(&symbol.name),
                        refusal,
                    },
                )));
            }
        }
        Ok(())
    }

    /// The interface declared for the object `sha256`.
    fn interface_by_sha(&self, sha256: Option<Sha256>) -> Option<&AppInterface> {
        self.policies.interfaces.get(&sha256?)
    }
}

/// The interface of a cell that declares none.
static EMPTY: AppInterface = AppInterface { items: Vec::new() };
