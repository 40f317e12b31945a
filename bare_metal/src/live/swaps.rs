//! Swaps under load: one swap of a live cell, its record, and the reclaim of retired versions.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crate_metadata::{CellId, CellKind, CellState, ManifestEntry};
use loader::{CellSpec, NewVersion, ReclaimError, StaticOutcome, SwapOptions, SwapRequest};

use crate::driver;
use crate::percpu;
use crate::quiesce;
use crate::sync::IrqMutex;
use crate::{cellmap, println, us};

use super::kernel;

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
    // The platform tells the loader that the swapper runs no cell code (`current_inside`): a
    // task at cell-call depth 0 cannot (and cannot move to another CPU where the depth differs:
    // at depth 0 every CPU reads 0).
    if percpu::depth() != 0 {
        return Err(format!(
            "swapping `{name}`: asked from inside a cell call; nothing changed"
        ));
    }
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
        sha256: Some(entry.sha256),
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
pub(super) static SWAP_NAMES: IrqMutex<Vec<String>> = IrqMutex::new(Vec::new());

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
