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
    // The kernel and library cells, and the dependency cells they need that the nano_core
    // executable does not link (the build measured that on this very executable).
    let manifest = common::manifest();
    let roots: Vec<&crate_metadata::ManifestEntry> = manifest
        .cells
        .iter()
        .filter(|c| {
            matches!(
                c.kind,
                crate_metadata::CellKind::Kernel | crate_metadata::CellKind::Libs
            )
        })
        .collect();
    let mut deps = std::collections::BTreeSet::new();
    for root in &roots {
        for dep in manifest.dependency_closure(root).unwrap() {
            let linked = dep.crate_info.as_ref().is_some_and(|i| i.in_base_image);
            if !linked && !dep.exports.is_empty() {
                deps.insert(dep.key().to_owned());
            }
        }
    }
    let booted = roots.len() + deps.len();
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
        // Issue 3: swaps under load, state kept, phases timed.
        "== live swap while 3 threads keep calling",
        "static memfs::FS                Rebound",
        "(reused, nothing loaded)",
        "static frame_alloc::ALLOCATOR   Transferred",
        // Issue 13: the gate held the callers while the state moved, both ways.
        "frame_alloc → v1 (the buddy state moved back into the bitmap)",
        "callers waited",
        "refused, nothing changed",
        "stayed inside the old version",
        "`holder` at counter::hold+",
        " 0 failed",
        "(kept)",
        "every frame still allocated",
        "bumps: exact)",
        "phases: stage",
        // Issue 4: two applications, two versions of one library, one panic contained.
        "hello: Exited(0), said [\"Hello, Ada!\", \"Hello, Alan!\"]",
        "hola: Exited(0), said [\"¡Hola, Grace! (greet v2)\"]",
        "_kernel's greet is still \"greet v1\"",
        "crasher panicked, caught at its entry point",
        "1 namespace(s) left (_kernel)",
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

#[test]
fn the_prompt_runs_and_ends_applications_and_shows_the_namespace_tree() {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_nano_core"))
        .arg("--cells")
        .arg(common::cells_dir())
        .arg("--prompt")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("nano_core runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"run hola Ada\nns\napps\nend 1\nns\nend 1\nquit\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let after_boot = stdout.split("nano_core> ").skip(1).collect::<Vec<_>>();
    assert_eq!(after_boot.len(), 7, "{stdout}");
    assert!(
        after_boot[0].contains("started #1 hola in namespace app:hola#1"),
        "{}",
        after_boot[0]
    );
    assert!(
        after_boot[1].contains("app:hola#1") && after_boot[1].contains("greet"),
        "{}",
        after_boot[1]
    );
    assert!(
        after_boot[2].contains("#1 hola in app:hola#1"),
        "{}",
        after_boot[2]
    );
    assert!(
        after_boot[3].contains("#1 ended (Exited(0)); its namespace and 2 cell(s) are gone"),
        "{}",
        after_boot[3]
    );
    assert!(
        !after_boot[4].contains("app:hola"),
        "the namespace is gone: {}",
        after_boot[4]
    );
    assert!(after_boot[5].starts_with("error:"), "{}", after_boot[5]);
}
