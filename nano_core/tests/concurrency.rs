//! Swaps, loads and application runs from several threads at once, while other threads call
//! through cells: everything finishes (no deadlock, bounded in time and iterations) and the graph
//! is consistent at the end.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate_metadata::{CellKind, CellState, Origin};
use loader::{CellSpec, SwapOptions};
use nano_core::apps::Outcome;
use nano_core::Kernel;

#[test]
fn swaps_loads_and_teardowns_from_several_threads_while_others_call() {
    nano_core::logger::install(log::LevelFilter::Off);
    let mut kernel = Kernel::boot(common::cells_dir()).unwrap_or_else(|e| panic!("{e:#}"));
    let read = kernel.bind(cell_abi::memfs::READ).unwrap();
    let bump = kernel.bind(cell_abi::counter::BUMP).unwrap();
    let motd = (read.get())("/etc/motd").unwrap();
    let epochs = kernel.system().epochs().clone();
    let kernel = Arc::new(Mutex::new(kernel));
    let stop = Arc::new(AtomicBool::new(false));
    let (calls, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));

    let mut callers = Vec::new();
    for _ in 0..2 {
        let (read, bump, motd, stop) = (read.clone(), bump.clone(), motd.clone(), stop.clone());
        let (calls, failed) = (calls.clone(), failed.clone());
        let me = epochs.register();
        callers.push(std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if (read.get())("/etc/motd").ok().as_ref() != Some(&motd) {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
                (bump.get())();
                calls.fetch_add(2, Ordering::Relaxed);
                me.quiescent();
            }
        }));
    }

    let v2 = common::object(CellKind::Upgrades, "memfs");
    let v1 = common::object(CellKind::Kernel, "memfs");
    let greet = common::object(CellKind::Libs, "greet");
    let (done_tx, done_rx) = mpsc::channel();
    let mut workers = Vec::new();
    {
        let (kernel, done) = (kernel.clone(), done_tx.clone());
        workers.push(std::thread::spawn(move || {
            for i in 0..200 {
                let bytes = if i % 2 == 0 { &v2 } else { &v1 };
                let mut k = kernel.lock().unwrap();
                k.swap_bytes("memfs", bytes, &SwapOptions::default())
                    .unwrap();
            }
            done.send("swapper").unwrap();
        }));
    }
    {
        let (kernel, done) = (kernel.clone(), done_tx.clone());
        workers.push(std::thread::spawn(move || {
            for i in 0..100 {
                let app = if i % 2 == 0 { "hello" } else { "hola" };
                let mut k = kernel.lock().unwrap();
                assert_eq!(
                    k.run_app(app, &["x".to_string()]).unwrap(),
                    Outcome::Exited(0)
                );
            }
            done.send("apps").unwrap();
        }));
    }
    {
        let (kernel, done) = (kernel.clone(), done_tx.clone());
        workers.push(std::thread::spawn(move || {
            for i in 0..100 {
                let mut k = kernel.lock().unwrap();
                let kernel_ns = k.kernel_namespace();
                let system = k.system_mut();
                let ns = system
                    .create_namespace(&format!("scratch#{i}"), Some(kernel_ns))
                    .unwrap();
                system.load(ns, CellSpec::named("greet"), &greet).unwrap();
                system.remove_namespace(ns).unwrap();
            }
            done.send("loader").unwrap();
        }));
    }
    drop(done_tx);
    for _ in 0..3 {
        let who = done_rx
            .recv_timeout(Duration::from_secs(120))
            .expect("a worker neither finished nor failed within two minutes: deadlock?");
        eprintln!("{who} finished");
    }
    for w in workers {
        w.join().expect("a worker failed");
    }
    stop.store(true, Ordering::Relaxed);
    for c in callers {
        c.join().expect("a caller failed");
    }
    assert!(calls.load(Ordering::Relaxed) > 0);
    assert_eq!(failed.load(Ordering::Relaxed), 0, "no call failed");

    // The graph is consistent.
    let k = kernel.lock().unwrap();
    let reg = k.system().registry();
    for (id, e) in reg.edges() {
        let (dep, prov) = (
            reg.cell(e.dependent).unwrap(),
            reg.cell(e.provider).unwrap(),
        );
        assert!(
            dep.uses.contains(&id) && prov.used_by.contains(&id),
            "edge {id} on both sides"
        );
        assert!(prov.symbol(e.symbol).is_some());
    }
    for c in reg.cells().filter(|c| c.origin == Origin::Object) {
        for e in &c.uses {
            assert!(reg.edge(*e).is_some(), "{} uses a removed edge", c.name);
        }
        if c.state == CellState::Live {
            let ns = c.namespace.expect("a live cell is in a namespace");
            assert!(
                k.namespaces().get(ns).unwrap().cells.contains(&c.id),
                "{} in its namespace",
                c.name
            );
        } else {
            assert!(
                reg.dependents(c.id).is_empty(),
                "nothing binds to retired {}",
                c.name
            );
        }
    }
    assert_eq!(
        k.namespaces().iter().count(),
        1,
        "every scratch and application namespace is gone"
    );
    for n in k.namespaces().iter() {
        for c in &n.cells {
            assert_eq!(reg.cell(*c).unwrap().state, CellState::Live);
        }
    }
    assert!(common::wx_mappings().is_empty());
}
