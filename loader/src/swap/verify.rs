//! Verify: every symbol any dependent binds to (in any namespace, and the host's handles) must
//! exist in the new version under the exact same mangled name (or one the caller vouched for),
//! and the namespace must accept the new versions' exports. Produces the slot writes of the
//! commit; changes nothing.

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use super::{MissingExport, Pair, SlotWrite, SwapError, SwapOptions};
use crate::platform::Platform;
use crate::system::describe::exports_in;
use crate::system::System;
use crate_metadata::{demangle, CellId, NamespaceId, SlotKind, SymbolId};

impl<P: Platform> System<P> {
    /// Checks that the new version exports every symbol any dependent of the old version binds
    /// to, and returns the slot writes that will move those dependents.
    pub(super) fn verify(
        &self,
        p: &Pair,
        olds: &BTreeSet<CellId>,
        options: &SwapOptions,
    ) -> Result<Vec<SlotWrite>, SwapError> {
        let (Some(old), Some(new)) = (self.registry.cell(p.old), self.registry.cell(p.new)) else {
            return Err(SwapError::NoSuchCell(p.old));
        };
        // A new version usually exports the old one's symbols in the same order: each is looked
        // for at its old index first, and the name index is built only for what is not there.
        let mut by_name: Option<BTreeMap<&str, SymbolId>> = None;
        let mut missing: BTreeMap<String, MissingExport> = BTreeMap::new();
        let mut direct = BTreeSet::new();
        let mut writes = Vec::new();
        for e in &old.used_by {
            let Some(edge) = self.registry.edge(*e) else {
                continue;
            };
            if olds.contains(&edge.dependent) {
                continue; // it is replaced too: its slots stay with the retired version
            }
            if edge.kind == SlotKind::Handle && !self.handle_alive(*e) {
                continue; // a handle the host dropped binds nothing; the commit forgets it
            }
            let Some(sym) = old.symbol(edge.symbol) else {
                continue;
            };
            let dependent = self.name_of(edge.dependent);
            if !edge.kind.is_rewritable() {
                direct.insert(dependent.clone());
                continue;
            }
            let same_place = new
                .symbol(edge.symbol)
                .filter(|s| s.name == sym.name)
                .map(|_| edge.symbol);
            let found = same_place.or_else(|| {
                let by_name = by_name.get_or_insert_with(|| {
                    new.symbols
                        .iter()
                        .enumerate()
                        .map(|(i, s)| (s.name.as_str(), SymbolId(i as u32)))
                        .collect()
                });
                by_name.get(sym.name.as_str()).copied().or_else(|| {
                    let to = options.renamed(&sym.name)?;
                    by_name.get(to).copied()
                })
            });
            match found {
                Some(new_sym) => writes.push(SlotWrite {
                    edge: *e,
                    slot: edge.slot,
                    kind: edge.kind,
                    dependent: edge.dependent,
                    new_cell: p.new,
                    new_symbol: new_sym,
                    addend: edge.addend,
                }),
                None => {
                    let entry = missing.entry(sym.name.to_string()).or_insert_with(|| {
                        let path = demangle::path(&sym.name);
                        MissingExport {
                            symbol: demangle::demangle(&sym.name),
                            mangled: sym.name.to_string(),
                            changed_to: new
                                .symbols
                                .iter()
                                .find(|s| demangle::path(&s.name) == path)
                                .map(|s| s.name.to_string()),
                            dependents: Vec::new(),
                        }
                    });
                    if !entry.dependents.contains(&dependent) {
                        entry.dependents.push(dependent);
                    }
                }
            }
        }
        if !missing.is_empty() {
            return Err(SwapError::MissingSymbols {
                cell: old.name.clone(),
                missing: missing.into_values().collect(),
            });
        }
        if !direct.is_empty() {
            return Err(SwapError::DirectReferences {
                cell: old.name.clone(),
                dependents: direct.into_iter().collect(),
            });
        }
        self.check_interfaces(p, &writes)?;
        Ok(writes)
    }

    /// Tries the namespace change on a copy, so that commit cannot meet a refusal.
    pub(super) fn check_namespace(&self, ns: NamespaceId, pairs: &[Pair]) -> Result<(), SwapError> {
        let replaced: Vec<CellId> = pairs.iter().map(|p| p.old).collect();
        for p in pairs {
            let Some(cell) = self.registry.cell(p.new) else {
                continue;
            };
            let exports = exports_in(p.new, cell).map(|(name, t)| (name, t.cell, t.weak));
            self.namespaces
                .check_replace_by(ns, &replaced, exports)
                .map_err(|error| SwapError::Namespace {
                    cell: self.name_of(p.old),
                    error,
                })?;
        }
        Ok(())
    }
}
