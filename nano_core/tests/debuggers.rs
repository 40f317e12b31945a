//! Debuggers and profilers see cells: backtraces that name cells (the panic hook, in process and
//! in the `nano_core` binary), the perf map across a swap, the GDB JIT registrations, and gdb
//! itself breaking on a cell function in a running `nano_core`.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Mutex;

use crate_metadata::{CellId, CellKind};
use loader::hosted::debug::backtrace::Place;
use loader::hosted::debug::{self, gdb_jit, perf_map};
use loader::SwapOptions;
use nano_core::apps::Outcome;
use nano_core::Kernel;

static SERIAL: Mutex<()> = Mutex::new(());

fn boot() -> Kernel {
    nano_core::logger::install(log::LevelFilter::Off);
    Kernel::boot(common::cells_dir()).unwrap_or_else(|e| panic!("boot failed: {e:#}"))
}

/// The address and size of `path`'s function in live cell `cell`, from the registry.
fn function(kernel: &Kernel, cell: CellId, path: &str) -> (u64, u64) {
    let c = kernel.system().registry().cell(cell).expect("cell");
    let s = c
        .symbols
        .iter()
        .find(|s| crate_metadata::demangle::path(&s.name) == path)
        .unwrap_or_else(|| panic!("{path} is not a symbol of {}", c.name));
    (s.addr, s.size)
}

/// The perf map's lines, split into (start, size, name).
fn perf_lines() -> Vec<(u64, u64, String)> {
    std::fs::read_to_string(perf_map::path())
        .expect("the perf map exists")
        .lines()
        .map(|l| {
            let mut parts = l.splitn(3, ' ');
            let mut hex = || u64::from_str_radix(parts.next().unwrap(), 16).unwrap();
            let (start, size) = (hex(), hex());
            (start, size, parts.next().unwrap().to_string())
        })
        .collect()
}

#[test]
fn perf_map_and_gdb_registrations_follow_a_swap() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let registered_before = gdb_jit::registered().len();
    let path = perf_map::enable().expect("perf map");
    let mut kernel = boot();
    let old = kernel.cell_id("memfs").expect("memfs is live");
    let (old_addr, old_size) = function(&kernel, old, "memfs::read");
    let lines = perf_lines();
    let old_name = format!("memfs::read [memfs 0.1.0 {old}]");
    assert!(
        lines.contains(&(old_addr, old_size, old_name.clone())),
        "{} has no line `{old_addr:x} {old_size:x} {old_name}`",
        path.display()
    );
    let booted = kernel.system().registry().cells().count() - 2; // less the base and platform
    assert_eq!(
        gdb_jit::registered().len() - registered_before,
        booted,
        "one GDB JIT entry per loaded cell"
    );

    let bytes = common::object(CellKind::Upgrades, "memfs");
    kernel
        .swap_bytes("memfs", &bytes, &SwapOptions::default())
        .expect("memfs swaps");
    let new = kernel.cell_id("memfs").expect("memfs is live");
    assert_ne!(new, old);
    let (new_addr, new_size) = function(&kernel, new, "memfs::read");
    let lines = perf_lines();
    let new_name = format!("memfs::read [memfs 0.1.0 {new}]");
    let at_new = lines
        .iter()
        .rposition(|l| *l == (new_addr, new_size, new_name.clone()))
        .unwrap_or_else(|| panic!("no line `{new_addr:x} {new_size:x} {new_name}`"));
    let at_old = lines
        .iter()
        .position(|l| l.2 == old_name)
        .expect("the old line");
    assert!(at_new > at_old, "the new version's line comes later");
    // perf takes the last line covering an address: the new code's is the new version's.
    let covering = lines
        .iter()
        .rev()
        .find(|(s, n, _)| (*s..s + n).contains(&(new_addr + 1)))
        .unwrap();
    assert_eq!(covering.2, new_name);

    // Backtraces name both versions from the registry; the retired one says so.
    let live = debug::name_address(new_addr + 0x4).expect("the new version is named");
    assert_eq!(
        live.to_string(),
        format!("memfs::read+0x4 (cell memfs 0.1.0, namespace _kernel)")
    );
    assert_eq!(live.id, new);
    let retired = debug::name_address(old_addr + 0x4).expect("the retired version is named");
    assert_eq!(
        retired.to_string(),
        "memfs::read+0x4 (cell memfs 0.1.0, retired, namespace _kernel)"
    );
    assert_eq!(retired.id, old);

    // Freeing everything unregisters everything.
    drop(kernel);
    assert_eq!(gdb_jit::registered().len(), registered_before);
    assert_eq!(debug::name_address(new_addr), None);
}

#[test]
fn the_crasher_backtrace_names_crasher_main_and_its_cell() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    nano_core::faults::install();
    let mut kernel = boot();
    let outcome = kernel
        .run_app("crasher", &["bob".into()])
        .expect("crasher runs");
    assert!(matches!(outcome, Outcome::Panicked(_)), "{outcome:?}");
    let bt = nano_core::faults::take_last_panic().expect("the panic went through a cell");
    let first = bt.frames.first().expect("frames");
    let Place::Cell(cell) = &first.place else {
        panic!("the innermost frame is not the crasher's:\n{bt}");
    };
    assert_eq!(cell.function, "crasher::main", "{bt}");
    assert_eq!(
        (cell.cell.as_str(), cell.version.as_str()),
        ("crasher", "0.1.0")
    );
    assert!(cell.namespace.starts_with("app:crasher#"), "{bt}");
    let text = bt.to_string();
    assert!(
        text.contains("   0: crasher::main+0x")
            && text.contains("(cell crasher 0.1.0, namespace app:crasher#"),
        "{text}"
    );
    // The frames below the cell are the base image's, named by their symbols.
    assert!(text.contains("nano_core::apps::"), "{text}");
}

#[test]
fn nano_core_prints_a_panic_backtrace_that_names_the_cell() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut child = Command::new(env!("CARGO_BIN_EXE_nano_core"))
        .args(["--cells"])
        .arg(common::cells_dir())
        .arg("--prompt")
        .env("RUST_BACKTRACE", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("nano_core starts");
    // `end 1` waits for the application's thread, so the panic happens before `quit`.
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"run crasher bob\nend 1\nquit\n")
        .unwrap();
    let out = child.wait_with_output().expect("nano_core ends");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("crasher: deliberately panicking after"),
        "{stderr}"
    );
    let frame = stderr
        .lines()
        .find(|l| l.contains("crasher::main+0x"))
        .unwrap_or_else(|| panic!("no crasher::main frame:\n{stderr}"));
    assert!(
        frame.contains("(cell crasher 0.1.0, namespace app:crasher#1)"),
        "{frame}"
    );
}

/// The path of `tool` in /usr/bin or /usr/local/bin; `None`, saying so, when it is in neither.
fn installed(tool: &str, package: &str) -> Option<String> {
    let found = ["/usr/bin", "/usr/local/bin"]
        .iter()
        .map(|dir| format!("{dir}/{tool}"))
        .find(|p| std::path::Path::new(p).exists());
    if found.is_none() {
        eprintln!(
            "SKIPPED: {tool} is not installed (apt-get install {package}; .ci/run installs it)"
        );
    }
    found
}

#[test]
fn gdb_breaks_on_a_cell_function_and_backtraces_through_it() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(gdb) = installed("gdb", "gdb") else {
        return;
    };
    // The workload calls `memfs::read` right after boot; gdb learns of the cell through the
    // JIT interface and puts the pending breakpoint in it.
    let out = Command::new(gdb)
        .args(["-batch", "-nx"])
        .args(["-ex", "set breakpoint pending on"])
        .args(["-ex", "set debuginfod enabled off"])
        .args(["-ex", "break memfs::read"])
        .args(["-ex", "run"])
        .args(["-ex", "bt 6"])
        .args(["-ex", "info symbol $pc"])
        .args(["-ex", "kill"])
        .arg("--args")
        .arg(env!("CARGO_BIN_EXE_nano_core"))
        .arg("--cells")
        .arg(common::cells_dir())
        .stdin(Stdio::null())
        .output()
        .expect("gdb runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let all = format!("{stdout}\n--- stderr\n{stderr}");
    assert!(
        stdout.contains("Breakpoint 1, ") && stdout.contains("memfs::read"),
        "the breakpoint was not hit:\n{all}"
    );
    let frame0 = stdout
        .lines()
        .find(|l| l.starts_with("#0 "))
        .unwrap_or_else(|| panic!("no backtrace:\n{all}"));
    assert!(frame0.contains("memfs::read"), "{all}");
    // gdb unwinds through the cell's frames with its `.eh_frame` into the base image's.
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with('#') && l.contains("nano_core::boot")),
        "the backtrace does not reach the base image below the cell:\n{all}"
    );
}

#[test]
fn perf_report_names_cell_functions() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(perf) = installed("perf", "linux-perf") else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("cells-perf-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let data = dir.join("perf.data");
    // The demo workload, sampled by the CPU clock (no hardware counters in these machines).
    let record = Command::new(&perf)
        .args(["record", "-q", "-e", "cpu-clock", "-F", "10000", "-o"])
        .arg(&data)
        .arg(env!("CARGO_BIN_EXE_nano_core"))
        .arg("--cells")
        .arg(common::cells_dir())
        .arg("--perf-map")
        .stdout(Stdio::null())
        .output()
        .expect("perf record runs");
    assert!(
        record.status.success(),
        "perf record failed: {}",
        String::from_utf8_lossy(&record.stderr)
    );
    let report = Command::new(&perf)
        .args(["report", "--stdio", "--sort", "sym", "-i"])
        .arg(&data)
        .output()
        .expect("perf report runs");
    let _ = std::fs::remove_dir_all(&dir);
    let text = String::from_utf8_lossy(&report.stdout);
    // `memfs::read` runs for most of the workload's file reads (a 200-line file, line by line).
    assert!(
        text.lines()
            .any(|l| l.contains("] memfs::") && l.contains("[memfs 0.1.0 cell#")),
        "perf report names no memfs function:\n{text}"
    );
}

#[test]
fn a_fault_report_names_the_cell_on_the_stack() {
    use std::io::{BufRead, BufReader};
    use std::os::unix::process::ExitStatusExt;
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut child = Command::new(env!("CARGO_BIN_EXE_nano_core"))
        .arg("--cells")
        .arg(common::cells_dir())
        .arg("--prompt")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("nano_core starts");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"run sleeper hold\n").unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while !line.contains("started #1 sleeper") {
        line.clear();
        assert!(stdout.read_line(&mut line).unwrap() > 0, "nano_core ended");
    }
    // The application's thread sleeps inside `sleeper::main`: a SIGSEGV sent to it is reported
    // with that frame, then ends the process.
    let pid = child.id() as i32;
    // The new thread names itself once it runs, which may be just after "started" is printed:
    // look again until it has (with a deadline, not a timing assertion).
    let app_thread = || {
        std::fs::read_dir(format!("/proc/{pid}/task"))
            .unwrap()
            .filter_map(Result::ok)
            .find(|t| {
                std::fs::read_to_string(t.path().join("comm"))
                    .is_ok_and(|c| c.starts_with("app:sleeper"))
            })
    };
    let named_by = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let task = loop {
        match app_thread() {
            Some(task) => break task,
            None if std::time::Instant::now() < named_by => {
                std::thread::sleep(std::time::Duration::from_millis(10))
            }
            None => panic!("the application's thread"),
        }
    };
    let tid: i32 = task.file_name().to_string_lossy().parse().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(100));
    // SAFETY: tgkill only sends a signal to a thread of the child process.
    let sent = unsafe { libc::syscall(libc::SYS_tgkill, pid, tid, libc::SIGSEGV) };
    assert_eq!(sent, 0, "tgkill");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    drop(stdin); // ends a nano_core that the signal did not end
    let out = child.wait_with_output().expect("nano_core ends");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.signal(), Some(libc::SIGSEGV), "{stderr}");
    assert!(
        stderr.contains("nano_core: fault: SIGSEGV sent by kill"),
        "{stderr}"
    );
    assert!(
        stderr.lines().any(|l| l.contains("sleeper::main+0x")
            && l.contains("(cell sleeper 0.1.0, namespace app:sleeper#1)")),
        "{stderr}"
    );
}

/// The names the debuggers and the inspection tools print come from `demangle::path`, which
/// demangles legacy names itself (fast) and hands the rest to `rustc_demangle`: on every symbol
/// name of every object the build makes (kernel, library, application, dependency cells and new
/// versions), it prints exactly what `rustc_demangle` prints.
#[test]
fn every_symbol_of_every_cell_demangles_as_rustc_demangle_does() {
    let manifest = common::manifest();
    let mut names = 0;
    for entry in &manifest.cells {
        let bytes = std::fs::read(common::cells_dir().join(&entry.object)).expect("object");
        let elf = goblin::elf::Elf::parse(&bytes).expect("an ELF object");
        for sym in elf.syms.iter() {
            let Some(name) = elf.strtab.get_at(sym.st_name).filter(|n| !n.is_empty()) else {
                continue;
            };
            let expected = format!("{:#}", rustc_demangle::demangle(name));
            assert_eq!(
                crate_metadata::demangle::path(name),
                expected,
                "{name} in {}",
                entry.name
            );
            names += 1;
        }
    }
    // 5,400 named symbols in the objects of 2026-12-02 (their sections merged: no section
    // symbols, which have no name, are left but one per kind).
    assert!(names > 5_000, "only {names} names");
}

/// A cell object's text is one merged section (DESIGN §3), so no section name tells its functions
/// apart: every function of `memfs`, exported or not, is named at its own address by its own
/// symbol, as read from the object file itself.
#[test]
fn every_function_of_a_merged_cell_is_named_at_its_address() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let kernel = boot();
    let id = kernel.cell_id("memfs").expect("memfs is live");
    let cell = kernel.system().registry().cell(id).expect("cell");
    let text = cell
        .sections
        .iter()
        .find(|s| s.name.as_str() == ".text")
        .expect("one merged .text");
    let bytes = std::fs::read(common::cells_dir().join("kernel/memfs.o")).expect("object");
    let elf = goblin::elf::Elf::parse(&bytes).expect("an ELF object");
    let text_index = elf
        .section_headers
        .iter()
        .position(|h| elf.shdr_strtab.get_at(h.sh_name) == Some(".text"))
        .expect("the object has a .text");
    let functions: Vec<_> = elf
        .syms
        .iter()
        .filter(|s| s.is_function() && s.st_shndx == text_index && s.st_size > 0)
        .collect();
    let mut locals = 0;
    for sym in &functions {
        // Aliases (two names at one address) name it either way.
        if functions
            .iter()
            .filter(|o| o.st_value == sym.st_value)
            .count()
            > 1
        {
            continue;
        }
        let name = elf.strtab.get_at(sym.st_name).expect("a name");
        let addr = text.addr + sym.st_value + sym.st_size / 2;
        let named = debug::name_address(addr).unwrap_or_else(|| panic!("{name} is not named"));
        assert_eq!(
            (named.function.as_str(), named.offset),
            (
                crate_metadata::demangle::path(name).as_str(),
                sym.st_size / 2
            ),
            "{name}"
        );
        locals += usize::from(sym.st_bind() == goblin::elf::sym::STB_LOCAL);
    }
    assert!(
        locals >= 10,
        "only {locals} local functions of memfs checked"
    );
    // The paths came from the object's `.cell.paths`, not demangled at load.
    for s in cell.symbols.iter().chain(&cell.local_functions) {
        if s.kind == crate_metadata::SymbolKind::Function {
            let path = s.path();
            let expected = crate_metadata::demangle::path(&s.name);
            assert_eq!(path, Some(expected.as_str()), "{}", s.name);
        }
    }
}
