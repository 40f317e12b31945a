//! The system: the registry, the namespaces, and the mapped cells, with the operations that
//! change them (load, unload, handles).

use alloc::borrow::Cow;
use alloc::collections::BTreeMap;
use alloc::string::{String, ToString};
use alloc::sync::Arc;
use alloc::vec::Vec;

use goblin::elf::sym::{
    STB_GLOBAL, STB_WEAK, STT_FILE, STT_FUNC, STT_OBJECT, STT_SECTION, STV_HIDDEN, STV_INTERNAL,
};

use crate::error::LoadError;
use crate::handle::{Handle, HandleSlot};
use crate::layout::{self, Layout, Region, TLS_SYMBOL};
use crate::link::{self, ExternalNames, PendingEdge, SlotSection, Target};
use crate::mapping::Mapping;
use crate::parse::{self, Object};
use crate::platform::{Platform, Protection, TlsTemplate};
use crate::quiesce::Epochs;
use crate::resolve::{Catalog, Provider, Resolution, Resolver};
use crate_metadata::{
    demangle, Cell, CellId, CellKind, CellState, Edge, EdgeId, LoadStats, NamespaceId, Origin,
    Registry, Section, SectionId, SectionKind, SlotKind, Symbol, SymbolId, SymbolKind,
};
use namespace::{Export, NamespaceError, Namespaces, SymbolRef};

/// What the caller knows about a cell it loads.
#[derive(Clone, Copy, Debug)]
pub struct CellSpec<'a> {
    /// The crate name.
    pub name: &'a str,
    /// The crate version.
    pub version: &'a str,
    /// Where in `cells/` it comes from.
    pub kind: Option<CellKind>,
    /// SHA-256 of the object as the manifest records it (lowercase hex). When given, the loader
    /// checks the bytes against it before anything else and refuses a mismatch; it is recorded in
    /// the metadata.
    pub sha256: Option<&'a str>,
}

impl<'a> CellSpec<'a> {
    /// A spec with only a name.
    pub fn named(name: &'a str) -> CellSpec<'a> {
        CellSpec {
            name,
            version: "",
            kind: None,
            sha256: None,
        }
    }
}

/// Why a cell could not be unloaded. Nothing was changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UnloadError {
    /// No loaded cell has this id.
    NoSuchCell(CellId),
    /// No namespace has this id.
    NoSuchNamespace(NamespaceId),
    /// A cell of the namespace is still used from outside it.
    NamespaceInUse {
        /// The namespace.
        namespace: String,
        /// Its cell that is used.
        cell: String,
        /// The users outside the namespace (`nano_core` for the host's handles).
        dependents: Vec<String>,
    },
    /// The namespace has child namespaces; tear those down first.
    HasChildren {
        /// The namespace.
        namespace: String,
    },
    /// Other cells (or the host, through handles) still bind to the cell.
    InUse {
        /// The cell.
        cell: String,
        /// Its dependents' names (`nano_core` for the host's handles).
        dependents: Vec<String>,
    },
}

impl core::fmt::Display for UnloadError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            UnloadError::NoSuchCell(id) => write!(f, "no loaded cell {id}"),
            UnloadError::NoSuchNamespace(id) => write!(f, "no namespace {id}"),
            UnloadError::NamespaceInUse {
                namespace,
                cell,
                dependents,
            } => write!(
                f,
                "namespace `{namespace}` cannot be torn down: its cell `{cell}` is used by {}",
                dependents.join(", ")
            ),
            UnloadError::HasChildren { namespace } => {
                write!(f, "namespace `{namespace}` has child namespaces")
            }
            UnloadError::InUse { cell, dependents } => write!(
                f,
                "cell `{cell}` is still used by: {}",
                dependents.join(", ")
            ),
        }
    }
}

/// The runtime side of a loaded cell: what must be undone to unload it.
#[derive(Debug)]
pub(crate) struct Mapped {
    pub(crate) mapping: Mapping,
    pub(crate) regions: [(usize, usize); 4],
    pub(crate) eh_frame: Option<usize>,
    pub(crate) tls_module: Option<u64>,
    /// GOT slots that hold the address of one of the cell's own exported symbols.
    pub(crate) own_slots: Vec<(SymbolId, u64)>,
    /// Exported symbols the cell's code or data reaches without a slot.
    pub(crate) direct_refs: Vec<SymbolId>,
    /// The epoch in which a swap retired the cell.
    pub(crate) retired_epoch: Option<u64>,
    /// Data regions of reclaimed cells that this cell's statics were bound to: (address, length).
    pub(crate) adopted: Vec<(usize, usize)>,
    /// Whether a swap rebound a newer version's statics to this cell's (so that its data, or a
    /// range it adopted, may hold another cell's state when it is freed).
    pub(crate) lent: bool,
}

impl Mapped {
    /// The absolute start and length of region `r`.
    pub(crate) fn region(&self, r: Region) -> (u64, usize) {
        let (off, len) = self.regions[r as usize];
        (self.mapping.addr(off), len)
    }

    /// Whether `addr` lies in region `r`.
    pub(crate) fn in_region(&self, r: Region, addr: u64) -> bool {
        let (start, len) = self.region(r);
        addr >= start && addr < start + len as u64
    }
}

/// The running cell system on platform `P`.
pub struct System<P: Platform> {
    pub(crate) platform: P,
    pub(crate) registry: Registry,
    pub(crate) namespaces: Namespaces,
    pub(crate) mapped: BTreeMap<CellId, Mapped>,
    pub(crate) handles: Vec<(EdgeId, Arc<HandleSlot>)>,
    pub(crate) epochs: Arc<Epochs>,
    /// Counts staging namespaces, so each swap gets a fresh name.
    pub(crate) swaps: u64,
    /// Cells that could be loaded, to name the crate behind a missing symbol.
    pub(crate) catalog: Option<Arc<dyn Catalog>>,
}

impl<P: Platform> System<P> {
    /// A system with no cells; the base image is called `base_name` in the registry.
    pub fn new(platform: P, base_name: &str) -> System<P> {
        let mut registry = Registry::new(base_name);
        if let Some(base) = registry.cell_mut(Registry::BASE) {
            base.sections.push(Section {
                name: ".handles".into(),
                kind: SectionKind::Got,
                addr: 0,
                size: 0,
                align: 8,
            });
        }
        System {
            platform,
            registry,
            namespaces: Namespaces::new(),
            mapped: BTreeMap::new(),
            handles: Vec::new(),
            epochs: Epochs::new(),
            swaps: 0,
            catalog: None,
        }
    }

    /// The grace-period tracker: threads that call cells register here and report quiescent
    /// points, so that retired cells can be reclaimed safely.
    pub fn epochs(&self) -> &Arc<Epochs> {
        &self.epochs
    }

    /// Sets the catalog of cells that could be loaded (the build manifest), which a failed load
    /// asks who exports a missing symbol, so that its error names the crate that is not loaded.
    pub fn set_catalog(&mut self, catalog: Arc<dyn Catalog>) {
        self.catalog = Some(catalog);
    }

    /// The platform.
    pub fn platform(&self) -> &P {
        &self.platform
    }

    /// The registry of cells and edges.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The namespaces.
    pub fn namespaces(&self) -> &Namespaces {
        &self.namespaces
    }

    /// Creates a namespace.
    pub fn create_namespace(
        &mut self,
        name: &str,
        parent: Option<NamespaceId>,
    ) -> Result<NamespaceId, NamespaceError> {
        self.namespaces.create(name, parent)
    }

    /// The live cell named `name` in namespace `ns` itself.
    pub fn cell_in(&self, ns: NamespaceId, name: &str) -> Option<CellId> {
        let n = self.namespaces.get(ns)?;
        n.cells.iter().copied().find(|c| {
            self.registry
                .cell(*c)
                .is_some_and(|c| c.name == name && c.state == CellState::Live)
        })
    }

    /// The resolver this system links with.
    pub fn resolver(&self) -> Resolver<'_> {
        Resolver {
            namespaces: &self.namespaces,
            registry: &self.registry,
            symbols: &self.platform,
            tls_get_addr: self.platform.tls_get_addr() as u64,
            catalog: self.catalog.as_deref(),
        }
    }

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
        let ns_name = match self.namespaces.get(ns) {
            Some(n) => n.name.clone(),
            None => {
                return Err(LoadError::Namespace {
                    cell: cell.into(),
                    error: NamespaceError::NoSuchNamespace(ns),
                })
            }
        };
        // Two releases of one crate may live side by side (dependency cells of two semver-
        // incompatible versions); the same release twice may not.
        let same = |c: &Cell| c.name == cell && c.version == spec.version;
        let loaded = self.namespaces.get(ns).is_some_and(|n| {
            n.cells.iter().any(|c| {
                self.registry
                    .cell(*c)
                    .is_some_and(|c| c.state == CellState::Live && same(c))
            })
        });
        if loaded {
            return Err(LoadError::AlreadyLoaded {
                cell: cell.into(),
                namespace: ns_name,
            });
        }
        if let Some(expected) = spec.sha256 {
            let actual = sha256_hex(bytes);
            if !actual.eq_ignore_ascii_case(expected) {
                return Err(LoadError::IntegrityMismatch {
                    cell: cell.into(),
                    expected: expected.into(),
                    actual,
                });
            }
        }
        let object = parse::parse(cell, bytes)?;
        let layout = layout::plan(cell, &object, self.platform.page_size())?;
        let external = self.resolve_undefined(cell, &ns_name, ns, &object)?;
        let platform_err = |error| LoadError::Platform {
            cell: cell.into(),
            error,
        };
        let mapping = Mapping::new(&self.platform, layout.total).map_err(platform_err)?;
        let mut mapped = Mapped {
            mapping,
            regions: layout.regions,
            eh_frame: None,
            tls_module: None,
            own_slots: Vec::new(),
            direct_refs: Vec::new(),
            retired_epoch: None,
            adopted: Vec::new(),
            lent: false,
        };
        match self.link_and_publish(ns, spec, &object, &layout, external, &mut mapped, start) {
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

    /// Resolves every undefined symbol of the object; collects all the missing ones into one error.
    fn resolve_undefined<'a>(
        &self,
        cell: &str,
        ns_name: &str,
        ns: NamespaceId,
        object: &Object<'a>,
    ) -> Result<(Vec<Option<Target>>, ExternalNames<'a>), LoadError> {
        let resolver = self.resolver();
        let mut targets = alloc::vec![None; object.syms.len()];
        // One allocation at its size: the undefined symbols (the null one included) bound it.
        let undefined = object.syms.iter().filter(|s| s.st_shndx == 0).count();
        let mut names = ExternalNames::with_capacity(undefined);
        let mut missing = Vec::new();
        for (i, sym) in object.syms.iter().enumerate() {
            if sym.st_shndx != 0 || i == 0 {
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
        Ok((targets, names))
    }

    #[allow(clippy::too_many_arguments)]
    fn link_and_publish<'a>(
        &mut self,
        ns: NamespaceId,
        spec: CellSpec<'_>,
        object: &Object<'a>,
        layout: &Layout,
        (mut targets, names): (Vec<Option<Target>>, ExternalNames<'a>),
        mapped: &mut Mapped,
        start: u64,
    ) -> Result<CellId, LoadError> {
        let cell = spec.name;
        let platform_err = |error| LoadError::Platform {
            cell: cell.into(),
            error,
        };
        local_targets(object, layout, &mapped.mapping, &mut targets);
        link::copy_sections(cell, object, layout, &mut mapped.mapping)?;
        let mut tls_module = 0;
        if layout.needs_tls_module() {
            let tls = layout.tls.unwrap_or(layout::TlsLayout {
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
            // SAFETY: the template's image lives in this cell's mapping, which outlives the
            // module: `release` destroys the module before it unmaps.
            tls_module = unsafe { self.platform.create_module(template) }.map_err(platform_err)?;
            mapped.tls_module = Some(tls_module);
        }
        let mut linked = link::link(
            cell,
            object,
            layout,
            &mut mapped.mapping,
            &targets,
            &names,
            tls_module,
        )?;
        let (mut meta, mut exports, section_ids) = describe(spec, object, layout, &mapped.mapping)?;
        let exported = |sym: usize| section_ids.symbols.get(sym).copied().flatten();
        mapped.own_slots = linked
            .own_slots
            .iter()
            .filter_map(|(sym, slot)| Some((exported(*sym)?, *slot)))
            .collect();
        mapped.direct_refs = linked
            .direct_refs
            .iter()
            .filter_map(|s| exported(*s))
            .collect();
        self.bind_image_statics(cell, &mut meta, &mut exports, mapped, &mut linked.edges)?;
        // Read-only data and the relro region (which the layout puts right after it) get the same
        // protection: one call for both.
        let (text, text_len) = layout.regions[Region::Text as usize];
        let (read_only, read_only_len) = layout.regions[Region::ReadOnly as usize];
        let (relro, relro_len) = layout.regions[Region::RelRo as usize];
        debug_assert_eq!(read_only + read_only_len, relro);
        for (offset, len, prot) in [
            (text, text_len, Protection::ReadExecute),
            (read_only, read_only_len + relro_len, Protection::ReadOnly),
        ] {
            mapped
                .mapping
                .protect(&self.platform, offset, len, prot)
                .map_err(platform_err)?;
        }
        if let Some((offset, len)) = layout.eh_frame {
            if len > 4 {
                let addr = mapped.mapping.addr(offset) as usize;
                // SAFETY: the `.eh_frame` copy is relocated, followed by four zero bytes (the
                // layout reserved them in the zeroed mapping), read-only from now on, and stays
                // mapped until `release` deregisters it before unmapping.
                unsafe { self.platform.register(addr as *const u8) }.map_err(platform_err)?;
                mapped.eh_frame = Some(addr);
            }
        }

        let end = self.platform.now_nanos();
        meta.stats = LoadStats {
            relocations: linked.relocations,
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
            .map(|(name, symbol, addr, weak)| Export {
                name: name.into(),
                target: SymbolRef {
                    cell: id,
                    symbol,
                    addr,
                    weak,
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
        if let Some(c) = self.registry.cell_mut(id) {
            c.uses.reserve_exact(linked.edges.len());
        }
        for e in linked.edges {
            self.add_pending_edge(id, &section_ids, e);
        }
        Ok(id)
    }

    /// A crate the base image links statically (a shared kernel crate) keeps one state: every
    /// static of the cell that the base image also defines, by exact mangled name, is bound to
    /// the base image's initialized memory through the cell's own GOT slots, and recorded as an
    /// edge to the base image. The cell's own copy is never used.
    fn bind_image_statics<'a>(
        &self,
        cell: &str,
        meta: &mut Cell,
        exports: &mut [(&'a str, SymbolId, u64, bool)],
        mapped: &mut Mapped,
        edges: &mut Vec<PendingEdge<'a>>,
    ) -> Result<(), LoadError> {
        // `describe` made one export per symbol of the metadata, in the same order.
        debug_assert!(exports.iter().enumerate().all(|(i, e)| e.1.index() == i));
        for (i, s) in meta.symbols.iter_mut().enumerate() {
            let id = SymbolId(i as u32);
            let in_data = s
                .section
                .and_then(|id| meta.sections.get(id.index()))
                .is_some_and(|sec| matches!(sec.kind, SectionKind::Data | SectionKind::Bss));
            let Some(export) = exports.get_mut(i) else {
                continue;
            };
            if s.kind != SymbolKind::Object || !in_data {
                continue;
            }
            let name = export.0;
            let Some(image) = self.platform.image_symbol(name) else {
                continue;
            };
            if mapped.direct_refs.contains(&id) {
                return Err(LoadError::Malformed {
                    cell: cell.into(),
                    reason: alloc::format!(
                        "static `{}` is shared with the base image but the cell reaches its own \
                         copy without a slot",
                        demangle::demangle(name)
                    ),
                });
            }
            let base = mapped.mapping.addr(0);
            for (sym, slot) in &mapped.own_slots {
                if *sym == id {
                    let offset = (slot - base) as usize;
                    mapped
                        .mapping
                        .write(offset, &(image as u64).to_le_bytes())
                        .map_err(|_| LoadError::Malformed {
                            cell: cell.into(),
                            reason: "a GOT slot outside the mapping".into(),
                        })?;
                    edges.push(PendingEdge {
                        section: SlotSection::Got,
                        slot: *slot,
                        kind: SlotKind::Got,
                        addend: 0,
                        provider: Provider::Base,
                        name: Cow::Borrowed(name),
                        addr: image as u64,
                    });
                }
            }
            s.addr = image as u64;
            export.2 = image as u64;
        }
        Ok(())
    }

    fn add_pending_edge(&mut self, id: CellId, section_ids: &SectionIds, e: PendingEdge<'_>) {
        let section = match e.section {
            SlotSection::Got => section_ids.got,
            SlotSection::Section(i) => section_ids.by_index.get(i).copied().flatten(),
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
        if let Some(symbol) = symbol {
            self.registry.add_edge(Edge {
                dependent: id,
                section,
                slot: e.slot,
                kind: e.kind,
                addend: e.addend,
                provider: e.provider.cell(),
                symbol,
            });
        }
    }

    /// Calls the cell's `.init_array` functions with `(argc, argv, envp)`, in order.
    fn run_init_array(&self, id: CellId, object: &Object<'_>, layout: &Layout) {
        if !self.platform.runs_code() {
            return;
        }
        let Some(mapped) = self.mapped.get(&id) else {
            return;
        };
        let args = self.platform.init_args();
        for (i, placed) in layout.sections.iter().enumerate() {
            let Some(p) = placed else { continue };
            if !object.section_name_bytes(i).starts_with(b".init_array") {
                continue;
            }
            let Ok(words) = mapped.mapping.read(p.offset, p.size - p.size % 8) else {
                continue;
            };
            for w in words.chunks_exact(8) {
                let addr = u64::from_le_bytes(w.try_into().unwrap_or([0; 8]));
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

    /// Undoes a cell's platform state: TLS module, unwind registration, memory.
    ///
    /// # Safety
    /// No code of the cell runs and nothing refers to it.
    pub(crate) unsafe fn release(&self, mapped: Mapped) {
        // SAFETY: passed on from the caller.
        unsafe { self.release_keeping(mapped, &mut |_, _| false) };
    }

    /// Like [`System::release`], but a data range (the cell's data region or one it adopted) for
    /// which `keep(addr, len)` says true stays mapped: some other cell's statics live there now,
    /// and that cell took it over.
    ///
    /// # Safety
    /// No code of the cell runs and nothing refers to it, but through the kept ranges.
    pub(crate) unsafe fn release_keeping(
        &self,
        mapped: Mapped,
        keep: &mut dyn FnMut(usize, usize) -> bool,
    ) {
        if let Some(module) = mapped.tls_module {
            // SAFETY: the caller promises no code of the cell runs any more.
            unsafe { self.platform.destroy_module(module) };
        }
        if let Some(eh) = mapped.eh_frame {
            // SAFETY: registered by `load`; no frame of the cell is on a stack (caller).
            unsafe { self.platform.deregister(eh as *const u8) };
        }
        for (addr, len) in mapped.adopted.iter().copied() {
            if !keep(addr, len) {
                // SAFETY: an adopted range is a page-aligned part of a mapping that a reclaimed
                // cell left behind for this one; nothing else uses it (caller).
                unsafe { self.platform.unmap(addr as *mut u8, len) };
            }
        }
        let (data, data_len) = mapped.region(Region::Data);
        if data_len > 0 && keep(data as usize, data_len) {
            let head = mapped.regions[Region::Data as usize].0;
            // SAFETY: as above; everything before the data region (code, read-only data, GOT)
            // is used by no one, and the data region stays mapped.
            unsafe { mapped.mapping.unmap_head(&self.platform, head) };
        } else {
            // SAFETY: as above; the mapping is exactly what `Mapping::new` made.
            unsafe { mapped.mapping.unmap(&self.platform) };
        }
    }

    /// Whether the host still holds a handle that reads the slot of edge `edge`.
    pub(crate) fn handle_alive(&self, edge: EdgeId) -> bool {
        self.handles
            .iter()
            .any(|(e, slot)| *e == edge && Arc::strong_count(slot) > 1)
    }

    /// Forgets handle slots that no handle uses any more, with their edges.
    pub(crate) fn prune_handles(&mut self) {
        let registry = &mut self.registry;
        self.handles.retain(|(edge, slot)| {
            if Arc::strong_count(slot) > 1 {
                return true;
            }
            registry.remove_edge(*edge);
            false
        });
    }

    /// Unloads a cell: removes it from its namespace and the registry, deregisters its unwind
    /// information, frees its TLS blocks and unmaps it. Refused while anything binds to it.
    pub fn unload(&mut self, id: CellId) -> Result<(), UnloadError> {
        self.prune_handles();
        let Some(cell) = self
            .registry
            .cell(id)
            .filter(|c| c.origin == Origin::Object)
        else {
            return Err(UnloadError::NoSuchCell(id));
        };
        let dependents = self.registry.dependents(id);
        if !dependents.is_empty() {
            return Err(UnloadError::InUse {
                cell: cell.name.clone(),
                dependents: dependents
                    .iter()
                    .filter_map(|d| self.registry.cell(*d))
                    .map(|c| c.name.clone())
                    .collect(),
            });
        }
        if let Some(ns) = cell.namespace {
            let _ = self.namespaces.remove_cell(ns, id);
        }
        // No edge points into the cell (checked above), so no other cell and no handle reaches it.
        self.free_cell(id);
        Ok(())
    }

    /// Tears a namespace down: unloads every cell in it (live or retired), dependents first, then
    /// removes the namespace. Refused, with nothing changed, while a cell outside the namespace
    /// (or a host handle) still binds to one of its cells, or while it has child namespaces.
    pub fn remove_namespace(&mut self, ns: NamespaceId) -> Result<usize, UnloadError> {
        self.prune_handles();
        let Some(n) = self.namespaces.get(ns) else {
            return Err(UnloadError::NoSuchNamespace(ns));
        };
        let name = n.name.clone();
        if self.namespaces.iter().any(|c| c.parent == Some(ns)) {
            return Err(UnloadError::HasChildren { namespace: name });
        }
        // The namespace's own list, not a walk of the registry (which keeps a hole for every
        // cell ever removed).
        let cells: Vec<CellId> = n
            .cells
            .iter()
            .copied()
            .filter(|c| {
                self.registry
                    .cell(*c)
                    .is_some_and(|c| c.origin == Origin::Object && c.namespace == Some(ns))
            })
            .collect();
        let mut sorted = cells.clone();
        sorted.sort_unstable();
        let inside = |d: &CellId| sorted.binary_search(d).is_ok();
        for c in &cells {
            let outside: Vec<String> = self
                .registry
                .dependents(*c)
                .iter()
                .filter(|d| !inside(d))
                .filter_map(|d| self.registry.cell(*d))
                .map(|d| d.name.clone())
                .collect();
            if !outside.is_empty() {
                return Err(UnloadError::NamespaceInUse {
                    namespace: name,
                    cell: self
                        .registry
                        .cell(*c)
                        .map(|c| c.name.clone())
                        .unwrap_or_default(),
                    dependents: outside,
                });
            }
        }
        let order = namespace::graph::dependency_order(&self.registry, &cells)
            .unwrap_or_else(|_| cells.clone());
        // Nothing below can fail (no cell outside uses these, checked above): the namespace's
        // map and the cells' metadata and edges go at once rather than cell by cell, then each
        // cell's memory is freed, dependents first.
        let _ = self.namespaces.clear(ns);
        let _ = self.registry.remove_cells(&cells);
        for c in order.iter().rev() {
            self.free_cell(*c);
        }
        let _ = self.namespaces.remove(ns);
        Ok(cells.len())
    }

    /// Finds a symbol visible from `ns` by mangled name, or by demangled path without hash
    /// (`klog::push`), which names the cell by its first segment.
    pub fn find_symbol(&self, ns: NamespaceId, symbol: &str) -> Result<SymbolRef, LoadError> {
        let ns_name = || {
            self.namespaces
                .get(ns)
                .map(|n| n.name.clone())
                .unwrap_or_default()
        };
        if let Some((_, s)) = self.namespaces.lookup(ns, symbol) {
            return Ok(s);
        }
        let cell_name = symbol.split("::").next().unwrap_or("");
        for n in self.namespaces.chain(ns) {
            let Some(cell) = self.cell_in(n, cell_name) else {
                continue;
            };
            let Some(c) = self.registry.cell(cell) else {
                continue;
            };
            let hits: Vec<(usize, &Symbol)> = c
                .symbols
                .iter()
                .enumerate()
                .filter(|(_, s)| demangle::path(&s.name) == symbol)
                .collect();
            return match hits.as_slice() {
                [] => Err(LoadError::NoSuchSymbol {
                    namespace: ns_name(),
                    symbol: symbol.into(),
                }),
                [(i, s)] => Ok(SymbolRef {
                    cell,
                    symbol: SymbolId(*i as u32),
                    addr: s.addr,
                    weak: false,
                }),
                many => Err(LoadError::AmbiguousSymbol {
                    symbol: symbol.into(),
                    candidates: many.iter().map(|(_, s)| s.name.clone()).collect(),
                }),
            };
        }
        Err(LoadError::NoSuchSymbol {
            namespace: ns_name(),
            symbol: symbol.into(),
        })
    }

    /// A handle through which the host calls the function `symbol` (a mangled name or a path
    /// such as `klog::push`) visible from `ns`. The handle reads a loader-owned slot on every call,
    /// recorded as an edge from the base image, so a swap moves the host's calls too.
    ///
    /// # Safety
    /// `F` must be a function pointer type with exactly the function's signature and ABI.
    pub unsafe fn handle<F: Copy>(
        &mut self,
        ns: NamespaceId,
        symbol: &str,
    ) -> Result<Handle<F>, LoadError> {
        if core::mem::size_of::<F>() != core::mem::size_of::<usize>() {
            return Err(LoadError::BadHandleType {
                symbol: symbol.into(),
            });
        }
        let target = self.find_symbol(ns, symbol)?;
        let existing = self.handles.iter().find(|(edge, _)| {
            self.registry
                .edge(*edge)
                .is_some_and(|e| e.provider == target.cell && e.symbol == target.symbol)
        });
        let slot = match existing {
            Some((_, slot)) => slot.clone(),
            None => {
                let slot = HandleSlot::new(target.addr);
                let edge = self.registry.add_edge(Edge {
                    dependent: Registry::BASE,
                    section: SectionId(0),
                    slot: slot.slot_addr(),
                    kind: SlotKind::Handle,
                    addend: 0,
                    provider: target.cell,
                    symbol: target.symbol,
                });
                if let Some(edge) = edge {
                    self.handles.push((edge, slot.clone()));
                }
                slot
            }
        };
        // SAFETY: the caller promises `F` is the function's signature; the slot holds the
        // function's address and the cell stays mapped while the slot's edge exists (`unload`
        // refuses a cell with edges into it).
        Ok(unsafe { Handle::new(slot) })
    }

    /// The start and length of each region of a loaded cell's mapping (text, read-only, relro,
    /// data), for inspection and W^X checks.
    pub fn regions(&self, id: CellId) -> Option<[(u64, u64); 4]> {
        let m = self.mapped.get(&id)?;
        Some(
            m.regions
                .map(|(off, len)| (m.mapping.addr(off), len as u64)),
        )
    }
}

impl<P: Platform> Drop for System<P> {
    fn drop(&mut self) {
        self.prune_handles();
        if !self.handles.is_empty() {
            // Handles outlive the system: keep every cell mapped so they stay callable.
            log::warn!(
                "{} handle slot(s) outlive the cell system; its cells stay mapped",
                self.handles.len()
            );
            return;
        }
        let mapped = core::mem::take(&mut self.mapped);
        for (_, m) in mapped.into_iter().rev() {
            // SAFETY: the system is going away and no handle can reach a cell (checked above);
            // cells only reach each other, and all of them go together.
            unsafe { self.release(m) };
        }
    }
}

/// Lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(bytes);
    let mut out = String::with_capacity(64);
    for b in digest {
        let _ = core::fmt::Write::write_fmt(&mut out, format_args!("{b:02x}"));
    }
    out
}

/// Ids of the cell's metadata, by object section and symbol index.
struct SectionIds {
    by_index: Vec<Option<SectionId>>,
    got: Option<SectionId>,
    symbols: Vec<Option<SymbolId>>,
}

/// Fills in the targets of the symbols the cell defines itself.
fn local_targets(
    object: &Object<'_>,
    layout: &Layout,
    mapping: &Mapping,
    targets: &mut [Option<Target>],
) {
    for (i, sym) in object.syms.iter().enumerate() {
        let shndx = sym.st_shndx;
        if shndx == 0 {
            continue;
        }
        targets[i] = if shndx == goblin::elf::section_header::SHN_ABS as usize {
            Some(Target::Local(sym.st_value))
        } else {
            match layout.sections.get(shndx).copied().flatten() {
                Some(p) if matches!(p.kind, SectionKind::TlsData | SectionKind::TlsBss) => {
                    Some(Target::LocalTls(p.tls_offset as u64 + sym.st_value))
                }
                Some(p) => Some(Target::Local(mapping.addr(p.offset) + sym.st_value)),
                None => None,
            }
        };
    }
}

/// The cell's metadata (sections and exported symbols) and its namespace exports.
#[allow(clippy::type_complexity)]
fn describe<'a>(
    spec: CellSpec<'_>,
    object: &Object<'a>,
    layout: &Layout,
    mapping: &Mapping,
) -> Result<(Cell, Vec<(&'a str, SymbolId, u64, bool)>, SectionIds), LoadError> {
    let mut cell = Cell::new(spec.name, spec.version, Origin::Object);
    cell.kind = spec.kind;
    cell.sha256 = spec.sha256.map(ToString::to_string);
    cell.object_size = object.bytes.len() as u64;
    cell.base_addr = mapping.addr(0);
    let placed = layout.sections.iter().flatten().count();
    cell.sections.reserve_exact(placed + 2);
    let mut by_index = alloc::vec![None; layout.sections.len()];
    for (i, placed) in layout.sections.iter().enumerate() {
        let Some(p) = placed else { continue };
        by_index[i] = Some(SectionId(cell.sections.len() as u32));
        let addr = if p.kind == SectionKind::TlsBss {
            0
        } else {
            mapping.addr(p.offset)
        };
        // A loaded section's name goes into the metadata as a `String`: it must be UTF-8.
        let name = match object.section_name_str(i) {
            Some("") => alloc::format!("section#{i}"),
            Some(name) => name.into(),
            None => {
                return Err(LoadError::Malformed {
                    cell: spec.name.into(),
                    reason: alloc::format!("the name of section #{i} is not UTF-8"),
                })
            }
        };
        cell.sections.push(Section {
            name,
            kind: p.kind,
            addr,
            size: p.size as u64,
            align: object.sections[i].sh_addralign.max(1),
        });
    }
    let mut got = None;
    if layout.got_len > 0 {
        got = Some(SectionId(cell.sections.len() as u32));
        cell.sections.push(Section {
            name: ".got".into(),
            kind: SectionKind::Got,
            addr: mapping.addr(layout.got_offset),
            size: layout.got_len as u64,
            align: 8,
        });
    }
    if layout.stub_count > 0 {
        cell.sections.push(Section {
            name: ".stubs".into(),
            kind: SectionKind::Stubs,
            addr: mapping.addr(layout.stubs_offset),
            size: (layout.stub_count * layout::STUB_SIZE) as u64,
            align: 16,
        });
    }
    // The exported symbols: defined, global or weak, visible, not a section or file symbol, in
    // a loaded section. Found first, so the vectors are allocated once at their size.
    let exported: Vec<usize> = (0..object.syms.len())
        .filter(|i| {
            let sym = &object.syms[*i];
            let (bind, vis, ty) = (sym.st_bind(), sym.st_visibility(), sym.st_type());
            sym.st_shndx != 0
                && (bind == STB_GLOBAL || bind == STB_WEAK)
                && vis != STV_HIDDEN
                && vis != STV_INTERNAL
                && ty != STT_SECTION
                && ty != STT_FILE
                && by_index.get(sym.st_shndx).copied().flatten().is_some()
        })
        .collect();
    let mut exports = Vec::with_capacity(exported.len());
    cell.symbols.reserve_exact(exported.len());
    let mut symbols = alloc::vec![None; object.syms.len()];
    for i in exported {
        let sym = &object.syms[i];
        let (Some(section), Some(p)) = (by_index[sym.st_shndx], layout.sections[sym.st_shndx])
        else {
            continue;
        };
        let (kind, addr) = match sym.st_type() {
            STT_FUNC => (SymbolKind::Function, mapping.addr(p.offset) + sym.st_value),
            STT_OBJECT => (SymbolKind::Object, mapping.addr(p.offset) + sym.st_value),
            TLS_SYMBOL => (SymbolKind::Tls, p.tls_offset as u64 + sym.st_value),
            _ => (SymbolKind::Other, mapping.addr(p.offset) + sym.st_value),
        };
        let name = object.symbol_name(spec.name, i)?;
        let id = SymbolId(cell.symbols.len() as u32);
        cell.symbols.push(Symbol {
            name: name.into(),
            section: Some(section),
            addr,
            size: sym.st_size,
            kind,
        });
        exports.push((name, id, addr, sym.st_bind() == STB_WEAK));
        symbols[i] = Some(id);
    }
    Ok((
        cell,
        exports,
        SectionIds {
            by_index,
            got,
            symbols,
        },
    ))
}
