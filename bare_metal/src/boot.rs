//! The machine's first instructions: the PVH entry point and the switch to long mode. (The
//! interrupt entry stubs are in interrupts.rs, the application processors' trampoline in
//! smp.rs.)
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
    rdtsc                               /* the time-stamp counter at the kernel's first instruction */
    mov %eax, boot_entry_tsc
    mov %edx, boot_entry_tsc + 4
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

    .section .data.boot, "aw"
    .p2align 3
    .global boot_entry_tsc
boot_entry_tsc:
    .quad 0
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

extern "C" {
    static boot_entry_tsc: u64;
}

/// The time-stamp counter at the kernel's first instruction (`pvh_start32`).
pub fn entry_tsc() -> u64 {
    // SAFETY: written once by the entry code before any Rust code ran, only read afterwards.
    unsafe { core::ptr::addr_of!(boot_entry_tsc).read_volatile() }
}
