//! The console's output: COM1 (the 16550 UART QEMU puts at port 0x3f8), polled. Its receive
//! path is the `uart` driver cell's (driver.rs).

use core::fmt;

use crate::cpu::{inb, outb};

const COM1: u16 = 0x3f8;

/// Sets COM1 to 115200 baud, 8N1, FIFOs on.
pub fn init() {
    outb(COM1 + 1, 0x00); // no interrupts (the driver turns the receive interrupt on)
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

/// The one lock that keeps lines whole on every CPU. Interrupts are off while it is held, so an
/// interrupt handler that prints never finds it held by the code it interrupted; the panic
/// handler and the exception handler do not wait for it ([`Emergency`]).
pub static LOCK: crate::sync::IrqMutex<()> = crate::sync::IrqMutex::new(());

/// The console for code that must not wait (a fault, a panic): takes the lock if it is free
/// within a while, and writes without it otherwise (a line may then interleave with another
/// CPU's, which beats not reporting).
pub struct Emergency {
    _guard: Option<crate::sync::IrqGuard<'static, ()>>,
}

impl Emergency {
    /// The console, locked if possible.
    pub fn new() -> Emergency {
        let guard = (0..1_000_000).find_map(|_| {
            let g = LOCK.try_lock();
            if g.is_none() {
                core::hint::spin_loop();
            }
            g
        });
        Emergency { _guard: guard }
    }
}

impl fmt::Write for Emergency {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        Serial.write_str(s)
    }
}

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
