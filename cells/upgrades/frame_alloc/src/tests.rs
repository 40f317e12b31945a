use super::*;
use std::sync::{Mutex, MutexGuard};

/// The tests that use the global `ALLOCATOR` run one at a time.
static GLOBAL: Mutex<()> = Mutex::new(());

fn global() -> MutexGuard<'static, ()> {
    GLOBAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// A small deterministic pseudo-random generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Checks the buddy invariants: every free frame lies in exactly one free block, the counter
/// matches, and no two free buddies are left unmerged.
fn check_invariants(a: &FrameAllocator) {
    let mut covered = vec![0u32; TOTAL_FRAMES];
    for k in 0..=MAX_ORDER {
        for block in 0..TOTAL_FRAMES >> k {
            if !a.is_free_block(k, block) {
                continue;
            }
            for count in &mut covered[block << k..(block + 1) << k] {
                *count += 1;
            }
            if k < MAX_ORDER {
                assert!(
                    !a.is_free_block(k, block ^ 1),
                    "free buddies {block} and {} of order {k} are not merged",
                    block ^ 1
                );
            }
        }
    }
    assert!(covered.iter().all(|&c| c <= 1), "overlapping free blocks");
    let free = covered.iter().filter(|&&c| c == 1).count();
    assert_eq!(free, a.free, "free counter");
    // Bits beyond the last order are never set.
    let last = order_offset(MAX_ORDER) + 1;
    assert_eq!(a.free_blocks[last / 64] >> (last % 64), 0);
}

fn frame(index: usize) -> u64 {
    index_to_addr(index)
}

#[test]
fn a_fresh_allocator_is_one_block() {
    let a = FrameAllocator::new();
    check_invariants(&a);
    let mut expected = vec![0; MAX_ORDER + 1];
    expected[MAX_ORDER] = 1;
    assert_eq!(a.free_blocks(), expected);
    assert!(a.allocated().is_empty());
    assert_eq!(order_offset(0), 0);
    assert_eq!(order_offset(MAX_ORDER), BLOCK_BITS - 1);
}

#[test]
fn single_frames_come_lowest_first_and_merge_back() {
    let mut a = FrameAllocator::new();
    let frames: Vec<u64> = (0..5).map(|_| a.alloc().unwrap()).collect();
    assert_eq!(frames, (0..5).map(frame).collect::<Vec<_>>());
    assert_eq!(a.free, TOTAL_FRAMES - 5);
    assert_eq!(a.allocated(), frames);
    check_invariants(&a);
    for f in frames.iter().rev() {
        a.free(*f).unwrap();
        check_invariants(&a);
    }
    assert_eq!(a.free, TOTAL_FRAMES);
    assert_eq!(a.free_blocks()[MAX_ORDER], 1, "everything merged back");
}

#[test]
fn double_free_and_bad_address_are_errors() {
    let mut a = FrameAllocator::new();
    let f = a.alloc().unwrap();
    a.free(f).unwrap();
    assert!(a.free(f).unwrap_err().contains("double free"));
    assert!(a
        .free(PHYS_BASE - FRAME_SIZE)
        .unwrap_err()
        .contains("outside"));
    assert!(a.free(PHYS_BASE + 1).unwrap_err().contains("aligned"));
    let end = PHYS_BASE + TOTAL_FRAMES as u64 * FRAME_SIZE;
    assert!(a.free(end).is_err());
    assert_eq!(a.free, TOTAL_FRAMES);
    check_invariants(&a);
}

#[test]
fn exhaustion_and_reuse() {
    let mut a = FrameAllocator::new();
    let frames: Vec<u64> = (0..TOTAL_FRAMES).map(|_| a.alloc().unwrap()).collect();
    assert_eq!(a.alloc(), None);
    assert_eq!(a.alloc_contiguous(1), None);
    assert_eq!(a.free, 0);
    check_invariants(&a);
    a.free(frames[700]).unwrap();
    assert_eq!(a.alloc(), Some(frames[700]));
}

#[test]
fn contiguous_runs_use_blocks_and_give_back_the_rest() {
    let mut a = FrameAllocator::new();
    // 5 frames: an order-3 block, of which 3 frames go back.
    let run = a.alloc_contiguous(5).unwrap();
    assert_eq!(run, PHYS_BASE);
    assert_eq!(a.free, TOTAL_FRAMES - 5);
    assert_eq!(a.allocated(), (0..5).map(frame).collect::<Vec<_>>());
    check_invariants(&a);
    assert_eq!(a.alloc_contiguous(0), None);
    assert_eq!(a.alloc_contiguous(TOTAL_FRAMES), None);
    // The next single frame fills the hole right after the run.
    assert_eq!(a.alloc(), Some(frame(5)));
    check_invariants(&a);
}

#[test]
fn contiguous_runs_fall_back_to_first_fit_across_blocks() {
    let mut a = FrameAllocator::new();
    for _ in 0..TOTAL_FRAMES {
        a.alloc().unwrap();
    }
    // Frames 3, 4 and 5 free: no free block of order 2, but a run of 3 across two blocks.
    for i in [3, 4, 5, 9] {
        a.free(frame(i)).unwrap();
    }
    check_invariants(&a);
    assert_eq!(a.alloc_contiguous(4), None);
    assert_eq!(a.alloc_contiguous(3), Some(frame(3)));
    assert_eq!(a.free, 1);
    check_invariants(&a);
    assert_eq!(a.alloc_contiguous(2), None);
    assert_eq!(a.alloc_contiguous(1), Some(frame(9)));
}

/// Random operations against a plain model of the allocated set: the counters and sets agree,
/// and a run is found exactly when the model has one (v1's first fit would find it).
#[test]
fn random_operations_match_a_model() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut a = FrameAllocator::new();
    let mut used = vec![false; TOTAL_FRAMES];
    for step in 0..4000 {
        match rng.below(4) {
            0 | 1 => match a.alloc() {
                Some(addr) => {
                    let i = addr_to_index(addr).unwrap();
                    assert!(!used[i], "step {step}: frame {i} handed out twice");
                    used[i] = true;
                }
                None => assert!(used.iter().all(|&u| u)),
            },
            2 => {
                let n = 1 + rng.below(20);
                let model_has_run = used.windows(n).any(|w| w.iter().all(|&u| !u));
                match a.alloc_contiguous(n) {
                    Some(addr) => {
                        let first = addr_to_index(addr).unwrap();
                        for u in &mut used[first..first + n] {
                            assert!(!*u, "step {step}: run overlaps");
                            *u = true;
                        }
                    }
                    None => assert!(!model_has_run, "step {step}: missed a run of {n}"),
                }
            }
            _ => {
                let allocated: Vec<usize> = (0..TOTAL_FRAMES).filter(|&i| used[i]).collect();
                if let Some(&i) = allocated.get(rng.below(allocated.len().max(1))) {
                    a.free(frame(i)).unwrap();
                    used[i] = false;
                }
            }
        }
        if step % 97 == 0 {
            check_invariants(&a);
            let model: Vec<u64> = (0..TOTAL_FRAMES).filter(|&i| used[i]).map(frame).collect();
            assert_eq!(a.allocated(), model);
        }
    }
}

/// v1's state and its mirror here: the numbers are the ones v1's unit test pins.
#[test]
fn v1_mirror_layout_and_a_different_layout_here() {
    use core::mem::{align_of, offset_of, size_of};
    assert_eq!(size_of::<v1::FrameAllocator>(), 144);
    assert_eq!(align_of::<v1::FrameAllocator>(), 8);
    assert_eq!(offset_of!(v1::FrameAllocator, bitmap), 0);
    assert_eq!(offset_of!(v1::FrameAllocator, free), 128);
    assert_eq!(offset_of!(v1::FrameAllocator, hint), 136);
    assert_eq!(size_of::<v1::Static>(), 152);
    assert_ne!(
        size_of::<FrameAllocator>(),
        size_of::<v1::FrameAllocator>(),
        "v2 changes the layout, so the swap needs transfer_state"
    );
    assert_ne!(size_of_val(&ALLOCATOR), size_of::<v1::Static>());
}

/// A v1 state with the frames `used` allocated.
fn v1_state(used: &[usize], hint: usize) -> v1::FrameAllocator {
    let mut bitmap = [0; v1::WORDS];
    for &i in used {
        bitmap[i / 64] |= 1 << (i % 64);
    }
    v1::FrameAllocator {
        bitmap,
        free: TOTAL_FRAMES - used.len(),
        hint,
    }
}

/// An `old` lookup that knows one static.
fn lookup(addr: usize) -> impl Fn(&str) -> Option<usize> {
    move |path| (path == "frame_alloc::ALLOCATOR").then_some(addr)
}

#[test]
fn transfer_state_keeps_every_frame_and_leaves_v1_alone() {
    let _g = global();
    let mut rng = Rng(42);
    let mut used: Vec<usize> = (0..300).map(|_| rng.below(TOTAL_FRAMES)).collect();
    used.extend(40..70); // a run, as v1's alloc_contiguous leaves them
    used.sort_unstable();
    used.dedup();
    let old: v1::Static = spin::Mutex::new(v1_state(&used, 69));
    let before = {
        let guard = old.lock();
        (guard.bitmap, guard.free, guard.hint)
    };

    transfer_state(&lookup(&old as *const v1::Static as usize)).unwrap();

    let expected: Vec<u64> = used.iter().map(|&i| frame(i)).collect();
    assert_eq!(allocated_frames(), expected);
    assert_eq!(free_count(), TOTAL_FRAMES - used.len());
    assert_eq!(total_frames(), TOTAL_FRAMES);
    check_invariants(&ALLOCATOR.lock());
    // The old state is untouched and its lock released.
    let guard = old.try_lock().expect("the old lock is released");
    assert_eq!((guard.bitmap, guard.free, guard.hint), before);
    drop(guard);
    // Frames allocated under v1 can be freed under v2 (once); free ones cannot.
    free_frame(expected[0]).unwrap();
    assert!(free_frame(expected[0]).unwrap_err().contains("double free"));
    let never_used = (0..TOTAL_FRAMES).find(|i| !used.contains(i)).unwrap();
    assert!(free_frame(frame(never_used)).is_err());
    // A new allocation never hands out a frame that v1 had allocated.
    let fresh = alloc_frame().unwrap();
    assert!(!expected[1..].contains(&fresh));
    *ALLOCATOR.lock() = FrameAllocator::new();
}

#[test]
fn transfer_state_refuses_bad_old_state_and_keeps_its_own() {
    let _g = global();
    *ALLOCATOR.lock() = FrameAllocator::new();
    let mine = alloc_frame().unwrap();

    let err = transfer_state(&|_: &str| None).unwrap_err();
    assert!(err.contains("no frame_alloc::ALLOCATOR"), "{err}");

    let good: v1::Static = spin::Mutex::new(v1_state(&[1, 2, 3], 3));
    let addr = &good as *const v1::Static as usize;
    let err = transfer_state(&lookup(addr + 4)).unwrap_err();
    assert!(err.contains("not aligned"), "{err}");

    let mut lying = v1_state(&[1, 2, 3], 3);
    lying.free += 1;
    let lying: v1::Static = spin::Mutex::new(lying);
    let err = transfer_state(&lookup(&lying as *const v1::Static as usize)).unwrap_err();
    assert!(
        err.contains("inconsistent") && err.contains("says 1022"),
        "{err}"
    );

    let wild: v1::Static = spin::Mutex::new(v1_state(&[], TOTAL_FRAMES));
    let err = transfer_state(&lookup(&wild as *const v1::Static as usize)).unwrap_err();
    assert!(err.contains("hint"), "{err}");

    let held = good.lock();
    let err = transfer_state(&lookup(addr)).unwrap_err();
    assert!(err.contains("stays locked"), "{err}");
    drop(held);

    assert_eq!(
        allocated_frames(),
        vec![mine],
        "failed transfers change nothing"
    );
    transfer_state(&lookup(addr)).unwrap();
    assert_eq!(allocated_frames(), vec![frame(1), frame(2), frame(3)]);
    *ALLOCATOR.lock() = FrameAllocator::new();
}

#[test]
fn global_interface() {
    let _g = global();
    assert!(revision().starts_with("frame_alloc v2:"));
    init().unwrap();
    assert_eq!(total_frames(), TOTAL_FRAMES);
    let f = alloc_frame().unwrap();
    assert!(allocated_frames().contains(&f));
    let run = alloc_contiguous(3).unwrap();
    free_frame(f).unwrap();
    assert!(free_frame(f).is_err());
    for i in 0..3 {
        free_frame(run + i * FRAME_SIZE).unwrap();
    }
    assert!(!allocated_frames().contains(&f));
    assert_eq!(free_count(), TOTAL_FRAMES);
    assert_eq!(free_blocks()[MAX_ORDER], 1);
}
