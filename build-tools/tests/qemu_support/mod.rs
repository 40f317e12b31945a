//! What the QEMU boot tests (qemu.rs) share: the image built once, the default run booted once,
//! and helpers that read the boot module and the console output.

use std::sync::OnceLock;
use std::time::Duration;

use build_tools::qemu::{self, BareImage, QemuRun, QEMU_FAILURE};
use build_tools::{build_cells, BuildOptions};
use crate_metadata::{CellKind, Manifest, ManifestEntry};

pub const TIMEOUT: Duration = Duration::from_secs(60);

/// The cells, the kernel and the boot module, built once for this test binary.
pub fn image() -> &'static BareImage {
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
pub fn module_members(image: &BareImage) -> Vec<(String, Vec<u8>)> {
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
pub fn module_manifest(image: &BareImage) -> Manifest {
    let members = module_members(image);
    let (_, json) = members
        .iter()
        .find(|(n, _)| n == "manifest.json")
        .expect("the boot module has a manifest.json");
    serde_json::from_slice(json).expect("the boot module's manifest parses")
}

/// The one dependency cell named `name` that the kernel cells use (a new version of a kernel
/// cell may use another release: `cells/upgrades/kvstore` moves `heapless`).
pub fn dep_cell<'m>(manifest: &'m Manifest, name: &str) -> &'m ManifestEntry {
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
pub fn boot_edited(dir: &str, edit: impl Fn(&str, &mut Vec<u8>)) -> QemuRun {
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
pub fn failure_line(out: &str) -> &str {
    out.lines()
        .find(|l| l.contains("FAILED:"))
        .unwrap_or_else(|| panic!("no failure line:\n{out}"))
}

/// The position of the line that reports `what` (`loaded cell `klog` 0.1.0`) as loaded.
pub fn loaded_at(out: &str, what: &str) -> usize {
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

pub fn require_qemu() {
    if let Err(e) = qemu::qemu_binary() {
        panic!("cannot boot the bare-metal kernel: {e:#}");
    }
}

/// The default run (no command line), booted once for every test that reads it.
pub fn default_run() -> &'static QemuRun {
    static RUN: OnceLock<QemuRun> = OnceLock::new();
    RUN.get_or_init(|| {
        require_qemu();
        let run = qemu::boot(image(), "", TIMEOUT, false).expect("starting QEMU");
        assert!(
            run.succeeded(),
            "{}; the console said:\n{}",
            qemu::describe_failure(&run, TIMEOUT),
            run.output
        );
        run
    })
}

/// The line of `out` that starts with `prefix`.
pub fn line<'a>(out: &'a str, prefix: &str) -> &'a str {
    out.lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no line starting with {prefix:?}:\n{out}"))
}

/// The number right after `after` in `text`.
pub fn number_after(text: &str, after: &str) -> u64 {
    let at = text
        .find(after)
        .unwrap_or_else(|| panic!("no {after:?} in {text:?}"))
        + after.len();
    text[at..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect::<String>()
        .parse()
        .unwrap_or_else(|_| panic!("no number after {after:?} in {text:?}"))
}
