//! Debuggers and profilers see cells: the hosted [`Debuggers`].
//!
//! For every cell the loader publishes, the hosted backend
//!
//! - keeps its registry entry (name, version, namespace, state, and the sections and symbols,
//!   whose lists it shares with the registry rather than copies) in a process-wide table, from
//!   which backtraces and fault reports name addresses
//!   ([`name_address`], [`backtrace`]) with the registry's own lookup,
//!   [`crate_metadata::Cell::locate`];
//! - registers an in-memory ELF file with the GDB JIT interface (`gdb_jit.rs`, the file from
//!   `elf.rs`), so that gdb can break on, disassemble and backtrace through cell functions;
//! - appends a line per function to the perf map (`perf_map.rs`), when it is enabled.
//!
//! A swap that retires a cell or moves one into its namespace updates the table; freeing a cell
//! (unload, reclaim, a failed load or swap) unregisters it from gdb and drops it from the table.
//! The table is process-wide, like the GDB descriptor and the perf map, so every [`Hosted`] of a
//! process shares it.
//!
//! [`Hosted`]: super::Hosted

pub mod backtrace;
mod elf;
pub mod gdb_jit;
mod image;
pub mod perf_map;

use std::collections::BTreeMap;
use std::fmt;
use std::format;
use std::string::{String, ToString};
use std::sync::{Mutex, MutexGuard, TryLockError};

use crate::platform::{CellImage, Debuggers, TextRange};
use crate_metadata::{demangle, Cell, CellId, CellState, Function};

/// What the table keeps of one published cell.
struct Record {
    /// Its text region.
    text: TextRange,
    /// Its registry entry (sections and symbols; no edges).
    cell: Cell,
    /// The namespace it is in.
    namespace: String,
    /// Its GDB JIT registration.
    jit: gdb_jit::Registration,
}

/// The published cells of the process, by the start of their mapping: publishing, changing or
/// releasing one, and naming an address, cost a lookup, not a walk of every cell.
static TABLE: Mutex<BTreeMap<u64, Record>> = Mutex::new(BTreeMap::new());

fn table() -> MutexGuard<'static, BTreeMap<u64, Record>> {
    TABLE.lock().unwrap_or_else(|e| e.into_inner())
}

/// The table, unless it is locked: the readers that run in a panic hook or a signal handler must
/// not wait for a lock the interrupted code may hold.
fn try_table() -> Option<MutexGuard<'static, BTreeMap<u64, Record>>> {
    match TABLE.try_lock() {
        Ok(t) => Some(t),
        Err(TryLockError::Poisoned(e)) => Some(e.into_inner()),
        Err(TryLockError::WouldBlock) => None,
    }
}

/// The registry entry without its edges. Its lists are shared with the registry's entry, not
/// copied ([`crate_metadata::SharedList`]).
fn copy_of(cell: &Cell) -> Cell {
    let mut copy = Cell::new(&cell.name, &cell.version, cell.origin);
    copy.id = cell.id;
    copy.kind = cell.kind;
    copy.namespace = cell.namespace;
    copy.state = cell.state;
    copy.base_addr = cell.base_addr;
    copy.sections = cell.sections.clone();
    copy.symbols = cell.symbols.clone();
    copy.local_functions = cell.local_functions.clone();
    copy
}

/// The perf map's name of a function: its path and the cell version it belongs to
/// (`memfs::read [memfs 0.1.0 cell#12]`).
fn perf_name(cell: &Cell, f: &Function<'_>) -> String {
    let path = f.path.map_or_else(|| demangle::path(f.name), String::from);
    format!("{path} [{} {} {}]", cell.name, cell.version, cell.id)
}

/// The perf map lines of one cell.
fn perf_lines(cell: &Cell, out: &mut String) {
    for f in cell.functions_unordered() {
        perf_map::line(out, f.addr, f.size, &perf_name(cell, &f));
    }
}

/// The perf map lines of every cell in the table.
fn current_lines() -> String {
    let mut out = String::new();
    for r in table().values() {
        perf_lines(&r.cell, &mut out);
    }
    out
}

/// The hosted debuggers: the table, the GDB JIT interface and the perf map.
#[derive(Clone, Copy, Debug, Default)]
pub struct HostedDebuggers;

impl Debuggers for HostedDebuggers {
    fn cell_published(&self, image: &CellImage<'_>) {
        let cell = copy_of(image.cell);
        let jit = gdb_jit::register(elf::symfile(&elf::Symfile {
            text: image.text,
            functions: &cell.functions_unordered(),
            eh_frame: image.eh_frame,
        }));
        if perf_map::enabled() {
            let mut lines = String::new();
            perf_lines(&cell, &mut lines);
            perf_map::append(&lines);
        }
        table().insert(
            image.cell.base_addr,
            Record {
                text: image.text,
                cell,
                namespace: image.namespace.into(),
                jit,
            },
        );
    }

    fn cell_changed(&self, image: &CellImage<'_>) {
        let mut t = table();
        if let Some(r) = t.get_mut(&image.cell.base_addr) {
            r.cell.state = image.cell.state;
            r.cell.namespace = image.cell.namespace;
            r.namespace = image.namespace.into();
        }
    }

    fn cell_released(&self, base: u64) {
        let record = { table().remove(&base) };
        if let Some(r) = record {
            gdb_jit::unregister(r.jit);
        }
    }
}

/// A code address inside a cell, named from the registry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CellAddress {
    /// The function's path (`memfs::read`), or the section's name where no function is named
    /// (`.stubs`).
    pub function: String,
    /// The mangled name of the function, when known.
    pub mangled: Option<String>,
    /// How far into the function (or section) the address is.
    pub offset: u64,
    /// The cell's id.
    pub id: CellId,
    /// The cell's name.
    pub cell: String,
    /// Its version.
    pub version: String,
    /// Its namespace's name.
    pub namespace: String,
    /// Whether a swap retired it (it is still mapped).
    pub retired: bool,
}

impl fmt::Display for CellAddress {
    /// `memfs::read+0x4f (cell memfs 0.1.0, namespace _kernel)`; a retired version says so after
    /// its version.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}+{:#x} (cell {} {}{}, namespace {})",
            self.function,
            self.offset,
            self.cell,
            self.version,
            if self.retired { ", retired" } else { "" },
            self.namespace
        )
    }
}

fn name_in(table: &BTreeMap<u64, Record>, addr: u64) -> Option<CellAddress> {
    // The text region starts the mapping: only the cell mapped last at or below `addr` can hold it.
    let (_, r) = table.range(..=addr).next_back()?;
    if !r.text.contains(addr) {
        return None;
    }
    let at = r.cell.locate(addr)?;
    let section = r.cell.section(at.section)?;
    Some(CellAddress {
        function: at
            .name
            .map_or_else(|| section.name.to_string(), demangle::path),
        mangled: at.name.map(String::from),
        offset: at.offset,
        id: r.cell.id,
        cell: r.cell.name.clone(),
        version: r.cell.version.clone(),
        namespace: r.namespace.clone(),
        retired: r.cell.state == CellState::Retired,
    })
}

/// Names a code address inside a published cell (live or retired), or `None` when no cell's text
/// holds it. Waits for nobody: `None` too while another thread changes the table.
pub fn name_address(addr: u64) -> Option<CellAddress> {
    name_in(&*try_table()?, addr)
}

/// The text ranges of the published cells, for tests and inspection.
pub fn cell_text(id: CellId) -> Option<TextRange> {
    table().values().find(|r| r.cell.id == id).map(|r| r.text)
}
