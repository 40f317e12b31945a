//! Calls into cells, the gate that holds them during a swap, and each CPU's quiescent points.
//!
//! Every call the kernel makes into a cell goes through a [`CellFn`]: it raises the CPU's cell-call
//! depth (one locked `%gs` instruction, a full barrier), reads the gate, calls through the
//! loader's handle (whose slot a swap rewrites), and lowers the depth again. While the depth of a
//! CPU is above zero, code of a cell may be on its stack: the timer does not switch tasks then (it
//! asks for a switch when the call returns), so a task is only ever switched out at depth 0 and a
//! task that is not running never has a cell frame on its stack. Cells calling cells go through
//! their own slots, inside the outermost call.
//!
//! **Quiescent points.** A CPU passes one when nothing of any cell is on its stack: a cell call
//! returning to depth 0, a timer tick or IPI that interrupted depth 0 with the instruction pointer
//! outside every cell's text, the idle loop, and a task waiting at a gate. Each bumps the CPU's
//! `quiescent` counter with one `%gs` instruction; ticks, IPIs and the idle loop also report to
//! the loader's grace-period tracker ([`loader::Epochs`], one registration per CPU), which
//! `System::reclaim` consults.
//!
//! **The gate** ([`Gate`]). A swap whose state moves (the new version has a `transfer_state`) is
//! made with the tasks that would call the cells being swapped held outside cell code:
//! 1. close: the bits of the swapped cells and of every cell that depends on them (their
//!    dependents reach them through slots) are set in [`GATE`], with a locked instruction;
//! 2. drain: the swapper notes every online CPU's `quiescent` counter, sends the quiesce IPI, and
//!    waits until each counter moved. A CPU that passed a quiescent point after the gate closed
//!    runs no code of those cells, and every call it starts afterwards sees the gate (the call's
//!    locked depth increment orders its read of the gate after the counter's store, and the
//!    swapper read the counter after closing the gate), so it waits at depth 0;
//! 3. the loader's `System::swap` runs: stage, verify, transfer on a still state, commit;
//! 4. open: the bits are cleared; the commit's slot stores were made before that store, and x86
//!    keeps stores in order, so a caller that sees the gate open reads the new slots.
//!
//! The drain has a deadline: a CPU that stays inside the cells (a long or blocked call) makes the
//! swap give up before anything changed, naming the CPU, its task and where it was (cell and
//! symbol, sampled by the IPI).

use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

use loader::{Epochs, Handle};

use crate::percpu::{self, PerCpu, CPUS, PENDING_REPORT, PENDING_RESCHED};
use crate::{apic, cellmap, cpu, interrupts};

/// Closed gate bits: a call into a cell whose bit is set waits (tasks) or is not made
/// (interrupt handlers).
pub static GATE: AtomicU64 = AtomicU64::new(0);

/// Cell names by gate bit.
static BITS: spin::Mutex<Vec<String>> = spin::Mutex::new(Vec::new());

/// The gate bit of the cell `name` (every version of a cell shares it).
pub fn bit_of(name: &str) -> u64 {
    let mut bits = BITS.lock();
    let index = match bits.iter().position(|n| n == name) {
        Some(i) => i,
        None => {
            bits.push(name.into());
            bits.len() - 1
        }
    };
    // More than 64 cell names share the last bit (a wider gate for them, never a narrower one).
    1u64 << index.min(63)
}

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

/// A quiescent point of the calling task, made outside any cell call (the swapper's own CPU).
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

/// Where each CPU was when the last quiesce IPI came (for the drain's error).
static LAST_IPI_RIP: [AtomicU64; percpu::MAX_CPUS] =
    [const { AtomicU64::new(0) }; percpu::MAX_CPUS];

/// The quiesce IPI.
pub fn on_ipi(frame: &mut interrupts::Frame) {
    let cpu = percpu::this_cpu();
    cpu.ipis.fetch_add(1, Ordering::Relaxed);
    LAST_IPI_RIP[cpu.index()].store(frame.rip, Ordering::Relaxed);
    if percpu::depth() == 0 && !cellmap::in_cell_text(frame.rip) {
        report(cpu);
    } else {
        cpu.pending.fetch_or(PENDING_REPORT, Ordering::Relaxed);
    }
    apic::eoi();
}

/// Longest wait at a gate, in TSC ticks, and the calls that waited.
pub static GATE_WAIT_MAX: AtomicU64 = AtomicU64::new(0);
/// Calls that waited at a gate.
pub static GATE_WAITS: AtomicU64 = AtomicU64::new(0);

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

/// Starts a cell call from task context into cells with gate bits `bits`, waiting (outside cell
/// code, at depth 0) while their gate is closed.
pub fn enter(bits: u64) -> CallGuard {
    loop {
        let before = percpu::depth_enter();
        if before > 0 {
            // Only interrupt handlers nest calls (a cell reaches the kernel only for its heap
            // and its symbols, never this path), and they use `try_enter`.
            return CallGuard { _private: () };
        }
        if GATE.load(Ordering::SeqCst) & bits == 0 {
            percpu::count_call();
            return CallGuard { _private: () };
        }
        percpu::depth_exit();
        wait_at_gate(bits);
    }
}

/// Keeps the calling task on its CPU until the guard is dropped (the timer does not switch a task
/// out while the CPU's cell-call depth is above zero), with interrupts enabled. For kernel code
/// that must finish on the CPU it started on (a TLB shootdown). The CPU passes no quiescent point
/// meanwhile.
pub fn pin() -> CallGuard {
    percpu::depth_enter();
    CallGuard { _private: () }
}

/// Starts a cell call from an interrupt handler: `None` (and no call) while the gate is closed.
/// The gate is read even when the interrupted code was inside a cell call: the handler's call is
/// a new entry, not part of the interrupted one.
pub fn try_enter(bits: u64) -> Option<CallGuard> {
    let before = percpu::depth_enter();
    if GATE.load(Ordering::SeqCst) & bits == 0 {
        if before == 0 {
            percpu::count_call();
        }
        return Some(CallGuard { _private: () });
    }
    percpu::depth_exit();
    None
}

fn wait_at_gate(bits: u64) {
    let start = cpu::rdtsc();
    percpu::this_cpu()
        .gate_waits
        .fetch_add(1, Ordering::Relaxed);
    GATE_WAITS.fetch_add(1, Ordering::Relaxed);
    while GATE.load(Ordering::SeqCst) & bits != 0 {
        task_point();
        if cpu::interrupts_enabled() {
            // Let another task have the CPU; if none can run (or the scheduler itself is behind
            // the gate), sleep until the next interrupt: the tick, or the IPI that opening the
            // gate sends. A halted virtual CPU leaves its host core to the others.
            interrupts::yield_now();
            if GATE.load(Ordering::SeqCst) & bits != 0 {
                // SAFETY: task context with interrupts enabled, holding no lock.
                unsafe { cpu::wait_for_interrupt() };
            }
        } else {
            cpu::pause();
        }
    }
    GATE_WAIT_MAX.fetch_max(cpu::rdtsc() - start, Ordering::Relaxed);
}

/// A function of a cell, called through the loader's handle and the gate.
pub struct CellFn<F> {
    handle: Handle<F>,
    bits: u64,
}

impl<F> Clone for CellFn<F> {
    fn clone(&self) -> Self {
        CellFn {
            handle: self.handle.clone(),
            bits: self.bits,
        }
    }
}

impl<F: Copy> CellFn<F> {
    /// The function behind `handle`, which belongs to the cell `cell`.
    pub fn new(handle: Handle<F>, cell: &str) -> CellFn<F> {
        CellFn {
            handle,
            bits: bit_of(cell),
        }
    }

    /// Calls `f` with the function, from task context (waits at a closed gate).
    #[inline]
    pub fn call<R>(&self, f: impl FnOnce(F) -> R) -> R {
        let _call = enter(self.bits);
        f(self.handle.get())
    }

    /// Calls `f` with the function from an interrupt handler; `None` while the gate is closed.
    #[inline]
    pub fn try_call<R>(&self, f: impl FnOnce(F) -> R) -> Option<R> {
        let _call = try_enter(self.bits)?;
        Some(f(self.handle.get()))
    }
}

/// What closing a gate took.
#[derive(Clone, Copy, Debug, Default)]
pub struct Drain {
    /// TSC ticks from closing the gate until every CPU had passed a quiescent point.
    pub tsc: u64,
    /// Quiesce IPIs sent.
    pub ipis: u64,
}

/// A closed gate; dropping it opens it.
pub struct Gate {
    bits: u64,
    /// When it closed.
    pub closed_at: u64,
}

impl Gate {
    /// Closes the gate for `bits` and waits until every online CPU passed a quiescent point
    /// since, or gives up after `deadline_us` (the gate is then open again and the error says
    /// which CPUs are still inside cell code, and where).
    pub fn close(bits: u64, deadline_us: u64, tsc_per_us: u64) -> Result<(Gate, Drain), String> {
        let closed_at = cpu::rdtsc();
        GATE.fetch_or(bits, Ordering::SeqCst);
        let gate = Gate { bits, closed_at };
        let cpus: Vec<&PerCpu> = percpu::online().collect();
        let seen: Vec<u64> = cpus
            .iter()
            .map(|c| c.quiescent.load(Ordering::SeqCst))
            .collect();
        let mut drain = Drain::default();
        let deadline = deadline_us.saturating_mul(tsc_per_us.max(1));
        let mut last_ipi = 0;
        loop {
            task_point();
            let waiting: Vec<usize> = (0..cpus.len())
                .filter(|&i| cpus[i].quiescent.load(Ordering::SeqCst) <= seen[i])
                .collect();
            if waiting.is_empty() {
                drain.tsc = cpu::rdtsc() - closed_at;
                return Ok((gate, drain));
            }
            let now = cpu::rdtsc();
            if now - closed_at > deadline {
                let inside: Vec<String> = waiting
                    .iter()
                    .map(|&i| {
                        let c = cpus[i];
                        let rip = LAST_IPI_RIP[c.index()].load(Ordering::Relaxed);
                        format!(
                            "cpu {} (task {}) at {}",
                            c.index(),
                            crate::task::name_of(c.current.load(Ordering::Relaxed)),
                            cellmap::describe(rip)
                        )
                    })
                    .collect();
                drop(gate);
                return Err(format!(
                    "the cells did not drain within {deadline_us} us: still inside: {}",
                    inside.join("; ")
                ));
            }
            // Ask the CPUs that have not reported yet, at first and then every 100 us.
            if last_ipi == 0 || now - last_ipi > 100 * tsc_per_us.max(1) {
                last_ipi = now;
                let me = percpu::this_cpu().index();
                for &i in &waiting {
                    if cpus[i].index() != me {
                        apic::send_ipi(
                            cpus[i].apic_id.load(Ordering::Relaxed),
                            interrupts::QUIESCE,
                        );
                        drain.ipis += 1;
                    }
                }
            }
            cpu::pause();
        }
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        GATE.fetch_and(!self.bits, Ordering::SeqCst);
        // Wake the CPUs whose tasks sleep at the gate (the quiesce IPI does no harm elsewhere).
        let me = percpu::this_cpu().index();
        for c in percpu::online().filter(|c| c.index() != me) {
            apic::send_ipi(c.apic_id.load(Ordering::Relaxed), interrupts::QUIESCE);
        }
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

/// The gate bits of `names`.
pub fn bits_of(names: &[String]) -> u64 {
    names.iter().fold(0, |acc, n| acc | bit_of(n))
}

/// Sum over online CPUs of `f`.
pub fn sum(f: impl Fn(&PerCpu) -> u64) -> u64 {
    CPUS.iter()
        .filter(|c| c.online.load(Ordering::Relaxed))
        .map(f)
        .sum()
}
