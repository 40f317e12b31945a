//! Starting the application processors (APs), and the requests CPUs make of each other (TLB
//! shootdown, stop).
//!
//! PVH boots only the bootstrap CPU. The others wait for INIT and a start-up IPI (SIPI), after
//! which they run in real mode at `vector * 4096`. The trampoline below is copied to
//! [`TRAMPOLINE`] (0x8000, SIPI vector 8) before the kernel's page tables are built, which map
//! that page read+execute (and nothing there writable). An AP goes through it from real mode
//! (a GDT of its own with 32-bit and 64-bit code segments) to protected mode, turns on PAE, the
//! kernel's page tables, long mode and NX as the bootstrap CPU did, and jumps to
//! `ap_long_entry` in the kernel's text with the stack and CPU index the bootstrap CPU left in
//! `AP_BOOT_STACK` and `AP_BOOT_CPU`. APs start one at a time, so one set of those is enough.
//!
//! Under QEMU's TCG the SIPI is taken at once; the waits follow Intel's sequence (INIT, 10 ms,
//! SIPI, 200 us, SIPI) measured with the TSC, and an AP that does not check in within a second
//! is reported and left out.

use alloc::vec;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use crate::paging::TRAMPOLINE;
use crate::percpu::{self, CPUS, MAX_CPUS};
use crate::{apic, cpu, interrupts, println};

core::arch::global_asm!(
    r#"
    .section .rodata.trampoline, "a"
    .p2align 12
    .global ap_trampoline_start
    .global ap_trampoline_end
    .code16
ap_trampoline_start:
    cli
    cld
    xor %ax, %ax
    mov %ax, %ds
    lgdtl {tramp} + (ap_trampoline_gdt_pointer - ap_trampoline_start)
    mov %cr0, %eax
    or $1, %eax
    mov %eax, %cr0
    ljmpl $0x08, ${tramp} + (ap_trampoline_32 - ap_trampoline_start)

    .code32
ap_trampoline_32:
    mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    /* CR4: PAE, OSFXSR, OSXMMEXCPT, as on the bootstrap CPU. */
    mov %cr4, %eax
    or $((1 << 5) | (1 << 9) | (1 << 10)), %eax
    mov %eax, %cr4
    /* The kernel's own page tables (below 4 GiB: the heap). */
    mov AP_BOOT_CR3, %eax
    mov %eax, %cr3
    /* EFER: long mode and no-execute (the kernel's tables use the NX bit). */
    mov $0xC0000080, %ecx
    rdmsr
    or $((1 << 8) | (1 << 11)), %eax
    wrmsr
    /* CR0: paging, write protection in ring 0, monitor coprocessor; no FPU emulation. */
    mov %cr0, %eax
    or $((1 << 31) | (1 << 16) | (1 << 1) | 1), %eax
    and $(~(1 << 2)), %eax
    mov %eax, %cr0
    ljmp $0x18, ${tramp} + (ap_trampoline_64 - ap_trampoline_start)

    .code64
ap_trampoline_64:
    movabs $ap_long_entry, %rax
    jmp *%rax

    .p2align 3
ap_trampoline_gdt:
    .quad 0
    .quad 0x00cf9b000000ffff            /* 0x08: 32-bit code, present, accessed */
    .quad 0x00cf93000000ffff            /* 0x10: data, present, accessed */
    .quad 0x00af9b000000ffff            /* 0x18: 64-bit code, present, accessed */
ap_trampoline_gdt_pointer:
    .word 4 * 8 - 1
    .long {tramp} + (ap_trampoline_gdt - ap_trampoline_start)
ap_trampoline_end:

    .section .text.ap_entry, "ax"
ap_long_entry:
    mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    xor %ax, %ax
    mov %ax, %fs
    mov %ax, %gs
    mov AP_BOOT_STACK(%rip), %rsp
    mov AP_BOOT_CPU(%rip), %rdi
    xor %ebp, %ebp
    call ap_main
1:
    hlt
    jmp 1b
"#,
    tramp = const TRAMPOLINE,
    options(att_syntax)
);

extern "C" {
    static ap_trampoline_start: u8;
    static ap_trampoline_end: u8;
}

/// The page tables an AP loads (the kernel's, physical address below 4 GiB).
#[no_mangle]
static AP_BOOT_CR3: AtomicU64 = AtomicU64::new(0);
/// The stack an AP starts on (its idle stack).
#[no_mangle]
static AP_BOOT_STACK: AtomicU64 = AtomicU64::new(0);
/// The index the AP gets in [`CPUS`].
#[no_mangle]
static AP_BOOT_CPU: AtomicU64 = AtomicU64::new(0);
/// Set by an AP once it runs Rust code on its own stack.
static AP_CHECKED_IN: AtomicBool = AtomicBool::new(false);
/// Set by the bootstrap CPU when APs may start their timers and take tasks.
static GO: AtomicBool = AtomicBool::new(false);

/// Each AP's idle stack.
const AP_STACK_BYTES: usize = 256 * 1024;

/// Copies the trampoline to [`TRAMPOLINE`]. Runs on the boot page tables (identity, writable),
/// before `paging::init` maps that page read+execute.
pub fn install_trampoline() -> usize {
    let start = core::ptr::addr_of!(ap_trampoline_start);
    let end = core::ptr::addr_of!(ap_trampoline_end);
    let len = end as usize - start as usize;
    assert!(len <= 4096, "the AP trampoline is larger than a page");
    // SAFETY: the boot tables map the first GiB identity and writable; 0x8000..0x9000 is RAM
    // that nothing uses (the PVH start info was copied out already; kernel_main checks the memory
    // map); the source is the trampoline's bytes in the kernel's read-only data.
    unsafe { core::ptr::copy_nonoverlapping(start, TRAMPOLINE as *mut u8, len) };
    len
}

/// What starting the APs did.
pub struct Started {
    /// Local APIC ids of the CPUs online, by index.
    pub apic_ids: Vec<u32>,
    /// CPUs that never checked in (their APIC ids).
    pub missing: Vec<u32>,
    /// Time-stamp counter ticks from the first INIT to the last AP checked in.
    pub tsc: u64,
}

/// Starts every CPU of `apic_ids` other than the calling (bootstrap) one. Each AP sets itself
/// up (GDT and interrupt stacks, IDT, GS base, local APIC) and then waits for [`release`].
pub fn start_aps(apic_ids: &[u32], tsc_per_us: u64) -> Started {
    let me = apic::id();
    AP_BOOT_CR3.store(cpu::cr3(), Ordering::SeqCst);
    let us = |n: u64| n * tsc_per_us.max(1);
    let wait = |ticks: u64| {
        let start = cpu::rdtsc();
        while cpu::rdtsc() - start < ticks {
            cpu::pause();
        }
    };
    let begin = cpu::rdtsc();
    let mut online = vec![me];
    let mut missing = Vec::new();
    for &id in apic_ids.iter().filter(|id| **id != me) {
        let index = online.len();
        if index >= MAX_CPUS {
            missing.push(id);
            continue;
        }
        let stack: &'static mut [u8] = vec![0u8; AP_STACK_BYTES].leak();
        let top = (stack.as_ptr() as u64 + AP_STACK_BYTES as u64) & !15;
        AP_BOOT_STACK.store(top, Ordering::SeqCst);
        AP_BOOT_CPU.store(index as u64, Ordering::SeqCst);
        AP_CHECKED_IN.store(false, Ordering::SeqCst);
        apic::send_init(id);
        wait(us(10_000));
        apic::send_startup(id, (TRAMPOLINE / 4096) as u8);
        wait(us(200));
        if !AP_CHECKED_IN.load(Ordering::SeqCst) {
            apic::send_startup(id, (TRAMPOLINE / 4096) as u8);
        }
        let start = cpu::rdtsc();
        while !AP_CHECKED_IN.load(Ordering::SeqCst) && cpu::rdtsc() - start < us(1_000_000) {
            cpu::pause();
        }
        if AP_CHECKED_IN.load(Ordering::SeqCst) {
            online.push(id);
        } else {
            println!("smp: the CPU with APIC id {id} did not start; going on without it");
            missing.push(id);
        }
    }
    Started {
        apic_ids: online,
        missing,
        tsc: cpu::rdtsc() - begin,
    }
}

/// Lets the APs start their timers and run tasks.
pub fn release() {
    GO.store(true, Ordering::SeqCst);
}

/// Sets up the calling CPU's GDT and TSS, IDT and GS base. For every CPU, the bootstrap one
/// first thing (its local APIC comes later, once paging maps it).
pub fn init_this_cpu(index: usize) {
    crate::gdt::init_this_cpu();
    interrupts::load();
    percpu::init_this_cpu(index, 0);
}

/// Turns on the calling CPU's local APIC and records its id.
pub fn init_apic() {
    apic::init_this_cpu();
    percpu::this_cpu()
        .apic_id
        .store(apic::id(), Ordering::Relaxed);
}

/// An AP's first Rust code, on its idle stack.
#[no_mangle]
extern "C" fn ap_main(index: u64) -> ! {
    let index = index as usize;
    init_this_cpu(index);
    init_apic();
    crate::quiesce::register_this_cpu();
    CPUS[index].online.store(true, Ordering::SeqCst);
    percpu::ONLINE.fetch_add(1, Ordering::SeqCst);
    AP_CHECKED_IN.store(true, Ordering::SeqCst);
    while !GO.load(Ordering::SeqCst) {
        cpu::pause();
    }
    crate::task::run_cpu()
}

/// The highest TLB shootdown requested; a CPU acknowledges one by storing the sequence number it
/// saw before flushing.
static TLB_SEQ: AtomicU64 = AtomicU64::new(0);
/// Each CPU's acknowledged shootdown.
static TLB_ACK: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
/// Shootdowns made, for `stats`.
pub static SHOOTDOWNS: AtomicUsize = AtomicUsize::new(0);
/// One shootdown at a time.
static SHOOTDOWN_LOCK: spin::Mutex<()> = spin::Mutex::new(());

/// Makes every other online CPU drop its TLB and waits until each did. The caller changed page
/// table entries before calling. Must run with interrupts enabled or before the APs take
/// interrupts (two CPUs shooting down at once serve each other's requests while they wait).
pub fn tlb_shootdown() {
    // On one CPU throughout: the one flushed here is the one not sent an IPI.
    let _pinned = crate::quiesce::pin();
    cpu::flush_tlb();
    if percpu::ONLINE.load(Ordering::SeqCst) <= 1 {
        return;
    }
    let _one = SHOOTDOWN_LOCK.lock();
    let seq = TLB_SEQ.fetch_add(1, Ordering::SeqCst) + 1;
    let me = percpu::this_cpu().index();
    let others: Vec<&percpu::PerCpu> = percpu::online().filter(|c| c.index() != me).collect();
    for c in &others {
        apic::send_ipi(c.apic_id.load(Ordering::Relaxed), interrupts::TLB_FLUSH);
    }
    for c in &others {
        while TLB_ACK[c.index()].load(Ordering::SeqCst) < seq {
            cpu::pause();
        }
    }
    SHOOTDOWNS.fetch_add(1, Ordering::Relaxed);
}

/// The TLB shootdown IPI.
pub fn on_tlb_flush() {
    let cpu = percpu::this_cpu();
    cpu.ipis.fetch_add(1, Ordering::Relaxed);
    let seq = TLB_SEQ.load(Ordering::SeqCst);
    cpu::flush_tlb();
    TLB_ACK[cpu.index()].store(seq, Ordering::SeqCst);
    apic::eoi();
}

/// Asks every other CPU to stop (the kernel powers off or failed).
pub fn stop_others() {
    if percpu::ONLINE.load(Ordering::SeqCst) <= 1 {
        return;
    }
    let me = percpu::this_cpu().index();
    for c in percpu::online().filter(|c| c.index() != me) {
        apic::send_ipi(c.apic_id.load(Ordering::Relaxed), interrupts::STOP);
    }
}

/// The stop IPI: halt with interrupts off.
pub fn on_stop() -> ! {
    cpu::halt()
}
