//! Four threads call through a cell while it is swapped back and forth a thousand times: no call
//! fails, each lands wholly in one version, and the counter kept in a rebound static is exact.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate_metadata::CellKind;
use loader::hosted::Hosted;
use loader::{CellSpec, NewVersion, StaticOutcome, SwapOptions, SwapRequest, System};

const THREADS: usize = 4;
const ROUND_TRIPS: usize = 1000;

#[test]
fn four_threads_call_through_a_thousand_round_trips() {
    let v1 = common::object(CellKind::Libs, "counter");
    let v2 = common::object(CellKind::Upgrades, "counter");
    let mut system = System::new(Hosted::new().unwrap(), "nano_core");
    let ns = system.create_namespace("_kernel", None).unwrap();
    let first = system.load(ns, CellSpec::named("counter"), &v1).unwrap();
    use cell_abi::counter;
    let bump = system.bind(ns, counter::BUMP).unwrap();
    let count = system.bind(ns, counter::COUNT).unwrap();
    let revision = system.bind(ns, cell_abi::REVISION.of("counter")).unwrap();
    let set_mode = system.bind(ns, counter::SET_MODE).unwrap();
    let mode = system.bind(ns, counter::MODE).unwrap();
    (set_mode.get())(42);

    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..THREADS)
        .map(|_| {
            let (bump, count, revision, stop) =
                (bump.clone(), count.clone(), revision.clone(), stop.clone());
            let me = system.epochs().register();
            std::thread::spawn(move || {
                let (mut calls, mut seen_v1, mut seen_v2) = (0u64, 0u64, 0u64);
                let mut last = 0;
                while !stop.load(Ordering::Relaxed) || calls < 1000 {
                    let after = (bump.get())();
                    assert!(
                        after > last,
                        "the counter went backwards: {after} after {last}"
                    );
                    last = after;
                    calls += 1;
                    let now = (count.get())();
                    assert!(now >= after);
                    if calls % 64 == 0 {
                        match (revision.get())().as_str() {
                            "counter v1" => seen_v1 += 1,
                            r if r.starts_with("counter v2") => seen_v2 += 1,
                            other => panic!("a call landed in neither version: {other}"),
                        }
                    }
                    me.quiescent();
                }
                (calls, seen_v1, seen_v2)
            })
        })
        .collect();

    let to_v1 = SwapOptions {
        fresh: vec!["counter::CONFIG".into()],
        ..Default::default()
    };
    let mut second = None;
    for trip in 0..ROUND_TRIPS {
        let old = system.cell_in(ns, "counter").unwrap();
        let new = match second {
            None => NewVersion::Object {
                spec: CellSpec::named("counter"),
                bytes: &v2,
            },
            Some(id) => NewVersion::Retired(id),
        };
        let report = system
            .swap(&[SwapRequest { old, new }], &SwapOptions::default())
            .unwrap();
        assert_eq!(report.cells[0].reused, trip > 0);
        let outcome = |path: &str| {
            report
                .statics
                .iter()
                .find(|s| s.path == path)
                .unwrap()
                .outcome
        };
        assert_eq!(outcome("counter::COUNTER"), StaticOutcome::Rebound);
        assert_eq!(outcome("counter::CONFIG"), StaticOutcome::Transferred);
        second = Some(report.cells[0].new);
        let back = system
            .swap(
                &[SwapRequest {
                    old: report.cells[0].new,
                    new: NewVersion::Retired(first),
                }],
                &to_v1,
            )
            .unwrap();
        assert_eq!(back.cells[0].new, first);
    }
    stop.store(true, Ordering::Relaxed);
    let mut total = 0;
    let (mut v1_calls, mut v2_calls) = (0, 0);
    for w in workers {
        let (calls, a, b) = w.join().expect("a worker's call failed");
        total += calls;
        v1_calls += a;
        v2_calls += b;
    }
    assert_eq!(
        (count.get())(),
        total,
        "every bump was counted exactly once"
    );
    assert_eq!(
        (mode.get())(),
        42,
        "v1's own config, untouched by the round trips"
    );
    assert!(v1_calls > 0, "calls landed in v1");
    eprintln!("{total} calls across {ROUND_TRIPS} round trips; revision probes: v1 {v1_calls}, v2 {v2_calls}");
    // Only two versions were ever mapped: every swap after the first reused a retired one.
    assert_eq!(system.retired().len(), 1);
}
