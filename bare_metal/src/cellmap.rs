//! Where the cells are, for code that cannot take the loader's lock: the timer (is the
//! interrupted instruction in a cell's text?) and the exception handler (which cell, version,
//! symbol and offset does an address belong to?).
//!
//! Rebuilt from the loader's registry after every load, swap, unload and reclaim. The text
//! ranges are a fixed table of atomics (read by every tick without a lock); the rest is a
//! snapshot behind an [`IrqMutex`] that the exception handler only tries to take.

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering};

use crate_metadata::{demangle, CellState, SectionKind, SymbolKind};
use loader::platform::Platform;
use loader::System;

use crate::sync::IrqMutex;

/// At most this many mapped cells have their text range checked by the timer.
const SLOTS: usize = 64;

/// `(start, end)` of each mapped cell's text; `(0, 0)` is empty.
static TEXT: [(AtomicU64, AtomicU64); SLOTS] =
    [const { (AtomicU64::new(0), AtomicU64::new(0)) }; SLOTS];

/// Whether `addr` lies in the text (code and call stubs) of a mapped cell, live or retired.
pub fn in_cell_text(addr: u64) -> bool {
    TEXT.iter().any(|(s, e)| {
        let start = s.load(Ordering::Relaxed);
        start != 0 && (start..e.load(Ordering::Relaxed)).contains(&addr)
    })
}

/// One mapped cell.
struct Entry {
    name: String,
    version: String,
    retired: bool,
    /// text, read-only data, relro, data: (start, length).
    regions: [(u64, u64); 4],
    /// Placed sections with a name that says what they hold, by address: (start, size, name).
    sections: Vec<(u64, u64, String)>,
    /// Exported symbols: (start, size, name).
    symbols: Vec<(u64, u64, String)>,
}

/// Every mapped cell.
struct Map {
    cells: Vec<Entry>,
}

static MAP: IrqMutex<Option<Arc<Map>>> = IrqMutex::new(None);

/// The kernel's own functions: (address, size, demangled path), sorted.
static KERNEL: spin::Once<Vec<(u64, u64, String)>> = spin::Once::new();

/// Records the kernel's function symbols (from its ELF file in the boot module).
pub fn set_kernel_symbols(mut symbols: Vec<(u64, u64, String)>) {
    symbols.sort();
    KERNEL.call_once(|| symbols);
}

const REGION_NAMES: [&str; 4] = ["text", "read-only data", "relro", "data"];

/// Rebuilds the map from the loader's registry.
pub fn refresh<P: Platform>(system: &System<P>) {
    let mut cells = Vec::new();
    for cell in system.registry().cells() {
        let Some(regions) = system.regions(cell.id) else {
            continue;
        };
        let mut sections: Vec<(u64, u64, String)> = cell
            .sections
            .iter()
            .filter(|s| s.addr != 0 && s.size != 0)
            .filter(|s| {
                matches!(
                    s.kind,
                    SectionKind::Text
                        | SectionKind::Stubs
                        | SectionKind::Data
                        | SectionKind::Bss
                        | SectionKind::ReadOnly
                        | SectionKind::RelRo
                        | SectionKind::Got
                )
            })
            .map(|s| (s.addr, s.size, section_symbol(&s.name)))
            .collect();
        sections.sort();
        let mut symbols: Vec<(u64, u64, String)> = cell
            .symbols
            .iter()
            .filter(|s| matches!(s.kind, SymbolKind::Function | SymbolKind::Object))
            .map(|s| (s.addr, s.size.max(1), demangle::path(&s.name)))
            .collect();
        symbols.sort();
        cells.push(Entry {
            name: cell.name.clone(),
            version: cell.version.clone(),
            retired: cell.state == CellState::Retired,
            regions,
            sections,
            symbols,
        });
    }
    let mut texts: Vec<(u64, u64)> = cells
        .iter()
        .map(|c| (c.regions[0].0, c.regions[0].0 + c.regions[0].1))
        .collect();
    texts.truncate(SLOTS);
    for (i, (s, e)) in TEXT.iter().enumerate() {
        let (start, end) = texts.get(i).copied().unwrap_or((0, 0));
        // The slot is emptied first: a reader sees it empty or complete, never a mix of two
        // cells' bounds. A cell being added or removed runs no code meanwhile (not called yet,
        // or reclaimed after a grace period).
        s.store(0, Ordering::SeqCst);
        e.store(end, Ordering::SeqCst);
        s.store(start, Ordering::SeqCst);
    }
    *MAP.lock() = Some(Arc::new(Map { cells }));
}

/// The function or static a section holds, from its name (`.text._ZN5memfs6create17h…E` ->
/// `memfs::create`); loader-made and anonymous sections keep their name.
fn section_symbol(name: &str) -> String {
    for prefix in [
        ".text.",
        ".rodata.",
        ".data.rel.ro.",
        ".data.",
        ".bss.",
        ".tbss.",
        ".tdata.",
    ] {
        if let Some(symbol) = name.strip_prefix(prefix) {
            if symbol.starts_with("_ZN") || symbol.starts_with("_R") {
                return demangle::path(symbol);
            }
            return String::from(symbol);
        }
    }
    String::from(name)
}

/// What `addr` is, in words: `cell \`memfs\` 0.1.0 (live), text: memfs::create + 0x1c`, or
/// `the kernel: nano_core_bare::task::run_cpu + 0x10`. Allocates nothing (the exception handler
/// uses it).
pub fn describe_into(w: &mut dyn fmt::Write, addr: u64) -> fmt::Result {
    if describe_cell(w, addr)? {
        return Ok(());
    }
    if let Some(kernel) = KERNEL.get() {
        let i = kernel.partition_point(|(start, _, _)| *start <= addr);
        if i > 0 {
            let (start, size, name) = &kernel[i - 1];
            if addr < start + (*size).max(1) {
                return write!(w, "{addr:#x}, the kernel: {name} + {:#x}", addr - start);
            }
        }
    }
    write!(w, "{addr:#x}, in no cell and no kernel function")
}

/// Writes what cell `addr` belongs to; `false` (nothing written) when none does or the map is
/// being rebuilt.
fn describe_cell(w: &mut dyn fmt::Write, addr: u64) -> Result<bool, fmt::Error> {
    // Never wait: the exception handler may have interrupted the code that holds the lock.
    let Some(map) = MAP.try_lock().and_then(|m| m.clone()) else {
        return Ok(false);
    };
    for cell in &map.cells {
        for (i, (start, len)) in cell.regions.iter().enumerate() {
            if *len == 0 || !(*start..start + len).contains(&addr) {
                continue;
            }
            write!(
                w,
                "{addr:#x}, cell `{}` {} ({}), {}",
                cell.name,
                cell.version,
                if cell.retired { "retired" } else { "live" },
                REGION_NAMES[i]
            )?;
            if let Some((name, off)) =
                find(&cell.symbols, addr).or_else(|| find(&cell.sections, addr))
            {
                write!(w, ": {name} + {off:#x}")?;
            }
            return Ok(true);
        }
    }
    Ok(false)
}

fn find(table: &[(u64, u64, String)], addr: u64) -> Option<(&str, u64)> {
    let i = table.partition_point(|(start, _, _)| *start <= addr);
    let (start, size, name) = table.get(i.checked_sub(1)?)?;
    (addr < start + size).then_some((name.as_str(), addr - start))
}
