//! Adding a non-allocated section to a relocatable object without moving anything in it.

use alloc::vec::Vec;

use crate::le::{u16_at, u64_at};

/// Size of the ELF header.
const EHDR: usize = 64;
/// Size of one `Elf64_Shdr`.
const SHDR: usize = 64;
/// `SHT_PROGBITS`.
const PROGBITS: u32 = 1;
/// From this count on, ELF keeps the section count elsewhere (extended numbering).
const LORESERVE: usize = 0xff00;

fn pad_to_8(out: &mut Vec<u8>) {
    out.resize(out.len().next_multiple_of(8), 0);
}

/// `object` (a little-endian ELF64 file) with a new `SHT_PROGBITS` section `name` holding `data`,
/// after every existing one. Every existing byte, section index and symbol stays where it was: the
/// data, a copy of the section-name table with the new name and a copy of the section headers
/// with the new one are appended, and the ELF header points at the copies (the old table and
/// headers stay in the file, unused). `None` when `object` does not have that shape or its
/// section count would need ELF's extended numbering.
pub(crate) fn append_section(object: &[u8], name: &str, data: &[u8]) -> Option<Vec<u8>> {
    if object.len() < EHDR
        || &object[..6] != b"\x7fELF\x02\x01"
        || usize::from(u16_at(object, 58)) != SHDR
    {
        return None;
    }
    let shoff = usize::try_from(u64_at(object, 40)).ok()?;
    let shnum = usize::from(u16_at(object, 60));
    let shstrndx = usize::from(u16_at(object, 62));
    if shnum == 0 || shnum + 1 >= LORESERVE || shstrndx >= shnum {
        return None;
    }
    let headers = object.get(shoff..shoff.checked_add(shnum * SHDR)?)?;
    let names_header = &headers[shstrndx * SHDR..(shstrndx + 1) * SHDR];
    let names_at = usize::try_from(u64_at(names_header, 24)).ok()?;
    let names_len = usize::try_from(u64_at(names_header, 32)).ok()?;
    let names = object.get(names_at..names_at.checked_add(names_len)?)?;

    let mut out = Vec::with_capacity(object.len() + data.len() + names_len + headers.len() + 256);
    out.extend_from_slice(object);
    pad_to_8(&mut out);
    let data_at = out.len();
    out.extend_from_slice(data);
    let new_names_at = out.len();
    out.extend_from_slice(names);
    let name_at = u32::try_from(out.len() - new_names_at).ok()?;
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    let new_names_len = out.len() - new_names_at;
    pad_to_8(&mut out);
    let new_shoff = out.len();
    out.extend_from_slice(headers);
    let names_entry = new_shoff + shstrndx * SHDR;
    out[names_entry + 24..names_entry + 32].copy_from_slice(&(new_names_at as u64).to_le_bytes());
    out[names_entry + 32..names_entry + 40].copy_from_slice(&(new_names_len as u64).to_le_bytes());
    let mut header = [0u8; SHDR];
    header[0..4].copy_from_slice(&name_at.to_le_bytes());
    header[4..8].copy_from_slice(&PROGBITS.to_le_bytes());
    header[24..32].copy_from_slice(&(data_at as u64).to_le_bytes());
    header[32..40].copy_from_slice(&(data.len() as u64).to_le_bytes());
    header[48..56].copy_from_slice(&1u64.to_le_bytes()); // sh_addralign
    out.extend_from_slice(&header);
    out[40..48].copy_from_slice(&(new_shoff as u64).to_le_bytes());
    out[60..62].copy_from_slice(&((shnum + 1) as u16).to_le_bytes());
    Some(out)
}
