//! Prelinking (`crate::prelink`): a prelinked cell's fields are the ones a full link writes, the
//! load applies only what is left, and a table made for another layout is ignored.

use alloc::format;
use alloc::vec::Vec;
use core::ops::Range;

use super::link::{field32, section, symbol, user_lands_where_the_psabi_says};
use super::unwind::cell_with_table;
use crate::error::LoadError;
use crate::malformation::{EhFrameFault, Malformation};
use crate::parse;
use crate::prelink::{self, accepted};
use crate::testing::cells::{provider, u_g, u_layout, user};
use crate::testing::elf::{mangle, Cell, Kind, R_64};
use crate::testing::{system, PAGE};
use crate::CellSpec;
use crate_metadata::LoadStats;

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
    let magic = object.windows(8).position(|w| w == b"CELLPRE2").unwrap();
    object[magic + 8] ^= 1; // the digest
    assert!(!accepted("u", &object, PAGE).unwrap());
    let stats = user_lands_where_the_psabi_says(&object);
    assert_eq!((stats.relocations, stats.prelinked), (5, 0));
}

/// Where the list of single GOT slots' symbols starts in `object`'s `.cell.prelink`, and its
/// length (`crate::prelink::format`'s layout).
fn singles_list(object: &[u8]) -> (usize, usize) {
    let magic = object.windows(8).position(|w| w == b"CELLPRE2").unwrap();
    let count = |k: usize| {
        let at = magic + 24 + 4 * k;
        u32::from_le_bytes(object[at..at + 4].try_into().unwrap()) as usize
    };
    let (relas, direct, singles) = (count(0), count(1), count(2));
    (magic + 48 + 4 * (2 * relas + direct), singles)
}

#[test]
fn slot_lists_that_number_another_layout_give_way_to_the_relocations() {
    let object = prelinked_user().object;
    let (at, singles) = singles_list(&object);
    assert_eq!(singles, 2);
    let (first, second) = (at..at + 4, at + 4..at + 8);
    // The two slots' symbols swapped: another numbering, so a layout without the table's digest;
    // one symbol twice: no numbering at all. Either way the load numbers the GOT from the
    // relocations, gets the layout the table was made for, and uses the table.
    let mut swapped = object.clone();
    swapped[first.clone()].copy_from_slice(&object[second.clone()]);
    swapped[second.clone()].copy_from_slice(&object[first.clone()]);
    let mut twice = object.clone();
    twice[second].copy_from_slice(&object[first]);
    for bad in [swapped, twice] {
        assert!(!accepted("u", &bad, PAGE).unwrap());
        let stats = user_lands_where_the_psabi_says(&bad);
        assert_eq!((stats.relocations, stats.prelinked), (2, 3));
    }
}

#[test]
fn an_object_without_relocations_to_apply_ahead_keeps_its_bytes() {
    // `p`'s one GOT load is the layout's too; everything else of the object stays byte for byte,
    // with the tables (`.cell.prelink`, `.cell.names`) appended after it.
    let original = provider();
    let prelinked = prelink::prelink("p", &original, PAGE).unwrap();
    assert_eq!((prelinked.applied, prelinked.left), (1, 0));
    let parsed = parse::parse("p", &prelinked.object).unwrap();
    let before = parse::parse("p", &original).unwrap();
    assert_eq!(parsed.sections.len(), before.sections.len() + 2);
    assert_eq!(parsed.syms.len(), before.syms.len());
    assert!(parsed.prelink.is_some() && parsed.names.is_some());
}

/// The load statistics of `bytes` loaded as `x` into a fresh system.
fn load_x(bytes: &[u8]) -> Result<LoadStats, LoadError> {
    let (mut system, ns) = system();
    let id = system.load(ns, CellSpec::named("x"), bytes)?;
    assert_eq!(system.platform().eh_frames(), 1);
    Ok(system.registry().cell(id).unwrap().stats.clone())
}

/// `object` with `patch` applied to its `.eh_frame` bytes (the patch gets the table).
fn patch_table(object: &[u8], patch: impl Fn(&mut [u8])) -> Vec<u8> {
    let parsed = parse::parse("x", object).unwrap();
    let (_, sh) = parsed
        .sections
        .iter_enumerated()
        .find(|(i, _)| parsed.section_name(*i) == ".eh_frame")
        .unwrap();
    let range = sh.sh_offset as usize..(sh.sh_offset + sh.sh_size) as usize;
    let mut bytes = object.to_vec();
    patch(&mut bytes[range]);
    bytes
}

#[test]
fn the_unwind_table_the_build_checked_is_registered_without_a_second_check() {
    let object = cell_with_table(|_, _| {});
    let prelinked = prelink::prelink("x", &object, PAGE).unwrap();
    let table = parse::parse("x", &prelinked.object)
        .unwrap()
        .prelink
        .unwrap();
    assert!(table.unwind.is_some(), "the build checked the table");
    assert!(load_x(&prelinked.object).unwrap().unwind_checked_at_build);
    // Without the prelink the load checks it.
    assert!(!load_x(&object).unwrap().unwind_checked_at_build);
}

#[test]
fn a_table_changed_after_the_build_is_checked_again_and_refused() {
    let prelinked = prelink::prelink("x", &cell_with_table(|_, _| {}), PAGE).unwrap();
    // One byte of the CIE's augmentation: the hash differs, the load checks the table and refuses
    // it as it refuses the same table never prelinked. (A load that trusted the record alone
    // would register it.)
    let broken = patch_table(&prelinked.object, |t| t[10] = b'Q');
    let expected = LoadError::Malformed {
        cell: "x".into(),
        what: Malformation::EhFrame {
            section: ".eh_frame".into(),
            offset: 9,
            fault: EhFrameFault::Augmentation {
                augmentation: "zQ".into(),
            },
        },
    };
    assert_eq!(load_x(&broken).unwrap_err(), expected);
    let never_prelinked = cell_with_table(|t, _| t[10] = b'Q');
    assert_eq!(load_x(&never_prelinked).unwrap_err(), expected);
}

#[test]
fn a_table_the_build_refuses_gets_no_record() {
    let broken = cell_with_table(|t, _| t[10] = b'Q');
    let prelinked = prelink::prelink("x", &broken, PAGE).unwrap();
    let table = parse::parse("x", &prelinked.object)
        .unwrap()
        .prelink
        .unwrap();
    assert_eq!(table.unwind, None);
    assert!(matches!(
        load_x(&prelinked.object),
        Err(LoadError::Malformed {
            what: Malformation::EhFrame { .. },
            ..
        })
    ));
}

#[test]
fn a_word_that_points_into_the_cell_gets_the_mapping_address_added() {
    let mut cell = Cell::new();
    let name = mangle("x::TABLE", 1);
    let (_, table) = cell.static_data(&name, &[7; 16]);
    let word = cell.section(".data.rel.ro.x", Kind::Data, &[0; 8], 8);
    cell.reloc(word, 0, table, R_64, 8);
    let object = cell.bytes();
    let prelinked = prelink::prelink("x", &object, PAGE).unwrap();
    assert_eq!(
        (prelinked.applied, prelinked.relative, prelinked.left),
        (0, 1, 0)
    );
    for (bytes, prelinked) in [(&prelinked.object, 0), (&object, 0)] {
        let (mut system, ns) = system();
        let id = system.load(ns, CellSpec::named("x"), bytes).unwrap();
        let at = section(&system, id, ".data.rel.ro.x");
        let target = symbol(&system, id, &name);
        let mapping = &system.mapped[&id].mapping;
        let read = mapping.read(mapping.offset_of(at).unwrap(), 8).unwrap();
        assert_eq!(u64::from_le_bytes(read.try_into().unwrap()), target + 8);
        let stats = &system.registry().cell(id).unwrap().stats;
        assert_eq!((stats.relocations, stats.prelinked), (1, prelinked));
        // The static is reached without a slot (a swap cannot rebind it): from the build's list
        // or from the load's own pass.
        assert!(system.mapped[&id].direct_refs.len() == 1);
    }
}

#[test]
fn one_changed_byte_always_changes_the_unwind_table_hash() {
    // Every length around the four chains' stride and the trailing partial word, every byte,
    // each of its bits: the hash changes (each step of each chain is a bijection of its word).
    let base: Vec<u8> = (0..70u8).map(|i| i.wrapping_mul(37)).collect();
    for len in 0..base.len() {
        let bytes = &base[..len];
        let h = prelink::hash_bytes(bytes);
        assert_ne!(h, 0, "0 marks no hash");
        for at in 0..len {
            for bit in 0..8 {
                let mut changed = bytes.to_vec();
                changed[at] ^= 1 << bit;
                assert_ne!(prelink::hash_bytes(&changed), h, "len {len}, byte {at}");
            }
        }
        // A zero byte more is another table too.
        let mut longer = bytes.to_vec();
        longer.push(0);
        assert_ne!(prelink::hash_bytes(&longer), h, "len {len} + 1");
    }
}
