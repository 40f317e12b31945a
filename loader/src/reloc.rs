//! The x86_64 relocation types the loader serves, as a table, and the one checked writer that
//! puts a computed value into its field.
//!
//! Notation of the psABI: S is the symbol's address, A the addend, P the address of the field,
//! G the address of the symbol's GOT slot (or TLS pair).

use crate::mapping::{Mapping, OutOfBounds};

/// How a relocation's value is computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Formula {
    /// S + A.
    Abs64,
    /// S + A - P.
    Pc32,
    /// L + A - P, where L is S inside the cell and the symbol's call stub outside it.
    Plt32,
    /// G + A - P, G the symbol's GOT slot.
    GotPcRel,
    /// G + A - P, G the symbol's `TLSGD` pair (module, offset).
    TlsGd,
    /// G + A - P, G the cell's `TLSLD` pair (module, 0).
    TlsLd,
    /// S + A, S the symbol's offset in the cell's TLS block.
    DtpOff32,
}

/// The width and signedness of a relocated field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Field {
    /// 64 bits; any value that fits in 64 bits, signed or not.
    Word64,
    /// 32 bits, sign-extended by the instruction that reads it.
    Signed32,
}

impl Field {
    pub(crate) fn width(self) -> usize {
        match self {
            Field::Word64 => 8,
            Field::Signed32 => 4,
        }
    }
}

/// One relocation type.
#[derive(Debug)]
pub(crate) struct RelocType {
    pub(crate) r_type: u32,
    pub(crate) name: &'static str,
    pub(crate) formula: Formula,
    pub(crate) field: Field,
}

/// Every relocation type rustc emits for a PIC, small-code-model cell (DESIGN §4). Anything else is
/// refused with the section and offset that use it.
pub(crate) static TABLE: [RelocType; 9] = [
    RelocType {
        r_type: 1,
        name: "R_X86_64_64",
        formula: Formula::Abs64,
        field: Field::Word64,
    },
    RelocType {
        r_type: 2,
        name: "R_X86_64_PC32",
        formula: Formula::Pc32,
        field: Field::Signed32,
    },
    RelocType {
        r_type: 4,
        name: "R_X86_64_PLT32",
        formula: Formula::Plt32,
        field: Field::Signed32,
    },
    RelocType {
        r_type: 9,
        name: "R_X86_64_GOTPCREL",
        formula: Formula::GotPcRel,
        field: Field::Signed32,
    },
    RelocType {
        r_type: 19,
        name: "R_X86_64_TLSGD",
        formula: Formula::TlsGd,
        field: Field::Signed32,
    },
    RelocType {
        r_type: 20,
        name: "R_X86_64_TLSLD",
        formula: Formula::TlsLd,
        field: Field::Signed32,
    },
    RelocType {
        r_type: 21,
        name: "R_X86_64_DTPOFF32",
        formula: Formula::DtpOff32,
        field: Field::Signed32,
    },
    RelocType {
        r_type: 41,
        name: "R_X86_64_GOTPCRELX",
        formula: Formula::GotPcRel,
        field: Field::Signed32,
    },
    RelocType {
        r_type: 42,
        name: "R_X86_64_REX_GOTPCRELX",
        formula: Formula::GotPcRel,
        field: Field::Signed32,
    },
];

/// One past the largest `r_type` in [`TABLE`].
const TYPES: usize = 43;

/// [`TABLE`] indexed by `r_type`: the entry, `None` for a type not served. Built from the table
/// at compile time, so a relocation finds its entry with one load and no second index check.
static BY_TYPE: [Option<&RelocType>; TYPES] = {
    let mut by_type = [None; TYPES];
    let mut i = 0;
    while i < TABLE.len() {
        by_type[TABLE[i].r_type as usize] = Some(&TABLE[i]);
        i += 1;
    }
    by_type
};

/// The table entry for `r_type`.
#[inline]
pub(crate) fn lookup(r_type: u32) -> Option<&'static RelocType> {
    BY_TYPE.get(r_type as usize).copied().flatten()
}

/// Why a value could not be written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WriteError {
    /// The value does not fit the field.
    Overflow,
    /// The field lies outside the section or the mapping.
    OutOfBounds,
}

impl From<OutOfBounds> for WriteError {
    fn from(_: OutOfBounds) -> Self {
        WriteError::OutOfBounds
    }
}

/// `value` as a 64-bit word, if it fits: any value from `i64::MIN` to `u64::MAX` (a negative one
/// in two's complement). What an `R_X86_64_64` field, and a data slot a swap rewrites, hold.
#[inline]
pub(crate) fn word64(value: i128) -> Option<u64> {
    if value < i128::from(i64::MIN) || value > i128::from(u64::MAX) {
        return None;
    }
    // In range: the low 64 bits are the word (two's complement for a negative value).
    Some(value as u64)
}

/// The little-endian bytes of `value` in `field`, if it fits.
pub(crate) fn encode(field: Field, value: i128) -> Result<([u8; 8], usize), WriteError> {
    match field {
        Field::Word64 => {
            let word = word64(value).ok_or(WriteError::Overflow)?;
            Ok((word.to_le_bytes(), 8))
        }
        Field::Signed32 => {
            let v = i32::try_from(value).map_err(|_| WriteError::Overflow)?;
            let mut out = [0u8; 8];
            out[..4].copy_from_slice(&v.to_le_bytes());
            Ok((out, 4))
        }
    }
}

/// The one writer: checks that `value` fits `field` and that the field lies inside the mapping,
/// then writes it at `offset`.
pub(crate) fn write(
    mapping: &mut Mapping,
    offset: usize,
    field: Field,
    value: i128,
) -> Result<(), WriteError> {
    let (bytes, len) = encode(field, value)?;
    // Two fixed-size writes rather than one of `len` bytes: each is a single store.
    match len {
        8 => mapping.write(offset, &bytes)?,
        _ => mapping.write(offset, &[bytes[0], bytes[1], bytes[2], bytes[3]])?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_is_in_the_table_once() {
        for t in &TABLE {
            assert_eq!(
                TABLE.iter().filter(|u| u.r_type == t.r_type).count(),
                1,
                "{}",
                t.name
            );
            assert!(core::ptr::eq(lookup(t.r_type).unwrap(), t));
        }
        assert!(lookup(10).is_none(), "R_X86_64_32 is not served");
        assert!(lookup(22).is_none(), "R_X86_64_GOTTPOFF is not served");
    }

    #[test]
    fn signed32_accepts_exactly_the_i32_range() {
        assert_eq!(
            encode(Field::Signed32, -4).unwrap().0[..4],
            (-4i32).to_le_bytes()
        );
        assert!(encode(Field::Signed32, i128::from(i32::MAX)).is_ok());
        assert!(encode(Field::Signed32, i128::from(i32::MIN)).is_ok());
        assert_eq!(
            encode(Field::Signed32, i128::from(i32::MAX) + 1),
            Err(WriteError::Overflow)
        );
        assert_eq!(
            encode(Field::Signed32, i128::from(i32::MIN) - 1),
            Err(WriteError::Overflow)
        );
        // A typical PC-relative distance to the other end of the address space.
        assert_eq!(
            encode(Field::Signed32, 0x7f00_0000_0000 - 0x5500_0000_0000),
            Err(WriteError::Overflow)
        );
    }

    #[test]
    fn word64_takes_addresses_and_negative_addends() {
        let (b, n) = encode(Field::Word64, 0x7fff_1234_5678).unwrap();
        assert_eq!((u64::from_le_bytes(b), n), (0x7fff_1234_5678, 8));
        let (b, _) = encode(Field::Word64, -8).unwrap();
        assert_eq!(i64::from_le_bytes(b), -8);
        assert_eq!(
            encode(Field::Word64, i128::from(u64::MAX) + 1),
            Err(WriteError::Overflow)
        );
    }

    #[test]
    fn pc_relative_arithmetic() {
        // S + A - P for a call 0x100 bytes ahead: the addend -4 accounts for the field's width.
        let (s, a, p) = (0x1000i128 + 0x100, -4i128, 0x1001i128);
        let (b, _) = encode(Field::Signed32, s + a - p).unwrap();
        assert_eq!(i32::from_le_bytes([b[0], b[1], b[2], b[3]]), 0xfb);
    }
}
