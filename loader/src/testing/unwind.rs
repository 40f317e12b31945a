//! `.eh_frame` tables written by the tests, record by record, the way rustc and LLVM write them:
//! a CIE `zR` with PC-relative `sdata4` FDE pointers, and FDEs after it. Every offset a test
//! names is read back from the builder, never counted by hand.

use alloc::vec::Vec;

use object::write::{SectionId, SymbolId};
use object::SectionKind;

use super::elf::{Cell, R_PC32};

/// `DW_EH_PE_pcrel | DW_EH_PE_sdata4`.
pub(crate) const PCREL_SDATA4: u8 = 0x1b;

/// The body of rustc's CIE after its id: version 1, `zR`, code alignment 1, data alignment -8,
/// return address register 16, one byte of augmentation data (the FDE encoding), then
/// `DW_CFA_def_cfa rsp+8` and `DW_CFA_offset r16, cfa-8`, padded with `DW_CFA_nop`s.
pub(crate) fn rustc_cie() -> Vec<u8> {
    let mut body = Vec::from(*b"\x01zR\0");
    body.extend_from_slice(&[1, 0x78, 16, 1, PCREL_SDATA4]);
    body.extend_from_slice(&[0x0c, 7, 8, 0x90, 1, 0, 0]);
    body
}

/// The instructions after an FDE's augmentation data: `DW_CFA_advance_loc 1`,
/// `DW_CFA_def_cfa_offset 16`, `DW_CFA_nop`s to align the record.
pub(crate) const FDE_INSTRUCTIONS: [u8; 7] = [0x41, 0x0e, 16, 0, 0, 0, 0];

/// An `.eh_frame` table being written, as it will lie at the address `addr`.
pub(crate) struct Table {
    /// The table so far, without its terminator.
    pub(crate) bytes: Vec<u8>,
    addr: u64,
}

impl Table {
    /// An empty table that will lie at `addr`.
    pub(crate) fn at(addr: u64) -> Table {
        Table {
            bytes: Vec::new(),
            addr,
        }
    }

    /// A record whose length word covers `id` and `body`; returns its offset.
    pub(crate) fn record(&mut self, id: u32, body: &[u8]) -> usize {
        let at = self.bytes.len();
        let length = (4 + body.len()) as u32;
        self.bytes.extend_from_slice(&length.to_le_bytes());
        self.bytes.extend_from_slice(&id.to_le_bytes());
        self.bytes.extend_from_slice(body);
        at
    }

    /// A CIE with `body` after its id; returns its offset.
    pub(crate) fn cie(&mut self, body: &[u8]) -> usize {
        self.record(0, body)
    }

    /// An FDE of the CIE at `cie` (whose encoding is [`PCREL_SDATA4`]) for `[pc, pc + range)`,
    /// with no augmentation data and [`FDE_INSTRUCTIONS`]; returns its offset.
    pub(crate) fn fde(&mut self, cie: usize, pc: u64, range: u32) -> usize {
        let at = self.bytes.len();
        let pc_begin_addr = self.addr + at as u64 + 8;
        let pc_begin = pc.wrapping_sub(pc_begin_addr) as u32;
        let mut body = Vec::new();
        body.extend_from_slice(&pc_begin.to_le_bytes());
        body.extend_from_slice(&range.to_le_bytes());
        body.push(0);
        body.extend_from_slice(&FDE_INSTRUCTIONS);
        // The CIE pointer: the distance back from the pointer's own field to the CIE.
        self.record((at + 4 - cie) as u32, &body)
    }

    /// The table with its zero terminator.
    pub(crate) fn terminated(&self) -> Vec<u8> {
        let mut out = self.bytes.clone();
        out.extend_from_slice(&[0; 4]);
        out
    }
}

impl Cell {
    /// An `.eh_frame` section with rustc's CIE and one FDE for `[function, function + len)`,
    /// its `pc_begin` an `R_X86_64_PC32` relocation against `function`; returns the section and
    /// the FDE's offset in it.
    pub(crate) fn unwind_table(&mut self, function: SymbolId, len: u32) -> (SectionId, usize) {
        let mut table = Table::at(0);
        let cie = table.cie(&rustc_cie());
        // `pc_begin` is left 0 (`pc` equal to its field's address): the relocation fills it.
        let fde = table.fde(cie, table.bytes.len() as u64 + 8, len);
        let section = self.section(".eh_frame", SectionKind::ReadOnlyData, &table.bytes, 8);
        self.reloc(section, fde as u64 + 8, function, R_PC32, 0);
        (section, fde)
    }
}
