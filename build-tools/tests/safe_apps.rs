//! `build_cells` on a scratch workspace: an application is compiled with `unsafe` forbidden and
//! the manifest records it, with the library's application interface and the application's
//! grants; an application whose own code uses `unsafe` fails the build, named, even when it asks
//! to allow it.

mod common;

use std::path::Path;

use build_tools::safe_apps::UnsafeApplication;
use build_tools::{build_cells, BuildOptions};
use common::{write, TempDir};
use crate_metadata::{AppInterface, CellKind};

fn package(name: &str, deps: &str, metadata: &str) -> String {
    format!(
        "[package]\nname = \"{name}\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n\
         [dependencies]\n{deps}\n{metadata}"
    )
}

/// A library cell with an application interface and one safe application using it.
fn scratch_workspace(root: &Path) {
    write(
        root,
        "Cargo.toml",
        "[workspace]\nresolver = \"2\"\nmembers = [\"cells/libs/*\", \"cells/apps/*\"]\n\n\
         [profile.dev]\nopt-level = 3\ncodegen-units = 1\npanic = \"unwind\"\nincremental = false\n\
         debug = false\n",
    );
    write(
        root,
        "cells/libs/util/Cargo.toml",
        &package(
            "util",
            "",
            "[package.metadata.cell]\napp_interface = [\"util::triple\"]\n",
        ),
    );
    write(
        root,
        "cells/libs/util/src/lib.rs",
        "#![no_std]\n#[inline(never)]\npub fn triple(x: u32) -> u32 { x.wrapping_mul(3) }\n",
    );
    write(
        root,
        "cells/apps/good/Cargo.toml",
        &package(
            "good",
            "util = { path = \"../../libs/util\" }\n",
            "[package.metadata.cell]\ngrants = [\"util\"]\n",
        ),
    );
    write(
        root,
        "cells/apps/good/src/lib.rs",
        "#[inline(never)]\npub fn main(args: &[String]) -> i32 { util::triple(args.len() as u32) as i32 }\n",
    );
}

#[test]
fn applications_are_built_with_unsafe_forbidden_and_one_using_unsafe_is_refused_by_name() {
    let tmp = TempDir::new("safe-apps");
    let root = tmp.path().join("ws");
    scratch_workspace(&root);
    let options = BuildOptions {
        workspace_root: Some(root.clone()),
        target_dir: Some(tmp.path().join("target")),
        quiet: true,
    };
    let report = build_cells(&options).expect("a safe application builds");
    let good = report.manifest.get(CellKind::Apps, "good").unwrap();
    assert!(good.unsafe_forbidden);
    assert_eq!(good.grants, ["util"]);
    let util = report.manifest.get(CellKind::Libs, "util").unwrap();
    assert!(!util.unsafe_forbidden, "only applications carry the claim");
    assert_eq!(
        util.app_interface,
        Some(AppInterface::new(["util::triple".to_string()]))
    );
    // The claim and the interface are part of what a signature covers.
    let statement = good.signed_statement(1);
    assert!(statement.contains("unsafe forbidden\n"), "{statement}");
    assert!(util
        .signed_statement(1)
        .contains("interface util::triple\n"));

    // An application with `unsafe` in its own code, allowed in the source: the build refuses it.
    write(
        &root,
        "cells/apps/poke/Cargo.toml",
        &package("poke", "", ""),
    );
    write(
        &root,
        "cells/apps/poke/src/lib.rs",
        "#![allow(unsafe_code)]\n#[inline(never)]\npub fn main(args: &[String]) -> i32 {\n    \
         let p = args.as_ptr() as *const u8;\n    unsafe { p.read_volatile() as i32 }\n}\n",
    );
    let err = build_cells(&options).expect_err("an application using unsafe is refused");
    let refused = err
        .downcast_ref::<UnsafeApplication>()
        .unwrap_or_else(|| panic!("{err:#}"));
    assert_eq!(refused.cell, "poke");
    assert!(
        refused.errors.iter().any(|e| e.contains("unsafe_code")),
        "{:?}",
        refused.errors
    );
}
