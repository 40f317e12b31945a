//! Reading what the running system is told to load: cell objects and manifests.
//!
//! A path the system reads can come from a user (`swap memfs <path>`) or from a manifest anyone
//! with write access to `target/cells` can edit, so it can name a FIFO (whose `open` blocks until
//! a writer comes, and whose reads block after), a device (`/dev/zero` never ends), or a file that
//! grows while it is read. Every read here opens the path without blocking (`O_NONBLOCK`, which
//! also makes a FIFO's `open` return at once), refuses anything that is not a regular file, and
//! caps the size — checked with `fstat` before anything is allocated, and again while reading —
//! at the size the manifest records or a fixed maximum.

use std::fmt;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The largest cell object read without a size from the manifest (a swap to a path).
pub const MAX_OBJECT: u64 = 256 << 20;
/// The largest manifest read.
pub const MAX_MANIFEST: u64 = 64 << 20;

/// Why a file was not read.
#[derive(Debug)]
pub enum ReadError {
    /// It is not a regular file (a FIFO, a device, a directory, a socket).
    NotRegular {
        /// The path.
        path: PathBuf,
        /// What it is instead.
        kind: &'static str,
    },
    /// It is larger than allowed.
    TooLarge {
        /// The path.
        path: PathBuf,
        /// How large it is (or grew to while read).
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// Opening or reading it failed.
    Io {
        /// The path.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::NotRegular { path, kind } => write!(
                f,
                "{} is {kind}, not a regular file: refusing to read it",
                path.display()
            ),
            ReadError::TooLarge { path, size, limit } => write!(
                f,
                "{} is {size} bytes, more than the {limit} allowed: refusing to read it",
                path.display()
            ),
            ReadError::Io { path, source } => write!(f, "reading {}: {source}", path.display()),
        }
    }
}

impl std::error::Error for ReadError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ReadError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// The bytes of the regular file at `path`, at most `limit` of them (see the module docs).
pub fn read_regular(path: &Path, limit: u64) -> Result<Vec<u8>, ReadError> {
    let io = |source| ReadError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    let kind = meta.file_type();
    if !kind.is_file() {
        use std::os::unix::fs::FileTypeExt;
        let what = if kind.is_fifo() {
            "a FIFO"
        } else if kind.is_char_device() {
            "a character device"
        } else if kind.is_block_device() {
            "a block device"
        } else if kind.is_dir() {
            "a directory"
        } else if kind.is_socket() {
            "a socket"
        } else {
            "a special file"
        };
        return Err(ReadError::NotRegular {
            path: path.to_path_buf(),
            kind: what,
        });
    }
    if meta.len() > limit {
        return Err(ReadError::TooLarge {
            path: path.to_path_buf(),
            size: meta.len(),
            limit,
        });
    }
    // The file may still grow: read at most one byte past the limit to notice.
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(limit + 1).read_to_end(&mut bytes).map_err(io)?;
    if bytes.len() as u64 > limit {
        return Err(ReadError::TooLarge {
            path: path.to_path_buf(),
            size: bytes.len() as u64,
            limit,
        });
    }
    Ok(bytes)
}

/// The manifest of the cells directory `cells_dir`, read as [`read_regular`] reads: the one place
/// `nano_core` reads it (at boot, and when `--watch` or a swap reloads it).
pub fn read_manifest(cells_dir: &Path) -> anyhow::Result<crate_metadata::Manifest> {
    use anyhow::Context;
    let path = cells_dir.join(crate_metadata::MANIFEST_FILE);
    let text = read_manifest_text(&path)?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

/// The manifest at `path`, read as [`read_regular`] reads, as text.
pub fn read_manifest_text(path: &Path) -> Result<String, ReadError> {
    let bytes = read_regular(path, MAX_MANIFEST)?;
    String::from_utf8(bytes).map_err(|e| ReadError::Io {
        path: path.to_path_buf(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_special_files_and_big_ones_without_blocking() {
        let dir = std::env::temp_dir().join(format!("files-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fifo = dir.join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid C string; mkfifo only creates the node.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        assert!(matches!(
            read_regular(&fifo, 10),
            Err(ReadError::NotRegular { kind: "a FIFO", .. })
        ));
        assert!(matches!(
            read_regular(Path::new("/dev/zero"), 10),
            Err(ReadError::NotRegular {
                kind: "a character device",
                ..
            })
        ));
        assert!(matches!(
            read_regular(&dir, 10),
            Err(ReadError::NotRegular {
                kind: "a directory",
                ..
            })
        ));
        let file = dir.join("file");
        std::fs::write(&file, b"0123456789").unwrap();
        assert_eq!(read_regular(&file, 10).unwrap(), b"0123456789");
        assert!(matches!(
            read_regular(&file, 9),
            Err(ReadError::TooLarge {
                size: 10,
                limit: 9,
                ..
            })
        ));
        assert!(matches!(
            read_regular(&dir.join("missing"), 9),
            Err(ReadError::Io { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
