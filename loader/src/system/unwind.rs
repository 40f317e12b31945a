//! A cell's unwind table, checked by `eh_frame.rs`: at load, on the relocated copy before
//! `publish` registers it, and on request for a loaded cell ([`System::unwind_table`]: its FDEs
//! as the unwinder reads them).

use super::System;
use crate::eh_frame::{self, Bounds, EhFrameError, Table};
use crate::error::{malformed, LoadError};
use crate::layout::Layout;
use crate::malformation::Malformation;
use crate::mapping::Mapping;
use crate::platform::Platform;
use crate::prelink;
use crate_metadata::{CellId, SectionKind};

/// The section every fault names.
const SECTION: &str = ".eh_frame";

/// Checks the relocated `.eh_frame` as the unwinder will read it, before `publish` registers it:
/// its FDEs must cover the cell's text sections, its personality slots and LSDAs lie in the
/// cell's mapping. When the build checked the table (`checked_at_build`, its hash from the
/// object's `.cell.prelink`: `crate::prelink`) and the relocated bytes are those, the check is
/// not run again; returns whether that was so.
pub(super) fn check_unwind_table(
    cell: &str,
    layout: &Layout,
    mapping: &Mapping,
    checked_at_build: Option<u64>,
) -> Result<bool, LoadError> {
    // `publish` registers only a table with something before its terminator.
    let Some(span) = layout.eh_frame.filter(|s| s.len > 4) else {
        return Ok(false);
    };
    let bytes = mapping.read(span.offset, span.len).map_err(|_| {
        let section = SECTION.into();
        malformed(cell, Malformation::SectionOutsideMapping { section })
    })?;
    // Any one word changed changes the hash (each step of the mix is a bijection), so a corrupted
    // table is checked, and refused, as without a record.
    if checked_at_build.is_some_and(|h| h == prelink::hash_bytes(bytes)) {
        return Ok(true);
    }
    let text = eh_frame::text_ranges(
        layout
            .text()
            .map(|(offset, size)| (mapping.addr(offset), size as u64)),
    );
    let addr = mapping.addr(span.offset);
    checked(bytes, span.len - 4, addr, &text, mapping)
        .map(|_| false)
        .map_err(|e| {
            let what = Malformation::EhFrame {
                section: SECTION.into(),
                offset: e.offset as u64,
                fault: e.fault,
            };
            malformed(cell, what)
        })
}

impl<P: Platform> System<P> {
    /// The unwind table of the loaded cell `id`, checked again where it lies (its FDEs at the
    /// addresses the unwinder reads); `None` when the cell is not mapped or has no `.eh_frame`.
    /// An `Err` would mean the table registered at load no longer passes the check.
    pub fn unwind_table(&self, id: CellId) -> Option<Result<Table, EhFrameError>> {
        let mapping = &self.mapped.get(&id)?.mapping;
        let cell = self.registry.cell(id)?;
        let eh = cell
            .sections
            .iter()
            .find(|s| s.kind == SectionKind::EhFrame)?;
        let text = cell.sections.iter().filter(|s| s.kind == SectionKind::Text);
        let text = eh_frame::text_ranges(text.map(|s| (s.addr, s.size)));
        let len = usize::try_from(eh.size).ok()?;
        let bytes = mapping
            .read(mapping.offset_of(eh.addr)?, len.checked_add(4)?)
            .ok()?;
        Some(checked(bytes, len, eh.addr, &text, mapping))
    }
}

fn checked(
    bytes: &[u8],
    len: usize,
    addr: u64,
    text: &[(u64, u64)],
    mapping: &Mapping,
) -> Result<Table, EhFrameError> {
    let bounds = Bounds {
        text,
        mapping: (mapping.addr(0), mapping.addr(mapping.len())),
    };
    eh_frame::check(bytes, len, addr, &bounds)
}
