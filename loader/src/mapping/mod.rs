//! The only place the loader touches raw memory: a cell's mapping, written through bounds-checked
//! offsets, and its slots, read and stored one aligned atomic word at a time.
//!
//! A [`Mapping`] knows its four [`Regions`]. Before the cell is published the loader writes it
//! through [`Mapping::write`]; after that, permissions change only through the two operations of
//! [`permissions`] (publish the layout, or open a relro write window), and a slot is stored only
//! where it is writable: through an open [`permissions::RelroWindow`], or in the data region.

pub(crate) mod permissions;

use core::sync::atomic::{AtomicU64, Ordering};

use crate::platform::{Memory, PlatformError, Protection};
use crate::region::{Region, Regions, Span};

/// An offset and length that do not lie inside the mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct OutOfBounds;

/// A range of absolute addresses: a region of a mapping, or a data range a cell adopted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct AddrRange {
    /// The first address.
    pub(crate) start: u64,
    /// The length in bytes.
    pub(crate) len: usize,
}

impl AddrRange {
    /// Whether `addr` lies inside the range.
    pub(crate) fn contains(&self, addr: u64) -> bool {
        addr.checked_sub(self.start)
            .is_some_and(|off| off < self.len as u64)
    }

    /// Whether the 8-byte word at `addr` lies inside the range and is aligned.
    pub(crate) fn holds_slot(&self, addr: u64) -> bool {
        addr.is_multiple_of(8)
            && addr
                .checked_sub(self.start)
                .is_some_and(|off| off.checked_add(8).is_some_and(|end| end <= self.len as u64))
    }
}

/// One contiguous mapping that holds a whole cell.
#[derive(Debug)]
pub(crate) struct Mapping {
    base: usize,
    len: usize,
    regions: Regions,
    /// Whether every byte was zero when it was mapped.
    zeroed: bool,
}

impl Mapping {
    /// Maps zeroed read-write memory for `regions` (their total, rounded up to whole pages).
    pub(crate) fn new(memory: &dyn Memory, regions: Regions) -> Result<Mapping, PlatformError> {
        let len = Mapping::len_for(memory, &regions)?;
        let base = memory.map(len)? as usize;
        Ok(Mapping {
            base,
            len,
            regions,
            zeroed: true,
        })
    }

    /// Maps read-write memory for `regions` that the caller overwrites or clears whole before
    /// anything reads it ([`Memory::map_for_overwrite`]; [`Mapping::zeroed`] says whether it
    /// must clear).
    pub(crate) fn for_overwrite(
        memory: &dyn Memory,
        regions: Regions,
    ) -> Result<Mapping, PlatformError> {
        let len = Mapping::len_for(memory, &regions)?;
        let (base, zeroed) = memory.map_for_overwrite(len)?;
        Ok(Mapping {
            base: base as usize,
            len,
            regions,
            zeroed,
        })
    }

    /// The length of a mapping for `regions`: their total, rounded up to whole pages.
    fn len_for(memory: &dyn Memory, regions: &Regions) -> Result<usize, PlatformError> {
        regions
            .mapped_len(memory.page_size())
            .ok_or(PlatformError::OutOfMemory {
                len: regions.total(),
            })
    }

    /// Whether every byte was zero when the mapping was made.
    pub(crate) fn zeroed(&self) -> bool {
        self.zeroed
    }

    /// The mapped length (whole pages).
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Where each region is.
    pub(crate) fn regions(&self) -> &Regions {
        &self.regions
    }

    /// The absolute address of `offset`, which is at most the mapping's length (every offset the
    /// layout made is): the mapping lies in the address space, so the sum cannot overflow.
    #[inline]
    pub(crate) fn addr(&self, offset: usize) -> u64 {
        debug_assert!(offset <= self.len, "offset {offset:#x} past the mapping");
        (self.base + offset) as u64
    }

    /// The absolute address of `offset`, `None` when it lies past the end of the mapping.
    #[inline]
    pub(crate) fn checked_addr(&self, offset: usize) -> Option<u64> {
        (offset <= self.len).then(|| self.addr(offset))
    }

    /// The offset of the absolute address `addr`, `None` when it lies outside the mapping.
    pub(crate) fn offset_of(&self, addr: u64) -> Option<usize> {
        let offset = usize::try_from(addr).ok()?.checked_sub(self.base)?;
        (offset < self.len).then_some(offset)
    }

    /// Region `r`, in absolute addresses.
    pub(crate) fn region(&self, r: Region) -> AddrRange {
        let span = self.regions.get(r);
        AddrRange {
            start: self.addr(span.offset),
            len: span.len,
        }
    }

    #[inline]
    fn check(&self, offset: usize, len: usize) -> Result<*mut u8, OutOfBounds> {
        let end = offset.checked_add(len).ok_or(OutOfBounds)?;
        if end > self.len {
            return Err(OutOfBounds);
        }
        Ok((self.base + offset) as *mut u8)
    }

    /// Copies `bytes` to `offset`. The region must still be writable (before it is published).
    #[inline]
    pub(crate) fn write(&mut self, offset: usize, bytes: &[u8]) -> Result<(), OutOfBounds> {
        let dst = self.check(offset, bytes.len())?;
        // SAFETY: `check` proved `offset..offset+len` lies inside this mapping, which is mapped
        // read-write until it is published; `&mut self` means nothing else writes it now, and
        // `bytes` cannot overlap it (it is borrowed from the object file or a local buffer).
        unsafe { core::ptr::copy_nonoverlapping(bytes.as_ptr(), dst, bytes.len()) };
        Ok(())
    }

    /// Sets `len` bytes at `offset` to zero. The region must still be writable (before it is
    /// published).
    pub(crate) fn clear(&mut self, offset: usize, len: usize) -> Result<(), OutOfBounds> {
        let dst = self.check(offset, len)?;
        // SAFETY: as in `write`: inside this mapping, read-write until published, and `&mut self`
        // means nothing else writes it now.
        unsafe { core::ptr::write_bytes(dst, 0, len) };
        Ok(())
    }

    /// Reads `len` bytes at `offset` (the mapping is readable in every region).
    pub(crate) fn read(&self, offset: usize, len: usize) -> Result<&[u8], OutOfBounds> {
        let src = self.check(offset, len)?;
        // SAFETY: the range is inside the mapping, which stays mapped and readable for the
        // lifetime of `self`; the returned borrow keeps `&self` alive.
        Ok(unsafe { core::slice::from_raw_parts(src, len) })
    }

    /// The slot word at the absolute address `slot`, if it is an aligned word inside `range` (a
    /// part of this mapping).
    fn slot_in(&self, range: Span, slot: u64) -> Option<&AtomicU64> {
        let range = AddrRange {
            start: self.checked_addr(range.offset)?,
            len: range.len.min(self.len.saturating_sub(range.offset)),
        };
        if !range.holds_slot(slot) {
            return None;
        }
        // SAFETY: `slot` is an 8-byte aligned word inside this mapping (checked just above: the
        // range lies inside it), which stays mapped while `&self` lives, and is readable in every
        // region. Slots are only ever accessed atomically (these atomics and the cells' own
        // loads), so an atomic view of the word is consistent with every other access.
        Some(unsafe { AtomicU64::from_ptr(slot as usize as *mut u64) })
    }

    /// Reads the slot at the absolute address `slot`, `None` when it is not an aligned word inside
    /// the mapping.
    pub(crate) fn load_slot(&self, slot: u64) -> Option<u64> {
        let whole = Span {
            offset: 0,
            len: self.len,
        };
        Some(self.slot_in(whole, slot)?.load(Ordering::Acquire))
    }

    /// Changes the protection of `span` (page aligned). Private: [`permissions`] is the only
    /// caller.
    fn protect(
        &self,
        memory: &dyn Memory,
        span: Span,
        prot: Protection,
    ) -> Result<(), PlatformError> {
        if span.len == 0 {
            return Ok(());
        }
        let ptr = self
            .check(span.offset, span.len)
            .map_err(|_| PlatformError::Protect {
                addr: self.base.wrapping_add(span.offset),
                len: span.len,
                code: 0,
            })?;
        memory.protect(ptr, span.len, prot)
    }

    /// Unmaps the memory.
    ///
    /// # Safety
    /// Nothing runs or reads the cell any more.
    pub(crate) unsafe fn unmap(self, memory: &dyn Memory) {
        // SAFETY: `base`/`len` are exactly what `map` returned (see `new`), and the caller
        // promises the cell is unused.
        unsafe { memory.unmap(self.base as *mut u8, self.len) }
    }

    /// Unmaps everything before the data region and leaves the data region mapped, owned by
    /// whoever the caller hands it to.
    ///
    /// # Safety
    /// Nothing runs or reads the cell's text, read-only data or relro data any more.
    pub(crate) unsafe fn unmap_all_but_data(self, memory: &dyn Memory) {
        let head = self.regions.data.offset;
        if head > 0 && head <= self.len {
            // SAFETY: a page-aligned prefix of the mapping `new` made (regions are page aligned);
            // the caller promises it is unused.
            unsafe { memory.unmap(self.base as *mut u8, head) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_ranges_hold_aligned_words_inside_them() {
        let r = AddrRange {
            start: 0x1000,
            len: 0x20,
        };
        assert!(r.contains(0x1000) && r.contains(0x101f) && !r.contains(0x1020));
        assert!(!r.contains(0xfff));
        assert!(r.holds_slot(0x1000) && r.holds_slot(0x1018));
        assert!(!r.holds_slot(0x1020), "past the end");
        assert!(!r.holds_slot(0x1004), "unaligned");
        assert!(!r.holds_slot(0xff8), "before the start");
        let top = AddrRange {
            start: u64::MAX - 7,
            len: 8,
        };
        assert!(
            top.holds_slot(u64::MAX - 7),
            "the last word of the address space"
        );
        assert!(!top.holds_slot(u64::MAX - 3), "unaligned at the top");
        assert!(!r.holds_slot(!7));
    }
}
