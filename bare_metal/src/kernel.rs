//! What the kernel does once the machine is set up: read the boot module, link the kernel cells
//! into `_kernel` with the loader, run a workload across them, swap two of them live for their
//! new versions, and check that the state survived. Every check that fails is an error, which
//! `kernel_main` reports before powering off with the failure code.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use crate_metadata::{CellKind, Manifest, NamespaceId};
use loader::{
    CellSpec, Handle, ImageSymbols, NewVersion, StaticOutcome, SwapOptions, SwapRequest, System,
};

use crate::modules::{Modules, KERNEL_ELF, MANIFEST};
use crate::paging::{CellMemory, KernelMap};
use crate::platform::{calibrate_tsc, BarePlatform};
use crate::println;
use crate::pvh::BootInfo;

type InitFn = fn() -> Result<(), String>;
type Count = fn() -> usize;
type AllocFrame = fn() -> Option<u64>;
type FreeFrame = fn(u64) -> Result<(), String>;
type Spawn = fn(&str, u8) -> Result<u64, String>;
type Schedule = fn() -> Option<u64>;
type Strings = fn() -> Vec<String>;
type Text = fn() -> String;
type Create = fn(&str, &[u8]) -> Result<(), String>;
type Read = fn(&str) -> Result<Vec<u8>, String>;
type List = fn(&str) -> Result<Vec<String>, String>;
type Stat = fn(&str) -> Result<String, String>;
type Frames = fn() -> Vec<u64>;
type Blocks = fn() -> Vec<usize>;

/// The loader's system on this machine, with the `_kernel` namespace.
struct Kernel {
    system: System<BarePlatform>,
    ns: NamespaceId,
}

impl Kernel {
    /// A handle to `path` in `_kernel`.
    ///
    /// # Safety
    /// `F` is the exact signature of the function `path` names.
    unsafe fn handle<F: Copy>(&mut self, path: &str) -> Result<Handle<F>, String> {
        // SAFETY: passed on from the caller.
        unsafe { self.system.handle::<F>(self.ns, path) }.map_err(|e| e.to_string())
    }

    fn load(&mut self, spec: CellSpec<'_>, bytes: &[u8]) -> Result<(), String> {
        let id = self
            .system
            .load(self.ns, spec, bytes)
            .map_err(|e| e.to_string())?;
        let cell = self
            .system
            .registry()
            .cell(id)
            .ok_or("the loaded cell vanished")?;
        println!(
            "loaded cell {:<14} {:<6} object {:>6} B, mapped {:>6} B at {:#x}, {:>3} sections, {:>4} relocations, {:>3} GOT slots",
            format!("`{}`", cell.name),
            if cell.version.is_empty() { "-" } else { &cell.version },
            cell.object_size,
            cell.stats.mapped_bytes,
            cell.base_addr,
            cell.sections.len(),
            cell.stats.relocations,
            cell.stats.got_slots
        );
        Ok(())
    }
}

/// Runs the kernel's work. `Err` says what failed.
pub fn run(boot: &BootInfo, map: KernelMap) -> Result<(), String> {
    let wx_test = boot.cmdline.split_whitespace().any(|w| w == "wx-test");
    let &(module_addr, module_len) = boot
        .modules
        .first()
        .ok_or("no boot module: pass the cells archive with -initrd (cargo cell qemu does)")?;
    // SAFETY: the boot loader placed the module there; it is identity mapped (RW+NX), nothing
    // writes it, and it stays for the kernel's lifetime.
    let module: &'static [u8] =
        unsafe { core::slice::from_raw_parts(module_addr as *const u8, module_len as usize) };
    let modules = Modules::read(module)?;
    println!(
        "boot module at {module_addr:#x}, {module_len} bytes: {}",
        modules
            .list()
            .map(|(n, len)| format!("{n} ({len} B)"))
            .collect::<Vec<_>>()
            .join(", ")
    );

    let elf = goblin::elf::Elf::parse(modules.get(KERNEL_ELF)?)
        .map_err(|e| format!("the kernel's ELF file in the boot module: {e}"))?;
    // A static executable: symbol values are the running addresses (no load bias).
    let symbols = ImageSymbols::from_elf(&elf, 0);
    let running = crate::kernel_main as *const () as usize;
    match symbols.address("kernel_main") {
        Some(a) if a == running => {}
        other => {
            return Err(format!(
                "the kernel ELF in the boot module is not the running kernel (its kernel_main is at {other:x?}, the running one at {running:#x}); rebuild with cargo cell qemu"
            ))
        }
    }
    println!(
        "kernel symbols: {} from its own ELF file (checked against the running image)",
        symbols.len()
    );

    let manifest: Manifest =
        serde_json::from_slice(modules.get(MANIFEST)?).map_err(|e| format!("{MANIFEST}: {e}"))?;
    let tsc_per_us = calibrate_tsc();
    let platform = BarePlatform {
        memory: CellMemory::new(&map),
        symbols,
        tsc_per_us,
    };
    let mut system = System::new(platform, "nano_core_bare");
    let ns = system
        .create_namespace(crate::KERNEL_NAMESPACE, None)
        .map_err(|e| e.to_string())?;
    let mut k = Kernel { system, ns };

    // `log` first: the cells were built for the hosted image, which links the same build of
    // `log` as they do. This kernel's own `log` is another build (panic = "abort" gives it other
    // symbol hashes), so the cells get theirs as a cell.
    k.load(CellSpec::named("log"), modules.get("deps/log.o")?)?;
    let order = manifest.load_order(CellKind::Kernel).map_err(|cycle| {
        format!(
            "the kernel cells depend on each other in a cycle: {}",
            cycle.join(", ")
        )
    })?;
    for entry in order {
        let spec = CellSpec {
            name: &entry.name,
            version: &entry.version,
            kind: Some(entry.kind),
            sha256: Some(&entry.sha256),
        };
        k.load(spec, modules.get(&entry.object)?)?;
        let path = format!("{}::init", entry.name);
        // SAFETY: the init convention's signature is `fn() -> Result<(), String>`.
        if let Ok(init) = unsafe { k.handle::<InitFn>(&path) } {
            (init.get())().map_err(|e| format!("cell `{}`: init failed: {e}", entry.name))?;
        }
    }
    check_w_xor_x(&k)?;

    // SAFETY (every handle below): the types are the exact signatures of the cells' functions,
    // as declared in cells/kernel and cells/upgrades.
    let (notes, tasks_before) = unsafe { workload(&mut k)? };

    if wx_test {
        return write_to_cell_text(&k, "memfs");
    }

    // Handles the kernel holds across the swaps: their slots are rewritten by the commit, so the
    // same handle reaches the new version afterwards.
    // SAFETY: the types are the functions' signatures (cells/kernel, cells/upgrades).
    let (held_revision, held_free_count) = unsafe {
        (
            k.handle::<Text>("memfs::revision")?,
            k.handle::<Count>("frame_alloc::free_count")?,
        )
    };

    let windows_before = k.system.platform().memory.write_windows();
    if windows_before != Default::default() {
        return Err(format!(
            "loading made read-only pages writable again: {windows_before:?}"
        ));
    }

    // Swap 1: memfs v1 -> v2 with the same state types: its statics are rebound to v1's memory.
    let report = swap(&mut k, &manifest, &modules, "memfs")?;
    if !report
        .iter()
        .any(|(path, outcome)| path == "memfs::FS" && *outcome == StaticOutcome::Rebound)
    {
        return Err(format!("memfs::FS was not rebound: {report:?}"));
    }
    // SAFETY: as above.
    unsafe {
        let revision = (k.handle::<Text>("memfs::revision")?.get())();
        let read = (k.handle::<Read>("memfs::read")?.get())("/home/notes.txt")?;
        let stat = (k.handle::<Stat>("memfs::stat")?.get())("/home/notes.txt")?;
        let listing = (k.handle::<List>("memfs::list")?.get())("/home")?;
        println!("after swap: memfs::revision() = {revision:?}");
        println!(
            "after swap: memfs::stat(\"/home/notes.txt\") = {stat:?} (a function v1 does not have)"
        );
        println!("after swap: memfs::list(\"/home\") = {listing:?}");
        if !revision.contains("v2") {
            return Err(format!(
                "memfs::revision after the swap is {revision:?}, not v2"
            ));
        }
        let through_held = (held_revision.get())();
        println!("after swap: the handle to memfs::revision taken before the swap now says {through_held:?}");
        if through_held != revision {
            return Err("a handle held across the memfs swap still reaches v1".into());
        }
        if read != notes.as_bytes() {
            return Err("/home/notes.txt changed across the memfs swap".into());
        }
        println!(
            "state kept: /home/notes.txt reads back the same {} bytes through memfs v2",
            read.len()
        );
    }

    // Swap 2: sched v1 -> v2 with another state layout: v2's `transfer_state` moves the tasks.
    let report = swap(&mut k, &manifest, &modules, "sched")?;
    if !report
        .iter()
        .any(|(_, outcome)| *outcome == StaticOutcome::Transferred)
    {
        return Err(format!("no sched static was transferred: {report:?}"));
    }
    // SAFETY: as above.
    unsafe {
        let revision = (k.handle::<Text>("sched::revision")?.get())();
        let tasks_after = (k.handle::<Strings>("sched::tasks")?.get())();
        let schedule = k.handle::<Schedule>("sched::schedule")?;
        let order: Vec<u64> = (0..6).filter_map(|_| (schedule.get())()).collect();
        println!("after swap: sched::revision() = {revision:?}");
        println!("after swap: sched::tasks() = {tasks_after:?}");
        println!("after swap: the next six picks (by priority now) = {order:?}");
        let ids = |tasks: &[String]| -> Vec<String> {
            let mut v: Vec<String> = tasks
                .iter()
                .filter_map(|t| t.split_whitespace().next().map(String::from))
                .collect();
            v.sort();
            v
        };
        if ids(&tasks_before) != ids(&tasks_after) || tasks_after.is_empty() {
            return Err(format!(
                "the tasks changed across the sched swap: {tasks_before:?} -> {tasks_after:?}"
            ));
        }
        println!(
            "state kept: the {} tasks moved to sched v2 with their ids",
            tasks_after.len()
        );
    }

    // Swap 3: frame_alloc v1 (bitmap) -> v2 (buddy allocator), which memfs and sched call: the
    // slots in both are rewritten, and v2's `transfer_state` rebuilds the allocator from v1's.
    // SAFETY: as above.
    let (free_before, allocated_before) = unsafe {
        (
            (held_free_count.get())(),
            (k.handle::<Frames>("frame_alloc::allocated_frames")?.get())(),
        )
    };
    swap(&mut k, &manifest, &modules, "frame_alloc")?;
    // SAFETY: as above.
    unsafe {
        let revision = (k.handle::<Text>("frame_alloc::revision")?.get())();
        let free_after = (held_free_count.get())();
        let allocated_after = (k.handle::<Frames>("frame_alloc::allocated_frames")?.get())();
        let blocks = (k.handle::<Blocks>("frame_alloc::free_blocks")?.get())();
        println!("after swap: frame_alloc::revision() = {revision:?}");
        println!("after swap: free frames {free_before} -> {free_after}; free blocks by order {blocks:?}");
        if free_after != free_before || allocated_after != allocated_before {
            return Err(format!(
                "frame_alloc lost state: {free_before} free, {allocated_before:x?} -> {free_after} free, {allocated_after:x?}"
            ));
        }
        println!(
            "state kept: the {} allocated frames are allocated in v2 too",
            allocated_after.len()
        );
        // memfs (already v2) now accounts its frames with frame_alloc v2 through rewritten slots.
        (k.handle::<Create>("memfs::create")?.get())("/tmp/after-swaps.txt", &[7u8; 10_000])?;
        let used = (held_free_count.get())();
        println!("after swap: memfs created /tmp/after-swaps.txt (10000 bytes): free frames {free_after} -> {used}");
        if used + 3 != free_after {
            return Err(format!(
                "memfs did not take 3 frames from frame_alloc v2 ({free_after} -> {used})"
            ));
        }
        let dump = (k.handle::<Strings>("klog::dump")?.get())();
        println!("klog: {} lines; the last three:", dump.len());
        for line in dump.iter().rev().take(3).rev() {
            println!("  {line}");
        }
    }
    check_w_xor_x(&k)?;
    let windows = k.system.platform().memory.write_windows();
    println!(
        "GOT write windows: loading opened none; the swaps made {} read-only pages writable (dependents' slots) and {} of them read-only again; {} left writable",
        windows.opened,
        windows.closed,
        windows.open_now
    );
    if windows.opened == 0 || windows.open_now != 0 {
        return Err(format!(
            "the swaps' write windows do not add up: {windows:?}"
        ));
    }
    Ok(())
}

/// The workload before any swap. Returns the notes written and `sched::tasks()`.
///
/// # Safety
/// The kernel cells are the ones in cells/kernel (the handles' types are their signatures).
unsafe fn workload(k: &mut Kernel) -> Result<(String, Vec<String>), String> {
    // SAFETY: per this function's contract.
    unsafe {
        let total = (k.handle::<Count>("frame_alloc::total_frames")?.get())();
        let free_count = k.handle::<Count>("frame_alloc::free_count")?;
        let alloc = k.handle::<AllocFrame>("frame_alloc::alloc_frame")?;
        let free = k.handle::<FreeFrame>("frame_alloc::free_frame")?;
        let before = (free_count.get())();
        let frames: Vec<u64> = (0..4).filter_map(|_| (alloc.get())()).collect();
        let last = *frames.last().ok_or("frame_alloc gave no frame")?;
        (free.get())(last)?;
        let double_free = (free.get())(last).err().unwrap_or_default();
        println!(
            "workload: frame_alloc: {total} frames, {before} free; allocated {frames:x?}; double free refused: {double_free:?}"
        );
        if double_free.is_empty() {
            return Err("frame_alloc accepted a double free".into());
        }

        let spawn = k.handle::<Spawn>("sched::spawn")?;
        for (name, prio) in [("shell", 2), ("netd", 1), ("fsd", 3)] {
            (spawn.get())(name, prio)?;
        }
        let schedule = k.handle::<Schedule>("sched::schedule")?;
        let order: Vec<u64> = (0..6).filter_map(|_| (schedule.get())()).collect();
        let tasks = (k.handle::<Strings>("sched::tasks")?.get())();
        println!("workload: sched: {tasks:?}; round robin picks {order:?}");

        let notes = "cells are linked at run time, on bare metal too\n".repeat(100);
        (k.handle::<Create>("memfs::create")?.get())("/home/notes.txt", notes.as_bytes())?;
        let read = (k.handle::<Read>("memfs::read")?.get())("/home/notes.txt")?;
        let listing = (k.handle::<List>("memfs::list")?.get())("/")?;
        let missing = (k.handle::<Read>("memfs::read")?.get())("/no/such/file")
            .err()
            .unwrap_or_default();
        let revision = (k.handle::<Text>("memfs::revision")?.get())();
        println!(
            "workload: memfs {revision:?}: wrote and read back /home/notes.txt ({} bytes); / = {listing:?}; missing file: {missing:?}",
            read.len()
        );
        if read != notes.as_bytes() {
            return Err("memfs returned other bytes than were written".into());
        }
        println!("workload: frames free after: {}", (free_count.get())());
        Ok((notes, tasks))
    }
}

/// Swaps the live cell `name` for its new version in the boot module (`upgrades/<name>.o`),
/// printing the report. Returns each new static's path and what happened to it.
fn swap(
    k: &mut Kernel,
    manifest: &Manifest,
    modules: &Modules,
    name: &str,
) -> Result<Vec<(String, StaticOutcome)>, String> {
    let entry = manifest
        .get(CellKind::Upgrades, name)
        .ok_or_else(|| format!("the manifest has no new version of `{name}`"))?;
    let bytes = modules.get(&entry.object)?;
    let old = k
        .system
        .cell_in(k.ns, name)
        .ok_or_else(|| format!("no live cell `{name}`"))?;
    let spec = CellSpec {
        name,
        version: &entry.version,
        kind: Some(CellKind::Upgrades),
        sha256: Some(&entry.sha256),
    };
    let request = SwapRequest {
        old,
        new: NewVersion::Object { spec, bytes },
    };
    let report = k
        .system
        .swap(&[request], &SwapOptions::default())
        .map_err(|e| format!("swapping `{name}`: {e}"))?;
    let t = &report.times;
    println!(
        "swapped `{name}` for {}: {} slots rewritten in {} dependents; stage {} us, verify {} us, rebind {} us, commit {} us (the window in which slots change), total {} us",
        entry.object,
        report.slots_rewritten,
        report.dependents.len(),
        t.stage / 1000,
        t.verify / 1000,
        t.rebind / 1000,
        t.commit / 1000,
        t.total / 1000
    );
    for s in &report.statics {
        println!(
            "  static {}: {:?} ({} -> {} bytes)",
            s.path, s.outcome, s.sizes.0, s.sizes.1
        );
    }
    Ok(report
        .statics
        .iter()
        .map(|s| (s.path.clone(), s.outcome))
        .collect())
}

/// `wx-test` on the kernel command line: writes to the first page of `cell`'s text, which must
/// fault (the exception handler then reports the page fault and powers off with the failure
/// code). Returning at all is a failure.
fn write_to_cell_text(k: &Kernel, cell: &str) -> Result<(), String> {
    let id = k.system.cell_in(k.ns, cell).ok_or("no memfs")?;
    let (text, _) = k.system.regions(id).ok_or("memfs has no regions")?[0];
    println!("W^X test: writing to the text of `{cell}` at {text:#x}; this must fault");
    // SAFETY: deliberately unsound if it succeeds: the page is the cell's text, which W^X maps
    // read+execute. The write is expected to raise a page fault that ends the kernel.
    unsafe { (text as *mut u8).write_volatile(0xcc) };
    Err(format!(
        "W^X test: the write to {cell}'s text at {text:#x} succeeded"
    ))
}

/// Reads the page tables behind every live cell's regions and the whole cell area: text is RX,
/// everything else NX, and no page is writable and executable.
fn check_w_xor_x(k: &Kernel) -> Result<(), String> {
    let memory = &k.system.platform().memory;
    let mut cells = 0;
    for cell in k.system.registry().cells() {
        let Some(regions) = k.system.regions(cell.id) else {
            continue;
        };
        cells += 1;
        // Regions: text, read-only data, relro (with the GOT), data.
        for (i, (start, len)) in regions.iter().enumerate() {
            let c = memory.census(*start, *len);
            let ok = match i {
                0 => c.executable == c.pages,
                1 | 2 => c.read_only == c.pages,
                _ => c.writable == c.pages,
            };
            if !ok || c.pages as u64 != len.div_ceil(crate::paging::PAGE) {
                return Err(format!(
                    "W^X: region {i} of cell `{}` at {start:#x} ({len} bytes) is mapped {c:?}",
                    cell.name
                ));
            }
        }
    }
    let all = memory.census_all();
    if all.writable_and_executable != 0 {
        return Err(format!(
            "W^X: {} cell pages are writable and executable",
            all.writable_and_executable
        ));
    }
    println!(
        "W^X: {} cells, {} pages mapped: {} RX, {} R, {} RW, none writable and executable ({} frames free)",
        cells,
        all.pages,
        all.executable,
        all.read_only,
        all.writable,
        memory.free_frames()
    );
    Ok(())
}
