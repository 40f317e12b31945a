//! A cell's thread-locals across a swap: carried over on every thread when the layout is the same,
//! the new version's initial values for threads that start later, fresh when asked for.

mod common;

use std::sync::{Arc, Barrier};

use cell_abi::tls_stats;
use crate_metadata::CellKind;
use loader::{Handle, SwapOptions, TlsOutcome};
use nano_core::Kernel;

/// What a thread that lived through the swap sees: (total, notes, generation, revision).
type Seen = (u64, Vec<String>, u64, String);
/// What a thread started after the swap sees: (total, notes, generation).
type Newcomer = (u64, Vec<String>, u64);

#[derive(Clone)]
struct Calls {
    record: Handle<tls_stats::Record>,
    total: Handle<tls_stats::ThreadTotal>,
    note: Handle<tls_stats::Note>,
    notes: Handle<tls_stats::Notes>,
    generation: Handle<tls_stats::Generation>,
    advance: Handle<tls_stats::Advance>,
    revision: Handle<cell_abi::Revision>,
}

fn calls(kernel: &mut Kernel) -> Calls {
    Calls {
        record: kernel.bind(tls_stats::RECORD).unwrap(),
        total: kernel.bind(tls_stats::THREAD_TOTAL).unwrap(),
        note: kernel.bind(tls_stats::NOTE).unwrap(),
        notes: kernel.bind(tls_stats::NOTES).unwrap(),
        generation: kernel.bind(tls_stats::GENERATION).unwrap(),
        advance: kernel.bind(tls_stats::ADVANCE).unwrap(),
        revision: kernel.bind(cell_abi::REVISION.of("tls_stats")).unwrap(),
    }
}

fn object(kind: CellKind) -> std::path::PathBuf {
    let manifest = common::manifest();
    common::cells_dir().join(&manifest.get(kind, "tls_stats").unwrap().object)
}

/// Three threads set up their thread-locals, the main thread swaps `tls_stats` with `options`
/// while they wait, and each reports what it sees afterwards: (total, notes, generation,
/// revision), and what a thread started after the swap sees.
fn swap_while_threads_hold_values(
    kernel: &mut Kernel,
    to: CellKind,
    options: &SwapOptions,
) -> (loader::SwapReport, Vec<Seen>, Newcomer) {
    let c = calls(kernel);
    let before = Arc::new(Barrier::new(4));
    let after = Arc::new(Barrier::new(4));
    let threads: Vec<_> = (1..=3u64)
        .map(|k| {
            let (c, before, after) = (c.clone(), before.clone(), after.clone());
            std::thread::spawn(move || {
                for _ in 0..5 {
                    (c.record.get())(k);
                }
                (c.note.get())(&format!("thread {k}"));
                // Each thread moves its generation on by its number: 1 + k under v1.
                for _ in 0..k {
                    (c.advance.get())();
                }
                before.wait(); // the swap happens now
                after.wait();
                (
                    (c.total.get())(),
                    (c.notes.get())(),
                    (c.generation.get())(),
                    (c.revision.get())(),
                )
            })
        })
        .collect();
    before.wait();
    let report = kernel
        .swap_cell("tls_stats", &object(to), options)
        .unwrap_or_else(|e| panic!("{e:#}"));
    after.wait();
    let seen: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let c2 = c.clone();
    let newcomer = std::thread::spawn(move || {
        (
            (c2.total.get())(),
            (c2.notes.get())(),
            (c2.generation.get())(),
        )
    })
    .join()
    .unwrap();
    (report, seen, newcomer)
}

#[test]
fn thread_locals_are_carried_over_and_new_threads_get_the_new_initial_values() {
    let mut kernel = Kernel::boot(common::cells_dir()).expect("boot");
    let (report, seen, newcomer) =
        swap_while_threads_hold_values(&mut kernel, CellKind::Upgrades, &SwapOptions::default());
    assert_eq!(
        report.thread_locals,
        [("tls_stats".to_owned(), TlsOutcome::Carried)]
    );
    assert!(
        report.gate.is_none(),
        "carrying thread-locals needs no gate"
    );
    for (k, (total, notes, generation, revision)) in (1..=3u64).zip(seen) {
        assert_eq!(revision, "tls_stats v2", "thread {k} runs the new version");
        assert_eq!(total, 5 * k, "thread {k} kept its counter");
        assert_eq!(notes, [format!("thread {k}")], "thread {k} kept its notes");
        assert_eq!(generation, 1 + k, "thread {k} kept its generation");
    }
    assert_eq!(
        newcomer,
        (0, Vec::new(), 2),
        "a new thread: v2's initial values"
    );

    // And back: the retired v1 is reused and takes the module over again.
    let (report, seen, newcomer) =
        swap_while_threads_hold_values(&mut kernel, CellKind::Libs, &SwapOptions::default());
    assert_eq!(
        report.thread_locals,
        [("tls_stats".to_owned(), TlsOutcome::Carried)]
    );
    for (k, (total, notes, generation, revision)) in (1..=3u64).zip(seen) {
        assert_eq!(revision, "tls_stats v1");
        assert_eq!(total, 5 * k);
        assert_eq!(notes, [format!("thread {k}")]);
        // These threads are new to this round: they started under v2, whose initial value is 2.
        assert_eq!(generation, 2 + k);
    }
    assert_eq!(newcomer.2, 1, "v1's initial value again");
}

#[test]
fn fresh_thread_locals_start_every_thread_over_when_asked() {
    let mut kernel = Kernel::boot(common::cells_dir()).expect("boot");
    let options = SwapOptions {
        fresh_thread_locals: true,
        ..SwapOptions::default()
    };
    let (report, seen, _) =
        swap_while_threads_hold_values(&mut kernel, CellKind::Upgrades, &options);
    assert_eq!(
        report.thread_locals,
        [("tls_stats".to_owned(), TlsOutcome::Fresh)]
    );
    for (total, notes, generation, revision) in seen {
        assert_eq!(revision, "tls_stats v2");
        assert_eq!((total, notes.len(), generation), (0, 0, 2), "fresh values");
    }
    // Back with fresh thread-locals: the retired v1 gave its module away, so it gets a new one.
    let (report, seen, newcomer) =
        swap_while_threads_hold_values(&mut kernel, CellKind::Libs, &options);
    assert_eq!(
        report.thread_locals,
        [("tls_stats".to_owned(), TlsOutcome::Fresh)]
    );
    for (total, notes, generation, revision) in seen {
        assert_eq!(revision, "tls_stats v1");
        assert_eq!((total, notes.len(), generation), (0, 0, 1));
    }
    assert_eq!(newcomer, (0, Vec::new(), 1));
}
