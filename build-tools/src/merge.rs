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

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use anyhow::{bail, Context, Result};

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

/// The toolchain's `rust-lld`: `<sysroot>/lib/rustlib/<host>/bin/rust-lld` of the `rustc` on the
/// path (the pinned toolchain, inside the workspace).
fn rust_lld() -> Result<&'static Path> {
    static LLD: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let found = LLD.get_or_init(|| {
        let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
        let print = |args: &[&str]| -> Result<String, String> {
            let out = Command::new(&rustc)
                .args(args)
                .output()
                .map_err(|e| format!("cannot run rustc {}: {e}", args.join(" ")))?;
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        };
        let sysroot = print(&["--print", "sysroot"])?;
        let version = print(&["-vV"])?;
        let host = version
            .lines()
            .find_map(|l| l.strip_prefix("host: "))
            .ok_or("rustc -vV names no host")?;
        let lld = Path::new(sysroot.trim())
            .join("lib/rustlib")
            .join(host.trim())
            .join("bin/rust-lld");
        if lld.is_file() {
            Ok(lld)
        } else {
            Err(format!(
                "the toolchain has no rust-lld at {} (it is part of the `rustc` component \
                 for x86_64-unknown-linux-gnu)",
                lld.display()
            ))
        }
    });
    found
        .as_deref()
        .map_err(|e| anyhow::anyhow!("{e}"))
        .context("merging a cell's sections needs the toolchain's rust-lld")
}

/// `object`, the object of crate `crate_name`, with its sections merged by kind (the module's
/// doc). The linker's input and output are files in the system's temporary directory, removed
/// afterwards.
pub fn merge_sections(object: &[u8], crate_name: &str) -> Result<Vec<u8>> {
    static SERIAL: AtomicU64 = AtomicU64::new(0);
    let lld = rust_lld()?;
    let scratch = std::env::temp_dir().join("cells-merge");
    std::fs::create_dir_all(&scratch)
        .with_context(|| format!("cannot create {}", scratch.display()))?;
    // One name per process, call and crate: parallel builds (test binaries) share no file.
    let serial = SERIAL.fetch_add(1, Ordering::Relaxed);
    let stem = format!("{crate_name}.{}.{serial}", std::process::id());
    let input = scratch.join(format!("{stem}.in.o"));
    let output = scratch.join(format!("{stem}.merged.o"));
    let script = scratch.join(format!("{stem}.ld"));
    std::fs::write(&input, object)
        .and_then(|()| std::fs::write(&script, SCRIPT))
        .with_context(|| format!("cannot write into {}", scratch.display()))?;
    let run = Command::new(lld)
        .args(["-flavor", "gnu", "-r", "-T"])
        .arg(&script)
        .arg(&input)
        .arg("-o")
        .arg(&output)
        .output()
        .with_context(|| format!("cannot run {}", lld.display()));
    let merged = run.and_then(|out| {
        if !out.status.success() {
            bail!(
                "rust-lld could not merge the sections of `{crate_name}` ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        std::fs::read(&output).with_context(|| format!("cannot read {}", output.display()))
    });
    for f in [&input, &output, &script] {
        let _ = std::fs::remove_file(f);
    }
    merged
}
