//! Port I/O, control registers and the other single instructions the kernel needs. Every
//! `unsafe` that touches the machine directly is here.

use core::arch::asm;

/// Writes a byte to an I/O port.
pub fn outb(port: u16, value: u8) {
    // SAFETY: port writes only reach the devices QEMU emulates (COM1, the PIT, isa-debug-exit);
    // they touch no memory.
    unsafe {
        asm!("out dx, al", in("dx") port, in("al") value, options(nomem, nostack, preserves_flags))
    }
}

/// Writes a 32-bit word to an I/O port.
pub fn outl(port: u16, value: u32) {
    // SAFETY: as for `outb`.
    unsafe {
        asm!("out dx, eax", in("dx") port, in("eax") value, options(nomem, nostack, preserves_flags))
    }
}

/// Reads a byte from an I/O port.
pub fn inb(port: u16) -> u8 {
    let value: u8;
    // SAFETY: as for `outb`; reading the serial line status or the PIT gate has no side effect
    // on memory.
    unsafe {
        asm!("in al, dx", out("al") value, in("dx") port, options(nomem, nostack, preserves_flags))
    }
    value
}

/// The time-stamp counter.
pub fn rdtsc() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: `rdtsc` only reads the counter.
    unsafe { asm!("rdtsc", out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags)) }
    (u64::from(hi) << 32) | u64::from(lo)
}

/// `cpuid` leaf `leaf`: (eax, ebx, ecx, edx).
pub fn cpuid(leaf: u32) -> (u32, u32, u32, u32) {
    let r = core::arch::x86_64::__cpuid(leaf);
    (r.eax, r.ebx, r.ecx, r.edx)
}

/// CR2: the address of the last page fault.
pub fn cr2() -> u64 {
    let v: u64;
    // SAFETY: reading a control register changes nothing.
    unsafe { asm!("mov {}, cr2", out(reg) v, options(nomem, nostack, preserves_flags)) }
    v
}

/// Loads a new top-level page table.
///
/// # Safety
/// `pml4` is the physical address of a complete page table hierarchy that maps the running code,
/// its stack and every piece of memory in use with their current addresses.
pub unsafe fn write_cr3(pml4: u64) {
    // SAFETY: passed on from the caller.
    unsafe { asm!("mov cr3, {}", in(reg) pml4, options(nostack, preserves_flags)) }
}

/// Drops the TLB entry of the page that holds `addr`.
pub fn invlpg(addr: u64) {
    // SAFETY: invalidating a TLB entry is always sound: the next access walks the tables again.
    unsafe { asm!("invlpg [{}]", in(reg) addr, options(nostack, preserves_flags)) }
}

/// Stops the CPU for good.
pub fn halt() -> ! {
    loop {
        // SAFETY: interrupts are off; `hlt` only waits.
        unsafe { asm!("cli; hlt", options(nomem, nostack)) }
    }
}

/// Reads a model-specific register.
pub fn rdmsr(msr: u32) -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: the kernel reads only architectural MSRs every x86_64 CPU has (EFER, APIC base,
    // GS base); reading changes nothing.
    unsafe {
        asm!("rdmsr", in("ecx") msr, out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags))
    }
    (u64::from(hi) << 32) | u64::from(lo)
}

/// Writes a model-specific register.
///
/// # Safety
/// `msr` is an architectural MSR and `value` is a value that keeps the running code, its stack
/// and every address in use valid (the kernel writes only the APIC base and the GS base).
pub unsafe fn wrmsr(msr: u32, value: u64) {
    // SAFETY: passed on from the caller.
    unsafe {
        asm!("wrmsr", in("ecx") msr, in("eax") value as u32, in("edx") (value >> 32) as u32,
             options(nostack, preserves_flags))
    }
}

/// CR3: the physical address of the running top-level page table.
pub fn cr3() -> u64 {
    let v: u64;
    // SAFETY: reading a control register changes nothing.
    unsafe { asm!("mov {}, cr3", out(reg) v, options(nomem, nostack, preserves_flags)) }
    v
}

/// Drops every TLB entry that is not global (the kernel maps nothing global), by writing CR3
/// back.
pub fn flush_tlb() {
    let v = cr3();
    // SAFETY: the same tables stay loaded; only the TLB is emptied.
    unsafe { asm!("mov cr3, {}", in(reg) v, options(nostack, preserves_flags)) }
}

/// Whether interrupts are enabled (RFLAGS.IF).
pub fn interrupts_enabled() -> bool {
    let flags: u64;
    // SAFETY: reading RFLAGS through the stack changes nothing else.
    unsafe { asm!("pushfq", "pop {}", out(reg) flags, options(nomem, preserves_flags)) }
    flags & (1 << 9) != 0
}

/// Disables interrupts and returns whether they were enabled.
pub fn irq_save() -> bool {
    let was = interrupts_enabled();
    // SAFETY: `cli` only masks maskable interrupts on this CPU.
    unsafe { asm!("cli", options(nomem, nostack)) }
    was
}

/// Enables interrupts again if `was` says they were enabled before [`irq_save`].
pub fn irq_restore(was: bool) {
    if was {
        // SAFETY: the state before `irq_save` had interrupts enabled; the IDT is loaded.
        unsafe { asm!("sti", options(nomem, nostack)) }
    }
}

/// Waits for the next interrupt with interrupts enabled (`sti; hlt`: no interrupt can slip in
/// between), and returns with them enabled.
///
/// # Safety
/// The IDT, this CPU's TSS (for the interrupt stacks) and its local APIC are set up, and no lock
/// that an interrupt handler takes is held.
pub unsafe fn wait_for_interrupt() {
    // SAFETY: passed on from the caller.
    unsafe { asm!("sti", "hlt", options(nomem, nostack)) }
}

/// A spin-wait hint.
pub fn pause() {
    core::hint::spin_loop();
}
