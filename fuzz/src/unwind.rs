//! The unwind target's half: edits of a seed's `.eh_frame` and of its relocations, and after a
//! load that succeeded (the loader checked the table and registered it with libgcc's
//! `__register_frame`), lookups through `_Unwind_Find_FDE`, the unwinder's own search. The first
//! lookup makes libgcc walk and sort every FDE of the table (`init_object`), the walk that crashed
//! the host with a broken table; each lookup must then agree with the loader's check.

use crate_metadata::{CellId, SectionKind};
use loader::System;

use crate::{put, NoRun};

/// Where the unwind table of one seed object is, in the file.
pub struct UnwindTables {
    /// `.eh_frame`: offset and size.
    eh_frame: (usize, usize),
    /// File offset of every entry of `.rela.eh_frame`.
    relas: Vec<usize>,
}

impl UnwindTables {
    /// Reads where the unwind table of a well-formed object is.
    pub fn of(bytes: &[u8]) -> UnwindTables {
        let elf = goblin::elf::Elf::parse(bytes).expect("a seed is a well-formed object");
        let named = |name: &str| {
            elf.section_headers
                .iter()
                .find(|sh| elf.shdr_strtab.get_at(sh.sh_name) == Some(name))
                .map(|sh| (sh.sh_offset as usize, sh.sh_size as usize))
                .unwrap_or_else(|| panic!("the seed has no {name}"))
        };
        let (rela, rela_size) = named(".rela.eh_frame");
        UnwindTables {
            eh_frame: named(".eh_frame"),
            relas: (0..rela_size / 24).map(|i| rela + i * 24).collect(),
        }
    }
}

/// Bytes that mean something in a table: DWARF call-frame opcodes, pointer encodings,
/// augmentation letters, LEB128 continuation bits.
const DWARF_BYTES: [u8; 16] = [
    0x00, 0x0a, 0x0b, 0x0f, 0x10, 0x1b, 0x9b, 0xff, b'z', b'P', b'L', b'R', b'S', 0x80, 0x7f, 0x40,
];

/// Applies the edits that `ops` encodes to a copy of `seed`: 12 bytes per edit — a selector (bits
/// 0-1: a byte of `.eh_frame`, a 32-bit word of it, a relocation of it, a byte of it set to a
/// DWARF value; bits 2-3 the mode: set, add, interesting value, xor), a 16-bit index, a field
/// number and a 64-bit value.
pub fn mutate_unwind(seed: &[u8], tables: &UnwindTables, ops: &[u8]) -> Vec<u8> {
    let mut out = seed.to_vec();
    let (eh, size) = tables.eh_frame;
    for op in ops.chunks_exact(12) {
        let mode = (op[0] >> 2) & 3;
        let index = u16::from_le_bytes([op[1], op[2]]) as usize;
        let field = op[3];
        let value = u64::from_le_bytes(op[4..12].try_into().unwrap());
        match op[0] & 3 {
            0 if size > 0 => put(&mut out, eh + index % size, 1, mode, value),
            1 if size > 0 => put(&mut out, eh + index % size, 4, mode, value),
            2 if !tables.relas.is_empty() => {
                let base = tables.relas[index % tables.relas.len()];
                // r_offset, r_type, r_sym, r_addend
                let (off, width) = [(0, 8), (8, 4), (12, 4), (16, 8)][field as usize % 4];
                put(&mut out, base + off, width, mode, value);
            }
            _ if size > 0 => {
                let byte = DWARF_BYTES[field as usize % DWARF_BYTES.len()];
                put(&mut out, eh + index % size, 1, 0, u64::from(byte));
            }
            _ => {}
        }
    }
    out
}

/// The FDE libgcc finds for `pc` (0: none) and the start of its function.
fn find_fde(pc: u64) -> (u64, u64) {
    loader::hosted::find_fde(pc).map_or((0, 0), |f| (f.fde, f.function))
}

/// After a successful load of `cell`: every FDE the loader's check reports is found by libgcc at
/// both ends of its range, and every other address of the cell's text that libgcc finds an FDE
/// for (sampled every 8 bytes) is covered by one of the checked FDEs.
pub fn look_up_every_fde(system: &System<NoRun>, id: CellId) {
    let cell = system
        .registry()
        .cell(id)
        .expect("a loaded cell is registered");
    let Some(eh) = cell
        .sections
        .iter()
        .find(|s| s.kind == SectionKind::EhFrame)
    else {
        return;
    };
    let fdes = match system.unwind_table(id) {
        Some(Ok(t)) => t.fdes,
        Some(Err(e)) => panic!("the loader registered a table its own check refuses: {e:?}"),
        None => panic!("a loaded cell with an .eh_frame has a table"),
    };
    let ours = |fde: u64, pc: u64| {
        fdes.iter().any(|f| {
            eh.addr + f.offset as u64 == fde && f.pc_begin <= pc && pc - f.pc_begin < f.pc_range
        })
    };
    for f in &fdes {
        if f.pc_range == 0 {
            continue;
        }
        for pc in [f.pc_begin, f.pc_begin + f.pc_range - 1] {
            let (found, func) = find_fde(pc);
            assert!(
                ours(found, pc),
                "libgcc finds {found:#x} for {pc:#x}, not a checked FDE"
            );
            let found = fdes.iter().find(|g| eh.addr + g.offset as u64 == found);
            assert_eq!(
                found.map(|g| g.pc_begin),
                Some(func),
                "the function's start"
            );
        }
    }
    let table_range = eh.addr..eh.addr + eh.size;
    let text = cell.sections.iter().filter(|s| s.kind == SectionKind::Text);
    for section in text {
        for pc in (section.addr..section.addr + section.size).step_by(8) {
            let (found, _) = find_fde(pc);
            if table_range.contains(&found) {
                assert!(
                    ours(found, pc),
                    "libgcc finds {found:#x} for {pc:#x}, not a checked FDE"
                );
            }
        }
    }
}
