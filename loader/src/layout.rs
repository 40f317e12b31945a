//! Layout: which region every section goes to, where in the cell's one mapping, and how many GOT
//! slots, TLS pairs and call stubs the relocations need.
//!
//! A cell is one mapping with four page-aligned regions, each with its own permissions after
//! load, so W^X holds at every moment:
//!
//! | region    | holds                                                   | after load |
//! |-----------|---------------------------------------------------------|------------|
//! | text      | `.text.*`, then the call stubs                          | R X        |
//! | read-only | `.rodata.*`, `.gcc_except_table.*`, `.eh_frame` + 4 zero bytes, the `.tdata` image | R |
//! | relro     | `.data.rel.ro.*`, `.init_array`, then the GOT           | R (W only inside a commit) |
//! | data      | `.data.*`, `.bss.*`                                     | R W        |
//!
//! One mapping keeps every PC-relative reference inside the cell within ±2 GiB, whatever the
//! distance to other cells: references out of the cell go through a slot.

use alloc::format;
use alloc::vec;
use alloc::vec::Vec;
use goblin::elf::section_header::{
    SHF_ALLOC, SHF_EXECINSTR, SHF_TLS, SHF_WRITE, SHT_GROUP, SHT_NOBITS, SHT_REL, SHT_RELA,
};
use goblin::elf::sym::STT_TLS;

use crate::error::LoadError;
use crate::parse::Object;
use crate::reloc::{self, Formula};
use crate_metadata::SectionKind;

/// Size of one call stub: `jmp *slot(%rip)` (6 bytes) and two `int3` bytes of padding.
pub(crate) const STUB_SIZE: usize = 8;
/// Largest section alignment the loader honours (one page).
const MAX_ALIGN: u64 = 4096;
/// Largest loaded section (`.bss` included). With at most 65,535 sections, every sum of sizes and
/// alignments in the layout stays far below `usize::MAX`, so none of it can overflow.
const MAX_SECTION_SIZE: u64 = 1 << 30;
/// Marks "no entry" in the per-symbol index vectors.
pub(crate) const NONE: u32 = u32::MAX;

/// The four regions of a cell's mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Region {
    Text = 0,
    ReadOnly = 1,
    RelRo = 2,
    Data = 3,
}

/// Where one section of the object went.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Placed {
    pub(crate) kind: SectionKind,
    /// Offset in the mapping (for `.tbss`, which is not mapped: 0).
    pub(crate) offset: usize,
    pub(crate) size: usize,
    /// For thread-local sections: the offset in the TLS block.
    pub(crate) tls_offset: usize,
}

/// The cell's thread-local block.
#[derive(Clone, Copy, Debug)]
pub(crate) struct TlsLayout {
    /// Offset of the `.tdata` image in the mapping.
    pub(crate) image_offset: usize,
    pub(crate) init_len: usize,
    pub(crate) size: usize,
    pub(crate) align: usize,
}

/// The whole plan for one cell.
#[derive(Debug)]
pub(crate) struct Layout {
    /// Indexed by section header index.
    pub(crate) sections: Vec<Option<Placed>>,
    /// Offset and length of each region, in [`Region`] order.
    pub(crate) regions: [(usize, usize); 4],
    pub(crate) total: usize,
    pub(crate) got_offset: usize,
    pub(crate) got_len: usize,
    /// Per symbol: offset of its single GOT slot from `got_offset`, or [`NONE`].
    pub(crate) got: Vec<u32>,
    /// Per symbol: offset of its `TLSGD` pair from `got_offset`, or [`NONE`].
    pub(crate) tlsgd: Vec<u32>,
    /// Offset of the cell's `TLSLD` pair from `got_offset`, or [`NONE`].
    pub(crate) tlsld: u32,
    pub(crate) stubs_offset: usize,
    /// Per symbol: offset of its call stub from `stubs_offset`, or [`NONE`].
    pub(crate) stubs: Vec<u32>,
    pub(crate) stub_count: usize,
    /// Offset and length (with the zero terminator) of `.eh_frame`.
    pub(crate) eh_frame: Option<(usize, usize)>,
    pub(crate) tls: Option<TlsLayout>,
}

/// What a section is, from its flags and name; `None` for sections that are not loaded.
pub(crate) fn classify(name: &[u8], sh_type: u32, sh_flags: u64) -> Option<SectionKind> {
    if sh_flags & u64::from(SHF_ALLOC) == 0 || matches!(sh_type, SHT_GROUP | SHT_REL | SHT_RELA) {
        return None;
    }
    let nobits = sh_type == SHT_NOBITS;
    Some(if sh_flags & u64::from(SHF_TLS) != 0 {
        if nobits {
            SectionKind::TlsBss
        } else {
            SectionKind::TlsData
        }
    } else if sh_flags & u64::from(SHF_EXECINSTR) != 0 {
        SectionKind::Text
    } else if name == b".eh_frame" {
        SectionKind::EhFrame
    } else if sh_flags & u64::from(SHF_WRITE) != 0 {
        if name.starts_with(b".data.rel.ro")
            || name.starts_with(b".init_array")
            || name.starts_with(b".fini_array")
        {
            SectionKind::RelRo
        } else if nobits {
            SectionKind::Bss
        } else {
            SectionKind::Data
        }
    } else {
        SectionKind::ReadOnly
    })
}

fn region_of(kind: SectionKind) -> Region {
    match kind {
        SectionKind::Text | SectionKind::Stubs => Region::Text,
        SectionKind::ReadOnly
        | SectionKind::EhFrame
        | SectionKind::TlsData
        | SectionKind::TlsBss => Region::ReadOnly,
        SectionKind::RelRo | SectionKind::Got => Region::RelRo,
        SectionKind::Data | SectionKind::Bss => Region::Data,
    }
}

fn align_up(value: usize, align: usize) -> usize {
    value.next_multiple_of(align.max(1))
}

/// Plans the cell: sections, GOT, stubs, TLS, regions.
pub(crate) fn plan(cell: &str, object: &Object<'_>, page: usize) -> Result<Layout, LoadError> {
    let shnum = object.sections.len();
    let nsyms = object.syms.len();
    let mut kinds: Vec<Option<SectionKind>> = vec![None; shnum];
    for (i, sh) in object.sections.iter().enumerate() {
        // Only a loaded section's name matters (and only those are looked up ahead).
        let name = match sh.sh_flags & u64::from(SHF_ALLOC) {
            0 => &[][..],
            _ => object.section_name_bytes(i),
        };
        kinds[i] = classify(name, sh.sh_type, sh.sh_flags);
        if kinds[i].is_some() {
            let align = sh.sh_addralign.max(1);
            if sh.sh_size > MAX_SECTION_SIZE {
                return Err(LoadError::Malformed {
                    cell: cell.into(),
                    reason: format!(
                        "section {} is {} bytes; a loaded section is at most {MAX_SECTION_SIZE}",
                        object.section_name(i),
                        sh.sh_size
                    ),
                });
            }
            if !align.is_power_of_two() || align > MAX_ALIGN {
                return Err(LoadError::Malformed {
                    cell: cell.into(),
                    reason: format!(
                        "section {} asks for alignment {align}",
                        object.section_name(i)
                    ),
                });
            }
        }
    }

    // Slots the relocations need, counted before anything is placed.
    let mut got = vec![NONE; nsyms];
    let mut tlsgd = vec![NONE; nsyms];
    let mut stubs = vec![NONE; nsyms];
    let mut tlsld = NONE;
    let (mut singles, mut pairs, mut stub_count) = (0u32, 0u32, 0u32);
    let mut want_pair_ld = false;
    for section in &object.rela_sections {
        if kinds[section.target].is_none() {
            continue; // relocations of sections that are not loaded (debug info) are ignored
        }
        for r in object.relas(section) {
            let Some(ty) = reloc::lookup(r.r_type) else {
                continue; // reported with its section and offset when relocating
            };
            let sym = r.r_sym;
            match ty.formula {
                Formula::GotPcRel if got[sym] == NONE => {
                    got[sym] = singles;
                    singles += 1;
                }
                Formula::Plt32 if object.syms[sym].st_shndx == 0 && stubs[sym] == NONE => {
                    stubs[sym] = stub_count;
                    stub_count += 1;
                    if got[sym] == NONE {
                        got[sym] = singles;
                        singles += 1;
                    }
                }
                Formula::TlsGd if tlsgd[sym] == NONE => {
                    tlsgd[sym] = pairs;
                    pairs += 1;
                }
                Formula::TlsLd => want_pair_ld = true,
                _ => {}
            }
        }
    }
    if want_pair_ld {
        tlsld = pairs;
        pairs += 1;
    }
    // GOT: pairs first (16 bytes each), then single slots.
    let pair_bytes = pairs as usize * 16;
    for t in tlsgd.iter_mut().filter(|t| **t != NONE) {
        *t *= 16;
    }
    if tlsld != NONE {
        tlsld *= 16;
    }
    for g in got.iter_mut().filter(|g| **g != NONE) {
        *g = pair_bytes as u32 + *g * 8;
    }
    for s in stubs.iter_mut().filter(|s| **s != NONE) {
        *s *= STUB_SIZE as u32;
    }
    let got_len = pair_bytes + singles as usize * 8;

    // The loaded sections but the thread-local ones (placed by `place_tls`), grouped by region and
    // in file order within each (a counting sort: two passes over the headers instead of one per
    // region).
    let regional = |kind: &Option<SectionKind>| match *kind {
        Some(SectionKind::TlsData | SectionKind::TlsBss) | None => None,
        Some(kind) => Some((region_of(kind) as usize, kind)),
    };
    let mut bounds = [0usize; 5];
    for (region, _) in kinds.iter().filter_map(regional) {
        bounds[region + 1] += 1;
    }
    for r in 1..bounds.len() {
        bounds[r] += bounds[r - 1];
    }
    let mut by_region = vec![(0usize, SectionKind::Text); bounds[4]];
    let mut next = bounds;
    for (i, kind) in kinds.iter().enumerate() {
        if let Some((region, kind)) = regional(kind) {
            by_region[next[region]] = (i, kind);
            next[region] += 1;
        }
    }

    // Place sections region by region, in file order.
    let mut sections: Vec<Option<Placed>> = vec![None; shnum];
    let mut regions = [(0usize, 0usize); 4];
    let mut cursor = 0usize;
    let mut eh_frame = None;
    let mut tls = None;
    let (mut got_offset, mut stubs_offset) = (0, 0);
    for region in [Region::Text, Region::ReadOnly, Region::RelRo, Region::Data] {
        let start = cursor;
        let mut place = |i: usize, kind: SectionKind, cursor: &mut usize| {
            let sh = &object.sections[i];
            let offset = align_up(*cursor, sh.sh_addralign as usize);
            *cursor = offset + sh.sh_size as usize;
            sections[i] = Some(Placed {
                kind,
                offset,
                size: sh.sh_size as usize,
                tls_offset: 0,
            });
            offset
        };
        let r = region as usize;
        for &(i, kind) in &by_region[bounds[r]..bounds[r + 1]] {
            let offset = place(i, kind, &mut cursor);
            if kind == SectionKind::EhFrame {
                // libgcc walks `.eh_frame` until a zero length word: add one.
                cursor += 4;
                eh_frame = Some((offset, cursor - offset));
            }
        }
        match region {
            Region::Text => {
                stubs_offset = align_up(cursor, 16);
                cursor = stubs_offset + stub_count as usize * STUB_SIZE;
            }
            Region::ReadOnly => tls = place_tls(object, &kinds, &mut sections, &mut cursor),
            Region::RelRo => {
                got_offset = align_up(cursor, 8);
                cursor = got_offset + got_len;
            }
            Region::Data => {}
        }
        let end = align_up(cursor, page);
        regions[region as usize] = (start, end - start);
        cursor = end;
    }
    Ok(Layout {
        sections,
        regions,
        total: cursor,
        got_offset,
        got_len,
        got,
        tlsgd,
        tlsld,
        stubs_offset,
        stubs,
        stub_count: stub_count as usize,
        eh_frame,
        tls,
    })
}

/// Places the `.tdata` sections as one contiguous image in the read-only region and sizes the
/// TLS block (`.tdata` then `.tbss`).
fn place_tls(
    object: &Object<'_>,
    kinds: &[Option<SectionKind>],
    sections: &mut [Option<Placed>],
    cursor: &mut usize,
) -> Option<TlsLayout> {
    let headers = &object.sections;
    let tls: Vec<usize> = (0..kinds.len())
        .filter(|i| matches!(kinds[*i], Some(SectionKind::TlsData)))
        .chain((0..kinds.len()).filter(|i| matches!(kinds[*i], Some(SectionKind::TlsBss))))
        .collect();
    if tls.is_empty() {
        return None;
    }
    let align = tls
        .iter()
        .map(|i| headers[*i].sh_addralign.max(1) as usize)
        .max()
        .unwrap_or(1);
    let image_offset = align_up(*cursor, align);
    let (mut block, mut init_len) = (0usize, 0usize);
    for i in tls {
        let sh = &headers[i];
        let kind = kinds[i].unwrap_or(SectionKind::TlsBss);
        let tls_offset = align_up(block, sh.sh_addralign as usize);
        block = tls_offset + sh.sh_size as usize;
        let offset = if kind == SectionKind::TlsData {
            init_len = block;
            image_offset + tls_offset
        } else {
            0
        };
        sections[i] = Some(Placed {
            kind,
            offset,
            size: sh.sh_size as usize,
            tls_offset,
        });
    }
    *cursor = image_offset + init_len;
    Some(TlsLayout {
        image_offset,
        init_len,
        size: block.max(1),
        align,
    })
}

impl Layout {
    /// Whether any symbol of kind `STT_TLS` needs the cell's own TLS module.
    pub(crate) fn needs_tls_module(&self) -> bool {
        self.tls.is_some() || self.tlsld != NONE
    }
}

/// `STT_TLS`, for callers that check symbol types.
pub(crate) const TLS_SYMBOL: u8 = STT_TLS;

#[cfg(test)]
mod tests {
    use super::*;
    use goblin::elf::section_header::{SHT_PROGBITS, SHT_X86_64_UNWIND};

    const A: u64 = SHF_ALLOC as u64;
    const W: u64 = SHF_WRITE as u64;
    const X: u64 = SHF_EXECINSTR as u64;
    const T: u64 = SHF_TLS as u64;

    #[test]
    fn sections_are_classified_by_flags_and_name() {
        assert_eq!(
            classify(b".text.f", SHT_PROGBITS, A | X),
            Some(SectionKind::Text)
        );
        assert_eq!(
            classify(b".rodata.x", SHT_PROGBITS, A),
            Some(SectionKind::ReadOnly)
        );
        assert_eq!(
            classify(b".eh_frame", SHT_X86_64_UNWIND, A),
            Some(SectionKind::EhFrame)
        );
        assert_eq!(
            classify(b".data.rel.ro..L", SHT_PROGBITS, A | W),
            Some(SectionKind::RelRo)
        );
        assert_eq!(
            classify(b".init_array", 14, A | W),
            Some(SectionKind::RelRo)
        );
        assert_eq!(
            classify(b".data.x", SHT_PROGBITS, A | W),
            Some(SectionKind::Data)
        );
        assert_eq!(
            classify(b".bss.x", SHT_NOBITS, A | W),
            Some(SectionKind::Bss)
        );
        assert_eq!(
            classify(b".tdata.x", SHT_PROGBITS, A | W | T),
            Some(SectionKind::TlsData)
        );
        assert_eq!(
            classify(b".tbss.x", SHT_NOBITS, A | W | T),
            Some(SectionKind::TlsBss)
        );
        assert_eq!(classify(b".comment", SHT_PROGBITS, 0), None);
        assert_eq!(classify(b".rela.text", SHT_RELA, A), None);
    }

    #[test]
    fn regions_keep_w_xor_x() {
        for kind in [
            SectionKind::Text,
            SectionKind::Stubs,
            SectionKind::ReadOnly,
            SectionKind::EhFrame,
            SectionKind::RelRo,
            SectionKind::Got,
            SectionKind::Data,
            SectionKind::Bss,
        ] {
            let region = region_of(kind);
            let executable = region == Region::Text;
            let writable_after_load = region == Region::Data;
            assert!(!(executable && writable_after_load), "{kind:?}");
        }
    }

    #[test]
    fn align_up_rounds() {
        assert_eq!(align_up(0, 16), 0);
        assert_eq!(align_up(1, 16), 16);
        assert_eq!(align_up(17, 1), 17);
        assert_eq!(align_up(4097, 4096), 8192);
    }
}
