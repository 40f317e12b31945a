//! The control channel: driving a running system from outside it.
//!
//! `nano_core --serve SOCKET` boots the kernel cells and then serves a Unix socket until told to
//! quit. The protocol is text:
//!
//! - A client connects, sends **one request line** (ending in `\n`, at most
//!   [`MAX_REQUEST`] bytes, UTF-8) and reads the reply until the server closes the connection.
//! - A reply is zero or more body lines followed by exactly one final line: `ok`, or
//!   `error: <message>`. A multi-line error message sends its first line in the final line and
//!   its other lines as body lines before it. A body line is never `ok` and never starts with
//!   `error:` (such a line is sent with a leading space), so the final line is unambiguous.
//! - One client is served at a time, on the thread that owns the [`Kernel`].
//!
//! | request | reply body |
//! |---------|------------|
//! | `ping` | `pong` |
//! | `ls` | one line per cell object in the registry: name, version, id, namespace, live or retired, mapped size, dependents, SHA-256 prefix |
//! | `ns` | the namespace tree, each namespace with its cells and their versions |
//! | `swap <cell> [<object>] [--fresh]` | what the swap changed: cells (old id → new id, reused or loaded), slots rewritten and their dependents, every static with its outcome and sizes, each phase's time |
//! | `status` | the counters of the background load (`--load N`) |
//! | `quit` | nothing; the server stops after replying |
//!
//! `swap` without an object takes [`Kernel::default_swap_object`]. `--fresh` starts every static
//! of the new version fresh instead of keeping the old state.
//!
//! With `--load N`, N threads keep calling through cell handles ([`Load`]) while the server runs,
//! counting calls and failures, so that a person can swap under load and see that no call failed.
//! With `--watch`, the server polls `<cells>/manifest.json` ([`Watch`]) and swaps in every live
//! cell whose object a rebuild changed.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use crate_metadata::{CellKind, CellState, Manifest, ManifestEntry, NamespaceId, Origin};
use loader::{Handle, StaticOutcome, SwapOptions, SwapReport};
use sha2::{Digest, Sha256};

use crate::boot::hex;
use crate::kernel::Kernel;
use crate::panic::panic_message;
use crate::report::bytes;

/// The longest request line the server reads, in bytes.
pub const MAX_REQUEST: usize = 64 * 1024;

/// How long the server waits for a connected client's request line.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// How long the serve loop sleeps when no client is waiting.
const ACCEPT_PAUSE: Duration = Duration::from_millis(25);

/// How often `--watch` looks at the manifest.
const WATCH_INTERVAL: Duration = Duration::from_millis(300);

/// How `nano_core --serve` runs.
#[derive(Clone, Debug, Default)]
pub struct ServeOptions {
    /// The Unix socket to listen on.
    pub socket: PathBuf,
    /// Poll the manifest and swap in rebuilt cells.
    pub watch: bool,
    /// Background threads that keep calling through cell handles (0: none).
    pub load: usize,
}

/// The reply to one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// The body lines.
    pub lines: Vec<String>,
    /// `Ok` for `ok`, or the error message (possibly several lines).
    pub outcome: Result<(), String>,
    /// Whether the server stops after sending this reply.
    pub quit: bool,
}

impl Reply {
    fn ok(lines: Vec<String>) -> Reply {
        Reply {
            lines,
            outcome: Ok(()),
            quit: false,
        }
    }

    fn error(message: impl Into<String>) -> Reply {
        Reply {
            lines: Vec::new(),
            outcome: Err(message.into()),
            quit: false,
        }
    }

    /// The reply as sent on the wire: body lines, then `ok` or `error: <message>`.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let mut body = |line: &str| {
            if line == "ok" || line.starts_with("error:") {
                out.push(' ');
            }
            out.push_str(line);
            out.push('\n');
        };
        for line in &self.lines {
            for l in line.lines() {
                body(l);
            }
        }
        match &self.outcome {
            Ok(()) => out.push_str("ok\n"),
            Err(message) => {
                let mut lines = message.lines().filter(|l| !l.trim().is_empty());
                let first = lines.next().unwrap_or("failed").to_string();
                for l in lines {
                    body(l);
                }
                let _ = writeln!(out, "error: {first}");
            }
        }
        out
    }
}

/// Boots nothing: serves `kernel` on `options.socket` until a `quit` request, SIGINT or SIGTERM.
/// Prints `nano_core: serving on <socket>` once clients can connect. The socket file is removed
/// when this returns.
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
            load.threads.len(),
            load.shared.names.join(", ")
        );
    }
    if watch.is_some() {
        println!(
            "nano_core: watching {} for rebuilt cells",
            kernel.cells_dir().join("manifest.json").display()
        );
    }
    println!("nano_core: serving on {}", socket.path.display());
    let mut last_poll = Instant::now();
    loop {
        if signals::received() {
            println!("nano_core: interrupted");
            break;
        }
        match socket.listener.accept() {
            Ok((stream, _)) => {
                if serve_client(kernel, load.as_ref(), stream) {
                    break;
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => std::thread::sleep(ACCEPT_PAUSE),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => {
                eprintln!("nano_core: accepting a client failed: {e}");
                std::thread::sleep(ACCEPT_PAUSE);
            }
        }
        if let Some(watch) = watch.as_mut() {
            if last_poll.elapsed() >= WATCH_INTERVAL {
                last_poll = Instant::now();
                for line in watch.poll(kernel) {
                    println!("{line}");
                }
            }
        }
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

/// Serves one connection: reads one request, sends the reply. Returns whether to quit.
fn serve_client(kernel: &mut Kernel, load: Option<&Load>, stream: UnixStream) -> bool {
    // Whatever the client does, the server goes on: errors here are printed, not returned.
    let setup = stream
        .set_nonblocking(false)
        .and_then(|()| stream.set_read_timeout(Some(REQUEST_TIMEOUT)))
        .and_then(|()| stream.set_write_timeout(Some(REQUEST_TIMEOUT)));
    if let Err(e) = setup {
        eprintln!("nano_core: setting up a client connection failed: {e}");
        return false;
    }
    let reply = match read_request(&stream) {
        Ok(Some(line)) => dispatch(kernel, load, &line),
        Ok(None) => return false, // connected and left without a request
        Err(message) => Reply::error(message),
    };
    let mut writer = &stream;
    if let Err(e) = writer
        .write_all(reply.render().as_bytes())
        .and_then(|()| writer.flush())
    {
        eprintln!("nano_core: sending a reply failed (the client left?): {e}");
    }
    reply.quit
}

/// Reads one request line. `Ok(None)` when the client closed without sending anything.
fn read_request(stream: &UnixStream) -> Result<Option<String>, String> {
    let mut reader = BufReader::new(stream.take(MAX_REQUEST as u64 + 1));
    let mut buf = Vec::new();
    match reader.read_until(b'\n', &mut buf) {
        Ok(0) => return Ok(None),
        Ok(_) => {}
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
            return Err(format!(
                "no request line within {} s",
                REQUEST_TIMEOUT.as_secs()
            ))
        }
        Err(e) => return Err(format!("reading the request: {e}")),
    }
    if buf.len() > MAX_REQUEST {
        return Err(format!("request longer than {MAX_REQUEST} bytes"));
    }
    let line = String::from_utf8(buf).map_err(|_| "the request is not UTF-8".to_string())?;
    Ok(Some(line.trim_end_matches(['\n', '\r']).to_string()))
}

/// Handles one request line. Never panics: a panic while handling becomes an error reply.
pub fn dispatch(kernel: &mut Kernel, load: Option<&Load>, request: &str) -> Reply {
    match catch_unwind(AssertUnwindSafe(|| handle(kernel, load, request))) {
        Ok(reply) => reply,
        Err(payload) => Reply::error(format!(
            "internal error while handling `{}`: {}",
            request.trim(),
            panic_message(&*payload)
        )),
    }
}

fn handle(kernel: &mut Kernel, load: Option<&Load>, request: &str) -> Reply {
    let request = request.trim();
    let (command, rest) = match request.split_once(char::is_whitespace) {
        Some((c, r)) => (c, r.trim()),
        None => (request, ""),
    };
    let no_args = |reply: Reply| {
        if rest.is_empty() {
            reply
        } else {
            Reply::error(format!("`{command}` takes no arguments"))
        }
    };
    match command {
        "" => Reply::error("empty request (try `ping`, `ls`, `ns`, `swap`, `status`, `quit`)"),
        "ping" => no_args(Reply::ok(vec!["pong".into()])),
        "snapshot" => no_args(snapshot(kernel)),
        "ls" => no_args(Reply::ok(ls(kernel))),
        "ns" => no_args(Reply::ok(ns(kernel))),
        "status" => no_args(Reply::ok(status(kernel, load))),
        "quit" => no_args(Reply {
            lines: Vec::new(),
            outcome: Ok(()),
            quit: true,
        }),
        "swap" => match parse_swap(rest) {
            Ok(args) => swap(kernel, &args),
            Err(message) => Reply::error(message),
        },
        "run" => run_app(kernel, rest),
        "apps" => no_args(Reply::ok(
            kernel
                .apps()
                .into_iter()
                .map(|a| format!("#{} {} in {}: {}", a.id, a.name, a.namespace, a.state))
                .collect(),
        )),
        "end" => end_app(kernel, rest),
        "help" => Reply::ok(vec![
            "ping | ls | ns | status | apps | snapshot | quit".into(),
            "swap <cell> [<object>] [--fresh]".into(),
            "run <app> [args...]   start an application in its own namespace, on its own thread"
                .into(),
            "end <id>              wait for it and tear its namespace down".into(),
        ]),
        other => Reply::error(format!(
            "unknown request `{other}` (try `ping`, `ls`, `ns`, `swap`, `status`, `quit`)"
        )),
    }
}

/// `snapshot`: the whole model (registry and namespaces) as one line of JSON, for
/// `cargo cell ls|info|deps --live`.
fn snapshot(kernel: &Kernel) -> Reply {
    let snapshot = namespace::SystemSnapshot::live(
        kernel.system().registry().clone(),
        kernel.system().namespaces().clone(),
    );
    match serde_json::to_string(&snapshot) {
        Ok(json) => Reply::ok(vec![json]),
        Err(e) => Reply::error(format!("serializing the snapshot: {e}")),
    }
}

/// `run <app> [args...]`: starts the application on a thread of its own.
fn run_app(kernel: &mut Kernel, rest: &str) -> Reply {
    let mut words = rest.split_whitespace();
    let Some(app) = words.next() else {
        return Reply::error("usage: run <app> [args...]");
    };
    let args: Vec<String> = words.map(str::to_string).collect();
    match kernel.launch_app(app, args, &crate::apps::LaunchOptions::default()) {
        Ok(id) => {
            let ns = kernel
                .apps()
                .into_iter()
                .find(|a| a.id == id)
                .map(|a| a.namespace)
                .unwrap_or_default();
            Reply::ok(vec![format!(
                "started #{id} {app} in namespace {ns} (`end {id}` to end it)"
            )])
        }
        Err(e) => Reply::error(crate::errors::render(&e)),
    }
}

/// How long `end` waits for an application's thread before it refuses.
const END_DEADLINE: Duration = Duration::from_secs(5);

/// `end <id>`: waits (at most [`END_DEADLINE`]) for the application and tears its namespace down.
fn end_app(kernel: &mut Kernel, rest: &str) -> Reply {
    let Ok(id) = rest.trim().trim_start_matches('#').parse::<u64>() else {
        return Reply::error("usage: end <id> (see `apps`)");
    };
    let on_thread = kernel
        .apps()
        .iter()
        .any(|a| a.id == id && a.state != crate::apps::AppState::Started);
    let outcome = if on_thread {
        match kernel.wait_app_within(id, END_DEADLINE) {
            Ok(o) => format!("{o:?}"),
            Err(e) => return Reply::error(crate::errors::render(&e)),
        }
    } else {
        "not running".into()
    };
    match kernel.end_app(id) {
        Ok(cells) => Reply::ok(vec![format!(
            "#{id} ended ({outcome}); its namespace and {cells} cell(s) are gone"
        )]),
        Err(e) => Reply::error(crate::errors::render(&e)),
    }
}

/// The arguments of `swap`.
#[derive(Clone, Debug, PartialEq, Eq)]
struct SwapArgs {
    cell: String,
    object: Option<PathBuf>,
    fresh: bool,
}

/// `<cell> [<object>] [--fresh]`; the object is the rest of the line, so it may hold spaces.
fn parse_swap(rest: &str) -> Result<SwapArgs, String> {
    let usage = "usage: swap <cell> [<object>] [--fresh]";
    let mut rest = rest.trim();
    let mut fresh = false;
    if let Some(r) = rest.strip_suffix("--fresh") {
        if r.is_empty() || r.ends_with(char::is_whitespace) {
            fresh = true;
            rest = r.trim();
        }
    }
    let (cell, object) = match rest.split_once(char::is_whitespace) {
        Some((c, o)) => (c, o.trim()),
        None => (rest, ""),
    };
    if cell.is_empty() {
        return Err(format!("swap needs a cell ({usage})"));
    }
    if cell.starts_with('-') {
        return Err(format!("unknown option `{cell}` ({usage})"));
    }
    if object.starts_with("--") {
        return Err(format!("unknown option `{object}` ({usage})"));
    }
    Ok(SwapArgs {
        cell: cell.to_string(),
        object: (!object.is_empty()).then(|| PathBuf::from(object)),
        fresh,
    })
}

fn swap(kernel: &mut Kernel, args: &SwapArgs) -> Reply {
    if kernel.cell_id(&args.cell).is_none() {
        return Reply::error(format!(
            "no live cell `{}` in {} (see `ls`)",
            args.cell,
            crate::KERNEL_NAMESPACE
        ));
    }
    let object = match args
        .object
        .clone()
        .or_else(|| kernel.default_swap_object(&args.cell))
    {
        Some(object) => object,
        None => {
            return Reply::error(format!(
                "no new version of `{}` to swap to: the manifest has no object for it that \
                 differs from the live one; name one \
                 (`swap {} <object>`)",
                args.cell, args.cell
            ))
        }
    };
    let options = SwapOptions {
        fresh_all: args.fresh,
        ..SwapOptions::default()
    };
    match kernel.swap_cell(&args.cell, &object, &options) {
        Ok(report) => {
            let mut lines = vec![format!("object {}", object.display())];
            lines.extend(render_swap(kernel, &report));
            Reply::ok(lines)
        }
        Err(e) => Reply::error(crate::errors::render(&e)),
    }
}

/// What a swap changed, for people: one line per cell, the slots, one line per static, the times.
pub fn render_swap(kernel: &Kernel, report: &SwapReport) -> Vec<String> {
    let mut out = Vec::new();
    for c in &report.cells {
        out.push(format!(
            "swapped {} {} -> {} ({})",
            c.name,
            c.old,
            c.new,
            if c.reused {
                "reused a retired version, nothing loaded"
            } else {
                "loaded"
            }
        ));
        if let Some(new) = kernel.system().registry().cell(c.new) {
            out.push(format!(
                "  now live: {} {} · mapped {} · sha256 {}",
                new.name,
                new.version,
                bytes(new.stats.mapped_bytes),
                short_sha(new.sha256.as_deref())
            ));
        }
    }
    out.push(format!(
        "slots rewritten: {} in {}",
        report.slots_rewritten,
        if report.dependents.is_empty() {
            "(no dependents)".to_string()
        } else {
            report.dependents.join(", ")
        }
    ));
    if report.statics.is_empty() {
        out.push("statics: none".into());
    }
    for s in &report.statics {
        let outcome = match s.outcome {
            StaticOutcome::Rebound => "rebound",
            StaticOutcome::Transferred => "transferred",
            StaticOutcome::Fresh => "fresh",
        };
        out.push(format!(
            "static {} {outcome} ({} -> {} bytes)",
            s.path, s.sizes.0, s.sizes.1
        ));
    }
    let t = report.times;
    let us = |ns: u64| ns as f64 / 1000.0;
    out.push(format!(
        "phases (µs): stage {:.1} · verify {:.1} · rebind/transfer {:.1} · commit {:.1} · total {:.1}",
        us(t.stage),
        us(t.verify),
        us(t.rebind),
        us(t.commit),
        us(t.total)
    ));
    for w in &report.warnings {
        out.push(format!("warning: {w}"));
    }
    out
}

fn short_sha(sha: Option<&str>) -> &str {
    match sha {
        Some(s) => s.get(..12).unwrap_or(s),
        None => "-",
    }
}

fn namespace_name(kernel: &Kernel, ns: Option<NamespaceId>) -> String {
    ns.and_then(|id| kernel.namespaces().get(id))
        .map(|n| n.name.clone())
        .unwrap_or_else(|| "-".into())
}

/// `ls`: every cell object in the registry, live and retired.
pub fn ls(kernel: &Kernel) -> Vec<String> {
    let registry = kernel.system().registry();
    let mut out = vec![format!(
        "{:<12} {:<8} {:<8} {:<10} {:<8} {:>10} {:>10}  sha256",
        "cell", "version", "id", "namespace", "state", "mapped", "dependents"
    )];
    for c in registry.cells().filter(|c| c.origin == Origin::Object) {
        out.push(format!(
            "{:<12} {:<8} {:<8} {:<10} {:<8} {:>10} {:>10}  {}",
            c.name,
            c.version,
            c.id.to_string(),
            namespace_name(kernel, c.namespace),
            match c.state {
                CellState::Live => "live",
                CellState::Retired => "retired",
            },
            bytes(c.stats.mapped_bytes),
            registry.dependents(c.id).len(),
            short_sha(c.sha256.as_deref())
        ));
    }
    out
}

/// `ns`: the namespace tree, each namespace with its cells and their versions.
pub fn ns(kernel: &Kernel) -> Vec<String> {
    let namespaces = kernel.namespaces();
    let registry = kernel.system().registry();
    let mut out = Vec::new();
    // Depth-first from the roots; `seen` guards against a malformed tree.
    let mut stack: Vec<(NamespaceId, usize)> = namespaces
        .iter()
        .filter(|n| n.parent.is_none_or(|p| namespaces.get(p).is_none()))
        .map(|n| (n.id, 0))
        .collect();
    stack.reverse();
    let mut seen = Vec::new();
    while let Some((id, depth)) = stack.pop() {
        let Some(n) = namespaces.get(id) else {
            continue;
        };
        if seen.contains(&id) {
            continue;
        }
        seen.push(id);
        let indent = "  ".repeat(depth);
        out.push(format!(
            "{indent}{}: {} cells, {} symbols",
            n.name,
            n.cells.len(),
            n.symbol_count()
        ));
        for c in n.cells.iter().filter_map(|c| registry.cell(*c)) {
            out.push(format!("{indent}  {} {} ({})", c.name, c.version, c.id));
        }
        let children: Vec<(NamespaceId, usize)> = namespaces
            .iter()
            .filter(|c| c.parent == Some(id))
            .map(|c| (c.id, depth + 1))
            .collect();
        stack.extend(children.into_iter().rev());
    }
    let retired = kernel.system().retired();
    if !retired.is_empty() {
        let names: Vec<String> = retired
            .iter()
            .filter_map(|id| registry.cell(*id))
            .map(|c| format!("{} {} ({})", c.name, c.version, c.id))
            .collect();
        out.push(format!("retired, still mapped: {}", names.join(", ")));
    }
    out.push(format!("{} edges in all", registry.edge_count()));
    out
}

fn status(kernel: &Kernel, load: Option<&Load>) -> Vec<String> {
    let mut out = Vec::new();
    match load {
        Some(load) => {
            let s = load.status();
            out.push(format!("load: {} threads running", s.threads));
            out.push(format!("calls {}", s.calls));
            out.push(format!("failed {}", s.failed));
            for p in &s.probes {
                out.push(format!(
                    "  {:<28} {} calls, {} failed",
                    p.name, p.calls, p.failed
                ));
            }
            if let Some(f) = &s.last_failure {
                out.push(format!("last failure: {f}"));
            }
        }
        None => {
            out.push("load: none (start nano_core with --load N)".into());
            out.push("calls 0".into());
            out.push("failed 0".into());
        }
    }
    let epochs = kernel.system().epochs();
    out.push(format!(
        "epoch {}, {} threads registered; {} retired versions still mapped",
        epochs.current(),
        epochs.registered(),
        kernel.system().retired().len()
    ));
    out
}

type ReadFn = fn(&str) -> Result<Vec<u8>, String>;
type CountFn = fn() -> usize;
type BumpFn = fn() -> u64;

/// One kind of call the load makes, with what a right answer is.
#[derive(Clone)]
enum Probe {
    /// `memfs::read("/etc/motd")` must give back what it gave at the start.
    Read {
        handle: Handle<ReadFn>,
        expect: Vec<u8>,
    },
    /// `frame_alloc::free_count()` must not exceed the frames there are.
    FreeCount {
        handle: Handle<CountFn>,
        total: usize,
    },
    /// `counter::bump()` must count up from what this thread saw last.
    Bump { handle: Handle<BumpFn> },
}

impl Probe {
    fn name(&self) -> &'static str {
        match self {
            Probe::Read { .. } => "memfs::read(\"/etc/motd\")",
            Probe::FreeCount { .. } => "frame_alloc::free_count",
            Probe::Bump { .. } => "counter::bump",
        }
    }

    /// Makes the call; `Err` says what was wrong.
    fn call(&self, last_bump: &mut u64) -> Result<(), String> {
        match self {
            Probe::Read { handle, expect } => match (handle.get())("/etc/motd") {
                Ok(got) if got == *expect => Ok(()),
                Ok(got) => Err(format!(
                    "read {} bytes, expected the {} bytes read at the start",
                    got.len(),
                    expect.len()
                )),
                Err(e) => Err(e),
            },
            Probe::FreeCount { handle, total } => {
                let free = (handle.get())();
                if free <= *total {
                    Ok(())
                } else {
                    Err(format!("{free} free frames of {total}"))
                }
            }
            Probe::Bump { handle } => {
                let now = (handle.get())();
                let before = std::mem::replace(last_bump, now);
                if now > before {
                    Ok(())
                } else {
                    Err(format!("counted {now} after {before}: a count was lost"))
                }
            }
        }
    }
}

#[derive(Default)]
struct Counter {
    calls: AtomicU64,
    failed: AtomicU64,
}

struct Shared {
    stop: AtomicBool,
    names: Vec<&'static str>,
    counters: Vec<Counter>,
    last_failure: Mutex<Option<String>>,
}

/// The background load of `--load N`: threads that keep calling through cell handles.
pub struct Load {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

/// The load's counters at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoadStatus {
    /// Threads running.
    pub threads: usize,
    /// Calls made, in all.
    pub calls: u64,
    /// Calls that failed: an error, a wrong answer or a panic.
    pub failed: u64,
    /// Per kind of call.
    pub probes: Vec<ProbeStatus>,
    /// The last failure, if any.
    pub last_failure: Option<String>,
}

/// The counters of one kind of call.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProbeStatus {
    /// The call (`counter::bump`).
    pub name: String,
    /// Calls made.
    pub calls: u64,
    /// Calls that failed.
    pub failed: u64,
}

impl Load {
    /// Starts `threads` threads that call `memfs::read("/etc/motd")`, `frame_alloc::free_count`
    /// and `counter::bump` (those of these cells that are loaded) in a loop, each registered with
    /// the system's epochs and quiescent between calls.
    pub fn start(kernel: &mut Kernel, threads: usize) -> Result<Load> {
        let mut probes = Vec::new();
        // Every handle here: the types are the exact signatures of these functions in
        // cells/kernel/memfs, cells/kernel/frame_alloc and cells/libs/counter.
        // SAFETY: `ReadFn` is the signature of `memfs::read` (cells/kernel/memfs).
        if let Ok(handle) = unsafe { kernel.handle::<ReadFn>("memfs::read") } {
            if let Ok(expect) = (handle.get())("/etc/motd") {
                probes.push(Probe::Read { handle, expect });
            }
        }
        // SAFETY: `CountFn` is the signature of `frame_alloc::free_count` and of
        // `frame_alloc::total_frames` (cells/kernel/frame_alloc).
        if let (Ok(handle), Ok(total)) = unsafe {
            (
                kernel.handle::<CountFn>("frame_alloc::free_count"),
                kernel.handle::<CountFn>("frame_alloc::total_frames"),
            )
        } {
            let total = (total.get())();
            probes.push(Probe::FreeCount { handle, total });
        }
        // SAFETY: `BumpFn` is the signature of `counter::bump` (cells/libs/counter).
        if let Ok(handle) = unsafe { kernel.handle::<BumpFn>("counter::bump") } {
            probes.push(Probe::Bump { handle });
        }
        if probes.is_empty() {
            bail!("none of memfs, frame_alloc and counter is loaded: nothing to call");
        }
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            names: probes.iter().map(Probe::name).collect(),
            counters: probes.iter().map(|_| Counter::default()).collect(),
            last_failure: Mutex::new(None),
        });
        let mut handles = Vec::new();
        for i in 0..threads {
            let probes = probes.clone();
            let mine = shared.clone();
            let epochs = kernel.system().epochs().clone();
            let thread = std::thread::Builder::new()
                .name(format!("load-{i}"))
                .spawn(move || run_load(&probes, &mine, &epochs));
            match thread {
                Ok(t) => handles.push(t),
                Err(e) => {
                    let load = Load {
                        shared,
                        threads: handles,
                    };
                    load.stop();
                    return Err(e).context("spawning a load thread");
                }
            }
        }
        Ok(Load {
            shared,
            threads: handles,
        })
    }

    /// The counters now.
    pub fn status(&self) -> LoadStatus {
        let s = &self.shared;
        let probes: Vec<ProbeStatus> = s
            .names
            .iter()
            .zip(&s.counters)
            .map(|(name, c)| ProbeStatus {
                name: (*name).to_string(),
                calls: c.calls.load(Ordering::Relaxed),
                failed: c.failed.load(Ordering::Relaxed),
            })
            .collect();
        LoadStatus {
            threads: self.threads.iter().filter(|t| !t.is_finished()).count(),
            calls: probes.iter().map(|p| p.calls).sum(),
            failed: probes.iter().map(|p| p.failed).sum(),
            probes,
            last_failure: s.last_failure.lock().ok().and_then(|f| f.clone()),
        }
    }

    /// Stops the threads, waits for them, and returns the final counters.
    pub fn stop(mut self) -> LoadStatus {
        self.shared.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        self.status()
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn run_load(probes: &[Probe], shared: &Shared, epochs: &Arc<loader::Epochs>) {
    let me = epochs.register();
    let mut last_bump = 0;
    while !shared.stop.load(Ordering::Relaxed) {
        for (probe, counter) in probes.iter().zip(&shared.counters) {
            let result = catch_unwind(AssertUnwindSafe(|| probe.call(&mut last_bump)))
                .unwrap_or_else(|p| Err(format!("panicked: {}", panic_message(&*p))));
            counter.calls.fetch_add(1, Ordering::Relaxed);
            if let Err(e) = result {
                counter.failed.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut last) = shared.last_failure.lock() {
                    *last = Some(format!("{}: {e}", probe.name()));
                }
            }
            me.quiescent();
        }
    }
}

/// `--watch`: notices when `cargo cell build` rewrote the manifest and swaps in every live cell
/// of `_kernel` whose object changed.
///
/// A manifest entry counts as changed when its SHA-256 differs from the manifest the watch saw
/// before (the one the boot read, at first). For each live cell with a changed entry whose hash
/// differs from the live cell's, the object is checked against the manifest's hash and swapped
/// in. When both the cell's own entry (kernel or libs) and its `upgrades` entry changed, the one
/// the cell runs now is followed; otherwise its own.
pub struct Watch {
    path: PathBuf,
    /// The manifest file's (mtime, inode, length) last acted on.
    seen: Option<Stamp>,
    /// The stamp seen at the last poll, acted on once it holds for two polls.
    settling: Option<Stamp>,
    manifest: Manifest,
}

type Stamp = (Option<std::time::SystemTime>, u64, u64);

fn stamp(path: &Path) -> Option<Stamp> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok(), meta.ino(), meta.len()))
}

impl Watch {
    /// Watches the manifest of `kernel`'s cells directory, starting from the manifest it booted.
    pub fn new(kernel: &Kernel) -> Watch {
        let path = kernel.cells_dir().join("manifest.json");
        let seen = stamp(&path);
        Watch {
            path,
            seen,
            settling: seen,
            manifest: kernel.manifest().clone(),
        }
    }

    /// Looks at the manifest once; when it changed (and has not changed again since the last
    /// poll), swaps the cells whose objects changed. Returns the lines to print.
    pub fn poll(&mut self, kernel: &mut Kernel) -> Vec<String> {
        let now = stamp(&self.path);
        let settled = now == self.settling;
        self.settling = now;
        if now.is_none() || now == self.seen || !settled {
            return Vec::new();
        }
        self.seen = now;
        let mut out = vec![format!("nano_core: watch: {} changed", self.path.display())];
        let manifest = match kernel.reload_manifest() {
            Ok(m) => m.clone(),
            Err(e) => {
                out.push(format!(
                    "nano_core: watch: {}; keeping the cells as they are",
                    crate::errors::render(&e)
                ));
                return out;
            }
        };
        let plan = self.plan(kernel, &manifest);
        self.manifest = manifest;
        if plan.is_empty() {
            out.push("nano_core: watch: no live cell has a new object".into());
        }
        for entry in plan {
            out.extend(swap_entry(kernel, &entry));
        }
        out
    }

    /// The entries to swap in: one per live cell with a changed, different object.
    fn plan(&self, kernel: &Kernel, manifest: &Manifest) -> Vec<ManifestEntry> {
        let changed = |e: &&ManifestEntry| {
            self.manifest
                .get(e.kind, &e.name)
                .is_none_or(|old| old.sha256 != e.sha256)
        };
        let mut plan: Vec<ManifestEntry> = Vec::new();
        for entry in manifest.cells.iter().filter(changed) {
            // Dependency cells and cells rebuilt for a dependency upgrade move only with the
            // upgrade that needs them (its entry changes too).
            if !matches!(
                entry.kind,
                CellKind::Kernel | CellKind::Libs | CellKind::Upgrades
            ) || entry.rebuilt_for.is_some()
            {
                continue;
            }
            let Some(live) = kernel
                .cell_id(&entry.name)
                .and_then(|id| kernel.system().registry().cell(id))
            else {
                continue;
            };
            if live.sha256.as_deref() == Some(entry.sha256.as_str()) {
                continue;
            }
            let runs = |e: &ManifestEntry| {
                self.manifest
                    .get(e.kind, &e.name)
                    .is_some_and(|old| live.sha256.as_deref() == Some(old.sha256.as_str()))
            };
            match plan.iter_mut().find(|p| p.name == entry.name) {
                None => plan.push(entry.clone()),
                Some(planned) => {
                    // Both the cell's own entry and its upgrade changed: follow the one it runs,
                    // else its own kind.
                    let prefer_new = if runs(entry) != runs(planned) {
                        runs(entry)
                    } else {
                        entry.kind != CellKind::Upgrades
                    };
                    if prefer_new {
                        *planned = entry.clone();
                    }
                }
            }
        }
        plan
    }
}

/// Swaps the live cell named by `entry` for `entry`'s object; the lines to print.
fn swap_entry(kernel: &mut Kernel, entry: &ManifestEntry) -> Vec<String> {
    let path = kernel.cells_dir().join(&entry.object);
    let mut out = vec![format!(
        "nano_core: watch: swapping {} for {}",
        entry.name,
        path.display()
    )];
    let bytes = match crate::files::read_regular(&path, entry.size) {
        Ok(b) => b,
        Err(e) => {
            out.push(format!(
                "nano_core: watch: swapping {} failed: {e}",
                entry.name
            ));
            return out;
        }
    };
    if hex(&Sha256::digest(&bytes)) != entry.sha256 {
        out.push(format!(
            "nano_core: watch: swapping {} failed: {} does not match the manifest's SHA-256",
            entry.name,
            path.display()
        ));
        return out;
    }
    match kernel.swap_bytes(&entry.name, &bytes, &SwapOptions::default()) {
        Ok(report) => {
            out.extend(
                render_swap(kernel, &report)
                    .into_iter()
                    .map(|l| format!("  {l}")),
            );
            out.push(format!("nano_core: watch: swapped {}", entry.name));
        }
        Err(e) => {
            let message = crate::errors::render(&e);
            let mut lines = message.lines();
            out.push(format!(
                "nano_core: watch: swapping {} failed: {}",
                entry.name,
                lines.next().unwrap_or("")
            ));
            out.extend(lines.map(|l| format!("  {l}")));
            out.push("nano_core: watch: the system keeps running the old version".into());
        }
    }
    out
}

/// The listening socket; its file is removed on drop (if it is still ours).
struct SocketFile {
    path: PathBuf,
    listener: UnixListener,
    ino: Option<u64>,
}

impl SocketFile {
    fn bind(path: &Path) -> Result<SocketFile> {
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

/// SIGINT and SIGTERM stop the serve loop, so that it removes its socket.
mod signals {
    use std::sync::atomic::{AtomicBool, Ordering};

    static RECEIVED: AtomicBool = AtomicBool::new(false);

    const SIGINT: i32 = 2;
    const SIGTERM: i32 = 15;

    extern "C" {
        // glibc's `signal`: BSD semantics (the handler stays installed, system calls restart).
        fn signal(signum: i32, handler: usize) -> usize;
    }

    extern "C" fn on_signal(_: i32) {
        // Only an atomic store: async-signal-safe.
        RECEIVED.store(true, Ordering::SeqCst);
    }

    /// Installs the handlers.
    pub fn install() {
        let handler = on_signal as extern "C" fn(i32) as usize;
        for sig in [SIGINT, SIGTERM] {
            // SAFETY: `on_signal` is an `extern "C" fn(c_int)` that only stores to an atomic.
            unsafe { signal(sig, handler) };
        }
    }

    /// Whether SIGINT or SIGTERM arrived.
    pub fn received() -> bool {
        RECEIVED.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_end_in_one_unambiguous_final_line() {
        let r = Reply::ok(vec!["pong".into(), "ok".into(), "error: not really".into()]);
        assert_eq!(r.render(), "pong\n ok\n error: not really\nok\n");
        let e = Reply::error("the new version lacks 1 symbol:\n  memfs::read (used by nano_core)");
        assert_eq!(
            e.render(),
            "  memfs::read (used by nano_core)\nerror: the new version lacks 1 symbol:\n"
        );
    }

    #[test]
    fn swap_arguments() {
        let p = |s: &str| parse_swap(s);
        assert_eq!(
            p("memfs"),
            Ok(SwapArgs {
                cell: "memfs".into(),
                object: None,
                fresh: false
            })
        );
        assert_eq!(
            p("memfs /a b/memfs.o --fresh"),
            Ok(SwapArgs {
                cell: "memfs".into(),
                object: Some("/a b/memfs.o".into()),
                fresh: true
            })
        );
        assert_eq!(
            p("memfs --fresh"),
            Ok(SwapArgs {
                cell: "memfs".into(),
                object: None,
                fresh: true
            })
        );
        assert!(p("").is_err());
        assert!(p("--fresh").is_err());
        assert!(p("memfs --frsh").is_err());
    }
}
