//! The files `cargo cell new` writes, one template per file and kind; `__NAME__` stands for the
//! cell's name. Each kind follows the conventions of the project's own cells of that kind
//! (README, "Writing a cell"): `no_std` + `alloc`, an interface of non-generic `#[inline(never)]`
//! functions declared in `cell-abi` and checked against it at compile time, state in `pub static`s,
//! `init` for a kernel cell, `main` and `deinit` for an application.

use super::Kind;

/// The cell's `Cargo.toml`.
pub fn cargo_toml(kind: Kind) -> String {
    let (description, extra_deps, metadata) = match kind {
        Kind::Kernel => (
            "Kernel cell: __NAME__ (made by `cargo cell new kernel __NAME__`)",
            "",
            "# A kernel cell offers applications nothing unless it says so, e.g.\n\
             # app_interface = [\"__NAME__::total\"]\n",
        ),
        Kind::Lib => (
            "Library cell: __NAME__ (made by `cargo cell new lib __NAME__`)",
            "",
            "# What applications may bind to (crate_metadata::policy).\n\
             app_interface = [\"__NAME__::hello\", \"__NAME__::calls\"]\n",
        ),
        Kind::App => (
            "Application cell: __NAME__ (made by `cargo cell new app __NAME__`)",
            "log.workspace = true\nspin.workspace = true\n",
            "# A library cell of its own version, loaded into its namespace, e.g.\n\
             # brings = [\"greet\"]\n",
        ),
    };
    format!(
        r#"[package]
name = "__NAME__"
version = "0.1.0"
description = "{description}"
edition.workspace = true
license.workspace = true
rust-version.workspace = true

[lints]
workspace = true

[dependencies]
# The interface this cell implements, checked at compile time (src/lib.rs, at the end).
cell-abi.workspace = true
{extra_deps}
# Its test (tests/loads.rs) boots nano_core on the built cells; build.rs lets the test binary
# export its symbols to the cells, as nano_core does.
[dev-dependencies]
build-tools = {{ path = "../../../build-tools" }}
nano_core = {{ path = "../../../nano_core" }}
log.workspace = true

[package.metadata.cell]
{metadata}"#
    )
}

/// `build.rs`: the test binary hosts cells, so it exports its symbols (`nano_core/build.rs`).
pub const BUILD_RS: &str = r#"//! The test binary (tests/loads.rs) hosts cells: it exports its symbols (`core`, `alloc`, `std`,
//! `log`) in `.dynsym` so that the cells bind to them, as `nano_core`'s binaries do.
fn main() {
    println!("cargo:rustc-link-arg-tests=-Wl,--export-dynamic");
    println!("cargo:rerun-if-changed=build.rs");
}
"#;

/// `src/lib.rs`.
pub fn lib_rs(kind: Kind) -> &'static str {
    match kind {
        Kind::Kernel => KERNEL_LIB,
        Kind::Lib => LIB_LIB,
        Kind::App => APP_LIB,
    }
}

const KERNEL_LIB: &str = r#"//! `__NAME__`: a kernel cell (made by `cargo cell new kernel __NAME__`).
//!
//! Loaded at boot into `_kernel`, after the cells it depends on; `nano_core` then calls
//! [`init`]. Its interface is declared in `cell_abi::__NAME__` and checked at the end of this file;
//! every function of it is `pub`, non-generic and `#[inline(never)]`, so that it exists in this
//! cell's object and every call to it goes through a slot that a live swap moves. Its state lives
//! in `pub static`s, so a new version (`cells/upgrades/__NAME__`) keeps it.
//!
//! Interface: [`init`], [`started`], [`record`], [`total`], [`revision`].

#![cfg_attr(not(test), no_std)]
#![deny(missing_docs)]

extern crate alloc;

use alloc::string::String;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Set by [`init`].
pub static STARTED: AtomicBool = AtomicBool::new(false);
/// The sum of every amount [`record`]ed.
pub static TOTAL: AtomicU64 = AtomicU64::new(0);

/// Called once at boot; an `Err` stops the boot with its message.
#[inline(never)]
pub fn init() -> Result<(), String> {
    STARTED.store(true, Ordering::Release);
    Ok(())
}

/// Whether [`init`] ran.
#[inline(never)]
pub fn started() -> bool {
    STARTED.load(Ordering::Acquire)
}

/// Adds `amount` to the total; returns the new total.
#[inline(never)]
pub fn record(amount: u64) -> u64 {
    TOTAL.fetch_add(amount, Ordering::Relaxed) + amount
}

/// The total.
#[inline(never)]
pub fn total() -> u64 {
    TOTAL.load(Ordering::Relaxed)
}

/// Which version this is.
#[inline(never)]
pub fn revision() -> String {
    String::from("__NAME__ v1")
}

/// The plain-state promise ([`cell_abi::PLAIN_STATE`]): nothing in this cell's statics points into
/// its own code or read-only data, so a retired version may be freed while a newer one runs.
#[inline(never)]
pub fn plain_state() {}

// The interface, checked against cell-abi at compile time: hosts bind these functions by the
// types declared there.
const _: cell_abi::Init = init;
const _: cell_abi::__NAME__::Started = started;
const _: cell_abi::__NAME__::Record = record;
const _: cell_abi::__NAME__::Total = total;
const _: cell_abi::Revision = revision;
const _: cell_abi::PlainState = plain_state;

#[cfg(test)]
mod tests {
    #[test]
    fn records_add_up() {
        let before = super::total();
        assert_eq!(super::record(2), before + 2);
        assert_eq!(super::total(), before + 2);
    }
}
"#;

const LIB_LIB: &str = r#"//! `__NAME__`: a library cell (made by `cargo cell new lib __NAME__`).
//!
//! Every library cell is loaded at boot into `_kernel`. Applications call it by depending on it
//! in their `Cargo.toml` (what they may bind to is `app_interface` in this cell's `Cargo.toml`),
//! other cells the same way, and the host through a handle: `kernel.bind(cell_abi::__NAME__::HELLO)`
//! (`tests/loads.rs`). Its interface is declared in `cell_abi::__NAME__` and checked at the end of
//! this file; every function of it is `pub`, non-generic and `#[inline(never)]`, so that it exists
//! in this cell's object and every call to it goes through a slot that a live swap moves.
//!
//! Interface: [`hello`], [`calls`], [`revision`].

#![cfg_attr(not(test), no_std)]
#![deny(missing_docs)]

extern crate alloc;

use alloc::format;
use alloc::string::String;
use core::sync::atomic::{AtomicU64, Ordering};

/// Calls of [`hello`] so far.
pub static CALLS: AtomicU64 = AtomicU64::new(0);

/// A greeting for `name`.
#[inline(never)]
pub fn hello(name: &str) -> String {
    CALLS.fetch_add(1, Ordering::Relaxed);
    format!("Hello from __NAME__, {name}!")
}

/// How many greetings this copy made.
#[inline(never)]
pub fn calls() -> u64 {
    CALLS.load(Ordering::Relaxed)
}

/// Which version this is.
#[inline(never)]
pub fn revision() -> String {
    String::from("__NAME__ v1")
}

/// The plain-state promise ([`cell_abi::PLAIN_STATE`]): nothing in this cell's statics points into
/// its own code or read-only data, so a retired version may be freed while a newer one runs.
#[inline(never)]
pub fn plain_state() {}

// The interface, checked against cell-abi at compile time: hosts bind these functions by the
// types declared there.
const _: cell_abi::__NAME__::Hello = hello;
const _: cell_abi::__NAME__::Calls = calls;
const _: cell_abi::Revision = revision;
const _: cell_abi::PlainState = plain_state;

#[cfg(test)]
mod tests {
    #[test]
    fn greets_and_counts() {
        let before = super::calls();
        assert_eq!(super::hello("cells"), "Hello from __NAME__, cells!");
        assert_eq!(super::calls(), before + 1);
    }
}
"#;

const APP_LIB: &str = r#"//! `__NAME__`: an application cell (made by `cargo cell new app __NAME__`).
//!
//! Run it on a running system with `cargo cell ctl run __NAME__ <args>...` (after `cargo cell
//! run`). Each run gets its own namespace, `app:__NAME__#<n>`, whose parent is `_kernel`; it binds
//! outside it only through the kernel and library cells' application interfaces. Applications are
//! safe Rust: the build compiles this crate with `-F unsafe_code`.
//!
//! Entry point (the application convention): [`main`] takes the arguments and returns the exit
//! code; [`deinit`] releases what the statics hold before the namespace is torn down.

#![cfg_attr(not(test), no_std)]
#![deny(missing_docs)]

extern crate alloc;

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

/// What the last run made, for the host to read ([`output`]).
pub static LAST: spin::Mutex<Vec<String>> = spin::Mutex::new(Vec::new());

/// Answers each argument; returns 0, or 2 without arguments.
#[inline(never)]
pub fn main(args: &[String]) -> i32 {
    if args.is_empty() {
        return 2;
    }
    let mut last = LAST.lock();
    last.clear();
    for arg in args {
        let line = format!("__NAME__: {arg}");
        log::info!("{line}");
        last.push(line);
    }
    0
}

/// What the last run made.
#[inline(never)]
pub fn output() -> Vec<String> {
    LAST.lock().clone()
}

/// Releases what the statics hold, before the namespace is torn down (statics are never
/// dropped, and their memory goes away with the cell).
#[inline(never)]
pub fn deinit() {
    *LAST.lock() = Vec::new();
}

// The interface, checked against cell-abi at compile time: hosts bind these functions by the
// types declared there.
const _: cell_abi::Main = main;
const _: cell_abi::__NAME__::Output = output;
const _: cell_abi::Deinit = deinit;
"#;

/// `tests/loads.rs`: builds the cells, boots `nano_core` on them in this process, and uses the
/// new cell as the host would.
pub fn test_rs(kind: Kind) -> String {
    let body = match kind {
        Kind::Kernel => {
            r#"#[test]
fn __NAME___is_loaded_at_boot_initialised_and_called_through_its_handles() {
    let mut kernel = boot();
    // `cell_id` looks in `_kernel`, where every kernel cell is loaded at boot.
    assert!(kernel.cell_id("__NAME__").is_some(), "__NAME__ is not loaded in _kernel");
    let started = kernel.bind(cell_abi::__NAME__::STARTED).unwrap();
    assert!((started.get())(), "nano_core called __NAME__::init at boot");
    let record = kernel.bind(cell_abi::__NAME__::RECORD).unwrap();
    let total = kernel.bind(cell_abi::__NAME__::TOTAL).unwrap();
    let before = (total.get())();
    assert_eq!((record.get())(5), before + 5);
    assert_eq!((total.get())(), before + 5);
}
"#
        }
        Kind::Lib => {
            r#"#[test]
fn __NAME___is_loaded_at_boot_and_called_through_its_handles() {
    let mut kernel = boot();
    // `cell_id` looks in `_kernel`, where every library cell is loaded at boot.
    assert!(kernel.cell_id("__NAME__").is_some(), "__NAME__ is not loaded in _kernel");
    let hello = kernel.bind(cell_abi::__NAME__::HELLO).unwrap();
    let calls = kernel.bind(cell_abi::__NAME__::CALLS).unwrap();
    let before = (calls.get())();
    assert_eq!((hello.get())("cells"), "Hello from __NAME__, cells!");
    assert_eq!((calls.get())(), before + 1);
}
"#
        }
        Kind::App => {
            r#"#[test]
fn __NAME___runs_in_its_own_namespace_and_answers_its_arguments() {
    use nano_core::apps::Outcome;
    let mut kernel = boot();
    assert_eq!(kernel.cell_id("__NAME__"), None, "applications are loaded only when started");
    let id = kernel.start_app("__NAME__").unwrap();
    let args = ["ada".to_string(), "alan".to_string()];
    assert_eq!(kernel.call_app(id, &args).unwrap(), Outcome::Exited(0));
    let ns = kernel.app_namespace(id).unwrap();
    assert_ne!(ns, kernel.kernel_namespace());
    {
        let output = kernel.bind_in(ns, cell_abi::__NAME__::OUTPUT).unwrap();
        assert_eq!((output.get())(), ["__NAME__: ada", "__NAME__: alan"]);
    }
    kernel.end_app(id).unwrap();
    assert!(kernel.apps().is_empty(), "ending it tore its namespace down");
    assert_eq!(kernel.run_app("__NAME__", &[]).unwrap(), Outcome::Exited(2));
}
"#
        }
    };
    format!(
        r#"//! `__NAME__` loaded by the loader into a running `nano_core`, as it runs for real: the cells
//! are built by `cargo cell build`'s library (nothing is rebuilt when they are fresh), the kernel
//! boots on them in this process, and the test calls `__NAME__` through handles typed by
//! `cell_abi::__NAME__`. Run it with `cargo test -p __NAME__`.

use std::path::Path;

use nano_core::Kernel;

fn boot() -> Kernel {{
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(3)
        .expect("cells/<kind>/<cell> sits in the workspace");
    let report = build_tools::build_cells(&build_tools::BuildOptions {{
        workspace_root: Some(root.to_path_buf()),
        target_dir: None,
        quiet: true,
    }})
    .unwrap_or_else(|e| panic!("building the cells failed: {{e:#}}"));
    nano_core::logger::install(log::LevelFilter::Off);
    Kernel::boot(&report.cells_dir).unwrap_or_else(|e| panic!("boot failed: {{e:#}}"))
}}

{body}"#
    )
}

/// The module appended to `cell-abi/src/lib.rs`: the cell's interface, path and type.
pub fn cell_abi_module(kind: Kind) -> &'static str {
    match kind {
        Kind::Kernel => {
            r#"
/// `__NAME__` (cells/kernel/__NAME__), made by `cargo cell new kernel __NAME__`.
pub mod __NAME__ {
    use super::*;
    interfaces! { __NAME__ {
        /// Whether `init` ran.
        Started, STARTED = started: fn() -> bool;
        /// Adds an amount to the total; returns the new total.
        Record, RECORD = record: fn(u64) -> u64;
        /// The total.
        Total, TOTAL = total: fn() -> u64;
    }}
}
"#
        }
        Kind::Lib => {
            r#"
/// `__NAME__` (cells/libs/__NAME__), made by `cargo cell new lib __NAME__`.
pub mod __NAME__ {
    use super::*;
    interfaces! { __NAME__ {
        /// A greeting for a name.
        Hello, HELLO = hello: fn(&str) -> String;
        /// Greetings made.
        Calls, CALLS = calls: fn() -> u64;
    }}
}
"#
        }
        Kind::App => {
            r#"
/// `__NAME__` (cells/apps/__NAME__), made by `cargo cell new app __NAME__`.
pub mod __NAME__ {
    use super::*;
    interfaces! { __NAME__ {
        /// What the last run made.
        Output, OUTPUT = output: fn() -> Vec<String>;
    }}
}
"#
        }
    }
}
