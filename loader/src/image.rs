//! The symbol tables of an executable image, read once: the hosted platform reads the running
//! executable with its load bias, the offline tools read the `nano_core` file with bias 0 (a dry
//! link), and the bare-metal kernel reads its own ELF file — all through [`ImageSymbols`].

use alloc::borrow::ToOwned;
use alloc::string::String;

use goblin::elf::section_header::{SHN_ABS, SHN_UNDEF};
use goblin::elf::sym::{Sym, STB_LOCAL, STT_FILE, STT_GNU_IFUNC, STT_SECTION, STT_TLS};
use goblin::elf::Elf;
use goblin::strtab::Strtab;
// foldhash (hashbrown's default) rather than SipHash: every load looks up each of its undefined
// names here, and the names are long mangled paths. The keys are the image's own symbol names,
// not attacker-chosen, so HashDoS resistance buys nothing.
use hashbrown::HashMap;

use crate::platform::TlsSymbol;

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
