//! `.eh_frame`, entry by entry: the linker rewrites it, so its FDEs are compared by what their
//! pointers mean, not by offset.

use super::memory::{read, read_i32, read_u64};
use super::sides::{Meaning, Side};

/// One `.eh_frame` entry, as both images must describe it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct FrameEntry {
    /// What `pc_begin` points to.
    pub(crate) begin: Meaning,
    /// `pc_range`.
    range: u64,
    /// What the LSDA pointer points to, when there is one.
    lsda: Option<Meaning>,
    /// What the CIE's personality routine is, when it has one (through its indirect pointer).
    personality: Option<Meaning>,
}

fn uleb(addr: &mut u64) -> u64 {
    let (mut value, mut shift) = (0u64, 0);
    loop {
        let byte = read::<1>(*addr)[0];
        *addr += 1;
        value |= u64::from(byte & 0x7f) << shift;
        shift += 7;
        if byte & 0x80 == 0 {
            return value;
        }
    }
}

/// Reads a pointer of DWARF encoding `encoding` at `*addr` and moves past it; `None` for an
/// omitted pointer (`0xff`).
fn encoded(encoding: u8, addr: &mut u64) -> Option<u64> {
    if encoding == 0xff {
        return None;
    }
    let at = *addr;
    let value = match encoding & 0x0f {
        0x00 | 0x04 | 0x0c => {
            *addr += 8;
            read_u64(at)
        }
        0x03 => {
            *addr += 4;
            u64::from(u32::from_le_bytes(read::<4>(at)))
        }
        0x0b => {
            *addr += 4;
            read_i32(at) as u64
        }
        other => panic!("pointer encoding {other:#x} in .eh_frame"),
    };
    let value = if encoding & 0x70 == 0x10 {
        at.wrapping_add(value)
    } else {
        value
    };
    Some(if encoding & 0x80 != 0 {
        read_u64(value)
    } else {
        value
    })
}

/// Every FDE of the `.eh_frame` at `start..start + len`, with what its pointers mean.
pub(crate) fn frame_entries(side: &dyn Side, start: u64, len: u64) -> Vec<FrameEntry> {
    let mut out = Vec::new();
    let mut at = start;
    while at + 4 <= start + len {
        let length = u64::from(u32::from_le_bytes(read::<4>(at)));
        if length == 0 {
            break;
        }
        let id_at = at + 4;
        let id = u32::from_le_bytes(read::<4>(id_at));
        if id != 0 {
            // An FDE: its CIE is `id` bytes before the id field.
            let cie = cie_info(side, id_at - u64::from(id));
            let mut p = id_at + 4;
            let begin = encoded(cie.fde_encoding, &mut p).unwrap_or(0);
            let range = encoded(cie.fde_encoding & 0x0f, &mut p).unwrap_or(0);
            let mut lsda = None;
            if cie.has_augmentation_data {
                let aug_len = uleb(&mut p);
                let aug_end = p + aug_len;
                if let Some(encoding) = cie.lsda_encoding {
                    lsda = encoded(encoding, &mut p)
                        .filter(|l| *l != 0)
                        .map(|l| side.meaning_of(l));
                }
                let _ = aug_end;
            }
            out.push(FrameEntry {
                begin: side.meaning_of(begin),
                range,
                lsda,
                personality: cie.personality.clone(),
            });
        }
        at += 4 + length;
    }
    out
}

/// What an FDE needs of its CIE.
struct CieInfo {
    fde_encoding: u8,
    lsda_encoding: Option<u8>,
    has_augmentation_data: bool,
    personality: Option<Meaning>,
}

fn cie_info(side: &dyn Side, cie: u64) -> CieInfo {
    let mut p = cie + 8 + 1; // length, id, version
    let mut augmentation = Vec::new();
    loop {
        let c = read::<1>(p)[0];
        p += 1;
        if c == 0 {
            break;
        }
        augmentation.push(c);
    }
    let _code_align = uleb(&mut p);
    let _data_align = uleb(&mut p);
    let _return_register = uleb(&mut p);
    let mut info = CieInfo {
        fde_encoding: 0,
        lsda_encoding: None,
        has_augmentation_data: augmentation.first() == Some(&b'z'),
        personality: None,
    };
    if info.has_augmentation_data {
        let _len = uleb(&mut p);
        for c in &augmentation[1..] {
            match c {
                b'P' => {
                    let encoding = read::<1>(p)[0];
                    p += 1;
                    info.personality = encoded(encoding, &mut p).map(|f| side.meaning_of(f));
                }
                b'L' => {
                    info.lsda_encoding = Some(read::<1>(p)[0]);
                    p += 1;
                }
                b'R' => {
                    info.fde_encoding = read::<1>(p)[0];
                    p += 1;
                }
                _ => {}
            }
        }
    }
    info
}
