//! Special files where objects are expected: a FIFO (whose `open` and reads block), `/dev/zero`
//! (which never ends) and a file larger than the manifest says, at a swap and at boot, with and
//! without trusted keys. Each is refused by name at once, with nothing changed and nothing
//! allocated for its contents.

mod common;

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use loader::SwapOptions;
use nano_core::files::ReadError;
use nano_core::Kernel;

/// Runs `f` on its own thread and fails the test if it does not return within 20 s: the bug this
/// guards against is a read that blocks forever.
fn within<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(20))
        .unwrap_or_else(|_| panic!("{what} blocked"))
}

fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: a valid C string; mkfifo only creates the node.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
}

fn scratch(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("hostile-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A copy of the built cells (objects and manifest).
fn copy_cells(to: &Path) {
    fn walk(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, &to.join(entry.file_name()));
            } else if path.extension().is_some_and(|e| e == "o" || e == "json") {
                std::fs::copy(&path, to.join(entry.file_name())).unwrap();
            }
        }
    }
    walk(common::cells_dir(), to);
}

fn read_error(err: &anyhow::Error) -> &ReadError {
    err.chain()
        .find_map(|e| e.downcast_ref::<ReadError>())
        .unwrap_or_else(|| panic!("not a read error: {err:#}"))
}

#[test]
fn a_swap_to_a_fifo_or_dev_zero_is_refused_at_once() {
    let dir = scratch("swap");
    let fifo = dir.join("memfs.o");
    mkfifo(&fifo);
    let cells = common::cells_dir();
    let result = within("a swap to a FIFO and to /dev/zero", move || {
        let mut kernel = Kernel::boot(cells).expect("boot");
        let before = kernel.system().slot_values();
        let fifo_err = kernel
            .swap_cell("memfs", &fifo, &SwapOptions::default())
            .expect_err("a FIFO is no object");
        let zero_err = kernel
            .swap_cell("memfs", Path::new("/dev/zero"), &SwapOptions::default())
            .expect_err("/dev/zero is no object");
        assert!(before == kernel.system().slot_values(), "slots changed");
        (format!("{fifo_err:#}"), fifo_err, zero_err)
    });
    let (text, fifo_err, zero_err) = result;
    assert!(
        matches!(
            read_error(&fifo_err),
            ReadError::NotRegular { kind: "a FIFO", .. }
        ),
        "{text}"
    );
    assert!(text.contains("swapping `memfs`"), "{text}");
    assert!(matches!(
        read_error(&zero_err),
        ReadError::NotRegular {
            kind: "a character device",
            ..
        }
    ));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_manifest_entry_pointing_at_a_fifo_or_dev_zero_is_refused_at_boot() {
    let _ = common::cells_dir();
    for (tag, trusted) in [("boot", false), ("boot-trusted", true)] {
        for special in ["fifo", "zero", "grown"] {
            let dir = scratch(&format!("{tag}-{special}"));
            copy_cells(&dir);
            // With keys, the manifest is signed first: the special file then stands where a
            // signed object is expected, as the issue found it booting under --trust.
            let keys = if trusted {
                let keys = dir.join("keys");
                build_tools::sign::keygen(&keys).unwrap();
                build_tools::sign::sign_manifest(&dir, &keys.join("cell-signing.key")).unwrap();
                vec![build_tools::sign::read_key(&keys.join("cell-signing.pub")).unwrap()]
            } else {
                Vec::new()
            };
            let object = dir.join("kernel/memfs.o");
            std::fs::remove_file(&object).unwrap();
            match special {
                "fifo" => mkfifo(&object),
                "zero" => std::os::unix::fs::symlink("/dev/zero", &object).unwrap(),
                _ => std::fs::write(&object, vec![0u8; 4 << 20]).unwrap(),
            }
            let boot_dir = dir.clone();
            let err = within("a boot with a special file", move || {
                Kernel::boot_trusting(&boot_dir, &keys).err()
            })
            .expect("the boot must stop: memfs is a kernel cell");
            let text = format!("{err:#}");
            assert!(text.contains("memfs"), "{tag} {special}: {text}");
            {
                let expected = match special {
                    "fifo" => matches!(
                        read_error(&err),
                        ReadError::NotRegular { kind: "a FIFO", .. }
                    ),
                    "zero" => matches!(
                        read_error(&err),
                        ReadError::NotRegular {
                            kind: "a character device",
                            ..
                        }
                    ),
                    _ => matches!(read_error(&err), ReadError::TooLarge { .. }),
                };
                assert!(expected, "{tag} {special}: {text}");
            }
            std::fs::remove_dir_all(&dir).unwrap();
        }
    }
}
