//! Panics and faults inside cells, reported with frames that name the cells.
//!
//! [`install`] puts in place
//!
//! - a **panic hook**: a panic whose stack holds a cell frame is reported as std reports one
//!   (`thread '…' panicked at …`), with a backtrace whose cell frames read
//!   `memfs::read+0x4f (cell memfs 0.1.0, namespace _kernel)` (named from the loader's registry,
//!   [`loader::hosted::debug`]; a retired version still mapped says `retired`). The backtrace is
//!   printed when `RUST_BACKTRACE` asks for one, as std's is, and is kept for the thread
//!   ([`take_last_panic`]) either way. A panic with no cell frame goes to the hook that was there
//!   before (std's).
//! - a **fault report**: on `SIGSEGV`, `SIGBUS`, `SIGILL` or `SIGFPE` the faulting instruction and
//!   the stack are printed the same way, then the signal's previous disposition is put back and
//!   the instruction runs again, so the process dies of the signal as before (a stack overflow is
//!   left to std's handler, which reports it). The same signal sent by `kill` is reported too,
//!   then raised again with its default action. The report allocates and takes no lock that may be held
//!   (the cells' table is only tried): good enough for a process about to die, not
//!   async-signal-safe in general.
//!
//! The report runs on the thread's alternate signal stack (so that a handler runs at all when the
//! thread's own stack is exhausted). The one std gives a thread is `SIGSTKSZ` (8 KiB), and where
//! the processor saves a large register state with the signal (AVX-512's: an AMD EPYC of the
//! machines we run on) a backtrace no longer fits in it: the handler faulted again and the process
//! died without a word. [`prepare_thread`] gives the calling thread an alternate stack the report
//! fits in; [`install`] prepares the calling thread, and every thread that runs cell code on
//! behalf of an application calls it first.

use std::cell::RefCell;
use std::io::Write;
use std::sync::{Once, OnceLock};

use loader::hosted::debug::backtrace::Backtrace;

thread_local! {
    /// The backtrace of the last panic on this thread that went through a cell.
    static LAST: RefCell<Option<Backtrace>> = const { RefCell::new(None) };
}

/// The backtrace of the last panic on the calling thread whose stack held a cell frame, taken
/// (a second call returns `None`).
pub fn take_last_panic() -> Option<Backtrace> {
    LAST.with(|l| l.borrow_mut().take())
}

/// Whether `RUST_BACKTRACE` asks for backtraces (set, and not `0`).
fn backtraces_wanted() -> bool {
    std::env::var_os("RUST_BACKTRACE").is_some_and(|v| v != "0")
}

/// The alternate signal stack [`prepare_thread`] gives a thread: room for a backtrace.
const ALT_STACK_SIZE: usize = 256 * 1024;

thread_local! {
    /// This thread's alternate signal stack, when [`prepare_thread`] made one.
    static ALT_STACK: RefCell<Option<AltStack>> = const { RefCell::new(None) };
}

/// An alternate signal stack of this thread, disabled before its memory is freed.
struct AltStack {
    memory: Box<[u8]>,
}

impl AltStack {
    /// Makes a new stack the calling thread's alternate signal stack.
    fn install() -> Option<AltStack> {
        let mut memory = vec![0u8; ALT_STACK_SIZE].into_boxed_slice();
        let stack = libc::stack_t {
            ss_sp: memory.as_mut_ptr().cast(),
            ss_flags: 0,
            ss_size: memory.len(),
        };
        // SAFETY: `memory` stays allocated as long as the returned value, whose drop disables the
        // stack before freeing it; the thread is not running on an alternate stack here.
        let done = unsafe { libc::sigaltstack(&stack, std::ptr::null_mut()) } == 0;
        done.then_some(AltStack { memory })
    }
}

impl Drop for AltStack {
    fn drop(&mut self) {
        // SAFETY: an all-zero `stack_t` is a valid value for `sigaltstack` to fill in.
        let mut current: libc::stack_t = unsafe { std::mem::zeroed() };
        // SAFETY: only reads the calling thread's alternate stack into `current`.
        unsafe { libc::sigaltstack(std::ptr::null(), &mut current) };
        if current.ss_sp == self.memory.as_mut_ptr().cast() && current.ss_flags != libc::SS_DISABLE
        {
            let off = libc::stack_t {
                ss_sp: std::ptr::null_mut(),
                ss_flags: libc::SS_DISABLE,
                ss_size: 0,
            };
            // SAFETY: disables the thread's alternate stack (this one) before its memory is
            // freed; a thread-local's destructor does not run on the alternate stack.
            unsafe { libc::sigaltstack(&off, std::ptr::null_mut()) };
        }
    }
}

/// Gives the calling thread an alternate signal stack a fault report fits in (the module's doc);
/// a second call on the same thread does nothing.
pub fn prepare_thread() {
    let _ = ALT_STACK.try_with(|s| {
        let mut s = s.borrow_mut();
        if s.is_none() {
            *s = AltStack::install();
        }
    });
}

/// Installs the panic hook and the fault handlers, once per process, and prepares the calling
/// thread ([`prepare_thread`]).
pub fn install() {
    prepare_thread();
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let bt = Backtrace::of_panic();
            if !bt.has_cell_frames() {
                return previous(info);
            }
            let thread = std::thread::current();
            let name = thread.name().unwrap_or("<unnamed>");
            let message = info
                .payload_as_str()
                .unwrap_or("(a panic with a non-string payload)");
            let at = info
                .location()
                .map(|l| format!(" at {}:{}:{}", l.file(), l.line(), l.column()))
                .unwrap_or_default();
            let mut err = std::io::stderr().lock();
            let _ = writeln!(err, "\nthread '{name}' panicked{at}:\n{message}");
            if backtraces_wanted() {
                let _ = write!(
                    err,
                    "stack backtrace (cells named from the registry):\n{bt}"
                );
            } else {
                let _ = writeln!(
                    err,
                    "note: run with `RUST_BACKTRACE=1` to display a backtrace that names cells"
                );
            }
            LAST.with(|l| *l.borrow_mut() = Some(bt));
        }));
        signals::install();
    });
}

/// The fault handlers.
mod signals {
    use super::*;

    const SIGNALS: [(libc::c_int, &str); 4] = [
        (libc::SIGSEGV, "SIGSEGV"),
        (libc::SIGBUS, "SIGBUS"),
        (libc::SIGILL, "SIGILL"),
        (libc::SIGFPE, "SIGFPE"),
    ];

    /// Each signal's disposition before ours, put back by the handler.
    static PREVIOUS: [OnceLock<libc::sigaction>; 4] = [const { OnceLock::new() }; 4];

    extern "C" fn on_fault(
        sig: libc::c_int,
        info: *mut libc::siginfo_t,
        context: *mut libc::c_void,
    ) {
        let Some(i) = SIGNALS.iter().position(|(s, _)| *s == sig) else {
            return;
        };
        // SAFETY: the kernel passes a valid `siginfo_t` to an `SA_SIGINFO` handler.
        let (addr, code) = unsafe { ((*info).si_addr() as u64, (*info).si_code) };
        // SAFETY: and a valid `ucontext_t` as its third argument; x86_64 keeps the interrupted
        // registers in `gregs`.
        let (pc, sp) = unsafe {
            let gregs = &(*context.cast::<libc::ucontext_t>()).uc_mcontext.gregs;
            (
                gregs[libc::REG_RIP as usize] as u64,
                gregs[libc::REG_RSP as usize] as u64,
            )
        };
        // A fault just below the stack pointer is a stack overflow: std's handler reports it,
        // and the small alternate stack is no place for a backtrace.
        let overflow = code > 0 && addr <= sp && sp - addr < STACK_OVERFLOW_REACH;
        if !overflow {
            let cause = if code > 0 {
                format!("at address {addr:#x}")
            } else {
                "sent by kill".to_string()
            };
            report(SIGNALS[i].1, &cause, pc);
        }
        // SAFETY: an all-zero `sigaction` with `SIG_DFL` is the default disposition.
        let mut default: libc::sigaction = unsafe { std::mem::zeroed() };
        default.sa_sigaction = libc::SIG_DFL;
        // A signal sent by `kill`/`tgkill` (code <= 0) is not raised again by returning: it is
        // raised once more with the default action, which ends the process when this handler
        // returns (the signal is blocked until then). A fault runs its instruction again.
        let (then, sent) = match PREVIOUS[i].get() {
            Some(previous) if code > 0 => (previous, false),
            _ => (&default, code <= 0),
        };
        // SAFETY: `then` is the disposition `sigaction` reported for this signal when ours was
        // installed, or the default one; putting it back makes the re-executed instruction fault
        // into it (std's guard-page handler, or the default action).
        unsafe { libc::sigaction(sig, then, std::ptr::null_mut()) };
        if sent {
            // SAFETY: raising a signal whose disposition is the default one.
            unsafe { libc::raise(sig) };
        }
    }

    /// How far below the stack pointer a fault counts as a stack overflow.
    const STACK_OVERFLOW_REACH: u64 = 1 << 20;

    /// Prints the fault report: the signal and its cause, the interrupted instruction, the stack.
    fn report(signal: &str, cause: &str, pc: u64) {
        let place = loader::hosted::debug::name_address(pc)
            .map(|c| format!(" in {c}"))
            .unwrap_or_default();
        let bt = Backtrace::capture();
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "\nnano_core: fault: {signal} {cause}, instruction {pc:#x}{place}\n\
             stack backtrace (cells named from the registry):\n{bt}"
        );
    }

    pub(super) fn install() {
        for (i, (sig, _)) in SIGNALS.iter().enumerate() {
            // SAFETY: an all-zero `sigaction` is a valid value to fill in.
            let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
            action.sa_sigaction = on_fault
                as extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void)
                as usize;
            action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
            // SAFETY: as above.
            let mut previous: libc::sigaction = unsafe { std::mem::zeroed() };
            // SAFETY: `action` holds an `SA_SIGINFO` handler of the right signature, `previous`
            // is a local the call fills in.
            if unsafe { libc::sigaction(*sig, &action, &mut previous) } == 0 {
                let _ = PREVIOUS[i].set(previous);
            }
        }
    }
}
