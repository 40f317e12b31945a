//! Unwind tables are checked before they are registered (issue 19, item 1): a cell whose relocated
//! `.eh_frame` the unwinder cannot walk safely is refused at load and at swap, with the offset at
//! fault, and nothing of it is registered; every real cell's table passes, and libgcc finds every
//! FDE of it where the loader's check says it is.

mod common;

use std::sync::{Mutex, MutexGuard};

use crate_metadata::{CellKind, SectionKind};
use goblin::elf::Elf;
use loader::hosted::Hosted;
use loader::overlay::{Layer, Overlay};
use loader::platform::{SymbolSource, TlsSymbol};
use loader::{
    CellSpec, EhFrameFault, EhPointer, LoadError, Malformation, NewVersion, SwapError, SwapOptions,
    SwapRequest, System,
};
use nano_core::apps::Outcome;
use nano_core::Kernel;

/// The FDE libgcc finds for `pc` (0: none), and the start of the function it gives.
fn find_fde(pc: u64) -> (u64, u64) {
    loader::hosted::find_fde(pc).map_or((0, 0), |f| (f.fde, f.function))
}

/// Tests here register and unwind process-wide state: they take turns.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Where every symbol nothing else defines resolves to, so that any cell loads on its own.
static DUMMY: [u64; 512] = [0; 512];

/// The hosted platform (real `mmap`, real libgcc registration), except that no cell code runs
/// and a symbol no one defines resolves to [`DUMMY`]: every object of `target/cells` loads by
/// itself.
type Standalone = Overlay<Hosted, Alone>;

/// What [`Standalone`] changes of the hosted platform.
struct Alone;

impl Layer<Hosted> for Alone {
    fn image_tls_symbol(&self, inner: &Hosted, name: &str) -> Option<TlsSymbol> {
        // A thread-local of a dependency cell that is not loaded here: never reached.
        let dummy = TlsSymbol {
            module: 1,
            offset: 0,
        };
        inner.image_tls_symbol(name).or(Some(dummy))
    }
    fn platform_symbol(&self, inner: &Hosted, name: &str) -> Option<usize> {
        inner
            .platform_symbol(name)
            .or(Some(DUMMY.as_ptr() as usize))
    }
    fn runs_code(&self, _inner: &Hosted) -> bool {
        false
    }
}

fn standalone() -> (System<Standalone>, crate_metadata::NamespaceId) {
    let mut system = System::new(Overlay::new(Hosted::new().unwrap(), Alone), "unwind-tables");
    let ns = system.create_namespace("_kernel", None).unwrap();
    (system, ns)
}

/// The file offset and size of `greet.o`'s `.eh_frame`, with the object.
fn greet() -> (Vec<u8>, usize, usize) {
    let bytes = common::object(CellKind::Libs, "greet");
    let (offset, size) = section(&bytes, ".eh_frame");
    (bytes, offset, size)
}

/// The file offset and size of the section `name`.
fn section(bytes: &[u8], name: &str) -> (usize, usize) {
    let elf = Elf::parse(bytes).unwrap();
    let sh = elf
        .section_headers
        .iter()
        .find(|sh| elf.shdr_strtab.get_at(sh.sh_name) == Some(name))
        .unwrap_or_else(|| panic!("no {name}"));
    (sh.sh_offset as usize, sh.sh_size as usize)
}

/// The issue's object: `greet.o` with the third byte of its first CIE's id set to 0x28.
fn greet_bad_cie() -> Vec<u8> {
    let (mut bytes, eh, _) = greet();
    // The first record is a CIE: its id (bytes 4..8 of the section) is 0.
    assert_eq!(
        &bytes[eh + 4..eh + 8],
        &[0; 4],
        "greet's first record is a CIE"
    );
    bytes[eh + 6] = 0x28;
    bytes
}

/// The error for the issue's object: the CIE's id, now 0x280000, read as an FDE's CIE pointer
/// that leads before the section.
fn bad_cie_error() -> LoadError {
    LoadError::Malformed {
        cell: "greet".into(),
        what: Malformation::EhFrame {
            section: ".eh_frame".into(),
            offset: 4,
            fault: EhFrameFault::CiePointer { pointer: 0x28_0000 },
        },
    }
}

/// An unwind of this thread's stack (a backtrace), which makes libgcc walk every registered
/// table it has not sorted yet.
fn unwind_here() -> bool {
    let trace = std::backtrace::Backtrace::force_capture();
    trace.status() == std::backtrace::BacktraceStatus::Captured
}

#[test]
fn the_issues_one_byte_change_is_refused_at_load_and_at_swap_and_unwinding_still_works() {
    let _serial = serial();
    nano_core::logger::install(log::LevelFilter::Off);
    let mut kernel =
        Kernel::boot(common::cells_dir()).unwrap_or_else(|e| panic!("boot failed: {e:#}"));
    let bad = greet_bad_cie();
    // The issue's exact byte: 0x15e of the object as the build makes it today.
    let (_, eh, _) = greet();
    eprintln!(
        "greet.o: .eh_frame at {eh:#x}, the CIE id byte changed at {:#x}",
        eh + 6
    );

    let state = |k: &Kernel| {
        (
            k.namespaces().snapshot(),
            k.system().registry().clone(),
            k.system().platform().live_mappings(),
        )
    };

    // At load, into a namespace of its own.
    let parent = kernel.kernel_namespace();
    let ns = kernel
        .system_mut()
        .create_namespace("eh-test", Some(parent))
        .unwrap();
    let before = state(&kernel);
    let err = kernel
        .system_mut()
        .load(ns, CellSpec::named("greet"), &bad)
        .expect_err("a broken .eh_frame must be refused");
    assert_eq!(err, bad_cie_error());
    assert!(err.to_string().contains("greet"), "{err}");
    assert!(err.to_string().contains(".eh_frame+0x4"), "{err}");
    assert!(
        state(&kernel) == before,
        "the failed load left something behind"
    );
    kernel.system_mut().remove_namespace(ns).unwrap();

    // At swap: the new version is staged with the same load code.
    let old = kernel.cell_id("greet").expect("greet is live");
    let before = state(&kernel);
    let request = SwapRequest {
        old,
        new: NewVersion::Object {
            spec: CellSpec::named("greet"),
            bytes: &bad,
        },
    };
    let err = kernel
        .system_mut()
        .swap(&[request], &SwapOptions::default())
        .expect_err("a swap to a broken .eh_frame must be refused");
    assert_eq!(err, SwapError::Stage(bad_cie_error()));
    assert!(
        state(&kernel) == before,
        "the failed swap left something behind"
    );
    // And through the kernel, as `ctl swap greet <file>` does it.
    let err = kernel
        .swap_bytes("greet", &bad, &SwapOptions::default())
        .expect_err("refused");
    assert!(format!("{err:#}").contains(".eh_frame+0x4"), "{err:#}");

    // Nothing bad was registered: an unwind through every registered table, and a panic that
    // unwinds through cell frames, both work.
    assert!(unwind_here());
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let crashed = kernel.run_app("crasher", &["bob".to_string()]);
    std::panic::set_hook(hook);
    match crashed.unwrap() {
        Outcome::Panicked(msg) => assert!(msg.contains("deliberately panicking"), "{msg}"),
        other => panic!("crasher did not panic: {other:?}"),
    }
    assert!(unwind_here());
}

/// A standalone system (its platform reads the executable's symbols once) and its namespace.
type Scratch = (System<Standalone>, crate_metadata::NamespaceId);

/// Loads `bytes` as `greet` into `system`, expects an `.eh_frame` fault, checks that nothing was
/// left behind, and returns the offset and the fault.
fn refusal((system, ns): &mut Scratch, bytes: &[u8], what: &str) -> (u64, EhFrameFault) {
    let ns = *ns;
    let before = (
        system.platform().inner().live_mappings(),
        system.registry().clone(),
        system.namespaces().snapshot(),
    );
    let err = system
        .load(ns, CellSpec::named("greet"), bytes)
        .expect_err(what);
    let after = (
        system.platform().inner().live_mappings(),
        system.registry().clone(),
        system.namespaces().snapshot(),
    );
    assert!(
        after == before,
        "{what}: the failed load left something behind"
    );
    assert!(err.to_string().contains("`greet`"), "{what}: {err}");
    match err {
        LoadError::Malformed {
            what:
                Malformation::EhFrame {
                    section,
                    offset,
                    fault,
                },
            ..
        } if section == ".eh_frame" => (offset, fault),
        other => panic!("{what}: {other}"),
    }
}

/// [`refusal`], expecting `fault` at `offset`.
fn refused_with(s: &mut Scratch, bytes: &[u8], what: &str, offset: u64, fault: EhFrameFault) {
    assert_eq!(refusal(s, bytes, what), (offset, fault), "{what}");
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn put_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

/// The `.rela.eh_frame` entry whose `r_offset` is `offset`: its file offset.
fn eh_rela(bytes: &[u8], offset: u64) -> usize {
    let (rela, size) = section(bytes, ".rela.eh_frame");
    (0..size / 24)
        .map(|i| rela + i * 24)
        .find(|at| u64::from_le_bytes(bytes[*at..*at + 8].try_into().unwrap()) == offset)
        .unwrap_or_else(|| panic!("no relocation at .eh_frame+{offset:#x}"))
}

#[test]
fn mutated_tables_in_a_real_cell_are_refused_each_with_its_fault() {
    let _serial = serial();
    let (greet, eh, size) = greet();
    let mut s = standalone();
    let id =
        s.0.load(s.1, CellSpec::named("greet"), &greet)
            .expect("greet as built loads on its own");
    // `cargo cell build` checked its table (`.cell.prelink`): every mutation below changes the
    // bytes the load registers, so the load checks them again.
    let stats = &s.0.registry().cell(id).unwrap().stats;
    assert!(stats.unwind_checked_at_build, "{stats:?}");
    s.0.unload(id).unwrap();

    // greet's table: a CIE at 0 ("zR", pc-relative sdata4), then FDEs. Offsets are the table's.
    let cie_len = u32_at(&greet, eh) as usize;
    let fde = cie_len + 4; // the first FDE
    let fde_len = u32_at(&greet, eh + fde) as usize;
    let last = {
        let mut at = 0;
        while at + 4 + u32_at(&greet, eh + at) as usize != size {
            at += 4 + u32_at(&greet, eh + at) as usize;
        }
        at
    };
    let edit = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut b = greet.clone();
        f(&mut b);
        b
    };

    // The issue's case, on its own.
    refused_with(
        &mut s,
        &greet_bad_cie(),
        "the CIE id",
        4,
        EhFrameFault::CiePointer { pointer: 0x28_0000 },
    );
    // Lengths: one longer than the section, the 64-bit escape, one cut short so that the next
    // "record" starts inside this one, and the last record running into the terminator.
    refused_with(
        &mut s,
        &edit(&|b| put_u32(b, eh + fde, 0x10_0000)),
        "too long",
        fde as u64,
        EhFrameFault::LengthPastEnd {
            length: 0x10_0000,
            left: (size - fde - 4) as u64,
        },
    );
    refused_with(
        &mut s,
        &edit(&|b| put_u32(b, eh + fde, u32::MAX)),
        "64-bit length",
        fde as u64,
        EhFrameFault::Length64,
    );
    refused_with(
        &mut s,
        &edit(&|b| {
            let length = u32_at(b, eh + last);
            put_u32(b, eh + last, length + 4)
        }),
        "into the terminator",
        last as u64,
        EhFrameFault::LengthPastEnd {
            length: (size - last) as u32,
            left: (size - last - 4) as u64,
        },
    );
    refused_with(
        &mut s,
        &edit(&|b| put_u32(b, eh + fde, 4)),
        "too short for pc_begin",
        (fde + 8) as u64,
        EhFrameFault::FieldPastRecord {
            field: loader::EhField::PcBegin,
        },
    );
    refused_with(
        &mut s,
        &edit(&|b| put_u32(b, eh, 0)),
        "a zero length first",
        0,
        EhFrameFault::EarlyTerminator,
    );
    // CIE pointers: into the middle of the CIE, past the section's start, forwards.
    for pointer in [(fde + 4 - 8) as u32, (fde + 4 + 1) as u32, 0xffff_fff0] {
        refused_with(
            &mut s,
            &edit(&|b| put_u32(b, eh + fde + 4, pointer)),
            "CIE pointer",
            (fde + 4) as u64,
            EhFrameFault::CiePointer { pointer },
        );
    }
    // The CIE: its version, its augmentation, its FDE encoding (0x1b, after "zR\0", the two
    // alignment factors, the return address register and the augmentation length).
    assert_eq!(&greet[eh + 9..eh + 12], b"zR\0");
    refused_with(
        &mut s,
        &edit(&|b| b[eh + 8] = 2),
        "version",
        8,
        EhFrameFault::CieVersion { version: 2 },
    );
    refused_with(
        &mut s,
        &edit(&|b| b[eh + 10] = b'Q'),
        "augmentation",
        9,
        EhFrameFault::Augmentation {
            augmentation: "zQ".into(),
        },
    );
    assert_eq!(greet[eh + 16], 0x1b, "pcrel sdata4");
    for (encoding, why) in [
        (0x3b, "datarel"),
        (0x09, "sleb128"),
        (0x9b, "indirect FDE pointer"),
    ] {
        refused_with(
            &mut s,
            &edit(&|b| b[eh + 16] = encoding),
            why,
            16,
            EhFrameFault::Encoding {
                pointer: EhPointer::Fde,
                encoding,
            },
        );
    }
    refused_with(
        &mut s,
        &edit(&|b| b[eh + 14] = 17),
        "return address register",
        14,
        EhFrameFault::Register { register: 17 },
    );
    // An FDE outside the text: its pc_begin moved 64 KiB on, in the field the build wrote
    // (`cargo cell build` applied its relocation), or through its relocation when the load
    // applies every one.
    let pc_begin = eh + fde + 8;
    let moved_field = edit(&|b| {
        let value = u32_at(b, pc_begin).wrapping_add(0x10000);
        put_u32(b, pc_begin, value)
    });
    let rela = eh_rela(&greet, (fde + 8) as u64);
    let moved_relocation = common::applying_every_relocation(edit(&|b| {
        let addend = i64::from_le_bytes(b[rela + 16..rela + 24].try_into().unwrap());
        b[rela + 16..rela + 24].copy_from_slice(&(addend + 0x10000).to_le_bytes());
    }));
    for moved in [moved_field, moved_relocation] {
        match refusal(&mut s, &moved, "FDE outside the text") {
            (offset, EhFrameFault::FdeOutsideText { pc_range, .. }) => {
                assert_eq!(offset, (fde + 8) as u64);
                assert_eq!(pc_range, u64::from(u32_at(&greet, eh + fde + 12)));
            }
            other => panic!("FDE outside the text: {other:?}"),
        }
    }
    // A call-frame instruction the unwinder would evaluate: DW_CFA_expression in place of the
    // first FDE's first instruction (after its CIE pointer, pc_begin, pc_range and the
    // augmentation length).
    let insn = fde + 4 + 4 + 4 + 4 + 1;
    assert!(insn < fde + 4 + fde_len);
    refused_with(
        &mut s,
        &edit(&|b| b[eh + insn] = 0x10),
        "DW_CFA_expression",
        insn as u64,
        EhFrameFault::Instruction { opcode: 0x10 },
    );
    refused_with(
        &mut s,
        &edit(&|b| b[eh + insn] = 0x0b),
        "restore_state without remember_state",
        insn as u64,
        EhFrameFault::StateStack { depth: -1 },
    );
}

#[test]
fn every_real_cells_table_passes_and_libgcc_finds_each_fde_where_the_check_says() {
    let _serial = serial();
    let manifest = common::manifest();
    let mut fdes = 0;
    let (mut system, ns) = standalone();
    for entry in &manifest.cells {
        let bytes = std::fs::read(common::cells_dir().join(&entry.object)).unwrap();
        let id = system
            .load(ns, CellSpec::named(&entry.name), &bytes)
            .unwrap_or_else(|e| panic!("{} ({}): {e}", entry.name, entry.object));
        let cell = system.registry().cell(id).unwrap();
        let Some(eh) = cell
            .sections
            .iter()
            .find(|s| s.kind == SectionKind::EhFrame)
        else {
            system.unload(id).unwrap();
            continue;
        };
        let eh = eh.addr;
        let checked = system
            .unwind_table(id)
            .expect("a loaded cell with an .eh_frame has a table")
            .unwrap_or_else(|e| panic!("{}: {e:?}", entry.name));
        for fde in &checked.fdes {
            for pc in [fde.pc_begin, fde.pc_begin + fde.pc_range.max(1) - 1] {
                let (found, func) = find_fde(pc);
                assert_eq!(
                    found,
                    eh + fde.offset as u64,
                    "{}: the FDE for {pc:#x}",
                    entry.name
                );
                assert_eq!(func, fde.pc_begin, "{}", entry.name);
            }
        }
        fdes += checked.fdes.len();
        system.unload(id).unwrap();
        // Deregistered with the cell.
        if let Some(fde) = checked.fdes.first() {
            assert_eq!(find_fde(fde.pc_begin).0, 0, "{}", entry.name);
        }
    }
    assert!(fdes > 1000, "{fdes} FDEs");
}
