//! The live source: a snapshot from a running `nano_core`, over its control channel.
//!
//! The request is `snapshot`; the reply body is the snapshot as one line of JSON (compact JSON
//! has no line breaks), followed by the protocol's final `ok` line ([`crate::control`]).

use std::path::Path;

use anyhow::{bail, Context, Result};

use super::model::{parse, Snapshot};
use crate::control;

/// The control request that asks for a snapshot.
pub const REQUEST: &str = "snapshot";

/// Asks the `nano_core` serving on `socket` for a snapshot of its system.
pub fn fetch(socket: &Path) -> Result<Snapshot> {
    let reply = control::request(socket, REQUEST)?;
    if let Some(error) = &reply.error {
        bail!(
            "nano_core on {} refused `{REQUEST}`: {error}{}",
            socket.display(),
            if error.contains("unknown") {
                " (this nano_core predates snapshots: rebuild it)"
            } else {
                ""
            }
        );
    }
    from_reply_lines(&reply.lines).with_context(|| {
        format!(
            "reading the snapshot nano_core sent on {}",
            socket.display()
        )
    })
}

/// Parses the body lines of a `snapshot` reply.
pub fn from_reply_lines(lines: &[String]) -> Result<Snapshot> {
    // A body line that looks like the final line is sent with a leading space; JSON ignores it.
    Ok(parse(&lines.join("\n"))?.snapshot)
}
