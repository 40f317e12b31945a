//! What the loader's unit tests share: a platform over heap memory that records every protection
//! change and can fail any memory call ([`HeapPlatform`]), and a writer of the objects they load
//! ([`elf`]).
//!
//! The heap platform never runs a cell's code ([`Process::runs_code`] is false): heap memory is not
//! executable, and the tests read what the loader wrote instead. Its protections are bookkeeping
//! (the pages stay readable and writable), which lets a test ask what each page's protection is at
//! any point and check that a failed operation changed nothing.

pub(crate) mod cells;
pub(crate) mod debuggers;
pub(crate) mod elf;
pub(crate) mod unwind;

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::platform::{
    Memory, PlatformError, Process, Protection, SymbolSource, ThreadLocals, TlsSymbol, TlsTemplate,
    Unwinder,
};
use crate::System;

/// The page size of the heap platform.
pub(crate) const PAGE: usize = 4096;
/// The byte that fills the memory a dirty [`HeapPlatform`] hands out for overwriting.
pub(crate) const DIRTY: u8 = 0xa5;

/// One heap block handed out as a mapping.
struct Block {
    len: usize,
    layout: std::alloc::Layout,
}

/// Everything the heap platform keeps behind one lock.
#[derive(Default)]
struct State {
    /// Live blocks: start -> block.
    blocks: BTreeMap<usize, Block>,
    /// The protection of every mapped page, by page address.
    pages: BTreeMap<usize, Protection>,
    /// Every successful protection change, in order: (address, length, protection).
    protections: Vec<(usize, usize, Protection)>,
    /// Registered `.eh_frame` sections.
    eh_frames: BTreeSet<usize>,
    /// Live TLS modules.
    modules: BTreeSet<u64>,
}

/// A platform over heap memory for the unit tests: zeroed page-aligned blocks, protections
/// recorded per page, symbol tables the test fills in, fake TLS module ids, and a memory call
/// (map or protect) that fails on request.
pub(crate) struct HeapPlatform {
    state: Mutex<State>,
    /// The base image's symbols.
    pub(crate) image: BTreeMap<String, usize>,
    /// The base image's thread-locals.
    pub(crate) image_tls: BTreeMap<String, TlsSymbol>,
    /// The platform's symbols (what `dlsym` would find).
    pub(crate) platform: BTreeMap<String, usize>,
    next_module: AtomicU64,
    clock: AtomicU64,
    calls: AtomicUsize,
    fail_at: AtomicUsize,
    /// Whether [`Memory::map_for_overwrite`] hands out memory filled with [`DIRTY`], as a
    /// platform that reuses released memory may.
    dirty: AtomicBool,
    /// What the loader told the platform's debuggers.
    pub(crate) debugger: debuggers::Recorder,
}

impl Default for HeapPlatform {
    fn default() -> Self {
        HeapPlatform {
            state: Mutex::new(State::default()),
            image: BTreeMap::new(),
            image_tls: BTreeMap::new(),
            platform: BTreeMap::new(),
            next_module: AtomicU64::new(0x1000),
            clock: AtomicU64::new(0),
            calls: AtomicUsize::new(0),
            fail_at: AtomicUsize::new(usize::MAX),
            dirty: AtomicBool::new(false),
            debugger: debuggers::Recorder::default(),
        }
    }
}

impl HeapPlatform {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Fails the `n`th memory call from now (0: the next one); `None`: never.
    pub(crate) fn fail_call(&self, n: Option<usize>) {
        self.calls.store(0, Ordering::SeqCst);
        self.fail_at
            .store(n.unwrap_or(usize::MAX), Ordering::SeqCst);
    }

    /// From now on, [`Memory::map_for_overwrite`] hands out memory filled with [`DIRTY`] (`true`)
    /// or zeroed (`false`, the default).
    pub(crate) fn hand_out_dirty_memory(&self, dirty: bool) {
        self.dirty.store(dirty, Ordering::SeqCst);
    }

    /// Memory calls made since the last [`HeapPlatform::fail_call`].
    pub(crate) fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// Counts a memory call; `Err` when it is the one to fail.
    fn call(&self) -> Result<(), ()> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        if n == self.fail_at.load(Ordering::SeqCst) {
            Err(())
        } else {
            Ok(())
        }
    }

    /// Mapped pages and their bytes, as the tests compare them before and after.
    pub(crate) fn live(&self) -> (usize, usize) {
        let state = self.state();
        (state.blocks.len(), state.pages.len() * PAGE)
    }

    /// The protection of the page that holds `addr`, `None` when it is not mapped.
    pub(crate) fn protection(&self, addr: u64) -> Option<Protection> {
        let page = addr as usize & !(PAGE - 1);
        self.state().pages.get(&page).copied()
    }

    /// Every protection change so far.
    pub(crate) fn protections(&self) -> Vec<(usize, usize, Protection)> {
        self.state().protections.clone()
    }

    /// The `.eh_frame` sections registered now.
    pub(crate) fn eh_frames(&self) -> usize {
        self.state().eh_frames.len()
    }

    /// The TLS modules alive now.
    pub(crate) fn modules(&self) -> usize {
        self.state().modules.len()
    }
}

impl Drop for HeapPlatform {
    fn drop(&mut self) {
        let blocks = core::mem::take(&mut self.state().blocks);
        for (addr, block) in blocks {
            // SAFETY: `addr` came from `alloc_zeroed` with `block.layout` and is freed once: the
            // map of live blocks is emptied here.
            unsafe { std::alloc::dealloc(addr as *mut u8, block.layout) };
        }
    }
}

impl Memory for HeapPlatform {
    fn page_size(&self) -> usize {
        PAGE
    }

    fn map(&self, len: usize) -> Result<*mut u8, PlatformError> {
        let out_of_memory = PlatformError::OutOfMemory { len };
        self.call().map_err(|()| out_of_memory.clone())?;
        if len == 0 || !len.is_multiple_of(PAGE) {
            return Err(out_of_memory);
        }
        let layout =
            std::alloc::Layout::from_size_align(len, PAGE).map_err(|_| out_of_memory.clone())?;
        // SAFETY: the layout has a non-zero size (checked above).
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        if ptr.is_null() {
            return Err(out_of_memory);
        }
        let mut state = self.state();
        state.blocks.insert(ptr as usize, Block { len, layout });
        for page in (ptr as usize..ptr as usize + len).step_by(PAGE) {
            state.pages.insert(page, Protection::ReadWrite);
        }
        Ok(ptr)
    }

    fn map_for_overwrite(&self, len: usize) -> Result<(*mut u8, bool), PlatformError> {
        let ptr = self.map(len)?;
        if !self.dirty.load(Ordering::SeqCst) {
            return Ok((ptr, true));
        }
        // SAFETY: `len` bytes just allocated for this mapping, which nothing else refers to.
        unsafe { core::ptr::write_bytes(ptr, DIRTY, len) };
        Ok((ptr, false))
    }

    fn protect(&self, addr: *mut u8, len: usize, prot: Protection) -> Result<(), PlatformError> {
        let error = PlatformError::Protect {
            addr: addr as usize,
            len,
            code: 22,
        };
        self.call().map_err(|()| error.clone())?;
        let start = addr as usize;
        if !start.is_multiple_of(PAGE) || !len.is_multiple_of(PAGE) {
            return Err(error);
        }
        let mut state = self.state();
        let pages: Vec<usize> = (start..start + len).step_by(PAGE).collect();
        if !pages.iter().all(|p| state.pages.contains_key(p)) {
            return Err(error);
        }
        for page in pages {
            state.pages.insert(page, prot);
        }
        state.protections.push((start, len, prot));
        Ok(())
    }

    unsafe fn unmap(&self, addr: *mut u8, len: usize) {
        let start = addr as usize;
        let mut state = self.state();
        for page in (start..start.saturating_add(len)).step_by(PAGE) {
            state.pages.remove(&page);
        }
        // A block is freed once none of its pages is mapped (a reclaim may keep its data
        // region, which is unmapped later on its own).
        let Some((&block_start, block)) = state.blocks.range(..=start).next_back() else {
            return;
        };
        let block_len = block.len;
        let still_mapped = state
            .pages
            .range(block_start..block_start + block_len)
            .next()
            .is_some();
        if !still_mapped {
            if let Some(block) = state.blocks.remove(&block_start) {
                // SAFETY: the block came from `alloc_zeroed` with this layout, none of its pages
                // is mapped any more (so, by the caller's promise, nothing uses it), and it is
                // removed from the live blocks, so it is freed once.
                unsafe { std::alloc::dealloc(block_start as *mut u8, block.layout) };
            }
        }
    }
}

impl SymbolSource for HeapPlatform {
    fn image_symbol(&self, name: &str) -> Option<usize> {
        self.image.get(name).copied()
    }

    fn image_tls_symbol(&self, name: &str) -> Option<TlsSymbol> {
        self.image_tls.get(name).copied()
    }

    fn platform_symbol(&self, name: &str) -> Option<usize> {
        self.platform.get(name).copied()
    }

    fn for_each_image_symbol(&self, f: &mut dyn FnMut(&str)) {
        self.image.keys().for_each(|n| f(n));
        self.image_tls.keys().for_each(|n| f(n));
    }
}

impl Unwinder for HeapPlatform {
    unsafe fn register(&self, eh_frame: *const u8) -> Result<(), PlatformError> {
        self.state().eh_frames.insert(eh_frame as usize);
        Ok(())
    }

    unsafe fn deregister(&self, eh_frame: *const u8) {
        // libgcc aborts on a pointer it never registered: so does this.
        assert!(
            self.state().eh_frames.remove(&(eh_frame as usize)),
            "deregistering {eh_frame:?}, which was never registered"
        );
    }
}

impl ThreadLocals for HeapPlatform {
    unsafe fn create_module(&self, _template: TlsTemplate) -> Result<u64, PlatformError> {
        let module = self.next_module.fetch_add(1, Ordering::SeqCst);
        self.state().modules.insert(module);
        Ok(module)
    }

    unsafe fn destroy_module(&self, module: u64) {
        assert!(
            self.state().modules.remove(&module),
            "module {module} is not alive"
        );
    }

    fn tls_get_addr(&self) -> usize {
        0x7e57_0000
    }
}

impl Process for HeapPlatform {
    fn now_nanos(&self) -> u64 {
        self.clock.fetch_add(1, Ordering::Relaxed)
    }

    fn runs_code(&self) -> bool {
        false
    }

    fn debuggers(&self) -> Option<&dyn crate::platform::Debuggers> {
        Some(&self.debugger)
    }
}

/// A system on a heap platform with an empty `_kernel` namespace.
pub(crate) fn system() -> (System<HeapPlatform>, crate_metadata::NamespaceId) {
    system_on(HeapPlatform::default())
}

/// A system on `platform` with an empty `_kernel` namespace.
pub(crate) fn system_on(
    platform: HeapPlatform,
) -> (System<HeapPlatform>, crate_metadata::NamespaceId) {
    let mut system = System::new(platform, "base");
    let ns = system
        .create_namespace("_kernel", None)
        .expect("a fresh system has no namespace yet");
    (system, ns)
}

/// Everything a refused operation must leave as it was: the namespaces, the registry, every slot's
/// value, and the platform's mappings.
#[derive(Clone, PartialEq)]
pub(crate) struct SystemState {
    pub(crate) namespaces: namespace::Snapshot,
    pub(crate) registry: crate_metadata::Registry,
    pub(crate) slots: Vec<(u64, u64)>,
    pub(crate) live: (usize, usize),
}

impl SystemState {
    /// The state of `system` now.
    pub(crate) fn of(system: &System<HeapPlatform>) -> SystemState {
        SystemState {
            namespaces: system.namespaces().snapshot(),
            registry: system.registry().clone(),
            slots: system.slot_values(),
            live: system.platform().live(),
        }
    }

    /// Panics, naming what differs, unless `self` and `other` are the same.
    #[track_caller]
    pub(crate) fn assert_same(&self, other: &SystemState, what: &str) {
        assert!(
            self.namespaces == other.namespaces,
            "{what}: the namespaces changed"
        );
        assert!(
            self.registry == other.registry,
            "{what}: the registry changed"
        );
        assert_eq!(self.slots, other.slots, "{what}: slot values changed");
        assert_eq!(self.live, other.live, "{what}: the mappings changed");
    }
}
