//! `nano_core`: boots the cell system in this process and runs the workload.
//!
//! ```text
//! nano_core [--cells DIR] [--verbose] [--perf-map] [--prompt | --serve SOCKET [--watch] [--load N]]
//! ```
//!
//! `DIR` is where `cargo cell build` wrote the objects and `manifest.json` (`target/cells`).
//! With `--serve`, it boots, prints the boot report and then serves the control channel on the
//! Unix socket `SOCKET` until a `quit` request (see `nano_core::control`) instead of running the
//! workload (with `--prompt`, it reads the same commands at a prompt on standard input);
//! workload; `--watch` swaps in cells whose objects a rebuild changed, `--load N` keeps N threads
//! calling through cell handles. `--perf-map` writes `/tmp/perf-<pid>.map` for `perf report`.
//! A panic or fault inside a cell is reported with frames that name the cells
//! ([`nano_core::faults`]).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use log::LevelFilter;
use nano_core::{control, logger, report, workload, Kernel};

fn main() -> ExitCode {
    let mut cells = PathBuf::from("target/cells");
    let mut verbose = false;
    let mut serve: Option<PathBuf> = None;
    let mut watch = false;
    let mut load: Option<usize> = None;
    let mut prompt = false;
    let mut perf_map = false;
    let mut trusted: Vec<PathBuf> = Vec::new();
    let mut unsafe_apps: Vec<PathBuf> = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--cells" => match args.next() {
                Some(dir) => cells = PathBuf::from(dir),
                None => return usage("--cells needs a directory"),
            },
            "--verbose" | "-v" => verbose = true,
            "--serve" => match args.next() {
                Some(socket) => serve = Some(PathBuf::from(socket)),
                None => return usage("--serve needs a socket path"),
            },
            "--watch" => watch = true,
            "--prompt" => prompt = true,
            "--perf-map" => perf_map = true,
            "--trust" => match args.next() {
                Some(key) => trusted.push(PathBuf::from(key)),
                None => return usage("--trust needs a public key file (cargo cell keygen)"),
            },
            // A key trusted for unsafe applications is trusted for every cell too.
            "--trust-unsafe-apps" => match args.next() {
                Some(key) => {
                    trusted.push(PathBuf::from(&key));
                    unsafe_apps.push(PathBuf::from(key));
                }
                None => return usage("--trust-unsafe-apps needs a public key file"),
            },
            "--load" => match args.next().map(|n| n.parse::<usize>()) {
                Some(Ok(n)) if n <= 64 => load = Some(n),
                _ => return usage("--load needs a number of threads (0 to 64)"),
            },
            "--help" | "-h" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            other => return usage(&format!("unknown argument `{other}`")),
        }
    }
    if serve.is_none() && (watch || load.is_some()) {
        return usage("--watch and --load go with --serve SOCKET");
    }
    let keys = match Trust::read(&trusted).and_then(|mut t| {
        t.unsafe_apps = Trust::read(&unsafe_apps)?.keys;
        Ok(t)
    }) {
        Ok(trust) => trust,
        Err(e) => {
            eprintln!("nano_core: {}", nano_core::errors::render(&e));
            return ExitCode::FAILURE;
        }
    };
    nano_core::faults::install();
    if perf_map {
        if let Err(e) = loader::hosted::debug::perf_map::enable() {
            eprintln!("nano_core: cannot write the perf map: {e}");
            return ExitCode::FAILURE;
        }
    }
    logger::install(if verbose {
        LevelFilter::Info
    } else {
        LevelFilter::Warn
    });
    let result = match serve {
        None if prompt => run_prompt(&cells, &keys),
        Some(socket) => {
            let options = control::ServeOptions {
                socket,
                watch,
                load: load.unwrap_or(0),
            };
            run_server(&cells, &keys, &options)
        }
        None => run(&cells, &keys),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("nano_core: {}", nano_core::errors::render(&e));
            ExitCode::FAILURE
        }
    }
}

const USAGE: &str = "usage: nano_core [--cells DIR] [--verbose] [--trust PUBLIC_KEY]... \
     [--trust-unsafe-apps PUBLIC_KEY]... [--perf-map] \
     [--prompt | --serve SOCKET [--watch] [--load N]]";

/// The trusted public keys (`--trust FILE`), and the highest manifest serial accepted with them
/// before, kept next to each key in `FILE.serial` (where the cells' directory cannot reach it), so
/// that a manifest rolled back to an older signing is refused across restarts too.
struct Trust {
    keys: Vec<[u8; 32]>,
    /// The keys also trusted for applications not built with `unsafe` forbidden.
    unsafe_apps: Vec<[u8; 32]>,
    files: Vec<std::path::PathBuf>,
}

impl Trust {
    fn read(paths: &[std::path::PathBuf]) -> anyhow::Result<Trust> {
        use anyhow::Context;
        let mut keys = Vec::with_capacity(paths.len());
        for path in paths {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading trusted key {}", path.display()))?;
            keys.push(crate_metadata::hex::decode::<32>(&text).with_context(|| {
                format!(
                    "{} does not hold a public key (64 hex digits)",
                    path.display()
                )
            })?);
        }
        Ok(Trust {
            keys,
            unsafe_apps: Vec::new(),
            files: paths.to_vec(),
        })
    }

    fn serial_file(key: &std::path::Path) -> std::path::PathBuf {
        let mut name = key.as_os_str().to_owned();
        name.push(".serial");
        name.into()
    }

    /// The boot's options: the keys, and the highest serial accepted before.
    fn options(&self) -> nano_core::BootOptions {
        let min_serial = self
            .files
            .iter()
            .filter_map(|k| std::fs::read_to_string(Self::serial_file(k)).ok())
            .filter_map(|t| t.trim().parse::<u64>().ok())
            .max()
            .unwrap_or(0);
        nano_core::BootOptions {
            trusted: self.keys.clone(),
            min_serial,
            ..Default::default()
        }
    }

    /// Remembers `serial` as accepted (best effort: a key directory that cannot be written keeps
    /// the check to this process).
    fn accepted(&self, serial: Option<u64>) {
        let Some(serial) = serial else { return };
        for key in &self.files {
            let path = Self::serial_file(key);
            if let Err(e) = std::fs::write(&path, format!("{serial}\n")) {
                eprintln!(
                    "nano_core: cannot record the accepted serial in {}: {e}",
                    path.display()
                );
            }
        }
    }
}

/// The process is about to exit: like any program's statics, the cells' statics stay in place
/// until then (unmapping the cells would only turn the memory their statics own into leaks for
/// a leak checker). Tests and long-running hosts drop their `Kernel`, which unmaps everything.
fn exit(kernel: Kernel) -> anyhow::Result<()> {
    static AT_EXIT: std::sync::Mutex<Option<Kernel>> = std::sync::Mutex::new(None);
    if let Ok(mut slot) = AT_EXIT.lock() {
        *slot = Some(kernel);
    }
    Ok(())
}

fn usage(msg: &str) -> ExitCode {
    eprintln!("nano_core: {msg}\n{USAGE}");
    ExitCode::from(2)
}

/// Boots, prints the boot report, and reads commands at a prompt (the control channel's
/// commands: `ls`, `ns`, `swap`, `load`, `unload`, `run`, `apps`, `end`, `help`, `quit`) until `quit`
/// or the end of input.
fn run_prompt(cells: &std::path::Path, keys: &Trust) -> anyhow::Result<()> {
    use std::io::{BufRead, Write};
    let mut kernel = boot(cells, keys)?;
    let stdin = std::io::stdin();
    let mut line = String::new();
    loop {
        print!("nano_core> ");
        std::io::stdout().flush()?;
        line.clear();
        if stdin.lock().read_line(&mut line)? == 0 {
            println!();
            return exit(kernel);
        }
        if line.trim().is_empty() {
            continue;
        }
        let line = line.trim_end_matches('\n');
        let response = match control_protocol::check_request(line.as_bytes()) {
            Ok(request) => control::dispatch(&mut kernel, None, request),
            Err(e) => control::Response::error(e.to_string()),
        };
        print!("{}", response.reply.to_wire());
        if response.quit {
            return exit(kernel);
        }
    }
}

/// Boots, prints the boot report, and serves the control channel until told to quit.
fn run_server(
    cells: &std::path::Path,
    keys: &Trust,
    options: &control::ServeOptions,
) -> anyhow::Result<()> {
    let mut kernel = boot(cells, keys)?;
    control::serve(&mut kernel, options)?;
    exit(kernel)
}

fn run(cells: &std::path::Path, keys: &Trust) -> anyhow::Result<()> {
    let mut kernel = boot(cells, keys)?;
    println!();
    println!("== workload across the cells");
    let results = workload::run(&mut kernel)?;
    print!("{}", report::workload(&results));
    println!();
    println!("== live swap while 3 threads keep calling memfs, frame_alloc and counter");
    let live = nano_core::live::run(&mut kernel, 3)?;
    print!("{}", nano_core::live::render(&live));
    if live.failed > 0 {
        anyhow::bail!("{} calls failed during the swaps", live.failed);
    }
    println!();
    println!("== applications, each in its own namespace on top of _kernel");
    print!("{}", nano_core::report::applications(&mut kernel)?);
    exit(kernel)
}

/// Boots the kernel cells and prints the boot report: the cells loaded and the namespaces.
fn boot(cells: &std::path::Path, trust: &Trust) -> anyhow::Result<Kernel> {
    let start = Instant::now();
    let mut kernel = Kernel::boot_with(cells, &trust.options())?;
    kernel.trust_unsafe_apps(&trust.unsafe_apps)?;
    if !trust.keys.is_empty() {
        trust.accepted(kernel.manifest_serial());
    }
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
    Ok(kernel)
}
