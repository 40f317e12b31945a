//! The only place the loader touches raw memory: a cell's mapping, written through bounds-checked
//! offsets, and slot stores.

use core::sync::atomic::{AtomicU64, Ordering};

use crate::platform::{Memory, PlatformError, Protection};

/// An offset and length that do not lie inside the mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct OutOfBounds;

/// One contiguous mapping that holds a whole cell.
#[derive(Debug)]
pub(crate) struct Mapping {
    base: usize,
    len: usize,
}

impl Mapping {
    /// Maps `len` (page-rounded) bytes of zeroed read-write memory.
    pub(crate) fn new(memory: &dyn Memory, len: usize) -> Result<Mapping, PlatformError> {
        let page = memory.page_size();
        let len = len
            .checked_next_multiple_of(page)
            .ok_or(PlatformError::OutOfMemory { len })?
            .max(page);
        let base = memory.map(len)? as usize;
        Ok(Mapping { base, len })
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The absolute address of `offset`.
    #[inline]
    pub(crate) fn addr(&self, offset: usize) -> u64 {
        (self.base + offset) as u64
    }

    #[inline]
    fn check(&self, offset: usize, len: usize) -> Result<*mut u8, OutOfBounds> {
        let end = offset.checked_add(len).ok_or(OutOfBounds)?;
        if end > self.len {
            return Err(OutOfBounds);
        }
        Ok((self.base + offset) as *mut u8)
    }

    /// Copies `bytes` to `offset`. The region must still be writable (before it is protected).
    #[inline]
    pub(crate) fn write(&mut self, offset: usize, bytes: &[u8]) -> Result<(), OutOfBounds> {
        let dst = self.check(offset, bytes.len())?;
        // SAFETY: `check` proved `offset..offset+len` lies inside this mapping, which is mapped
        // read-write until `protect` narrows it; `&mut self` means nothing else writes it now, and
        // `bytes` cannot overlap it (it is borrowed from the object file or a local buffer).
        unsafe { core::ptr::copy_nonoverlapping(bytes.as_ptr(), dst, bytes.len()) };
        Ok(())
    }

    /// Reads `len` bytes at `offset` (the mapping is readable in every region).
    pub(crate) fn read(&self, offset: usize, len: usize) -> Result<&[u8], OutOfBounds> {
        let src = self.check(offset, len)?;
        // SAFETY: the range is inside the mapping, which stays mapped and readable for the
        // lifetime of `self`; the returned borrow keeps `&self` alive.
        Ok(unsafe { core::slice::from_raw_parts(src, len) })
    }

    /// Changes the protection of `len` bytes at `offset` (page aligned).
    pub(crate) fn protect(
        &self,
        memory: &dyn Memory,
        offset: usize,
        len: usize,
        prot: Protection,
    ) -> Result<(), PlatformError> {
        if len == 0 {
            return Ok(());
        }
        let ptr = self
            .check(offset, len)
            .map_err(|_| PlatformError::Protect {
                addr: self.base + offset,
                len,
                code: 0,
            })?;
        memory.protect(ptr, len, prot)
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
}

impl Mapping {
    /// Unmaps the first `len` bytes (page aligned) and leaves the rest mapped, owned by whoever
    /// the caller hands it to.
    ///
    /// # Safety
    /// Nothing runs or reads the first `len` bytes any more.
    pub(crate) unsafe fn unmap_head(self, memory: &dyn Memory, len: usize) {
        if len > 0 && len <= self.len {
            // SAFETY: a page-aligned prefix of the mapping `new` made; the caller promises it is
            // unused.
            unsafe { memory.unmap(self.base as *mut u8, len) }
        }
    }
}

/// Reads the 8-byte slot at `addr`.
///
/// # Safety
/// `addr` is an 8-byte aligned slot inside a live mapping (or a live host handle slot).
pub(crate) unsafe fn load_slot(addr: u64) -> u64 {
    // SAFETY: the caller promises an aligned, mapped, readable 8-byte word; slots are only ever
    // accessed atomically, so the atomic view is consistent with every other access.
    unsafe { AtomicU64::from_ptr(addr as *mut u64).load(Ordering::Acquire) }
}

/// Stores `value` into the 8-byte slot at `addr` with one atomic store, so a concurrent caller
/// sees either the old or the new address, never a torn one.
///
/// # Safety
/// `addr` is an 8-byte aligned slot inside a live mapping whose page is writable now.
pub(crate) unsafe fn store_slot(addr: u64, value: u64) {
    // SAFETY: the caller promises an aligned 8-byte word in a live mapping whose page is writable
    // now; slots are only ever accessed atomically, so this store never tears.
    unsafe { AtomicU64::from_ptr(addr as *mut u64).store(value, Ordering::Release) }
}
