//! Every kind of bad input gets a typed error naming what is wrong, never a panic, and leaves the
//! system exactly as it was: the same namespaces, the same registry, the same mappings.

mod common;

use crate_metadata::{CellKind, Registry};
use goblin::elf::Elf;
use loader::hosted::Hosted;
use loader::{CellSpec, LoadError, Malformation, MissingCause, System, Truncation};
use namespace::Snapshot;
use std::sync::{Mutex, MutexGuard};

struct Fixture {
    system: System<Hosted>,
    ns: crate_metadata::NamespaceId,
    _serial: MutexGuard<'static, ()>,
}

/// The mapping count is process-wide: tests that compare it take turns.
static SERIAL: Mutex<()> = Mutex::new(());

/// A system with `klog` and `frame_alloc` loaded into `_kernel`.
fn fixture() -> Fixture {
    let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut system = System::new(Hosted::new().expect("hosted platform"), "nano_core");
    let ns = system.create_namespace("_kernel", None).unwrap();
    for name in ["klog", "frame_alloc"] {
        let bytes = common::object(CellKind::Kernel, name);
        system.load(ns, CellSpec::named(name), &bytes).unwrap();
    }
    Fixture {
        system,
        ns,
        _serial: serial,
    }
}

/// Namespaces, registry, and the loader's mappings (count, bytes).
type State = (Snapshot, Registry, (usize, usize));

fn state(f: &Fixture) -> State {
    (
        f.system.namespaces().snapshot(),
        f.system.registry().clone(),
        f.system.platform().live_mappings(),
    )
}

/// Loads `bytes` as `name`, expects an error, and checks that nothing changed.
fn refused(f: &mut Fixture, name: &str, bytes: &[u8]) -> LoadError {
    let before = state(f);
    let err = f
        .system
        .load(f.ns, CellSpec::named(name), bytes)
        .expect_err("bad input must be refused");
    let after = state(f);
    assert!(after.0 == before.0, "the namespaces changed after: {err}");
    assert!(after.1 == before.1, "the registry changed after: {err}");
    assert_eq!(
        after.2, before.2,
        "the number of mappings changed after: {err}"
    );
    assert!(
        err.to_string().contains(name),
        "the error names the cell: {err}"
    );
    err
}

fn memfs() -> Vec<u8> {
    common::object(CellKind::Kernel, "memfs")
}

/// The file offset of the first RELA entry that applies to a text section, and that section's name.
fn first_text_rela(bytes: &[u8], r_type: Option<u32>) -> (usize, String, u64) {
    let elf = Elf::parse(bytes).unwrap();
    for sh in &elf.section_headers {
        if sh.sh_type != goblin::elf::section_header::SHT_RELA {
            continue;
        }
        let target = &elf.section_headers[sh.sh_info as usize];
        let name = elf.shdr_strtab.get_at(target.sh_name).unwrap().to_string();
        if !name.starts_with(".text") {
            continue;
        }
        for i in 0..(sh.sh_size / 24) as usize {
            let at = sh.sh_offset as usize + i * 24;
            let info = u64::from_le_bytes(bytes[at + 8..at + 16].try_into().unwrap());
            if r_type.is_none_or(|t| info as u32 == t) {
                let offset = u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
                return (at, name, offset);
            }
        }
    }
    panic!("no matching relocation");
}

#[test]
fn empty_file() {
    let mut f = fixture();
    assert_eq!(
        refused(&mut f, "empty", &[]),
        LoadError::Empty {
            cell: "empty".into()
        }
    );
}

#[test]
fn not_an_elf_file() {
    let mut f = fixture();
    let err = refused(&mut f, "text", b"#!/bin/sh\necho this is not an object\n");
    assert_eq!(
        err,
        LoadError::NotElf {
            cell: "text".into()
        }
    );
}

#[test]
fn truncated_objects() {
    let mut f = fixture();
    let bytes = memfs();
    for len in [5, 40, 63] {
        let err = refused(&mut f, "memfs", &bytes[..len]);
        assert!(
            matches!(
                err,
                LoadError::Truncated {
                    what: Truncation::ElfHeader,
                    ..
                }
            ),
            "{len}: {err}"
        );
    }
    // Cut inside the section headers (at the end of the file) and inside the sections.
    for len in [bytes.len() - 10, bytes.len() / 2, 200] {
        let err = refused(&mut f, "memfs", &bytes[..len]);
        assert!(matches!(err, LoadError::Truncated { .. }), "{len}: {err}");
    }
}

#[test]
fn a_32_bit_object() {
    let mut f = fixture();
    let mut bytes = memfs();
    bytes[4] = 1; // EI_CLASS = ELFCLASS32
    assert_eq!(
        refused(&mut f, "memfs", &bytes),
        LoadError::WrongClass {
            cell: "memfs".into()
        }
    );
}

#[test]
fn another_architecture() {
    let mut f = fixture();
    let mut bytes = memfs();
    bytes[18..20].copy_from_slice(&183u16.to_le_bytes()); // EM_AARCH64
    let err = refused(&mut f, "memfs", &bytes);
    assert_eq!(
        err,
        LoadError::WrongMachine {
            cell: "memfs".into(),
            machine: 183
        }
    );
    assert!(err.to_string().contains("AArch64"));
}

#[test]
fn executables_and_shared_objects() {
    let mut f = fixture();
    for (e_type, name) in [(2u16, "ET_EXEC"), (3, "ET_DYN")] {
        let mut bytes = memfs();
        bytes[16..18].copy_from_slice(&e_type.to_le_bytes());
        let err = refused(&mut f, "memfs", &bytes);
        assert_eq!(
            err,
            LoadError::NotRelocatable {
                cell: "memfs".into(),
                e_type: name
            }
        );
    }
}

#[test]
fn an_unknown_relocation_type() {
    let mut f = fixture();
    // The build applied this relocation already, so a load that uses the table does not read it
    // (the cell is the bytes the build wrote); with the table made for another layout, the load
    // applies every relocation and reads this one.
    let mut bytes = common::applying_every_relocation(memfs());
    let (at, section, offset) = first_text_rela(&bytes, None);
    bytes[at + 8..at + 12].copy_from_slice(&250u32.to_le_bytes());
    let err = refused(&mut f, "memfs", &bytes);
    assert_eq!(
        err,
        LoadError::UnknownRelocation {
            cell: "memfs".into(),
            section,
            offset,
            r_type: 250
        }
    );
}

#[test]
fn a_relocation_whose_value_does_not_fit() {
    let mut f = fixture();
    // The build applied this relocation already (its value is the layout's), so the load does not
    // read it; with the table made for another layout, the load applies every relocation.
    let mut bytes = common::applying_every_relocation(memfs());
    let (at, section, offset) = first_text_rela(&bytes, Some(2)); // R_X86_64_PC32
    bytes[at + 16..at + 24].copy_from_slice(&(1i64 << 40).to_le_bytes());
    match refused(&mut f, "memfs", &bytes) {
        LoadError::RelocationOverflow {
            section: s,
            offset: o,
            r_type,
            ..
        } => {
            assert_eq!((s, o, r_type), (section, offset, "R_X86_64_PC32"));
        }
        other => panic!("wrong error: {other}"),
    }
}

#[test]
fn an_undefined_symbol_is_named_demangled() {
    let mut f = fixture();
    let ns = f.system.create_namespace("lonely", None).unwrap();
    f.ns = ns; // a namespace without frame_alloc and klog
    let err = refused(&mut f, "sched", &common::object(CellKind::Kernel, "sched"));
    let LoadError::UndefinedSymbols {
        missing,
        cause,
        namespace,
        ..
    } = &err
    else {
        panic!("wrong error: {err}");
    };
    assert_eq!(namespace, "lonely");
    assert_eq!(*cause, None);
    assert!(
        missing
            .iter()
            .any(|m| m.demangled.starts_with("frame_alloc::alloc_frame")),
        "{err}"
    );
    assert!(err.to_string().contains("frame_alloc::alloc_frame"));
}

#[test]
fn a_cell_name_already_loaded() {
    let mut f = fixture();
    let err = refused(&mut f, "klog", &common::object(CellKind::Kernel, "klog"));
    assert_eq!(
        err,
        LoadError::AlreadyLoaded {
            cell: "klog".into(),
            namespace: "_kernel".into()
        }
    );
}

#[test]
fn an_object_from_another_toolchain() {
    let mut f = fixture();
    let mut bytes = memfs();
    // Give one alloc symbol another crate hash, as another rustc would.
    let elf = Elf::parse(&bytes).unwrap();
    let (name_off, name) = elf
        .syms
        .iter()
        .filter(|s| s.st_shndx == 0)
        .filter_map(|s| Some((s.st_name, elf.strtab.get_at(s.st_name)?)))
        .find(|(_, n)| n.starts_with("_RN") && n.contains("5alloc"))
        .map(|(o, n)| (o, n.to_string()))
        .expect("memfs uses alloc");
    let symtab = elf
        .section_headers
        .iter()
        .find(|s| s.sh_type == goblin::elf::section_header::SHT_SYMTAB)
        .unwrap();
    let strtab = elf.section_headers[symtab.sh_link as usize].sh_offset as usize;
    drop(elf);
    // The crate hash follows "Cs" in a v0 name; change its first character.
    let hash = name.find("Cs").expect("a v0 crate hash") + 2;
    let at = strtab + name_off + hash;
    bytes[at] = if bytes[at] == b'a' { b'b' } else { b'a' };
    let err = refused(&mut f, "memfs", &bytes);
    let LoadError::UndefinedSymbols { missing, cause, .. } = &err else {
        panic!("wrong error: {err}");
    };
    assert_eq!(*cause, Some(MissingCause::Toolchain), "{err}");
    assert!(missing.iter().all(|m| m.other_hash.is_some()));
    assert!(err.to_string().contains("another toolchain"), "{err}");
}

#[test]
fn a_tampered_object_is_refused_before_anything_is_mapped() {
    let mut f = fixture();
    let bytes = memfs();
    let manifest_sha = loader::sha256(&bytes);
    let mut tampered = bytes.clone();
    let last = tampered.len() - 100;
    tampered[last] ^= 0x01;
    let before = state(&f);
    let spec = CellSpec {
        name: "memfs",
        version: "0.1.0",
        kind: Some(CellKind::Kernel),
        sha256: Some(manifest_sha),
    };
    let err = f.system.load(f.ns, spec, &tampered).unwrap_err();
    let after = state(&f);
    assert!(after == before, "the system changed");
    match &err {
        LoadError::IntegrityMismatch {
            cell,
            expected,
            actual,
        } => {
            assert_eq!((cell.as_str(), expected), ("memfs", &manifest_sha));
            assert_eq!(actual, &loader::sha256(&tampered));
        }
        other => panic!("wrong error: {other}"),
    }
    assert!(err.to_string().contains("memfs"));
    // The untouched object with the same hash loads.
    f.system.load(f.ns, spec, &bytes).unwrap();
}

#[test]
fn every_memory_failure_during_a_load_leaves_the_system_as_it_was() {
    let platform = common::flaky::new();
    let mut system = System::new(platform, "nano_core");
    let ns = system.create_namespace("_kernel", None).unwrap();
    for name in ["klog", "frame_alloc"] {
        system
            .load(
                ns,
                CellSpec::named(name),
                &common::object(CellKind::Kernel, name),
            )
            .unwrap();
    }
    let bytes = memfs();
    system.platform().layer().fail_call(None);
    let probe = system.load(ns, CellSpec::named("memfs"), &bytes).unwrap();
    let calls = system.platform().layer().calls();
    system.unload(probe).unwrap();
    assert!(
        calls >= 3,
        "map + two protects (text; read-only data and relro): {calls}"
    );
    for n in 0..calls {
        let before = (
            system.namespaces().snapshot(),
            system.registry().clone(),
            system.platform().inner().live_mappings(),
        );
        system.platform().layer().fail_call(Some(n));
        let err = system
            .load(ns, CellSpec::named("memfs"), &bytes)
            .expect_err("the failure surfaces");
        system.platform().layer().fail_call(None);
        assert!(matches!(err, LoadError::Platform { .. }), "call {n}: {err}");
        let after = (
            system.namespaces().snapshot(),
            system.registry().clone(),
            system.platform().inner().live_mappings(),
        );
        assert!(
            before == after,
            "failure at memory call {n} changed the system"
        );
    }
}

/// Found by the fuzzer (fuzz/regressions): sizes and values that would overflow the layout's
/// arithmetic are refused as malformed.
#[test]
fn a_symbol_past_its_section_or_a_huge_section() {
    let mut f = fixture();
    let bytes = memfs();
    let elf = Elf::parse(&bytes).unwrap();
    // A defined symbol whose value lies far past its section.
    let symtab = elf
        .section_headers
        .iter()
        .find(|s| s.sh_type == goblin::elf::section_header::SHT_SYMTAB)
        .unwrap();
    let index = elf
        .syms
        .iter()
        .position(|s| s.st_shndx != 0 && s.st_shndx < 0xff00 && s.st_name != 0)
        .unwrap();
    let at = symtab.sh_offset as usize + index * 24 + 8;
    let mut past = bytes.clone();
    past[at..at + 8].copy_from_slice(&u64::MAX.to_le_bytes());
    let err = refused(&mut f, "memfs", &past);
    assert!(
        matches!(
            err,
            LoadError::Malformed {
                what: Malformation::SymbolPastSection {
                    st_value: u64::MAX,
                    ..
                },
                ..
            }
        ),
        "{err}"
    );
    // A .bss section of a terabyte.
    let bss = elf
        .section_headers
        .iter()
        .position(|s| s.sh_type == goblin::elf::section_header::SHT_NOBITS)
        .expect("memfs has a .bss section");
    let at = elf.header.e_shoff as usize + bss * 64 + 32;
    let mut huge = bytes.clone();
    huge[at..at + 8].copy_from_slice(&(1u64 << 40).to_le_bytes());
    drop(elf);
    let err = refused(&mut f, "memfs", &huge);
    assert!(
        matches!(
            err,
            LoadError::Malformed {
                what: Malformation::SectionTooLarge {
                    sh_size: 0x100_0000_0000,
                    ..
                },
                ..
            }
        ),
        "{err}"
    );
}
