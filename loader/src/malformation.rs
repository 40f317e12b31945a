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
    /// The unwind table, as relocated, is not one the unwinder can walk safely (checked by
    /// `eh_frame.rs` before it is registered).
    EhFrame {
        /// The section (`.eh_frame`).
        section: String,
        /// The offset in the section of the field at fault (the terminator's offset is the
        /// section's size).
        offset: u64,
        /// What is wrong there.
        fault: EhFrameFault,
    },
}

/// What is wrong in an `.eh_frame` table, at the offset [`Malformation::EhFrame`] carries. Every
/// check exists because libgcc's unwinder (`__register_frame`, `_Unwind_Find_FDE`, then the CIE
/// and the call-frame program of the FDE it finds) would otherwise read outside the table, follow
/// a wild pointer, or abort.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EhFrameFault {
    /// A record length of `0xffffffff`, the 64-bit length escape: libgcc's walk of registered
    /// tables reads 32-bit lengths only.
    Length64,
    /// A record's length runs past the end of the section.
    LengthPastEnd {
        /// The record's length (after the length word).
        length: u32,
        /// The bytes left in the section after the length word.
        left: u64,
    },
    /// A zero length (a terminator) before the end of the section: the unwinder would stop there
    /// and never see the records after it.
    EarlyTerminator,
    /// The four bytes after the section are not the zero terminator the loader appends.
    MissingTerminator,
    /// A field runs past the end of its record (or the section, for a length word).
    FieldPastRecord {
        /// The field.
        field: EhField,
    },
    /// An FDE's CIE pointer does not lead back to the start of a CIE in the section.
    CiePointer {
        /// The CIE pointer (its distance back from the pointer's own field).
        pointer: u32,
    },
    /// A CIE version other than 1 and 3.
    CieVersion {
        /// The version.
        version: u8,
    },
    /// An augmentation string the loader does not serve: it serves `""` and `z` followed by
    /// `P`, `L`, `R` and `S` at most once each, in that order (what rustc, LLVM and GCC emit).
    Augmentation {
        /// The string (lossy, cut at 16 bytes).
        augmentation: String,
    },
    /// A LEB128 number longer than 64 bits.
    Leb128 {
        /// The field.
        field: EhField,
    },
    /// The length of a CIE's or FDE's augmentation data is not what its augmentation string
    /// asks for.
    AugmentationLength {
        /// The length the record declares.
        declared: u64,
        /// The length the augmentation string asks for.
        expected: u64,
    },
    /// A pointer encoding the loader does not serve: absolute or PC-relative, of 2, 4 or 8
    /// bytes (signed or not), indirect only for the personality routine, omitted only for the
    /// LSDA. The registration gives the unwinder no text or data base, so `textrel` and
    /// `datarel` mean nothing here; LEB128 and `aligned` make libgcc abort.
    Encoding {
        /// Which pointer.
        pointer: EhPointer,
        /// The `DW_EH_PE_*` byte.
        encoding: u8,
    },
    /// A register number the x86_64 unwinder does not have (it has 0 to 16).
    Register {
        /// The DWARF register number.
        register: u64,
    },
    /// An FDE whose range does not lie inside one of the cell's text sections.
    FdeOutsideText {
        /// Its first address, as the unwinder reads it.
        pc_begin: u64,
        /// Its length.
        pc_range: u64,
    },
    /// Two FDEs whose ranges overlap (the offset is the `pc_begin` of the one that starts higher):
    /// libgcc's binary search of the sorted FDEs would miss addresses of the outer one.
    FdeOverlap {
        /// The offset in the section of the FDE that starts lower.
        other: u64,
    },
    /// An FDE with an empty range (`pc_range` 0) whose `pc_begin` lies inside another FDE's
    /// range, or at its start: libgcc's binary search steps past an empty FDE towards higher
    /// addresses, so it would miss the other FDE's addresses from that point on (found by the
    /// `unwind_tables` fuzz target: no FDE for the first address of a function).
    EmptyFdeInside {
        /// The offset in the section of the FDE whose range holds it.
        other: u64,
    },
    /// The personality routine is reached through a slot (indirect) that is not an aligned
    /// word inside the cell's mapping.
    PersonalityOutside {
        /// The slot's address, as the unwinder reads it.
        addr: u64,
    },
    /// An FDE's LSDA pointer lies outside the cell's mapping.
    LsdaOutside {
        /// The LSDA's address, as the unwinder reads it.
        addr: u64,
    },
    /// A call-frame instruction the loader does not serve: DWARF expressions (the unwinder would
    /// evaluate them, reading any memory), `DW_CFA_set_loc`, and every opcode it does not know.
    Instruction {
        /// The opcode.
        opcode: u8,
    },
    /// `DW_CFA_restore_state` with no `DW_CFA_remember_state` before it (libgcc follows a null
    /// pointer), more nested `DW_CFA_remember_state`s than the loader accepts (libgcc keeps
    /// each on the stack), or a CIE whose instructions leave a level remembered (libgcc keeps it
    /// in the stack frame that ran the CIE's instructions, gone when the FDE's run; the offset is
    /// then the CIE's end).
    StateStack {
        /// The depth the instruction would leave (-1, or more than the limit), or the depth a CIE
        /// leaves.
        depth: i64,
    },
}

/// A field of an `.eh_frame` record, for [`EhFrameFault`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EhField {
    /// The record's length word.
    Length,
    /// A CIE's id, or an FDE's CIE pointer.
    CieId,
    /// A CIE's version.
    Version,
    /// A CIE's augmentation string.
    Augmentation,
    /// A CIE's code alignment factor.
    CodeAlignment,
    /// A CIE's data alignment factor.
    DataAlignment,
    /// A CIE's return address register.
    ReturnAddress,
    /// The length of the augmentation data.
    AugmentationLength,
    /// The augmentation data (the personality routine, the LSDA, the encodings).
    AugmentationData,
    /// An FDE's first address.
    PcBegin,
    /// An FDE's length.
    PcRange,
    /// A call-frame instruction or its operands.
    Instruction,
}

/// Which pointer of an `.eh_frame` record an encoding is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EhPointer {
    /// The CIE's personality routine (`P`).
    Personality,
    /// The FDEs' LSDA (`L`).
    Lsda,
    /// The FDEs' `pc_begin` (`R`).
    Fde,
}

impl fmt::Display for EhField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EhField::Length => "the length",
            EhField::CieId => "the CIE id or pointer",
            EhField::Version => "the CIE version",
            EhField::Augmentation => "the augmentation string",
            EhField::CodeAlignment => "the code alignment factor",
            EhField::DataAlignment => "the data alignment factor",
            EhField::ReturnAddress => "the return address register",
            EhField::AugmentationLength => "the augmentation data length",
            EhField::AugmentationData => "the augmentation data",
            EhField::PcBegin => "pc_begin",
            EhField::PcRange => "pc_range",
            EhField::Instruction => "a call-frame instruction",
        })
    }
}

impl fmt::Display for EhPointer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EhPointer::Personality => "personality routine",
            EhPointer::Lsda => "LSDA",
            EhPointer::Fde => "FDE",
        })
    }
}

impl fmt::Display for EhFrameFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use EhFrameFault::*;
        match self {
            Length64 => {
                f.write_str("a 64-bit record length (0xffffffff), which the unwinder does not read")
            }
            LengthPastEnd { length, left } => write!(
                f,
                "a record of {length:#x} bytes where {left:#x} are left in the section"
            ),
            EarlyTerminator => f.write_str("a zero length before the end of the section"),
            MissingTerminator => f.write_str("no zero terminator after the section"),
            FieldPastRecord { field } => write!(f, "{field} runs past the end of its record"),
            CiePointer { pointer } => {
                write!(f, "CIE pointer {pointer:#x} does not lead back to a CIE")
            }
            CieVersion { version } => write!(f, "CIE version {version}, expected 1 or 3"),
            Augmentation { augmentation } => {
                write!(
                    f,
                    "augmentation string {augmentation:?}, which is not served"
                )
            }
            Leb128 { field } => write!(f, "{field} is a LEB128 number longer than 64 bits"),
            AugmentationLength { declared, expected } => write!(
                f,
                "augmentation data of {declared} bytes where the augmentation string asks for \
                 {expected}"
            ),
            Encoding { pointer, encoding } => {
                write!(
                    f,
                    "{pointer} pointer encoding {encoding:#04x}, which is not served"
                )
            }
            Register { register } => {
                write!(
                    f,
                    "register {register}, which the x86_64 unwinder does not have"
                )
            }
            FdeOutsideText { pc_begin, pc_range } => write!(
                f,
                "an FDE for {pc_begin:#x}+{pc_range:#x}, outside the cell's text sections"
            ),
            FdeOverlap { other } => {
                write!(f, "an FDE whose range overlaps the FDE at {other:#x}")
            }
            EmptyFdeInside { other } => {
                write!(f, "an empty FDE inside the range of the FDE at {other:#x}")
            }
            PersonalityOutside { addr } => write!(
                f,
                "the personality routine's slot {addr:#x} is not an aligned word in the cell"
            ),
            LsdaOutside { addr } => write!(f, "an LSDA at {addr:#x}, outside the cell"),
            Instruction { opcode } => {
                write!(
                    f,
                    "call-frame instruction {opcode:#04x}, which is not served"
                )
            }
            StateStack { depth } => write!(
                f,
                "DW_CFA_remember_state/restore_state would leave the state stack {depth} deep"
            ),
        }
    }
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
            EhFrame {
                section,
                offset,
                fault,
            } => write!(f, "{section}+{offset:#x}: {fault}"),
        }
    }
}

impl core::error::Error for Malformation {}
