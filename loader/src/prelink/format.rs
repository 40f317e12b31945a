//! The `.cell.prelink` section: which relocations `cargo cell build` already applied, and for
//! which layout.
//!
//! A non-allocated section:
//!
//! ```text
//! "CELLPRE1"                 8 bytes
//! digest: u64 (LE)           the layout the values were computed for (super::digest)
//! unwind: u64 (LE)           the hash of the unwind table the build checked (super::unwind);
//!                            0: none, the load checks it
//! relas: u32 (LE)            the number of SHT_RELA sections of the object
//! direct: u32 (LE)           the number of entries of the direct list
//! residual: relas × u32      per SHT_RELA section, in header order: how many of its entries,
//!                            the first ones, the load applies in full
//! relative: relas × u32      per SHT_RELA section: how many entries after those are 64-bit
//!                            words inside the cell, which hold their offset in the mapping:
//!                            the load adds the mapping's address (ld.so's R_X86_64_RELATIVE);
//!                            the rest are applied already
//! direct: direct × u32       the symbols the applied relocations reach without a slot
//!                            (PC-relative fields), ascending
//! ```
//!
//! A table that does not fit its object (another number of relocation sections, a count past a
//! section's entries, a symbol past the table) is ignored whole, and the load applies every
//! relocation: the section bytes then hold values the load overwrites.

use alloc::vec::Vec;

use crate::le::{u32_at, u64_at};

/// The section's name.
pub const SECTION: &str = ".cell.prelink";
/// Its first bytes.
const MAGIC: &[u8; 8] = b"CELLPRE1";
/// The header: magic, digest, unwind table hash, two counts.
const HEADER: usize = 8 + 8 + 8 + 4 + 4;

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
        let relas = u32_at(header, 24) as usize;
        let direct = u32_at(header, 28) as usize;
        if relas != entries.len() {
            return None;
        }
        let residual_end = HEADER.checked_add(relas.checked_mul(4)?)?;
        let relative_end = residual_end.checked_add(relas.checked_mul(4)?)?;
        let end = relative_end.checked_add(direct.checked_mul(4)?)?;
        if end != bytes.len() {
            return None;
        }
        let table = Prelink {
            digest: u64_at(header, 8),
            unwind: Some(u64_at(header, 16)).filter(|h| *h != 0),
            residual: &bytes[HEADER..residual_end],
            relative: &bytes[residual_end..relative_end],
            direct: &bytes[relative_end..end],
        };
        let fits = entries
            .enumerate()
            .all(|(k, n)| table.residual(k) as u64 + table.relative(k) as u64 <= n as u64);
        (fits && table.direct().all(|s| s < symbols)).then_some(table)
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
        self.direct
            .as_chunks::<4>()
            .0
            .iter()
            .map(|w| u32::from_le_bytes(*w) as usize)
    }
}

/// The section's bytes.
pub(crate) fn encode(
    digest: u64,
    unwind: Option<u64>,
    residual: &[u32],
    relative: &[u32],
    direct: &[u32],
) -> Vec<u8> {
    debug_assert_eq!(residual.len(), relative.len());
    let mut out = Vec::with_capacity(HEADER + 4 * (2 * residual.len() + direct.len()));
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&digest.to_le_bytes());
    out.extend_from_slice(&unwind.unwrap_or(0).to_le_bytes());
    out.extend_from_slice(&(residual.len() as u32).to_le_bytes());
    out.extend_from_slice(&(direct.len() as u32).to_le_bytes());
    for n in residual.iter().chain(relative).chain(direct) {
        out.extend_from_slice(&n.to_le_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_reads_back() {
        let bytes = encode(0xfeed, Some(0xbeef), &[3, 0, 7], &[0, 2, 1], &[1, 5]);
        let table = Prelink::parse(&bytes, [3, 2, 9].into_iter(), 6).unwrap();
        assert_eq!((table.digest, table.unwind), (0xfeed, Some(0xbeef)));
        assert_eq!(
            (0..3).map(|k| table.relative(k)).collect::<Vec<_>>(),
            [0, 2, 1]
        );
        let none = encode(0xfeed, None, &[], &[], &[]);
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
        let bytes = encode(1, None, &[3, 0], &[0, 0], &[5]);
        // Another number of relocation sections.
        assert!(Prelink::parse(&bytes, [3].into_iter(), 6).is_none());
        // More entries left for the load than the section has, in full or relative.
        assert!(Prelink::parse(&bytes, [2, 0].into_iter(), 6).is_none());
        let relative = encode(1, None, &[3, 0], &[1, 0], &[5]);
        assert!(Prelink::parse(&relative, [4, 0].into_iter(), 6).is_some());
        assert!(Prelink::parse(&relative, [3, 0].into_iter(), 6).is_none());
        // A symbol past the table.
        assert!(Prelink::parse(&bytes, [3, 0].into_iter(), 5).is_none());
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
