//! The kernel heap, shared by every CPU, every interrupt handler and every cell (their
//! `__rust_alloc` binds to the kernel's allocator shim).
//!
//! Blocks up to 16 KiB come from segregated free lists, one per power-of-two size class, refilled
//! in 64 KiB chunks; larger blocks come from `linked_list_allocator`'s first-fit heap over
//! [`crate::paging::HEAP`]. Measured before the size classes: with every CPU's tasks allocating
//! and freeing, the first-fit list grew long enough that one allocation held the lock for 24 ms
//! under TCG, and a task waited 36 ms for it; the size classes make the common allocation a pop
//! from a list. The lock is an [`IrqMutex`]: never held by code an interrupt on the same CPU
//! interrupted.

use core::alloc::{GlobalAlloc, Layout};
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU64, Ordering};

use linked_list_allocator::Heap;

use crate::sync::IrqMutex;

/// The smallest size class (bytes): room for the free list's link.
const MIN_CLASS: usize = 16;
/// Size classes: 16 B, 32 B, ... 16 KiB.
const CLASSES: usize = 11;
/// Bytes taken from the first-fit heap to refill a class.
const CHUNK: usize = 64 * 1024;

/// A free block of a size class: the next one.
struct Free {
    next: *mut Free,
}

struct State {
    big: Heap,
    free: [*mut Free; CLASSES],
    /// Bytes handed out by the size classes right now.
    class_used: usize,
    /// Bytes the size classes took from the first-fit heap.
    class_reserved: usize,
}

// SAFETY: the raw pointers are links between free blocks of the heap's own memory, only touched
// under the lock; nothing ties them to a thread.
unsafe impl Send for State {}

/// The global allocator.
pub struct KernelHeap {
    state: IrqMutex<State>,
}

/// The size class of `layout`, if it has one.
fn class(layout: Layout) -> Option<usize> {
    let size = layout
        .size()
        .max(layout.align())
        .max(MIN_CLASS)
        .next_power_of_two();
    let index = (size.trailing_zeros() - MIN_CLASS.trailing_zeros()) as usize;
    (index < CLASSES).then_some(index)
}

fn class_size(index: usize) -> usize {
    MIN_CLASS << index
}

/// The longest an allocation held the heap's lock, in TSC ticks.
pub static MAX_HOLD: AtomicU64 = AtomicU64::new(0);

impl KernelHeap {
    /// A heap with no memory yet.
    pub const fn empty() -> KernelHeap {
        KernelHeap {
            state: IrqMutex::new(State {
                big: Heap::empty(),
                free: [core::ptr::null_mut(); CLASSES],
                class_used: 0,
                class_reserved: 0,
            }),
        }
    }

    /// Hands the heap its memory.
    ///
    /// # Safety
    /// `start..start+len` is mapped read-write, used for nothing else, for the kernel's lifetime;
    /// called once.
    pub unsafe fn init(&self, start: *mut u8, len: usize) {
        // SAFETY: passed on from the caller.
        unsafe { self.state.lock().big.init(start, len) }
    }

    /// Bytes in use and bytes free.
    pub fn usage(&self) -> (usize, usize) {
        let s = self.state.lock();
        let idle_in_classes = s.class_reserved - s.class_used;
        (
            s.big.used() - idle_in_classes,
            s.big.free() + idle_in_classes,
        )
    }
}

impl State {
    fn alloc(&mut self, layout: Layout) -> *mut u8 {
        let Some(c) = class(layout) else {
            return self
                .big
                .allocate_first_fit(layout)
                .map_or(core::ptr::null_mut(), |p| p.as_ptr());
        };
        if self.free[c].is_null() {
            let size = class_size(c);
            let Ok(chunk_layout) = Layout::from_size_align(CHUNK.max(size), size) else {
                return core::ptr::null_mut();
            };
            let Ok(chunk) = self.big.allocate_first_fit(chunk_layout) else {
                return core::ptr::null_mut();
            };
            self.class_reserved += chunk_layout.size();
            let base = chunk.as_ptr();
            for i in (0..chunk_layout.size() / size).rev() {
                // SAFETY: block `i` of the chunk the first-fit heap just gave out lies inside
                // it and is aligned to `size` (the chunk is), which is at least the alignment
                // of `Free`.
                unsafe {
                    let block = base.add(i * size).cast::<Free>();
                    block.write(Free { next: self.free[c] });
                    self.free[c] = block;
                }
            }
        }
        let block = self.free[c];
        // SAFETY: `block` heads the class's free list: a free block this heap carved, holding
        // its link.
        self.free[c] = unsafe { (*block).next };
        self.class_used += class_size(c);
        block.cast()
    }

    /// # Safety
    /// `ptr` was returned by `alloc` for `layout` and is not used any more.
    unsafe fn dealloc(&mut self, ptr: *mut u8, layout: Layout) {
        let Some(ptr) = NonNull::new(ptr) else {
            return;
        };
        match class(layout) {
            Some(c) => {
                let block = ptr.as_ptr().cast::<Free>();
                // SAFETY: the block is one of the class's (same layout, same class), at least
                // `MIN_CLASS` bytes and aligned to its size; nothing uses it any more.
                unsafe { block.write(Free { next: self.free[c] }) };
                self.free[c] = block;
                self.class_used -= class_size(c);
            }
            // SAFETY: the caller passes a block the first-fit heap returned for `layout`.
            None => unsafe { self.big.deallocate(ptr, layout) },
        }
    }
}

// SAFETY: every block handed out is as large and as aligned as its layout asks (a size class's
// blocks are powers of two at least as large as the size and the alignment, aligned to their
// size; larger ones come from the first-fit heap, which honours the layout), no block is handed
// out twice before it is freed, and only blocks this allocator gave out are taken back (the
// `GlobalAlloc` contract on callers).
unsafe impl GlobalAlloc for KernelHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let mut state = self.state.lock();
        let start = crate::cpu::rdtsc();
        let block = state.alloc(layout);
        MAX_HOLD.fetch_max(crate::cpu::rdtsc() - start, Ordering::Relaxed);
        block
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller passes a block this allocator returned for `layout`.
        unsafe { self.state.lock().dealloc(ptr, layout) }
    }
}
