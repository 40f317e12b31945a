//! A running `nano_core --serve` for the control channel's tests, and what they read in replies.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long any one step may take before the test fails instead of hanging.
pub const STEP: Duration = Duration::from_secs(10);

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// A new one whose name starts with `label`.
    pub fn new(label: &str) -> TempDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "nano-core-{label}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running `nano_core --serve`; killed on drop if it is still running.
pub struct Server {
    /// The process.
    pub child: Child,
    /// Its socket.
    pub socket: PathBuf,
    stdout: Receiver<String>,
    seen: Vec<String>,
    stderr: Arc<Mutex<String>>,
    /// Holds the socket; removed when the server is dropped.
    pub dir: TempDir,
}

impl Server {
    /// Starts `nano_core --cells <cells> --serve <tmp>/s.sock <extra>` and waits until it serves.
    pub fn start(cells: &Path, extra: &[&str]) -> Server {
        let dir = TempDir::new("control");
        let socket = dir.0.join("s.sock");
        let mut child = Command::new(env!("CARGO_BIN_EXE_nano_core"))
            .arg("--cells")
            .arg(cells)
            .arg("--serve")
            .arg(&socket)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("nano_core starts");
        let (tx, rx) = channel();
        let out = child.stdout.take().expect("stdout piped");
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let err = child.stderr.take().expect("stderr piped");
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = BufReader::new(err).read_to_string(&mut text);
            if let Ok(mut s) = sink.lock() {
                s.push_str(&text);
            }
        });
        let mut server = Server {
            child,
            socket,
            stdout: rx,
            seen: Vec::new(),
            stderr,
            dir,
        };
        let expected = format!("nano_core: serving on {}", server.socket.display());
        server.wait_for(&expected);
        server
    }

    /// Waits until nano_core prints a line containing `needle`; returns it.
    pub fn wait_for(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + STEP;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stdout.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(RecvTimeoutError::Timeout) => self.fail(&format!("no `{needle}` in time")),
                Err(RecvTimeoutError::Disconnected) => {
                    std::thread::sleep(Duration::from_millis(100));
                    self.fail(&format!("nano_core closed its output before `{needle}`"))
                }
            }
        }
    }

    pub fn fail(&mut self, what: &str) -> ! {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let stderr = self.stderr.lock().map(|s| s.clone()).unwrap_or_default();
        panic!(
            "{what}\n--- stdout:\n{}\n--- stderr:\n{stderr}",
            self.seen.join("\n")
        );
    }

    /// Sends raw bytes, returns the reply's body lines and its final line.
    pub fn raw(&mut self, bytes: &[u8]) -> (Vec<String>, String) {
        let reply = (|| -> std::io::Result<String> {
            let mut s = UnixStream::connect(&self.socket)?;
            s.set_read_timeout(Some(STEP))?;
            s.write_all(bytes)?;
            let mut text = String::new();
            s.read_to_string(&mut text)?;
            Ok(text)
        })();
        let text = match reply {
            Ok(t) => t,
            Err(e) => self.fail(&format!(
                "request {:?} failed: {e}",
                String::from_utf8_lossy(bytes)
            )),
        };
        let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
        let last = lines.pop().unwrap_or_default();
        if last != "ok" && !last.starts_with("error: ") {
            self.fail(&format!("malformed reply:\n{text}"));
        }
        (lines, last)
    }

    /// Sends a request that must succeed; returns the body lines.
    pub fn ok(&mut self, request: &str) -> Vec<String> {
        let (body, last) = self.raw(format!("{request}\n").as_bytes());
        if last != "ok" {
            self.fail(&format!("`{request}` failed: {last}\n{}", body.join("\n")));
        }
        body
    }

    /// Sends a request that must fail; returns the error line.
    pub fn error(&mut self, request: &[u8]) -> String {
        let (body, last) = self.raw(request);
        if last == "ok" {
            self.fail(&format!(
                "{:?} succeeded:\n{}",
                String::from_utf8_lossy(request),
                body.join("\n")
            ));
        }
        last
    }

    /// Sends `quit` and waits for the exit.
    pub fn quit(mut self) -> ExitStatus {
        self.ok("quit");
        let deadline = Instant::now() + STEP;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return status,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                _ => self.fail("nano_core did not exit after `quit`"),
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// The number after `key ` on the line that starts with it.
pub fn counter(lines: &[String], key: &str) -> u64 {
    lines
        .iter()
        .find_map(|l| l.strip_prefix(key)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no `{key}` line in:\n{}", lines.join("\n")))
}

pub fn row<'a>(lines: &'a [String], cell: &str, state: &str) -> Option<&'a String> {
    lines.iter().find(|l| {
        let mut words = l.split_whitespace();
        words.next() == Some(cell) && l.split_whitespace().any(|w| w == state)
    })
}
