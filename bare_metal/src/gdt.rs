//! Each CPU's GDT and TSS. The TSS exists for its interrupt stack table: every interrupt and
//! exception runs on a stack of its own (IST), never on the stack of the code it interrupted.
//! That is required here, not a nicety: the precompiled `core`/`alloc` and the cells are built
//! for `x86_64-unknown-linux-gnu`, whose code keeps data in the 128-byte red zone below `%rsp`,
//! which an interrupt frame pushed onto the same stack would overwrite.

use alloc::boxed::Box;
use alloc::vec;
use core::arch::asm;

/// The kernel's code segment selector (as in boot.rs's GDT).
pub const KERNEL_CODE: u16 = 0x08;
/// The kernel's data segment selector.
pub const KERNEL_DATA: u16 = 0x10;
const TSS_SELECTOR: u16 = 0x18;

/// IST index of device interrupts, IPIs, the timer and the yield vector.
pub const IST_INTERRUPTS: u8 = 1;
/// IST index of exceptions (a fault inside an interrupt handler gets a stack of its own).
pub const IST_EXCEPTIONS: u8 = 2;
/// IST index of the double fault and the NMI.
pub const IST_CRITICAL: u8 = 3;

/// Bytes of each interrupt stack. The interrupt path calls the `sched` cell and the exception
/// path formats a report, so they are not small.
const IST_BYTES: usize = 64 * 1024;

#[repr(C, packed)]
struct Tss {
    reserved0: u32,
    rsp: [u64; 3],
    reserved1: u64,
    ist: [u64; 7],
    reserved2: u64,
    reserved3: u16,
    iomap_base: u16,
}

#[repr(C, packed)]
struct Pointer {
    limit: u16,
    base: u64,
}

/// One interrupt stack's top (16-byte aligned), leaked: it lives as long as its CPU.
fn stack_top() -> u64 {
    let stack: &'static mut [u8] = vec![0u8; IST_BYTES].leak();
    (stack.as_ptr() as u64 + IST_BYTES as u64) & !15
}

/// Loads a new GDT and TSS on the calling CPU, with fresh interrupt stacks. Called once per CPU
/// before its interrupts are enabled; the segment selectors stay those of boot.rs.
pub fn init_this_cpu() {
    let mut tss = Box::new(Tss {
        reserved0: 0,
        rsp: [0; 3],
        reserved1: 0,
        ist: [0; 7],
        reserved2: 0,
        reserved3: 0,
        iomap_base: core::mem::size_of::<Tss>() as u16,
    });
    for index in [IST_INTERRUPTS, IST_EXCEPTIONS, IST_CRITICAL] {
        tss.ist[usize::from(index) - 1] = stack_top();
    }
    let tss: &'static Tss = Box::leak(tss);
    let base = tss as *const Tss as u64;
    let limit = (core::mem::size_of::<Tss>() - 1) as u64;
    let tss_low = (limit & 0xffff)
        | ((base & 0xff_ffff) << 16)
        | (0x89 << 40) // present, 64-bit TSS (available)
        | (((limit >> 16) & 0xf) << 48)
        | (((base >> 24) & 0xff) << 56);
    let tss_high = base >> 32;
    let gdt: &'static [u64; 5] = Box::leak(Box::new([
        0,
        0x00af_9b00_0000_ffff, // 0x08: 64-bit code, present, accessed
        0x00cf_9300_0000_ffff, // 0x10: data, present, accessed
        tss_low,
        tss_high,
    ]));
    let pointer = Pointer {
        limit: (core::mem::size_of::<[u64; 5]>() - 1) as u16,
        base: gdt.as_ptr() as u64,
    };
    // SAFETY: the GDT and TSS are leaked (they live for ever); its code and data descriptors are
    // the ones boot.rs loaded, at the same selectors, so reloading the segment registers keeps
    // every address the same; the TSS descriptor points at a complete 64-bit TSS whose IST
    // entries are the tops of mapped, unused stacks.
    unsafe {
        asm!(
            "lgdt [{ptr}]",
            "push {code}",
            "lea {tmp}, [rip + 2f]",
            "push {tmp}",
            "retfq",
            "2:",
            "mov ds, {data:x}",
            "mov es, {data:x}",
            "mov ss, {data:x}",
            "ltr {tss:x}",
            ptr = in(reg) &pointer,
            code = in(reg) u64::from(KERNEL_CODE),
            data = in(reg) u64::from(KERNEL_DATA),
            tss = in(reg) u64::from(TSS_SELECTOR),
            tmp = out(reg) _,
        );
    }
}
