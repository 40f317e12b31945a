//! Per-CPU data, reached through the GS base: `%gs:0` holds the address of the running CPU's
//! [`PerCpu`], so `this_cpu()` is one instruction, and the counters the cell-call path touches
//! are changed with single `%gs`-relative instructions, which an interrupt cannot split and which
//! always address the CPU they execute on (a task switched to another CPU in between cannot make
//! them touch the wrong CPU's data).
//!
//! Each CPU writes its own counters; other CPUs only read them (`quiescent` by a swap that waits
//! for every CPU, the rest by `cpus` and `stats`).

use core::arch::asm;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use loader::ThreadRegistration;

/// The most CPUs the kernel runs.
pub const MAX_CPUS: usize = 16;
/// `current` when the CPU runs its idle loop.
pub const IDLE: usize = usize::MAX;

/// `pending`: a timer tick arrived while cell code ran; switch tasks when the call returns.
pub const PENDING_RESCHED: u64 = 1;
/// `pending`: a swap or a grace period asked for a quiescent point while cell code ran; report
/// one when the call returns.
pub const PENDING_REPORT: u64 = 2;

/// One CPU's data. The first five fields are addressed by offset from assembly.
#[repr(C)]
pub struct PerCpu {
    self_ptr: AtomicU64,
    /// Depth of cell calls on this CPU: > 0 while code of a cell may be on its stack.
    pub depth: AtomicU64,
    /// Quiescent points passed: moments with no cell code on this CPU's stack.
    pub quiescent: AtomicU64,
    /// Work deferred to the end of the current cell call (`PENDING_*`).
    pub pending: AtomicU64,
    /// Calls into cells made on this CPU (outermost calls only).
    pub calls: AtomicU64,
    /// The CPU's index (0 is the bootstrap CPU).
    pub index: AtomicUsize,
    /// Its local APIC id.
    pub apic_id: AtomicU32,
    /// Whether it finished its setup and takes interrupts.
    pub online: AtomicBool,
    /// Timer interrupts taken.
    pub ticks: AtomicU64,
    /// Of those, ticks that found cell code running (the RIP in a cell's text).
    pub ticks_in_cells: AtomicU64,
    /// Task switches made.
    pub switches: AtomicU64,
    /// The task it runs (an index of the task table), or [`IDLE`].
    pub current: AtomicUsize,
    /// IPIs taken (quiescence and TLB requests).
    pub ipis: AtomicU64,
    /// Interrupt handlers running (0 in task or idle context).
    pub in_interrupt: AtomicU32,
    /// The CPU's registration with the loader's grace-period tracker.
    pub registration: spin::Once<ThreadRegistration>,
    /// Times a caller on this CPU halted while parked at a swap's gate.
    pub gate_waits: AtomicU64,
    /// The running task's stack (`stack_lo..stack_hi`; 0 for the idle loop), for the drain's
    /// stack check.
    pub stack_lo: AtomicU64,
    /// See `stack_lo`.
    pub stack_hi: AtomicU64,
}

const DEPTH: usize = core::mem::offset_of!(PerCpu, depth);
const QUIESCENT: usize = core::mem::offset_of!(PerCpu, quiescent);
const PENDING: usize = core::mem::offset_of!(PerCpu, pending);
const CALLS: usize = core::mem::offset_of!(PerCpu, calls);

impl PerCpu {
    const fn new() -> PerCpu {
        PerCpu {
            self_ptr: AtomicU64::new(0),
            depth: AtomicU64::new(0),
            quiescent: AtomicU64::new(0),
            pending: AtomicU64::new(0),
            calls: AtomicU64::new(0),
            index: AtomicUsize::new(0),
            apic_id: AtomicU32::new(0),
            online: AtomicBool::new(false),
            ticks: AtomicU64::new(0),
            ticks_in_cells: AtomicU64::new(0),
            switches: AtomicU64::new(0),
            current: AtomicUsize::new(IDLE),
            ipis: AtomicU64::new(0),
            in_interrupt: AtomicU32::new(0),
            registration: spin::Once::new(),
            gate_waits: AtomicU64::new(0),
            stack_lo: AtomicU64::new(0),
            stack_hi: AtomicU64::new(0),
        }
    }

    /// The CPU's index.
    pub fn index(&self) -> usize {
        self.index.load(Ordering::Relaxed)
    }
}

/// Every CPU's data, by index.
pub static CPUS: [PerCpu; MAX_CPUS] = [const { PerCpu::new() }; MAX_CPUS];

/// How many CPUs are online.
pub static ONLINE: AtomicUsize = AtomicUsize::new(0);

/// Makes `CPUS[index]` the calling CPU's data (GS base).
pub fn init_this_cpu(index: usize, apic_id: u32) {
    let cpu = &CPUS[index];
    let addr = cpu as *const PerCpu as u64;
    cpu.self_ptr.store(addr, Ordering::Relaxed);
    cpu.index.store(index, Ordering::Relaxed);
    cpu.apic_id.store(apic_id, Ordering::Relaxed);
    // SAFETY: IA32_GS_BASE only changes what `%gs:` addresses mean; nothing in the kernel, the
    // precompiled `core`/`alloc` or the cells (built for Linux, whose thread pointer is %fs)
    // uses %gs except this module, and it points at a `PerCpu` that lives for ever.
    unsafe { crate::cpu::wrmsr(0xc000_0101, addr) };
}

/// The running CPU's data.
#[inline]
pub fn this_cpu() -> &'static PerCpu {
    let addr: u64;
    // SAFETY: `%gs:0` is the address of this CPU's `PerCpu` (`init_this_cpu` runs on every CPU
    // before anything calls this); the read has no side effect.
    unsafe { asm!("mov {}, gs:[0]", out(reg) addr, options(nostack, preserves_flags, readonly)) };
    // SAFETY: the address is that of an element of `CPUS`, a static.
    unsafe { &*(addr as *const PerCpu) }
}

/// Enters a cell call on this CPU: `depth += 1` as one locked instruction (a full barrier: the
/// gate is read after the new depth is visible to every CPU). Returns the depth before.
#[inline]
pub fn depth_enter() -> u64 {
    let mut prev: u64 = 1;
    // SAFETY: a `%gs`-relative read-modify-write of this CPU's `depth` (see `this_cpu`).
    unsafe {
        asm!("lock xadd qword ptr gs:[{off}], {v}", off = const DEPTH, v = inout(reg) prev,
             options(nostack))
    };
    prev
}

/// Leaves a cell call: `depth -= 1` as one instruction. Returns the depth after.
#[inline]
pub fn depth_exit() -> u64 {
    let mut prev: u64 = u64::MAX; // -1
                                  // SAFETY: as for `depth_enter` (no other CPU writes this CPU's depth, so no lock prefix).
    unsafe {
        asm!("xadd qword ptr gs:[{off}], {v}", off = const DEPTH, v = inout(reg) prev,
             options(nostack))
    };
    prev.wrapping_sub(1)
}

/// This CPU's cell-call depth.
#[inline]
pub fn depth() -> u64 {
    let d: u64;
    // SAFETY: a `%gs`-relative read of this CPU's `depth`.
    unsafe {
        asm!("mov {}, qword ptr gs:[{off}]", out(reg) d, off = const DEPTH,
             options(nostack, preserves_flags, readonly))
    };
    d
}

/// Counts a quiescent point of this CPU (one instruction). The caller knows that no cell code
/// is on this CPU's stack at this instant.
#[inline]
pub fn bump_quiescent() {
    // SAFETY: a `%gs`-relative increment of this CPU's `quiescent`; other CPUs only read it.
    unsafe { asm!("inc qword ptr gs:[{off}]", off = const QUIESCENT, options(nostack)) };
}

/// Counts an outermost cell call on this CPU.
#[inline]
pub fn count_call() {
    // SAFETY: a `%gs`-relative increment of this CPU's `calls`; other CPUs only read it.
    unsafe { asm!("inc qword ptr gs:[{off}]", off = const CALLS, options(nostack)) };
}

/// Takes this CPU's pending work (`PENDING_*`), leaving none.
#[inline]
pub fn take_pending() -> u64 {
    let mut v: u64 = 0;
    // SAFETY: a `%gs`-relative exchange on this CPU's `pending`.
    unsafe {
        asm!("xchg qword ptr gs:[{off}], {v}", off = const PENDING, v = inout(reg) v,
             options(nostack))
    };
    v
}

/// The data of every online CPU.
pub fn online() -> impl Iterator<Item = &'static PerCpu> {
    CPUS.iter().filter(|c| c.online.load(Ordering::Acquire))
}
