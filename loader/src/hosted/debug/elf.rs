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
const SHSTRTAB_INDEX: u16 = 4;

/// The section-name table: the names of the file's sections, each followed by a NUL, after the
/// empty name; `SHSTRTAB_NAMES[i]` is where name `i` starts.
const SHSTRTAB: &[u8] = b"\0.text\0.symtab\0.strtab\0.shstrtab\0.eh_frame\0";
const SHSTRTAB_NAMES: [u32; 5] = [1, 7, 15, 23, 33];

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
    /// The header of a string table of `len` bytes at `offset` in the file.
    fn strtab(name: u32, offset: usize, len: usize) -> Shdr {
        Shdr {
            name,
            sh_type: SHT_STRTAB,
            offset: offset as u64,
            size: len as u64,
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

/// The ELF file for a cell, written in one buffer: the symbols in place, their names after them.
pub(crate) fn symfile(cell: &Symfile<'_>) -> Vec<u8> {
    // Room for every name: a function's path from the object, or its mangled name, which
    // `demangle::path_into` takes before it cuts the path to length (a v0 name's path may be
    // longer: the buffer then grows).
    let names: usize = (cell.functions.iter())
        .map(|f| f.path.map_or(f.name.len(), str::len) + 1)
        .sum();
    let (eh_addr, eh_bytes) = cell.eh_frame.unwrap_or((0, &[]));
    // Layout: header, .symtab (8-aligned), .strtab, .shstrtab, .eh_frame (8-aligned), section
    // headers (8-aligned).
    let symtab_at = EHDR_SIZE;
    let strtab_at = symtab_at + SYM_SIZE * (1 + cell.functions.len());
    let mut out = Vec::with_capacity(
        strtab_at + 1 + names + SHSTRTAB.len() + eh_bytes.len() + 16 + 6 * SHDR_SIZE,
    );
    // The header (written last) and the symbols (written in place), the null symbol zero.
    out.resize(strtab_at, 0);
    out.push(0); // the string table's empty name
    for (i, f) in cell.functions.iter().enumerate() {
        // The path the object carried, or demangled now.
        let name = (out.len() - strtab_at) as u32;
        match f.path {
            Some(path) => out.extend_from_slice(path.as_bytes()),
            None => demangle::path_into(f.name, &mut out),
        }
        out.push(0);
        let at = symtab_at + SYM_SIZE * (1 + i);
        let sym = &mut out[at..at + SYM_SIZE];
        sym[0..4].copy_from_slice(&name.to_le_bytes());
        sym[4] = STB_GLOBAL_FUNC;
        sym[5] = 0; // st_other: default visibility
        sym[6..8].copy_from_slice(&TEXT.to_le_bytes());
        sym[8..16].copy_from_slice(&f.addr.to_le_bytes());
        sym[16..24].copy_from_slice(&f.size.to_le_bytes());
    }
    let strtab_len = out.len() - strtab_at;
    let shstrtab_at = out.len();
    out.extend_from_slice(SHSTRTAB);
    let eh_frame_at = out.len().next_multiple_of(8);
    out.resize(eh_frame_at, 0);
    out.extend_from_slice(eh_bytes);
    let shdrs_at = out.len().next_multiple_of(8);
    out.resize(shdrs_at, 0);
    let text = cell.text;
    let mut headers = vec![
        Shdr::default(),
        Shdr {
            name: SHSTRTAB_NAMES[0],
            sh_type: SHT_NOBITS,
            flags: SHF_ALLOC | SHF_EXECINSTR,
            addr: text.start,
            offset: EHDR_SIZE as u64,
            size: text.end - text.start,
            align: 16,
            ..Shdr::default()
        },
        Shdr {
            name: SHSTRTAB_NAMES[1],
            sh_type: SHT_SYMTAB,
            offset: symtab_at as u64,
            size: (strtab_at - symtab_at) as u64,
            link: STRTAB,
            info: 1, // every symbol but the null one is global
            align: 8,
            entsize: SYM_SIZE as u64,
            ..Shdr::default()
        },
        Shdr::strtab(SHSTRTAB_NAMES[2], strtab_at, strtab_len),
        Shdr::strtab(SHSTRTAB_NAMES[3], shstrtab_at, SHSTRTAB.len()),
    ];
    if !eh_bytes.is_empty() {
        headers.push(Shdr {
            name: SHSTRTAB_NAMES[4],
            sh_type: SHT_PROGBITS,
            flags: SHF_ALLOC,
            addr: eh_addr,
            offset: eh_frame_at as u64,
            size: eh_bytes.len() as u64,
            align: 8,
            ..Shdr::default()
        });
    }
    for h in &headers {
        h.write(&mut out);
    }
    let mut header = Vec::with_capacity(EHDR_SIZE);
    header.extend_from_slice(b"\x7fELF");
    header.extend_from_slice(&[2, 1, 1, 0]); // 64-bit, little endian, version 1, System V ABI
    header.extend_from_slice(&[0; 8]);
    header.extend_from_slice(&ET_EXEC.to_le_bytes());
    header.extend_from_slice(&EM_X86_64.to_le_bytes());
    header.extend_from_slice(&1u32.to_le_bytes()); // e_version
    header.extend_from_slice(&0u64.to_le_bytes()); // e_entry
    header.extend_from_slice(&0u64.to_le_bytes()); // e_phoff: no program headers
    header.extend_from_slice(&(shdrs_at as u64).to_le_bytes());
    header.extend_from_slice(&0u32.to_le_bytes()); // e_flags
    header.extend_from_slice(&(EHDR_SIZE as u16).to_le_bytes());
    header.extend_from_slice(&0u16.to_le_bytes()); // e_phentsize
    header.extend_from_slice(&0u16.to_le_bytes()); // e_phnum
    header.extend_from_slice(&(SHDR_SIZE as u16).to_le_bytes());
    header.extend_from_slice(&(headers.len() as u16).to_le_bytes());
    header.extend_from_slice(&SHSTRTAB_INDEX.to_le_bytes());
    out[..EHDR_SIZE].copy_from_slice(&header);
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
        let section_names: Vec<&str> = (elf.section_headers.iter())
            .map(|h| elf.shdr_strtab.get_at(h.sh_name).unwrap())
            .collect();
        assert_eq!(
            section_names,
            ["", ".text", ".symtab", ".strtab", ".shstrtab", ".eh_frame"]
        );
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
