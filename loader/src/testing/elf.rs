//! The objects the unit tests load, written with `object`'s ELF writer: every test says exactly
//! what its object holds (sections, symbols, relocations), so a malformed input is the one the test
//! means. A few malformations no writer produces (a wrong `e_shentsize`, an `SHT_REL` section)
//! are made by patching a written object at offsets read back from it ([`Patch`]), never at fixed
//! offsets.

use alloc::string::String;
use alloc::vec::Vec;

use object::write::{Object, Relocation, SectionId, Symbol, SymbolId, SymbolSection};
use object::{
    Architecture, BinaryFormat, Endianness, RelocationFlags, SectionKind, SymbolFlags, SymbolKind,
    SymbolScope,
};

pub(crate) use object::SectionKind as Kind;

/// `R_X86_64_64`.
pub(crate) const R_64: u32 = 1;
/// `R_X86_64_PC32`.
pub(crate) const R_PC32: u32 = 2;
/// `R_X86_64_PLT32`.
pub(crate) const R_PLT32: u32 = 4;
/// `R_X86_64_GOTPCREL`.
pub(crate) const R_GOTPCREL: u32 = 9;
/// `R_X86_64_TLSGD`.
pub(crate) const R_TLSGD: u32 = 19;
/// `R_X86_64_TLSLD`.
pub(crate) const R_TLSLD: u32 = 20;
/// `R_X86_64_DTPOFF32`.
pub(crate) const R_DTPOFF32: u32 = 21;
/// `R_X86_64_REX_GOTPCRELX`.
pub(crate) const R_REX_GOTPCRELX: u32 = 42;

/// A legacy-mangled Rust name for `path` (`p::f`) with crate hash `hash`, as rustc writes them
/// (`_ZN1p1f17h<hash>E`), so that demangling gives the path back.
pub(crate) fn mangle(path: &str, hash: u64) -> String {
    let mut out = String::from("_ZN");
    for segment in path.split("::") {
        out.push_str(&alloc::format!("{}{segment}", segment.len()));
    }
    out.push_str(&alloc::format!("17h{hash:016x}E"));
    out
}

/// A relocatable x86_64 object being written.
pub(crate) struct Cell {
    obj: Object<'static>,
}

impl Default for Cell {
    fn default() -> Self {
        Cell::new()
    }
}

impl Cell {
    /// An empty object.
    pub(crate) fn new() -> Cell {
        Cell {
            obj: Object::new(BinaryFormat::Elf, Architecture::X86_64, Endianness::Little),
        }
    }

    /// A section named `name` of kind `kind` holding `data`.
    pub(crate) fn section(
        &mut self,
        name: &str,
        kind: SectionKind,
        data: &[u8],
        align: u64,
    ) -> SectionId {
        self.section_named(name.as_bytes(), kind, data, align)
    }

    /// A section whose name is the raw bytes `name` (which need not be UTF-8).
    pub(crate) fn section_named(
        &mut self,
        name: &[u8],
        kind: SectionKind,
        data: &[u8],
        align: u64,
    ) -> SectionId {
        let id = self.obj.add_section(Vec::new(), name.to_vec(), kind);
        if kind.is_bss() {
            self.obj.append_section_bss(id, data.len() as u64, align);
        } else {
            self.obj.append_section_data(id, data, align);
        }
        id
    }

    /// A `.bss`-like section of `size` zero bytes (nothing of it is written to the file).
    pub(crate) fn bss(&mut self, name: &str, size: u64, align: u64) -> SectionId {
        let id = self.obj.add_section(
            Vec::new(),
            name.as_bytes().to_vec(),
            SectionKind::UninitializedData,
        );
        self.obj.append_section_bss(id, size, align);
        id
    }

    /// A global symbol `name` at `offset` in `section`.
    pub(crate) fn define(
        &mut self,
        name: &str,
        section: SectionId,
        offset: u64,
        size: u64,
        kind: SymbolKind,
    ) -> SymbolId {
        self.obj.add_symbol(Symbol {
            name: name.as_bytes().to_vec(),
            value: offset,
            size,
            kind,
            scope: SymbolScope::Dynamic,
            weak: false,
            section: SymbolSection::Section(section),
            flags: SymbolFlags::None,
        })
    }

    /// A local (not exported) symbol `name` at `offset` in `section`.
    pub(crate) fn local(&mut self, name: &str, section: SectionId, offset: u64) -> SymbolId {
        self.local_of_kind(name, section, offset, 0, SymbolKind::Data)
    }

    /// A local (not exported) function `name` at `offset` in `section`.
    pub(crate) fn local_function(&mut self, name: &str, section: SectionId, offset: u64) {
        self.local_of_kind(name, section, offset, 1, SymbolKind::Text);
    }

    fn local_of_kind(
        &mut self,
        name: &str,
        section: SectionId,
        offset: u64,
        size: u64,
        kind: SymbolKind,
    ) -> SymbolId {
        self.obj.add_symbol(Symbol {
            name: name.as_bytes().to_vec(),
            value: offset,
            size,
            kind,
            scope: SymbolScope::Compilation,
            weak: false,
            section: SymbolSection::Section(section),
            flags: SymbolFlags::None,
        })
    }

    /// A global function `name` in its own `.text.<name>` section.
    pub(crate) fn func(&mut self, name: &str, code: &[u8]) -> (SectionId, SymbolId) {
        let section = self.section(&alloc::format!(".text.{name}"), SectionKind::Text, code, 16);
        let symbol = self.define(name, section, 0, code.len() as u64, SymbolKind::Text);
        (section, symbol)
    }

    /// A global static `name` in its own `.data.<name>` section, initialized with `bytes`.
    pub(crate) fn static_data(&mut self, name: &str, bytes: &[u8]) -> (SectionId, SymbolId) {
        let section = self.section(&alloc::format!(".data.{name}"), SectionKind::Data, bytes, 8);
        let symbol = self.define(name, section, 0, bytes.len() as u64, SymbolKind::Data);
        (section, symbol)
    }

    /// An undefined symbol `name` (weak: nobody needs to define it).
    pub(crate) fn undefined(&mut self, name: &str, kind: SymbolKind, weak: bool) -> SymbolId {
        self.undefined_named(name.as_bytes(), kind, weak)
    }

    /// An undefined symbol whose name is the raw bytes `name` (which need not be UTF-8).
    pub(crate) fn undefined_named(
        &mut self,
        name: &[u8],
        kind: SymbolKind,
        weak: bool,
    ) -> SymbolId {
        self.obj.add_symbol(Symbol {
            name: name.to_vec(),
            value: 0,
            size: 0,
            kind,
            scope: SymbolScope::Dynamic,
            weak,
            section: SymbolSection::Undefined,
            flags: SymbolFlags::None,
        })
    }

    /// A relocation of type `r_type` at `offset` in `section` against `symbol`.
    pub(crate) fn reloc(
        &mut self,
        section: SectionId,
        offset: u64,
        symbol: SymbolId,
        r_type: u32,
        addend: i64,
    ) {
        self.obj
            .add_relocation(
                section,
                Relocation {
                    offset,
                    symbol,
                    addend,
                    flags: RelocationFlags::Elf {
                        r_type: object::elf::RelocationType(r_type),
                    },
                },
            )
            .expect("object accepts any ELF relocation type");
    }

    /// The object's bytes.
    pub(crate) fn bytes(&self) -> Vec<u8> {
        self.obj.write().expect("object writes the cell")
    }
}

/// Edits a written object at offsets read back from it.
pub(crate) struct Patch {
    /// The bytes.
    pub(crate) bytes: Vec<u8>,
}

impl Patch {
    /// The object to patch.
    pub(crate) fn of(bytes: Vec<u8>) -> Patch {
        Patch { bytes }
    }

    fn elf(&self) -> goblin::elf::Elf<'_> {
        goblin::elf::Elf::parse(&self.bytes).expect("a written object parses")
    }

    /// Writes `value` (little endian, `width` bytes) at `at`.
    pub(crate) fn put(&mut self, at: usize, width: usize, value: u64) -> &mut Patch {
        self.bytes[at..at + width].copy_from_slice(&value.to_le_bytes()[..width]);
        self
    }

    /// The file offset of section header `index`.
    pub(crate) fn section_header(&self, index: usize) -> usize {
        self.elf().header.e_shoff as usize + index * 64
    }

    /// The index of the first section named `name`.
    pub(crate) fn section_index(&self, name: &str) -> usize {
        let elf = self.elf();
        elf.section_headers
            .iter()
            .position(|sh| elf.shdr_strtab.get_at(sh.sh_name) == Some(name))
            .unwrap_or_else(|| panic!("no section {name}"))
    }

    /// The index of the first section of type `sh_type`.
    pub(crate) fn section_of_type(&self, sh_type: u32) -> usize {
        self.elf()
            .section_headers
            .iter()
            .position(|sh| sh.sh_type == sh_type)
            .unwrap_or_else(|| panic!("no section of type {sh_type}"))
    }

    /// The file offset of symbol `name`'s entry in the symbol table.
    pub(crate) fn symbol_entry(&self, name: &str) -> usize {
        let elf = self.elf();
        let symtab = elf
            .section_headers
            .iter()
            .find(|sh| sh.sh_type == goblin::elf::section_header::SHT_SYMTAB)
            .expect("a symbol table");
        let index = elf
            .syms
            .iter()
            .position(|s| elf.strtab.get_at(s.st_name) == Some(name))
            .unwrap_or_else(|| panic!("no symbol {name}"));
        symtab.sh_offset as usize + index * 24
    }

    /// The file offset of the first relocation entry of the first `SHT_RELA` section.
    pub(crate) fn first_rela(&self) -> usize {
        let elf = self.elf();
        let rela = elf
            .section_headers
            .iter()
            .find(|sh| sh.sh_type == goblin::elf::section_header::SHT_RELA)
            .expect("a relocation section");
        rela.sh_offset as usize
    }
}
