//! The PVH boot protocol's `hvm_start_info` (Xen's `arch-x86/hvm/start_info.h`), as QEMU's PVH
//! option ROM fills it: the boot modules (`-initrd`) and the memory map.

use alloc::string::String;
use alloc::vec::Vec;

const MAGIC: u32 = 0x336e_c578;
/// A memory-map entry of usable RAM.
pub const RAM: u32 = 1;

#[repr(C)]
#[derive(Clone, Copy)]
struct StartInfo {
    magic: u32,
    version: u32,
    flags: u32,
    nr_modules: u32,
    modlist_paddr: u64,
    cmdline_paddr: u64,
    rsdp_paddr: u64,
    memmap_paddr: u64,
    memmap_entries: u32,
    reserved: u32,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct Module {
    paddr: u64,
    size: u64,
    cmdline_paddr: u64,
    reserved: u64,
}

/// One entry of the memory map.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct MemoryRange {
    /// Start address.
    pub addr: u64,
    /// Length.
    pub size: u64,
    /// Kind (1: usable RAM).
    pub kind: u32,
    reserved: u32,
}

/// What the boot loader told the kernel.
pub struct BootInfo {
    /// The boot modules: (physical address, size).
    pub modules: Vec<(u64, u64)>,
    /// The memory map (empty when the start info is version 0).
    pub memory: Vec<MemoryRange>,
    /// The kernel command line (QEMU's `-append`).
    pub cmdline: String,
    /// The physical address of the ACPI RSDP (0 when the boot loader gave none).
    pub rsdp: u64,
}

/// Reads the start info at physical address `paddr` (identity mapped).
///
/// # Safety
/// `paddr` is the address the PVH entry received in `%ebx`, and the memory it and its lists
/// occupy is mapped and not written by anyone.
pub unsafe fn read(paddr: u64) -> Result<BootInfo, &'static str> {
    if paddr == 0 || !paddr.is_multiple_of(8) {
        return Err("the boot loader passed no hvm_start_info");
    }
    // SAFETY: passed on from the caller; the struct is plain old data.
    let info = unsafe { (paddr as *const StartInfo).read() };
    if info.magic != MAGIC {
        return Err("the hvm_start_info has the wrong magic (not booted through PVH?)");
    }
    let mut modules = Vec::new();
    for i in 0..info.nr_modules as u64 {
        // SAFETY: the module list has `nr_modules` entries (PVH protocol).
        let m = unsafe { ((info.modlist_paddr + i * 32) as *const Module).read() };
        modules.push((m.paddr, m.size));
    }
    let mut memory = Vec::new();
    if info.version >= 1 {
        for i in 0..info.memmap_entries as u64 {
            // SAFETY: version 1 adds a memory map of `memmap_entries` entries.
            memory.push(unsafe { ((info.memmap_paddr + i * 24) as *const MemoryRange).read() });
        }
    }
    let mut cmdline = String::new();
    if info.cmdline_paddr != 0 {
        let mut p = info.cmdline_paddr as *const u8;
        // SAFETY: a zero-terminated string (PVH protocol); at most 4 KiB is read.
        while let Some(c) = Some(unsafe { p.read() }).filter(|c| *c != 0) {
            if cmdline.len() == 4096 {
                break;
            }
            cmdline.push(char::from(c));
            // SAFETY: still inside the string (its terminator was not reached).
            p = unsafe { p.add(1) };
        }
    }
    Ok(BootInfo {
        modules,
        memory,
        cmdline,
        rsdp: info.rsdp_paddr,
    })
}

impl BootInfo {
    /// Whether `range` lies inside one usable-RAM entry of the memory map (true when there is
    /// no map to check against).
    pub fn is_ram(&self, range: core::ops::Range<u64>) -> bool {
        self.memory.is_empty()
            || self
                .memory
                .iter()
                .any(|m| m.kind == RAM && m.addr <= range.start && range.end <= m.addr + m.size)
    }
}
