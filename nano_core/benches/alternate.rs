//! Loading a cell against `dlopen` of the same code, alternating (issue "a measurement that
//! holds"): a claim that survives another machine of the same kind.
//!
//! For every kernel cell and every dependency cell, both sides run in one process in rounds: a
//! round does `k` loads + unloads of the cell, then `k` `dlopen` + `dlclose`, and the next round
//! the other way round, so that a slow stretch of the machine hits both sides alike. Each round
//! gives a time per operation on each side and their ratio; the report is the median of each and
//! the spread of the ratio (its 10th and 90th percentile over the rounds). Next to the time it
//! counts work, per operation: system calls (the `raw_syscalls:sys_enter` tracepoint, through
//! `perf_event_open`; it needs tracefs mounted and the permission to read it, else `-`) and page
//! faults (the software counter, else `getrusage`). Hardware counters are not available on these
//! virtual machines; instructions come from callgrind (see BENCHMARKS.md for the command).
//!
//! The `dlopen` side: a dependency cell's object linked by `cc -shared` (the same bytes, its own
//! dependencies opened as shared libraries beforehand); a kernel cell's crate built as a `cdylib`
//! (`support::cell_cdylib`: its object and the small crates it links statically).
//!
//! The first row (without a filter, or with the filter `boot` alone) is a whole boot: every cell
//! `Kernel::boot_with` loads (kernel, library and dependency cells, the latter even where the
//! image links the crate), loaded in boot order into a fresh namespace that is then removed,
//! against `dlopen(RTLD_NOW | RTLD_GLOBAL)` of each one's object linked by `cc -shared`, in the
//! same order, then `dlclose` of all, last first (`boot_cells` / `boot_dlopen`, not inlined, so
//! that callgrind counts each side).
//!
//! `cargo bench -p nano_core --bench alternate [-- <filter>]`; `BENCH_ROUNDS` (default 21) sets
//! the rounds. `BENCH_FLOOR=1` adds three rows under each cell's: the memory work alone of its
//! load and unload (map, copy, two `mprotect`, unmap of its mapping's size), on fresh pages and on
//! a region kept from before, and the four `mprotect` of the latter alone (`run_floor`).

mod support;

use std::path::PathBuf;
use std::time::Instant;

use crate_metadata::{CellKind, Manifest, ManifestEntry};
use loader::hosted::Hosted;
use loader::{CellSpec, System};
use nano_core::kernel::{BootOptions, Kernel};
use perf_event::events::{Software, Tracepoint};
use perf_event::{Builder, Counter};

/// What one side did over one round, per operation.
#[derive(Clone, Copy, Default)]
struct Sample {
    nanos: f64,
    syscalls: Option<f64>,
    faults: f64,
}

/// The counters of this thread: system calls and page faults.
struct Counters {
    syscalls: Option<Counter>,
    faults: Option<Counter>,
}

impl Counters {
    fn open() -> Counters {
        let syscalls = syscall_tracepoint()
            .and_then(|tp| Builder::new(tp).observe_self().include_kernel().build())
            .map_err(|e| eprintln!("system calls not counted (raw_syscalls:sys_enter: {e}); as root: mount -t tracefs nodev /sys/kernel/tracing"))
            .ok();
        let faults = Builder::new(Software::PAGE_FAULTS)
            .observe_self()
            .build()
            .map_err(|e| eprintln!("page faults from getrusage (software counter: {e})"))
            .ok();
        let mut counters = Counters { syscalls, faults };
        for c in [&mut counters.syscalls, &mut counters.faults]
            .into_iter()
            .flatten()
        {
            if c.enable().is_err() {
                eprintln!("a counter could not be enabled");
            }
        }
        counters
    }

    fn read(&mut self) -> (Option<u64>, u64) {
        let syscalls = self.syscalls.as_mut().and_then(|c| c.read().ok());
        let faults = match self.faults.as_mut().and_then(|c| c.read().ok()) {
            Some(n) => n,
            None => minor_faults(),
        };
        (syscalls, faults)
    }

    /// Runs `op` `k` times and returns what one run cost.
    fn measure(&mut self, k: usize, op: &mut dyn FnMut()) -> Sample {
        let (s0, f0) = self.read();
        let t = Instant::now();
        for _ in 0..k {
            op();
        }
        let nanos = t.elapsed().as_nanos() as f64;
        let (s1, f1) = self.read();
        let k = k as f64;
        Sample {
            nanos: nanos / k,
            syscalls: s0.zip(s1).map(|(a, b)| b.saturating_sub(a) as f64 / k),
            faults: f1.saturating_sub(f0) as f64 / k,
        }
    }
}

/// The `raw_syscalls:sys_enter` tracepoint, from tracefs where it is mounted.
fn syscall_tracepoint() -> std::io::Result<Tracepoint> {
    let mut last = None;
    for dir in ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"] {
        match std::fs::read_to_string(format!("{dir}/events/raw_syscalls/sys_enter/id")) {
            Ok(id) => match id.trim().parse() {
                Ok(id) => return Ok(Tracepoint::with_id(id)),
                Err(e) => last = Some(std::io::Error::other(e)),
            },
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no tracefs")))
}

fn minor_faults() -> u64 {
    // SAFETY: `getrusage` writes one `rusage` into the zeroed value it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer to a `rusage`; RUSAGE_THREAD is this thread.
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) };
    usage.ru_minflt as u64
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn percentile(v: &mut [f64], p: usize) -> f64 {
    v.sort_by(f64::total_cmp);
    let i = (v.len().saturating_sub(1) * p + 50) / 100;
    v.get(i).copied().unwrap_or(f64::NAN)
}

/// One measured cell: how to load it and how to open its library.
struct Case {
    name: String,
    version: String,
    kind: &'static str,
    bytes: Vec<u8>,
    library: PathBuf,
}

/// Alternates the two sides of `case` over `rounds` rounds and prints a table row.
fn run(
    counters: &mut Counters,
    system: &mut System<Hosted>,
    ns: crate_metadata::NamespaceId,
    case: &Case,
    rounds: usize,
) {
    let name = case.name.clone();
    let bytes = &case.bytes;
    let mut cell = || {
        let id = system
            .load(ns, CellSpec::named(&name), bytes)
            .expect("cell loads");
        system.unload(id).expect("cell unloads");
    };
    let library = &case.library;
    let mut open = || {
        let h = support::dlopen(library, libc::RTLD_NOW | libc::RTLD_LOCAL);
        support::dlclose(h);
    };
    let label = format!("{} {} | {}", case.name, case.version, case.kind);
    alternate(counters, &label, &mut cell, &mut open, rounds);
    if std::env::var_os("BENCH_FLOOR").is_some() {
        let id = system
            .load(ns, CellSpec::named(&name), bytes)
            .expect("cell loads");
        let cell = system.registry().cell(id).expect("loaded");
        let len = cell.stats.mapped_bytes as usize;
        system.unload(id).expect("cell unloads");
        run_floor(counters, case, len, &mut open, rounds);
    }
}

/// The floor rows (`BENCH_FLOOR=1`): what the memory work of a load and an unload of a mapping of
/// `len` bytes costs, and nothing else, against `dlopen`: with fresh pages (what any loader that
/// copies a cell into new memory pays at least), with a region kept from an earlier mapping
/// (what `Hosted` does when it has one of that length), and the latter's protection changes alone.
fn run_floor(
    counters: &mut Counters,
    case: &Case,
    len: usize,
    open: &mut dyn FnMut(),
    rounds: usize,
) {
    let bytes = &case.bytes;
    let kib = len >> 10;
    let label = format!("{} floor, fresh pages: {kib} KiB | memory only", case.name);
    alternate(
        counters,
        &label,
        &mut || fresh_floor(len, bytes),
        open,
        rounds,
    );
    let region = Region::new(len);
    let label = format!("{} floor, kept region: {kib} KiB | memory only", case.name);
    alternate(
        counters,
        &label,
        &mut || region.kept_floor(bytes),
        open,
        rounds,
    );
    let label = format!(
        "{} floor, its four mprotect alone: {kib} KiB | memory only",
        case.name
    );
    alternate(
        counters,
        &label,
        &mut || region.protections_floor(),
        open,
        rounds,
    );
}

/// A private read-write mapping of `len` bytes, populated.
fn map_populated(len: usize) -> *mut u8 {
    use libc::{MAP_ANONYMOUS, MAP_POPULATE, MAP_PRIVATE, PROT_READ, PROT_WRITE};
    let flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE;
    // SAFETY: a new private anonymous mapping without an address hint overlaps nothing.
    let at = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            PROT_READ | PROT_WRITE,
            flags,
            -1,
            0,
        )
    };
    assert_ne!(at, libc::MAP_FAILED, "mmap of {len} bytes");
    at.cast()
}

/// Copies `bytes` into the read-write mapping of `len` bytes at `at` (as much as fits), then
/// makes its first half executable and the next quarter read-only: a load's copy and its two
/// `mprotect`s.
///
/// # Safety
/// `at..at + len` is a read-write mapping that nothing else uses.
unsafe fn copy_and_protect(at: *mut u8, len: usize, bytes: &[u8]) {
    // SAFETY: within the mapping (the caller's promise); its pages lie inside it.
    unsafe {
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), at, bytes.len().min(len));
        protect_regions(at, len);
    }
}

/// A publish's two `mprotect` on the mapping of `len` bytes at `at`: its first half made read
/// and execute, the next quarter read only (a cell's text, then its read-only data and relro).
///
/// # Safety
/// `at..at + len` is a mapping of this process that nothing else uses.
unsafe fn protect_regions(at: *mut u8, len: usize) {
    use libc::{PROT_EXEC, PROT_READ};
    let half = (len / 2) & !4095;
    let quarter = ((len - half) / 2) & !4095;
    // SAFETY: page-aligned ranges inside the mapping (the caller's promise).
    unsafe {
        libc::mprotect(at.cast(), half, PROT_READ | PROT_EXEC);
        libc::mprotect(at.add(half).cast(), quarter, PROT_READ);
    }
}

/// A load and an unload's memory work on fresh pages: map (populated), copy, protect, unmap.
#[inline(never)]
fn fresh_floor(len: usize, bytes: &[u8]) {
    let at = map_populated(len);
    // SAFETY: the fresh mapping above, which nothing else knows of; unmapped whole afterwards.
    unsafe {
        copy_and_protect(at, len, bytes);
        libc::munmap(at.cast(), len);
    }
}

/// A region kept mapped across rounds, as `Hosted`'s pool keeps a released cell mapping.
struct Region {
    at: *mut u8,
    len: usize,
}

impl Region {
    fn new(len: usize) -> Region {
        let at = map_populated(len);
        // SAFETY: the mapping just made; it is made read-write again before each use.
        unsafe { libc::mprotect(at.cast(), len, libc::PROT_NONE) };
        Region { at, len }
    }

    /// A load and an unload's memory work on the kept region: made read-write and cleared,
    /// copied into and protected, then made inaccessible again.
    #[inline(never)]
    fn kept_floor(&self, bytes: &[u8]) {
        self.cycle(&mut |at, len| {
            // SAFETY: the region, read-write during `cycle`, which nothing else uses.
            unsafe {
                std::ptr::write_bytes(at, 0, len);
                std::ptr::copy_nonoverlapping(bytes.as_ptr(), at, bytes.len().min(len));
            }
        });
    }

    /// The four `mprotect` of [`Region::kept_floor`] alone: no clearing, no copy.
    fn protections_floor(&self) {
        self.cycle(&mut |_, _| {});
    }

    /// Makes the region read-write, lets `write` at it, protects it as a publish does, then
    /// makes it inaccessible again: four `mprotect`.
    fn cycle(&self, write: &mut dyn FnMut(*mut u8, usize)) {
        let (at, len) = (self.at, self.len);
        // SAFETY: the region is this value's own mapping, which nothing else uses.
        unsafe { libc::mprotect(at.cast(), len, libc::PROT_READ | libc::PROT_WRITE) };
        write(at, len);
        // SAFETY: as above.
        unsafe {
            protect_regions(at, len);
            libc::mprotect(at.cast(), len, libc::PROT_NONE);
        }
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: the region's own mapping, not used after this.
        unsafe { libc::munmap(self.at.cast(), self.len) };
    }
}

/// Alternates `cell` and `open` over `rounds` rounds and prints a table row headed `label`.
fn alternate(
    counters: &mut Counters,
    label: &str,
    cell: &mut dyn FnMut(),
    open: &mut dyn FnMut(),
    rounds: usize,
) {
    // Warm both, and size a round to about 3 ms of the slower side.
    let one = counters
        .measure(3, cell)
        .nanos
        .max(counters.measure(3, open).nanos);
    let k = ((3e6 / one) as usize).clamp(1, 500);
    let mut a = Vec::with_capacity(rounds);
    let mut b = Vec::with_capacity(rounds);
    for round in 0..rounds {
        if round % 2 == 0 {
            a.push(counters.measure(k, cell));
            b.push(counters.measure(k, open));
        } else {
            b.push(counters.measure(k, open));
            a.push(counters.measure(k, cell));
        }
    }
    let mut ratios: Vec<f64> = a.iter().zip(&b).map(|(x, y)| x.nanos / y.nanos).collect();
    let col =
        |v: &[Sample], f: fn(&Sample) -> f64| median(&mut v.iter().map(f).collect::<Vec<_>>());
    let calls = |v: &[Sample]| match v.iter().map(|s| s.syscalls).collect::<Option<Vec<_>>>() {
        Some(mut n) => format!("{:.0}", median(&mut n)),
        None => "-".into(),
    };
    println!(
        "| {label} | {:.1} µs | {:.1} µs | **{:.2}x** | {:.2}–{:.2}x | {} / {} | {:.0} / {:.0} | {}×{} |",
        col(&a, |s| s.nanos) / 1e3,
        col(&b, |s| s.nanos) / 1e3,
        median(&mut ratios),
        percentile(&mut ratios, 10),
        percentile(&mut ratios, 90),
        calls(&a),
        calls(&b),
        col(&a, |s| s.faults),
        col(&b, |s| s.faults),
        rounds,
        k,
    );
}

/// The cells a boot loads (kernel, library and dependency cells, every dependency cell loaded
/// even where the image links the crate), in its order, with their bytes and shared libraries.
fn boot_set() -> Vec<(ManifestEntry, Vec<u8>, PathBuf)> {
    let options = BootOptions {
        load_provided_dependencies: true,
        ..BootOptions::default()
    };
    let cells_dir = support::cells_dir();
    let kernel = Kernel::boot_with(cells_dir, &options).expect("boot");
    kernel
        .booted()
        .iter()
        .map(|b| {
            let bytes = std::fs::read(cells_dir.join(&b.entry.object)).expect("object");
            (b.entry.clone(), bytes, support::shared_library(&b.entry))
        })
        .collect()
}

/// Loads every cell of `set` into a new namespace, in order, then removes the namespace.
#[inline(never)]
fn boot_cells(system: &mut System<Hosted>, set: &[(ManifestEntry, Vec<u8>, PathBuf)]) {
    let ns = system.create_namespace("boot", None).expect("namespace");
    for (entry, bytes, _) in set {
        let spec = CellSpec {
            version: &entry.version,
            ..CellSpec::named(&entry.name)
        };
        system
            .load(ns, spec, bytes)
            .unwrap_or_else(|e| panic!("{} loads: {e}", entry.name));
    }
    system
        .remove_namespace(ns)
        .expect("the boot namespace goes");
}

/// `dlopen`s every shared library of `set`, in order (global, so that each binds to those before
/// it), then `dlclose`s them, last first.
#[inline(never)]
fn boot_dlopen(set: &[(ManifestEntry, Vec<u8>, PathBuf)], handles: &mut Vec<*mut libc::c_void>) {
    for (_, _, library) in set {
        handles.push(support::dlopen(library, libc::RTLD_NOW | libc::RTLD_GLOBAL));
    }
    while let Some(h) = handles.pop() {
        support::dlclose(h);
    }
}

/// The whole boot set, both ways, alternating.
fn run_boot(counters: &mut Counters, rounds: usize) {
    let set = boot_set();
    let bytes: usize = set.iter().map(|(_, b, _)| b.len()).sum();
    let mut system = System::new(Hosted::new().expect("hosted"), "nano_core");
    let mut handles = Vec::with_capacity(set.len());
    let label = format!(
        "boot: {} cells, {:.1} MiB of objects | all",
        set.len(),
        bytes as f64 / (1 << 20) as f64
    );
    alternate(
        counters,
        &label,
        &mut || boot_cells(&mut system, &set),
        &mut || boot_dlopen(&set, &mut handles),
        rounds,
    );
    for (entry, bytes, _) in &set {
        eprintln!("  {} {} ({} bytes)", entry.name, entry.version, bytes.len());
    }
}

/// What `entry` binds to, dependencies first: the kernel cells it depends on (each with what it
/// binds to) and its dependency cells.
fn prerequisites<'m>(manifest: &'m Manifest, entry: &ManifestEntry) -> Vec<&'m ManifestEntry> {
    let mut out: Vec<&ManifestEntry> = Vec::new();
    for name in &entry.depends_on {
        if let Some(cell) = manifest.get(CellKind::Kernel, name) {
            out.extend(prerequisites(manifest, cell));
            out.push(cell);
        }
    }
    out.extend(manifest.dependency_closure(entry).expect("closure"));
    out
}

fn main() {
    nano_core::logger::install(log::LevelFilter::Off);
    let filter: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let rounds = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(21);
    let manifest = support::manifest();
    let cells_dir = support::cells_dir();
    let _std = support::dlopen(&support::libstd_so(), libc::RTLD_NOW | libc::RTLD_GLOBAL);
    let mut system = System::new(Hosted::new().expect("hosted"), "nano_core");
    let kns = system.create_namespace("_kernel", None).expect("namespace");
    let ns = system
        .create_namespace("bench", Some(kns))
        .expect("namespace");
    let image_defines = |s: &str| {
        let name = std::ffi::CString::new(s).unwrap();
        // SAFETY: a valid C string; RTLD_DEFAULT searches the process's global scope.
        !unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) }.is_null()
    };
    let wanted = |e: &&ManifestEntry| {
        matches!(e.kind, CellKind::Kernel | CellKind::Deps)
            && filter.as_deref().is_none_or(|f| e.name.contains(f))
    };
    let mut measured: Vec<&ManifestEntry> = manifest.cells.iter().filter(wanted).collect();
    // Dependencies before their dependents: a crate is measured before a later case opens its
    // library for good (a second `dlopen` of an open library would only count a reference).
    measured.sort_by_cached_key(|e| prerequisites(&manifest, e).len());

    let mut counters = Counters::open();
    println!(
        "| cell | kind | load+unload | dlopen+dlclose | ratio (median) | ratio p10–p90 | syscalls (cell / dlopen) | page faults (cell / dlopen) | rounds×ops |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|");
    // The whole boot first, before any library is opened for good below.
    if filter.as_deref().is_none_or(|f| f == "boot") {
        run_boot(&mut counters, rounds);
        if filter.is_some() {
            return;
        }
    }
    for entry in measured {
        // What it binds to: loaded as cells into `_kernel` for the loader, and (dependency
        // cells) opened as shared libraries for `dlopen`; a kernel cell's cdylib links its own.
        for dep in prerequisites(&manifest, entry) {
            if system.cell_in(kns, &dep.name).is_some()
                || (dep.kind == CellKind::Deps && dep.provided_by(&mut |s| image_defines(s)))
            {
                continue;
            }
            let bytes = std::fs::read(cells_dir.join(&dep.object)).expect("object");
            system
                .load(kns, CellSpec::named(&dep.name), &bytes)
                .unwrap_or_else(|e| panic!("dependency {} loads: {e}", dep.name));
            if dep.kind == CellKind::Deps {
                support::dlopen_global(&support::shared_library(dep));
            }
        }
        if system.cell_in(kns, &entry.name).is_some() {
            eprintln!(
                "{}: already loaded as a dependency; not measured",
                entry.name
            );
            continue;
        }
        if entry.kind == CellKind::Deps && entry.provided_by(&mut |s| image_defines(s)) {
            eprintln!(
                "{}: the bench binary links this crate; measured anyway",
                entry.name
            );
        }
        let (kind, library) = match entry.kind {
            CellKind::Kernel => ("kernel", support::cell_cdylib(&entry.name)),
            _ => ("dep", support::shared_library(entry)),
        };
        let case = Case {
            name: entry.name.clone(),
            version: entry.version.clone(),
            kind,
            bytes: std::fs::read(cells_dir.join(&entry.object)).expect("object"),
            library,
        };
        run(&mut counters, &mut system, ns, &case, rounds);
    }
}
