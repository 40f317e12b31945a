//! What the kernel does once the machine is set up: read the boot module, link the kernel cells
//! into `_kernel` with the loader (each after the dependency cells it needs: `log`, `spin`, and
//! `kvstore`'s crates.io crates), run a workload across them, swap three of them live for their
//! new versions, and check that the state survived. Every check that fails is an error, which
//! `kernel_main` reports before powering off with the failure code.

use alloc::collections::BTreeSet;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::sync::Arc;
use alloc::vec::Vec;

use crate_metadata::{CellKind, CellState, Manifest, ManifestEntry, NamespaceId};
use loader::platform::SymbolSource;
use loader::{
    CellSpec, Handle, ImageSymbols, ManifestCatalog, NewVersion, StaticOutcome, SwapOptions,
    SwapRequest, System,
};

use crate::modules::{Modules, KERNEL_ELF, MANIFEST};
use crate::paging::{CellMemory, KernelMap};
use crate::platform::{calibrate_tsc, BarePlatform};
use crate::println;
use crate::pvh::BootInfo;

/// The loader's system on this machine, with the `_kernel` namespace.
struct Kernel {
    system: System<BarePlatform>,
    ns: NamespaceId,
    /// Dependency cells the kernel cells need that were not loaded because they have nothing to
    /// link (they export no symbol: macros and traits only): `<name> <version>`.
    deps_empty: BTreeSet<String>,
    /// Dependency cells not loaded because the kernel image defines every symbol they export.
    deps_in_image: BTreeSet<String>,
    /// The dependency cells loaded, in load order: `<name> <version>`.
    deps_loaded: Vec<String>,
}

impl Kernel {
    /// A handle to an interface function in `_kernel`, with the type cell-abi declares for it.
    fn bind<F: Copy>(&mut self, interface: cell_abi::Interface<F>) -> Result<Handle<F>, String> {
        self.system
            .bind(self.ns, interface)
            .map_err(|e| e.to_string())
    }

    /// Loads the manifest's cell `entry` from `bytes` into `_kernel` (the loader checks the
    /// SHA-256 against the manifest's before it maps anything) and prints what it mapped.
    /// `needed_by` names the cell a dependency cell is loaded for.
    fn load(
        &mut self,
        entry: &ManifestEntry,
        bytes: &[u8],
        needed_by: Option<&str>,
    ) -> Result<(), String> {
        let spec = CellSpec {
            name: &entry.name,
            version: &entry.version,
            kind: Some(entry.kind),
            sha256: Some(&entry.sha256),
        };
        let id = self
            .system
            .load(self.ns, spec, bytes)
            .map_err(|e| e.to_string())?;
        let cell = self
            .system
            .registry()
            .cell(id)
            .ok_or("the loaded cell vanished")?;
        let what = match needed_by {
            Some(_) => "loaded dependency cell",
            None => "loaded cell",
        };
        println!(
            "{:<46} object {:>6} B, mapped {:>6} B at {:#x}, {:>3} sections, {:>4} relocations, {:>3} GOT slots{}",
            format!("{what} `{}` {}", cell.name, cell.version),
            cell.object_size,
            cell.stats.mapped_bytes,
            cell.base_addr,
            cell.sections.len(),
            cell.stats.relocations,
            cell.stats.got_slots,
            needed_by.map(|n| format!(" (for `{n}`)")).unwrap_or_default()
        );
        Ok(())
    }

    /// The SHA-256 of every live cell in `_kernel` (which has no parent namespace).
    fn loaded_hashes(&self) -> Vec<String> {
        let Some(ns) = self.system.namespaces().get(self.ns) else {
            return Vec::new();
        };
        ns.cells
            .iter()
            .filter_map(|id| self.system.registry().cell(*id))
            .filter(|c| c.state == CellState::Live)
            .filter_map(|c| c.sha256.clone())
            .collect()
    }

    /// Loads the dependency cells `entry` needs into `_kernel`, by the hosted `nano_core`'s rule
    /// ([`Manifest::dependency_plan`]): every one in its closure, in load order, except those
    /// already loaded there (same SHA-256) and those the kernel image provides (it defines every
    /// symbol the object exports). The kernel's own crates are built with `panic = "abort"`, so
    /// their symbols carry other hashes than the cells' builds: normally only dependency cells
    /// that export nothing are provided. An error names the dependency cell and `entry`.
    fn load_dependencies(
        &mut self,
        manifest: &Manifest,
        modules: &Modules,
        entry: &ManifestEntry,
    ) -> Result<(), String> {
        let loaded = self.loaded_hashes();
        let platform = self.system.platform();
        let mut in_image: Vec<(String, bool)> = Vec::new();
        let plan = manifest
            .dependency_plan(entry, &mut |dep| {
                if loaded.contains(&dep.sha256) {
                    return true;
                }
                let provided = dep.provided_by(&mut |s| platform.image_symbol(s).is_some());
                if provided {
                    let label = format!("{} {}", dep.name, dep.version);
                    in_image.push((label, dep.exports.is_empty()));
                }
                provided
            })
            .map_err(|e| e.to_string())?;
        for (label, exports_nothing) in in_image {
            if exports_nothing {
                self.deps_empty.insert(label);
            } else {
                self.deps_in_image.insert(label);
            }
        }
        for dep in plan {
            let label = format!("{} {}", dep.name, dep.version);
            modules
                .get(&dep.object)
                .and_then(|bytes| self.load(dep, bytes, Some(&entry.name)))
                .map_err(|e| format!("dependency cell `{}` {}: {e}", dep.name, dep.version))?;
            self.deps_loaded.push(label);
        }
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
    // A symbol no loaded cell or the kernel defines is named with the cell that exports it.
    system.set_catalog(Arc::new(ManifestCatalog::new(&manifest)));
    let ns = system
        .create_namespace(crate::KERNEL_NAMESPACE, None)
        .map_err(|e| e.to_string())?;
    let mut k = Kernel {
        system,
        ns,
        deps_empty: BTreeSet::new(),
        deps_in_image: BTreeSet::new(),
        deps_loaded: Vec::new(),
    };

    // The kernel cells in dependency order, each after the dependency cells it needs (`log`,
    // `spin`, `heapless`, ...) that `_kernel` does not have yet, as the hosted nano_core does.
    let order = manifest.load_order(CellKind::Kernel).map_err(|cycle| {
        format!(
            "the kernel cells depend on each other in a cycle: {}",
            cycle.join(", ")
        )
    })?;
    for entry in order {
        k.load_dependencies(&manifest, &modules, entry)
            .and_then(|()| k.load(entry, modules.get(&entry.object)?, None))
            .map_err(|e| {
                format!(
                    "kernel cell `{}` {} failed to load, so the boot stops: {e}",
                    entry.name, entry.version
                )
            })?;
        if let Ok(init) = k.bind(cell_abi::INIT.of(&entry.name)) {
            (init.get())().map_err(|e| format!("cell `{}`: init failed: {e}", entry.name))?;
        }
    }
    println!(
        "dependency cells: {} loaded into `_kernel` ({}); not loaded, having no symbol to link: {}; provided by the kernel image: {}",
        k.deps_loaded.len(),
        k.deps_loaded.join(", "),
        list_or_none(&k.deps_empty),
        list_or_none(&k.deps_in_image)
    );
    check_w_xor_x(&k)?;

    // Every handle is taken by its cell-abi interface: the type is the one the cells check
    // their functions against (cells/kernel, cells/upgrades).
    let (notes, tasks_before) = workload(&mut k)?;
    kvstore_workload(&mut k)?;

    if wx_test {
        return write_to_cell_text(&k, "memfs");
    }

    // Handles the kernel holds across the swaps: their slots are rewritten by the commit, so the
    // same handle reaches the new version afterwards.
    let (held_revision, held_free_count) = (
        k.bind(cell_abi::REVISION.of("memfs"))?,
        k.bind(cell_abi::frame_alloc::FREE_COUNT)?,
    );

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
    {
        let revision = (k.bind(cell_abi::REVISION.of("memfs"))?.get())();
        let read = (k.bind(cell_abi::memfs::READ)?.get())("/home/notes.txt")?;
        let stat = (k.bind(cell_abi::memfs::STAT)?.get())("/home/notes.txt")?;
        let listing = (k.bind(cell_abi::memfs::LIST)?.get())("/home")?;
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
    {
        let revision = (k.bind(cell_abi::REVISION.of("sched"))?.get())();
        let tasks_after = (k.bind(cell_abi::sched::TASKS)?.get())();
        let schedule = k.bind(cell_abi::sched::SCHEDULE)?;
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
    let (free_before, allocated_before) = (
        (held_free_count.get())(),
        (k.bind(cell_abi::frame_alloc::ALLOCATED_FRAMES)?.get())(),
    );
    swap(&mut k, &manifest, &modules, "frame_alloc")?;
    {
        let revision = (k.bind(cell_abi::REVISION.of("frame_alloc"))?.get())();
        let free_after = (held_free_count.get())();
        let allocated_after = (k.bind(cell_abi::frame_alloc::ALLOCATED_FRAMES)?.get())();
        let blocks = (k.bind(cell_abi::frame_alloc::FREE_BLOCKS)?.get())();
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
        (k.bind(cell_abi::memfs::CREATE)?.get())("/tmp/after-swaps.txt", &[7u8; 10_000])?;
        let used = (held_free_count.get())();
        println!("after swap: memfs created /tmp/after-swaps.txt (10000 bytes): free frames {free_after} -> {used}");
        if used + 3 != free_after {
            return Err(format!(
                "memfs did not take 3 frames from frame_alloc v2 ({free_after} -> {used})"
            ));
        }
        let dump = (k.bind(cell_abi::klog::DUMP)?.get())();
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
fn workload(k: &mut Kernel) -> Result<(String, Vec<String>), String> {
    {
        let total = (k.bind(cell_abi::frame_alloc::TOTAL_FRAMES)?.get())();
        let free_count = k.bind(cell_abi::frame_alloc::FREE_COUNT)?;
        let alloc = k.bind(cell_abi::frame_alloc::ALLOC_FRAME)?;
        let free = k.bind(cell_abi::frame_alloc::FREE_FRAME)?;
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

        let spawn = k.bind(cell_abi::sched::SPAWN)?;
        for (name, prio) in [("shell", 2), ("netd", 1), ("fsd", 3)] {
            (spawn.get())(name, prio)?;
        }
        let schedule = k.bind(cell_abi::sched::SCHEDULE)?;
        let order: Vec<u64> = (0..6).filter_map(|_| (schedule.get())()).collect();
        let tasks = (k.bind(cell_abi::sched::TASKS)?.get())();
        println!("workload: sched: {tasks:?}; round robin picks {order:?}");

        let notes = "cells are linked at run time, on bare metal too\n".repeat(100);
        (k.bind(cell_abi::memfs::CREATE)?.get())("/home/notes.txt", notes.as_bytes())?;
        let read = (k.bind(cell_abi::memfs::READ)?.get())("/home/notes.txt")?;
        let listing = (k.bind(cell_abi::memfs::LIST)?.get())("/")?;
        let missing = (k.bind(cell_abi::memfs::READ)?.get())("/no/such/file")
            .err()
            .unwrap_or_default();
        let revision = (k.bind(cell_abi::REVISION.of("memfs"))?.get())();
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

/// `items` joined with `, `, or `none`.
fn list_or_none(items: &BTreeSet<String>) -> String {
    if items.is_empty() {
        return "none".into();
    }
    items.iter().cloned().collect::<Vec<_>>().join(", ")
}

/// Calls `kvstore` through handles and checks every answer, so that its crates.io dependency
/// cells run in ring 0: `heapless` (the index map, its capacity limits), `crc32fast` (against the
/// CRC-32 check value and the kernel's own bitwise CRC-32), `bitflags`, `hashbrown` with its
/// default hasher `foldhash` (the tag index, grown past its first allocation), and `smallvec`
/// (inline and spilled to the heap).
fn kvstore_workload(k: &mut Kernel) -> Result<(), String> {
    {
        let put = k.bind(cell_abi::kvstore::PUT)?;
        let get = k.bind(cell_abi::kvstore::GET)?;
        let len = k.bind(cell_abi::kvstore::LEN)?;
        let checksum = k.bind(cell_abi::kvstore::CHECKSUM)?;
        let flags = k.bind(cell_abi::kvstore::FLAGS)?;
        let set_flags = k.bind(cell_abi::kvstore::SET_FLAGS)?;
        let remove = k.bind(cell_abi::kvstore::REMOVE)?;
        let tag = k.bind(cell_abi::kvstore::TAG)?;
        let tagged = k.bind(cell_abi::kvstore::TAGGED)?;
        let split_path = k.bind(cell_abi::kvstore::SPLIT_PATH)?;
        let crc32 = k.bind(cell_abi::kvstore::CRC32)?;
        let revision = (k.bind(cell_abi::REVISION.of("kvstore"))?.get())();

        // init stored `motd` in the heapless index map.
        let motd = (get.get())("motd").ok_or("kvstore: init stored no `motd`")?;
        if motd != b"kvstore ready" {
            return Err(format!("kvstore: motd is {motd:?}"));
        }

        // crc32fast: the CRC-32 check value, and the kernel's own bitwise CRC-32 of other data.
        let check = (put.get())("check", b"123456789")?;
        let greeting: &[u8] = b"cells linked at run time, in ring 0";
        let greeting_crc = (put.get())("greeting", greeting)?;
        let page: Vec<u8> = (0..4096u32).map(|i| (i * 7 + i / 251) as u8).collect();
        let page_crc = (crc32.get())(&page);
        println!(
            "workload: kvstore {revision:?}: crc32fast: put(\"check\", \"123456789\") = {check:#010x}, put(\"greeting\", ...) = {greeting_crc:#010x}, crc32(4096 bytes) = {page_crc:#010x}"
        );
        if check != 0xcbf4_3926 {
            return Err(format!(
                "kvstore: the CRC-32 of \"123456789\" is {check:#010x}, not 0xcbf43926"
            ));
        }
        if greeting_crc != crc32_bitwise(greeting) || page_crc != crc32_bitwise(&page) {
            return Err(format!(
                "kvstore: crc32fast disagrees with the kernel's CRC-32: {greeting_crc:#010x} / {:#010x}, {page_crc:#010x} / {:#010x}",
                crc32_bitwise(greeting),
                crc32_bitwise(&page)
            ));
        }
        if (get.get())("greeting").as_deref() != Some(greeting) {
            return Err("kvstore: `greeting` reads back other bytes".into());
        }

        // bitflags: DIRTY | TEXT after put, TEXT after checksum; unknown bits dropped; PINNED.
        let dirty = (flags.get())("greeting");
        let sum = (checksum.get())("greeting");
        let clean = (flags.get())("greeting");
        let pinned = (set_flags.get())("greeting", 0xff)?;
        let removed = (remove.get())("greeting");
        println!(
            "workload: kvstore: bitflags: flags(\"greeting\") = {} until checksum(\"greeting\") = {}, then {}; set_flags(0xff) = {} (unknown bits dropped); remove refused while PINNED: {}",
            flag_names(dirty),
            sum.map_or("None".into(), |c| format!("{c:#010x}")),
            flag_names(clean),
            flag_names(Some(pinned)),
            !removed
        );
        if dirty != Some(0b110) || sum != Some(greeting_crc) || clean != Some(0b100) {
            return Err(format!(
                "kvstore: flags/checksum of `greeting`: {dirty:?}, {sum:x?}, {clean:?}"
            ));
        }
        if pinned != 0b111 || removed {
            return Err(format!(
                "kvstore: set_flags(0xff) = {pinned:#x}, pinned entry removed: {removed}"
            ));
        }

        // heapless: fixed capacities, refused with an error rather than a panic.
        let long_key = (put.get())(&"k".repeat(33), b"x").err().unwrap_or_default();
        let long_value = (put.get())("big", &[0u8; 129]).err().unwrap_or_default();
        println!("workload: kvstore: heapless: {long_key:?}; {long_value:?}");
        if !long_key.contains("longer than 32 bytes") || !long_value.contains("over 128 bytes") {
            return Err(format!(
                "kvstore: heapless limits not enforced: {long_key:?}, {long_value:?}"
            ));
        }

        // hashbrown + foldhash: 20 more keys with 4 tags, enough for the tag map to grow.
        for i in 0..20 {
            let key = format!("node{i}");
            (put.get())(&key, key.as_bytes())?;
            (tag.get())(&key, &format!("t{}", i % 4))?;
        }
        for key in ["motd", "check", "greeting"] {
            (tag.get())(key, "boot")?;
        }
        let entries = (len.get())();
        let t1 = (tagged.get())("t1");
        let boot = (tagged.get())("boot");
        let missing = (tag.get())("nosuch", "t1").err().unwrap_or_default();
        let mut expected_t1: Vec<String> = (0..20)
            .filter(|i| i % 4 == 1)
            .map(|i| format!("node{i}"))
            .collect();
        expected_t1.sort();
        println!(
            "workload: kvstore: hashbrown/foldhash: {entries} entries; tagged(\"t1\") = {t1:?}; tagged(\"boot\") = {boot:?}; {missing:?}"
        );
        if entries != 23 || t1 != expected_t1 || boot != ["check", "greeting", "motd"] {
            return Err(format!(
                "kvstore: {entries} entries (want 23), tagged(\"t1\") = {t1:?} (want {expected_t1:?}), tagged(\"boot\") = {boot:?}"
            ));
        }
        if !missing.contains("no key `nosuch`") {
            return Err(format!("kvstore: tagging a missing key: {missing:?}"));
        }

        // smallvec: 8 components inline, more spill to the heap.
        let short = (split_path.get())("/usr//local/bin/");
        let deep_path: String = (0..12).map(|i| format!("/d{i}")).collect();
        let deep = (split_path.get())(&deep_path);
        println!(
            "workload: kvstore: smallvec: split_path(\"/usr//local/bin/\") = {short:?}; split_path(\"/d0/.../d11\") = {} components",
            deep.len()
        );
        let expected_deep: Vec<String> = (0..12).map(|i| format!("d{i}")).collect();
        if short != ["usr", "local", "bin"] || deep != expected_deep {
            return Err(format!("kvstore: split_path gave {short:?} and {deep:?}"));
        }
        Ok(())
    }
}

/// `kvstore`'s flag bits by name (`DIRTY|TEXT`), or `None`.
fn flag_names(bits: Option<u8>) -> String {
    let Some(bits) = bits else {
        return "None".into();
    };
    let names: Vec<&str> = [(1, "PINNED"), (2, "DIRTY"), (4, "TEXT")]
        .into_iter()
        .filter(|(bit, _)| bits & bit != 0)
        .map(|(_, name)| name)
        .collect();
    if names.is_empty() {
        format!("{bits:#x}")
    } else {
        names.join("|")
    }
}

/// CRC-32 (IEEE, reflected, polynomial 0xEDB88320) one bit at a time: what `crc32fast` must
/// agree with.
fn crc32_bitwise(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
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
    // A new version may need dependency cells the old one did not (another release of a crate):
    // they are loaded first, by the same rule as at boot.
    k.load_dependencies(manifest, modules, entry)
        .map_err(|e| format!("the new version of `{name}`: {e}"))?;
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
