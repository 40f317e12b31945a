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
    nano_core::errors::render(&boot_failure(cells, keys))
}

fn boot_failure(cells: &Path, keys: &[[u8; 32]]) -> anyhow::Error {
    match Kernel::boot_trusting(cells, keys) {
        Ok(_) => panic!("the boot should have been refused"),
        Err(e) => e,
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
        err.contains("memfs") && err.contains("SHA-256 differs"),
        "{err}"
    );

    // Without trusted keys the signature is not checked, but the loader's hash check still is.
    let err = boot_failure(&cells.0, &[]);
    assert!(
        matches!(
            nano_core::errors::find::<loader::LoadError>(&err),
            Some(loader::LoadError::IntegrityMismatch { cell, .. }) if cell == "memfs"
        ),
        "{err:#}"
    );
}

/// The manifest of a copy, and a function that writes it back.
fn manifest_of(cells: &Path) -> crate_metadata::Manifest {
    build_tools::manifest::read(cells).unwrap()
}

fn write_manifest(cells: &Path, manifest: &crate_metadata::Manifest) {
    build_tools::manifest::write(cells, manifest).unwrap();
}

#[test]
fn a_signature_binds_the_cell_it_names_and_its_signing() {
    use crate_metadata::CellKind;
    nano_core::logger::install(log::LevelFilter::Off);
    let cells = Copy::new("identity");
    let keys = cells.0.join("keys");
    sign::keygen(&keys).unwrap();
    sign::sign_manifest(&cells.0, &keys.join("cell-signing.key")).unwrap();
    let signed = manifest_of(&cells.0);
    let trusted = [public(&keys)];
    Kernel::boot_trusting(&cells.0, &trusted).unwrap_or_else(|e| panic!("{e:#}"));

    // The new version of greet, signed by the same key, presented as the library cell greet: its
    // object, hash and signature copied into the libs entry.
    let mut swapped = signed.clone();
    let upgrade = swapped.get(CellKind::Upgrades, "greet").unwrap().clone();
    let lib = swapped.get_mut(CellKind::Libs, "greet").unwrap();
    lib.object = upgrade.object.clone();
    lib.size = upgrade.size;
    lib.sha256 = upgrade.sha256;
    lib.signature = upgrade.signature.clone();
    write_manifest(&cells.0, &swapped);
    // A library that fails is left out, named, and the rest boots.
    let kernel = Kernel::boot_trusting(&cells.0, &trusted).unwrap_or_else(|e| panic!("{e:#}"));
    let failures = kernel.boot_failures();
    assert_eq!(failures.len(), 1, "{failures:?}");
    let err = &failures[0].error;
    assert!(
        failures[0].cell == "greet"
            && err.contains("cell `greet` (libs 0.1.0)")
            && err.contains("does not verify"),
        "{err}"
    );
    assert!(
        kernel.cell_id("greet").is_none(),
        "the substituted greet is not loaded"
    );
    drop(kernel);

    // An entry carried over from another signing (the same cell, the same object): the serial
    // it was signed with is not this manifest's.
    // Signing again after a change (here: the signatures dropped, as a plain build leaves them)
    // takes a new, larger serial.
    let mut unsigned = signed.clone();
    for e in &mut unsigned.cells {
        e.signature = None;
    }
    write_manifest(&cells.0, &unsigned);
    std::thread::sleep(std::time::Duration::from_millis(10));
    sign::sign_manifest(&cells.0, &keys.join("cell-signing.key")).unwrap();
    let resigned = manifest_of(&cells.0);
    assert!(resigned.serial > signed.serial, "the serial only grows");
    let mut mixed = resigned.clone();
    let memfs = mixed.get_mut(CellKind::Kernel, "memfs").unwrap();
    memfs.signature = signed
        .get(CellKind::Kernel, "memfs")
        .unwrap()
        .signature
        .clone();
    write_manifest(&cells.0, &mixed);
    let err = boot_error(&cells.0, &trusted);
    assert!(
        err.contains("cell `memfs` (kernel 0.1.0)") && err.contains("another signing"),
        "{err}"
    );

    // A whole older signed manifest, once a newer one was accepted: a rollback.
    write_manifest(&cells.0, &signed);
    let options = nano_core::BootOptions {
        trusted: trusted.to_vec(),
        min_serial: resigned.serial.unwrap(),
        ..Default::default()
    };
    let err = match Kernel::boot_with(&cells.0, &options) {
        Ok(_) => panic!("a rolled-back manifest must be refused"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.contains("rolled back"), "{err}");
    write_manifest(&cells.0, &resigned);
    Kernel::boot_with(&cells.0, &options).unwrap_or_else(|e| panic!("{e:#}"));

    // An unsigned manifest (a plain build) is refused under trust, by what it lacks.
    let mut plain = resigned.clone();
    plain.serial = None;
    for e in &mut plain.cells {
        e.signature = None;
    }
    write_manifest(&cells.0, &plain);
    let err = boot_error(&cells.0, &trusted);
    assert!(err.contains("not signed"), "{err}");
}

#[test]
fn keygen_creates_the_secret_key_private_and_never_through_a_link() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let dir = std::env::temp_dir().join(format!("keygen-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    // A dangling link where the secret key goes: keygen must not write through it.
    let target = dir.join("elsewhere");
    std::os::unix::fs::symlink(&target, dir.join("cell-signing.key")).unwrap();
    let err = format!("{:#}", sign::keygen(&dir).unwrap_err());
    assert!(err.contains("never overwritten"), "{err}");
    assert!(!target.exists(), "the key was written through the link");
    std::fs::remove_file(dir.join("cell-signing.key")).unwrap();
    // Under a permissive umask the secret key is still 0600, from its creation on.
    // SAFETY: umask only changes this process's file-creation mask; restored below.
    let old = unsafe { libc::umask(0) };
    let made = sign::keygen(&dir);
    // SAFETY: umask has no preconditions; this puts back the process's previous mask.
    unsafe { libc::umask(old) };
    let (secret, public) = made.unwrap();
    let mode = std::fs::metadata(&secret).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "secret key mode {mode:o}");
    assert_eq!(std::fs::metadata(&secret).unwrap().nlink(), 1);
    assert!(sign::read_key(&public).is_ok());
    std::fs::remove_dir_all(&dir).unwrap();
}
