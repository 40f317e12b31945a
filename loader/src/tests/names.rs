//! The metadata's names laid out by the build (`.cell.names`, `crate::names`): a load that takes
//! them describes the cell exactly as a load that walks the object, and a table that does not
//! fit its object is ignored whole.

use alloc::string::String;
use alloc::vec::Vec;

use crate::prelink::names::{encode, Parts, RawSymbol, Table};
use crate::prelink::{self, names_accepted};
use crate::testing::elf::{mangle, Cell, Kind, Patch};
use crate::testing::{system, PAGE};
use crate::CellSpec;
use crate_metadata::{Names, SymbolKind};

/// A cell with an exported function, a local function whose name is not ASCII, an exported
/// static, a local static (not named in the metadata) and a loaded section without a name.
fn object() -> Vec<u8> {
    let mut cell = Cell::new();
    let (text, _) = cell.func(&mangle("x::run", 1), &[0xc3; 8]);
    cell.local_function("x::λ_helper", text, 4);
    let (data, _) = cell.static_data(&mangle("x::STATE", 2), &[1; 8]);
    cell.local("x::hidden", data, 4);
    cell.section_named(b"", Kind::ReadOnlyData, &[2; 16], 8);
    cell.bytes()
}

/// What a load of `bytes` puts in the metadata, with addresses relative to the cell's base,
/// and whether the names came from the table.
fn described(bytes: &[u8]) -> (Vec<String>, bool) {
    let (mut system, ns) = system();
    let id = system.load(ns, CellSpec::named("x"), bytes).unwrap();
    let c = system.registry().cell(id).unwrap();
    let base = c.base_addr;
    let mut out = Vec::new();
    for s in c.sections.iter() {
        out.push(alloc::format!(
            "section {} {:?} +{:#x} {}",
            s.name,
            s.kind,
            s.addr.wrapping_sub(base),
            s.size
        ));
    }
    for (what, list) in [("symbol", &c.symbols), ("local", &c.local_functions)] {
        for s in list.iter() {
            let addr = match s.kind {
                SymbolKind::Tls => s.addr,
                _ => s.addr.wrapping_sub(base),
            };
            out.push(alloc::format!(
                "{what} {} {:?} +{addr:#x} {} {:?} {:?}",
                s.name,
                s.kind,
                s.size,
                s.section,
                s.path()
            ));
        }
    }
    (out, c.stats.names_from_build)
}

/// The prelinked object and where its `.cell.names` is in the file.
fn prelinked() -> (Vec<u8>, core::ops::Range<usize>) {
    let object = prelink::prelink("x", &object(), PAGE).unwrap().object;
    let patch = Patch::of(object);
    let header = patch.section_header(patch.section_index(prelink::names::SECTION));
    let at = u64::from_le_bytes(patch.bytes[header + 24..header + 32].try_into().unwrap());
    let len = u64::from_le_bytes(patch.bytes[header + 32..header + 40].try_into().unwrap());
    (patch.bytes, at as usize..(at + len) as usize)
}

#[test]
fn a_load_that_takes_the_names_describes_the_cell_as_a_walk_does() {
    let (object, _) = prelinked();
    assert!(names_accepted("x", &object, PAGE).unwrap());
    let (taken, from_build) = described(&object);
    assert!(from_build, "the load took the table");
    let (walked, from_build) = described(&self::object());
    assert!(!from_build, "an object without the table is walked");
    assert_eq!(taken, walked);
    // Everything the object names is there: the unnamed section by its index, the local
    // function by its name, the local static not at all.
    let all = taken.join("\n");
    assert!(all.contains("local x::λ_helper Function +0x4"), "{all}");
    assert!(!all.contains("hidden"), "{all}");
    let unnamed = |l: &&String| {
        l.split(' ')
            .nth(1)
            .is_some_and(|n| n.parse::<u32>().is_ok())
    };
    assert_eq!(taken.iter().filter(unnamed).count(), 1, "{all}");
}

/// Where the parts of a `.cell.names` are in the object's file.
struct At {
    /// The section's header.
    header: usize,
    /// The section's first byte.
    start: usize,
    /// The first exported-symbol entry.
    exported: usize,
    /// The first local-function entry.
    locals: usize,
    /// The first local function's symbol index.
    local_symbol: u32,
    /// Where `λ` starts in the names' string.
    lambda: u64,
    /// Where the first export's name is in the file.
    export_name: usize,
}

/// A change to the object's `.cell.names`.
type Tamper = fn(&mut Patch, &At);

fn word(p: &Patch, at: usize) -> u64 {
    u64::from(u32::from_le_bytes(p.bytes[at..at + 4].try_into().unwrap()))
}

#[test]
fn a_names_table_that_does_not_fit_its_object_is_ignored_whole() {
    let (object, range) = prelinked();
    let (walked, _) = described(&self::object());
    let table = Table::parse(&object[range.clone()]).unwrap();
    let exported = range.start + 48 + 12 * table.sections().len();
    let probe = Patch::of(object.clone());
    let at = At {
        header: probe.section_header(probe.section_index(prelink::names::SECTION)),
        start: range.start,
        exported,
        locals: exported + 20 * table.exported().len(),
        local_symbol: table.locals().next().unwrap().0,
        lambda: table
            .text
            .windows(2)
            .position(|w| w == "λ".as_bytes())
            .unwrap() as u64,
        export_name: range.end - table.text.len() + table.exported().next().unwrap().1 .0 as usize,
    };
    let cases: [(&str, Tamper); 8] = [
        ("another layout's digest", |p, at| {
            p.put(at.start + 8, 8, 1);
        }),
        ("a section that is not loaded", |p, at| {
            p.put(at.start + 48, 4, 0);
        }),
        ("an exported symbol that is local", |p, at| {
            p.put(at.exported, 4, u64::from(at.local_symbol));
        }),
        ("one export fewer: the last is read as a local", |p, at| {
            let (e, l) = (word(p, at.start + 20), word(p, at.start + 24));
            p.put(at.start + 20, 4, e - 1).put(at.start + 24, 4, l + 1);
        }),
        ("one export fewer, the table a consistent one", |p, at| {
            let end = at.start + word(p, at.header + 32) as usize;
            let table = Table::parse(&p.bytes[at.start..end]).unwrap();
            let names = Names::from_text(String::from(core::str::from_utf8(table.text).unwrap()));
            let span = |(s, l): (u32, u32)| names.span(s, l).unwrap();
            let entry = |(i, n, path): RawSymbol| (i, span(n), path.map(span));
            let mut exported: Vec<_> = table.exported().map(entry).collect();
            exported.pop();
            let fewer = encode(&Parts {
                digest: table.digest,
                text: names.text(),
                got: span(table.got),
                stubs: span(table.stubs),
                sections: table.sections().map(|(i, n)| (i, span(n))).collect(),
                exported,
                locals: table.locals().map(entry).collect(),
            });
            p.bytes[at.start..at.start + fewer.len()].copy_from_slice(&fewer);
            p.put(at.header + 32, 8, fewer.len() as u64);
        }),
        ("a name that starts inside a character", |p, at| {
            p.put(at.locals + 4, 4, at.lambda + 1);
        }),
        ("an export named otherwise than its symbol", |p, at| {
            let last = p.bytes[at.export_name + 4];
            p.put(at.export_name + 4, 1, u64::from(last ^ 1));
        }),
        ("a name past the string", |p, at| {
            p.put(at.exported + 4, 4, u64::from(u32::MAX - 2));
        }),
    ];
    for (what, tamper) in cases {
        let mut patch = Patch::of(object.clone());
        tamper(&mut patch, &at);
        assert!(!names_accepted("x", &patch.bytes, PAGE).unwrap(), "{what}");
        let (got, from_build) = described(&patch.bytes);
        assert!(!from_build, "{what}: the table was taken");
        assert_eq!(got, walked, "{what}");
    }
}
