//! The perf map: `/tmp/perf-<pid>.map`, the file `perf report` (and other profilers) read to name
//! addresses of code that no ELF file on disk describes. One line per function,
//!
//! ```text
//! <start, hex> <size, hex> <name>
//! ```
//!
//! appended when a cell is published. perf takes the last line that covers an address, so after
//! a swap the new version's lines (at its own addresses) name the new code, and a cell mapped
//! where a freed one was is named by its own, later, lines. Lines are never removed.
//!
//! Off until [`enable`] is called (`nano_core --perf-map`): a process that nobody profiles writes
//! nothing to `/tmp`.

use std::format;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::string::String;
use std::sync::Mutex;

/// The open map, when enabled.
static MAP: Mutex<Option<(PathBuf, File)>> = Mutex::new(None);

/// The path of this process's perf map.
pub fn path() -> PathBuf {
    PathBuf::from(format!("/tmp/perf-{}.map", std::process::id()))
}

/// Starts writing the perf map (creating or truncating it), with the lines of every cell mapped
/// now; returns its path.
pub fn enable() -> std::io::Result<PathBuf> {
    let path = path();
    let mut file = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(&path)?;
    file.write_all(super::current_lines().as_bytes())?;
    *MAP.lock().unwrap_or_else(|e| e.into_inner()) = Some((path.clone(), file));
    Ok(path)
}

/// Whether the map is being written.
pub fn enabled() -> bool {
    MAP.lock().unwrap_or_else(|e| e.into_inner()).is_some()
}

/// Appends `lines` (whole lines) when the map is enabled. A write that fails turns the map off
/// (a profiler's map is not worth failing a load for) and is reported once through `log`.
pub(crate) fn append(lines: &str) {
    let mut map = MAP.lock().unwrap_or_else(|e| e.into_inner());
    let Some((path, file)) = map.as_mut() else {
        return;
    };
    if let Err(e) = file.write_all(lines.as_bytes()) {
        log::warn!("perf map {} no longer written: {e}", path.display());
        *map = None;
    }
}

/// The line of one function.
pub(crate) fn line(out: &mut String, addr: u64, size: u64, name: &str) {
    use std::fmt::Write as _;
    let _ = writeln!(out, "{addr:x} {size:x} {name}");
}
