//! Parsing: checking that the bytes are an x86_64 relocatable object and reading, once, the
//! tables the later phases use, with every offset checked against the file before anything uses
//! it.
//!
//! The section headers are goblin's `Elf64_Shdr`. The symbol table is decoded once into a plain
//! vector ([`Sym`]) that layout, resolution and linking index directly. The relocations are checked
//! once here and decoded where they are walked (layout, then linking): decoding an entry costs no
//! more than reading it back from a vector, and the vector is not built.
//! Names stay where they are, in the object's string tables, and are read by offset when a phase
//! needs one: no string table is split, copied or checked as a whole. A name is checked to be
//! UTF-8 where it is used as a `str` (an undefined symbol, an export, a loaded section); error
//! messages show any other name lossily.

use alloc::borrow::Cow;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::ffi::CStr;
use crate_metadata::paths::{self, PathTable};
use goblin::elf::header::{
    EI_CLASS, EI_DATA, ELFCLASS32, ELFCLASS64, ELFDATA2LSB, ELFMAG, SELFMAG,
};
use goblin::elf::section_header::{
    SHF_ALLOC, SHT_NOBITS, SHT_PROGBITS, SHT_REL, SHT_RELA, SHT_SYMTAB,
};
use goblin::elf::sym;
use goblin::elf64::section_header::{SectionHeader, SIZEOF_SHDR};

use crate::error::{malformed, truncated, LoadError};
use crate::index::{IndexVec, SectionIndex, SymbolIndex};
use crate::le::{u16_at, u32_at, u64_at};
use crate::malformation::{Malformation, Truncation};
use crate::prelink::format::{self as prelink, Prelink};
use crate::prelink::names::{self as names, Table as NamesTable};

/// `e_machine` of x86_64.
const EM_X86_64: u16 = 62;
/// `e_type` of a relocatable object.
const ET_REL: u16 = 1;
/// Size of the ELF64 header.
const EHDR_SIZE: usize = 64;
/// Size of one `Elf64_Sym`.
const SYM_SIZE: usize = 24;
/// Size of one `Elf64_Rela`.
const RELA_SIZE: usize = 24;

/// One entry of the symbol table (`Elf64_Sym`), decoded.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Sym {
    /// Offset of the name in the string table.
    pub(crate) st_name: usize,
    pub(crate) st_info: u8,
    pub(crate) st_other: u8,
    /// Section index (`SHN_UNDEF`, a header index, or a reserved index from `0xff00`).
    pub(crate) st_shndx: usize,
    pub(crate) st_value: u64,
    pub(crate) st_size: u64,
}

impl Sym {
    /// `STB_*`.
    pub(crate) fn st_bind(&self) -> u8 {
        sym::st_bind(self.st_info)
    }

    /// `STT_*`.
    pub(crate) fn st_type(&self) -> u8 {
        sym::st_type(self.st_info)
    }

    /// `STV_*`.
    pub(crate) fn st_visibility(&self) -> u8 {
        sym::st_visibility(self.st_other)
    }

    /// Undefined, absolute, common, ...: not an index into the section headers.
    fn is_special(&self) -> bool {
        self.st_shndx == 0 || self.st_shndx >= 0xff00
    }

    /// Whether the symbol is undefined (`SHN_UNDEF`).
    #[inline]
    pub(crate) fn is_undefined(&self) -> bool {
        self.st_shndx == 0
    }

    /// The section the symbol is defined in: `None` for undefined, absolute and common symbols.
    /// [`parse`] checked it is in range.
    #[inline]
    pub(crate) fn section(&self) -> Option<SectionIndex> {
        (!self.is_special()).then_some(SectionIndex(self.st_shndx))
    }
}

/// One relocation (`Elf64_Rela`), decoded. [`parse`] checked `r_sym` against the symbol table.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Rela {
    pub(crate) r_offset: u64,
    pub(crate) r_addend: i64,
    pub(crate) r_sym: SymbolIndex,
    pub(crate) r_type: u32,
}

/// A `SHT_RELA` section: which section it applies to, and its entries (read by
/// [`Object::relas`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct RelaSection<'a> {
    /// The section it relocates (`sh_info`, checked in range).
    pub(crate) target: SectionIndex,
    /// The relocation section itself.
    pub(crate) file_section: SectionIndex,
    /// The raw entries (a trailing partial entry is ignored).
    entries: &'a [[u8; RELA_SIZE]],
}

impl<'a> RelaSection<'a> {
    /// The raw entries.
    pub(crate) fn entries(&self) -> &'a [[u8; RELA_SIZE]] {
        self.entries
    }
}

/// A checked object: its tables, decoded once, and the bytes they point into.
pub(crate) struct Object<'a> {
    pub(crate) bytes: &'a [u8],
    /// Every section header, by index.
    pub(crate) sections: IndexVec<SectionIndex, SectionHeader>,
    /// Every loaded (`SHF_ALLOC`) section's raw name, by index, found once: layout, metadata and
    /// `.init_array` all look at them. Empty for the other sections.
    section_names: IndexVec<SectionIndex, Name<'a>>,
    /// The section-name string table (empty when the object has none).
    shstrtab: &'a [u8],
    /// Every symbol, by index (entry 0 is the null symbol).
    pub(crate) syms: IndexVec<SymbolIndex, Sym>,
    /// Every `SHT_RELA` section, in header order.
    pub(crate) rela_sections: Vec<RelaSection<'a>>,
    /// The symbol string table (empty when the object has none).
    strtab: &'a [u8],
    /// The functions' demangled paths `cargo cell build` wrote (`.cell.paths`); empty when the
    /// object has none, or one that does not fit its symbols.
    pub(crate) paths: PathTable<'a>,
    /// What `cargo cell build` applied already (`.cell.prelink`, [`crate::prelink`]); `None` when
    /// the object has no table, or one that does not fit it.
    pub(crate) prelink: Option<Prelink<'a>>,
    /// The names of the cell's metadata laid out by `cargo cell build` (`.cell.names`,
    /// [`crate::names`]); `None` when the object has none that adds up.
    pub(crate) names: Option<NamesTable<'a>>,
}

impl<'a> Object<'a> {
    /// The relocations of `section`, decoded.
    pub(crate) fn relas(&self, section: &RelaSection<'a>) -> impl Iterator<Item = Rela> + 'a {
        section.entries.iter().map(|e| {
            let r_info = u64_at(e, 8);
            Rela {
                r_offset: u64_at(e, 0),
                r_addend: u64_at(e, 16) as i64,
                r_sym: SymbolIndex((r_info >> 32) as usize),
                r_type: r_info as u32,
            }
        })
    }

    /// The raw name of section `index` (empty when it has none).
    pub(crate) fn section_name_bytes(&self, index: SectionIndex) -> &'a [u8] {
        match self.sections.get(index) {
            Some(sh) if is_alloc(sh) => self.section_names[index].bytes,
            Some(sh) => c_str(self.shstrtab, sh.sh_name as usize),
            None => &[],
        }
    }

    /// The name of section `index` (or `section#N` when it has none), for messages; a name that
    /// is not UTF-8 is shown lossily.
    pub(crate) fn section_name(&self, index: SectionIndex) -> String {
        let name = self.section_name_bytes(index);
        if name.is_empty() {
            return index.to_string();
        }
        String::from_utf8_lossy(name).into_owned()
    }

    /// The name of loaded section `index` as a `str`: `None` when it is not UTF-8 (or the section
    /// is not loaded, whose name is empty here).
    pub(crate) fn section_name_str(&self, index: SectionIndex) -> Option<&'a str> {
        self.section_names.get(index).and_then(|n| n.as_str())
    }

    /// The file bytes of section `index` (empty for `SHT_NOBITS`). Bounds were checked by
    /// [`parse`].
    pub(crate) fn section_bytes(&self, index: SectionIndex) -> &'a [u8] {
        match self.sections.get(index) {
            Some(sh) => section_bytes(self.bytes, sh),
            None => &[],
        }
    }

    /// The raw name of symbol `index` (empty when it has none).
    pub(crate) fn symbol_name_bytes(&self, index: SymbolIndex) -> &'a [u8] {
        self.syms
            .get(index)
            .map_or(&[], |s| name_at(self.strtab, s.st_name).bytes)
    }

    /// Whether symbol `index`'s name is `name`: its bytes, then the NUL that ends it, at the
    /// symbol's offset in the string table (one comparison of known length, no search for the
    /// end).
    pub(crate) fn symbol_name_is(&self, index: SymbolIndex, name: &str) -> bool {
        let Some(at) = self.syms.get(index).map(|s| s.st_name) else {
            return false;
        };
        let end = at.saturating_add(name.len());
        self.strtab.get(at..end) == Some(name.as_bytes()) && self.strtab.get(end) == Some(&0)
    }

    /// The name of symbol `index`, which must be UTF-8 since it is used as a name (looked up,
    /// exported, recorded on an edge).
    pub(crate) fn symbol_name(&self, cell: &str, index: SymbolIndex) -> Result<&'a str, LoadError> {
        let name = self
            .syms
            .get(index)
            .map_or(Name::EMPTY, |s| name_at(self.strtab, s.st_name));
        name.as_str()
            .ok_or_else(|| malformed(cell, Malformation::SymbolNameNotUtf8 { symbol: index }))
    }

    /// The name of symbol `index` for a message (lossy when it is not UTF-8).
    pub(crate) fn symbol_label(&self, index: SymbolIndex) -> Cow<'a, str> {
        String::from_utf8_lossy(self.symbol_name_bytes(index))
    }
}

/// The bytes of `offset` up to the next NUL (or the end of the table); empty when `offset` lies
/// outside the table.
fn c_str(table: &[u8], offset: usize) -> &[u8] {
    let Some(tail) = table.get(offset..) else {
        return &[];
    };
    // `from_bytes_until_nul` searches a word at a time (core's `memchr`).
    CStr::from_bytes_until_nul(tail).map_or(tail, CStr::to_bytes)
}

/// A name in a string table, with whether it is all ASCII (found by the same scan that finds its
/// end), so the common case needs no separate UTF-8 check.
#[derive(Clone, Copy, Debug)]
struct Name<'a> {
    bytes: &'a [u8],
    ascii: bool,
}

impl<'a> Name<'a> {
    const EMPTY: Name<'static> = Name {
        bytes: &[],
        ascii: true,
    };

    /// The name as a `str`, `None` when it is not UTF-8.
    fn as_str(self) -> Option<&'a str> {
        if self.ascii {
            // SAFETY: `name_at` saw every byte of `bytes` below 0x80: ASCII, which is UTF-8.
            Some(unsafe { core::str::from_utf8_unchecked(self.bytes) })
        } else {
            core::str::from_utf8(self.bytes).ok()
        }
    }
}

/// [`c_str`] and whether the name is ASCII, in one pass of eight bytes at a time (names are
/// mostly 20 to 100 bytes long; `CStr::from_bytes_until_nul` plus `str::from_utf8` walk them
/// twice, at about three times the cost).
fn name_at(table: &[u8], offset: usize) -> Name<'_> {
    const LOW: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let Some(tail) = table.get(offset..) else {
        return Name::EMPTY;
    };
    let mut high = 0u64; // the top bits of every byte seen before the NUL
    let mut chunks = tail.chunks_exact(8);
    let mut at = 0;
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let w = u64::from_le_bytes(word);
        // The lowest set bit marks the first zero byte exactly (bits above it may be spurious).
        let zero = w.wrapping_sub(LOW) & !w & HIGH;
        if zero != 0 {
            let n = (zero.trailing_zeros() / 8) as usize;
            let before = (1u64 << (8 * n)) - 1; // n <= 7
            high |= w & before & HIGH;
            return Name {
                bytes: &tail[..at + n],
                ascii: high == 0,
            };
        }
        high |= w & HIGH;
        at += 8;
    }
    let rest = chunks.remainder();
    let len = rest.iter().position(|b| *b == 0).unwrap_or(rest.len());
    let high = high != 0 || rest[..len].iter().any(|b| *b >= 0x80);
    Name {
        bytes: &tail[..at + len],
        ascii: !high,
    }
}

fn is_alloc(sh: &SectionHeader) -> bool {
    sh.sh_flags & u64::from(SHF_ALLOC) != 0
}

/// The file bytes of a section (empty for `SHT_NOBITS` or one that does not fit the file).
fn section_bytes<'a>(bytes: &'a [u8], sh: &SectionHeader) -> &'a [u8] {
    if sh.sh_type == SHT_NOBITS {
        return &[];
    }
    let range = usize::try_from(sh.sh_offset)
        .ok()
        .zip(usize::try_from(sh.sh_size).ok())
        .and_then(|(start, len)| Some(start..start.checked_add(len)?));
    range.and_then(|r| bytes.get(r)).unwrap_or(&[])
}

fn e_type_name(e_type: u16) -> &'static str {
    match e_type {
        0 => "ET_NONE",
        2 => "ET_EXEC",
        3 => "ET_DYN",
        4 => "ET_CORE",
        _ => "unknown-type",
    }
}

/// Checks the header, then reads the tables and checks that every section, symbol and
/// relocation stays inside the file.
pub(crate) fn parse<'a>(cell: &str, bytes: &'a [u8]) -> Result<Object<'a>, LoadError> {
    let cell_s = || cell.to_string();
    if bytes.is_empty() {
        return Err(LoadError::Empty { cell: cell_s() });
    }
    if bytes.len() < SELFMAG || &bytes[..SELFMAG] != ELFMAG {
        return Err(LoadError::NotElf { cell: cell_s() });
    }
    if bytes.len() <= EI_DATA {
        return Err(truncated(cell, Truncation::ElfHeader));
    }
    match bytes[EI_CLASS] {
        ELFCLASS64 => {}
        ELFCLASS32 => return Err(LoadError::WrongClass { cell: cell_s() }),
        _ => return Err(LoadError::NotElf { cell: cell_s() }),
    }
    if bytes[EI_DATA] != ELFDATA2LSB {
        return Err(LoadError::WrongEndian { cell: cell_s() });
    }
    if bytes.len() < EHDR_SIZE {
        return Err(truncated(cell, Truncation::ElfHeader));
    }
    let e_type = u16_at(bytes, 16);
    let e_machine = u16_at(bytes, 18);
    if e_machine != EM_X86_64 {
        return Err(LoadError::WrongMachine {
            cell: cell_s(),
            machine: e_machine,
        });
    }
    if e_type != ET_REL {
        return Err(LoadError::NotRelocatable {
            cell: cell_s(),
            e_type: e_type_name(e_type),
        });
    }
    let (shoff, shnum) = check_section_table(cell, bytes)?;
    let sections = read_section_headers(cell, &bytes[shoff..], shnum)?;
    let shstrndx = SectionIndex(usize::from(u16_at(bytes, 62)));
    let shstrtab = sections
        .get(shstrndx)
        .map_or(&[][..], |sh| section_bytes(bytes, sh));
    let section_names = IndexVec::from_vec(
        sections
            .iter()
            .map(|sh| match is_alloc(sh) {
                true => name_at(shstrtab, sh.sh_name as usize),
                false => Name::EMPTY,
            })
            .collect(),
    );
    let mut object = Object {
        bytes,
        sections,
        section_names,
        shstrtab,
        syms: IndexVec::from_vec(Vec::new()),
        rela_sections: Vec::new(),
        strtab: &[],
        paths: PathTable::default(),
        prelink: None,
        names: None,
    };
    check_sections(cell, &object)?;
    read_symbols(cell, &mut object)?;
    read_relocations(cell, &mut object)?;
    object.paths = object
        .build_section(paths::SECTION)
        .and_then(|bytes| PathTable::parse(bytes, object.syms.len()))
        .unwrap_or_default();
    object.prelink = object.build_section(prelink::SECTION).and_then(|bytes| {
        let entries = object.rela_sections.iter().map(|r| r.entries.len());
        Prelink::parse(bytes, entries, object.syms.len())
    });
    object.names = object
        .build_section(names::SECTION)
        .and_then(NamesTable::parse);
    Ok(object)
}

impl<'a> Object<'a> {
    /// The bytes of the non-allocated section `name` that `cargo cell build` added
    /// (`.cell.paths`, `.cell.prelink`): tables for the load, ignored when they do not fit.
    fn build_section(&self, name: &str) -> Option<&'a [u8]> {
        self.sections
            .iter()
            .filter(|sh| sh.sh_type == SHT_PROGBITS && !is_alloc(sh))
            .find(|sh| c_str(self.shstrtab, sh.sh_name as usize) == name.as_bytes())
            .map(|sh| section_bytes(self.bytes, sh))
    }
}

/// The section header table itself must lie inside the file. Returns its offset and length.
fn check_section_table(cell: &str, bytes: &[u8]) -> Result<(usize, usize), LoadError> {
    let shoff = u64_at(bytes, 40);
    let e_shentsize = u16_at(bytes, 58);
    let shnum = u64::from(u16_at(bytes, 60));
    // (goblin reads an `e_shoff` of 0 as "no section headers" too.)
    if shnum == 0 || shoff == 0 {
        return Err(malformed(cell, Malformation::NoSectionHeaders));
    }
    if usize::from(e_shentsize) != SIZEOF_SHDR {
        return Err(malformed(
            cell,
            Malformation::SectionHeaderSize { e_shentsize },
        ));
    }
    let end = shnum
        .checked_mul(u64::from(e_shentsize))
        .and_then(|n| n.checked_add(shoff));
    if end.is_none_or(|e| e > bytes.len() as u64) {
        return Err(truncated(cell, Truncation::SectionHeaderTable));
    }
    // Both fit the file, so they fit a `usize`.
    Ok((shoff as usize, shnum as usize))
}

/// The `shnum` section headers at the start of `table` (which holds them all: checked by
/// [`check_section_table`]), decoded into goblin's `Elf64_Shdr`. Field by field from little-endian
/// bytes: goblin's own readers cost more than the rest of parsing together (its `from_bytes`
/// fills the vector element by element before it copies, its `parse` goes through `scroll`).
fn read_section_headers(
    cell: &str,
    table: &[u8],
    shnum: usize,
) -> Result<IndexVec<SectionIndex, SectionHeader>, LoadError> {
    let Some(table) = shnum
        .checked_mul(SIZEOF_SHDR)
        .and_then(|len| table.get(..len))
    else {
        return Err(truncated(cell, Truncation::SectionHeaderTable));
    };
    Ok(IndexVec::from_vec(
        table
            .as_chunks::<SIZEOF_SHDR>()
            .0
            .iter()
            .map(|e| SectionHeader {
                sh_name: u32_at(e, 0),
                sh_type: u32_at(e, 4),
                sh_flags: u64_at(e, 8),
                sh_addr: u64_at(e, 16),
                sh_offset: u64_at(e, 24),
                sh_size: u64_at(e, 32),
                sh_link: u32_at(e, 40),
                sh_info: u32_at(e, 44),
                sh_addralign: u64_at(e, 48),
                sh_entsize: u64_at(e, 56),
            })
            .collect(),
    ))
}

/// Every section's bytes must lie inside the file, so later phases can slice without checking.
fn check_sections(cell: &str, object: &Object<'_>) -> Result<(), LoadError> {
    for (i, sh) in object.sections.iter_enumerated() {
        if sh.sh_type == SHT_NOBITS || sh.sh_size == 0 {
            continue;
        }
        let end = sh.sh_offset.checked_add(sh.sh_size);
        if end.is_none_or(|e| e > object.bytes.len() as u64) {
            return Err(truncated(
                cell,
                Truncation::Section {
                    section: object.section_name(i),
                },
            ));
        }
    }
    Ok(())
}

/// Decodes the symbol table (the last `SHT_SYMTAB`, as goblin picks it) and finds its string
/// table. Every symbol's section index must be in range and its value inside its section (its end
/// at most), so `section + st_value` cannot overflow later.
fn read_symbols(cell: &str, object: &mut Object<'_>) -> Result<(), LoadError> {
    let no_table = || malformed(cell, Malformation::NoSymbolTable);
    let symtab = object
        .sections
        .iter()
        .rfind(|sh| sh.sh_type == SHT_SYMTAB)
        .ok_or_else(no_table)?;
    if symtab.sh_entsize == 0 {
        return Err(no_table());
    }
    if symtab.sh_entsize != SYM_SIZE as u64 {
        return Err(malformed(
            cell,
            Malformation::SymbolEntrySize {
                sh_entsize: symtab.sh_entsize,
            },
        ));
    }
    let table = section_bytes(object.bytes, symtab);
    if table.len() < SYM_SIZE {
        return Err(no_table());
    }
    object.strtab = object
        .sections
        .get(SectionIndex(symtab.sh_link as usize))
        .map_or(&[], |sh| section_bytes(object.bytes, sh));
    let mut syms = Vec::with_capacity(table.len() / SYM_SIZE);
    for e in table.as_chunks::<SYM_SIZE>().0 {
        syms.push(Sym {
            st_name: u32_at(e, 0) as usize,
            st_info: e[4],
            st_other: e[5],
            st_shndx: usize::from(u16_at(e, 6)),
            st_value: u64_at(e, 8),
            st_size: u64_at(e, 16),
        });
    }
    object.syms = IndexVec::from_vec(syms);
    let shnum = object.sections.len();
    for (i, sym) in object.syms.iter_enumerated() {
        let Some(shndx) = sym.section() else {
            continue;
        };
        let Some(section) = object.sections.get(shndx) else {
            return Err(malformed(
                cell,
                Malformation::SymbolSectionOutOfRange {
                    symbol: label_or_unknown(object, i).into_owned(),
                    st_shndx: sym.st_shndx,
                    sections: shnum,
                },
            ));
        };
        if sym.st_value > section.sh_size {
            return Err(malformed(
                cell,
                Malformation::SymbolPastSection {
                    symbol: label_or_unknown(object, i).into_owned(),
                    st_value: sym.st_value,
                    section: object.section_name(shndx),
                    sh_size: section.sh_size,
                },
            ));
        }
    }
    Ok(())
}

fn label_or_unknown<'a>(object: &Object<'a>, sym: SymbolIndex) -> Cow<'a, str> {
    let label = object.symbol_label(sym);
    if label.is_empty() {
        Cow::Borrowed("?")
    } else {
        label
    }
}

/// Finds every `SHT_RELA` section and checks its entries. x86_64 objects have no `SHT_REL`; each
/// relocation must apply to an existing section and name an existing symbol.
fn read_relocations<'a>(cell: &str, object: &mut Object<'a>) -> Result<(), LoadError> {
    let shnum = object.sections.len();
    let nsyms = object.syms.len();
    let bytes = object.bytes;
    let count = object
        .sections
        .iter()
        .filter(|sh| sh.sh_type == SHT_RELA)
        .count();
    let mut rela_sections = Vec::with_capacity(count);
    for (index, sh) in object.sections.iter_enumerated() {
        if sh.sh_type == SHT_REL {
            return Err(malformed(
                cell,
                Malformation::RelSection {
                    section: object.section_name(index),
                },
            ));
        }
        if sh.sh_type != SHT_RELA {
            continue;
        }
        if sh.sh_info as usize >= shnum {
            return Err(malformed(
                cell,
                Malformation::RelocationTargetOutOfRange {
                    section: object.section_name(index),
                    sh_info: sh.sh_info,
                    sections: shnum,
                },
            ));
        }
        let (entries, _) = section_bytes(bytes, sh).as_chunks::<RELA_SIZE>();
        // `r_sym` is the high half of `r_info` (bytes 12..16 of the entry).
        if let Some(r_sym) = entries
            .iter()
            .map(|e| u32_at(e, 12))
            .find(|r_sym| *r_sym as usize >= nsyms)
        {
            return Err(malformed(
                cell,
                Malformation::RelocationSymbolOutOfRange {
                    section: object.section_name(index),
                    r_sym,
                    symbols: nsyms,
                },
            ));
        }
        rela_sections.push(RelaSection {
            target: SectionIndex(sh.sh_info as usize),
            file_section: index,
            entries,
        });
    }
    object.rela_sections = rela_sections;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_end_at_the_first_nul_or_the_table() {
        let table = b"\0.text.a\0.rodata.a_much_longer_name_than_eight\0tail";
        assert_eq!(c_str(table, 0), b"");
        assert_eq!(c_str(table, 1), b".text.a");
        assert_eq!(c_str(table, 3), b"ext.a");
        assert_eq!(c_str(table, 9), b".rodata.a_much_longer_name_than_eight");
        assert_eq!(c_str(table, table.len() - 4), b"tail");
        assert_eq!(c_str(table, table.len()), b"");
        assert_eq!(c_str(table, usize::MAX), b"");
    }

    #[test]
    fn names_are_found_with_their_ascii_check() {
        let mut table = b"\0.text.a\0.rodata.a_much_longer_name_than_eight\0tail".to_vec();
        table.extend_from_slice(b"\0caf\xc3\xa9.long_enough_to_span_words\0\xff\0abcdefgh\0");
        for offset in 0..=table.len() + 1 {
            let name = name_at(&table, offset);
            assert_eq!(name.bytes, c_str(&table, offset), "offset {offset}");
            assert_eq!(name.ascii, name.bytes.is_ascii(), "offset {offset}");
            assert_eq!(
                name.as_str(),
                core::str::from_utf8(name.bytes).ok(),
                "offset {offset}"
            );
        }
        // Without a terminating NUL, and non-ASCII at every position of a word.
        for len in 0..40 {
            for bad in 0..=len {
                let mut t = alloc::vec![b'x'; len];
                if bad < len {
                    t[bad] = 0x80;
                }
                let name = name_at(&t, 0);
                assert_eq!(name.bytes, &t[..]);
                assert_eq!(name.ascii, bad == len, "len {len} bad {bad}");
            }
        }
        // A NUL at every position, with a non-ASCII byte before it, after it, or none.
        for len in 1usize..40 {
            for nul in 0..len {
                for bad in [None, Some(0), Some(nul.saturating_sub(1)), Some(len - 1)] {
                    let mut t = alloc::vec![b'y'; len];
                    if let Some(bad) = bad {
                        t[bad] = 0xc3;
                    }
                    t[nul] = 0;
                    let name = name_at(&t, 0);
                    let what = alloc::format!("len {len} nul {nul} bad {bad:?}");
                    assert_eq!(name.bytes, &t[..nul], "{what}");
                    assert_eq!(name.ascii, t[..nul].is_ascii(), "{what}");
                }
            }
        }
        assert_eq!(name_at(b"abc", usize::MAX).bytes, b"");
    }

    #[test]
    fn a_section_past_the_file_has_no_bytes() {
        let sh = SectionHeader {
            sh_type: goblin::elf::section_header::SHT_PROGBITS,
            sh_offset: u64::MAX,
            sh_size: 2,
            ..Default::default()
        };
        assert_eq!(section_bytes(b"abc", &sh), b"");
    }
}
