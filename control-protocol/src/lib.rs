//! The wire format of `nano_core`'s control channel, in one place for both ends: the server
//! (`nano_core::control`) and the client (`build_tools::control`, behind `cargo cell swap` and
//! `cargo cell ctl`).
//!
//! # The protocol
//!
//! - A client connects to the Unix socket, sends **one request line** and reads the reply until
//!   the server closes the connection.
//! - A request line is UTF-8, at most [`MAX_REQUEST`] bytes, ends in `\n` (a `\r` before it is
//!   dropped) and holds no control character ([`check_request`]). Anything else is answered with
//!   an `error:` reply, never a reset connection.
//! - A reply ([`Reply`]) is zero or more body lines followed by exactly one final line: `ok`, or
//!   `error: <message>`. A multi-line error message sends its first line in the final line and
//!   its other lines as body lines before it. A body line is never `ok` and never starts with
//!   `error:` (such a line is sent with a leading space), so the final line is unambiguous. No
//!   line on the wire holds a control character: they are sent escaped (`\u{1b}`), so a reply
//!   never echoes one.

#![deny(missing_docs)]

use std::borrow::Cow;
use std::fmt::{self, Write as _};

/// The longest request line, in bytes, without its line break.
pub const MAX_REQUEST: usize = 64 * 1024;

/// A reply: the body lines and, for an error, the first line of its message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// The body lines (for an error: the message's lines after the first).
    pub lines: Vec<String>,
    /// `None` for `ok`, else the error message's first line.
    pub error: Option<String>,
}

impl Reply {
    /// A successful reply with these body lines; a line holding line breaks becomes several.
    pub fn ok(lines: Vec<String>) -> Reply {
        let lines = lines
            .iter()
            .flat_map(|l| l.lines())
            .map(str::to_string)
            .collect();
        Reply { lines, error: None }
    }

    /// An error reply: the message's first non-blank line is the error, its other non-blank
    /// lines the body.
    pub fn error(message: impl AsRef<str>) -> Reply {
        let mut lines = message
            .as_ref()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_string);
        let first = lines.next().unwrap_or_else(|| "failed".into());
        Reply {
            lines: lines.collect(),
            error: Some(first),
        }
    }

    /// Whether the reply is `ok`.
    pub fn is_ok(&self) -> bool {
        self.error.is_none()
    }

    /// The reply as sent: body lines, then `ok` or `error: <message>` (see the crate docs).
    pub fn to_wire(&self) -> String {
        let mut out = String::new();
        for line in &self.lines {
            let line = escape_controls(line);
            if line == "ok" || line.starts_with("error:") {
                out.push(' ');
            }
            out.push_str(&line);
            out.push('\n');
        }
        match &self.error {
            None => out.push_str("ok\n"),
            Some(message) => {
                let _ = writeln!(out, "error: {}", escape_controls(message));
            }
        }
        out
    }

    /// Parses a whole reply as the server sent it.
    pub fn from_wire(text: &str) -> Result<Reply, WireError> {
        let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
        let last = lines.pop().ok_or(WireError::NoReply)?;
        let error = if last == "ok" {
            None
        } else if let Some(message) = last.strip_prefix("error:") {
            Some(message.trim().to_string())
        } else {
            return Err(WireError::NoFinalLine { last });
        };
        Ok(Reply { lines, error })
    }

    /// The reply for people: the body, or for an error the message with its details after it.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Some(e) = &self.error {
            out.push_str("error: ");
            out.push_str(e);
            out.push('\n');
        }
        for l in &self.lines {
            out.push_str(l);
            out.push('\n');
        }
        out
    }
}

/// Why a reply could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WireError {
    /// The server closed the connection without sending anything.
    NoReply,
    /// The reply did not end in `ok` or `error:`.
    NoFinalLine {
        /// The last line it had.
        last: String,
    },
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::NoReply => f.write_str(
                "the server closed the connection without a reply (is it a nano_core control \
                 socket?)",
            ),
            WireError::NoFinalLine { last } => write!(
                f,
                "the reply ended without `ok` or `error:` (last line: `{}`)",
                escape_controls(last)
            ),
        }
    }
}

impl std::error::Error for WireError {}

/// Why a request line is refused before it is looked at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RequestError {
    /// The line is longer than [`MAX_REQUEST`].
    TooLong {
        /// The limit.
        limit: usize,
    },
    /// The line is not UTF-8.
    NotUtf8,
    /// The line holds a control character (a line break inside it included).
    ControlCharacter {
        /// Its byte offset in the line.
        at: usize,
        /// The character's code.
        code: u32,
    },
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestError::TooLong { limit } => {
                write!(f, "the request is longer than {limit} bytes")
            }
            RequestError::NotUtf8 => f.write_str("the request is not UTF-8"),
            RequestError::ControlCharacter { at, code } => write!(
                f,
                "the request holds a control character (U+{code:04X}) at byte {at}"
            ),
        }
    }
}

impl std::error::Error for RequestError {}

/// Checks one request line, given without its final `\n` (a `\r` before the `\n` is dropped
/// here): at most [`MAX_REQUEST`] bytes, UTF-8, no control character.
pub fn check_request(line: &[u8]) -> Result<&str, RequestError> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.len() > MAX_REQUEST {
        return Err(RequestError::TooLong { limit: MAX_REQUEST });
    }
    let text = std::str::from_utf8(line).map_err(|_| RequestError::NotUtf8)?;
    if let Some((at, c)) = text.char_indices().find(|(_, c)| c.is_control()) {
        return Err(RequestError::ControlCharacter {
            at,
            code: u32::from(c),
        });
    }
    Ok(text)
}

/// `text` with every control character written as a Rust escape (`\u{1b}`, `\t`).
pub fn escape_controls(text: &str) -> Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_end_in_one_unambiguous_final_line() {
        let r = Reply::ok(vec!["pong".into(), "ok".into(), "error: not really".into()]);
        assert_eq!(r.to_wire(), "pong\n ok\n error: not really\nok\n");
        let e = Reply::error("the new version lacks 1 symbol:\n  memfs::read (used by nano_core)");
        assert_eq!(
            e.to_wire(),
            "  memfs::read (used by nano_core)\nerror: the new version lacks 1 symbol:\n"
        );
        assert_eq!(Reply::error("").to_wire(), "error: failed\n");
    }

    #[test]
    fn replies_parse() {
        let ok = Reply::from_wire("pong\nok\n").unwrap();
        assert_eq!(ok.lines, ["pong"]);
        assert_eq!(ok.error, None);
        let err = Reply::from_wire("  detail\nerror: it failed\n").unwrap();
        assert_eq!(err.error.as_deref(), Some("it failed"));
        assert_eq!(err.render(), "error: it failed\n  detail\n");
        assert_eq!(Reply::from_wire(""), Err(WireError::NoReply));
        assert!(matches!(
            Reply::from_wire("pong\n"),
            Err(WireError::NoFinalLine { .. })
        ));
        let e = Reply::error("multi\nline");
        assert_eq!(Reply::from_wire(&e.to_wire()).unwrap(), e);
    }

    #[test]
    fn no_control_character_reaches_the_wire() {
        let e = Reply::error("unknown request `\u{1b}[31mred`");
        let wire = e.to_wire();
        assert_eq!(wire, "error: unknown request `\\u{1b}[31mred`\n");
        assert!(!wire.trim_end_matches('\n').chars().any(char::is_control));
        let ok = Reply::ok(vec!["a\tb".into()]);
        assert_eq!(ok.to_wire(), "a\\tb\nok\n");
    }

    #[test]
    fn request_lines_are_checked() {
        assert_eq!(check_request(b"ping"), Ok("ping"));
        assert_eq!(check_request(b"ping\r"), Ok("ping"));
        assert_eq!(check_request(b"\xff\xfe"), Err(RequestError::NotUtf8));
        assert_eq!(
            check_request(b"swap \x1b[31m"),
            Err(RequestError::ControlCharacter { at: 5, code: 0x1b })
        );
        assert_eq!(
            check_request(b"a\nb"),
            Err(RequestError::ControlCharacter { at: 1, code: 10 })
        );
        assert_eq!(
            check_request(&[b'x'; MAX_REQUEST]).map(str::len),
            Ok(MAX_REQUEST)
        );
        assert_eq!(
            check_request(&[b'x'; MAX_REQUEST + 1]),
            Err(RequestError::TooLong { limit: MAX_REQUEST })
        );
    }
}
