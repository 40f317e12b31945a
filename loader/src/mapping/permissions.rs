//! The one permission API: the only code that changes the protection of a cell's memory.
//!
//! As Wasmtime's code memory allows only `publish` and `unpublish`, a cell's mapping changes
//! permissions in exactly two ways:
//!
//! - **publish** ([`Mapping::publish`]): once the loader has written the cell, each region gets its
//!   final protection — text R X, read-only data and relro R, data R W (as mapped, unchanged).
//! - **a relro write window** ([`Mapping::open_relro`]): the relro region (`.data.rel.ro`,
//!   `.init_array`, the GOT) becomes writable for the life of a [`RelroWindow`], which stores only
//!   aligned slot words inside that region and makes it read-only again when it is closed
//!   ([`RelroWindow::close`], which reports a failure) or dropped (which cannot).
//!
//! Slot stores outside a window go only to the data region, which is writable for the cell's
//! whole life ([`Mapping::store_data_slot`]). So W^X holds at every moment: text is the only
//! region that is ever executable, and nothing makes it writable after publish; a window makes
//! writable only the relro region, which is never executable.

use core::sync::atomic::Ordering;

use super::Mapping;
use crate::platform::{Memory, PlatformError, Protection};
use crate::region::{Region, Span};

/// A slot store or load refused: the address is not an aligned word inside the region that is
/// writable for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SlotOutside {
    /// The slot's address.
    pub(crate) slot: u64,
}

impl Mapping {
    /// Gives every region its final protection: text read + execute, read-only data and relro
    /// read only. The data region stays read-write, as mapped.
    pub(crate) fn publish(&self, memory: &dyn Memory) -> Result<(), PlatformError> {
        let regions = *self.regions();
        self.protect(memory, regions.text, Protection::ReadExecute)?;
        // Read-only data and the relro region (which the layout puts right after it) get the
        // same protection: one call for both.
        debug_assert_eq!(regions.read_only.end(), regions.relro.offset);
        let read_only = Span {
            offset: regions.read_only.offset,
            len: regions.read_only.len + regions.relro.len,
        };
        self.protect(memory, read_only, Protection::ReadOnly)
    }

    /// Makes the relro region writable until the returned window is closed or dropped.
    pub(crate) fn open_relro<'m>(
        &'m self,
        memory: &'m dyn Memory,
    ) -> Result<RelroWindow<'m>, PlatformError> {
        let relro = self.regions().relro;
        self.protect(memory, relro, Protection::ReadWrite)?;
        Ok(RelroWindow {
            mapping: self,
            memory,
            relro,
            open: true,
        })
    }

    /// The writable region `slot` is an aligned word of: [`Region::RelRo`] (stored through a
    /// [`RelroWindow`]) or [`Region::Data`] (stored directly); `None` for any other address.
    pub(crate) fn slot_region(&self, slot: u64) -> Option<Region> {
        [Region::RelRo, Region::Data]
            .into_iter()
            .find(|r| self.slot_in(self.regions().get(*r), slot).is_some())
    }

    /// Stores `value` into the slot at `slot` in the data region, which is writable for the whole
    /// life of the cell: one atomic store, so a concurrent reader sees the old or the new value.
    pub(crate) fn store_data_slot(&self, slot: u64, value: u64) -> Result<(), SlotOutside> {
        let word = self
            .slot_in(self.regions().data, slot)
            .ok_or(SlotOutside { slot })?;
        word.store(value, Ordering::Release);
        Ok(())
    }
}

/// The relro region of one mapping, writable while this window is open.
///
/// Every store is checked to be an aligned word inside the region and is one atomic store, so a
/// thread calling through the slot meanwhile reads either the old or the new address.
pub(crate) struct RelroWindow<'m> {
    mapping: &'m Mapping,
    memory: &'m dyn Memory,
    relro: Span,
    open: bool,
}

impl core::fmt::Debug for RelroWindow<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("RelroWindow")
            .field("relro", &self.relro)
            .field("open", &self.open)
            .finish()
    }
}

impl RelroWindow<'_> {
    /// Whether `slot` is an aligned word this window can store.
    pub(crate) fn contains(&self, slot: u64) -> bool {
        self.mapping.slot_in(self.relro, slot).is_some()
    }

    /// Reads the slot at `slot` inside the region.
    pub(crate) fn load(&self, slot: u64) -> Result<u64, SlotOutside> {
        let word = self
            .mapping
            .slot_in(self.relro, slot)
            .ok_or(SlotOutside { slot })?;
        Ok(word.load(Ordering::Acquire))
    }

    /// Stores `value` into the slot at `slot` inside the region.
    pub(crate) fn store(&self, slot: u64, value: u64) -> Result<(), SlotOutside> {
        let word = self
            .mapping
            .slot_in(self.relro, slot)
            .ok_or(SlotOutside { slot })?;
        word.store(value, Ordering::Release);
        Ok(())
    }

    /// Makes the region read-only again. On failure it stays writable (never executable).
    pub(crate) fn close(mut self) -> Result<(), PlatformError> {
        self.open = false;
        self.mapping
            .protect(self.memory, self.relro, Protection::ReadOnly)
    }
}

impl Drop for RelroWindow<'_> {
    fn drop(&mut self) {
        if self.open {
            // Nobody to report to: a region that stays writable is still never executable.
            let _ = self
                .mapping
                .protect(self.memory, self.relro, Protection::ReadOnly);
        }
    }
}
