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
//!
//! | what | file |
//! |------|------|
//! | the booted system, the handles the tasks call, [`start`], loading an object | `live.rs` |
//! | one swap of a live cell, its record, reclaiming retired versions | `live/swaps.rs` |
//! | the worker tasks and the exact check of the state they leave | `live/workers.rs` |
//! | the command line's scenarios: swaps under load, faults, the uart test | `live/scenarios.rs` |

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::Ordering;

use cell_abi::{counter, frame_alloc, memfs, sched, uart, Interface, Revision, INIT, REVISION};
use crate_metadata::{CellId, CellKind, ManifestEntry};

use crate::driver::{self, UartCell};
use crate::kernel::Booted;
use crate::percpu::{self, CPUS};
use crate::pvh::BootInfo;
use crate::quiesce::{self, CellFn};
use crate::task::{self, SchedCell};
use crate::{acpi, apic, cellmap, cpu, paging, println, smp, us};

mod scenarios;
mod swaps;
mod workers;

use scenarios::{swaps_scenario, uart_scenario};
use workers::{worker, Baseline, BASELINE};

pub use swaps::{gate_cells, print_swap, reclaim_retired, swap, RECLAIMED, SWAPS};
pub use workers::{stop_and_check, FAILED, ITERATIONS, WORKERS};

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

/// The cell functions the tasks call, of the types `cell-abi` declares.
pub struct Cells {
    /// `frame_alloc::alloc_frame`.
    pub alloc_frame: CellFn<frame_alloc::AllocFrame>,
    /// `frame_alloc::free_frame`.
    pub free_frame: CellFn<frame_alloc::FreeFrame>,
    /// `frame_alloc::allocated_frames`.
    pub allocated_frames: CellFn<frame_alloc::AllocatedFrames>,
    /// `frame_alloc::free_count`.
    pub free_count: CellFn<frame_alloc::FreeCount>,
    /// `frame_alloc::revision`.
    pub frame_alloc_revision: CellFn<Revision>,
    /// `memfs::create`.
    pub create: CellFn<memfs::Create>,
    /// `memfs::write`.
    pub write: CellFn<memfs::Write>,
    /// `memfs::read`.
    pub read: CellFn<memfs::Read>,
    /// `memfs::file_count`.
    pub file_count: CellFn<memfs::FileCount>,
    /// `memfs::frames_used`.
    pub frames_used: CellFn<memfs::FramesUsed>,
    /// `memfs::revision`.
    pub memfs_revision: CellFn<Revision>,
    /// `counter::bump`.
    pub bump: CellFn<counter::Bump>,
    /// `counter::count`.
    pub count: CellFn<counter::Count>,
    /// `counter::revision`.
    pub counter_revision: CellFn<Revision>,
    /// `sched::tasks`.
    pub sched_tasks: CellFn<sched::Tasks>,
    /// `sched::revision`.
    pub sched_revision: CellFn<Revision>,
}

static CELLS: spin::Once<Cells> = spin::Once::new();

/// The cell functions (after [`start`]).
pub fn cells() -> &'static Cells {
    CELLS.get().expect("set by start")
}

/// The interface function `interface` of `_kernel`, for calls from tasks and interrupt
/// handlers.
fn cell_fn<F: Copy>(b: &mut Booted, interface: Interface<F>) -> Result<CellFn<F>, String> {
    Ok(CellFn::new(b.k.bind(interface)?))
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
/// `shell` is the shell task's body (shell.rs, passed in by main.rs: the shell sits above this
/// module).
pub fn start(mut b: Booted, boot: &BootInfo, shell: fn()) -> Result<(), String> {
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

    CELLS.call_once(|| Cells {
        alloc_frame: cell_fn(&mut b, frame_alloc::ALLOC_FRAME).expect("frame_alloc"),
        free_frame: cell_fn(&mut b, frame_alloc::FREE_FRAME).expect("frame_alloc"),
        allocated_frames: cell_fn(&mut b, frame_alloc::ALLOCATED_FRAMES).expect("frame_alloc"),
        free_count: cell_fn(&mut b, frame_alloc::FREE_COUNT).expect("frame_alloc"),
        frame_alloc_revision: cell_fn(&mut b, REVISION.of("frame_alloc")).expect("frame_alloc"),
        create: cell_fn(&mut b, memfs::CREATE).expect("memfs"),
        write: cell_fn(&mut b, memfs::WRITE).expect("memfs"),
        read: cell_fn(&mut b, memfs::READ).expect("memfs"),
        file_count: cell_fn(&mut b, memfs::FILE_COUNT).expect("memfs"),
        frames_used: cell_fn(&mut b, memfs::FRAMES_USED).expect("memfs"),
        memfs_revision: cell_fn(&mut b, REVISION.of("memfs")).expect("memfs"),
        bump: cell_fn(&mut b, counter::BUMP).expect("counter"),
        count: cell_fn(&mut b, counter::COUNT).expect("counter"),
        counter_revision: cell_fn(&mut b, REVISION.of("counter")).expect("counter"),
        sched_tasks: cell_fn(&mut b, sched::TASKS).expect("sched"),
        sched_revision: cell_fn(&mut b, REVISION.of("sched")).expect("sched"),
    });
    task::set_policy(SchedCell {
        spawn: cell_fn(&mut b, sched::SPAWN)?,
        exit: cell_fn(&mut b, sched::EXIT)?,
        schedule: cell_fn(&mut b, sched::SCHEDULE)?,
    });
    let uart = UartCell {
        attach: cell_fn(&mut b, uart::ATTACH)?,
        on_interrupt: cell_fn(&mut b, uart::ON_INTERRUPT)?,
        read: cell_fn(&mut b, uart::READ)?,
        throttled: cell_fn(&mut b, uart::THROTTLED)?,
        stats: cell_fn(&mut b, uart::STATS)?,
        revision: cell_fn(&mut b, REVISION.of("uart"))?,
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
        Mode::Shell => task::spawn("shell", shell)?,
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
    if let Ok(init) = b.k.bind(INIT.of(&entry.name)) {
        (init.get())().map_err(|e| format!("cell `{}`: init failed: {e}", entry.name))?;
    }
    cellmap::refresh(&b.k.system);
    Ok(id)
}
