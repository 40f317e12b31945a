//! Parsing: checking that the bytes are an x86_64 relocatable object and reading its tables
//! with goblin, with every offset checked against the file before anything uses it.

use alloc::format;
use alloc::string::{String, ToString};
use goblin::elf::header::{
    EI_CLASS, EI_DATA, ELFCLASS32, ELFCLASS64, ELFDATA2LSB, ELFMAG, SELFMAG,
};
use goblin::elf::section_header::{SHT_NOBITS, SHT_RELA};
use goblin::elf::Elf;

use crate::error::LoadError;

/// `e_machine` of x86_64.
const EM_X86_64: u16 = 62;
/// `e_type` of a relocatable object.
const ET_REL: u16 = 1;
/// Size of the ELF64 header.
const EHDR_SIZE: usize = 64;

/// A checked object: the parsed tables and the bytes they point into.
pub(crate) struct Object<'a> {
    pub(crate) bytes: &'a [u8],
    pub(crate) elf: Elf<'a>,
}

impl<'a> Object<'a> {
    /// The name of section `index` (or `section#N` when it has none).
    pub(crate) fn section_name(&self, index: usize) -> String {
        self.elf
            .section_headers
            .get(index)
            .and_then(|sh| self.elf.shdr_strtab.get_at(sh.sh_name))
            .filter(|n| !n.is_empty())
            .map(ToString::to_string)
            .unwrap_or_else(|| format!("section#{index}"))
    }

    /// The file bytes of section `index` (empty for `SHT_NOBITS`). Bounds were checked by
    /// [`parse`].
    pub(crate) fn section_bytes(&self, index: usize) -> &'a [u8] {
        let Some(sh) = self.elf.section_headers.get(index) else {
            return &[];
        };
        if sh.sh_type == SHT_NOBITS {
            return &[];
        }
        let start = sh.sh_offset as usize;
        self.bytes
            .get(start..start + sh.sh_size as usize)
            .unwrap_or(&[])
    }

    /// The name of symbol `index` in the symbol table.
    pub(crate) fn symbol_name(&self, index: usize) -> &'a str {
        self.elf
            .syms
            .get(index)
            .and_then(|s| self.elf.strtab.get_at(s.st_name))
            .unwrap_or("")
    }
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

/// Checks the header, then parses the tables and checks that every section, symbol and
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
        return Err(LoadError::Truncated {
            cell: cell_s(),
            what: "ELF header".into(),
        });
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
        return Err(LoadError::Truncated {
            cell: cell_s(),
            what: "ELF header".into(),
        });
    }
    let e_type = u16::from_le_bytes([bytes[16], bytes[17]]);
    let e_machine = u16::from_le_bytes([bytes[18], bytes[19]]);
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
    check_section_table(cell, bytes)?;
    let elf = Elf::parse(bytes).map_err(|e| LoadError::Malformed {
        cell: cell_s(),
        reason: e.to_string(),
    })?;
    let object = Object { bytes, elf };
    check_contents(cell, &object)?;
    Ok(object)
}

/// The section header table itself must lie inside the file.
fn check_section_table(cell: &str, bytes: &[u8]) -> Result<(), LoadError> {
    let shoff = u64::from_le_bytes(bytes[40..48].try_into().unwrap_or([0; 8]));
    let shentsize = u16::from_le_bytes([bytes[58], bytes[59]]) as u64;
    let shnum = u16::from_le_bytes([bytes[60], bytes[61]]) as u64;
    if shnum == 0 {
        return Err(LoadError::Malformed {
            cell: cell.into(),
            reason: "no section headers".into(),
        });
    }
    if shentsize != 64 {
        return Err(LoadError::Malformed {
            cell: cell.into(),
            reason: format!("section header size {shentsize}, expected 64"),
        });
    }
    let end = shnum
        .checked_mul(shentsize)
        .and_then(|n| n.checked_add(shoff));
    if end.is_none_or(|e| e > bytes.len() as u64) {
        return Err(LoadError::Truncated {
            cell: cell.into(),
            what: "section header table".into(),
        });
    }
    Ok(())
}

/// Every section's bytes, every symbol's section index and every relocation's symbol index must
/// be in range, so later phases can index without checking again.
fn check_contents(cell: &str, object: &Object<'_>) -> Result<(), LoadError> {
    let shnum = object.elf.section_headers.len();
    for (i, sh) in object.elf.section_headers.iter().enumerate() {
        if sh.sh_type == SHT_NOBITS || sh.sh_size == 0 {
            continue;
        }
        let end = sh.sh_offset.checked_add(sh.sh_size);
        if end.is_none_or(|e| e > object.bytes.len() as u64) {
            return Err(LoadError::Truncated {
                cell: cell.into(),
                what: format!("section {}", object.section_name(i)),
            });
        }
    }
    if object.elf.syms.is_empty() {
        return Err(LoadError::Malformed {
            cell: cell.into(),
            reason: "no symbol table".into(),
        });
    }
    let nsyms = object.elf.syms.len();
    for sym in object.elf.syms.iter() {
        let shndx = sym.st_shndx;
        let special = shndx == 0 || shndx >= 0xff00;
        if !special && shndx >= shnum {
            return Err(LoadError::Malformed {
                cell: cell.into(),
                reason: format!(
                    "symbol `{}` is in section {shndx}, but there are {shnum} sections",
                    object.elf.strtab.get_at(sym.st_name).unwrap_or("?")
                ),
            });
        }
        // A defined symbol lies inside its section (its end at most), so `section + st_value`
        // cannot overflow later.
        if !special {
            let size = object.elf.section_headers[shndx].sh_size;
            if sym.st_value > size {
                return Err(LoadError::Malformed {
                    cell: cell.into(),
                    reason: format!(
                        "symbol `{}` has value {:#x}, past the end of section {} ({size} bytes)",
                        object.elf.strtab.get_at(sym.st_name).unwrap_or("?"),
                        sym.st_value,
                        object.section_name(shndx)
                    ),
                });
            }
        }
    }
    for (index, relocs) in &object.elf.shdr_relocs {
        let Some(rel) = object.elf.section_headers.get(*index) else {
            continue;
        };
        if rel.sh_type != SHT_RELA {
            return Err(LoadError::Malformed {
                cell: cell.into(),
                reason: format!(
                    "{} is a REL section; x86_64 objects use RELA",
                    object.section_name(*index)
                ),
            });
        }
        if rel.sh_info as usize >= shnum {
            return Err(LoadError::Malformed {
                cell: cell.into(),
                reason: format!(
                    "{} applies to section {}, but there are {shnum} sections",
                    object.section_name(*index),
                    rel.sh_info
                ),
            });
        }
        for r in relocs.iter() {
            if r.r_sym >= nsyms {
                return Err(LoadError::Malformed {
                    cell: cell.into(),
                    reason: format!(
                        "a relocation in {} names symbol {} of {nsyms}",
                        object.section_name(*index),
                        r.r_sym
                    ),
                });
            }
        }
    }
    Ok(())
}
