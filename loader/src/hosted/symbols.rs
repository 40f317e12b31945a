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

use std::borrow::ToOwned;
use std::ffi::{c_void, CStr, CString};
use std::string::String;

use goblin::elf::header::ET_EXEC;
use goblin::elf::program_header::PT_PHDR;
use goblin::elf::section_header::{SHN_ABS, SHN_UNDEF};
use goblin::elf::sym::{Sym, STB_LOCAL, STT_FILE, STT_GNU_IFUNC, STT_SECTION, STT_TLS};
use goblin::elf::Elf;
use goblin::strtab::Strtab;
// foldhash (hashbrown's default) rather than std's SipHash: every load looks up each of its
// undefined names here, and the names are long mangled paths that SipHash is slow on. The keys
// are the image's own symbol names, not attacker-chosen, so HashDoS resistance buys nothing.
use hashbrown::HashMap;

use super::{Hosted, HostedError};
use crate::platform::{SymbolSource, TlsSymbol};

/// The TLS module id of the main executable under glibc.
const EXECUTABLE_TLS_MODULE: u64 = 1;

/// The defined symbols of an executable image's `.dynsym` and `.symtab`, shifted by a load bias.
/// The hosted platform reads the running executable with its bias; the offline tools read the
/// `nano_core` file with bias 0 (a dry link), through the same code.
#[derive(Debug, Default)]
pub struct ImageSymbols {
    /// Name -> absolute address of every defined non-TLS symbol.
    addresses: HashMap<String, usize>,
    /// Name -> (module, offset) of every `STT_TLS` symbol.
    thread_locals: HashMap<String, TlsSymbol>,
}

impl ImageSymbols {
    /// Every defined symbol of `elf`, addresses plus `bias` (but `SHN_ABS` ones). When a name
    /// occurs more than once, the first of: globals of `.dynsym`, globals of `.symtab`, locals.
    pub fn from_elf(elf: &Elf<'_>, bias: usize) -> ImageSymbols {
        let mut symbols = ImageSymbols::default();
        let tables = [(&elf.dynsyms, &elf.dynstrtab), (&elf.syms, &elf.strtab)];
        for locals in [false, true] {
            for (syms, strtab) in tables {
                for sym in syms.iter().filter(|s| (s.st_bind() == STB_LOCAL) == locals) {
                    symbols.add(&sym, strtab, bias);
                }
            }
        }
        symbols
    }

    /// The address of the non-thread-local symbol `name`.
    pub fn address(&self, name: &str) -> Option<usize> {
        self.addresses.get(name).copied()
    }

    /// The thread-local symbol `name` (module 1, its offset in the executable's TLS block).
    pub fn thread_local(&self, name: &str) -> Option<TlsSymbol> {
        self.thread_locals.get(name).copied()
    }

    /// Calls `f` with every name.
    pub fn for_each_name(&self, f: &mut dyn FnMut(&str)) {
        self.addresses.keys().for_each(|name| f(name));
        self.thread_locals.keys().for_each(|name| f(name));
    }

    /// The number of distinct names, thread-locals included.
    pub fn len(&self) -> usize {
        self.addresses.len() + self.thread_locals.len()
    }

    /// Whether there is no name at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The base image's symbol tables, and libm.
pub(super) struct Symbols {
    /// The running executable's symbols.
    image: ImageSymbols,
    /// The `dlopen` handle of `libm.so.6` (as an address, 0 when it could not be opened). It is
    /// never closed: cells keep the addresses of its functions.
    libm: usize,
    /// Whether the executable has a `.symtab`.
    has_symtab: bool,
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
        })
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

impl ImageSymbols {
    /// Adds `sym` unless it is not a definition or its name is already known.
    fn add(&mut self, sym: &Sym, strtab: &Strtab<'_>, bias: usize) {
        let kind = sym.st_type();
        if sym.st_shndx == SHN_UNDEF as usize
            || sym.st_name == 0
            || matches!(kind, STT_SECTION | STT_FILE | STT_GNU_IFUNC)
        {
            return;
        }
        let Some(name) = strtab.get_at(sym.st_name).filter(|n| !n.is_empty()) else {
            return;
        };
        if kind == STT_TLS {
            let tls = TlsSymbol {
                module: EXECUTABLE_TLS_MODULE,
                offset: sym.st_value,
            };
            self.thread_locals.entry(name.to_owned()).or_insert(tls);
        } else {
            let mut address = sym.st_value as usize;
            if sym.st_shndx != SHN_ABS as usize {
                address = address.wrapping_add(bias);
            }
            self.addresses.entry(name.to_owned()).or_insert(address);
        }
    }
}

/// The load bias of the running executable.
fn load_bias(elf: &Elf<'_>) -> Result<usize, HostedError> {
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
        platform_lookup(self.symbols.libm, name)
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
    fn names_with_nul_are_never_found() {
        let hosted = Hosted::new().unwrap();
        assert_eq!(hosted.image_symbol("memcpy\0"), None);
        assert_eq!(hosted.platform_symbol("mem\0cpy"), None);
        assert_eq!(hosted.image_tls_symbol("\0"), None);
    }
}
