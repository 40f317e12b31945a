//! Merging a cell object's sections by kind at build time (DESIGN §3, "Sections merged").
//!
//! rustc puts every function and every static in a section of its own (`.text.<sym>`,
//! `.rodata.<sym>`, `.data.rel.ro.<sym>`, ...): regex-syntax's object has 3,047 sections. The loader
//! handles each section on every load (parse, place, copy, describe), which the system linker
//! does once at build time; a cell swaps and rebinds whole cells and symbols, never sections, so it
//! gains nothing from the split. `cargo cell build` therefore relinks each object with
//! `rust-lld -r` (the linker the toolchain ships) and a script that gathers the sections of each
//! kind into one: text, read-only data, relocated read-only data, data, bss, thread-locals, the
//! exception tables. The result is still a relocatable object with every symbol and every
//! relocation of the input (the relocations move to the merged sections), so the loader reads it
//! as before, with about ten sections instead of thousands.
//!
//! Then `rust-objcopy` adds a `.cell.paths` section ([`crate_metadata::paths`]): the demangled
//! path of every function, by symbol index, so that a load names the functions for debuggers
//! without demangling them again. The table is checked against the final object's symbols.
//!
//! Last, [`prelink`] applies every relocation whose value the cell's layout alone decides
//! ([`loader::prelink`]), so that a load applies only the rest; it checks that the loader takes
//! the result.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use anyhow::{bail, Context, Result};
use crate_metadata::demangle;
use crate_metadata::paths::{self, PathTable};
use goblin::elf::sym::STT_FUNC;
use goblin::elf::Elf;

/// The sections of each kind, gathered. The personality pointer of the `DW.ref` COMDAT group
/// keeps its own section, so that the group still holds only it; every section no statement
/// names (`.init_array`, `.eh_frame`, the non-alloc ones) is kept as it is.
pub const SCRIPT: &str = "SECTIONS {
  .text : { *(.text .text.*) }
  .rodata : { *(.rodata .rodata.*) }
  .data.rel.ro : { *(.data.rel.ro .data.rel.ro.*) }
  .data.DW.ref.rust_eh_personality : { *(.data.DW.ref.rust_eh_personality) }
  .data : { *(.data .data.*) }
  .bss : { *(.bss .bss.*) }
  .tdata : { *(.tdata .tdata.*) }
  .tbss : { *(.tbss .tbss.*) }
  .gcc_except_table : { *(.gcc_except_table .gcc_except_table.*) }
}
";

/// Where the toolchain's tools and libraries are.
struct Toolchain {
    /// `<sysroot>/lib/rustlib/<host>/bin`: `rust-lld`, `rust-objcopy`.
    bin: PathBuf,
    /// `<sysroot>/lib`: the `libLLVM` that `rust-objcopy` links.
    lib: PathBuf,
}

/// The toolchain of the `rustc` on the path (the pinned one, inside the workspace), from its
/// `target-libdir` (`<sysroot>/lib/rustlib/<host>/lib`).
fn toolchain() -> Result<&'static Toolchain, String> {
    static TOOLCHAIN: OnceLock<Result<Toolchain, String>> = OnceLock::new();
    TOOLCHAIN
        .get_or_init(|| {
            let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
            let out = Command::new(&rustc)
                .args(["--print", "target-libdir"])
                .output()
                .map_err(|e| format!("cannot run rustc --print target-libdir: {e}"))?;
            let libdir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
            let host_dir = libdir.parent().ok_or("rustc printed no target-libdir")?;
            let sysroot_lib = host_dir.ancestors().nth(2).ok_or("an odd target-libdir")?;
            Ok(Toolchain {
                bin: host_dir.join("bin"),
                lib: sysroot_lib.to_path_buf(),
            })
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// The toolchain's `name` (`rust-lld`, `rust-objcopy`: both part of its `rustc` component).
fn tool(name: &str) -> Result<(PathBuf, &'static Path)> {
    let toolchain = toolchain().map_err(|e| anyhow::anyhow!("{e}"))?;
    let path = toolchain.bin.join(name);
    if !path.is_file() {
        bail!(
            "the toolchain has no {name} at {} (it is part of the `rustc` component for \
             x86_64-unknown-linux-gnu)",
            path.display()
        );
    }
    Ok((path, &toolchain.lib))
}

/// Scratch files of one call, removed when dropped.
struct Scratch {
    dir: PathBuf,
    stem: String,
    made: Vec<PathBuf>,
}

impl Scratch {
    /// One name per process, call and crate: parallel builds (test binaries) share no file.
    fn new(crate_name: &str) -> Result<Scratch> {
        static SERIAL: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join("cells-merge");
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let serial = SERIAL.fetch_add(1, Ordering::Relaxed);
        Ok(Scratch {
            dir,
            stem: format!("{crate_name}.{}.{serial}", std::process::id()),
            made: Vec::new(),
        })
    }

    /// The path of scratch file `suffix`, written with `bytes` when given.
    fn file(&mut self, suffix: &str, bytes: Option<&[u8]>) -> Result<PathBuf> {
        let path = self.dir.join(format!("{}.{suffix}", self.stem));
        self.made.push(path.clone());
        if let Some(bytes) = bytes {
            std::fs::write(&path, bytes)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        Ok(path)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        for f in &self.made {
            let _ = std::fs::remove_file(f);
        }
    }
}

/// Runs the toolchain's `tool` with `args` on behalf of crate `crate_name`.
fn run(tool_name: &str, args: &[&std::ffi::OsStr], crate_name: &str, what: &str) -> Result<()> {
    let (tool, lib) =
        tool(tool_name).with_context(|| format!("{what} needs the toolchain's {tool_name}"))?;
    // rust-objcopy links the toolchain's `libLLVM`, in `<sysroot>/lib`, which only a process that
    // cargo or rustup started has on its library path (a bench binary run by hand has not).
    let mut library_path = std::ffi::OsString::from(lib);
    if let Some(old) = std::env::var_os("LD_LIBRARY_PATH").filter(|p| !p.is_empty()) {
        library_path.push(":");
        library_path.push(old);
    }
    let out = Command::new(&tool)
        .args(args)
        .env("LD_LIBRARY_PATH", library_path)
        .output()
        .with_context(|| format!("cannot run {}", tool.display()))?;
    if !out.status.success() {
        bail!(
            "{tool_name} could not {what} of `{crate_name}` ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// `object`, the object of crate `crate_name`, with its sections merged by kind and the paths of
/// its functions added (the module's doc). The tools' input and output are files in the system's
/// temporary directory, removed afterwards.
pub fn merge_sections(object: &[u8], crate_name: &str) -> Result<Vec<u8>> {
    let mut scratch = Scratch::new(crate_name)?;
    let input = scratch.file("in.o", Some(object))?;
    let script = scratch.file("ld", Some(SCRIPT.as_bytes()))?;
    let merged = scratch.file("merged.o", None)?;
    let args = [
        "-flavor".as_ref(),
        "gnu".as_ref(),
        "-r".as_ref(),
        "-T".as_ref(),
        script.as_os_str(),
        input.as_os_str(),
        "-o".as_ref(),
        merged.as_os_str(),
    ];
    run("rust-lld", &args, crate_name, "merge the sections")?;
    let merged_bytes =
        std::fs::read(&merged).with_context(|| format!("cannot read {}", merged.display()))?;
    let merged_elf = Elf::parse(&merged_bytes)
        .with_context(|| format!("the merged object of `{crate_name}` is not ELF"))?;
    let table = scratch.file("paths", Some(&path_table(&merged_elf)))?;
    let out = scratch.file("out.o", None)?;
    let mut add = std::ffi::OsString::from(format!("{}=", paths::SECTION));
    add.push(&table);
    let args = [
        "--add-section".as_ref(),
        add.as_os_str(),
        merged.as_os_str(),
        out.as_os_str(),
    ];
    run("rust-objcopy", &args, crate_name, "add the function paths")?;
    let bytes = std::fs::read(&out).with_context(|| format!("cannot read {}", out.display()))?;
    check_paths(&bytes, &symbol_names(&merged_elf), crate_name)?;
    Ok(bytes)
}

/// The `.cell.paths` table of the object `elf` ([`crate_metadata::paths`]): the path of every
/// named function symbol, by symbol index.
fn path_table(elf: &Elf<'_>) -> Vec<u8> {
    let paths: Vec<Option<String>> = elf
        .syms
        .iter()
        .map(|sym| {
            let name = elf.strtab.get_at(sym.st_name)?;
            (sym.st_type() == STT_FUNC && !name.is_empty()).then(|| demangle::path(name))
        })
        .collect();
    paths::encode(&paths)
}

/// Every symbol's name, by index.
fn symbol_names<'a>(elf: &Elf<'a>) -> Vec<&'a str> {
    elf.syms
        .iter()
        .map(|s| elf.strtab.get_at(s.st_name).unwrap_or_default())
        .collect()
}

/// Refuses a cell object whose `.cell.paths` no longer belongs to its symbols: the table is
/// indexed by symbol, so adding it must leave every symbol where it was (`names`, the symbols the
/// table was made from) and the table must read back.
fn check_paths(object: &[u8], names: &[&str], crate_name: &str) -> Result<()> {
    let elf = Elf::parse(object)
        .with_context(|| format!("the cell object of `{crate_name}` is not ELF"))?;
    if symbol_names(&elf) != names {
        bail!(
            "adding {} to the object of `{crate_name}` moved its symbols",
            paths::SECTION
        );
    }
    let section = elf
        .section_headers
        .iter()
        .find(|h| elf.shdr_strtab.get_at(h.sh_name) == Some(paths::SECTION))
        .with_context(|| {
            format!(
                "the cell object of `{crate_name}` has no {}",
                paths::SECTION
            )
        })?;
    let bytes = section
        .file_range()
        .and_then(|r| object.get(r))
        .unwrap_or_default();
    PathTable::parse(bytes, elf.syms.len()).with_context(|| {
        format!(
            "the {} of `{crate_name}` does not fit its symbols",
            paths::SECTION
        )
    })?;
    Ok(())
}

/// `object`, the merged object of crate `crate_name`, prelinked for x86_64's pages
/// ([`loader::prelink`]): the fields its layout decides are written, and the loader is checked to
/// take the table (a load that did not would apply every relocation, correct but slower) and the
/// metadata's names laid out with it (a load that did not would find them one by one).
pub fn prelink(object: &[u8], crate_name: &str) -> Result<Vec<u8>> {
    use loader::prelink::{accepted, PAGE_SIZE};
    let prelinked = loader::prelink::prelink(crate_name, object, PAGE_SIZE)
        .map_err(|e| anyhow::anyhow!("cannot prelink `{crate_name}`: {e}"))?;
    let taken = accepted(crate_name, &prelinked.object, PAGE_SIZE)
        .map_err(|e| anyhow::anyhow!("the prelinked object of `{crate_name}`: {e}"))?;
    if !taken {
        bail!(
            "the loader does not take the {} it was given for `{crate_name}`",
            loader::prelink::SECTION
        );
    }
    let named = loader::prelink::names_accepted(crate_name, &prelinked.object, PAGE_SIZE)
        .map_err(|e| anyhow::anyhow!("the prelinked object of `{crate_name}`: {e}"))?;
    if !named {
        bail!(
            "the loader does not take the {} it was given for `{crate_name}`, or it names \
             something otherwise than the object does",
            loader::prelink::names::SECTION
        );
    }
    Ok(prelinked.object)
}
