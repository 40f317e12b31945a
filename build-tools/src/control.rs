//! The client side of `nano_core`'s control channel (`cargo cell swap`, `load`, `unload`, `ctl`).
//!
//! The protocol is the `control-protocol` crate's, which the server (`nano_core::control`) uses
//! too: connect to the Unix socket, send one request line, read the reply until the server closes
//! the connection. A reply is body lines followed by one final line, `ok` or `error: <message>`;
//! the body lines before an `error:` line are the rest of a multi-line error message.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};

/// The socket `cargo cell run` serves on unless told otherwise: `<target>/cells/nano_core.sock`.
pub fn default_socket(target_dir: &Path) -> PathBuf {
    target_dir.join("cells").join("nano_core.sock")
}

/// How long a request may take before the client gives up (a swap loads an object, which takes
/// milliseconds; this only guards against a server that hangs).
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(60);

pub use control_protocol::Reply;

/// Sends one request line to the server on `socket` and returns its reply. Fails when nothing
/// listens there (the message says to start `cargo cell run`) or the reply is malformed; an
/// `error:` reply is an `Ok(Reply)` whose `error` is set.
pub fn request(socket: &Path, line: &str) -> Result<Reply> {
    control_protocol::check_request(line.as_bytes())
        .with_context(|| format!("not sending `{}`", control_protocol::escape_controls(line)))?;
    let mut stream = UnixStream::connect(socket).with_context(|| {
        format!(
            "no nano_core serves on {} (start one with `cargo cell run`, or pass --socket PATH)",
            socket.display()
        )
    })?;
    stream
        .set_read_timeout(Some(REPLY_TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(REPLY_TIMEOUT)))
        .context("setting the socket's timeouts")?;
    stream
        .write_all(format!("{line}\n").as_bytes())
        .and_then(|()| stream.flush())
        .with_context(|| format!("sending `{line}` to {}", socket.display()))?;
    let mut bytes = Vec::new();
    stream
        .read_to_end(&mut bytes)
        .with_context(|| format!("reading the reply from {}", socket.display()))?;
    Ok(Reply::from_wire(&String::from_utf8_lossy(&bytes))?)
}

/// The flags of `cargo cell swap`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SwapFlags {
    /// `--fresh`: the new version's statics start fresh.
    pub fresh: bool,
    /// `--force`: fresh state even for statics the base image shares.
    pub force: bool,
}

/// The request line for `cargo cell swap <cell> [<object>] [--fresh [--force]]`; a relative
/// object path is resolved against `cwd`.
pub fn swap_request(
    cell: &str,
    object: Option<&Path>,
    flags: SwapFlags,
    cwd: &Path,
) -> Result<String> {
    if cell.is_empty() || cell.contains(char::is_whitespace) {
        bail!("`{cell}` is not a cell name");
    }
    let mut line = format!("swap {cell}");
    if let Some(object) = object {
        let path = if object.is_absolute() {
            object.to_path_buf()
        } else {
            cwd.join(object)
        };
        let text = path
            .to_str()
            .with_context(|| format!("{} is not valid UTF-8", path.display()))?;
        line.push(' ');
        line.push_str(text);
    }
    if flags.fresh {
        line.push_str(" --fresh");
    }
    if flags.force {
        line.push_str(" --force");
    }
    Ok(line)
}

/// Whether `cargo cell load`'s argument is an object file rather than a cell name: it has a
/// `/` or ends in `.o` (a cell name has neither).
pub fn is_object_path(what: &str) -> bool {
    what.contains('/') || what.ends_with(".o")
}

/// The request line for `cargo cell load <cell|object> [--ns <namespace>]`; an object path is made
/// absolute against `cwd` (the server runs elsewhere), so the server sees a `/` in it.
pub fn load_request(what: &str, namespace: Option<&str>, cwd: &Path) -> Result<String> {
    let what = if is_object_path(what) {
        let path = Path::new(what);
        let path = if path.is_absolute() {
            path.to_path_buf()
        } else {
            cwd.join(path)
        };
        path.to_str()
            .with_context(|| format!("{} is not valid UTF-8", path.display()))?
            .to_string()
    } else {
        cell_name(what)?.to_string()
    };
    with_namespace(format!("load {what}"), namespace)
}

/// The request line for `cargo cell unload <cell> [--ns <namespace>]`.
pub fn unload_request(cell: &str, namespace: Option<&str>) -> Result<String> {
    with_namespace(format!("unload {}", cell_name(cell)?), namespace)
}

fn cell_name(cell: &str) -> Result<&str> {
    if cell.is_empty() || cell.contains(char::is_whitespace) || cell.starts_with('-') {
        bail!("`{cell}` is not a cell name");
    }
    Ok(cell)
}

fn with_namespace(line: String, namespace: Option<&str>) -> Result<String> {
    match namespace {
        None => Ok(line),
        Some(ns) if ns.is_empty() || ns.contains(char::is_whitespace) || ns.starts_with('-') => {
            bail!("`{ns}` is not a namespace name")
        }
        Some(ns) => Ok(format!("{line} --ns {ns}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_and_unload_requests() {
        let cwd = Path::new("/work");
        assert_eq!(load_request("greet", None, cwd).unwrap(), "load greet");
        assert_eq!(
            load_request("greet", Some("test"), cwd).unwrap(),
            "load greet --ns test"
        );
        assert_eq!(
            load_request("greet.o", None, cwd).unwrap(),
            "load /work/greet.o"
        );
        assert_eq!(
            load_request("t/x", Some("app:hello#1"), cwd).unwrap(),
            "load /work/t/x --ns app:hello#1"
        );
        assert_eq!(
            load_request("/abs/greet.o", None, cwd).unwrap(),
            "load /abs/greet.o"
        );
        assert_eq!(
            unload_request("greet", Some("test")).unwrap(),
            "unload greet --ns test"
        );
        assert!(load_request("two words", None, cwd).is_err());
        assert!(load_request("--ns", None, cwd).is_err());
        assert!(unload_request("greet", Some("a b")).is_err());
        assert!(unload_request("", None).is_err());
    }

    #[test]
    fn swap_requests_resolve_relative_paths() {
        let cwd = Path::new("/work");
        assert_eq!(
            swap_request("memfs", None, SwapFlags::default(), cwd).unwrap(),
            "swap memfs"
        );
        assert_eq!(
            swap_request(
                "memfs",
                Some(Path::new("t/memfs.o")),
                SwapFlags {
                    fresh: true,
                    force: false
                },
                cwd
            )
            .unwrap(),
            "swap memfs /work/t/memfs.o --fresh"
        );
        assert_eq!(
            swap_request(
                "memfs",
                Some(Path::new("/abs/memfs.o")),
                SwapFlags::default(),
                cwd
            )
            .unwrap(),
            "swap memfs /abs/memfs.o"
        );
        let both = SwapFlags {
            fresh: true,
            force: true,
        };
        assert_eq!(
            swap_request("klog", None, both, cwd).unwrap(),
            "swap klog --fresh --force"
        );
        assert!(swap_request("two words", None, SwapFlags::default(), cwd).is_err());
    }

    #[test]
    fn no_server_says_how_to_start_one() {
        let socket = std::env::temp_dir().join(format!("no-such-{}.sock", std::process::id()));
        let err = request(&socket, "ping").unwrap_err();
        assert!(format!("{err:#}").contains("cargo cell run"), "{err:#}");
    }
}
