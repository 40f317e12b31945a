//! The policies' data: what a system enforces, and why it refused a load or a swap (the error
//! types, which the loader's other error types hold). A leaf.

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use crate_metadata::policy::{AppInterface, Refusal};
use crate_metadata::{NamespaceId, Sha256};

/// What a confined namespace allows its own cells beyond the rules.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NamespacePolicy {
    /// Cells of this namespace (a library the application brings) its cells may bind to
    /// entirely, internals included.
    pub grants: Vec<String>,
}

/// The policies a system enforces.
#[derive(Clone, Debug, Default)]
pub(crate) struct Policies {
    /// Application interfaces by object SHA-256.
    pub(super) interfaces: BTreeMap<Sha256, AppInterface>,
    /// Dependency crates the base image links that applications may use (`log`).
    pub(super) vetted: Vec<String>,
    /// The confined namespaces.
    pub(super) namespaces: BTreeMap<NamespaceId, NamespacePolicy>,
    /// Application objects (SHA-256) admitted to run.
    pub(super) admitted: BTreeSet<Sha256>,
    /// A swap's staging namespace under a confined namespace, to that namespace: the new
    /// versions staged there count as its own.
    pub(super) staging: BTreeMap<NamespaceId, NamespaceId>,
}

/// One binding a policy refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefusedBinding {
    /// The symbol, demangled.
    pub symbol: String,
    /// The cell that defines it (`nano_core` for the base image, `platform`).
    pub provider: String,
    /// The rule that refused it.
    pub refusal: Refusal,
}

/// Why a policy refused a load or a swap. Nothing was mapped or changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PolicyError {
    /// A cell of a confined namespace binds to symbols no rule allows it.
    Refused {
        /// The cell being loaded.
        cell: String,
        /// Its namespace.
        namespace: String,
        /// Every refused binding.
        bindings: Vec<RefusedBinding>,
    },
    /// An application object that was not built with `unsafe` forbidden and that no key trusted
    /// for unsafe applications signed.
    UnsafeApplication {
        /// The application cell.
        cell: String,
    },
    /// A new version of a cell no longer offers an application a symbol it binds to.
    InterfaceNarrowed {
        /// The swapped cell.
        cell: String,
        /// The application cell that binds to the symbol.
        app: String,
        /// Its namespace.
        namespace: String,
        /// The symbol, demangled.
        symbol: String,
        /// The rule that refuses it in the new version.
        refusal: Refusal,
    },
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PolicyError::Refused {
                cell,
                namespace,
                bindings,
            } => {
                write!(
                    f,
                    "cell `{cell}` in namespace `{namespace}` binds to {} symbol{} applications \
                     may not use:",
                    bindings.len(),
                    if bindings.len() == 1 { "" } else { "s" }
                )?;
                for b in bindings {
                    write!(f, "\n  {} in `{}`: {}", b.symbol, b.provider, b.refusal)?;
                }
                Ok(())
            }
            PolicyError::UnsafeApplication { cell } => write!(
                f,
                "application `{cell}` was not built with `unsafe` forbidden, and no key trusted \
                 for unsafe applications signed it"
            ),
            PolicyError::InterfaceNarrowed {
                cell,
                app,
                namespace,
                symbol,
                refusal,
            } => write!(
                f,
                "the new version of `{cell}` no longer offers `{symbol}`, which application \
                 `{app}` (namespace `{namespace}`) binds to: {refusal}"
            ),
        }
    }
}

impl core::error::Error for PolicyError {}
