//! Swap of a cell with 1, 10, 100 and 1,000 dependent slots: the whole swap and the commit alone
//! (`SwapReport.times.commit`, the window in which slots change).
//!
//! The cell is generated (`support::synth`): 1,000 functions `f_i`. The host holds one handle to
//! each of `f_0` .. `f_{N-1}`, so the cell has N dependent slots. The cell is swapped between two
//! mapped versions of the same object: the first swap loads the second version, every later one
//! reuses the retired version (`NewVersion::Retired`), so a sample is one swap without staging a
//! load. `stage` is timed separately (`staged`): each iteration swaps to a freshly loaded object.

mod support;

use std::time::{Duration, Instant};

use crate_metadata::CellKind;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use loader::hosted::Hosted;
use loader::{CellSpec, Handle, NewVersion, SwapOptions, SwapRequest, System};

const FUNCTIONS: usize = 1000;

fn bench(c: &mut Criterion) {
    let big = support::synth(FUNCTIONS);
    let sized: Vec<(usize, support::Synth)> = [1usize, 10, 100, 1000]
        .into_iter()
        .map(|n| (n, support::synth(n)))
        .collect();
    let mut group = c.benchmark_group("swap");
    group
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    // `cell=1000fns`: the 1,000-function cell with N handles; `cell=Nfns`: a cell of N functions
    // with a handle to each.
    let cases = [1usize, 10, 100, 1000]
        .into_iter()
        .map(|n| (n, "cell=1000fns", &big))
        .chain(sized.iter().map(|(n, s)| (*n, "cell=Nfns", s)));
    for (n, which, synth) in cases {
        let mut system = System::new(Hosted::new().expect("hosted"), "nano_core");
        let ns = system.create_namespace("bench", None).unwrap();
        let first = system
            .load(ns, CellSpec::named("bench_synth"), &synth.object)
            .unwrap();
        // SAFETY: `f_i` is `fn() -> u64` (support::synth).
        let handles: Vec<Handle<fn() -> u64>> = (0..n)
            .map(|i| unsafe { system.handle(ns, &format!("bench_synth::f_{i}")) }.unwrap())
            .collect();
        let opts = SwapOptions::default();
        let report = system
            .swap(
                &[SwapRequest {
                    old: first,
                    new: NewVersion::Object {
                        spec: CellSpec::named("bench_synth"),
                        bytes: &synth.object,
                    },
                }],
                &opts,
            )
            .unwrap();
        eprintln!(
            "{which}, {n} handles: first swap (staging a load) rewrote {} slots, phases (ns) {:?}",
            report.slots_rewritten, report.times
        );
        let mut live = report.cells[0].new;
        let mut retired = first;
        let mut toggle = |system: &mut System<Hosted>| {
            let r = system
                .swap(
                    &[SwapRequest {
                        old: live,
                        new: NewVersion::Retired(retired),
                    }],
                    &opts,
                )
                .unwrap();
            debug_assert_eq!(r.slots_rewritten, n);
            retired = live;
            live = r.cells[0].new;
            r
        };
        if std::env::var_os("BENCH_SWAP_GROWTH").is_some() {
            // How the cost of one swap evolves with the number of swaps done before it.
            for round in 0..5 {
                let mut total = 0u64;
                let mut commit = 0u64;
                for _ in 0..2000 {
                    let r = toggle(&mut system);
                    total += r.times.total;
                    commit += r.times.commit;
                }
                eprintln!(
                    "{which}, {n} handles: swaps {}..{}: mean total {} ns, commit {} ns",
                    round * 2000,
                    round * 2000 + 2000,
                    total / 2000,
                    commit / 2000
                );
            }
        }
        let r = toggle(&mut system);
        eprintln!(
            "{which}, {n} handles: swap to the retired version rewrote {} slots, phases (ns) {:?}",
            r.slots_rewritten, r.times
        );
        group.bench_with_input(BenchmarkId::new(format!("whole/{which}"), n), &n, |b, _| {
            b.iter(|| toggle(&mut system))
        });
        group.bench_with_input(
            BenchmarkId::new(format!("commit/{which}"), n),
            &n,
            |b, _| {
                b.iter_custom(|iters| {
                    let mut total = 0u64;
                    for _ in 0..iters {
                        total += toggle(&mut system).times.commit;
                    }
                    Duration::from_nanos(total)
                })
            },
        );
        for h in &handles {
            assert!((h.get())() < FUNCTIONS as u64);
        }
        drop(handles);
    }
    group.finish();

    // The whole swap of a real cell, staging included: each iteration loads the new version from
    // its object (no retired version is reused: the spec carries no SHA-256), verifies, rebinds
    // the statics to the live ones and commits; the version it retires is then reclaimed
    // (untimed) so that memory does not grow.
    let mut group = c.benchmark_group("swap_staged");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    for (deps, cell, handles) in [
        (&[][..], "counter", &["counter::bump", "counter::count"][..]),
        (
            &["klog", "frame_alloc"][..],
            "sched",
            &["sched::spawn", "sched::schedule"][..],
        ),
        (
            &["klog", "frame_alloc"][..],
            "memfs",
            &["memfs::create", "memfs::read"][..],
        ),
    ] {
        let kind = |name: &str| {
            if name == "counter" {
                CellKind::Libs
            } else {
                CellKind::Kernel
            }
        };
        let mut system = System::new(Hosted::new().expect("hosted"), "nano_core");
        let ns = system.create_namespace("_kernel", None).unwrap();
        for d in deps {
            let bytes = support::object(kind(d), d);
            system.load(ns, CellSpec::named(d), &bytes).unwrap();
        }
        let bytes = support::object(kind(cell), cell);
        system.load(ns, CellSpec::named(cell), &bytes).unwrap();
        // The handles' type is never called through: `fn()` stands for any signature.
        // SAFETY: the handles are only held (as dependent slots), never called.
        let _handles: Vec<Handle<fn()>> = handles
            .iter()
            .map(|h| unsafe { system.handle::<fn()>(ns, h) }.unwrap())
            .collect();
        let mut phases = loader::PhaseTimes::default();
        let mut swaps = 0u64;
        group.bench_function(format!("{cell} (new copy of its object)"), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let old = system.cell_in(ns, cell).unwrap();
                    let t = Instant::now();
                    let r = system
                        .swap(
                            &[SwapRequest {
                                old,
                                new: NewVersion::Object {
                                    spec: CellSpec::named(cell),
                                    bytes: &bytes,
                                },
                            }],
                            &SwapOptions::default(),
                        )
                        .unwrap();
                    total += t.elapsed();
                    phases.stage += r.times.stage;
                    phases.verify += r.times.verify;
                    phases.rebind += r.times.rebind;
                    phases.commit += r.times.commit;
                    phases.total += r.times.total;
                    swaps += 1;
                    // SAFETY: the cells' statics hold no pointers into their code or constants.
                    unsafe { system.reclaim_unchecked(old) }.expect("the old version is freed");
                }
                total
            })
        });
        let avg = |x: u64| x / swaps.max(1);
        eprintln!(
            "{cell}: mean phases over {swaps} staged swaps (ns): stage {} verify {} rebind {} \
             commit {} total {}",
            avg(phases.stage),
            avg(phases.verify),
            avg(phases.rebind),
            avg(phases.commit),
            avg(phases.total)
        );
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
