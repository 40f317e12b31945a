//! Why a run-time `load` or `unload` was refused (`load_unload.rs`). A leaf.
//!
//! The refusals of the loader, the namespaces and file reading keep their own types
//! ([`loader::LoadError`], [`loader::UnloadError`], [`namespace::NamespaceError`],
//! [`crate::files::ReadError`]) in the `anyhow` chain (see [`crate::errors`]); these are the
//! refusals that only a run-time load or unload makes (a cell loaded twice is the loader's
//! [`loader::LoadError::AlreadyLoaded`], a cell in use its [`loader::UnloadError::InUse`]). Nothing was changed by any of them.

use std::fmt;
use std::path::PathBuf;

/// Why a run-time load or unload was refused. Nothing was changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CellError {
    /// The manifest has no kernel, library or dependency cell of this name.
    NotInManifest {
        /// The name asked for.
        cell: String,
    },
    /// The name, or the object, is an application's: applications are started with `run`.
    Application {
        /// The application.
        cell: String,
    },
    /// Several dependency cells have this name (releases or builds of one crate).
    Ambiguous {
        /// The name asked for.
        cell: String,
        /// Their keys (`<crate>@<version>#<hash>`), any of which names one.
        keys: Vec<String>,
    },
    /// An object file the manifest does not list, while keys are trusted: nothing vouches for it.
    Unlisted {
        /// The object.
        object: PathBuf,
    },
    /// Cells this cell depends on (its cell dependencies, not dependency cells) are not loaded
    /// where the namespace sees them.
    MissingCells {
        /// The cell.
        cell: String,
        /// The namespace.
        namespace: String,
        /// The cells it needs that are not loaded.
        missing: Vec<String>,
    },
    /// `app:` names are the applications' namespaces; `load` does not make one.
    ReservedNamespace {
        /// The name asked for.
        namespace: String,
    },
    /// No namespace has this name.
    NoSuchNamespace {
        /// The name asked for.
        namespace: String,
    },
    /// No live cell of this name is in the namespace.
    NotLoaded {
        /// The cell.
        cell: String,
        /// The namespace.
        namespace: String,
    },
    /// The cell's `deinit` panicked: it stays loaded (what `deinit` did before it panicked
    /// cannot be undone).
    Deinit {
        /// The cell.
        cell: String,
        /// The panic's message.
        panic: String,
    },
}

impl fmt::Display for CellError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CellError::NotInManifest { cell } => write!(
                f,
                "the manifest has no kernel, library or dependency cell `{cell}` (see `cargo cell \
                 ls`; to load an object file, give its path)"
            ),
            CellError::Application { cell } => {
                write!(f, "`{cell}` is an application: start it with `run {cell}`")
            }
            CellError::Ambiguous { cell, keys } => write!(
                f,
                "several dependency cells are named `{cell}`; name one by its key: {}",
                keys.join(", ")
            ),
            CellError::Unlisted { object } => write!(
                f,
                "{} is not a cell object the manifest lists, and nano_core only runs signed cells",
                object.display()
            ),
            CellError::MissingCells {
                cell,
                namespace,
                missing,
            } => write!(
                f,
                "cell `{cell}` depends on {}, not loaded where namespace `{namespace}` sees it: \
                 load {} first",
                quoted(missing),
                if missing.len() == 1 { "it" } else { "them" }
            ),
            CellError::ReservedNamespace { namespace } => write!(
                f,
                "no namespace `{namespace}`, and `app:` names are the applications' own: load \
                 into a running application's namespace (see `apps`) or another name"
            ),
            CellError::NoSuchNamespace { namespace } => {
                write!(f, "no namespace `{namespace}` (see `ns`)")
            }
            CellError::NotLoaded { cell, namespace } => write!(
                f,
                "no live cell `{cell}` in namespace `{namespace}` (see `ls`)"
            ),
            CellError::Deinit { cell, panic } => write!(
                f,
                "cell `{cell}`: deinit panicked ({panic}); the cell stays loaded"
            ),
        }
    }
}

impl std::error::Error for CellError {}

fn quoted(names: &[String]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}
