//! Telling the platform's debuggers and profilers ([`crate::platform::Debuggers`]) about cells:
//! when one is published, when a swap changes its state or namespace, when it is freed.

use super::{Mapped, System};
use crate::platform::{CellImage, Platform, TextRange};
use crate::region::Region;
use crate_metadata::{CellId, SectionKind};

impl<P: Platform> System<P> {
    /// Tells the debuggers that cell `id` changed its state or namespace.
    pub(crate) fn tell_debuggers_changed(&self, id: CellId) {
        if let Some(mapped) = self.mapped.get(&id) {
            self.tell_debuggers(id, mapped, false);
        }
    }

    /// Tells the debuggers that cell `id`, mapped as `mapped`, was published (`published`) or
    /// changed.
    pub(crate) fn tell_debuggers(&self, id: CellId, mapped: &Mapped, published: bool) {
        let Some(debuggers) = self.platform.debuggers() else {
            return;
        };
        let Some(cell) = self.registry.cell(id) else {
            return;
        };
        let namespace = cell
            .namespace
            .and_then(|ns| self.namespaces.get(ns))
            .map_or("", |n| n.name.as_str());
        let text = mapped.mapping.region(Region::Text);
        let eh_frame = cell
            .sections
            .iter()
            .find(|s| s.kind == SectionKind::EhFrame && s.size > 0)
            .and_then(|s| {
                let offset = mapped.mapping.offset_of(s.addr)?;
                let bytes = mapped.mapping.read(offset, s.size as usize).ok()?;
                Some((s.addr, bytes))
            });
        let image = CellImage {
            cell,
            namespace,
            text: TextRange {
                start: text.start,
                end: text.start.saturating_add(text.len as u64),
            },
            eh_frame,
        };
        if published {
            debuggers.cell_published(&image);
        } else {
            debuggers.cell_changed(&image);
        }
    }

    /// Tells the debuggers that `mapped` is about to be freed.
    pub(crate) fn tell_debuggers_released(&self, mapped: &Mapped) {
        if let Some(debuggers) = self.platform.debuggers() {
            debuggers.cell_released(mapped.mapping.addr(0));
        }
    }
}
