//! The unwind table checked at build time (DESIGN §13): once every relocation into `.eh_frame` is
//! applied by the build, the table the load registers is the object's bytes as they are, so the
//! check of `crate::eh_frame` can run once, here, and the load only has to see that it registers
//! those very bytes (their [`super::hash_bytes`], recorded in `.cell.prelink`). A table the load
//! would relocate, or one that does not pass, gets no record, and the load checks it as before.

use alloc::vec;

use super::hash_bytes;
use crate::eh_frame::{self, Bounds, Table};
use crate::layout::Layout;
use crate::parse::Object;
use crate_metadata::SectionKind;

/// Two addresses the table is checked at. The check compares the table's pointers with the
/// cell's bounds; a table that passes at both, with the same records moved by exactly the
/// distance between them, has only pointers relative to the cell, so it passes wherever the
/// cell is mapped. (One with an absolute pointer moves by 0 and gets no record.)
const BASES: [u64; 2] = [0x1000_0000_0000, 0x5555_5555_0000];

/// The hash of the unwind table the load of `object` (prelinked, laid out as `layout` with pages of
/// `page` bytes) will register, when the build can vouch for it: no relocation into it is left
/// for the load (`at_load`: per relocation section, how many it applies) and it passes the check
/// at any address. `None` otherwise.
pub(super) fn checked_table(
    object: &Object<'_>,
    layout: &Layout,
    page: usize,
    at_load: &[u32],
) -> Option<u64> {
    let span = layout.eh_frame.filter(|s| s.len > 4)?;
    let mut eh_frames = layout
        .sections
        .iter_enumerated()
        .filter(|(_, p)| p.is_some_and(|p| p.kind == SectionKind::EhFrame));
    let (index, placed) = eh_frames.next()?;
    if eh_frames.next().is_some() || placed.is_none_or(|p| p.offset != span.offset) {
        return None;
    }
    let relocated_at_load = object
        .rela_sections
        .iter()
        .zip(at_load)
        .any(|(rela, left)| rela.target == index && *left > 0);
    if relocated_at_load {
        return None;
    }
    // The table and its zero terminator, as the load copies them into the mapping.
    let bytes = object.section_bytes(index);
    let mut image = vec![0u8; span.len];
    image.get_mut(..bytes.len())?.copy_from_slice(bytes);
    let mapping_len = layout.regions.mapped_len(page)?;
    let [first, second] =
        BASES.map(|base| check_at(&image, span.offset, layout, mapping_len, base));
    let moved = moved_by(&first?, &second?, BASES[1] - BASES[0]);
    moved.then(|| hash_bytes(&image))
}

/// The check of `image` (the table with its terminator) with the mapping at `base`.
fn check_at(
    image: &[u8],
    offset: usize,
    layout: &Layout,
    mapping_len: usize,
    base: u64,
) -> Option<Table> {
    let text = eh_frame::text_ranges(
        layout
            .text()
            .map(|(offset, size)| (base + offset as u64, size as u64)),
    );
    let bounds = Bounds {
        text: &text,
        mapping: (base, base + mapping_len as u64),
    };
    eh_frame::check(image, image.len() - 4, base + offset as u64, &bounds).ok()
}

/// Whether `second` is `first` with every address moved by `distance` (a pointer of 0, no LSDA,
/// stays 0).
fn moved_by(first: &Table, second: &Table, distance: u64) -> bool {
    let moved = |a: u64, b: u64| (a == 0 && b == 0) || b.wrapping_sub(a) == distance;
    first.cies == second.cies
        && first.fdes.len() == second.fdes.len()
        && first.fdes.iter().zip(&second.fdes).all(|(a, b)| {
            a.offset == b.offset
                && a.cie == b.cie
                && a.pc_range == b.pc_range
                && moved(a.pc_begin, b.pc_begin)
                && moved(a.lsda, b.lsda)
        })
}
