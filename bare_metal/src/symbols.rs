//! The kernel's own symbol table, read from its ELF file, which the boot module carries.
//!
//! QEMU loads only the kernel's segments, so the symbol table is not in memory; `cargo cell qemu`
//! puts the very file it booted into the boot module. The kernel checks that the file is itself
//! (its `kernel_main` has the address of the running `kernel_main`) before trusting it.

use alloc::string::String;

use goblin::elf::{sym, Elf};
use hashbrown::HashMap;

/// Name -> address of every function and object the kernel image defines.
pub struct KernelSymbols {
    by_name: HashMap<&'static str, u64>,
}

impl KernelSymbols {
    /// Reads the symbol table of the kernel's ELF file `elf`.
    pub fn read(elf: &'static [u8]) -> Result<KernelSymbols, String> {
        let parsed: Elf<'static> =
            Elf::parse(elf).map_err(|e| alloc::format!("the kernel's ELF file: {e}"))?;
        let mut by_name: HashMap<&'static str, u64> = HashMap::new();
        let mut global: HashMap<&'static str, bool> = HashMap::new();
        for s in parsed.syms.iter() {
            let defined =
                s.st_shndx != 0 && s.st_shndx != goblin::elf::section_header::SHN_ABS as usize;
            let kind_ok = matches!(
                s.st_type(),
                sym::STT_FUNC | sym::STT_OBJECT | sym::STT_NOTYPE
            );
            if !defined || !kind_ok || s.st_value == 0 {
                continue;
            }
            // Names borrow from the `'static` file itself: nothing is copied.
            let Some(name) = parsed.strtab.get_at(s.st_name).filter(|n| !n.is_empty()) else {
                continue;
            };
            let is_global = s.st_bind() != sym::STB_LOCAL;
            // A global definition wins over a local one of the same name.
            if global.get(name).copied().unwrap_or(false) && !is_global {
                continue;
            }
            by_name.insert(name, s.st_value);
            global.insert(name, is_global);
        }
        Ok(KernelSymbols { by_name })
    }

    /// The address of `name`.
    pub fn get(&self, name: &str) -> Option<u64> {
        self.by_name.get(name).copied()
    }

    /// Number of symbols.
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// Every name.
    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.by_name.keys().copied()
    }
}
