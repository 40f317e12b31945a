//! Signed cells: `cargo cell keygen` makes an Ed25519 key pair, `cargo cell build --sign KEY`
//! (or `cargo cell sign KEY`) signs every object the manifest lists, and `nano_core --trust PUB`
//! refuses cells that are unsigned or whose signature does not verify with a trusted key.
//!
//! A signature covers what the entry says the object is — the cell's name, kind, version and
//! dependency key, the object's SHA-256 — and the manifest's serial
//! ([`ManifestEntry::signed_statement`]); it is stored in the entry (`signature`, lowercase hex).
//! So a signed object cannot be presented as another cell or another version, entries of two
//! signings cannot be mixed, and a verifier that remembers the highest serial it accepted refuses
//! a manifest rolled back to an older signing. A plain `cargo cell build` writes an unsigned
//! manifest. Keys are files holding 64 hex digits (32 bytes): the secret key
//! (`cell-signing.key`, created 0600, keep it private and outside the repository) and the public
//! key (`cell-signing.pub`).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use crate_metadata::ManifestEntry;
use ed25519_dalek::{Signer, SigningKey};

use crate_metadata::hex::encode as hex;

/// The 32 bytes a key file holds as 64 hex digits.
pub fn read_key(path: &Path) -> Result<[u8; 32]> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading key {}", path.display()))?;
    crate_metadata::hex::decode::<32>(&text)
        .with_context(|| format!("{} does not hold a key (64 hex digits)", path.display()))
}

/// Makes a key pair in `dir`: `cell-signing.key` (secret) and `cell-signing.pub`. Returns their
/// paths. The secret key is created with mode 0600 from the start and with `O_EXCL` (`create_new`),
/// which refuses an existing file and a symbolic link, dangling or not, so it never overwrites a
/// key and never writes through a link someone planted.
pub fn keygen(dir: &Path) -> Result<(PathBuf, PathBuf)> {
    use std::io::{Read, Write};
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let (secret_path, public_path) = (dir.join("cell-signing.key"), dir.join("cell-signing.pub"));
    let mut seed = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut seed))
        .context("reading /dev/urandom")?;
    let key = SigningKey::from_bytes(&seed);
    let create = |path: &Path, mode: u32| {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
            .with_context(|| {
                format!(
                    "creating {} (an existing file or link is never overwritten)",
                    path.display()
                )
            })
    };
    let mut secret = create(&secret_path, 0o600)?;
    secret
        .write_all((hex(&seed) + "\n").as_bytes())
        .with_context(|| format!("writing {}", secret_path.display()))?;
    let mut public = match create(&public_path, 0o644) {
        Ok(f) => f,
        Err(e) => {
            let _ = std::fs::remove_file(&secret_path);
            return Err(e);
        }
    };
    public
        .write_all((hex(key.verifying_key().as_bytes()) + "\n").as_bytes())
        .with_context(|| format!("writing {}", public_path.display()))?;
    Ok((secret_path, public_path))
}

/// Signs every entry of the manifest in `cells_dir` with the secret key at `key`: each signature
/// covers the entry's identity, its object's SHA-256 (checked against the object on disk) and the
/// manifest's serial ([`ManifestEntry::signed_statement`]). When every entry already carries a
/// valid signature by this key over the manifest's serial, nothing is written and 0 is returned;
/// otherwise the manifest gets a new serial (larger than the previous one and than the time in
/// seconds, so it only grows) and every entry is signed anew. Returns how many entries it signed.
pub fn sign_manifest(cells_dir: &Path, key: &Path) -> Result<usize> {
    let key = SigningKey::from_bytes(&read_key(key)?);
    let mut manifest = crate::manifest::read(cells_dir)?;
    for entry in &manifest.cells {
        let object = cells_dir.join(&entry.object);
        let bytes =
            std::fs::read(&object).with_context(|| format!("reading {}", object.display()))?;
        if crate::objects::sha256(&bytes) != entry.sha256 {
            bail!(
                "{} is not the object the manifest lists for `{}` (its SHA-256 differs): rebuild \
                 before signing",
                object.display(),
                entry.name
            );
        }
    }
    let verifying = key.verifying_key();
    let valid = |serial: u64, entry: &ManifestEntry| {
        entry
            .signature
            .as_deref()
            .and_then(parse_signature)
            .is_some_and(|sig| {
                verifying
                    .verify_strict(entry.signed_statement(serial).as_bytes(), &sig)
                    .is_ok()
            })
    };
    if let Some(serial) = manifest.serial {
        if manifest.cells.iter().all(|e| valid(serial, e)) {
            return Ok(0);
        }
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let serial = manifest
        .serial
        .map_or(now, |s| s.saturating_add(1).max(now));
    manifest.serial = Some(serial);
    for entry in &mut manifest.cells {
        let statement = entry.signed_statement(serial);
        entry.signature = Some(hex(&key.sign(statement.as_bytes()).to_bytes()));
    }
    crate::manifest::write(cells_dir, &manifest)?;
    Ok(manifest.cells.len())
}

/// A signature as the manifest stores it (128 hex digits).
pub fn parse_signature(text: &str) -> Option<ed25519_dalek::Signature> {
    let bytes = crate_metadata::hex::decode::<64>(text)?;
    Some(ed25519_dalek::Signature::from_bytes(&bytes))
}
