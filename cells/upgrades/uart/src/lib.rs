//! `uart` v2: the receive path of a 16550 UART, with a 16 KiB ring and line counts.
//!
//! A new version of `cells/kernel/uart` (v1, a 4 KiB ring) with the same crate identity and
//! interface. Its state, [`RX`], has another layout (a larger ring, a count of line ends, and how
//! many times a state was transferred into this version), so a swap from v1 moves v1's waiting
//! bytes and counters with [`transfer_state`]; v1's own `transfer_state` takes them back. As in
//! v1, the ring is lock-free with one producer (the interrupt handler) and one reader at a time.
//!
//! Interface: v1's (`init`, `attach`, `on_interrupt`, `throttled`, `read`, `pending`, `received`, `dropped`,
//! `stats`, `revision`, `transfer_state`) plus `lines() -> u64` and `generation() -> u64`.
#![cfg_attr(not(test), no_std)]
#![deny(missing_docs)]

extern crate alloc;

use alloc::format;
use alloc::string::String;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};

/// Bytes the ring holds.
pub const CAPACITY: usize = 16384;

/// The receive ring: bytes received and not read yet, and counters.
#[repr(C)]
pub struct Rx {
    bytes: [AtomicU8; CAPACITY],
    /// Bytes ever stored by the handler.
    head: AtomicU64,
    /// Bytes ever read.
    tail: AtomicU64,
    /// Bytes the handler took from the UART with the ring full.
    dropped: AtomicU64,
    /// Interrupts handled.
    interrupts: AtomicU64,
    /// Line ends (`\n` or `\r`) received by this version.
    lines: AtomicU64,
    /// State transfers into this version.
    generation: AtomicU64,
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
            lines: AtomicU64::new(0),
            generation: AtomicU64::new(0),
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
        if byte == b'\n' || byte == b'\r' {
            self.lines.fetch_add(1, Ordering::Relaxed);
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
            *slot = self.bytes[((tail + i as u64) % CAPACITY as u64) as usize].load(Ordering::Relaxed);
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

/// The ring. `pub` so that the loader finds it; its type differs from v1's, so a swap from v1
/// fills it through [`transfer_state`].
#[doc(hidden)]
pub static RX: Rx = Rx::new();

/// Set while the handler leaves bytes in the UART for want of room (v1's, rebound).
#[doc(hidden)]
pub static THROTTLED: AtomicBool = AtomicBool::new(false);

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

/// Turns on the receive interrupt of the UART at `port`.
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

/// Line ends received by this version.
#[inline(never)]
pub fn lines() -> u64 {
    RX.lines.load(Ordering::Relaxed)
}

/// State transfers into this version.
#[inline(never)]
pub fn generation() -> u64 {
    RX.generation.load(Ordering::Relaxed)
}

/// The counters, as one line.
#[inline(never)]
pub fn stats() -> String {
    format!(
        "{} bytes received in {} interrupts, {} waiting, {} dropped; {} line ends in v2, {} transfers into v2",
        received(),
        RX.interrupts.load(Ordering::Relaxed),
        pending(),
        dropped(),
        lines(),
        generation()
    )
}

/// Which version of this cell is running, as one line.
#[inline(never)]
pub fn revision() -> String {
    String::from("uart v2: 16550 receive path, 16 KiB ring, line counts")
}

/// A mirror of v1's state (`cells/kernel/uart`).
mod v1 {
    use core::sync::atomic::{AtomicBool, AtomicU64, AtomicU8};

    /// v1's ring size.
    pub(crate) const CAPACITY: usize = 4096;

    /// v1's `uart::Rx`.
    #[repr(C)]
    pub(crate) struct Rx {
        pub(crate) bytes: [AtomicU8; CAPACITY],
        pub(crate) head: AtomicU64,
        pub(crate) tail: AtomicU64,
        pub(crate) dropped: AtomicU64,
        pub(crate) interrupts: AtomicU64,
        pub(crate) reading: AtomicBool,
    }
}

/// State transfer from v1, called by the loader during a swap, before it commits, while nothing
/// else runs either version (the kernel's gate). Takes v1's waiting bytes, in order, and its
/// counters (the byte counts go on from v1's), and counts one more transfer into this version.
#[inline(never)]
pub fn transfer_state(old: &dyn Fn(&str) -> Option<usize>) -> Result<(), String> {
    let addr = old("uart::RX").ok_or("uart v2: the old version has no uart::RX")?;
    if addr == 0 || !addr.is_multiple_of(core::mem::align_of::<v1::Rx>()) {
        return Err(format!(
            "uart v2: the old uart::RX at {addr:#x} is not aligned for v1's state"
        ));
    }
    // SAFETY: the loader passes the address of the old version's `uart::RX`, v1's `#[repr(C)]`
    // `Rx`, which `v1::Rx` mirrors (both versions' tests pin its layout); it stays mapped for the
    // whole call and is only read.
    let old = unsafe { &*(addr as *const v1::Rx) };
    let head = old.head.load(Ordering::Acquire);
    let tail = old.tail.load(Ordering::Acquire);
    let waiting = head.checked_sub(tail).ok_or("uart v2: v1's ring is inconsistent")?;
    if waiting > v1::CAPACITY as u64 {
        return Err(format!("uart v2: v1's ring says {waiting} bytes wait"));
    }
    for i in tail..head {
        let byte = old.bytes[(i % v1::CAPACITY as u64) as usize].load(Ordering::Relaxed);
        RX.bytes[(i % CAPACITY as u64) as usize].store(byte, Ordering::Relaxed);
    }
    RX.tail.store(tail, Ordering::Relaxed);
    RX.dropped
        .store(old.dropped.load(Ordering::Relaxed), Ordering::Relaxed);
    RX.interrupts
        .store(old.interrupts.load(Ordering::Relaxed), Ordering::Relaxed);
    RX.generation.fetch_add(1, Ordering::Relaxed);
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
const _: cell_abi::uart::Lines = lines;
const _: cell_abi::uart::Generation = generation;
const _: cell_abi::Revision = revision;
const _: cell_abi::TransferState = transfer_state;

#[cfg(test)]
mod tests {
    use super::*;

    /// The layout v1's mirror of this state relies on; `cells/kernel/uart` pins the same size.
    #[test]
    fn state_layout_is_pinned() {
        use core::mem::{offset_of, size_of};
        assert_eq!(offset_of!(Rx, head), 16384);
        assert_eq!(offset_of!(Rx, lines), 16416);
        assert_eq!(offset_of!(Rx, generation), 16424);
        assert_eq!(offset_of!(Rx, reading), 16432);
        assert_eq!(size_of::<Rx>(), 16440);
        assert_eq!(size_of::<v1::Rx>(), 4136);
    }

    #[test]
    fn an_upgrade_takes_what_waits_in_v1_and_counts_lines_from_then_on() {
        let old = Box::new(v1::Rx {
            bytes: [const { AtomicU8::new(0) }; v1::CAPACITY],
            head: AtomicU64::new(9_002),
            tail: AtomicU64::new(9_000),
            dropped: AtomicU64::new(0),
            interrupts: AtomicU64::new(3),
            reading: AtomicBool::new(false),
        });
        old.bytes[9_000 % v1::CAPACITY].store(b'o', Ordering::Relaxed);
        old.bytes[9_001 % v1::CAPACITY].store(b'k', Ordering::Relaxed);
        let addr = &*old as *const v1::Rx as usize;
        transfer_state(&|p: &str| (p == "uart::RX").then_some(addr)).unwrap();
        assert!(RX.push(b'\n'));
        let mut buf = [0u8; 8];
        assert_eq!(read(&mut buf), 3);
        assert_eq!(&buf[..3], b"ok\n");
        assert_eq!(received(), 9_003);
        assert_eq!(lines(), 1);
        assert_eq!(generation(), 1);
        assert!(transfer_state(&|_: &str| None).is_err());
    }
}
