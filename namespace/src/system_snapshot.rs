//! A picture of a whole cell system, as the inspection tools read it.
//!
//! One model, two sources: a running `nano_core` serializes its loader's registry and namespaces
//! (`source: live`), and `cargo cell deps` makes the same picture offline from a dry link of the
//! built objects (`source: offline`, where every address is a heap address of the dry link, not
//! an address the cell will have when it is loaded for real). The loader's
//! `System::registry()` and `System::namespaces()` are all a producer needs:
//!
//! ```ignore
//! let snapshot = SystemSnapshot::live(system.registry().clone(), system.namespaces().clone());
//! ```

use alloc::string::String;
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

use crate::Namespaces;
use crate_metadata::Registry;

/// Where a [`SystemSnapshot`] came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SnapshotSource {
    /// A dry link of the built objects: nothing was mapped for real, addresses are heap
    /// addresses of the dry link.
    Offline,
    /// A running system: addresses are where the cells live.
    Live,
}

/// A symbol a cell needs that nothing visible defines.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnresolvedSymbol {
    /// The mangled name.
    pub name: String,
    /// A base-image symbol with the same path and another hash, when there is one.
    #[serde(default)]
    pub other_hash: Option<String>,
    /// A namespace that defines it but that the cell's namespace cannot see.
    #[serde(default)]
    pub hidden_in: Option<String>,
    /// A cell that exports it but failed to link itself.
    #[serde(default)]
    pub failed_provider: Option<String>,
}

/// A cell that could not be linked: it is not in the registry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnresolvedCell {
    /// The crate name.
    pub name: String,
    /// The crate version.
    pub version: String,
    /// The namespace it was to be loaded into.
    pub namespace: String,
    /// The loader's error, as people read it.
    pub message: String,
    /// The symbols nothing defines (empty when the link failed for another reason).
    pub missing: Vec<UnresolvedSymbol>,
}

/// The registry and the namespaces of a system, with where they came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SystemSnapshot {
    /// A live system or a dry link.
    pub source: SnapshotSource,
    /// Every cell and edge.
    pub registry: Registry,
    /// Every namespace.
    pub namespaces: Namespaces,
    /// The cells a dry link could not link (always empty for a live system).
    #[serde(default)]
    pub unresolved: Vec<UnresolvedCell>,
}

impl SystemSnapshot {
    /// A snapshot of a running system.
    pub fn live(registry: Registry, namespaces: Namespaces) -> SystemSnapshot {
        SystemSnapshot {
            source: SnapshotSource::Live,
            registry,
            namespaces,
            unresolved: Vec::new(),
        }
    }

    /// A snapshot of a dry link.
    pub fn offline(
        registry: Registry,
        namespaces: Namespaces,
        unresolved: Vec<UnresolvedCell>,
    ) -> SystemSnapshot {
        SystemSnapshot {
            source: SnapshotSource::Offline,
            registry,
            namespaces,
            unresolved,
        }
    }
}
