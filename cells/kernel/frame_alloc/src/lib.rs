//! `frame_alloc`: the physical frame allocator cell.
//!
//! A bitmap allocator over a simulated physical memory region of [`TOTAL_FRAMES`] frames of
//! [`FRAME_SIZE`] bytes starting at the fake physical address [`PHYS_BASE`]. No real memory
//! backs the frames; the allocator only hands out and takes back addresses. The bitmap lives in
//! the `pub static` [`ALLOCATOR`] so that a new version of this cell keeps it on a live swap.
//!
//! Interface (all `pub`, non-generic, `#[inline(never)]`):
//! - `init() -> Result<(), String>`: log the region.
//! - `alloc_frame() -> Option<u64>`: one frame, its physical address.
//! - `alloc_contiguous(n: usize) -> Option<u64>`: `n` adjacent frames, the first one's address.
//! - `free_frame(addr: u64) -> Result<(), String>`: error on a double free or a bad address.
//! - `free_count() -> usize`, `total_frames() -> usize`.
//! - `allocated_frames() -> Vec<u64>`: addresses of all allocated frames, ascending.
//! - `revision() -> String`: which version of the cell this is.
//! - `transfer_state(old: &dyn Fn(&str) -> Option<usize>) -> Result<(), String>`: takes the state
//!   over from the buddy allocator of v2 (`cells/upgrades/frame_alloc`), so that a swap can go back
//!   from v2 to this version with every allocated frame kept.
//!
//! This cell calls no other cell, so callers may hold their own locks while calling it.
#![cfg_attr(not(test), no_std)]
#![deny(missing_docs)]

extern crate alloc;

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

/// Size of one frame in bytes.
pub const FRAME_SIZE: u64 = 4096;
/// Physical address of the first frame of the simulated region.
pub const PHYS_BASE: u64 = 0x10_0000;
/// Number of frames in the simulated region.
pub const TOTAL_FRAMES: usize = 1024;

const WORDS: usize = TOTAL_FRAMES / 64;

/// The allocator state: one bit per frame, set when allocated.
///
/// `#[repr(C)]` so that its layout is fixed: a new version of this cell with another state layout
/// reads this one through a mirror of it when it takes the state over (`transfer_state`).
#[repr(C)]
pub struct FrameAllocator {
    bitmap: [u64; WORDS],
    free: usize,
    /// Where the next single-frame search starts (next-fit).
    hint: usize,
}

impl FrameAllocator {
    /// All frames free (usable in a `static`).
    pub const fn new() -> Self {
        FrameAllocator {
            bitmap: [0; WORDS],
            free: TOTAL_FRAMES,
            hint: 0,
        }
    }

    fn is_used(&self, index: usize) -> bool {
        self.bitmap[index / 64] & (1 << (index % 64)) != 0
    }

    fn set(&mut self, index: usize, used: bool) {
        let bit = 1u64 << (index % 64);
        if used {
            self.bitmap[index / 64] |= bit;
        } else {
            self.bitmap[index / 64] &= !bit;
        }
    }

    /// Allocates one frame (next-fit from the last allocation).
    pub fn alloc(&mut self) -> Option<u64> {
        if self.free == 0 {
            return None;
        }
        for step in 0..WORDS {
            let word = (self.hint / 64 + step) % WORDS;
            let bits = self.bitmap[word];
            if bits != u64::MAX {
                let index = word * 64 + (!bits).trailing_zeros() as usize;
                self.set(index, true);
                self.free -= 1;
                self.hint = index;
                return Some(index_to_addr(index));
            }
        }
        None
    }

    /// Allocates `n` adjacent frames (first fit); `None` when `n` is 0 or no run is long enough.
    pub fn alloc_contiguous(&mut self, n: usize) -> Option<u64> {
        if n == 0 || n > self.free {
            return None;
        }
        let mut run_start = 0;
        let mut run_len = 0;
        for index in 0..TOTAL_FRAMES {
            if self.is_used(index) {
                run_len = 0;
                run_start = index + 1;
                continue;
            }
            run_len += 1;
            if run_len == n {
                for i in run_start..run_start + n {
                    self.set(i, true);
                }
                self.free -= n;
                return Some(index_to_addr(run_start));
            }
        }
        None
    }

    /// Frees the frame at `addr`.
    pub fn free(&mut self, addr: u64) -> Result<(), String> {
        let index = addr_to_index(addr)?;
        if !self.is_used(index) {
            return Err(format!("frame_alloc: double free of frame {addr:#x}"));
        }
        self.set(index, false);
        self.free += 1;
        Ok(())
    }

    /// Addresses of the allocated frames, ascending.
    pub fn allocated(&self) -> Vec<u64> {
        (0..TOTAL_FRAMES)
            .filter(|&i| self.is_used(i))
            .map(index_to_addr)
            .collect()
    }
}

impl Default for FrameAllocator {
    fn default() -> Self {
        Self::new()
    }
}

/// A mirror of v2's state type (`cells/upgrades/frame_alloc`), to read it in [`transfer_state`].
///
/// v2's `FrameAllocator` is `#[repr(C)]` with these fields; both versions' unit tests pin its
/// size, alignment and field offsets to the same numbers.
mod v2 {
    pub(crate) const TOTAL_FRAMES: usize = super::TOTAL_FRAMES;
    pub(crate) const MAX_ORDER: usize = TOTAL_FRAMES.trailing_zeros() as usize;
    pub(crate) const BLOCK_WORDS: usize = (2 * TOTAL_FRAMES - 1).div_ceil(64);

    /// v2's `frame_alloc::FrameAllocator`: for every order, one bit per block, set when free.
    #[repr(C)]
    pub(crate) struct FrameAllocator {
        pub(crate) free_blocks: [u64; BLOCK_WORDS],
        pub(crate) free: usize,
        pub(crate) splits: u64,
        pub(crate) merges: u64,
    }

    impl FrameAllocator {
        fn is_free_block(&self, k: usize, block: usize) -> bool {
            let bit = 2 * TOTAL_FRAMES - ((2 * TOTAL_FRAMES) >> k) + block;
            self.free_blocks[bit / 64] & (1 << (bit % 64)) != 0
        }

        /// Whether frame `index` lies in a free block of some order.
        pub(crate) fn is_free_frame(&self, index: usize) -> bool {
            (0..=MAX_ORDER).any(|k| self.is_free_block(k, index >> k))
        }
    }

    /// The type of v2's `ALLOCATOR`.
    pub(crate) type Static = spin::Mutex<FrameAllocator>;
}

impl FrameAllocator {
    /// This version's state holding exactly the frames that v2's state `old` holds.
    fn from_v2(old: &v2::FrameAllocator) -> Result<Self, String> {
        let mut new = FrameAllocator::new();
        for index in (0..TOTAL_FRAMES).filter(|&i| !old.is_free_frame(i)) {
            new.set(index, true);
            new.free -= 1;
        }
        if new.free != old.free {
            return Err(format!(
                "frame_alloc v1: the old ALLOCATOR is inconsistent: its counter says {} free \
                 frames, its free blocks hold {}",
                old.free, new.free
            ));
        }
        Ok(new)
    }
}

/// How often [`transfer_state`] tries the old version's lock before giving up.
const LOCK_ATTEMPTS: usize = if cfg!(test) { 1 << 12 } else { 1 << 24 };

/// State transfer from v2 (the way back from the buddy allocator), called by the loader once
/// during a swap, before it commits, while no caller runs the old version (the swap's gate).
///
/// `old("frame_alloc::ALLOCATOR")` is the address of v2's `ALLOCATOR` (a `spin::Mutex` of its
/// `#[repr(C)]` state). This reads it under its lock, leaves it unchanged (the swap may still roll
/// back), and replaces this version's [`ALLOCATOR`] with a bitmap in which exactly v2's allocated
/// frames are allocated.
#[inline(never)]
pub fn transfer_state(old: &dyn Fn(&str) -> Option<usize>) -> Result<(), String> {
    let addr = old("frame_alloc::ALLOCATOR")
        .ok_or("frame_alloc v1: the old version has no frame_alloc::ALLOCATOR")?;
    if addr == 0 || !addr.is_multiple_of(core::mem::align_of::<v2::Static>()) {
        return Err(format!(
            "frame_alloc v1: the old frame_alloc::ALLOCATOR at {addr:#x} is not aligned for v2's \
             state"
        ));
    }
    // SAFETY: the loader passes the address of the old version's `frame_alloc::ALLOCATOR`, a
    // `spin::Mutex<FrameAllocator>` of v2 (its size differs from this version's, which is why the
    // loader asks for a transfer), whose `#[repr(C)]` layout `v2::FrameAllocator` mirrors; it
    // stays mapped for the whole call and is only read (under its own lock).
    let old_static = unsafe { &*(addr as *const v2::Static) };
    let new = {
        let mut guard = None;
        for _ in 0..LOCK_ATTEMPTS {
            if let Some(g) = old_static.try_lock() {
                guard = Some(g);
                break;
            }
            core::hint::spin_loop();
        }
        let guard = guard.ok_or("frame_alloc v1: the old frame_alloc::ALLOCATOR stays locked")?;
        FrameAllocator::from_v2(&guard)?
    };
    let free = new.free;
    *ALLOCATOR.lock() = new;
    log::info!(
        "frame_alloc v1: took over v2's state, {} of {TOTAL_FRAMES} frames allocated",
        TOTAL_FRAMES - free
    );
    Ok(())
}

fn index_to_addr(index: usize) -> u64 {
    PHYS_BASE + index as u64 * FRAME_SIZE
}

fn addr_to_index(addr: u64) -> Result<usize, String> {
    let end = PHYS_BASE + TOTAL_FRAMES as u64 * FRAME_SIZE;
    if !(PHYS_BASE..end).contains(&addr) {
        return Err(format!(
            "frame_alloc: address {addr:#x} outside the region {PHYS_BASE:#x}..{end:#x}"
        ));
    }
    if !(addr - PHYS_BASE).is_multiple_of(FRAME_SIZE) {
        return Err(format!(
            "frame_alloc: address {addr:#x} is not frame aligned"
        ));
    }
    Ok(((addr - PHYS_BASE) / FRAME_SIZE) as usize)
}

/// The allocator. `pub` so that a new version of this cell rebinds to it on a live swap.
#[doc(hidden)]
pub static ALLOCATOR: spin::Mutex<FrameAllocator> = spin::Mutex::new(FrameAllocator::new());

/// Cell entry point: logs the region and how much of it is free.
#[inline(never)]
pub fn init() -> Result<(), String> {
    let free = free_count();
    log::info!(
        "frame_alloc: {TOTAL_FRAMES} frames of {FRAME_SIZE} bytes at {PHYS_BASE:#x}, {free} free"
    );
    Ok(())
}

/// Allocates one frame; returns its physical address, or `None` when memory is exhausted.
#[inline(never)]
pub fn alloc_frame() -> Option<u64> {
    let frame = ALLOCATOR.lock().alloc();
    match frame {
        Some(addr) => log::debug!("frame_alloc: allocated frame {addr:#x}"),
        None => log::info!("frame_alloc: out of frames"),
    }
    frame
}

/// Allocates `n` physically adjacent frames; returns the first one's address.
#[inline(never)]
pub fn alloc_contiguous(n: usize) -> Option<u64> {
    let first = ALLOCATOR.lock().alloc_contiguous(n);
    match first {
        Some(addr) => log::debug!("frame_alloc: allocated {n} frames at {addr:#x}"),
        None => log::info!("frame_alloc: no run of {n} free frames"),
    }
    first
}

/// Frees the frame at `addr`; an error on a double free or an address outside the region.
#[inline(never)]
pub fn free_frame(addr: u64) -> Result<(), String> {
    let result = ALLOCATOR.lock().free(addr);
    match &result {
        Ok(()) => log::debug!("frame_alloc: freed frame {addr:#x}"),
        Err(e) => log::info!("{e}"),
    }
    result
}

/// Number of free frames.
#[inline(never)]
pub fn free_count() -> usize {
    ALLOCATOR.lock().free
}

/// Number of frames in the region.
#[inline(never)]
pub fn total_frames() -> usize {
    TOTAL_FRAMES
}

/// Physical addresses of all allocated frames, ascending.
#[inline(never)]
pub fn allocated_frames() -> Vec<u64> {
    ALLOCATOR.lock().allocated()
}

/// Which version of this cell is running, as one line.
#[inline(never)]
pub fn revision() -> String {
    String::from("frame_alloc v1: bitmap allocator, next-fit single frames, first-fit runs")
}

// The interface, checked against cell-abi at compile time: hosts bind these functions by the
// types declared there.
const _: cell_abi::Init = init;
const _: cell_abi::frame_alloc::AllocFrame = alloc_frame;
const _: cell_abi::frame_alloc::AllocContiguous = alloc_contiguous;
const _: cell_abi::frame_alloc::FreeFrame = free_frame;
const _: cell_abi::frame_alloc::FreeCount = free_count;
const _: cell_abi::frame_alloc::TotalFrames = total_frames;
const _: cell_abi::frame_alloc::AllocatedFrames = allocated_frames;
const _: cell_abi::Revision = revision;
const _: cell_abi::TransferState = transfer_state;

/// The plain-state promise ([`cell_abi::PLAIN_STATE`]): nothing reachable from this cell's statics
/// points into its own code or read-only data, so a retired version of it may be freed while a
/// newer version runs on its statics.
#[inline(never)]
pub fn plain_state() {}
const _: cell_abi::PlainState = plain_state;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alloc_and_free_accounting() {
        let mut a = FrameAllocator::new();
        let f1 = a.alloc().unwrap();
        let f2 = a.alloc().unwrap();
        assert_eq!(f1, PHYS_BASE);
        assert_eq!(f2, PHYS_BASE + FRAME_SIZE);
        assert_eq!(a.free, TOTAL_FRAMES - 2);
        assert_eq!(a.allocated(), vec![f1, f2]);
        a.free(f1).unwrap();
        assert_eq!(a.free, TOTAL_FRAMES - 1);
        assert_eq!(a.allocated(), vec![f2]);
    }

    #[test]
    fn double_free_and_bad_address_are_errors() {
        let mut a = FrameAllocator::new();
        let f = a.alloc().unwrap();
        a.free(f).unwrap();
        assert!(a.free(f).unwrap_err().contains("double free"));
        assert!(a
            .free(PHYS_BASE - FRAME_SIZE)
            .unwrap_err()
            .contains("outside"));
        assert!(a.free(PHYS_BASE + 1).unwrap_err().contains("aligned"));
        let end = PHYS_BASE + TOTAL_FRAMES as u64 * FRAME_SIZE;
        assert!(a.free(end).is_err());
        assert_eq!(a.free, TOTAL_FRAMES);
    }

    #[test]
    fn exhaustion_and_reuse() {
        let mut a = FrameAllocator::new();
        let frames: Vec<u64> = (0..TOTAL_FRAMES).map(|_| a.alloc().unwrap()).collect();
        assert_eq!(a.alloc(), None);
        assert_eq!(a.free, 0);
        a.free(frames[700]).unwrap();
        assert_eq!(a.alloc(), Some(frames[700]));
    }

    #[test]
    fn contiguous_runs_skip_holes() {
        let mut a = FrameAllocator::new();
        let f0 = a.alloc().unwrap();
        let _f1 = a.alloc().unwrap();
        let _f2 = a.alloc().unwrap();
        a.free(f0).unwrap();
        // Frame 0 is a hole of one frame: a run of 2 starts after frame 2.
        assert_eq!(a.alloc_contiguous(2), Some(PHYS_BASE + 3 * FRAME_SIZE));
        assert_eq!(a.free, TOTAL_FRAMES - 4);
        assert_eq!(a.alloc_contiguous(0), None);
        assert_eq!(a.alloc_contiguous(TOTAL_FRAMES), None);
        let rest = a.free;
        assert!(
            a.alloc_contiguous(rest).is_none(),
            "frame 0 is not adjacent to the rest"
        );
        assert!(a.alloc_contiguous(rest - 1).is_some());
        assert_eq!(a.free, 1);
    }

    /// The layout that a new version's mirror of this state (`transfer_state`) relies on; the
    /// upgrade in `cells/upgrades/frame_alloc` pins the same numbers for its mirror.
    #[test]
    fn state_layout_is_pinned() {
        use core::mem::{align_of, offset_of, size_of};
        assert_eq!(size_of::<FrameAllocator>(), 144);
        assert_eq!(align_of::<FrameAllocator>(), 8);
        assert_eq!(offset_of!(FrameAllocator, bitmap), 0);
        assert_eq!(offset_of!(FrameAllocator, free), 128);
        assert_eq!(offset_of!(FrameAllocator, hint), 136);
        assert_eq!(size_of::<spin::Mutex<FrameAllocator>>(), 152);
    }

    /// The layout of v2's state this version's mirror reads; the upgrade pins the same numbers for
    /// its own type.
    #[test]
    fn v2_mirror_layout_is_pinned() {
        use core::mem::{align_of, offset_of, size_of};
        assert_eq!(size_of::<v2::FrameAllocator>(), 280);
        assert_eq!(align_of::<v2::FrameAllocator>(), 8);
        assert_eq!(offset_of!(v2::FrameAllocator, free_blocks), 0);
        assert_eq!(offset_of!(v2::FrameAllocator, free), 256);
        assert_eq!(size_of::<v2::Static>(), 288);
    }

    #[test]
    fn a_v2_state_comes_back_with_the_same_frames() {
        // A v2 state with frames 0..=3 and 7 allocated: every other frame in free blocks.
        let mut old = v2::FrameAllocator {
            free_blocks: [0; v2::BLOCK_WORDS],
            free: TOTAL_FRAMES - 5,
            splits: 0,
            merges: 0,
        };
        let mut mark = |k: usize, block: usize| {
            let bit = 2 * TOTAL_FRAMES - ((2 * TOTAL_FRAMES) >> k) + block;
            old.free_blocks[bit / 64] |= 1 << (bit % 64);
        };
        // Frames 4..7 minus 7: 4..6 is block 2 of order 1 (frames 4,5) and frame 6.
        mark(1, 2);
        mark(0, 6);
        // Frames 8.. in blocks: 8..16 (order 3, block 1), 16..32 (order 4, block 1), ...
        for k in 3..v2::MAX_ORDER {
            mark(k, 1);
        }
        let new = FrameAllocator::from_v2(&old).unwrap();
        assert_eq!(new.free, TOTAL_FRAMES - 5);
        let used: Vec<usize> = (0..TOTAL_FRAMES).filter(|&i| new.is_used(i)).collect();
        assert_eq!(used, [0, 1, 2, 3, 7]);
        old.free += 1;
        match FrameAllocator::from_v2(&old) {
            Err(e) => assert!(e.contains("inconsistent"), "{e}"),
            Ok(_) => panic!("an inconsistent counter must be refused"),
        }
    }

    #[test]
    fn global_interface() {
        assert!(revision().starts_with("frame_alloc v1:"));
        init().unwrap();
        assert_eq!(total_frames(), TOTAL_FRAMES);
        let f = alloc_frame().unwrap();
        assert!(allocated_frames().contains(&f));
        let run = alloc_contiguous(3).unwrap();
        free_frame(f).unwrap();
        assert!(free_frame(f).is_err());
        for i in 0..3 {
            free_frame(run + i * FRAME_SIZE).unwrap();
        }
        assert!(!allocated_frames().contains(&f));
        assert!(free_count() <= TOTAL_FRAMES);
    }
}
