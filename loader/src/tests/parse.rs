//! Parsing: every header and table check, on objects written for the purpose (or patched at
//! offsets read back from them).

use alloc::string::ToString;

use goblin::elf::section_header::{SHT_PROGBITS, SHT_REL, SHT_RELA, SHT_SYMTAB};
use object::SymbolKind;

use crate::error::LoadError;
use crate::index::{SectionIndex, SymbolIndex};
use crate::malformation::{Malformation, Truncation};
use crate::parse::parse;
use crate::testing::cells::{p_f, provider, user};
use crate::testing::elf::{Cell, Kind, Patch, R_64};
use crate::testing::{system, SystemState};
use crate::CellSpec;

fn malformed(what: Malformation) -> LoadError {
    LoadError::Malformed {
        cell: "c".into(),
        what,
    }
}

fn parse_err(bytes: &[u8]) -> LoadError {
    match parse("c", bytes) {
        Ok(_) => panic!("the object parsed"),
        Err(e) => e,
    }
}

#[test]
fn a_written_object_parses_with_its_tables_indexed() {
    let bytes = user();
    let object = parse("u", &bytes).unwrap();
    assert!(object.syms.len() > 4);
    // Every defined symbol's section is in range, and every relocation's target and symbol.
    for sym in object.syms.iter() {
        if let Some(s) = sym.section() {
            assert!(object.sections.get(s).is_some());
        }
    }
    let targets: alloc::vec::Vec<_> = object
        .rela_sections
        .iter()
        .map(|r| object.section_name(r.target))
        .collect();
    assert!(
        targets.iter().any(|t| t.starts_with(".text.")),
        "{targets:?}"
    );
    assert!(targets.contains(&".data.u".to_string()));
    assert!(targets.contains(&".data.rel.ro.u".to_string()));
    for r in &object.rela_sections {
        assert!(object.relas(r).all(|rela| rela.r_sym.0 < object.syms.len()));
    }
    let f = object
        .syms
        .iter_enumerated()
        .find(|(i, _)| object.symbol_name_bytes(*i) == p_f().as_bytes())
        .map(|(_, s)| *s)
        .expect("u names p::f");
    assert!(f.is_undefined() && f.section().is_none());
}

#[test]
fn headers_of_other_files_are_named() {
    let bytes = provider();
    assert_eq!(parse_err(&[]), LoadError::Empty { cell: "c".into() });
    assert_eq!(
        parse_err(b"\x7fELF"),
        LoadError::Truncated {
            cell: "c".into(),
            what: Truncation::ElfHeader,
        }
    );
    assert_eq!(
        parse_err(b"#!/bin/sh\n"),
        LoadError::NotElf { cell: "c".into() }
    );
    for len in [5, 40, 63] {
        assert_eq!(
            parse_err(&bytes[..len]),
            LoadError::Truncated {
                cell: "c".into(),
                what: Truncation::ElfHeader,
            },
            "{len}"
        );
    }
    let mut patch = Patch::of(bytes.clone());
    patch.put(4, 1, 1); // ELFCLASS32
    assert_eq!(
        parse_err(&patch.bytes),
        LoadError::WrongClass { cell: "c".into() }
    );
    let mut patch = Patch::of(bytes.clone());
    patch.put(5, 1, 2); // ELFDATA2MSB
    assert_eq!(
        parse_err(&patch.bytes),
        LoadError::WrongEndian { cell: "c".into() }
    );
    let mut patch = Patch::of(bytes.clone());
    patch.put(18, 2, 183); // EM_AARCH64
    assert_eq!(
        parse_err(&patch.bytes),
        LoadError::WrongMachine {
            cell: "c".into(),
            machine: 183,
        }
    );
    let mut patch = Patch::of(bytes);
    patch.put(16, 2, 3); // ET_DYN
    assert_eq!(
        parse_err(&patch.bytes),
        LoadError::NotRelocatable {
            cell: "c".into(),
            e_type: "ET_DYN",
        }
    );
}

#[test]
fn the_section_header_table_is_checked() {
    let bytes = provider();
    let patch = Patch::of(bytes.clone());
    let shoff = patch.section_header(0);
    assert_eq!(
        parse_err(&bytes[..shoff + 10]),
        LoadError::Truncated {
            cell: "c".into(),
            what: Truncation::SectionHeaderTable,
        }
    );
    let mut patch = Patch::of(bytes.clone());
    patch.put(60, 2, 0); // e_shnum
    assert_eq!(
        parse_err(&patch.bytes),
        malformed(Malformation::NoSectionHeaders)
    );
    let mut patch = Patch::of(bytes);
    patch.put(58, 2, 40); // e_shentsize
    assert_eq!(
        parse_err(&patch.bytes),
        malformed(Malformation::SectionHeaderSize { e_shentsize: 40 })
    );
}

#[test]
fn a_section_past_the_end_of_the_file_is_truncated() {
    let mut patch = Patch::of(provider());
    let name = alloc::format!(".text.{}", p_f());
    let at = patch.section_header(patch.section_index(&name)) + 32; // sh_size
    patch.put(at, 8, 1 << 20);
    assert_eq!(
        parse_err(&patch.bytes),
        LoadError::Truncated {
            cell: "c".into(),
            what: Truncation::Section { section: name },
        }
    );
}

#[test]
fn the_symbol_table_is_checked() {
    let bytes = provider();
    let mut patch = Patch::of(bytes.clone());
    let symtab = patch.section_header(patch.section_of_type(SHT_SYMTAB));
    patch.put(symtab + 4, 4, u64::from(SHT_PROGBITS));
    assert_eq!(
        parse_err(&patch.bytes),
        malformed(Malformation::NoSymbolTable)
    );

    let mut patch = Patch::of(bytes.clone());
    patch.put(symtab + 56, 8, 16); // sh_entsize
    assert_eq!(
        parse_err(&patch.bytes),
        malformed(Malformation::SymbolEntrySize { sh_entsize: 16 })
    );

    let mut patch = Patch::of(bytes.clone());
    let sections = goblin::elf::Elf::parse(&bytes)
        .unwrap()
        .section_headers
        .len();
    let entry = patch.symbol_entry(&p_f());
    patch.put(entry + 6, 2, 200); // st_shndx
    assert_eq!(
        parse_err(&patch.bytes),
        malformed(Malformation::SymbolSectionOutOfRange {
            symbol: p_f(),
            st_shndx: 200,
            sections,
        })
    );
}

#[test]
fn a_symbol_past_its_section_is_refused_as_written() {
    // No patch: the writer puts the value where the test says.
    let mut cell = Cell::new();
    let text = cell.section(".text.x", Kind::Text, &[0xc3; 6], 16);
    cell.define("x", text, 100, 0, SymbolKind::Text);
    assert_eq!(
        parse_err(&cell.bytes()),
        malformed(Malformation::SymbolPastSection {
            symbol: "x".into(),
            st_value: 100,
            section: ".text.x".into(),
            sh_size: 6,
        })
    );
}

#[test]
fn relocation_sections_are_checked() {
    let bytes = user();
    let patch = Patch::of(bytes.clone());
    let rela_index = patch.section_of_type(SHT_RELA);
    let rela = patch.section_header(rela_index);
    let name = parse("u", &bytes)
        .unwrap()
        .section_name(SectionIndex(rela_index));

    let mut p = Patch::of(bytes.clone());
    p.put(rela + 4, 4, u64::from(SHT_REL));
    assert_eq!(
        parse_err(&p.bytes),
        malformed(Malformation::RelSection {
            section: name.clone()
        })
    );

    let sections = goblin::elf::Elf::parse(&bytes)
        .unwrap()
        .section_headers
        .len();
    let mut p = Patch::of(bytes.clone());
    p.put(rela + 44, 4, 99); // sh_info
    assert_eq!(
        parse_err(&p.bytes),
        malformed(Malformation::RelocationTargetOutOfRange {
            section: name.clone(),
            sh_info: 99,
            sections,
        })
    );

    let symbols = parse("u", &bytes).unwrap().syms.len();
    let mut p = Patch::of(bytes);
    let first = p.first_rela();
    p.put(first + 12, 4, 500); // r_sym
    assert_eq!(
        parse_err(&p.bytes),
        malformed(Malformation::RelocationSymbolOutOfRange {
            section: name,
            r_sym: 500,
            symbols,
        })
    );
}

#[test]
fn names_used_as_names_must_be_utf8() {
    let (mut system, ns) = system();
    let before = SystemState::of(&system);

    let mut cell = Cell::new();
    let (text, _) = cell.func("g", &[0xe8, 0, 0, 0, 0, 0xc3]);
    let bad = cell.undefined_named(b"caf\xe9", SymbolKind::Text, false);
    cell.reloc(text, 1, bad, crate::testing::elf::R_PLT32, -4);
    let bytes = cell.bytes();
    let index = parse("c", &bytes)
        .unwrap()
        .syms
        .iter_enumerated()
        .find(|(i, s)| s.is_undefined() && i.0 > 0)
        .map(|(i, _)| i)
        .unwrap();
    assert_eq!(
        system.load(ns, CellSpec::named("c"), &bytes),
        Err(malformed(Malformation::SymbolNameNotUtf8 { symbol: index }))
    );
    assert_ne!(index, SymbolIndex(0));

    let mut cell = Cell::new();
    let data = cell.section_named(b".data.\xff", Kind::Data, &[0; 8], 8);
    cell.define("d", data, 0, 8, SymbolKind::Data);
    let f = cell.undefined("nowhere", SymbolKind::Text, true);
    cell.reloc(data, 0, f, R_64, 0);
    let bytes = cell.bytes();
    // (goblin refuses the name; the loader's own parser reads it raw.)
    let object = parse("c", &bytes).unwrap();
    let section = object
        .sections
        .iter_enumerated()
        .map(|(i, _)| i)
        .find(|i| object.section_name_bytes(*i) == b".data.\xff")
        .unwrap();
    assert_eq!(
        system.load(ns, CellSpec::named("c"), &bytes),
        Err(malformed(Malformation::SectionNameNotUtf8 { section }))
    );
    before.assert_same(&SystemState::of(&system), "refused loads");
}
