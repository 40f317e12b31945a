//! Symbol resolution: the one place that decides which definition an undefined symbol binds to.
//!
//! The order (DESIGN §5): the cell itself (its own symbol table, handled by the linker pass), then
//! its namespace and each parent ([`Namespaces::lookup`]), then the base image, then the
//! platform. The loader uses this when it links, and the offline tools use the same code for a dry
//! link that maps nothing.

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;

use crate::error::{MissingCause, MissingSymbol};
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
    /// A thread-local reference to a symbol that is not thread-local, or the other way round, or
    /// a thread-local of a cell that has no TLS module (a platform without thread-locals).
    TlsMismatch,
}

/// What the system knows about cells that are not loaded (for `nano_core`, the build manifest):
/// which one exports a symbol. Only asked when a load fails, to name the crate that is missing.
pub trait Catalog: Send + Sync {
    /// The cell that exports `symbol`, as `<name> <version>`, if the catalog knows one.
    fn defined_by(&self, symbol: &str) -> Option<String>;
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
    /// Cells that could be loaded, to explain a missing symbol.
    pub catalog: Option<&'a dyn Catalog>,
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
            let provider = self.registry.cell(sym.cell);
            let is_tls = provider
                .and_then(|c| c.symbol(sym.symbol))
                .is_some_and(|s| s.kind == SymbolKind::Tls);
            if is_tls != tls {
                return Resolution::TlsMismatch;
            }
            if tls {
                // Another cell's thread-local: its module, and the variable's offset in it.
                let Some(module) = provider.and_then(|c| c.tls_module) else {
                    return Resolution::TlsMismatch;
                };
                return Resolution::Found(Resolved {
                    addr: 0,
                    provider: Provider::Cell {
                        cell: sym.cell,
                        symbol: sym.symbol,
                    },
                    tls: Some(TlsSymbol {
                        module,
                        offset: sym.addr,
                    }),
                });
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
    /// hash, whether a namespace the cell cannot see defines it, and which cell of the catalog
    /// exports it; and what that most likely means. Scans the whole image table, so only call it
    /// on a failure.
    pub fn explain(
        &self,
        from: NamespaceId,
        missing: &[&str],
    ) -> (Vec<MissingSymbol>, Option<MissingCause>) {
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
        let list: Vec<MissingSymbol> = missing
            .iter()
            .zip(other)
            .map(|(m, other_hash)| {
                let hidden_in = self
                    .namespaces
                    .iter()
                    .find(|n| !visible.contains(&n.id) && n.get(m).is_some())
                    .map(|n| n.name.clone());
                MissingSymbol {
                    mangled: (*m).into(),
                    demangled: demangle::demangle(m),
                    other_hash,
                    defined_by: self.catalog.and_then(|c| c.defined_by(m)),
                    hidden_in,
                }
            })
            .collect();
        let cause = missing_cause(&list);
        (list, cause)
    }
}

/// What the missing symbols most likely mean. A crate that is known and not loaded says it all;
/// otherwise only the toolchain's own functions (v0-mangled: `core`, `alloc` and `std` are built
/// with v0 mangling, user crates with the legacy one) point at another rustc when the image has
/// them under another hash. A legacy-mangled `alloc::sync::Arc<T>::drop_slow` is a generic
/// instance some user crate made, and the image's other instances say nothing about the toolchain.
fn missing_cause(list: &[MissingSymbol]) -> Option<MissingCause> {
    if list
        .iter()
        .any(|m| m.hidden_in.is_none() && m.defined_by.is_some())
    {
        return Some(MissingCause::NotLoaded);
    }
    let toolchain = |m: &MissingSymbol| {
        m.mangled.starts_with("_R")
            && demangle::crate_of(&m.mangled).is_some_and(|c| demangle::is_toolchain_crate(&c))
    };
    if list.iter().any(|m| m.other_hash.is_some() && toolchain(m)) {
        return Some(MissingCause::Toolchain);
    }
    if list
        .iter()
        .any(|m| m.other_hash.is_some() && m.mangled.starts_with("_ZN"))
    {
        return Some(MissingCause::CrateIdentity);
    }
    None
}
