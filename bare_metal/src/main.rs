//! `nano_core` on bare metal: a freestanding x86_64 kernel that QEMU boots through PVH, which
//! links the kernel cells with the same `no_std` loader the hosted `nano_core` uses, starts every
//! CPU, runs preemptive tasks on all of them that call the cells continuously, swaps cells live
//! under that load (the scheduler's policy cell and a driver cell among them), and powers the
//! machine off with an exit code.
//!
//! Built from the pinned stable toolchain for the host target (`x86_64-unknown-linux-gnu`): the
//! precompiled `core` and `alloc` of that target work in ring 0 once SSE is on (boot.rs), every
//! interrupt runs on a stack of its own so that the red zone of the interrupted code survives
//! (gdt.rs), and `link.ld` with `-nostartfiles -static` makes a plain ELF executable at 1 MiB
//! with a PVH note. See `bare_metal/README.md` and the top-level README's "Bare metal".

#![no_std]
#![no_main]
#![deny(unsafe_op_in_unsafe_fn)]

extern crate alloc;

mod acpi;
mod apic;
mod boot;
mod build_id;
mod cellmap;
mod cpu;
mod dispatch;
mod driver;
mod fault;
mod gdt;
mod heap;
mod interrupts;
mod kernel;
mod live;
mod mem;
mod modules;
mod paging;
mod percpu;
mod platform;
mod pvh;
mod quiesce;
mod serial;
mod shell;
mod smp;
mod sync;
mod task;

use core::panic::PanicInfo;
use core::sync::atomic::{AtomicU64, Ordering};

/// The success code written to QEMU's `isa-debug-exit` device (QEMU exits with `code << 1 | 1`,
/// so 33).
pub const EXIT_SUCCESS: u32 = 0x10;
/// The failure code (QEMU exits with 35).
pub const EXIT_FAILURE: u32 = 0x11;

/// The namespace of the kernel cells, as in the hosted `nano_core`.
pub const KERNEL_NAMESPACE: &str = "_kernel";

/// The timer period of every CPU, in microseconds.
pub const TICK_US: u64 = 4000;

/// Powers QEMU off through `isa-debug-exit` (port 0xf4); halts if the device is absent.
pub fn exit_qemu(code: u32) -> ! {
    cpu::outl(0xf4, code);
    cpu::halt()
}

#[global_allocator]
static HEAP: heap::KernelHeap = heap::KernelHeap::empty();

/// Heap bytes in use and free.
pub fn heap_usage() -> (usize, usize) {
    HEAP.usage()
}

/// Time-stamp counter ticks per microsecond (calibrated at boot; 1 before).
static TSC_PER_US: AtomicU64 = AtomicU64::new(1);

/// Time-stamp counter ticks per microsecond.
pub fn tsc_per_us() -> u64 {
    TSC_PER_US.load(Ordering::Relaxed).max(1)
}

/// Microseconds in `tsc` time-stamp counter ticks.
pub fn us(tsc: u64) -> u64 {
    tsc / tsc_per_us()
}

/// The kernel's own `log` records (the loader's) go to the console.
struct ConsoleLogger;

impl log::Log for ConsoleLogger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }
    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            println!("[{} {}] {}", record.level(), record.target(), record.args());
        }
    }
    fn flush(&self) {}
}

static LOGGER: ConsoleLogger = ConsoleLogger;

/// Called by boot.rs in long mode with the PVH start info's physical address, on the bootstrap
/// CPU.
#[no_mangle]
extern "C" fn kernel_main(start_info: u64) -> ! {
    serial::init();
    println!("nano_core (bare metal): booted through PVH, in long mode");
    let nx = cpu::cpuid(0x8000_0001).3 & (1 << 20) != 0;
    if !nx {
        println!("kernel: the CPU has no NX bit, so W^X cannot hold; refusing to go on (run QEMU with -cpu max)");
        exit_qemu(EXIT_FAILURE);
    }
    // SAFETY: `HEAP` is identity mapped by the boot tables and used for nothing else; that it is
    // RAM is checked against the memory map right below (reading the map needs the heap).
    unsafe {
        HEAP.init(
            paging::HEAP.start as *mut u8,
            (paging::HEAP.end - paging::HEAP.start) as usize,
        )
    };
    // The bootstrap CPU's GDT with its interrupt stacks, the IDT, its GS base and local APIC:
    // from here on an exception is reported, not a triple fault.
    smp::init_this_cpu(0);
    // SAFETY: the PVH entry passed this address in %ebx; the first GiB is identity mapped.
    let boot = match unsafe { pvh::read(start_info) } {
        Ok(b) => b,
        Err(e) => {
            println!("kernel: {e}");
            exit_qemu(EXIT_FAILURE)
        }
    };
    let trampoline = paging::TRAMPOLINE..paging::TRAMPOLINE + paging::PAGE;
    for (what, range) in [
        ("heap", paging::HEAP),
        ("cell frames", paging::CELL_FRAMES),
        ("AP start-up page", trampoline),
    ] {
        if !boot.is_ram(range.clone()) {
            println!(
                "kernel: the {what} needs RAM at {:#x}..{:#x}, which the memory map does not have (run QEMU with -m 256M or more)",
                range.start, range.end
            );
            exit_qemu(EXIT_FAILURE);
        }
    }
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(log::LevelFilter::Info);
    }
    // Before the kernel's tables map that page read+execute.
    smp::install_trampoline();
    let map = paging::init();
    let image = paging::image_layout();
    println!(
        "kernel: paging on, NX on, CR0.WP on; image text {:#x}..{:#x} RX, rodata ..{:#x} R, data ..{:#x} RW; heap {} MiB",
        image.text.0,
        image.text.1,
        image.rodata.1,
        image.end,
        (paging::HEAP.end - paging::HEAP.start) >> 20
    );
    let booted = match kernel::run(&boot, map) {
        Ok(booted) => booted,
        Err(e) => {
            println!("nano_core (bare metal): FAILED: {e}");
            exit_qemu(EXIT_FAILURE)
        }
    };
    TSC_PER_US.store(booted.tsc_per_us.max(1), Ordering::Relaxed);
    match live::start(booted, &boot, shell::run) {
        Ok(()) => task::run_cpu(),
        Err(e) => {
            println!("nano_core (bare metal): FAILED: {e}");
            exit_qemu(EXIT_FAILURE)
        }
    }
}

/// Ends the run: stops the other CPUs and powers off with the verdict.
pub fn finish(result: Result<(), alloc::string::String>) -> ! {
    match result {
        Ok(()) => {
            println!("nano_core (bare metal): all checks passed, powering off");
            smp::stop_others();
            exit_qemu(EXIT_SUCCESS)
        }
        Err(e) => {
            println!("nano_core (bare metal): FAILED: {e}");
            smp::stop_others();
            exit_qemu(EXIT_FAILURE)
        }
    }
}

#[panic_handler]
fn panic(info: &PanicInfo) -> ! {
    // Not through `println!`: the panic may have happened while the console lock was held.
    use core::fmt::Write as _;
    let cpu = percpu::this_cpu().index();
    let _ = writeln!(
        serial::Emergency::new(),
        "\nkernel panic on cpu {cpu}: {info}"
    );
    smp::stop_others();
    exit_qemu(EXIT_FAILURE)
}

/// The personality routine cells' unwind tables name (`DW.ref.rust_eh_personality`). Nothing
/// unwinds on bare metal: a panic stops the kernel, so this is never called.
#[no_mangle]
extern "C" fn rust_eh_personality() {
    println!("kernel: rust_eh_personality called, but nothing unwinds on bare metal");
    exit_qemu(EXIT_FAILURE)
}

/// Cells' cleanup landing pads end in `_Unwind_Resume`; reached only while unwinding, which never
/// happens here.
#[no_mangle]
extern "C" fn _Unwind_Resume(_exception: *mut u8) -> ! {
    println!("kernel: _Unwind_Resume called, but nothing unwinds on bare metal");
    exit_qemu(EXIT_FAILURE)
}
