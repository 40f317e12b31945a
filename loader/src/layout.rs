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
//! | relro     | `.data.rel.ro.*`, `.init_array`, then the GOT           | R (W only inside a relro write window) |
//! | data      | `.data.*`, `.bss.*`                                     | R W        |
//!
//! One mapping keeps every PC-relative reference inside the cell within ±2 GiB, whatever the
//! distance to other cells: references out of the cell go through a slot.
//!
//! Every offset is computed with checked arithmetic: the sizes and alignments come from the
//! object, and a sum that does not fit is [`Malformation::LayoutOverflow`].

use alloc::vec;
use alloc::vec::Vec;
use goblin::elf::section_header::{
    SHF_ALLOC, SHF_EXECINSTR, SHF_TLS, SHF_WRITE, SHT_GROUP, SHT_NOBITS, SHT_REL, SHT_RELA,
};
use goblin::elf::sym::STT_TLS;

use crate::error::{malformed, LoadError};
use crate::index::{IndexVec, SectionIndex, SymbolIndex};
use crate::malformation::Malformation;
use crate::parse::Object;
use crate::prelink::format::{Numbering, SlotLists};
use crate::region::{Region, Regions, Span};
use crate::reloc::{self, Formula};
use crate_metadata::SectionKind;

/// Size of one call stub: `jmp *slot(%rip)` (6 bytes) and two `int3` bytes of padding.
pub(crate) const STUB_SIZE: usize = 8;
/// Largest section alignment the loader honours (one page).
const MAX_ALIGN: u64 = 4096;
/// Largest loaded section (`.bss` included). With at most 65,535 sections, every sum of sizes and
/// alignments in the layout stays far below `usize::MAX`; the sums are checked all the same.
const MAX_SECTION_SIZE: u64 = 1 << 30;
/// Marks "no entry" in the per-symbol index vectors.
pub(crate) const NONE: u32 = u32::MAX;
/// The most symbols a cell may have: every GOT, pair and stub offset (at most 24 bytes per
/// symbol) then fits a `u32` below [`NONE`]. A symbol table that large would be 4 GiB.
const MAX_SYMBOLS: usize = (NONE as usize - 16) / 24;

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
    /// Where each loaded section goes.
    pub(crate) sections: IndexVec<SectionIndex, Option<Placed>>,
    /// Where each region is.
    pub(crate) regions: Regions,
    pub(crate) got_offset: usize,
    pub(crate) got_len: usize,
    /// Per symbol: offset of its single GOT slot from `got_offset`, or [`NONE`].
    pub(crate) got: IndexVec<SymbolIndex, u32>,
    /// Per symbol: offset of its `TLSGD` pair from `got_offset`, or [`NONE`].
    pub(crate) tlsgd: IndexVec<SymbolIndex, u32>,
    /// Offset of the cell's `TLSLD` pair from `got_offset`, or [`NONE`].
    pub(crate) tlsld: u32,
    pub(crate) stubs_offset: usize,
    /// Per symbol: offset of its call stub from `stubs_offset`, or [`NONE`].
    pub(crate) stubs: IndexVec<SymbolIndex, u32>,
    pub(crate) stub_count: usize,
    /// Where `.eh_frame` is, with its zero terminator.
    pub(crate) eh_frame: Option<Span>,
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

/// A sum or rounding of the layout that does not fit a `usize`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Overflow;

fn align_up(value: usize, align: usize) -> Result<usize, Overflow> {
    value.checked_next_multiple_of(align.max(1)).ok_or(Overflow)
}

fn add(a: usize, b: usize) -> Result<usize, Overflow> {
    a.checked_add(b).ok_or(Overflow)
}

/// A section's size or alignment as a `usize` (checked against the limits by [`plan`]).
fn size(value: u64) -> Result<usize, Overflow> {
    usize::try_from(value).map_err(|_| Overflow)
}

/// Plans the cell: sections, GOT, stubs, TLS, regions.
pub(crate) fn plan(cell: &str, object: &Object<'_>, page: usize) -> Result<Layout, LoadError> {
    let kinds = classify_all(cell, object)?;
    count_slots(object, &kinds)
        .and_then(|ordinals| ordinals.slots())
        .and_then(|slots| place(object, &kinds, slots, page))
        .map_err(|Overflow| malformed(cell, Malformation::LayoutOverflow))
}

/// The layout of `object` with its GOT and stubs numbered by `lists` (a `.cell.prelink`'s, the
/// numbering [`plan`] gave at build time) instead of by a walk of every relocation; `None` when
/// the lists number no layout: a symbol twice in one list, or a stub without a GOT slot. The
/// caller checks the layout against the table's digest, and plans from the relocations when it
/// differs.
pub(crate) fn plan_numbered(
    cell: &str,
    object: &Object<'_>,
    page: usize,
    lists: &SlotLists<'_>,
) -> Result<Option<Layout>, LoadError> {
    let kinds = classify_all(cell, object)?;
    let Some(ordinals) = Ordinals::from_lists(object.syms.len(), lists) else {
        return Ok(None);
    };
    ordinals
        .slots()
        .and_then(|slots| place(object, &kinds, slots, page))
        .map(Some)
        .map_err(|Overflow| malformed(cell, Malformation::LayoutOverflow))
}

/// Every section's kind (`None`: not loaded), with its size and alignment checked.
fn classify_all(
    cell: &str,
    object: &Object<'_>,
) -> Result<IndexVec<SectionIndex, Option<SectionKind>>, LoadError> {
    let mut kinds = IndexVec::from_elem(None, object.sections.len());
    for (i, sh) in object.sections.iter_enumerated() {
        // Only a loaded section's name matters (and only those are looked up ahead).
        let name = match sh.sh_flags & u64::from(SHF_ALLOC) {
            0 => &[][..],
            _ => object.section_name_bytes(i),
        };
        kinds[i] = classify(name, sh.sh_type, sh.sh_flags);
        if kinds[i].is_some() {
            let align = sh.sh_addralign.max(1);
            if sh.sh_size > MAX_SECTION_SIZE {
                return Err(malformed(
                    cell,
                    Malformation::SectionTooLarge {
                        section: object.section_name(i),
                        sh_size: sh.sh_size,
                        max: MAX_SECTION_SIZE,
                    },
                ));
            }
            if !align.is_power_of_two() || align > MAX_ALIGN {
                return Err(malformed(
                    cell,
                    Malformation::BadAlignment {
                        section: object.section_name(i),
                        sh_addralign: align,
                    },
                ));
            }
        }
    }
    Ok(kinds)
}

/// Per symbol: its single GOT slot, its `TLSGD` pair and its call stub, each [`NONE`] or a
/// number (an ordinal in [`Ordinals`], an offset in [`Slots`]).
struct PerSymbol {
    got: IndexVec<SymbolIndex, u32>,
    tlsgd: IndexVec<SymbolIndex, u32>,
    stubs: IndexVec<SymbolIndex, u32>,
}

/// The GOT slots, TLS pairs and call stubs the relocations need, before anything is placed.
struct Slots {
    /// Offsets: of a slot or pair from the GOT's start, of a stub from the stubs' start.
    at: PerSymbol,
    tlsld: u32,
    got_len: usize,
    stub_count: usize,
}

/// The slots numbered in order of first use (each kind from 0), before they are made offsets.
struct Ordinals {
    of: PerSymbol,
    singles: u32,
    pairs: u32,
    stub_count: u32,
    want_pair_ld: bool,
}

impl Ordinals {
    /// No slot yet, for a table of `nsyms` symbols. Refusing a table of [`MAX_SYMBOLS`] or more
    /// keeps every count below `u32::MAX` (at most one slot, pair and stub per symbol).
    fn new(nsyms: usize) -> Result<Ordinals, Overflow> {
        if nsyms >= MAX_SYMBOLS {
            return Err(Overflow);
        }
        Ok(Ordinals {
            of: PerSymbol {
                got: IndexVec::from_elem(NONE, nsyms),
                tlsgd: IndexVec::from_elem(NONE, nsyms),
                stubs: IndexVec::from_elem(NONE, nsyms),
            },
            singles: 0,
            pairs: 0,
            stub_count: 0,
            want_pair_ld: false,
        })
    }

    /// The numbering `lists` gives (every symbol checked against the table when it was read);
    /// `None` when it numbers a symbol twice in one list or gives a stub no GOT slot, which
    /// [`count_slots`] never does.
    fn from_lists(nsyms: usize, lists: &SlotLists<'_>) -> Option<Ordinals> {
        let mut o = Ordinals::new(nsyms).ok()?;
        let number = |table: &mut IndexVec<SymbolIndex, u32>,
                      syms: &mut dyn Iterator<Item = usize>| {
            let mut n = 0u32;
            for sym in syms {
                let entry = table.get_mut(SymbolIndex(sym))?;
                if *entry != NONE {
                    return None;
                }
                *entry = n;
                n += 1;
            }
            Some(n)
        };
        o.singles = number(&mut o.of.got, &mut lists.singles())?;
        o.pairs = number(&mut o.of.tlsgd, &mut lists.pairs())?;
        o.stub_count = number(&mut o.of.stubs, &mut lists.stubs())?;
        o.want_pair_ld = lists.tlsld;
        let stubs_have_slots = (lists.stubs()).all(|sym| o.of.got[SymbolIndex(sym)] != NONE);
        stubs_have_slots.then_some(o)
    }

    /// The slots as offsets: the GOT holds the TLS pairs first (16 bytes each, the `TLSLD` one
    /// last), then the single slots; each stub is [`STUB_SIZE`] bytes. The offsets are checked.
    fn slots(self) -> Result<Slots, Overflow> {
        let Ordinals {
            of: mut at,
            singles,
            mut pairs,
            stub_count,
            want_pair_ld,
        } = self;
        let mut tlsld = NONE;
        if want_pair_ld {
            tlsld = pairs;
            pairs += 1;
        }
        let mul = |a: u32, b: u32| a.checked_mul(b).ok_or(Overflow);
        let pair_bytes = mul(pairs, 16)?;
        for t in at.tlsgd.items_mut().filter(|t| **t != NONE) {
            *t = mul(*t, 16)?;
        }
        if tlsld != NONE {
            tlsld = mul(tlsld, 16)?;
        }
        for g in at.got.items_mut().filter(|g| **g != NONE) {
            *g = pair_bytes.checked_add(mul(*g, 8)?).ok_or(Overflow)?;
        }
        for s in at.stubs.items_mut().filter(|s| **s != NONE) {
            *s = mul(*s, STUB_SIZE as u32)?;
        }
        let got_len = add(
            pair_bytes as usize,
            (singles as usize).checked_mul(8).ok_or(Overflow)?,
        )?;
        Ok(Slots {
            at,
            tlsld,
            got_len,
            stub_count: stub_count as usize,
        })
    }
}

/// Numbers the slots in order of first use, from a walk of every relocation of a loaded section.
fn count_slots(
    object: &Object<'_>,
    kinds: &IndexVec<SectionIndex, Option<SectionKind>>,
) -> Result<Ordinals, Overflow> {
    let mut o = Ordinals::new(object.syms.len())?;
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
                Formula::GotPcRel if o.of.got[sym] == NONE => {
                    o.of.got[sym] = o.singles;
                    o.singles += 1;
                }
                Formula::Plt32 if object.syms[sym].is_undefined() && o.of.stubs[sym] == NONE => {
                    o.of.stubs[sym] = o.stub_count;
                    o.stub_count += 1;
                    if o.of.got[sym] == NONE {
                        o.of.got[sym] = o.singles;
                        o.singles += 1;
                    }
                }
                Formula::TlsGd if o.of.tlsgd[sym] == NONE => {
                    o.of.tlsgd[sym] = o.pairs;
                    o.pairs += 1;
                }
                Formula::TlsLd => o.want_pair_ld = true,
                _ => {}
            }
        }
    }
    Ok(o)
}

/// Places the sections region by region, in file order within each, then the stubs after the
/// text, the TLS image after the read-only data and the GOT after the relro data.
fn place(
    object: &Object<'_>,
    kinds: &IndexVec<SectionIndex, Option<SectionKind>>,
    slots: Slots,
    page: usize,
) -> Result<Layout, Overflow> {
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
    let mut by_region = vec![(SectionIndex(0), SectionKind::Text); bounds[4]];
    let mut next = bounds;
    for (i, kind) in kinds.iter_enumerated() {
        if let Some((region, kind)) = regional(kind) {
            by_region[next[region]] = (i, kind);
            next[region] += 1;
        }
    }

    let mut sections: IndexVec<SectionIndex, Option<Placed>> =
        IndexVec::from_elem(None, kinds.len());
    let mut regions = Regions::default();
    let mut cursor = 0usize;
    let mut eh_frame = None;
    let mut tls = None;
    let (mut got_offset, mut stubs_offset) = (0, 0);
    for region in Region::ALL {
        let start = cursor;
        let r = region as usize;
        for &(i, kind) in &by_region[bounds[r]..bounds[r + 1]] {
            let sh = &object.sections[i];
            let offset = align_up(cursor, size(sh.sh_addralign)?)?;
            cursor = add(offset, size(sh.sh_size)?)?;
            sections[i] = Some(Placed {
                kind,
                offset,
                size: size(sh.sh_size)?,
                tls_offset: 0,
            });
            if kind == SectionKind::EhFrame {
                // libgcc walks `.eh_frame` until a zero length word: add one.
                cursor = add(cursor, 4)?;
                eh_frame = Some(Span {
                    offset,
                    len: cursor - offset,
                });
            }
        }
        match region {
            Region::Text => {
                stubs_offset = align_up(cursor, 16)?;
                cursor = add(stubs_offset, slots.stub_count * STUB_SIZE)?;
            }
            Region::ReadOnly => tls = place_tls(object, kinds, &mut sections, &mut cursor)?,
            Region::RelRo => {
                got_offset = align_up(cursor, 8)?;
                cursor = add(got_offset, slots.got_len)?;
            }
            Region::Data => {}
        }
        let end = align_up(cursor, page)?;
        regions.set(
            region,
            Span {
                offset: start,
                len: end - start,
            },
        );
        cursor = end;
    }
    Ok(Layout {
        sections,
        regions,
        got_offset,
        got_len: slots.got_len,
        got: slots.at.got,
        tlsgd: slots.at.tlsgd,
        tlsld: slots.tlsld,
        stubs_offset,
        stubs: slots.at.stubs,
        stub_count: slots.stub_count,
        eh_frame,
        tls,
    })
}

/// Places the `.tdata` sections as one contiguous image in the read-only region and sizes the
/// TLS block (`.tdata` then `.tbss`).
fn place_tls(
    object: &Object<'_>,
    kinds: &IndexVec<SectionIndex, Option<SectionKind>>,
    sections: &mut IndexVec<SectionIndex, Option<Placed>>,
    cursor: &mut usize,
) -> Result<Option<TlsLayout>, Overflow> {
    let headers = &object.sections;
    let of_kind = |kind: SectionKind| {
        kinds
            .iter_enumerated()
            .filter(move |(_, k)| **k == Some(kind))
            .map(|(i, _)| i)
    };
    let tls: Vec<SectionIndex> = of_kind(SectionKind::TlsData)
        .chain(of_kind(SectionKind::TlsBss))
        .collect();
    if tls.is_empty() {
        return Ok(None);
    }
    let mut align = 1;
    for i in &tls {
        align = align.max(size(headers[*i].sh_addralign.max(1))?);
    }
    let image_offset = align_up(*cursor, align)?;
    let (mut block, mut init_len) = (0usize, 0usize);
    for i in tls {
        let sh = &headers[i];
        let kind = kinds[i].unwrap_or(SectionKind::TlsBss);
        let tls_offset = align_up(block, size(sh.sh_addralign)?)?;
        block = add(tls_offset, size(sh.sh_size)?)?;
        let offset = if kind == SectionKind::TlsData {
            init_len = block;
            add(image_offset, tls_offset)?
        } else {
            0
        };
        sections[i] = Some(Placed {
            kind,
            offset,
            size: size(sh.sh_size)?,
            tls_offset,
        });
    }
    *cursor = add(image_offset, init_len)?;
    Ok(Some(TlsLayout {
        image_offset,
        init_len,
        size: block.max(1),
        align,
    }))
}

impl Layout {
    /// Whether any symbol of kind `STT_TLS` needs the cell's own TLS module.
    pub(crate) fn needs_tls_module(&self) -> bool {
        self.tls.is_some() || self.tlsld != NONE
    }

    /// The numbering of the GOT and the stubs, as `.cell.prelink` records it: the symbol of each
    /// single slot, pair and stub in order ([`plan_numbered`] reads it back).
    pub(crate) fn numbering(&self) -> Numbering {
        // Each kind's entries are spaced evenly from its first: 8 bytes a slot after the pairs,
        // 16 a pair, one stub size a stub.
        let pairs_len = self.got_len - 8 * self.got.iter().filter(|g| **g != NONE).count();
        let ordered = |table: &IndexVec<SymbolIndex, u32>, first: u32, size: u32| {
            let mut list: Vec<(u32, u32)> = (table.iter_enumerated())
                .filter(|(_, at)| **at != NONE)
                .map(|(sym, at)| ((at - first) / size, sym.0 as u32))
                .collect();
            list.sort_unstable();
            list.into_iter().map(|(_, sym)| sym).collect()
        };
        Numbering {
            singles: ordered(&self.got, pairs_len as u32, 8),
            pairs: ordered(&self.tlsgd, 0, 16),
            stubs: ordered(&self.stubs, 0, STUB_SIZE as u32),
            tlsld: self.tlsld != NONE,
        }
    }

    /// The text sections as (offset in the mapping, size): what an unwind table's FDEs may cover.
    pub(crate) fn text(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        self.sections
            .iter()
            .flatten()
            .filter(|p| p.kind == SectionKind::Text)
            .map(|p| (p.offset, p.size))
    }
}

impl Placed {
    /// The offset in the mapping of a symbol at `st_value` in this section; `None` when the sum
    /// does not fit (`parse` checked the value lies inside its section, so it always does for a
    /// sane object).
    pub(crate) fn offset_of(&self, st_value: u64) -> Option<usize> {
        self.offset.checked_add(usize::try_from(st_value).ok()?)
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
        assert_eq!(align_up(0, 16), Ok(0));
        assert_eq!(align_up(1, 16), Ok(16));
        assert_eq!(align_up(17, 1), Ok(17));
        assert_eq!(align_up(4097, 4096), Ok(8192));
        assert_eq!(align_up(usize::MAX, 4096), Err(Overflow));
    }
}
