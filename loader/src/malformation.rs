//! What is wrong with a malformed object: one variant per check the loader makes, with the
//! section, symbol or value that failed it. Carried by [`LoadError::Malformed`] and
//! [`LoadError::Truncated`](crate::LoadError::Truncated), so tests and tools match the variant
//! instead of a message.
//!
//! [`LoadError::Malformed`]: crate::LoadError::Malformed

use alloc::string::String;
use core::fmt;

use crate::index::{SectionIndex, SymbolIndex};

/// The part of an object that the file ends before.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Truncation {
    /// The 64-byte ELF header.
    ElfHeader,
    /// The section header table (`e_shoff` plus `e_shnum` entries of `e_shentsize` bytes).
    SectionHeaderTable,
    /// The bytes of a section (`sh_offset` plus `sh_size`).
    Section {
        /// The section's name (`section#N` when it has none).
        section: String,
    },
}

impl fmt::Display for Truncation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Truncation::ElfHeader => f.write_str("ELF header"),
            Truncation::SectionHeaderTable => f.write_str("section header table"),
            Truncation::Section { section } => write!(f, "section {section}"),
        }
    }
}

/// Why an object is malformed, or asks for something the loader refuses to do.
///
/// Section names are shown lossily when they are not UTF-8 (`section#N` when empty); symbol names
/// are demangled where the check is about a symbol the cell uses, and `?` when empty.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Malformation {
    /// `e_shnum` or `e_shoff` is 0: the object has no section header table.
    NoSectionHeaders,
    /// `e_shentsize` is not 64, the size of an `Elf64_Shdr`.
    SectionHeaderSize {
        /// The header's `e_shentsize`.
        e_shentsize: u16,
    },
    /// No `SHT_SYMTAB` section, or one without a single entry.
    NoSymbolTable,
    /// The symbol table's `sh_entsize` is not 24, the size of an `Elf64_Sym`.
    SymbolEntrySize {
        /// The symbol table's `sh_entsize`.
        sh_entsize: u64,
    },
    /// A defined symbol's `st_shndx` names a section that does not exist.
    SymbolSectionOutOfRange {
        /// The symbol.
        symbol: String,
        /// Its `st_shndx`.
        st_shndx: usize,
        /// The number of section headers.
        sections: usize,
    },
    /// A defined symbol's `st_value` lies past the end of its section.
    SymbolPastSection {
        /// The symbol.
        symbol: String,
        /// Its `st_value`.
        st_value: u64,
        /// Its section.
        section: String,
        /// The section's `sh_size`.
        sh_size: u64,
    },
    /// A section of type `SHT_REL`: x86_64 objects use `SHT_RELA`.
    RelSection {
        /// The section.
        section: String,
    },
    /// A relocation section's `sh_info` names a section that does not exist.
    RelocationTargetOutOfRange {
        /// The relocation section.
        section: String,
        /// Its `sh_info`.
        sh_info: u32,
        /// The number of section headers.
        sections: usize,
    },
    /// A relocation's `r_sym` names a symbol that does not exist.
    RelocationSymbolOutOfRange {
        /// The relocation section.
        section: String,
        /// The relocation's `r_sym`.
        r_sym: u32,
        /// The number of symbols.
        symbols: usize,
    },
    /// A loaded section is larger than the loader accepts.
    SectionTooLarge {
        /// The section.
        section: String,
        /// Its `sh_size`.
        sh_size: u64,
        /// The largest loaded section the loader accepts.
        max: u64,
    },
    /// A loaded section's alignment is not a power of two, or more than a page.
    BadAlignment {
        /// The section.
        section: String,
        /// Its `sh_addralign`.
        sh_addralign: u64,
    },
    /// The name of a symbol the cell imports or exports is not UTF-8.
    SymbolNameNotUtf8 {
        /// The symbol.
        symbol: SymbolIndex,
    },
    /// The name of a loaded section is not UTF-8.
    SectionNameNotUtf8 {
        /// The section.
        section: SectionIndex,
    },
    /// The offsets and sizes of the loaded sections add up to more than the address space.
    LayoutOverflow,
    /// A defined symbol's address (its section's address plus `st_value`) or thread-local offset
    /// does not fit 64 bits.
    AddressOverflow {
        /// The symbol.
        symbol: String,
    },
    /// A section does not fit the place the layout gave it in the mapping.
    SectionOutsideMapping {
        /// The section.
        section: String,
    },
    /// A GOT slot or pair lies outside the mapping.
    GotOutsideMapping,
    /// A call stub is further than a 32-bit displacement from its GOT slot.
    StubOutOfRange {
        /// The symbol the stub calls.
        symbol: String,
    },
    /// A relocation asks for a plain GOT slot for a thread-local symbol (which needs a TLS pair).
    GotSlotForThreadLocal {
        /// The symbol.
        symbol: String,
    },
    /// An `R_X86_64_TLSGD` relocation against a symbol that is not thread-local.
    TlsGdAgainstNonTls {
        /// The symbol.
        symbol: String,
    },
    /// An absolute or PC-relative relocation against one of the cell's own thread-locals.
    PlainReferenceToThreadLocal {
        /// The relocation type's name.
        r_type: &'static str,
        /// The symbol.
        symbol: String,
    },
    /// A static the base image also defines (a shared kernel crate's) is reached by the cell's
    /// code without a GOT slot, so it cannot be bound to the base image's memory.
    SharedStaticReachedDirectly {
        /// The static.
        symbol: String,
    },
}

impl fmt::Display for Malformation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use Malformation::*;
        match self {
            NoSectionHeaders => f.write_str("no section headers"),
            SectionHeaderSize { e_shentsize } => {
                write!(f, "section header size {e_shentsize}, expected 64")
            }
            NoSymbolTable => f.write_str("no symbol table"),
            SymbolEntrySize { sh_entsize } => {
                write!(f, "symbol table entry size {sh_entsize}, expected 24")
            }
            SymbolSectionOutOfRange {
                symbol,
                st_shndx,
                sections,
            } => write!(
                f,
                "symbol `{symbol}` is in section {st_shndx}, but there are {sections} sections"
            ),
            SymbolPastSection {
                symbol,
                st_value,
                section,
                sh_size,
            } => write!(
                f,
                "symbol `{symbol}` has value {st_value:#x}, past the end of section {section} \
                 ({sh_size} bytes)"
            ),
            RelSection { section } => {
                write!(f, "{section} is a REL section; x86_64 objects use RELA")
            }
            RelocationTargetOutOfRange {
                section,
                sh_info,
                sections,
            } => write!(
                f,
                "{section} applies to section {sh_info}, but there are {sections} sections"
            ),
            RelocationSymbolOutOfRange {
                section,
                r_sym,
                symbols,
            } => write!(
                f,
                "a relocation in {section} names symbol {r_sym} of {symbols}"
            ),
            SectionTooLarge {
                section,
                sh_size,
                max,
            } => write!(
                f,
                "section {section} is {sh_size} bytes; a loaded section is at most {max}"
            ),
            BadAlignment {
                section,
                sh_addralign,
            } => write!(f, "section {section} asks for alignment {sh_addralign}"),
            SymbolNameNotUtf8 { symbol } => {
                write!(f, "the name of symbol #{} is not UTF-8", symbol.0)
            }
            SectionNameNotUtf8 { section } => {
                write!(f, "the name of section #{} is not UTF-8", section.0)
            }
            LayoutOverflow => f.write_str("the loaded sections do not fit the address space"),
            AddressOverflow { symbol } => {
                write!(f, "the address of `{symbol}` does not fit 64 bits")
            }
            SectionOutsideMapping { section } => {
                write!(f, "section {section} does not fit its place")
            }
            GotOutsideMapping => f.write_str("GOT outside the mapping"),
            StubOutOfRange { symbol } => {
                write!(
                    f,
                    "the call stub of `{symbol}` is too far from its GOT slot"
                )
            }
            GotSlotForThreadLocal { symbol } => {
                write!(f, "a GOT slot for thread-local `{symbol}`")
            }
            TlsGdAgainstNonTls { symbol } => {
                write!(f, "TLSGD against `{symbol}`, which is not thread-local")
            }
            PlainReferenceToThreadLocal { r_type, symbol } => {
                write!(f, "{r_type} against thread-local `{symbol}`")
            }
            SharedStaticReachedDirectly { symbol } => write!(
                f,
                "static `{symbol}` is shared with the base image but the cell reaches its own \
                 copy without a slot"
            ),
        }
    }
}

impl core::error::Error for Malformation {}
