//! Tasks and preemptive scheduling on every CPU, with the `sched` cell as the policy.
//!
//! A task is a kernel function on a stack of its own. The kernel keeps what the policy cell does
//! not: each task's saved [`Frame`], its stack, and whether it is ready, running (on which CPU),
//! or ended. The `sched` cell keeps the task table the policy works on: every task is spawned
//! with `sched::spawn` (which also takes a stack frame from `frame_alloc` for its bookkeeping),
//! every switch asks `sched::schedule()` for the next task id, and a task that ends is removed
//! with `sched::exit`. All through [`CellFn`]s, so a swap of `sched` moves the policy.
//!
//! The local APIC timer interrupts each CPU periodically. A tick that finds the CPU at cell-call
//! depth 0 is a quiescent point (quiesce.rs) and a switch point: the handler asks the policy,
//! saves the interrupted frame into the current task (or the CPU's idle context) and loads the
//! next task's. A tick that finds cell code running only asks for a switch, which happens when
//! that call returns: tasks are switched out only outside cell code, so no task that is not
//! running holds a cell's lock or has a cell frame on its stack. `sched` has no notion of a
//! task running on another CPU or of a task that ended, so the handler asks again (at most once
//! per task) when the pick cannot run here; a CPU with nothing to run idles (`sti; hlt`). While
//! `sched` itself is behind a swap's gate, no CPU switches: each keeps its task.

use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use cell_abi::sched;

use crate::interrupts::{self, Frame};
use crate::percpu::{self, IDLE, MAX_CPUS};
use crate::quiesce::{self, CellFn};
use crate::sync::{IrqGuard, IrqMutex};
use crate::{apic, cpu};

/// The policy and the task-table functions of the `sched` cell.
pub struct SchedCell {
    /// `sched::spawn`.
    pub spawn: CellFn<sched::Spawn>,
    /// `sched::exit`.
    pub exit: CellFn<sched::Exit>,
    /// `sched::schedule`.
    pub schedule: CellFn<sched::Schedule>,
}

static SCHED_CELL: spin::Once<SchedCell> = spin::Once::new();

/// Hands the scheduler its policy cell.
pub fn set_policy(cell: SchedCell) {
    SCHED_CELL.call_once(|| cell);
}

/// The priority every task gets in `sched` (v2 runs the highest priority first; one priority
/// for all makes both versions take turns).
pub const PRIORITY: u8 = 1;

/// A task's state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum State {
    /// Can run.
    Ready,
    /// Runs on this CPU.
    Running(usize),
    /// Returned from its function.
    Exited,
    /// Ended by a fault (what happened).
    Faulted(String),
}

/// One task.
pub struct Task {
    /// Its id in the `sched` cell.
    pub sched_id: u64,
    /// Its name.
    pub name: String,
    /// Its state.
    pub state: State,
    ctx: Box<Frame>,
    stack: Option<Vec<u8>>,
    /// Times switched in.
    pub runs: u64,
    /// The CPUs it ran on (bit i: CPU i).
    pub cpus: u64,
    /// Kernel locks it holds that are taken with interrupts enabled (the loader's lock): a fault
    /// while it holds one cannot end just the task.
    pub locks: u32,
}

struct Scheduler {
    tasks: Vec<Task>,
    idle: Vec<Frame>,
    fx: Box<[u8; 512]>,
}

static SCHED: IrqMutex<Option<Scheduler>> = IrqMutex::new(None);
/// Whether the timers switch tasks.
static RUNNING: AtomicBool = AtomicBool::new(false);
/// The first time any task ran (TSC), 0 before.
pub static FIRST_TASK_TSC: AtomicU64 = AtomicU64::new(0);
/// The entry functions of spawned tasks that have not started yet.
/// A task's function, until the task starts.
type Entry = Box<dyn FnOnce() + Send>;
static ENTRIES: IrqMutex<VecDeque<(usize, Entry)>> = IrqMutex::new(VecDeque::new());
/// Picks the policy made, and picks the kernel could not use (task running elsewhere or ended).
pub static PICKS: AtomicU64 = AtomicU64::new(0);
/// Picks the kernel could not run.
pub static PICKS_SKIPPED: AtomicU64 = AtomicU64::new(0);
/// Ticks on which no switch was made because `sched` was behind a gate.
pub static PICKS_GATED: AtomicU64 = AtomicU64::new(0);

/// Sets up the task table (on the bootstrap CPU, before any AP runs).
pub fn init(cpus: usize) {
    let fx = interrupts::clean_fx_state();
    let idle = (0..cpus.max(MAX_CPUS))
        .map(|_| Frame::new_task(0, 0, 0, &fx))
        .collect();
    *SCHED.lock() = Some(Scheduler {
        tasks: Vec::new(),
        idle,
        fx,
    });
}

/// Bytes of a task's stack.
const STACK_BYTES: usize = 256 * 1024;

/// Spawns a task that runs `f`: registers it with the `sched` cell, gives it a stack and a frame
/// that starts in `f`. Returns the kernel's index of the task.
pub fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> Result<usize, String> {
    let policy = SCHED_CELL.get().ok_or("the scheduler has no policy cell")?;
    let sched_id = policy.spawn.call(|spawn| spawn(name, PRIORITY))?;
    let stack = vec![0u8; STACK_BYTES];
    let top = stack.as_ptr() as u64 + STACK_BYTES as u64;
    let mut guard = SCHED.lock();
    let s = guard.as_mut().ok_or("the scheduler is not set up")?;
    let index = s.tasks.len();
    let ctx = Box::new(Frame::new_task(
        task_entry as *const () as u64,
        index as u64,
        top,
        &s.fx,
    ));
    ENTRIES.lock().push_back((index, Box::new(f)));
    s.tasks.push(Task {
        sched_id,
        name: name.into(),
        state: State::Ready,
        ctx,
        stack: Some(stack),
        runs: 0,
        cpus: 0,
        locks: 0,
    });
    Ok(index)
}

/// Where every task starts, with interrupts enabled, on its own stack.
extern "C" fn task_entry(index: u64) -> ! {
    let entry = {
        let mut entries = ENTRIES.lock();
        let at = entries.iter().position(|(i, _)| *i == index as usize);
        at.and_then(|at| entries.remove(at)).map(|(_, f)| f)
    };
    if let Some(f) = entry {
        f();
    }
    exit_current()
}

/// Ends the calling task: removes it from the `sched` cell and never returns.
pub fn exit_current() -> ! {
    // Pinned from the policy's `exit` until the task is marked exited: switched out in between,
    // it would be `Ready` for the kernel but unknown to the policy, which never picks it again.
    let pinned = quiesce::pin();
    let index = current_index();
    let sched_id = with_task(index, |t| t.sched_id);
    if let (Some(policy), Some(id)) = (SCHED_CELL.get(), sched_id) {
        if let Err(e) = policy.exit.call(|exit| exit(id)) {
            crate::println!("task: sched::exit({id}) failed: {e}");
        }
    }
    {
        let mut guard = SCHED.lock();
        if let Some(t) = guard.as_mut().and_then(|s| s.tasks.get_mut(index)) {
            t.state = State::Exited;
        }
    }
    drop(pinned);
    loop {
        interrupts::yield_now();
    }
}

/// Runs `f` on the task with kernel index `index`.
pub fn with_task<R>(index: usize, f: impl FnOnce(&mut Task) -> R) -> Option<R> {
    let mut guard = SCHED.lock();
    guard.as_mut()?.tasks.get_mut(index).map(f)
}

/// The name of the task with index `index` (`idle` for [`IDLE`]).
pub fn name_of(index: usize) -> String {
    if index == IDLE {
        return "idle".into();
    }
    // Never wait: called from the drain's error path only, but keep the exception path safe.
    SCHED
        .try_lock()
        .and_then(|g| {
            g.as_ref()
                .and_then(|s| s.tasks.get(index))
                .map(|t| t.name.clone())
        })
        .unwrap_or_else(|| format!("#{index}"))
}

/// One line per task: index, sched id, name, state, runs, CPUs.
pub fn describe() -> Vec<String> {
    let guard = SCHED.lock();
    let Some(s) = guard.as_ref() else {
        return Vec::new();
    };
    s.tasks
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let cpus: Vec<String> = (0..MAX_CPUS)
                .filter(|c| t.cpus & (1 << c) != 0)
                .map(|c| format!("{c}"))
                .collect();
            format!(
                "task {i:>2} sched id {:>3} {:<12} {:<22} runs {:>6} on cpus [{}]",
                t.sched_id,
                t.name,
                match &t.state {
                    State::Ready => String::from("ready"),
                    State::Running(c) => format!("running on cpu {c}"),
                    State::Exited => String::from("exited"),
                    State::Faulted(_) => String::from("ended by a fault"),
                },
                t.runs,
                cpus.join(",")
            )
        })
        .collect()
}

/// The states of all tasks, by index.
pub fn states() -> Vec<(String, State)> {
    let guard = SCHED.lock();
    guard
        .as_ref()
        .map(|s| {
            s.tasks
                .iter()
                .map(|t| (t.name.clone(), t.state.clone()))
                .collect()
        })
        .unwrap_or_default()
}

/// Frees the stacks of tasks that ended and are no CPU's current task any more; returns how
/// many it freed.
pub fn reap() -> usize {
    let mut freed = 0;
    let stacks: Vec<Vec<u8>> = {
        let mut guard = SCHED.lock();
        let Some(s) = guard.as_mut() else { return 0 };
        let busy: Vec<usize> = percpu::online()
            .map(|c| c.current.load(Ordering::Relaxed))
            .collect();
        s.tasks
            .iter_mut()
            .enumerate()
            .filter(|(i, t)| {
                matches!(t.state, State::Exited | State::Faulted(_)) && !busy.contains(i)
            })
            .filter_map(|(_, t)| t.stack.take())
            .collect()
    };
    for stack in stacks {
        drop(stack);
        freed += 1;
    }
    freed
}

/// Starts the calling CPU's timer and becomes its idle loop. For every CPU once it is set up.
pub fn run_cpu() -> ! {
    let cpu = percpu::this_cpu();
    apic::start_timer(crate::TICK_US);
    loop {
        quiesce::idle_point();
        debug_assert_eq!(cpu.current.load(Ordering::Relaxed), IDLE);
        // SAFETY: this CPU's IDT, TSS and local APIC are set up, and the idle loop holds no lock.
        unsafe { cpu::wait_for_interrupt() };
    }
}

/// Lets the timers switch tasks.
pub fn start() {
    RUNNING.store(true, Ordering::SeqCst);
}

/// The timer interrupt.
pub fn on_timer(frame: &mut Frame) {
    let cpu = percpu::this_cpu();
    cpu.ticks.fetch_add(1, Ordering::Relaxed);
    let quiescent = quiesce::on_tick(frame.rip);
    apic::eoi();
    if quiescent {
        reschedule(frame, false);
    }
}

/// The yield vector: the calling task gives up its CPU (it runs at depth 0: a quiescent point).
pub fn on_yield(frame: &mut Frame) {
    if percpu::depth() == 0 {
        quiesce::task_point();
    }
    reschedule(frame, true);
}

/// Switches the CPU to another task if the policy names one that can run here. `yielding`: the
/// current task asked to give the CPU up, so a pick of itself is asked once more.
pub fn reschedule(frame: &mut Frame, yielding: bool) {
    if !RUNNING.load(Ordering::Relaxed) {
        return;
    }
    let cpu = percpu::this_cpu();
    let me = cpu.index();
    let current = cpu.current.load(Ordering::Relaxed);
    let Some(policy) = SCHED_CELL.get() else {
        return;
    };
    let tasks = SCHED.lock().as_ref().map_or(0, |s| s.tasks.len());
    for attempt in 0..=tasks {
        // The policy's pick, made in this interrupt handler: `try_call`, never a wait.
        let Some(pick) = policy.schedule.try_call(|schedule| schedule()) else {
            PICKS_GATED.fetch_add(1, Ordering::Relaxed);
            break;
        };
        let Some(id) = pick else { break };
        PICKS.fetch_add(1, Ordering::Relaxed);
        let mut guard = SCHED.lock();
        let Some(s) = guard.as_mut() else { return };
        let Some(next) = s.tasks.iter().position(|t| t.sched_id == id) else {
            // An id the kernel has no task for (`sched`'s own `idle`): ask again.
            PICKS_SKIPPED.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        if next == current && s.tasks[next].state == State::Running(me) {
            if yielding && attempt == 0 {
                continue;
            }
            return;
        }
        if s.tasks[next].state != State::Ready {
            PICKS_SKIPPED.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        s.switch(frame, me, current, next);
        return;
    }
    // Nothing else to run: the current task goes on, or the CPU idles if it cannot.
    let mut guard = SCHED.lock();
    let Some(s) = guard.as_mut() else { return };
    if current != IDLE && s.tasks.get(current).map(|t| &t.state) != Some(&State::Running(me)) {
        s.switch(frame, me, current, IDLE);
    }
}

impl Scheduler {
    /// Saves `frame` into `from` (a task or this CPU's idle context) and loads `to`'s.
    fn switch(&mut self, frame: &mut Frame, me: usize, from: usize, to: usize) {
        if from == IDLE {
            self.idle[me].clone_from(frame);
        } else if let Some(t) = self.tasks.get_mut(from) {
            if t.state == State::Running(me) {
                t.state = State::Ready;
            }
            (*t.ctx).clone_from(frame);
        }
        let cpu = percpu::this_cpu();
        if to == IDLE {
            frame.clone_from(&self.idle[me]);
            cpu.stack_lo.store(0, Ordering::Relaxed);
            cpu.stack_hi.store(0, Ordering::Relaxed);
        } else {
            let t = &mut self.tasks[to];
            t.state = State::Running(me);
            t.runs += 1;
            t.cpus |= 1 << me;
            frame.clone_from(&t.ctx);
            let (lo, hi) = t.stack.as_ref().map_or((0, 0), |s| {
                (s.as_ptr() as u64, s.as_ptr() as u64 + s.len() as u64)
            });
            cpu.stack_lo.store(lo, Ordering::Relaxed);
            cpu.stack_hi.store(hi, Ordering::Relaxed);
            FIRST_TASK_TSC
                .compare_exchange(0, cpu::rdtsc(), Ordering::Relaxed, Ordering::Relaxed)
                .ok();
        }
        cpu.current.store(to, Ordering::Relaxed);
        cpu.switches.fetch_add(1, Ordering::Relaxed);
    }
}

/// Ends the task running on this CPU after a fault (fault.rs decided that it is safe) and
/// switches to another task or the idle loop.
pub fn end_faulted(frame: &mut Frame, why: String) {
    let cpu = percpu::this_cpu();
    let me = cpu.index();
    let current = cpu.current.load(Ordering::Relaxed);
    {
        let mut guard = SCHED.lock();
        if let Some(t) = guard.as_mut().and_then(|s| s.tasks.get_mut(current)) {
            t.state = State::Faulted(why);
        }
    }
    ENDED_BY_FAULT.lock().push(current);
    reschedule(frame, false);
    // `reschedule` leaves a task that cannot run only if the timers are not switching yet.
    let mut guard = SCHED.lock();
    if let Some(s) = guard.as_mut() {
        if cpu.current.load(Ordering::Relaxed) == current {
            s.switch(frame, me, current, IDLE);
        }
    }
}

/// Tasks ended by a fault whose `sched` entry is still to be removed (by [`forget_faulted`]).
static ENDED_BY_FAULT: IrqMutex<Vec<usize>> = IrqMutex::new(Vec::new());

/// Removes the `sched` entries of tasks that faults ended (task context: this calls the cell).
pub fn forget_faulted() -> Vec<String> {
    let ended: Vec<usize> = core::mem::take(&mut *ENDED_BY_FAULT.lock());
    let mut out = Vec::new();
    for index in ended {
        let Some((id, name)) = with_task(index, |t| (t.sched_id, t.name.clone())) else {
            continue;
        };
        if let Some(policy) = SCHED_CELL.get() {
            match policy.exit.call(|exit| exit(id)) {
                Ok(()) => out.push(name),
                Err(e) => out.push(format!("{name} (sched::exit: {e})")),
            }
        }
    }
    out
}

/// The kernel index of the calling task (or [`IDLE`]). Read with interrupts off: reading "this
/// CPU's current task" takes two loads, and a task switched to another CPU between them would
/// read the other task that now runs on the CPU it left.
pub fn current_index() -> usize {
    let was = cpu::irq_save();
    let index = percpu::this_cpu().current.load(Ordering::Relaxed);
    cpu::irq_restore(was);
    index
}

/// The kernel index of the task running on this CPU, if any (interrupt handlers).
pub fn current() -> Option<usize> {
    let c = percpu::this_cpu().current.load(Ordering::Relaxed);
    (c != IDLE).then_some(c)
}

/// Sleeps the calling task for about `us` microseconds: gives the CPU to other tasks, and halts
/// it until the next interrupt when none wants it.
pub fn sleep_us(us: u64) {
    let tsc_per_us = crate::tsc_per_us();
    let start = cpu::rdtsc();
    while cpu::rdtsc() - start < us * tsc_per_us {
        interrupts::yield_now();
        if cpu::rdtsc() - start < us * tsc_per_us {
            // SAFETY: task context with interrupts enabled, holding no lock.
            unsafe { cpu::wait_for_interrupt() };
        }
    }
}

/// The task table for code that must not wait for it (an exception handler): taken if another
/// CPU lets it go within a short while (it holds it only for a switch or an update), `None` if not
/// (this CPU may hold it itself).
fn sched_soon() -> Option<IrqGuard<'static, Option<Scheduler>>> {
    (0..100_000).find_map(|_| {
        let guard = SCHED.try_lock();
        if guard.is_none() {
            core::hint::spin_loop();
        }
        guard
    })
}

/// The number of kernel locks task `index` holds, if the task table is free right now (the
/// exception handler must not wait for it).
pub fn try_locks_of(index: usize) -> Option<u32> {
    let guard = sched_soon()?;
    guard.as_ref()?.tasks.get(index).map(|t| t.locks)
}

/// Writes the name and ids of task `index` without allocating or waiting.
pub fn write_name(w: &mut dyn core::fmt::Write, index: usize) -> core::fmt::Result {
    match sched_soon() {
        Some(guard) => match guard.as_ref().and_then(|s| s.tasks.get(index)) {
            Some(t) => write!(w, "`{}` (sched id {}, task {index})", t.name, t.sched_id),
            None => write!(w, "#{index}"),
        },
        None => write!(w, "#{index}"),
    }
}

/// Counts a kernel lock the running task takes (+1) or releases (-1) with interrupts enabled.
pub fn count_lock(delta: i32) {
    let was = cpu::irq_save();
    let index = percpu::this_cpu().current.load(Ordering::Relaxed);
    if let Some(s) = SCHED.lock().as_mut() {
        if let Some(t) = s.tasks.get_mut(index) {
            t.locks = t.locks.saturating_add_signed(delta);
        }
    }
    cpu::irq_restore(was);
}

/// Removes the `sched` entry `id` that no kernel task stands behind (the boot workload's).
pub fn exit_record(id: u64) -> Result<(), String> {
    let policy = SCHED_CELL.get().ok_or("the scheduler has no policy cell")?;
    policy.exit.call(|exit| exit(id))
}
