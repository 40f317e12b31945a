//! The control channel from outside the running system: `nano_core --serve` as a child process,
//! driven over its Unix socket while load threads keep calling through cell handles, and
//! `--watch` swapping in a cell whose object was rebuilt.

mod common;

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use common::server::{counter, row, Server, TempDir, STEP};
use crate_metadata::{CellKind, Manifest};

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

/// Writes `bytes` to `path` the way `cargo cell build` does: a temporary file, then a rename.
fn replace(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

/// Gives the cell `name` new object bytes in the copy, as a rebuild would.
fn rebuild(cells: &Path, manifest: &mut Manifest, name: &str, bytes: &[u8]) {
    let entry = manifest
        .get_mut(CellKind::Kernel, name)
        .expect("a kernel cell");
    replace(&cells.join(&entry.object), bytes);
    entry.sha256 = loader::sha256(bytes);
    entry.size = bytes.len() as u64;
    build_tools::manifest::write(cells, manifest).expect("write the manifest");
}

#[test]
fn watch_swaps_in_a_rebuilt_cell_and_survives_a_bad_one() {
    let copy = TempDir::new("watch-cells");
    let mut manifest = common::copy_cells(common::cells_dir(), &copy.0);
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

#[test]
fn fresh_state_is_refused_for_the_kernel_log_and_said_aloud_under_load() {
    let cells = common::cells_dir();
    let mut server = Server::start(cells, &["--load", "1"]);
    let klog = row(&server.ok("ls"), "klog", "live").cloned();
    let klog_object = cells.join("kernel/klog.o");
    // The base image links klog and logs into the same ring: fresh state would split the log.
    let error = server.error(format!("swap klog {} --fresh\n", klog_object.display()).as_bytes());
    assert!(
        error.contains("refused") && error.contains("`klog::LOG`") && error.contains("base image"),
        "{error}"
    );
    assert_eq!(
        row(&server.ok("ls"), "klog", "live").cloned(),
        klog,
        "a refused swap changed klog"
    );
    // Forced, it goes ahead and says what became of the shared static.
    let reply = server.ok(&format!(
        "swap klog {} --fresh --force",
        klog_object.display()
    ));
    assert!(
        reply
            .iter()
            .any(|l| l.starts_with("warning: fresh state: `klog::LOG`")),
        "{}",
        reply.join("\n")
    );
    // Fresh state under load: the reply says which statics start empty and who calls them.
    let reply = server.ok(&format!(
        "swap memfs {} --fresh",
        cells.join("upgrades/memfs.o").display()
    ));
    let text = reply.join("\n");
    assert!(
        reply
            .iter()
            .any(|l| l.starts_with("warning: fresh state: `memfs::FS` starts empty")),
        "{text}"
    );
    assert!(
        reply
            .iter()
            .any(|l| l.starts_with("warning: 1 load threads call memfs::read")),
        "{text}"
    );
    // Without --fresh nothing is said about fresh state.
    let reply = server.ok(&format!(
        "swap memfs {}",
        cells.join("kernel/memfs.o").display()
    ));
    assert!(
        !reply.iter().any(|l| l.contains("fresh state")),
        "{}",
        reply.join("\n")
    );
    assert!(server.quit().success());
}

#[test]
fn fresh_state_for_a_static_the_image_shares_is_a_typed_refusal() {
    use loader::SwapOptions;
    use nano_core::swap::{FreshShared, FreshSharedState};

    let cells = common::cells_dir();
    let mut kernel = nano_core::Kernel::boot(cells).expect("boot");
    let klog = cells.join("kernel/klog.o");
    let fresh = SwapOptions {
        fresh_all: true,
        ..SwapOptions::default()
    };
    let before = kernel.system().slot_values();
    let err = kernel
        .swap_cell("klog", &klog, &fresh)
        .expect_err("fresh state for klog::LOG must be refused");
    assert_eq!(
        err.downcast_ref::<FreshSharedState>(),
        Some(&FreshSharedState {
            cell: "klog".into(),
            statics: vec!["klog::LOG".into()],
        }),
        "{err:#}"
    );
    assert!(
        before == kernel.system().slot_values(),
        "a refusal changed slots"
    );
    // Without fresh state the same swap goes ahead; with --force the fresh one does too.
    kernel
        .swap_cell("klog", &klog, &SwapOptions::default())
        .expect("a swap that keeps the log");
    kernel
        .swap_cell_with("klog", &klog, &fresh, FreshShared::Force)
        .expect("a forced fresh swap");
}
