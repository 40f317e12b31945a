//! Generated systems for benchmarks and tests: `n` cells in one namespace, a seeded random DAG of
//! uses between them (a cell only uses cells with a smaller index), and uses of the base image
//! and the platform — the same model a live system produces, with live-looking addresses.

use crate_metadata::{
    Cell, CellId, CellKind, Edge, Origin, Registry, Section, SectionId, SectionKind, Sha256,
    SlotKind, Symbol, SymbolId, SymbolKind,
};
use namespace::{Export, Namespaces, SymbolRef};

use super::model::Snapshot;

/// What to generate.
#[derive(Clone, Copy, Debug)]
pub struct SynthOptions {
    /// Number of cells.
    pub cells: usize,
    /// The random seed.
    pub seed: u64,
    /// Exported functions per cell.
    pub exports: usize,
    /// At most this many providers per cell.
    pub max_providers: usize,
    /// Add uses from the first cells back to later ones, so the graph has cycles.
    pub cycles: bool,
}

impl Default for SynthOptions {
    fn default() -> Self {
        SynthOptions {
            cells: 500,
            seed: 5,
            exports: 12,
            max_providers: 8,
            cycles: false,
        }
    }
}

/// A small, seeded xorshift generator (no dependency, the same numbers everywhere).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// The mangled name of `cell::function` in the legacy scheme, with a made-up hash.
fn mangled(cell: &str, function: &str, hash: u64) -> String {
    format!(
        "_ZN{}{cell}{}{function}17h{hash:016x}E",
        cell.len(),
        function.len()
    )
}

/// Generates a live-looking snapshot.
pub fn generate(options: &SynthOptions) -> Snapshot {
    let mut rng = Rng(options.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let mut registry = Registry::new("nano_core");
    let mut namespaces = Namespaces::new();
    let Ok(ns) = namespaces.create("_kernel", None) else {
        unreachable!("a fresh Namespaces has no `_kernel` yet")
    };
    let base_names = ["memcpy", "memset", "_Unwind_Resume", "__rust_alloc"];
    let mut cells: Vec<CellId> = Vec::with_capacity(options.cells);
    for i in 0..options.cells {
        let name = format!("cell_{i:03}");
        let base = 0x7f00_0000_0000 + (i as u64) * 0x10_0000;
        let mut cell = Cell::new(&name, "0.1.0", Origin::Object);
        cell.kind = Some(CellKind::Kernel);
        cell.namespace = Some(ns);
        cell.base_addr = base;
        cell.object_size = 4096 + rng.below(60_000) as u64;
        // 64 hex digits of which the last 16 are random, as a `{:064x}` of a `u64`.
        let mut digest = [0u8; 32];
        digest[24..].copy_from_slice(&rng.next().to_be_bytes());
        cell.sha256 = Some(Sha256(digest));
        let mut addr = base;
        for f in 0..options.exports {
            let function = format!("func_{f}");
            let size = 16 + rng.below(400) as u64;
            cell.sections.push(Section {
                name: format!(".text.{}", mangled(&name, &function, rng.next())).into(),
                kind: SectionKind::Text,
                addr,
                size,
                align: 16,
            });
            cell.symbols.push(Symbol {
                name: mangled(&name, &function, rng.next()).into(),
                section: Some(SectionId(f as u32)),
                addr,
                size,
                kind: SymbolKind::Function,
                path_span: None,
            });
            addr += size.next_multiple_of(16);
        }
        let got_addr = addr.next_multiple_of(4096);
        cell.sections.push(Section {
            name: ".got".into(),
            kind: SectionKind::Got,
            addr: got_addr,
            size: 8 * 64,
            align: 8,
        });
        cell.stats.mapped_bytes = (got_addr + 4096 - base).next_multiple_of(4096);
        let exports: Vec<Export> = cell
            .symbols
            .iter()
            .enumerate()
            .map(|(s, sym)| Export {
                name: sym.name.clone(),
                target: SymbolRef {
                    cell: registry.next_cell_id(),
                    symbol: SymbolId(s as u32),
                    addr: sym.addr,
                    weak: false,
                },
            })
            .collect();
        let id = registry.add_cell(cell);
        let _ = namespaces.add_cell(ns, id, &exports);
        cells.push(id);
    }
    for (i, &dependent) in cells.iter().enumerate() {
        let mut providers: Vec<CellId> = Vec::new();
        if i > 0 {
            for _ in 0..=rng.below(options.max_providers) {
                providers.push(cells[rng.below(i)]);
            }
        }
        if options.cycles && i < 3 && cells.len() > 10 {
            providers.push(cells[cells.len() - 1 - i]);
        }
        providers.sort();
        providers.dedup();
        let got = SectionId(options.exports as u32);
        let got_addr = registry
            .cell(dependent)
            .and_then(|c| c.section(got))
            .map_or(0, |s| s.addr);
        let mut slot = 0;
        let mut add = |registry: &mut Registry, provider: CellId, symbol: SymbolId| {
            let edge = Edge {
                dependent,
                section: got,
                slot: got_addr + 8 * (slot % 64),
                kind: SlotKind::Got,
                addend: 0,
                provider,
                symbol,
            };
            slot += 1;
            let _ = registry.add_edge(edge);
        };
        for p in providers {
            for _ in 0..=rng.below(3) {
                let symbol = SymbolId(rng.below(options.exports) as u32);
                add(&mut registry, p, symbol);
            }
        }
        for _ in 0..2 {
            let name = base_names[rng.below(base_names.len())];
            let (provider, kind) = if name.starts_with("__rust") {
                (Registry::BASE, SymbolKind::Function)
            } else {
                (Registry::PLATFORM, SymbolKind::Function)
            };
            if let Some(symbol) = registry.intern_symbol(provider, name, 0x5555_0000, kind) {
                add(&mut registry, provider, symbol);
            }
        }
    }
    Snapshot::live(registry, namespaces)
}
