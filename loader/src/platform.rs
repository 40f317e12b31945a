//! The platform traits: everything the loader needs from the machine it runs on.
//!
//! The loader core never maps memory, reads a symbol table of the running image, registers unwind
//! information or hands out thread-local storage by itself; it asks a [`Platform`]. The hosted
//! backend ([`crate::hosted`], feature `hosted`) implements these with `mmap`, the running
//! executable's ELF symbol tables, libgcc's `__register_frame` and the loader's own
//! `__tls_get_addr`. A bare-metal kernel implements them with its page tables.

use core::fmt;

/// The permissions of a region of a cell's mapping. Never writable and executable at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protection {
    /// Read and write (data, bss; every region while the loader writes it).
    ReadWrite,
    /// Read only (read-only data, the GOT outside a swap's commit).
    ReadOnly,
    /// Read and execute (text and call stubs).
    ReadExecute,
}

/// Why the platform could not do what the loader asked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PlatformError {
    /// No memory for a mapping of `len` bytes.
    OutOfMemory {
        /// The requested length.
        len: usize,
    },
    /// Changing the protection of a region failed.
    Protect {
        /// Start of the region.
        addr: usize,
        /// Length of the region.
        len: usize,
        /// The platform's own error code (errno on Linux).
        code: i32,
    },
    /// Registering or deregistering unwind information failed.
    Unwind,
    /// No more thread-local storage modules can be created.
    TlsExhausted,
    /// The platform does not provide this at all (thread-local storage on a bare-metal kernel
    /// without per-thread blocks, say); the string names what.
    Unsupported(&'static str),
}

impl fmt::Display for PlatformError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlatformError::OutOfMemory { len } => write!(f, "out of memory mapping {len} bytes"),
            PlatformError::Protect { addr, len, code } => write!(
                f,
                "cannot change protection of {len} bytes at {addr:#x} (error {code})"
            ),
            PlatformError::Unwind => f.write_str("unwind information could not be registered"),
            PlatformError::TlsExhausted => f.write_str("no thread-local storage module left"),
            PlatformError::Unsupported(what) => {
                write!(f, "{what} is not supported on this platform")
            }
        }
    }
}

/// Page-granular memory for cell mappings.
///
/// Implementations hand out zeroed, readable and writable memory; the loader writes the cell into
/// it and then narrows each region with [`Memory::protect`].
pub trait Memory {
    /// The page size; every mapping and protected region is aligned to it.
    fn page_size(&self) -> usize;

    /// Maps `len` bytes (a multiple of the page size) of zeroed read-write memory.
    fn map(&self, len: usize) -> Result<*mut u8, PlatformError>;

    /// Maps `len` bytes (a multiple of the page size) of read-write memory whose every byte the
    /// caller writes or clears itself before anything reads it; with `true` when they are zero
    /// already. A platform that reuses released memory hands it back as it was, and the caller
    /// clears only what it does not overwrite. By default, a zeroed [`Memory::map`].
    fn map_for_overwrite(&self, len: usize) -> Result<(*mut u8, bool), PlatformError> {
        Ok((self.map(len)?, true))
    }

    /// Sets the protection of `len` bytes at `addr` (both page aligned, inside one mapping).
    fn protect(&self, addr: *mut u8, len: usize, prot: Protection) -> Result<(), PlatformError>;

    /// Unmaps a mapping made by [`Memory::map`], or a page-aligned part of one.
    ///
    /// # Safety
    /// `addr..addr+len` is page aligned and lies inside a mapping this memory returned, and nothing
    /// uses it any more.
    unsafe fn unmap(&self, addr: *mut u8, len: usize);
}

/// A thread-local variable of the base image, as a `TLSGD` GOT pair needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TlsSymbol {
    /// The image's TLS module id (the main executable is module 1 under glibc).
    pub module: u64,
    /// The variable's offset in the module's TLS block.
    pub offset: u64,
}

/// The symbols of the base image (the running `nano_core`) and of the platform beneath it.
pub trait SymbolSource {
    /// The address of the base image's own definition of `name`, if the image has one.
    fn image_symbol(&self, name: &str) -> Option<usize>;

    /// A thread-local variable of the base image.
    fn image_tls_symbol(&self, name: &str) -> Option<TlsSymbol>;

    /// The platform's definition of `name` (`dlsym` and libm when hosted), tried after the image.
    fn platform_symbol(&self, name: &str) -> Option<usize>;

    /// Calls `f` with every symbol name the base image defines. Used only to explain a failure
    /// (a symbol that exists under another crate hash), never on the loading path.
    fn for_each_image_symbol(&self, f: &mut dyn FnMut(&str));
}

/// Registration of a cell's `.eh_frame` with the unwinder, so panics unwind through cell frames.
pub trait Unwinder {
    /// Registers the zero-terminated `.eh_frame` data at `eh_frame`.
    ///
    /// # Safety
    /// `eh_frame` points to a complete, relocated, zero-terminated `.eh_frame` that stays mapped
    /// and unchanged until [`Unwinder::deregister`] is called with the same pointer.
    unsafe fn register(&self, eh_frame: *const u8) -> Result<(), PlatformError>;

    /// Deregisters what [`Unwinder::register`] registered.
    ///
    /// # Safety
    /// `eh_frame` was registered and no frame of the cell is on any stack.
    unsafe fn deregister(&self, eh_frame: *const u8);
}

/// The initial contents of a cell's thread-local storage block.
#[derive(Clone, Copy, Debug)]
pub struct TlsTemplate {
    /// The relocated `.tdata` image (it lives in the cell's read-only mapping).
    pub init: *const u8,
    /// Length of `.tdata`.
    pub init_len: usize,
    /// Length of the whole block (`.tdata` + `.tbss`).
    pub size: usize,
    /// Alignment of the block.
    pub align: usize,
}

/// Thread-local storage for cells' own `thread_local!` variables (`TLSLD` + `DTPOFF32`).
pub trait ThreadLocals {
    /// Creates a TLS module for one cell and returns its module id, the value the loader writes
    /// into the first word of the cell's `TLSLD`/`TLSGD` GOT pairs.
    ///
    /// # Safety
    /// `template.init` stays valid until [`ThreadLocals::destroy_module`] is called.
    unsafe fn create_module(&self, template: TlsTemplate) -> Result<u64, PlatformError>;

    /// Frees every thread's block of `module` and forgets the module.
    ///
    /// # Safety
    /// No code of the cell that owns `module` runs on any thread any more.
    unsafe fn destroy_module(&self, module: u64);

    /// The address of the `__tls_get_addr` that cells must call: it serves the modules of
    /// [`ThreadLocals::create_module`] and forwards every other module to the platform's.
    fn tls_get_addr(&self) -> usize;

    /// Gives `module` another template: the blocks threads already have stay as they are, a
    /// thread that gets its block later gets this template's initial values. A swap uses it when
    /// the new version of a cell takes over the old version's module (the thread-locals keep
    /// their values); it returns the template the module had.
    ///
    /// # Safety
    /// `template.init` stays valid until the module is destroyed or given another template.
    unsafe fn replace_template(
        &self,
        module: u64,
        template: TlsTemplate,
    ) -> Result<TlsTemplate, PlatformError> {
        let _ = (module, template);
        Err(PlatformError::Unsupported(
            "carrying thread-locals across a swap",
        ))
    }

    /// How many threads have a block of `module` now.
    fn module_blocks(&self, module: u64) -> usize {
        let _ = module;
        0
    }
}

/// Everything the loader needs from its platform.
///
/// A platform that differs from another in a few methods (a test's failing memory, a fuzzer's
/// platform that runs no code) is an `Overlay` of it (`overlay.rs`). Every method added to these
/// five traits gets its line in `overlay.rs` as well.
pub trait Platform: Memory + SymbolSource + Unwinder + ThreadLocals + Process {}

impl<T: Memory + SymbolSource + Unwinder + ThreadLocals + Process> Platform for T {}

/// What a process-like platform tells the loader about the program it runs.
#[derive(Clone, Copy, Debug)]
pub struct InitArgs {
    /// `argc` as the program received it.
    pub argc: i32,
    /// `argv`.
    pub argv: *const *const u8,
    /// `envp`.
    pub envp: *const *const u8,
}

impl InitArgs {
    /// No arguments and no environment (what a bare-metal kernel passes).
    pub const EMPTY: InitArgs = InitArgs {
        argc: 0,
        argv: core::ptr::null(),
        envp: core::ptr::null(),
    };
}

/// The program around the loader: the arguments `.init_array` functions receive and a clock.
pub trait Process {
    /// The `(argc, argv, envp)` triple passed to every `.init_array` function, as glibc does.
    fn init_args(&self) -> InitArgs {
        InitArgs::EMPTY
    }

    /// A monotonic clock in nanoseconds, for load statistics (0 when there is none).
    fn now_nanos(&self) -> u64 {
        0
    }

    /// Whether loaded code may run. A platform that only models a link (a dry run for the
    /// inspection tools) says no, and the loader then never calls into a cell (no `.init_array`).
    fn runs_code(&self) -> bool {
        true
    }

    /// Runs `f`, turning a panic inside it into `Err(message)` where the platform can unwind
    /// (hosted: `catch_unwind`). Without unwinding support, a panic is fatal as usual.
    fn guarded(&self, f: &mut dyn FnMut()) -> Result<(), alloc::string::String> {
        f();
        Ok(())
    }

    /// Finds every thread (or CPU) other than the calling one that may be running code in
    /// `ranges` (the text of the old versions of a swap whose state moves), and appends one
    /// [`Inside`] for each to `out`. The answer must be conservative: a thread that is inside must
    /// be reported; one that is not may be (the swap then waits, or gives up at its deadline and
    /// changes nothing). A platform that cannot tell returns `Unsupported`, and such swaps are
    /// refused there.
    /// `entries` are the entry points of the old versions' functions (a thread may hold one in a
    /// register or a spilled word between reading a slot and calling through it).
    fn threads_inside(
        &self,
        ranges: &[TextRange],
        entries: &[u64],
        out: &mut alloc::vec::Vec<Inside>,
    ) -> Result<(), PlatformError> {
        let _ = (ranges, entries, out);
        Err(PlatformError::Unsupported(
            "telling which threads run a cell's code",
        ))
    }

    /// Whether the calling thread is inside one of `ranges` (its registers or its stack reach
    /// there): a swap asked for from inside a cell it replaces would wait for itself. Returns the
    /// address found.
    fn current_inside(&self, ranges: &[TextRange]) -> Option<u64> {
        let _ = ranges;
        None
    }

    /// Lets other threads run for a while (hosted: about 50 µs) while a swap waits for the old
    /// version to drain.
    fn pause(&self) {
        core::hint::spin_loop();
    }

    /// What callers parked at a swap's gate call while they wait ([`GateHooks`]).
    fn gate_hooks(&self) -> GateHooks {
        GateHooks::SPIN
    }

    /// The debuggers and profilers to tell about cells ([`Debuggers`]); none by default (bare
    /// metal, dry runs).
    fn debuggers(&self) -> Option<&dyn Debuggers> {
        None
    }
}

/// A mapped cell as debuggers and profilers are told about it.
#[derive(Clone, Copy, Debug)]
pub struct CellImage<'a> {
    /// Its metadata from the registry: name, version, state, sections and symbols at their load
    /// addresses ([`crate_metadata::Cell::functions`] lists its functions).
    pub cell: &'a crate_metadata::Cell,
    /// The name of the namespace it is in.
    pub namespace: &'a str,
    /// Its text region (code and call stubs).
    pub text: TextRange,
    /// Its relocated `.eh_frame` and the address it is mapped at (a debugger unwinds through the
    /// cell's frames with it), when it has one.
    pub eh_frame: Option<(u64, &'a [u8])>,
}

/// Debuggers and profilers that want to know where cells' code is: the hosted backend registers
/// each cell with the GDB JIT interface, writes perf map entries and keeps the table its
/// backtraces are named from. Every call comes from the thread that changes the system, with the
/// system borrowed mutably: no two calls run at once for one system.
pub trait Debuggers {
    /// A cell was published: its code is mapped executable at its final address (its
    /// `.init_array` has not run yet).
    fn cell_published(&self, cell: &CellImage<'_>);

    /// A published cell changed its state or namespace (a swap retired it, or made it live in
    /// its namespace).
    fn cell_changed(&self, cell: &CellImage<'_>);

    /// The cell whose mapping starts at `base` is being freed; its code is unmapped right after
    /// this returns. Called for cells that were never published too (a failed load).
    fn cell_released(&self, base: u64);
}

/// The text of one cell version, for [`Process::threads_inside`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TextRange {
    /// Its first byte.
    pub start: u64,
    /// One past its last byte.
    pub end: u64,
}

impl TextRange {
    /// Whether `addr` lies in the range.
    pub fn contains(&self, addr: u64) -> bool {
        addr >= self.start && addr < self.end
    }
}

/// A thread found inside a range by [`Process::threads_inside`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inside {
    /// The thread's id (the kernel's thread id when hosted, a CPU number on bare metal).
    pub thread: u64,
    /// Its name, when the platform knows one.
    pub name: alloc::string::String,
    /// The address found in the range (the instruction pointer, or a return address on its
    /// stack); 0 when the thread did not answer in time (then it is assumed inside).
    pub addr: u64,
}

/// Functions that callers parked at a swap's gate call (raw function pointers: the gate's entry
/// routine calls them from a context that has only the caller's registers).
#[derive(Clone, Copy, Debug)]
pub struct GateHooks {
    /// Called in the wait loop with the gate's word (a `u32` that is 1 while the gate is closed):
    /// wait until it may have changed (hosted: a futex wait; it may return early).
    pub wait: extern "C" fn(*const u32),
    /// Called once the gate's word was set to 0: wake every caller waiting on it.
    pub wake: extern "C" fn(*const u32),
    /// A monotonic clock in nanoseconds, to measure how long callers waited (`None`: not
    /// measured).
    pub now: Option<extern "C" fn() -> u64>,
}

extern "C" fn spin_wait(_word: *const u32) {
    core::hint::spin_loop();
}

extern "C" fn no_wake(_word: *const u32) {}

impl GateHooks {
    /// Spin, no clock.
    pub const SPIN: GateHooks = GateHooks {
        wait: spin_wait,
        wake: no_wake,
        now: None,
    };
}

impl core::error::Error for PlatformError {}
