//! The control channel with clients that misbehave: a slow client holds up nobody else, the
//! watch and SIGTERM are handled while one is connected, over-long requests and control bytes get
//! a clean `error:` reply, and only a bounded number of clients are served at once.
//!
//! Nothing here asserts a duration: each test asserts what happened while a slow client was still
//! connected; the time limits are only guards against a hang.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::mpsc::{channel, Receiver};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::server::{Server, TempDir, STEP};
use crate_metadata::{CellKind, Manifest};

/// A client that sends `text` one byte a second and never finishes in time; what it got back.
struct SlowClient {
    reply: Arc<Mutex<Option<String>>>,
    thread: JoinHandle<()>,
}

impl SlowClient {
    /// Connects, sends the first byte, and returns once the server has it (signalled on `sent`).
    fn start(socket: &Path, text: &'static [u8]) -> SlowClient {
        let mut stream = UnixStream::connect(socket).expect("connect");
        let reply = Arc::new(Mutex::new(None));
        let (sent, first) = channel();
        let got = reply.clone();
        let thread = std::thread::spawn(move || {
            let mut text_left = text.iter();
            let mut received = Vec::new();
            let guard = Instant::now() + 3 * STEP;
            while Instant::now() < guard {
                if let Some(b) = text_left.next() {
                    if stream.write_all(&[*b]).is_err() {
                        break;
                    }
                    let _ = sent.send(());
                }
                stream
                    .set_read_timeout(Some(Duration::from_secs(1)))
                    .unwrap();
                let mut buf = [0u8; 256];
                match stream.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => received.extend_from_slice(&buf[..n]),
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                    Err(e) => {
                        received.extend_from_slice(format!("<{e}>").as_bytes());
                        break;
                    }
                }
            }
            *got.lock().unwrap() = Some(String::from_utf8_lossy(&received).into_owned());
        });
        first
            .recv_timeout(STEP)
            .expect("the slow client sends its first byte");
        SlowClient { reply, thread }
    }

    /// Whether it has its reply (the connection is closed) already.
    fn done(&self) -> bool {
        self.reply.lock().unwrap().is_some()
    }

    /// Its whole reply, once the server closed the connection.
    fn finish(self) -> String {
        self.thread.join().expect("the slow client's thread");
        self.reply.lock().unwrap().take().unwrap_or_default()
    }
}

/// Sends `bytes` on a fresh connection (from a thread, so that a server that stops reading cannot
/// block the test) and returns the raw reply.
fn send_raw(socket: &Path, bytes: Vec<u8>) -> Vec<u8> {
    let mut stream = UnixStream::connect(socket).expect("connect");
    stream.set_read_timeout(Some(STEP)).unwrap();
    let writer = {
        let mut stream = stream.try_clone().unwrap();
        std::thread::spawn(move || stream.write_all(&bytes))
    };
    let mut reply = Vec::new();
    let read = stream.read_to_end(&mut reply);
    assert!(
        read.is_ok(),
        "reading the reply failed (a reset connection?): {read:?}"
    );
    let _ = writer.join();
    reply
}

#[test]
fn a_slow_client_holds_up_nobody_and_gets_the_deadline_error() {
    let mut server = Server::start(common::cells_dir(), &[]);
    let slow = SlowClient::start(&server.socket, b"status of everything");
    // The server is reading the slow client's line; another client is answered meanwhile.
    assert_eq!(server.ok("ping"), ["pong"]);
    assert!(
        !slow.done(),
        "the slow client was answered before the ping: the ping waited for it"
    );
    let ls = server.ok("ls");
    assert!(ls.iter().any(|l| l.starts_with("memfs")), "{ls:?}");
    assert!(
        !slow.done(),
        "the slow client left before the second request"
    );
    // Its line never ended in time: one deadline for the whole line, not one per byte.
    let reply = slow.finish();
    assert_eq!(
        reply, "error: no complete request line within 5 s\n",
        "the slow client's reply"
    );
    assert_eq!(server.ok("ping"), ["pong"]);
    assert!(server.quit().success());
}

#[test]
fn over_long_requests_and_control_bytes_get_a_clean_error() {
    let mut server = Server::start(common::cells_dir(), &[]);
    let long = control_protocol::MAX_REQUEST + 40_000;
    for (what, bytes) in [
        ("no line break", vec![b'x'; long]),
        ("a line break at the end", {
            let mut b = vec![b'p'; long];
            b.push(b'\n');
            b
        }),
    ] {
        let reply = send_raw(&server.socket, bytes);
        assert_eq!(
            String::from_utf8_lossy(&reply),
            "error: the request is longer than 65536 bytes\n",
            "{what}"
        );
    }
    for (request, code) in [
        (&b"swap \x1b[31mmemfs\x1b[0m\n"[..], "U+001B"),
        (b"ping\x00\n", "U+0000"),
        (b"ls\tlong\n", "U+0009"),
        (b"sta\x7ftus\n", "U+007F"),
    ] {
        let reply = send_raw(&server.socket, request.to_vec());
        let text = String::from_utf8_lossy(&reply);
        assert!(
            text.starts_with("error: the request holds a control character") && text.contains(code),
            "{text:?}"
        );
        assert!(
            !reply[..reply.len() - 1]
                .iter()
                .any(|b| b.is_ascii_control()),
            "the reply echoes a control byte: {text:?}"
        );
    }
    // An unknown request's name comes back in the error, and never a control byte with it: the
    // request line cannot hold one, and no reply line can.
    let reply = send_raw(&server.socket, "frob\u{85}nicate\n".as_bytes().to_vec());
    let text = String::from_utf8_lossy(&reply);
    assert!(
        text.starts_with("error: the request holds a control character"),
        "{text:?}"
    );
    assert!(!text.trim_end().chars().any(char::is_control), "{text:?}");
    assert_eq!(server.ok("ping"), ["pong"]);
    assert!(server.quit().success());
}

/// Gives the kernel cell `name` a "rebuilt" object in the copy (one more trailing byte: a valid
/// ELF with another hash), as `cargo cell build` writes it.
fn rebuild(cells: &Path, manifest: &mut Manifest, name: &str) {
    let entry = manifest
        .get_mut(CellKind::Kernel, name)
        .expect("a kernel cell");
    let path = cells.join(&entry.object);
    let mut bytes = std::fs::read(&path).expect("object");
    bytes.push(0);
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, &bytes).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    entry.sha256 = loader::sha256(&bytes);
    entry.size = bytes.len() as u64;
    build_tools::manifest::write(cells, manifest).unwrap();
}

#[test]
fn watch_and_sigterm_are_handled_while_a_slow_client_is_connected() {
    let copy = TempDir::new("deadline-watch");
    let mut manifest = common::copy_cells(common::cells_dir(), &copy.0);
    let mut server = Server::start(&copy.0, &["--watch"]);
    let slow = SlowClient::start(&server.socket, b"ping, eventually");
    rebuild(&copy.0, &mut manifest, "memfs");
    server.wait_for("watch: swapped memfs");
    assert!(
        !slow.done(),
        "the slow client was answered before the watch acted: the watch waited for it"
    );
    // SAFETY: `kill` sends a signal to the child this test started; it touches no memory here.
    let sent = unsafe { libc::kill(server.child.id() as i32, libc::SIGTERM) };
    assert_eq!(sent, 0, "kill");
    server.wait_for("nano_core: interrupted");
    server.wait_for("nano_core: stopped");
    // The slow client was still connected when the signal came; the server told it why it goes.
    let reply = slow.finish();
    assert!(
        reply == "error: the server is stopping\n"
            || reply == "error: no complete request line within 5 s\n",
        "{reply:?}"
    );
    let deadline = Instant::now() + STEP;
    let status = loop {
        if let Some(status) = server.child.try_wait().expect("wait") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "nano_core did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
    assert!(!server.socket.exists(), "the socket file was left behind");
}

/// The number of threads of process `pid`.
fn threads(pid: u32) -> usize {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .expect("/proc/PID/status")
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
        .expect("a Threads line")
}

#[test]
fn only_a_bounded_number_of_clients_are_served_at_once() {
    let mut server = Server::start(common::cells_dir(), &[]);
    let pid = server.child.id();
    let before = threads(pid);
    let max = nano_core::control::server::MAX_CLIENTS;
    // More silent clients than the server serves at once: each holds a slot until its deadline.
    let silent: Vec<UnixStream> = (0..max + 2)
        .map(|_| UnixStream::connect(&server.socket).expect("connect"))
        .collect();
    let (tx, rx): (_, Receiver<Vec<u8>>) = channel();
    let readers: Vec<JoinHandle<()>> = silent
        .into_iter()
        .map(|mut s| {
            let tx = tx.clone();
            std::thread::spawn(move || {
                s.set_read_timeout(Some(3 * STEP)).unwrap();
                let mut reply = Vec::new();
                let _ = s.read_to_end(&mut reply);
                let _ = tx.send(reply);
            })
        })
        .collect();
    // While they wait, the server never has more than one thread per client slot.
    let mut most = 0;
    let mut answered = 0;
    while answered < max + 2 {
        most = most.max(threads(pid));
        if let Ok(reply) = rx.recv_timeout(Duration::from_millis(50)) {
            assert_eq!(
                String::from_utf8_lossy(&reply),
                "error: no complete request line within 5 s\n"
            );
            answered += 1;
        }
        assert!(
            most <= before + max,
            "{most} threads for {max} client slots"
        );
    }
    for r in readers {
        r.join().unwrap();
    }
    assert!(most > before, "the silent clients were not served at all");
    assert_eq!(server.ok("ping"), ["pong"]);
    assert!(server.quit().success());
}
