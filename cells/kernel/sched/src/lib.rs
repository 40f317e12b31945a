//! `sched`: the scheduler cell.
//!
//! A task table and a round-robin run queue. Each task gets a one-frame stack from the
//! `frame_alloc` cell when it is spawned and gives it back when it exits; spawns and exits are
//! recorded in the `klog` cell. The state lives in the `pub static` [`SCHED`] so that a new version
//! of this cell keeps it on a live swap. Calls into other cells are made without holding
//! [`SCHED`]'s lock.
//!
//! Interface (all `pub`, non-generic, `#[inline(never)]`):
//! - `init() -> Result<(), String>`: spawn the `idle` task (priority 0) unless it exists.
//! - `spawn(name: &str, priority: u8) -> Result<u64, String>`: a new runnable task, its id.
//! - `exit(task: u64) -> Result<(), String>`: remove a task and free its stack frame.
//! - `schedule() -> Option<u64>`: the next runnable task, round-robin.
//! - `current() -> Option<u64>`: the task picked by the last `schedule`.
//! - `tasks() -> Vec<String>`: one line per task: id, name, priority, stack frame, times scheduled.
//! - `run_queue() -> Vec<u64>`: the task ids in the order `schedule` will pick them.
//! - `task_count() -> usize`.
//! - `revision() -> String`: which version of the cell this is.
#![cfg_attr(not(test), no_std)]
#![deny(missing_docs)]

extern crate alloc;

use alloc::collections::{BTreeMap, VecDeque};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

/// Longest task name accepted by `spawn`.
pub const MAX_NAME_LEN: usize = 64;

/// One task.
///
/// `#[repr(C)]`, like [`Scheduler`]: a new version of this cell with another state layout reads
/// this one through a mirror of it when it takes the state over (`transfer_state`).
#[repr(C)]
pub struct Task {
    name: String,
    priority: u8,
    /// Physical address of the task's stack frame (from `frame_alloc`).
    stack: u64,
    /// How many times `schedule` picked this task.
    scheduled: u64,
}

/// The scheduler state: task table, run queue, current task. `#[repr(C)]`: see [`Task`].
#[repr(C)]
pub struct Scheduler {
    tasks: BTreeMap<u64, Task>,
    run_queue: VecDeque<u64>,
    next_id: u64,
    current: Option<u64>,
}

impl Scheduler {
    /// No tasks (usable in a `static`).
    pub const fn new() -> Self {
        Scheduler {
            tasks: BTreeMap::new(),
            run_queue: VecDeque::new(),
            next_id: 1,
            current: None,
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
        self.run_queue.push_back(id);
        id
    }

    /// Removes a task; returns its stack frame for the caller to free.
    pub fn remove(&mut self, id: u64) -> Result<u64, String> {
        let task = self
            .tasks
            .remove(&id)
            .ok_or_else(|| format!("sched: no task with id {id}"))?;
        self.run_queue.retain(|&t| t != id);
        if self.current == Some(id) {
            self.current = None;
        }
        Ok(task.stack)
    }

    /// Picks the task at the head of the run queue and moves it to the back.
    pub fn pick(&mut self) -> Option<u64> {
        let id = self.run_queue.pop_front()?;
        self.run_queue.push_back(id);
        if let Some(task) = self.tasks.get_mut(&id) {
            task.scheduled += 1;
        }
        self.current = Some(id);
        Some(id)
    }

    /// One description line per task, by id.
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
}

impl Default for Scheduler {
    fn default() -> Self {
        Self::new()
    }
}

/// The scheduler. `pub` so that a new version of this cell rebinds to it on a live swap.
#[doc(hidden)]
pub static SCHED: spin::Mutex<Scheduler> = spin::Mutex::new(Scheduler::new());

/// Cell entry point: spawns the `idle` task unless it already exists.
#[inline(never)]
pub fn init() -> Result<(), String> {
    let has_idle = SCHED.lock().has_name("idle");
    if !has_idle {
        let id = spawn("idle", 0)?;
        log::info!("sched: ready, idle task is {id}");
    } else {
        log::info!("sched: ready, idle task already present");
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

/// Picks the next runnable task round-robin; `None` when no task exists.
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

/// Task ids in the order `schedule` will pick them.
#[inline(never)]
pub fn run_queue() -> Vec<u64> {
    SCHED.lock().run_queue.iter().copied().collect()
}

/// Number of tasks.
#[inline(never)]
pub fn task_count() -> usize {
    SCHED.lock().tasks.len()
}

/// Which version of this cell is running, as one line.
#[inline(never)]
pub fn revision() -> String {
    String::from("sched v1: round-robin scheduler, one run queue")
}

// The interface, checked against cell-abi at compile time: hosts bind these functions by the
// types declared there.
const _: cell_abi::Init = init;
const _: cell_abi::sched::Spawn = spawn;
const _: cell_abi::sched::Exit = exit;
const _: cell_abi::sched::Schedule = schedule;
const _: cell_abi::sched::Current = current;
const _: cell_abi::sched::Tasks = tasks;
const _: cell_abi::sched::RunQueue = run_queue;
const _: cell_abi::sched::TaskCount = task_count;
const _: cell_abi::Revision = revision;

/// The plain-state promise ([`cell_abi::PLAIN_STATE`]): nothing reachable from this cell's statics
/// points into its own code or read-only data, so a retired version of it may be freed while a
/// newer version runs on its statics.
#[inline(never)]
pub fn plain_state() {}
const _: cell_abi::PlainState = plain_state;

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// The global tests share `SCHED` and the frame allocator: run them one at a time.
    static GLOBAL: Mutex<()> = Mutex::new(());

    #[test]
    fn round_robin_order() {
        let mut s = Scheduler::new();
        let a = s.add("a", 1, 0x1000);
        let b = s.add("b", 1, 0x2000);
        let c = s.add("c", 1, 0x3000);
        let picks: Vec<u64> = (0..7).map(|_| s.pick().unwrap()).collect();
        assert_eq!(picks, vec![a, b, c, a, b, c, a]);
        assert_eq!(s.current, Some(a));
        assert_eq!(s.remove(b), Ok(0x2000));
        let picks: Vec<u64> = (0..4).map(|_| s.pick().unwrap()).collect();
        assert_eq!(picks, vec![c, a, c, a]);
        let lines = s.describe();
        assert_eq!(lines[0], "id=1 name=a priority=1 stack=0x1000 scheduled=5");
        assert!(s.remove(b).is_err());
    }

    /// The layout that a new version's mirror of this state (`transfer_state`) relies on; the
    /// upgrade in `cells/upgrades/sched` pins the same numbers for its mirror.
    #[test]
    fn state_layout_is_pinned() {
        use core::mem::{align_of, offset_of, size_of};
        assert_eq!(size_of::<Task>(), 48);
        assert_eq!(offset_of!(Task, name), 0);
        assert_eq!(offset_of!(Task, priority), 24);
        assert_eq!(offset_of!(Task, stack), 32);
        assert_eq!(offset_of!(Task, scheduled), 40);
        assert_eq!(size_of::<Scheduler>(), 80);
        assert_eq!(align_of::<Scheduler>(), 8);
        assert_eq!(offset_of!(Scheduler, tasks), 0);
        assert_eq!(offset_of!(Scheduler, run_queue), 24);
        assert_eq!(offset_of!(Scheduler, next_id), 56);
        assert_eq!(offset_of!(Scheduler, current), 64);
        assert_eq!(size_of::<spin::Mutex<Scheduler>>(), 88);
        assert!(revision().starts_with("sched v1:"));
    }

    #[test]
    fn empty_scheduler_picks_nothing() {
        let mut s = Scheduler::new();
        assert_eq!(s.pick(), None);
        let a = s.add("a", 0, 0);
        s.remove(a).unwrap();
        assert_eq!(s.pick(), None);
        assert_eq!(s.current, None);
    }

    #[test]
    fn spawn_and_exit_use_frames() {
        let _g = GLOBAL.lock().unwrap();
        let free = frame_alloc::free_count();
        let t = spawn("worker", 7).unwrap();
        assert_eq!(frame_alloc::free_count(), free - 1);
        let line = tasks()
            .into_iter()
            .find(|l| l.starts_with(&format!("id={t} ")))
            .unwrap();
        assert!(line.contains("name=worker priority=7"), "{line}");
        let stack = SCHED.lock().tasks[&t].stack;
        assert!(frame_alloc::allocated_frames().contains(&stack));
        assert!(run_queue().contains(&t));
        exit(t).unwrap();
        assert_eq!(frame_alloc::free_count(), free);
        assert!(!run_queue().contains(&t));
        assert!(exit(t).is_err());
        assert!(spawn("", 1).is_err());
        assert!(klog::dump()
            .iter()
            .any(|l| l.contains(&format!("exit {t}"))));
    }

    #[test]
    fn init_and_global_round_robin() {
        let _g = GLOBAL.lock().unwrap();
        init().unwrap();
        init().unwrap();
        assert_eq!(
            tasks().iter().filter(|l| l.contains("name=idle ")).count(),
            1
        );
        let a = spawn("a", 1).unwrap();
        let b = spawn("b", 2).unwrap();
        let order = run_queue();
        let n = order.len();
        let picks: Vec<u64> = (0..2 * n).map(|_| schedule().unwrap()).collect();
        assert_eq!(&picks[..n], &order[..]);
        assert_eq!(&picks[n..], &order[..]);
        assert_eq!(current(), Some(picks[2 * n - 1]));
        exit(a).unwrap();
        exit(b).unwrap();
        assert_eq!(task_count(), n - 2);
    }
}
