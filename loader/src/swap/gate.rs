//! The gate: the consistency model of a swap whose state moves.
//!
//! A state transfer reads the old version's state and builds the new version's from it. Without
//! more, calls into the old version that run during the transfer change state the transfer has
//! already read, and those updates are lost (a frame allocated by the old allocator is forgotten by
//! the new one and handed out twice). So before the transfer:
//!
//! 1. **close** — every slot through which a caller outside the swap reaches one of the old
//!    versions' functions is pointed at a gate stub for that function. A new call lands in the
//!    stub and waits ([`gate_wait`]): no code of the old version can be entered any more.
//! 2. **drain** — calls already inside the old versions finish: the platform checks every other
//!    thread ([`Process::threads_inside`](crate::platform::Process::threads_inside): hosted, a
//!    stack and register check of each thread), and the swap waits until none is inside, or gives
//!    up at its deadline (and undoes the gate: the waiting callers go on into the old version, and
//!    nothing changed).
//! 3. **transfer** — the old state is still; the new version builds its own from it.
//! 4. **commit and open** — the slots get the new versions' addresses, each stub's forward word
//!    too, and the gate opens: the waiting callers continue into the new version.
//!
//! Why this loses nothing: after step 1 every way into the old versions leads through the gate
//! (text is never patched, every cross-cell call goes through a slot, and the slots the swap
//! does not move belong to the cells it replaces); after step 2 no thread is inside; so from the
//! transfer's first read to the commit no code of the old version runs, and every update made
//! before is in the state the transfer reads. A call that does not meet a swap costs what it
//! always did: the slot read and the indirect call, nothing more.
//!
//! A stub is 13 bytes: `movabs r11, <descriptor>; jmp [r11]`. The descriptor holds the entry
//! routine's address, the gate's state and the forward word; the entry routine
//! (`__cells_gate_entry`) saves every argument register, calls [`gate_wait`], restores them and
//! jumps through the forward word, with the stack exactly as the caller left it, so the function
//! returns straight to its caller. Stubs are read + execute, descriptors and state read + write.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

use crate::mapping::Mapping;
use crate::platform::{GateHooks, Memory, PlatformError};
use crate::region::{Regions, Span};

/// The gate's state words, at the start of its data region.
mod word {
    /// 1 while closed.
    pub(super) const CLOSED: usize = 0;
    /// Callers waiting now.
    pub(super) const WAITING: usize = 1;
    /// Callers that waited, in all.
    pub(super) const PARKED: usize = 2;
    /// The longest wait, in nanoseconds.
    pub(super) const LONGEST: usize = 3;
    /// The wait hook (`extern "C" fn(*const u32)`).
    pub(super) const WAIT: usize = 4;
    /// The clock hook (`extern "C" fn() -> u64`), or 0.
    pub(super) const NOW: usize = 5;
    /// How many waits were recorded in the samples.
    pub(super) const SAMPLED: usize = 6;
    /// The wake hook (`extern "C" fn(*const u32)`).
    pub(super) const WAKE: usize = 7;
    /// The first of [`SAMPLES`] recorded waits.
    pub(super) const SAMPLES_AT: usize = 8;
}

/// How many waits a gate records (the first ones; enough for a median and a maximum).
pub(crate) const SAMPLES: usize = 1024;

/// State words and samples, before the descriptors.
const STATE_WORDS: usize = word::SAMPLES_AT + SAMPLES;

/// Bytes per stub (13 used, the rest `int3`).
const STUB_SIZE: usize = 16;

#[cfg(target_arch = "x86_64")]
core::arch::global_asm!(
    ".pushsection .text.__cells_gate_entry,\"ax\",@progbits",
    ".globl __cells_gate_entry",
    ".p2align 4",
    "__cells_gate_entry:",
    "push rbp",
    "mov rbp, rsp",
    "and rsp, -16",
    "sub rsp, 0xe0",
    "mov [rsp + 0x00], rdi",
    "mov [rsp + 0x08], rsi",
    "mov [rsp + 0x10], rdx",
    "mov [rsp + 0x18], rcx",
    "mov [rsp + 0x20], r8",
    "mov [rsp + 0x28], r9",
    "mov [rsp + 0x30], rax",
    "mov [rsp + 0x38], r10",
    "mov [rsp + 0x40], r11",
    "movdqu [rsp + 0x50], xmm0",
    "movdqu [rsp + 0x60], xmm1",
    "movdqu [rsp + 0x70], xmm2",
    "movdqu [rsp + 0x80], xmm3",
    "movdqu [rsp + 0x90], xmm4",
    "movdqu [rsp + 0xa0], xmm5",
    "movdqu [rsp + 0xb0], xmm6",
    "movdqu [rsp + 0xc0], xmm7",
    "mov rdi, [r11 + 8]",
    "lea rsi, [rbp + 8]",
    "call {wait}",
    "movdqu xmm0, [rsp + 0x50]",
    "movdqu xmm1, [rsp + 0x60]",
    "movdqu xmm2, [rsp + 0x70]",
    "movdqu xmm3, [rsp + 0x80]",
    "movdqu xmm4, [rsp + 0x90]",
    "movdqu xmm5, [rsp + 0xa0]",
    "movdqu xmm6, [rsp + 0xb0]",
    "movdqu xmm7, [rsp + 0xc0]",
    "mov rdi, [rsp + 0x00]",
    "mov rsi, [rsp + 0x08]",
    "mov rdx, [rsp + 0x10]",
    "mov rcx, [rsp + 0x18]",
    "mov r8, [rsp + 0x20]",
    "mov r9, [rsp + 0x28]",
    "mov rax, [rsp + 0x30]",
    "mov r10, [rsp + 0x38]",
    "mov r11, [rsp + 0x40]",
    "mov rsp, rbp",
    "pop rbp",
    "jmp qword ptr [r11 + 16]",
    ".popsection",
    wait = sym gate_wait,
);

#[cfg(target_arch = "x86_64")]
unsafe extern "C" {
    /// The gate's entry routine (assembly above). Never called from Rust: stubs jump to it.
    fn __cells_gate_entry();
}

/// The word `index` of the state at `state`.
///
/// # Safety
/// `state` is the state of a live gate (its data region stays mapped, read-write, for as long as
/// any caller can be in a stub: the gate's mapping is freed only with the cells it gated).
unsafe fn state_word<'a>(state: *const u64, index: usize) -> &'a AtomicU64 {
    // SAFETY: the caller promises `state` points to the gate's state words, `STATE_WORDS` aligned
    // words that are only ever accessed atomically.
    unsafe { AtomicU64::from_ptr(state.cast_mut().add(index)) }
}

/// How many callers can be parked at gates at once and still be told apart by a stack check.
const PARKED_SLOTS: usize = 256;

/// Where each parked caller's own frames start: the address of its return address, which the
/// gate's entry routine received from the stub's caller. A stack check skips the gate's frames
/// below it (they hold stale words of earlier calls, which could look like return addresses into
/// the old version) and looks at the caller's frames only. 0: a free slot.
static PARKED: [AtomicU64; PARKED_SLOTS] = [const { AtomicU64::new(0) }; PARKED_SLOTS];

/// Where the frames of a caller parked at a gate start, if one is parked on the stack `lo..hi` (the
/// lowest such address): a platform's stack check ([`Process::threads_inside`]) starts there
/// instead of at the interrupted stack pointer, skipping the gate's own frames and their stale
/// words.
///
/// [`Process::threads_inside`]: crate::platform::Process::threads_inside
pub fn parked_frames_in(lo: u64, hi: u64) -> Option<u64> {
    PARKED
        .iter()
        .map(|p| p.load(Ordering::Acquire))
        .filter(|p| *p >= lo && *p < hi)
        .min()
}

/// Records a parked caller (a slot index, or `None` when every slot is taken: then the caller's
/// gate frames are checked too, which can only delay a swap).
fn park(caller_frames: u64) -> Option<usize> {
    PARKED.iter().position(|slot| {
        slot.compare_exchange(0, caller_frames, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    })
}

/// Where a caller that met a closed gate waits. Called by the entry routine with the gate's state
/// and the address of the caller's return address (where its own frames start).
extern "C" fn gate_wait(state: *const u64, caller_frames: u64) {
    // SAFETY: the entry routine passes the state word of the descriptor the stub named, which
    // belongs to a live gate (see `state_word`).
    let closed = unsafe { state_word(state, word::CLOSED) };
    if closed.load(Ordering::Acquire) == 0 {
        return;
    }
    // SAFETY: as above.
    let (waiting, wait, now) = unsafe {
        (
            state_word(state, word::WAITING),
            state_word(state, word::WAIT).load(Ordering::Relaxed),
            state_word(state, word::NOW).load(Ordering::Relaxed),
        )
    };
    let parked_at = park(caller_frames);
    waiting.fetch_add(1, Ordering::AcqRel);
    // SAFETY: the hooks were written from `GateHooks` (function pointers of these types) when the
    // gate was made, and never changed.
    let wait: extern "C" fn(*const u32) =
        unsafe { core::mem::transmute::<usize, extern "C" fn(*const u32)>(wait as usize) };
    let now: Option<extern "C" fn() -> u64> = (now != 0).then(|| {
        // SAFETY: as above.
        unsafe { core::mem::transmute::<usize, extern "C" fn() -> u64>(now as usize) }
    });
    let start = now.map_or(0, |f| f());
    let mut spins = 0u32;
    while closed.load(Ordering::Acquire) != 0 {
        if spins < 64 {
            spins += 1;
            core::hint::spin_loop();
        } else {
            // The low half of the little-endian word: 1 while closed.
            wait(state.cast::<u32>());
        }
    }
    if let Some(now) = now {
        let waited = now().saturating_sub(start);
        // SAFETY: as above.
        let (parked, longest, sampled) = unsafe {
            (
                state_word(state, word::PARKED),
                state_word(state, word::LONGEST),
                state_word(state, word::SAMPLED),
            )
        };
        parked.fetch_add(1, Ordering::Relaxed);
        longest.fetch_max(waited, Ordering::Relaxed);
        let i = sampled.fetch_add(1, Ordering::Relaxed) as usize;
        if i < SAMPLES {
            // SAFETY: as above; `i` is below `SAMPLES`.
            unsafe { state_word(state, word::SAMPLES_AT + i) }.store(waited, Ordering::Relaxed);
        }
    }
    if let Some(i) = parked_at {
        PARKED[i].store(0, Ordering::Release);
    }
    waiting.fetch_sub(1, Ordering::AcqRel);
}

/// How the callers that met a gate waited.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GateReport {
    /// Slots pointed at the gate while it was closed.
    pub slots: usize,
    /// Callers that waited at it.
    pub parked: u64,
    /// The longest wait, in nanoseconds (0 without a clock).
    pub longest_wait: u64,
    /// The median wait of the recorded ones, in nanoseconds.
    pub median_wait: u64,
    /// How long the old versions took to drain, in nanoseconds.
    pub drain: u64,
    /// How many times the threads were checked.
    pub checks: u32,
}

/// A closed gate: its mapping (stubs, descriptors, state) and the stub of each old function.
pub(crate) struct Gate {
    pub(crate) mapping: Mapping,
    /// Old function address -> (stub address, forward word address).
    stubs: BTreeMap<u64, (u64, u64)>,
    state: u64,
}

impl Gate {
    /// Makes a closed gate with one stub for each of `targets` (the old versions' function
    /// addresses the gated slots hold); each forward word starts at its old address, so that the
    /// gate, opened without a commit, sends the callers on into the old version.
    pub(crate) fn make(
        memory: &dyn Memory,
        targets: &[u64],
        hooks: GateHooks,
    ) -> Result<Gate, PlatformError> {
        let page = memory.page_size().max(1);
        let round = |n: usize| n.div_ceil(page) * page;
        let text_len = round(targets.len().max(1) * STUB_SIZE);
        let data_len = round((STATE_WORDS + 3 * targets.len()) * 8);
        let empty = Span {
            offset: text_len,
            len: 0,
        };
        let regions = Regions {
            text: Span {
                offset: 0,
                len: text_len,
            },
            read_only: empty,
            relro: empty,
            data: Span {
                offset: text_len,
                len: data_len,
            },
        };
        let mut mapping = Mapping::new(memory, regions)?;
        let state = mapping.addr(text_len);
        let entry = entry_address();
        let mut words = alloc::vec![0u64; STATE_WORDS];
        words[word::CLOSED] = 1;
        words[word::WAIT] = hooks.wait as usize as u64;
        words[word::WAKE] = hooks.wake as usize as u64;
        words[word::NOW] = hooks.now.map_or(0, |f| f as usize as u64);
        let mut stubs = BTreeMap::new();
        let mut code = alloc::vec![0xccu8; text_len];
        for (i, target) in targets.iter().enumerate() {
            let descriptor = state + ((STATE_WORDS + 3 * i) * 8) as u64;
            words.extend_from_slice(&[entry, state, *target]);
            let stub = &mut code[i * STUB_SIZE..(i + 1) * STUB_SIZE];
            // movabs r11, descriptor
            stub[0] = 0x49;
            stub[1] = 0xbb;
            stub[2..10].copy_from_slice(&descriptor.to_le_bytes());
            // jmp [r11]
            stub[10..13].copy_from_slice(&[0x41, 0xff, 0x23]);
            stubs.insert(*target, (mapping.addr(i * STUB_SIZE), descriptor + 16));
        }
        let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        let oob = |_| PlatformError::OutOfMemory {
            len: text_len + data_len,
        };
        mapping.write(0, &code).map_err(oob)?;
        mapping.write(text_len, &bytes).map_err(oob)?;
        mapping.publish(memory)?;
        Ok(Gate {
            mapping,
            stubs,
            state,
        })
    }

    /// The stub that stands for the old function at `target`.
    pub(crate) fn stub(&self, target: u64) -> Option<u64> {
        self.stubs.get(&target).map(|(stub, _)| *stub)
    }

    /// Sends the callers of the old function at `target` to `to` once the gate opens.
    pub(crate) fn forward(&self, target: u64, to: u64) {
        if let Some((_, word)) = self.stubs.get(&target) {
            // The forward words lie in the gate's data region (made above): always writable.
            let _ = self.mapping.store_data_slot(*word, to);
        }
    }

    /// Opens the gate: the waiting callers go on through their forward words.
    pub(crate) fn open(&self) {
        let _ = self.mapping.store_data_slot(self.state, 0);
        let wake = self.word(word::WAKE);
        if wake != 0 {
            // SAFETY: the word was written from `GateHooks::wake` when the gate was made.
            let wake: extern "C" fn(*const u32) =
                unsafe { core::mem::transmute::<usize, extern "C" fn(*const u32)>(wake as usize) };
            wake(self.state as usize as *const u32);
        }
    }

    /// How many callers wait now.
    pub(crate) fn waiting(&self) -> u64 {
        self.word(word::WAITING)
    }

    fn word(&self, index: usize) -> u64 {
        self.mapping
            .load_slot(self.state + (index * 8) as u64)
            .unwrap_or(0)
    }

    /// What the callers' waits were (once they all left the wait).
    pub(crate) fn report(&self, slots: usize) -> GateReport {
        let sampled = (self.word(word::SAMPLED) as usize).min(SAMPLES);
        let mut waits: Vec<u64> = (0..sampled)
            .map(|i| self.word(word::SAMPLES_AT + i))
            .collect();
        waits.sort_unstable();
        GateReport {
            slots,
            parked: self.word(word::PARKED),
            longest_wait: self.word(word::LONGEST),
            median_wait: waits.get(waits.len() / 2).copied().unwrap_or(0),
            drain: 0,
            checks: 0,
        }
    }
}

#[cfg(target_arch = "x86_64")]
fn entry_address() -> u64 {
    __cells_gate_entry as *const () as usize as u64
}

#[cfg(not(target_arch = "x86_64"))]
fn entry_address() -> u64 {
    0
}
