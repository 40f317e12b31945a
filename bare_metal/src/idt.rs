//! Exceptions: an interrupt descriptor table whose handlers print what happened (a page fault
//! names the address and whether it was a write or an instruction fetch, so a W^X violation is
//! plain) and power the machine off with a failure code.

use alloc::boxed::Box;
use core::arch::asm;

use crate::boot::{exception_entries, EXCEPTION_VECTORS};

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Gate {
    offset_low: u16,
    selector: u16,
    ist: u8,
    attributes: u8,
    offset_mid: u16,
    offset_high: u32,
    reserved: u32,
}

#[repr(C, packed)]
struct Pointer {
    limit: u16,
    base: u64,
}

/// Installs the table.
pub fn init() {
    let table: &'static mut [Gate; 32] = Box::leak(Box::new([Gate::default(); 32]));
    for (gate, entry) in table.iter_mut().zip(exception_entries()) {
        let addr = entry as usize as u64;
        *gate = Gate {
            offset_low: addr as u16,
            selector: 0x08,
            ist: 0,
            attributes: 0x8e, // present, ring 0, 64-bit interrupt gate
            offset_mid: (addr >> 16) as u16,
            offset_high: (addr >> 32) as u32,
            reserved: 0,
        };
    }
    let pointer = Pointer {
        limit: (core::mem::size_of::<[Gate; 32]>() - 1) as u16,
        base: table.as_ptr() as u64,
    };
    // SAFETY: the table lives for ever (leaked) and every present gate points at an entry stub
    // of boot.rs in the kernel's code segment.
    unsafe { asm!("lidt [{}]", in(reg) &pointer, options(readonly, nostack, preserves_flags)) };
}

/// What the entry stubs push, lowest address first.
#[repr(C)]
pub struct ExceptionFrame {
    vector: u64,
    error: u64,
    rip: u64,
    cs: u64,
    rflags: u64,
    rsp: u64,
    ss: u64,
}

const NAMES: [&str; EXCEPTION_VECTORS] = [
    "divide error",
    "debug",
    "non-maskable interrupt",
    "breakpoint",
    "overflow",
    "bound range exceeded",
    "invalid opcode",
    "device not available",
    "double fault",
    "coprocessor segment overrun",
    "invalid TSS",
    "segment not present",
    "stack-segment fault",
    "general protection fault",
    "page fault",
    "reserved",
    "x87 floating-point error",
    "alignment check",
    "machine check",
    "SIMD floating-point error",
    "virtualization",
    "control protection",
];

#[no_mangle]
extern "C" fn exception_handler(frame: &ExceptionFrame) -> ! {
    let name = NAMES
        .get(frame.vector as usize)
        .copied()
        .unwrap_or("unknown");
    crate::println!(
        "kernel: exception {} ({name}) at rip {:#x}, rsp {:#x}, error code {:#x}",
        frame.vector,
        frame.rip,
        frame.rsp,
        frame.error
    );
    if frame.vector == 14 {
        let e = frame.error;
        crate::println!(
            "kernel: page fault on {:#x}: {} {}{}",
            crate::cpu::cr2(),
            if e & 1 != 0 {
                "protection violation,"
            } else {
                "page not present,"
            },
            if e & 0x10 != 0 {
                "instruction fetch"
            } else if e & 2 != 0 {
                "write"
            } else {
                "read"
            },
            if e & 0x10 != 0 && e & 1 != 0 {
                " (no-execute page)"
            } else {
                ""
            }
        );
    }
    crate::exit_qemu(crate::EXIT_FAILURE)
}
