//! `build_cells` on a scratch workspace: an application is compiled with `unsafe` forbidden and
//! the manifest records it, with the library's application interface and the application's
//! grants; an application whose own code uses `unsafe` fails the build, named, even when it asks
//! to allow it. New versions of applications (`cells/upgrades/<app>`) and applications rebuilt
//! against a dependency upgrade (`upgrades/<cell>/<app>.o`) are compiled the same way and carry
//! the same claim.

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

#[test]
fn a_new_version_of_an_application_is_built_with_unsafe_forbidden_and_says_so() {
    let tmp = TempDir::new("safe-app-upgrade");
    let root = tmp.path().join("ws");
    scratch_workspace(&root);
    write(
        &root,
        "Cargo.toml",
        "[workspace]\nresolver = \"2\"\nmembers = [\"cells/libs/*\", \"cells/apps/*\"]\n\
         exclude = [\"cells/upgrades\"]\n\n[profile.dev]\nopt-level = 3\ncodegen-units = 1\n\
         panic = \"unwind\"\nincremental = false\ndebug = false\n",
    );
    // v2 of `good`: the same interface, a new body.
    let toml = std::fs::read_to_string(root.join("cells/apps/good/Cargo.toml")).unwrap();
    write(&root, "cells/upgrades/good/Cargo.toml", &toml);
    write(
        &root,
        "cells/upgrades/good/src/lib.rs",
        "#[inline(never)]\npub fn main(args: &[String]) -> i32 { util::triple(args.len() as u32 + 1) as i32 }\n",
    );
    let options = BuildOptions {
        workspace_root: Some(root.clone()),
        target_dir: Some(tmp.path().join("target")),
        quiet: true,
    };
    let report = build_cells(&options).expect("the new version builds");
    let v2 = report.manifest.get(CellKind::Upgrades, "good").unwrap();
    assert!(v2.unsafe_forbidden, "the new version carries the claim");
    let live = report.manifest.get(CellKind::Apps, "good").unwrap();
    assert_eq!(
        v2.exports, live.exports,
        "built as the live one is, it keeps its symbol names"
    );

    // A new version that uses `unsafe`: the build refuses it.
    write(
        &root,
        "cells/upgrades/good/src/lib.rs",
        "#[inline(never)]\npub fn main(args: &[String]) -> i32 {\n    \
         let p = args.as_ptr() as *const u8;\n    unsafe { p.read_volatile() as i32 }\n}\n",
    );
    let err = build_cells(&options).expect_err("an unsafe new version is refused");
    let refused = err
        .downcast_ref::<UnsafeApplication>()
        .unwrap_or_else(|| panic!("{err:#}"));
    assert_eq!(refused.cell, "good");
}

#[test]
fn an_application_rebuilt_against_a_dependency_upgrade_is_built_with_unsafe_forbidden() {
    let tmp = TempDir::new("safe-app-rebuilt");
    let root = tmp.path().join("ws");
    write(
        &root,
        "Cargo.toml",
        "[workspace]\nresolver = \"2\"\nmembers = [\"cells/kernel/*\", \"cells/apps/*\"]\n\
         exclude = [\"cells/upgrades\"]\n\n[profile.dev]\nopt-level = 3\ncodegen-units = 1\n\
         panic = \"unwind\"\nincremental = false\ndebug = false\n",
    );
    // The releases of `heapless` the project's own cells use, from cargo's local cache.
    write(&root, ".cargo/config.toml", "[net]\noffline = true\n");
    let store = "#![no_std]\n#[inline(never)]\n\
                 pub fn capacity() -> usize { heapless::Vec::<u8, 4>::new().capacity() }\n";
    write(
        &root,
        "cells/kernel/store/Cargo.toml",
        &package("store", "heapless = \"=0.9.3\"\n", ""),
    );
    write(&root, "cells/kernel/store/src/lib.rs", store);
    write(
        &root,
        "cells/apps/user/Cargo.toml",
        &package("user", "store = { path = \"../../kernel/store\" }\n", ""),
    );
    write(
        &root,
        "cells/apps/user/src/lib.rs",
        "#[inline(never)]\npub fn main(args: &[String]) -> i32 { (store::capacity() + args.len()) as i32 }\n",
    );
    // v2 of `store`: the next release of `heapless`, which moves `user`'s hashes too.
    write(
        &root,
        "cells/upgrades/store/Cargo.toml",
        &package("store", "heapless = \"=0.9.4\"\n", ""),
    );
    write(&root, "cells/upgrades/store/src/lib.rs", store);
    let report = build_cells(&BuildOptions {
        workspace_root: Some(root.clone()),
        target_dir: Some(tmp.path().join("target")),
        quiet: true,
    })
    .unwrap_or_else(|e| panic!("{e:#}"));
    let rebuilt = report
        .manifest
        .cells
        .iter()
        .find(|e| e.kind == CellKind::Upgrades && e.name == "user")
        .unwrap_or_else(|| panic!("user was not rebuilt: {:?}", report.manifest.cells));
    assert_eq!(rebuilt.rebuilt_for.as_deref(), Some("store"));
    assert_eq!(rebuilt.object, "upgrades/store/user.o");
    assert!(
        rebuilt.unsafe_forbidden,
        "the rebuilt application carries the claim"
    );
    let store = report.manifest.get(CellKind::Upgrades, "store").unwrap();
    assert!(!store.unsafe_forbidden, "only applications carry the claim");
    assert!(store
        .dependency_upgrade
        .as_ref()
        .is_some_and(|u| u.rebuilt == ["user"]));
}
