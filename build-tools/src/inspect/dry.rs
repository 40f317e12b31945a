//! [`DryPlatform`]: a loader platform that models a link without running anything.
//!
//! The offline inspection tools link every cell with the loader's own code
//! ([`loader::System::load`]), so they resolve exactly as a real boot would. This platform gives
//! that code what it asks for without touching the process: zeroed page-aligned heap memory
//! (protection changes are no-ops), no unwind registration, fake TLS module ids, and
//! [`Process::runs_code`] = `false`, so no cell code (`.init_array`) is ever called. The base
//! image's symbols come from the `nano_core` executable *file* (`.dynsym` and `.symtab`, load
//! bias 0); the platform's (`memcpy`, `_Unwind_Resume`, libm's `sin`) from `dlsym` in this
//! process, which is a Linux process with the same libc, libm and libgcc as a running `nano_core`.

use std::alloc::Layout;
use std::collections::BTreeMap;
use std::ffi::c_void;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use anyhow::{Context, Result};
use goblin::elf::Elf;
use loader::hosted::{open_libm, platform_lookup, ImageSymbols};
use loader::platform::{
    Memory, PlatformError, Process, Protection, SymbolSource, ThreadLocals, TlsSymbol, TlsTemplate,
    Unwinder,
};

/// The page size the dry link lays cells out with (x86_64).
const PAGE: usize = 4096;

/// The first module id handed out for a cell's own thread-locals (never a real glibc id).
const FIRST_CELL_TLS_MODULE: u64 = 0x1000;

/// A platform for a dry link: heap memory, the base image's symbols from its file, `dlsym` for
/// the platform's, and no code ever run.
pub struct DryPlatform {
    /// The base image's symbols (bias 0: the file's own addresses), read by the same code the
    /// hosted platform reads the running image with.
    image: ImageSymbols,
    /// `libm.so.6`'s `dlopen` handle as an address (0 when it could not be opened).
    libm: usize,
    /// Live heap blocks: start -> length.
    blocks: Mutex<BTreeMap<usize, usize>>,
    /// The next fake TLS module id.
    next_module: AtomicU64,
}

impl DryPlatform {
    /// Reads the symbol tables of the base-image executable at `path`.
    pub fn new(path: &Path) -> Result<DryPlatform> {
        let bytes = std::fs::read(path)
            .with_context(|| format!("reading the base image {}", path.display()))?;
        DryPlatform::from_image(&bytes)
            .with_context(|| format!("reading the symbol tables of {}", path.display()))
    }

    /// Reads the symbol tables of a base-image executable's bytes.
    pub fn from_image(bytes: &[u8]) -> Result<DryPlatform> {
        let elf = Elf::parse(bytes).context("not an ELF file")?;
        let mut platform = DryPlatform::empty();
        platform.image = ImageSymbols::from_elf(&elf, 0);
        Ok(platform)
    }

    /// A platform whose base image defines nothing (for generated systems and tests).
    pub fn empty() -> DryPlatform {
        DryPlatform {
            image: ImageSymbols::default(),
            libm: open_libm(),
            blocks: Mutex::new(BTreeMap::new()),
            next_module: AtomicU64::new(FIRST_CELL_TLS_MODULE),
        }
    }

    /// The number of names the base image defines (thread-locals included).
    pub fn image_symbol_count(&self) -> usize {
        self.image.len()
    }

    fn blocks(&self) -> std::sync::MutexGuard<'_, BTreeMap<usize, usize>> {
        self.blocks.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for DryPlatform {
    fn drop(&mut self) {
        let blocks = std::mem::take(&mut *self.blocks());
        for (addr, len) in blocks {
            free(addr, len);
        }
    }
}

/// Frees a block that [`Memory::map`] allocated with length `len`.
fn free(addr: usize, len: usize) {
    if let Ok(layout) = Layout::from_size_align(len, PAGE) {
        // SAFETY: `addr` came from `alloc_zeroed` with exactly this layout (`map` records the
        // length it allocated), and the block is forgotten here, so it is freed once.
        unsafe { std::alloc::dealloc(addr as *mut u8, layout) };
    }
}

impl Memory for DryPlatform {
    fn page_size(&self) -> usize {
        PAGE
    }

    fn map(&self, len: usize) -> Result<*mut u8, PlatformError> {
        let layout = Layout::from_size_align(len.max(1), PAGE)
            .map_err(|_| PlatformError::OutOfMemory { len })?;
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        if ptr.is_null() {
            return Err(PlatformError::OutOfMemory { len });
        }
        self.blocks().insert(ptr as usize, layout.size());
        Ok(ptr)
    }

    fn protect(&self, _addr: *mut u8, _len: usize, _prot: Protection) -> Result<(), PlatformError> {
        Ok(())
    }

    unsafe fn unmap(&self, addr: *mut u8, len: usize) {
        // Heap blocks are freed whole; a part of one (a reclaim keeping a data region) stays
        // allocated until the platform is dropped.
        let mut blocks = self.blocks();
        if blocks.get(&(addr as usize)) == Some(&len) {
            blocks.remove(&(addr as usize));
            drop(blocks);
            free(addr as usize, len);
        }
    }
}

impl SymbolSource for DryPlatform {
    fn image_symbol(&self, name: &str) -> Option<usize> {
        self.image.address(name)
    }

    fn image_tls_symbol(&self, name: &str) -> Option<TlsSymbol> {
        self.image.thread_local(name)
    }

    fn platform_symbol(&self, name: &str) -> Option<usize> {
        let addr = platform_lookup(self.libm, name)?;
        // What this tool's own executable defines is not the platform's (the base image is
        // another file); only shared libraries count.
        (!in_this_executable(addr)).then_some(addr)
    }

    fn for_each_image_symbol(&self, f: &mut dyn FnMut(&str)) {
        self.image.for_each_name(f);
    }
}

impl Unwinder for DryPlatform {
    unsafe fn register(&self, _eh_frame: *const u8) -> Result<(), PlatformError> {
        Ok(())
    }

    unsafe fn deregister(&self, _eh_frame: *const u8) {}
}

impl ThreadLocals for DryPlatform {
    unsafe fn create_module(&self, _template: TlsTemplate) -> Result<u64, PlatformError> {
        Ok(self.next_module.fetch_add(1, Ordering::Relaxed))
    }

    unsafe fn destroy_module(&self, _module: u64) {}

    fn tls_get_addr(&self) -> usize {
        // What cells would call; never called here. Any non-zero address makes the resolver
        // attribute `__tls_get_addr` to the platform, as the hosted loader does.
        platform_lookup(0, "__tls_get_addr").unwrap_or(1)
    }
}

impl Process for DryPlatform {
    fn runs_code(&self) -> bool {
        false
    }
}

/// The object (executable or shared library) that contains `addr`: its load base.
fn object_base(addr: usize) -> Option<usize> {
    let mut info = std::mem::MaybeUninit::<libc::Dl_info>::zeroed();
    // SAFETY: dladdr only reads the loader's tables and writes `info`, which is a valid,
    // writable `Dl_info`.
    let found = unsafe { libc::dladdr(addr as *const c_void, info.as_mut_ptr()) };
    if found == 0 {
        return None;
    }
    // SAFETY: dladdr returned non-zero, so it filled `info` (and it was zeroed before).
    let info = unsafe { info.assume_init() };
    Some(info.dli_fbase as usize)
}

/// Whether `addr` lies in this tool's own executable.
fn in_this_executable(addr: usize) -> bool {
    let here = in_this_executable as *const () as usize;
    object_base(addr).is_some() && object_base(addr) == object_base(here)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_is_zeroed_page_aligned_and_freed() {
        let p = DryPlatform::empty();
        let a = p.map(3 * PAGE).unwrap();
        assert_eq!(a as usize % PAGE, 0);
        // SAFETY: `a` is a live block of 3 pages.
        let bytes = unsafe { std::slice::from_raw_parts(a, 3 * PAGE) };
        assert!(bytes.iter().all(|b| *b == 0));
        p.protect(a, PAGE, Protection::ReadExecute).unwrap();
        // SAFETY: `a` is a block this platform mapped with this length, unused from here on.
        unsafe { p.unmap(a, 3 * PAGE) };
        assert!(p.blocks().is_empty());
    }

    #[test]
    fn platform_symbols_come_from_shared_libraries_only() {
        let p = DryPlatform::empty();
        assert!(p.platform_symbol("memcpy").is_some());
        assert!(p.platform_symbol("_Unwind_Resume").is_some());
        assert!(p.platform_symbol("sin").is_some());
        assert_eq!(p.platform_symbol("no_such_symbol_dry_test"), None);
        assert_eq!(p.platform_symbol("mem\0cpy"), None);
        assert!(!p.runs_code());
    }
}
