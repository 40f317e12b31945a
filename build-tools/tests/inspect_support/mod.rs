//! Shared by the inspection tests: the real cells, built once per test binary by the project's
//! own build tool, and their offline model (a dry link through the loader, with the manifest).

#![allow(dead_code)]

pub mod expect;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use build_tools::inspect::model::Model;
use build_tools::inspect::offline;
use build_tools::{build_cells, BuildOptions, BuildReport};

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

/// The offline model of the real cells.
pub fn model() -> &'static Model {
    static MODEL: OnceLock<Model> = OnceLock::new();
    MODEL.get_or_init(|| {
        offline::from_build(report()).unwrap_or_else(|e| panic!("dry link failed: {e:#}"))
    })
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
