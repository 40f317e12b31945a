//! The process around the loader: `(argc, argv, envp)` for `.init_array` functions, and a clock.

use std::string::String;
use std::sync::atomic::{AtomicI32, AtomicPtr, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

use super::Hosted;
use crate::platform::{InitArgs, Process};

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
