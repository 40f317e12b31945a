//! `cargo cell new <kernel|lib|app> <name>`: a new cell that follows the conventions, in the
//! workspace, built.
//!
//! It writes `cells/<kind>/<name>/` (`Cargo.toml`, `build.rs`, `src/lib.rs`, `tests/loads.rs`;
//! [`templates`]) and appends the cell's interface to `cell-abi/src/lib.rs` (`cell_abi::<name>`:
//! each function's path and type, which the cell checks at compile time and hosts bind by). The
//! workspace's members include `cells/<kind>/*`, so the cell is a member as soon as it exists,
//! and `cargo cell build` picks it up. A name that is not a plain Rust identifier, a keyword, or
//! the name of any package in the build (cells, the workspace's crates, every dependency crate,
//! whose dependency cells carry their crate names) is refused before anything is written; when
//! the first build fails, everything written is taken back.

pub mod templates;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use crate_metadata::CellKind;

use crate::build::{build_cells, BuildOptions};
use crate::workspace::{cargo_binary, find_workspace_root};

/// The kind of cell to make.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `cells/kernel/<name>`: loaded at boot, `init` called, `no_std` (bare metal links it too).
    Kernel,
    /// `cells/libs/<name>`: loaded at boot, called by applications, cells and the host.
    Lib,
    /// `cells/apps/<name>`: loaded when started, in a namespace of its own.
    App,
}

impl Kind {
    /// `kernel`, `lib` or `app`.
    pub fn parse(word: &str) -> Option<Kind> {
        match word {
            "kernel" => Some(Kind::Kernel),
            "lib" | "libs" => Some(Kind::Lib),
            "app" | "apps" => Some(Kind::App),
            _ => None,
        }
    }

    /// The cell kind the build gives it.
    pub fn cell_kind(self) -> CellKind {
        match self {
            Kind::Kernel => CellKind::Kernel,
            Kind::Lib => CellKind::Libs,
            Kind::App => CellKind::Apps,
        }
    }
}

/// Why a name is refused. Nothing is written when a name is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NameError {
    /// Not `[a-z][a-z0-9_]*` (at most 64 characters).
    NotAnIdentifier {
        /// The name.
        name: String,
    },
    /// A Rust keyword, or a crate every cell already sees (`core`, `alloc`, `std`, ...).
    Reserved {
        /// The name.
        name: String,
    },
    /// Something of that name exists already.
    Taken {
        /// The name.
        name: String,
        /// What has it.
        by: String,
    },
}

impl std::fmt::Display for NameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NameError::NotAnIdentifier { name } => write!(
                f,
                "`{name}` cannot name a cell: use lower-case letters, digits and `_`, starting \
                 with a letter (at most 64), e.g. `{}`",
                suggestion(name)
            ),
            NameError::Reserved { name } => {
                write!(
                    f,
                    "`{name}` cannot name a cell: it is a Rust keyword or a built-in crate"
                )
            }
            NameError::Taken { name, by } => write!(f, "`{name}` is taken: {by}"),
        }
    }
}

impl std::error::Error for NameError {}

/// A lower-case, underscored version of `name`, for the error message.
fn suggestion(name: &str) -> String {
    let mut s: String = name
        .chars()
        .map(|c| match c {
            'A'..='Z' => c.to_ascii_lowercase(),
            'a'..='z' | '0'..='9' => c,
            _ => '_',
        })
        .collect();
    if !s.starts_with(|c: char| c.is_ascii_lowercase()) {
        s.insert_str(0, "my_");
    }
    s.truncate(64);
    s
}

const RESERVED: &[&str] = &[
    "as",
    "break",
    "const",
    "continue",
    "crate",
    "else",
    "enum",
    "extern",
    "false",
    "fn",
    "for",
    "if",
    "impl",
    "in",
    "let",
    "loop",
    "match",
    "mod",
    "move",
    "mut",
    "pub",
    "ref",
    "return",
    "self",
    "static",
    "struct",
    "super",
    "trait",
    "true",
    "type",
    "unsafe",
    "use",
    "where",
    "while",
    "async",
    "await",
    "dyn",
    "abstract",
    "become",
    "box",
    "do",
    "final",
    "macro",
    "override",
    "priv",
    "typeof",
    "unsized",
    "virtual",
    "yield",
    "try",
    "gen",
    "core",
    "alloc",
    "std",
    "test",
    "proc_macro",
];

/// Whether `name` can name a cell at all (before looking at what exists).
pub fn check_name(name: &str) -> Result<(), NameError> {
    let identifier = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !identifier {
        return Err(NameError::NotAnIdentifier { name: name.into() });
    }
    if RESERVED.contains(&name) {
        return Err(NameError::Reserved { name: name.into() });
    }
    Ok(())
}

/// Whether `name` is free in the workspace at `root`: no cell directory of any kind, no package of
/// the build (`cargo metadata`, dependencies included), not the base image or the platform, no
/// module of `cell-abi`.
pub fn check_free(root: &Path, name: &str) -> Result<(), NameError> {
    let taken = |by: String| NameError::Taken {
        name: name.into(),
        by,
    };
    if name == "nano_core" || name == "platform" {
        return Err(taken(
            "the base image and the platform are cells of that name".into(),
        ));
    }
    for kind in ["kernel", "libs", "apps", "upgrades"] {
        let dir = root.join("cells").join(kind).join(name);
        if dir.exists() {
            return Err(taken(format!("{} exists", dir.display())));
        }
    }
    let abi = std::fs::read_to_string(root.join(CELL_ABI)).unwrap_or_default();
    if abi.contains(&format!("pub mod {name} ")) {
        return Err(taken(format!("{CELL_ABI} has a module `{name}`")));
    }
    match package_names(root) {
        Ok(names) => {
            if let Some(package) = names.iter().find(|p| p.replace('-', "_") == name) {
                return Err(taken(format!(
                    "the package `{package}` is in the build (its crate would be a cell of \
                     that name)"
                )));
            }
        }
        Err(e) => return Err(taken(format!("cannot list the build's packages: {e:#}"))),
    }
    Ok(())
}

/// Every package name `cargo metadata` resolves in the workspace at `root`.
fn package_names(root: &Path) -> Result<Vec<String>> {
    let output = Command::new(cargo_binary())
        .args(["metadata", "--format-version", "1"])
        .current_dir(root)
        .output()
        .context("cannot run `cargo metadata`")?;
    if !output.status.success() {
        bail!(
            "`cargo metadata` failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout)
        .context("cannot parse the output of `cargo metadata`")?;
    Ok(metadata["packages"]
        .as_array()
        .map(|packages| {
            packages
                .iter()
                .filter_map(|p| p["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default())
}

/// The interface crate's source, relative to the workspace root.
pub const CELL_ABI: &str = "cell-abi/src/lib.rs";

/// What [`create`] wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewCell {
    /// Its kind.
    pub kind: Kind,
    /// Its name.
    pub name: String,
    /// `cells/<kind>/<name>`, absolute.
    pub dir: PathBuf,
    /// The files written under `dir`, relative to it.
    pub files: Vec<PathBuf>,
    /// `cell-abi/src/lib.rs` as it was before the cell's module was appended.
    abi_before: String,
}

impl NewCell {
    /// Takes back everything [`create`] wrote: the cell's directory, and `cell-abi` as it was.
    pub fn remove(&self, root: &Path) -> Result<()> {
        std::fs::remove_dir_all(&self.dir)
            .with_context(|| format!("cannot remove {}", self.dir.display()))?;
        std::fs::write(root.join(CELL_ABI), &self.abi_before)
            .with_context(|| format!("cannot restore {CELL_ABI}"))
    }
}

/// Writes a `kind` cell named `name` into the workspace at `root` (nothing is built): its crate,
/// and its interface in `cell-abi`. Refused, with nothing written, for a name [`check_name`] or
/// [`check_free`] refuses.
pub fn create(root: &Path, kind: Kind, name: &str) -> Result<NewCell> {
    check_name(name)?;
    check_free(root, name)?;
    let abi_path = root.join(CELL_ABI);
    let abi_before = std::fs::read_to_string(&abi_path)
        .with_context(|| format!("cannot read {}", abi_path.display()))?;
    let dir = root.join("cells").join(kind.cell_kind().dir()).join(name);
    let fill = |template: &str| template.replace("__NAME__", name);
    let files: Vec<(PathBuf, String)> = vec![
        ("Cargo.toml".into(), fill(&templates::cargo_toml(kind))),
        ("build.rs".into(), templates::BUILD_RS.to_string()),
        ("src/lib.rs".into(), fill(templates::lib_rs(kind))),
        ("tests/loads.rs".into(), fill(&templates::test_rs(kind))),
    ];
    let cell = NewCell {
        kind,
        name: name.to_string(),
        dir: dir.clone(),
        files: files.iter().map(|(path, _)| path.clone()).collect(),
        abi_before: abi_before.clone(),
    };
    let written = (|| -> Result<()> {
        for (path, text) in &files {
            let path = dir.join(path);
            std::fs::create_dir_all(path.parent().expect("a file in the cell's directory"))
                .with_context(|| format!("cannot create {}", dir.display()))?;
            std::fs::write(&path, text)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        let abi = format!("{abi_before}{}", fill(templates::cell_abi_module(kind)));
        std::fs::write(&abi_path, abi)
            .with_context(|| format!("cannot write {}", abi_path.display()))
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::write(&abi_path, &abi_before);
        return Err(e);
    }
    Ok(cell)
}

/// `cargo cell new`: writes the cell ([`create`]), builds everything, takes the cell back if the
/// build fails, and prints what to do next.
pub fn create_and_build(kind: Kind, name: &str, mut build: BuildOptions) -> Result<()> {
    let root = match build.workspace_root.clone() {
        Some(root) => root,
        None => find_workspace_root(
            &std::env::current_dir().context("cannot read the current directory")?,
        )?,
    };
    build.workspace_root = Some(root.clone());
    let cell = create(&root, kind, name)?;
    println!(
        "wrote {} ({}) and its interface, cell_abi::{name}, in {}; building",
        cell.dir.display(),
        cell.files
            .iter()
            .map(|f| f.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
        CELL_ABI
    );
    let report = match build_cells(&build) {
        Ok(report) => report,
        Err(err) => {
            cell.remove(&root)?;
            return Err(err.context(format!(
                "the build with the new cell failed, so {} was removed and {} restored",
                cell.dir.display(),
                CELL_ABI
            )));
        }
    };
    if let Some(entry) = report.manifest.get(kind.cell_kind(), name) {
        println!("built {}", report.cells_dir.join(&entry.object).display());
    }
    print!("{}", next_steps(&cell, &root));
    Ok(())
}

/// What to do next, for people.
pub fn next_steps(cell: &NewCell, root: &Path) -> String {
    let name = &cell.name;
    let dir = cell.dir.strip_prefix(root).unwrap_or(&cell.dir).display();
    let mut s = format!(
        "next:\n  cargo test -p {name}          # its test (tests/loads.rs): boots nano_core on the \
         cells and uses {name}\n  $EDITOR {dir}/src/lib.rs  # each interface function: pub, \
         non-generic, #[inline(never)], declared in cell_abi::{name} ({CELL_ABI})\n"
    );
    match cell.kind {
        Kind::Kernel | Kind::Lib => s.push_str(&format!(
            "  cargo cell info {name}        # what it exports, and who binds to it\n  \
             cargo cell run                # every kernel and library cell is loaded at boot; \
             `cargo cell ctl ls` lists {name}\n  call it from an application (`cargo cell new \
             app my_app`, then `{name} = {{ path = \"../../{}/{name}\" }}` in its \
             [dependencies]),\n  from another cell the same way, or from the host: \
             kernel.bind(cell_abi::{name}::…)\n",
            cell.kind.cell_kind().dir()
        )),
        Kind::App => s.push_str(&format!(
            "  cargo cell run                # then, in another terminal:\n  \
             cargo cell ctl run {name} ada   # runs it in its own namespace, app:{name}#<n>\n"
        )),
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_must_be_plain_identifiers_and_not_keywords() {
        for good in ["memo", "my_cell2", "a"] {
            assert_eq!(check_name(good), Ok(()), "{good}");
        }
        for bad in ["", "My", "2fast", "has-dash", "_x", "é", &"x".repeat(65)] {
            assert!(
                matches!(check_name(bad), Err(NameError::NotAnIdentifier { .. })),
                "{bad}"
            );
        }
        for reserved in ["fn", "std", "core", "self", "test"] {
            assert!(
                matches!(check_name(reserved), Err(NameError::Reserved { .. })),
                "{reserved}"
            );
        }
        assert!(NameError::NotAnIdentifier {
            name: "My-Cell".into()
        }
        .to_string()
        .contains("`my_cell`"));
    }

    #[test]
    fn kinds_are_kernel_lib_and_app() {
        assert_eq!(Kind::parse("kernel"), Some(Kind::Kernel));
        assert_eq!(Kind::parse("lib"), Some(Kind::Lib));
        assert_eq!(Kind::parse("app"), Some(Kind::App));
        assert_eq!(Kind::parse("upgrade"), None);
        assert_eq!(Kind::Lib.cell_kind().dir(), "libs");
    }
}
