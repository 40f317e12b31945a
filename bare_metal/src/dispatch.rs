//! Where every interrupt and exception lands (the stubs of interrupts.rs call
//! [`interrupt_dispatch`]), and which handler each vector goes to. Kept apart from the table and
//! the stubs so the modules the handlers live in can use interrupts.rs without a circle.

use core::sync::atomic::Ordering;

use crate::interrupts::{Frame, PROBE, QUIESCE, SPURIOUS, STOP, TIMER, TLB_FLUSH, UART, YIELD};

/// Where every interrupt and exception lands, with interrupts disabled, on an interrupt stack.
#[no_mangle]
extern "C" fn interrupt_dispatch(frame: &mut Frame) {
    let cpu = crate::percpu::this_cpu();
    cpu.in_interrupt.fetch_add(1, Ordering::Relaxed);
    dispatch(frame);
    cpu.in_interrupt.fetch_sub(1, Ordering::Relaxed);
}

fn dispatch(frame: &mut Frame) {
    match frame.vector as u8 {
        0..=31 => crate::fault::exception(frame),
        TIMER => crate::task::on_timer(frame),
        UART => crate::driver::on_interrupt(frame),
        YIELD => crate::task::on_yield(frame),
        QUIESCE => crate::quiesce::on_ipi(frame),
        TLB_FLUSH => crate::smp::on_tlb_flush(),
        STOP => crate::smp::on_stop(),
        PROBE => crate::quiesce::on_probe(frame),
        SPURIOUS => {}
        other => {
            crate::println!("kernel: unexpected interrupt vector {other:#x}");
            crate::apic::eoi();
        }
    }
}
