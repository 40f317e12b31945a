//! Synthetic cells: a generator of `n` small `no_std` + `alloc` crates with a seeded random
//! dependency DAG, built into real cell objects, to measure how loading grows with the number of
//! cells (issue 6; `nano_core/benches/scale.rs`).
//!
//! Not to be confused with [`crate::inspect::synth`], which makes a *model* of a loaded system
//! (a registry with made-up addresses) for the inspection tools. This module writes source code
//! that the compiler builds and the loader links.
//!
//! The pieces, each usable alone:
//!
//! - [`plan`]: the DAG and every random choice, from [`SynthOptions`] alone. Cell `i` is the crate
//!   `scell_<i>` (three digits at least) and depends on 0 to `max_deps` distinct cells with a
//!   smaller index, so index order is a topological order and the graph has no cycle.
//! - [`sources`]: the workspace's files as text. The same plan and [`Base`] give byte-identical
//!   files; nothing else (time, paths, environment) goes into them.
//! - [`write_workspace`]: writes the files under a directory (only those whose bytes changed, so
//!   that a second run leaves cargo nothing to rebuild) and removes cells of an earlier, larger
//!   plan.
//! - [`build_workspace`]: one `cargo build --message-format=json` of every cell (through the same
//!   runner as `cargo cell build`), then each cell's single object out of its rlib, returned in
//!   dependency order.
//!
//! Each crate is "realistic" in the ways that matter to the loader: a `pub static` read by its
//! dependents (a data edge), atomics in `.data` and `.bss`, a table in read-only data, heap use
//! (`Vec`, `String`, `Box`, a sort), a trait `Op` whose objects cross cell boundaries both ways
//! (a dependency's `Box<dyn Op>` called here, this cell's `&dyn dep::Op` called there, so vtables
//! of one cell hold functions of another), and an interface of `#[inline(never)] pub fn`s that
//! dependents call:
//!
//! | function | does |
//! |---|---|
//! | `calls() -> u64` | the number of calls into the cell's interface so far |
//! | `name() -> String` | the crate name, on the heap |
//! | `bump(by: u64) -> u64` | adds to the cell's state; returns the new state |
//! | `mix(x: u64) -> u64` | local work only: a sorted `Vec`, the table, the state |
//! | `make_op(k: u64) -> Box<dyn Op>` | one of the cell's operations, boxed |
//! | `apply_dyn(op: &dyn Op, x: u64) -> u64` | calls `op` through its vtable |
//! | `describe() -> String` | `"scell_007: scell_001 scell_004"`: its name and its dependencies' `name()`s |
//! | `run(x: u64) -> u64` | `mix`, then each dependency's `mix`, `make_op`, `apply_dyn` and `WEIGHTS`, then a chain of its own ops |
//!
//! No interface function calls a dependency's `run`, so one `run` makes a bounded number of calls
//! however deep the DAG is. Results do not depend on `calls()`, only on the arguments and `bump`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::cargo_build::{run_cargo, CargoRun};
use crate::files::write_if_changed;
use crate::objects::cell_object;
use crate::workspace::{CellPackage, Workspace};

/// Where the generated crates live, relative to the generated workspace's root. Under `cells/` so
/// that [`Workspace::load`] sees them as cells (of kind `libs`), as it sees a real workspace's.
pub const CELLS_DIR: &str = "cells/libs";

/// The prefix of every generated crate's name.
pub const PREFIX: &str = "scell_";

/// What to generate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SynthOptions {
    /// Number of cells.
    pub cells: usize,
    /// The random seed: everything random in the plan comes from it.
    pub seed: u64,
    /// At most this many dependencies per cell.
    pub max_deps: usize,
}

impl SynthOptions {
    /// `cells` cells from `seed`, each with up to 4 dependencies.
    pub fn new(cells: usize, seed: u64) -> SynthOptions {
        SynthOptions {
            cells,
            seed,
            max_deps: 4,
        }
    }
}

/// The whole generated system, before any file is written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// The options it came from.
    pub options: SynthOptions,
    /// The cells; cell `i` is `cells[i]`.
    pub cells: Vec<PlannedCell>,
}

impl Plan {
    /// The number of dependency edges between crates (not the loader's slot edges).
    pub fn crate_edges(&self) -> usize {
        self.cells.iter().map(|c| c.deps.len()).sum()
    }
}

/// One cell of a [`Plan`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedCell {
    /// The crate name, `scell_<i>`.
    pub name: String,
    /// Indices of the cells it depends on: distinct, ascending, all smaller than its own.
    pub deps: Vec<usize>,
    /// The constants of its read-only table (4 to 12 words).
    pub table: Vec<u64>,
    /// The start value of its state (`.data`).
    pub state: u64,
    /// A constant it mixes into its work.
    pub salt: u64,
    /// A rotation (1..=63).
    pub rot: u32,
    /// Length of the vector `mix` builds (8..=32).
    pub vec_len: usize,
    /// Number of its own operations `run` chains (1..=4).
    pub chain: usize,
    /// Its `pub static WEIGHTS` (four words) that dependents read.
    pub weights: [u64; 4],
}

/// The name of cell `i`: `scell_007`, `scell_123`, `scell_1234`.
pub fn cell_name(i: usize) -> String {
    format!("{PREFIX}{i:03}")
}

/// SplitMix64: a small deterministic generator (no dependency; the same numbers on every host).
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform enough in `0..n` for this purpose (`n` > 0).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// In `lo..=hi`.
    fn between(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }
}

/// Draws the DAG and every constant of every cell from `options`.
pub fn plan(options: &SynthOptions) -> Plan {
    let mut rng = SplitMix64(options.seed);
    let cells = (0..options.cells)
        .map(|i| {
            let count = rng.between(0, options.max_deps.min(i));
            let mut deps = BTreeSet::new();
            while deps.len() < count {
                deps.insert(rng.below(i));
            }
            let table_len = rng.between(4, 12);
            PlannedCell {
                name: cell_name(i),
                deps: deps.into_iter().collect(),
                table: (0..table_len).map(|_| rng.next()).collect(),
                state: rng.next() | 1,
                salt: rng.next(),
                rot: rng.between(1, 63) as u32,
                vec_len: rng.between(8, 32),
                chain: rng.between(1, 4),
                weights: [rng.next(), rng.next(), rng.next(), rng.next()],
            }
        })
        .collect();
    Plan {
        options: *options,
        cells,
    }
}

/// What the generated workspace takes from the workspace of the base image, so that its objects
/// are cells the base image can host: the same profile and the same toolchain (DESIGN §3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Base {
    /// The `[profile.dev]` and `[profile.release]` sections, verbatim.
    pub profile: String,
    /// The text of `rust-toolchain.toml`, when the workspace pins its toolchain.
    pub toolchain: Option<String>,
}

impl Base {
    /// Reads the profile sections of `<root>/Cargo.toml` and `<root>/rust-toolchain.toml`.
    pub fn of_workspace(root: &Path) -> Result<Base> {
        let manifest = root.join("Cargo.toml");
        let text = std::fs::read_to_string(&manifest)
            .with_context(|| format!("cannot read {}", manifest.display()))?;
        let profile = profile_sections(&text);
        if profile.is_empty() {
            bail!(
                "{} has no [profile.dev] or [profile.release]: the generated cells would not \
                 be built like the base image",
                manifest.display()
            );
        }
        let toolchain = std::fs::read_to_string(root.join("rust-toolchain.toml")).ok();
        Ok(Base { profile, toolchain })
    }
}

/// The `[profile.dev]` and `[profile.release]` tables of a `Cargo.toml`, each up to the next
/// table header, verbatim.
pub fn profile_sections(cargo_toml: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    for line in cargo_toml.lines() {
        if line.starts_with('[') {
            inside = matches!(line.trim(), "[profile.dev]" | "[profile.release]");
        }
        if inside {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// The files of the generated workspace, by path relative to its root: `Cargo.toml`,
/// `rust-toolchain.toml` (when `base` has one), and for each cell `cells/libs/<name>/Cargo.toml`
/// and `cells/libs/<name>/src/lib.rs`.
pub fn sources(plan: &Plan, base: &Base) -> BTreeMap<PathBuf, String> {
    let mut files = BTreeMap::new();
    let o = plan.options;
    files.insert(
        PathBuf::from("Cargo.toml"),
        format!(
            "# Generated by build_tools::synth_cells: {} cells, seed {}, at most {} dependencies \
             each. Do not edit.\n[workspace]\nresolver = \"2\"\nmembers = [\"{CELLS_DIR}/*\"]\n\n\
             # Copied from the base image's workspace: cells must be built like it (DESIGN §3).\n{}",
            o.cells, o.seed, o.max_deps, base.profile
        ),
    );
    if let Some(toolchain) = &base.toolchain {
        files.insert(PathBuf::from("rust-toolchain.toml"), toolchain.clone());
    }
    for (i, cell) in plan.cells.iter().enumerate() {
        let dir = Path::new(CELLS_DIR).join(&cell.name);
        files.insert(dir.join("Cargo.toml"), cargo_toml(plan, cell));
        files.insert(dir.join("src/lib.rs"), lib_rs(plan, i));
    }
    files
}

fn cargo_toml(plan: &Plan, cell: &PlannedCell) -> String {
    let mut out = format!(
        "[package]\nname = \"{}\"\nversion = \"0.1.0\"\nedition = \"2021\"\npublish = false\n\n\
         [dependencies]\n",
        cell.name
    );
    for &d in &cell.deps {
        let dep = &plan.cells[d].name;
        let _ = writeln!(out, "{dep} = {{ path = \"../{dep}\" }}");
    }
    out
}

/// The source of cell `i`. See the module documentation for what each function does.
fn lib_rs(plan: &Plan, i: usize) -> String {
    let c = &plan.cells[i];
    let deps: Vec<&str> = c
        .deps
        .iter()
        .map(|&d| plan.cells[d].name.as_str())
        .collect();
    let table_len = c.table.len();
    let mut s = String::new();
    let w = &mut s;
    let _ = writeln!(
        w,
        "//! `{}`: synthetic cell {i} of {} (seed {}), generated by `build_tools::synth_cells`.",
        c.name, plan.options.cells, plan.options.seed
    );
    if deps.is_empty() {
        let _ = writeln!(w, "//! Uses no other cell.");
    } else {
        let _ = writeln!(w, "//! Uses {}.", deps.join(", "));
    }
    let _ = write!(
        w,
        "#![no_std]\n\nextern crate alloc;\n\n\
         use alloc::boxed::Box;\nuse alloc::string::String;\nuse alloc::vec::Vec;\n\
         use core::sync::atomic::{{AtomicU64, Ordering}};\n\n\
         /// The crate name (read-only data).\npub static NAME: &str = \"{}\";\n\
         /// Read by the cells that use this one (a data edge).\n\
         pub static WEIGHTS: [u64; 4] = [{:#x}, {:#x}, {:#x}, {:#x}];\n\
         /// Constants of `mix` (read-only data).\nstatic TABLE: [u64; {table_len}] = [",
        c.name, c.weights[0], c.weights[1], c.weights[2], c.weights[3]
    );
    for (k, t) in c.table.iter().enumerate() {
        let sep = if k == 0 { "" } else { ", " };
        let _ = write!(w, "{sep}{t:#x}");
    }
    let _ = write!(
        w,
        "];\n\
         /// The cell's state (`.data`: it starts non-zero).\n\
         static STATE: AtomicU64 = AtomicU64::new({state:#x});\n\
         /// Calls into the interface (`.bss`).\nstatic CALLS: AtomicU64 = AtomicU64::new(0);\n\n\
         /// An operation on a word; cells hand each other theirs as trait objects.\n\
         pub trait Op {{\n    /// Applies the operation to `x`.\n    fn apply(&self, x: u64) -> u64;\n}}\n\n\
         struct Mul(u64);\n\n\
         impl Op for Mul {{\n    fn apply(&self, x: u64) -> u64 {{\n        \
         x.wrapping_mul(self.0) ^ TABLE[(x % {table_len}) as usize]\n    }}\n}}\n\n\
         struct Rot(u32);\n\n\
         impl Op for Rot {{\n    fn apply(&self, x: u64) -> u64 {{\n        \
         x.rotate_left(self.0).wrapping_add({salt:#x})\n    }}\n}}\n\n\
         /// Boxed operations applied in turn.\nstruct Chain(Vec<Box<dyn Op>>);\n\n\
         impl Op for Chain {{\n    fn apply(&self, x: u64) -> u64 {{\n        \
         self.0.iter().fold(x, |acc, op| op.apply(acc))\n    }}\n}}\n\n",
        state = c.state,
        salt = c.salt,
    );
    if !deps.is_empty() {
        let _ = writeln!(
            w,
            "/// This cell's operation, handed to the cells it uses through their `Op` traits.\n\
             struct Local(u64);\n"
        );
        for (k, dep) in deps.iter().enumerate() {
            let _ = writeln!(
                w,
                "impl {dep}::Op for Local {{\n    fn apply(&self, x: u64) -> u64 {{\n        \
                 (x ^ self.0).rotate_left({})\n    }}\n}}\n",
                (k % 63) + 1
            );
        }
    }
    let _ = write!(
        w,
        "fn enter() {{\n    CALLS.fetch_add(1, Ordering::Relaxed);\n}}\n\n\
         /// Calls into this cell's interface so far.\n#[inline(never)]\n\
         pub fn calls() -> u64 {{\n    CALLS.load(Ordering::Relaxed)\n}}\n\n\
         /// The crate name, on the heap.\n#[inline(never)]\n\
         pub fn name() -> String {{\n    enter();\n    String::from(NAME)\n}}\n\n\
         /// Adds `by` to the state; returns the new state.\n#[inline(never)]\n\
         pub fn bump(by: u64) -> u64 {{\n    enter();\n    \
         STATE.fetch_add(by, Ordering::Relaxed).wrapping_add(by)\n}}\n\n\
         /// Local work: a sorted vector on the heap, the table and the state.\n#[inline(never)]\n\
         pub fn mix(x: u64) -> u64 {{\n    enter();\n    \
         let mut v: Vec<u64> = (0..{vec_len}u64)\n        \
         .map(|k| TABLE[(k % {table_len}) as usize].wrapping_mul(x ^ k))\n        .collect();\n    \
         v.sort_unstable();\n    \
         let state = STATE.load(Ordering::Relaxed);\n    \
         v.iter().fold(state, |acc, w| acc.rotate_left({rot}) ^ w)\n}}\n\n\
         /// One of this cell's operations, boxed: its vtable is in this cell.\n#[inline(never)]\n\
         pub fn make_op(k: u64) -> Box<dyn Op> {{\n    enter();\n    match k % 3 {{\n        \
         0 => Box::new(Mul(k | 1)),\n        \
         1 => Box::new(Rot((k % 63) as u32 + 1)),\n        \
         _ => Box::new(Chain(alloc::vec![Box::new(Mul(k | 1)), Box::new(Rot({rot}))])),\n    \
         }}\n}}\n\n\
         /// Applies `op`, which may be another cell's, through its vtable.\n#[inline(never)]\n\
         pub fn apply_dyn(op: &dyn Op, x: u64) -> u64 {{\n    enter();\n    \
         op.apply(x ^ {salt:#x}).rotate_right({rot})\n}}\n\n\
         /// This cell's name and the names of the cells it uses, separated by spaces.\n\
         #[inline(never)]\npub fn describe() -> String {{\n    enter();\n    \
         let mut s = name();\n    s.push(':');\n",
        vec_len = c.vec_len,
        rot = c.rot,
        salt = c.salt,
    );
    for dep in &deps {
        let _ = writeln!(w, "    s.push(' ');\n    s.push_str(&{dep}::name());");
    }
    let _ = write!(
        w,
        "    s\n}}\n\n\
         /// Local work, then each used cell's interface and trait objects both ways, then a\n\
         /// chain of this cell's own operations.\n#[inline(never)]\n\
         pub fn run(x: u64) -> u64 {{\n    enter();\n    let {mutable}acc = mix(x);\n",
        mutable = if deps.is_empty() { "" } else { "mut " },
    );
    if !deps.is_empty() {
        let _ = writeln!(w, "    let local = Local({:#x});", c.salt.rotate_left(17));
    }
    for dep in &deps {
        let _ = writeln!(
            w,
            "    acc = acc.wrapping_add({dep}::mix(acc));\n    \
             acc ^= {dep}::make_op(acc).apply(x);\n    \
             acc = {dep}::apply_dyn(&local, acc);\n    \
             acc ^= {dep}::WEIGHTS[(acc % 4) as usize];"
        );
    }
    let _ = write!(
        w,
        "    let ops: Vec<Box<dyn Op>> = (0..{chain}u64)\n        \
         .map(|k| make_op(acc.wrapping_add(k)))\n        .collect();\n    \
         Chain(ops).apply(acc)\n}}\n",
        chain = c.chain,
    );
    s
}

/// Writes the workspace of `plan` under `out_dir`: each file only when its bytes changed, so that
/// cargo sees an unchanged workspace as fresh. Cell directories under `cells/libs/` that the plan
/// does not have (left by a larger plan) are removed.
pub fn write_workspace(plan: &Plan, base: &Base, out_dir: &Path) -> Result<()> {
    for (rel, text) in sources(plan, base) {
        write_if_changed(&out_dir.join(rel), text.as_bytes())?;
    }
    let cells_dir = out_dir.join(CELLS_DIR);
    let planned: BTreeSet<&str> = plan.cells.iter().map(|c| c.name.as_str()).collect();
    for entry in std::fs::read_dir(&cells_dir)
        .with_context(|| format!("cannot read {}", cells_dir.display()))?
    {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(PREFIX) && !planned.contains(name.as_str()) {
            std::fs::remove_dir_all(entry.path())
                .with_context(|| format!("cannot remove {}", entry.path().display()))?;
        }
    }
    Ok(())
}

/// One built cell.
#[derive(Clone, Debug)]
pub struct BuiltCell {
    /// The crate name.
    pub name: String,
    /// Its single relocatable object, loadable as a cell.
    pub object: Vec<u8>,
    /// The cells it depends on, sorted by name.
    pub depends_on: Vec<String>,
}

/// Builds every cell of the workspace at `dir` (written by [`write_workspace`], or any workspace
/// whose cells are under `cells/<kind>/`) with one `cargo build --message-format=json` into
/// `<dir>/target`, and returns each cell's object in dependency order: every cell comes after the
/// cells it depends on (ties by name). With `quiet`, cargo prints nothing unless it fails.
pub fn build_workspace(dir: &Path, quiet: bool) -> Result<Vec<BuiltCell>> {
    let target = dir.join("target");
    let ws = Workspace::load(dir, Some(&target))
        .with_context(|| format!("cannot read the generated workspace {}", dir.display()))?;
    if ws.cells.is_empty() {
        bail!("{} has no cells under cells/<kind>/", dir.display());
    }
    let order = dependency_order(&ws.cells)?;
    let artifacts = run_cargo(&CargoRun {
        ws: &ws,
        packages: ws.cells.iter().map(|c| c.id.as_str()).collect(),
        target_dir: Some(&target),
        quiet,
        crate_label: &|name| name.to_owned(),
        path_rewrites: &[],
    })?;
    order
        .into_iter()
        .map(|cell| {
            let rlib = artifacts
                .rlibs
                .get(&cell.id)
                .with_context(|| format!("cargo reported no rlib for `{}`", cell.name))?;
            let archive =
                std::fs::read(rlib).with_context(|| format!("cannot read {}", rlib.display()))?;
            Ok(BuiltCell {
                name: cell.name.clone(),
                object: cell_object(&archive, &cell.name)?,
                depends_on: cell.depends_on.clone(),
            })
        })
        .collect()
}

/// The cells ordered so that each comes after its dependencies (Kahn's algorithm, smallest name
/// first among the ready ones). Fails on a cycle.
fn dependency_order(cells: &[CellPackage]) -> Result<Vec<&CellPackage>> {
    let by_name: BTreeMap<&str, &CellPackage> =
        cells.iter().map(|c| (c.name.as_str(), c)).collect();
    let mut waiting: BTreeMap<&str, usize> = BTreeMap::new();
    let mut users: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for c in cells {
        let deps: Vec<&str> = c
            .depends_on
            .iter()
            .map(String::as_str)
            .filter(|d| by_name.contains_key(d))
            .collect();
        waiting.insert(c.name.as_str(), deps.len());
        for d in deps {
            users.entry(d).or_default().push(c.name.as_str());
        }
    }
    let mut ready: BTreeSet<&str> = waiting
        .iter()
        .filter(|(_, n)| **n == 0)
        .map(|(name, _)| *name)
        .collect();
    let mut order = Vec::with_capacity(cells.len());
    while let Some(name) = ready.pop_first() {
        order.push(by_name[name]);
        for user in users.get(name).into_iter().flatten() {
            let n = waiting.get_mut(user).expect("every user is a cell");
            *n -= 1;
            if *n == 0 {
                ready.insert(user);
            }
        }
    }
    if order.len() != cells.len() {
        let stuck: Vec<&str> = waiting
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(name, _)| *name)
            .collect();
        bail!(
            "the cells' dependencies form a cycle through {}",
            stuck.join(", ")
        );
    }
    Ok(order)
}

/// A generated system, written and built.
#[derive(Clone, Debug)]
pub struct SynthSystem {
    /// What was generated.
    pub plan: Plan,
    /// The built cells, in dependency order.
    pub cells: Vec<BuiltCell>,
}

/// [`plan`], [`write_workspace`] under `out_dir` and [`build_workspace`]: the cells of
/// `options`, built with the profile and toolchain of the workspace at `base_root`. A second call
/// with the same arguments rewrites nothing and cargo rebuilds nothing.
pub fn generate_and_build(
    options: &SynthOptions,
    base_root: &Path,
    out_dir: &Path,
    quiet: bool,
) -> Result<SynthSystem> {
    let plan = plan(options);
    let base = Base::of_workspace(base_root)?;
    write_workspace(&plan, &base, out_dir)?;
    let cells = build_workspace(out_dir, quiet)?;
    Ok(SynthSystem { plan, cells })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix_matches_the_reference_values() {
        // The first outputs of SplitMix64 seeded with 0 (Vigna's reference implementation).
        let mut r = SplitMix64(0);
        assert_eq!(r.next(), 0xe220_a839_7b1d_cdaf);
        assert_eq!(r.next(), 0x6e78_9e6a_a1b9_65f4);
    }

    #[test]
    fn profile_sections_keeps_only_the_two_profiles() {
        let text = "[workspace]\nmembers = []\n[profile.dev]\nopt-level = 3\n\n\
                    [profile.bench]\ndebug = true\n[profile.release]\nlto = false\n";
        assert_eq!(
            profile_sections(text),
            "[profile.dev]\nopt-level = 3\n\n[profile.release]\nlto = false\n"
        );
    }

    fn pkg(name: &str, deps: &[&str]) -> CellPackage {
        CellPackage {
            id: name.into(),
            package: name.into(),
            name: name.into(),
            version: "0.1.0".into(),
            kind: crate_metadata::CellKind::Libs,
            dir: PathBuf::from(name),
            depends_on: deps.iter().map(|d| d.to_string()).collect(),
            brings: Vec::new(),
            app_interface: None,
            grants: Vec::new(),
        }
    }

    #[test]
    fn dependency_order_puts_providers_first_and_refuses_cycles() {
        let cells = [pkg("c", &["a"]), pkg("a", &[]), pkg("b", &["c", "a"])];
        let order: Vec<&str> = dependency_order(&cells)
            .unwrap()
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(order, ["a", "c", "b"]);
        let cycle = [pkg("a", &["b"]), pkg("b", &["a"]), pkg("z", &[])];
        let err = dependency_order(&cycle).unwrap_err().to_string();
        assert!(err.contains("cycle through a, b"), "{err}");
    }
}
