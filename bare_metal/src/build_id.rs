//! Which build of the kernel is running, and whether the boot module's kernel ELF file is the
//! same build.
//!
//! The cells are linked against the symbol table of the kernel ELF file in the boot module
//! (QEMU does not load the running image's symbol table). A stale file, from an earlier build of
//! the kernel, names addresses that are no longer the kernel's functions: a cell linked against
//! it would call into the middle of other code. The linker writes a GNU build id (`--build-id=sha1`
//! in `build.rs`: a hash of the whole output file, symbol table included) into a note, which
//! `link.ld` keeps in the image between `__build_id_start` and `__build_id_end`; [`check_module`]
//! compares the running kernel's note with the one in the boot module's ELF file before any cell
//! is linked, and refuses the module, naming both build ids, when they differ.

use alloc::format;
use alloc::string::String;

use crate_metadata::hex;
use goblin::container::{Container, Ctx, Endian};
use goblin::elf::note::{Note, NoteDataIterator, NT_GNU_BUILD_ID};
use goblin::elf::Elf;

extern "C" {
    static __build_id_start: u8;
    static __build_id_end: u8;
}

/// The section the linker writes the build id note into.
const SECTION: &str = ".note.gnu.build-id";
/// Its owner.
const OWNER: &str = "GNU";

/// The running kernel's build id, from its own note.
pub fn running() -> Result<&'static [u8], String> {
    let start = core::ptr::addr_of!(__build_id_start);
    let end = core::ptr::addr_of!(__build_id_end);
    let len = (end as usize).saturating_sub(start as usize);
    // SAFETY: `link.ld` places `.note.gnu.build-id` between the two symbols, in the image's
    // read-only data, which is mapped (R+NX) for the kernel's lifetime and never written.
    let note: &'static [u8] = unsafe { core::slice::from_raw_parts(start, len) };
    let notes = NoteDataIterator {
        data: note,
        size: note.len(),
        offset: 0,
        ctx: (4, Ctx::new(Container::Big, Endian::Little)),
    };
    find(notes).ok_or_else(|| {
        String::from(
            "the running kernel has no GNU build id note (link.ld keeps .note.gnu.build-id; build.rs links with --build-id=sha1)",
        )
    })
}

/// The build id of the kernel ELF file `bytes` (parsed as `elf`), from its `.note.gnu.build-id`.
fn of_elf<'a>(elf: &Elf<'a>, bytes: &'a [u8]) -> Option<&'a [u8]> {
    find(elf.iter_note_sections(bytes, Some(SECTION))?)
}

/// The descriptor of the first well-formed GNU build id note among `notes`.
fn find<'a>(
    notes: impl Iterator<Item = Result<Note<'a>, goblin::error::Error>>,
) -> Option<&'a [u8]> {
    notes
        .filter_map(Result::ok)
        .find(|n| n.n_type == NT_GNU_BUILD_ID && n.name == OWNER && !n.desc.is_empty())
        .map(|n| n.desc)
}

/// Accepts the boot module's kernel ELF file (`elf`, from `bytes`) only if it is the running
/// kernel's build; returns the build id. The error names both build ids and what to rebuild.
pub fn check_module(elf: &Elf<'_>, bytes: &[u8]) -> Result<&'static [u8], String> {
    let running = running()?;
    let Some(packed) = of_elf(elf, bytes) else {
        return Err(format!(
            "the kernel ELF file in the boot module has no GNU build id note, so its symbol table cannot be matched with the running kernel (build id {}); no cell was linked. Rebuild the kernel and its boot module together with `cargo cell qemu --build-only`",
            hex::encode(running)
        ));
    };
    if packed != running {
        return Err(format!(
            "the boot module's kernel symbol table is from another build of the kernel: build id {} in the boot module, {} running; no cell was linked against it. Rebuild the kernel and its boot module together with `cargo cell qemu --build-only` (or boot the kernel the module was packed with)",
            hex::encode(packed),
            hex::encode(running)
        ));
    }
    Ok(running)
}
