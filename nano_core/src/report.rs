//! What the demo prints: the cells loaded, the namespaces, and the workload's results.

use std::fmt::Write;

use crate_metadata::{Cell, Origin, SectionKind};

use crate::kernel::Kernel;
use crate::workload::WorkloadReport;

/// The table of loaded cells.
pub fn cells(kernel: &Kernel) -> String {
    let mut out = String::new();
    let registry = kernel.system().registry();
    let _ = writeln!(
        out,
        "{:<12} {:<8} {:>9} {:>9} {:>8} {:>12} {:>5} {:>6} {:>10}  depends on",
        "cell", "version", "object", "mapped", "sections", "relocs", "got", "stubs", "load time"
    );
    for c in registry.cells().filter(|c| c.origin == Origin::Object) {
        let deps: Vec<String> = registry
            .dependencies(c.id)
            .iter()
            .filter_map(|d| registry.cell(*d))
            .map(|d| d.name.clone())
            .collect();
        let _ = writeln!(
            out,
            "{:<12} {:<8} {:>9} {:>9} {:>8} {:>12} {:>5} {:>6} {:>8.1}µs  {}",
            c.name,
            c.version,
            bytes(c.object_size),
            bytes(c.stats.mapped_bytes),
            c.sections.len(),
            // Applied by the load / in all (the rest `cargo cell build` applied: the prelink).
            format!(
                "{}/{}",
                c.stats.relocations,
                c.stats.relocations + c.stats.prelinked
            ),
            c.stats.got_slots,
            c.stats.stubs,
            c.stats.load_nanos as f64 / 1000.0,
            deps.join(", ")
        );
    }
    out
}

/// A cell's regions, for the detailed listing.
pub fn regions(cell: &Cell) -> String {
    let size = |k: &[SectionKind]| -> u64 {
        cell.sections
            .iter()
            .filter(|s| k.contains(&s.kind))
            .map(|s| s.size)
            .sum()
    };
    format!(
        "text {} · rodata {} · relro+got {} · data {} · tls {}",
        bytes(size(&[SectionKind::Text, SectionKind::Stubs])),
        bytes(size(&[
            SectionKind::ReadOnly,
            SectionKind::EhFrame,
            SectionKind::TlsData
        ])),
        bytes(size(&[SectionKind::RelRo, SectionKind::Got])),
        bytes(size(&[SectionKind::Data, SectionKind::Bss])),
        bytes(size(&[SectionKind::TlsData, SectionKind::TlsBss])),
    )
}

/// The namespace tree.
pub fn namespaces(kernel: &Kernel) -> String {
    let mut out = String::new();
    let registry = kernel.system().registry();
    for ns in kernel.namespaces().iter() {
        let parent = ns
            .parent
            .and_then(|p| kernel.namespaces().get(p))
            .map(|p| format!(" (parent {})", p.name))
            .unwrap_or_default();
        let names: Vec<String> = ns
            .cells
            .iter()
            .filter_map(|c| registry.cell(*c))
            .map(|c| format!("{} {}", c.name, c.version))
            .collect();
        let _ = writeln!(
            out,
            "{}{}: {} cells, {} symbols: {}",
            ns.name,
            parent,
            ns.cells.len(),
            ns.symbol_count(),
            names.join(", ")
        );
    }
    let edges = registry.edge_count();
    let to_base = registry
        .cell(crate_metadata::Registry::BASE)
        .map_or(0, |c| c.used_by.len());
    let _ = writeln!(
        out,
        "{edges} edges in all; {to_base} bind to the base image (core, alloc, std, log)"
    );
    out
}

/// The workload's results.
pub fn workload(r: &WorkloadReport) -> String {
    let mut out = String::new();
    let frames: Vec<String> = r
        .frames_allocated
        .iter()
        .map(|f| format!("{f:#x}"))
        .collect();
    let _ = writeln!(
        out,
        "frame_alloc  {} frames; {} free at start; allocated {}",
        r.frames_total,
        r.frames_free_before,
        frames.join(" ")
    );
    let _ = writeln!(
        out,
        "             double free refused: {}",
        r.double_free_error
    );
    let _ = writeln!(
        out,
        "sched        spawned tasks {:?}; next 8 picks (round robin): {:?}",
        r.spawned, r.schedule_order
    );
    for t in &r.tasks {
        let _ = writeln!(out, "             {t}");
    }
    let _ = writeln!(out, "memfs        / holds {:?}", r.root_listing);
    let _ = writeln!(
        out,
        "             /home/notes.txt read back: {} bytes, {} lines",
        r.notes.len(),
        r.notes.lines().count()
    );
    let _ = writeln!(out, "             missing file: {}", r.missing_file_error);
    let _ = writeln!(
        out,
        "             free frames now {} (files and task stacks hold frames)",
        r.frames_free_after
    );
    match &r.panic_caught {
        Some(msg) => {
            let _ = writeln!(
                out,
                "panic        caught by the host after unwinding through cell frames: {msg}"
            );
        }
        None => {
            let _ = writeln!(out, "panic        NOT caught");
        }
    }
    let _ = writeln!(
        out,
        "             file system still works afterwards: {}",
        r.fs_works_after_panic
    );
    let _ = writeln!(
        out,
        "klog         {} lines in the ring buffer; the last ones:",
        r.klog_lines
    );
    for l in &r.klog_tail {
        let _ = writeln!(out, "             {l}");
    }
    if !r.tls_per_thread.is_empty() {
        let _ = writeln!(
            out,
            "tls_stats    per-thread counters (thread_local! in a std cell): {:?}",
            r.tls_per_thread
        );
    }
    out
}

/// `n` bytes for people.
pub fn bytes(n: u64) -> String {
    if n >= 1 << 20 {
        format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64)
    } else if n >= 1 << 10 {
        format!("{:.1} KiB", n as f64 / 1024.0)
    } else {
        format!("{n} B")
    }
}

/// Runs the applications part of the demo and describes it: `hello` and `hola` side by side,
/// each with its own version of `greet`, then `crasher`, whose panic ends only itself.
pub fn applications(kernel: &mut Kernel) -> anyhow::Result<String> {
    use crate::apps::Outcome;
    let mut out = String::new();
    let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let hello = kernel.start_app("hello")?;
    let hola = kernel.start_app("hola")?;
    for crate::apps::AppInfo {
        id,
        name,
        namespace: ns,
        ..
    } in kernel.apps()
    {
        let cells: Vec<String> = kernel
            .app_namespace(id)
            .and_then(|n| kernel.namespaces().get(n))
            .map(|n| {
                n.cells
                    .iter()
                    .filter_map(|c| kernel.system().registry().cell(*c))
                    .map(|c| c.name.clone())
                    .collect()
            })
            .unwrap_or_default();
        let _ = writeln!(out, "{ns}: {name} started; its namespace holds {cells:?}");
    }
    kernel.spawn_app(hello, args(&["Ada", "Alan"]))?;
    kernel.spawn_app(hola, args(&["Grace"]))?;
    for (id, app) in [(hello, "hello"), (hola, "hola")] {
        let outcome = kernel.wait_app(id)?;
        let ns = kernel
            .app_namespace(id)
            .ok_or_else(|| anyhow::anyhow!("{app} vanished"))?;
        let output = if app == "hello" {
            kernel.bind_in(ns, cell_abi::hello::OUTPUT)?
        } else {
            kernel.bind_in(ns, cell_abi::hola::OUTPUT)?
        };
        let _ = writeln!(out, "{app}: {outcome:?}, said {:?}", (output.get())());
    }
    let revision = kernel.bind(cell_abi::REVISION.of("greet"))?;
    let _ = writeln!(out, "_kernel's greet is still {:?}", (revision.get())());
    for id in [hello, hola] {
        let cells = kernel.end_app(id)?;
        let _ = writeln!(
            out,
            "ended #{id}: namespace torn down, {cells} cell(s) unloaded"
        );
    }
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let crashed = kernel.run_app("crasher", &args(&["Bob"]));
    std::panic::set_hook(hook);
    match crashed? {
        Outcome::Panicked(msg) => {
            let _ = writeln!(out, "crasher panicked, caught at its entry point: {msg}");
        }
        other => {
            let _ = writeln!(out, "crasher did not panic: {other:?}");
        }
    }
    let _ = writeln!(
        out,
        "after it: {} namespace(s) left ({}), and the kernel still answers: {:?}",
        kernel.namespaces().iter().count(),
        kernel
            .namespaces()
            .iter()
            .map(|n| n.name.clone())
            .collect::<Vec<_>>()
            .join(", "),
        (revision.get())()
    );
    Ok(out)
}
