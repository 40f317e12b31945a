//! The manifest on disk (`<cells>/manifest.json`): the one reader and the one writer that the
//! tools and the tests use. (`nano_core` reads it with its own bounded, non-blocking reader,
//! `nano_core::files::read_manifest`, since a hostile file may stand there.)

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use crate_metadata::{Manifest, MANIFEST_FILE};

use crate::files::write_if_changed;

/// The manifest's path in the cells directory `cells_dir`.
pub fn path(cells_dir: &Path) -> PathBuf {
    cells_dir.join(MANIFEST_FILE)
}

/// The manifest in `text`, read from `path` (which the error names).
pub fn parse(text: &str, path: &Path) -> Result<Manifest> {
    serde_json::from_str(text).with_context(|| format!("parsing {}", path.display()))
}

/// The manifest of the cells directory `cells_dir`.
pub fn read(cells_dir: &Path) -> Result<Manifest> {
    let path = path(cells_dir);
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    parse(&text, &path)
}

/// The manifest as the build writes it: pretty JSON ending in a newline.
pub fn to_json(manifest: &Manifest) -> Result<String> {
    let mut json = serde_json::to_string_pretty(manifest).context("serializing the manifest")?;
    json.push('\n');
    Ok(json)
}

/// Writes `manifest` into `cells_dir` (a temporary file, then a rename; only when its bytes
/// change). Returns whether it was rewritten.
pub fn write(cells_dir: &Path, manifest: &Manifest) -> Result<bool> {
    write_if_changed(&path(cells_dir), to_json(manifest)?.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_written_manifest_reads_back_and_an_unchanged_one_is_not_rewritten() {
        let dir = std::env::temp_dir().join(format!("manifest-io-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let manifest = Manifest {
            serial: Some(7),
            ..Manifest::default()
        };
        assert!(write(&dir, &manifest).unwrap());
        assert!(
            !write(&dir, &manifest).unwrap(),
            "same bytes: not rewritten"
        );
        assert_eq!(read(&dir).unwrap(), manifest);
        std::fs::write(path(&dir), "{").unwrap();
        let err = format!("{:#}", read(&dir).unwrap_err());
        assert!(err.starts_with("parsing "), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
