//! The loader's platform on bare metal: page-table memory, the kernel's own symbols, no unwinder
//! and no thread-local storage, a clock from the time-stamp counter, and, for a swap whose state
//! moves, which CPUs may still run the old version (quiesce.rs) and how callers wait at its gate.

use alloc::string::String;

use loader::platform::{
    GateHooks, Inside, Memory, PlatformError, Process, Protection, SymbolSource, TextRange,
    ThreadLocals, TlsSymbol, TlsTemplate, Unwinder,
};
use loader::ImageSymbols;

use crate::cpu;
use crate::paging::CellMemory;

/// Everything the loader asks of the machine.
pub struct BarePlatform {
    /// Cell mappings.
    pub memory: CellMemory,
    /// The kernel's symbols, from its own ELF file (static, so no load bias).
    pub symbols: ImageSymbols,
    /// Time-stamp counter ticks per microsecond (0 when calibration failed).
    pub tsc_per_us: u64,
}

impl Memory for BarePlatform {
    fn page_size(&self) -> usize {
        self.memory.page_size()
    }
    fn map(&self, len: usize) -> Result<*mut u8, PlatformError> {
        self.memory.map(len)
    }
    fn protect(&self, addr: *mut u8, len: usize, prot: Protection) -> Result<(), PlatformError> {
        self.memory.protect(addr, len, prot)
    }
    unsafe fn unmap(&self, addr: *mut u8, len: usize) {
        // SAFETY: passed on from the caller.
        unsafe { self.memory.unmap(addr, len) }
    }
}

impl SymbolSource for BarePlatform {
    fn image_symbol(&self, name: &str) -> Option<usize> {
        self.symbols.address(name)
    }
    fn image_tls_symbol(&self, _name: &str) -> Option<TlsSymbol> {
        // The kernel has no thread-local variables (no TLS segment, no %fs base).
        None
    }
    fn platform_symbol(&self, _name: &str) -> Option<usize> {
        // No platform beneath the kernel: `memcpy` and friends are in the image
        // (compiler_builtins), and what the image lacks does not exist.
        None
    }
    fn for_each_image_symbol(&self, f: &mut dyn FnMut(&str)) {
        self.symbols.for_each_name(f);
    }
}

impl Unwinder for BarePlatform {
    unsafe fn register(&self, _eh_frame: *const u8) -> Result<(), PlatformError> {
        // Nothing unwinds: the kernel is built with `panic = "abort"`, and a panic in a cell
        // reaches the kernel's panic handler, which stops the machine. Accepting the
        // registration lets cells built for the hosted system (which carry `.eh_frame`) load.
        Ok(())
    }
    unsafe fn deregister(&self, _eh_frame: *const u8) {}
}

impl ThreadLocals for BarePlatform {
    unsafe fn create_module(&self, _template: TlsTemplate) -> Result<u64, PlatformError> {
        Err(PlatformError::Unsupported(
            "thread-local storage for cells (bare-metal nano_core has no per-thread blocks)",
        ))
    }
    unsafe fn destroy_module(&self, _module: u64) {}
    fn tls_get_addr(&self) -> usize {
        no_tls_get_addr as *const () as usize
    }
}

/// What a cell's `__tls_get_addr` call would reach; `create_module` refuses every TLS module, so
/// no loaded cell can call it.
extern "C" fn no_tls_get_addr(_index: *const u64) -> *mut u8 {
    crate::println!("kernel: __tls_get_addr called, but bare metal has no thread-local storage");
    crate::exit_qemu(crate::EXIT_FAILURE)
}

impl Process for BarePlatform {
    fn now_nanos(&self) -> u64 {
        match self.tsc_per_us {
            0 => 0,
            per_us => (u128::from(cpu::rdtsc()) * 1000 / u128::from(per_us)) as u64,
        }
    }
    fn guarded(&self, f: &mut dyn FnMut()) -> Result<(), String> {
        // No unwinding: a panic stops the machine (see `Unwinder`).
        f();
        Ok(())
    }

    fn threads_inside(
        &self,
        ranges: &[TextRange],
        entries: &[u64],
        out: &mut alloc::vec::Vec<Inside>,
    ) -> Result<(), PlatformError> {
        // Every other CPU, asked with an IPI what it interrupted (quiesce.rs).
        crate::quiesce::threads_inside(ranges, entries, out, crate::task::name_of);
        Ok(())
    }

    fn current_inside(&self, _ranges: &[TextRange]) -> Option<u64> {
        // The kernel asks for swaps only from a task outside any cell call (`live::swap` checks
        // the cell-call depth first), so the calling CPU runs no cell code.
        None
    }

    fn pause(&self) {
        crate::quiesce::pause();
    }

    fn gate_hooks(&self) -> GateHooks {
        crate::quiesce::gate_hooks()
    }
}

/// Measures the time-stamp counter against 10 ms of the PIT (channel 2, 1.193182 MHz).
/// Returns ticks per microsecond, or 0 when the PIT does not answer.
pub fn calibrate_tsc() -> u64 {
    const PIT_HZ: u64 = 1_193_182;
    const MS: u64 = 10;
    let count = (PIT_HZ * MS / 1000) as u16;
    // Gate channel 2 on, speaker off; channel 2, lobyte/hibyte, mode 0 (interrupt on count).
    cpu::outb(0x61, (cpu::inb(0x61) & !0x02) | 0x01);
    cpu::outb(0x43, 0b1011_0000);
    cpu::outb(0x42, count as u8);
    cpu::outb(0x42, (count >> 8) as u8);
    let start = cpu::rdtsc();
    let mut spins = 0u64;
    while cpu::inb(0x61) & 0x20 == 0 {
        spins += 1;
        if spins > 50_000_000 {
            return 0;
        }
    }
    (cpu::rdtsc() - start) / (MS * 1000)
}
