//! The control channel from outside the running system: `nano_core --serve` as a child process,
//! driven over its Unix socket while load threads keep calling through cell handles, and
//! `--watch` swapping in a cell whose object was rebuilt.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate_metadata::{CellKind, Manifest};

/// How long any one step may take before the test fails instead of hanging.
const STEP: Duration = Duration::from_secs(10);

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(label: &str) -> TempDir {
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
struct Server {
    child: Child,
    socket: PathBuf,
    stdout: Receiver<String>,
    seen: Vec<String>,
    stderr: Arc<Mutex<String>>,
    /// Holds the socket; removed when the server is dropped.
    dir: TempDir,
}

impl Server {
    /// Starts `nano_core --cells <cells> --serve <tmp>/s.sock <extra>` and waits until it serves.
    fn start(cells: &Path, extra: &[&str]) -> Server {
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
    fn wait_for(&mut self, needle: &str) -> String {
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

    fn fail(&mut self, what: &str) -> ! {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let stderr = self.stderr.lock().map(|s| s.clone()).unwrap_or_default();
        panic!(
            "{what}\n--- stdout:\n{}\n--- stderr:\n{stderr}",
            self.seen.join("\n")
        );
    }

    /// Sends raw bytes, returns the reply's body lines and its final line.
    fn raw(&mut self, bytes: &[u8]) -> (Vec<String>, String) {
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
    fn ok(&mut self, request: &str) -> Vec<String> {
        let (body, last) = self.raw(format!("{request}\n").as_bytes());
        if last != "ok" {
            self.fail(&format!("`{request}` failed: {last}\n{}", body.join("\n")));
        }
        body
    }

    /// Sends a request that must fail; returns the error line.
    fn error(&mut self, request: &[u8]) -> String {
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
    fn quit(mut self) -> ExitStatus {
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
fn counter(lines: &[String], key: &str) -> u64 {
    lines
        .iter()
        .find_map(|l| l.strip_prefix(key)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no `{key}` line in:\n{}", lines.join("\n")))
}

fn row<'a>(lines: &'a [String], cell: &str, state: &str) -> Option<&'a String> {
    lines.iter().find(|l| {
        let mut words = l.split_whitespace();
        words.next() == Some(cell) && l.split_whitespace().any(|w| w == state)
    })
}

#[test]
fn serves_requests_and_swaps_while_load_threads_keep_calling() {
    let cells = common::cells_dir();
    let mut server = Server::start(cells, &["--load", "2"]);
    let socket = server.socket.clone();

    assert_eq!(server.ok("ping"), ["pong"]);
    let ls = server.ok("ls");
    for cell in ["klog", "frame_alloc", "sched", "memfs"] {
        assert!(
            row(&ls, cell, "live").is_some(),
            "{cell} not live:\n{}",
            ls.join("\n")
        );
    }
    let ns = server.ok("ns");
    assert!(ns.iter().any(|l| l.starts_with("_kernel:")), "{ns:?}");
    assert!(ns.iter().any(|l| l.contains("memfs 0.1.0")), "{ns:?}");

    // Let the load run, then swap under it.
    let deadline = Instant::now() + STEP;
    while counter(&server.ok("status"), "calls") == 0 {
        assert!(Instant::now() < deadline, "the load makes no calls");
        std::thread::sleep(Duration::from_millis(20));
    }
    let object = cells.join("kernel/memfs.o");
    let swap = server.ok(&format!("swap memfs {}", object.display()));
    let text = swap.join("\n");
    assert!(
        swap.iter().any(|l| l.starts_with("swapped memfs cell#")),
        "{text}"
    );
    assert!(
        swap.iter()
            .any(|l| l.contains("memfs::FS") && l.contains("rebound")),
        "memfs::FS not rebound:\n{text}"
    );
    assert!(
        swap.iter()
            .any(|l| l.contains("commit") && l.contains("total")),
        "no phase times:\n{text}"
    );
    assert!(
        swap.iter().any(|l| l.starts_with("slots rewritten:")),
        "{text}"
    );

    let ls = server.ok("ls");
    assert!(
        row(&ls, "memfs", "retired").is_some() && row(&ls, "memfs", "live").is_some(),
        "no retired and live memfs:\n{}",
        ls.join("\n")
    );

    // Refusals and malformed requests: an `error:` reply, and the server keeps answering.
    let garbage = server.dir.0.join("garbage.o");
    std::fs::write(&garbage, b"this is not an ELF object").expect("write garbage");
    for bad in [
        b"swap nosuch\n".to_vec(),
        format!("swap nosuch {}\n", object.display()).into_bytes(),
        b"swap memfs /no/such/object.o\n".to_vec(),
        format!("swap memfs {}\n", garbage.display()).into_bytes(),
        b"swap\n".to_vec(),
        b"frobnicate\n".to_vec(),
        b"\n".to_vec(),
        b"\xff\xfe\n".to_vec(),
        b"ping extra\n".to_vec(),
    ] {
        let error = server.error(&bad);
        assert!(error.starts_with("error: "), "{error}");
        assert_eq!(server.ok("ping"), ["pong"]);
    }
    let error = server.error(b"swap nosuch\n");
    assert!(error.contains("nosuch"), "{error}");
    // Clients that leave early: before sending anything, and halfway through a line.
    drop(UnixStream::connect(&socket).expect("connect"));
    {
        let mut s = UnixStream::connect(&socket).expect("connect");
        s.write_all(b"sta").expect("partial write");
    }
    assert_eq!(server.ok("ping"), ["pong"]);

    // The load saw every call answered right, across the swap.
    let status = server.ok("status");
    assert!(counter(&status, "calls") > 0, "{status:?}");
    assert_eq!(
        counter(&status, "failed"),
        0,
        "calls failed:\n{}",
        status.join("\n")
    );

    let exit = server.quit();
    assert!(exit.success(), "exit status {exit:?}");
    assert!(!socket.exists(), "the socket file was left behind");
}

/// Copies the objects and the manifest of `from` into `to`.
fn copy_cells(from: &Path, to: &Path) -> Manifest {
    let text = std::fs::read_to_string(from.join("manifest.json")).expect("manifest");
    let manifest: Manifest = serde_json::from_str(&text).expect("manifest parses");
    for e in &manifest.cells {
        let dest = to.join(&e.object);
        std::fs::create_dir_all(dest.parent().expect("a kind dir")).expect("mkdir");
        std::fs::copy(from.join(&e.object), &dest).expect("copy object");
    }
    std::fs::write(to.join("manifest.json"), text).expect("copy manifest");
    manifest
}

/// Writes `bytes` to `path` the way `cargo cell build` does: a temporary file, then a rename.
fn replace(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

/// Gives the cell `name` new object bytes in the copy, as a rebuild would.
fn rebuild(cells: &Path, manifest: &mut Manifest, name: &str, bytes: &[u8]) {
    use sha2::Digest;
    let entry = manifest
        .cells
        .iter_mut()
        .find(|e| e.kind == CellKind::Kernel && e.name == name)
        .expect("a kernel cell");
    replace(&cells.join(&entry.object), bytes);
    entry.sha256 = nano_core::boot::hex(&sha2::Sha256::digest(bytes));
    entry.size = bytes.len() as u64;
    let json = serde_json::to_string_pretty(&*manifest).expect("serialize");
    replace(&cells.join("manifest.json"), json.as_bytes());
}

#[test]
fn watch_swaps_in_a_rebuilt_cell_and_survives_a_bad_one() {
    let copy = TempDir::new("watch-cells");
    let mut manifest = copy_cells(common::cells_dir(), &copy.0);
    let mut server = Server::start(&copy.0, &["--watch", "--load", "1"]);
    let before = server.ok("ls");
    let old = row(&before, "memfs", "live").expect("memfs live").clone();

    // A "rebuilt" memfs: the same object with a trailing byte, so a valid ELF with another hash.
    let mut bytes = std::fs::read(copy.0.join("kernel/memfs.o")).expect("memfs.o");
    bytes.push(0);
    rebuild(&copy.0, &mut manifest, "memfs", &bytes);
    server.wait_for("watch: swapped memfs");
    let after = server.ok("ls");
    let retired = row(&after, "memfs", "retired").expect("the old memfs retired");
    let id = |l: &str| l.split_whitespace().nth(2).map(str::to_string);
    assert_eq!(id(retired), id(&old), "{after:?}");
    let new = row(&after, "memfs", "live").expect("a new memfs live");
    assert_ne!(id(new), id(&old));

    // A broken rebuild: the swap fails, is reported, and the system keeps running.
    rebuild(&copy.0, &mut manifest, "memfs", b"not an object");
    server.wait_for("watch: swapping memfs failed");
    assert_eq!(server.ok("ping"), ["pong"]);
    let still = server.ok("ls");
    assert_eq!(row(&still, "memfs", "live"), Some(new), "{still:?}");
    let status = server.ok("status");
    assert_eq!(counter(&status, "failed"), 0, "{}", status.join("\n"));

    let exit = server.quit();
    assert!(exit.success(), "exit status {exit:?}");
}
