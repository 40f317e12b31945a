//! The `.cell.paths` section: the demangled path of every function of a cell object, written once
//! by `cargo cell build` so that a load does not demangle them again (the GDB symbol file names
//! every function; demangling them was a fifth of a `memfs` load, BENCHMARKS.md).
//!
//! A non-allocated section, indexed by the object's symbol table:
//!
//! ```text
//! "CELLPATH"                       8 bytes
//! count: u32 (LE)                  the number of symbols of the object
//! entries: count × (u32, u32) (LE) where symbol i's path starts in the strings and its length;
//!                                  start u32::MAX: none
//! strings                          UTF-8, back to back
//! ```
//!
//! (Lengths rather than terminators: a load reads a path without looking for its end.) The paths
//! are for people only: a table that does not fit the object (another symbol count, an entry past
//! the strings, a string that is not UTF-8) is ignored, entry by entry or whole, and the loader
//! demangles instead.

use alloc::vec::Vec;

/// The section's name.
pub const SECTION: &str = ".cell.paths";
/// Its first bytes.
pub const MAGIC: &[u8; 8] = b"CELLPATH";
/// The offset of a symbol that has no path.
const NONE: u32 = u32::MAX;

/// The section's bytes for an object whose symbols (by index) have the paths `paths`.
pub fn encode<S: AsRef<str>>(paths: &[Option<S>]) -> Vec<u8> {
    let mut strings = Vec::new();
    let mut out = Vec::with_capacity(12 + ENTRY * paths.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(paths.len() as u32).to_le_bytes());
    for path in paths {
        let (start, len) = match path {
            Some(p) => {
                let at = strings.len() as u32;
                strings.extend_from_slice(p.as_ref().as_bytes());
                (at, p.as_ref().len() as u32)
            }
            None => (NONE, 0),
        };
        out.extend_from_slice(&start.to_le_bytes());
        out.extend_from_slice(&len.to_le_bytes());
    }
    out.extend_from_slice(&strings);
    out
}

/// The size of one entry.
const ENTRY: usize = 8;

/// A `.cell.paths` section read against its object.
#[derive(Clone, Copy, Debug, Default)]
pub struct PathTable<'a> {
    entries: &'a [u8],
    strings: &'a [u8],
    /// `strings` when all of it is UTF-8 (checked once, not once per path).
    text: Option<&'a str>,
}

impl<'a> PathTable<'a> {
    /// The table in `bytes`, when it is one for an object of `symbols` symbols.
    pub fn parse(bytes: &'a [u8], symbols: usize) -> Option<PathTable<'a>> {
        let rest = bytes.strip_prefix(MAGIC)?;
        let (count, rest) = rest.split_first_chunk::<4>()?;
        if u32::from_le_bytes(*count) as usize != symbols {
            return None;
        }
        let (entries, strings) = rest.split_at_checked(symbols.checked_mul(ENTRY)?)?;
        let text = core::str::from_utf8(strings).ok();
        Some(PathTable {
            entries,
            strings,
            text,
        })
    }

    /// The path of symbol `index`, if the table has a good one.
    pub fn get(&self, index: usize) -> Option<&'a str> {
        let at = index.checked_mul(ENTRY)?;
        let entry: &[u8; ENTRY] = self.entries.get(at..)?.first_chunk()?;
        let [s0, s1, s2, s3, l0, l1, l2, l3] = *entry;
        let start = u32::from_le_bytes([s0, s1, s2, s3]);
        if start == NONE {
            return None;
        }
        let len = u32::from_le_bytes([l0, l1, l2, l3]);
        let range = start as usize..(start as usize).checked_add(len as usize)?;
        match self.text {
            // A range that splits a character is refused here as `from_utf8` refuses it.
            Some(text) => text.get(range),
            None => core::str::from_utf8(self.strings.get(range)?).ok(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_come_back_by_symbol_index() {
        let bytes = encode(&[
            None,
            Some("memfs::read"),
            None,
            Some("<memfs::Dir as memfs::Inode>::read"),
        ]);
        let t = PathTable::parse(&bytes, 4).expect("a table");
        assert_eq!(t.get(0), None);
        assert_eq!(t.get(1), Some("memfs::read"));
        assert_eq!(t.get(3), Some("<memfs::Dir as memfs::Inode>::read"));
        assert_eq!(t.get(4), None);
        assert_eq!(t.get(usize::MAX), None);
    }

    #[test]
    fn a_path_that_splits_a_character_is_none() {
        let mut bytes = encode(&[Some("é::x"), Some("a::b")]);
        bytes[16..20].copy_from_slice(&1u32.to_le_bytes()); // the first path: half of `é`
        let t = PathTable::parse(&bytes, 2).expect("a table");
        assert_eq!((t.get(0), t.get(1)), (None, Some("a::b")));
    }

    #[test]
    fn a_table_that_does_not_fit_is_ignored() {
        let bytes = encode(&[Some("a::b"), Some("c::d")]);
        assert!(
            PathTable::parse(&bytes, 3).is_none(),
            "another symbol count"
        );
        assert!(
            PathTable::parse(&bytes[..10], 2).is_none(),
            "truncated header"
        );
        assert!(
            PathTable::parse(&bytes[..15], 2).is_none(),
            "truncated offsets"
        );
        assert!(
            PathTable::parse(b"CELLPATX\x00\x00\x00\x00", 0).is_none(),
            "magic"
        );
        assert!(
            PathTable::parse(&bytes[..19], 2).is_none(),
            "truncated entries"
        );
        // A string cut short or not UTF-8 only loses that entry.
        let cut = PathTable::parse(&bytes[..bytes.len() - 1], 2).expect("the header holds");
        assert_eq!((cut.get(0), cut.get(1)), (Some("a::b"), None));
        let mut bad = bytes.clone();
        let first = 12 + 2 * ENTRY;
        bad[first] = 0xff;
        let bad = PathTable::parse(&bad, 2).expect("the header holds");
        assert_eq!((bad.get(0), bad.get(1)), (None, Some("c::d")));
        for (start, len) in [(1000, 1), (0, 1000), (u32::MAX - 1, 4)] {
            let mut wild = bytes.clone();
            wild[12..16].copy_from_slice(&u32::to_le_bytes(start));
            wild[16..20].copy_from_slice(&u32::to_le_bytes(len));
            assert_eq!(
                PathTable::parse(&wild, 2).unwrap().get(0),
                None,
                "{start} {len}"
            );
        }
    }
}
