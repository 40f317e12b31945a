//! Publishing a linked cell: its regions get their final protections, its `.eh_frame` and its TLS
//! module are registered with the platform, it joins its namespace and the registry with its
//! edges, and its `.init_array` runs.

use alloc::vec::Vec;

use super::describe::{Described, SectionIds};
use super::load::Loading;
use super::{Mapped, System};
use crate::error::LoadError;
use crate::layout::{Layout, TlsLayout};
use crate::link::{Linked, PendingEdge, SlotSection};
use crate::parse::Object;
use crate::platform::{Platform, TlsTemplate};
use crate::resolve::Provider;
use crate_metadata::{CellId, Edge, LoadStats, SectionId, SlotKind, SymbolKind};
use namespace::{Export, SymbolRef};

impl<P: Platform> System<P> {
    /// Creates the cell's own TLS module when it has thread-locals (its `.tdata` image is in the
    /// mapping already); returns the module id the GOT pairs get (0: none). Made before linking,
    /// which writes the id, and destroyed by [`System::release`].
    pub(super) fn create_tls_module(
        &self,
        loading: &Loading<'_, '_>,
        mapped: &mut Mapped,
    ) -> Result<u64, LoadError> {
        let layout = loading.layout;
        if !layout.needs_tls_module() {
            return Ok(0);
        }
        let tls = layout.tls.unwrap_or(TlsLayout {
            image_offset: 0,
            init_len: 0,
            size: 1,
            align: 1,
        });
        let template = TlsTemplate {
            init: mapped.mapping.addr(tls.image_offset) as *const u8,
            init_len: tls.init_len,
            size: tls.size,
            align: tls.align,
        };
        // SAFETY: the template's image lives in this cell's mapping, which outlives the module:
        // `release` destroys the module before it unmaps.
        let module = unsafe { self.platform.create_module(template) }
            .map_err(|e| loading.platform_error(e))?;
        mapped.tls_module = Some(module);
        mapped.tls_template = Some(super::TlsImage::of(template));
        Ok(module)
    }

    /// Protects the regions, registers `.eh_frame`, and adds the cell to its namespace and the
    /// registry with its edges. Returns its id; the caller records `mapped` under it.
    pub(super) fn publish(
        &mut self,
        loading: &Loading<'_, '_>,
        described: Described,
        linked: Linked<'_>,
        mapped: &mut Mapped,
    ) -> Result<CellId, LoadError> {
        let Loading {
            ns,
            spec,
            layout,
            start,
            ..
        } = *loading;
        let cell = spec.name;
        mapped
            .mapping
            .publish(&self.platform)
            .map_err(|e| loading.platform_error(e))?;
        if let Some(eh_frame) = layout.eh_frame {
            if eh_frame.len > 4 {
                let addr = mapped.mapping.addr(eh_frame.offset) as usize;
                // SAFETY: the `.eh_frame` copy is relocated, followed by four zero bytes (the
                // layout reserved them in the zeroed mapping), read-only from now on, and stays
                // mapped until `release` deregisters it before unmapping.
                unsafe { self.platform.register(addr as *const u8) }
                    .map_err(|e| loading.platform_error(e))?;
                mapped.eh_frame = Some(addr);
            }
        }

        let Described {
            cell: mut meta,
            exports,
            ids,
            names_from_build,
        } = described;
        let end = self.platform.now_nanos();
        meta.stats = LoadStats {
            relocations: linked.relocations,
            prelinked: linked.prelinked,
            unwind_checked_at_build: linked.unwind_checked_at_build,
            names_from_build,
            got_slots: (layout.got_len / 8) as u32,
            stubs: layout.stub_count as u32,
            mapped_bytes: mapped.mapping.len() as u64,
            load_nanos: end.saturating_sub(start),
        };
        meta.namespace = Some(ns);
        meta.tls_module = mapped.tls_module;
        let id = self.registry.next_cell_id();
        let exports: Vec<Export> = exports
            .into_iter()
            .map(|e| Export {
                name: e.name,
                target: SymbolRef {
                    cell: id,
                    symbol: e.symbol,
                    addr: e.addr,
                    weak: e.weak,
                },
            })
            .collect();
        self.namespaces
            .add_cell_owned(ns, id, exports)
            .map_err(|error| LoadError::Namespace {
                cell: cell.into(),
                error,
            })?;
        let id = self.registry.add_cell(meta);
        let edges: Vec<Edge> = (linked.edges.into_iter())
            .filter_map(|e| self.edge_of(id, &ids, e))
            .collect();
        self.registry.add_edges(id, edges);
        self.tell_debuggers(id, mapped, true);
        Ok(id)
    }

    /// The registry's edge for `e`, a slot of cell `id` (its base-image or platform symbol
    /// interned); `None` when the provider's symbol cannot be named.
    fn edge_of(&mut self, id: CellId, ids: &SectionIds, e: PendingEdge<'_>) -> Option<Edge> {
        let section = match e.section {
            SlotSection::Got => ids.got,
            SlotSection::Section(i) => ids.by_index.get(i).copied().flatten(),
        }
        .unwrap_or(SectionId(0));
        let symbol = match e.provider {
            Provider::Cell { symbol, .. } => Some(symbol),
            Provider::Base | Provider::Platform => {
                let kind = if e.kind == SlotKind::TlsPair {
                    SymbolKind::Tls
                } else {
                    SymbolKind::Other
                };
                self.registry
                    .intern_symbol(e.provider.cell(), &e.name, e.addr, kind)
            }
        };
        Some(Edge {
            dependent: id,
            section,
            slot: e.slot,
            kind: e.kind,
            addend: e.addend,
            provider: e.provider.cell(),
            symbol: symbol?,
        })
    }

    /// Calls the cell's `.init_array` functions with `(argc, argv, envp)`, in order.
    pub(super) fn run_init_array(&self, id: CellId, object: &Object<'_>, layout: &Layout) {
        if !self.platform.runs_code() {
            return;
        }
        let Some(mapped) = self.mapped.get(&id) else {
            return;
        };
        let args = self.platform.init_args();
        for (i, placed) in layout.sections.iter_enumerated() {
            let Some(p) = placed else { continue };
            if !object.section_name_bytes(i).starts_with(b".init_array") {
                continue;
            }
            let Ok(words) = mapped.mapping.read(p.offset, p.size - p.size % 8) else {
                continue;
            };
            for w in words.as_chunks::<8>().0 {
                let addr = u64::from_le_bytes(*w);
                if addr == 0 || addr == u64::MAX {
                    continue;
                }
                type InitFn = unsafe extern "C" fn(i32, *const *const u8, *const *const u8);
                // SAFETY: `.init_array` entries are pointers to functions with this signature
                // (the ELF gABI, as glibc calls them); the relocation pass wrote them, and the
                // cell's text is mapped executable now.
                unsafe {
                    let f: InitFn = core::mem::transmute::<usize, InitFn>(addr as usize);
                    f(args.argc, args.argv, args.envp);
                }
            }
        }
    }
}
