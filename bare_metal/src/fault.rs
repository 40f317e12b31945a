//! Exceptions: reported with the cell, version, symbol and offset of the faulting instruction
//! (and, for a page fault, of the address it touched), from the cell map (cellmap.rs, rebuilt
//! from the loader's registry); then either the faulting task ends and its CPU goes on with
//! another, or the kernel stops.
//!
//! A task can be ended safely when nothing it holds would stay held: it ran in task context (not
//! an interrupt handler), at cell-call depth 0 (so no cell's lock is held by it: cells lock only
//! inside their calls), with interrupts enabled (so it held none of the kernel's interrupt-safe
//! locks: heap, console, task table), and it held none of the other kernel locks (the loader's).
//! Anything else stops the kernel: a fault inside a cell call may leave that cell's locks held,
//! with no unwinding to release them, and every later call into the cell would wait for ever.
//!
//! The report is written without allocating (the fault may have interrupted the allocator).

use alloc::format;
use core::fmt::Write as _;
use core::sync::atomic::Ordering;

use crate::interrupts::{Frame, RFLAGS_IF};
use crate::serial::Emergency;
use crate::{cellmap, cpu, percpu, task};

const NAMES: [&str; 22] = [
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

/// Faults that ended a task (and not the kernel).
pub static TASKS_ENDED: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// The exception vectors' handler.
pub fn exception(frame: &mut Frame) {
    let cpu = percpu::this_cpu();
    let vector = frame.vector as usize;
    let name = NAMES.get(vector).copied().unwrap_or("reserved");
    let current = cpu.current.load(Ordering::Relaxed);
    let depth = percpu::depth();
    // 1: this exception itself (interrupt_dispatch counts every vector).
    let nested = cpu.in_interrupt.load(Ordering::Relaxed) > 1;
    let task = task::current();
    // Unknown (`None`) when the task table stays busy: then the task is not taken to hold none.
    let locks = match task {
        Some(t) => task::try_locks_of(t),
        None => Some(0),
    };
    let cr2 = cpu::cr2();
    let safe = task.is_some()
        && !nested
        && depth == 0
        && frame.rflags & RFLAGS_IF != 0
        && locks == Some(0)
        && vector != 8
        && vector != 18;
    let why = if task.is_none() {
        "it happened outside any task"
    } else if nested {
        "it happened in an interrupt handler"
    } else if depth > 0 {
        "the task was inside a call into a cell, whose locks it may hold (nothing unwinds on bare metal)"
    } else if frame.rflags & RFLAGS_IF == 0 {
        "interrupts were off: the task may hold one of the kernel's interrupt-safe locks"
    } else if locks.is_none() {
        "the task table stayed busy: whether the task holds the loader's lock is unknown"
    } else if locks > Some(0) {
        "the task holds the loader's lock"
    } else {
        "the exception cannot be survived"
    };
    {
        let mut out = Emergency::new();
        let _ = write!(
            out,
            "kernel: exception {vector} ({name}) on cpu {}, ",
            cpu.index()
        );
        match task {
            Some(t) if !nested => {
                let _ = write!(out, "in task ");
                let _ = task::write_name(&mut out, t);
            }
            _ if nested => {
                let _ = write!(out, "in an interrupt handler");
            }
            _ => {
                let _ = write!(out, "outside any task (boot or idle)");
            }
        }
        let _ = write!(out, "\nkernel:   at rip ");
        let _ = cellmap::describe_into(&mut out, frame.rip);
        let _ = writeln!(out, "; rsp {:#x}, error code {:#x}", frame.rsp, frame.error);
        if vector == 14 {
            let e = frame.error;
            let _ = write!(
                out,
                "kernel:   page fault on {}{}{}: ",
                if e & 0x10 != 0 {
                    "instruction fetch"
                } else if e & 2 != 0 {
                    "write"
                } else {
                    "read"
                },
                if e & 1 != 0 {
                    ", protection violation"
                } else {
                    ", page not present"
                },
                if e & 0x10 != 0 && e & 1 != 0 {
                    " (no-execute page)"
                } else {
                    ""
                }
            );
            let _ = cellmap::describe_into(&mut out, cr2);
            let _ = writeln!(out);
        }
        // The verdict in the same report: another CPU's fault report cannot come in between.
        if safe {
            let _ = writeln!(
                out,
                "kernel:   the task is ended, the kernel goes on (it was in no cell call, held no lock, and ran with interrupts on)"
            );
        } else {
            let _ = writeln!(
                out,
                "kernel:   the kernel stops: {why} (current task index {current})"
            );
        }
    }
    if safe {
        TASKS_ENDED.fetch_add(1, Ordering::Relaxed);
        let what = if vector == 14 {
            format!("{name} on {cr2:#x} at rip {:#x}", frame.rip)
        } else {
            format!("{name} at rip {:#x}", frame.rip)
        };
        task::end_faulted(frame, what);
        return;
    }
    crate::smp::stop_others();
    crate::exit_qemu(crate::EXIT_FAILURE)
}
