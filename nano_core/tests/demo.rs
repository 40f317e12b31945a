//! The demo binary, as `cargo cell demo` runs it: boots, prints what it loaded and what the
//! workload did, and exits 0.

mod common;

use std::process::Command;

#[test]
fn nano_core_boots_runs_the_workload_and_reports() {
    let out = Command::new(env!("CARGO_BIN_EXE_nano_core"))
        .arg("--cells")
        .arg(common::cells_dir())
        .env_remove("RUST_BACKTRACE")
        .output()
        .expect("nano_core runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "exit {:?}\n{stdout}\n{stderr}",
        out.status
    );
    let booted = common::manifest()
        .cells
        .iter()
        .filter(|c| {
            matches!(
                c.kind,
                crate_metadata::CellKind::Kernel | crate_metadata::CellKind::Libs
            )
        })
        .count();
    let header = format!("== nano_core booted {booted} cells");
    let kernel = format!("_kernel: {booted} cells");
    for expected in [
        header.as_str(),
        "== cells loaded",
        "== namespaces",
        kernel.as_str(),
        "== workload across the cells",
        "double free refused",
        "round robin",
        "/home/notes.txt read back: 5800 bytes",
        "caught by the host after unwinding through cell frames",
        "per-thread counters (thread_local! in a std cell): [10, 20, 30]",
    ] {
        assert!(
            stdout.contains(expected),
            "missing `{expected}` in:\n{stdout}"
        );
    }
    for cell in ["klog", "frame_alloc", "sched", "memfs", "tls_stats"] {
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with(cell) && l.contains("0.1.0")),
            "{cell} row missing:\n{stdout}"
        );
    }
    assert!(
        !stderr.contains("panicked"),
        "an expected panic was printed as a crash:\n{stderr}"
    );
}

#[test]
fn nano_core_says_what_to_do_without_cells() {
    let out = Command::new(env!("CARGO_BIN_EXE_nano_core"))
        .args(["--cells", "/nonexistent/cells"])
        .output()
        .expect("nano_core runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cargo cell build"), "{stderr}");
}
