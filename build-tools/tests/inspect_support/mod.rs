//! Shared by the inspection tests: the real cells, built once per test binary by the project's
//! own build tool, and their offline model (a dry link through the loader, with the manifest).

#![allow(dead_code)]

pub mod expect;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use build_tools::inspect::dry::DryPlatform;
use build_tools::inspect::model::Model;
use build_tools::inspect::offline;
use build_tools::{build_cells, BuildOptions, BuildReport};
use crate_metadata::{CellKind, Manifest, ManifestEntry};

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("build-tools sits in the workspace")
        .to_path_buf()
}

/// `cargo cell build`'s report, built on first use.
pub fn report() -> &'static BuildReport {
    static REPORT: OnceLock<BuildReport> = OnceLock::new();
    REPORT.get_or_init(|| {
        build_cells(&BuildOptions {
            workspace_root: Some(workspace_root()),
            target_dir: None,
            quiet: true,
        })
        .unwrap_or_else(|e| panic!("building the cells failed: {e:#}"))
    })
}

/// The cells the inspection tests and their golden outputs are written against: the project's
/// own cells. A cell a user adds to the workspace is left out of [`model`], so that adding one
/// does not change any expected output (the dependency cells are those these cells need).
pub const FIXTURE: &[(CellKind, &[&str])] = &[
    (
        CellKind::Kernel,
        &["frame_alloc", "klog", "kvstore", "memfs", "sched"],
    ),
    (
        CellKind::Libs,
        &[
            "columns",
            "counter",
            "greet",
            "kvquery",
            "textkit",
            "tls_stats",
        ],
    ),
    (
        CellKind::Apps,
        &["banner", "crasher", "hello", "hola", "sleeper"],
    ),
    (
        CellKind::Upgrades,
        &[
            "counter",
            "frame_alloc",
            "greet",
            "kvquery",
            "kvstore",
            "memfs",
            "sched",
            "tls_stats",
        ],
    ),
];

/// `manifest` restricted to [`FIXTURE`] and the dependency cells those cells need.
pub fn fixture_manifest(manifest: &Manifest) -> Manifest {
    let named = |e: &ManifestEntry| {
        FIXTURE
            .iter()
            .any(|(kind, names)| *kind == e.kind && names.contains(&e.name.as_str()))
    };
    let mut deps = BTreeSet::new();
    for entry in manifest.cells.iter().filter(|e| named(e)) {
        let closure = manifest
            .dependency_closure(entry)
            .unwrap_or_else(|e| panic!("the dependency closure of {}: {e}", entry.name));
        deps.extend(closure.into_iter().map(|d| d.key().to_string()));
    }
    let mut fixture = manifest.clone();
    fixture
        .cells
        .retain(|e| named(e) || (e.kind == CellKind::Deps && deps.contains(e.key())));
    fixture
}

/// The offline model of the real cells of [`FIXTURE`].
pub fn model() -> &'static Model {
    static MODEL: OnceLock<Model> = OnceLock::new();
    MODEL.get_or_init(|| {
        let report = report();
        offline::from_build_with(report, &fixture_manifest(&report.manifest))
            .unwrap_or_else(|e| panic!("dry link failed: {e:#}"))
    })
}

/// A dry link of a copy of the built cells in which `edit` changes the manifest and the objects.
pub fn dry_link_edited(edit: impl FnOnce(&mut Manifest, &Path)) -> Model {
    let r = report();
    let tmp = TempDir::new("unresolved");
    let mut manifest = r.manifest.clone();
    for e in &manifest.cells {
        let to = tmp.0.join(&e.object);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(r.object_path(e), &to).unwrap();
    }
    edit(&mut manifest, &tmp.0);
    let nano_core = r.nano_core.clone().expect("nano_core was built");
    offline::dry_link(&manifest, &tmp.0, DryPlatform::new(&nano_core).unwrap()).unwrap()
}

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// Creates `<tmp>/build-tools-<label>-<pid>-<n>`.
    pub fn new(label: &str) -> TempDir {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "build-tools-{label}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
