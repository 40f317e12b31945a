//! Prelinking (`crate::prelink`): a prelinked cell's fields are the ones a full link writes, the
//! load applies only what is left, and a table made for another layout is ignored.

use alloc::format;
use alloc::vec::Vec;
use core::ops::Range;

use super::link::{field32, section, user_lands_where_the_psabi_says};
use crate::parse;
use crate::prelink::{self, accepted};
use crate::testing::cells::{provider, u_g, u_layout, user};
use crate::testing::{system, PAGE};
use crate::CellSpec;

/// `u`, prelinked for the test platform's pages.
fn prelinked_user() -> prelink::Prelinked {
    prelink::prelink("u", &user(), PAGE).unwrap()
}

/// Where `u`'s code is in its object file.
fn text_in_file(object: &[u8]) -> Range<usize> {
    let parsed = parse::parse("u", object).unwrap();
    let name = format!(".text.{}", u_g());
    let (_, sh) = parsed
        .sections
        .iter_enumerated()
        .find(|(i, _)| parsed.section_name(*i) == name)
        .unwrap();
    sh.sh_offset as usize..(sh.sh_offset + sh.sh_size) as usize
}

#[test]
fn a_prelinked_cell_lands_where_a_full_link_puts_it() {
    let prelinked = prelinked_user();
    // The call (through its stub), the GOT load and the reference inside the cell are the
    // layout's; the data word and the relro word depend on where `p` is.
    assert_eq!((prelinked.applied, prelinked.left), (3, 2));
    assert!(accepted("u", &prelinked.object, PAGE).unwrap());
    let stats = user_lands_where_the_psabi_says(&prelinked.object);
    assert_eq!(
        (
            stats.relocations,
            stats.prelinked,
            stats.got_slots,
            stats.stubs
        ),
        (2, 3, 2, 1)
    );
}

#[test]
fn the_load_leaves_the_applied_fields_to_the_build() {
    // The prelinked object with the code as the compiler wrote it (zero displacements): the load
    // does not compute the fields the build applied, so they stay zero. This is what the
    // prelinked object's own code must not show, and what the test above would catch.
    let original = user();
    let text = text_in_file(&original);
    let mut unwritten = prelinked_user().object;
    assert_ne!(unwritten[text.clone()], original[text.clone()]);
    unwritten[text.clone()].copy_from_slice(&original[text]);
    let (mut system, ns) = system();
    system.load(ns, CellSpec::named("p"), &provider()).unwrap();
    let u = system.load(ns, CellSpec::named("u"), &unwritten).unwrap();
    let code = section(&system, u, &format!(".text.{}", u_g()));
    let fields: Vec<i64> = [u_layout::CALL, u_layout::GOT_LOAD, u_layout::LEA]
        .iter()
        .map(|at| field32(&system, u, code + at))
        .collect();
    assert_eq!(fields, [0, 0, 0]);
}

#[test]
fn a_table_for_another_layout_is_ignored() {
    let mut object = prelinked_user().object;
    assert!(!accepted("u", &object, 2 * PAGE).unwrap(), "other pages");
    let magic = object.windows(8).position(|w| w == b"CELLPRE1").unwrap();
    object[magic + 8] ^= 1; // the digest
    assert!(!accepted("u", &object, PAGE).unwrap());
    let stats = user_lands_where_the_psabi_says(&object);
    assert_eq!((stats.relocations, stats.prelinked), (5, 0));
}

#[test]
fn an_object_without_relocations_to_apply_ahead_keeps_its_bytes() {
    // `p`'s one GOT load is the layout's too; everything else of the object stays byte for byte,
    // with the table appended after it.
    let original = provider();
    let prelinked = prelink::prelink("p", &original, PAGE).unwrap();
    assert_eq!((prelinked.applied, prelinked.left), (1, 0));
    let parsed = parse::parse("p", &prelinked.object).unwrap();
    let before = parse::parse("p", &original).unwrap();
    assert_eq!(parsed.sections.len(), before.sections.len() + 1);
    assert_eq!(parsed.syms.len(), before.syms.len());
    assert!(parsed.prelink.is_some());
}
