//! The shell on the serial console, in the spirit of Theseus' shell commands: a task that reads
//! lines through the `uart` driver cell and answers each command, ending its answer with `ok` or
//! `error: <message>` (as the hosted control channel does), then a prompt.
//!
//! | command | what |
//! |---------|------|
//! | `ls` | every cell: version, where it came from, live or retired, address, size, dependents |
//! | `ns` | the namespaces and their cells |
//! | `deps <cell>` | what the live cell uses and what uses it, with slot counts |
//! | `swap <cell> [object]` | swap the live cell for `object` from the boot module, or its other version |
//! | `load <object>` | load an object of the boot module (`libs/greet.o`) into `_kernel` |
//! | `unload <cell>` | unload a live cell nothing binds to |
//! | `reclaim` | free the retired versions once every CPU passed a quiescent point |
//! | `cpus` | per CPU: APIC id, ticks, calls, quiescent points, switches, current task |
//! | `tasks` | the kernel's tasks and the `sched` cell's view of them |
//! | `stats` | calls, failures, swaps, gate waits, heap, frames, TLB shootdowns, the driver |
//! | `poweroff` | stop the workers, check the state exactly, power off |

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::sync::atomic::Ordering;

use crate_metadata::{CellState, Origin};

use crate::live::{self, kernel};
use crate::{cellmap, driver, percpu, print, println, quiesce, smp, task, us};

const PROMPT: &str = "cells> ";

/// The shell task: reads lines from the console and runs them until `poweroff`.
pub fn run() {
    println!(
        "shell: ready (commands: help, ls, ns, deps <cell>, swap <cell> [object], load <object>, unload <cell>, reclaim, cpus, tasks, stats, poweroff)"
    );
    print!("{PROMPT}");
    let mut line: Vec<u8> = Vec::new();
    let mut buf = [0u8; 64];
    let mut last_was_cr = false;
    loop {
        let n = driver::read(&mut buf);
        if n == 0 {
            task::sleep_us(1_000);
            continue;
        }
        for &byte in &buf[..n] {
            match byte {
                b'\r' | b'\n' => {
                    if byte == b'\n' && last_was_cr {
                        last_was_cr = false;
                        continue;
                    }
                    last_was_cr = byte == b'\r';
                    println!();
                    let text = String::from_utf8_lossy(&line).trim().to_string();
                    line.clear();
                    answer(&text);
                    print!("{PROMPT}");
                }
                0x08 | 0x7f => {
                    last_was_cr = false;
                    if line.pop().is_some() {
                        print!("\x08 \x08");
                    }
                }
                b if b.is_ascii_graphic() || b == b' ' => {
                    last_was_cr = false;
                    line.push(b);
                    print!("{}", char::from(b));
                }
                _ => last_was_cr = false,
            }
        }
    }
}

/// Runs `line` and ends the answer with `ok` or `error: ...`.
fn answer(line: &str) {
    if line.is_empty() {
        return;
    }
    match execute(line) {
        Ok(()) => println!("ok"),
        Err(e) => println!("error: {e}"),
    }
}

/// Runs commands as if typed (the default run shows a few).
pub fn script(commands: &[&str]) {
    for command in commands {
        println!("{PROMPT}{command}");
        answer(command);
    }
}

/// Runs one command.
pub fn execute(line: &str) -> Result<(), String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    match words.as_slice() {
        ["help"] => {
            println!("commands: ls, ns, deps <cell>, swap <cell> [object], load <object>, unload <cell>, reclaim, cpus, tasks, stats, poweroff");
            Ok(())
        }
        ["ls"] => ls(),
        ["ns"] => ns(),
        ["deps", cell] => deps(cell),
        ["swap", cell] => swap(cell, None),
        ["swap", cell, object] => swap(cell, Some(object)),
        ["load", object] => load(object),
        ["unload", cell] => unload(cell),
        ["reclaim"] => {
            for line in live::reclaim_retired()? {
                println!("{line}");
            }
            Ok(())
        }
        ["cpus"] => {
            cpus();
            Ok(())
        }
        ["tasks"] => {
            tasks();
            Ok(())
        }
        ["stats"] => {
            stats();
            Ok(())
        }
        ["poweroff"] => {
            let result = live::stop_and_check().map(|lines| {
                for line in lines {
                    println!("{line}");
                }
            });
            crate::finish(result)
        }
        [command, ..] => Err(format!(
            "unknown command or arguments: `{command}` (try help)"
        )),
        [] => Ok(()),
    }
}

fn ls() -> Result<(), String> {
    let b = kernel();
    let system = &b.k.system;
    let registry = system.registry();
    let mut live = 0;
    let mut retired = 0;
    for cell in registry.cells().filter(|c| c.origin == Origin::Object) {
        let state = match cell.state {
            CellState::Live => {
                live += 1;
                "live"
            }
            CellState::Retired => {
                retired += 1;
                "retired"
            }
        };
        println!(
            "{:<16} {:<7} {:<9} {:<8} at {:#x}, {:>6} bytes mapped, used by {}",
            cell.name,
            cell.version,
            cell.kind.map_or("?", |k| k.dir()),
            state,
            cell.base_addr,
            cell.stats.mapped_bytes,
            names(registry.dependents(cell.id), system)
        );
    }
    println!("{live} live cells, {retired} retired");
    Ok(())
}

/// Cell names of `ids`, or `nothing`.
fn names(
    ids: Vec<crate_metadata::CellId>,
    system: &loader::System<crate::platform::BarePlatform>,
) -> String {
    let names: Vec<String> = ids
        .into_iter()
        .filter_map(|id| system.registry().cell(id))
        .map(|c| c.name.clone())
        .collect();
    if names.is_empty() {
        "nothing".into()
    } else {
        names.join(", ")
    }
}

fn ns() -> Result<(), String> {
    let b = kernel();
    let system = &b.k.system;
    for ns in system.namespaces().iter() {
        let parent = ns
            .parent
            .and_then(|p| system.namespaces().get(p))
            .map_or(String::from("none"), |p| p.name.clone());
        let cells: Vec<String> = ns
            .cells
            .iter()
            .filter_map(|c| system.registry().cell(*c))
            .map(|c| {
                if c.state == CellState::Retired {
                    format!("{} (retired)", c.name)
                } else {
                    c.name.clone()
                }
            })
            .collect();
        println!(
            "namespace `{}` (parent: {parent}): {} cells, {} symbols: {}",
            ns.name,
            cells.len(),
            ns.symbol_count(),
            cells.join(", ")
        );
    }
    Ok(())
}

fn deps(name: &str) -> Result<(), String> {
    let b = kernel();
    let system = &b.k.system;
    let id = system
        .cell_in(b.k.ns, name)
        .ok_or_else(|| format!("no live cell `{name}`"))?;
    let registry = system.registry();
    let cell = registry.cell(id).ok_or("the cell vanished")?;
    let mut uses: BTreeMap<String, usize> = BTreeMap::new();
    for e in cell.uses.iter().filter_map(|e| registry.edge(*e)) {
        if let Some(p) = registry.cell(e.provider) {
            if p.id != id {
                *uses.entry(p.name.clone()).or_default() += 1;
            }
        }
    }
    let mut used_by: BTreeMap<String, usize> = BTreeMap::new();
    for e in cell.used_by.iter().filter_map(|e| registry.edge(*e)) {
        if let Some(d) = registry.cell(e.dependent) {
            if d.id != id {
                *used_by.entry(d.name.clone()).or_default() += 1;
            }
        }
    }
    let show = |m: &BTreeMap<String, usize>| {
        if m.is_empty() {
            return String::from("nothing");
        }
        m.iter()
            .map(|(n, c)| format!("{n} ({c} slots)"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!(
        "`{name}` {} from {}/: uses {}",
        cell.version,
        cell.kind.map_or("?", |k| k.dir()),
        show(&uses)
    );
    println!("`{name}` is used by {}", show(&used_by));
    println!(
        "a swap of `{name}` that moves state parks at its gate the calls from: {}",
        live::gate_cells(registry, id).join(", ")
    );
    Ok(())
}

fn swap(cell: &str, object: Option<&str>) -> Result<(), String> {
    let record = live::swap(cell, object)?;
    live::print_swap(&record);
    Ok(())
}

fn load(object: &str) -> Result<(), String> {
    let mut b = kernel();
    let id = live::load_object(&mut b, object)?;
    let cell = b.k.system.registry().cell(id).ok_or("the cell vanished")?;
    println!(
        "loaded `{}` {} into `_kernel` at {:#x}",
        cell.name, cell.version, cell.base_addr
    );
    Ok(())
}

fn unload(name: &str) -> Result<(), String> {
    let mut b = kernel();
    let ns = b.k.ns;
    let id =
        b.k.system
            .cell_in(ns, name)
            .ok_or_else(|| format!("no live cell `{name}`"))?;
    let free_before = b.k.system.platform().memory.free_frames();
    b.k.system.unload(id).map_err(|e| e.to_string())?;
    cellmap::refresh(&b.k.system);
    let free_after = b.k.system.platform().memory.free_frames();
    println!("unloaded `{name}`: cell frames free {free_before} -> {free_after}");
    Ok(())
}

fn cpus() {
    for c in percpu::online() {
        let ticks = c.ticks.load(Ordering::Relaxed);
        let in_cells = c.ticks_in_cells.load(Ordering::Relaxed);
        println!(
            "cpu{} apic {}: {} ticks ({}% in cell code), {} calls into cells, {} quiescent points, {} task switches, {} IPIs, {} gate waits, running {}",
            c.index(),
            c.apic_id.load(Ordering::Relaxed),
            ticks,
            (in_cells * 100).checked_div(ticks).unwrap_or(0),
            c.calls.load(Ordering::Relaxed),
            c.quiescent.load(Ordering::Relaxed),
            c.switches.load(Ordering::Relaxed),
            c.ipis.load(Ordering::Relaxed),
            c.gate_waits.load(Ordering::Relaxed),
            task::name_of(c.current.load(Ordering::Relaxed))
        );
    }
}

fn tasks() {
    for line in task::describe() {
        println!("{line}");
    }
    let cells = live::cells();
    let revision = cells.sched_revision.call(|f| f());
    println!("the policy, {revision}:");
    for line in cells.sched_tasks.call(|f| f()) {
        println!("  {line}");
    }
}

fn stats() {
    let calls = quiesce::sum(|c| c.calls.load(Ordering::Relaxed));
    let swaps = live::SWAPS.lock().clone();
    let gated = swaps.iter().filter(|s| s.gated).count();
    let longest_drain = swaps.iter().map(|s| s.drain_us).max().unwrap_or(0);
    let (used, free) = crate::heap_usage();
    let frames = kernel().k.system.platform().memory.free_frames();
    println!(
        "calls: {calls} into cells, {} failed; workers' iterations: {}",
        live::FAILED.load(Ordering::Relaxed),
        (0..live::WORKERS.load(Ordering::Relaxed))
            .map(|i| live::ITERATIONS[i].load(Ordering::Relaxed))
            .sum::<u64>()
    );
    println!(
        "swaps: {} ({gated} behind the gate, the longest drain {longest_drain} us); {} calls waited at a gate, the longest {} us; retired versions reclaimed: {}",
        swaps.len(),
        quiesce::GATE_WAITS.load(Ordering::Relaxed),
        quiesce::GATE_WAIT_MAX_US.load(Ordering::Relaxed),
        live::RECLAIMED.load(Ordering::Relaxed)
    );
    println!(
        "drains: {} probes of the other CPUs, {} answers \"inside\" (or none in 20 ms); {} interrupt-handler calls not made (the slot pointed at a gate, or at a version the cell map did not show yet)",
        quiesce::PROBES.load(Ordering::Relaxed),
        quiesce::FOUND_INSIDE.load(Ordering::Relaxed),
        quiesce::NOT_CALLED_AT_GATE.load(Ordering::Relaxed)
    );
    println!(
        "scheduler: {} picks by the sched cell, {} not runnable here (asked again), {} ticks with sched behind a gate",
        task::PICKS.load(Ordering::Relaxed),
        task::PICKS_SKIPPED.load(Ordering::Relaxed),
        task::PICKS_GATED.load(Ordering::Relaxed)
    );
    println!(
        "memory: heap {} KiB used, {} KiB free (the longest an allocation held its lock: {} us); {frames} cell frames free; {} TLB shootdowns",
        used / 1024,
        free / 1024,
        us(crate::heap::MAX_HOLD.load(Ordering::Relaxed)),
        smp::SHOOTDOWNS.load(Ordering::Relaxed)
    );
    println!(
        "faults: {} tasks ended by a fault",
        crate::fault::TASKS_ENDED.load(Ordering::Relaxed)
    );
    println!("uart: {}", driver::describe());
}
