//! The interrupt descriptor table and the one entry path every vector takes.
//!
//! Each vector's stub pushes an error code (zero when the CPU pushes none) and its number, then
//! `interrupt_common` saves the 15 general registers and the SSE state (`fxsave`) on the
//! interrupt stack and calls `interrupt_dispatch` (dispatch.rs) with the whole [`Frame`]. The dispatch may
//! rewrite the frame: that is how the scheduler switches tasks (it copies the interrupted task's
//! frame out and the next one's in), and how a fault ends a task. Every gate uses an interrupt
//! stack of the TSS (gdt.rs), so nothing is pushed onto the interrupted stack, whose red zone the
//! interrupted code may be using.
//!
//! The SSE state is saved because the kernel, the precompiled `core` and the cells all use the
//! XMM registers, and an interrupt handler (or another task) would otherwise clobber them.

use alloc::boxed::Box;
use core::arch::asm;

use crate::gdt::{IST_CRITICAL, IST_EXCEPTIONS, IST_INTERRUPTS, KERNEL_CODE};

/// The local APIC timer.
pub const TIMER: u8 = 0x20;
/// COM1's receive interrupt (ISA IRQ 4, routed by the I/O APIC).
pub const UART: u8 = 0x24;
/// A task gives up its CPU (`int $0x30`).
pub const YIELD: u8 = 0x30;
/// IPI: report a quiescent point now (a swap or a grace period waits for one).
pub const QUIESCE: u8 = 0xf0;
/// IPI: drop the TLB (page permissions of cells changed, or pages were unmapped).
pub const TLB_FLUSH: u8 = 0xf1;
/// IPI: stop (the kernel is powering off or has failed).
pub const STOP: u8 = 0xf2;
/// IPI: check whether what this CPU runs is inside the old text of a swap (quiesce.rs).
pub const PROBE: u8 = 0xf3;
/// The local APIC's spurious vector.
pub const SPURIOUS: u8 = 0xff;

core::arch::global_asm!(
    r#"
    .macro interrupt_stub vector, has_error
    .global interrupt_entry_\vector
interrupt_entry_\vector:
    .if \has_error == 0
    push $0
    .endif
    push $\vector
    jmp interrupt_common
    .endm

    .section .text.interrupts, "ax"
    interrupt_stub 0, 0
    interrupt_stub 1, 0
    interrupt_stub 2, 0
    interrupt_stub 3, 0
    interrupt_stub 4, 0
    interrupt_stub 5, 0
    interrupt_stub 6, 0
    interrupt_stub 7, 0
    interrupt_stub 8, 1
    interrupt_stub 9, 0
    interrupt_stub 10, 1
    interrupt_stub 11, 1
    interrupt_stub 12, 1
    interrupt_stub 13, 1
    interrupt_stub 14, 1
    interrupt_stub 15, 0
    interrupt_stub 16, 0
    interrupt_stub 17, 1
    interrupt_stub 18, 0
    interrupt_stub 19, 0
    interrupt_stub 20, 0
    interrupt_stub 21, 1
    interrupt_stub 32, 0
    interrupt_stub 36, 0
    interrupt_stub 48, 0
    interrupt_stub 240, 0
    interrupt_stub 241, 0
    interrupt_stub 242, 0
    interrupt_stub 243, 0
    interrupt_stub 255, 0

    /* The CPU aligned the interrupt stack to 16 bytes and pushed 5 words; the stub pushed 2 and
     * this pushes 15, 176 bytes in all: the fxsave area below is 16-byte aligned. */
interrupt_common:
    push %rax
    push %rbx
    push %rcx
    push %rdx
    push %rsi
    push %rdi
    push %rbp
    push %r8
    push %r9
    push %r10
    push %r11
    push %r12
    push %r13
    push %r14
    push %r15
    sub $512, %rsp
    fxsave64 (%rsp)
    mov %rsp, %rdi
    cld
    call interrupt_dispatch
    fxrstor64 (%rsp)
    add $512, %rsp
    pop %r15
    pop %r14
    pop %r13
    pop %r12
    pop %r11
    pop %r10
    pop %r9
    pop %r8
    pop %rbp
    pop %rdi
    pop %rsi
    pop %rdx
    pop %rcx
    pop %rbx
    pop %rax
    add $16, %rsp
    iretq
"#,
    options(att_syntax)
);

extern "C" {
    fn interrupt_entry_0();
    fn interrupt_entry_1();
    fn interrupt_entry_2();
    fn interrupt_entry_3();
    fn interrupt_entry_4();
    fn interrupt_entry_5();
    fn interrupt_entry_6();
    fn interrupt_entry_7();
    fn interrupt_entry_8();
    fn interrupt_entry_9();
    fn interrupt_entry_10();
    fn interrupt_entry_11();
    fn interrupt_entry_12();
    fn interrupt_entry_13();
    fn interrupt_entry_14();
    fn interrupt_entry_15();
    fn interrupt_entry_16();
    fn interrupt_entry_17();
    fn interrupt_entry_18();
    fn interrupt_entry_19();
    fn interrupt_entry_20();
    fn interrupt_entry_21();
    fn interrupt_entry_32();
    fn interrupt_entry_36();
    fn interrupt_entry_48();
    fn interrupt_entry_240();
    fn interrupt_entry_241();
    fn interrupt_entry_242();
    fn interrupt_entry_243();
    fn interrupt_entry_255();
}

/// Everything the entry path saved, lowest address first: the state of the interrupted code.
/// A task's saved context is a copy of it.
#[repr(C, align(16))]
#[derive(Clone)]
pub struct Frame {
    /// The `fxsave` image: x87, MXCSR and XMM0-15.
    pub fx: [u8; 512],
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rbp: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rdx: u64,
    pub rcx: u64,
    pub rbx: u64,
    pub rax: u64,
    /// The vector.
    pub vector: u64,
    /// The error code (0 when the CPU pushes none).
    pub error: u64,
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

/// RFLAGS.IF.
pub const RFLAGS_IF: u64 = 1 << 9;

impl Frame {
    /// The frame a new task starts from: `entry(arg)` on `stack_top` with interrupts enabled,
    /// and a clean SSE state (`fx_template`, saved once at boot).
    pub fn new_task(entry: u64, arg: u64, stack_top: u64, fx_template: &[u8; 512]) -> Frame {
        Frame {
            fx: *fx_template,
            r15: 0,
            r14: 0,
            r13: 0,
            r12: 0,
            r11: 0,
            r10: 0,
            r9: 0,
            r8: 0,
            rbp: 0,
            rdi: arg,
            rsi: 0,
            rdx: 0,
            rcx: 0,
            rbx: 0,
            rax: 0,
            vector: 0,
            error: 0,
            rip: entry,
            cs: u64::from(KERNEL_CODE),
            rflags: RFLAGS_IF | 0x2,
            // As after a `call`: the entry sees a 16-byte aligned stack minus the return address.
            rsp: (stack_top & !15) - 8,
            ss: u64::from(crate::gdt::KERNEL_DATA),
        }
    }
}

/// The `fxsave` image of a clean SSE state (default MXCSR and x87 control word), for new tasks.
pub fn clean_fx_state() -> Box<[u8; 512]> {
    #[repr(C, align(16))]
    struct Area([u8; 512]);
    let mut area = Box::new(Area([0; 512]));
    // SAFETY: `fninit` and `ldmxcsr` reset the x87 and SSE control state of this CPU, which holds
    // no floating-point value anyone needs at boot; `fxsave` writes 512 bytes into the 16-byte
    // aligned area.
    unsafe {
        let mxcsr: u32 = 0x1f80;
        asm!(
            "fninit",
            "ldmxcsr [{mxcsr}]",
            "fxsave64 [{area}]",
            mxcsr = in(reg) &mxcsr,
            area = in(reg) area.0.as_mut_ptr(),
            options(nostack)
        );
    }
    Box::new(area.0)
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Gate {
    offset_low: u16,
    selector: u16,
    ist: u8,
    attributes: u8,
    offset_mid: u16,
    offset_high: u32,
    reserved: u32,
}

#[repr(C, packed)]
struct Pointer {
    limit: u16,
    base: u64,
}

static IDT: spin::Once<&'static [Gate; 256]> = spin::Once::new();

/// Builds the IDT (once) and loads it on the calling CPU.
pub fn load() {
    let table = IDT.call_once(|| {
        let table: &'static mut [Gate; 256] = Box::leak(Box::new([Gate::default(); 256]));
        let exceptions: [unsafe extern "C" fn(); 22] = [
            interrupt_entry_0,
            interrupt_entry_1,
            interrupt_entry_2,
            interrupt_entry_3,
            interrupt_entry_4,
            interrupt_entry_5,
            interrupt_entry_6,
            interrupt_entry_7,
            interrupt_entry_8,
            interrupt_entry_9,
            interrupt_entry_10,
            interrupt_entry_11,
            interrupt_entry_12,
            interrupt_entry_13,
            interrupt_entry_14,
            interrupt_entry_15,
            interrupt_entry_16,
            interrupt_entry_17,
            interrupt_entry_18,
            interrupt_entry_19,
            interrupt_entry_20,
            interrupt_entry_21,
        ];
        let mut set = |vector: u8, entry: unsafe extern "C" fn(), ist: u8| {
            let addr = entry as usize as u64;
            table[usize::from(vector)] = Gate {
                offset_low: addr as u16,
                selector: KERNEL_CODE,
                ist,
                attributes: 0x8e, // present, ring 0, 64-bit interrupt gate (IF cleared)
                offset_mid: (addr >> 16) as u16,
                offset_high: (addr >> 32) as u32,
                reserved: 0,
            };
        };
        for (vector, entry) in exceptions.into_iter().enumerate() {
            let ist = match vector {
                2 | 8 | 18 => IST_CRITICAL, // NMI, double fault, machine check
                _ => IST_EXCEPTIONS,
            };
            set(vector as u8, entry, ist);
        }
        set(TIMER, interrupt_entry_32, IST_INTERRUPTS);
        set(UART, interrupt_entry_36, IST_INTERRUPTS);
        set(YIELD, interrupt_entry_48, IST_INTERRUPTS);
        set(QUIESCE, interrupt_entry_240, IST_INTERRUPTS);
        set(TLB_FLUSH, interrupt_entry_241, IST_INTERRUPTS);
        set(STOP, interrupt_entry_242, IST_INTERRUPTS);
        set(PROBE, interrupt_entry_243, IST_INTERRUPTS);
        set(SPURIOUS, interrupt_entry_255, IST_INTERRUPTS);
        table
    });
    let pointer = Pointer {
        limit: (core::mem::size_of::<[Gate; 256]>() - 1) as u16,
        base: table.as_ptr() as u64,
    };
    // SAFETY: the table lives for ever (leaked) and every present gate points at a stub above in
    // the kernel's code segment, with an IST index this CPU's TSS fills (gdt.rs runs first).
    unsafe { asm!("lidt [{}]", in(reg) &pointer, options(readonly, nostack, preserves_flags)) };
}

/// Gives the CPU up to the scheduler: `int $0x30` (see task.rs). Returns when the scheduler runs
/// the calling task again.
pub fn yield_now() {
    // SAFETY: the yield vector's gate is present and its handler saves and restores every
    // register (the frame), so the calling code resumes as if nothing happened.
    unsafe { asm!("int 0x30") }
}
