//! Linking: the value every relocation type writes, the GOT, the call stubs and the edges; and
//! the references refused.

use alloc::string::String;
use alloc::vec::Vec;

use object::SymbolKind;

use crate::error::LoadError;
use crate::malformation::Malformation;
use crate::platform::TlsSymbol;
use crate::system::System;
use crate::testing::cells::{p_f, p_state, provider, u_g, u_layout, user};
use crate::testing::elf::{
    mangle, Cell, Kind, R_64, R_DTPOFF32, R_GOTPCREL, R_PC32, R_TLSGD, R_TLSLD,
};
use crate::testing::{system, system_on, HeapPlatform, SystemState};
use crate::CellSpec;
use crate_metadata::{CellId, LoadStats, SlotKind};

/// The 8 bytes at `addr` in cell `id`'s mapping.
fn word(system: &System<HeapPlatform>, id: CellId, addr: u64) -> u64 {
    let mapping = &system.mapped[&id].mapping;
    let bytes = mapping.read(mapping.offset_of(addr).unwrap(), 8).unwrap();
    u64::from_le_bytes(bytes.try_into().unwrap())
}

/// The 4-byte signed field at `addr` in cell `id`'s mapping.
pub(super) fn field32(system: &System<HeapPlatform>, id: CellId, addr: u64) -> i64 {
    let mapping = &system.mapped[&id].mapping;
    let bytes = mapping.read(mapping.offset_of(addr).unwrap(), 4).unwrap();
    i64::from(i32::from_le_bytes(bytes.try_into().unwrap()))
}

/// The address of cell `id`'s section `name`.
pub(super) fn section(system: &System<HeapPlatform>, id: CellId, name: &str) -> u64 {
    let cell = system.registry().cell(id).unwrap();
    cell.sections
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no section {name}"))
        .addr
}

/// The address of symbol `name` of cell `id`.
pub(super) fn symbol(system: &System<HeapPlatform>, id: CellId, name: &str) -> u64 {
    let cell = system.registry().cell(id).unwrap();
    cell.symbols.iter().find(|s| s.name == name).unwrap().addr
}

#[test]
fn every_reference_lands_where_the_psabi_says() {
    let stats = user_lands_where_the_psabi_says(&user());
    assert_eq!(
        (
            stats.relocations,
            stats.prelinked,
            stats.got_slots,
            stats.stubs
        ),
        (5, 0, 2, 1)
    );
}

/// Loads `p`, then `user` (an object of `u`), checks every field the psABI's formulas give and
/// every edge, and returns `u`'s load statistics.
pub(super) fn user_lands_where_the_psabi_says(user: &[u8]) -> LoadStats {
    let (mut system, ns) = system();
    let p = system.load(ns, CellSpec::named("p"), &provider()).unwrap();
    let u = system.load(ns, CellSpec::named("u"), user).unwrap();
    let f = symbol(&system, p, &p_f());
    let state = symbol(&system, p, &p_state());
    let local = symbol(
        &system,
        u,
        &mangle("u::LOCAL", crate::testing::cells::U_HASH),
    );
    let text = section(&system, u, &alloc::format!(".text.{}", u_g()));
    let stubs = section(&system, u, ".stubs");
    let got = section(&system, u, ".got");

    // The call goes to the stub (L + A - P), the stub jumps through a GOT slot holding p::f.
    let call = text + u_layout::CALL;
    assert_eq!(field32(&system, u, call), stubs as i64 - 4 - call as i64);
    let stub = system.mapped[&u]
        .mapping
        .read(system.mapped[&u].mapping.offset_of(stubs).unwrap(), 8)
        .unwrap()
        .to_vec();
    assert_eq!(&stub[..2], &[0xff, 0x25], "jmp *disp(%rip)");
    assert_eq!(&stub[6..], &[0xcc, 0xcc]);
    let disp = i64::from(i32::from_le_bytes(stub[2..6].try_into().unwrap()));
    let f_slot = (stubs as i64 + 6 + disp) as u64;
    assert_eq!(word(&system, u, f_slot), f);

    // The GOT load reads a slot holding p::STATE (G + A - P).
    let load = text + u_layout::GOT_LOAD;
    let state_slot = (load as i64 + 4 + field32(&system, u, load)) as u64;
    assert!(state_slot >= got && state_slot < got + 16);
    assert_eq!(word(&system, u, state_slot), state);

    // A PC-relative reference inside the cell (S + A - P).
    let lea = text + u_layout::LEA;
    assert_eq!(field32(&system, u, lea), local as i64 - 4 - lea as i64);

    // The data word and the relro word (S + A).
    assert_eq!(word(&system, u, section(&system, u, ".data.u")), f);
    assert_eq!(
        word(&system, u, section(&system, u, ".data.rel.ro.u")),
        state + u_layout::RELRO_ADDEND as u64
    );

    // Every reference out of the cell is an edge, with its slot and addend.
    let mut edges: Vec<(SlotKind, u64, i64, CellId)> = system
        .registry()
        .edges()
        .map(|(_, e)| (e.kind, e.slot, e.addend, e.provider))
        .collect();
    edges.sort_unstable_by_key(|e| e.1);
    let mut expected = alloc::vec![
        (SlotKind::Got, f_slot, 0, p),
        (SlotKind::Got, state_slot, 0, p),
        (SlotKind::Data, section(&system, u, ".data.u"), 0, p),
        (
            SlotKind::Data,
            section(&system, u, ".data.rel.ro.u"),
            u_layout::RELRO_ADDEND,
            p
        ),
    ];
    expected.sort_unstable_by_key(|e| e.1);
    assert_eq!(edges, expected);
    system.registry().cell(u).unwrap().stats.clone()
}

#[test]
fn weak_undefined_symbols_are_zero_and_platform_symbols_bind() {
    let mut platform = HeapPlatform::default();
    platform.platform.insert("memcpy".into(), 0x5555_0000);
    let (mut system, ns) = system_on(platform);
    let mut cell = Cell::new();
    let data = cell.section(".data.w", Kind::Data, &[0; 16], 8);
    let weak = cell.undefined("nobody", SymbolKind::Text, true);
    let memcpy = cell.undefined("memcpy", SymbolKind::Text, false);
    cell.reloc(data, 0, weak, R_64, 16);
    cell.reloc(data, 8, memcpy, R_64, 0);
    let id = system
        .load(ns, CellSpec::named("w"), &cell.bytes())
        .unwrap();
    let at = section(&system, id, ".data.w");
    assert_eq!(word(&system, id, at), 16, "0 + A");
    assert_eq!(word(&system, id, at + 8), 0x5555_0000);
    let edge = system
        .registry()
        .edges()
        .map(|(_, e)| e.clone())
        .collect::<Vec<_>>();
    assert_eq!(
        edge.len(),
        1,
        "the platform's memcpy; nothing for the missing weak symbol"
    );
    assert_eq!(edge[0].provider, crate_metadata::Registry::PLATFORM);
}

#[test]
fn tls_pairs_hold_module_and_offset() {
    let mut platform = HeapPlatform::default();
    let base_tls = TlsSymbol {
        module: 1,
        offset: 0x40,
    };
    platform.image_tls.insert("base_tls".into(), base_tls);
    let (mut system, ns) = system_on(platform);
    let mut cell = Cell::new();
    let (text, _) = cell.func("t", &[0x90; 24]);
    let tdata = cell.section(".tdata.a", Kind::Tls, &[1; 8], 8);
    let a = cell.define("a", tdata, 4, 4, SymbolKind::Tls);
    let base = cell.undefined("base_tls", SymbolKind::Tls, false);
    cell.reloc(text, 0, base, R_TLSGD, -4);
    cell.reloc(text, 8, a, R_TLSLD, -4);
    cell.reloc(text, 16, a, R_DTPOFF32, 2);
    let id = system
        .load(ns, CellSpec::named("t"), &cell.bytes())
        .unwrap();
    let module = system
        .registry()
        .cell(id)
        .unwrap()
        .tls_module
        .expect("a module");
    let text = section(&system, id, ".text.t");
    let gd = (text as i64 + 4 + field32(&system, id, text)) as u64;
    assert_eq!(
        (word(&system, id, gd), word(&system, id, gd + 8)),
        (1, 0x40)
    );
    let ld = (text as i64 + 12 + field32(&system, id, text + 8)) as u64;
    assert_eq!(
        word(&system, id, ld),
        module,
        "TLSLD: the cell's own module"
    );
    assert_eq!(
        field32(&system, id, text + 16),
        4 + 2,
        "DTPOFF32: S + A in the block"
    );
    let edges: Vec<SlotKind> = system.registry().edges().map(|(_, e)| e.kind).collect();
    assert_eq!(edges, [SlotKind::TlsPair]);
    assert_eq!(system.platform().modules(), 1);
    system.unload(id).unwrap();
    assert_eq!(
        system.platform().modules(),
        0,
        "the module goes with the cell"
    );
}

/// Loads `bytes` as `c` next to nothing; returns the error, having checked nothing changed.
fn refused(platform: HeapPlatform, bytes: &[u8]) -> LoadError {
    let (mut system, ns) = system_on(platform);
    let before = SystemState::of(&system);
    let err = system.load(ns, CellSpec::named("c"), bytes).unwrap_err();
    before.assert_same(&SystemState::of(&system), "a refused load");
    err
}

fn malformed(what: Malformation) -> LoadError {
    LoadError::Malformed {
        cell: "c".into(),
        what,
    }
}

#[test]
fn unknown_types_and_values_that_do_not_fit_name_section_offset_and_symbol() {
    let mut cell = Cell::new();
    let (text, _) = cell.func("x", &[0x90; 16]);
    let sym = cell.undefined("far", SymbolKind::Text, false);
    cell.reloc(text, 4, sym, 250, 0);
    let mut platform = HeapPlatform::default();
    platform.platform.insert("far".into(), 0x1000);
    assert_eq!(
        refused(platform, &cell.bytes()),
        LoadError::UnknownRelocation {
            cell: "c".into(),
            section: ".text.x".into(),
            offset: 4,
            r_type: 250,
        }
    );

    // A PC-relative field cannot reach a symbol at 0x1000 from the heap.
    let mut cell = Cell::new();
    let (text, _) = cell.func("x", &[0x90; 16]);
    let sym = cell.undefined("far", SymbolKind::Text, false);
    cell.reloc(text, 4, sym, R_PC32, -4);
    let mut platform = HeapPlatform::default();
    platform.platform.insert("far".into(), 0x1000);
    match refused(platform, &cell.bytes()) {
        LoadError::RelocationOverflow {
            section,
            offset,
            r_type,
            symbol,
            value,
            ..
        } => {
            assert_eq!(
                (section.as_str(), offset, r_type, symbol.as_str()),
                (".text.x", 4, "R_X86_64_PC32", "far")
            );
            assert!(i32::try_from(value).is_err());
        }
        other => panic!("wrong error: {other}"),
    }

    // A field that ends past its section.
    let mut cell = Cell::new();
    let (text, _) = cell.func("x", &[0x90; 16]);
    let local = cell.local("here", text, 0);
    cell.reloc(text, 14, local, R_PC32, -4);
    match refused(HeapPlatform::default(), &cell.bytes()) {
        LoadError::RelocationOverflow { offset, value, .. } => {
            assert_eq!((offset, value), (14, 14))
        }
        other => panic!("wrong error: {other}"),
    }
}

#[test]
fn thread_local_references_of_the_wrong_kind_are_refused() {
    let tls_cell = |r_type: u32, to_tls: bool| -> alloc::vec::Vec<u8> {
        let mut cell = Cell::new();
        let (text, _) = cell.func("x", &[0x90; 16]);
        let tdata = cell.section(".tdata.v", Kind::Tls, &[0; 8], 8);
        let data = cell.section(".data.d", Kind::Data, &[0; 8], 8);
        let v = cell.define("v", tdata, 0, 8, SymbolKind::Tls);
        let d = cell.define("d", data, 0, 8, SymbolKind::Data);
        cell.reloc(text, 4, if to_tls { v } else { d }, r_type, -4);
        cell.bytes()
    };
    assert_eq!(
        refused(HeapPlatform::default(), &tls_cell(R_PC32, true)),
        malformed(Malformation::PlainReferenceToThreadLocal {
            r_type: "R_X86_64_PC32",
            symbol: "v".into(),
        })
    );
    assert_eq!(
        refused(HeapPlatform::default(), &tls_cell(R_TLSGD, false)),
        malformed(Malformation::TlsGdAgainstNonTls { symbol: "d".into() })
    );
    assert_eq!(
        refused(HeapPlatform::default(), &tls_cell(R_GOTPCREL, true)),
        malformed(Malformation::GotSlotForThreadLocal { symbol: "v".into() })
    );

    // A local-dynamic offset against another module's variable cannot be served.
    let mut platform = HeapPlatform::default();
    platform.image_tls.insert(
        "base_tls".into(),
        TlsSymbol {
            module: 1,
            offset: 8,
        },
    );
    let mut cell = Cell::new();
    let (text, _) = cell.func("x", &[0x90; 16]);
    let base = cell.undefined("base_tls", SymbolKind::Tls, false);
    cell.reloc(text, 4, base, R_DTPOFF32, 0);
    assert_eq!(
        refused(platform, &cell.bytes()),
        LoadError::UnsupportedTls {
            cell: "c".into(),
            symbol: "base_tls".into(),
        }
    );
}

#[test]
fn every_missing_symbol_is_listed_at_once() {
    let mut cell = Cell::new();
    let data = cell.section(".data.m", Kind::Data, &[0; 16], 8);
    let names: Vec<String> = ["a::x", "b::y"].iter().map(|p| mangle(p, 7)).collect();
    for (i, name) in names.iter().enumerate() {
        let s = cell.undefined(name, SymbolKind::Text, false);
        cell.reloc(data, 8 * i as u64, s, R_64, 0);
    }
    match refused(HeapPlatform::default(), &cell.bytes()) {
        LoadError::UndefinedSymbols {
            namespace,
            missing,
            cause,
            ..
        } => {
            assert_eq!(namespace, "_kernel");
            let demangled: Vec<&str> = missing.iter().map(|m| m.demangled.as_str()).collect();
            assert_eq!(demangled.len(), 2);
            assert!(demangled[0].starts_with("a::x") && demangled[1].starts_with("b::y"));
            assert_eq!(cause, None);
        }
        other => panic!("wrong error: {other}"),
    }
}

#[test]
fn memory_handed_out_unzeroed_holds_the_sections_over_zeros() {
    // Code (1 byte, then padding to the stubs), data (3 bytes, then padding), a `.bss`: on a
    // platform that hands out memory filled with a pattern (as one that reuses released memory
    // does), the load clears every byte it does not copy.
    let mut cell = Cell::new();
    cell.func(&mangle("x::f", 1), &[0xc3]);
    cell.static_data(&mangle("x::D", 2), &[1, 2, 3]);
    let bss = cell.bss(".bss.x", 100, 8);
    cell.define(&mangle("x::B", 3), bss, 0, 100, SymbolKind::Data);
    let platform = HeapPlatform::default();
    platform.hand_out_dirty_memory(true);
    let (mut system, ns) = system_on(platform);
    let id = system
        .load(ns, CellSpec::named("x"), &cell.bytes())
        .unwrap();
    let mapping = &system.mapped[&id].mapping;
    assert!(!mapping.zeroed(), "the platform handed out a dirty mapping");
    let bytes = mapping.read(0, mapping.len()).unwrap();
    let left = bytes
        .iter()
        .filter(|b| **b == crate::testing::DIRTY)
        .count();
    assert_eq!(left, 0, "bytes of the pattern left in the mapping");
    let at = |addr: u64| mapping.offset_of(addr).unwrap();
    let b = at(symbol(&system, id, &mangle("x::B", 3)));
    assert!(bytes[b..b + 100].iter().all(|x| *x == 0), ".bss is zero");
    let d = at(symbol(&system, id, &mangle("x::D", 2)));
    assert_eq!(bytes[d..d + 3], [1, 2, 3]);
    let f = at(symbol(&system, id, &mangle("x::f", 1)));
    assert_eq!(bytes[f], 0xc3);
}
