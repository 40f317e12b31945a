//! The server's side of the wire: reading one request line within its deadline, the limits, and
//! what a handled request gives back ([`Response`]). The format itself is the
//! `control-protocol` crate's.
//!
//! **One deadline per request**: the whole request line must arrive within [`REQUEST_DEADLINE`]
//! of the connection being accepted, however the client spreads its bytes (a client that sends
//! one byte a second gets an `error:` reply when the deadline passes, not one more timeout per
//! `read`). A refused request is answered, then the rest of what the client sends is read and
//! dropped for a bounded while ([`drain`]), so that closing the connection does not reset it
//! before the client has read the error.

use std::fmt;
use std::io::{ErrorKind, Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use control_protocol::{check_request, Reply, RequestError, MAX_REQUEST};

/// How long a client has, from the moment it is accepted, to send its whole request line.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(5);

/// How long writing a reply may take (a client that does not read is left).
pub const WRITE_DEADLINE: Duration = Duration::from_secs(5);

/// How long, and how many bytes, the server reads and drops after a reply before it closes.
pub const DRAIN_DEADLINE: Duration = Duration::from_secs(2);
/// See [`DRAIN_DEADLINE`].
pub const DRAIN_LIMIT: u64 = 16 << 20;

/// The longest a client thread waits in one `read` before it looks at the deadline and at
/// whether the server stops.
const READ_SLICE: Duration = Duration::from_millis(100);

/// What handling a request gives: the reply, and whether the server stops after sending it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// The reply.
    pub reply: Reply,
    /// Whether the server stops after sending it.
    pub quit: bool,
}

impl Response {
    /// An `ok` reply with these body lines.
    pub fn ok(lines: Vec<String>) -> Response {
        Reply::ok(lines).into()
    }

    /// An `error:` reply.
    pub fn error(message: impl AsRef<str>) -> Response {
        Reply::error(message).into()
    }
}

impl From<Reply> for Response {
    fn from(reply: Reply) -> Response {
        Response { reply, quit: false }
    }
}

/// Why no request line was read.
#[derive(Debug)]
pub enum ReadError {
    /// The line is malformed: too long, not UTF-8, a control character.
    Request(RequestError),
    /// The whole line did not arrive within the deadline.
    Deadline(Duration),
    /// The server stops.
    Stopping,
    /// Reading failed.
    Io(std::io::Error),
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::Request(e) => e.fmt(f),
            ReadError::Deadline(d) => {
                write!(f, "no complete request line within {} s", d.as_secs())
            }
            ReadError::Stopping => f.write_str("the server is stopping"),
            ReadError::Io(e) => write!(f, "reading the request: {e}"),
        }
    }
}

impl std::error::Error for ReadError {}

/// Reads one request line from `stream` by `deadline`. `Ok(None)` when the client closed without
/// sending anything. A line cut short by the end of the stream counts as a line. Bytes after the
/// line break are left (and [`drain`]ed later).
pub fn read_request(
    stream: &UnixStream,
    deadline: Instant,
    stop: &AtomicBool,
) -> Result<Option<String>, ReadError> {
    let mut line: Vec<u8> = Vec::with_capacity(128);
    let mut chunk = [0u8; 4096];
    loop {
        if stop.load(Ordering::Relaxed) {
            return Err(ReadError::Stopping);
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(ReadError::Deadline(REQUEST_DEADLINE));
        }
        let wait = (deadline - now).min(READ_SLICE);
        stream.set_read_timeout(Some(wait)).map_err(ReadError::Io)?;
        // Never more than one byte past the limit: enough to know the line is too long.
        let room = (MAX_REQUEST + 1 - line.len()).min(chunk.len());
        match (&*stream).read(&mut chunk[..room]) {
            Ok(0) if line.is_empty() => return Ok(None),
            Ok(0) => break,
            Ok(n) => match chunk[..n].iter().position(|&b| b == b'\n') {
                Some(at) => {
                    line.extend_from_slice(&chunk[..at]);
                    break;
                }
                None => {
                    line.extend_from_slice(&chunk[..n]);
                    if line.len() > MAX_REQUEST {
                        return Err(ReadError::Request(RequestError::TooLong {
                            limit: MAX_REQUEST,
                        }));
                    }
                }
            },
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) => {}
            Err(e) => return Err(ReadError::Io(e)),
        }
    }
    check_request(&line)
        .map(|text| Some(text.to_string()))
        .map_err(ReadError::Request)
}

/// Sends `reply` (within [`WRITE_DEADLINE`]), says that nothing more comes, and reads and drops
/// what the client still sends (see [`drain`]) so that the connection closes cleanly.
pub fn send(stream: &UnixStream, reply: &Reply) -> std::io::Result<()> {
    stream.set_write_timeout(Some(WRITE_DEADLINE))?;
    let mut writer = stream;
    writer.write_all(reply.to_wire().as_bytes())?;
    writer.flush()?;
    let _ = stream.shutdown(Shutdown::Write);
    drain(stream, Instant::now() + DRAIN_DEADLINE, DRAIN_LIMIT);
    Ok(())
}

/// Reads and drops what the client sends until it closes its side, `deadline` passes or `limit`
/// bytes were read. Closing a socket with unread data resets the connection, which can make the
/// client lose the reply it has not read yet.
pub fn drain(stream: &UnixStream, deadline: Instant, limit: u64) {
    let mut sink = [0u8; 8192];
    let mut read = 0u64;
    while read < limit {
        let now = Instant::now();
        if now >= deadline {
            return;
        }
        if stream
            .set_read_timeout(Some((deadline - now).min(READ_SLICE)))
            .is_err()
        {
            return;
        }
        match (&*stream).read(&mut sink) {
            Ok(0) => return,
            Ok(n) => read += n as u64,
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) => {}
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (UnixStream, UnixStream) {
        UnixStream::pair().expect("a socket pair")
    }

    #[test]
    fn a_line_is_read_whole_and_checked() {
        let stop = AtomicBool::new(false);
        let (mut client, server) = pair();
        client.write_all(b"ping\r\nmore").unwrap();
        let deadline = Instant::now() + REQUEST_DEADLINE;
        assert_eq!(
            read_request(&server, deadline, &stop).unwrap().as_deref(),
            Some("ping")
        );
        let (mut client, server) = pair();
        client.write_all(b"swap \x1b[2J\n").unwrap();
        assert!(matches!(
            read_request(&server, deadline, &stop),
            Err(ReadError::Request(RequestError::ControlCharacter {
                at: 5,
                code: 0x1b
            }))
        ));
        let (client, server) = pair();
        drop(client);
        assert!(read_request(&server, deadline, &stop).unwrap().is_none());
    }

    #[test]
    fn the_deadline_is_for_the_whole_line() {
        let stop = AtomicBool::new(false);
        let (mut client, server) = pair();
        client.write_all(b"pi").unwrap();
        // Bytes keep coming, but the line does not end before the deadline.
        let deadline = Instant::now() + Duration::from_millis(300);
        let writer = std::thread::spawn(move || {
            for _ in 0..6 {
                std::thread::sleep(Duration::from_millis(100));
                if client.write_all(b"n").is_err() {
                    break;
                }
            }
        });
        assert!(matches!(
            read_request(&server, deadline, &stop),
            Err(ReadError::Deadline(_))
        ));
        drop(server);
        writer.join().unwrap();
    }

    #[test]
    fn an_over_long_line_is_refused_after_one_byte_too_many() {
        let stop = AtomicBool::new(false);
        let (mut client, server) = pair();
        let writer = std::thread::spawn(move || {
            let _ = client.write_all(&vec![b'x'; MAX_REQUEST * 2]);
            client
        });
        let deadline = Instant::now() + REQUEST_DEADLINE;
        assert!(matches!(
            read_request(&server, deadline, &stop),
            Err(ReadError::Request(RequestError::TooLong { .. }))
        ));
        drain(&server, Instant::now() + DRAIN_DEADLINE, DRAIN_LIMIT);
        drop(writer.join().unwrap());
    }
}
