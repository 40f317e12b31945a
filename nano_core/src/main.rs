//! `nano_core`: boots the cell system in this process and runs the workload.
//!
//! ```text
//! nano_core [--cells DIR] [--verbose]
//! ```
//!
//! `DIR` is where `cargo cell build` wrote the objects and `manifest.json` (`target/cells`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use log::LevelFilter;
use nano_core::{logger, report, workload, Kernel};

fn main() -> ExitCode {
    let mut cells = PathBuf::from("target/cells");
    let mut verbose = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--cells" => match args.next() {
                Some(dir) => cells = PathBuf::from(dir),
                None => return usage("--cells needs a directory"),
            },
            "--verbose" | "-v" => verbose = true,
            "--help" | "-h" => {
                println!("usage: nano_core [--cells DIR] [--verbose]");
                return ExitCode::SUCCESS;
            }
            other => return usage(&format!("unknown argument `{other}`")),
        }
    }
    logger::install(if verbose {
        LevelFilter::Info
    } else {
        LevelFilter::Warn
    });
    match run(&cells) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("nano_core: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn usage(msg: &str) -> ExitCode {
    eprintln!("nano_core: {msg}\nusage: nano_core [--cells DIR] [--verbose]");
    ExitCode::from(2)
}

fn run(cells: &std::path::Path) -> anyhow::Result<()> {
    let start = Instant::now();
    let mut kernel = Kernel::boot(cells)?;
    let boot = start.elapsed();
    println!(
        "== nano_core booted {} cells in {:.2} ms",
        kernel.booted().len(),
        boot.as_secs_f64() * 1e3
    );
    println!();
    println!("== cells loaded (each its own relocatable object, linked by our loader)");
    print!("{}", report::cells(&kernel));
    for b in kernel.booted() {
        if let Some(c) = kernel.system().registry().cell(b.id) {
            println!(
                "   {:<12} {}{}",
                c.name,
                report::regions(c),
                if b.had_init { " · init called" } else { "" }
            );
        }
    }
    println!();
    println!("== namespaces");
    print!("{}", report::namespaces(&kernel));
    println!();
    println!("== workload across the cells");
    let results = workload::run(&mut kernel)?;
    print!("{}", report::workload(&results));
    Ok(())
}
