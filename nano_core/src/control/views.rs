//! The views: `ls`, `ns`, `status` and `apps` as text lines.

use crate_metadata::{CellState, NamespaceId, Origin, Sha256};

use super::load::Load;
use crate::kernel::Kernel;
use crate::reclaim::ReclaimPass;
use crate::report::bytes;

/// The first 12 hex digits of a SHA-256, or `-`.
pub fn short_sha(sha: Option<Sha256>) -> String {
    sha.map_or_else(|| "-".into(), |s| s.short().to_string())
}

fn namespace_name(kernel: &Kernel, ns: Option<NamespaceId>) -> String {
    ns.and_then(|id| kernel.namespaces().get(id))
        .map(|n| n.name.clone())
        .unwrap_or_else(|| "-".into())
}

/// `ls`: every cell object in the registry, live and retired.
pub fn ls(kernel: &Kernel) -> Vec<String> {
    let registry = kernel.system().registry();
    let mut out = vec![format!(
        "{:<12} {:<8} {:<8} {:<10} {:<8} {:>10} {:>10}  sha256",
        "cell", "version", "id", "namespace", "state", "mapped", "dependents"
    )];
    for c in registry.cells().filter(|c| c.origin == Origin::Object) {
        out.push(format!(
            "{:<12} {:<8} {:<8} {:<10} {:<8} {:>10} {:>10}  {}",
            c.name,
            c.version,
            c.id.to_string(),
            namespace_name(kernel, c.namespace),
            match c.state {
                CellState::Live => "live",
                CellState::Retired => "retired",
            },
            bytes(c.stats.mapped_bytes),
            registry.dependents(c.id).len(),
            short_sha(c.sha256)
        ));
    }
    out
}

/// `ns`: the namespace tree, each namespace with its cells and their versions.
pub fn ns(kernel: &Kernel) -> Vec<String> {
    let namespaces = kernel.namespaces();
    let registry = kernel.system().registry();
    let mut out = Vec::new();
    // Depth-first from the roots; `seen` guards against a malformed tree.
    let mut stack: Vec<(NamespaceId, usize)> = namespaces
        .iter()
        .filter(|n| n.parent.is_none_or(|p| namespaces.get(p).is_none()))
        .map(|n| (n.id, 0))
        .collect();
    stack.reverse();
    let mut seen = Vec::new();
    while let Some((id, depth)) = stack.pop() {
        let Some(n) = namespaces.get(id) else {
            continue;
        };
        if seen.contains(&id) {
            continue;
        }
        seen.push(id);
        let indent = "  ".repeat(depth);
        out.push(format!(
            "{indent}{}: {} cells, {} symbols",
            n.name,
            n.cells.len(),
            n.symbol_count()
        ));
        for c in n.cells.iter().filter_map(|c| registry.cell(*c)) {
            out.push(format!("{indent}  {} {} ({})", c.name, c.version, c.id));
        }
        let children: Vec<(NamespaceId, usize)> = namespaces
            .iter()
            .filter(|c| c.parent == Some(id))
            .map(|c| (c.id, depth + 1))
            .collect();
        stack.extend(children.into_iter().rev());
    }
    let retired = kernel.system().retired();
    if !retired.is_empty() {
        let names: Vec<String> = retired
            .iter()
            .filter_map(|id| registry.cell(*id))
            .map(|c| format!("{} {} ({})", c.name, c.version, c.id))
            .collect();
        out.push(format!("retired, still mapped: {}", names.join(", ")));
    }
    out.push(format!("{} edges in all", registry.edge_count()));
    out
}

/// `status`: the load's counters, the epochs and what reclaiming left mapped.
pub fn status(kernel: &Kernel, load: Option<&Load>) -> Vec<String> {
    let mut out = Vec::new();
    match load {
        Some(load) => {
            let s = load.status();
            out.push(format!("load: {} threads running", s.threads));
            out.push(format!("calls {}", s.calls));
            out.push(format!("failed {}", s.failed));
            for p in &s.probes {
                out.push(format!(
                    "  {:<28} {} calls, {} failed",
                    p.name, p.calls, p.failed
                ));
            }
            if let Some(f) = &s.last_failure {
                out.push(format!("last failure: {f}"));
            }
        }
        None => {
            out.push("load: none (start nano_core with --load N)".into());
            out.push("calls 0".into());
            out.push("failed 0".into());
        }
    }
    let epochs = kernel.system().epochs();
    out.push(format!(
        "epoch {}, {} threads registered; {} retired versions still mapped",
        epochs.current(),
        epochs.registered(),
        kernel.system().retired().len()
    ));
    let (mappings, mapped) = kernel.system().platform().live_mappings();
    let (kept, kept_bytes) = kernel.system().platform().pooled_mappings();
    out.push(format!(
        "loader mappings {mappings} ({mapped} bytes); {kept} released kept for reuse ({kept_bytes} bytes)"
    ));
    let reclaimed = kernel.reclaimed();
    out.push(format!(
        "reclaimed {} retired versions ({} unmapped)",
        reclaimed.cells,
        bytes(reclaimed.unmapped)
    ));
    out
}

/// `reclaim`: what a pass freed, what it kept and why, and the totals.
pub fn reclaim(kernel: &Kernel, pass: &ReclaimPass) -> Vec<String> {
    let mut out = Vec::new();
    for r in &pass.reclaimed {
        out.push(format!(
            "freed {} {}: {} unmapped{}",
            r.name,
            r.id,
            bytes(r.unmapped),
            if r.on_promise {
                " (its statics live on in a newer version: freed on its plain-state promise)"
            } else {
                ""
            }
        ));
    }
    for k in &pass.kept {
        out.push(format!("kept {} {}: {}", k.name, k.id, k.why));
    }
    let total = kernel.reclaimed();
    out.push(format!(
        "freed {} now; {} retired versions still mapped; reclaimed {} since boot ({} unmapped)",
        pass.reclaimed.len(),
        kernel.system().retired().len(),
        total.cells,
        bytes(total.unmapped)
    ));
    out
}

/// `apps`: every application started and not ended, with where it is.
pub fn apps(kernel: &Kernel) -> Vec<String> {
    kernel
        .apps()
        .into_iter()
        .map(|a| format!("#{} {} in {}: {}", a.id, a.name, a.namespace, a.state))
        .collect()
}
