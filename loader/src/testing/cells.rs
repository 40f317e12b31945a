//! Two small cells most unit tests load: a provider `p` and a user `u` that binds to it through
//! every kind of slot (a call stub, a GOT slot, a data word, a relro word).
//!
//! ```text
//! p:  .text.f     f: mov rax, [rip + p::STATE@GOT] R_X86_64_REX_GOTPCRELX  (its own GOT slot)
//!                    mov eax, 42; ret              p::f      (function)
//!     .text.h     h: mov eax, 7; ret               p::h      (function)
//!     .data.STATE 8 bytes (0x11..0x18)             p::STATE  (static)
//! u:  .text.g     g: call p::f                     R_X86_64_PLT32          (a call stub)
//!                    mov rax, [rip + p::STATE@GOT] R_X86_64_REX_GOTPCRELX  (a GOT slot)
//!                    lea rcx, [rip + u::LOCAL]     R_X86_64_PC32           (inside the cell)
//!                    ret
//!     .data.u     8 bytes: p::f + 0                R_X86_64_64             (a data word)
//!     .data.rel.ro.u 8 bytes: p::STATE + 8         R_X86_64_64             (a relro word)
//!     .data.LOCAL 8 bytes                          u::LOCAL  (static)
//! ```

use alloc::string::String;
use alloc::vec::Vec;

use object::SymbolKind;

use super::elf::{mangle, Cell, Kind, R_64, R_PC32, R_PLT32, R_REX_GOTPCRELX};

/// The crate hash of `p`'s symbols.
pub(crate) const P_HASH: u64 = 0x0123_4567_89ab_cdef;
/// The crate hash of `u`'s symbols.
pub(crate) const U_HASH: u64 = 0xfedc_ba98_7654_3210;

/// `p::f`, mangled.
pub(crate) fn p_f() -> String {
    mangle("p::f", P_HASH)
}

/// `p::h`, mangled.
pub(crate) fn p_h() -> String {
    mangle("p::h", P_HASH)
}

/// `p::STATE`, mangled.
pub(crate) fn p_state() -> String {
    mangle("p::STATE", P_HASH)
}

/// `u::g`, mangled.
pub(crate) fn u_g() -> String {
    mangle("u::g", U_HASH)
}

/// What a version of `p` looks like.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Provider {
    /// The value `f` returns (the code differs between versions).
    pub(crate) answer: u8,
    /// The size of `STATE`.
    pub(crate) state_size: usize,
    /// The crate hash of `STATE` (another hash: its type changed).
    pub(crate) state_hash: u64,
    /// The crate hash of `h`, or no `h` at all.
    pub(crate) h_hash: Option<u64>,
    /// Whether `f` also reaches `STATE` without a slot (`lea rcx, [rip + STATE]`).
    pub(crate) direct_state: bool,
}

impl Default for Provider {
    fn default() -> Self {
        Provider {
            answer: 42,
            state_size: 8,
            state_hash: P_HASH,
            h_hash: Some(P_HASH),
            direct_state: false,
        }
    }
}

impl Provider {
    /// The object.
    pub(crate) fn object(self) -> Vec<u8> {
        let mut cell = Cell::new();
        // mov rax, [rip + STATE@GOTPCREL]; lea rcx, [rip + STATE]; mov eax, answer; ret
        let code = [
            0x48,
            0x8b,
            0x05,
            0,
            0,
            0,
            0,
            0x48,
            0x8d,
            0x0d,
            0,
            0,
            0,
            0,
            0xb8,
            self.answer,
            0,
            0,
            0,
            0xc3,
        ];
        let (text, _) = cell.func(&p_f(), &code);
        if let Some(hash) = self.h_hash {
            cell.func(&mangle("p::h", hash), &[0xb8, 7, 0, 0, 0, 0xc3]);
        }
        let state: Vec<u8> = (0x11..).take(self.state_size).collect();
        let (_, state) = cell.static_data(&mangle("p::STATE", self.state_hash), &state);
        cell.reloc(text, 3, state, R_REX_GOTPCRELX, -4);
        if self.direct_state {
            cell.reloc(text, 10, state, R_PC32, -4);
        }
        cell.bytes()
    }
}

/// The default `p`.
pub(crate) fn provider() -> Vec<u8> {
    Provider::default().object()
}

/// Where `u`'s relocated fields are.
pub(crate) mod u_layout {
    /// The `call` displacement (PLT32 against `p::f`) in `.text.g`.
    pub(crate) const CALL: u64 = 1;
    /// The `mov` displacement (REX_GOTPCRELX against `p::STATE`) in `.text.g`.
    pub(crate) const GOT_LOAD: u64 = 8;
    /// The `lea` displacement (PC32 against `u::LOCAL`) in `.text.g`.
    pub(crate) const LEA: u64 = 15;
    /// The addend of the relro word.
    pub(crate) const RELRO_ADDEND: i64 = 8;
}

/// The user `u`.
pub(crate) fn user() -> Vec<u8> {
    let mut cell = Cell::new();
    // call rel32; mov rax, [rip+disp32]; lea rcx, [rip+disp32]; ret
    let code = [
        0xe8, 0, 0, 0, 0, // call p::f
        0x48, 0x8b, 0x05, 0, 0, 0, 0, // mov rax, [rip + p::STATE@GOTPCREL]
        0x48, 0x8d, 0x0d, 0, 0, 0, 0, // lea rcx, [rip + u::LOCAL]
        0xc3,
    ];
    let (text, _) = cell.func(&u_g(), &code);
    let f = cell.undefined(&p_f(), SymbolKind::Text, false);
    let state = cell.undefined(&p_state(), SymbolKind::Data, false);
    let (_, local) = cell.static_data(&mangle("u::LOCAL", U_HASH), &[0; 8]);
    cell.reloc(text, u_layout::CALL, f, R_PLT32, -4);
    cell.reloc(text, u_layout::GOT_LOAD, state, R_REX_GOTPCRELX, -4);
    cell.reloc(text, u_layout::LEA, local, R_PC32, -4);
    let data = cell.section(".data.u", Kind::Data, &[0; 8], 8);
    cell.reloc(data, 0, f, R_64, 0);
    let relro = cell.section(".data.rel.ro.u", Kind::ReadOnlyDataWithRel, &[0; 8], 8);
    cell.reloc(relro, 0, state, R_64, u_layout::RELRO_ADDEND);
    cell.bytes()
}
