//! Page tables: the kernel's own map (W^X over its image) and the memory cells are mapped into.
//!
//! Physical memory (QEMU with `-m 256M` or more):
//!
//! | range | use | mapping |
//! |-------|-----|---------|
//! | 0 .. 4 KiB | nothing | not mapped: a null dereference faults |
//! | 1 MiB .. image end | the kernel (`link.ld`) | text RX, rodata R+NX, data and bss RW+NX (4 KiB pages) |
//! | [`HEAP`] | the kernel heap | identity, RW+NX |
//! | [`CELL_FRAMES`] | frames for cells | **not** identity mapped: only through the cell area |
//! | 0x8000 | the application processors' start-up code (smp.rs) | RX |
//! | everything else below 1 GiB | boot info, the boot module (cells), devices | identity, RW+NX (2 MiB pages) |
//! | [`MMIO`] (in 3..4 GiB) | the I/O APIC and the local APICs | identity, RW+NX, uncached |
//!
//! Cells live in the virtual range [`CELL_AREA`] (1 GiB .. 2 GiB), mapped with 4 KiB pages whose
//! permissions follow the loader's [`Memory::protect`] calls: text RX, read-only data R, data RW,
//! each with NX except text. Ring 0 honours read-only pages because the boot code set CR0.WP, so
//! a write to a cell's text or GOT outside a swap's commit faults. Because the frames behind the
//! cell area have no other mapping, there is no writable alias of any cell's text.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::ops::Range;

use loader::platform::{Memory, PlatformError, Protection};

use crate::cpu;

const PRESENT: u64 = 1;
const WRITABLE: u64 = 1 << 1;
const HUGE: u64 = 1 << 7;
const WRITE_THROUGH: u64 = 1 << 3;
const CACHE_DISABLE: u64 = 1 << 4;
const NO_EXECUTE: u64 = 1 << 63;
const ADDRESS: u64 = 0x000f_ffff_ffff_f000;

/// The page size.
pub const PAGE: u64 = 4096;
const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// Physical memory of the kernel heap (identity mapped).
pub const HEAP: Range<u64> = 32 * MIB..64 * MIB;
/// Physical frames handed to cell mappings (mapped only inside [`CELL_AREA`]).
pub const CELL_FRAMES: Range<u64> = 64 * MIB..128 * MIB;
/// Virtual addresses of cell mappings.
pub const CELL_AREA: Range<u64> = GIB..2 * GIB;
/// The end of the identity map.
const IDENTITY_END: u64 = GIB;
/// The page the application processors start in (real mode, SIPI vector 8): read and execute.
pub const TRAMPOLINE: u64 = 0x8000;
/// The 2 MiB regions of the I/O APIC and of the local APICs, identity mapped uncached (RW+NX).
pub const MMIO: [u64; 2] = [0xfec0_0000, 0xfee0_0000];

extern "C" {
    static __text_start: u8;
    static __text_end: u8;
    static __rodata_start: u8;
    static __rodata_end: u8;
    static __image_end: u8;
}

/// The kernel image's section boundaries, from `link.ld`.
#[derive(Clone, Copy, Debug)]
pub struct ImageLayout {
    /// Text (RX).
    pub text: (u64, u64),
    /// Read-only data (R+NX).
    pub rodata: (u64, u64),
    /// The end of the image (data and bss, RW+NX, end here).
    pub end: u64,
}

/// The boundaries `link.ld` defines.
pub fn image_layout() -> ImageLayout {
    // Only the addresses of the linker-defined symbols are taken, never their contents.
    {
        ImageLayout {
            text: (
                core::ptr::addr_of!(__text_start) as u64,
                core::ptr::addr_of!(__text_end) as u64,
            ),
            rodata: (
                core::ptr::addr_of!(__rodata_start) as u64,
                core::ptr::addr_of!(__rodata_end) as u64,
            ),
            end: core::ptr::addr_of!(__image_end) as u64,
        }
    }
}

#[repr(C, align(4096))]
struct Table([u64; 512]);

/// A new zeroed table on the heap (identity mapped, so its address is its physical address).
/// Page tables live as long as the kernel.
fn new_table() -> u64 {
    Box::leak(Box::new(Table([0; 512]))) as *mut Table as u64
}

/// The entry `index` of the table at physical (= virtual) address `table`.
fn entry(table: u64, index: usize) -> *mut u64 {
    debug_assert!(index < 512);
    (table + index as u64 * 8) as *mut u64
}

fn read(e: *mut u64) -> u64 {
    // SAFETY: `e` points into a table made by `new_table` (heap, identity mapped, never freed).
    unsafe { e.read_volatile() }
}

fn write(e: *mut u64, value: u64) {
    // SAFETY: as for `read`; the tables are only changed by this module, under the lock of
    // `CellMemory` or before the tables are in use.
    unsafe { e.write_volatile(value) }
}

/// The flags of one 4 KiB page of the low identity map.
fn low_page_flags(addr: u64, image: &ImageLayout) -> u64 {
    if addr < PAGE {
        0
    } else if addr == TRAMPOLINE || (image.text.0..image.text.1).contains(&addr) {
        PRESENT
    } else if (image.rodata.0..image.rodata.1).contains(&addr) {
        PRESENT | NO_EXECUTE
    } else {
        PRESENT | WRITABLE | NO_EXECUTE
    }
}

/// What `init` built.
pub struct KernelMap {
    /// The page directory of the cell area.
    cell_directory: u64,
}

/// Builds the kernel's page tables and switches to them. The heap must be usable.
pub fn init() -> KernelMap {
    let image = image_layout();
    let pml4 = new_table();
    let pdpt = new_table();
    let low = new_table();
    write(entry(pml4, 0), pdpt | PRESENT | WRITABLE);
    write(entry(pdpt, 0), low | PRESENT | WRITABLE);
    let image_end_2m = image.end.div_ceil(2 * MIB) * 2 * MIB;
    for i in 0..512usize {
        let base = i as u64 * 2 * MIB;
        if CELL_FRAMES.contains(&base) || base >= IDENTITY_END {
            continue;
        }
        if base < image_end_2m {
            let pt = new_table();
            for j in 0..512usize {
                let addr = base + j as u64 * PAGE;
                let flags = low_page_flags(addr, &image);
                write(entry(pt, j), if flags == 0 { 0 } else { addr | flags });
            }
            write(entry(low, i), pt | PRESENT | WRITABLE);
        } else {
            write(entry(low, i), base | PRESENT | WRITABLE | HUGE | NO_EXECUTE);
        }
    }
    let cell_directory = new_table();
    write(entry(pdpt, 1), cell_directory | PRESENT | WRITABLE);
    // The APICs: 3 GiB .. 4 GiB gets a directory with just their two 2 MiB regions, uncached.
    let mmio = new_table();
    write(entry(pdpt, 3), mmio | PRESENT | WRITABLE);
    for base in MMIO {
        let index = ((base - 3 * GIB) >> 21) as usize;
        write(
            entry(mmio, index),
            base | PRESENT | WRITABLE | HUGE | NO_EXECUTE | CACHE_DISABLE | WRITE_THROUGH,
        );
    }
    // SAFETY: the new tables map the running code (text RX), its stack (bss RW), the heap, the
    // boot information and the boot module at the addresses they have now; nothing else in use
    // lies elsewhere.
    unsafe { cpu::write_cr3(pml4) };
    KernelMap { cell_directory }
}

/// What drops stale TLB entries on every other CPU after page permissions shrank or pages were
/// unmapped (set once the application processors run; smp.rs).
static SHOOTDOWN: spin::Once<fn()> = spin::Once::new();

/// Sets the TLB shootdown, called after every change of a cell page's entry.
pub fn set_shootdown(f: fn()) {
    SHOOTDOWN.call_once(|| f);
}

fn shootdown() {
    if let Some(f) = SHOOTDOWN.get() {
        f();
    }
}

/// The page-table backed [`Memory`] of the loader: frames from [`CELL_FRAMES`] mapped into
/// [`CELL_AREA`] with real permissions.
pub struct CellMemory {
    space: spin::Mutex<CellSpace>,
}

struct CellSpace {
    /// Read-only pages made writable again (only a swap's commit does that) and not yet
    /// made read-only again.
    reopened: alloc::collections::BTreeSet<u64>,
    windows: WriteWindows,
    directory: u64,
    /// The next free virtual address (addresses are not reused: a gigabyte lasts).
    next: u64,
    free_frames: Vec<u64>,
}

/// Read-only pages made writable again: the loader opens the GOT and slot pages of a swap's
/// dependents only for the commit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteWindows {
    /// Read-only pages made writable.
    pub opened: usize,
    /// Of those, made read-only again.
    pub closed: usize,
    /// Still writable now.
    pub open_now: usize,
}

/// How the pages of a range are mapped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PageCensus {
    /// Present pages.
    pub pages: usize,
    /// Read and execute.
    pub executable: usize,
    /// Read and write, no execute.
    pub writable: usize,
    /// Read only, no execute.
    pub read_only: usize,
    /// Writable and executable at once (W^X says: none).
    pub writable_and_executable: usize,
}

impl CellSpace {
    /// The page-table entry of the cell-area page at `virt`, creating its table when asked.
    fn pte(&mut self, virt: u64, create: bool) -> Option<*mut u64> {
        if !CELL_AREA.contains(&virt) {
            return None;
        }
        let pde = entry(self.directory, ((virt - CELL_AREA.start) >> 21) as usize);
        let mut table = read(pde) & ADDRESS;
        if read(pde) & PRESENT == 0 {
            if !create {
                return None;
            }
            table = new_table();
            write(pde, table | PRESENT | WRITABLE);
        }
        Some(entry(table, ((virt >> 12) & 511) as usize))
    }
}

impl CellMemory {
    /// The cell memory over the cell area of `map`, with every frame of [`CELL_FRAMES`] free.
    pub fn new(map: &KernelMap) -> CellMemory {
        let frames = (CELL_FRAMES.end - CELL_FRAMES.start) / PAGE;
        let free_frames = (0..frames)
            .rev()
            .map(|i| CELL_FRAMES.start + i * PAGE)
            .collect();
        CellMemory {
            space: spin::Mutex::new(CellSpace {
                reopened: alloc::collections::BTreeSet::new(),
                windows: WriteWindows::default(),
                directory: map.cell_directory,
                next: CELL_AREA.start,
                free_frames,
            }),
        }
    }

    /// Frames not mapped.
    pub fn free_frames(&self) -> usize {
        self.space.lock().free_frames.len()
    }

    /// How the pages of `start..start+len` are mapped, read from the page tables themselves.
    pub fn census(&self, start: u64, len: u64) -> PageCensus {
        let mut space = self.space.lock();
        let mut c = PageCensus::default();
        let mut page = start & !(PAGE - 1);
        while page < start + len {
            if let Some(e) = space.pte(page, false) {
                let v = read(e);
                if v & PRESENT != 0 {
                    c.pages += 1;
                    let w = v & WRITABLE != 0;
                    let x = v & NO_EXECUTE == 0;
                    match (w, x) {
                        (true, true) => c.writable_and_executable += 1,
                        (true, false) => c.writable += 1,
                        (false, true) => c.executable += 1,
                        (false, false) => c.read_only += 1,
                    }
                }
            }
            page += PAGE;
        }
        c
    }

    /// How often read-only pages were made writable and read-only again.
    pub fn write_windows(&self) -> WriteWindows {
        let space = self.space.lock();
        WriteWindows {
            open_now: space.reopened.len(),
            ..space.windows
        }
    }

    /// [`CellMemory::census`] of the whole cell area.
    pub fn census_all(&self) -> PageCensus {
        let next = self.space.lock().next;
        self.census(CELL_AREA.start, next - CELL_AREA.start)
    }
}

impl Memory for CellMemory {
    fn page_size(&self) -> usize {
        PAGE as usize
    }

    fn map(&self, len: usize) -> Result<*mut u8, PlatformError> {
        let len64 = len as u64;
        if len == 0 || !len64.is_multiple_of(PAGE) {
            return Err(PlatformError::OutOfMemory { len });
        }
        let mut space = self.space.lock();
        let pages = (len64 / PAGE) as usize;
        let start = space.next;
        // One unmapped guard page after every mapping.
        let end = start
            .checked_add(len64 + PAGE)
            .filter(|end| *end <= CELL_AREA.end)
            .ok_or(PlatformError::OutOfMemory { len })?;
        if space.free_frames.len() < pages {
            return Err(PlatformError::OutOfMemory { len });
        }
        for i in 0..pages as u64 {
            let virt = start + i * PAGE;
            let frame = space.free_frames.pop().expect("counted above");
            let pte = space.pte(virt, true).expect("inside the cell area");
            write(pte, frame | PRESENT | WRITABLE | NO_EXECUTE);
            cpu::invlpg(virt);
        }
        space.next = end;
        // SAFETY: `start..start+len` was just mapped read-write to frames nothing else maps.
        unsafe { core::ptr::write_bytes(start as *mut u8, 0, len) };
        Ok(start as *mut u8)
    }

    fn protect(&self, addr: *mut u8, len: usize, prot: Protection) -> Result<(), PlatformError> {
        let start = addr as u64;
        let error = PlatformError::Protect {
            addr: addr as usize,
            len,
            code: -1,
        };
        if !start.is_multiple_of(PAGE) || !(len as u64).is_multiple_of(PAGE) {
            return Err(error);
        }
        let flags = match prot {
            Protection::ReadWrite => PRESENT | WRITABLE | NO_EXECUTE,
            Protection::ReadOnly => PRESENT | NO_EXECUTE,
            Protection::ReadExecute => PRESENT,
        };
        let mut space = self.space.lock();
        // Check the whole range first, so that a refused request changes nothing.
        let pages = (len as u64 / PAGE) as usize;
        for i in 0..pages as u64 {
            match space.pte(start + i * PAGE, false) {
                Some(e) if read(e) & PRESENT != 0 => {}
                _ => return Err(error),
            }
        }
        for i in 0..pages as u64 {
            let virt = start + i * PAGE;
            let e = space.pte(virt, false).expect("checked above");
            let old = read(e);
            let read_only = |v: u64| v & WRITABLE == 0 && v & NO_EXECUTE != 0;
            if read_only(old) && flags & WRITABLE != 0 {
                space.windows.opened += 1;
                space.reopened.insert(virt);
            } else if read_only(flags) && space.reopened.remove(&virt) {
                space.windows.closed += 1;
            }
            write(e, (old & ADDRESS) | flags);
            cpu::invlpg(virt);
        }
        drop(space);
        // Every other CPU drops what it cached of these pages: a stale writable entry would let
        // it write a page that is read-only now, a stale no-execute one would fault on new text.
        shootdown();
        Ok(())
    }

    unsafe fn unmap(&self, addr: *mut u8, len: usize) {
        let mut space = self.space.lock();
        let start = addr as u64;
        for i in 0..(len as u64).div_ceil(PAGE) {
            let virt = start + i * PAGE;
            if let Some(e) = space.pte(virt, false) {
                let v = read(e);
                if v & PRESENT != 0 {
                    space.reopened.remove(&virt);
                    write(e, 0);
                    cpu::invlpg(virt);
                    space.free_frames.push(v & ADDRESS);
                }
            }
        }
        drop(space);
        // The frames go back to the free list; no CPU may keep reaching them through the old
        // addresses before they are mapped again.
        shootdown();
    }
}
