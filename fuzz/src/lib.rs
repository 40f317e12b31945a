//! Shared by the fuzz targets: a platform that never runs a cell's code, and one load-then-unload
//! step against a system with an empty `_kernel` namespace. The unwind target's edits of
//! `.eh_frame` and its lookups through libgcc are in [`unwind`].

pub mod unwind;

use std::cell::RefCell;

use crate_metadata::{CellId, NamespaceId};
use loader::hosted::Hosted;
use loader::overlay::{Layer, Overlay};
use loader::platform::SymbolSource;
use loader::{CellSpec, System};

/// Where every symbol nobody defines resolves to: a fuzzed cell then links as far as it can (GOT,
/// stubs, relocations, publish) instead of stopping at "undefined symbols". Nothing is ever called
/// or read through it: [`NoRun`] runs no code.
static DUMMY: [u8; 4096] = [0; 4096];

/// The hosted platform, except that loaded code never runs (no `.init_array`: a mutated object
/// that links would otherwise have the loader call garbage), and every symbol that neither the
/// namespace nor the base image defines resolves to a dummy address.
pub type NoRun = Overlay<Hosted, NoCode>;

/// What [`NoRun`] changes of the hosted platform.
pub struct NoCode;

impl Layer<Hosted> for NoCode {
    fn platform_symbol(&self, inner: &Hosted, name: &str) -> Option<usize> {
        inner
            .platform_symbol(name)
            .or(Some(DUMMY.as_ptr() as usize))
    }
    fn runs_code(&self, _inner: &Hosted) -> bool {
        false
    }
}

/// The real cells the structure-aware targets edit (`seeds/`: klog, frame_alloc, counter,
/// tls_stats).
pub const SEEDS: [&[u8]; 4] = [
    include_bytes!("../seeds/klog.o"),
    include_bytes!("../seeds/frame_alloc.o"),
    include_bytes!("../seeds/counter.o"),
    include_bytes!("../seeds/tls_stats.o"),
];

/// The seed `which` selects, and its index.
pub fn seed(which: u8) -> (usize, &'static [u8]) {
    let i = which as usize % SEEDS.len();
    (i, SEEDS[i])
}

struct Scratch {
    system: System<NoRun>,
    ns: NamespaceId,
}

thread_local! {
    static SCRATCH: RefCell<Option<Scratch>> = const { RefCell::new(None) };
}

/// Loads `bytes` as the cell `fuzzed` into the empty `_kernel` namespace of a per-thread system,
/// and unloads it again when the load succeeded. A load error is the expected outcome for almost
/// every input; a panic, crash or hang is the bug.
pub fn load_and_unload(bytes: &[u8]) {
    load_then(bytes, &mut |_, _| {});
}

/// [`load_and_unload`], calling `loaded` with the system and the cell between a successful load
/// and the unload.
pub fn load_then(bytes: &[u8], loaded: &mut dyn FnMut(&System<NoRun>, CellId)) {
    SCRATCH.with(|scratch| {
        let mut scratch = scratch.borrow_mut();
        let s = scratch.get_or_insert_with(|| {
            let platform = Overlay::new(Hosted::new().expect("hosted platform"), NoCode);
            let mut system = System::new(platform, "fuzz");
            let ns = system
                .create_namespace("_kernel", None)
                .expect("a namespace");
            Scratch { system, ns }
        });
        let before = s.system.platform().inner().live_mappings();
        match s.system.load(s.ns, CellSpec::named("fuzzed"), bytes) {
            Ok(id) => {
                loaded(&s.system, id);
                if let Err(e) = s.system.unload(id) {
                    panic!("a freshly loaded cell that nothing uses cannot be unloaded: {e}");
                }
            }
            Err(e) => {
                // Every error renders (Display walks the demangler and the names it carries).
                let _ = e.to_string();
            }
        }
        let after = s.system.platform().inner().live_mappings();
        assert_eq!(
            before, after,
            "a load (failed or unloaded) left mappings behind"
        );
    });
}

/// Where the tables of one seed object are.
pub struct Tables {
    shoff: usize,
    shnum: usize,
    symtab: (usize, usize),
    /// File offset of every relocation entry, across all `.rela*` sections.
    relas: Vec<usize>,
}

impl Tables {
    /// Reads the table locations of a well-formed object.
    pub fn of(bytes: &[u8]) -> Tables {
        use goblin::elf::section_header::{SHT_RELA, SHT_SYMTAB};
        let elf = goblin::elf::Elf::parse(bytes).expect("a seed is a well-formed object");
        let mut symtab = (0, 0);
        let mut relas = Vec::new();
        for sh in &elf.section_headers {
            if sh.sh_type == SHT_SYMTAB {
                symtab = (sh.sh_offset as usize, sh.sh_size as usize / 24);
            }
            if sh.sh_type == SHT_RELA {
                let n = sh.sh_size as usize / 24;
                relas.extend((0..n).map(|i| sh.sh_offset as usize + i * 24));
            }
        }
        Tables {
            shoff: elf.header.e_shoff as usize,
            shnum: elf.section_headers.len(),
            symtab,
            relas,
        }
    }
}

/// Values worth trying in any field.
pub(crate) const INTERESTING: [u64; 24] = [
    0,
    1,
    2,
    4,
    7,
    8,
    16,
    24,
    64,
    0xff00,
    0xfff1,
    0xfff2,
    0xffff,
    4095,
    4096,
    4097,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
    0x1_0000_0000,
    i64::MAX as u64,
    i64::MIN as u64,
    u64::MAX - 7,
    u64::MAX,
];

/// Edits the `width`-byte little-endian field at `at` (nothing when it is out of bounds): `mode` 0
/// sets it to `value`, 1 adds `value`, 2 picks an interesting value, 3 xors `value` in.
pub(crate) fn put(out: &mut [u8], at: usize, width: usize, mode: u8, value: u64) {
    let Some(field) = at.checked_add(width).and_then(|end| out.get_mut(at..end)) else {
        return;
    };
    let mut old = [0u8; 8];
    old[..width].copy_from_slice(field);
    let old = u64::from_le_bytes(old);
    let new = match mode {
        0 => value,
        1 => old.wrapping_add(value),
        2 => INTERESTING[(value % INTERESTING.len() as u64) as usize],
        _ => old ^ value,
    };
    field.copy_from_slice(&new.to_le_bytes()[..width]);
}

/// Applies the edits that `ops` encodes to a copy of `seed`: 12 bytes per edit — a selector (bits
/// 0-1 the table: section header, symbol, relocation, ELF header/raw byte; bits 2-3 the mode: set,
/// add, interesting value, xor), a 16-bit entry index, a field number and a 64-bit value.
pub fn mutate(seed: &[u8], tables: &Tables, ops: &[u8]) -> Vec<u8> {
    let mut out = seed.to_vec();
    for op in ops.chunks_exact(12) {
        let table = op[0] & 3;
        let mode = (op[0] >> 2) & 3;
        let index = u16::from_le_bytes([op[1], op[2]]) as usize;
        let field = op[3];
        let value = u64::from_le_bytes(op[4..12].try_into().unwrap());
        match table {
            0 if tables.shnum > 0 => {
                let base = tables.shoff + (index % tables.shnum) * 64;
                // sh_type, sh_flags, sh_offset, sh_size, sh_link, sh_info, sh_addralign,
                // sh_entsize, sh_name
                let (off, width) = [
                    (4, 4),
                    (8, 8),
                    (24, 8),
                    (32, 8),
                    (40, 4),
                    (44, 4),
                    (48, 8),
                    (56, 8),
                    (0, 4),
                ][field as usize % 9];
                put(&mut out, base + off, width, mode, value);
            }
            1 if tables.symtab.1 > 0 => {
                let base = tables.symtab.0 + (index % tables.symtab.1) * 24;
                // st_shndx, st_value, st_size, st_info, st_name, st_other
                let (off, width) =
                    [(6, 2), (8, 8), (16, 8), (4, 1), (0, 4), (5, 1)][field as usize % 6];
                put(&mut out, base + off, width, mode, value);
            }
            2 if !tables.relas.is_empty() => {
                let base = tables.relas[index % tables.relas.len()];
                // r_offset, r_type, r_sym, r_addend
                let (off, width) = [(0, 8), (8, 4), (12, 4), (16, 8)][field as usize % 4];
                put(&mut out, base + off, width, mode, value);
            }
            _ => {
                // ELF header fields, or one raw byte anywhere.
                match field % 4 {
                    // e_shoff, e_shnum, e_shstrndx
                    0 => put(&mut out, 40, 8, mode, value),
                    1 => put(&mut out, 60, 2, mode, value),
                    2 => put(&mut out, 62, 2, mode, value),
                    _ => {
                        let at = index.wrapping_mul(257).wrapping_add(value as usize >> 8);
                        let len = out.len();
                        put(&mut out, at % len, 1, mode, value);
                    }
                }
            }
        }
    }
    out
}
