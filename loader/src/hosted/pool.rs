//! Released cell mappings kept for the next load of the same size (as Wasmtime's pooling
//! allocator keeps instance memories).
//!
//! Most of what a load and an unload cost the kernel is not the system calls but the pages behind
//! them: a fresh populated mapping takes every page from the page allocator (zeroed and charged),
//! and `munmap` gives them all back. Measured (BENCHMARKS.md, `BENCH_FLOOR=1`): a map, copy,
//! protect and unmap of regex-automata's 476 KiB costs 2.4x a `dlopen` of the same code, the same
//! work on a region kept from before 0.6x. So [`super::Hosted`] keeps a released mapping
//! inaccessible (`PROT_NONE`, its pages resident) and gives it to the next mapping of exactly its
//! length, made read-write and cleared in user space.
//!
//! The pool is bounded: a region larger than [`MAX_REGION`] is unmapped (a large mapping is not
//! populated up front, and clearing it would make every page of it resident), and past
//! [`MAX_BYTES`] the oldest regions are unmapped first. [`super::Hosted::trim`] unmaps them all.

use std::collections::VecDeque;
use std::vec;
use std::vec::Vec;

/// The largest region kept (and the largest mapping `Hosted` populates up front, so that every
/// kept region is resident whole and clearing it faults nothing in).
pub(super) const MAX_REGION: usize = 1 << 20;
/// The most bytes kept in all.
pub(super) const MAX_BYTES: usize = 8 << 20;

/// Released mappings, oldest first: (start address, length).
#[derive(Default)]
pub(super) struct Pool {
    regions: VecDeque<(usize, usize)>,
    bytes: usize,
}

impl Pool {
    /// A kept region of exactly `len` bytes, the most recently released first; it leaves the pool.
    pub(super) fn take(&mut self, len: usize) -> Option<usize> {
        let i = self.regions.iter().rposition(|&(_, l)| l == len)?;
        let (addr, len) = self.regions.remove(i)?;
        self.bytes -= len;
        Some(addr)
    }

    /// Whether a released region of `len` bytes is kept (else it is unmapped at once).
    pub(super) fn keeps(len: usize) -> bool {
        len <= MAX_REGION
    }

    /// Keeps `addr..addr + len` if it is small enough; returns the regions that must be unmapped
    /// instead (this one when it is too large, else the oldest ones the pool no longer holds).
    pub(super) fn put(&mut self, addr: usize, len: usize) -> Vec<(usize, usize)> {
        if !Pool::keeps(len) {
            return vec![(addr, len)];
        }
        self.regions.push_back((addr, len));
        self.bytes += len;
        let mut evicted = Vec::new();
        while self.bytes > MAX_BYTES {
            let Some((a, l)) = self.regions.pop_front() else {
                break;
            };
            self.bytes -= l;
            evicted.push((a, l));
        }
        evicted
    }

    /// Every kept region; the pool is empty afterwards.
    pub(super) fn drain(&mut self) -> Vec<(usize, usize)> {
        self.bytes = 0;
        self.regions.drain(..).collect()
    }

    /// How many regions are kept, and their bytes.
    pub(super) fn totals(&self) -> (usize, usize) {
        (self.regions.len(), self.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_region_goes_to_the_next_mapping_of_its_length_only() {
        let mut pool = Pool::default();
        assert!(pool.put(0x10000, 0x3000).is_empty());
        assert!(pool.put(0x20000, 0x2000).is_empty());
        assert!(pool.put(0x30000, 0x3000).is_empty());
        assert_eq!(pool.totals(), (3, 0x8000));
        assert_eq!(pool.take(0x1000), None);
        // The most recently released of that length.
        assert_eq!(pool.take(0x3000), Some(0x30000));
        assert_eq!(pool.take(0x3000), Some(0x10000));
        assert_eq!(pool.take(0x3000), None);
        assert_eq!(pool.totals(), (1, 0x2000));
        assert_eq!(pool.drain(), [(0x20000, 0x2000)]);
        assert_eq!(pool.totals(), (0, 0));
    }

    #[test]
    fn the_pool_is_bounded() {
        let mut pool = Pool::default();
        // Too large to keep: handed back at once.
        assert_eq!(
            pool.put(0x1000, MAX_REGION + 4096),
            [(0x1000, MAX_REGION + 4096)]
        );
        assert_eq!(pool.totals(), (0, 0));
        // Past the total, the oldest go first.
        let n = MAX_BYTES / MAX_REGION;
        for i in 0..n {
            assert!(pool.put(i * MAX_REGION, MAX_REGION).is_empty());
        }
        assert_eq!(pool.put(n * MAX_REGION, 4096), [(0, MAX_REGION)]);
        assert_eq!(pool.totals(), (n, MAX_BYTES - MAX_REGION + 4096));
    }
}
