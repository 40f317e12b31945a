//! Object extraction and export selection on rlibs that rustc really produced.

mod common;

use std::path::PathBuf;
use std::process::Command;

use build_tools::objects::{exported_symbols, extract_single_object, object_members};
use common::{write, TempDir};

const SOURCE: &str = r#"
#![no_std]
pub mod a {
    #[no_mangle]
    pub extern "C" fn cell_exported(x: u32) -> u32 { x.wrapping_mul(7) ^ super::private(x) }
    #[no_mangle]
    pub static CELL_STATIC: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(3);
}
pub mod b {
    #[inline(never)]
    pub fn mangled(x: u64) -> u64 { x.rotate_left(5) + 1 }
    #[no_mangle]
    pub extern "C" fn other_exported(x: u64) -> u64 { mangled(x) * 3 }
}
#[inline(never)]
fn private(x: u32) -> u32 { x.rotate_right(3) }
"#;

/// The rustc to use: `$RUSTC` or `rustc`.
fn rustc() -> std::ffi::OsString {
    std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into())
}

/// Compiles `SOURCE` into `libtiny.rlib` with the given codegen options.
fn rlib(dir: &TempDir, opts: &[&str]) -> PathBuf {
    write(dir.path(), "tiny.rs", SOURCE);
    let out = dir.path().join("libtiny.rlib");
    let status = Command::new(rustc())
        .args(["--edition=2021", "--crate-type=rlib", "--crate-name=tiny"])
        // Run in the temp dir so that nothing rustc might write lands in the source tree.
        .current_dir(dir.path())
        .args(opts)
        .arg("-o")
        .arg(&out)
        .arg(dir.path().join("tiny.rs"))
        .status()
        .expect("run rustc");
    assert!(status.success(), "rustc failed");
    out
}

#[test]
fn single_codegen_unit_rlib_yields_one_object_and_its_exports() {
    let dir = TempDir::new("objects-one");
    let rlib = rlib(&dir, &["-C", "opt-level=3", "-C", "codegen-units=1"]);
    let bytes = std::fs::read(rlib).unwrap();
    let members = object_members(&bytes).unwrap();
    assert_eq!(members.len(), 1, "{members:?}");
    let object = extract_single_object(&bytes, "tiny").unwrap();
    assert_eq!(&object[..4], b"\x7fELF");
    let exports = exported_symbols(&object).unwrap();
    assert!(exports.contains(&"cell_exported".to_owned()), "{exports:?}");
    assert!(exports.contains(&"CELL_STATIC".to_owned()), "{exports:?}");
    assert!(
        exports.contains(&"other_exported".to_owned()),
        "{exports:?}"
    );
    assert!(
        exports
            .iter()
            .any(|e| e.starts_with("_ZN4tiny1b7mangled17h")),
        "{exports:?}"
    );
    assert!(
        !exports.iter().any(|e| e.contains("private")),
        "{exports:?}"
    );
    assert!(
        !exports.iter().any(|e| e.starts_with("DW.ref")),
        "{exports:?}"
    );
    let mut sorted = exports.clone();
    sorted.sort();
    assert_eq!(exports, sorted);
}

#[test]
fn several_codegen_units_are_refused() {
    let dir = TempDir::new("objects-two");
    let rlib = rlib(&dir, &["-C", "opt-level=0", "-C", "codegen-units=4"]);
    let bytes = std::fs::read(rlib).unwrap();
    let members = object_members(&bytes).unwrap();
    assert!(members.len() > 1, "rustc made only {members:?}");
    let err = format!("{:#}", extract_single_object(&bytes, "tiny").unwrap_err());
    assert!(
        err.contains("`tiny`") && err.contains("codegen-units"),
        "{err}"
    );
}

#[test]
fn an_executable_is_not_a_cell_object() {
    let exe = std::env::current_exe().unwrap();
    let bytes = std::fs::read(exe).unwrap();
    let err = format!("{:#}", exported_symbols(&bytes).unwrap_err());
    assert!(err.contains("ET_REL"), "{err}");
}
