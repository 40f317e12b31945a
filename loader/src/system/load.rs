//! Loading a cell: the checks before anything is mapped (namespace, name, integrity), then parse,
//! layout and resolve, then the mapping is made, linked and published. A failure at any step
//! leaves nothing behind.

use alloc::string::String;
use alloc::vec::Vec;

use goblin::elf::section_header::SHN_ABS;
use goblin::elf::sym::STB_WEAK;

use super::describe::{describe, symbol_address};
use super::unwind::check_unwind_table;
use super::{CellSpec, Mapped, System};
use crate::error::{malformed, LoadError};
use crate::index::{IndexVec, SymbolIndex};
use crate::layout::{Layout, TLS_SYMBOL};
use crate::link::{self, Bindings, ExternalNames, LinkInput, OwnSlot, Target};
use crate::malformation::Malformation;
use crate::mapping::Mapping;
use crate::parse::{self, Object};
use crate::platform::{Platform, PlatformError};
use crate::prelink::{self, format::Prelink};
use crate::resolve::Resolution;
use crate_metadata::{demangle, Cell, CellId, CellState, NamespaceId, SectionKind, Sha256};
use namespace::NamespaceError;

/// What one load works on, from the checks to the publication.
pub(super) struct Loading<'l, 'a> {
    /// The namespace the cell joins.
    pub(super) ns: NamespaceId,
    /// The cell's identity.
    pub(super) spec: CellSpec<'l>,
    /// The parsed object.
    pub(super) object: &'l Object<'a>,
    /// Where everything goes.
    pub(super) layout: &'l Layout,
    /// The object's `.cell.prelink`, when it was made for `layout` ([`prelink::plan`]).
    pub(super) prelink: Option<Prelink<'a>>,
    /// When the load started (the platform's clock), for the load statistics.
    pub(super) start: u64,
}

impl Loading<'_, '_> {
    /// A [`LoadError::Platform`] for this cell.
    pub(super) fn platform_error(&self, error: PlatformError) -> LoadError {
        LoadError::Platform {
            cell: self.spec.name.into(),
            error,
        }
    }
}

impl<P: Platform> System<P> {
    /// Loads the object `bytes` as cell `spec.name` into namespace `ns`: parses, lays out,
    /// resolves, maps, links, protects, registers unwind info and TLS, makes the cell visible in
    /// its namespace and runs its `.init_array`. On any error nothing is left behind.
    pub fn load(
        &mut self,
        ns: NamespaceId,
        spec: CellSpec<'_>,
        bytes: &[u8],
    ) -> Result<CellId, LoadError> {
        let start = self.platform.now_nanos();
        let cell = spec.name;
        let ns_name = self.check_loadable(ns, spec)?;
        if let Some(expected) = spec.sha256 {
            let actual = sha256(bytes);
            if actual != expected {
                return Err(LoadError::IntegrityMismatch {
                    cell: cell.into(),
                    expected,
                    actual,
                });
            }
        }
        let object = parse::parse(cell, bytes)?;
        let (layout, prelink) = prelink::plan(cell, &object, self.platform.page_size())?;
        let bindings = self.resolve_undefined(cell, &ns_name, ns, &object)?;
        self.check_policy(ns, spec, &object, &bindings)?;
        let loading = Loading {
            ns,
            spec,
            object: &object,
            layout: &layout,
            prelink,
            start,
        };
        let mapping = Mapping::for_overwrite(&self.platform, layout.regions)
            .map_err(|e| loading.platform_error(e))?;
        let mut mapped = Mapped::new(mapping);
        match self.link_and_publish(&loading, bindings, &mut mapped) {
            Ok(id) => {
                self.mapped.insert(id, mapped);
                self.run_init_array(id, &object, &layout);
                Ok(id)
            }
            Err(e) => {
                // SAFETY: the cell never became visible, so no code of it has run and nothing
                // refers to it.
                unsafe { self.release(mapped) };
                Err(e)
            }
        }
    }

    /// The namespace's name, once it is known to exist and not to hold this release of the cell.
    fn check_loadable(&self, ns: NamespaceId, spec: CellSpec<'_>) -> Result<String, LoadError> {
        let cell = spec.name;
        let Some(namespace) = self.namespaces.get(ns) else {
            return Err(LoadError::Namespace {
                cell: cell.into(),
                error: NamespaceError::NoSuchNamespace(ns),
            });
        };
        // Two releases of one crate may live side by side (dependency cells of two semver-
        // incompatible versions); the same release twice may not.
        // The registry's cells of this name (few), not the namespace's cells (any number).
        let loaded = self.registry.cells_named(cell).any(|c: &Cell| {
            c.state == CellState::Live
                && c.version == spec.version
                && namespace.cells.contains(&c.id)
        });
        if loaded {
            return Err(LoadError::AlreadyLoaded {
                cell: cell.into(),
                namespace: namespace.name.clone(),
            });
        }
        Ok(namespace.name.clone())
    }

    /// Resolves every undefined symbol of the object; collects all the missing ones into one error.
    fn resolve_undefined<'a>(
        &self,
        cell: &str,
        ns_name: &str,
        ns: NamespaceId,
        object: &Object<'a>,
    ) -> Result<Bindings<'a>, LoadError> {
        let resolver = self.resolver();
        let mut targets = IndexVec::from_elem(None, object.syms.len());
        // One allocation at its size: the undefined symbols (the null one included) bound it.
        let undefined = object.syms.iter().filter(|s| s.is_undefined()).count();
        let mut names = ExternalNames::with_capacity(undefined);
        let mut missing = Vec::new();
        for (i, sym) in object.syms.iter_enumerated() {
            if !sym.is_undefined() || i == SymbolIndex(0) {
                continue;
            }
            let name = object.symbol_name(cell, i)?;
            if name.is_empty() {
                continue;
            }
            let tls = sym.st_type() == TLS_SYMBOL;
            targets[i] = match resolver.resolve(ns, name, tls) {
                Resolution::Found(r) => {
                    names.push(i, name);
                    Some(Target::External(r))
                }
                Resolution::Missing if sym.st_bind() == STB_WEAK => Some(Target::WeakMissing),
                Resolution::Missing => {
                    missing.push(name);
                    None
                }
                Resolution::TlsMismatch => {
                    return Err(LoadError::UnsupportedTls {
                        cell: cell.into(),
                        symbol: demangle::demangle(name),
                    })
                }
            };
        }
        if !missing.is_empty() {
            let (missing, cause) = resolver.explain(ns, &missing);
            return Err(LoadError::UndefinedSymbols {
                cell: cell.into(),
                namespace: ns_name.into(),
                missing,
                cause,
            });
        }
        Ok(Bindings { targets, names })
    }

    /// Everything after the mapping is made: the cell's own symbols bound, the sections copied,
    /// the TLS module made, the relocations applied, the metadata described, the shared statics
    /// bound, then [`System::publish`].
    fn link_and_publish(
        &mut self,
        loading: &Loading<'_, '_>,
        mut bindings: Bindings<'_>,
        mapped: &mut Mapped,
    ) -> Result<CellId, LoadError> {
        let Loading {
            spec,
            object,
            layout,
            prelink,
            ..
        } = *loading;
        let cell = spec.name;
        local_targets(cell, object, layout, &mapped.mapping, &mut bindings.targets)?;
        link::copy_sections(cell, object, layout, &mut mapped.mapping)?;
        let tls_module = self.create_tls_module(loading, mapped)?;
        let input = LinkInput {
            cell,
            object,
            layout,
            bindings: &bindings,
            tls_module,
            prelink,
        };
        let mut linked = link::link(&input, &mut mapped.mapping)?;
        let checked = prelink.and_then(|p| p.unwind);
        linked.unwind_checked_at_build =
            check_unwind_table(cell, layout, &mapped.mapping, checked)?;
        let digest = prelink.map(|p| p.digest);
        let mut described = describe(spec, object, layout, &mapped.mapping, digest)?;
        let exported = |sym: SymbolIndex| described.ids.symbols.get(sym).copied().flatten();
        mapped.own_slots = linked
            .own_slots
            .iter()
            .filter_map(|s| {
                Some(OwnSlot {
                    symbol: exported(s.symbol)?,
                    slot: s.slot,
                })
            })
            .collect();
        mapped.direct_refs = linked
            .direct_refs
            .iter()
            .filter_map(|s| exported(*s))
            .collect();
        mapped.tls_slots = core::mem::take(&mut linked.tls_slots);
        self.bind_image_statics(cell, &mut described, mapped, &mut linked.edges)?;
        self.publish(loading, described, linked, mapped)
    }
}

/// Fills in the targets of the symbols the cell defines itself.
fn local_targets(
    cell: &str,
    object: &Object<'_>,
    layout: &Layout,
    mapping: &Mapping,
    targets: &mut IndexVec<SymbolIndex, Option<Target>>,
) -> Result<(), LoadError> {
    for (i, sym) in object.syms.iter_enumerated() {
        if sym.is_undefined() {
            continue;
        }
        targets[i] = if sym.st_shndx == SHN_ABS as usize {
            Some(Target::Local(sym.st_value))
        } else {
            let placed = sym
                .section()
                .and_then(|s| layout.sections.get(s).copied().flatten());
            let Some(p) = placed else {
                targets[i] = None;
                continue;
            };
            let tls = matches!(p.kind, SectionKind::TlsData | SectionKind::TlsBss);
            let Some(value) = symbol_address(mapping, &p, sym.st_value, tls) else {
                let symbol = demangle::demangle(&object.symbol_label(i));
                return Err(malformed(cell, Malformation::AddressOverflow { symbol }));
            };
            Some(if tls {
                Target::LocalTls(value)
            } else {
                Target::Local(value)
            })
        };
    }
    Ok(())
}

/// The SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> Sha256 {
    use sha2::Digest;
    Sha256(sha2::Sha256::digest(bytes).into())
}
