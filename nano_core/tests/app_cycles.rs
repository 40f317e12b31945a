//! A thousand load / run / teardown cycles leave the process with the mappings it had, and a
//! hundred swap / reclaim cycles keep only what is live.
//! (A test binary of its own: no other test's threads come and go in /proc/self/maps.)

mod common;

use nano_core::apps::Outcome;
use nano_core::Kernel;

#[test]
fn a_thousand_application_runs_leave_no_mapping_behind() {
    nano_core::logger::install(log::LevelFilter::Off);
    let mut kernel = Kernel::boot(common::cells_dir()).unwrap_or_else(|e| panic!("{e:#}"));
    let args = vec!["x".to_string()];
    // One warm-up run: the allocator and libgcc's unwinder tables settle.
    assert_eq!(kernel.run_app("hola", &args).unwrap(), Outcome::Exited(0));
    // The released mappings the platform keeps for reuse are unmapped before each count.
    kernel.system().platform().trim();
    let maps = loader::hosted::count_mappings().unwrap();
    let ours = kernel.system().platform().live_mappings();
    for i in 0..1000 {
        let app = if i % 2 == 0 { "hello" } else { "hola" };
        assert_eq!(kernel.run_app(app, &args).unwrap(), Outcome::Exited(0));
    }
    assert_eq!(kernel.system().platform().live_mappings(), ours);
    // The apps' cells reuse what the runs before them released: the pool holds no more than
    // one run's worth of mappings, however many runs there were.
    let (pooled, _) = kernel.system().platform().pooled_mappings();
    assert!(pooled > 0 && pooled <= 2 * ours.0, "{pooled} kept");
    kernel.system().platform().trim();
    assert_eq!(
        loader::hosted::count_mappings().unwrap(),
        maps,
        "/proc/self/maps has as many mappings"
    );
    assert_eq!(kernel.namespaces().iter().count(), 1);
}
