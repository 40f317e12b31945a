//! Symbol resolution: the one place that decides which definition an undefined symbol binds to.
//!
//! The order (DESIGN §5): the cell itself (its own symbol table, handled by the linker pass), then
//! its namespace and each parent ([`Namespaces::lookup`]), then the base image, then the
//! platform. The loader uses this when it links, and the offline tools use the same code for a dry
//! link that maps nothing.

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;

use crate::error::{HashCause, MissingSymbol};
use crate::platform::{SymbolSource, TlsSymbol};
use crate_metadata::{demangle, CellId, NamespaceId, Registry, SymbolId, SymbolKind};
use namespace::Namespaces;

/// Who defines a resolved symbol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Provider {
    /// A loaded cell.
    Cell {
        /// The cell.
        cell: CellId,
        /// The symbol in its table.
        symbol: SymbolId,
    },
    /// The base image.
    Base,
    /// The platform.
    Platform,
}

impl Provider {
    /// The provider's cell id in the registry.
    pub fn cell(self) -> CellId {
        match self {
            Provider::Cell { cell, .. } => cell,
            Provider::Base => Registry::BASE,
            Provider::Platform => Registry::PLATFORM,
        }
    }
}

/// A resolved symbol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Resolved {
    /// Its address (unused for thread-locals).
    pub addr: u64,
    /// Who defines it.
    pub provider: Provider,
    /// For a thread-local of the base image: its module and offset.
    pub tls: Option<TlsSymbol>,
}

/// The outcome of resolving one name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resolution {
    /// Found.
    Found(Resolved),
    /// Nobody defines it.
    Missing,
    /// A thread-local defined by another cell (not supported).
    ForeignTls,
}

/// Resolves names against the namespaces, the base image and the platform.
pub struct Resolver<'a> {
    /// The namespaces.
    pub namespaces: &'a Namespaces,
    /// The registry, to tell thread-locals from other symbols.
    pub registry: &'a Registry,
    /// The base image and the platform.
    pub symbols: &'a dyn SymbolSource,
    /// What cells get for `__tls_get_addr`.
    pub tls_get_addr: u64,
}

impl Resolver<'_> {
    /// Resolves `name` as seen from namespace `ns`. `tls` says whether the reference expects a
    /// thread-local (a `TLSGD` reference).
    pub fn resolve(&self, ns: NamespaceId, name: &str, tls: bool) -> Resolution {
        if name == "__tls_get_addr" && self.tls_get_addr != 0 {
            return Resolution::Found(Resolved {
                addr: self.tls_get_addr,
                provider: Provider::Platform,
                tls: None,
            });
        }
        if let Some((_, sym)) = self.namespaces.lookup(ns, name) {
            let is_tls = self
                .registry
                .cell(sym.cell)
                .and_then(|c| c.symbol(sym.symbol))
                .is_some_and(|s| s.kind == SymbolKind::Tls);
            if is_tls || tls {
                return Resolution::ForeignTls;
            }
            return Resolution::Found(Resolved {
                addr: sym.addr,
                provider: Provider::Cell {
                    cell: sym.cell,
                    symbol: sym.symbol,
                },
                tls: None,
            });
        }
        if tls {
            return match self.symbols.image_tls_symbol(name) {
                Some(t) => Resolution::Found(Resolved {
                    addr: 0,
                    provider: Provider::Base,
                    tls: Some(t),
                }),
                None => Resolution::Missing,
            };
        }
        if let Some(addr) = self.symbols.image_symbol(name) {
            return Resolution::Found(Resolved {
                addr: addr as u64,
                provider: Provider::Base,
                tls: None,
            });
        }
        if let Some(addr) = self.symbols.platform_symbol(name) {
            return Resolution::Found(Resolved {
                addr: addr as u64,
                provider: Provider::Platform,
                tls: None,
            });
        }
        Resolution::Missing
    }

    /// Explains missing symbols: for each, whether the base image has the same path under another
    /// hash, and what that most likely means. Scans the whole image table, so only call it on a
    /// failure.
    pub fn explain(
        &self,
        from: NamespaceId,
        missing: &[&str],
    ) -> (Vec<MissingSymbol>, Option<HashCause>) {
        let visible = self.namespaces.chain(from);
        let wanted: BTreeMap<String, usize> = missing
            .iter()
            .enumerate()
            .map(|(i, m)| (demangle::path(m), i))
            .collect();
        let mut other: Vec<Option<String>> = alloc::vec![None; missing.len()];
        self.symbols.for_each_image_symbol(&mut |name| {
            if let Some(i) = wanted.get(&demangle::path(name)) {
                if other[*i].is_none() && name != missing[*i] {
                    other[*i] = Some(name.into());
                }
            }
        });
        let mut cause = None;
        let list = missing
            .iter()
            .zip(other)
            .map(|(m, other_hash)| {
                if other_hash.is_some() {
                    let toolchain =
                        demangle::crate_of(m).is_some_and(|c| demangle::is_toolchain_crate(&c));
                    let this = if toolchain {
                        HashCause::Toolchain
                    } else {
                        HashCause::CrateIdentity
                    };
                    if cause != Some(HashCause::Toolchain) {
                        cause = Some(this);
                    }
                }
                let hidden_in = self
                    .namespaces
                    .iter()
                    .find(|n| !visible.contains(&n.id) && n.get(m).is_some())
                    .map(|n| n.name.clone());
                MissingSymbol {
                    mangled: (*m).into(),
                    demangled: demangle::demangle(m),
                    other_hash,
                    hidden_in,
                }
            })
            .collect();
        (list, cause)
    }
}
