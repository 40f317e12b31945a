//! Layout: where sections, the GOT, the call stubs and the TLS image go, and the sizes and
//! alignments refused.

use object::SymbolKind;

use crate::error::LoadError;
use crate::layout::{plan, NONE, STUB_SIZE};
use crate::malformation::Malformation;
use crate::parse::parse;
use crate::region::Region;
use crate::testing::cells::user;
use crate::testing::elf::{Cell, Kind, Patch, R_DTPOFF32, R_TLSGD, R_TLSLD};
use crate::testing::PAGE;

#[test]
fn regions_follow_each_other_page_aligned_with_the_stubs_and_the_got_in_place() {
    let bytes = user();
    let object = parse("u", &bytes).unwrap();
    let layout = plan("u", &object, PAGE).unwrap();
    let r = layout.regions;
    let mut end = 0;
    for region in Region::ALL {
        let span = r.get(region);
        assert_eq!(span.offset, end, "{region:?} follows the one before");
        assert_eq!(span.offset % PAGE, 0);
        assert_eq!(span.len % PAGE, 0);
        end = span.end();
    }
    // p::f gets a stub and a slot (PLT32 against an undefined symbol), p::STATE a slot.
    assert_eq!(layout.stub_count, 1);
    assert_eq!(layout.got_len, 16);
    let slots: alloc::vec::Vec<u32> = layout.got.iter().copied().filter(|g| *g != NONE).collect();
    assert_eq!(slots.len(), 2);
    assert!(r.text.offset <= layout.stubs_offset);
    assert!(layout.stubs_offset + STUB_SIZE <= r.text.end());
    assert!(r.relro.offset <= layout.got_offset && layout.got_offset + 16 <= r.relro.end());
    // Every loaded section lies in the region of its kind.
    for (i, placed) in layout.sections.iter_enumerated() {
        let Some(p) = placed else { continue };
        let name = object.section_name(i);
        let region = if name.starts_with(".text") {
            r.text
        } else if name.starts_with(".data.rel.ro") {
            r.relro
        } else {
            r.data
        };
        assert!(
            region.offset <= p.offset && p.offset + p.size <= region.end(),
            "{name}"
        );
    }
}

#[test]
fn thread_locals_get_an_image_pairs_and_a_block() {
    let mut cell = Cell::new();
    let code = [
        0x66, 0x48, 0x8d, 0x3d, 0, 0, 0, 0, 0x8b, 0x80, 0, 0, 0, 0, 0xc3,
    ];
    let (text, _) = cell.func("t", &code);
    let tdata = cell.section(".tdata.a", Kind::Tls, &[1, 2, 3, 4, 5, 6, 7, 8], 8);
    let a = cell.define("a", tdata, 0, 8, SymbolKind::Tls);
    let tbss = cell.section(".tbss.b", Kind::UninitializedTls, &[0; 24], 16);
    let b = cell.define("b", tbss, 0, 24, SymbolKind::Tls);
    let other = cell.undefined("other_tls", SymbolKind::Tls, false);
    cell.reloc(text, 4, other, R_TLSGD, -4);
    cell.reloc(text, 4, a, R_TLSLD, -4);
    cell.reloc(text, 10, b, R_DTPOFF32, 0);
    let bytes = cell.bytes();
    let object = parse("t", &bytes).unwrap();
    let layout = plan("t", &object, PAGE).unwrap();
    // One TLSGD pair (other_tls), one TLSLD pair, no single slot.
    assert_eq!(layout.got_len, 32);
    assert_ne!(layout.tlsld, NONE);
    assert_eq!(layout.tlsgd.iter().filter(|t| **t != NONE).count(), 1);
    let tls = layout.tls.expect("a TLS block");
    assert_eq!(tls.init_len, 8, ".tdata");
    assert_eq!(tls.size, 16 + 24, ".tdata, then .tbss aligned to 16");
    assert_eq!(tls.align, 16);
    let r = layout.regions;
    assert!(r.read_only.offset <= tls.image_offset && tls.image_offset + 8 <= r.read_only.end());
    assert!(layout.needs_tls_module());
}

#[test]
fn huge_sections_and_odd_alignments_are_refused() {
    let mut cell = Cell::new();
    cell.bss(".bss.big", 1 << 31, 8);
    let err = plan("c", &parse("c", &cell.bytes()).unwrap(), PAGE).unwrap_err();
    assert_eq!(
        err,
        LoadError::Malformed {
            cell: "c".into(),
            what: Malformation::SectionTooLarge {
                section: ".bss.big".into(),
                sh_size: 1 << 31,
                max: 1 << 30,
            },
        }
    );

    let mut cell = Cell::new();
    cell.section(".data.wide", Kind::Data, &[0; 8], 8192);
    let err = plan("c", &parse("c", &cell.bytes()).unwrap(), PAGE).unwrap_err();
    assert_eq!(
        err,
        LoadError::Malformed {
            cell: "c".into(),
            what: Malformation::BadAlignment {
                section: ".data.wide".into(),
                sh_addralign: 8192,
            },
        }
    );

    // No writer makes an alignment that is not a power of two: patch one.
    let mut cell = Cell::new();
    cell.section(".data.odd", Kind::Data, &[0; 8], 8);
    let mut patch = Patch::of(cell.bytes());
    let at = patch.section_header(patch.section_index(".data.odd")) + 48;
    patch.put(at, 8, 12);
    let err = plan("c", &parse("c", &patch.bytes).unwrap(), PAGE).unwrap_err();
    assert_eq!(
        err,
        LoadError::Malformed {
            cell: "c".into(),
            what: Malformation::BadAlignment {
                section: ".data.odd".into(),
                sh_addralign: 12,
            },
        }
    );
}
