//! Applications on threads of their own: a thread that cannot be spawned leaves nothing loaded,
//! `apps` tells running from finished, and waiting for one has a deadline.

mod common;

use std::time::{Duration, Instant};

use nano_core::apps::{AppState, LaunchOptions, Outcome};
use nano_core::Kernel;

fn args(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

#[test]
fn a_run_whose_thread_cannot_be_spawned_leaves_nothing_loaded() {
    let mut kernel = Kernel::boot(common::cells_dir()).expect("boot");
    let namespaces = kernel.system().namespaces().snapshot();
    let cells = kernel.system().registry().cells().count();
    // A stack no machine can map: the thread's creation fails.
    let options = LaunchOptions {
        stack_size: Some(1 << 60),
    };
    let err = kernel
        .launch_app("hello", args(&["x"]), &options)
        .expect_err("the thread cannot be spawned");
    let text = format!("{err:#}");
    assert!(text.contains("spawning the thread"), "{text}");
    assert!(text.contains("its namespace is gone"), "{text}");
    assert!(kernel.apps().is_empty(), "{:?}", kernel.apps());
    assert!(namespaces == kernel.system().namespaces().snapshot());
    assert_eq!(cells, kernel.system().registry().cells().count());
    // And a normal launch still works.
    let id = kernel
        .launch_app("hello", args(&["Ada"]), &LaunchOptions::default())
        .unwrap();
    assert_eq!(kernel.wait_app(id).unwrap(), Outcome::Exited(0));
    kernel.end_app(id).unwrap();
}

#[test]
fn apps_tell_running_from_finished_and_waiting_has_a_deadline() {
    let mut kernel = Kernel::boot(common::cells_dir()).expect("boot");
    let started = kernel.start_app("hello").unwrap();
    let sleeper = kernel
        .launch_app("sleeper", args(&["hold"]), &LaunchOptions::default())
        .unwrap();
    let quick = kernel
        .launch_app("sleeper", args(&[]), &LaunchOptions::default())
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while kernel
        .apps()
        .iter()
        .any(|a| a.id == quick && a.state != AppState::Finished)
    {
        assert!(Instant::now() < deadline, "sleeper 0 never finished");
        std::thread::sleep(Duration::from_millis(5));
    }
    let state = |k: &Kernel, id| k.apps().into_iter().find(|a| a.id == id).unwrap().state;
    assert_eq!(state(&kernel, started), AppState::Started);
    assert_eq!(state(&kernel, sleeper), AppState::Running);
    assert_eq!(state(&kernel, quick), AppState::Finished);

    // Waiting with a deadline refuses (the application holds until released), and changes
    // nothing: it keeps running.
    let err = kernel
        .wait_app_within(sleeper, Duration::from_millis(50))
        .expect_err("still held");
    assert!(format!("{err:#}").contains("still running"), "{err:#}");
    assert_eq!(state(&kernel, sleeper), AppState::Running);
    // Released, it returns, and ends.
    let ns = kernel.app_namespace(sleeper).unwrap();
    let release = kernel.bind_in(ns, cell_abi::sleeper::RELEASE).unwrap();
    (release.get())();
    drop(release);
    assert_eq!(
        kernel
            .wait_app_within(sleeper, Duration::from_secs(20))
            .unwrap(),
        Outcome::Exited(0)
    );
    for id in [started, sleeper, quick] {
        kernel.end_app(id).unwrap();
    }
    assert!(kernel.apps().is_empty());
}
