//! Calls into cells, each CPU's quiescent points, and what the loader's gate asks of the kernel:
//! which CPUs may still run the old version of a swap whose state moves.
//!
//! Every call the kernel makes into a cell goes through a [`CellFn`]: it raises the CPU's cell-call
//! depth (one locked `%gs` instruction), calls through the loader's handle (whose slot a swap
//! rewrites, or points at its gate), and lowers the depth again. While the depth of a CPU is above
//! zero, code of a cell may be on its stack: the timer does not switch tasks then (it asks for a
//! switch when the call returns), so a task is only ever switched out at depth 0, and a task that
//! is not running never has a cell frame on its stack, never holds a cell's lock and never holds
//! an address it read from a slot. Cells calling cells go through their own slots, inside the
//! outermost call.
//!
//! **Quiescent points.** A CPU passes one when nothing of any cell is on its stack: a cell call
//! returning to depth 0, a timer tick or IPI that interrupted depth 0 with the instruction pointer
//! outside every cell's text, the idle loop, a task that yields. Each bumps the CPU's `quiescent`
//! counter; ticks, IPIs, yields and the idle loop also report to the loader's grace-period tracker
//! ([`loader::Epochs`], one registration per CPU), which `System::reclaim` consults before it
//! frees a retired version.
//!
//! **The drain of a swap** ([`threads_inside`], the platform's answer to the loader): the loader
//! has pointed every slot into the old versions at its gate, so a new call into them parks there;
//! it then asks which CPUs may still be inside. The kernel sends every other CPU a probe IPI. A CPU
//! interrupted at depth 0, outside the old text, is not inside: it runs no cell code and holds no
//! address read from a slot, and every call it makes next reads a gated slot. Any other CPU checks
//! what it interrupted: the instruction pointer, the 15 general registers, and the live stack of
//! its task (from 128 bytes below the stack pointer, the red zone, to the top): an address in the
//! old text (a return address, or the current instruction) or equal to an old function's entry
//! (read from a slot before the gate closed, not called yet) means inside. A caller parked at the
//! gate is checked from where the gate recorded its own frames ([`loader::parked_frames_in`]),
//! not through the gate's frames, whose stale words of earlier calls would look like old return
//! addresses: it is inside only if one of its own frames returns into the old text or a register
//! holds an old entry. The check is conservative: unlike the hosted one it does not decode the
//! `call` before a return address, so a stale word in a live frame that happens to lie in the old
//! text keeps the swap waiting, up to its deadline, after which the loader undoes it and nothing
//! changed; a CPU that does not answer within 20 ms is taken to be inside.
//!
//! An interrupt handler never calls through a gated slot (it would wait inside the handler): its
//! [`CellFn::try_call`] calls only when the handle's target lies in a cell's text, and a gate's
//! stubs lie in no cell.

use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

use loader::platform::{GateHooks, Inside, TextRange};
use loader::{Epochs, Handle};

use crate::interrupts::{self, Frame};
use crate::percpu::{self, PerCpu, CPUS, MAX_CPUS, PENDING_REPORT, PENDING_RESCHED};
use crate::sync::IrqMutex;
use crate::{apic, cellmap, cpu};

/// The loader's grace-period tracker, which every CPU registers with.
static EPOCHS: spin::Once<Arc<Epochs>> = spin::Once::new();

/// Records the loader's tracker (before any AP starts).
pub fn set_epochs(epochs: Arc<Epochs>) {
    EPOCHS.call_once(|| epochs);
}

/// Registers the calling CPU with the tracker.
pub fn register_this_cpu() {
    if let Some(epochs) = EPOCHS.get() {
        let cpu = percpu::this_cpu();
        cpu.registration.call_once(|| epochs.register());
    }
}

/// Reports a quiescent point of the calling CPU: its counter, and the loader's tracker. The
/// caller knows that no cell code is on this CPU's stack and runs with interrupts disabled (or
/// on a path that cannot move to another CPU: idle).
fn report(cpu: &PerCpu) {
    percpu::bump_quiescent();
    if let Some(r) = cpu.registration.get() {
        r.quiescent();
    }
}

/// The idle loop's quiescent point.
pub fn idle_point() {
    let was = cpu::irq_save();
    report(percpu::this_cpu());
    cpu::irq_restore(was);
}

/// A quiescent point of the calling task, made outside any cell call.
pub fn task_point() {
    let was = cpu::irq_save();
    if percpu::depth() == 0 {
        report(percpu::this_cpu());
    }
    cpu::irq_restore(was);
}

/// Called by the timer handler with what it interrupted: whether that was a quiescent point.
/// When cell code was running, the report (and a task switch) waits for the call to return.
pub fn on_tick(rip: u64) -> bool {
    let cpu = percpu::this_cpu();
    let in_cell = cellmap::in_cell_text(rip);
    if in_cell {
        cpu.ticks_in_cells.fetch_add(1, Ordering::Relaxed);
    }
    if percpu::depth() == 0 && !in_cell {
        report(cpu);
        true
    } else {
        cpu.pending
            .fetch_or(PENDING_RESCHED | PENDING_REPORT, Ordering::Relaxed);
        false
    }
}

/// The quiesce IPI: a quiescent point now if the CPU is at one, else when its call returns. It
/// also wakes a CPU halted in the idle loop or at the gate.
pub fn on_ipi(frame: &mut Frame) {
    let cpu = percpu::this_cpu();
    cpu.ipis.fetch_add(1, Ordering::Relaxed);
    if percpu::depth() == 0 && !cellmap::in_cell_text(frame.rip) {
        report(cpu);
    } else {
        cpu.pending.fetch_or(PENDING_REPORT, Ordering::Relaxed);
    }
    apic::eoi();
}

/// An outermost (or nested) cell call in progress on this CPU; dropping it ends the call.
pub struct CallGuard {
    _private: (),
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        if percpu::depth_exit() != 0 {
            return;
        }
        percpu::bump_quiescent();
        // Deferred work, only in task context: an interrupt handler's own cell call (the
        // scheduler's pick, the driver's handler) leaves it for the task it interrupted.
        let was = cpu::irq_save();
        let cpu = percpu::this_cpu();
        if cpu.in_interrupt.load(Ordering::Relaxed) != 0 {
            cpu::irq_restore(was);
            return;
        }
        let pending = percpu::take_pending();
        if pending & PENDING_REPORT != 0 {
            report(cpu);
        }
        cpu::irq_restore(was);
        if pending & PENDING_RESCHED != 0 && was {
            interrupts::yield_now();
        }
    }
}

/// Starts a cell call on this CPU.
fn enter() -> CallGuard {
    if percpu::depth_enter() == 0 {
        percpu::count_call();
    }
    CallGuard { _private: () }
}

/// Keeps the calling task on its CPU until the guard is dropped (the timer does not switch a task
/// out while the CPU's cell-call depth is above zero), with interrupts enabled. For kernel code
/// that must finish on the CPU it started on (a TLB shootdown, a swap). The CPU passes no
/// quiescent point meanwhile.
pub fn pin() -> CallGuard {
    percpu::depth_enter();
    CallGuard { _private: () }
}

/// A function of a cell, called through the loader's handle.
pub struct CellFn<F> {
    handle: Handle<F>,
}

impl<F> Clone for CellFn<F> {
    fn clone(&self) -> Self {
        CellFn {
            handle: self.handle.clone(),
        }
    }
}

/// Calls from interrupt handlers not made because the handle's target lay in no cell text the
/// cell map shows (a swap's gate, or a new version before the map is refreshed).
pub static NOT_CALLED_AT_GATE: AtomicU64 = AtomicU64::new(0);
/// Calls that waited at a swap's gate, over every swap (from the loader's reports).
pub static GATE_WAITS: AtomicU64 = AtomicU64::new(0);
/// The longest of those waits, in us.
pub static GATE_WAIT_MAX_US: AtomicU64 = AtomicU64::new(0);

impl<F: Copy> CellFn<F> {
    /// The function behind `handle`.
    pub fn new(handle: Handle<F>) -> CellFn<F> {
        CellFn { handle }
    }

    /// Calls `f` with the function, from task context. During a swap whose state moves, the call
    /// parks at the loader's gate until the commit, and goes on into the new version.
    #[inline]
    pub fn call<R>(&self, f: impl FnOnce(F) -> R) -> R {
        let _call = enter();
        f(self.handle.get())
    }

    /// Calls `f` with the function from an interrupt handler, unless the handle's slot points
    /// elsewhere than a cell's text (at a swap's gate, or at a new version the cell map does not
    /// show yet): then `None`, and nothing was called. An interrupt handler must never wait.
    #[inline]
    pub fn try_call<R>(&self, f: impl FnOnce(F) -> R) -> Option<R> {
        let _call = enter();
        // One read of the slot, checked and then called: a swap that gates the slot between a
        // check and a second read must not send the handler into the gate.
        let function = self.handle.get();
        // SAFETY: `System::handle` checked that `F` has the size of a pointer (a function
        // pointer type), so its bits are the address the slot held.
        let target = unsafe { core::mem::transmute_copy::<F, u64>(&function) };
        if !cellmap::in_cell_text(target) {
            NOT_CALLED_AT_GATE.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some(f(function))
    }
}

// ---------------------------------------------------------------------------------------------
// The loader's questions during a swap whose state moves.

/// What the CPUs are asked to look for.
struct Probe {
    /// Increases with every probe; a CPU's answer names the probe it answers.
    seq: u64,
    /// The old versions' text.
    ranges: Vec<TextRange>,
    /// The old versions' function entry points, sorted.
    entries: Vec<u64>,
}

static PROBE: IrqMutex<Probe> = IrqMutex::new(Probe {
    seq: 0,
    ranges: Vec::new(),
    entries: Vec::new(),
});
/// Each CPU's last answer: the probe it answered.
static ANSWERED: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
/// And the address it found (0: not inside).
static FOUND: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
/// One probe at a time.
static PROBING: spin::Mutex<()> = spin::Mutex::new(());
/// Probes made.
pub static PROBES: AtomicU64 = AtomicU64::new(0);
/// Answers "inside", and CPUs that did not answer in time.
pub static FOUND_INSIDE: AtomicU64 = AtomicU64::new(0);

/// `Process::threads_inside` on bare metal: every other online CPU that may run code in `ranges`
/// or hold one of `entries` (see the module docs). The caller is pinned to its CPU.
/// `name_of` names a task by its index (task.rs, passed in by platform.rs: the scheduler sits
/// above this module).
pub fn threads_inside(
    ranges: &[TextRange],
    entries: &[u64],
    out: &mut Vec<Inside>,
    name_of: fn(usize) -> String,
) {
    let _pinned = pin();
    let _one = PROBING.lock();
    let seq = {
        let mut probe = PROBE.lock();
        probe.seq += 1;
        probe.ranges = ranges.to_vec();
        probe.entries = entries.to_vec();
        probe.entries.sort_unstable();
        probe.seq
    };
    PROBES.fetch_add(1, Ordering::Relaxed);
    let me = percpu::this_cpu().index();
    let others: Vec<&PerCpu> = percpu::online().filter(|c| c.index() != me).collect();
    for c in &others {
        apic::send_ipi(c.apic_id.load(Ordering::Relaxed), interrupts::PROBE);
    }
    let tsc_per_us = crate::tsc_per_us();
    let start = cpu::rdtsc();
    for c in others {
        let i = c.index();
        while ANSWERED[i].load(Ordering::SeqCst) < seq && cpu::rdtsc() - start < 20_000 * tsc_per_us
        {
            cpu::pause();
        }
        let answered = ANSWERED[i].load(Ordering::SeqCst) >= seq;
        let addr = if answered {
            FOUND[i].load(Ordering::SeqCst)
        } else {
            0
        };
        if !answered || addr != 0 {
            FOUND_INSIDE.fetch_add(1, Ordering::Relaxed);
            out.push(Inside {
                thread: i as u64,
                name: format!(
                    "cpu {i} (task {})",
                    name_of(c.current.load(Ordering::Relaxed))
                ),
                addr,
            });
        }
    }
    // The loader closed the gate before its first question. A CPU answers the probe only between
    // two reschedules (both run in interrupt gates, with interrupts off), so a switch whose pick
    // was made before the gate closed is done by now; from here on, every switch counted had its
    // pick let through a closed gate.
    let _ =
        SWITCHES_AT_CLOSE.compare_exchange(0, switches() + 1, Ordering::SeqCst, Ordering::SeqCst);
}

/// The probe IPI: answers whether what this CPU interrupted may be inside the probed ranges.
pub fn on_probe(frame: &mut Frame) {
    let cpu = percpu::this_cpu();
    cpu.ipis.fetch_add(1, Ordering::Relaxed);
    let i = cpu.index();
    // The requester holds no lock of ours while it waits: this only fails if a probe is being
    // set up right now, and then the next one asks again.
    if let Some(probe) = PROBE.try_lock() {
        let found = inside(&probe, frame, cpu);
        FOUND[i].store(found, Ordering::SeqCst);
        ANSWERED[i].store(probe.seq, Ordering::SeqCst);
    }
    apic::eoi();
}

/// The address that places what `frame` interrupted inside the probe's ranges or entries, or 0.
fn inside(probe: &Probe, frame: &Frame, cpu: &PerCpu) -> u64 {
    let hit = |v: u64| {
        v != 0
            && (probe.ranges.iter().any(|r| r.contains(v))
                || probe.entries.binary_search(&v).is_ok())
    };
    if hit(frame.rip) {
        return frame.rip;
    }
    if percpu::depth() == 0 {
        // No cell call in progress: no cell frame on the stack, no address from a slot held.
        return 0;
    }
    let registers = [
        frame.rax, frame.rbx, frame.rcx, frame.rdx, frame.rsi, frame.rdi, frame.rbp, frame.r8,
        frame.r9, frame.r10, frame.r11, frame.r12, frame.r13, frame.r14, frame.r15,
    ];
    if let Some(v) = registers.into_iter().find(|v| hit(*v)) {
        return v;
    }
    let (lo, hi) = (
        cpu.stack_lo.load(Ordering::Relaxed),
        cpu.stack_hi.load(Ordering::Relaxed),
    );
    if lo == 0 || !(lo..=hi).contains(&frame.rsp) {
        // Not on a task stack the kernel knows: assume the worst.
        return frame.rip.max(1);
    }
    // A caller parked at a swap's gate: its own frames start where the gate recorded them; the
    // gate's frames below hold stale words of earlier calls, not calls in progress.
    let from = match loader::parked_frames_in(frame.rsp, hi) {
        Some(frames) => frames & !7,
        None => frame.rsp.saturating_sub(128).max(lo) & !7,
    };
    let mut at = from;
    while at + 8 <= hi {
        // SAFETY: `lo..hi` is the interrupted task's stack (set when the task was switched in),
        // mapped read-write for the task's lifetime; the task is stopped in this handler.
        let v = unsafe { (at as *const u64).read_volatile() };
        if hit(v) {
            return v;
        }
        at += 8;
    }
    0
}

/// `Process::pause` while the loader waits for a drain: about 20 us.
pub fn pause() {
    let start = cpu::rdtsc();
    let ticks = 20 * crate::tsc_per_us();
    while cpu::rdtsc() - start < ticks {
        cpu::pause();
    }
}

/// How a caller parked at the loader's gate waits: halted until an interrupt (the wake IPI when
/// the gate opens, or the tick), with its CPU left to nobody else (it is inside a cell call).
extern "C" fn gate_wait(word: *const u32) {
    let was = cpu::irq_save();
    // SAFETY: the loader passes the gate's state word, which stays mapped while callers wait.
    let closed = unsafe { word.read_volatile() } != 0;
    if closed && was {
        percpu::this_cpu()
            .gate_waits
            .fetch_add(1, Ordering::Relaxed);
        // SAFETY: task context with interrupts enabled before (`was`), holding no kernel lock;
        // `sti; hlt` cannot miss a wake IPI sent after the check (it stays pending until `sti`).
        unsafe { cpu::wait_for_interrupt() };
    } else {
        cpu::irq_restore(was);
        cpu::pause();
    }
}

/// The sum of task switches when the other CPUs first answered the current swap's probe, the gate
/// closed (plus 1; 0: not yet, `u64::MAX`: the gate opened), and the switches between that and the opening.
static SWITCHES_AT_CLOSE: AtomicU64 = AtomicU64::new(u64::MAX);
static SWITCHES_WHILE_CLOSED: AtomicU64 = AtomicU64::new(0);

fn switches() -> u64 {
    sum(|c| c.switches.load(Ordering::Relaxed))
}

/// Before a swap: count the task switches (all CPUs) its gate, if it closes, lets through.
pub fn arm_switch_count() {
    SWITCHES_WHILE_CLOSED.store(0, Ordering::SeqCst);
    SWITCHES_AT_CLOSE.store(0, Ordering::SeqCst);
}

/// After a swap: the task switches made from the answers to its drain's first probe (the gate was
/// closed) to the gate's opening.
pub fn switches_while_closed() -> u64 {
    SWITCHES_AT_CLOSE.store(u64::MAX, Ordering::SeqCst);
    SWITCHES_WHILE_CLOSED.load(Ordering::SeqCst)
}

/// Wakes every CPU whose caller waits at the gate.
extern "C" fn gate_wake(_word: *const u32) {
    let at = SWITCHES_AT_CLOSE.swap(u64::MAX, Ordering::SeqCst);
    if at != 0 && at != u64::MAX {
        SWITCHES_WHILE_CLOSED.store(switches() - (at - 1), Ordering::SeqCst);
    }
    let me = percpu::this_cpu().index();
    for c in percpu::online().filter(|c| c.index() != me) {
        apic::send_ipi(c.apic_id.load(Ordering::Relaxed), interrupts::QUIESCE);
    }
}

/// Nanoseconds from the time-stamp counter.
extern "C" fn gate_now() -> u64 {
    cpu::rdtsc() * 1000 / crate::tsc_per_us()
}

/// The loader's gate hooks on bare metal.
pub fn gate_hooks() -> GateHooks {
    GateHooks {
        wait: gate_wait,
        wake: gate_wake,
        now: Some(gate_now),
    }
}

/// Waits until every CPU registered with the loader's tracker has passed a quiescent point
/// since `epoch` began (asking them with IPIs), or `deadline_us` passed. Returns the TSC ticks
/// waited, or the number of CPUs still pending.
pub fn grace_period(epoch: u64, deadline_us: u64, tsc_per_us: u64) -> Result<u64, usize> {
    let Some(epochs) = EPOCHS.get() else {
        return Ok(0);
    };
    let start = cpu::rdtsc();
    let mut last_ipi = 0;
    loop {
        task_point();
        let pending = epochs.pending_since(epoch);
        if pending == 0 {
            return Ok(cpu::rdtsc() - start);
        }
        let now = cpu::rdtsc();
        if now - start > deadline_us.saturating_mul(tsc_per_us.max(1)) {
            return Err(pending);
        }
        if last_ipi == 0 || now - last_ipi > 100 * tsc_per_us.max(1) {
            last_ipi = now;
            let me = percpu::this_cpu().index();
            for c in percpu::online().filter(|c| c.index() != me) {
                apic::send_ipi(c.apic_id.load(Ordering::Relaxed), interrupts::QUIESCE);
            }
        }
        cpu::pause();
    }
}

/// Sum over online CPUs of `f`.
pub fn sum(f: impl Fn(&PerCpu) -> u64) -> u64 {
    CPUS.iter()
        .filter(|c| c.online.load(Ordering::Relaxed))
        .map(f)
        .sum()
}
