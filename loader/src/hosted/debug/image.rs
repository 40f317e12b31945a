//! Names of the base image's own functions for backtraces: its `.symtab` (locals included, which
//! `dladdr` does not know), read from `/proc/self/exe` on first use and kept sorted by address.

use std::string::String;
use std::sync::OnceLock;
use std::vec::Vec;

use goblin::elf::sym::STT_FUNC;
use goblin::elf::Elf;

/// One function of the image: its start, size and mangled name.
struct ImageFunction {
    start: usize,
    size: usize,
    name: String,
}

/// The image's functions by address (empty when the file cannot be read).
fn functions() -> &'static [ImageFunction] {
    static FUNCTIONS: OnceLock<Vec<ImageFunction>> = OnceLock::new();
    FUNCTIONS.get_or_init(|| read().unwrap_or_default())
}

fn read() -> Option<Vec<ImageFunction>> {
    let bytes = std::fs::read("/proc/self/exe").ok()?;
    let elf = Elf::parse(&bytes).ok()?;
    let bias = super::super::symbols::load_bias(&elf).ok()?;
    let mut out: Vec<ImageFunction> = elf
        .syms
        .iter()
        .filter(|s| s.st_type() == STT_FUNC && s.st_size > 0 && s.st_value > 0)
        .filter_map(|s| {
            Some(ImageFunction {
                start: (s.st_value as usize).wrapping_add(bias),
                size: s.st_size as usize,
                name: elf.strtab.get_at(s.st_name)?.into(),
            })
        })
        .collect();
    out.sort_unstable_by_key(|f| f.start);
    Some(out)
}

/// The mangled name of the image function that holds `addr`, and how far into it `addr` is.
pub(super) fn function_at(addr: usize) -> Option<(&'static str, usize)> {
    let functions = functions();
    let i = functions
        .partition_point(|f| f.start <= addr)
        .checked_sub(1)?;
    let f = &functions[i];
    (addr - f.start < f.size).then_some((f.name.as_str(), addr - f.start))
}
