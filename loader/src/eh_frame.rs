//! `.eh_frame`: a cell's unwind table, checked as the unwinder will read it before it is
//! registered.
//!
//! The table is checked on the relocated copy in the cell's mapping (after link, before publish),
//! so every pointer is the value the unwinder reads. The model is libgcc's (GCC 12, the unwinder
//! `std` links on Linux): `__register_frame` keeps the start of the table; the first
//! `_Unwind_Find_FDE` after it walks every record (`init_object`: lengths, CIE pointers, the
//! `R` encoding of each CIE, every FDE's `pc_begin`) and sorts the FDEs; unwinding a frame then
//! parses the FDE's CIE (`extract_cie_info`: the augmentation, the personality routine through
//! its slot, the LSDA) and runs the CIE's and the FDE's call-frame instructions. Nothing of that
//! checks what it reads: a wrong byte is a wild read, an abort, or a call to garbage. So every
//! record must be one the unwinder reads exactly as we do:
//!
//! - **records**: 32-bit lengths inside the section (the 64-bit escape is refused: libgcc's walk of
//!   registered tables does not read it), no zero length before the section's end, and the zero
//!   terminator the loader appends right after it;
//! - **CIEs**: id 0, version 1 or 3, an augmentation string `""` or `z` with `P`, `L`, `R`, `S`
//!   at most once each in that order, a return address register the unwinder has, augmentation
//!   data exactly as long as the letters need, pointer encodings it serves;
//! - **FDEs**: a CIE pointer that leads back to the start of a CIE of the section, `pc_begin` and
//!   `pc_range` inside one text section of the cell and apart from every other FDE's range (an
//!   empty range too: its `pc_begin` must not lie in another's range, start included),
//!   augmentation data exactly as long as the LSDA pointer, an LSDA inside the cell;
//! - **personality routine**: when reached through a slot (indirect, as rustc emits it), the slot
//!   is an aligned word inside the cell;
//! - **call-frame instructions** (the CIE's, then the FDE's): known opcodes with their operands
//!   inside the record, registers 0 to 16, no DWARF expressions (the unwinder would evaluate them
//!   against any memory), and a `remember_state` stack that never underflows nor grows past
//!   [`MAX_STATE_DEPTH`] (libgcc keeps each level on its stack), empty again at a CIE's end.
//!
//! A leaf: it depends only on the fault types of `malformation.rs`.

use alloc::string::String;
use alloc::vec::Vec;

use crate::malformation::{EhField as Field, EhFrameFault as Fault, EhPointer as Pointer};

/// `DW_EH_PE_omit`.
const OMIT: u8 = 0xff;
/// `DW_EH_PE_pcrel`.
const PCREL: u8 = 0x10;
/// `DW_EH_PE_indirect`.
const INDIRECT: u8 = 0x80;
/// The highest DWARF register number the x86_64 unwinder has (16: the return address).
const MAX_REGISTER: u64 = 16;
/// The deepest `DW_CFA_remember_state` nesting accepted. libgcc `alloca`s every level it
/// remembers, so an unbounded nesting is a stack overflow in the unwinder.
pub const MAX_STATE_DEPTH: i64 = 64;

/// Where an `.eh_frame` table may point, in the addresses the unwinder reads.
#[derive(Clone, Copy, Debug)]
pub struct Bounds<'a> {
    /// The cell's text sections as `[start, end)`, sorted by start and not overlapping.
    pub text: &'a [(u64, u64)],
    /// The cell's whole mapping as `[start, end)`: where a personality slot or an LSDA may lie.
    pub mapping: (u64, u64),
}

/// One FDE of a checked table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fde {
    /// Its offset in the table.
    pub offset: usize,
    /// The offset of its CIE.
    pub cie: usize,
    /// Its first address.
    pub pc_begin: u64,
    /// Its length in bytes.
    pub pc_range: u64,
    /// Its LSDA (0: none).
    pub lsda: u64,
}

/// What a checked table holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Table {
    /// The CIEs' offsets, in table order.
    pub cies: Vec<usize>,
    /// The FDEs, in table order.
    pub fdes: Vec<Fde>,
}

/// Why a table was refused: the fault and the offset in the table of the field at fault.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EhFrameError {
    /// The offset of the field at fault.
    pub offset: usize,
    /// What is wrong there.
    pub fault: Fault,
}

type Checked<T> = Result<T, EhFrameError>;

#[cold]
fn fail<T>(offset: usize, fault: Fault) -> Checked<T> {
    Err(EhFrameError { offset, fault })
}

/// The text sections `(address, size)` as [`Bounds::text`] wants them: the non-empty ones as
/// `[start, end)`, sorted (one that would wrap the address space is left out).
pub fn text_ranges(sections: impl Iterator<Item = (u64, u64)>) -> Vec<(u64, u64)> {
    let mut ranges: Vec<(u64, u64)> = sections
        .filter(|&(_, size)| size > 0)
        .filter_map(|(start, size)| Some((start, start.checked_add(size)?)))
        .collect();
    ranges.sort_unstable();
    ranges
}

/// Checks the table `bytes[..section_len]`, followed by its 4-byte zero terminator, as it lies at
/// the address `addr`. Returns its CIEs and FDEs.
pub fn check(bytes: &[u8], section_len: usize, addr: u64, bounds: &Bounds<'_>) -> Checked<Table> {
    let section = bytes.get(..section_len).unwrap_or(bytes);
    let mut table = Table::default();
    let mut cies: Vec<Cie> = Vec::new();
    let mut at = 0;
    while at < section.len() {
        let mut length_field = Cursor::new(section, at, section.len());
        let length = length_field.u32(Field::Length)?;
        let body = at + 4;
        let left = section.len() - body;
        let length = match length {
            0 => return fail(at, Fault::EarlyTerminator),
            u32::MAX => return fail(at, Fault::Length64),
            n if n as usize > left => {
                return fail(
                    at,
                    Fault::LengthPastEnd {
                        length: n,
                        left: left as u64,
                    },
                )
            }
            n => n as usize,
        };
        let end = body + length;
        let mut record = Cursor::new(section, body, end);
        let id = record.u32(Field::CieId)?;
        let reader = Reader { addr, bounds };
        if id == 0 {
            let cie = reader.cie(at, &mut record)?;
            table.cies.push(at);
            cies.push(cie);
        } else {
            // The CIE pointer is the distance back from its own field to the CIE.
            let cie = body
                .checked_sub(id as usize)
                .and_then(|target| cies.binary_search_by_key(&target, |c| c.offset).ok())
                .map(|i| &cies[i]);
            let Some(cie) = cie else {
                return fail(body, Fault::CiePointer { pointer: id });
            };
            table.fdes.push(reader.fde(at, cie, &mut record)?);
        }
        at = end;
    }
    match bytes.get(section.len()..section.len() + 4) {
        Some([0, 0, 0, 0]) => {}
        _ => return fail(section.len(), Fault::MissingTerminator),
    }
    check_overlaps(&table.fdes)?;
    Ok(table)
}

/// Refuses FDEs that libgcc's search would step past: it sorts the FDEs by `pc_begin` alone and
/// binary-searches them (`binary_search_single_encoding_fdes`: go left when `pc < pc_begin`, right
/// when `pc >= pc_begin + pc_range`), so an address inside an FDE that holds another would find
/// none, and a panic there would abort the process instead of unwinding. That holds for an FDE
/// with an empty range too: the search always steps right past it, so one that starts inside
/// another FDE's range, or at its very start (equal keys sort either way), hides that FDE's
/// addresses from its `pc_begin` on. An empty FDE elsewhere (at another's end, say) is harmless.
fn check_overlaps(fdes: &[Fde]) -> Checked<()> {
    let (mut ranges, empty): (Vec<&Fde>, Vec<&Fde>) = fdes.iter().partition(|f| f.pc_range > 0);
    ranges.sort_unstable_by_key(|f| (f.pc_begin, f.offset));
    for pair in ranges.windows(2) {
        let (before, after) = (pair[0], pair[1]);
        // `in_text` has checked that `pc_begin + pc_range` does not wrap.
        if after.pc_begin < before.pc_begin.saturating_add(before.pc_range) {
            let other = before.offset as u64;
            return fail(after.offset + 8, Fault::FdeOverlap { other });
        }
    }
    for point in empty {
        // The last FDE that starts at or below the point is the only one that can hold it.
        let i = ranges.partition_point(|f| f.pc_begin <= point.pc_begin);
        let holder = i.checked_sub(1).map(|i| ranges[i]);
        if let Some(holder) = holder.filter(|h| point.pc_begin - h.pc_begin < h.pc_range) {
            let other = holder.offset as u64;
            return fail(point.offset + 8, Fault::EmptyFdeInside { other });
        }
    }
    Ok(())
}

/// What an FDE needs of its CIE.
#[derive(Clone, Copy, Debug)]
struct Cie {
    offset: usize,
    /// Whether the augmentation starts with `z` (the records carry augmentation data).
    augmented: bool,
    /// The encoding of `pc_begin` (`R`; absolute without it).
    fde_encoding: u8,
    /// The encoding of the LSDA pointer (`L`; [`OMIT`] without it).
    lsda_encoding: u8,
}

/// Reads records against the table's address and the cell's bounds.
struct Reader<'b> {
    addr: u64,
    bounds: &'b Bounds<'b>,
}

impl Reader<'_> {
    /// The CIE whose id has just been read.
    fn cie(&self, offset: usize, r: &mut Cursor<'_>) -> Checked<Cie> {
        let version_at = r.pos;
        let version = r.u8(Field::Version)?;
        if version != 1 && version != 3 {
            return fail(version_at, Fault::CieVersion { version });
        }
        let aug_at = r.pos;
        let augmentation = r.c_str(Field::Augmentation)?;
        let letters = served_augmentation(augmentation).ok_or_else(|| EhFrameError {
            offset: aug_at,
            fault: Fault::Augmentation {
                augmentation: lossy(augmentation),
            },
        })?;
        r.uleb(Field::CodeAlignment)?;
        r.sleb(Field::DataAlignment)?;
        let ra_at = r.pos;
        let ra = match version {
            1 => u64::from(r.u8(Field::ReturnAddress)?),
            _ => r.uleb(Field::ReturnAddress)?,
        };
        if ra > MAX_REGISTER {
            return fail(ra_at, Fault::Register { register: ra });
        }
        let mut cie = Cie {
            offset,
            augmented: letters.is_some(),
            fde_encoding: 0,
            lsda_encoding: OMIT,
        };
        if let Some(letters) = letters {
            let len_at = r.pos;
            let declared = r.uleb(Field::AugmentationLength)?;
            let start = r.pos;
            if declared > (r.end - start) as u64 {
                return fail(
                    len_at,
                    Fault::FieldPastRecord {
                        field: Field::AugmentationData,
                    },
                );
            }
            for letter in letters {
                let at = r.pos;
                match letter {
                    b'P' => {
                        let encoding = r.u8(Field::AugmentationData)?;
                        check_encoding(at, encoding, Pointer::Personality)?;
                        let slot_at = r.pos;
                        let value = r.pointer(self.addr, encoding, Field::AugmentationData)?;
                        if encoding & INDIRECT != 0 && !self.holds_word(value) {
                            return fail(slot_at, Fault::PersonalityOutside { addr: value });
                        }
                    }
                    b'L' => {
                        cie.lsda_encoding = r.u8(Field::AugmentationData)?;
                        check_encoding(at, cie.lsda_encoding, Pointer::Lsda)?;
                    }
                    b'R' => {
                        cie.fde_encoding = r.u8(Field::AugmentationData)?;
                        check_encoding(at, cie.fde_encoding, Pointer::Fde)?;
                    }
                    _ => {} // `S`: a signal frame, no data
                }
            }
            let used = (r.pos - start) as u64;
            if used != declared {
                return fail(
                    len_at,
                    Fault::AugmentationLength {
                        declared,
                        expected: used,
                    },
                );
            }
        }
        // libgcc runs the CIE's and the FDE's instructions in two calls of
        // `execute_cfa_program`, each `alloca`ing the levels it remembers: a level the CIE leaves
        // would point into a finished call when the FDE restores it.
        let depth = instructions(r)?;
        if depth != 0 {
            return fail(r.end, Fault::StateStack { depth });
        }
        Ok(cie)
    }

    /// The FDE whose CIE pointer has just been read.
    fn fde(&self, offset: usize, cie: &Cie, r: &mut Cursor<'_>) -> Checked<Fde> {
        let begin_at = r.pos;
        let pc_begin = r.pointer(self.addr, cie.fde_encoding, Field::PcBegin)?;
        // The range has the encoding's size and sign, and no base (libgcc: `encoding & 0x0f`).
        let pc_range = r.pointer(self.addr, cie.fde_encoding & 0x0f, Field::PcRange)?;
        if !self.in_text(pc_begin, pc_range) {
            return fail(begin_at, Fault::FdeOutsideText { pc_begin, pc_range });
        }
        let mut lsda = 0;
        if cie.augmented {
            let len_at = r.pos;
            let declared = r.uleb(Field::AugmentationLength)?;
            let expected = match cie.lsda_encoding {
                OMIT => 0,
                encoding => encoded_size(encoding),
            };
            if declared != expected {
                return fail(len_at, Fault::AugmentationLength { declared, expected });
            }
            if cie.lsda_encoding != OMIT {
                let lsda_at = r.pos;
                lsda = r.pointer(self.addr, cie.lsda_encoding, Field::AugmentationData)?;
                if lsda != 0 && !self.in_mapping(lsda, 1) {
                    return fail(lsda_at, Fault::LsdaOutside { addr: lsda });
                }
            }
        }
        instructions(r)?;
        Ok(Fde {
            offset,
            cie: cie.offset,
            pc_begin,
            pc_range,
            lsda,
        })
    }

    /// Whether `[start, start + len)` lies inside one text section.
    fn in_text(&self, start: u64, len: u64) -> bool {
        let text = self.bounds.text;
        let i = text.partition_point(|&(s, _)| s <= start);
        let Some(&(_, end)) = i.checked_sub(1).and_then(|i| text.get(i)) else {
            return false;
        };
        start < end && start.checked_add(len).is_some_and(|e| e <= end)
    }

    fn in_mapping(&self, addr: u64, len: u64) -> bool {
        let (start, end) = self.bounds.mapping;
        addr >= start && addr.checked_add(len).is_some_and(|e| e <= end)
    }

    /// Whether `addr` is an aligned 8-byte word inside the mapping.
    fn holds_word(&self, addr: u64) -> bool {
        addr.is_multiple_of(8) && self.in_mapping(addr, 8)
    }
}

/// The letters after `z` of a served augmentation string (`Some(empty)` for `z` alone), or
/// `Some(None)` for the empty string; `None` when it is not served.
fn served_augmentation(aug: &[u8]) -> Option<Option<&[u8]>> {
    let Some((&first, letters)) = aug.split_first() else {
        return Some(None);
    };
    if first != b'z' {
        return None;
    }
    // A subsequence of "PLRS": each at most once, in that order. libgcc reads `R` only when it
    // comes before anything it does not know (`get_cie_encoding`), so the order matters.
    let mut order = b"PLRS".iter();
    letters
        .iter()
        .all(|l| order.any(|o| o == l))
        .then_some(Some(letters))
}

/// Refuses an encoding of `pointer` that the loader does not serve (see
/// [`Fault::Encoding`]).
fn check_encoding(at: usize, encoding: u8, pointer: Pointer) -> Checked<()> {
    let served = match encoding {
        OMIT => pointer == Pointer::Lsda,
        _ => {
            let indirect_ok = encoding & INDIRECT == 0 || pointer == Pointer::Personality;
            let application = encoding & 0x70;
            let format = encoding & 0x0f;
            indirect_ok
                && (application == 0 || application == PCREL)
                && matches!(format, 0x00 | 0x02 | 0x03 | 0x04 | 0x0a | 0x0b | 0x0c)
        }
    };
    if served {
        Ok(())
    } else {
        fail(at, Fault::Encoding { pointer, encoding })
    }
}

/// The size of a pointer of a served `encoding`.
fn encoded_size(encoding: u8) -> u64 {
    match encoding & 0x0f {
        0x02 | 0x0a => 2,
        0x03 | 0x0b => 4,
        _ => 8,
    }
}

/// Checks the call-frame instructions up to the record's end; returns the `remember_state` depth
/// they leave.
fn instructions(r: &mut Cursor<'_>) -> Checked<i64> {
    let mut depth = 0;
    const F: Field = Field::Instruction;
    while r.pos < r.end {
        let at = r.pos;
        let op = r.u8(F)?;
        match op >> 6 {
            // DW_CFA_advance_loc
            1 => {}
            // DW_CFA_offset: the register in the low bits, then the offset
            2 => {
                r.register(u64::from(op & 0x3f), at)?;
                r.uleb(F)?;
            }
            // DW_CFA_restore
            3 => r.register(u64::from(op & 0x3f), at)?,
            _ => match op {
                0x00 => {}             // nop
                0x02 => r.skip(1, F)?, // advance_loc1
                0x03 => r.skip(2, F)?, // advance_loc2
                0x04 => r.skip(4, F)?, // advance_loc4
                0x0e | 0x2e => {
                    r.uleb(F)?; // def_cfa_offset, GNU_args_size
                }
                0x13 => {
                    r.sleb(F)?; // def_cfa_offset_sf
                }
                0x06 | 0x07 | 0x08 | 0x0d => {
                    // restore_extended, undefined, same_value, def_cfa_register
                    r.reg_operand(at)?;
                }
                0x05 | 0x0c | 0x14 | 0x2f => {
                    // offset_extended, def_cfa, val_offset, GNU_negative_offset_extended
                    r.reg_operand(at)?;
                    r.uleb(F)?;
                }
                0x11 | 0x12 | 0x15 => {
                    // offset_extended_sf, def_cfa_sf, val_offset_sf
                    r.reg_operand(at)?;
                    r.sleb(F)?;
                }
                0x09 => {
                    // register: both operands are registers
                    r.reg_operand(at)?;
                    r.reg_operand(at)?;
                }
                0x0a => {
                    depth += 1;
                    if depth > MAX_STATE_DEPTH {
                        return fail(at, Fault::StateStack { depth });
                    }
                }
                0x0b => {
                    depth -= 1;
                    if depth < 0 {
                        return fail(at, Fault::StateStack { depth });
                    }
                }
                // set_loc, the expressions (0x0f, 0x10, 0x16), GNU_window_save, unknown ones.
                _ => return fail(at, Fault::Instruction { opcode: op }),
            },
        }
    }
    Ok(depth)
}

/// Reads one record, never past its end.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
    end: usize,
}

impl<'a> Cursor<'a> {
    fn new(bytes: &'a [u8], pos: usize, end: usize) -> Cursor<'a> {
        Cursor { bytes, pos, end }
    }

    fn take<const N: usize>(&mut self, field: Field) -> Checked<[u8; N]> {
        let end = self.pos.checked_add(N).filter(|e| *e <= self.end);
        match end.and_then(|e| self.bytes.get(self.pos..e)) {
            Some(b) => {
                let mut out = [0; N];
                out.copy_from_slice(b);
                self.pos += N;
                Ok(out)
            }
            None => fail(self.pos, Fault::FieldPastRecord { field }),
        }
    }

    #[inline(always)]
    fn skip(&mut self, n: usize, field: Field) -> Checked<()> {
        match self.pos.checked_add(n).filter(|e| *e <= self.end) {
            Some(e) => {
                self.pos = e;
                Ok(())
            }
            None => fail(self.pos, Fault::FieldPastRecord { field }),
        }
    }

    /// One byte: the hot path of the instruction and LEB128 loops (a table is checked at every
    /// load), so without `take`'s slice.
    #[inline(always)]
    fn u8(&mut self, field: Field) -> Checked<u8> {
        match self.bytes.get(self.pos) {
            Some(&b) if self.pos < self.end => {
                self.pos += 1;
                Ok(b)
            }
            _ => fail(self.pos, Fault::FieldPastRecord { field }),
        }
    }

    fn u32(&mut self, field: Field) -> Checked<u32> {
        Ok(u32::from_le_bytes(self.take(field)?))
    }

    /// A NUL-terminated string inside the record, without its NUL.
    fn c_str(&mut self, field: Field) -> Checked<&'a [u8]> {
        let rest = self.bytes.get(self.pos..self.end).unwrap_or(&[]);
        let Some(len) = rest.iter().position(|b| *b == 0) else {
            return fail(self.pos, Fault::FieldPastRecord { field });
        };
        self.pos += len + 1;
        Ok(&rest[..len])
    }

    /// An unsigned LEB128 number; its raw bits and how many there are.
    #[inline(always)]
    fn leb(&mut self, field: Field) -> Checked<(u64, u32)> {
        let start = self.pos;
        // Most operands fit one byte.
        if let Some(&byte) = self.bytes.get(start).filter(|b| **b < 0x80) {
            if start < self.end {
                self.pos += 1;
                return Ok((u64::from(byte), 7));
            }
        }
        let (mut value, mut shift) = (0u64, 0u32);
        loop {
            let byte = self.u8(field)?;
            let bits = u64::from(byte & 0x7f);
            if shift >= 64 || (shift > 57 && bits >> (64 - shift) != 0) {
                return fail(start, Fault::Leb128 { field });
            }
            value |= bits << shift;
            shift += 7;
            if byte & 0x80 == 0 {
                return Ok((value, shift));
            }
        }
    }

    #[inline(always)]
    fn uleb(&mut self, field: Field) -> Checked<u64> {
        Ok(self.leb(field)?.0)
    }

    #[inline(always)]
    fn sleb(&mut self, field: Field) -> Checked<i64> {
        let (value, shift) = self.leb(field)?;
        // Sign-extend from the last byte's top bit (bit `shift - 1`).
        Ok(if shift < 64 && value & (1 << (shift - 1)) != 0 {
            (value | (u64::MAX << shift)) as i64
        } else {
            value as i64
        })
    }

    /// A register number: one the unwinder has.
    #[inline(always)]
    fn register(&self, register: u64, at: usize) -> Checked<()> {
        if register > MAX_REGISTER {
            return fail(at, Fault::Register { register });
        }
        Ok(())
    }

    /// A ULEB128 register operand of the instruction at `at`.
    #[inline(always)]
    fn reg_operand(&mut self, at: usize) -> Checked<()> {
        let register = self.uleb(Field::Instruction)?;
        self.register(register, at)
    }

    /// A pointer of a served `encoding`, as libgcc's `read_encoded_value_with_base` reads it with
    /// no base: a raw 0 stays 0, PC-relative is relative to the field's address (`addr` is the
    /// table's), and an indirect pointer is the slot's address (the caller checks the slot).
    fn pointer(&mut self, addr: u64, encoding: u8, field: Field) -> Checked<u64> {
        let field_addr = addr.wrapping_add(self.pos as u64);
        let raw = match encoding & 0x0f {
            0x02 => u64::from(u16::from_le_bytes(self.take(field)?)),
            0x03 => u64::from(u32::from_le_bytes(self.take(field)?)),
            0x0a => i16::from_le_bytes(self.take(field)?) as u64,
            0x0b => i32::from_le_bytes(self.take(field)?) as u64,
            _ => u64::from_le_bytes(self.take(field)?), // absptr, udata8, sdata8
        };
        Ok(match raw {
            0 => 0,
            _ if encoding & 0x70 == PCREL => raw.wrapping_add(field_addr),
            _ => raw,
        })
    }
}

/// At most 16 bytes of `bytes`, lossily as text.
fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(&bytes[..bytes.len().min(16)]).into_owned()
}
