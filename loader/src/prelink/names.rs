//! The `.cell.names` section: the names a load gives the cell's metadata, laid out by
//! `cargo cell build` as the load would lay them out, so that the load copies one string instead
//! of finding, checking and copying each name (a fifth of a large cell's load went to that:
//! BENCHMARKS.md).
//!
//! A non-allocated section:
//!
//! ```text
//! "CELLNAM1"                 8 bytes
//! digest: u64 (LE)           the layout the section list is for (super::digest)
//! sections: u32 (LE)         the number of section entries
//! exported: u32 (LE)         the number of exported-symbol entries
//! locals: u32 (LE)           the number of local-function entries
//! text: u32 (LE)             the length of the names' string
//! got: 2 × u32               the GOT's name: start and length in the string
//! stubs: 2 × u32             the call stubs' name
//! sections × 3 × u32         per loaded section, in index order: its index, its name's start
//!                            and length
//! exported × 5 × u32         per exported symbol, in index order: its index, its name's start
//!                            and length, its path's start and length (start u32::MAX: none)
//! locals × 5 × u32           the same per local function
//! text                       UTF-8: every name, back to back
//! ```
//!
//! The load takes the table only when it was made for the load's own layout, and checks it as it
//! reads it: every name inside the string on character boundaries, the sections exactly the
//! loaded ones, the exported symbols exactly the ones it exports, each under the name its symbol
//! table gives (what the namespace binds by), each local function one. A table that fails is
//! ignored whole and the load walks the symbol table ([`crate::names`]). The section names, the
//! local functions' names and the paths are for people and are taken as written, as
//! `.cell.paths` is.

use alloc::vec::Vec;

use crate::le::{u32_at, u64_at};
use crate_metadata::NameSpan;

/// The section's name.
pub const SECTION: &str = ".cell.names";
/// Its first bytes.
const MAGIC: &[u8; 8] = b"CELLNAM1";
/// The header: magic, digest, four counts, two names.
const HEADER: usize = 8 + 8 + 4 * 4 + 4 * 4;
/// A section entry's size.
const SECTION_ENTRY: usize = 3 * 4;
/// A symbol entry's size.
const SYMBOL_ENTRY: usize = 5 * 4;
/// The path start of a symbol that has none.
const NO_PATH: u32 = u32::MAX;

/// A `.cell.names` section whose parts fit their counts; its entries are raw numbers, for the
/// load to check against the object.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Table<'a> {
    pub(crate) digest: u64,
    /// The GOT's name: start and length.
    pub(crate) got: (u32, u32),
    /// The stubs' name.
    pub(crate) stubs: (u32, u32),
    sections: &'a [u8],
    exported: &'a [u8],
    locals: &'a [u8],
    /// The names' string, not yet checked to be UTF-8.
    pub(crate) text: &'a [u8],
}

/// A symbol entry: the symbol's index, its name (start, length) and its path's, if it has one.
pub(crate) type RawSymbol = (u32, (u32, u32), Option<(u32, u32)>);

impl<'a> Table<'a> {
    /// The table in `bytes`; `None` when it is not one or its parts do not add up to its size.
    pub(crate) fn parse(bytes: &'a [u8]) -> Option<Table<'a>> {
        if bytes.len() < HEADER || &bytes[..8] != MAGIC {
            return None;
        }
        let count = |at: usize| u32_at(bytes, at) as usize;
        let (sections, exported, locals, text) = (count(16), count(20), count(24), count(28));
        let sections_len = sections.checked_mul(SECTION_ENTRY)?;
        let exported_len = exported.checked_mul(SYMBOL_ENTRY)?;
        let locals_len = locals.checked_mul(SYMBOL_ENTRY)?;
        let total = HEADER
            .checked_add(sections_len)?
            .checked_add(exported_len)?
            .checked_add(locals_len)?
            .checked_add(text)?;
        if total != bytes.len() {
            return None;
        }
        let (sections, rest) = bytes[HEADER..].split_at(sections_len);
        let (exported, rest) = rest.split_at(exported_len);
        let (locals, text) = rest.split_at(locals_len);
        Some(Table {
            digest: u64_at(bytes, 8),
            got: (u32_at(bytes, 32), u32_at(bytes, 36)),
            stubs: (u32_at(bytes, 40), u32_at(bytes, 44)),
            sections,
            exported,
            locals,
            text,
        })
    }

    /// The section entries: index, name start, name length.
    pub(crate) fn sections(&self) -> impl ExactSizeIterator<Item = (u32, (u32, u32))> + 'a {
        self.sections
            .as_chunks::<SECTION_ENTRY>()
            .0
            .iter()
            .map(|e| {
                let w = |k: usize| u32_at(e, 4 * k);
                (w(0), (w(1), w(2)))
            })
    }

    /// The exported symbols' entries.
    pub(crate) fn exported(&self) -> impl ExactSizeIterator<Item = RawSymbol> + 'a {
        symbols(self.exported)
    }

    /// The local functions' entries.
    pub(crate) fn locals(&self) -> impl ExactSizeIterator<Item = RawSymbol> + 'a {
        symbols(self.locals)
    }
}

fn symbols(bytes: &[u8]) -> impl ExactSizeIterator<Item = RawSymbol> + '_ {
    bytes.as_chunks::<SYMBOL_ENTRY>().0.iter().map(|e| {
        let w = |k: usize| u32_at(e, 4 * k);
        let path = (w(3) != NO_PATH).then(|| (w(3), w(4)));
        (w(0), (w(1), w(2)), path)
    })
}

/// A symbol entry to encode: its index, its name and its path.
pub(crate) type Entry = (u32, NameSpan, Option<NameSpan>);

/// What [`encode`] writes: the names' string and where each name is in it.
pub(crate) struct Parts<'s> {
    pub(crate) digest: u64,
    pub(crate) text: &'s str,
    pub(crate) got: NameSpan,
    pub(crate) stubs: NameSpan,
    /// Per loaded section: its index and its name.
    pub(crate) sections: Vec<(u32, NameSpan)>,
    pub(crate) exported: Vec<Entry>,
    pub(crate) locals: Vec<Entry>,
}

/// The section's bytes.
pub(crate) fn encode(parts: &Parts<'_>) -> Vec<u8> {
    let symbols = parts.exported.len() + parts.locals.len();
    let size =
        HEADER + SECTION_ENTRY * parts.sections.len() + SYMBOL_ENTRY * symbols + parts.text.len();
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&parts.digest.to_le_bytes());
    let word = |out: &mut Vec<u8>, w: u32| out.extend_from_slice(&w.to_le_bytes());
    for n in [
        parts.sections.len(),
        parts.exported.len(),
        parts.locals.len(),
        parts.text.len(),
    ] {
        word(&mut out, n as u32);
    }
    for span in [parts.got, parts.stubs] {
        word(&mut out, span.start());
        word(&mut out, span.len());
    }
    for (index, span) in &parts.sections {
        for w in [*index, span.start(), span.len()] {
            word(&mut out, w);
        }
    }
    for (symbol, name, path) in parts.exported.iter().chain(&parts.locals) {
        let (path_start, path_len) = path.map_or((NO_PATH, 0), |p| (p.start(), p.len()));
        for w in [*symbol, name.start(), name.len(), path_start, path_len] {
            word(&mut out, w);
        }
    }
    out.extend_from_slice(parts.text.as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate_metadata::Names;

    #[test]
    fn a_table_reads_back_what_was_encoded_and_nothing_that_does_not_add_up() {
        let names = Names::from_text(".text.f.gotf::g".into());
        let span = |s, l| names.span(s, l).unwrap();
        let parts = Parts {
            digest: 7,
            text: names.text(),
            got: span(7, 4),
            stubs: span(7, 0),
            sections: alloc::vec![(3, span(0, 7))],
            exported: alloc::vec![(9, span(6, 1), Some(span(11, 4)))],
            locals: alloc::vec![(2, span(6, 1), None)],
        };
        let bytes = encode(&parts);
        let table = Table::parse(&bytes).unwrap();
        assert_eq!(table.digest, 7);
        assert_eq!((table.got, table.stubs), ((7, 4), (7, 0)));
        assert_eq!(table.sections().collect::<Vec<_>>(), [(3, (0, 7))]);
        assert_eq!(
            table.exported().collect::<Vec<_>>(),
            [(9, (6, 1), Some((11, 4)))]
        );
        assert_eq!(table.locals().collect::<Vec<_>>(), [(2, (6, 1), None)]);
        assert_eq!(table.text, names.text().as_bytes());

        assert!(Table::parse(&bytes[..bytes.len() - 1]).is_none(), "cut");
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(Table::parse(&longer).is_none(), "one byte more");
        let mut huge = bytes.clone();
        huge[20..24].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(Table::parse(&huge).is_none(), "a count past the section");
        let mut other = bytes;
        other[0] = b'X';
        assert!(Table::parse(&other).is_none(), "not the magic");
    }
}
