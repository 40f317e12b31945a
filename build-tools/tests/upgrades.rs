//! New versions of cells (`cells/upgrades/<crate>`) on a scratch workspace: they are built in
//! shadow workspaces with the identity of the cells they replace, against the live versions of the
//! cells they use, into `target/cells/upgrades/`; unchanged functions keep their mangled names and
//! a changed signature changes its hash; a second build rewrites nothing; identity changes, compile
//! errors and upgrades of unknown cells are errors that name the upgrade.

mod common;

use std::path::Path;
use std::process::Command;

use build_tools::{build_cells, BuildFailed, BuildOptions};
use common::{write, TempDir};
use crate_metadata::{CellKind, Manifest};
use goblin::elf::Elf;

const PROFILE: &str = r#"
[profile.dev]
opt-level = 3
codegen-units = 1
lto = false
panic = "unwind"
incremental = false
debug = false
debug-assertions = false
overflow-checks = false
"#;

fn package(name: &str, deps: &str) -> String {
    format!("[package]\nname = \"{name}\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[dependencies]\n{deps}")
}

const UTIL_V1: &str =
    "#![no_std]\n#[inline(never)]\npub fn triple(x: u32) -> u32 { x.wrapping_mul(3) }\n";
const GOOD_V1: &str = "#![no_std]\n\
    pub static COUNTER: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(0);\n\
    #[inline(never)]\npub fn good(x: u32) -> u32 { util::triple(x) + 1 }\n\
    #[inline(never)]\npub fn keep(x: u64) -> u64 { x.rotate_left(3) }\n\
    #[inline(never)]\npub fn widen(x: u32) -> u32 { x + 7 }\n";
const OTHER_V1: &str = "#![no_std]\n#[inline(never)]\npub fn other() -> u32 { 1 }\n";

/// A workspace with a base image, a library cell `util`, a kernel cell `good` that uses it, an
/// unrelated kernel cell `other`, and new versions of all three.
fn scratch_workspace(root: &Path) {
    write(
        root,
        "Cargo.toml",
        &format!(
            "[workspace]\nresolver = \"2\"\nmembers = [\"nano_core\", \"cells/kernel/*\", \
             \"cells/libs/*\"]\nexclude = [\"cells/upgrades\"]\n{PROFILE}"
        ),
    );
    write(root, "nano_core/Cargo.toml", &package("nano_core", ""));
    write(root, "nano_core/src/main.rs", "fn main() {}\n");
    write(root, "cells/libs/util/Cargo.toml", &package("util", ""));
    write(root, "cells/libs/util/src/lib.rs", UTIL_V1);
    let good_toml = package("good", "util = { path = \"../../libs/util\" }\n");
    write(root, "cells/kernel/good/Cargo.toml", &good_toml);
    write(root, "cells/kernel/good/src/lib.rs", GOOD_V1);
    write(root, "cells/kernel/other/Cargo.toml", &package("other", ""));
    write(root, "cells/kernel/other/src/lib.rs", OTHER_V1);

    // v2 of `util`: another signature for `triple`.
    write(root, "cells/upgrades/util/Cargo.toml", &package("util", ""));
    write(
        root,
        "cells/upgrades/util/src/lib.rs",
        "#![no_std]\n#[inline(never)]\npub fn triple(x: u64) -> u64 { x.wrapping_mul(3) }\n",
    );
    // v2 of `good`: a new body, a changed signature, a new function.
    write(root, "cells/upgrades/good/Cargo.toml", &good_toml);
    write(
        root,
        "cells/upgrades/good/src/lib.rs",
        "#![no_std]\n\
         pub static COUNTER: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(0);\n\
         #[inline(never)]\npub fn good(x: u32) -> u32 { util::triple(x) + 2 }\n\
         #[inline(never)]\npub fn keep(x: u64) -> u64 { x.rotate_left(5) }\n\
         #[inline(never)]\npub fn widen(x: u64) -> u64 { x + 7 }\n\
         #[inline(never)]\npub fn added() -> u32 { 42 }\n",
    );
    write(
        root,
        "cells/upgrades/other/Cargo.toml",
        &package("other", ""),
    );
    write(
        root,
        "cells/upgrades/other/src/lib.rs",
        "#![no_std]\n#[inline(never)]\npub fn other() -> u32 { 2 }\n",
    );
}

/// The export of `manifest`'s cell (`kind`, `cell`) whose mangled name starts with `prefix`.
fn export(manifest: &Manifest, kind: CellKind, cell: &str, prefix: &str) -> String {
    let entry = manifest.get(kind, cell).expect("cell in the manifest");
    let found: Vec<&String> = entry
        .exports
        .iter()
        .filter(|e| e.starts_with(prefix))
        .collect();
    assert_eq!(found.len(), 1, "{prefix} in {:?}", entry.exports);
    found[0].clone()
}

/// Names of the undefined symbols of a relocatable object.
fn undefined_symbols(object: &[u8]) -> Vec<String> {
    let elf = Elf::parse(object).expect("ELF");
    elf.syms
        .iter()
        .filter(|s| s.st_shndx == 0)
        .filter_map(|s| elf.strtab.get_at(s.st_name))
        .filter(|n| !n.is_empty())
        .map(str::to_owned)
        .collect()
}

#[test]
fn upgrades_keep_identity_build_against_live_cells_and_rebuild_nothing() {
    let tmp = TempDir::new("upgrades");
    let root = tmp.path().join("ws");
    scratch_workspace(&root);
    let target = tmp.path().join("target");
    let options = BuildOptions {
        workspace_root: Some(root.clone()),
        target_dir: Some(target.clone()),
        quiet: true,
    };

    let report = build_cells(&options).expect("first build");
    let upgrades = [
        (CellKind::Upgrades, "good".to_owned()),
        (CellKind::Upgrades, "other".to_owned()),
        (CellKind::Upgrades, "util".to_owned()),
    ];
    assert!(
        upgrades.iter().all(|u| report.rewritten.contains(u)),
        "{:?}",
        report.rewritten
    );
    let m = &report.manifest;
    let good = m
        .get(CellKind::Upgrades, "good")
        .expect("upgrade in manifest");
    assert_eq!(good.object, "upgrades/good.o");
    assert_eq!(good.version, "0.1.0");
    assert_eq!(good.depends_on, ["util"]);
    let on_disk: Manifest =
        serde_json::from_str(&std::fs::read_to_string(&report.manifest_path).unwrap()).unwrap();
    assert_eq!(&on_disk, m);
    for (_, name) in &upgrades {
        let entry = m.get(CellKind::Upgrades, name).unwrap();
        let object = std::fs::read(report.object_path(entry)).unwrap();
        assert_eq!(entry.size, object.len() as u64);
        let live = m
            .cells
            .iter()
            .find(|c| c.name == *name && c.kind != CellKind::Upgrades)
            .unwrap();
        assert_ne!(entry.sha256, live.sha256, "{name}: a new version");
    }
    let summary = report.summary();
    assert!(summary.contains("wrote upgrades/good.o"), "{summary}");
    assert!(summary.contains("other hash: 1 (good::widen)"), "{summary}");

    // Identity: unchanged functions (even with new bodies) and the static keep their exact names;
    // the changed signature gets another hash.
    for prefix in [
        "_ZN4good4good17h",
        "_ZN4good4keep17h",
        "_ZN4good7COUNTER17h",
    ] {
        assert_eq!(
            export(m, CellKind::Kernel, "good", prefix),
            export(m, CellKind::Upgrades, "good", prefix),
            "{prefix}"
        );
    }
    let widen = "_ZN4good5widen17h";
    assert_ne!(
        export(m, CellKind::Kernel, "good", widen),
        export(m, CellKind::Upgrades, "good", widen)
    );
    export(m, CellKind::Upgrades, "good", "_ZN4good5added17h");
    assert_eq!(
        export(m, CellKind::Kernel, "other", "_ZN5other5other17h"),
        export(m, CellKind::Upgrades, "other", "_ZN5other5other17h")
    );
    let triple = "_ZN4util6triple17h";
    assert_ne!(
        export(m, CellKind::Libs, "util", triple),
        export(m, CellKind::Upgrades, "util", triple)
    );
    let (_, cmp) = report.upgrades.iter().find(|(n, _)| n == "good").unwrap();
    assert_eq!(cmp.kept, ["good::COUNTER", "good::good", "good::keep"]);
    assert_eq!(cmp.changed, ["good::widen"]);
    assert_eq!(cmp.added, ["good::added"]);
    assert!(cmp.removed.is_empty());

    // `good` v2 is built against the live `util` (v1), not against util's upgrade: the two are
    // in separate shadows, while the unrelated `other` shares `good`'s.
    let good_object = std::fs::read(report.object_path(good)).unwrap();
    let undefined = undefined_symbols(&good_object);
    let live_triple = export(m, CellKind::Libs, "util", triple);
    assert!(undefined.contains(&live_triple), "{undefined:?}");
    let shadows = target.join("cell-upgrades/ws");
    let read = |p: &Path| std::fs::read_to_string(p).unwrap();
    assert_eq!(
        read(&shadows.join("good/cells/kernel/good/src/lib.rs")),
        read(&root.join("cells/upgrades/good/src/lib.rs"))
    );
    assert_eq!(
        read(&shadows.join("good/cells/kernel/other/src/lib.rs")),
        read(&root.join("cells/upgrades/other/src/lib.rs"))
    );
    assert_eq!(
        read(&shadows.join("good/cells/libs/util/src/lib.rs")),
        UTIL_V1
    );
    assert_eq!(
        read(&shadows.join("util/cells/libs/util/src/lib.rs")),
        read(&root.join("cells/upgrades/util/src/lib.rs"))
    );
    assert_eq!(
        read(&shadows.join("util/cells/kernel/good/src/lib.rs")),
        GOOD_V1
    );
    assert!(!shadows.join("good/cells/upgrades").exists());
    assert!(target.join("cell-upgrades/target/good").is_dir());
    assert!(target.join("cell-upgrades/target/util").is_dir());

    // Second build: nothing rewritten, not even the shadow copies.
    let mtime = |p: &Path| std::fs::metadata(p).unwrap().modified().unwrap();
    let shadow_file = shadows.join("good/cells/kernel/good/src/lib.rs");
    let before = (mtime(&shadow_file), mtime(&report.object_path(good)));
    let again = build_cells(&options).expect("second build");
    assert!(again.nothing_rewritten(), "{:?}", again.rewritten);
    assert!(
        again.summary().contains("6 cells up to date"),
        "{}",
        again.summary()
    );
    assert_eq!(
        before,
        (mtime(&shadow_file), mtime(&again.object_path(good)))
    );

    // A file removed from an upgrade leaves its shadow too; a changed upgrade is rewritten alone.
    write(&root, "cells/upgrades/other/src/extra.rs", "// scratch\n");
    build_cells(&options).expect("build with an extra file");
    assert!(shadows
        .join("good/cells/kernel/other/src/extra.rs")
        .is_file());
    std::fs::remove_file(root.join("cells/upgrades/other/src/extra.rs")).unwrap();
    write(
        &root,
        "cells/upgrades/other/src/lib.rs",
        "#![no_std]\n#[inline(never)]\npub fn other() -> u32 { 3 }\n",
    );
    let third = build_cells(&options).expect("third build");
    assert_eq!(third.rewritten, [(CellKind::Upgrades, "other".to_owned())]);
    assert!(!shadows
        .join("good/cells/kernel/other/src/extra.rs")
        .exists());

    // The command line runs cargo commands on the upgrades in their shadows.
    let output = Command::new(env!("CARGO_BIN_EXE_cargo-cell"))
        .args(["upgrades", "--workspace-root"])
        .arg(&root)
        .arg("--target-dir")
        .arg(&target)
        .args(["check", "--quiet"])
        .output()
        .expect("run cargo-cell");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("`cargo check -p good -p other --quiet`")
            && stderr.contains("cells/kernel/good is cells/upgrades/good"),
        "{stderr}"
    );

    // Another version number is another crate identity: refused, naming the upgrade.
    write(
        &root,
        "cells/upgrades/other/Cargo.toml",
        &package("other", "").replace("0.1.0", "0.2.0"),
    );
    let err = format!("{:#}", build_cells(&options).expect_err("identity changed"));
    assert!(
        err.contains("upgrades/other does not keep the crate identity of cells/kernel/other")
            && err.contains("`other::other` is `_ZN5other5other17h"),
        "{err}"
    );
    write(
        &root,
        "cells/upgrades/other/Cargo.toml",
        &package("other", ""),
    );

    // A compile error names the upgrade and points at its own source.
    write(
        &root,
        "cells/upgrades/other/src/lib.rs",
        "pub fn other() -> u32 { \"not a number\" }\n",
    );
    let err = build_cells(&options).expect_err("broken upgrade");
    let failed = err.downcast_ref::<BuildFailed>().expect("a BuildFailed");
    assert_eq!(failed.crates, ["upgrades/other"]);
    let text = format!("{err:#}");
    assert!(text.contains("`upgrades/other` did not compile"), "{text}");
    assert!(
        text.contains("cells/upgrades/other/src/lib.rs") && !text.contains("cells/kernel/other"),
        "{text}"
    );

    // An upgrade must name a live cell.
    write(
        &root,
        "cells/upgrades/other/src/lib.rs",
        "#![no_std]\n#[inline(never)]\npub fn other() -> u32 { 2 }\n",
    );
    write(
        &root,
        "cells/upgrades/stranger/Cargo.toml",
        &package("stranger", ""),
    );
    let err = format!("{:#}", build_cells(&options).expect_err("unknown cell"));
    assert!(
        err.contains("cells/upgrades/stranger") && err.contains("no cell named `stranger`"),
        "{err}"
    );
}
