//! Object extraction and export selection on rlibs that rustc really produced.

mod common;

use std::path::PathBuf;
use std::process::Command;

use build_tools::merge::merge_sections;
use build_tools::objects::{cell_object, exported_symbols, extract_single_object, object_members};
use common::{write, TempDir};
use crate_metadata::demangle;
use crate_metadata::paths::{self, PathTable};
use goblin::elf::section_header::SHF_ALLOC;
use goblin::elf::sym::{STT_FUNC, STT_SECTION};
use goblin::elf::Elf;

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

/// The names of an object's loaded sections.
fn alloc_sections(elf: &Elf) -> Vec<String> {
    elf.section_headers
        .iter()
        .filter(|h| h.sh_flags & u64::from(SHF_ALLOC) != 0)
        .map(|h| elf.shdr_strtab.get_at(h.sh_name).unwrap_or("").to_owned())
        .collect()
}

/// Every symbol but the section symbols: name, type, binding, visibility and size, sorted.
fn symbols(elf: &Elf) -> Vec<(String, u8, u8, u8, u64)> {
    let mut all: Vec<_> = elf
        .syms
        .iter()
        .filter(|s| s.st_type() != STT_SECTION)
        .map(|s| {
            let name = elf.strtab.get_at(s.st_name).unwrap_or("").to_owned();
            (name, s.st_type(), s.st_bind(), s.st_other, s.st_size)
        })
        .collect();
    all.sort();
    all
}

/// Every relocation's type, sorted (their symbols are renumbered by the merge, and a section
/// symbol's addend changes with the section's place in the merged one).
fn relocation_types(elf: &Elf) -> Vec<u32> {
    let mut all: Vec<u32> = elf
        .shdr_relocs
        .iter()
        .flat_map(|(_, relocs)| relocs.iter().map(|r| r.r_type))
        .collect();
    all.sort_unstable();
    all
}

#[test]
fn a_cell_object_has_one_section_per_kind_and_every_symbol_and_relocation() {
    let dir = TempDir::new("objects-merge");
    let rlib = rlib(&dir, &["-C", "opt-level=3", "-C", "codegen-units=1"]);
    let bytes = std::fs::read(rlib).unwrap();
    let object = extract_single_object(&bytes, "tiny").unwrap();
    let merged = cell_object(&bytes, "tiny").unwrap();
    let (before, after) = (Elf::parse(&object).unwrap(), Elf::parse(&merged).unwrap());
    let (split, joined) = (alloc_sections(&before), alloc_sections(&after));
    // rustc wrote a section per function; the cell object has one text section.
    assert!(
        split.iter().filter(|n| n.starts_with(".text.")).count() >= 3,
        "{split:?}"
    );
    let texts: Vec<&String> = joined.iter().filter(|n| n.starts_with(".text")).collect();
    assert_eq!(texts, [".text"], "{joined:?}");
    assert!(joined.len() < split.len(), "{split:?} -> {joined:?}");
    let mut unique = joined.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), joined.len(), "{joined:?}");
    // Nothing else changes: the symbols, the relocations, the exports.
    assert_eq!(symbols(&before), symbols(&after));
    assert_eq!(relocation_types(&before), relocation_types(&after));
    assert!(!relocation_types(&after).is_empty());
    assert_eq!(
        exported_symbols(&object).unwrap(),
        exported_symbols(&merged).unwrap()
    );
    // And the path of every function, by symbol index, for the loader to name them with.
    let section = after
        .section_headers
        .iter()
        .find(|h| after.shdr_strtab.get_at(h.sh_name) == Some(paths::SECTION))
        .expect("a .cell.paths section");
    let bytes = &merged[section.file_range().unwrap()];
    let table = PathTable::parse(bytes, after.syms.len()).expect("a table for these symbols");
    let mut functions = 0;
    for (i, sym) in after.syms.iter().enumerate() {
        let name = after.strtab.get_at(sym.st_name).unwrap_or("");
        if sym.st_type() == STT_FUNC && !name.is_empty() {
            assert_eq!(table.get(i), Some(demangle::path(name).as_str()), "{name}");
            functions += 1;
        } else {
            assert_eq!(table.get(i), None, "{name}");
        }
    }
    assert!(functions >= 4, "{functions} functions");
}

#[test]
fn a_file_that_is_not_an_object_is_not_merged_and_the_error_names_the_crate() {
    let err = format!(
        "{:#}",
        merge_sections(b"not an object", "junk").unwrap_err()
    );
    assert!(err.contains("`junk`") && err.contains("rust-lld"), "{err}");
}
