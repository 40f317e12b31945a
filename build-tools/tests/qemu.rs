//! The bare-metal `nano_core` (`bare_metal/`), booted under `qemu-system-x86_64`: it must link
//! the kernel cells with the no_std loader, swap memfs, sched and frame_alloc live with their
//! state, keep W^X, and power off with its success code. A second boot asks it to write to a
//! cell's text, which the page tables must refuse.
//!
//! QEMU is required: when `qemu-system-x86_64` is missing these tests fail and say how to install
//! it (`.ci/run` does), rather than passing without having booted anything.

use std::sync::OnceLock;
use std::time::Duration;

use build_tools::qemu::{self, BareImage, QEMU_FAILURE};
use build_tools::{build_cells, BuildOptions};

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
    // Every kernel cell linked by the loader into _kernel, after `log`.
    for cell in ["log", "klog", "frame_alloc", "sched", "memfs"] {
        assert!(
            out.contains(&format!("loaded cell `{cell}`")),
            "{cell} not loaded:\n{out}"
        );
    }
    // The workload ran across them.
    assert!(
        out.contains("double free refused: \"frame_alloc: double free"),
        "{out}"
    );
    assert!(
        out.contains("round robin picks [1, 2, 3, 4, 1, 2]"),
        "{out}"
    );
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
    // Symbols a cell defines (log's, frame_alloc's) are not asked of the image.
    assert!(!keep.contains("MAX_LOG_LEVEL_FILTER"), "{keep}");
    assert!(!keep.contains("frame_alloc"), "{keep}");
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
fn a_corrupted_cell_in_the_boot_module_is_refused_by_name() {
    require_qemu();
    let image = image();
    let bytes = std::fs::read(&image.module).unwrap();
    let archive = goblin::archive::Archive::parse(&bytes).unwrap();
    // Every member as it is, but memfs's object cut in half.
    let members: Vec<(String, Vec<u8>)> = archive
        .members()
        .into_iter()
        .map(|name| {
            let mut data = archive.extract(name, &bytes).unwrap().to_vec();
            if name == "kernel/memfs.o" {
                data.truncate(data.len() / 2);
            }
            (name.to_string(), data)
        })
        .collect();
    assert!(members.iter().any(|(n, _)| n == "kernel/memfs.o"));
    let dir = image.module.parent().unwrap().join("test-corrupt");
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
    // The cells before it loaded; memfs is refused with the loader's typed error, which names it,
    // and the kernel stops without a panic or a fault.
    assert!(out.contains("loaded cell `klog`"), "{out}");
    let failed = out
        .lines()
        .find(|l| l.contains("FAILED:"))
        .unwrap_or_else(|| panic!("no failure line:\n{out}"));
    assert!(failed.contains("memfs"), "{failed}");
    assert!(
        !out.contains("kernel panic") && !out.contains("exception"),
        "{out}"
    );
}
