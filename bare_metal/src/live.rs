//! The kernel's life after the boot on one CPU: every CPU started, tasks on all of them calling
//! the cells continuously, and cells swapped under that load.
//!
//! [`start`] brings the application processors up (smp.rs), hands the scheduler its policy cell
//! (`sched`), the UART's interrupt to the `uart` driver cell, spawns the worker tasks and the task
//! that runs the kernel command line's scenario, and lets every CPU's timer go. The scenarios:
//!
//! - (default) `memfs` (rebinding, no gate), `sched`, `frame_alloc`, `counter` and `uart`
//!   (transfers, behind the gate) swapped while every CPU runs workers; two tasks that fault (a
//!   write to a cell's text, an invalid opcode in a cell) end without the kernel; the retired
//!   versions reclaimed after a grace period; then the workers stop and the state is checked to
//!   the frame, the byte and the count;
//! - `shell`: the same workers, and the shell on the serial console until `poweroff`;
//! - `uart-test`: bytes fed through the serial port while `uart` is swapped back and forth.
//!
//! The loader's system lives in [`KERNEL`]; only tasks take it (never an interrupt handler).

use alloc::collections::VecDeque;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use crate_metadata::{CellId, CellKind, CellState, ManifestEntry};
use loader::{CellSpec, NewVersion, ReclaimError, StaticOutcome, SwapOptions, SwapRequest};

use crate::driver::{self, UartCell};
use crate::kernel::Booted;
use crate::percpu::{self, CPUS};
use crate::pvh::BootInfo;
use crate::quiesce::{self, CellFn};
use crate::sync::IrqMutex;
use crate::task::{self, SchedCell};
use crate::{acpi, apic, cellmap, cpu, paging, println, shell, smp, us};

/// The loader's system and the boot module, for tasks.
pub static KERNEL: spin::Mutex<Option<Booted>> = spin::Mutex::new(None);

/// Holds [`KERNEL`]; counted as a lock of the running task (a fault while it is held stops the
/// kernel instead of ending the task).
pub struct KernelGuard {
    guard: spin::MutexGuard<'static, Option<Booted>>,
}

/// Takes [`KERNEL`] (task context only).
pub fn kernel() -> KernelGuard {
    let guard = KERNEL.lock();
    task::count_lock(1);
    KernelGuard { guard }
}

impl Deref for KernelGuard {
    type Target = Booted;
    fn deref(&self) -> &Booted {
        self.guard.as_ref().expect("set by start")
    }
}

impl DerefMut for KernelGuard {
    fn deref_mut(&mut self) -> &mut Booted {
        self.guard.as_mut().expect("set by start")
    }
}

impl Drop for KernelGuard {
    fn drop(&mut self) {
        task::count_lock(-1);
    }
}

/// `memfs::create` and `memfs::write`.
pub type WriteFn = fn(&str, &[u8]) -> Result<(), String>;
/// `memfs::read`.
pub type ReadFn = fn(&str) -> Result<Vec<u8>, String>;

/// The cell functions the tasks call.
pub struct Cells {
    /// `frame_alloc::alloc_frame`.
    pub alloc_frame: CellFn<fn() -> Option<u64>>,
    /// `frame_alloc::free_frame`.
    pub free_frame: CellFn<fn(u64) -> Result<(), String>>,
    /// `frame_alloc::allocated_frames`.
    pub allocated_frames: CellFn<fn() -> Vec<u64>>,
    /// `frame_alloc::free_count`.
    pub free_count: CellFn<fn() -> usize>,
    /// `frame_alloc::revision`.
    pub frame_alloc_revision: CellFn<fn() -> String>,
    /// `memfs::create`.
    pub create: CellFn<WriteFn>,
    /// `memfs::write`.
    pub write: CellFn<WriteFn>,
    /// `memfs::read`.
    pub read: CellFn<ReadFn>,
    /// `memfs::file_count`.
    pub file_count: CellFn<fn() -> usize>,
    /// `memfs::frames_used`.
    pub frames_used: CellFn<fn() -> usize>,
    /// `memfs::revision`.
    pub memfs_revision: CellFn<fn() -> String>,
    /// `counter::bump`.
    pub bump: CellFn<fn() -> u64>,
    /// `counter::count`.
    pub count: CellFn<fn() -> u64>,
    /// `counter::revision`.
    pub counter_revision: CellFn<fn() -> String>,
    /// `sched::tasks`.
    pub sched_tasks: CellFn<fn() -> Vec<String>>,
    /// `sched::revision`.
    pub sched_revision: CellFn<fn() -> String>,
}

static CELLS: spin::Once<Cells> = spin::Once::new();

/// The cell functions (after [`start`]).
pub fn cells() -> &'static Cells {
    CELLS.get().expect("set by start")
}

/// A typed cell function of `_kernel`.
///
/// # Safety
/// `F` is the exact signature of the function `path` names.
unsafe fn cell_fn<F: Copy>(b: &mut Booted, path: &str) -> Result<CellFn<F>, String> {
    // SAFETY: passed on from the caller.
    let handle = unsafe { b.k.handle::<F>(path)? };
    Ok(CellFn::new(handle))
}

/// What the kernel command line asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// The swaps under load, the faults, the checks.
    Swaps,
    /// The shell on the serial console.
    Shell,
    /// The driver swap test with input from the serial port.
    UartTest,
}

/// Workers per CPU.
const WORKERS_PER_CPU: usize = 2;
/// The most workers.
const MAX_WORKERS: usize = 2 * percpu::MAX_CPUS;

/// Brings every CPU up and starts the tasks. Returns on the bootstrap CPU, which then becomes an
/// idle loop like the others (`task::run_cpu`).
pub fn start(mut b: Booted, boot: &BootInfo) -> Result<(), String> {
    let words: Vec<&str> = boot.cmdline.split_whitespace().collect();
    let mode = if words.contains(&"shell") {
        Mode::Shell
    } else if words.contains(&"uart-test") {
        Mode::UartTest
    } else {
        Mode::Swaps
    };
    let tsc_per_us = b.tsc_per_us.max(1);

    // The machine: the MADT's CPUs and I/O APIC; the legacy PIC masked (the I/O APIC routes).
    let madt = acpi::madt(boot.rsdp)?;
    let (ioapic, gsi_base) = madt.ioapic.ok_or("the MADT lists no I/O APIC")?;
    if !(paging::MMIO[0]..paging::MMIO[0] + (2 << 20)).contains(&ioapic) {
        return Err(format!(
            "the I/O APIC is at {ioapic:#x}, outside the region the kernel maps for it"
        ));
    }
    apic::set_ioapic(ioapic, gsi_base);
    cpu::outb(0x21, 0xff);
    cpu::outb(0xa1, 0xff);
    smp::init_apic();
    let bsp_apic = apic::id();

    // Grace periods: every CPU registers with the loader's tracker.
    quiesce::set_epochs(b.k.system.epochs().clone());
    quiesce::register_this_cpu();
    CPUS[0].online.store(true, Ordering::SeqCst);
    percpu::ONLINE.store(1, Ordering::SeqCst);

    // The counter library cell, for the tasks' counters.
    load_object(&mut b, "libs/counter.o")?;

    // SAFETY (every `cell_fn` below): the types are the functions' signatures in cells/kernel,
    // cells/libs/counter and cells/upgrades.
    unsafe {
        CELLS.call_once(|| Cells {
            alloc_frame: cell_fn(&mut b, "frame_alloc::alloc_frame").expect("frame_alloc"),
            free_frame: cell_fn(&mut b, "frame_alloc::free_frame").expect("frame_alloc"),
            allocated_frames: cell_fn(&mut b, "frame_alloc::allocated_frames")
                .expect("frame_alloc"),
            free_count: cell_fn(&mut b, "frame_alloc::free_count").expect("frame_alloc"),
            frame_alloc_revision: cell_fn(&mut b, "frame_alloc::revision").expect("frame_alloc"),
            create: cell_fn(&mut b, "memfs::create").expect("memfs"),
            write: cell_fn(&mut b, "memfs::write").expect("memfs"),
            read: cell_fn(&mut b, "memfs::read").expect("memfs"),
            file_count: cell_fn(&mut b, "memfs::file_count").expect("memfs"),
            frames_used: cell_fn(&mut b, "memfs::frames_used").expect("memfs"),
            memfs_revision: cell_fn(&mut b, "memfs::revision").expect("memfs"),
            bump: cell_fn(&mut b, "counter::bump").expect("counter"),
            count: cell_fn(&mut b, "counter::count").expect("counter"),
            counter_revision: cell_fn(&mut b, "counter::revision").expect("counter"),
            sched_tasks: cell_fn(&mut b, "sched::tasks").expect("sched"),
            sched_revision: cell_fn(&mut b, "sched::revision").expect("sched"),
        });
        task::set_policy(SchedCell {
            spawn: cell_fn(&mut b, "sched::spawn")?,
            exit: cell_fn(&mut b, "sched::exit")?,
            schedule: cell_fn(&mut b, "sched::schedule")?,
        });
    }
    let uart = {
        // SAFETY: as above (cells/kernel/uart).
        unsafe {
            UartCell {
                attach: cell_fn(&mut b, "uart::attach")?,
                on_interrupt: cell_fn(&mut b, "uart::on_interrupt")?,
                read: cell_fn(&mut b, "uart::read")?,
                throttled: cell_fn(&mut b, "uart::throttled")?,
                stats: cell_fn(&mut b, "uart::stats")?,
                revision: cell_fn(&mut b, "uart::revision")?,
            }
        }
    };

    // The boot workload's task records (`shell`, `netd`, `fsd`: entries of the policy with no
    // kernel task behind them) end; `sched`'s own `idle` stands for every CPU's idle loop.
    task::init(percpu::MAX_CPUS);
    let ended = end_boot_records()?;
    cellmap::refresh(&b.k.system);
    paging::set_shootdown(smp::tlb_shootdown);

    // The other CPUs.
    let per_ms = apic::calibrate_timer(tsc_per_us);
    let started = smp::start_aps(&madt.cpus, tsc_per_us);
    let cpus = started.apic_ids.len();
    println!(
        "smp: {cpus} CPUs online (local APIC ids {:?}), started with INIT-SIPI-SIPI through the real-mode trampoline at {:#x} in {} us{}",
        started.apic_ids,
        paging::TRAMPOLINE,
        us(started.tsc),
        if started.missing.is_empty() {
            String::new()
        } else {
            format!("; not started: {:?}", started.missing)
        }
    );
    println!(
        "smp: per-CPU data through the GS base; local APIC timer on every CPU every {} us ({per_ms} timer ticks per ms); interrupts on their own stacks (IST)",
        crate::TICK_US
    );
    if !ended.is_empty() {
        println!(
            "sched: the boot workload's task records {ended:?} ended; the policy picks among the kernel's tasks"
        );
    }

    // The UART's receive interrupt, to the driver cell.
    driver::init(uart, madt.isa_gsi(driver::irq()), bsp_apic)?;
    println!(
        "uart: ISA IRQ {} (GSI {}) routed to CPU 0 (vector {:#x}), handled by the `uart` driver cell through a slot",
        driver::irq(),
        madt.isa_gsi(driver::irq()),
        crate::interrupts::UART
    );

    let workers = WORKERS_PER_CPU * cpus;
    WORKERS.store(workers.min(MAX_WORKERS), Ordering::SeqCst);
    let before = Baseline {
        files: cells().file_count.call(|f| f()),
        count: cells().count.call(|f| f()),
    };
    *BASELINE.lock() = Some(before);
    *KERNEL.lock() = Some(b);
    for id in 0..WORKERS.load(Ordering::SeqCst) {
        task::spawn(&format!("worker{id}"), move || worker(id))?;
    }
    match mode {
        Mode::Swaps => task::spawn("control", || crate::finish(swaps_scenario()))?,
        Mode::Shell => task::spawn("shell", shell::run)?,
        Mode::UartTest => task::spawn("control", || crate::finish(uart_scenario()))?,
    };
    println!(
        "tasks: {} workers (allocate and free frames through frame_alloc, write and read files through memfs, bump counter) and the {} task, spawned through sched",
        WORKERS.load(Ordering::SeqCst),
        match mode {
            Mode::Swaps | Mode::UartTest => "control",
            Mode::Shell => "shell",
        }
    );
    smp::release();
    task::start();
    Ok(())
}

/// Ends the `sched` entries the boot workload made (`shell`, `netd`, `fsd`). Returns their names.
fn end_boot_records() -> Result<Vec<String>, String> {
    let lines = cells().sched_tasks.call(|f| f());
    let mut ended = Vec::new();
    for line in lines {
        let (Some(id), Some(name)) = (field(&line, "id="), field(&line, "name=")) else {
            continue;
        };
        if ["shell", "netd", "fsd"].contains(&name.as_str()) {
            let id: u64 = id
                .parse()
                .map_err(|_| format!("sched: odd id in {line:?}"))?;
            task::exit_record(id)?;
            ended.push(name);
        }
    }
    Ok(ended)
}

/// The value of `key` (`id=`) in a line of `key=value` words.
fn field(line: &str, key: &str) -> Option<String> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key))
        .map(String::from)
}

/// The stack frames of the tasks `sched` knows (its `stack=` fields).
fn sched_stacks() -> Vec<u64> {
    cells()
        .sched_tasks
        .call(|f| f())
        .iter()
        .filter_map(|l| field(l, "stack="))
        .filter_map(|s| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok())
        .collect()
}

/// Loads the boot module's object `path` (a manifest path such as `libs/greet.o`) into
/// `_kernel`, after the dependency cells it needs, and runs its `init` if it has one.
pub fn load_object(b: &mut Booted, path: &str) -> Result<CellId, String> {
    let entry: ManifestEntry = b
        .manifest
        .cells
        .iter()
        .find(|e| e.object == path)
        .cloned()
        .ok_or_else(|| format!("the boot module has no object `{path}`"))?;
    if entry.kind == CellKind::Deps {
        return Err(format!(
            "`{path}` is a dependency cell: it is loaded with the cells that need it"
        ));
    }
    let bytes = b.modules.get(&entry.object)?;
    let manifest = b.manifest.clone();
    let modules = &b.modules;
    b.k.load_dependencies(&manifest, modules, &entry)?;
    b.k.load(&entry, bytes, None)?;
    let id =
        b.k.system
            .cell_in(b.k.ns, &entry.name)
            .ok_or("the loaded cell is not live")?;
    let init = format!("{}::init", entry.name);
    // SAFETY: the init convention's signature is `fn() -> Result<(), String>`.
    if let Ok(init) = unsafe { b.k.handle::<fn() -> Result<(), String>>(&init) } {
        (init.get())().map_err(|e| format!("cell `{}`: init failed: {e}", entry.name))?;
    }
    cellmap::refresh(&b.k.system);
    Ok(id)
}

// ---------------------------------------------------------------------------------------------
// Swaps under load.

/// Odd while a swap is in progress: incremented when one starts and when it ends.
pub static SWAP_WINDOWS: AtomicU64 = AtomicU64::new(0);

/// One swap made.
#[derive(Clone, Debug, Default)]
pub struct SwapRecord {
    /// The cell.
    pub cell: String,
    /// The object swapped in.
    pub object: String,
    /// Whether the new version transfers state (the swap ran behind the gate).
    pub gated: bool,
    /// The cells whose calls into the old version the gate parked (its slots' owners; the
    /// kernel's handles count as the kernel).
    pub gate_cells: Vec<String>,
    /// Gate closed to no CPU inside the old version, in us.
    pub drain_us: u64,
    /// How many times the drain asked the other CPUs (one probe IPI each).
    pub drain_checks: u32,
    /// Calls that waited at the gate, and the longest wait, in us.
    pub parked: (u64, u64),
    /// The loader's phases, in us: stage, verify, rebind, commit, retire, total.
    pub phases: [u64; 6],
    /// Slots the commit rewrote, and in how many dependents.
    pub slots: (usize, usize),
    /// What happened to each static.
    pub statics: Vec<(String, StaticOutcome, u64, u64)>,
    /// Context switches (all CPUs) while the gate was closed.
    pub switches_while_closed: u64,
}

/// Every swap made, in order.
pub static SWAPS: IrqMutex<Vec<SwapRecord>> = IrqMutex::new(Vec::new());

/// Swaps the live cell `name` for `object` (a manifest path), or for its other version in the
/// boot module (`upgrades/<name>.o` when the live one is from `kernel/` or `libs/`, and back).
/// A swap whose new version has a `transfer_state` is made behind the gate (quiesce.rs); one that
/// only rebinds takes the loader's no-wait path.
pub fn swap(name: &str, object: Option<&str>) -> Result<SwapRecord, String> {
    let mut b = kernel();
    let b = &mut *b;
    let ns = b.k.ns;
    let old =
        b.k.system
            .cell_in(ns, name)
            .ok_or_else(|| format!("no live cell `{name}` in `_kernel`"))?;
    let live_kind = b.k.system.registry().cell(old).and_then(|c| c.kind);
    let entry: ManifestEntry = match object {
        Some(path) => b.manifest.cells.iter().find(|e| e.object == path).cloned(),
        None if live_kind == Some(CellKind::Upgrades) => b
            .manifest
            .cells
            .iter()
            .find(|e| e.name == name && e.kind != CellKind::Upgrades && e.kind != CellKind::Deps)
            .cloned(),
        None => b.manifest.get(CellKind::Upgrades, name).cloned(),
    }
    .ok_or_else(|| match object {
        Some(path) => format!("the boot module has no object `{path}`"),
        None => format!("the boot module has no other version of `{name}`"),
    })?;
    if entry.name != name {
        return Err(format!(
            "`{}` is a version of `{}`, not of `{name}`",
            entry.object, entry.name
        ));
    }
    let bytes = b.modules.get(&entry.object)?;
    // A new version may need dependency cells the old one did not: loaded first, by the boot's
    // rule, outside the gate.
    let manifest = b.manifest.clone();
    b.k.load_dependencies(&manifest, &b.modules, &entry)
        .map_err(|e| format!("the new version of `{name}`: {e}"))?;
    let transfers = defines(bytes, &format!("{name}::transfer_state"));
    let spec = CellSpec {
        name,
        version: &entry.version,
        kind: Some(entry.kind),
        sha256: Some(&entry.sha256),
    };
    let request = SwapRequest {
        old,
        new: NewVersion::Object { spec, bytes },
    };
    SWAP_WINDOWS.fetch_add(1, Ordering::SeqCst);
    SWAP_NAMES.lock().push(String::from(name));
    // The swapping task stays on its CPU until the swap is over: a caller parked at the gate on
    // this CPU keeps it (its cell-call depth is above zero), so a swapper switched out there would
    // never come back to open the gate.
    let pinned = quiesce::pin();
    quiesce::arm_switch_count();
    let result = b.k.system.swap(&[request], &SwapOptions::default());
    let switches_while_closed = quiesce::switches_while_closed();
    drop(pinned);
    SWAP_WINDOWS.fetch_add(1, Ordering::SeqCst);
    // The cell map first: interrupt handlers call only into text it shows (`CellFn::try_call`),
    // so the driver's handler can reach the new version only once it is refreshed.
    cellmap::refresh(&b.k.system);
    if name == "uart" && result.is_ok() {
        driver::resume();
    }
    let report = result.map_err(|e| format!("swapping `{name}`: {e}"))?;
    let t = &report.times;
    let gate = report.gate.as_ref();
    if let Some(g) = gate {
        quiesce::GATE_WAITS.fetch_add(g.parked, Ordering::Relaxed);
        quiesce::GATE_WAIT_MAX_US.fetch_max(g.longest_wait / 1000, Ordering::Relaxed);
    }
    let record = SwapRecord {
        cell: name.into(),
        object: entry.object.clone(),
        gated: transfers,
        gate_cells: if report.gate.is_some() {
            report.dependents.clone()
        } else {
            Vec::new()
        },
        drain_us: gate.map_or(0, |g| g.drain / 1000),
        drain_checks: gate.map_or(0, |g| g.checks),
        parked: gate.map_or((0, 0), |g| (g.parked, g.longest_wait / 1000)),
        phases: [t.stage, t.verify, t.rebind, t.commit, t.retire, t.total].map(|n| n / 1000),
        slots: (report.slots_rewritten, report.dependents.len()),
        statics: report
            .statics
            .iter()
            .map(|s| (s.path.clone(), s.outcome, s.sizes.0, s.sizes.1))
            .collect(),
        switches_while_closed,
    };
    SWAPS.lock().push(record.clone());
    Ok(record)
}

/// The cells whose calls a swap of `cell` that moves state parks at the loader's gate: every
/// cell with a slot into it (the kernel's handles count as the base image), by name. Calls between
/// the cell's own functions go straight on (they are inside it; the drain waits for them).
pub fn gate_cells(registry: &crate_metadata::Registry, cell: CellId) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for d in registry.dependents(cell) {
        if let Some(c) = registry.cell(d) {
            if c.id != cell && !names.contains(&c.name) {
                names.push(c.name.clone());
            }
        }
    }
    names.sort();
    names
}

/// The name of each swap, by window (window `2n+1` is swap `n`).
static SWAP_NAMES: IrqMutex<Vec<String>> = IrqMutex::new(Vec::new());

/// Whether the object `bytes` defines a global symbol whose path is `path`.
fn defines(bytes: &[u8], path: &str) -> bool {
    let Ok(elf) = goblin::elf::Elf::parse(bytes) else {
        return false;
    };
    elf.syms.iter().any(|s| {
        s.st_shndx != 0
            && s.st_bind() != goblin::elf::sym::STB_LOCAL
            && elf
                .strtab
                .get_at(s.st_name)
                .is_some_and(|n| crate_metadata::demangle::path(n) == path)
    })
}

/// Prints a swap's record: what moved, the gate, the loader's phases.
pub fn print_swap(r: &SwapRecord) {
    let [stage, verify, rebind, commit, retire, total] = r.phases;
    if r.gated {
        println!(
            "swapped `{}` for {} behind the gate (calls from {}): drained in {} us ({} probes of the other CPUs), {} calls parked, the longest {} us; stage {stage} us, verify {verify} us, rebind/transfer {rebind} us, commit {commit} us, retire {retire} us, total {total} us; {} slots rewritten in {} dependents; {} task switches while the swap ran behind the gate",
            r.cell,
            r.object,
            r.gate_cells.join(", "),
            r.drain_us,
            r.drain_checks,
            r.parked.0,
            r.parked.1,
            r.slots.0,
            r.slots.1,
            r.switches_while_closed
        );
    } else {
        println!(
            "swapped `{}` for {} without a gate (its statics are rebound: one state, no transfer): stage {stage} us, verify {verify} us, rebind {rebind} us, commit {commit} us, retire {retire} us, total {total} us; {} slots rewritten in {} dependents",
            r.cell, r.object, r.slots.0, r.slots.1
        );
    }
    for (path, outcome, old, new) in &r.statics {
        println!("  static {path}: {outcome:?} ({old} -> {new} bytes)");
    }
}

/// Waits for a grace period, then frees every retired cell the loader lets go. Returns lines for
/// the console.
pub fn reclaim_retired() -> Result<Vec<String>, String> {
    let (epoch, free_before) = {
        let b = kernel();
        (
            b.k.system.epochs().current(),
            b.k.system.platform().memory.free_frames(),
        )
    };
    let waited = quiesce::grace_period(epoch, 2_000_000, crate::tsc_per_us())
        .map_err(|pending| format!("{pending} CPUs did not pass a quiescent point in 2 s"))?;
    let mut lines = vec![format!(
        "reclaim: grace period over after {} us (every CPU passed a quiescent point since epoch {epoch})",
        us(waited)
    )];
    let mut b = kernel();
    let retired: Vec<(CellId, String, String)> =
        b.k.system
            .registry()
            .cells()
            .filter(|c| c.state == CellState::Retired)
            .map(|c| {
                (
                    c.id,
                    c.name.clone(),
                    c.kind.map_or("?", |k| k.dir()).to_string(),
                )
            })
            .collect();
    let mut freed = 0;
    for (id, name, kind) in retired {
        let result = match b.k.system.reclaim(id) {
            Err(ReclaimError::SharesState { .. }) if name == "counter" || name == "uart" => {
                // SAFETY: the statics these cells share between versions are atomics
                // (counter's `COUNTER`, uart's `THROTTLED`): nothing in them points into the
                // retired version's code or data.
                unsafe { b.k.system.reclaim_unchecked(id) }.map(|r| {
                    (
                        r,
                        " (unchecked: its shared statics are atomics, no pointers)",
                    )
                })
            }
            other => other.map(|r| (r, "")),
        };
        match result {
            Ok((r, note)) => {
                freed += 1;
                lines.push(format!(
                    "reclaim: freed the retired `{name}` from {kind}/: {} bytes unmapped{}{note}",
                    r.unmapped,
                    r.handed_over
                        .map(|(_, n)| format!(", {n} bytes of data kept by the live version"))
                        .unwrap_or_default()
                ));
            }
            Err(e) => lines.push(format!(
                "reclaim: kept the retired `{name}` from {kind}/: {e}"
            )),
        }
    }
    cellmap::refresh(&b.k.system);
    let free_after = b.k.system.platform().memory.free_frames();
    lines.push(format!(
        "reclaim: {freed} retired versions freed; cell frames free {free_before} -> {free_after} (+{})",
        free_after.saturating_sub(free_before)
    ));
    RECLAIMED.fetch_add(freed, Ordering::Relaxed);
    Ok(lines)
}

/// Retired versions freed.
pub static RECLAIMED: AtomicUsize = AtomicUsize::new(0);

// ---------------------------------------------------------------------------------------------
// The workers.

/// How many workers run.
pub static WORKERS: AtomicUsize = AtomicUsize::new(0);
/// Tells the workers to stop.
static STOP: AtomicBool = AtomicBool::new(false);
/// Iterations each worker made.
pub static ITERATIONS: [AtomicU64; MAX_WORKERS] = [const { AtomicU64::new(0) }; MAX_WORKERS];
/// Calls that failed (an error where none was due, or other bytes than were written).
pub static FAILED: AtomicU64 = AtomicU64::new(0);

/// What a worker leaves when it stops.
#[derive(Clone, Debug, Default)]
struct WorkerLog {
    id: usize,
    held: Vec<u64>,
    files: Vec<(String, Vec<u8>)>,
    bumps: u64,
    iterations: u64,
    /// The longest time between two of its iterations that overlapped a swap, and which swap.
    pause_in_swap: (u64, String),
    /// The longest outside swaps.
    pause_outside: u64,
}

static LOGS: IrqMutex<Vec<WorkerLog>> = IrqMutex::new(Vec::new());

/// The files and the counter before the workers started.
#[derive(Clone, Copy)]
struct Baseline {
    files: usize,
    count: u64,
}

static BASELINE: IrqMutex<Option<Baseline>> = IrqMutex::new(None);

fn fail(worker: usize, what: String) {
    FAILED.fetch_add(1, Ordering::Relaxed);
    println!("worker{worker}: FAILED call: {what}");
}

/// A worker: allocates and frees frames, writes and reads back files, bumps the counter, until
/// told to stop; keeps what it holds so that the state can be checked exactly afterwards.
fn worker(id: usize) {
    let cells = cells();
    let mut held: VecDeque<u64> = VecDeque::new();
    let mut files: Vec<Option<Vec<u8>>> = vec![None; 4];
    let mut log = WorkerLog {
        id,
        ..WorkerLog::default()
    };
    let mut last = cpu::rdtsc();
    let mut window = SWAP_WINDOWS.load(Ordering::SeqCst);
    let mut i: u64 = 0;
    while !STOP.load(Ordering::Relaxed) {
        for _ in 0..2 {
            match cells.alloc_frame.call(|f| f()) {
                Some(frame) => held.push_back(frame),
                None => fail(id, "frame_alloc::alloc_frame gave no frame".into()),
            }
        }
        while held.len() > 6 {
            let frame = held.pop_front().expect("more than six");
            if let Err(e) = cells.free_frame.call(|f| f(frame)) {
                fail(id, format!("frame_alloc::free_frame({frame:#x}): {e}"));
            }
        }
        let slot = (i % 4) as usize;
        let path = format!("/w{id}/f{slot}");
        let line = format!(
            "worker {id} iteration {i} on cpu {} holds {:x?}\n",
            percpu::this_cpu().index(),
            held
        );
        let content = line.repeat(1 + (i % 3) as usize * 40).into_bytes();
        let written = if files[slot].is_some() {
            cells.write.call(|f| f(&path, &content))
        } else {
            cells.create.call(|f| f(&path, &content))
        };
        match written {
            Ok(()) => files[slot] = Some(content),
            Err(e) => fail(id, format!("memfs write of {path}: {e}")),
        }
        match cells.read.call(|f| f(&path)) {
            Ok(back) if Some(&back) == files[slot].as_ref() => {}
            Ok(back) => fail(
                id,
                format!("memfs::read({path}) gave {} other bytes", back.len()),
            ),
            Err(e) => fail(id, format!("memfs::read({path}): {e}")),
        }
        cells.bump.call(|f| f());
        log.bumps += 1;
        i += 1;
        ITERATIONS[id].fetch_add(1, Ordering::Relaxed);
        let now = cpu::rdtsc();
        let w = SWAP_WINDOWS.load(Ordering::SeqCst);
        let gap = now - last;
        if w != window || w % 2 == 1 {
            if gap > log.pause_in_swap.0 {
                let n = (w.max(window).saturating_sub(1) / 2) as usize;
                let name = SWAP_NAMES.lock().get(n).cloned().unwrap_or_default();
                log.pause_in_swap = (gap, name);
            }
        } else {
            log.pause_outside = log.pause_outside.max(gap);
        }
        last = now;
        window = w;
    }
    log.iterations = i;
    log.held = held.into_iter().collect();
    log.files = files
        .into_iter()
        .enumerate()
        .filter_map(|(slot, f)| f.map(|f| (format!("/w{id}/f{slot}"), f)))
        .collect();
    LOGS.lock().push(log);
}

/// Per-CPU calls, as one line.
pub fn calls_line() -> String {
    let calls: Vec<String> = percpu::online()
        .map(|c| format!("cpu{} {}", c.index(), c.calls.load(Ordering::Relaxed)))
        .collect();
    calls.join(", ")
}

/// Waits until `done` says yes, for at most 20 s (a hang guard: the wait itself is not a check of
/// time).
fn wait_until(what: &str, done: impl Fn() -> bool) -> Result<(), String> {
    let start = cpu::rdtsc();
    while !done() {
        if cpu::rdtsc() - start > 20_000_000 * crate::tsc_per_us() {
            return Err(format!("waited 20 s for {what}"));
        }
        task::sleep_us(1_000);
    }
    Ok(())
}

/// Waits until every CPU has made `calls` calls and every worker `iterations` iterations.
fn wait_for_progress(calls: u64, iterations: u64) -> Result<(), String> {
    let start = cpu::rdtsc();
    let limit = 30_000_000 * crate::tsc_per_us();
    loop {
        let cpus_ok = percpu::online().all(|c| c.calls.load(Ordering::Relaxed) >= calls);
        let workers = WORKERS.load(Ordering::Relaxed);
        let workers_ok = ITERATIONS[..workers]
            .iter()
            .all(|n| n.load(Ordering::Relaxed) >= iterations);
        if cpus_ok && workers_ok {
            return Ok(());
        }
        if cpu::rdtsc() - start > limit {
            return Err(format!(
                "no progress in 30 s: calls {}, iterations {:?}",
                calls_line(),
                ITERATIONS[..workers]
                    .iter()
                    .map(|n| n.load(Ordering::Relaxed))
                    .collect::<Vec<_>>()
            ));
        }
        task::sleep_us(2_000);
    }
}

/// Stops the workers, waits until each left its log, and checks the state of the cells against
/// them: every frame, every file, every count. Returns the lines to print.
pub fn stop_and_check() -> Result<Vec<String>, String> {
    STOP.store(true, Ordering::SeqCst);
    let workers = WORKERS.load(Ordering::SeqCst);
    let start = cpu::rdtsc();
    while LOGS.lock().len() < workers {
        if cpu::rdtsc() - start > 10_000_000 * crate::tsc_per_us() {
            return Err("the workers did not stop within 10 s".into());
        }
        task::sleep_us(1_000);
    }
    // Let the workers' tasks end (their `sched` entries and stack frames go).
    let start = cpu::rdtsc();
    while task::states()
        .iter()
        .any(|(n, s)| n.starts_with("worker") && !matches!(s, task::State::Exited))
    {
        if cpu::rdtsc() - start > 10_000_000 * crate::tsc_per_us() {
            return Err(format!(
                "the workers did not end within 10 s: {:?}",
                task::describe()
            ));
        }
        task::sleep_us(1_000);
    }
    task::forget_faulted();
    let stacks_freed = task::reap();
    let logs = LOGS.lock().clone();
    let cells = cells();
    let mut lines = Vec::new();

    // Frames: what the workers hold, the tasks' stack frames in `sched` and the boot workload's
    // frames are all allocated, none twice, and with memfs's file frames they are all there is.
    let allocated = cells.allocated_frames.call(|f| f());
    let stacks = sched_stacks();
    let boot_frames = kernel().boot_frames.clone();
    let mut owned: Vec<u64> = logs.iter().flat_map(|l| l.held.iter().copied()).collect();
    let held_by_workers = owned.len();
    owned.extend(&stacks);
    owned.extend(&boot_frames);
    let mut sorted = owned.clone();
    sorted.sort_unstable();
    let distinct = {
        let mut d = sorted.clone();
        d.dedup();
        d.len()
    };
    if distinct != sorted.len() {
        return Err(format!(
            "a frame is held twice: {} frames held, {distinct} distinct",
            sorted.len()
        ));
    }
    let missing: Vec<u64> = owned
        .iter()
        .copied()
        .filter(|f| allocated.binary_search(f).is_err())
        .collect();
    if !missing.is_empty() {
        return Err(format!("frames held but free in frame_alloc: {missing:x?}"));
    }
    let memfs_frames = cells.frames_used.call(|f| f());
    if allocated.len() != owned.len() + memfs_frames {
        return Err(format!(
            "frame_alloc has {} frames allocated, but the workers hold {held_by_workers}, the tasks' stacks are {}, the boot workload keeps {} and memfs's files {memfs_frames}",
            allocated.len(),
            stacks.len(),
            boot_frames.len()
        ));
    }
    lines.push(format!(
        "exact state: frames: {} allocated in {} = {held_by_workers} held by the workers + {} task stacks in sched + {} kept by the boot workload + {memfs_frames} of memfs's files; none held twice, none lost",
        allocated.len(),
        cells.frame_alloc_revision.call(|f| f()),
        stacks.len(),
        boot_frames.len()
    ));

    // Files: every file each worker wrote reads back as last written.
    let baseline = BASELINE.lock().ok_or("no baseline")?;
    let mut files = 0;
    for log in &logs {
        for (path, expected) in &log.files {
            let back = cells
                .read
                .call(|f| f(path))
                .map_err(|e| format!("memfs::read({path}): {e}"))?;
            if &back != expected {
                return Err(format!("{path} reads back other bytes than last written"));
            }
            files += 1;
        }
    }
    let count_files = cells.file_count.call(|f| f());
    if count_files != baseline.files + files {
        return Err(format!(
            "memfs has {count_files} files, not the {} there were plus the workers' {files}",
            baseline.files
        ));
    }
    let notes = cells
        .read
        .call(|f| f("/home/notes.txt"))
        .map_err(|e| format!("memfs::read(/home/notes.txt): {e}"))?;
    if notes != kernel().notes.as_bytes() {
        return Err("/home/notes.txt changed".into());
    }
    lines.push(format!(
        "exact state: files: the workers' {files} files read back as last written through {}; {count_files} files in all ({} before), /home/notes.txt unchanged",
        cells.memfs_revision.call(|f| f()),
        baseline.files
    ));

    // Counters: every bump counted, across the counter's own swap.
    let bumps: u64 = logs.iter().map(|l| l.bumps).sum();
    let count = cells.count.call(|f| f());
    if count != baseline.count + bumps {
        return Err(format!(
            "counter::count() is {count}, the workers bumped {bumps} times (from {})",
            baseline.count
        ));
    }
    let iterations: u64 = logs.iter().map(|l| l.iterations).sum();
    lines.push(format!(
        "exact state: counter: {count} = the workers' {bumps} bumps, through {}; {iterations} iterations in all",
        cells.counter_revision.call(|f| f())
    ));
    let failed = FAILED.load(Ordering::SeqCst);
    let calls = quiesce::sum(|c| c.calls.load(Ordering::Relaxed));
    lines.push(format!(
        "calls: {calls} calls into cells, {failed} failed; {stacks_freed} ended tasks' stacks freed"
    ));
    if failed != 0 {
        return Err(format!("{failed} calls failed"));
    }
    // The pauses.
    if let Some(worst) = logs.iter().max_by_key(|l| l.pause_in_swap.0) {
        let outside = logs.iter().map(|l| l.pause_outside).max().unwrap_or(0);
        lines.push(format!(
            "pauses: the longest a worker waited between two iterations across a swap: {} us (worker{}, during the `{}` swap); outside swaps: {} us (the tasks share the CPUs: {} workers and the control task on {} CPUs, {} us per tick)",
            us(worst.pause_in_swap.0),
            worst.id,
            worst.pause_in_swap.1,
            us(outside),
            workers,
            percpu::ONLINE.load(Ordering::Relaxed),
            crate::TICK_US
        ));
    }
    lines.push(format!(
        "gate: {} calls waited at a gate, the longest {} us",
        quiesce::GATE_WAITS.load(Ordering::Relaxed),
        quiesce::GATE_WAIT_MAX_US.load(Ordering::Relaxed)
    ));
    Ok(lines)
}

// ---------------------------------------------------------------------------------------------
// Scenarios.

/// Prints the boot's numbers: time to the first task and to every CPU online.
fn print_boot_times() {
    let entry = crate::boot::entry_tsc();
    let first = task::FIRST_TASK_TSC.load(Ordering::Relaxed);
    println!(
        "boot: first task ran {} us after the kernel's first instruction (TSC, {} ticks per us)",
        us(first.saturating_sub(entry)),
        crate::tsc_per_us()
    );
}

/// The default run: swaps under load, faults, reclaim, exact state.
fn swaps_scenario() -> Result<(), String> {
    wait_for_progress(300, 3)?;
    print_boot_times();
    println!(
        "load: every CPU runs tasks that call cells; calls so far by CPU: {}",
        calls_line()
    );
    let before: Vec<u64> = percpu::online()
        .map(|c| c.calls.load(Ordering::Relaxed))
        .collect();

    // memfs: same state layout, rebound: the no-wait path.
    let r = swap("memfs", None)?;
    print_swap(&r);
    check_memfs_v2()?;
    task::sleep_us(50_000);

    // sched: the policy itself, moved by transfer while every CPU keeps switching tasks.
    let tasks_before = ids(&cells().sched_tasks.call(|f| f()));
    let r = swap("sched", None)?;
    print_swap(&r);
    let revision = cells().sched_revision.call(|f| f());
    let tasks_after = ids(&cells().sched_tasks.call(|f| f()));
    println!("after swap: sched::revision() = {revision:?}");
    if !revision.contains("v2") || !tasks_before.iter().all(|t| tasks_after.contains(t)) {
        return Err(format!(
            "sched v2 lost tasks: {tasks_before:?} -> {tasks_after:?} ({revision})"
        ));
    }
    println!(
        "state kept: the {} tasks in sched v1 are in sched v2 with their ids, and it picks for every CPU now",
        tasks_before.len()
    );
    let picks = task::PICKS.load(Ordering::Relaxed);
    wait_until("a task switch picked by sched v2", || {
        task::PICKS.load(Ordering::Relaxed) > picks
    })?;
    task::sleep_us(50_000);
    println!(
        "after swap: sched v2 made {} picks in the next 50 ms",
        task::PICKS.load(Ordering::Relaxed) - picks
    );

    // frame_alloc: bitmap -> buddy, with memfs and sched (which call it) behind the gate.
    let free_before = cells().free_count.call(|f| f());
    let r = swap("frame_alloc", None)?;
    print_swap(&r);
    println!(
        "after swap: frame_alloc::revision() = {:?}; free frames {free_before} before the swap, {} now (the workers keep allocating)",
        cells().frame_alloc_revision.call(|f| f()),
        cells().free_count.call(|f| f())
    );
    task::sleep_us(50_000);

    // counter: COUNTER rebound, CONFIG transferred (behind the gate): no bump lost.
    let r = swap("counter", None)?;
    print_swap(&r);
    println!(
        "after swap: counter::revision() = {:?}, count {}",
        cells().counter_revision.call(|f| f()),
        cells().count.call(|f| f())
    );
    task::sleep_us(50_000);

    // uart: the driver, with its interrupt live (the gate masks it for the swap).
    let r = swap("uart", None)?;
    print_swap(&r);
    println!("after swap: uart: {}", driver::describe());
    task::sleep_us(50_000);

    let after: Vec<u64> = percpu::online()
        .map(|c| c.calls.load(Ordering::Relaxed))
        .collect();
    println!("load: calls by CPU after the swaps: {}", calls_line());
    let during: Vec<String> = before
        .iter()
        .zip(&after)
        .enumerate()
        .map(|(i, (b, a))| format!("cpu{i} +{}", a - b))
        .collect();
    println!("load: calls made during the swaps: {}", during.join(", "));
    if before.iter().zip(&after).any(|(b, a)| a <= b) {
        return Err("a CPU made no calls during the swaps".into());
    }

    faults()?;

    for line in reclaim_retired()? {
        println!("{line}");
    }
    {
        let b = kernel();
        crate::kernel::check_w_xor_x(&b.k)?;
        let windows = b.k.system.platform().memory.write_windows();
        println!(
            "GOT write windows: the swaps made {} read-only pages writable (dependents' slots) and {} of them read-only again; {} left writable",
            windows.opened, windows.closed, windows.open_now
        );
        if windows.opened == 0 || windows.open_now != 0 {
            return Err(format!(
                "the swaps' write windows do not add up: {windows:?}"
            ));
        }
    }

    for line in stop_and_check()? {
        println!("{line}");
    }
    shell::script(&["cpus", "tasks", "stats"]);
    Ok(())
}

/// The task ids in `sched::tasks()` lines.
fn ids(lines: &[String]) -> Vec<String> {
    let mut v: Vec<String> = lines.iter().filter_map(|l| field(l, "id=")).collect();
    v.sort();
    v
}

/// After the memfs swap: v2 answers, the state is the same, a function only v2 has works.
fn check_memfs_v2() -> Result<(), String> {
    let revision = cells().memfs_revision.call(|f| f());
    println!(
        "after swap: the handle to memfs::revision taken before the swap now says {revision:?}"
    );
    if !revision.contains("v2") {
        return Err(format!("memfs::revision after the swap is {revision:?}"));
    }
    let stat = {
        let mut b = kernel();
        // SAFETY: memfs v2's `stat` is `fn(&str) -> Result<String, String>`.
        unsafe { cell_fn::<fn(&str) -> Result<String, String>>(&mut b, "memfs::stat")? }
    };
    let stat = stat.call(|f| f("/home/notes.txt"))?;
    println!(
        "after swap: memfs::stat(\"/home/notes.txt\") = {stat:?} (a function v1 does not have)"
    );
    let notes = cells().read.call(|f| f("/home/notes.txt"))?;
    if notes != kernel().notes.as_bytes() {
        return Err("/home/notes.txt changed across the memfs swap".into());
    }
    println!(
        "state kept: /home/notes.txt reads back the same {} bytes through memfs v2",
        notes.len()
    );
    Ok(())
}

/// Two tasks that fault inside cells' memory: a write to `memfs`'s text, and an invalid opcode in
/// a cell's text. Each is reported with the cell and symbol and ends; the rest goes on.
fn faults() -> Result<(), String> {
    let (create, ud2) = {
        let b = kernel();
        let create =
            b.k.system
                .find_symbol(b.k.ns, "memfs::create")
                .map_err(|e| e.to_string())?
                .addr;
        (create, find_ud2(&b)?)
    };
    let iterations = |id: usize| ITERATIONS[id].load(Ordering::Relaxed);
    let before: Vec<u64> = (0..WORKERS.load(Ordering::Relaxed))
        .map(iterations)
        .collect();
    println!(
        "faults: a task writes to memfs's text at {create:#x} (memfs::create); this must fault"
    );
    let wx = task::spawn("wx", move || {
        // SAFETY: deliberately unsound if it succeeds: the page is a cell's text, which W^X maps
        // read+execute. The write must raise a page fault, which ends this task.
        unsafe { (create as *mut u8).write_volatile(0xcc) };
        println!("faults: FAILED: the write to memfs's text succeeded");
        FAILED.fetch_add(1, Ordering::Relaxed);
    })?;
    println!(
        "faults: a task jumps to a ud2 instruction in a cell's text at {ud2:#x}; this must fault"
    );
    let ud = task::spawn("ud", move || {
        // SAFETY: deliberately faulting: `ud2` raises an invalid opcode exception at once,
        // before anything of the cell's code runs or any state is touched; the exception ends
        // this task.
        let f: extern "C" fn() = unsafe { core::mem::transmute(ud2 as usize) };
        f();
        println!("faults: FAILED: the ud2 returned");
        FAILED.fetch_add(1, Ordering::Relaxed);
    })?;
    let start = cpu::rdtsc();
    loop {
        let states = task::states();
        let ended = [wx, ud]
            .iter()
            .all(|i| matches!(states.get(*i), Some((_, task::State::Faulted(_)))));
        if ended {
            break;
        }
        if cpu::rdtsc() - start > 10_000_000 * crate::tsc_per_us() {
            return Err(format!("the faulting tasks did not end: {states:?}"));
        }
        task::sleep_us(1_000);
    }
    let forgotten = task::forget_faulted();
    wait_until("every worker's progress after the faults", || {
        before.iter().enumerate().all(|(i, b)| iterations(i) > *b)
    })?;
    println!(
        "faults: {} tasks ended by faults ({}), their sched entries removed; the kernel went on, and all {} workers made progress since",
        forgotten.len(),
        forgotten.join(", "),
        before.len()
    );
    Ok(())
}

/// The address of a `ud2` instruction (0f 0b) in the text of a live kernel cell.
fn find_ud2(b: &Booted) -> Result<u64, String> {
    for name in ["memfs", "frame_alloc", "sched", "klog"] {
        let Some(id) = b.k.system.cell_in(b.k.ns, name) else {
            continue;
        };
        let Some(regions) = b.k.system.regions(id) else {
            continue;
        };
        let (start, len) = regions[0];
        // SAFETY: the cell's text region is mapped readable (RX) for as long as the cell is
        // loaded, and the kernel holds the loader's lock, so it stays.
        let text = unsafe { core::slice::from_raw_parts(start as *const u8, len as usize) };
        if let Some(at) = text.windows(2).position(|w| w == [0x0f, 0x0b]) {
            return Ok(start + at as u64);
        }
    }
    Err("no ud2 instruction in the kernel cells' text".into())
}

/// `uart-test`: the host feeds numbered lines through the serial port; a reader task checks that
/// every line arrives, in order, while this task swaps `uart` back and forth.
fn uart_scenario() -> Result<(), String> {
    wait_for_progress(100, 1)?;
    let reader = task::spawn("reader", uart_reader)?;
    println!("uart-test: ready");
    // Swap while bytes arrive: after each 2 KiB the reader took, until the host's `end` line.
    let mut swaps = 0;
    let mut next = 2048;
    while !READER_DONE.load(Ordering::SeqCst) {
        let got = READER_BYTES.load(Ordering::SeqCst);
        if got >= next && swaps < 16 {
            let r = swap("uart", None)?;
            println!(
                "uart-test: swap {}: `uart` -> {} at byte {got}; drained in {} us, {} calls parked",
                swaps + 1,
                r.object,
                r.drain_us,
                r.parked.0
            );
            swaps += 1;
            next = got + 2048;
        }
        task::sleep_us(500);
    }
    let _ = reader;
    let result = READER_RESULT.lock().clone();
    println!("uart-test: {}", result.as_deref().unwrap_or("no result"));
    println!(
        "uart-test: {swaps} swaps while input arrived; {} interrupts handled by the driver cell, {} found the gate closed (input masked until the swap ended), {} bytes taken by the new version right after a swap; the ring was full {} times (the bytes waited in the UART)",
        driver::HANDLED.load(Ordering::Relaxed),
        driver::DEFERRED.load(Ordering::Relaxed),
        driver::DRAINED_AFTER_SWAP.load(Ordering::Relaxed),
        driver::THROTTLE_RESUMES.load(Ordering::Relaxed)
    );
    println!("uart-test: {}", driver::describe());
    for line in reclaim_retired()? {
        println!("{line}");
    }
    let verdict = result.ok_or("the reader left no result")?;
    if !verdict.starts_with("received") || swaps == 0 {
        return Err(format!("uart-test failed: {verdict} ({swaps} swaps)"));
    }
    for line in stop_and_check()? {
        println!("{line}");
    }
    Ok(())
}

static READER_BYTES: AtomicU64 = AtomicU64::new(0);
static READER_DONE: AtomicBool = AtomicBool::new(false);
static READER_RESULT: IrqMutex<Option<String>> = IrqMutex::new(None);

/// Reads lines `NNNNNN` (six digits, counting from 0) until `end`, checking that none is missing
/// or out of order.
fn uart_reader() {
    let mut line = Vec::new();
    let mut expected: u64 = 0;
    let mut bytes: u64 = 0;
    let mut buf = [0u8; 256];
    let mut error: Option<String> = None;
    loop {
        let n = driver::read(&mut buf);
        if n == 0 {
            task::sleep_us(200);
            continue;
        }
        bytes += n as u64;
        READER_BYTES.store(bytes, Ordering::SeqCst);
        for &byte in &buf[..n] {
            if byte != b'\n' {
                line.push(byte);
                continue;
            }
            let text = core::str::from_utf8(&line).unwrap_or("");
            if text == "end" {
                let verdict = match error.take() {
                    None => format!(
                        "received {bytes} bytes: lines 0..{expected} in order, none missing, then `end`"
                    ),
                    Some(e) => format!("FAILED after {bytes} bytes: {e}"),
                };
                *READER_RESULT.lock() = Some(verdict);
                READER_DONE.store(true, Ordering::SeqCst);
                return;
            }
            match text.parse::<u64>() {
                Ok(n) if n == expected => expected += 1,
                _ if error.is_none() => {
                    error = Some(format!("line {expected} expected, got {text:?}"));
                }
                _ => {}
            }
            line.clear();
        }
    }
}
