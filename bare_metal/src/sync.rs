//! Locks that interrupt handlers may take too.
//!
//! An [`IrqMutex`] disables interrupts on its CPU while it is held (as Linux's
//! `spin_lock_irqsave`): an interrupt handler on the same CPU can then never find it held by the
//! code it interrupted, and a task holding it is never switched out. The heap, the console, the
//! task table and the cell map are such locks. None of them is held while code of a cell runs.

use core::ops::{Deref, DerefMut};

use crate::cpu;

/// A spin lock that disables interrupts while held.
pub struct IrqMutex<T> {
    inner: spin::Mutex<T>,
}

/// Holds an [`IrqMutex`]; dropping it unlocks and restores the interrupt flag.
pub struct IrqGuard<'a, T> {
    guard: Option<spin::MutexGuard<'a, T>>,
    was_enabled: bool,
}

impl<T> IrqMutex<T> {
    /// An unlocked mutex.
    pub const fn new(value: T) -> IrqMutex<T> {
        IrqMutex {
            inner: spin::Mutex::new(value),
        }
    }

    /// Disables interrupts, then spins until the lock is free.
    pub fn lock(&self) -> IrqGuard<'_, T> {
        let was_enabled = cpu::irq_save();
        IrqGuard {
            guard: Some(self.inner.lock()),
            was_enabled,
        }
    }

    /// The lock if it is free now (with interrupts disabled while held).
    pub fn try_lock(&self) -> Option<IrqGuard<'_, T>> {
        let was_enabled = cpu::irq_save();
        match self.inner.try_lock() {
            Some(guard) => Some(IrqGuard {
                guard: Some(guard),
                was_enabled,
            }),
            None => {
                cpu::irq_restore(was_enabled);
                None
            }
        }
    }
}

impl<T> Deref for IrqGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.guard.as_ref().expect("held until dropped")
    }
}

impl<T> DerefMut for IrqGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        self.guard.as_mut().expect("held until dropped")
    }
}

impl<T> Drop for IrqGuard<'_, T> {
    fn drop(&mut self) {
        // Unlock first, then let interrupts in.
        self.guard = None;
        cpu::irq_restore(self.was_enabled);
    }
}
