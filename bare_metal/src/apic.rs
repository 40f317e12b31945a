//! The local APIC of each CPU (xAPIC, memory-mapped at its architectural address) and the I/O
//! APIC that routes device interrupts: the timer, inter-processor interrupts, and COM1's
//! receive interrupt.

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::cpu;

/// The local APIC's registers (identity mapped, uncached: paging.rs).
pub const LAPIC_BASE: u64 = 0xfee0_0000;

const ID: u64 = 0x20;
const TPR: u64 = 0x80;
const EOI: u64 = 0xb0;
const SVR: u64 = 0xf0;
const ESR: u64 = 0x280;
const ICR_LOW: u64 = 0x300;
const ICR_HIGH: u64 = 0x310;
const LVT_TIMER: u64 = 0x320;
const TIMER_INITIAL: u64 = 0x380;
const TIMER_CURRENT: u64 = 0x390;
const TIMER_DIVIDE: u64 = 0x3e0;

const DELIVERY_PENDING: u32 = 1 << 12;

fn read(reg: u64) -> u32 {
    // SAFETY: the local APIC page is mapped (uncached) at its physical address; reading a
    // register has no effect beyond the register's own semantics.
    unsafe { ((LAPIC_BASE + reg) as *const u32).read_volatile() }
}

fn write(reg: u64, value: u32) {
    // SAFETY: as for `read`; the kernel writes only the registers this module names.
    unsafe { ((LAPIC_BASE + reg) as *mut u32).write_volatile(value) }
}

/// Turns the calling CPU's local APIC on (spurious vector 0xff, all priorities accepted).
pub fn init_this_cpu() {
    // IA32_APIC_BASE: keep the base, set the global enable bit.
    let base = cpu::rdmsr(0x1b);
    // SAFETY: the APIC stays at its reset address; only the enable bit is set.
    unsafe { cpu::wrmsr(0x1b, base | (1 << 11)) };
    write(TPR, 0);
    write(SVR, 0x100 | u32::from(crate::interrupts::SPURIOUS));
    write(ESR, 0);
}

/// The calling CPU's local APIC id.
pub fn id() -> u32 {
    read(ID) >> 24
}

/// Ends the interrupt being handled.
pub fn eoi() {
    write(EOI, 0);
}

/// Writes the interrupt command register (destination first), with interrupts off so that no
/// handler on this CPU writes it in between, and waits until the APIC accepted it.
fn command(destination: u32, low: u32) {
    let was = cpu::irq_save();
    while read(ICR_LOW) & DELIVERY_PENDING != 0 {
        cpu::pause();
    }
    write(ICR_HIGH, destination << 24);
    write(ICR_LOW, low);
    while read(ICR_LOW) & DELIVERY_PENDING != 0 {
        cpu::pause();
    }
    cpu::irq_restore(was);
}

/// Sends interrupt `vector` to the CPU with local APIC id `apic_id`.
pub fn send_ipi(apic_id: u32, vector: u8) {
    command(apic_id, u32::from(vector));
}

/// INIT (level assert) to `apic_id`: the first step of starting an application processor.
pub fn send_init(apic_id: u32) {
    command(apic_id, 0x4500);
}

/// Start-up IPI: the processor starts in real mode at `page * 4096`.
pub fn send_startup(apic_id: u32, page: u8) {
    command(apic_id, 0x4600 | u32::from(page));
}

/// Local APIC timer ticks (divide by 16) per millisecond, measured once on the bootstrap CPU;
/// every CPU's timer runs at the same rate.
static TICKS_PER_MS: AtomicU32 = AtomicU32::new(0);
/// The timer period in microseconds.
pub static PERIOD_US: AtomicU64 = AtomicU64::new(0);

/// Measures the timer's rate against the (calibrated) time-stamp counter.
pub fn calibrate_timer(tsc_per_us: u64) -> u32 {
    write(TIMER_DIVIDE, 0x3); // divide by 16
    write(LVT_TIMER, 1 << 16); // masked, one-shot
    write(TIMER_INITIAL, u32::MAX);
    let start = cpu::rdtsc();
    while cpu::rdtsc() - start < tsc_per_us.max(1) * 10_000 {
        cpu::pause();
    }
    let elapsed = u32::MAX - read(TIMER_CURRENT);
    write(TIMER_INITIAL, 0);
    let per_ms = (elapsed / 10).max(1);
    TICKS_PER_MS.store(per_ms, Ordering::Relaxed);
    per_ms
}

/// Starts the calling CPU's timer: periodic, every `period_us` microseconds, on the timer vector.
pub fn start_timer(period_us: u64) {
    let per_ms = u64::from(TICKS_PER_MS.load(Ordering::Relaxed).max(1));
    let count = (per_ms * period_us / 1000).clamp(1, u64::from(u32::MAX)) as u32;
    PERIOD_US.store(period_us, Ordering::Relaxed);
    write(TIMER_DIVIDE, 0x3);
    write(
        LVT_TIMER,
        u32::from(crate::interrupts::TIMER) | (1 << 17), // periodic
    );
    write(TIMER_INITIAL, count);
}

/// The I/O APIC's registers (identity mapped, uncached), as the MADT gives them.
static IOAPIC_BASE: AtomicU64 = AtomicU64::new(0xfec0_0000);
/// The first global system interrupt of the I/O APIC.
static IOAPIC_GSI_BASE: AtomicU32 = AtomicU32::new(0);

fn ioapic_write(reg: u32, value: u32) {
    let base = IOAPIC_BASE.load(Ordering::Relaxed);
    // SAFETY: the I/O APIC's page is mapped (uncached) at its physical address (paging.rs maps
    // the 2 MiB around the architectural address, which the MADT check in acpi.rs keeps us to);
    // IOREGSEL selects, IOWIN writes.
    unsafe {
        (base as *mut u32).write_volatile(reg);
        ((base + 0x10) as *mut u32).write_volatile(value);
    }
}

/// Records where the I/O APIC is (from the MADT).
pub fn set_ioapic(base: u64, gsi_base: u32) {
    IOAPIC_BASE.store(base, Ordering::Relaxed);
    IOAPIC_GSI_BASE.store(gsi_base, Ordering::Relaxed);
}

/// Routes global system interrupt `gsi` to `vector` on the CPU with local APIC id `apic_id`:
/// fixed delivery, physical destination, edge triggered, active high (an ISA interrupt with no
/// override), masked when `masked`.
pub fn route(gsi: u32, vector: u8, apic_id: u32, masked: bool) {
    let pin = gsi - IOAPIC_GSI_BASE.load(Ordering::Relaxed);
    let low = u32::from(vector) | if masked { 1 << 16 } else { 0 };
    // High word first: the entry is unmasked (if at all) by the low word.
    ioapic_write(0x11 + 2 * pin, apic_id << 24);
    ioapic_write(0x10 + 2 * pin, low);
}
