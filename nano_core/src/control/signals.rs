//! SIGINT and SIGTERM stop the serve loop, so that it removes its socket. The handler only sets a
//! flag; the kernel thread looks at it at least every tick, whatever the clients do.

use std::sync::atomic::{AtomicBool, Ordering};

static RECEIVED: AtomicBool = AtomicBool::new(false);

const SIGINT: i32 = 2;
const SIGTERM: i32 = 15;

extern "C" {
    // glibc's `signal`: BSD semantics (the handler stays installed, system calls restart).
    fn signal(signum: i32, handler: usize) -> usize;
}

extern "C" fn on_signal(_: i32) {
    // Only an atomic store: async-signal-safe.
    RECEIVED.store(true, Ordering::SeqCst);
}

/// Installs the handlers.
pub fn install() {
    let handler = on_signal as extern "C" fn(i32) as usize;
    for sig in [SIGINT, SIGTERM] {
        // SAFETY: `on_signal` is an `extern "C" fn(c_int)` that only stores to an atomic.
        unsafe { signal(sig, handler) };
    }
}

/// Whether SIGINT or SIGTERM arrived.
pub fn received() -> bool {
    RECEIVED.load(Ordering::SeqCst)
}
