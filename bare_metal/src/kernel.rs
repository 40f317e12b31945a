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

use cell_abi::{frame_alloc, kvstore, memfs, sched, Interface, INIT, REVISION};
use crate_metadata::{CellKind, CellState, Manifest, ManifestEntry, NamespaceId, Sha256};
use loader::platform::SymbolSource;
use loader::{CellSpec, Handle, ImageSymbols, ManifestCatalog, System};

use crate::modules::{Modules, KERNEL_ELF, MANIFEST};
use crate::paging::{CellMemory, KernelMap};
use crate::platform::{calibrate_tsc, BarePlatform};
use crate::println;
use crate::pvh::BootInfo;

/// The loader's system on this machine, with the `_kernel` namespace.
pub struct Kernel {
    /// The loader's system.
    pub system: System<BarePlatform>,
    /// `_kernel`.
    pub ns: NamespaceId,
    /// Dependency cells the kernel cells need that were not loaded because they have nothing to
    /// link (they export no symbol: macros and traits only): `<name> <version>`.
    deps_empty: BTreeSet<String>,
    /// Dependency cells not loaded because the kernel image defines every symbol they export.
    deps_in_image: BTreeSet<String>,
    /// The dependency cells loaded, in load order: `<name> <version>`.
    deps_loaded: Vec<String>,
}

impl Kernel {
    /// A handle to the interface function `interface` in `_kernel`, of the type `cell-abi`
    /// declares for it: `k.bind(cell_abi::memfs::READ)` is a `Handle<cell_abi::memfs::Read>`.
    pub fn bind<F: Copy>(&mut self, interface: Interface<F>) -> Result<Handle<F>, String> {
        self.system
            .bind(self.ns, interface)
            .map_err(|e| e.to_string())
    }

    /// Loads the manifest's cell `entry` from `bytes` into `_kernel` (the loader checks the
    /// SHA-256 against the manifest's before it maps anything) and prints what it mapped.
    /// `needed_by` names the cell a dependency cell is loaded for.
    pub fn load(
        &mut self,
        entry: &ManifestEntry,
        bytes: &[u8],
        needed_by: Option<&str>,
    ) -> Result<(), String> {
        let spec = CellSpec {
            name: &entry.name,
            version: &entry.version,
            kind: Some(entry.kind),
            sha256: Some(entry.sha256),
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
    fn loaded_hashes(&self) -> Vec<Sha256> {
        let Some(ns) = self.system.namespaces().get(self.ns) else {
            return Vec::new();
        };
        ns.cells
            .iter()
            .filter_map(|id| self.system.registry().cell(*id))
            .filter(|c| c.state == CellState::Live)
            .filter_map(|c| c.sha256)
            .collect()
    }

    /// Loads the dependency cells `entry` needs into `_kernel`, by the hosted `nano_core`'s rule
    /// ([`Manifest::dependency_plan`]): every one in its closure, in load order, except those
    /// already loaded there (same SHA-256) and those the kernel image provides (it defines every
    /// symbol the object exports). The kernel's own crates are built with `panic = "abort"`, so
    /// their symbols carry other hashes than the cells' builds: normally only dependency cells
    /// that export nothing are provided. An error names the dependency cell and `entry`.
    pub fn load_dependencies(
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

/// What the boot on one CPU leaves for the rest: the loader's system with the kernel cells, the
/// boot module and its manifest.
pub struct Booted {
    /// The loader's system and `_kernel`.
    pub k: Kernel,
    /// The boot module's manifest.
    pub manifest: Manifest,
    /// The boot module.
    pub modules: Modules,
    /// Time-stamp counter ticks per microsecond.
    pub tsc_per_us: u64,
    /// What the workload wrote to `/home/notes.txt`.
    pub notes: String,
    /// The frames the workload keeps allocated.
    pub boot_frames: Vec<u64>,
}

/// Boots the cells on the bootstrap CPU: reads the boot module, links the kernel cells into
/// `_kernel` (each after its dependency cells), runs the workload and `kvstore`'s, checks W^X.
/// `Err` says what failed.
pub fn run(boot: &BootInfo, map: KernelMap) -> Result<Booted, String> {
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

    let kernel_elf = modules.get(KERNEL_ELF)?;
    let elf = goblin::elf::Elf::parse(kernel_elf)
        .map_err(|e| format!("the kernel's ELF file in the boot module: {e}"))?;
    // The symbol table is this very build's, or nothing is linked against it.
    let build_id = crate::build_id::check_module(&elf, kernel_elf)?;
    // A static executable: symbol values are the running addresses (no load bias).
    let symbols = ImageSymbols::from_elf(&elf, 0);
    println!(
        "kernel symbols: {} from its own ELF file (build id {}, the running kernel's)",
        symbols.len(),
        crate_metadata::hex::encode(build_id)
    );
    // The kernel's functions by address, for naming where a fault happened.
    crate::cellmap::set_kernel_symbols(
        elf.syms
            .iter()
            .filter(|s| s.st_type() == goblin::elf::sym::STT_FUNC && s.st_value != 0)
            .filter_map(|s| {
                let name = elf.strtab.get_at(s.st_name)?;
                Some((s.st_value, s.st_size, crate_metadata::demangle::path(name)))
            })
            .collect(),
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
        if let Ok(init) = k.bind(INIT.of(&entry.name)) {
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

    let windows = k.system.platform().memory.write_windows();
    if windows != Default::default() {
        return Err(format!(
            "loading made read-only pages writable again: {windows:?}"
        ));
    }
    println!("GOT write windows: loading opened none");
    let (notes, boot_frames) = workload(&mut k)?;
    kvstore_workload(&mut k)?;
    Ok(Booted {
        k,
        manifest,
        modules,
        tsc_per_us,
        notes,
        boot_frames,
    })
}

/// The workload before any swap. Returns the notes written and the frames it keeps allocated.
fn workload(k: &mut Kernel) -> Result<(String, Vec<u64>), String> {
    let total = (k.bind(frame_alloc::TOTAL_FRAMES)?.get())();
    let free_count = k.bind(frame_alloc::FREE_COUNT)?;
    let alloc = k.bind(frame_alloc::ALLOC_FRAME)?;
    let free = k.bind(frame_alloc::FREE_FRAME)?;
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

    let spawn = k.bind(sched::SPAWN)?;
    for (name, prio) in [("shell", 2), ("netd", 1), ("fsd", 3)] {
        (spawn.get())(name, prio)?;
    }
    let schedule = k.bind(sched::SCHEDULE)?;
    let order: Vec<u64> = (0..6).filter_map(|_| (schedule.get())()).collect();
    let tasks = (k.bind(sched::TASKS)?.get())();
    println!("workload: sched: {tasks:?}; round robin picks {order:?}");

    let notes = "cells are linked at run time, on bare metal too\n".repeat(100);
    (k.bind(memfs::CREATE)?.get())("/home/notes.txt", notes.as_bytes())?;
    let read = (k.bind(memfs::READ)?.get())("/home/notes.txt")?;
    let listing = (k.bind(memfs::LIST)?.get())("/")?;
    let missing = (k.bind(memfs::READ)?.get())("/no/such/file")
        .err()
        .unwrap_or_default();
    let revision = (k.bind(REVISION.of("memfs"))?.get())();
    println!(
        "workload: memfs {revision:?}: wrote and read back /home/notes.txt ({} bytes); / = {listing:?}; missing file: {missing:?}",
        read.len()
    );
    if read != notes.as_bytes() {
        return Err("memfs returned other bytes than were written".into());
    }
    println!("workload: frames free after: {}", (free_count.get())());
    let _ = tasks;
    Ok((notes, frames[..frames.len() - 1].to_vec()))
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
    let put = k.bind(kvstore::PUT)?;
    let get = k.bind(kvstore::GET)?;
    let len = k.bind(kvstore::LEN)?;
    let checksum = k.bind(kvstore::CHECKSUM)?;
    let flags = k.bind(kvstore::FLAGS)?;
    let set_flags = k.bind(kvstore::SET_FLAGS)?;
    let remove = k.bind(kvstore::REMOVE)?;
    let tag = k.bind(kvstore::TAG)?;
    let tagged = k.bind(kvstore::TAGGED)?;
    let split_path = k.bind(kvstore::SPLIT_PATH)?;
    let crc32 = k.bind(kvstore::CRC32)?;
    let revision = (k.bind(REVISION.of("kvstore"))?.get())();

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

/// Reads the page tables behind every live cell's regions and the whole cell area: text is RX,
/// everything else NX, and no page is writable and executable.
pub fn check_w_xor_x(k: &Kernel) -> Result<(), String> {
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
