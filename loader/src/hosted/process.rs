//! The process around the loader: `(argc, argv, envp)` for `.init_array` functions, and a clock.

use std::string::String;
use std::sync::atomic::{AtomicI32, AtomicPtr, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

use super::{threads, Hosted};
use crate::platform::{Debuggers, GateHooks, InitArgs, Inside, PlatformError, Process, TextRange};

static ARGC: AtomicI32 = AtomicI32::new(0);
static ARGV: AtomicPtr<*const u8> = AtomicPtr::new(std::ptr::null_mut());
static ENVP: AtomicPtr<*const u8> = AtomicPtr::new(std::ptr::null_mut());

/// glibc calls every `.init_array` function of the executable with `(argc, argv, envp)` before
/// `main`; this one keeps them for the cells' own `.init_array` functions (std's own
/// `ARGV_INIT_ARRAY` does the same for `std::env::args`).
extern "C" fn capture_args(argc: i32, argv: *const *const u8, envp: *const *const u8) {
    ARGC.store(argc, Ordering::Relaxed);
    ARGV.store(argv.cast_mut(), Ordering::Relaxed);
    ENVP.store(envp.cast_mut(), Ordering::Relaxed);
}

#[used]
#[unsafe(link_section = ".init_array.00099")]
static CAPTURE_ARGS: extern "C" fn(i32, *const *const u8, *const *const u8) = capture_args;

/// A caller parked at a swap's gate sleeps on the gate's word (a futex) while it is 1; a timeout
/// of a millisecond bounds a missed wake.
extern "C" fn gate_wait(word: *const u32) {
    let timeout = libc::timespec {
        tv_sec: 0,
        tv_nsec: 1_000_000,
    };
    // SAFETY: `word` is the gate's state word, an aligned `u32` in memory that stays mapped while
    // a caller can be parked (the gate's mapping); FUTEX_WAIT only reads it.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word,
            libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
            1u32,
            &timeout as *const libc::timespec,
        );
    }
}

/// Wakes every caller parked on the gate's word.
extern "C" fn gate_wake(word: *const u32) {
    // SAFETY: `word` is the gate's state word, an aligned `u32` in the gate's mapping, which
    // stays mapped while the gate can be waited on; FUTEX_WAKE only looks waiters up by the
    // address and reads no memory.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word,
            libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
            i32::MAX,
        );
    }
}

/// The clock parked callers measure their wait with.
extern "C" fn gate_now() -> u64 {
    epoch().elapsed().as_nanos() as u64
}

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

impl Process for Hosted {
    fn init_args(&self) -> InitArgs {
        InitArgs {
            argc: ARGC.load(Ordering::Relaxed),
            argv: ARGV.load(Ordering::Relaxed).cast_const(),
            envp: ENVP.load(Ordering::Relaxed).cast_const(),
        }
    }

    fn now_nanos(&self) -> u64 {
        epoch().elapsed().as_nanos() as u64
    }

    fn threads_inside(
        &self,
        ranges: &[TextRange],
        entries: &[u64],
        out: &mut std::vec::Vec<Inside>,
    ) -> Result<(), PlatformError> {
        threads::threads_inside(ranges, entries, out)
    }

    fn current_inside(&self, ranges: &[TextRange]) -> Option<u64> {
        threads::current_inside(ranges)
    }

    fn pause(&self) {
        std::thread::sleep(std::time::Duration::from_micros(50));
    }

    fn debuggers(&self) -> Option<&dyn Debuggers> {
        Some(&super::debug::HostedDebuggers)
    }

    fn gate_hooks(&self) -> GateHooks {
        GateHooks {
            wait: gate_wait,
            wake: gate_wake,
            now: Some(gate_now),
        }
    }

    fn guarded(&self, f: &mut dyn FnMut()) -> Result<(), String> {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|payload| {
            if let Some(s) = payload.downcast_ref::<&str>() {
                (*s).into()
            } else if let Some(s) = payload.downcast_ref::<String>() {
                s.clone()
            } else {
                "a panic with a non-string payload".into()
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_array_saw_the_programs_arguments() {
        let args = Hosted::new().unwrap().init_args();
        assert_eq!(args.argc as usize, std::env::args().count());
        assert!(!args.argv.is_null() && !args.envp.is_null());
        // SAFETY: glibc passes argv with argc entries that live for the whole process.
        let first = unsafe { std::ffi::CStr::from_ptr((*args.argv).cast()) };
        assert_eq!(first.to_str().unwrap(), std::env::args().next().unwrap());
    }

    #[test]
    fn the_clock_moves_forward() {
        let h = Hosted::new().unwrap();
        let a = h.now_nanos();
        std::thread::sleep(std::time::Duration::from_millis(1));
        assert!(h.now_nanos() > a);
    }
}
