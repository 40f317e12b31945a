//! The base image's symbols (the running executable) and the platform's (`dlsym`, libm).
//!
//! The executable is read once from `/proc/self/exe`. Every defined symbol of `.dynsym` and of
//! `.symtab` (absent when stripped) is kept, shifted by the load bias: `AT_PHDR` minus the address
//! of `PT_PHDR` for a position-independent executable, 0 otherwise. The bias is checked against
//! the entry point (`AT_ENTRY`), so a `/proc/self/exe` that is not the running image is an error
//! instead of a table of wrong addresses.
//!
//! When a name occurs more than once, a global or weak definition wins over a local one, and
//! `.dynsym` over `.symtab`. Left out: section and file symbols, `SHN_ABS` symbols keep their value
//! unbiased, and `STT_GNU_IFUNC` symbols are skipped, because their value is the resolver and not
//! the function (`dlsym` resolves them properly).
//!
//! The platform's symbols (`dlsym`) are cached only where the answer cannot change: a name that
//! the global scope resolves into an object loaded at start-up (the executable or one of its
//! `DT_NEEDED` libraries). Those objects are never unloaded and come first in the global scope,
//! so a library opened later cannot shadow them. Misses and definitions in any other object (one
//! that `dlopen` added and `dlclose` may remove) are asked of `dlsym` every time.

use std::borrow::ToOwned;
use std::ffi::{c_void, CStr, CString};
use std::string::String;
use std::sync::Mutex;
use std::vec::Vec;

use goblin::elf::header::ET_EXEC;
use goblin::elf::program_header::PT_PHDR;
use goblin::elf::Elf;
use hashbrown::HashMap;

use super::{Hosted, HostedError};
use crate::image::ImageSymbols;
use crate::platform::{SymbolSource, TlsSymbol};

/// `dladdr1`'s request for the object's link map (glibc's `<dlfcn.h>`; the libc crate lacks it).
const RTLD_DL_LINKMAP: libc::c_int = 2;

/// The base image's symbol tables, and libm.
pub(super) struct Symbols {
    /// The running executable's symbols.
    image: ImageSymbols,
    /// The `dlopen` handle of `libm.so.6` (as an address, 0 when it could not be opened). It is
    /// never closed: cells keep the addresses of its functions.
    libm: usize,
    /// Whether the executable has a `.symtab`.
    has_symtab: bool,
    /// The link maps (as addresses) of the objects loaded at start-up: the executable and its
    /// `DT_NEEDED` libraries.
    initial_objects: Vec<usize>,
    /// Platform names found in one of `initial_objects`, with their address.
    platform_cache: Mutex<HashMap<String, usize>>,
}

impl Symbols {
    /// Reads the symbol tables of `/proc/self/exe` and opens libm.
    pub(super) fn read() -> Result<Symbols, HostedError> {
        let bytes = std::fs::read("/proc/self/exe").map_err(HostedError::ReadImage)?;
        let elf = Elf::parse(&bytes).map_err(HostedError::ParseImage)?;
        let bias = load_bias(&elf)?;

        Ok(Symbols {
            image: ImageSymbols::from_elf(&elf, bias),
            libm: open_libm(),
            has_symtab: !elf.syms.is_empty(),
            initial_objects: initial_objects(&elf),
            platform_cache: Mutex::new(HashMap::new()),
        })
    }

    /// [`platform_lookup`], cached for names defined by an object loaded at start-up (see the
    /// module doc).
    fn platform_symbol(&self, name: &str) -> Option<usize> {
        let cache = |f: &mut dyn FnMut(&mut HashMap<String, usize>)| {
            // A poisoned cache is still a correct cache: every entry was complete when inserted.
            let mut guard = self
                .platform_cache
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            f(&mut guard)
        };
        let mut hit = None;
        cache(&mut |map| hit = map.get(name).copied());
        if hit.is_some() {
            return hit;
        }
        let c_name = CString::new(name).ok()?;
        if let Some(address) = dlsym(libc::RTLD_DEFAULT, &c_name) {
            if self.initial_objects.contains(&defining_object(address)) {
                cache(&mut |map| {
                    map.insert(name.to_owned(), address);
                });
            }
            return Some(address);
        }
        match self.libm {
            0 => None,
            // A handle `dlopen` returned and nobody closes (see `open_libm`).
            libm => dlsym(libm as *mut c_void, &c_name),
        }
    }

    /// The number of distinct names, thread-locals included.
    pub(super) fn len(&self) -> usize {
        self.image.len()
    }

    /// Whether the executable has a `.symtab`.
    pub(super) fn has_symtab(&self) -> bool {
        self.has_symtab
    }
}

/// The load bias of the running executable.
pub(super) fn load_bias(elf: &Elf<'_>) -> Result<usize, HostedError> {
    // SAFETY: getauxval only reads the auxiliary vector the kernel gave the process.
    let (at_phdr, at_entry) = unsafe {
        (
            libc::getauxval(libc::AT_PHDR),
            libc::getauxval(libc::AT_ENTRY),
        )
    };
    let phdr = elf.program_headers.iter().find(|ph| ph.p_type == PT_PHDR);
    let bias = match phdr {
        Some(phdr) => (at_phdr as usize).wrapping_sub(phdr.p_vaddr as usize),
        None if elf.header.e_type == ET_EXEC => 0,
        None => return Err(HostedError::NoLoadBias),
    };
    let file_entry = (elf.entry as usize).wrapping_add(bias);
    if file_entry != at_entry as usize {
        return Err(HostedError::ImageMismatch {
            running_entry: at_entry as usize,
            file_entry,
        });
    }
    Ok(bias)
}

/// Opens libm, which the linker drops from an image that does not call it. Returns the handle as
/// an address, or 0.
pub fn open_libm() -> usize {
    // SAFETY: the name is a NUL-terminated literal; loading libm runs no code but its (glibc's own)
    // initializers.
    let handle = unsafe { libc::dlopen(c"libm.so.6".as_ptr(), libc::RTLD_NOW) };
    handle as usize
}

/// The link maps of the executable and of its `DT_NEEDED` libraries, as addresses (0 never
/// occurs). An object `dlopen` cannot find without loading it is left out.
fn initial_objects(elf: &Elf<'_>) -> Vec<usize> {
    let mut names: Vec<Option<CString>> = std::vec![None]; // None: the executable
    names.extend(
        elf.libraries
            .iter()
            .filter_map(|n| CString::new(*n).ok().map(Some)),
    );
    let mut maps = Vec::new();
    for name in &names {
        let name = name.as_ref().map_or(core::ptr::null(), |n| n.as_ptr());
        // SAFETY: `name` is null (the executable) or NUL-terminated. RTLD_NOLOAD only looks up an
        // object that is already loaded; it runs no code.
        let handle = unsafe { libc::dlopen(name, libc::RTLD_LAZY | libc::RTLD_NOLOAD) };
        if handle.is_null() {
            continue;
        }
        let mut map: *mut c_void = core::ptr::null_mut();
        // SAFETY: `handle` is a live handle from `dlopen`; RTLD_DI_LINKMAP writes one pointer to
        // `map`, a pointer-sized local.
        let ok = unsafe {
            libc::dlinfo(
                handle,
                libc::RTLD_DI_LINKMAP,
                (&raw mut map).cast::<c_void>(),
            )
        };
        if ok == 0 && !map.is_null() {
            maps.push(map as usize);
        }
        // SAFETY: drops the reference the `dlopen` above took; an object loaded at start-up stays
        // loaded (the executable holds it).
        unsafe { libc::dlclose(handle) };
    }
    maps
}

/// The link map (as an address) of the object that contains `address`, 0 when none does.
fn defining_object(address: usize) -> usize {
    // SAFETY: an all-zero `Dl_info` is valid (null pointers); dladdr1 only fills it in.
    let mut info: libc::Dl_info = unsafe { core::mem::zeroed() };
    let mut map: *mut c_void = core::ptr::null_mut();
    // SAFETY: `info` and `map` are locals of the types RTLD_DL_LINKMAP writes; dladdr1 reads no
    // memory at `address`, it only compares it with the loaded objects' ranges.
    let found = unsafe {
        libc::dladdr1(
            address as *const c_void,
            &mut info,
            (&raw mut map).cast::<*mut c_void>(),
            RTLD_DL_LINKMAP,
        )
    };
    if found == 0 {
        0
    } else {
        map as usize
    }
}

/// `dlsym(handle, name)`, `None` for a null result.
fn dlsym(handle: *mut c_void, name: &CStr) -> Option<usize> {
    // SAFETY: `name` is NUL-terminated and `handle` is RTLD_DEFAULT or a handle from `dlopen` that
    // is never closed. dlsym is thread-safe.
    let address = unsafe { libc::dlsym(handle, name.as_ptr()) };
    (!address.is_null()).then_some(address as usize)
}

/// The platform's definition of `name`: `dlsym(RTLD_DEFAULT)`, then the libm handle that
/// [`open_libm`] returned (0: none). Names with a NUL byte are never found.
pub fn platform_lookup(libm: usize, name: &str) -> Option<usize> {
    let name = CString::new(name).ok()?;
    dlsym(libc::RTLD_DEFAULT, &name).or_else(|| match libm {
        0 => None,
        // A handle `dlopen` returned and nobody closes (see `open_libm`).
        libm => dlsym(libm as *mut c_void, &name),
    })
}

impl SymbolSource for Hosted {
    fn image_symbol(&self, name: &str) -> Option<usize> {
        self.symbols.image.address(name)
    }

    fn image_tls_symbol(&self, name: &str) -> Option<TlsSymbol> {
        self.symbols.image.thread_local(name)
    }

    fn platform_symbol(&self, name: &str) -> Option<usize> {
        self.symbols.platform_symbol(name)
    }

    fn for_each_image_symbol(&self, f: &mut dyn FnMut(&str)) {
        self.symbols.image.for_each_name(f);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::format;
    use std::vec::Vec;

    /// A function of the test binary with a unique, unmangled name.
    #[no_mangle]
    pub extern "C" fn hosted_symbols_test_probe_7f3a() -> u32 {
        0x7f3a
    }

    #[test]
    fn finds_own_function_at_its_runtime_address() {
        let hosted = Hosted::new().unwrap();
        let probe = hosted_symbols_test_probe_7f3a as *const () as usize;
        assert_eq!(
            hosted.image_symbol("hosted_symbols_test_probe_7f3a"),
            Some(probe)
        );
    }

    #[test]
    fn finds_std_symbols_of_the_image() {
        let hosted = Hosted::new().unwrap();
        // std uses v0 mangling (`_RNv...3std...`), user crates the legacy one (`_ZN...`).
        let mut std_symbols = Vec::new();
        hosted.for_each_image_symbol(&mut |name| {
            let demangled = format!("{:#}", rustc_demangle::demangle(name));
            if demangled.starts_with("std::") || demangled.starts_with("<std::") {
                std_symbols.push(name.to_owned());
            }
        });
        assert!(std_symbols.len() > 100, "{} std symbols", std_symbols.len());
        for name in &std_symbols {
            assert!(hosted.image_symbol(name).is_some() || hosted.image_tls_symbol(name).is_some());
        }
        let mut count = 0;
        hosted.for_each_image_symbol(&mut |_| count += 1);
        assert_eq!(count, hosted.image_symbol_count());
    }

    #[test]
    fn platform_symbols_come_from_libc_and_libm() {
        let hosted = Hosted::new().unwrap();
        assert!(hosted.platform_symbol("memcpy").is_some());
        assert!(hosted.platform_symbol("_Unwind_Resume").is_some());
        assert!(hosted.platform_symbol("__tls_get_addr").is_some());
        let sin = hosted.platform_symbol("sin").expect("libm's sin");
        // SAFETY: `sin` is libm's `double sin(double)`.
        let sin: extern "C" fn(f64) -> f64 = unsafe { std::mem::transmute(sin) };
        assert!((sin(std::f64::consts::FRAC_PI_2) - 1.0).abs() < 1e-12);
        assert_eq!(hosted.platform_symbol("no_such_symbol_hosted_test"), None);
    }

    #[test]
    fn platform_cache_keeps_only_start_up_objects_hits() {
        let hosted = Hosted::new().unwrap();
        let symbols = &hosted.symbols;
        assert!(
            symbols.initial_objects.len() >= 2,
            "the executable and libc at least"
        );
        let memcpy = hosted.platform_symbol("memcpy").expect("libc's memcpy");
        assert_eq!(defining_object(0), 0);
        let cached = |name: &str| symbols.platform_cache.lock().unwrap().get(name).copied();
        assert_eq!(cached("memcpy"), Some(memcpy), "libc is loaded at start-up");
        assert_eq!(hosted.platform_symbol("memcpy"), Some(memcpy));
        assert_eq!(hosted.platform_symbol("no_such_symbol_hosted_test"), None);
        assert_eq!(
            cached("no_such_symbol_hosted_test"),
            None,
            "misses are not cached"
        );
    }

    #[test]
    fn names_with_nul_are_never_found() {
        let hosted = Hosted::new().unwrap();
        assert_eq!(hosted.image_symbol("memcpy\0"), None);
        assert_eq!(hosted.platform_symbol("mem\0cpy"), None);
        assert_eq!(hosted.image_tls_symbol("\0"), None);
    }
}
