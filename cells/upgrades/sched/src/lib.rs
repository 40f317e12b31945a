//! `sched` v2: the scheduler cell, as a priority scheduler.
//!
//! A new version of `cells/kernel/sched` (v1, one round-robin run queue) with the same crate
//! identity and the same interface, so that it can replace v1 in a running system. The task with
//! the highest priority runs first; tasks of equal priority take turns (round robin), and a lower
//! priority runs only while no higher one is runnable. As in v1, each task gets a one-frame stack
//! from the `frame_alloc` cell when it is spawned and gives it back when it exits, spawns and exits
//! are recorded in the `klog` cell, and calls into other cells are made without holding
//! [`SCHED`]'s lock.
//!
//! The state lives in the `pub static` [`SCHED`] with another layout than v1's (one run queue per
//! priority, and counters), so this version cannot be bound to v1's memory: it exports
//! [`transfer_state`], which the loader calls during the swap to build this version's state from
//! v1's. Every task keeps its id, name, priority, stack frame and count of times scheduled, tasks
//! of one priority keep v1's round-robin order, and ids keep counting where v1 stopped.
//!
//! Interface (all `pub`, non-generic, `#[inline(never)]`); v1's functions keep their signatures:
//! - `init() -> Result<(), String>`: spawn the `idle` task (priority 0) unless it exists.
//! - `spawn(name: &str, priority: u8) -> Result<u64, String>`: a new runnable task, its id.
//! - `exit(task: u64) -> Result<(), String>`: remove a task and free its stack frame.
//! - `schedule() -> Option<u64>`: the next task: highest priority first, round robin among equals.
//! - `current() -> Option<u64>`: the task picked by the last `schedule`.
//! - `tasks() -> Vec<String>`: one line per task: id, name, priority, stack frame, times scheduled.
//! - `run_queue() -> Vec<u64>`: the task ids by priority, highest first, each priority in the
//!   order `schedule` takes its turns.
//! - `task_count() -> usize`.
//! - `revision() -> String`: which version of the cell this is.
//! - new in v2: `set_priority(task: u64, priority: u8) -> Result<(), String>`.
//! - new in v2: `context_switches() -> u64`: picks that changed the current task.
//! - new in v2: `transfer_state(old: &dyn Fn(&str) -> Option<usize>) -> Result<(), String>`.
#![cfg_attr(not(test), no_std)]
#![deny(missing_docs)]

extern crate alloc;

use alloc::collections::{BTreeMap, BTreeSet, VecDeque};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

/// Longest task name accepted by `spawn`.
pub const MAX_NAME_LEN: usize = 64;

/// One task. `#[repr(C)]`, like v1's.
#[repr(C)]
pub struct Task {
    name: String,
    priority: u8,
    /// Physical address of the task's stack frame (from `frame_alloc`).
    stack: u64,
    /// How many times `schedule` picked this task.
    scheduled: u64,
}

/// The scheduler state: task table, one run queue per priority, current task, counters.
/// `#[repr(C)]`, like v1's.
#[repr(C)]
pub struct Scheduler {
    tasks: BTreeMap<u64, Task>,
    /// Runnable task ids by priority; each queue in round-robin order, never empty.
    queues: BTreeMap<u8, VecDeque<u64>>,
    next_id: u64,
    current: Option<u64>,
    /// How many times `schedule` picked a task.
    picks: u64,
    /// How many picks changed the current task.
    switches: u64,
}

impl Scheduler {
    /// No tasks (usable in a `static`).
    pub const fn new() -> Self {
        Scheduler {
            tasks: BTreeMap::new(),
            queues: BTreeMap::new(),
            next_id: 1,
            current: None,
            picks: 0,
            switches: 0,
        }
    }

    fn enqueue(&mut self, id: u64, priority: u8) {
        self.queues.entry(priority).or_default().push_back(id);
    }

    fn dequeue(&mut self, id: u64, priority: u8) {
        if let Some(queue) = self.queues.get_mut(&priority) {
            queue.retain(|&t| t != id);
            if queue.is_empty() {
                self.queues.remove(&priority);
            }
        }
    }

    /// Adds a runnable task whose stack frame the caller already allocated; returns its id.
    pub fn add(&mut self, name: &str, priority: u8, stack: u64) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        let task = Task {
            name: String::from(name),
            priority,
            stack,
            scheduled: 0,
        };
        self.tasks.insert(id, task);
        self.enqueue(id, priority);
        id
    }

    /// Removes a task; returns its stack frame for the caller to free.
    pub fn remove(&mut self, id: u64) -> Result<u64, String> {
        let task = self
            .tasks
            .remove(&id)
            .ok_or_else(|| format!("sched: no task with id {id}"))?;
        self.dequeue(id, task.priority);
        if self.current == Some(id) {
            self.current = None;
        }
        Ok(task.stack)
    }

    /// Picks the task at the head of the highest-priority queue and moves it to that queue's back.
    pub fn pick(&mut self) -> Option<u64> {
        let (_, queue) = self.queues.iter_mut().next_back()?;
        let id = queue.pop_front()?;
        queue.push_back(id);
        if let Some(task) = self.tasks.get_mut(&id) {
            task.scheduled += 1;
        }
        self.picks += 1;
        if self.current != Some(id) {
            self.switches += 1;
        }
        self.current = Some(id);
        Some(id)
    }

    /// Gives a task another priority; it joins the back of that priority's queue.
    pub fn set_priority(&mut self, id: u64, priority: u8) -> Result<(), String> {
        let task = self
            .tasks
            .get_mut(&id)
            .ok_or_else(|| format!("sched: no task with id {id}"))?;
        let old = core::mem::replace(&mut task.priority, priority);
        if old != priority {
            self.dequeue(id, old);
            self.enqueue(id, priority);
        }
        Ok(())
    }

    /// Task ids by priority, highest first, each priority in round-robin order.
    pub fn run_order(&self) -> Vec<u64> {
        self.queues
            .values()
            .rev()
            .flat_map(|q| q.iter().copied())
            .collect()
    }

    /// One description line per task, by id (the same format as v1's).
    pub fn describe(&self) -> Vec<String> {
        self.tasks
            .iter()
            .map(|(id, t)| {
                format!(
                    "id={id} name={} priority={} stack={:#x} scheduled={}",
                    t.name, t.priority, t.stack, t.scheduled
                )
            })
            .collect()
    }

    fn has_name(&self, name: &str) -> bool {
        self.tasks.values().any(|t| t.name == name)
    }

    /// This version's state with v1's tasks, run order, next id and current task.
    fn from_v1(old: &v1::Scheduler) -> Result<Self, String> {
        let inconsistent = |what: String| {
            format!("sched v2: the old SCHED is inconsistent: {what}; nothing was taken over")
        };
        let mut new = Scheduler::new();
        let mut queued = BTreeSet::new();
        for &id in &old.run_queue {
            let task = old
                .tasks
                .get(&id)
                .ok_or_else(|| inconsistent(format!("run queue holds unknown task {id}")))?;
            if !queued.insert(id) {
                return Err(inconsistent(format!("task {id} is queued twice")));
            }
            new.enqueue(id, task.priority);
        }
        for (&id, task) in &old.tasks {
            if !queued.contains(&id) {
                return Err(inconsistent(format!("task {id} is not in the run queue")));
            }
            if id == 0 || id >= old.next_id {
                return Err(inconsistent(format!(
                    "task id {id} is not below the next id {}",
                    old.next_id
                )));
            }
            new.tasks.insert(
                id,
                Task {
                    name: task.name.clone(),
                    priority: task.priority,
                    stack: task.stack,
                    scheduled: task.scheduled,
                },
            );
            new.picks += task.scheduled;
        }
        if let Some(current) = old.current {
            if !old.tasks.contains_key(&current) {
                return Err(inconsistent(format!(
                    "the current task {current} does not exist"
                )));
            }
        }
        new.next_id = old.next_id;
        new.current = old.current;
        Ok(new)
    }
}

impl Default for Scheduler {
    fn default() -> Self {
        Self::new()
    }
}

/// A mirror of v1's state types (`cells/kernel/sched`), to read them in [`transfer_state`].
///
/// v1's `Task` and `Scheduler` are `#[repr(C)]` with these fields; both versions' unit tests pin
/// their sizes, alignments and field offsets to the same numbers. Only v1 builds values of these
/// types (the tests here too); this version reads them through the address the loader gives.
mod v1 {
    use alloc::collections::{BTreeMap, VecDeque};
    use alloc::string::String;

    /// v1's `sched::Task`.
    #[repr(C)]
    pub(crate) struct Task {
        pub(crate) name: String,
        pub(crate) priority: u8,
        pub(crate) stack: u64,
        pub(crate) scheduled: u64,
    }

    /// v1's `sched::Scheduler`.
    #[repr(C)]
    pub(crate) struct Scheduler {
        pub(crate) tasks: BTreeMap<u64, Task>,
        pub(crate) run_queue: VecDeque<u64>,
        pub(crate) next_id: u64,
        pub(crate) current: Option<u64>,
    }

    /// The type of v1's `SCHED`.
    pub(crate) type Static = spin::Mutex<Scheduler>;
}

/// The scheduler. `pub` so that the loader finds it; its type differs from v1's, so a swap from
/// v1 fills it through [`transfer_state`] instead of rebinding it.
#[doc(hidden)]
pub static SCHED: spin::Mutex<Scheduler> = spin::Mutex::new(Scheduler::new());

/// How often [`transfer_state`] tries the old version's lock before giving up.
const LOCK_ATTEMPTS: usize = if cfg!(test) { 1 << 12 } else { 1 << 24 };

/// State transfer from v1, called by the loader once during a swap, before it commits.
///
/// `old("sched::SCHED")` is the address of the old version's `SCHED` (a `spin::Mutex` of v1's
/// `#[repr(C)]` state). This reads it under its lock, leaves it unchanged (the swap may still roll
/// back), and replaces this version's [`SCHED`] with the same tasks (ids, names, priorities, stack
/// frames, times scheduled), v1's round-robin order within each priority, the same current task,
/// and ids counting on from v1's next id. Fails, leaving this version's state as it was, when the
/// old static is missing or misaligned, its lock stays held, or it is inconsistent.
#[inline(never)]
pub fn transfer_state(old: &dyn Fn(&str) -> Option<usize>) -> Result<(), String> {
    let addr = old("sched::SCHED").ok_or("sched v2: the old version has no sched::SCHED")?;
    if addr == 0 || !addr.is_multiple_of(core::mem::align_of::<v1::Static>()) {
        return Err(format!(
            "sched v2: the old sched::SCHED at {addr:#x} is not aligned for v1's state"
        ));
    }
    // SAFETY: the loader passes the address of the old version's `sched::SCHED`, a
    // `spin::Mutex<Scheduler>` of v1, whose `#[repr(C)]` layout `v1::Scheduler` mirrors (built by
    // the same compiler, so its `BTreeMap`, `VecDeque` and `String` fields have the same layout);
    // it stays mapped for the whole call and is only read (under its own lock).
    let old_static = unsafe { &*(addr as *const v1::Static) };
    let new = {
        let guard = (0..LOCK_ATTEMPTS)
            .find_map(|_| {
                let guard = old_static.try_lock();
                if guard.is_none() {
                    core::hint::spin_loop();
                }
                guard
            })
            .ok_or("sched v2: the old sched::SCHED stays locked")?;
        Scheduler::from_v1(&guard)?
    };
    let (count, next) = (new.tasks.len(), new.next_id);
    // The state this replaces (normally empty) is dropped after the lock is released.
    let replaced = core::mem::replace(&mut *SCHED.lock(), new);
    drop(replaced);
    log::info!("sched v2: took over v1's {count} tasks, next id {next}");
    Ok(())
}

/// Cell entry point: spawns the `idle` task unless it already exists.
#[inline(never)]
pub fn init() -> Result<(), String> {
    let has_idle = SCHED.lock().has_name("idle");
    if !has_idle {
        let id = spawn("idle", 0)?;
        log::info!("sched v2: ready, idle task is {id}");
    } else {
        log::info!("sched v2: ready, idle task already present");
    }
    Ok(())
}

/// Spawns a runnable task with a one-frame stack from `frame_alloc`; returns its id.
#[inline(never)]
pub fn spawn(name: &str, priority: u8) -> Result<u64, String> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(format!(
            "sched: task name must be 1..={MAX_NAME_LEN} bytes, got {}",
            name.len()
        ));
    }
    let stack = frame_alloc::alloc_frame()
        .ok_or_else(|| format!("sched: no frame left for the stack of task {name:?}"))?;
    let id = SCHED.lock().add(name, priority, stack);
    log::debug!("sched: spawned task {id} ({name}) with stack {stack:#x}");
    klog::push(
        4,
        "sched",
        &format!("spawn {id} {name} prio {priority} stack {stack:#x}"),
    );
    Ok(id)
}

/// Removes a task and frees its stack frame.
#[inline(never)]
pub fn exit(task: u64) -> Result<(), String> {
    let stack = SCHED.lock().remove(task)?;
    frame_alloc::free_frame(stack)?;
    log::debug!("sched: task {task} exited, freed stack {stack:#x}");
    klog::push(4, "sched", &format!("exit {task}"));
    Ok(())
}

/// Picks the next task: the highest priority first, round robin among tasks of equal priority;
/// `None` when no task exists.
#[inline(never)]
pub fn schedule() -> Option<u64> {
    SCHED.lock().pick()
}

/// The task picked by the last `schedule`, unless it has exited since.
#[inline(never)]
pub fn current() -> Option<u64> {
    SCHED.lock().current
}

/// One line per task: id, name, priority, stack frame, times scheduled.
#[inline(never)]
pub fn tasks() -> Vec<String> {
    SCHED.lock().describe()
}

/// Task ids by priority, highest first; within a priority, in the order `schedule` gives them
/// their turns.
#[inline(never)]
pub fn run_queue() -> Vec<u64> {
    SCHED.lock().run_order()
}

/// Number of tasks.
#[inline(never)]
pub fn task_count() -> usize {
    SCHED.lock().tasks.len()
}

/// Gives a task another priority; it takes its turns at the back of that priority's queue.
#[inline(never)]
pub fn set_priority(task: u64, priority: u8) -> Result<(), String> {
    SCHED.lock().set_priority(task, priority)?;
    klog::push(4, "sched", &format!("priority {task} {priority}"));
    Ok(())
}

/// How many times `schedule` picked another task than the current one.
#[inline(never)]
pub fn context_switches() -> u64 {
    SCHED.lock().switches
}

/// Which version of this cell is running, as one line.
#[inline(never)]
pub fn revision() -> String {
    String::from("sched v2: priority scheduler, round robin within a priority")
}

// The interface, checked against cell-abi at compile time: hosts bind these functions by the
// types declared there.
const _: cell_abi::TransferState = transfer_state;
const _: cell_abi::Init = init;
const _: cell_abi::sched::Spawn = spawn;
const _: cell_abi::sched::Exit = exit;
const _: cell_abi::sched::Schedule = schedule;
const _: cell_abi::sched::Current = current;
const _: cell_abi::sched::Tasks = tasks;
const _: cell_abi::sched::RunQueue = run_queue;
const _: cell_abi::sched::TaskCount = task_count;
const _: cell_abi::sched::SetPriority = set_priority;
const _: cell_abi::sched::ContextSwitches = context_switches;
const _: cell_abi::Revision = revision;

/// The plain-state promise ([`cell_abi::PLAIN_STATE`]): nothing reachable from this cell's statics
/// points into its own code or read-only data, so a retired version of it may be freed while a
/// newer version runs on its statics.
#[inline(never)]
pub fn plain_state() {}
const _: cell_abi::PlainState = plain_state;

#[cfg(test)]
mod tests;
