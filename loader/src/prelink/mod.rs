//! Prelinking (DESIGN §3, "Relocations resolved at build time"): `cargo cell build` applies every
//! relocation whose value the cell's layout alone decides, so that a load applies only the rest.
//!
//! A cell is one mapping ([`crate::layout`]) and its layout depends only on the object and the
//! page size. A PC-relative field that reaches the cell's own code or data, its GOT, a TLS pair
//! or a call stub therefore holds the same value wherever the cell is mapped and whatever the
//! namespace binds its undefined symbols to: the distance between two places of one mapping.
//! In Rust code these are nearly all relocations (calls, string and constant addresses, GOT
//! loads, `.eh_frame`'s code addresses). A 64-bit absolute word that points into the cell
//! (vtables, `&'static` data) holds the mapping's address plus a constant: the build writes the
//! constant and the load adds the address (`ld.so`'s `R_X86_64_RELATIVE`). What the load applies
//! in full is what depends on another cell: words and fields that reach one without a slot, and
//! thread-local offsets.
//!
//! [`prelink`] writes those values into the section bytes, orders each relocation section as
//! the relocations left in full, then the relative words, then the ones applied (each group in
//! its order), and adds a [`format::SECTION`] that says how many of each group there are and
//! which layout the values are for ([`digest`]). A load whose own layout has another digest
//! (another page size, another loader) ignores the section and applies every relocation, as it
//! does for an object without one, overwriting every value the build wrote. The GOT slots,
//! stubs and edges are made at load as before: only the values of the fields are computed ahead.
//! The section is trusted as the code is (the manifest's digest and signature cover both); every
//! write the load makes from it is bounds-checked as any other.

mod append;
pub(crate) mod format;
pub mod names;
mod unwind;

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use goblin::elf::section_header::{SHN_ABS, SHT_NOBITS};

use crate::error::LoadError;
use crate::index::{SectionIndex, SymbolIndex};
use crate::layout::{self, Layout, Placed, NONE};
use crate::parse::{self, Object, Rela};
use crate::reloc::{self, Field, Formula};
use crate_metadata::SectionKind;

pub use format::SECTION;

/// The page size a cell is prelinked for: x86_64's, which the hosted and the bare-metal platforms
/// both have. A platform with another one gets another layout and applies every relocation.
pub const PAGE_SIZE: usize = 4096;

/// Why an object could not be prelinked.
#[derive(Debug)]
pub enum PrelinkError {
    /// The loader refuses the object.
    Load(LoadError),
    /// The object has too many sections to add one more without ELF's extended numbering.
    NoRoomForSection {
        /// The cell.
        cell: String,
    },
    /// A relocation that was constant under the object's first layout is not under the layout of
    /// the reordered object (a bug of the prelinker: reported rather than written).
    Inconsistent {
        /// The cell.
        cell: String,
        /// The relocation's offset in its section.
        offset: u64,
    },
}

impl fmt::Display for PrelinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PrelinkError::Load(e) => write!(f, "{e}"),
            PrelinkError::NoRoomForSection { cell } => write!(
                f,
                "the object of cell `{cell}` has too many sections to add {SECTION}"
            ),
            PrelinkError::Inconsistent { cell, offset } => write!(
                f,
                "prelinking cell `{cell}`: the relocation at offset {offset:#x} changed value \
                 when the relocations were reordered"
            ),
        }
    }
}

impl From<LoadError> for PrelinkError {
    fn from(e: LoadError) -> Self {
        PrelinkError::Load(e)
    }
}

/// A prelinked object.
#[derive(Debug)]
pub struct Prelinked {
    /// The object, with the values written, its relocations reordered and [`SECTION`] added.
    pub object: Vec<u8>,
    /// The relocations applied.
    pub applied: usize,
    /// The 64-bit words the load adds the mapping's address to.
    pub relative: usize,
    /// The relocations left for the load in full (of every section, loaded or not).
    pub left: usize,
}

/// What the build does with one relocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ahead {
    /// Nothing: the load applies it in full.
    Left,
    /// Writes the field's offset in the mapping (S + A less the mapping's address): the load adds
    /// the mapping's address.
    Relative(i64),
    /// Writes the value: the layout alone decides it.
    Applied(i32),
}

/// Prelinks `object`, the object of cell `cell`, for a platform with pages of `page` bytes (the
/// module's doc).
pub fn prelink(cell: &str, object: &[u8], page: usize) -> Result<Prelinked, PrelinkError> {
    // What the build does with a relocation does not depend on the GOT's order; the GOT's order
    // does depend on the relocations' (a slot per symbol in order of first use), so the values
    // are computed with the layout of the reordered object.
    let mut out = object.to_vec();
    let (mut residual, mut relative) = (Vec::new(), Vec::new());
    {
        let parsed = parse::parse(cell, object)?;
        let plan = layout::plan(cell, &parsed, page)?;
        for rela in &parsed.rela_sections {
            let placed = placed_with_bytes(&parsed, &plan, rela.target);
            let mut groups: [Vec<&[u8; 24]>; 3] = Default::default();
            for (r, bytes) in parsed.relas(rela).zip(rela.entries().iter()) {
                let group = match placed.map(|p| ahead(&parsed, &plan, &p, &r)) {
                    None | Some(Ahead::Left) => 0,
                    Some(Ahead::Relative(_)) => 1,
                    Some(Ahead::Applied(_)) => 2,
                };
                groups[group].push(bytes);
            }
            residual.push(groups[0].len() as u32);
            relative.push(groups[1].len() as u32);
            let at = parsed.sections[rela.file_section].sh_offset as usize;
            for (k, bytes) in groups.iter().flatten().enumerate() {
                let start = at + k * bytes.len();
                out[start..start + bytes.len()].copy_from_slice(*bytes);
            }
        }
    }
    let mut patches: Vec<(usize, Ahead)> = Vec::new();
    let mut direct = Vec::new();
    let (digest, numbering) = {
        let parsed = parse::parse(cell, &out)?;
        let plan = layout::plan(cell, &parsed, page)?;
        for (k, rela) in parsed.rela_sections.iter().enumerate() {
            let Some(placed) = placed_with_bytes(&parsed, &plan, rela.target) else {
                continue;
            };
            let at = parsed.sections[rela.target].sh_offset as usize;
            let (left, relative) = (residual[k] as usize, relative[k] as usize);
            for (i, r) in parsed.relas(rela).enumerate().skip(left) {
                // Of its group under the first layout, so under this one: the same symbols have
                // slots and stubs, and the sections are where they were.
                let what = ahead(&parsed, &plan, &placed, &r);
                let group_holds = match what {
                    Ahead::Relative(_) => i < left + relative,
                    Ahead::Applied(_) => i >= left + relative,
                    Ahead::Left => false,
                };
                if !group_holds {
                    return Err(PrelinkError::Inconsistent {
                        cell: cell.into(),
                        offset: r.r_offset,
                    });
                }
                patches.push((at + r.r_offset as usize, what));
                let slotless = reloc::lookup(r.r_type)
                    .is_some_and(|t| matches!(t.formula, Formula::Pc32 | Formula::Abs64));
                if slotless {
                    direct.push(r.r_sym.0 as u32);
                }
            }
        }
        (digest(&parsed, &plan), plan.numbering())
    };
    let mut applied = 0;
    for (at, what) in patches {
        match what {
            Ahead::Applied(v) => {
                out[at..at + 4].copy_from_slice(&v.to_le_bytes());
                applied += 1;
            }
            Ahead::Relative(v) => out[at..at + 8].copy_from_slice(&v.to_le_bytes()),
            Ahead::Left => {}
        }
    }
    direct.sort_unstable();
    direct.dedup();
    let at_load: Vec<u32> = residual.iter().zip(&relative).map(|(a, b)| a + b).collect();
    let unwind = {
        let parsed = parse::parse(cell, &out)?;
        let plan = layout::plan(cell, &parsed, page)?;
        unwind::checked_table(&parsed, &plan, page, &at_load)
    };
    let section = format::encode(digest, unwind, &residual, &relative, &direct, &numbering);
    let object = append::append_section(&out, SECTION, &section)
        .ok_or_else(|| PrelinkError::NoRoomForSection { cell: cell.into() })?;
    let object = with_names(cell, object, page)?;
    Ok(Prelinked {
        object,
        applied,
        relative: relative.iter().map(|n| *n as usize).sum(),
        left: residual.iter().map(|n| *n as usize).sum(),
    })
}

/// `object` with a [`names::SECTION`]: the names a load gives the cell's metadata, found by the
/// walk a load without the table makes, laid out for the layout the load takes. Unchanged when
/// the load would not take the object's `.cell.prelink` (the names are for that layout only).
fn with_names(cell: &str, object: Vec<u8>, page: usize) -> Result<Vec<u8>, PrelinkError> {
    let section = {
        let parsed = parse::parse(cell, &object)?;
        let (layout, table) = plan(cell, &parsed, page)?;
        let Some(table) = table else {
            return Ok(object);
        };
        crate::names::walk(cell, &parsed, &layout)?.encode(table.digest)
    };
    append::append_section(&object, names::SECTION, &section)
        .ok_or_else(|| PrelinkError::NoRoomForSection { cell: cell.into() })
}

/// Whether a load of `object` (a prelinked one) on a platform with pages of `page` bytes takes
/// its [`names::SECTION`], and the table names everything exactly as a walk of the object does.
pub fn names_accepted(cell: &str, object: &[u8], page: usize) -> Result<bool, LoadError> {
    let parsed = parse::parse(cell, object)?;
    let (layout, table) = plan(cell, &parsed, page)?;
    let named = crate::names::cell_names(cell, &parsed, &layout, table.map(|t| t.digest))?;
    Ok(named.from_table && named.same_as(&crate::names::walk(cell, &parsed, &layout)?))
}

/// The layout a load of `object` uses, with the object's `.cell.prelink` when the table was made
/// for that layout. The GOT and the stubs are numbered from the table's lists when it has a
/// table (no walk of every relocation); when the layout that gives does not have the table's
/// digest, they are numbered from the relocations, as for an object without a table, and the
/// table is used only if it was made for that layout.
pub(crate) fn plan<'a>(
    cell: &str,
    object: &Object<'a>,
    page: usize,
) -> Result<(Layout, Option<format::Prelink<'a>>), LoadError> {
    if let Some(table) = object.prelink {
        let numbered = layout::plan_numbered(cell, object, page, &table.slots)?;
        if let Some(layout) = numbered.filter(|l| digest(object, l) == table.digest) {
            return Ok((layout, Some(table)));
        }
    }
    let layout = layout::plan(cell, object, page)?;
    let table = (object.prelink).filter(|p| p.digest == digest(object, &layout));
    Ok((layout, table))
}

/// Whether a load of `object` (a prelinked one) on a platform with pages of `page` bytes uses its
/// [`SECTION`]: it has one that fits it, made for the layout the load computes, numbered from
/// its lists.
pub fn accepted(cell: &str, object: &[u8], page: usize) -> Result<bool, LoadError> {
    let parsed = parse::parse(cell, object)?;
    let Some(table) = parsed.prelink else {
        return Ok(false);
    };
    let numbered = layout::plan_numbered(cell, &parsed, page, &table.slots)?;
    Ok(numbered.is_some_and(|l| digest(&parsed, &l) == table.digest))
}

/// Where section `index` goes, if it is loaded and has bytes in the file to write values into.
fn placed_with_bytes(object: &Object<'_>, layout: &Layout, index: SectionIndex) -> Option<Placed> {
    let placed = layout.sections.get(index).copied().flatten()?;
    let tls = matches!(placed.kind, SectionKind::TlsData | SectionKind::TlsBss);
    (!tls && object.sections[index].sh_type != SHT_NOBITS).then_some(placed)
}

/// The offset in the mapping of symbol `sym` when the cell defines it in a loaded section that is
/// not thread-local (what [`crate::system`] binds it to, less the mapping's address).
fn own_offset(object: &Object<'_>, layout: &Layout, sym: SymbolIndex) -> Option<i128> {
    let s = object.syms.get(sym)?;
    if s.st_shndx == SHN_ABS as usize {
        return None;
    }
    let placed = layout.sections.get(s.section()?).copied().flatten()?;
    if matches!(placed.kind, SectionKind::TlsData | SectionKind::TlsBss) {
        return None;
    }
    Some(placed.offset_of(s.st_value)? as i128)
}

/// What the build does with relocation `r` of a section placed at `placed`: the value it writes
/// when the layout alone decides it and it fits its field, the offset when the load only adds
/// the mapping's address; the same formulas as [`crate::link`]'s with the mapping at 0.
fn ahead(object: &Object<'_>, layout: &Layout, placed: &Placed, r: &Rela) -> Ahead {
    let Some(ty) = reloc::lookup(r.r_type) else {
        return Ahead::Left;
    };
    let end = r.r_offset.checked_add(ty.field.width() as u64);
    if end.is_none_or(|end| end > placed.size as u64) {
        return Ahead::Left; // refused by the load, with its section and offset
    }
    let p = placed.offset as i128 + i128::from(r.r_offset);
    let a = i128::from(r.r_addend);
    let sym = r.r_sym;
    let slot = |rel: u32| (rel != NONE).then(|| layout.got_offset as i128 + i128::from(rel));
    let target = match ty.formula {
        Formula::Abs64 => {
            let offset = own_offset(object, layout, sym).map(|s| s + a);
            return match offset.and_then(|o| i64::try_from(o).ok()) {
                Some(o) => Ahead::Relative(o),
                None => Ahead::Left,
            };
        }
        Formula::Pc32 => own_offset(object, layout, sym),
        Formula::Plt32 if layout.stubs[sym] != NONE => {
            Some(layout.stubs_offset as i128 + i128::from(layout.stubs[sym]))
        }
        Formula::Plt32 => own_offset(object, layout, sym),
        Formula::GotPcRel => slot(layout.got[sym]),
        Formula::TlsGd => slot(layout.tlsgd[sym]),
        Formula::TlsLd => slot(layout.tlsld),
        Formula::DtpOff32 => None,
    };
    match target.and_then(|t| i32::try_from(t + a - p).ok()) {
        Some(v) if ty.field == Field::Signed32 => Ahead::Applied(v),
        _ => Ahead::Left,
    }
}

/// What the layout the values were computed for is, in one word: every loaded section's place,
/// the GOT's, the stubs' and every symbol's slot, pair and stub, and the relocation sections'
/// shape. Computed by the build for the layout it used and by the load for its own.
pub(crate) fn digest(object: &Object<'_>, layout: &Layout) -> u64 {
    let mut h = Digest(0x6365_6c6c_7072_656c);
    for (i, placed) in layout.sections.iter_enumerated() {
        if let Some(p) = placed {
            h.add(i.0 as u64);
            h.add(p.offset as u64);
            h.add(p.size as u64);
            h.add(p.tls_offset as u64);
        }
    }
    h.add(layout.got_offset as u64);
    h.add(layout.got_len as u64);
    h.add(layout.stubs_offset as u64);
    h.add(u64::from(layout.tlsld));
    let per_symbol = layout
        .got
        .iter()
        .zip(layout.tlsgd.iter())
        .zip(layout.stubs.iter());
    for ((got, pair), stub) in per_symbol {
        h.add(u64::from(*got) << 32 | u64::from(*pair));
        h.add(u64::from(*stub));
    }
    for rela in &object.rela_sections {
        h.add(rela.target.0 as u64);
        h.add(rela.entries().len() as u64);
    }
    h.0
}

/// The hash of `bytes` a load compares with the unwind table's in `.cell.prelink` (never 0, which
/// marks "none"): the same mix over their little-endian words and their length. The words go to
/// four chains in turn (word `i` to chain `i % 4`), which the processor runs side by side (a
/// large cell's table is hashed at every load), then the chains' ends and the last word are mixed
/// in order. Each step is a bijection of the word it takes, so one changed word changes its
/// chain's end, and so the hash.
pub(crate) fn hash_bytes(bytes: &[u8]) -> u64 {
    let (quads, rest) = bytes.as_chunks::<32>();
    let mut chains = [0u64, 1, 2, 3].map(Digest);
    for quad in quads {
        for (chain, word) in chains.iter_mut().zip(quad.as_chunks::<8>().0) {
            chain.add(u64::from_le_bytes(*word));
        }
    }
    let (words, rest) = rest.as_chunks::<8>();
    for (chain, word) in chains.iter_mut().zip(words) {
        chain.add(u64::from_le_bytes(*word));
    }
    let mut h = Digest(bytes.len() as u64);
    for chain in chains {
        h.add(chain.0);
    }
    let mut last = [0u8; 8];
    last[..rest.len()].copy_from_slice(rest);
    h.add(u64::from_le_bytes(last));
    h.0.max(1)
}

/// A 64-bit mix of words (FxHash's step): a check that two layouts are the same, not a defence
/// against someone who writes the object (who can write its code as well).
struct Digest(u64);

impl Digest {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}
