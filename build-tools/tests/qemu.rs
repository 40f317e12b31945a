//! The bare-metal `nano_core` (`bare_metal/`), booted under `qemu-system-x86_64`: it must link
//! the kernel cells with the no_std loader, each after the dependency cells it needs (`log`,
//! `spin`, and `kvstore`'s crates.io crates), run `kvstore` on them, swap memfs, sched and
//! frame_alloc live with their state, keep W^X, and power off with its success code. Other boots
//! ask it to write to a cell's text, which the page tables must refuse, and give it boot modules
//! with a cut-short kernel cell or dependency cell, or a manifest that leaves a dependency cell
//! out, which it must refuse by name.
//!
//! QEMU is required: when `qemu-system-x86_64` is missing these tests fail and say how to install
//! it (`.ci/run` does), rather than passing without having booted anything.

use std::sync::OnceLock;
use std::time::Duration;

use build_tools::qemu::{self, BareImage, QemuRun, QEMU_FAILURE};
use build_tools::{build_cells, BuildOptions};
use crate_metadata::{CellKind, Manifest, ManifestEntry};

const TIMEOUT: Duration = Duration::from_secs(60);

/// The cells, the kernel and the boot module, built once for this test binary.
fn image() -> &'static BareImage {
    static IMAGE: OnceLock<BareImage> = OnceLock::new();
    IMAGE.get_or_init(|| {
        let report = build_cells(&BuildOptions {
            quiet: true,
            ..BuildOptions::default()
        })
        .expect("building the cells");
        qemu::build_image(&report, true).expect("building the bare-metal kernel and its module")
    })
}

/// The boot module's members, by name.
fn module_members(image: &BareImage) -> Vec<(String, Vec<u8>)> {
    let bytes = std::fs::read(&image.module).unwrap();
    let archive = goblin::archive::Archive::parse(&bytes).unwrap();
    archive
        .members()
        .into_iter()
        .map(|name| {
            (
                name.to_string(),
                archive.extract(name, &bytes).unwrap().to_vec(),
            )
        })
        .collect()
}

/// The manifest in the boot module.
fn module_manifest(image: &BareImage) -> Manifest {
    let members = module_members(image);
    let (_, json) = members
        .iter()
        .find(|(n, _)| n == "manifest.json")
        .expect("the boot module has a manifest.json");
    serde_json::from_slice(json).expect("the boot module's manifest parses")
}

/// The one dependency cell named `name` that the kernel cells use (a new version of a kernel
/// cell may use another release: `cells/upgrades/kvstore` moves `heapless`).
fn dep_cell<'m>(manifest: &'m Manifest, name: &str) -> &'m ManifestEntry {
    let used: Vec<&ManifestEntry> = manifest
        .cells
        .iter()
        .filter(|e| e.kind == CellKind::Kernel)
        .flat_map(|e| manifest.dependency_closure(e).expect("closure"))
        .collect();
    let mut found: Vec<&ManifestEntry> = used
        .into_iter()
        .filter(|e| e.kind == CellKind::Deps && e.name == name)
        .collect();
    found.sort_by(|a, b| a.key().cmp(b.key()));
    found.dedup_by(|a, b| a.key() == b.key());
    assert_eq!(found.len(), 1, "dependency cells named `{name}`: {found:?}");
    found[0]
}

/// Boots a copy of the boot module in which `edit` changed members (by name), and returns the
/// run, which must end with the kernel's failure code, without a panic or a fault.
fn boot_edited(dir: &str, edit: impl Fn(&str, &mut Vec<u8>)) -> QemuRun {
    require_qemu();
    let image = image();
    let mut members = module_members(image);
    for (name, data) in &mut members {
        edit(name, data);
    }
    let dir = image.module.parent().unwrap().join(dir);
    std::fs::create_dir_all(&dir).unwrap();
    let module = dir.join("cells.a");
    std::fs::write(&module, qemu::write_archive(&members).unwrap()).unwrap();
    let bad = BareImage {
        module,
        ..image.clone()
    };
    let run = qemu::boot(&bad, "", TIMEOUT, false).expect("starting QEMU");
    let out = &run.output;
    assert_eq!(run.status, Some(QEMU_FAILURE), "{out}");
    assert!(
        !out.contains("kernel panic") && !out.contains("exception"),
        "{out}"
    );
    run
}

/// The line of `out` that reports the failure.
fn failure_line(out: &str) -> &str {
    out.lines()
        .find(|l| l.contains("FAILED:"))
        .unwrap_or_else(|| panic!("no failure line:\n{out}"))
}

/// The position of the line that reports `what` (`loaded cell `klog` 0.1.0`) as loaded.
fn loaded_at(out: &str, what: &str) -> usize {
    let lines: Vec<usize> = out
        .lines()
        .enumerate()
        .filter(|(_, l)| l.starts_with(&format!("{what} ")))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(
        lines.len(),
        1,
        "`{what}` is not loaded exactly once:\n{out}"
    );
    lines[0]
}

fn require_qemu() {
    if let Err(e) = qemu::qemu_binary() {
        panic!("cannot boot the bare-metal kernel: {e:#}");
    }
}

#[test]
fn the_kernel_links_the_cells_swaps_three_live_and_keeps_their_state() {
    require_qemu();
    let image = image();
    let run = qemu::boot(image, "", TIMEOUT, false).expect("starting QEMU");
    let out = &run.output;
    assert!(
        run.succeeded(),
        "{}; the console said:\n{out}",
        qemu::describe_failure(&run, TIMEOUT)
    );
    // The boot itself: PVH, paging with NX, the kernel's own symbols from its ELF file.
    assert!(out.contains("booted through PVH, in long mode"), "{out}");
    assert!(out.contains("paging on, NX on, CR0.WP on"), "{out}");
    assert!(out.contains("(checked against the running image)"), "{out}");
    // Every kernel cell linked by the loader into _kernel, each after the dependency cells it
    // needs, each of those loaded once (by name and version, as the manifest has them) although
    // several kernel cells need `log` and `spin`. The kernel's own `log` and `spin` are other
    // builds (panic = "abort"), so the image provides none of them.
    let manifest = module_manifest(image);
    let kernel_cells = ["frame_alloc", "klog", "kvstore", "memfs", "sched"];
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
    // memfs: rebound state, a held handle reaches v2, a v2-only function works.
    assert!(out.contains("static memfs::FS: Rebound"), "{out}");
    assert!(
        out.contains("state kept: /home/notes.txt reads back the same 4800 bytes"),
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
    // sched and frame_alloc: state moved by their transfer functions, dependents' slots rewritten.
    assert!(out.contains("static sched::SCHED: Transferred"), "{out}");
    assert!(
        out.contains("state kept: the 4 tasks moved to sched v2 with their ids"),
        "{out}"
    );
    assert!(
        out.contains("the next six picks (by priority now) = [4, 4, 4, 4, 4, 4]"),
        "{out}"
    );
    assert!(
        out.contains("static frame_alloc::ALLOCATOR: Transferred"),
        "{out}"
    );
    let frame_alloc_swap = out
        .lines()
        .find(|l| l.starts_with("swapped `frame_alloc`"))
        .unwrap_or_else(|| panic!("no frame_alloc swap:\n{out}"));
    assert!(
        !frame_alloc_swap.contains(": 0 slots rewritten"),
        "{frame_alloc_swap}"
    );
    assert!(
        out.contains("allocated frames are allocated in v2 too"),
        "{out}"
    );
    // W^X read back from the page tables, before and after the swaps.
    assert_eq!(
        out.matches("none writable and executable").count(),
        2,
        "{out}"
    );
    // The GOT and slot pages were writable only inside the swaps' commits.
    assert!(
        out.contains("GOT write windows: loading opened none;"),
        "{out}"
    );
    assert!(out.contains("read-only again; 0 left writable"), "{out}");
    assert!(out.contains("all checks passed, powering off"), "{out}");
}

#[test]
fn writing_to_a_cells_text_faults() {
    require_qemu();
    let run = qemu::boot(image(), "wx-test", TIMEOUT, false).expect("starting QEMU");
    let out = &run.output;
    assert_eq!(run.status, Some(QEMU_FAILURE), "{out}");
    assert!(
        out.contains("W^X test: writing to the text of `memfs`"),
        "{out}"
    );
    assert!(out.contains("exception 14 (page fault)"), "{out}");
    assert!(out.contains("protection violation, write"), "{out}");
    assert!(!out.contains("all checks passed"), "{out}");
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
    for kernel in ["frame_alloc", "klog", "kvstore", "memfs", "sched"] {
        assert!(
            names.contains(&format!("kernel/{kernel}.o").as_str()),
            "{names:?}"
        );
    }
    for upgrade in ["frame_alloc", "memfs", "sched"] {
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
    // Nothing that only library or application cells use.
    assert!(
        names
            .iter()
            .all(|n| !n.starts_with("libs/") && !n.starts_with("apps/")),
        "{names:?}"
    );
    for only_hosted in ["regex", "unicode_width", "memchr"] {
        assert!(
            !names
                .iter()
                .any(|n| n.starts_with(&format!("deps/{only_hosted}-"))),
            "{names:?}"
        );
    }
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
