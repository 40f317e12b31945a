//! Signed cells: with trusted keys, nano_core boots only cells signed by one of them; a tampered
//! byte, another key or a missing signature is refused, naming the cell.

mod common;

use std::path::{Path, PathBuf};

use build_tools::sign;
use nano_core::Kernel;

/// A private copy of `target/cells` (objects and manifest) under the system temp dir.
struct Copy(PathBuf);

impl Copy {
    fn new(tag: &str) -> Copy {
        let dir = std::env::temp_dir().join(format!("cells-signing-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        copy_dir(common::cells_dir(), &dir);
        Copy(dir)
    }
}

impl Drop for Copy {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let path = entry.path();
        if path.is_dir() {
            copy_dir(&path, &to.join(entry.file_name()));
        } else if path.extension().is_some_and(|e| e == "o" || e == "json") {
            std::fs::copy(&path, to.join(entry.file_name())).unwrap();
        }
    }
}

fn public(dir: &Path) -> [u8; 32] {
    sign::read_key(&dir.join("cell-signing.pub")).unwrap()
}

fn boot_error(cells: &Path, keys: &[[u8; 32]]) -> String {
    match Kernel::boot_trusting(cells, keys) {
        Ok(_) => panic!("the boot should have been refused"),
        Err(e) => format!("{e:#}"),
    }
}

#[test]
fn only_cells_signed_by_a_trusted_key_run() {
    nano_core::logger::install(log::LevelFilter::Off);
    let cells = Copy::new("ok");
    let keys = cells.0.join("keys");
    let other_keys = cells.0.join("other-keys");
    sign::keygen(&keys).unwrap();
    sign::keygen(&other_keys).unwrap();
    assert!(
        sign::keygen(&keys).is_err(),
        "an existing key is never overwritten"
    );

    // Unsigned cells are refused once a key is trusted.
    let err = boot_error(&cells.0, &[public(&keys)]);
    assert!(err.contains("is not signed"), "{err}");

    let signed = sign::sign_manifest(&cells.0, &keys.join("cell-signing.key")).unwrap();
    assert!(signed >= 5);
    assert_eq!(
        sign::sign_manifest(&cells.0, &keys.join("cell-signing.key")).unwrap(),
        0,
        "signing again changes nothing"
    );
    let kernel =
        Kernel::boot_trusting(&cells.0, &[public(&keys)]).unwrap_or_else(|e| panic!("{e:#}"));
    assert!(kernel.booted().len() >= 5);
    drop(kernel);

    // Another key.
    let err = boot_error(&cells.0, &[public(&other_keys)]);
    assert!(
        err.contains("does not verify with any trusted key"),
        "{err}"
    );

    // A tampered byte in one object.
    let object = cells.0.join("kernel/memfs.o");
    let mut bytes = std::fs::read(&object).unwrap();
    let at = bytes.len() - 64;
    bytes[at] ^= 0x40;
    std::fs::write(&object, &bytes).unwrap();
    let err = boot_error(&cells.0, &[public(&keys)]);
    assert!(
        err.contains("memfs") && err.contains("does not verify"),
        "{err}"
    );

    // Without trusted keys the signature is not checked, but the loader's hash check still is.
    let err = boot_error(&cells.0, &[]);
    assert!(err.contains("memfs") && err.contains("SHA-256"), "{err}");
}
