//! A sorted, comparable picture of the namespaces, for "the system is exactly as it was" checks
//! and for the inspection tools.

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

use crate::{Namespaces, SymbolRef};
use crate_metadata::{CellId, NamespaceId};

/// One namespace, sorted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamespaceSnapshot {
    /// Its id.
    pub id: NamespaceId,
    /// Its name.
    pub name: String,
    /// Its parent.
    pub parent: Option<NamespaceId>,
    /// Its cells, in load order.
    pub cells: Vec<CellId>,
    /// Its symbols, sorted by name.
    pub symbols: Vec<(String, SymbolRef)>,
}

/// Every namespace, sorted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The namespaces in id order.
    pub namespaces: Vec<NamespaceSnapshot>,
}

impl Snapshot {
    pub(crate) fn of(all: &Namespaces) -> Snapshot {
        let namespaces = all
            .iter()
            .map(|n| {
                let mut symbols: Vec<(String, SymbolRef)> =
                    n.symbols.iter().map(|(k, v)| (k.to_string(), *v)).collect();
                symbols.sort_by(|a, b| a.0.cmp(&b.0));
                NamespaceSnapshot {
                    id: n.id,
                    name: n.name.clone(),
                    parent: n.parent,
                    cells: n.cells.clone(),
                    symbols,
                }
            })
            .collect();
        Snapshot { namespaces }
    }
}
