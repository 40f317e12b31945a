//! `frame_alloc` v2: the physical frame allocator cell, as a buddy allocator.
//!
//! A new version of `cells/kernel/frame_alloc` (v1, a bitmap allocator) with the same crate
//! identity and the same interface, so that it can replace v1 in a running system. The simulated
//! region is the same: [`TOTAL_FRAMES`] frames of [`FRAME_SIZE`] bytes starting at the fake
//! physical address [`PHYS_BASE`]; no real memory backs the frames.
//!
//! The free memory is a set of *blocks*: a block of order `k` is `2^k` frames whose first frame
//! index is a multiple of `2^k`. Every free frame lies in exactly one free block, and two free
//! buddies (the two halves of a block of the next order) are always merged. Allocating splits the
//! smallest free block that fits; freeing merges a frame with its free buddies.
//!
//! The state lives in the `pub static` [`ALLOCATOR`] with another layout than v1's, so this
//! version cannot be bound to v1's memory: it exports [`transfer_state`], which the loader calls
//! during the swap to build this version's state from v1's.
//!
//! Interface (all `pub`, non-generic, `#[inline(never)]`); v1's functions keep their signatures:
//! - `init() -> Result<(), String>`: log the region.
//! - `alloc_frame() -> Option<u64>`: one frame, its physical address.
//! - `alloc_contiguous(n: usize) -> Option<u64>`: `n` adjacent frames, the first one's address.
//! - `free_frame(addr: u64) -> Result<(), String>`: error on a double free or a bad address.
//! - `free_count() -> usize`, `total_frames() -> usize`.
//! - `allocated_frames() -> Vec<u64>`: addresses of all allocated frames, ascending.
//! - `revision() -> String`: which version of the cell this is.
//! - new in v2: `free_blocks() -> Vec<usize>`: the number of free blocks of each order.
//! - new in v2: `transfer_state(old: &dyn Fn(&str) -> Option<usize>) -> Result<(), String>`.
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
/// The order of the largest block: the whole region.
pub const MAX_ORDER: usize = TOTAL_FRAMES.trailing_zeros() as usize;

const _: () = assert!(TOTAL_FRAMES.is_power_of_two());

/// Bits needed for the free-block sets of all orders: `TOTAL_FRAMES >> k` blocks of order `k`.
const BLOCK_BITS: usize = 2 * TOTAL_FRAMES - 1;
const BLOCK_WORDS: usize = BLOCK_BITS.div_ceil(64);

/// The first bit of the free-block set of order `k`.
const fn order_offset(k: usize) -> usize {
    2 * TOTAL_FRAMES - ((2 * TOTAL_FRAMES) >> k)
}

/// The allocator state: for every order, one bit per block, set when that block is free (and not
/// part of a larger free block).
///
/// `#[repr(C)]` so that its layout is fixed, like v1's state.
#[repr(C)]
pub struct FrameAllocator {
    free_blocks: [u64; BLOCK_WORDS],
    free: usize,
    /// Blocks split in two since the state was created (or taken over).
    splits: u64,
    /// Buddies merged since the state was created (or taken over).
    merges: u64,
}

impl FrameAllocator {
    /// All frames free: one free block of [`MAX_ORDER`] (usable in a `static`).
    pub const fn new() -> Self {
        let mut free_blocks = [0; BLOCK_WORDS];
        let bit = order_offset(MAX_ORDER);
        free_blocks[bit / 64] = 1 << (bit % 64);
        FrameAllocator {
            free_blocks,
            free: TOTAL_FRAMES,
            splits: 0,
            merges: 0,
        }
    }

    /// No frame free.
    const fn exhausted() -> Self {
        FrameAllocator {
            free_blocks: [0; BLOCK_WORDS],
            free: 0,
            splits: 0,
            merges: 0,
        }
    }

    fn is_free_block(&self, k: usize, block: usize) -> bool {
        let bit = order_offset(k) + block;
        self.free_blocks[bit / 64] & (1 << (bit % 64)) != 0
    }

    fn set_free_block(&mut self, k: usize, block: usize, free: bool) {
        let bit = order_offset(k) + block;
        if free {
            self.free_blocks[bit / 64] |= 1 << (bit % 64);
        } else {
            self.free_blocks[bit / 64] &= !(1 << (bit % 64));
        }
    }

    /// The lowest free block of order `k`.
    fn first_free_block(&self, k: usize) -> Option<usize> {
        let start = order_offset(k);
        let end = start + (TOTAL_FRAMES >> k);
        let mut bit = start;
        while bit < end {
            let shift = bit % 64;
            let avail = (64 - shift).min(end - bit);
            let mut word = self.free_blocks[bit / 64] >> shift;
            if avail < 64 {
                word &= (1 << avail) - 1;
            }
            if word != 0 {
                return Some(bit + word.trailing_zeros() as usize - start);
            }
            bit += avail;
        }
        None
    }

    /// The free block that holds frame `index`, as (order, block), if the frame is free.
    fn free_block_of(&self, index: usize) -> Option<(usize, usize)> {
        (0..=MAX_ORDER)
            .map(|k| (k, index >> k))
            .find(|&(k, block)| self.is_free_block(k, block))
    }

    fn is_free_frame(&self, index: usize) -> bool {
        self.free_block_of(index).is_some()
    }

    /// Splits the block (`k`, `block`), already taken out of the free sets, down to order
    /// `target_k`, keeping the part that holds frame `frame` and marking the other halves free.
    /// Returns the block of order `target_k` that holds `frame`.
    fn split_down(&mut self, mut k: usize, block: usize, target_k: usize, frame: usize) -> usize {
        debug_assert_eq!(frame >> k, block);
        while k > target_k {
            k -= 1;
            let keep = frame >> k;
            self.set_free_block(k, keep ^ 1, true);
            self.splits += 1;
        }
        frame >> target_k
    }

    /// Puts frame `index` (allocated) back into the free sets, merging it with free buddies. Does
    /// not touch the free counter.
    fn release(&mut self, index: usize) {
        let (mut k, mut block) = (0, index);
        while k < MAX_ORDER && self.is_free_block(k, block ^ 1) {
            self.set_free_block(k, block ^ 1, false);
            self.merges += 1;
            block >>= 1;
            k += 1;
        }
        self.set_free_block(k, block, true);
    }

    /// Takes the free frame `index` out of the free sets.
    fn take_frame(&mut self, index: usize) -> bool {
        let Some((k, block)) = self.free_block_of(index) else {
            return false;
        };
        self.set_free_block(k, block, false);
        self.split_down(k, block, 0, index);
        self.free -= 1;
        true
    }

    /// Allocates one frame: the lowest frame of the smallest free block, split as needed.
    pub fn alloc(&mut self) -> Option<u64> {
        let (k, block) = (0..=MAX_ORDER).find_map(|k| Some((k, self.first_free_block(k)?)))?;
        self.set_free_block(k, block, false);
        let frame = self.split_down(k, block, 0, block << k);
        self.free -= 1;
        Some(index_to_addr(frame))
    }

    /// Allocates `n` adjacent frames; `None` when `n` is 0 or no run is long enough.
    ///
    /// Takes the smallest free block of at least `n` frames and gives back the frames beyond the
    /// first `n`. When fragmentation leaves no such block, falls back to the first run of `n` free
    /// frames, so this succeeds whenever v1's first-fit search would.
    pub fn alloc_contiguous(&mut self, n: usize) -> Option<u64> {
        if n == 0 || n > self.free {
            return None;
        }
        let order = n.next_power_of_two().trailing_zeros() as usize;
        let fit = (order..=MAX_ORDER).find_map(|k| Some((k, self.first_free_block(k)?)));
        if let Some((k, block)) = fit {
            self.set_free_block(k, block, false);
            let first = self.split_down(k, block, order, block << k) << order;
            self.free -= 1 << order;
            for index in first + n..first + (1 << order) {
                self.release(index);
                self.free += 1;
            }
            return Some(index_to_addr(first));
        }
        let mut run = 0;
        for index in 0..TOTAL_FRAMES {
            run = if self.is_free_frame(index) {
                run + 1
            } else {
                0
            };
            if run == n {
                let first = index + 1 - n;
                for i in first..=index {
                    self.take_frame(i);
                }
                return Some(index_to_addr(first));
            }
        }
        None
    }

    /// Frees the frame at `addr`, merging it with its free buddies.
    pub fn free(&mut self, addr: u64) -> Result<(), String> {
        let index = addr_to_index(addr)?;
        if self.is_free_frame(index) {
            return Err(format!("frame_alloc: double free of frame {addr:#x}"));
        }
        self.release(index);
        self.free += 1;
        Ok(())
    }

    /// Addresses of the allocated frames, ascending.
    pub fn allocated(&self) -> Vec<u64> {
        (0..TOTAL_FRAMES)
            .filter(|&i| !self.is_free_frame(i))
            .map(index_to_addr)
            .collect()
    }

    /// The number of free blocks of each order, `0..=MAX_ORDER`.
    pub fn free_blocks(&self) -> Vec<usize> {
        (0..=MAX_ORDER)
            .map(|k| {
                (0..TOTAL_FRAMES >> k)
                    .filter(|&b| self.is_free_block(k, b))
                    .count()
            })
            .collect()
    }

    /// This version's state holding exactly the frames that v1's state `old` holds.
    fn from_v1(old: &v1::FrameAllocator) -> Result<Self, String> {
        let mut new = FrameAllocator::exhausted();
        for index in (0..TOTAL_FRAMES).filter(|&i| !old.is_used(i)) {
            new.release(index);
            new.free += 1;
        }
        if new.free != old.free {
            return Err(format!(
                "frame_alloc v2: the old ALLOCATOR is inconsistent: its counter says {} free \
                 frames, its bitmap has {}",
                old.free, new.free
            ));
        }
        if old.hint >= TOTAL_FRAMES {
            return Err(format!(
                "frame_alloc v2: the old ALLOCATOR is inconsistent: its next-fit hint {} is \
                 beyond the {TOTAL_FRAMES} frames",
                old.hint
            ));
        }
        new.merges = 0;
        Ok(new)
    }
}

impl Default for FrameAllocator {
    fn default() -> Self {
        Self::new()
    }
}

/// A mirror of v1's state type (`cells/kernel/frame_alloc`), to read it in [`transfer_state`].
///
/// v1's `FrameAllocator` is `#[repr(C)]` with these fields; both versions' unit tests pin its
/// size, alignment and field offsets to the same numbers.
mod v1 {
    pub(crate) const WORDS: usize = super::TOTAL_FRAMES / 64;

    /// v1's `frame_alloc::FrameAllocator`.
    #[repr(C)]
    pub(crate) struct FrameAllocator {
        pub(crate) bitmap: [u64; WORDS],
        pub(crate) free: usize,
        pub(crate) hint: usize,
    }

    impl FrameAllocator {
        pub(crate) fn is_used(&self, index: usize) -> bool {
            self.bitmap[index / 64] & (1 << (index % 64)) != 0
        }
    }

    /// The type of v1's `ALLOCATOR`.
    pub(crate) type Static = spin::Mutex<FrameAllocator>;
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

/// The allocator. `pub` so that the loader finds it; its type differs from v1's, so a swap from
/// v1 fills it through [`transfer_state`] instead of rebinding it.
#[doc(hidden)]
pub static ALLOCATOR: spin::Mutex<FrameAllocator> = spin::Mutex::new(FrameAllocator::new());

/// How often [`transfer_state`] tries the old version's lock before giving up.
const LOCK_ATTEMPTS: usize = if cfg!(test) { 1 << 12 } else { 1 << 24 };

/// Locks `mutex`, spinning a bounded number of times; `None` when it stays locked.
fn try_lock_bounded<T>(mutex: &spin::Mutex<T>) -> Option<spin::MutexGuard<'_, T>> {
    for _ in 0..LOCK_ATTEMPTS {
        if let Some(guard) = mutex.try_lock() {
            return Some(guard);
        }
        core::hint::spin_loop();
    }
    None
}

/// State transfer from v1, called by the loader once during a swap, before it commits.
///
/// `old("frame_alloc::ALLOCATOR")` is the address of the old version's `ALLOCATOR` (a
/// `spin::Mutex` of v1's `#[repr(C)]` state). This reads it under its lock, leaves it unchanged
/// (the swap may still roll back), and replaces this version's [`ALLOCATOR`] with a buddy state in
/// which exactly v1's allocated frames are allocated. Fails, leaving this version's state as it
/// was, when the old static is missing or misaligned, its lock stays held, or it is inconsistent.
#[inline(never)]
pub fn transfer_state(old: &dyn Fn(&str) -> Option<usize>) -> Result<(), String> {
    let addr = old("frame_alloc::ALLOCATOR")
        .ok_or("frame_alloc v2: the old version has no frame_alloc::ALLOCATOR")?;
    if addr == 0 || !addr.is_multiple_of(core::mem::align_of::<v1::Static>()) {
        return Err(format!(
            "frame_alloc v2: the old frame_alloc::ALLOCATOR at {addr:#x} is not aligned for v1's \
             state"
        ));
    }
    // SAFETY: the loader passes the address of the old version's `frame_alloc::ALLOCATOR`, a
    // `spin::Mutex<FrameAllocator>` of v1, whose `#[repr(C)]` layout `v1::FrameAllocator`
    // mirrors; it stays mapped for the whole call and is only read (under its own lock).
    let old_static = unsafe { &*(addr as *const v1::Static) };
    let new = {
        let guard = try_lock_bounded(old_static)
            .ok_or("frame_alloc v2: the old frame_alloc::ALLOCATOR stays locked")?;
        FrameAllocator::from_v1(&guard)?
    };
    let free = new.free;
    *ALLOCATOR.lock() = new;
    log::info!(
        "frame_alloc v2: took over v1's state, {} of {TOTAL_FRAMES} frames allocated",
        TOTAL_FRAMES - free
    );
    Ok(())
}

/// Cell entry point: logs the region and how much of it is free.
#[inline(never)]
pub fn init() -> Result<(), String> {
    let free = free_count();
    log::info!(
        "frame_alloc v2: {TOTAL_FRAMES} frames of {FRAME_SIZE} bytes at {PHYS_BASE:#x}, {free} \
         free, buddy orders 0..={MAX_ORDER}"
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

/// The number of free blocks of each order `0..=MAX_ORDER` (a block of order `k` is `2^k` frames).
#[inline(never)]
pub fn free_blocks() -> Vec<usize> {
    ALLOCATOR.lock().free_blocks()
}

/// Which version of this cell is running, as one line.
#[inline(never)]
pub fn revision() -> String {
    String::from("frame_alloc v2: buddy allocator, orders 0..=10, takes over v1's bitmap")
}

// The interface, checked against cell-abi at compile time: hosts bind these functions by the
// types declared there.
const _: cell_abi::TransferState = transfer_state;
const _: cell_abi::Init = init;
const _: cell_abi::frame_alloc::AllocFrame = alloc_frame;
const _: cell_abi::frame_alloc::AllocContiguous = alloc_contiguous;
const _: cell_abi::frame_alloc::FreeFrame = free_frame;
const _: cell_abi::frame_alloc::FreeCount = free_count;
const _: cell_abi::frame_alloc::TotalFrames = total_frames;
const _: cell_abi::frame_alloc::AllocatedFrames = allocated_frames;
const _: cell_abi::frame_alloc::FreeBlocks = free_blocks;
const _: cell_abi::Revision = revision;

/// The plain-state promise ([`cell_abi::PLAIN_STATE`]): nothing reachable from this cell's statics
/// points into its own code or read-only data, so a retired version of it may be freed while a
/// newer version runs on its statics.
#[inline(never)]
pub fn plain_state() {}
const _: cell_abi::PlainState = plain_state;

#[cfg(test)]
mod tests;
