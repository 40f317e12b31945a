//! The bare-metal `nano_core` (`bare_metal/`), booted under `qemu-system-x86_64` with 4 CPUs
//! (software emulation). The default run must link the kernel cells with the no_std loader, each
//! after the dependency cells it needs, run `kvstore` on them, start every CPU with tasks that call
//! the cells, swap memfs, sched, frame_alloc, counter and the uart driver under that load without
//! losing a frame, a byte or a count, end two tasks that fault inside cells (naming the cell and
//! the symbol) without ending the kernel, reclaim the retired versions, keep W^X, and power off
//! with its success code; every test that reads it shares one boot. Other boots drive the shell
//! through the serial port as a person would, feed numbered lines through the serial port while
//! the uart driver cell is swapped back and forth, and give the kernel boot modules with a
//! cut-short kernel cell or dependency cell, or a manifest that leaves a dependency cell out, which
//! it must refuse by name. Nothing here asserts a duration: the numbers are printed; the timeouts
//! only guard against a hang.
//!
//! QEMU is required: when `qemu-system-x86_64` is missing these tests fail and say how to install
//! it (`.ci/run` does), rather than passing without having booted anything.
//!
//! The shared image, default run and helpers are in `qemu_support/`, the shell session in
//! `qemu_shell/`: modules of this one test binary, so each boot above happens once.

mod qemu_shell;
mod qemu_support;

use build_tools::qemu;
use crate_metadata::{hex, CellKind, Manifest};

use qemu_support::{
    boot_edited, default_run, dep_cell, failure_line, image, line, loaded_at, module_manifest,
    module_members, number_after, require_qemu, TIMEOUT,
};

#[test]
fn the_kernel_links_the_cells_with_their_dependency_cells() {
    let run = default_run();
    let out = &run.output;
    // The boot itself: PVH, paging with NX, the kernel's own symbols from its ELF file.
    assert!(out.contains("booted through PVH, in long mode"), "{out}");
    assert!(out.contains("paging on, NX on, CR0.WP on"), "{out}");
    // Accepted by build id: the module's copy of the kernel's ELF file is the running build.
    assert!(
        out.contains(&format!(
            "from its own ELF file (build id {}, the running kernel's)",
            hex::encode(&image().build_id)
        )),
        "{out}"
    );
    // Every kernel cell linked by the loader into _kernel, each after the dependency cells it
    // needs, each of those loaded once (by name and version, as the manifest has them) although
    // several kernel cells need `log` and `spin`. The kernel's own `log` and `spin` are other
    // builds (panic = "abort"), so the image provides none of them.
    let manifest = module_manifest(image());
    let kernel_cells = ["frame_alloc", "klog", "kvstore", "memfs", "sched", "uart"];
    let at = |cell: &str| {
        let entry = manifest.get(CellKind::Kernel, cell).unwrap();
        loaded_at(out, &format!("loaded cell `{cell}` {}", entry.version))
    };
    for cell in kernel_cells {
        at(cell);
    }
    let deps = [
        ("log", "frame_alloc"),
        ("spin", "frame_alloc"),
        ("heapless", "kvstore"),
        ("hash32", "kvstore"),
        ("byteorder", "kvstore"),
        ("crc32fast", "kvstore"),
        ("bitflags", "kvstore"),
        ("smallvec", "kvstore"),
        ("hashbrown", "kvstore"),
        ("foldhash", "kvstore"),
        ("allocator_api2", "kvstore"),
    ];
    for (dep, first_user) in deps {
        let entry = dep_cell(&manifest, dep);
        let line = loaded_at(
            out,
            &format!("loaded dependency cell `{dep}` {}", entry.version),
        );
        assert!(line < at(first_user), "{dep} after {first_user}:\n{out}");
        assert!(
            out.lines()
                .nth(line)
                .unwrap()
                .ends_with(&format!("(for `{first_user}`)")),
            "{out}"
        );
    }
    assert!(
        out.contains("loaded dependency cell `heapless` 0.9.3 "),
        "{out}"
    );
    assert_eq!(
        out.matches("loaded dependency cell `").count(),
        deps.len(),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "dependency cells: {} loaded into `_kernel` (",
            deps.len()
        )),
        "{out}"
    );
    assert!(out.contains("provided by the kernel image: none"), "{out}");
    assert!(!out.contains("deps/log.o"), "{out}");
    // The library cell the tasks count with, loaded from the boot module.
    loaded_at(out, "loaded cell `counter` 0.1.0");
    // The workload ran across them.
    assert!(
        out.contains("double free refused: \"frame_alloc: double free"),
        "{out}"
    );
    assert!(
        out.contains("round robin picks [1, 2, 3, 4, 1, 2]"),
        "{out}"
    );
    // kvstore ran its crates.io crates in ring 0: crc32fast (the CRC-32 check value, and the
    // values zlib gives), bitflags, heapless's capacity limits, hashbrown with foldhash, smallvec.
    for expected in [
        "workload: kvstore \"kvstore v1 (heapless 0.9.3)\": crc32fast: put(\"check\", \"123456789\") = 0xcbf43926, put(\"greeting\", ...) = 0xd9b91aa4, crc32(4096 bytes) = 0xe67689de",
        "bitflags: flags(\"greeting\") = DIRTY|TEXT until checksum(\"greeting\") = 0xd9b91aa4, then TEXT; set_flags(0xff) = PINNED|DIRTY|TEXT (unknown bits dropped); remove refused while PINNED: true",
        "heapless: \"kvstore: key `kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk` is longer than 32 bytes\"; \"kvstore: the value of `big` is over 128 bytes\"",
        "hashbrown/foldhash: 23 entries; tagged(\"t1\") = [\"node1\", \"node13\", \"node17\", \"node5\", \"node9\"]; tagged(\"boot\") = [\"check\", \"greeting\", \"motd\"]; \"kvstore: no key `nosuch`\"",
        "smallvec: split_path(\"/usr//local/bin/\") = [\"usr\", \"local\", \"bin\"]; split_path(\"/d0/.../d11\") = 12 components",
    ] {
        assert!(out.contains(expected), "missing {expected:?}:\n{out}");
    }
    // W^X read back from the page tables after loading and after the swaps; the GOT and slot
    // pages were writable only inside the swaps' commits.
    assert_eq!(
        out.matches("none writable and executable").count(),
        2,
        "{out}"
    );
    assert!(
        out.contains("GOT write windows: loading opened none"),
        "{out}"
    );
    assert!(out.contains("read-only again; 0 left writable"), "{out}");
    assert!(out.contains("all checks passed, powering off"), "{out}");
}

#[test]
fn every_cpu_runs_tasks_that_call_the_cells() {
    let out = &default_run().output;
    assert!(
        out.contains(
            "smp: 4 CPUs online (local APIC ids [0, 1, 2, 3]), started with INIT-SIPI-SIPI"
        ),
        "{out}"
    );
    assert!(out.contains("local APIC timer on every CPU"), "{out}");
    assert!(
        out.contains(
            "routed to CPU 0 (vector 0x24), handled by the `uart` driver cell through a slot"
        ),
        "{out}"
    );
    // Per-CPU call counts before and after the swaps: every CPU called cells all along.
    let before = line(
        out,
        "load: every CPU runs tasks that call cells; calls so far by CPU:",
    );
    let during = line(out, "load: calls made during the swaps:");
    for cpu in 0..4 {
        assert!(number_after(before, &format!("cpu{cpu} ")) > 0, "{before}");
        assert!(number_after(during, &format!("cpu{cpu} +")) > 0, "{during}");
    }
    // The shell's view, run as a script at the end: 4 CPUs, each made calls into cells.
    let cpus: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with("cpu") && l.contains(" apic "))
        .collect();
    assert_eq!(cpus.len(), 4, "{out}");
    for l in cpus {
        assert!(number_after(l, "% in cell code), ") > 0, "{l}");
    }
    // The numbers the issue asks for are printed (not asserted: they are times under TCG).
    assert!(out.contains("boot: first task ran "), "{out}");
    assert!(
        out.contains("pauses: the longest a worker waited between two iterations across a swap: "),
        "{out}"
    );
}

#[test]
fn the_cells_are_swapped_under_load_and_lose_nothing() {
    let out = &default_run().output;
    // memfs: rebound, no gate; a handle taken before reaches v2; a v2-only function works.
    let memfs = line(out, "swapped `memfs` for upgrades/memfs.o");
    assert!(memfs.contains("without a gate"), "{memfs}");
    assert!(
        out.contains("static memfs::FS: Rebound (32 -> 32 bytes)"),
        "{out}"
    );
    assert!(
        out.contains("the handle to memfs::revision taken before the swap now says \"memfs v2"),
        "{out}"
    );
    assert!(
        out.contains("memfs::stat(\"/home/notes.txt\") = \"/home/notes.txt: file, 4800 bytes"),
        "{out}"
    );
    assert!(
        out.contains("state kept: /home/notes.txt reads back the same 4800 bytes through memfs v2"),
        "{out}"
    );
    // sched, the policy itself: transferred behind its gate; no CPU switched meanwhile.
    let sched = line(
        out,
        "swapped `sched` for upgrades/sched.o behind the gate (calls from nano_core_bare)",
    );
    assert!(
        sched.ends_with("; 0 task switches while the swap ran behind the gate"),
        "{sched}"
    );
    assert!(out.contains("static sched::SCHED: Transferred"), "{out}");
    assert!(
        out.contains("in sched v1 are in sched v2 with their ids"),
        "{out}"
    );
    // frame_alloc: transferred with memfs and sched (which call it) behind the gate.
    let frame_alloc = line(
        out,
        "swapped `frame_alloc` for upgrades/frame_alloc.o behind the gate (calls from memfs, nano_core_bare, sched)",
    );
    assert!(
        !frame_alloc.contains(": 0 slots rewritten"),
        "{frame_alloc}"
    );
    assert!(
        out.contains("static frame_alloc::ALLOCATOR: Transferred"),
        "{out}"
    );
    // counter and the uart driver.
    line(
        out,
        "swapped `counter` for upgrades/counter.o behind the gate (calls from nano_core_bare)",
    );
    assert!(out.contains("static counter::COUNTER: Rebound"), "{out}");
    line(
        out,
        "swapped `uart` for upgrades/uart.o behind the gate (calls from nano_core_bare)",
    );
    assert!(
        out.contains("static uart::RX: Transferred (4136 -> 16440 bytes)"),
        "{out}"
    );
    // Every swap prints its phases.
    for cell in ["memfs", "sched", "frame_alloc", "counter", "uart"] {
        let l = line(out, &format!("swapped `{cell}`"));
        for phase in ["stage ", "verify ", "commit ", "total "] {
            assert!(l.contains(phase), "{l}");
        }
    }
    // The exact state after the workers stopped: frames, files, counts; no call failed.
    let frames = line(out, "exact state: frames: ");
    assert!(frames.contains("none held twice, none lost"), "{frames}");
    assert!(
        frames.contains("frame_alloc v2: buddy allocator"),
        "{frames}"
    );
    let files = line(out, "exact state: files: ");
    assert!(
        files.contains("read back as last written through memfs v2"),
        "{files}"
    );
    assert!(files.contains("/home/notes.txt unchanged"), "{files}");
    let counter = line(out, "exact state: counter: ");
    let count = number_after(counter, "exact state: counter: ");
    assert!(
        counter.contains(&format!("= the workers' {count} bumps")),
        "{counter}"
    );
    assert!(counter.contains("through counter v2"), "{counter}");
    let calls = line(out, "calls: ");
    assert!(calls.contains(" calls into cells, 0 failed"), "{calls}");
    assert!(!out.contains("FAILED"), "{out}");
}

#[test]
fn retired_versions_are_reclaimed_once_every_cpu_was_quiescent() {
    let out = &default_run().output;
    assert!(out.contains("reclaim: grace period over after "), "{out}");
    for cell in ["sched", "frame_alloc", "uart", "counter"] {
        assert!(
            out.contains(&format!("reclaim: freed the retired `{cell}` from ")),
            "{cell}:\n{out}"
        );
    }
    // memfs v1 stays: its v2 shares memfs::FS, whose trait objects point into v1.
    assert!(
        out.contains(
            "reclaim: kept the retired `memfs` from kernel/: retired cell `memfs` shares memfs::FS"
        ),
        "{out}"
    );
    // The frames come back.
    let summary = line(out, "reclaim: 4 retired versions freed; cell frames free ");
    let before = number_after(summary, "cell frames free ");
    let after = number_after(summary, &format!("{before} -> "));
    assert!(after > before, "{summary}");
}

#[test]
fn a_task_that_faults_in_a_cell_ends_and_the_kernel_goes_on() {
    let out = &default_run().output;
    // A write to a cell's text from a task: a page fault named with the cell and the symbol.
    let write = out
        .find("kernel: exception 14 (page fault) on cpu ")
        .unwrap_or_else(|| panic!("no page fault:\n{out}"));
    let report: Vec<&str> = out[write..].lines().take(4).collect();
    assert!(report[0].contains("in task `wx`"), "{report:?}");
    assert!(
        report[2].contains("page fault on write, protection violation: 0x")
            && report[2].contains(", cell `memfs` 0.1.0 (live), text: memfs::create + 0x0"),
        "{report:?}"
    );
    assert!(
        report[3].contains("the task is ended, the kernel goes on"),
        "{report:?}"
    );
    // An invalid opcode inside a cell's text: the cell, its symbol and the offset.
    let ud = out
        .find("kernel: exception 6 (invalid opcode) on cpu ")
        .unwrap_or_else(|| panic!("no invalid opcode:\n{out}"));
    let report: Vec<&str> = out[ud..].lines().take(3).collect();
    assert!(report[0].contains("in task `ud`"), "{report:?}");
    assert!(report[1].contains(", cell `"), "{report:?}");
    assert!(report[1].contains(" (live), text: "), "{report:?}");
    assert!(report[1].contains(" + 0x"), "{report:?}");
    assert!(
        report[2].contains("the task is ended, the kernel goes on"),
        "{report:?}"
    );
    assert!(
        out.contains(
            "faults: 2 tasks ended by faults (ud, wx), their sched entries removed; the kernel went on"
        ),
        "{out}"
    );
    // And the run still ended with every check passed.
    assert!(out.contains("all checks passed, powering off"), "{out}");
}

#[test]
fn the_uart_driver_is_swapped_while_its_interrupts_fire_and_loses_no_byte() {
    require_qemu();
    const LINES: usize = 6000;
    let mut data = String::new();
    for i in 0..LINES {
        data.push_str(&format!("{i:06}\n"));
    }
    data.push_str("end\n");
    let mut on_line = |line: &str, input: &qemu::Input| {
        if line == "uart-test: ready" {
            // The whole stream at once: QEMU hands it to the UART as fast as the guest reads.
            for chunk in data.as_bytes().chunks(512) {
                input.send(chunk.to_vec()).unwrap();
            }
        }
    };
    let options = qemu::BootOptions::new("uart-test", TIMEOUT);
    let run = qemu::boot_with(image(), &options, Some(&mut on_line)).expect("starting QEMU");
    let out = &run.output;
    assert!(
        run.succeeded(),
        "{}:\n{out}",
        qemu::describe_failure(&run, TIMEOUT)
    );
    // Every byte arrived, in order, through both versions of the driver.
    assert!(
        out.contains(&format!(
            "uart-test: received {} bytes: lines 0..{LINES} in order, none missing, then `end`",
            data.len()
        )),
        "{out}"
    );
    let swaps = out
        .lines()
        .filter(|l| l.starts_with("uart-test: swap "))
        .count();
    assert!(swaps >= 2, "{out}");
    assert!(out.contains("`uart` -> upgrades/uart.o"), "{out}");
    assert!(out.contains("`uart` -> kernel/uart.o"), "{out}");
    assert!(out.contains("all checks passed, powering off"), "{out}");
}

#[test]
fn the_keep_list_names_what_the_cells_need_from_the_image() {
    let image = image();
    let keep = std::fs::read_to_string(image.kernel.parent().unwrap().join("../../keep.ld"))
        .expect("reading keep.ld");
    for needed in [
        "\"memcpy\"",
        "___rust_alloc",
        "core9panicking9panic_fmt",
        "rust_eh_personality",
    ] {
        assert!(
            keep.contains(needed),
            "{needed} missing from keep.ld:\n{keep}"
        );
    }
    // Symbols a cell defines (log's, frame_alloc's, the dependency cells') are not asked of the
    // image.
    assert!(!keep.contains("MAX_LOG_LEVEL_FILTER"), "{keep}");
    assert!(!keep.contains("frame_alloc"), "{keep}");
    for crate_name in ["crc32fast", "foldhash", "bitflags"] {
        assert!(!keep.contains(crate_name), "{crate_name}: {keep}");
    }
    assert_eq!(
        keep.lines().filter(|l| l.starts_with("EXTERN(")).count(),
        image.kept_symbols
    );
}

#[test]
fn the_boot_module_is_an_ar_archive_goblin_reads_back() {
    let members = vec![
        ("kernel/a-long-member-name.o".to_string(), vec![1u8, 2, 3]),
        ("manifest.json".to_string(), b"{}".to_vec()),
        ("odd".to_string(), Vec::new()),
    ];
    let bytes = qemu::write_archive(&members).unwrap();
    let archive = goblin::archive::Archive::parse(&bytes).unwrap();
    for (name, data) in &members {
        assert_eq!(
            archive.extract(name, &bytes).unwrap(),
            data.as_slice(),
            "{name}"
        );
    }
    assert_eq!(archive.len(), 3);
}

#[test]
fn the_boot_module_holds_the_kernel_cells_and_the_dependency_cells_they_need() {
    let image = image();
    let names: Vec<&str> = image.members.iter().map(|(n, _)| n.as_str()).collect();
    let manifest = module_manifest(image);
    // The module's manifest lists exactly the objects in it.
    let mut objects: Vec<&str> = manifest.cells.iter().map(|e| e.object.as_str()).collect();
    objects.extend(["nano_core_bare", "manifest.json"]);
    objects.sort();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(sorted, objects);
    for kernel in ["frame_alloc", "klog", "kvstore", "memfs", "sched", "uart"] {
        assert!(
            names.contains(&format!("kernel/{kernel}.o").as_str()),
            "{names:?}"
        );
    }
    // The library cells that need no std, for the tasks and the shell's `load`.
    for lib in ["counter", "greet", "kvquery", "columns"] {
        assert!(
            names.contains(&format!("libs/{lib}.o").as_str()),
            "{names:?}"
        );
    }
    for upgrade in ["frame_alloc", "memfs", "sched", "uart", "counter"] {
        assert!(
            names.contains(&format!("upgrades/{upgrade}.o").as_str()),
            "{names:?}"
        );
    }
    // Every dependency cell of every kernel cell and kernel upgrade, transitively, under its
    // manifest path; `log` is one of them, no special member.
    for entry in &manifest.cells {
        for dep in manifest.dependency_closure(entry).unwrap() {
            assert!(
                names.contains(&dep.object.as_str()),
                "{} for {}",
                dep.object,
                entry.name
            );
        }
    }
    let log = dep_cell(&manifest, "log");
    assert!(
        names.contains(&format!("deps/log-{}.o", log.version).as_str()),
        "{names:?}"
    );
    assert!(!names.contains(&"deps/log.o"), "{names:?}");
    // Nothing that needs std, and no application.
    assert!(
        names
            .iter()
            .all(|n| !n.starts_with("apps/") && *n != "libs/textkit.o" && *n != "libs/tls_stats.o"),
        "{names:?}"
    );
    for only_hosted in ["regex", "memchr"] {
        assert!(
            !names
                .iter()
                .any(|n| n.starts_with(&format!("deps/{only_hosted}-"))),
            "{names:?}"
        );
    }
}

#[test]
fn the_packer_reads_the_kernels_build_id_and_refuses_a_file_without_one() {
    let image = image();
    let kernel = std::fs::read(&image.kernel).unwrap();
    // `--build-id=sha1`: 20 bytes, the ones packed with the symbol table.
    let id = qemu::build_id(&kernel).unwrap();
    assert_eq!(id.len(), 20);
    assert_eq!(id, image.build_id.as_slice());
    // The test hook changes the note and nothing else.
    let other = qemu::with_build_id(&kernel, &[0xab; 20]).unwrap();
    assert_eq!(qemu::build_id(&other).unwrap(), &[0xab; 20]);
    let differing = kernel.iter().zip(&other).filter(|(a, b)| a != b).count();
    assert!((1..=20).contains(&differing), "{differing} bytes differ");
    assert!(qemu::with_build_id(&kernel, &[0; 16]).is_err());
    // A cell object has no build id note: a kernel linked like that would be refused.
    let members = module_members(image);
    let (_, object) = members
        .iter()
        .find(|(name, _)| name == "kernel/memfs.o")
        .unwrap();
    let error = format!("{:#}", qemu::build_id(object).unwrap_err());
    assert!(error.contains("no GNU build id note"), "{error}");
}

#[test]
fn a_kernel_symbol_table_of_another_build_is_refused_by_build_id() {
    // The boot module's copy of the kernel's ELF file says another build id, with the very same
    // symbols: `kernel_main` is where it runs, so a check by that one address would accept it
    // (as it accepted a stale symbol table after a rebuild by hand, which then faulted).
    let running = image().build_id.clone();
    let stale: Vec<u8> = running.iter().map(|b| !b).collect();
    let run = boot_edited("test-other-build", |name, data| {
        if name == "nano_core_bare" {
            *data = qemu::with_build_id(data, &stale).unwrap();
        }
    });
    let out = &run.output;
    let failed = failure_line(out);
    assert!(
        failed.contains(&format!(
            "build id {} in the boot module, {} running",
            hex::encode(&stale),
            hex::encode(&running)
        )),
        "{failed}"
    );
    assert!(failed.contains("no cell was linked"), "{failed}");
    assert!(failed.contains("cargo cell qemu --build-only"), "{failed}");
    // Refused before the symbols were taken and before any cell was loaded.
    assert!(!out.contains("kernel symbols:"), "{out}");
    assert!(!out.contains("loaded cell"), "{out}");
    assert!(!out.contains("loaded dependency cell"), "{out}");
}

#[test]
fn a_corrupted_cell_in_the_boot_module_is_refused_by_name() {
    // Every member as it is, but memfs's object cut in half.
    let run = boot_edited("test-corrupt", |name, data| {
        if name == "kernel/memfs.o" {
            data.truncate(data.len() / 2);
        }
    });
    let out = &run.output;
    // The cells before it loaded; memfs is refused with the loader's typed error, which names it,
    // and the kernel stops without a panic or a fault.
    assert!(out.contains("loaded cell `klog`"), "{out}");
    let failed = failure_line(out);
    assert!(failed.contains("kernel cell `memfs`"), "{failed}");
    assert!(
        failed.contains("SHA-256") || failed.contains("sha256"),
        "{failed}"
    );
    assert!(!out.contains("loaded cell `memfs`"), "{out}");
}

#[test]
fn a_corrupted_dependency_cell_is_refused_with_the_cell_that_needs_it() {
    let manifest = module_manifest(image());
    let heapless = dep_cell(&manifest, "heapless").object.clone();
    let run = boot_edited("test-corrupt-dep", |name, data| {
        if name == heapless {
            data.truncate(data.len() / 2);
        }
    });
    let out = &run.output;
    assert!(out.contains("loaded cell `klog`"), "{out}");
    let failed = failure_line(out);
    assert!(failed.contains("kernel cell `kvstore`"), "{failed}");
    assert!(
        failed.contains("dependency cell `heapless` 0.9.3"),
        "{failed}"
    );
    assert!(!out.contains("loaded dependency cell `heapless`"), "{out}");
    assert!(!out.contains("loaded cell `kvstore`"), "{out}");
}

#[test]
fn a_dependency_cell_left_out_of_the_plan_is_named_as_not_loaded() {
    // The module's manifest forgets that kvstore needs crc32fast: the kernel loads kvstore without
    // it, and the loader's error names the crate that defines the missing symbols (the kernel
    // gives the loader the manifest as its catalog).
    let manifest = module_manifest(image());
    let crc32fast = dep_cell(&manifest, "crc32fast");
    let (key, version) = (
        crc32fast.crate_info.as_ref().unwrap().key.clone(),
        crc32fast.version.clone(),
    );
    let run = boot_edited("test-missing-dep", |name, data| {
        if name == "manifest.json" {
            let mut manifest: Manifest = serde_json::from_slice(data).unwrap();
            for entry in &mut manifest.cells {
                if entry.name == "kvstore" {
                    entry.crates.retain(|k| *k != key);
                }
            }
            *data = serde_json::to_vec(&manifest).unwrap();
        }
    });
    let out = &run.output;
    assert!(!out.contains("loaded dependency cell `crc32fast`"), "{out}");
    let failed = failure_line(out);
    assert!(failed.contains("kernel cell `kvstore`"), "{failed}");
    assert!(failed.contains("undefined symbol"), "{failed}");
    assert!(out.contains("crc32fast::"), "{out}");
    assert!(
        out.contains(&format!(
            "the crates that define them are not loaded: `crc32fast {version}`"
        )),
        "{out}"
    );
}
