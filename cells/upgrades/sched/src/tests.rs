use super::*;
use std::sync::{Mutex, MutexGuard};

/// The tests that use `SCHED` and the frame allocator run one at a time.
static GLOBAL: Mutex<()> = Mutex::new(());

fn global() -> MutexGuard<'static, ()> {
    GLOBAL.lock().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn highest_priority_first_round_robin_among_equals() {
    let mut s = Scheduler::new();
    let low = s.add("low", 1, 0x1000);
    let b = s.add("b", 5, 0x2000);
    let c = s.add("c", 5, 0x3000);
    let mid = s.add("mid", 3, 0x4000);
    assert_eq!(s.run_order(), vec![b, c, mid, low]);
    let picks: Vec<u64> = (0..5).map(|_| s.pick().unwrap()).collect();
    assert_eq!(picks, vec![b, c, b, c, b]);
    assert_eq!(s.current, Some(b));
    assert_eq!(s.remove(b), Ok(0x2000));
    assert_eq!(s.current, None);
    assert_eq!(s.remove(c), Ok(0x3000));
    let picks: Vec<u64> = (0..2).map(|_| s.pick().unwrap()).collect();
    assert_eq!(picks, vec![mid, mid]);
    assert_eq!(s.picks, 7);
    assert_eq!(s.switches, 6, "b c b c b, then mid once");
    s.remove(mid).unwrap();
    assert_eq!(s.pick(), Some(low));
    assert_eq!(s.queues.len(), 1, "empty queues are dropped");
    let lines = s.describe();
    assert_eq!(
        lines,
        vec!["id=1 name=low priority=1 stack=0x1000 scheduled=1"]
    );
    assert!(s.remove(b).is_err());
}

#[test]
fn set_priority_moves_a_task_to_the_back_of_its_new_queue() {
    let mut s = Scheduler::new();
    let a = s.add("a", 2, 0);
    let b = s.add("b", 2, 0);
    let c = s.add("c", 1, 0);
    s.set_priority(c, 2).unwrap();
    assert_eq!(s.run_order(), vec![a, b, c]);
    s.set_priority(a, 9).unwrap();
    assert_eq!(s.run_order(), vec![a, b, c]);
    assert_eq!(s.pick(), Some(a));
    assert_eq!(s.pick(), Some(a));
    s.set_priority(a, 0).unwrap();
    assert_eq!(s.run_order(), vec![b, c, a]);
    s.set_priority(b, 2).unwrap();
    assert_eq!(s.run_order(), vec![b, c, a], "same priority: unchanged");
    assert!(s.set_priority(99, 1).is_err());
    assert_eq!(s.tasks[&a].priority, 0);
}

#[test]
fn empty_scheduler_picks_nothing() {
    let mut s = Scheduler::new();
    assert_eq!(s.pick(), None);
    let a = s.add("a", 0, 0);
    s.remove(a).unwrap();
    assert_eq!(s.pick(), None);
    assert_eq!(s.current, None);
    assert!(s.queues.is_empty());
}

/// v1's state and its mirror here: the numbers are the ones v1's unit test pins.
#[test]
fn v1_mirror_layout_and_a_different_layout_here() {
    use core::mem::{align_of, offset_of, size_of};
    assert_eq!(size_of::<v1::Task>(), 48);
    assert_eq!(offset_of!(v1::Task, name), 0);
    assert_eq!(offset_of!(v1::Task, priority), 24);
    assert_eq!(offset_of!(v1::Task, stack), 32);
    assert_eq!(offset_of!(v1::Task, scheduled), 40);
    assert_eq!(size_of::<v1::Scheduler>(), 80);
    assert_eq!(align_of::<v1::Scheduler>(), 8);
    assert_eq!(offset_of!(v1::Scheduler, tasks), 0);
    assert_eq!(offset_of!(v1::Scheduler, run_queue), 24);
    assert_eq!(offset_of!(v1::Scheduler, next_id), 56);
    assert_eq!(offset_of!(v1::Scheduler, current), 64);
    assert_eq!(size_of::<v1::Static>(), 88);
    assert_ne!(
        size_of_val(&SCHED),
        size_of::<v1::Static>(),
        "v2 changes the layout, so the swap needs transfer_state"
    );
}

fn v1_task(name: &str, priority: u8, stack: u64, scheduled: u64) -> v1::Task {
    v1::Task {
        name: name.to_owned(),
        priority,
        stack,
        scheduled,
    }
}

/// A v1 state as v1 leaves it after spawning five tasks, exiting one and scheduling a few times,
/// with the given stack frames.
fn v1_state(stacks: [u64; 4]) -> v1::Scheduler {
    v1::Scheduler {
        tasks: BTreeMap::from([
            (1, v1_task("idle", 0, stacks[0], 3)),
            (3, v1_task("net", 4, stacks[1], 2)),
            (4, v1_task("disk", 4, stacks[2], 2)),
            (5, v1_task("shell", 7, stacks[3], 1)),
        ]),
        // Round robin in v1 order: 4 is next, then 5, 1, 3.
        run_queue: VecDeque::from([4, 5, 1, 3]),
        next_id: 6,
        current: Some(3),
    }
}

fn lookup(addr: usize) -> impl Fn(&str) -> Option<usize> {
    move |path| (path == "sched::SCHED").then_some(addr)
}

fn describe_v1(s: &v1::Scheduler) -> (Vec<String>, Vec<u64>, u64, Option<u64>) {
    let tasks = s
        .tasks
        .iter()
        .map(|(id, t)| format!("{id} {} {} {} {}", t.name, t.priority, t.stack, t.scheduled))
        .collect();
    (
        tasks,
        s.run_queue.iter().copied().collect(),
        s.next_id,
        s.current,
    )
}

#[test]
fn transfer_state_keeps_tasks_order_and_ids_and_leaves_v1_alone() {
    let _g = global();
    let stacks = [(); 4].map(|_| frame_alloc::alloc_frame().unwrap());
    let old: v1::Static = spin::Mutex::new(v1_state(stacks));
    let before = describe_v1(&old.lock());

    transfer_state(&lookup(&old as *const v1::Static as usize)).unwrap();

    assert_eq!(
        tasks(),
        vec![
            format!(
                "id=1 name=idle priority=0 stack={:#x} scheduled=3",
                stacks[0]
            ),
            format!(
                "id=3 name=net priority=4 stack={:#x} scheduled=2",
                stacks[1]
            ),
            format!(
                "id=4 name=disk priority=4 stack={:#x} scheduled=2",
                stacks[2]
            ),
            format!(
                "id=5 name=shell priority=7 stack={:#x} scheduled=1",
                stacks[3]
            ),
        ]
    );
    assert_eq!(task_count(), 4);
    assert_eq!(current(), Some(3));
    // By priority; within priority 4, v1's turn order (4 before 3).
    assert_eq!(run_queue(), vec![5, 4, 3, 1]);
    assert_eq!(SCHED.lock().picks, 8);
    // The old state is untouched and its lock released.
    let guard = old.try_lock().expect("the old lock is released");
    assert_eq!(describe_v1(&guard), before);
    drop(guard);

    // The scheduler runs on: the shell first, then net and disk take turns.
    assert_eq!(schedule(), Some(5));
    exit(5).unwrap();
    assert!(!frame_alloc::allocated_frames().contains(&stacks[3]));
    assert_eq!(schedule(), Some(4));
    assert_eq!(schedule(), Some(3));
    // Ids keep counting from v1's next id.
    let id = spawn("fresh", 4).unwrap();
    assert_eq!(id, 6);
    assert_eq!(run_queue(), vec![4, 3, 6, 1]);
    for task in [id, 4, 3, 1] {
        exit(task).unwrap();
    }
    assert_eq!(task_count(), 0);
}

#[test]
fn transfer_state_refuses_bad_old_state_and_keeps_its_own() {
    let _g = global();
    *SCHED.lock() = Scheduler::new();
    let mine = SCHED.lock().add("mine", 1, 0x5000);

    let err = transfer_state(&|_: &str| None).unwrap_err();
    assert!(err.contains("no sched::SCHED"), "{err}");

    let stacks = [0x10_0000, 0x10_1000, 0x10_2000, 0x10_3000];
    let good: v1::Static = spin::Mutex::new(v1_state(stacks));
    let addr = &good as *const v1::Static as usize;
    let err = transfer_state(&lookup(addr + 1)).unwrap_err();
    assert!(err.contains("not aligned"), "{err}");

    let broken = |edit: fn(&mut v1::Scheduler), expected: &str| {
        let mut state = v1_state(stacks);
        edit(&mut state);
        let old: v1::Static = spin::Mutex::new(state);
        let err = transfer_state(&lookup(&old as *const v1::Static as usize)).unwrap_err();
        assert!(
            err.contains("inconsistent") && err.contains(expected),
            "{expected}: {err}"
        );
    };
    broken(|s| s.run_queue.push_back(9), "unknown task 9");
    broken(|s| s.run_queue.push_back(4), "queued twice");
    broken(
        |s| s.run_queue.retain(|&t| t != 1),
        "task 1 is not in the run queue",
    );
    broken(|s| s.next_id = 5, "not below the next id 5");
    broken(|s| s.current = Some(2), "current task 2");

    let held = good.lock();
    let err = transfer_state(&lookup(addr)).unwrap_err();
    assert!(err.contains("stays locked"), "{err}");
    drop(held);

    assert_eq!(run_queue(), vec![mine], "failed transfers change nothing");
    transfer_state(&lookup(addr)).unwrap();
    assert_eq!(task_count(), 4);
    *SCHED.lock() = Scheduler::new();
}

#[test]
fn spawn_and_exit_use_frames() {
    let _g = global();
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
fn init_and_global_priorities() {
    let _g = global();
    assert!(revision().starts_with("sched v2:"));
    init().unwrap();
    init().unwrap();
    assert_eq!(
        tasks().iter().filter(|l| l.contains("name=idle ")).count(),
        1
    );
    let a = spawn("a", 200).unwrap();
    let b = spawn("b", 200).unwrap();
    assert_eq!(&run_queue()[..2], &[a, b]);
    let switches = context_switches();
    let picks: Vec<u64> = (0..4).map(|_| schedule().unwrap()).collect();
    assert_eq!(picks, vec![a, b, a, b]);
    assert_eq!(current(), Some(b));
    assert!(context_switches() >= switches + 3);
    set_priority(b, 0).unwrap();
    assert_eq!(schedule(), Some(a));
    assert_eq!(schedule(), Some(a), "a alone at the top");
    assert!(set_priority(12345, 1).is_err());
    let n = task_count();
    exit(a).unwrap();
    exit(b).unwrap();
    assert_eq!(task_count(), n - 2);
}
