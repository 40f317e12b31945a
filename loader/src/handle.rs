//! Handles: how the host calls into cells.
//!
//! A handle never caches a cell's function pointer. It holds a slot that the loader owns and
//! records as an edge from the base image, and every call reads the slot with one atomic load.
//! A swap rewrites the slot like any other, so the host's calls move to the new version too.

use alloc::sync::Arc;
use core::marker::PhantomData;
use core::sync::atomic::{AtomicU64, Ordering};

/// The slot behind one or more handles.
#[derive(Debug)]
pub struct HandleSlot {
    addr: AtomicU64,
}

impl HandleSlot {
    pub(crate) fn new(addr: u64) -> Arc<HandleSlot> {
        Arc::new(HandleSlot {
            addr: AtomicU64::new(addr),
        })
    }

    /// The slot's address, as its edge records it.
    pub(crate) fn slot_addr(self: &Arc<Self>) -> u64 {
        &self.addr as *const AtomicU64 as u64
    }

    /// The address the slot holds now. `#[inline]`: every handle call reads it, and without the
    /// attribute it is a call into this crate (no LTO), which cost a handle call about 1 ns.
    #[inline]
    pub fn target(&self) -> u64 {
        self.addr.load(Ordering::Acquire)
    }

    /// Points the slot at `addr` (a swap's commit): one atomic store.
    pub(crate) fn set(&self, addr: u64) {
        self.addr.store(addr, Ordering::Release);
    }
}

/// A typed handle to a function of a cell. `F` is a function pointer type such as
/// `fn(&str) -> Result<Vec<u8>, String>`.
///
/// Created by [`crate::System::handle`], which is `unsafe` because the loader cannot check that
/// `F` is the function's real signature.
pub struct Handle<F> {
    slot: Arc<HandleSlot>,
    _f: PhantomData<F>,
}

impl<F> Clone for Handle<F> {
    fn clone(&self) -> Self {
        Handle {
            slot: self.slot.clone(),
            _f: PhantomData,
        }
    }
}

impl<F> core::fmt::Debug for Handle<F> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Handle({:#x})", self.slot.target())
    }
}

impl<F: Copy> Handle<F> {
    /// # Safety
    /// `F` is a function pointer type whose signature is that of the function at the slot's
    /// target, and the loader keeps the target mapped while the slot points to it.
    pub(crate) unsafe fn new(slot: Arc<HandleSlot>) -> Handle<F> {
        Handle {
            slot,
            _f: PhantomData,
        }
    }

    /// The function, read from the slot now. Call it right away; do not keep it (a kept pointer
    /// would not follow a swap).
    #[inline]
    pub fn get(&self) -> F {
        let addr = self.slot.target() as usize;
        // SAFETY: `System::handle` checked that `F` has the size of a pointer, and its caller
        // promised that `F` is the signature of the function the slot points to; the slot only
        // ever holds the address of that function (or of a swapped-in version with the same
        // mangled name, so the same signature).
        unsafe { core::mem::transmute_copy::<usize, F>(&addr) }
    }

    /// The address the handle calls now.
    pub fn target(&self) -> u64 {
        self.slot.target()
    }
}
