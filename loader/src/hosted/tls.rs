//! Thread-local storage of cells: the loader's own `__tls_get_addr`.
//!
//! A cell reaches its own `thread_local!` variables with `TLSLD`: it calls `__tls_get_addr` with a
//! GOT pair `{module, 0}` and adds `DTPOFF32` offsets to the result. The loader resolves a cell's
//! `__tls_get_addr` to [`cell_tls_get_addr`], and writes a module id made by
//! [`ThreadLocals::create_module`] into the pair. Such an id carries [`TAG`] (glibc's module ids
//! are small counters, so they never collide), a generation and a slot index; every id without the
//! tag (the base image's thread-locals, reached with `TLSGD` as `{1, offset}`) goes to glibc.
//!
//! # Blocks
//!
//! Each thread gets its own block per module on its first access, allocated with the template's
//! size and alignment, `.tdata` copied in and `.tbss` zeroed. The [`Registry`] behind one global
//! lock owns every block of every thread, so [`ThreadLocals::destroy_module`] frees all of them.
//! A per-thread cache (slot -> module id, block) answers repeated accesses without the lock; ids
//! of destroyed modules never hit, because a slot's generation changes when it is freed.
//!
//! # Thread exit
//!
//! The cache lives in a thread-local [`ThreadBlocks`] whose destructor frees the thread's blocks.
//! It is touched before a thread gets its first block, so its destructor is registered before the
//! destructor of any cell `thread_local!` that lives in such a block; glibc runs thread-local
//! destructors in reverse order of registration, so the cells' destructors still find their
//! blocks. An access that comes later still (from a destructor registered before ours) gets a
//! *late* block: allocated, recorded in the registry under the thread and returned again on the
//! next late access, but freed only with its module, because nothing runs on the thread any more
//! that could free it. Such accesses are rare, and never crash.
//!
//! # Reentrancy
//!
//! [`cell_tls_get_addr`] takes the lock and allocates memory, but never logs or calls the loader.
//! The global allocator must therefore not use a cell's thread-locals.

use std::alloc::Layout;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::thread_local;
use std::vec::Vec;

use super::Hosted;
#[cfg(test)]
use crate::platform::TlsSymbol;
use crate::platform::{PlatformError, ThreadLocals, TlsTemplate};

/// Marks the module ids of [`ThreadLocals::create_module`].
const TAG: u64 = 1 << 63;
/// Bits of a module id that hold the slot index.
const SLOT_BITS: u32 = 16;
/// The number of modules that can exist at once.
const MAX_SLOTS: usize = 1 << SLOT_BITS;
/// Mask of the generation, which sits between the slot index and [`TAG`].
const GENERATION_MASK: u64 = (TAG >> SLOT_BITS) - 1;

/// A `TLSGD`/`TLSLD` GOT pair, the argument of `__tls_get_addr`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TlsIndex {
    /// The TLS module id.
    pub module: u64,
    /// The offset of the variable in the module's block.
    pub offset: u64,
}

extern "C" {
    /// glibc's `__tls_get_addr` (exported by `ld-linux-x86-64.so.2`).
    fn __tls_get_addr(ti: *const TlsIndex) -> *mut u8;
}

/// The `__tls_get_addr` of cells: the address of `ti.offset` in this thread's block of module
/// `ti.module`, allocated on first use. Module ids that [`ThreadLocals::create_module`] did not
/// make are forwarded to glibc's `__tls_get_addr`.
///
/// Aborts the process for a tagged module id that is not alive (a destroyed cell's code ran).
///
/// # Safety
/// `ti` points to a readable GOT pair; a tagged module id belongs to a live module.
pub unsafe extern "C" fn cell_tls_get_addr(ti: *const TlsIndex) -> *mut u8 {
    // SAFETY: the caller passes a readable GOT pair.
    let TlsIndex { module, offset } = unsafe { ti.read() };
    if module & TAG == 0 {
        // SAFETY: not one of our ids, so it is a glibc module id, and `ti` is the caller's pair.
        return unsafe { __tls_get_addr(ti) };
    }
    block(module).wrapping_add(offset as usize)
}

/// The number of TLS blocks currently allocated, over all threads and modules.
pub fn live_tls_blocks() -> usize {
    registry()
        .slots
        .iter()
        .flatten()
        .map(|m| m.blocks.len())
        .sum()
}

/// The number of blocks of `module` currently allocated (0 for a module that does not exist).
pub fn module_tls_blocks(module: u64) -> usize {
    registry().module(module).map_or(0, |m| m.blocks.len())
}

impl ThreadLocals for Hosted {
    unsafe fn create_module(&self, template: TlsTemplate) -> Result<u64, PlatformError> {
        // SAFETY: the caller keeps `template.init` valid until it destroys the module.
        unsafe { registry().create(template) }
    }

    unsafe fn destroy_module(&self, module: u64) {
        registry().destroy(module);
    }

    fn tls_get_addr(&self) -> usize {
        cell_tls_get_addr as *const () as usize
    }

    unsafe fn replace_template(
        &self,
        module: u64,
        template: TlsTemplate,
    ) -> Result<TlsTemplate, PlatformError> {
        // SAFETY: the caller keeps `template.init` valid until the module is destroyed or given
        // another template.
        unsafe { registry().replace_template(module, template) }
    }

    fn module_blocks(&self, module: u64) -> usize {
        module_tls_blocks(module)
    }
}

/// This thread's block of `module`.
fn block(module: u64) -> *mut u8 {
    let slot = slot_of(module);
    let cached = THREAD.try_with(|thread| thread.cached(slot, module));
    if let Ok(Some(block)) = cached {
        return block as *mut u8;
    }
    // `try_with` above touched `THREAD`, so its destructor is registered before the first block
    // of this thread is handed out. `Err` means it is being (or was) destroyed: a late block.
    let Some(block) = registry().block(module, thread_key()) else {
        std::process::abort();
    };
    if cached.is_ok() {
        let _ = THREAD.try_with(|thread| thread.remember(slot, module, block));
    }
    block as *mut u8
}

/// The slot index of a module id.
fn slot_of(module: u64) -> usize {
    (module as usize) & (MAX_SLOTS - 1)
}

/// The generation of a module id.
fn generation_of(module: u64) -> u64 {
    (module >> SLOT_BITS) & GENERATION_MASK
}

/// A thread's key in the registry: unique for the life of the process, never reused.
fn thread_key() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    // `KEY` needs no destructor, so it stays usable while the thread's destructors run.
    KEY.with(|key| {
        if key.get() == 0 {
            key.set(NEXT.fetch_add(1, Ordering::Relaxed));
        }
        key.get()
    })
}

thread_local! {
    /// This thread's key; 0 until [`thread_key`] assigns one.
    static KEY: Cell<u64> = const { Cell::new(0) };
    /// This thread's cache; its destructor frees the thread's blocks.
    static THREAD: ThreadBlocks = const { ThreadBlocks { cache: RefCell::new(Vec::new()) } };
}

/// A thread's view of its blocks.
struct ThreadBlocks {
    /// Slot index -> (module id, block address); `(0, 0)` for none.
    cache: RefCell<Vec<(u64, usize)>>,
}

impl ThreadBlocks {
    /// The cached block of `module`, if any.
    fn cached(&self, slot: usize, module: u64) -> Option<usize> {
        let cache = self.cache.try_borrow().ok()?;
        match cache.get(slot) {
            Some(&(id, block)) if id == module => Some(block),
            _ => None,
        }
    }

    /// Caches `block` as this thread's block of `module`.
    fn remember(&self, slot: usize, module: u64, block: usize) {
        if let Ok(mut cache) = self.cache.try_borrow_mut() {
            if cache.len() <= slot {
                cache.resize(slot + 1, (0, 0));
            }
            cache[slot] = (module, block);
        }
    }
}

impl Drop for ThreadBlocks {
    fn drop(&mut self) {
        let key = KEY.with(Cell::get);
        if key != 0 {
            registry().free_thread(key);
        }
    }
}

/// The registry of every module and every block.
fn registry() -> MutexGuard<'static, Registry> {
    static REGISTRY: Mutex<Registry> = Mutex::new(Registry::new(MAX_SLOTS));
    // Nothing panics while holding the lock, and the registry stays consistent if it did.
    REGISTRY.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The modules, indexed by slot, and their blocks.
struct Registry {
    /// Slot index -> the module living in it.
    slots: Vec<Option<Module>>,
    /// Slot index -> the generation of the slot's next (or current) module.
    generations: Vec<u64>,
    /// The number of slots there may be.
    max_slots: usize,
}

/// One TLS module: a cell's template and every thread's block of it.
struct Module {
    /// The module id.
    id: u64,
    /// Address of the `.tdata` image.
    init: usize,
    /// Length of the `.tdata` image.
    init_len: usize,
    /// Size and alignment of a block.
    layout: Layout,
    /// Thread key -> block address.
    blocks: HashMap<u64, usize>,
}

impl Registry {
    /// An empty registry of at most `max_slots` modules.
    const fn new(max_slots: usize) -> Registry {
        Registry {
            slots: Vec::new(),
            generations: Vec::new(),
            max_slots,
        }
    }

    /// Creates a module from `template`.
    ///
    /// # Safety
    /// `template.init` holds `template.init_len` readable bytes until the module is destroyed.
    unsafe fn create(&mut self, template: TlsTemplate) -> Result<u64, PlatformError> {
        let slot = match self.slots.iter().position(Option::is_none) {
            Some(slot) => slot,
            None if self.slots.len() < self.max_slots => {
                self.slots.push(None);
                self.generations.push(0);
                self.slots.len() - 1
            }
            None => return Err(PlatformError::TlsExhausted),
        };
        let size = template.size.max(template.init_len).max(1);
        let align = template.align.max(1).next_power_of_two();
        let layout = Layout::from_size_align(size, align)
            .map_err(|_| PlatformError::OutOfMemory { len: template.size })?;
        let id = TAG | (self.generations[slot] << SLOT_BITS) | slot as u64;
        self.slots[slot] = Some(Module {
            id,
            init: template.init as usize,
            init_len: template.init_len,
            layout,
            blocks: HashMap::new(),
        });
        Ok(id)
    }

    /// Gives `module` another template of the same block size and alignment; returns the old
    /// one.
    ///
    /// # Safety
    /// `template.init` holds `template.init_len` readable bytes until the module is destroyed or
    /// given another template.
    unsafe fn replace_template(
        &mut self,
        module: u64,
        template: TlsTemplate,
    ) -> Result<TlsTemplate, PlatformError> {
        let slot = self
            .slots
            .get_mut(slot_of(module))
            .and_then(Option::as_mut)
            .filter(|m| m.id == module)
            .ok_or(PlatformError::Unsupported(
                "replacing the template of a module that is gone",
            ))?;
        let size = template.size.max(template.init_len).max(1);
        let align = template.align.max(1).next_power_of_two();
        if size != slot.layout.size() || align != slot.layout.align() {
            return Err(PlatformError::Unsupported(
                "a template of another size for a module whose threads have blocks",
            ));
        }
        let old = TlsTemplate {
            init: slot.init as *const u8,
            init_len: slot.init_len,
            size: slot.layout.size(),
            align: slot.layout.align(),
        };
        slot.init = template.init as usize;
        slot.init_len = template.init_len;
        Ok(old)
    }

    /// The live module with id `module`.
    fn module(&self, module: u64) -> Option<&Module> {
        let found = self.slots.get(slot_of(module))?.as_ref()?;
        (found.id == module).then_some(found)
    }

    /// Frees every block of `module` and its slot; a dead id is ignored.
    fn destroy(&mut self, module: u64) {
        if self.module(module).is_none() {
            return;
        }
        let slot = slot_of(module);
        if let Some(dead) = self.slots[slot].take() {
            for &block in dead.blocks.values() {
                // SAFETY: the module left the registry with all its blocks, each freed once.
                unsafe { dead.free(block) };
            }
        }
        self.generations[slot] = (generation_of(module) + 1) & GENERATION_MASK;
    }

    /// The block of `module` that belongs to `thread`, allocated on first use. `None` when the
    /// module does not exist.
    fn block(&mut self, module: u64, thread: u64) -> Option<usize> {
        let slot = self.slots.get_mut(slot_of(module))?.as_mut()?;
        if slot.id != module {
            return None;
        }
        if let Some(&block) = slot.blocks.get(&thread) {
            return Some(block);
        }
        let block = slot.allocate();
        slot.blocks.insert(thread, block);
        Some(block)
    }

    /// Frees every block of `thread`.
    fn free_thread(&mut self, thread: u64) {
        for module in self.slots.iter_mut().flatten() {
            if let Some(block) = module.blocks.remove(&thread) {
                // SAFETY: the block just left the registry, so it is freed once.
                unsafe { module.free(block) };
            }
        }
    }
}

impl Module {
    /// A new block: `.tdata` copied in, the rest zeroed. Aborts when memory is exhausted.
    fn allocate(&self) -> usize {
        // SAFETY: the layout's size is at least 1.
        let block = unsafe { std::alloc::alloc_zeroed(self.layout) };
        if block.is_null() {
            std::alloc::handle_alloc_error(self.layout);
        }
        if self.init_len > 0 {
            // SAFETY: `init` holds `init_len` readable bytes while the module exists (contract of
            // `Registry::create`), and the block is at least `init_len` bytes long (see there).
            unsafe { std::ptr::copy_nonoverlapping(self.init as *const u8, block, self.init_len) };
        }
        block as usize
    }

    /// Frees a block.
    ///
    /// # Safety
    /// `block` came from this module's [`Module::allocate`], and nothing uses it any more.
    unsafe fn free(&self, block: usize) {
        // SAFETY: the caller guarantees `block` was allocated with `self.layout`, and is unused.
        unsafe { std::alloc::dealloc(block as *mut u8, self.layout) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::SymbolSource;
    use std::sync::{mpsc, Arc, Barrier};

    /// `.tdata` of the test template: 16 initialized bytes, then 48 bytes of `.tbss`.
    static TDATA: [u8; 16] = *b"abcdefghijklmnop";

    fn template() -> TlsTemplate {
        TlsTemplate {
            init: TDATA.as_ptr(),
            init_len: TDATA.len(),
            size: 64,
            align: 16,
        }
    }

    /// This thread's block of `module`, at `offset`.
    fn get(module: u64, offset: u64) -> *mut u8 {
        // SAFETY: a readable pair; the tests only pass live module ids.
        unsafe { cell_tls_get_addr(&TlsIndex { module, offset }) }
    }

    /// Checks a fresh block: aligned, `.tdata` copied, `.tbss` zeroed.
    fn check_fresh(block: *mut u8) {
        assert_eq!(block as usize % 16, 0);
        // SAFETY: a block of the test template is 64 bytes long.
        let bytes = unsafe { std::slice::from_raw_parts(block, 64) };
        assert_eq!(&bytes[..16], &TDATA);
        assert!(bytes[16..].iter().all(|&b| b == 0));
    }

    #[test]
    fn every_thread_gets_its_own_initialized_block() {
        let hosted = Hosted::new().unwrap();
        // SAFETY: `TDATA` is a static.
        let module = unsafe { hosted.create_module(template()) }.unwrap();
        assert_ne!(module & TAG, 0);
        let barrier = Arc::new(Barrier::new(4));
        let threads: Vec<_> = (0..4u8)
            .map(|i| {
                let barrier = Arc::clone(&barrier);
                std::thread::spawn(move || {
                    let block = get(module, 0);
                    check_fresh(block);
                    assert_eq!(get(module, 20), block.wrapping_add(20));
                    // SAFETY: byte 20 of this thread's own block.
                    unsafe { *block.add(20) = i + 1 };
                    // Every thread has written its byte after this.
                    barrier.wait();
                    // SAFETY: byte 20 of this thread's own block (a 64-byte block, see
                    // `template`), which only this thread writes.
                    assert_eq!(unsafe { *get(module, 20) }, i + 1);
                    assert_eq!(module_tls_blocks(module), 4);
                    barrier.wait(); // nobody exits before every thread has counted
                    block as usize
                })
            })
            .collect();
        let mut blocks: Vec<usize> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        blocks.sort_unstable();
        blocks.dedup();
        assert_eq!(blocks.len(), 4, "four distinct blocks");
        assert_eq!(
            module_tls_blocks(module),
            0,
            "freed when the threads exited"
        );

        let block = get(module, 0);
        check_fresh(block);
        assert_eq!(module_tls_blocks(module), 1);
        assert!(live_tls_blocks() >= 1);
        // SAFETY: no code uses the module any more.
        unsafe { hosted.destroy_module(module) };
        assert_eq!(module_tls_blocks(module), 0);
    }

    #[test]
    fn destroyed_modules_are_forgotten_and_their_slots_reused() {
        let hosted = Hosted::new().unwrap();
        // SAFETY: `TDATA` is a static.
        let first = unsafe { hosted.create_module(template()) }.unwrap();
        // SAFETY: a block of the test template is 64 bytes long.
        unsafe { get(first, 0).write_bytes(0xff, 64) };
        // SAFETY: nothing uses the module any more.
        unsafe { hosted.destroy_module(first) };
        // SAFETY: `TDATA` is a static.
        let second = unsafe { hosted.create_module(template()) }.unwrap();
        assert_ne!(first, second);
        check_fresh(get(second, 0));
        // SAFETY: nothing uses the modules any more; destroying twice is harmless.
        unsafe {
            hosted.destroy_module(second);
            hosted.destroy_module(second);
        }
    }

    #[test]
    fn slots_run_out() {
        let mut registry = Registry::new(2);
        // SAFETY: `TDATA` is a static.
        let create = |registry: &mut Registry| unsafe { registry.create(template()) };
        let a = create(&mut registry).unwrap();
        let b = create(&mut registry).unwrap();
        assert_eq!(create(&mut registry), Err(PlatformError::TlsExhausted));
        registry.destroy(a);
        let c = create(&mut registry).unwrap();
        assert_eq!((slot_of(c), generation_of(c)), (slot_of(a), 1));
        assert!(registry.block(a, 1).is_none(), "a dead id has no block");
        registry.block(c, 1).unwrap();
        registry.destroy(b);
        registry.destroy(c);
    }

    /// Reports the block of `module` from inside a thread-local destructor.
    struct ReportOnDrop(u64, mpsc::Sender<(usize, usize)>);

    impl Drop for ReportOnDrop {
        fn drop(&mut self) {
            let block = get(self.0, 0);
            let again = get(self.0, 0);
            let _ = self.1.send((block as usize, again as usize));
        }
    }

    thread_local! {
        static REPORT: RefCell<Option<ReportOnDrop>> = const { RefCell::new(None) };
    }

    /// A cell's thread-local registers its destructor after getting its block, so it runs before
    /// the blocks are freed and still sees its own block.
    #[test]
    fn destructors_registered_later_see_the_thread_block() {
        let hosted = Hosted::new().unwrap();
        // SAFETY: `TDATA` is a static.
        let module = unsafe { hosted.create_module(template()) }.unwrap();
        let (tx, rx) = mpsc::channel();
        let block = std::thread::spawn(move || {
            let block = get(module, 0) as usize;
            REPORT.with(|r| *r.borrow_mut() = Some(ReportOnDrop(module, tx)));
            block
        })
        .join()
        .unwrap();
        assert_eq!(rx.recv().unwrap(), (block, block));
        assert_eq!(module_tls_blocks(module), 0);
        // SAFETY: no code uses the module any more.
        unsafe { hosted.destroy_module(module) };
    }

    /// A destructor registered before the thread's blocks were set up runs after they are freed:
    /// it gets a late block, the same one each time, freed with its module.
    #[test]
    fn late_accesses_get_a_block_freed_with_the_module() {
        let hosted = Hosted::new().unwrap();
        // SAFETY: `TDATA` is a static.
        let module = unsafe { hosted.create_module(template()) }.unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            REPORT.with(|r| *r.borrow_mut() = Some(ReportOnDrop(module, tx)));
            // SAFETY: byte 0 of this thread's block, freed before `REPORT` is dropped.
            unsafe { *get(module, 0) = b'X' };
        })
        .join()
        .unwrap();
        let (late, again) = rx.recv().unwrap();
        assert_eq!(late, again);
        check_fresh(late as *mut u8);
        assert_eq!(module_tls_blocks(module), 1, "the late block is recorded");
        // SAFETY: no code uses the module any more.
        unsafe { hosted.destroy_module(module) };
        assert_eq!(module_tls_blocks(module), 0);
    }

    thread_local! {
        static PROBE: Cell<u64> = const { Cell::new(0) };
    }

    /// Module ids without the tag go to glibc: module 1 is the executable's static TLS block.
    #[test]
    fn other_modules_are_forwarded_to_glibc() {
        let hosted = Hosted::new().unwrap();
        let mut tls_symbol = None;
        hosted.for_each_image_symbol(&mut |name| {
            if tls_symbol.is_none() {
                tls_symbol = hosted.image_tls_symbol(name);
            }
        });
        let TlsSymbol { module, offset } = tls_symbol.expect("the image has thread-locals");
        assert_eq!(module, 1);
        let (base, variable) = (get(1, 0) as usize, get(1, offset) as usize);
        assert_ne!(base, 0);
        assert_eq!(variable, base + offset as usize);
        assert_eq!(get(1, offset) as usize, variable, "stable on one thread");
        // The test's own thread-local lives in the same block.
        let probe = PROBE.with(|p| p.as_ptr() as usize);
        assert!(
            probe >= base && probe - base < 0x1_0000,
            "{probe:#x} {base:#x}"
        );
        let other = std::thread::spawn(move || get(1, offset) as usize).join();
        assert_ne!(other.unwrap(), variable, "another thread has another block");
    }
}
