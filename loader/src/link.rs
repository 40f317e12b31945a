//! Linking: writing the sections into the mapping, filling the GOT and the call stubs, and
//! applying every relocation through the table in [`crate::reloc`]. Every reference that leaves
//! the cell is collected as a pending edge.
//!
//! Every offset into the mapping is a checked sum of the layout's offsets and the object's values,
//! and every write goes through the mapping's bounds check, so a value that does not fit is an
//! error that names the cell, the section, the offset and the symbol.

use alloc::borrow::Cow;
use alloc::string::String;
use alloc::vec::Vec;

use crate::error::{malformed, LoadError};
use crate::index::{IndexVec, SectionIndex, SymbolIndex};
use crate::layout::{Layout, Placed, NONE};
use crate::malformation::Malformation;
use crate::mapping::{Mapping, OutOfBounds};
use crate::parse::{Object, Rela, RelaSection};
use crate::prelink::format::Prelink;
use crate::reloc::{self, Field, Formula, WriteError};
use crate::resolve::{Provider, Resolved};
use crate_metadata::{demangle, SlotKind};

/// What a symbol of the object stands for once resolved.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Target {
    /// Defined in this cell at this absolute address.
    Local(u64),
    /// A thread-local of this cell at this offset in its TLS block.
    LocalTls(u64),
    /// Defined outside the cell.
    External(Resolved),
    /// An undefined weak symbol nobody defines: address 0.
    WeakMissing,
}

/// Where an edge's slot lives in the dependent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SlotSection {
    /// The cell's GOT.
    Got,
    /// A section of the object.
    Section(SectionIndex),
}

/// An edge found while linking, before the cell has an id.
#[derive(Clone, Debug)]
pub(crate) struct PendingEdge<'a> {
    pub(crate) section: SlotSection,
    pub(crate) slot: u64,
    pub(crate) kind: SlotKind,
    pub(crate) addend: i64,
    pub(crate) provider: Provider,
    /// The symbol's name: borrowed from the object, owned where the loader made the edge up.
    pub(crate) name: Cow<'a, str>,
    pub(crate) addr: u64,
}

/// The names of the symbols resolved outside the cell, by symbol index (ascending): read once
/// while resolving, and reused for their edges instead of being scanned again.
#[derive(Debug)]
pub(crate) struct ExternalNames<'a>(Vec<(SymbolIndex, &'a str)>);

impl<'a> ExternalNames<'a> {
    /// Room for `n` names.
    pub(crate) fn with_capacity(n: usize) -> Self {
        ExternalNames(Vec::with_capacity(n))
    }

    /// Records the name of symbol `sym`, which must be greater than every symbol recorded before.
    pub(crate) fn push(&mut self, sym: SymbolIndex, name: &'a str) {
        debug_assert!(self.0.last().is_none_or(|(last, _)| *last < sym));
        self.0.push((sym, name));
    }

    /// The name of symbol `sym`, read from the object when it was not recorded.
    fn get(&self, cell: &str, object: &Object<'a>, sym: SymbolIndex) -> Result<&'a str, LoadError> {
        match self.0.binary_search_by_key(&sym, |(s, _)| *s) {
            Ok(i) => Ok(self.0[i].1),
            Err(_) => object.symbol_name(cell, sym),
        }
    }
}

/// What every symbol of the object binds to: its target, and the names of those resolved outside
/// the cell.
#[derive(Debug)]
pub(crate) struct Bindings<'a> {
    /// Per symbol: its target (`None`: no target, the null symbol or one in a section that is not
    /// loaded).
    pub(crate) targets: IndexVec<SymbolIndex, Option<Target>>,
    /// The names of the external ones.
    pub(crate) names: ExternalNames<'a>,
}

/// A GOT slot that holds the address of one of the cell's own symbols: a swap rebinds a static by
/// rewriting these. `S` is the symbol's object index while linking, its metadata id afterwards.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct OwnSlot<S> {
    /// The symbol.
    pub(crate) symbol: S,
    /// The slot's absolute address.
    pub(crate) slot: u64,
}

/// What linking produced.
pub(crate) struct Linked<'a> {
    pub(crate) edges: Vec<PendingEdge<'a>>,
    pub(crate) relocations: u32,
    /// Relocations `cargo cell build` applied already ([`crate::prelink`]).
    pub(crate) prelinked: u32,
    /// Whether the unwind table registered is the one `cargo cell build` checked (set after
    /// linking, by the load's unwind check).
    pub(crate) unwind_checked_at_build: bool,
    /// GOT slots that hold the address of a symbol the cell defines.
    pub(crate) own_slots: Vec<OwnSlot<SymbolIndex>>,
    /// Symbols the cell defines and reaches without a slot (PC-relative or absolute fields).
    pub(crate) direct_refs: Vec<SymbolIndex>,
    /// GOT words that hold the cell's own TLS module id (the `TLSLD` pair's and each `TLSGD`
    /// pair's first word for its own thread-locals): a swap that hands the old version's module
    /// to the new version rewrites these.
    pub(crate) tls_slots: Vec<u64>,
}

/// What linking reads: the cell's object, its layout and what each symbol binds to.
pub(crate) struct LinkInput<'l, 'a> {
    /// The cell's name, for errors.
    pub(crate) cell: &'l str,
    pub(crate) object: &'l Object<'a>,
    pub(crate) layout: &'l Layout,
    pub(crate) bindings: &'l Bindings<'a>,
    /// The cell's own TLS module id (0 when it has none).
    pub(crate) tls_module: u64,
    /// The object's `.cell.prelink`, when it was made for `layout` ([`crate::prelink::for_layout`]).
    pub(crate) prelink: Option<Prelink<'a>>,
}

/// Copies every loaded section's bytes into the mapping, and, when the mapping was not made
/// zeroed ([`Mapping::for_overwrite`]), clears every byte it did not copy: `.bss`, the padding
/// between sections, the GOT and stubs before they are filled, each region's tail. Either way
/// the mapping then holds exactly the sections over zeros.
pub(crate) fn copy_sections(
    cell: &str,
    object: &Object<'_>,
    layout: &Layout,
    mapping: &mut Mapping,
) -> Result<(), LoadError> {
    // What was copied, as (offset, end): for the clearing.
    let mut copied: Vec<(usize, usize)> = Vec::new();
    for (i, placed) in layout.sections.iter_enumerated() {
        let Some(p) = placed else { continue };
        let bytes = object.section_bytes(i);
        if bytes.is_empty() {
            continue;
        }
        mapping.write(p.offset, bytes).map_err(|_| {
            malformed(
                cell,
                Malformation::SectionOutsideMapping {
                    section: object.section_name(i),
                },
            )
        })?;
        if !mapping.zeroed() {
            // `write` checked that the end lies inside the mapping.
            copied.push((p.offset, p.offset + bytes.len()));
        }
    }
    if !mapping.zeroed() {
        copied.sort_unstable();
        let mut cursor = 0;
        for (start, end) in copied.into_iter().chain([(mapping.len(), mapping.len())]) {
            if start > cursor {
                // Both ends lie inside the mapping: nothing to report.
                let _ = mapping.clear(cursor, start - cursor);
            }
            cursor = cursor.max(end);
        }
    }
    Ok(())
}

/// Fills the GOT (slots and TLS pairs) and the call stubs, and applies the relocations.
pub(crate) fn link<'a>(
    input: &LinkInput<'_, 'a>,
    mapping: &mut Mapping,
) -> Result<Linked<'a>, LoadError> {
    let mut linked = Linked {
        // At least one edge per GOT slot or pair that leaves the cell (most of them do).
        edges: Vec::with_capacity(input.layout.got_len / 8),
        relocations: 0,
        prelinked: 0,
        unwind_checked_at_build: false,
        own_slots: Vec::new(),
        direct_refs: Vec::new(),
        tls_slots: Vec::new(),
    };
    fill_got(input, mapping, &mut linked)?;
    relocate(input, mapping, &mut linked)?;
    Ok(linked)
}

impl LinkInput<'_, '_> {
    /// The mapping offset of the GOT entry `rel` bytes into the GOT.
    fn got_entry(&self, rel: u32) -> Result<usize, LoadError> {
        self.layout
            .got_offset
            .checked_add(rel as usize)
            .ok_or_else(|| malformed(self.cell, Malformation::GotOutsideMapping))
    }

    /// The mapping offset of the call stub `rel` bytes into the stubs.
    fn stub_entry(&self, rel: u32) -> Result<usize, LoadError> {
        self.layout
            .stubs_offset
            .checked_add(rel as usize)
            .ok_or_else(|| malformed(self.cell, Malformation::GotOutsideMapping))
    }

    /// A symbol's name as an error shows it: demangled.
    fn demangled(&self, sym: SymbolIndex) -> String {
        demangle::demangle(&self.object.symbol_label(sym))
    }
}

fn fill_got<'a>(
    input: &LinkInput<'_, 'a>,
    mapping: &mut Mapping,
    linked: &mut Linked<'a>,
) -> Result<(), LoadError> {
    let LinkInput {
        cell,
        object,
        layout,
        bindings,
        tls_module,
        ..
    } = *input;
    let edges = &mut linked.edges;
    let oob = |_: OutOfBounds| malformed(cell, Malformation::GotOutsideMapping);
    if layout.tlsld != NONE {
        let at = input.got_entry(layout.tlsld)?;
        mapping.write(at, &tls_module.to_le_bytes()).map_err(oob)?;
        linked.tls_slots.push(mapping.addr(at));
    }
    for (sym, target) in bindings.targets.iter_enumerated() {
        if layout.tlsgd[sym] != NONE {
            let at = input.got_entry(layout.tlsgd[sym])?;
            let (module, offset) = match *target {
                Some(Target::LocalTls(off)) => {
                    linked.tls_slots.push(mapping.addr(at));
                    (tls_module, off)
                }
                Some(Target::External(Resolved {
                    tls: Some(t),
                    provider,
                    ..
                })) => {
                    edges.push(PendingEdge {
                        section: SlotSection::Got,
                        slot: mapping.addr(at),
                        kind: SlotKind::TlsPair,
                        addend: 0,
                        provider,
                        name: Cow::Borrowed(bindings.names.get(cell, object, sym)?),
                        addr: t.offset,
                    });
                    (t.module, t.offset)
                }
                _ => {
                    let symbol = input.demangled(sym);
                    return Err(malformed(cell, Malformation::TlsGdAgainstNonTls { symbol }));
                }
            };
            mapping.write(at, &module.to_le_bytes()).map_err(oob)?;
            let second = at.checked_add(8).ok_or(OutOfBounds).map_err(oob)?;
            mapping.write(second, &offset.to_le_bytes()).map_err(oob)?;
        }
        if layout.got[sym] != NONE {
            let at = input.got_entry(layout.got[sym])?;
            let value = match *target {
                Some(Target::Local(addr)) => {
                    linked.own_slots.push(OwnSlot {
                        symbol: sym,
                        slot: mapping.addr(at),
                    });
                    addr
                }
                Some(Target::WeakMissing) => 0,
                Some(Target::External(r)) if r.tls.is_none() => {
                    edges.push(PendingEdge {
                        section: SlotSection::Got,
                        slot: mapping.addr(at),
                        kind: SlotKind::Got,
                        addend: 0,
                        provider: r.provider,
                        name: Cow::Borrowed(bindings.names.get(cell, object, sym)?),
                        addr: r.addr,
                    });
                    r.addr
                }
                _ => {
                    let symbol = input.demangled(sym);
                    return Err(malformed(
                        cell,
                        Malformation::GotSlotForThreadLocal { symbol },
                    ));
                }
            };
            mapping.write(at, &value.to_le_bytes()).map_err(oob)?;
        }
        if layout.stubs[sym] != NONE {
            // jmp *slot(%rip): ff 25 <disp32>, disp from the end of the 6-byte instruction.
            let at = input.stub_entry(layout.stubs[sym])?;
            let slot = input.got_entry(layout.got[sym])?;
            let disp = slot as i128 - (at as i128 + 6);
            let disp = i32::try_from(disp).map_err(|_| {
                let symbol = input.demangled(sym);
                malformed(cell, Malformation::StubOutOfRange { symbol })
            })?;
            let mut stub = [0xcc_u8; 8];
            stub[0] = 0xff;
            stub[1] = 0x25;
            stub[2..6].copy_from_slice(&disp.to_le_bytes());
            mapping.write(at, &stub).map_err(oob)?;
        }
    }
    Ok(())
}

/// What [`relocate`] needs of a symbol's target for every relocation, in 16 bytes instead of an
/// `Option<Target>`'s 48: its value S and what kind of target it is. The full [`Target`] is only
/// read again for a reference that leaves the cell (to record its edge).
#[derive(Clone, Copy)]
struct Value {
    s: u64,
    class: Class,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Class {
    Local,
    LocalTls,
    External,
    /// An undefined weak symbol nobody defines, or a symbol with no target (S = 0).
    Zero,
}

impl Value {
    const ZERO: Value = Value {
        s: 0,
        class: Class::Zero,
    };

    fn of(target: &Option<Target>) -> Value {
        match *target {
            Some(Target::Local(s)) => Value {
                s,
                class: Class::Local,
            },
            Some(Target::LocalTls(s)) => Value {
                s,
                class: Class::LocalTls,
            },
            Some(Target::External(r)) => Value {
                s: r.addr,
                class: Class::External,
            },
            Some(Target::WeakMissing) | None => Value::ZERO,
        }
    }
}

fn relocate<'a>(
    input: &LinkInput<'_, 'a>,
    mapping: &mut Mapping,
    linked: &mut Linked<'a>,
) -> Result<(), LoadError> {
    let LinkInput {
        cell,
        object,
        layout,
        bindings,
        ..
    } = *input;
    let values: Vec<Value> = bindings.targets.iter().map(Value::of).collect();
    let values: IndexVec<SymbolIndex, Value> = IndexVec::from_vec(values);
    // Which symbols are reached without a slot, by index (a mark per symbol instead of a list
    // with one entry per relocation to sort).
    let mut direct: IndexVec<SymbolIndex, bool> = IndexVec::from_elem(false, values.len());
    // What `cargo cell build` applied already (`crate::prelink`): of each section, the first
    // `residual` entries are applied in full, the next `relative` ones get the mapping's address
    // added, the rest are in the bytes; its direct references count.
    let prelink = input.prelink;
    if let Some(p) = &prelink {
        for sym in p.direct() {
            direct[SymbolIndex(sym)] = true;
        }
    }
    for (k, rela_section) in object.rela_sections.iter().enumerate() {
        let section = rela_section.target;
        let Some(placed) = layout.sections.get(section).copied().flatten() else {
            continue;
        };
        let entries = rela_section.entries().len();
        let residual = prelink.map_or(entries, |p| p.residual(k));
        let relative = prelink.map_or(0, |p| p.relative(k));
        // `Prelink::parse` checked that both fit the section's entries.
        linked.prelinked += (entries - residual - relative) as u32;
        relocate_relative(input, mapping, &placed, rela_section, residual, relative)?;
        linked.relocations += relative as u32;
        for r in object.relas(rela_section).take(residual) {
            let Some(ty) = reloc::lookup(r.r_type) else {
                return Err(LoadError::UnknownRelocation {
                    cell: cell.into(),
                    section: object.section_name(section),
                    offset: r.r_offset,
                    r_type: r.r_type,
                });
            };
            let width = ty.field.width() as u64;
            let offset = r
                .r_offset
                .checked_add(width)
                .filter(|end| *end <= placed.size as u64)
                // The field ends inside the section, so its start fits a `usize` too.
                .and_then(|_| placed.offset.checked_add(r.r_offset as usize));
            let Some(offset) = offset else {
                let value = r.r_offset as i128;
                return Err(overflow(cell, object, section, &r, ty.name, value));
            };
            let p = i128::from(mapping.addr(offset));
            let a = i128::from(r.r_addend);
            // `parse` checked `r_sym` against the symbol table, which `values` follows.
            let Value { s, class } = values.get(r.r_sym).copied().unwrap_or(Value::ZERO);
            let s = i128::from(s);
            let got_at = |rel: u32| -> Result<i128, LoadError> {
                Ok(i128::from(mapping.addr(input.got_entry(rel)?)))
            };
            // S, A and P are at most 64 bits each: no sum or difference of them overflows i128.
            let value = match ty.formula {
                Formula::Abs64 | Formula::Pc32 if class == Class::LocalTls => {
                    let symbol = input.demangled(r.r_sym);
                    return Err(malformed(
                        cell,
                        Malformation::PlainReferenceToThreadLocal {
                            r_type: ty.name,
                            symbol,
                        },
                    ));
                }
                Formula::Abs64 => s + a,
                Formula::Pc32 => s + a - p,
                Formula::Plt32 if layout.stubs[r.r_sym] != NONE => {
                    let stub = input.stub_entry(layout.stubs[r.r_sym])?;
                    i128::from(mapping.addr(stub)) + a - p
                }
                Formula::Plt32 => s + a - p,
                Formula::GotPcRel => got_at(layout.got[r.r_sym])? + a - p,
                Formula::TlsGd => got_at(layout.tlsgd[r.r_sym])? + a - p,
                Formula::TlsLd => got_at(layout.tlsld)? + a - p,
                Formula::DtpOff32 if class == Class::LocalTls => s + a,
                Formula::DtpOff32 => {
                    return Err(LoadError::UnsupportedTls {
                        cell: cell.into(),
                        symbol: input.demangled(r.r_sym),
                    })
                }
            };
            if let Err(WriteError::Overflow | WriteError::OutOfBounds) =
                reloc::write(mapping, offset, ty.field, value)
            {
                return Err(overflow(cell, object, section, &r, ty.name, value));
            }
            linked.relocations += 1;
            let slotless = matches!(ty.formula, Formula::Abs64 | Formula::Pc32);
            if !slotless {
                continue; // served through a GOT slot, pair or stub (edges recorded by `fill_got`)
            }
            match class {
                Class::Local => direct[r.r_sym] = true,
                Class::External => {
                    let Some(Some(Target::External(res))) = bindings.targets.get(r.r_sym) else {
                        continue;
                    };
                    let kind = match ty.formula {
                        Formula::Abs64 if p % 8 == 0 => SlotKind::Data,
                        _ => SlotKind::Direct,
                    };
                    linked.edges.push(PendingEdge {
                        section: SlotSection::Section(section),
                        slot: p as u64,
                        kind,
                        addend: r.r_addend,
                        provider: res.provider,
                        name: Cow::Borrowed(bindings.names.get(cell, object, r.r_sym)?),
                        addr: res.addr,
                    });
                }
                Class::LocalTls | Class::Zero => {}
            }
        }
    }
    linked.direct_refs = direct
        .iter_enumerated()
        .filter(|(_, d)| **d)
        .map(|(s, _)| s)
        .collect();
    Ok(())
}

/// Adds the mapping's address to the `relative` words after the first `residual` entries of
/// `rela_section` (of the section at `placed`): `cargo cell build` left each holding S + A less
/// the mapping's address (`crate::prelink`), as `ld.so` does for `R_X86_64_RELATIVE`. Each write
/// is checked against the section and the mapping as any other.
fn relocate_relative(
    input: &LinkInput<'_, '_>,
    mapping: &mut Mapping,
    placed: &Placed,
    rela_section: &RelaSection<'_>,
    residual: usize,
    relative: usize,
) -> Result<(), LoadError> {
    let (cell, object) = (input.cell, input.object);
    let base = i128::from(mapping.addr(0));
    for r in object.relas(rela_section).skip(residual).take(relative) {
        let fail = |value| {
            let section = rela_section.target;
            overflow(cell, object, section, &r, "R_X86_64_64", value)
        };
        let offset = r
            .r_offset
            .checked_add(8)
            .filter(|end| *end <= placed.size as u64)
            .and_then(|_| placed.offset.checked_add(r.r_offset as usize));
        let Some(offset) = offset else {
            return Err(fail(i128::from(r.r_offset)));
        };
        let Ok(word) = mapping.read(offset, 8) else {
            return Err(fail(i128::from(r.r_offset)));
        };
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(word);
        let value = base + i128::from(i64::from_le_bytes(bytes));
        if reloc::write(mapping, offset, Field::Word64, value).is_err() {
            return Err(fail(value));
        }
    }
    Ok(())
}

/// The error for a relocation whose value does not fit its field (or whose field lies outside
/// its section). Built only on that path, so the loop over relocations carries nothing for it.
#[cold]
fn overflow(
    cell: &str,
    object: &Object<'_>,
    section: SectionIndex,
    r: &Rela,
    r_type: &'static str,
    value: i128,
) -> LoadError {
    LoadError::RelocationOverflow {
        cell: cell.into(),
        section: object.section_name(section),
        offset: r.r_offset,
        r_type,
        symbol: symbol_label(object, r.r_sym),
        value,
    }
}

/// A symbol as an error names it: demangled, or the section for a section symbol.
fn symbol_label(object: &Object<'_>, sym: SymbolIndex) -> String {
    let name = object.symbol_label(sym);
    if !name.is_empty() {
        return demangle::demangle(&name);
    }
    object
        .syms
        .get(sym)
        .map(|s| object.section_name(SectionIndex(s.st_shndx)))
        .unwrap_or_default()
}
