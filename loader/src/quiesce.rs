//! Grace periods: when may a retired cell's memory be freed?
//!
//! After a swap commits, a thread may still be running the old version (it read a slot just
//! before the store). Freeing the old version is safe once every thread that may run cell code
//! has passed a **quiescent point** — a moment where it holds no pointer into any cell and runs no
//! cell code — since the swap: the RCU idea, with the epoch of the swap as the grace period's
//! start.
//!
//! Threads that call cells register ([`Epochs::register`]) and call
//! [`ThreadRegistration::quiescent`] at such points (between requests, at the top of a loop).
//! A thread that is not registered is not waited for: registering is the promise to report.

use alloc::sync::{Arc, Weak};
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

/// The epoch counter and the registered threads. Shared (`Arc`) so threads report without
/// taking the system's lock.
#[derive(Debug, Default)]
pub struct Epochs {
    current: AtomicU64,
    threads: spin::Mutex<Vec<Weak<AtomicU64>>>,
}

/// One registered thread. Dropping it unregisters the thread.
#[derive(Debug)]
pub struct ThreadRegistration {
    seen: Arc<AtomicU64>,
    epochs: Arc<Epochs>,
}

impl ThreadRegistration {
    /// Reports that this thread runs no cell code and holds no pointer into a cell right now.
    pub fn quiescent(&self) {
        let now = self.epochs.current.load(Ordering::Acquire);
        self.seen.store(now, Ordering::Release);
    }
}

impl Epochs {
    /// A new counter at epoch 0 with no threads.
    pub fn new() -> Arc<Epochs> {
        Arc::new(Epochs::default())
    }

    /// Registers the calling thread; it counts as quiescent now.
    pub fn register(self: &Arc<Self>) -> ThreadRegistration {
        let seen = Arc::new(AtomicU64::new(self.current.load(Ordering::Acquire)));
        let mut threads = self.threads.lock();
        threads.retain(|t| t.strong_count() > 0);
        threads.push(Arc::downgrade(&seen));
        ThreadRegistration {
            seen,
            epochs: self.clone(),
        }
    }

    /// Starts a new epoch and returns it: things retired now may be freed once every registered
    /// thread has seen it.
    pub(crate) fn advance(&self) -> u64 {
        self.current.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// The current epoch.
    pub fn current(&self) -> u64 {
        self.current.load(Ordering::Acquire)
    }

    /// How many registered threads have not passed a quiescent point since `epoch` began.
    pub fn pending_since(&self, epoch: u64) -> usize {
        self.threads
            .lock()
            .iter()
            .filter_map(Weak::upgrade)
            .filter(|seen| seen.load(Ordering::Acquire) < epoch)
            .count()
    }

    /// Number of registered threads.
    pub fn registered(&self) -> usize {
        self.threads
            .lock()
            .iter()
            .filter(|t| t.strong_count() > 0)
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_grace_period_ends_when_every_registered_thread_was_quiescent() {
        let epochs = Epochs::new();
        let a = epochs.register();
        let b = epochs.register();
        let retired = epochs.advance();
        assert_eq!(epochs.pending_since(retired), 2);
        a.quiescent();
        assert_eq!(epochs.pending_since(retired), 1);
        b.quiescent();
        assert_eq!(epochs.pending_since(retired), 0);
        // A later retirement needs fresh reports.
        let later = epochs.advance();
        assert_eq!(epochs.pending_since(later), 2);
        drop(a);
        assert_eq!(
            epochs.pending_since(later),
            1,
            "an unregistered thread is not waited for"
        );
        assert_eq!(epochs.registered(), 1);
        drop(b);
        assert_eq!(epochs.pending_since(later), 0);
    }
}
