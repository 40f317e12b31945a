//! The socket file: bound next to nothing else, a stale one replaced, removed when the server
//! stops (if it is still ours).

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// The listening socket; its file is removed on drop (if it is still ours).
pub struct SocketFile {
    /// Where it is.
    pub path: PathBuf,
    /// The listener (non-blocking).
    pub listener: UnixListener,
    ino: Option<u64>,
}

impl SocketFile {
    /// Binds `path`, replacing a stale socket file (one nobody listens on), never anything else.
    pub fn bind(path: &Path) -> Result<SocketFile> {
        if let Ok(meta) = std::fs::symlink_metadata(path) {
            if !meta.file_type().is_socket() {
                bail!(
                    "{} exists and is not a socket; not replacing it",
                    path.display()
                );
            }
            if UnixStream::connect(path).is_ok() {
                bail!(
                    "another server already listens on {} (stop it with `cargo cell ctl quit`)",
                    path.display()
                );
            }
            std::fs::remove_file(path)
                .with_context(|| format!("removing the stale socket {}", path.display()))?;
        }
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        let listener = UnixListener::bind(path).with_context(|| {
            format!(
                "listening on {} (a socket path must be shorter than 108 bytes)",
                path.display()
            )
        })?;
        let ino = std::fs::symlink_metadata(path).ok().map(|m| m.ino());
        let socket = SocketFile {
            path: path.to_path_buf(),
            listener,
            ino,
        };
        socket
            .listener
            .set_nonblocking(true)
            .context("making the socket non-blocking")?;
        Ok(socket)
    }
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        let ours = std::fs::symlink_metadata(&self.path)
            .ok()
            .is_some_and(|m| Some(m.ino()) == self.ino);
        if ours {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}
