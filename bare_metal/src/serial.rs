//! The console: COM1 (the 16550 UART QEMU puts at port 0x3f8), polled.

use core::fmt;

use crate::cpu::{inb, outb};

const COM1: u16 = 0x3f8;

/// Sets COM1 to 115200 baud, 8N1, FIFOs on.
pub fn init() {
    outb(COM1 + 1, 0x00); // no interrupts
    outb(COM1 + 3, 0x80); // divisor latch
    outb(COM1, 0x01); // 115200 baud
    outb(COM1 + 1, 0x00);
    outb(COM1 + 3, 0x03); // 8 bits, no parity, one stop bit
    outb(COM1 + 2, 0xc7); // FIFO on, cleared, 14-byte threshold
    outb(COM1 + 4, 0x0b); // DTR, RTS, OUT2
}

fn put(byte: u8) {
    while inb(COM1 + 5) & 0x20 == 0 {}
    outb(COM1, byte);
}

/// The console as a [`fmt::Write`].
pub struct Serial;

impl fmt::Write for Serial {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for b in s.bytes() {
            if b == b'\n' {
                put(b'\r');
            }
            put(b);
        }
        Ok(())
    }
}

/// The one lock that keeps lines whole (there is one CPU, but the panic handler may interrupt a
/// line being printed: it does not take the lock).
pub static LOCK: spin::Mutex<()> = spin::Mutex::new(());

/// Prints to the serial console.
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => {{
        use core::fmt::Write as _;
        let _guard = $crate::serial::LOCK.lock();
        let _ = write!($crate::serial::Serial, $($arg)*);
    }};
}

/// Prints a line to the serial console.
#[macro_export]
macro_rules! println {
    () => { $crate::print!("\n") };
    ($($arg:tt)*) => {{
        use core::fmt::Write as _;
        let _guard = $crate::serial::LOCK.lock();
        let _ = writeln!($crate::serial::Serial, $($arg)*);
    }};
}
