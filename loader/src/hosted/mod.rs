//! The hosted platform: the loader running inside a Linux x86_64 process (the "libos" mode).
//!
//! [`Hosted`] implements every [platform trait](crate::platform) for the current process:
//!
//! - **memory** (`memory.rs`): anonymous `mmap` mappings, narrowed with `mprotect`; never writable
//!   and executable at once. [`Hosted`] remembers its live mappings and refuses to change the
//!   protection of anything else. A released mapping is kept, inaccessible, for the next mapping
//!   of its length (`pool.rs`): its pages skip the kernel's allocator both ways.
//! - **symbols** (`symbols.rs`): the base image is the running executable. Its `.dynsym` and
//!   `.symtab` are read once from `/proc/self/exe` and shifted by the PIE load bias; everything the
//!   image lacks (`memcpy`, `_Unwind_Resume`, libm's `sin`) comes from `dlsym`.
//! - **unwinding** (`unwind.rs`): libgcc's `__register_frame` / `__deregister_frame`.
//! - **thread-local storage** (`tls.rs`): the loader's own `__tls_get_addr`
//!   ([`cell_tls_get_addr`]), which serves the modules the loader creates for cells and forwards
//!   every other module id to glibc. A thread's blocks are freed when the thread exits.
//! - **debuggers and profilers** (`debug/`): each published cell is registered with the GDB JIT
//!   interface, listed in the perf map when it is enabled, and kept in the table that names cell
//!   frames in backtraces ([`debug::backtrace`]).
//! - **who is inside** (`threads.rs`): a stack check of every thread, by a signal each thread
//!   answers with what its live stack holds, for swaps whose state moves.
//!
//! The TLS registry is process-wide (cells call a plain function, not a method), and so are the
//! debuggers' table, the GDB descriptor and the perf map, so every [`Hosted`] of a process shares
//! them; everything else belongs to one [`Hosted`].

pub mod debug;
mod memory;
mod pool;
mod process;
mod symbols;
mod threads;
mod tls;
mod unwind;

use std::fmt;
use std::sync::Mutex;

pub use crate::image::ImageSymbols;
pub use memory::{count_mappings, writable_executable_mappings};
pub use symbols::{open_libm, platform_lookup};
pub use threads::{scan_signal, ANSWER_WITHIN, SCAN_SIGNAL};
pub use tls::{cell_tls_get_addr, live_tls_blocks, module_tls_blocks, TlsIndex};
pub use unwind::{find_fde, FoundFde};

/// The platform of a loader that runs inside a Linux x86_64 process.
pub struct Hosted {
    /// The base image's symbols and the handle of libm.
    symbols: symbols::Symbols,
    /// The system page size.
    page_size: usize,
    /// Every live mapping made by [`crate::platform::Memory::map`]: start -> length.
    mappings: Mutex<memory::Mappings>,
    /// Released mappings kept for the next mapping of their length.
    pool: Mutex<pool::Pool>,
}

impl Hosted {
    /// Reads the running executable's symbol tables and opens libm.
    pub fn new() -> Result<Hosted, HostedError> {
        Ok(Hosted {
            symbols: symbols::Symbols::read()?,
            page_size: memory::system_page_size(),
            mappings: Mutex::new(memory::Mappings::default()),
            pool: Mutex::new(pool::Pool::default()),
        })
    }

    /// The number of distinct symbol names the base image defines (thread-locals included): the
    /// names [`crate::platform::SymbolSource::for_each_image_symbol`] reports.
    pub fn image_symbol_count(&self) -> usize {
        self.symbols.len()
    }

    /// The mappings this platform has made and not unmapped: how many, and their bytes. Unlike a
    /// count of `/proc/self/maps`, this is not disturbed by other threads' stacks coming and going.
    pub fn live_mappings(&self) -> (usize, usize) {
        let mappings = self
            .mappings
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        mappings.totals()
    }

    /// Whether the running executable still has its `.symtab` (it is absent when stripped; then
    /// only the `.dynsym` symbols that `-Wl,--export-dynamic` exported are known).
    pub fn image_has_symtab(&self) -> bool {
        self.symbols.has_symtab()
    }
}

/// Why [`Hosted::new`] failed.
#[derive(Debug)]
pub enum HostedError {
    /// `/proc/self/exe` could not be read.
    ReadImage(std::io::Error),
    /// The running executable is not an ELF file goblin can parse.
    ParseImage(goblin::error::Error),
    /// The executable is position independent but has no `PT_PHDR`, so its load bias is unknown.
    NoLoadBias,
    /// `/proc/self/exe` is not the image that runs (for example when the program was started as
    /// `ld.so ./program`): its entry point plus the load bias is not the process's entry point.
    ImageMismatch {
        /// The entry point the kernel reported (`AT_ENTRY`).
        running_entry: usize,
        /// The entry point of `/proc/self/exe`, plus the load bias.
        file_entry: usize,
    },
}

impl fmt::Display for HostedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostedError::ReadImage(e) => write!(f, "cannot read /proc/self/exe: {e}"),
            HostedError::ParseImage(e) => write!(f, "cannot parse /proc/self/exe: {e}"),
            HostedError::NoLoadBias => {
                f.write_str("the running executable has no PT_PHDR, so its load bias is unknown")
            }
            HostedError::ImageMismatch {
                running_entry,
                file_entry,
            } => write!(
                f,
                "/proc/self/exe is not the running image (entry {file_entry:#x}, \
                 the process entered at {running_entry:#x})"
            ),
        }
    }
}

impl std::error::Error for HostedError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            HostedError::ReadImage(e) => Some(e),
            HostedError::ParseImage(e) => Some(e),
            _ => None,
        }
    }
}
