//! Knowing who is inside: a stack check of every thread of the process, as Linux livepatch checks
//! a sleeping task's stack before it moves the task to the new code, but without stopping anyone.
//!
//! For each thread but the caller's, the scanner sends a real-time signal ([`SCAN_SIGNAL`]) with
//! `tgkill`; the thread's handler looks at what the interrupted thread holds and reports the first
//! thing that lies in the ranges asked about (the old versions' text):
//!
//! - its instruction pointer, and every general register (a handle call loads the slot into a
//!   register and calls it: a thread interrupted between the two holds the old address there);
//! - every word of its live stack (from the interrupted stack pointer to the end of the mapping
//!   that holds it) that is a return address into the ranges — the bytes before it in the range
//!   decode as a `call` instruction that ends exactly there — or that is exactly one of the entry
//!   points asked about (a function pointer spilled between loading a handle and calling it).
//!
//! A return address of an active frame is always on the live stack, so a thread that runs old code,
//! or will return into it, is found. A stale word that happens to look like one makes a thread
//! look inside when it is not; the swap then waits for it, or gives up at its deadline and changes
//! nothing. A thread that does not answer within [`ANSWER_WITHIN`] (blocked with signals masked,
//! or in an uninterruptible sleep) is reported with address 0: assumed inside. What is not seen: a
//! raw function pointer into a cell that the host keeps across other work and calls later (the
//! host calls cells through handles, read right before each call).
//!
//! The handler reads only memory (the request in [`REQUEST`], its stack, the snapshot of the
//! process's mappings taken before the signals) and atomics, and calls only `gettid`: it is
//! async-signal-safe. One scan runs at a time. The signal is installed with `SA_RESTART`, so the
//! system calls it interrupts restart, but a few (`poll`, `epoll_wait`, a socket read with a
//! timeout) return `EINTR` while a swap whose state moves checks the threads.

use std::string::String;
use std::sync::atomic::{AtomicI32, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant};
use std::vec::Vec;

use crate::platform::{Inside, PlatformError, TextRange};

/// The signal the scanner sends: a real-time signal above glibc's own, unused by Rust's `std`.
pub fn scan_signal() -> i32 {
    libc::SIGRTMIN() + 5
}

/// The name of [`scan_signal`] for documentation: `SIGRTMIN+5`.
pub const SCAN_SIGNAL: &str = "SIGRTMIN+5";

/// How long a thread has to answer the signal.
pub const ANSWER_WITHIN: Duration = Duration::from_millis(50);

const PENDING: u64 = 0;
const CLEAN: u64 = 1;
const FOUND: u64 = 2;

/// One thread's answer.
struct Answer {
    /// The thread asked (its kernel thread id).
    tid: AtomicI32,
    /// `seq << 2 | CLEAN` or `seq << 2 | FOUND` (anything else: pending).
    state: AtomicU64,
    /// The address found.
    found: AtomicU64,
}

/// One scan's request, shared with the handlers through atomics. The buffers are published
/// before the signals and freed only when no handler runs ([`ACTIVE`]).
struct Request {
    /// The scan's number: an answer carries it, so a late answer to an earlier scan is ignored.
    seq: AtomicU64,
    /// One answer slot per thread asked: `len` of them at `answers`.
    answers: AtomicPtr<Answer>,
    answers_len: AtomicUsize,
    /// The ranges: `len` pairs of `(start, end)` words at `ranges`.
    ranges: AtomicPtr<u64>,
    ranges_len: AtomicUsize,
    /// The process's readable mappings, sorted: `len` pairs of `(start, end)` at `maps`.
    maps: AtomicPtr<u64>,
    maps_len: AtomicUsize,
    /// The entry points in the ranges, sorted: `len` words at `entries`.
    entries: AtomicPtr<u64>,
    entries_len: AtomicUsize,
}

static REQUEST: Request = Request {
    seq: AtomicU64::new(0),
    answers: AtomicPtr::new(std::ptr::null_mut()),
    answers_len: AtomicUsize::new(0),
    ranges: AtomicPtr::new(std::ptr::null_mut()),
    ranges_len: AtomicUsize::new(0),
    maps: AtomicPtr::new(std::ptr::null_mut()),
    maps_len: AtomicUsize::new(0),
    entries: AtomicPtr::new(std::ptr::null_mut()),
    entries_len: AtomicUsize::new(0),
};

/// Handlers running now: the scanner frees the buffers it published only when none is.
static ACTIVE: AtomicUsize = AtomicUsize::new(0);

/// One scan at a time: the request above is global.
static SCANNING: Mutex<()> = Mutex::new(());
static INSTALL: Once = Once::new();

fn gettid() -> i32 {
    // SAFETY: `gettid` takes no arguments, cannot fail and is async-signal-safe.
    unsafe { libc::syscall(libc::SYS_gettid) as i32 }
}

/// The `(start, end)` pairs at `ptr..ptr+2*len` as a slice.
///
/// # Safety
/// `ptr` points to `2 * len` initialized words that stay alive and unchanged while the slice is
/// used (the scanner keeps its buffers until every thread answered or timed out).
unsafe fn pairs<'a>(ptr: *const u64, len: usize) -> &'a [[u64; 2]] {
    if ptr.is_null() || len == 0 {
        return &[];
    }
    // SAFETY: as the caller promises; `[u64; 2]` has the alignment of `u64`.
    unsafe { std::slice::from_raw_parts(ptr.cast::<[u64; 2]>(), len) }
}

fn in_ranges(ranges: &[[u64; 2]], addr: u64) -> bool {
    ranges.iter().any(|[s, e]| addr >= *s && addr < *e)
}

/// The range of `ranges` that holds `addr`.
fn range_of(ranges: &[[u64; 2]], addr: u64) -> Option<[u64; 2]> {
    ranges
        .iter()
        .copied()
        .find(|[s, e]| addr >= *s && addr < *e)
}

/// Whether `addr`, which lies in `range`, is a return address: a `call` instruction inside the
/// range ends exactly there (`E8 rel32`, or `FF /2` with any ModRM/SIB/displacement form, after an
/// optional REX prefix).
///
/// # Safety
/// `range` is readable memory (a cell's text).
unsafe fn is_return_address(range: [u64; 2], addr: u64) -> bool {
    let byte = |at: u64| -> Option<u8> {
        // SAFETY: only addresses inside `range`, which the caller vouches is readable.
        (at >= range[0] && at < range[1])
            .then(|| unsafe { core::ptr::read_volatile(at as usize as *const u8) })
    };
    for back in 2..=8u64 {
        let Some(mut at) = addr.checked_sub(back) else {
            continue;
        };
        let Some(mut op) = byte(at) else { continue };
        if (0x40..=0x4f).contains(&op) {
            at += 1;
            let Some(next) = byte(at) else { continue };
            op = next;
        }
        let len = match op {
            0xe8 => 5,
            0xff => {
                let Some(modrm) = byte(at + 1) else { continue };
                if (modrm >> 3) & 7 != 2 {
                    continue;
                }
                let (mode, rm) = (modrm >> 6, modrm & 7);
                let sib = mode != 3 && rm == 4;
                let disp = match mode {
                    0 if rm == 5 => 4,
                    0 if sib => match byte(at + 2) {
                        Some(s) if s & 7 == 5 => 4,
                        Some(_) => 0,
                        None => continue,
                    },
                    1 => 1,
                    2 => 4,
                    _ => 0,
                };
                2 + u64::from(sib) + disp
            }
            _ => continue,
        };
        if at + len == addr {
            return true;
        }
    }
    false
}

/// Whether the stack word `word` points into `ranges` as a return address or an entry point.
///
/// # Safety
/// The ranges are readable memory.
unsafe fn suspicious(ranges: &[[u64; 2]], entries: &[u64], word: u64) -> bool {
    let Some(range) = range_of(ranges, word) else {
        return false;
    };
    if entries.binary_search(&word).is_ok() {
        return true;
    }
    // SAFETY: the ranges are readable (caller).
    unsafe { is_return_address(range, word) }
}

/// The end of the mapping that holds `addr`, from the sorted snapshot.
fn mapping_end(maps: &[[u64; 2]], addr: u64) -> Option<u64> {
    let i = maps.partition_point(|[start, _]| *start <= addr);
    let [start, end] = *maps.get(i.checked_sub(1)?)?;
    (addr >= start && addr < end).then_some(end)
}

/// The first word of `stack_pointer..end` (8-byte steps) that is a return address into
/// `ranges`, or one of `entries`.
///
/// # Safety
/// `stack_pointer..end` is readable memory (a live stack and the rest of its mapping), and so are
/// the ranges.
unsafe fn scan_stack(
    ranges: &[[u64; 2]],
    entries: &[u64],
    stack_pointer: u64,
    end: u64,
) -> Option<u64> {
    let mut at = stack_pointer & !7;
    while at.checked_add(8).is_some_and(|next| next <= end) {
        // SAFETY: `at..at+8` lies in the readable range the caller vouches for.
        let word = unsafe { core::ptr::read_volatile(at as usize as *const u64) };
        // SAFETY: the ranges are readable (caller).
        if unsafe { suspicious(ranges, entries, word) } {
            return Some(word);
        }
        at += 8;
    }
    None
}

extern "C" fn on_scan_signal(_sig: i32, _info: *mut libc::siginfo_t, context: *mut libc::c_void) {
    ACTIVE.fetch_add(1, Ordering::SeqCst);
    let seq = REQUEST.seq.load(Ordering::SeqCst);
    let (ptr, len) = (
        REQUEST.answers.load(Ordering::SeqCst),
        REQUEST.answers_len.load(Ordering::SeqCst),
    );
    if !ptr.is_null() && len > 0 && !context.is_null() {
        // SAFETY: the scanner published `len` answers at `ptr` before signalling and frees them
        // only once no handler runs (`ACTIVE`, counted above before the load).
        let answers = unsafe { std::slice::from_raw_parts(ptr.cast_const(), len) };
        let me = gettid();
        if let Some(slot) = answers.iter().find(|a| a.tid.load(Ordering::Relaxed) == me) {
            let found = answer(context);
            if let Some(addr) = found {
                slot.found.store(addr, Ordering::SeqCst);
            }
            let result = if found.is_some() { FOUND } else { CLEAN };
            slot.state.store(seq << 2 | result, Ordering::SeqCst);
        }
    }
    ACTIVE.fetch_sub(1, Ordering::SeqCst);
}

/// What the interrupted thread holds in the ranges, if anything.
fn answer(context: *mut libc::c_void) -> Option<u64> {
    // SAFETY: the scanner published these buffers before sending the signal and keeps them
    // until this thread answers (or the scanner stops waiting, after which it clears `tid`).
    let ranges = unsafe {
        pairs(
            REQUEST.ranges.load(Ordering::Acquire),
            REQUEST.ranges_len.load(Ordering::Acquire),
        )
    };
    // SAFETY: as above.
    let maps = unsafe {
        pairs(
            REQUEST.maps.load(Ordering::Acquire),
            REQUEST.maps_len.load(Ordering::Acquire),
        )
    };
    let entries = {
        let ptr = REQUEST.entries.load(Ordering::Acquire);
        let len = REQUEST.entries_len.load(Ordering::Acquire);
        if ptr.is_null() || len == 0 {
            &[][..]
        } else {
            // SAFETY: as above: `len` words the scanner keeps alive until no handler runs.
            unsafe { std::slice::from_raw_parts(ptr.cast_const(), len) }
        }
    };
    // SAFETY: the kernel passes a `ucontext_t` as the third argument of an `SA_SIGINFO` handler.
    let registers = unsafe { &(*context.cast::<libc::ucontext_t>()).uc_mcontext.gregs };
    let rsp = registers[libc::REG_RSP as usize] as u64;
    let end = mapping_end(maps, rsp);
    // A caller parked at a swap's gate: its own frames start where the gate recorded them; the
    // gate's frames below hold stale words, not calls in progress.
    let parked = end.and_then(|end| crate::swap::gate::parked_frames_in(rsp, end));
    let rsp = parked.unwrap_or(rsp);
    // The instruction pointer and every register (one may hold a slot's value about to be called).
    let found = match registers
        .iter()
        .map(|r| *r as u64)
        .find(|r| in_ranges(ranges, *r))
    {
        Some(held) => Some(held),
        None => match end {
            // SAFETY: `rsp..end` is the part of this thread's stack mapping at and above the
            // interrupted stack pointer: mapped and readable (the snapshot was taken before the
            // signal, and a thread's own stack stays mapped while it runs); the ranges are text
            // of mapped cells, readable, which the swap keeps mapped while it scans.
            Some(end) => unsafe { scan_stack(ranges, entries, rsp, end) },
            // The stack is not in the snapshot (a thread made after it): assume inside.
            None => Some(0),
        },
    };
    found
}

fn install() -> Result<(), PlatformError> {
    let mut result = Ok(());
    INSTALL.call_once(|| {
        // SAFETY: a zeroed `sigaction` is valid; the handler has the `SA_SIGINFO` signature and
        // is async-signal-safe (module docs).
        unsafe {
            let mut action: libc::sigaction = core::mem::zeroed();
            action.sa_sigaction = on_scan_signal as *const () as usize;
            action.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            if libc::sigaction(scan_signal(), &action, core::ptr::null_mut()) != 0 {
                result = Err(PlatformError::Unsupported(
                    "installing the stack-check signal handler",
                ));
            }
        }
    });
    result
}

/// The readable mappings of the process, sorted, as `(start, end)` pairs.
fn readable_mappings() -> Vec<u64> {
    let text = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
    let mut out = Vec::new();
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        let (Some(range), Some(perms)) = (fields.next(), fields.next()) else {
            continue;
        };
        if !perms.starts_with('r') {
            continue;
        }
        let Some((start, end)) = range.split_once('-') else {
            continue;
        };
        if let (Ok(start), Ok(end)) = (u64::from_str_radix(start, 16), u64::from_str_radix(end, 16))
        {
            out.push(start);
            out.push(end);
        }
    }
    out
}

fn alloc_vec_bool(n: usize) -> Vec<bool> {
    std::vec![false; n]
}

fn thread_ids() -> Vec<i32> {
    std::fs::read_dir("/proc/self/task")
        .map(|dir| {
            dir.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

fn thread_name(tid: i32) -> String {
    std::fs::read_to_string(std::format!("/proc/self/task/{tid}/comm"))
        .map(|s| s.trim().into())
        .unwrap_or_default()
}

/// Checks every thread but the caller's (see the module docs); `entries` are the entry points in
/// the ranges that a spilled function pointer would hold.
pub(crate) fn threads_inside(
    ranges: &[TextRange],
    entries: &[u64],
    out: &mut Vec<Inside>,
) -> Result<(), PlatformError> {
    if ranges.is_empty() {
        return Ok(());
    }
    install()?;
    let _one = SCANNING.lock().unwrap_or_else(|e| e.into_inner());
    let mut range_words: Vec<u64> = ranges.iter().flat_map(|r| [r.start, r.end]).collect();
    let mut maps = readable_mappings();
    let mut entries: Vec<u64> = entries.to_vec();
    entries.sort_unstable();
    REQUEST
        .entries
        .store(entries.as_mut_ptr(), Ordering::Release);
    REQUEST.entries_len.store(entries.len(), Ordering::Release);
    REQUEST
        .ranges
        .store(range_words.as_mut_ptr(), Ordering::Release);
    REQUEST.ranges_len.store(ranges.len(), Ordering::Release);
    REQUEST.maps.store(maps.as_mut_ptr(), Ordering::Release);
    REQUEST.maps_len.store(maps.len() / 2, Ordering::Release);
    let me = gettid();
    // SAFETY: `getpid` cannot fail.
    let pid = unsafe { libc::getpid() };
    let seq = REQUEST.seq.fetch_add(1, Ordering::SeqCst) + 1;
    let tids: Vec<i32> = thread_ids().into_iter().filter(|t| *t != me).collect();
    let mut answers: Vec<Answer> = tids
        .iter()
        .map(|t| Answer {
            tid: AtomicI32::new(*t),
            state: AtomicU64::new(PENDING),
            found: AtomicU64::new(0),
        })
        .collect();
    REQUEST
        .answers
        .store(answers.as_mut_ptr(), Ordering::SeqCst);
    REQUEST.answers_len.store(answers.len(), Ordering::SeqCst);
    // Every thread at once: they answer in parallel.
    let mut asked = alloc_vec_bool(tids.len());
    for (i, tid) in tids.iter().enumerate() {
        // SAFETY: `tgkill` sends a signal to a thread of this process; a thread that exited in
        // between makes it fail with ESRCH, which means that thread is not inside.
        asked[i] = unsafe { libc::syscall(libc::SYS_tgkill, pid, *tid, scan_signal()) } == 0;
    }
    let answered = |a: &Answer| a.state.load(Ordering::SeqCst) >> 2 == seq;
    let start = Instant::now();
    while start.elapsed() <= ANSWER_WITHIN
        && answers
            .iter()
            .zip(&asked)
            .any(|(a, asked)| *asked && !answered(a))
    {
        std::thread::yield_now();
    }
    for ((a, asked), tid) in answers.iter().zip(&asked).zip(&tids) {
        if !*asked {
            continue;
        }
        if answered(a) {
            if a.state.load(Ordering::SeqCst) & 3 == FOUND {
                out.push(Inside {
                    thread: *tid as u64,
                    name: thread_name(*tid),
                    addr: a.found.load(Ordering::SeqCst),
                });
            }
        } else if std::path::Path::new(&std::format!("/proc/self/task/{tid}")).exists() {
            // No answer, and still alive: assume inside.
            out.push(Inside {
                thread: *tid as u64,
                name: thread_name(*tid),
                addr: 0,
            });
        }
    }
    REQUEST.answers_len.store(0, Ordering::SeqCst);
    // A handler that loaded the buffers before they were withdrawn may still read them: they are
    // freed only once no handler runs (a later one finds no answer slots and reads nothing).
    REQUEST.ranges_len.store(0, Ordering::SeqCst);
    REQUEST.maps_len.store(0, Ordering::SeqCst);
    REQUEST.entries_len.store(0, Ordering::SeqCst);
    while ACTIVE.load(Ordering::SeqCst) != 0 {
        std::thread::yield_now();
    }
    drop(range_words);
    drop(maps);
    drop(entries);
    drop(answers);
    Ok(())
}

/// Whether the calling thread's live stack holds a return address into `ranges` (its own frames:
/// the values it merely computes about the ranges are not return addresses).
pub(crate) fn current_inside(ranges: &[TextRange]) -> Option<u64> {
    let range_words: Vec<[u64; 2]> = ranges.iter().map(|r| [r.start, r.end]).collect();
    let maps: Vec<[u64; 2]> = readable_mappings()
        .chunks_exact(2)
        .map(|c| [c[0], c[1]])
        .collect();
    let marker = 0u8;
    let here = core::ptr::addr_of!(marker) as u64;
    let end = mapping_end(&maps, here)?;
    // SAFETY: `here..end` is the rest of this thread's own stack mapping above a local: mapped
    // and readable while this function runs; the ranges are text the caller keeps mapped.
    unsafe { scan_stack(&range_words, &[], here, end) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    #[inline(never)]
    fn parked(stop: &AtomicBool, seen: &AtomicBool) {
        seen.store(true, Ordering::Release);
        while !stop.load(Ordering::Acquire) {
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn a_thread_inside_a_function_is_found_and_one_outside_is_not() {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(AtomicBool::new(false));
        let (s, n) = (stop.clone(), seen.clone());
        let worker = std::thread::Builder::new()
            .name("parked".into())
            .spawn(move || parked(&s, &n))
            .unwrap();
        while !seen.load(Ordering::Acquire) {
            std::thread::yield_now();
        }
        // `parked`'s code: its return address from `sleep` lies in it while it waits.
        let start = parked as *const () as u64;
        let inside = [TextRange {
            start,
            end: start + 4096,
        }];
        let mut out = Vec::new();
        threads_inside(&inside, &[], &mut out).unwrap();
        let found: Vec<&Inside> = out.iter().filter(|i| i.name == "parked").collect();
        assert_eq!(found.len(), 1, "{out:?}");
        assert!(inside[0].contains(found[0].addr), "{out:?}");
        // A range nobody runs (and no number on a stack is likely to fall in): no thread is
        // reported, none times out either.
        let nowhere = [TextRange {
            start: 0x7ffe_dead_0000,
            end: 0x7ffe_dead_0010,
        }];
        out.clear();
        threads_inside(&nowhere, &[], &mut out).unwrap();
        assert!(out.is_empty(), "{out:?}");
        stop.store(true, Ordering::Release);
        worker.join().unwrap();
    }

    #[test]
    fn the_calling_thread_sees_its_own_frames() {
        #[inline(never)]
        fn check() -> Option<u64> {
            let me = a_frame as *const () as u64;
            let range = [TextRange {
                start: me,
                end: me + 4096,
            }];
            current_inside(&range)
        }
        #[inline(never)]
        fn a_frame() -> Option<u64> {
            core::hint::black_box(check())
        }
        assert!(a_frame().is_some());
        let nowhere = TextRange {
            start: 0x7ffe_dead_0000,
            end: 0x7ffe_dead_0010,
        };
        assert!(current_inside(&[nowhere]).is_none());
    }
}
