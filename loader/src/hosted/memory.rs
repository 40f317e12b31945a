//! Cell memory: anonymous `mmap` mappings, narrowed with `mprotect`; a released one is kept for
//! the next mapping of its length (`pool.rs`).
//!
//! [`Memory::protect`] is a safe method, so it only touches memory this [`Hosted`] mapped: each
//! live mapping is recorded, and a region outside them is refused with `EINVAL` instead of being
//! passed to `mprotect` (which could otherwise revoke access to memory Rust code relies on).

use std::borrow::ToOwned;
use std::collections::BTreeMap;
use std::io;
use std::string::String;
use std::sync::{MutexGuard, PoisonError};
use std::vec;
use std::vec::Vec;

use super::pool::Pool;
use super::Hosted;
use crate::platform::{Memory, PlatformError, Protection};

/// The live mappings of one [`Hosted`]: start address -> length (rounded up to whole pages).
#[derive(Default)]
pub(super) struct Mappings(BTreeMap<usize, usize>);

impl Mappings {
    /// How many ranges are recorded, and their total length.
    pub(super) fn totals(&self) -> (usize, usize) {
        (self.0.len(), self.0.values().sum())
    }

    /// Forgets `addr..addr+len`, which lies inside one recorded mapping; what remains of that
    /// mapping before and after the range stays recorded.
    fn remove(&mut self, addr: usize, len: usize) {
        let Some((&start, &mlen)) = self.0.range(..=addr).next_back() else {
            return;
        };
        let (end, mend) = (addr.saturating_add(len), start + mlen);
        if addr >= mend {
            return;
        }
        self.0.remove(&start);
        if start < addr {
            self.0.insert(start, addr - start);
        }
        if end < mend {
            self.0.insert(end, mend - end);
        }
    }

    /// Whether `addr..addr + len` lies inside one recorded mapping.
    fn contains(&self, addr: usize, len: usize) -> bool {
        let Some(end) = addr.checked_add(len) else {
            return false;
        };
        self.0
            .range(..=addr)
            .next_back()
            .is_some_and(|(&start, &mlen)| end <= start + mlen)
    }
}

/// The system page size.
pub(super) fn system_page_size() -> usize {
    // SAFETY: sysconf has no preconditions; it only reads a system constant.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(size).unwrap_or(4096)
}

/// The largest mapping that [`Memory::map`] populates up front (see there): the largest the pool
/// keeps.
const POPULATE_MAX: usize = super::pool::MAX_REGION;

impl Memory for Hosted {
    fn page_size(&self) -> usize {
        self.page_size
    }

    fn map(&self, len: usize) -> Result<*mut u8, PlatformError> {
        let rounded = self.rounded(len)?;
        if let Some(addr) = self.reuse(rounded, true) {
            return Ok(addr);
        }
        // A cell's mapping is written almost page by page while it loads (every section but
        // `.bss`), so a small one is populated by the `mmap` itself: one call instead of a page
        // fault per page (memfs: 12 faults, about 3 µs of its load). A large one (a big `.bss`)
        // is left to fault in as it is used, so its untouched pages cost no memory.
        let populate = if rounded <= POPULATE_MAX {
            libc::MAP_POPULATE
        } else {
            0
        };
        // SAFETY: a new private anonymous mapping without an address hint cannot overlap any
        // existing memory; the kernel picks a free range or fails.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | populate,
                -1,
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(PlatformError::OutOfMemory { len });
        }
        let mut mappings = self.mappings.lock().unwrap_or_else(PoisonError::into_inner);
        mappings.0.insert(addr as usize, rounded);
        Ok(addr.cast())
    }

    fn map_for_overwrite(&self, len: usize) -> Result<(*mut u8, bool), PlatformError> {
        match self.reuse(self.rounded(len)?, false) {
            Some(addr) => Ok((addr, false)),
            None => Ok((self.map(len)?, true)),
        }
    }

    fn protect(&self, addr: *mut u8, len: usize, prot: Protection) -> Result<(), PlatformError> {
        let error = |code| PlatformError::Protect {
            addr: addr as usize,
            len,
            code,
        };
        let flags = match prot {
            Protection::ReadWrite => libc::PROT_READ | libc::PROT_WRITE,
            Protection::ReadOnly => libc::PROT_READ,
            Protection::ReadExecute => libc::PROT_READ | libc::PROT_EXEC,
        };
        let mappings = self.mappings.lock().unwrap_or_else(PoisonError::into_inner);
        if !mappings.contains(addr as usize, len) {
            return Err(error(libc::EINVAL));
        }
        // SAFETY: the region lies inside a live mapping made by `map` (checked above; the lock
        // keeps it from being unmapped meanwhile). Such a mapping holds only cell bytes that the
        // loader and the cells reach through raw pointers, never a Rust object of the host.
        let rc = unsafe { libc::mprotect(addr.cast(), len, flags) };
        if rc == 0 {
            Ok(())
        } else {
            Err(error(
                io::Error::last_os_error().raw_os_error().unwrap_or(0),
            ))
        }
    }

    unsafe fn unmap(&self, addr: *mut u8, len: usize) {
        let mut mappings = self.mappings.lock().unwrap_or_else(PoisonError::into_inner);
        let whole = mappings.0.get(&(addr as usize)) == Some(&len);
        mappings.remove(addr as usize, len);
        drop(mappings);
        // A whole mapping small enough is kept for the next one of its length, inaccessible
        // meanwhile; a part of one (a retired cell's code) or a large one is unmapped.
        let whole = whole && Pool::keeps(len);
        // SAFETY: the caller guarantees `addr..addr+len` is a page-aligned part of a mapping made
        // by `map` that nothing uses any more, and it is no longer recorded as live, so `protect`
        // refuses it from now on.
        let kept = whole && unsafe { libc::mprotect(addr.cast(), len, libc::PROT_NONE) } == 0;
        let unmapped = match kept {
            true => self.pool().put(addr as usize, len),
            false => vec![(addr as usize, len)],
        };
        for (addr, len) in unmapped {
            // SAFETY: a region nothing uses any more: the caller's, or one the pool let go (which
            // no mapping handed out refers to). munmap can only fail for a range that is not
            // mapped, and then there is nothing to undo.
            unsafe { libc::munmap(addr as *mut libc::c_void, len) };
        }
    }
}

impl Hosted {
    /// `len` rounded up to whole pages.
    fn rounded(&self, len: usize) -> Result<usize, PlatformError> {
        len.checked_next_multiple_of(self.page_size)
            .ok_or(PlatformError::OutOfMemory { len })
    }

    /// A kept mapping of exactly `len` bytes (page-rounded), made read-write, cleared when `clear`
    /// (else as it was released) and recorded as live, if the pool has one.
    fn reuse(&self, len: usize, clear: bool) -> Option<*mut u8> {
        let addr = self.pool().take(len)? as *mut u8;
        // SAFETY: a region this `Hosted` mapped and released: nothing uses it (`unmap`'s
        // contract) and nothing else can be mapped over it while it is kept.
        if unsafe { libc::mprotect(addr.cast(), len, libc::PROT_READ | libc::PROT_WRITE) } != 0 {
            // SAFETY: as above; it is no longer kept either.
            unsafe { libc::munmap(addr.cast(), len) };
            return None;
        }
        if clear {
            // SAFETY: `len` writable bytes at `addr` (just made so) that nothing else refers to.
            unsafe { std::ptr::write_bytes(addr, 0, len) };
        }
        let mut mappings = self.mappings.lock().unwrap_or_else(PoisonError::into_inner);
        mappings.0.insert(addr as usize, len);
        Some(addr)
    }

    fn pool(&self) -> MutexGuard<'_, Pool> {
        self.pool.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The released mappings kept for reuse (`pool.rs`): how many, and their bytes. They are
    /// inaccessible, and counted neither as live ([`Hosted::live_mappings`]) nor as a cell's.
    pub fn pooled_mappings(&self) -> (usize, usize) {
        self.pool().totals()
    }

    /// Unmaps every released mapping kept for reuse, as `malloc_trim` gives free memory back.
    pub fn trim(&self) {
        let kept = self.pool().drain();
        for (addr, len) in kept {
            // SAFETY: a kept region: mapped by this `Hosted`, released, and handed to no one.
            unsafe { libc::munmap(addr as *mut libc::c_void, len) };
        }
    }
}

impl Drop for Hosted {
    fn drop(&mut self) {
        self.trim();
    }
}

/// The number of mappings of this process (lines of `/proc/self/maps`).
pub fn count_mappings() -> io::Result<usize> {
    Ok(std::fs::read_to_string("/proc/self/maps")?.lines().count())
}

/// The lines of `/proc/self/maps` whose mapping is both writable and executable (W^X says: none).
pub fn writable_executable_mappings() -> io::Result<Vec<String>> {
    let maps = std::fs::read_to_string("/proc/self/maps")?;
    Ok(maps
        .lines()
        .filter(|line| {
            let perms = line.split_whitespace().nth(1).unwrap_or("");
            perms.contains('w') && perms.contains('x')
        })
        .map(str::to_owned)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The permissions of the memory at `start..end` from `/proc/self/maps`: `None` when none of
    /// it is mapped, the permissions when all of it is mapped with the same ones (the kernel may
    /// have merged it with a neighbouring mapping of the same kind, so the line can be longer
    /// than the range), `"mixed"` otherwise.
    fn maps_perms(start: usize, end: usize) -> Option<String> {
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        let mut covered = 0;
        let mut perms: Vec<&str> = Vec::new();
        for line in maps.lines() {
            let mut fields = line.split_whitespace();
            let (Some(range), Some(p)) = (fields.next(), fields.next()) else {
                continue;
            };
            let Some((lo, hi)) = range.split_once('-') else {
                continue;
            };
            let lo = usize::from_str_radix(lo, 16).unwrap();
            let hi = usize::from_str_radix(hi, 16).unwrap();
            if hi <= start || lo >= end {
                continue;
            }
            covered += hi.min(end) - lo.max(start);
            perms.push(p);
        }
        match perms.first() {
            None => None,
            Some(first) if covered == end - start && perms.iter().all(|p| p == first) => {
                Some((*first).to_owned())
            }
            Some(_) => Some("mixed".to_owned()),
        }
    }

    #[test]
    fn map_protect_unmap_round_trip() {
        let hosted = Hosted::new().unwrap();
        let page = hosted.page_size();
        assert!(page.is_power_of_two() && page >= 4096);
        let len = 7 * page;
        let base = hosted.map(len).unwrap();
        let at = |pages: usize| base as usize + pages * page;
        assert_eq!(base as usize % page, 0);

        // SAFETY: `base` is a fresh, zeroed, writable mapping of `len` bytes that only this test
        // uses.
        let bytes = unsafe { std::slice::from_raw_parts_mut(base, len) };
        assert!(bytes.iter().all(|&b| b == 0), "a new mapping is zeroed");
        bytes[0] = 0xc3;
        bytes[page] = 7;

        hosted.protect(base, page, Protection::ReadExecute).unwrap();
        let second = base.wrapping_add(page);
        hosted
            .protect(second, 5 * page, Protection::ReadOnly)
            .unwrap();
        assert_eq!(maps_perms(at(0), at(1)).as_deref(), Some("r-xp"));
        assert_eq!(maps_perms(at(1), at(6)).as_deref(), Some("r--p"));
        // (The last page, still read-write, may have merged with a neighbouring mapping.)
        hosted.protect(base, page, Protection::ReadWrite).unwrap();
        // SAFETY: the first page is readable and writable again, the others readable.
        let read = unsafe { (*base, *base.add(page)) };
        assert_eq!(read, (0xc3, 7));

        // SAFETY: exactly the mapping made above; `bytes` is not used after this.
        unsafe { hosted.unmap(base, len) };
        // Kept for reuse, inaccessible; after a trim another thread may get the address range
        // again at once, but not with this layout.
        assert_eq!(maps_perms(at(0), at(7)).as_deref(), Some("---p"));
        hosted.trim();
        assert_eq!(maps_perms(at(1), at(6)), None, "the mapping is gone");
        assert_eq!(
            hosted.protect(second, page, Protection::ReadOnly),
            Err(PlatformError::Protect {
                addr: second as usize,
                len: page,
                code: libc::EINVAL
            })
        );
    }

    #[test]
    fn a_released_mapping_goes_to_the_next_of_its_length_cleared() {
        let hosted = Hosted::new().unwrap();
        let page = hosted.page_size();
        let (len, other) = (3 * page, 5 * page);
        let base = hosted.map(len).unwrap();
        // SAFETY: a fresh writable mapping of `len` bytes that only this test uses.
        unsafe { std::ptr::write_bytes(base, 0xcc, len) };
        hosted.protect(base, page, Protection::ReadExecute).unwrap();
        // SAFETY: exactly the mapping made above, not used after this.
        unsafe { hosted.unmap(base, len) };
        assert_eq!(hosted.pooled_mappings(), (1, len));
        assert_eq!(hosted.live_mappings(), (0, 0));
        // Released: inaccessible, and `protect` refuses it.
        let at = base as usize;
        assert_eq!(maps_perms(at, at + len).as_deref(), Some("---p"));
        assert!(hosted.protect(base, page, Protection::ReadOnly).is_err());
        // Another length gets a mapping of its own; the same length gets it back, read-write and
        // zeroed as a new one.
        let elsewhere = hosted.map(other).unwrap();
        assert_ne!(elsewhere, base);
        let again = hosted.map(len).unwrap();
        assert_eq!(again, base);
        assert_eq!(hosted.pooled_mappings(), (0, 0));
        assert_eq!(maps_perms(at, at + len).as_deref(), Some("rw-p"));
        // SAFETY: the live mapping of `len` bytes just handed out.
        let bytes = unsafe { std::slice::from_raw_parts(again, len) };
        assert!(bytes.iter().all(|&b| b == 0), "a reused mapping is zeroed");
        // A part of a mapping (as a retired cell's code) is unmapped, not kept.
        // SAFETY: the first page of the mapping above, which nothing uses.
        unsafe { hosted.unmap(again, page) };
        assert_eq!(hosted.pooled_mappings(), (0, 0));
        assert_eq!(maps_perms(at, at + page), None);
        // SAFETY: the rest of it (now a mapping of its own), and the other mapping, which
        // nothing uses.
        unsafe {
            hosted.unmap(again.add(page), len - page);
            hosted.unmap(elsewhere, other);
        }
        assert_eq!(hosted.pooled_mappings(), (2, len - page + other));
        hosted.trim();
        assert_eq!(hosted.pooled_mappings(), (0, 0));
        let at = elsewhere as usize;
        assert_eq!(maps_perms(at, at + other), None, "trimmed: unmapped");
    }

    #[test]
    fn a_mapping_for_overwrite_may_come_back_as_it_was_released() {
        let hosted = Hosted::new().unwrap();
        let len = 2 * hosted.page_size();
        // Nothing kept: a fresh mapping, zeroed.
        let (base, zeroed) = hosted.map_for_overwrite(len).unwrap();
        assert!(zeroed);
        // SAFETY: a fresh writable mapping of `len` bytes that only this test uses.
        unsafe { std::ptr::write_bytes(base, 0x5a, len) };
        // SAFETY: exactly the mapping made above, not used after this.
        unsafe { hosted.unmap(base, len) };
        // Kept, then handed back read-write as it was: not cleared, and said so.
        let (again, zeroed) = hosted.map_for_overwrite(len).unwrap();
        assert_eq!((again, zeroed), (base, false));
        // SAFETY: the live mapping of `len` bytes just handed out.
        let bytes = unsafe { std::slice::from_raw_parts(again, len) };
        assert!(bytes.iter().all(|&b| b == 0x5a));
        assert_eq!(hosted.live_mappings(), (1, len));
        // SAFETY: exactly that mapping, not used after this.
        unsafe { hosted.unmap(again, len) };
        hosted.trim();
    }

    #[test]
    fn protect_refuses_memory_it_did_not_map() {
        let hosted = Hosted::new().unwrap();
        let mut local = [0u8; 16];
        let err = hosted.protect(local.as_mut_ptr(), 16, Protection::ReadOnly);
        assert!(matches!(err, Err(PlatformError::Protect { code, .. }) if code == libc::EINVAL));
        let page = hosted.page_size();
        let base = hosted.map(page).unwrap();
        let past_end = hosted.protect(base, 2 * page, Protection::ReadOnly);
        assert!(
            past_end.is_err(),
            "a region reaching past the mapping is refused"
        );
        // SAFETY: exactly the mapping made above.
        unsafe { hosted.unmap(base, page) };
    }

    #[test]
    fn map_failure_is_out_of_memory() {
        let hosted = Hosted::new().unwrap();
        let len = 1 << 62;
        assert_eq!(hosted.map(len), Err(PlatformError::OutOfMemory { len }));
    }

    #[test]
    fn maps_helpers_read_proc_self_maps() {
        assert!(count_mappings().unwrap() > 5);
        assert_eq!(
            writable_executable_mappings().unwrap(),
            Vec::<String>::new()
        );
    }
}
