//! `uart`: the receive path of a 16550 UART (COM1 on a PC) as a driver cell.
//!
//! The kernel routes the UART's interrupt to one CPU and, in its handler, calls [`on_interrupt`]
//! through a slot: the handler drains the UART's receive FIFO into a ring ([`RX`]). Tasks take
//! the bytes with [`read`]. The ring is lock-free, one producer (the interrupt handler, on the one
//! CPU the interrupt is routed to) and one reader at a time (a flag, never waited for in the
//! handler), so the handler never waits for a lock a task holds.
//!
//! Nothing touches the hardware until the kernel calls [`attach`]: the hosted `nano_core` loads
//! this cell like every kernel cell and never calls it.
//!
//! The state lives in the `pub static` [`RX`], `#[repr(C)]`: a new version with another layout
//! (`cells/upgrades/uart`, a larger ring) takes it over with its `transfer_state`, and this
//! version's [`transfer_state`] takes v2's back (a downgrade), as long as what waits fits.
//!
//! Interface (all `pub`, non-generic, `#[inline(never)]`):
//! - `init() -> Result<(), String>`: nothing (no hardware is touched).
//! - `attach(port: u16) -> Result<(), String>`: turn the UART's receive interrupt on.
//! - `on_interrupt(port: u16) -> usize`: the interrupt handler; returns the bytes it took.
//! - `read(buf: &mut [u8]) -> usize`: bytes received, oldest first.
//! - `throttled() -> bool`: the handler left bytes in the UART (ring full).
//! - `pending() -> usize`, `received() -> u64`, `dropped() -> u64`.
//! - `stats() -> String`, `revision() -> String`.
//! - `transfer_state(old: &dyn Fn(&str) -> Option<usize>) -> Result<(), String>`: from v2.
#![cfg_attr(not(test), no_std)]
#![deny(missing_docs)]

extern crate alloc;

use alloc::format;
use alloc::string::String;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};

/// Bytes the ring holds.
pub const CAPACITY: usize = 4096;

/// The receive ring: bytes received and not read yet, and counters.
#[repr(C)]
pub struct Rx {
    bytes: [AtomicU8; CAPACITY],
    /// Bytes ever stored by the handler (the next one goes to `head % CAPACITY`).
    head: AtomicU64,
    /// Bytes ever read (the next one comes from `tail % CAPACITY`).
    tail: AtomicU64,
    /// Bytes the handler took from the UART with the ring full.
    dropped: AtomicU64,
    /// Interrupts handled.
    interrupts: AtomicU64,
    /// Held by the one reader.
    reading: AtomicBool,
}

impl Rx {
    /// An empty ring (usable in a `static`).
    pub const fn new() -> Rx {
        Rx {
            bytes: [const { AtomicU8::new(0) }; CAPACITY],
            head: AtomicU64::new(0),
            tail: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            interrupts: AtomicU64::new(0),
            reading: AtomicBool::new(false),
        }
    }

    /// Stores one received byte (the producer: one caller at a time).
    pub fn push(&self, byte: u8) -> bool {
        let head = self.head.load(Ordering::Relaxed);
        let tail = self.tail.load(Ordering::Acquire);
        if head - tail >= CAPACITY as u64 {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        self.bytes[(head % CAPACITY as u64) as usize].store(byte, Ordering::Relaxed);
        self.head.store(head + 1, Ordering::Release);
        true
    }

    /// Moves waiting bytes into `buf`; 0 when none wait or another reader is reading.
    pub fn pop_into(&self, buf: &mut [u8]) -> usize {
        if self.reading.swap(true, Ordering::Acquire) {
            return 0;
        }
        let tail = self.tail.load(Ordering::Relaxed);
        let head = self.head.load(Ordering::Acquire);
        let n = ((head - tail) as usize).min(buf.len());
        for (i, slot) in buf.iter_mut().take(n).enumerate() {
            *slot =
                self.bytes[((tail + i as u64) % CAPACITY as u64) as usize].load(Ordering::Relaxed);
        }
        self.tail.store(tail + n as u64, Ordering::Release);
        self.reading.store(false, Ordering::Release);
        n
    }

    /// Bytes waiting.
    pub fn pending(&self) -> usize {
        (self.head.load(Ordering::Acquire) - self.tail.load(Ordering::Acquire)) as usize
    }
}

impl Default for Rx {
    fn default() -> Self {
        Self::new()
    }
}

/// The ring. `pub` so that a new version of this cell finds it on a live swap.
#[doc(hidden)]
pub static RX: Rx = Rx::new();

/// Set while the handler leaves bytes in the UART for want of room. A static of its own, with
/// the same type in every version, so a swap binds the new version to it (no transfer needed).
#[doc(hidden)]
pub static THROTTLED: AtomicBool = AtomicBool::new(false);

/// Reads a byte from an I/O port.
fn inb(port: u16) -> u8 {
    let value: u8;
    // SAFETY: only called with the UART's registers (the port the kernel gave to `attach` and
    // `on_interrupt`); reading them has no effect on memory.
    unsafe {
        core::arch::asm!("in al, dx", out("al") value, in("dx") port,
                         options(nomem, nostack, preserves_flags))
    }
    value
}

/// Writes a byte to an I/O port.
fn outb(port: u16, value: u8) {
    // SAFETY: as for `inb`; the write reaches the UART's interrupt enable register only.
    unsafe {
        core::arch::asm!("out dx, al", in("dx") port, in("al") value,
                         options(nomem, nostack, preserves_flags))
    }
}

/// Cell entry point: nothing to do until the kernel attaches the device.
#[inline(never)]
pub fn init() -> Result<(), String> {
    Ok(())
}

/// Turns on the receive interrupt of the UART at `port` (its interrupt enable register).
#[inline(never)]
pub fn attach(port: u16) -> Result<(), String> {
    if port == 0 {
        return Err(String::from("uart: no port"));
    }
    outb(port + 1, 0x01);
    Ok(())
}

/// The interrupt handler: moves the bytes the UART at `port` holds into the ring, as many as
/// fit. When the ring is full it stops and leaves the rest in the UART (whose FIFO, and behind it
/// the line, holds them: no byte is dropped), and says so in [`THROTTLED`]; the kernel runs the
/// handler again once a reader made room. Returns how many bytes it took.
#[inline(never)]
pub fn on_interrupt(port: u16) -> usize {
    let mut n = 0;
    let mut full = false;
    // Line status bit 0: a byte is waiting in the receive buffer.
    while inb(port + 5) & 1 != 0 {
        if RX.pending() >= CAPACITY {
            full = true;
            break;
        }
        RX.push(inb(port));
        n += 1;
    }
    THROTTLED.store(full, Ordering::Release);
    RX.interrupts.fetch_add(1, Ordering::Relaxed);
    n
}

/// Whether the handler left bytes in the UART because the ring was full (the kernel then runs
/// it again after a read).
#[inline(never)]
pub fn throttled() -> bool {
    THROTTLED.load(Ordering::Acquire)
}

/// Moves received bytes into `buf`, oldest first; returns how many.
#[inline(never)]
pub fn read(buf: &mut [u8]) -> usize {
    RX.pop_into(buf)
}

/// Bytes received and not read yet.
#[inline(never)]
pub fn pending() -> usize {
    RX.pending()
}

/// Bytes received since boot (by every version).
#[inline(never)]
pub fn received() -> u64 {
    RX.head.load(Ordering::Acquire)
}

/// Bytes lost because the ring was full.
#[inline(never)]
pub fn dropped() -> u64 {
    RX.dropped.load(Ordering::Relaxed)
}

/// The counters, as one line.
#[inline(never)]
pub fn stats() -> String {
    format!(
        "{} bytes received in {} interrupts, {} waiting, {} dropped",
        received(),
        RX.interrupts.load(Ordering::Relaxed),
        pending(),
        dropped()
    )
}

/// Which version of this cell is running, as one line.
#[inline(never)]
pub fn revision() -> String {
    String::from("uart v1: 16550 receive path, 4 KiB ring")
}

/// A mirror of v2's state (`cells/upgrades/uart`), to take it back on a downgrade.
mod v2 {
    use core::sync::atomic::{AtomicBool, AtomicU64, AtomicU8};

    /// v2's ring size.
    pub(crate) const CAPACITY: usize = 16384;

    /// v2's `uart::Rx`.
    #[repr(C)]
    pub(crate) struct Rx {
        pub(crate) bytes: [AtomicU8; CAPACITY],
        pub(crate) head: AtomicU64,
        pub(crate) tail: AtomicU64,
        pub(crate) dropped: AtomicU64,
        pub(crate) interrupts: AtomicU64,
        pub(crate) lines: AtomicU64,
        pub(crate) generation: AtomicU64,
        pub(crate) reading: AtomicBool,
    }
}

/// State transfer from v2 (a downgrade), called by the loader during a swap, before it commits,
/// while nothing else runs either version (the kernel's gate). Takes v2's waiting bytes, in
/// order, and its counters; refuses, changing nothing, when more bytes wait than this version's
/// ring holds.
#[inline(never)]
pub fn transfer_state(old: &dyn Fn(&str) -> Option<usize>) -> Result<(), String> {
    let addr = old("uart::RX").ok_or("uart v1: the old version has no uart::RX")?;
    if addr == 0 || !addr.is_multiple_of(core::mem::align_of::<v2::Rx>()) {
        return Err(format!(
            "uart v1: the old uart::RX at {addr:#x} is not aligned for v2's state"
        ));
    }
    // SAFETY: the loader passes the address of the old version's `uart::RX`, v2's `#[repr(C)]`
    // `Rx`, which `v2::Rx` mirrors (both versions' tests pin its layout); it stays mapped for the
    // whole call and is only read.
    let old = unsafe { &*(addr as *const v2::Rx) };
    let head = old.head.load(Ordering::Acquire);
    let tail = old.tail.load(Ordering::Acquire);
    let waiting = head
        .checked_sub(tail)
        .ok_or("uart v1: v2's ring is inconsistent")?;
    if waiting > CAPACITY as u64 {
        return Err(format!(
            "uart v1: {waiting} bytes wait in v2's ring, more than the {CAPACITY} this version holds"
        ));
    }
    for i in tail..head {
        let byte = old.bytes[(i % v2::CAPACITY as u64) as usize].load(Ordering::Relaxed);
        RX.bytes[(i % CAPACITY as u64) as usize].store(byte, Ordering::Relaxed);
    }
    RX.tail.store(tail, Ordering::Relaxed);
    RX.dropped
        .store(old.dropped.load(Ordering::Relaxed), Ordering::Relaxed);
    RX.interrupts
        .store(old.interrupts.load(Ordering::Relaxed), Ordering::Relaxed);
    RX.head.store(head, Ordering::Release);
    Ok(())
}

// The interface, checked against cell-abi at compile time: the bare-metal kernel binds these
// functions by the types declared there.
const _: cell_abi::Init = init;
const _: cell_abi::uart::Attach = attach;
const _: cell_abi::uart::OnInterrupt = on_interrupt;
const _: cell_abi::uart::Read = read;
const _: cell_abi::uart::Throttled = throttled;
const _: cell_abi::uart::Pending = pending;
const _: cell_abi::uart::Received = received;
const _: cell_abi::uart::Dropped = dropped;
const _: cell_abi::uart::Stats = stats;
const _: cell_abi::Revision = revision;
const _: cell_abi::TransferState = transfer_state;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ring_keeps_order_and_refuses_when_full() {
        let rx = Box::new(Rx::new());
        for b in 0..10u8 {
            assert!(rx.push(b));
        }
        let mut buf = [0u8; 4];
        assert_eq!(rx.pop_into(&mut buf), 4);
        assert_eq!(buf, [0, 1, 2, 3]);
        assert_eq!(rx.pending(), 6);
        for i in 0..CAPACITY - 6 {
            assert!(rx.push(i as u8));
        }
        assert!(!rx.push(0));
        assert_eq!(rx.dropped.load(Ordering::Relaxed), 1);
        let mut all = vec![0u8; CAPACITY];
        assert_eq!(rx.pop_into(&mut all), CAPACITY);
        assert_eq!(&all[..6], &[4, 5, 6, 7, 8, 9]);
    }

    /// The layout v2's mirror of this state relies on; `cells/upgrades/uart` pins the same.
    #[test]
    fn state_layout_is_pinned() {
        use core::mem::{offset_of, size_of};
        assert_eq!(offset_of!(Rx, head), 4096);
        assert_eq!(offset_of!(Rx, tail), 4104);
        assert_eq!(offset_of!(Rx, dropped), 4112);
        assert_eq!(offset_of!(Rx, interrupts), 4120);
        assert_eq!(offset_of!(Rx, reading), 4128);
        assert_eq!(size_of::<Rx>(), 4136);
        assert_eq!(size_of::<v2::Rx>(), 16384 + 6 * 8 + 8);
    }

    #[test]
    fn a_downgrade_takes_what_waits_in_v2() {
        let old = Box::new(v2::Rx {
            bytes: [const { AtomicU8::new(0) }; v2::CAPACITY],
            head: AtomicU64::new(20_003),
            tail: AtomicU64::new(20_000),
            dropped: AtomicU64::new(2),
            interrupts: AtomicU64::new(7),
            lines: AtomicU64::new(0),
            generation: AtomicU64::new(1),
            reading: AtomicBool::new(false),
        });
        for (i, b) in [b'a', b'b', b'c'].into_iter().enumerate() {
            old.bytes[(20_000 + i) % v2::CAPACITY].store(b, Ordering::Relaxed);
        }
        let addr = &*old as *const v2::Rx as usize;
        transfer_state(&|p: &str| (p == "uart::RX").then_some(addr)).unwrap();
        let mut buf = [0u8; 8];
        assert_eq!(read(&mut buf), 3);
        assert_eq!(&buf[..3], b"abc");
        assert_eq!(received(), 20_003);
        assert_eq!(dropped(), 2);
        old.head.store(40_000, Ordering::Relaxed);
        assert!(transfer_state(&|_: &str| Some(addr))
            .unwrap_err()
            .contains("more than the 4096"));
    }
}
