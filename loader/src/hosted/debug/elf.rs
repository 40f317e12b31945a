//! The in-memory ELF file that describes one cell to a debugger (the GDB JIT interface's
//! "symfile"): an `ET_EXEC` x86_64 file with no contents of its own, only
//!
//! - `.text`, `SHT_NOBITS`, at the cell's text region (its address and size: the debugger maps
//!   the file's sections at their `sh_addr`, taken as absolute);
//! - `.symtab` / `.strtab`: one `STT_FUNC` symbol per function of the cell
//!   ([`crate_metadata::Cell::functions_unordered`]: a symbol table need not be sorted) under its
//!   path without the hash (`memfs::read`, what `break` takes), with its absolute address and
//!   size;
//! - `.shstrtab`;
//! - `.eh_frame`, a copy of the cell's relocated one at its runtime address, so that the debugger
//!   unwinds through cell frames (its pointers are PC-relative, so they hold at that address).
//!
//! GDB reads it as an object file of its own (`info sharedlibrary` does not list it; `info
//! symbol`, `break`, `bt` and `disassemble` use it). Line tables are not carried (the cells are
//! built without debug information).

use std::vec;
use std::vec::Vec;

use crate::platform::TextRange;
use crate_metadata::{demangle, Function};

const EHDR_SIZE: usize = 64;
const SHDR_SIZE: usize = 64;
const SYM_SIZE: usize = 24;

const ET_EXEC: u16 = 2;
const EM_X86_64: u16 = 62;
const SHT_PROGBITS: u32 = 1;
const SHT_SYMTAB: u32 = 2;
const SHT_STRTAB: u32 = 3;
const SHT_NOBITS: u32 = 8;
const SHF_ALLOC: u64 = 2;
const SHF_EXECINSTR: u64 = 4;
const STB_GLOBAL_FUNC: u8 = (1 << 4) | 2;

/// Section indices of the file.
const TEXT: u16 = 1;
const STRTAB: u32 = 3;
const SHSTRTAB: u16 = 4;

/// A string table under construction.
struct Strings(Vec<u8>);

impl Strings {
    fn new() -> Strings {
        Strings(vec![0])
    }

    fn add(&mut self, s: &str) -> u32 {
        let at = self.0.len() as u32;
        self.0.extend_from_slice(s.as_bytes());
        self.0.push(0);
        at
    }

    /// Adds the path of the mangled `name` ([`demangle::path`]), written straight into the table.
    fn add_path(&mut self, name: &str) -> u32 {
        let at = self.0.len() as u32;
        demangle::path_into(name, &mut self.0);
        self.0.push(0);
        at
    }
}

/// One section header's fields.
#[derive(Default)]
struct Shdr {
    name: u32,
    sh_type: u32,
    flags: u64,
    addr: u64,
    offset: u64,
    size: u64,
    link: u32,
    info: u32,
    align: u64,
    entsize: u64,
}

impl Shdr {
    /// The header of string table `strings`, at `offset` in the file.
    fn strtab(name: u32, offset: usize, strings: &Strings) -> Shdr {
        Shdr {
            name,
            sh_type: SHT_STRTAB,
            offset: offset as u64,
            size: strings.0.len() as u64,
            align: 1,
            ..Shdr::default()
        }
    }

    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.name.to_le_bytes());
        out.extend_from_slice(&self.sh_type.to_le_bytes());
        out.extend_from_slice(&self.flags.to_le_bytes());
        out.extend_from_slice(&self.addr.to_le_bytes());
        out.extend_from_slice(&self.offset.to_le_bytes());
        out.extend_from_slice(&self.size.to_le_bytes());
        out.extend_from_slice(&self.link.to_le_bytes());
        out.extend_from_slice(&self.info.to_le_bytes());
        out.extend_from_slice(&self.align.to_le_bytes());
        out.extend_from_slice(&self.entsize.to_le_bytes());
    }
}

/// What a cell's symbol file describes.
pub(crate) struct Symfile<'a> {
    /// The cell's text region.
    pub(crate) text: TextRange,
    /// Its functions (mangled names).
    pub(crate) functions: &'a [Function<'a>],
    /// Its `.eh_frame`: runtime address and bytes.
    pub(crate) eh_frame: Option<(u64, &'a [u8])>,
}

/// The ELF file for a cell.
pub(crate) fn symfile(cell: &Symfile<'_>) -> Vec<u8> {
    // Both tables sized once: a function's path from the object, or room for the mangled name,
    // which `demangle::path_into` takes before it cuts the path to length (a v0 name's path may
    // be longer: the table then grows).
    let names: usize = (cell.functions.iter())
        .map(|f| f.path.map_or(f.name.len(), str::len) + 1)
        .sum();
    let mut strtab = Strings(Vec::with_capacity(1 + names));
    strtab.0.push(0);
    let mut symtab = Vec::with_capacity(SYM_SIZE * (1 + cell.functions.len()));
    symtab.resize(SYM_SIZE, 0); // the null symbol
    for f in cell.functions {
        // The path the object carried, or demangled now.
        let name = match f.path {
            Some(path) => strtab.add(path),
            None => strtab.add_path(f.name),
        };
        symtab.extend_from_slice(&name.to_le_bytes());
        symtab.push(STB_GLOBAL_FUNC);
        symtab.push(0); // st_other: default visibility
        symtab.extend_from_slice(&TEXT.to_le_bytes());
        symtab.extend_from_slice(&f.addr.to_le_bytes());
        symtab.extend_from_slice(&f.size.to_le_bytes());
    }
    let mut shstrtab = Strings::new();
    let names = [
        shstrtab.add(".text"),
        shstrtab.add(".symtab"),
        shstrtab.add(".strtab"),
        shstrtab.add(".shstrtab"),
        shstrtab.add(".eh_frame"),
    ];
    let (eh_addr, eh_bytes) = cell.eh_frame.unwrap_or((0, &[]));
    // Layout: header, .symtab (8-aligned), .strtab, .shstrtab, .eh_frame (8-aligned), section
    // headers (8-aligned).
    let symtab_at = EHDR_SIZE;
    let strtab_at = symtab_at + symtab.len();
    let shstrtab_at = strtab_at + strtab.0.len();
    let eh_frame_at = (shstrtab_at + shstrtab.0.len()).next_multiple_of(8);
    let shdrs_at = (eh_frame_at + eh_bytes.len()).next_multiple_of(8);
    let text = cell.text;
    let mut headers = vec![
        Shdr::default(),
        Shdr {
            name: names[0],
            sh_type: SHT_NOBITS,
            flags: SHF_ALLOC | SHF_EXECINSTR,
            addr: text.start,
            offset: EHDR_SIZE as u64,
            size: text.end - text.start,
            align: 16,
            ..Shdr::default()
        },
        Shdr {
            name: names[1],
            sh_type: SHT_SYMTAB,
            offset: symtab_at as u64,
            size: symtab.len() as u64,
            link: STRTAB,
            info: 1, // every symbol but the null one is global
            align: 8,
            entsize: SYM_SIZE as u64,
            ..Shdr::default()
        },
        Shdr::strtab(names[2], strtab_at, &strtab),
        Shdr::strtab(names[3], shstrtab_at, &shstrtab),
    ];
    if !eh_bytes.is_empty() {
        headers.push(Shdr {
            name: names[4],
            sh_type: SHT_PROGBITS,
            flags: SHF_ALLOC,
            addr: eh_addr,
            offset: eh_frame_at as u64,
            size: eh_bytes.len() as u64,
            align: 8,
            ..Shdr::default()
        });
    }
    let mut out = Vec::with_capacity(shdrs_at + headers.len() * SHDR_SIZE);
    out.extend_from_slice(b"\x7fELF");
    out.extend_from_slice(&[2, 1, 1, 0]); // 64-bit, little endian, version 1, System V ABI
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&ET_EXEC.to_le_bytes());
    out.extend_from_slice(&EM_X86_64.to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes()); // e_version
    out.extend_from_slice(&0u64.to_le_bytes()); // e_entry
    out.extend_from_slice(&0u64.to_le_bytes()); // e_phoff: no program headers
    out.extend_from_slice(&(shdrs_at as u64).to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes()); // e_flags
    out.extend_from_slice(&(EHDR_SIZE as u16).to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes()); // e_phentsize
    out.extend_from_slice(&0u16.to_le_bytes()); // e_phnum
    out.extend_from_slice(&(SHDR_SIZE as u16).to_le_bytes());
    out.extend_from_slice(&(headers.len() as u16).to_le_bytes());
    out.extend_from_slice(&SHSTRTAB.to_le_bytes());
    debug_assert_eq!(out.len(), EHDR_SIZE);
    out.extend_from_slice(&symtab);
    out.extend_from_slice(&strtab.0);
    out.extend_from_slice(&shstrtab.0);
    out.resize(eh_frame_at, 0);
    out.extend_from_slice(eh_bytes);
    out.resize(shdrs_at, 0);
    for h in &headers {
        h.write(&mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use goblin::elf::Elf;

    #[test]
    fn the_symfile_is_an_elf_file_with_the_functions_at_their_addresses() {
        let functions = [
            Function {
                name: "_ZN5memfs4read17h0123456789abcdefE",
                addr: 0x7f00_1000,
                size: 0x80,
                path: None,
            },
            Function {
                name: "_ZN5memfs5write17h0123456789abcdefE",
                addr: 0x7f00_1080,
                size: 0x40,
                // A path the object carried is taken as it is, not demangled again.
                path: Some("memfs::write::carried"),
            },
        ];
        let text = TextRange {
            start: 0x7f00_1000,
            end: 0x7f00_2000,
        };
        let eh_frame = [1u8, 2, 3, 4, 0, 0, 0, 0];
        let bytes = symfile(&Symfile {
            text,
            functions: &functions,
            eh_frame: Some((0x7f00_3000, &eh_frame)),
        });
        let elf = Elf::parse(&bytes).expect("goblin parses the symfile");
        assert_eq!(elf.header.e_type, ET_EXEC);
        let text_shdr = &elf.section_headers[TEXT as usize];
        assert_eq!(elf.shdr_strtab.get_at(text_shdr.sh_name), Some(".text"));
        assert_eq!(
            (text_shdr.sh_addr, text_shdr.sh_size),
            (0x7f00_1000, 0x1000)
        );
        let syms: Vec<(&str, u64, u64, usize)> = elf
            .syms
            .iter()
            .skip(1)
            .map(|s| {
                (
                    elf.strtab.get_at(s.st_name).unwrap(),
                    s.st_value,
                    s.st_size,
                    s.st_shndx,
                )
            })
            .collect();
        assert_eq!(
            syms,
            [
                ("memfs::read", 0x7f00_1000, 0x80, 1),
                ("memfs::write::carried", 0x7f00_1080, 0x40, 1),
            ]
        );
        let eh = &elf.section_headers[5];
        assert_eq!(elf.shdr_strtab.get_at(eh.sh_name), Some(".eh_frame"));
        assert_eq!(eh.sh_addr, 0x7f00_3000);
        let range = eh.file_range().unwrap();
        assert_eq!(&bytes[range], &eh_frame);
    }
}
