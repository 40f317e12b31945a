//! The machine's first instructions: the PVH entry point, the switch to long mode, and the
//! exception entry stubs.
//!
//! QEMU's `-kernel` loads an ELF kernel that carries a `XEN_ELFNOTE_PHYS32_ENTRY` note (the PVH
//! boot protocol) and jumps to that entry in 32-bit protected mode, paging off, with `%ebx`
//! holding the physical address of an `hvm_start_info`. The code below identity-maps the first
//! GiB with 2 MiB pages, turns on PAE, long mode, NX (when the CPU has it), write protection for
//! ring 0 and SSE, loads a GDT with one 64-bit code segment, and calls
//! [`crate::kernel_main`] with the start info's address on a 1 MiB boot stack.
//! `paging::init` replaces these tables with the kernel's own (W^X) before any cell is loaded.

core::arch::global_asm!(
    r#"
    .section .note.Xen, "a"
    .p2align 2
    .long 4             /* name size: "Xen\0" */
    .long 8             /* descriptor size */
    .long 18            /* XEN_ELFNOTE_PHYS32_ENTRY */
    .asciz "Xen"
    .quad pvh_start32

    .section .text.boot, "ax"
    .code32
    .global pvh_start32
pvh_start32:
    cli
    cld
    mov %ebx, %edi                      /* hvm_start_info, the first argument of kernel_main */
    mov $boot_stack_top, %esp

    /* Zero the three boot tables, then PML4[0] -> PDPT, PDPT[0] -> PD, PD[i] = 2 MiB page i. */
    push %edi
    mov $boot_pml4, %edi
    xor %eax, %eax
    mov $(3 * 4096 / 4), %ecx
    rep stosl
    pop %edi
    mov $boot_pdpt, %eax
    or $0x3, %eax
    mov %eax, boot_pml4
    mov $boot_pd, %eax
    or $0x3, %eax
    mov %eax, boot_pdpt
    xor %ecx, %ecx
1:
    mov %ecx, %eax
    shl $21, %eax
    or $0x83, %eax                      /* present, writable, 2 MiB page */
    mov %eax, boot_pd(,%ecx,8)
    inc %ecx
    cmp $512, %ecx
    jne 1b

    /* CR4: PAE, OSFXSR, OSXMMEXCPT (the prebuilt core uses SSE2). */
    mov %cr4, %eax
    or $((1 << 5) | (1 << 9) | (1 << 10)), %eax
    mov %eax, %cr4
    mov $boot_pml4, %eax
    mov %eax, %cr3

    /* EFER: long mode, and no-execute if CPUID 0x80000001 reports it. */
    mov $0x80000001, %eax
    cpuid
    mov %edx, %esi
    mov $0xC0000080, %ecx
    rdmsr
    or $(1 << 8), %eax
    test $(1 << 20), %esi
    jz 2f
    or $(1 << 11), %eax
2:
    wrmsr

    /* CR0: paging, write protection in ring 0, monitor coprocessor; no FPU emulation. */
    mov %cr0, %eax
    or $((1 << 31) | (1 << 16) | (1 << 1) | 1), %eax
    and $(~(1 << 2)), %eax
    mov %eax, %cr0

    lgdt boot_gdt_pointer
    ljmp $0x08, $long_mode_start

    .code64
long_mode_start:
    mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    xor %ax, %ax
    mov %ax, %fs
    mov %ax, %gs
    mov %edi, %edi                      /* zero-extend the start info's address */
    lea boot_stack_top(%rip), %rsp
    xor %ebp, %ebp
    call kernel_main
3:
    hlt
    jmp 3b

    /* Exception entry: vectors 0-31. The CPU pushes an error code for some; the others push a
     * zero so that the frame has one shape. The handler never returns. */
    .macro exception_stub vector, has_error
    .global exception_entry_\vector
exception_entry_\vector:
    .if \has_error == 0
    push $0
    .endif
    push $\vector
    jmp exception_common
    .endm

    exception_stub 0, 0
    exception_stub 1, 0
    exception_stub 2, 0
    exception_stub 3, 0
    exception_stub 4, 0
    exception_stub 5, 0
    exception_stub 6, 0
    exception_stub 7, 0
    exception_stub 8, 1
    exception_stub 9, 0
    exception_stub 10, 1
    exception_stub 11, 1
    exception_stub 12, 1
    exception_stub 13, 1
    exception_stub 14, 1
    exception_stub 15, 0
    exception_stub 16, 0
    exception_stub 17, 1
    exception_stub 18, 0
    exception_stub 19, 0
    exception_stub 20, 0
    exception_stub 21, 1

exception_common:
    mov %rsp, %rdi                      /* &ExceptionFrame */
    and $-16, %rsp
    call exception_handler
4:
    hlt
    jmp 4b

    .section .data.boot, "aw"
    .p2align 3
boot_gdt:
    .quad 0
    .quad 0x00af9b000000ffff            /* 0x08: 64-bit code, present, accessed */
    .quad 0x00cf93000000ffff            /* 0x10: data, present, accessed */
boot_gdt_end:
boot_gdt_pointer:
    .word boot_gdt_end - boot_gdt - 1
    .quad boot_gdt

    .section .bss.boot, "aw", @nobits
    .p2align 12
boot_pml4:
    .skip 4096
boot_pdpt:
    .skip 4096
boot_pd:
    .skip 4096
boot_stack:
    .skip 1024 * 1024
boot_stack_top:
"#,
    options(att_syntax)
);

/// The number of exception vectors with an entry stub.
pub const EXCEPTION_VECTORS: usize = 22;

extern "C" {
    fn exception_entry_0();
    fn exception_entry_1();
    fn exception_entry_2();
    fn exception_entry_3();
    fn exception_entry_4();
    fn exception_entry_5();
    fn exception_entry_6();
    fn exception_entry_7();
    fn exception_entry_8();
    fn exception_entry_9();
    fn exception_entry_10();
    fn exception_entry_11();
    fn exception_entry_12();
    fn exception_entry_13();
    fn exception_entry_14();
    fn exception_entry_15();
    fn exception_entry_16();
    fn exception_entry_17();
    fn exception_entry_18();
    fn exception_entry_19();
    fn exception_entry_20();
    fn exception_entry_21();
}

/// The entry stubs, by vector.
pub fn exception_entries() -> [unsafe extern "C" fn(); EXCEPTION_VECTORS] {
    [
        exception_entry_0,
        exception_entry_1,
        exception_entry_2,
        exception_entry_3,
        exception_entry_4,
        exception_entry_5,
        exception_entry_6,
        exception_entry_7,
        exception_entry_8,
        exception_entry_9,
        exception_entry_10,
        exception_entry_11,
        exception_entry_12,
        exception_entry_13,
        exception_entry_14,
        exception_entry_15,
        exception_entry_16,
        exception_entry_17,
        exception_entry_18,
        exception_entry_19,
        exception_entry_20,
        exception_entry_21,
    ]
}
