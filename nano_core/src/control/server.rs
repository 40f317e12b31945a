//! The serve loop: one thread owns the kernel, clients never hold it up.
//!
//! ```text
//!   acceptor thread ──accept──▶ client thread (at most MAX_CLIENTS at once)
//!                                 read the request line by its deadline
//!                                 ──job──▶ kernel thread ──response──▶ write, drain, close
//!   kernel thread (the caller of `serve`, which owns the `Kernel`):
//!     every TICK at least: signals, one job if one waits, the watch, reclaiming retired versions
//!     (`reclaim.rs`: after swaps, and while a version waits for a grace period)
//! ```
//!
//! Only the kernel thread touches the kernel, one request at a time, so requests never race each
//! other. Reading a request and writing its reply happen on the client's own thread, each within
//! its deadline, so a slow or silent client holds one client slot for a bounded time and nothing
//! else: the kernel thread keeps answering the other clients, polling the watch, reclaiming and
//! looking at the signal flag at least every [`TICK`]. While [`MAX_CLIENTS`] clients are being
//! served, further connections wait in the socket's backlog.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::commands::dispatch;
use super::load::Load;
use super::protocol::{read_request, send, ReadError, Response, REQUEST_DEADLINE};
use super::signals;
use super::socket::SocketFile;
use super::watch::Watch;
use crate::kernel::Kernel;
use crate::reclaim::RECLAIM_INTERVAL;

/// At most this many clients are served at once; more wait in the backlog.
pub const MAX_CLIENTS: usize = 16;

/// The longest the kernel thread waits before it looks at the signals, the watch and reclaiming.
pub const TICK: Duration = Duration::from_millis(25);

/// How often `--watch` looks at the manifest.
const WATCH_INTERVAL: Duration = Duration::from_millis(300);

/// How `nano_core --serve` runs.
#[derive(Clone, Debug, Default)]
pub struct ServeOptions {
    /// The Unix socket to listen on.
    pub socket: std::path::PathBuf,
    /// Poll the manifest and swap in rebuilt cells.
    pub watch: bool,
    /// Background threads that keep calling through cell handles (0: none).
    pub load: usize,
}

/// One request for the kernel thread, and where its response goes.
struct Job {
    line: String,
    respond: Sender<Response>,
}

/// Serves `kernel` on `options.socket` until a `quit` request, SIGINT or SIGTERM. Prints
/// `nano_core: serving on <socket>` once clients can connect. The socket file is removed when
/// this returns.
pub fn serve(kernel: &mut Kernel, options: &ServeOptions) -> Result<()> {
    let socket = SocketFile::bind(&options.socket)?;
    let load = match options.load {
        0 => None,
        n => Some(Load::start(kernel, n).context("starting the background load")?),
    };
    let mut watch = options.watch.then(|| Watch::new(kernel));
    signals::install();
    if let Some(load) = &load {
        println!(
            "nano_core: {} load threads calling {}",
            load.threads(),
            load.names().join(", ")
        );
    }
    if watch.is_some() {
        println!(
            "nano_core: watching {} for rebuilt cells",
            kernel
                .cells_dir()
                .join(crate_metadata::MANIFEST_FILE)
                .display()
        );
    }
    let stop = Arc::new(AtomicBool::new(false));
    let (jobs, queue) = mpsc::channel::<Job>();
    let listener = socket
        .listener
        .try_clone()
        .context("sharing the listening socket with the acceptor thread")?;
    let acceptor = {
        let stop = stop.clone();
        std::thread::Builder::new()
            .name("control-accept".into())
            .spawn(move || accept_loop(&listener, &jobs, &stop))
            .context("starting the acceptor thread")?
    };
    println!("nano_core: serving on {}", socket.path.display());
    kernel_loop(kernel, load.as_ref(), watch.as_mut(), &queue);
    stop.store(true, Ordering::Relaxed);
    // Answers what is still queued: the clients waiting for it are told the server stops.
    drop(queue);
    if acceptor.join().is_err() {
        eprintln!("nano_core: the acceptor thread panicked");
    }
    if let Some(load) = load {
        let status = load.stop();
        println!(
            "nano_core: load stopped: {} calls, {} failed",
            status.calls, status.failed
        );
    }
    println!("nano_core: stopped");
    Ok(())
}

/// The kernel thread: requests one at a time, and between them (at least every [`TICK`]) the
/// signals, the watch and reclaiming.
fn kernel_loop(
    kernel: &mut Kernel,
    load: Option<&Load>,
    mut watch: Option<&mut Watch>,
    queue: &Receiver<Job>,
) {
    let mut last_poll = Instant::now();
    let mut reclaiming = Reclaiming::default();
    loop {
        if signals::received() {
            println!("nano_core: interrupted");
            return;
        }
        match queue.recv_timeout(TICK) {
            Ok(job) => {
                let response = dispatch(kernel, load, &job.line);
                let quit = response.quit;
                // The client may have gone; its thread then drops the receiver.
                let _ = job.respond.send(response);
                if quit {
                    return;
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                eprintln!("nano_core: the acceptor thread stopped; stopping");
                return;
            }
        }
        if let Some(watch) = watch.as_deref_mut() {
            if last_poll.elapsed() >= WATCH_INTERVAL {
                last_poll = Instant::now();
                for line in watch.poll(kernel) {
                    println!("{line}");
                }
            }
        }
        reclaiming.tick(kernel);
    }
}

/// When the kernel thread reclaims retired versions on its own: after something was retired
/// (a swap, by request or by the watch), and again while a version waits for a grace period,
/// at most every [`RECLAIM_INTERVAL`].
struct Reclaiming {
    last: Instant,
    /// How many retired versions the last pass left.
    left: Option<usize>,
    /// Whether the last pass left one that may go later.
    waiting: bool,
}

impl Default for Reclaiming {
    fn default() -> Self {
        Reclaiming {
            last: Instant::now(),
            left: None,
            waiting: false,
        }
    }
}

impl Reclaiming {
    fn tick(&mut self, kernel: &mut Kernel) {
        let retired = kernel.system().retired().len();
        if (self.left == Some(retired) && !self.waiting) || self.last.elapsed() < RECLAIM_INTERVAL {
            return;
        }
        self.last = Instant::now();
        let pass = kernel.reclaim_retired();
        self.waiting = pass.waiting();
        self.left = Some(kernel.system().retired().len());
    }
}

/// The acceptor: takes connections while fewer than [`MAX_CLIENTS`] are served, each on a thread
/// of its own, until `stop`; then waits for the client threads (each ends within its deadlines,
/// sooner once it sees `stop`).
fn accept_loop(listener: &std::os::unix::net::UnixListener, jobs: &Sender<Job>, stop: &AtomicBool) {
    let mut clients: Vec<JoinHandle<()>> = Vec::new();
    let shared_stop = Arc::new(AtomicBool::new(false));
    while !stop.load(Ordering::Relaxed) {
        clients.retain(|c| !c.is_finished());
        if clients.len() >= MAX_CLIENTS {
            std::thread::sleep(TICK);
            continue;
        }
        match listener.accept() {
            Ok((stream, _)) => {
                let accepted = Instant::now();
                let jobs = jobs.clone();
                let stop = shared_stop.clone();
                let spawned = std::thread::Builder::new()
                    .name("control-client".into())
                    .spawn(move || serve_client(&stream, accepted, &jobs, &stop));
                match spawned {
                    Ok(thread) => clients.push(thread),
                    Err(e) => eprintln!("nano_core: no thread for a client: {e}"),
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => wait_for_client(listener),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                eprintln!("nano_core: accepting a client failed: {e}");
                std::thread::sleep(TICK);
            }
        }
    }
    shared_stop.store(true, Ordering::Relaxed);
    for client in clients {
        let _ = client.join();
    }
}

/// Waits until a client connects or [`TICK`] passes (the acceptor then looks at `stop`).
fn wait_for_client(listener: &std::os::unix::net::UnixListener) {
    use std::os::fd::AsRawFd;
    let mut fds = libc::pollfd {
        fd: listener.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: `fds` is one valid `pollfd` that outlives the call; `poll` only writes `revents`.
    let ready = unsafe { libc::poll(&mut fds, 1, TICK.as_millis() as libc::c_int) };
    if ready < 0 {
        // Interrupted by a signal, or something worse: do not spin.
        std::thread::sleep(TICK);
    }
}

/// Serves one connection on its own thread: reads the request by its deadline, has the kernel
/// thread handle it, sends the response. Whatever the client does, only this thread waits for it.
fn serve_client(
    stream: &std::os::unix::net::UnixStream,
    accepted: Instant,
    jobs: &Sender<Job>,
    stop: &AtomicBool,
) {
    if let Err(e) = stream.set_nonblocking(false) {
        eprintln!("nano_core: setting up a client connection failed: {e}");
        return;
    }
    let response = match read_request(stream, accepted + REQUEST_DEADLINE, stop) {
        Ok(Some(line)) => {
            let (respond, response) = mpsc::channel();
            match jobs.send(Job { line, respond }) {
                Ok(()) => response
                    .recv()
                    .unwrap_or_else(|_| Response::error(ReadError::Stopping.to_string())),
                Err(_) => Response::error(ReadError::Stopping.to_string()),
            }
        }
        Ok(None) => return, // connected and left without a request
        Err(e) => Response::error(e.to_string()),
    };
    if let Err(e) = send(stream, &response.reply) {
        eprintln!("nano_core: sending a reply failed (the client left?): {e}");
    }
}
