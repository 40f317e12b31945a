//! New versions of cells: the crates under `cells/upgrades/`, built with the crate identity of the
//! cells they replace.
//!
//! A new version is swappable by exact symbol name only when its symbols carry the hashes of the
//! live cell's: rustc derives them from the crate's name, version, features, profile, its
//! dependencies' hashes, and the package's path relative to the workspace root (measured: the same
//! crate at `cells/kernel/frame_alloc` in two workspace roots gets identical hashes, at another
//! relative path different ones). And two packages of one name cannot both be members of one
//! workspace. So an upgrade is its own crate in `cells/upgrades/<crate>/` (outside the workspace:
//! the root `Cargo.toml` excludes `cells/upgrades`) with exactly the live cell's package name,
//! version, features and dependencies, and it is built in a **shadow workspace**: a copy of the
//! workspace's source under `<target>/cell-upgrades/ws/<group>/` in which the upgrade's source
//! replaces the live cell's directory, so that it sits at the live cell's relative path.
//!
//! An upgrade is built against the *live* versions of every other cell: upgrades go into one
//! shadow together unless one depends (transitively) on the cell another replaces; then they get
//! separate shadows ("groups"), each with its own target directory
//! (`<target>/cell-upgrades/target/<group>/`), because the live and the new version of a crate
//! have the same output file names. Shadows and target directories persist between builds and
//! only files whose bytes changed are rewritten, so cargo's freshness checks see an unchanged
//! shadow as unchanged and a build with nothing changed rebuilds nothing. Each shadow build is one
//! `cargo build -p <upgrade>...`: the base image and the loader are not built there.
//!
//! The pieces, one file each: [`groups`] (which upgrades share a shadow), [`shadow`] (writing,
//! locking and running cargo in shadow workspaces), [`compile`] (building them and reading their
//! objects), [`identity`] (comparing an upgrade's symbols and crate identity with the live cell's).
//! A new version that moves its dependencies to other releases is a dependency upgrade
//! ([`crate::dependency_upgrade`]). [`find`] reads `cells/upgrades/`.

pub mod compile;
pub mod find;
pub mod groups;
pub mod identity;
pub mod shadow;

pub use compile::{build_upgrades, BuiltUpgrade};
pub use find::{find_upgrades, package_name, Upgrade, SHADOW_DIR, UPGRADES_DIR};
pub use groups::{plan_groups, ShadowGroup};
pub use identity::{compare_exports, LiveCell, SymbolComparison};
pub use shadow::{run_cargo_in_shadows, shadow_files, sync_shadow, SyncStats};
