//! `sleeper`: an application that does not return until it is told to: the application that
//! does not end in time, for the tests of `end`'s deadline.
//!
//! `main(["hold"])` waits until [`release`] is called (from the host, through a handle into the
//! application's namespace), checking every millisecond; `main([ms])` sleeps that many
//! milliseconds; `main([])` returns at once. Each returns 0 (2 for an argument it cannot read).
#![deny(missing_docs)]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Set by [`release`]: a held run returns.
pub static RELEASED: AtomicBool = AtomicBool::new(false);
/// How many runs returned.
pub static RETURNED: AtomicU64 = AtomicU64::new(0);

/// Holds, sleeps or returns, as the module docs say.
#[inline(never)]
pub fn main(args: &[String]) -> i32 {
    match args.first().map(String::as_str) {
        None => {}
        Some("hold") => {
            while !RELEASED.load(Ordering::Acquire) {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        }
        Some(ms) => match ms.parse::<u64>() {
            Ok(ms) => std::thread::sleep(std::time::Duration::from_millis(ms)),
            Err(_) => return 2,
        },
    }
    RETURNED.fetch_add(1, Ordering::Relaxed);
    0
}

/// Lets a held run return.
#[inline(never)]
pub fn release() {
    RELEASED.store(true, Ordering::Release);
}

// The interface, checked against cell-abi at compile time: hosts bind these functions by the
// types declared there.
const _: cell_abi::Main = main;
const _: cell_abi::sleeper::Release = release;
