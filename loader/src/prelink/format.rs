//! The `.cell.prelink` section: which relocations `cargo cell build` already applied, and for
//! which layout.
//!
//! A non-allocated section:
//!
//! ```text
//! "CELLPRE2"                 8 bytes
//! digest: u64 (LE)           the layout the values were computed for (super::digest)
//! unwind: u64 (LE)           the hash of the unwind table the build checked (super::unwind);
//!                            0: none, the load checks it
//! relas: u32 (LE)            the number of SHT_RELA sections of the object
//! direct: u32 (LE)           the number of entries of the direct list
//! singles: u32 (LE)          the number of the layout's single GOT slots
//! pairs: u32 (LE)            the number of its `TLSGD` pairs
//! stubs: u32 (LE)            the number of its call stubs
//! tlsld: u32 (LE)            1 when it has the `TLSLD` pair, else 0
//! residual: relas × u32      per SHT_RELA section, in header order: how many of its entries,
//!                            the first ones, the load applies in full
//! relative: relas × u32      per SHT_RELA section: how many entries after those are 64-bit
//!                            words inside the cell, which hold their offset in the mapping:
//!                            the load adds the mapping's address (ld.so's R_X86_64_RELATIVE);
//!                            the rest are applied already
//! direct: direct × u32       the symbols the applied relocations reach without a slot
//!                            (PC-relative fields), ascending
//! singles × u32              the symbol of each single GOT slot, in slot order
//! pairs × u32                the symbol of each `TLSGD` pair, in pair order
//! stubs × u32                the symbol of each call stub, in stub order
//! ```
//!
//! The slot lists are the layout's numbering of the GOT and the stubs ([`crate::layout`]), which
//! otherwise takes a walk of every relocation: the load numbers from them, then checks the
//! layout it gets against the digest, and numbers from the relocations when it differs.
//!
//! A table that does not fit its object (another number of relocation sections, a count past a
//! section's entries, a symbol past the table) is ignored whole, and the load applies every
//! relocation: the section bytes then hold values the load overwrites.

use alloc::vec::Vec;

use crate::le::{u32_at, u64_at};

/// The section's name.
pub const SECTION: &str = ".cell.prelink";
/// Its first bytes.
const MAGIC: &[u8; 8] = b"CELLPRE2";
/// The header: magic, digest, unwind table hash, six counts.
const HEADER: usize = 8 + 8 + 8 + 6 * 4;

/// A `.cell.prelink` section read against its object.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Prelink<'a> {
    pub(crate) digest: u64,
    /// The hash of the unwind table the build checked, if it did.
    pub(crate) unwind: Option<u64>,
    /// `relas` little-endian `u32`s.
    residual: &'a [u8],
    /// `relas` little-endian `u32`s.
    relative: &'a [u8],
    /// `direct` little-endian `u32`s.
    direct: &'a [u8],
    /// The layout's numbering of the GOT and the stubs.
    pub(crate) slots: SlotLists<'a>,
}

/// The symbols of a layout's GOT slots, `TLSGD` pairs and call stubs, each list in the layout's
/// order (little-endian `u32`s), and whether it has the `TLSLD` pair.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SlotLists<'a> {
    singles: &'a [u8],
    pairs: &'a [u8],
    stubs: &'a [u8],
    pub(crate) tlsld: bool,
}

impl<'a> SlotLists<'a> {
    /// The symbols of the single GOT slots, in slot order.
    pub(crate) fn singles(&self) -> impl ExactSizeIterator<Item = usize> + 'a {
        words(self.singles)
    }

    /// The symbols of the `TLSGD` pairs, in pair order.
    pub(crate) fn pairs(&self) -> impl ExactSizeIterator<Item = usize> + 'a {
        words(self.pairs)
    }

    /// The symbols of the call stubs, in stub order.
    pub(crate) fn stubs(&self) -> impl ExactSizeIterator<Item = usize> + 'a {
        words(self.stubs)
    }
}

/// The little-endian `u32`s of `bytes` (a multiple of 4 long).
fn words(bytes: &[u8]) -> impl ExactSizeIterator<Item = usize> + '_ {
    bytes
        .as_chunks::<4>()
        .0
        .iter()
        .map(|w| u32::from_le_bytes(*w) as usize)
}

impl<'a> Prelink<'a> {
    /// Reads `bytes` for an object whose relocation sections have `entries` entries each (in
    /// header order) and which has `symbols` symbols; `None` when it does not fit them.
    pub(crate) fn parse(
        bytes: &'a [u8],
        entries: impl ExactSizeIterator<Item = usize>,
        symbols: usize,
    ) -> Option<Prelink<'a>> {
        let header = bytes.get(..HEADER)?;
        if &header[..8] != MAGIC {
            return None;
        }
        let count = |k: usize| u32_at(header, 24 + 4 * k) as usize;
        let [relas, direct, singles, pairs, stubs, tlsld] = core::array::from_fn(count);
        if relas != entries.len() || tlsld > 1 {
            return None;
        }
        // Each list's end, after the header.
        let mut end = HEADER;
        let mut list = |n: usize| -> Option<core::ops::Range<usize>> {
            let start = end;
            end = end.checked_add(n.checked_mul(4)?)?;
            Some(start..end)
        };
        let residual = list(relas)?;
        let relative = list(relas)?;
        let direct = list(direct)?;
        let singles = list(singles)?;
        let pairs = list(pairs)?;
        let stubs = list(stubs)?;
        if end != bytes.len() {
            return None;
        }
        let table = Prelink {
            digest: u64_at(header, 8),
            unwind: Some(u64_at(header, 16)).filter(|h| *h != 0),
            residual: &bytes[residual],
            relative: &bytes[relative],
            direct: &bytes[direct],
            slots: SlotLists {
                singles: &bytes[singles],
                pairs: &bytes[pairs],
                stubs: &bytes[stubs],
                tlsld: tlsld == 1,
            },
        };
        let fits = entries
            .enumerate()
            .all(|(k, n)| table.residual(k) as u64 + table.relative(k) as u64 <= n as u64);
        let s = &table.slots;
        let symbols_fit = (table
            .direct()
            .chain(s.singles())
            .chain(s.pairs())
            .chain(s.stubs()))
        .all(|sym| sym < symbols);
        (fits && symbols_fit).then_some(table)
    }

    /// How many entries of relocation section `k` (in header order) the load applies.
    pub(crate) fn residual(&self, k: usize) -> usize {
        u32_at(self.residual, 4 * k) as usize
    }

    /// How many entries of relocation section `k`, after the [`Prelink::residual`] ones, are
    /// words the load adds the mapping's address to.
    pub(crate) fn relative(&self, k: usize) -> usize {
        u32_at(self.relative, 4 * k) as usize
    }

    /// The symbols the applied relocations reach without a slot.
    pub(crate) fn direct(&self) -> impl Iterator<Item = usize> + 'a {
        words(self.direct)
    }
}

/// A layout's numbering of the GOT and the stubs, as the build writes it: the symbol of each
/// single slot, pair and stub in order, and whether there is the `TLSLD` pair.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Numbering {
    pub(crate) singles: Vec<u32>,
    pub(crate) pairs: Vec<u32>,
    pub(crate) stubs: Vec<u32>,
    pub(crate) tlsld: bool,
}

/// The section's bytes.
pub(crate) fn encode(
    digest: u64,
    unwind: Option<u64>,
    residual: &[u32],
    relative: &[u32],
    direct: &[u32],
    slots: &Numbering,
) -> Vec<u8> {
    debug_assert_eq!(residual.len(), relative.len());
    let Numbering {
        singles,
        pairs,
        stubs,
        tlsld,
    } = slots;
    let lists = [residual, relative, direct, singles, pairs, stubs];
    let words: usize = lists.iter().map(|l| l.len()).sum();
    let mut out = Vec::with_capacity(HEADER + 4 * words);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&digest.to_le_bytes());
    out.extend_from_slice(&unwind.unwrap_or(0).to_le_bytes());
    let counts = [residual, direct, singles, pairs, stubs].map(|l| l.len() as u32);
    for n in counts.iter().chain(&[u32::from(*tlsld)]) {
        out.extend_from_slice(&n.to_le_bytes());
    }
    for n in lists.into_iter().flatten() {
        out.extend_from_slice(&n.to_le_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn a_table_reads_back() {
        let slots = Numbering {
            singles: vec![4, 0, 2],
            pairs: vec![3],
            stubs: vec![2, 4],
            tlsld: true,
        };
        let bytes = encode(
            0xfeed,
            Some(0xbeef),
            &[3, 0, 7],
            &[0, 2, 1],
            &[1, 5],
            &slots,
        );
        let table = Prelink::parse(&bytes, [3, 2, 9].into_iter(), 6).unwrap();
        assert_eq!((table.digest, table.unwind), (0xfeed, Some(0xbeef)));
        let read = &table.slots;
        assert_eq!(read.singles().collect::<Vec<_>>(), [4, 0, 2]);
        assert_eq!(read.pairs().collect::<Vec<_>>(), [3]);
        assert_eq!(read.stubs().collect::<Vec<_>>(), [2, 4]);
        assert!(read.tlsld);
        assert_eq!(
            (0..3).map(|k| table.relative(k)).collect::<Vec<_>>(),
            [0, 2, 1]
        );
        let none = encode(0xfeed, None, &[], &[], &[], &Numbering::default());
        assert_eq!(
            Prelink::parse(&none, [].into_iter(), 0).unwrap().unwind,
            None
        );
        assert_eq!(
            (0..3).map(|k| table.residual(k)).collect::<Vec<_>>(),
            [3, 0, 7]
        );
        assert_eq!(table.direct().collect::<Vec<_>>(), [1, 5]);
    }

    #[test]
    fn a_table_that_does_not_fit_its_object_is_ignored() {
        let none = Numbering::default();
        let bytes = encode(1, None, &[3, 0], &[0, 0], &[5], &none);
        // Another number of relocation sections.
        assert!(Prelink::parse(&bytes, [3].into_iter(), 6).is_none());
        // More entries left for the load than the section has, in full or relative.
        assert!(Prelink::parse(&bytes, [2, 0].into_iter(), 6).is_none());
        let relative = encode(1, None, &[3, 0], &[1, 0], &[5], &none);
        assert!(Prelink::parse(&relative, [4, 0].into_iter(), 6).is_some());
        assert!(Prelink::parse(&relative, [3, 0].into_iter(), 6).is_none());
        // A symbol past the table, in the direct list or a slot list.
        assert!(Prelink::parse(&bytes, [3, 0].into_iter(), 5).is_none());
        for slots in [
            Numbering {
                singles: vec![6],
                ..Numbering::default()
            },
            Numbering {
                pairs: vec![6],
                ..Numbering::default()
            },
            Numbering {
                stubs: vec![0, 6],
                ..Numbering::default()
            },
        ] {
            let past = encode(1, None, &[3, 0], &[0, 0], &[5], &slots);
            assert!(Prelink::parse(&past, [3, 0].into_iter(), 6).is_none());
            assert!(Prelink::parse(&past, [3, 0].into_iter(), 7).is_some());
        }
        // A `TLSLD` flag that is neither 0 nor 1.
        let mut flag = bytes.clone();
        flag[44..48].copy_from_slice(&2u32.to_le_bytes());
        assert!(Prelink::parse(&flag, [3, 0].into_iter(), 6).is_none());
        // Truncated, or with bytes after the lists, or another magic.
        assert!(Prelink::parse(&bytes[..bytes.len() - 1], [3, 0].into_iter(), 6).is_none());
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(Prelink::parse(&longer, [3, 0].into_iter(), 6).is_none());
        let mut other = bytes.clone();
        other[0] = b'X';
        assert!(Prelink::parse(&other, [3, 0].into_iter(), 6).is_none());
        // A count so large the lengths overflow.
        let mut huge = bytes;
        huge[28..32].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(Prelink::parse(&huge, [3, 0].into_iter(), 6).is_none());
    }
}
