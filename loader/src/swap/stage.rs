//! Stage: check the requests, then load every new version into a staging namespace whose parent
//! is the old versions' namespace (or reuse a retired version with the same SHA-256), so the new
//! versions bind to the live system and to each other while nobody sees them.

use alloc::collections::BTreeSet;
use alloc::format;
use alloc::vec::Vec;

use super::undo::Undo;
use super::{NewVersion, Pair, SwapError, SwapRequest};
use crate::platform::Platform;
use crate::system::System;
use crate_metadata::{CellId, CellState, NamespaceId, Origin, Sha256};

impl<P: Platform> System<P> {
    /// The namespace of the cells to replace, once every request names a live cell of its own,
    /// all in one namespace.
    pub(super) fn check_requests(
        &self,
        requests: &[SwapRequest<'_>],
    ) -> Result<NamespaceId, SwapError> {
        let first = requests.first().ok_or(SwapError::Empty)?;
        let mut seen = BTreeSet::new();
        let mut namespaces = BTreeSet::new();
        for r in requests {
            let cell = self
                .registry
                .cell(r.old)
                .filter(|c| c.origin == Origin::Object)
                .ok_or(SwapError::NoSuchCell(r.old))?;
            if cell.state != CellState::Live {
                return Err(SwapError::NotLive {
                    cell: cell.name.clone(),
                });
            }
            if !seen.insert(r.old) {
                return Err(SwapError::Duplicate {
                    cell: cell.name.clone(),
                });
            }
            namespaces.insert(cell.namespace);
        }
        if namespaces.len() > 1 {
            return Err(SwapError::MixedNamespaces {
                cells: requests.iter().map(|r| self.name_of(r.old)).collect(),
            });
        }
        self.registry
            .cell(first.old)
            .and_then(|c| c.namespace)
            .ok_or(SwapError::NoSuchCell(first.old))
    }

    /// Loads (or finds) every new version into a fresh staging namespace under `ns`, in the old
    /// versions' dependency order, so that a new version binds to the other new versions.
    pub(super) fn stage(
        &mut self,
        ns: NamespaceId,
        requests: &[SwapRequest<'_>],
        undo: &mut Undo,
    ) -> Result<Vec<Pair>, SwapError> {
        let name = format!("_swap#{}", self.swaps);
        self.swaps += 1;
        let staging =
            self.namespaces
                .create(&name, Some(ns))
                .map_err(|error| SwapError::Namespace {
                    cell: self.name_of(requests[0].old),
                    error,
                })?;
        undo.staging = Some(staging);
        self.confine_staging(ns, staging);
        let olds: Vec<CellId> = requests.iter().map(|r| r.old).collect();
        let order = namespace::graph::dependency_order(&self.registry, &olds).unwrap_or(olds);
        // A reused version is already linked: it joins the staging namespace only for new
        // versions loaded in the same set to bind to.
        let loads = requests
            .iter()
            .any(|r| matches!(r.new, NewVersion::Object { .. }));
        let mut pairs = Vec::new();
        for old in order {
            let Some(r) = requests.iter().find(|r| r.old == old) else {
                continue;
            };
            let old_name = self.name_of(old);
            let reuse = match r.new {
                NewVersion::Retired(id) => {
                    let ok = self.registry.cell(id).is_some_and(|c| {
                        c.name == old_name
                            && c.state == CellState::Retired
                            && self.mapped.contains_key(&id)
                    });
                    if !ok {
                        return Err(SwapError::NotRetired { cell: old_name, id });
                    }
                    Some(id)
                }
                NewVersion::Object { spec, .. } => {
                    if spec.name != old_name {
                        return Err(SwapError::WrongName {
                            cell: old_name,
                            new: spec.name.into(),
                        });
                    }
                    self.retired_with_hash(spec.name, spec.sha256)
                }
            };
            let new = match (reuse, r.new) {
                (Some(id), _) => {
                    if loads {
                        let exports = self.exports_of(id);
                        self.namespaces
                            .add_cell_owned(staging, id, exports)
                            .map_err(|error| SwapError::Namespace {
                                cell: old_name.clone(),
                                error,
                            })?;
                    }
                    undo.reused.push(id);
                    id
                }
                (None, NewVersion::Object { spec, bytes }) => {
                    self.check_new_version(staging, old, spec)
                        .map_err(SwapError::Stage)?;
                    let id = self.load(staging, spec, bytes).map_err(SwapError::Stage)?;
                    undo.loaded.push(id);
                    id
                }
                (None, NewVersion::Retired(id)) => {
                    return Err(SwapError::NotRetired { cell: old_name, id })
                }
            };
            pairs.push(Pair {
                old,
                new,
                reused: reuse.is_some(),
            });
        }
        Ok(pairs)
    }

    /// A retired, still mapped cell named `name` whose object had this SHA-256.
    fn retired_with_hash(&self, name: &str, sha256: Option<Sha256>) -> Option<CellId> {
        let sha = sha256?;
        // The versions of `name` through the registry's name index, not every loaded cell.
        self.registry
            .cells_named(name)
            .filter(|c| self.mapped.contains_key(&c.id))
            .find(|c| c.state == CellState::Retired && c.sha256 == Some(sha))
            .map(|c| c.id)
    }
}
