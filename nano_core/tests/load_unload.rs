//! Loading and unloading cells while the system runs (`load` and `unload` on the control
//! channel): a load followed by an unload leaves the system exactly as it was; an unload is
//! refused while anything uses the cell, naming the users; a load brings the dependency cells
//! the cell needs first; and a refused load changes nothing.

mod common;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use common::server::{row, Server, TempDir, STEP};
use crate_metadata::{Cell, CellKind, Edge, EdgeId, Origin};
use loader::{LoadError, UnloadError};
use nano_core::control::{self, ServeOptions};
use nano_core::errors::find;
use nano_core::files::ReadError;
use nano_core::{CellError, Kernel, LoadTarget};

/// Tests that compare the loader's mappings take turns.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn boot(cells: &Path) -> Kernel {
    nano_core::logger::install(log::LevelFilter::Off);
    Kernel::boot(cells).unwrap_or_else(|e| panic!("boot failed: {e:#}"))
}

/// Everything a load or an unload may change: the namespaces (cells and symbol maps), the loaded
/// cells (sections, symbols, edges both ways), the edges, the value of every slot, and the
/// loader's mappings. Left out: the registry's next cell id (a cell id is never used twice), its
/// free edge slots and the base image's symbols, which the registry learns on demand and keeps.
#[derive(Debug, PartialEq)]
struct State {
    namespaces: namespace::Snapshot,
    cells: Vec<Cell>,
    edges: Vec<(EdgeId, Edge)>,
    slots: Vec<(u64, u64)>,
    mappings: (usize, usize),
}

fn state(kernel: &Kernel) -> State {
    let system = kernel.system();
    let registry = system.registry();
    State {
        namespaces: system.namespaces().snapshot(),
        cells: registry
            .cells()
            .filter(|c| c.origin == Origin::Object)
            .cloned()
            .collect(),
        edges: registry.edges().map(|(id, e)| (id, e.clone())).collect(),
        slots: system.slot_values(),
        mappings: system.platform().live_mappings(),
    }
}

fn assert_same(before: &State, after: &State, what: &str) {
    assert!(
        before.namespaces == after.namespaces,
        "{what}: the namespaces changed"
    );
    let names = |s: &State| s.cells.iter().map(|c| c.name.clone()).collect::<Vec<_>>();
    assert_eq!(names(before), names(after), "{what}: other cells");
    for (b, a) in before.cells.iter().zip(&after.cells) {
        assert!(
            b == a,
            "{what}: cell {} changed:\n{}",
            b.name,
            changed_fields(&format!("{b:#?}"), &format!("{a:#?}"))
        );
    }
    assert!(before.edges == after.edges, "{what}: the edges changed");
    assert!(before.slots == after.slots, "{what}: a slot changed");
    assert_eq!(before.mappings, after.mappings, "{what}: the mappings");
}

/// The lines of two `{:#?}` renderings that differ, for a failure message.
fn changed_fields(before: &str, after: &str) -> String {
    let (b, a): (Vec<&str>, Vec<&str>) = (before.lines().collect(), after.lines().collect());
    let mut out: Vec<String> = b
        .iter()
        .zip(&a)
        .filter(|(x, y)| x != y)
        .take(20)
        .map(|(x, y)| format!("  before {}\n  after  {}", x.trim(), y.trim()))
        .collect();
    if b.len() != a.len() {
        out.push(format!("  {} lines before, {} after", b.len(), a.len()));
    }
    out.join("\n")
}

/// The names of textkit's dependency cells that nothing else uses (kvstore shares crc32fast).
fn textkit_own_dependencies(kernel: &Kernel) -> Vec<String> {
    let mut names: Vec<String> = kernel
        .booted()
        .iter()
        .filter(|b| b.entry.kind == CellKind::Deps)
        .filter(|b| {
            let users = kernel.manifest().users_of(b.entry.key());
            !users.is_empty()
                && users
                    .iter()
                    .all(|u| u.name == "textkit" || u.kind == CellKind::Deps)
        })
        .map(|b| b.entry.name.clone())
        .collect();
    names.retain(|n| n.starts_with("regex") || n.starts_with("aho"));
    names.sort();
    names
}

/// A control client on its own thread: each request's reply, `ok` or `error: …`, as text.
fn ask(socket: &Path, line: &str) -> control::Reply {
    build_tools::control::request(socket, line).unwrap_or_else(|e| panic!("`{line}`: {e:#}"))
}

fn ok(socket: &Path, line: &str) -> Vec<String> {
    let reply = ask(socket, line);
    assert!(reply.error.is_none(), "`{line}` failed: {}", reply.render());
    reply.lines
}

fn wait_for_socket(socket: &Path) {
    let deadline = Instant::now() + STEP;
    while !socket.exists() {
        assert!(Instant::now() < deadline, "the server never listened");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn load_then_unload_over_the_control_channel_leaves_the_system_byte_identical() {
    let _serial = serial();
    let mut kernel = boot(common::cells_dir());
    let own = textkit_own_dependencies(&kernel);
    assert!(own.len() >= 3, "textkit's regex cells: {own:?}");
    // A system without textkit: its unload takes the dependency cells only it used along, and
    // leaves crc32fast, which kvstore uses too.
    let gone = kernel.unload_cell("textkit", None).expect("unload textkit");
    let mut unloaded: Vec<String> = gone.cells.iter().map(|c| c.name.clone()).collect();
    assert_eq!(unloaded.remove(0), "textkit");
    unloaded.sort();
    assert_eq!(unloaded, own);
    assert!(kernel.cell_id("crc32fast").is_some(), "crc32fast went too");
    let before = state(&kernel);

    let dir = TempDir::new("load-unload");
    let socket = dir.0.join("s.sock");
    let options = ServeOptions {
        socket: socket.clone(),
        ..ServeOptions::default()
    };
    let replies = std::thread::scope(|s| {
        let client = s.spawn(|| {
            wait_for_socket(&socket);
            let mut replies = Vec::new();
            replies.push(ok(&socket, "load textkit"));
            replies.push(ok(&socket, "ls"));
            replies.push(ok(&socket, "snapshot"));
            let refused = ask(&socket, "unload regex");
            replies.push(vec![refused.render()]);
            replies.push(ok(&socket, "load greet --ns scratch"));
            replies.push(ok(&socket, "ns"));
            replies.push(ok(&socket, "unload greet --ns scratch"));
            replies.push(ok(&socket, "unload textkit"));
            replies.push(ok(&socket, "ls"));
            ok(&socket, "quit");
            replies
        });
        control::serve(&mut kernel, &options).expect("serve");
        client.join().expect("the client thread")
    });
    let [load, ls, snapshot, refused, scratch, ns, unscratch, unload, ls_after] =
        <[Vec<String>; 9]>::try_from(replies).expect("nine replies");

    // Loaded: the dependency cells first, textkit last.
    let text = load.join("\n");
    assert!(
        load.last()
            .is_some_and(|l| l.starts_with("loaded textkit ")),
        "{text}"
    );
    let mut deps: Vec<String> = load[..load.len() - 1]
        .iter()
        .map(|l| {
            assert!(l.ends_with("a dependency cell it needs"), "{text}");
            l.split_whitespace().nth(1).unwrap_or_default().to_string()
        })
        .collect();
    deps.sort();
    assert_eq!(deps, own, "{text}");
    // `ls` and the snapshot `deps --live` reads show it at once.
    assert!(row(&ls, "textkit", "live").is_some(), "{}", ls.join("\n"));
    let live: namespace::SystemSnapshot =
        serde_json::from_str(&snapshot[0]).expect("the snapshot is JSON");
    let textkit = live
        .registry
        .cells()
        .find(|c| c.name == "textkit")
        .expect("textkit in the live snapshot");
    assert!(
        live.registry
            .dependencies(textkit.id)
            .iter()
            .any(|p| live.registry.cell(*p).is_some_and(|c| c.name == "regex")),
        "textkit binds to regex in the snapshot"
    );
    // A dependency cell textkit uses is not unloaded under it.
    assert!(refused[0].contains("textkit in _kernel"), "{}", refused[0]);
    // A namespace of its own: made, then gone with its last cell.
    assert!(
        scratch[0].starts_with("made namespace `scratch`"),
        "{scratch:?}"
    );
    assert!(
        ns.iter().any(|l| l.trim_start().starts_with("scratch:")),
        "{ns:?}"
    );
    assert_eq!(
        unscratch.last().map(String::as_str),
        Some("removed namespace `scratch`")
    );
    // Unloaded: textkit, then each dependency cell nothing uses any more.
    assert!(unload[0].starts_with("unloaded textkit "), "{unload:?}");
    assert_eq!(unload.len(), 1 + own.len(), "{unload:?}");
    assert!(row(&ls_after, "textkit", "live").is_none());
    assert!(row(&ls_after, "crc32fast", "live").is_some());

    assert_same(&before, &state(&kernel), "after load and unload");
}

#[test]
fn loading_and_unloading_again_and_again_keeps_the_registry_its_size() {
    let _serial = serial();
    let mut kernel = boot(common::cells_dir());
    let textkit = LoadTarget::Cell("textkit".into());
    let size = |k: &Kernel| {
        let r = k.system().registry();
        (r.cell_count(), r.edge_count(), r.edge_slots())
    };
    let mut first_id = None;
    let mut sizes = Vec::new();
    for round in 0..4 {
        kernel.unload_cell("textkit", None).expect("unload textkit");
        sizes.push(size(&kernel));
        let loaded = kernel.load_cell(&textkit, None).expect("load textkit");
        let id = loaded.cells.last().expect("textkit").id;
        assert!(
            first_id.is_none_or(|f| id > f),
            "round {round}: id {id} reused"
        );
        first_id.get_or_insert(id);
    }
    // The first unload frees the slots of the boot's textkit and its regex cells; every load
    // after reuses them, and no cell leaves anything behind.
    let (cells, edges, slots) = sizes[0];
    assert!(edges > 0 && slots > edges, "{sizes:?}");
    assert!(
        sizes.iter().all(|s| *s == (cells, edges, slots)),
        "{sizes:?}"
    );
}

#[test]
fn unload_is_refused_while_used_naming_the_users() {
    let mut server = Server::start(common::cells_dir(), &[]);
    let views = |s: &mut Server| (s.ok("ls"), s.ok("ns"), s.ok("status"));
    server.ok("run hello world");
    let before = views(&mut server);
    assert!(
        before.2.iter().any(|l| l.starts_with("loader mappings ")),
        "{:?}",
        before.2
    );
    for (request, users) in [
        ("unload kvstore", &["kvquery in _kernel"][..]),
        (
            "unload frame_alloc",
            &["memfs in _kernel", "sched in _kernel"],
        ),
        // The application ran and was not ended: its namespace still binds to greet.
        ("unload greet", &["hello in app:hello#1"]),
        ("unload klog", &["nano_core (a handle the host holds)"]),
    ] {
        let error = server.error(format!("{request}\n").as_bytes());
        for user in users {
            assert!(error.contains(user), "`{request}`: {error}");
        }
        assert!(error.contains("still used by"), "{error}");
    }
    assert_eq!(
        views(&mut server),
        before,
        "a refused unload changed something"
    );
    // Once the application is ended, greet can go (and come back).
    server.ok("end 1");
    let unloaded = server.ok("unload greet");
    assert!(unloaded[0].starts_with("unloaded greet "), "{unloaded:?}");
    let (body, last) = server.raw(b"run hello world\n");
    let error = format!("{last}\n{}", body.join("\n"));
    assert!(
        last.starts_with("error: ") && error.contains("greet"),
        "{error}"
    );
    server.ok("load greet");
    assert!(server.ok("quit").is_empty());
}

#[test]
fn a_missing_or_garbage_object_is_a_typed_error_and_changes_nothing() {
    let _serial = serial();
    let mut kernel = boot(common::cells_dir());
    let dir = TempDir::new("load-bad");
    let garbage = dir.0.join("garbage.o");
    std::fs::write(&garbage, b"this is not an ELF object").expect("write");
    let fifo = dir.0.join("fifo.o");
    let c = std::ffi::CString::new(fifo.to_str().expect("UTF-8")).expect("a C string");
    // SAFETY: a valid C string; mkfifo only creates the node.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let before = state(&kernel);
    let object = |p: &PathBuf| LoadTarget::Object(p.clone());
    let cell = |n: &str| LoadTarget::Cell(n.into());

    let mut refuse = |target: LoadTarget, ns: Option<&str>| {
        let error = kernel
            .load_cell(&target, ns)
            .expect_err("the load must be refused");
        assert_same(&before, &state(&kernel), &format!("{target:?}"));
        error
    };
    let e = refuse(object(&garbage), None);
    assert_eq!(
        find::<LoadError>(&e),
        Some(&LoadError::NotElf {
            cell: "garbage".into()
        })
    );
    // Into a namespace it would make: the namespace does not stay behind either.
    let e = refuse(object(&garbage), Some("scratch"));
    assert!(matches!(
        find::<LoadError>(&e),
        Some(LoadError::NotElf { .. })
    ));
    let e = refuse(object(&dir.0.join("missing.o")), None);
    assert!(
        matches!(find::<ReadError>(&e), Some(ReadError::Io { .. })),
        "{e:#}"
    );
    let e = refuse(object(&fifo), None);
    assert!(
        matches!(
            find::<ReadError>(&e),
            Some(ReadError::NotRegular { kind: "a FIFO", .. })
        ),
        "{e:#}"
    );
    let e = refuse(cell("nosuch"), None);
    assert_eq!(
        find::<CellError>(&e),
        Some(&CellError::NotInManifest {
            cell: "nosuch".into()
        })
    );
    let e = refuse(cell("hello"), None);
    assert_eq!(
        find::<CellError>(&e),
        Some(&CellError::Application {
            cell: "hello".into()
        })
    );
    let e = refuse(cell("memfs"), None);
    assert_eq!(
        find::<LoadError>(&e),
        Some(&LoadError::AlreadyLoaded {
            cell: "memfs".into(),
            namespace: "_kernel".into()
        })
    );

    let mut refuse_unload = |cell: &str, ns: Option<&str>| {
        let error = kernel
            .unload_cell(cell, ns)
            .expect_err("the unload must be refused");
        assert_same(&before, &state(&kernel), cell);
        error
    };
    let e = refuse_unload("kvstore", None);
    assert!(
        matches!(find::<UnloadError>(&e), Some(UnloadError::InUse { dependents, .. })
            if dependents.iter().any(|d| d.starts_with("kvquery in _kernel"))),
        "{e:#}"
    );
    let e = refuse_unload("nosuch", None);
    assert!(matches!(
        find::<CellError>(&e),
        Some(CellError::NotLoaded { .. })
    ));
    let e = refuse_unload("memfs", Some("nope"));
    assert!(matches!(
        find::<CellError>(&e),
        Some(CellError::NoSuchNamespace { .. })
    ));
}

#[test]
fn a_load_brings_its_dependency_cells_first_and_a_failure_takes_them_back() {
    let _serial = serial();
    let dir = TempDir::new("load-deps");
    let manifest = common::copy_cells(common::cells_dir(), &dir.0);
    let mut kernel = boot(&dir.0);
    kernel.unload_cell("textkit", None).expect("unload textkit");
    let before = state(&kernel);

    let loaded = kernel
        .load_cell(&LoadTarget::Cell("textkit".into()), None)
        .expect("load textkit");
    let (last, deps) = loaded.cells.split_last().expect("cells loaded");
    assert_eq!(last.name, "textkit");
    assert!(
        deps.len() >= 3 && deps.iter().all(|d| d.dependency),
        "{loaded:?}"
    );
    // In dependency order: every dependency cell comes after those it binds to.
    let registry = kernel.system().registry();
    for (i, d) in deps.iter().enumerate() {
        for p in registry.dependencies(d.id) {
            if let Some(at) = deps.iter().position(|o| o.id == p) {
                assert!(
                    at < i,
                    "{} loaded before {}, which it uses",
                    d.name,
                    deps[at].name
                );
            }
        }
    }
    assert!(
        deps.iter()
            .all(|d| registry.dependencies(last.id).contains(&d.id)
                || deps
                    .iter()
                    .any(|o| registry.dependencies(o.id).contains(&d.id))),
        "a dependency cell nothing uses was loaded: {loaded:?}"
    );
    kernel.unload_cell("textkit", None).expect("unload textkit");
    assert_same(&before, &state(&kernel), "after load and unload");

    // The object changed after the build: its dependency cells load, then it is refused by its
    // hash, and they are unloaded again.
    let entry = manifest.get(CellKind::Libs, "textkit").expect("textkit");
    let path = dir.0.join(&entry.object);
    let mut bytes = std::fs::read(&path).expect("textkit.o");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&path, &bytes).expect("write");
    let e = kernel
        .load_cell(&LoadTarget::Cell("textkit".into()), None)
        .expect_err("a changed object is refused");
    assert!(
        matches!(find::<LoadError>(&e), Some(LoadError::IntegrityMismatch { cell, .. }) if cell == "textkit"),
        "{e:#}"
    );
    assert_same(&before, &state(&kernel), "after the refused load");

    // A cell whose cell dependency is not loaded is refused before anything is loaded.
    kernel.unload_cell("kvquery", None).expect("unload kvquery");
    kernel.unload_cell("kvstore", None).expect("unload kvstore");
    let before = state(&kernel);
    let e = kernel
        .load_cell(&LoadTarget::Cell("kvquery".into()), None)
        .expect_err("kvstore is not loaded");
    assert_eq!(
        find::<CellError>(&e),
        Some(&CellError::MissingCells {
            cell: "kvquery".into(),
            namespace: "_kernel".into(),
            missing: vec!["kvstore".into()]
        })
    );
    assert_same(&before, &state(&kernel), "after the refused load");
}

#[test]
fn with_trusted_keys_a_load_checks_the_signature_as_the_boot_does() {
    let _serial = serial();
    let dir = TempDir::new("load-signed");
    let manifest = common::copy_cells(common::cells_dir(), &dir.0);
    let keys = dir.0.join("keys");
    build_tools::sign::keygen(&keys).expect("keygen");
    build_tools::sign::sign_manifest(&dir.0, &keys.join("cell-signing.key")).expect("sign");
    let public = build_tools::sign::read_key(&keys.join("cell-signing.pub")).expect("key");
    nano_core::logger::install(log::LevelFilter::Off);
    let mut kernel = Kernel::boot_trusting(&dir.0, &[public]).expect("a signed boot");
    kernel.unload_cell("greet", None).expect("unload greet");
    let before = state(&kernel);

    // An object the manifest does not list: nothing vouches for it.
    let path = dir
        .0
        .join(&manifest.get(CellKind::Libs, "greet").expect("greet").object);
    let good = std::fs::read(&path).expect("greet.o");
    let mut bad = good.clone();
    let middle = bad.len() / 2;
    bad[middle] ^= 0xff;
    let stray = dir.0.join("stray.o");
    std::fs::write(&stray, &bad).expect("write");
    let e = kernel
        .load_cell(&LoadTarget::Object(stray.clone()), None)
        .expect_err("an unlisted object is refused");
    assert_eq!(
        find::<CellError>(&e),
        Some(&CellError::Unlisted { object: stray })
    );
    assert_same(&before, &state(&kernel), "after the unlisted object");
    // The manifest's object changed on disk: its signature no longer covers it.
    std::fs::write(&path, &bad).expect("write");
    let e = kernel
        .load_cell(&LoadTarget::Cell("greet".into()), None)
        .expect_err("a changed object is refused");
    assert!(e.to_string().contains("SHA-256 differs"), "{e:#}");
    assert_same(&before, &state(&kernel), "after the changed object");
    std::fs::write(&path, &good).expect("write");
    kernel
        .load_cell(&LoadTarget::Cell("greet".into()), None)
        .expect("the signed object loads");
}
