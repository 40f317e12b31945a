//! `build_cells` and `cargo cell build` on a scratch workspace: objects and manifest are written,
//! a second run rewrites nothing, and a cell with a compile error fails the build by name.

mod common;

use std::path::Path;
use std::process::Command;

use build_tools::objects::sha256;
use build_tools::{build_cells, BuildFailed, BuildOptions};
use common::{write, TempDir};
use crate_metadata::{CellKind, Manifest};

/// A workspace with the cell profile, a base image, a library cell and a kernel cell using it.
fn scratch_workspace(root: &Path) {
    write(
        root,
        "Cargo.toml",
        r#"[workspace]
resolver = "2"
members = ["nano_core", "cells/kernel/*", "cells/libs/*"]

[profile.dev]
opt-level = 3
codegen-units = 1
lto = false
panic = "unwind"
incremental = false
debug = false
debug-assertions = false
overflow-checks = false
"#,
    );
    let package = |name: &str, deps: &str| {
        format!("[package]\nname = \"{name}\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[dependencies]\n{deps}")
    };
    write(root, "nano_core/Cargo.toml", &package("nano_core", ""));
    write(root, "nano_core/src/main.rs", "fn main() {}\n");
    write(root, "cells/libs/util/Cargo.toml", &package("util", ""));
    write(
        root,
        "cells/libs/util/src/lib.rs",
        "#![no_std]\n#[inline(never)]\npub fn triple(x: u32) -> u32 { x.wrapping_mul(3) }\n",
    );
    write(
        root,
        "cells/kernel/good/Cargo.toml",
        &package("good", "util = { path = \"../../libs/util\" }\n"),
    );
    write(
        root,
        "cells/kernel/good/src/lib.rs",
        "#![no_std]\npub static COUNTER: core::sync::atomic::AtomicU32 = \
         core::sync::atomic::AtomicU32::new(0);\n\
         #[inline(never)]\npub fn good(x: u32) -> u32 { util::triple(x) + 1 }\n",
    );
}

#[test]
fn builds_cells_then_rewrites_nothing_then_names_a_broken_cell() {
    let tmp = TempDir::new("build");
    let root = tmp.path().join("ws");
    scratch_workspace(&root);
    let options = BuildOptions {
        workspace_root: Some(root.clone()),
        target_dir: Some(tmp.path().join("target")),
        quiet: true,
    };

    // First build: everything is written.
    let report = build_cells(&options).expect("first build");
    assert_eq!(report.cells_dir, tmp.path().join("target/cells"));
    assert_eq!(report.manifest_path, report.cells_dir.join("manifest.json"));
    assert!(report.manifest_rewritten);
    assert_eq!(
        report.rewritten,
        [
            (CellKind::Kernel, "good".to_owned()),
            (CellKind::Libs, "util".to_owned())
        ]
    );
    let nano_core = report.nano_core.clone().expect("nano_core executable");
    assert!(
        nano_core.is_file() && nano_core.ends_with("nano_core"),
        "{nano_core:?}"
    );

    let json = std::fs::read_to_string(&report.manifest_path).unwrap();
    let manifest: Manifest = serde_json::from_str(&json).unwrap();
    assert_eq!(manifest, report.manifest);
    assert!(manifest.rustc.starts_with("rustc "), "{}", manifest.rustc);
    let names: Vec<_> = manifest
        .cells
        .iter()
        .map(|c| (c.kind, c.name.as_str()))
        .collect();
    assert_eq!(
        names,
        [(CellKind::Kernel, "good"), (CellKind::Libs, "util")]
    );
    let good = manifest.get(CellKind::Kernel, "good").unwrap();
    assert_eq!(good.object, "kernel/good.o");
    assert_eq!(good.version, "0.1.0");
    assert_eq!(good.depends_on, ["util"]);
    let object = std::fs::read(report.object_path(good)).unwrap();
    assert_eq!(good.size, object.len() as u64);
    assert_eq!(good.sha256, sha256(&object));
    assert_eq!(
        good.sha256.to_string().len(),
        64,
        "written as 64 hex digits"
    );
    assert!(
        good.exports
            .iter()
            .any(|e| e.starts_with("_ZN4good4good17h")),
        "{:?}",
        good.exports
    );
    assert!(
        good.exports
            .iter()
            .any(|e| e.starts_with("_ZN4good7COUNTER17h")),
        "{:?}",
        good.exports
    );
    assert!(
        !good.exports.iter().any(|e| e.contains("triple")),
        "{:?}",
        good.exports
    );
    assert!(manifest
        .get(CellKind::Libs, "util")
        .unwrap()
        .depends_on
        .is_empty());

    // Second build: nothing changed, nothing rewritten (and the files keep their mtimes).
    let mtime = |p: &Path| std::fs::metadata(p).unwrap().modified().unwrap();
    let before = (
        mtime(&report.manifest_path),
        mtime(&report.object_path(good)),
    );
    let again = build_cells(&options).expect("second build");
    assert!(again.nothing_rewritten(), "{:?}", again.rewritten);
    assert_eq!(again.manifest, report.manifest);
    assert!(
        again
            .summary()
            .contains("2 cells up to date, nothing rewritten"),
        "{}",
        again.summary()
    );
    assert_eq!(
        before,
        (mtime(&again.manifest_path), mtime(&again.object_path(good)))
    );

    // A cell with a type error: the error carries the compiler's message and names the cell.
    write(
        &root,
        "cells/kernel/broken/Cargo.toml",
        "[package]\nname = \"broken\"\nversion = \"0.1.0\"\nedition = \"2021\"\n",
    );
    write(
        &root,
        "cells/kernel/broken/src/lib.rs",
        "pub fn f() -> u32 { \"not a number\" }\n",
    );
    let err = build_cells(&options).expect_err("broken cell must fail the build");
    let text = format!("{err:#}");
    assert!(text.contains("mismatched types"), "{text}");
    assert!(text.contains("`broken`"), "{text}");
    let failed = err
        .downcast_ref::<BuildFailed>()
        .expect("a BuildFailed error");
    assert_eq!(failed.crates, ["broken"]);

    // The command line fails too and says which cell, showing the compiler's error once: quiet,
    // in the error it prints; otherwise as forwarded while cargo ran.
    for quiet in [true, false] {
        let output = Command::new(env!("CARGO_BIN_EXE_cargo-cell"))
            .args(["build", "--workspace-root"])
            .arg(&root)
            .arg("--target-dir")
            .arg(tmp.path().join("target"))
            .args(quiet.then_some("--quiet"))
            .output()
            .expect("run cargo-cell");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{stderr}");
        assert_eq!(
            stderr.matches("mismatched types").count(),
            1,
            "quiet {quiet}: {stderr}"
        );
        assert!(
            stderr.contains("error: cargo build failed: `broken` did not compile"),
            "quiet {quiet}: {stderr}"
        );
    }
}

#[test]
fn cli_help_and_bad_arguments() {
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_cargo-cell"))
            .args(args)
            .output()
            .expect("run cargo-cell")
    };
    for args in [
        &["help"][..],
        &["--help"],
        &["cell", "help"],
        &["build", "--help"],
    ] {
        let out = run(args);
        assert!(out.status.success(), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("cargo cell"),
            "{args:?}"
        );
    }
    let out = run(&["frobnicate"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown command `frobnicate`"));
    let out = run(&["build", "--workspace-root"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--workspace-root needs a directory"));
}
