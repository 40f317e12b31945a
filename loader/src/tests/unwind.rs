//! The unwind-table check (`eh_frame.rs`): tables written record by record
//! (`crate::testing::unwind`), one fault each, and whole cells with an `.eh_frame` on the heap
//! platform.

use alloc::vec;
use alloc::vec::Vec;

use crate::eh_frame::{check, Bounds, EhFrameError, Fde, MAX_STATE_DEPTH};
use crate::error::LoadError;
use crate::malformation::{EhField, EhFrameFault as Fault, EhPointer, Malformation};
use crate::testing::elf::Cell;
use crate::testing::unwind::{rustc_cie, Table, FDE_INSTRUCTIONS, PCREL_SDATA4};
use crate::testing::{system, SystemState};
use crate::CellSpec;
use crate_metadata::SectionKind;

/// Where the test tables lie, and the text and mapping they may point into.
const ADDR: u64 = 0x10_2000;
const TEXT: (u64, u64) = (0x10_0000, 0x10_0100);
const MAPPING: (u64, u64) = (0x10_0000, 0x10_4000);

fn bounds() -> Bounds<'static> {
    Bounds {
        text: &[TEXT],
        mapping: MAPPING,
    }
}

fn checked(table: &[u8]) -> Result<Vec<Fde>, EhFrameError> {
    let len = table.len() - 4;
    check(table, len, ADDR, &bounds()).map(|t| t.fdes)
}

/// Expects `fault` at `offset` for `table` (terminated).
#[track_caller]
fn refused(table: &[u8], offset: usize, fault: Fault) {
    assert_eq!(checked(table), Err(EhFrameError { offset, fault }));
}

/// rustc's CIE and two FDEs in the text; returns the table and the FDEs' offsets.
fn good() -> (Table, usize, usize) {
    let mut t = Table::at(ADDR);
    let cie = t.cie(&rustc_cie());
    let a = t.fde(cie, TEXT.0, 0x40);
    let b = t.fde(cie, TEXT.0 + 0x40, 0xc0);
    (t, a, b)
}

/// A CIE with `body` after its id, and one FDE of it at the start of the text.
fn with_cie(body: &[u8]) -> Vec<u8> {
    let mut t = Table::at(ADDR);
    let cie = t.cie(body);
    t.fde(cie, TEXT.0, 0x10);
    t.terminated()
}

#[test]
fn a_rustc_table_passes_with_its_fdes_where_they_point() {
    let (t, a, b) = good();
    let fdes = checked(&t.terminated()).unwrap();
    let fde = |offset, pc_begin, pc_range| Fde {
        offset,
        cie: 0,
        pc_begin,
        pc_range,
        lsda: 0,
    };
    assert_eq!(
        fdes,
        vec![fde(a, TEXT.0, 0x40), fde(b, TEXT.0 + 0x40, 0xc0)]
    );
    // An empty table (only the terminator) passes too.
    assert_eq!(check(&[0; 4], 0, ADDR, &bounds()).unwrap().fdes, vec![]);
}

#[test]
fn record_lengths_must_stay_inside_the_section() {
    let (t, a, _) = good();
    let len = t.bytes.len();
    let with = |at: usize, v: u32| {
        let mut b = t.terminated();
        b[at..at + 4].copy_from_slice(&v.to_le_bytes());
        b
    };
    let left = (len - a - 4) as u64;
    let past = Fault::LengthPastEnd {
        length: 0x1000,
        left,
    };
    refused(&with(a, 0x1000), a, past);
    refused(&with(a, u32::MAX), a, Fault::Length64);
    refused(&with(a, 0), a, Fault::EarlyTerminator);
    // Too short for the FDE's fields: pc_begin runs past the record.
    let field = EhField::PcBegin;
    refused(&with(a, 4), a + 8, Fault::FieldPastRecord { field });
    // A length word cut by the section's end.
    let mut cut = t.bytes.clone();
    cut.extend_from_slice(&[8, 0, 0, 0, 0]);
    assert_eq!(
        check(&cut, len + 2, ADDR, &bounds()),
        Err(EhFrameError {
            offset: len,
            fault: Fault::FieldPastRecord {
                field: EhField::Length
            },
        })
    );
    // No terminator after the section.
    let mut open = t.bytes.clone();
    open.extend_from_slice(&[1, 0, 0, 0]);
    refused(&open, len, Fault::MissingTerminator);
    assert_eq!(
        check(&t.bytes, len, ADDR, &bounds()).unwrap_err().fault,
        Fault::MissingTerminator
    );
}

#[test]
fn a_cie_pointer_must_lead_back_to_the_start_of_a_cie() {
    let (t, a, b) = good();
    for pointer in [
        1u32,
        (a + 4) as u32 + 4,
        (b + 4) as u32 - a as u32,
        0x28_0000,
    ] {
        let mut bytes = t.terminated();
        bytes[b + 4..b + 8].copy_from_slice(&pointer.to_le_bytes());
        refused(&bytes, b + 4, Fault::CiePointer { pointer });
    }
}

#[test]
fn cie_fields_are_those_the_unwinder_serves() {
    let cie = rustc_cie();
    let edit = |at: usize, v: u8| {
        let mut body = cie.clone();
        body[at] = v;
        with_cie(&body)
    };
    // Offsets in the table: the CIE's body starts at 8 (length, id).
    refused(&edit(0, 2), 8, Fault::CieVersion { version: 2 });
    let augmentation = "zQ".into();
    refused(&edit(2, b'Q'), 9, Fault::Augmentation { augmentation });
    // Letters before `z`: libgcc reads augmentation data only after a leading `z`.
    let mut rp = cie.clone();
    rp[1..3].copy_from_slice(b"Rz");
    let augmentation = "Rz".into();
    refused(&with_cie(&rp), 9, Fault::Augmentation { augmentation });
    refused(&edit(6, 17), 14, Fault::Register { register: 17 });
    // The augmentation data length: one byte where `R` takes one, so 2 is wrong.
    let (declared, expected) = (2, 1);
    let fault = Fault::AugmentationLength { declared, expected };
    refused(&edit(7, 2), 15, fault);
    for encoding in [0x3b, 0x09, 0x9b, 0x50, 0x1d] {
        let pointer = EhPointer::Fde;
        refused(
            &edit(8, encoding),
            16,
            Fault::Encoding { pointer, encoding },
        );
    }
    // A code alignment factor of eleven LEB128 bytes.
    let mut leb = Vec::from(&cie[..4]);
    leb.extend_from_slice(&[0x80; 10]);
    leb.extend_from_slice(&[0x01]);
    leb.extend_from_slice(&cie[5..]);
    let field = EhField::CodeAlignment;
    refused(&with_cie(&leb), 12, Fault::Leb128 { field });
}

#[test]
fn personality_and_lsda_pointers_stay_inside_the_cell() {
    // "zPLR": an indirect PC-relative personality slot, LSDAs PC-relative sdata4.
    let cie_with_slot = |slot: u64| {
        let mut t = Table::at(ADDR);
        let mut body = Vec::from(*b"\x01zPLR\0");
        body.extend_from_slice(&[1, 0x78, 16, 7, 0x9b]);
        // The slot's field is at 8 (length, id) + 11.
        let field = ADDR + 8 + 11;
        body.extend_from_slice(&(slot.wrapping_sub(field) as u32).to_le_bytes());
        body.extend_from_slice(&[PCREL_SDATA4, PCREL_SDATA4]);
        body.extend_from_slice(&[0x0c, 7, 8, 0x90, 1]);
        let cie = t.cie(&body);
        (t, cie)
    };
    let (t, _) = cie_with_slot(MAPPING.0 + 0x1000);
    assert_eq!(checked(&t.terminated()).unwrap(), vec![]);
    for slot in [MAPPING.0 + 0x1004, MAPPING.1, MAPPING.0 - 8] {
        let (t, _) = cie_with_slot(slot);
        let fault = Fault::PersonalityOutside { addr: slot };
        refused(&t.terminated(), 8 + 11, fault);
    }

    // An FDE of that CIE with an LSDA pointer.
    let fde_with_lsda = |lsda: u64, declared: u8| {
        let (mut t, cie) = cie_with_slot(MAPPING.0 + 0x1000);
        let at = t.bytes.len();
        let field = |i: u64| ADDR + at as u64 + i;
        let mut body = Vec::new();
        body.extend_from_slice(&(TEXT.0.wrapping_sub(field(8)) as u32).to_le_bytes());
        body.extend_from_slice(&0x10u32.to_le_bytes());
        body.push(declared);
        body.extend_from_slice(&(lsda.wrapping_sub(field(17)) as u32).to_le_bytes());
        body.extend_from_slice(&FDE_INSTRUCTIONS);
        t.record((at + 4 - cie) as u32, &body);
        (t.terminated(), at)
    };
    let (table, _) = fde_with_lsda(MAPPING.0 + 0x800, 4);
    assert_eq!(checked(&table).unwrap()[0].lsda, MAPPING.0 + 0x800);
    let (table, at) = fde_with_lsda(MAPPING.1 + 0x10, 4);
    let fault = Fault::LsdaOutside {
        addr: MAPPING.1 + 0x10,
    };
    refused(&table, at + 17, fault);
    let (table, at) = fde_with_lsda(MAPPING.0 + 0x800, 8);
    let (declared, expected) = (8, 4);
    let fault = Fault::AugmentationLength { declared, expected };
    refused(&table, at + 16, fault);
}

#[test]
fn an_fde_must_lie_inside_one_text_section() {
    let mut t = Table::at(ADDR);
    let cie = t.cie(&rustc_cie());
    let fits = t.fde(cie, TEXT.1 - 0x10, 0x10);
    let over = t.fde(cie, TEXT.1 - 0x10, 0x11);
    let mut table = t.terminated();
    let pc_begin = TEXT.1 - 0x10;
    let fault = Fault::FdeOutsideText {
        pc_begin,
        pc_range: 0x11,
    };
    refused(&table, over + 8, fault);
    // Before the text, and a range that wraps around.
    table.truncate(over);
    table.extend_from_slice(&[0; 4]);
    assert_eq!(checked(&table).unwrap()[0].offset, fits);
    let mut t = Table::at(ADDR);
    let cie = t.cie(&rustc_cie());
    let before = t.fde(cie, TEXT.0 - 1, 1);
    let pc_begin = TEXT.0 - 1;
    refused(
        &t.terminated(),
        before + 8,
        Fault::FdeOutsideText {
            pc_begin,
            pc_range: 1,
        },
    );
    let mut t = Table::at(ADDR);
    let cie = t.cie(&rustc_cie());
    // The range is signed like `pc_begin` (sdata4): 0xffffffff reads as -1.
    let wraps = t.fde(cie, TEXT.0, u32::MAX);
    let pc_range = u64::MAX;
    let fault = Fault::FdeOutsideText {
        pc_begin: TEXT.0,
        pc_range,
    };
    refused(&t.terminated(), wraps + 8, fault);
}

#[test]
fn fdes_may_touch_but_not_overlap() {
    let mut t = Table::at(ADDR);
    let cie = t.cie(&rustc_cie());
    let outer = t.fde(cie, TEXT.0 + 0x40, 0x40);
    t.fde(cie, TEXT.0, 0x40);
    t.fde(cie, TEXT.0 + 0x80, 0);
    assert_eq!(checked(&t.terminated()).unwrap().len(), 3);
    // One inside `outer`, written after it.
    let inner = t.fde(cie, TEXT.0 + 0x50, 0x10);
    let other = outer as u64;
    refused(&t.terminated(), inner + 8, Fault::FdeOverlap { other });
}

/// The `unwind_tables` fuzz target's finding (`fuzz/regressions/unwind_tables-empty-fde-at-start`):
/// an FDE with an empty range at the start of another FDE. libgcc sorts both under the same key
/// and its binary search steps right past the empty one, so it found no FDE for the function's
/// first address (`hosted::unwind`'s tests show that on libgcc itself).
#[test]
fn an_empty_fde_must_not_lie_inside_another() {
    let mut t = Table::at(ADDR);
    let cie = t.cie(&rustc_cie());
    let a = t.fde(cie, TEXT.0, 0x40);
    t.fde(cie, TEXT.0 + 0x40, 0x40);
    // Empty ranges at an FDE's end, between FDEs, and twice at one address: harmless.
    t.fde(cie, TEXT.0 + 0x80, 0);
    t.fde(cie, TEXT.0 + 0x90, 0);
    t.fde(cie, TEXT.0 + 0x90, 0);
    assert_eq!(checked(&t.terminated()).unwrap().len(), 5);
    // One more at `a`'s start.
    let empty = t.fde(cie, TEXT.0, 0);
    let other = a as u64;
    refused(&t.terminated(), empty + 8, Fault::EmptyFdeInside { other });
    for pc in [TEXT.0, TEXT.0 + 1, TEXT.0 + 0x3f] {
        let mut t = Table::at(ADDR);
        let cie = t.cie(&rustc_cie());
        let a = t.fde(cie, TEXT.0, 0x40);
        let empty = t.fde(cie, pc, 0);
        let other = a as u64;
        refused(&t.terminated(), empty + 8, Fault::EmptyFdeInside { other });
        // Written before the FDE that holds it: the same.
        let mut t = Table::at(ADDR);
        let cie = t.cie(&rustc_cie());
        let empty = t.fde(cie, pc, 0);
        let a = t.fde(cie, TEXT.0, 0x40);
        let other = a as u64;
        refused(&t.terminated(), empty + 8, Fault::EmptyFdeInside { other });
    }
}

#[test]
fn call_frame_instructions_are_known_with_registers_the_unwinder_has() {
    // The CIE's instructions start at 8 + 9.
    let with_insns = |insns: &[u8]| {
        let mut body = Vec::from(&rustc_cie()[..9]);
        body.extend_from_slice(insns);
        with_cie(&body)
    };
    let insn = 8 + 9;
    for opcode in [0x0f, 0x10, 0x16, 0x01, 0x2d, 0x3f] {
        refused(
            &with_insns(&[opcode, 0, 0]),
            insn,
            Fault::Instruction { opcode },
        );
    }
    refused(
        &with_insns(&[0x0c, 17, 8]),
        insn,
        Fault::Register { register: 17 },
    );
    refused(
        &with_insns(&[0x91, 1]),
        insn,
        Fault::Register { register: 17 },
    );
    // An operand past the record's end.
    let field = EhField::Instruction;
    refused(
        &with_insns(&[0x04, 1]),
        insn + 1,
        Fault::FieldPastRecord { field },
    );
    // remember_state / restore_state.
    refused(&with_insns(&[0x0b]), insn, Fault::StateStack { depth: -1 });
    let deep = vec![0x0a; MAX_STATE_DEPTH as usize + 1];
    let depth = MAX_STATE_DEPTH + 1;
    refused(
        &with_insns(&deep),
        insn + deep.len() - 1,
        Fault::StateStack { depth },
    );
    // A CIE leaves the stack empty: libgcc runs the CIE's and the FDE's instructions in two
    // calls, and a level remembered in the first points into its finished frame.
    assert!(checked(&with_insns(&[0x0a, 0x0b])).is_ok());
    let cie_end = 8 + 9 + 3;
    refused(
        &with_insns(&[0x0a, 0x0b, 0x0a]),
        cie_end,
        Fault::StateStack { depth: 1 },
    );
}

#[test]
fn no_byte_change_or_cut_of_a_table_panics() {
    let (t, _, _) = good();
    let table = t.terminated();
    for at in 0..table.len() {
        for value in 0..=255u8 {
            let mut b = table.clone();
            b[at] = value;
            let _ = checked(&b);
        }
    }
    for len in 0..=table.len() {
        let _ = check(&table[..len], len, ADDR, &bounds());
        let _ = check(&table, len, ADDR, &bounds());
        let _ = check(&table[..len], table.len(), ADDR, &bounds());
    }
    // At the top of the address space, where every sum would wrap.
    let _ = check(&table, table.len() - 4, u64::MAX - 8, &bounds());
}

/// An edit of a cell's `.eh_frame` bytes, given the offset of its FDE.
type TablePatch = fn(&mut Vec<u8>, usize);

/// A cell with one function and an unwind table for it; `patch` edits the table's bytes.
pub(super) fn cell_with_table(patch: impl Fn(&mut Vec<u8>, usize)) -> Vec<u8> {
    let mut cell = Cell::new();
    let (_, f) = cell.func("f", &[0x55, 0x48, 0x89, 0xe5, 0x5d, 0xc3]);
    let (_, fde) = cell.unwind_table(f, 6);
    let mut bytes = cell.bytes();
    let elf = goblin::elf::Elf::parse(&bytes).unwrap();
    let sh = elf
        .section_headers
        .iter()
        .find(|sh| elf.shdr_strtab.get_at(sh.sh_name) == Some(".eh_frame"))
        .unwrap();
    let (offset, size) = (sh.sh_offset as usize, sh.sh_size as usize);
    let mut table = bytes[offset..offset + size].to_vec();
    patch(&mut table, fde);
    bytes[offset..offset + size].copy_from_slice(&table);
    bytes
}

#[test]
fn a_cell_with_a_sound_table_registers_it() {
    let (mut system, ns) = system();
    let bytes = cell_with_table(|_, _| {});
    let id = system.load(ns, CellSpec::named("x"), &bytes).unwrap();
    assert_eq!(system.platform().eh_frames(), 1);
    let cell = system.registry().cell(id).unwrap();
    let text = cell.sections.iter().find(|s| s.kind == SectionKind::Text);
    let eh = cell
        .sections
        .iter()
        .find(|s| s.kind == SectionKind::EhFrame);
    let (text, eh) = (text.unwrap(), eh.unwrap());
    // The checked copy is the registered one: its FDE covers the function, relocated.
    let mapping = &system.mapped[&id].mapping;
    let at = mapping.offset_of(eh.addr).unwrap();
    let table = mapping.read(at, eh.size as usize + 4).unwrap();
    let bounds = Bounds {
        text: &[(text.addr, text.addr + text.size)],
        mapping: (0, u64::MAX),
    };
    let fdes = check(table, eh.size as usize, eh.addr, &bounds)
        .unwrap()
        .fdes;
    assert_eq!((fdes[0].pc_begin, fdes[0].pc_range), (text.addr, 6));
    system.unload(id).unwrap();
    assert_eq!(system.platform().eh_frames(), 0);
}

#[test]
fn a_cell_with_a_broken_table_is_refused_and_nothing_is_registered() {
    let (mut system, ns) = system();
    let before = SystemState::of(&system);
    let cases: [(&str, TablePatch, usize, Fault); 3] = [
        (
            "augmentation",
            |t, _| t[10] = b'Q',
            9,
            Fault::Augmentation {
                augmentation: "zQ".into(),
            },
        ),
        (
            "CIE id",
            |t, _| t[6] = 0x28,
            4,
            Fault::CiePointer { pointer: 0x28_0000 },
        ),
        (
            "FDE encoding",
            |t, _| t[16] = 0x01,
            16,
            Fault::Encoding {
                pointer: EhPointer::Fde,
                encoding: 0x01,
            },
        ),
    ];
    for (what, patch, offset, fault) in cases {
        let err = system
            .load(ns, CellSpec::named("x"), &cell_with_table(patch))
            .expect_err(what);
        let section = ".eh_frame".into();
        let offset = offset as u64;
        let what_err = Malformation::EhFrame {
            section,
            offset,
            fault,
        };
        let expected = LoadError::Malformed {
            cell: "x".into(),
            what: what_err,
        };
        assert_eq!(err, expected, "{what}");
        SystemState::of(&system).assert_same(&before, what);
        assert_eq!(system.platform().eh_frames(), 0, "{what}");
    }
    // The FDE's range past the function's end.
    let err = system
        .load(
            ns,
            CellSpec::named("x"),
            &cell_with_table(|t, fde| t[fde + 12] = 7),
        )
        .unwrap_err();
    match err {
        LoadError::Malformed {
            what:
                Malformation::EhFrame {
                    offset,
                    fault: Fault::FdeOutsideText { pc_range: 7, .. },
                    ..
                },
            ..
        } => assert_eq!(offset, 32),
        other => panic!("{other}"),
    }
    SystemState::of(&system).assert_same(&before, "FDE range");
}
