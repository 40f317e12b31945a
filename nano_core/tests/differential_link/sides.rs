//! The two images of a cell and what a relocated word means in each: a place in one of the
//! cell's sections, a symbol outside it, a thread-local, or a plain value.

use std::collections::HashMap;

use crate_metadata::{CellId, Origin, Registry};
use nano_core::Kernel;

use super::memory::{dladdr, read, read_i32, read_u64};
use super::system_linker::SharedObject;

/// What a relocated word refers to, in terms both linkers share.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Meaning {
    /// A place in one of the cell's own sections: header index and offset.
    Internal { section: usize, offset: i64 },
    /// A symbol outside the cell (by every name it has at that address), plus an offset.
    External { names: Vec<String>, offset: i64 },
    /// A thread-local: the owner of the module (a cell's name, or `image`) and the offset in its
    /// block.
    Tls { owner: String, offset: u64 },
    /// A plain value (an offset in a TLS block, a weak symbol nobody defines).
    Value(i64),
    /// Something the reader could not place (an address in no image): always a difference.
    Unknown(u64),
}

impl Meaning {
    /// Whether two meanings agree: external symbols match when one name is common to both.
    pub(crate) fn agrees(&self, other: &Meaning) -> bool {
        match (self, other) {
            (
                Meaning::External { names, offset },
                Meaning::External {
                    names: theirs,
                    offset: their_offset,
                },
            ) => offset == their_offset && names.iter().any(|n| theirs.contains(n)),
            (Meaning::Unknown(_), _) | (_, Meaning::Unknown(_)) => false,
            (a, b) => a == b,
        }
    }
}

/// One relocation of an object.
#[derive(Clone, Debug)]
pub(crate) struct Rel {
    pub(crate) section: usize,
    pub(crate) offset: u64,
    pub(crate) r_type: u32,
    pub(crate) symbol: String,
    pub(crate) addend: i64,
}

/// One image of the cell: where its sections are, and how its words are read back.
pub(crate) trait Side {
    /// The address of loaded section `index`, and its size.
    fn section(&self, index: usize) -> Option<(u64, u64)>;
    /// What the absolute address `addr` is.
    fn meaning_of(&self, addr: u64) -> Meaning;
    /// What the TLS pair at `pair` holds.
    fn tls_pair(&self, pair: u64) -> Meaning;
    /// The final target of a call to `target` (through a stub, when it is one).
    fn through_stub(&self, target: u64) -> u64;

    /// The section and offset of `addr` when it lies in (or at the end of) one of the cell's
    /// sections.
    fn internal(&self, addr: u64, sections: &[usize]) -> Option<Meaning> {
        let mut end_of = None;
        for &index in sections {
            let Some((start, size)) = self.section(index) else {
                continue;
            };
            if addr >= start && addr < start + size {
                return Some(Meaning::Internal {
                    section: index,
                    offset: (addr - start) as i64,
                });
            }
            if addr == start + size {
                end_of = Some(Meaning::Internal {
                    section: index,
                    offset: size as i64,
                });
            }
        }
        end_of
    }

    /// Whether the `width` bytes at `addr` lie inside one of the cell's sections.
    fn contains_word(&self, addr: u64, width: u64, sections: &[usize]) -> bool {
        sections.iter().any(|i| {
            self.section(*i)
                .is_some_and(|(start, size)| addr >= start && addr + width <= start + size)
        })
    }
}

/// Our loader's image of a cell.
pub(crate) struct Ours<'k> {
    pub(crate) kernel: &'k Kernel,
    pub(crate) cell: CellId,
    /// Header index -> (address, size) of each loaded section.
    pub(crate) sections: HashMap<usize, (u64, u64)>,
    pub(crate) loaded: Vec<usize>,
}

impl Ours<'_> {
    fn registry(&self) -> &Registry {
        self.kernel.system().registry()
    }
}

impl Side for Ours<'_> {
    fn section(&self, index: usize) -> Option<(u64, u64)> {
        self.sections.get(&index).copied()
    }

    fn meaning_of(&self, addr: u64) -> Meaning {
        if let Some(m) = self.internal(addr, &self.loaded) {
            return m;
        }
        // Another of our cells: the exported symbols at or below the address.
        for id in loaded_cells(self.kernel) {
            let Some(regions) = self.kernel.system().regions(id) else {
                continue;
            };
            let (start, end) = (regions[0].0, regions[3].0 + regions[3].1);
            if addr < start || addr >= end {
                continue;
            }
            let cell = self.registry().cell(id).unwrap();
            let best = cell
                .symbols
                .iter()
                .filter(|s| s.addr <= addr && s.kind != crate_metadata::SymbolKind::Tls)
                .map(|s| s.addr)
                .max();
            if let Some(at) = best {
                let names = cell
                    .symbols
                    .iter()
                    .filter(|s| s.addr == at && s.kind != crate_metadata::SymbolKind::Tls)
                    .map(|s| s.name.to_string())
                    .collect();
                return Meaning::External {
                    names,
                    offset: (addr - at) as i64,
                };
            }
        }
        match dladdr(addr) {
            Some((name, at)) => Meaning::External {
                names: vec![name],
                offset: addr as i64 - at as i64,
            },
            None if addr < 0x1_0000 => Meaning::Value(addr as i64),
            None => Meaning::Unknown(addr),
        }
    }

    fn tls_pair(&self, pair: u64) -> Meaning {
        let (module, offset) = (read_u64(pair), read_u64(pair + 8));
        let owner = if module == 1 {
            "image".to_string()
        } else {
            self.registry()
                .cells()
                .find(|c| c.origin == Origin::Object && c.tls_module == Some(module))
                .map_or_else(|| format!("module {module}"), |c| c.name.clone())
        };
        Meaning::Tls { owner, offset }
    }

    fn through_stub(&self, target: u64) -> u64 {
        let cell = self.registry().cell(self.cell).unwrap();
        let Some(stubs) = cell.sections.iter().find(|s| s.name == ".stubs") else {
            return target;
        };
        if target < stubs.addr || target >= stubs.addr + stubs.size {
            return target;
        }
        // jmp *disp32(%rip): ff 25 <disp32>
        let stub = read::<8>(target);
        assert_eq!(&stub[..2], &[0xff, 0x25], "a call stub");
        let disp = i64::from(i32::from_le_bytes(stub[2..6].try_into().unwrap()));
        read_u64((target as i64 + 6 + disp) as u64)
    }
}

/// The system linker's image of a cell.
pub(crate) struct Theirs<'s> {
    pub(crate) so: &'s SharedObject,
    /// Every `.so` by TLS module id, with its cell's name.
    pub(crate) modules: &'s HashMap<u64, String>,
    pub(crate) loaded: Vec<usize>,
}

impl Side for Theirs<'_> {
    fn section(&self, index: usize) -> Option<(u64, u64)> {
        self.so.sections.get(&index).copied()
    }

    fn meaning_of(&self, addr: u64) -> Meaning {
        if let Some(m) = self.internal(addr, &self.loaded) {
            return m;
        }
        match dladdr(addr) {
            Some((name, at)) => Meaning::External {
                names: vec![name],
                offset: addr as i64 - at as i64,
            },
            None if addr < 0x1_0000 => Meaning::Value(addr as i64),
            None => Meaning::Unknown(addr),
        }
    }

    fn tls_pair(&self, pair: u64) -> Meaning {
        let (module, offset) = (read_u64(pair), read_u64(pair + 8));
        let owner = if module == 1 {
            "image".to_string()
        } else {
            self.modules
                .get(&module)
                .cloned()
                .unwrap_or_else(|| format!("module {module}"))
        };
        Meaning::Tls { owner, offset }
    }

    fn through_stub(&self, target: u64) -> u64 {
        // A PLT entry: `jmp *disp32(%rip)` within its first 16 bytes (after an `endbr64` and a
        // `bnd` prefix when the linker made IBT entries).
        if self.internal(target, &self.loaded).is_some()
            || dladdr(target).is_some_and(|(_, a)| a == target)
        {
            return target;
        }
        let entry = read::<16>(target);
        let Some(at) = (0..10).find(|i| entry[*i] == 0xff && entry[*i + 1] == 0x25) else {
            return target;
        };
        let disp = i64::from(i32::from_le_bytes(
            entry[at + 2..at + 6].try_into().unwrap(),
        ));
        read_u64((target as i64 + at as i64 + 6 + disp) as u64)
    }
}

/// What the relocation `rel` at `field` made the word mean, on one side, and the address it
/// leads to (the symbol's: through a GOT slot or a stub, before any addend) when it is one.
pub(crate) fn meaning(side: &dyn Side, rel: &Rel, field: u64) -> (Meaning, Option<u64>) {
    let pc = |value: i64| (field as i64 + value - rel.addend) as u64;
    let at = |addr: u64, offset: i64| (side.meaning_of(addr).with_offset(offset), Some(addr));
    match rel.r_type {
        // R_X86_64_64: S + A.
        1 => at(read_u64(field).wrapping_sub(rel.addend as u64), rel.addend),
        // R_X86_64_PC32: S + A - P.
        2 => at(pc(read_i32(field)), rel.addend),
        // R_X86_64_PLT32: L + A - P, L a stub or the function.
        4 => at(side.through_stub(pc(read_i32(field))), 0),
        // R_X86_64_GOTPCREL(X): G + A - P; the slot holds S.
        9 | 41 | 42 => at(read_u64(pc(read_i32(field))), 0),
        // R_X86_64_TLSGD / TLSLD: G + A - P; the pair holds (module, offset).
        19 | 20 => (side.tls_pair(pc(read_i32(field))), None),
        // R_X86_64_DTPOFF32: the offset in the block.
        21 => (Meaning::Value(read_i32(field)), None),
        other => panic!("relocation type {other} in a cell"),
    }
}

impl Meaning {
    /// The meaning of an address `delta` bytes further (`S + A` read back as `S`, then moved).
    fn with_offset(self, delta: i64) -> Meaning {
        match self {
            Meaning::Internal { section, offset } => Meaning::Internal {
                section,
                offset: offset + delta,
            },
            Meaning::External { names, offset } => Meaning::External {
                names,
                offset: offset + delta,
            },
            Meaning::Value(v) => Meaning::Value(v + delta),
            other => other,
        }
    }
}

/// The cells our loader loaded.
fn loaded_cells(kernel: &Kernel) -> Vec<CellId> {
    kernel
        .system()
        .registry()
        .cells()
        .filter(|c| c.origin == Origin::Object)
        .map(|c| c.id)
        .collect()
}
