//! COM1's receive interrupt, handed to the `uart` driver cell through a slot.
//!
//! The I/O APIC routes ISA IRQ 4 to the bootstrap CPU's [`interrupts::UART`] vector; the handler
//! here calls `uart::on_interrupt` through a [`CellFn`] (the loader's handle, whose slot a swap
//! rewrites) with `try_call`: an interrupt handler never waits. While a swap of `uart` holds its
//! gate closed (the slot points at the loader's gate, outside every cell's text), and until the
//! kernel's cell map shows the new version, the handler calls nothing: it masks the interrupt at the I/O APIC and returns.
//! The bytes stay in the UART (its 16-byte FIFO; once that is full QEMU holds the rest in the
//! character device, as a real line would with flow control), nothing is lost. When the swap is
//! over, [`resume`] unmasks the interrupt and sends the handler's vector to its CPU once, so that
//! the new version drains what arrived meanwhile (an edge that came while the input was masked
//! is not delivered again by the I/O APIC).

use alloc::string::String;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use cell_abi::{uart, Revision};

use crate::interrupts::{self, Frame};
use crate::quiesce::CellFn;
use crate::{apic, println};

/// COM1's I/O ports.
pub const COM1: u16 = 0x3f8;
/// COM1's ISA interrupt.
const COM1_IRQ: u8 = 4;

/// The driver cell's functions, of the types `cell-abi` declares.
pub struct UartCell {
    /// `uart::attach`.
    pub attach: CellFn<uart::Attach>,
    /// `uart::on_interrupt`.
    pub on_interrupt: CellFn<uart::OnInterrupt>,
    /// `uart::read`.
    pub read: CellFn<uart::Read>,
    /// `uart::throttled`.
    pub throttled: CellFn<uart::Throttled>,
    /// `uart::stats`.
    pub stats: CellFn<uart::Stats>,
    /// `uart::revision`.
    pub revision: CellFn<Revision>,
}

static UART: spin::Once<UartCell> = spin::Once::new();
static GSI: AtomicU32 = AtomicU32::new(0);
static TARGET_APIC: AtomicU32 = AtomicU32::new(0);
/// The input is masked at the I/O APIC because the gate was closed when it fired.
static MASKED: AtomicBool = AtomicBool::new(false);
/// Interrupts the driver cell handled.
pub static HANDLED: AtomicU64 = AtomicU64::new(0);
/// Bytes it took from the UART in them.
pub static BYTES: AtomicU64 = AtomicU64::new(0);
/// Interrupts that found the gate closed (the input was masked until the swap ended).
pub static DEFERRED: AtomicU64 = AtomicU64::new(0);
/// Bytes the new version took in the first handler run after a swap (what waited meanwhile).
pub static DRAINED_AFTER_SWAP: AtomicU64 = AtomicU64::new(0);
/// Set by [`resume`]: the next handler run counts its bytes into [`DRAINED_AFTER_SWAP`].
static RESUMED: AtomicBool = AtomicBool::new(false);

/// Routes COM1's interrupt to the CPU with `apic_id` and attaches the driver cell to the UART.
pub fn init(cell: UartCell, gsi: u32, apic_id: u32) -> Result<(), String> {
    GSI.store(gsi, Ordering::Relaxed);
    TARGET_APIC.store(apic_id, Ordering::Relaxed);
    let cell = UART.call_once(|| cell);
    apic::route(gsi, interrupts::UART, apic_id, false);
    cell.attach.call(|attach| attach(COM1))
}

/// The ISA IRQ the driver uses.
pub fn irq() -> u8 {
    COM1_IRQ
}

/// The UART interrupt (and the vector [`resume`] sends).
pub fn on_interrupt(_frame: &mut Frame) {
    let Some(cell) = UART.get() else {
        apic::eoi();
        return;
    };
    match cell.on_interrupt.try_call(|handler| handler(COM1)) {
        Some(n) => {
            // A run that found the gate closed may have masked the input after `resume` looked.
            unmask();
            HANDLED.fetch_add(1, Ordering::Relaxed);
            BYTES.fetch_add(n as u64, Ordering::Relaxed);
            if RESUMED.swap(false, Ordering::Relaxed) {
                DRAINED_AFTER_SWAP.fetch_add(n as u64, Ordering::Relaxed);
            }
        }
        None => {
            // The gate is closed: leave the bytes in the device, mask until `resume`.
            apic::route(
                GSI.load(Ordering::Relaxed),
                interrupts::UART,
                TARGET_APIC.load(Ordering::Relaxed),
                true,
            );
            MASKED.store(true, Ordering::SeqCst);
            DEFERRED.fetch_add(1, Ordering::Relaxed);
        }
    }
    apic::eoi();
}

/// After a swap of `uart`: unmasks the input if the handler masked it, and has the handler run
/// once on its CPU for what arrived meanwhile.
pub fn resume() {
    RESUMED.store(true, Ordering::Relaxed);
    unmask();
    apic::send_ipi(TARGET_APIC.load(Ordering::Relaxed), interrupts::UART);
}

/// Unmasks the input at the I/O APIC if a handler run that found the gate closed masked it.
fn unmask() {
    if MASKED.swap(false, Ordering::SeqCst) {
        apic::route(
            GSI.load(Ordering::Relaxed),
            interrupts::UART,
            TARGET_APIC.load(Ordering::Relaxed),
            false,
        );
    }
}

/// Bytes received and not read yet, moved into `buf` (task context; waits at a closed gate).
/// When the driver left bytes in the UART for want of room, the handler runs again now that
/// there is some (the input is edge-triggered: the UART raises no new edge while it still holds
/// bytes).
pub fn read(buf: &mut [u8]) -> usize {
    let Some(cell) = UART.get() else { return 0 };
    let n = cell.read.call(|read| read(buf));
    if n > 0 && cell.throttled.call(|throttled| throttled()) {
        THROTTLE_RESUMES.fetch_add(1, Ordering::Relaxed);
        apic::send_ipi(TARGET_APIC.load(Ordering::Relaxed), interrupts::UART);
    }
    n
}

/// Times a read made room after the driver had left bytes in the UART.
pub static THROTTLE_RESUMES: AtomicU64 = AtomicU64::new(0);

/// The driver cell's counters and revision.
pub fn describe() -> String {
    match UART.get() {
        Some(c) => {
            let revision = c.revision.call(|r| r());
            let stats = c.stats.call(|s| s());
            alloc::format!("{revision}: {stats}")
        }
        None => {
            println!("uart: no driver");
            String::from("no driver cell")
        }
    }
}
