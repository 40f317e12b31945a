//! Signed cells: `cargo cell keygen` makes an Ed25519 key pair, `cargo cell build --sign KEY`
//! (or `cargo cell sign KEY`) signs every object the manifest lists, and `nano_core --trust PUB`
//! refuses cells that are unsigned or whose signature does not verify with a trusted key.
//!
//! A signature covers the object's bytes exactly; it is stored in the manifest entry
//! (`signature`, lowercase hex). Keys are files holding 64 hex digits (32 bytes): the secret key
//! (`cell-signing.key`, keep it private) and the public key (`cell-signing.pub`).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use crate_metadata::Manifest;
use ed25519_dalek::{Signer, SigningKey};

/// Lowercase hex of `bytes`.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The 32 bytes a key file holds as 64 hex digits.
pub fn read_key(path: &Path) -> Result<[u8; 32]> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading key {}", path.display()))?;
    let text = text.trim();
    if text.len() != 64 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!("{} does not hold a key (64 hex digits)", path.display());
    }
    let mut key = [0u8; 32];
    for (i, k) in key.iter_mut().enumerate() {
        *k = u8::from_str_radix(&text[2 * i..2 * i + 2], 16)?;
    }
    Ok(key)
}

/// Makes a key pair in `dir`: `cell-signing.key` (secret) and `cell-signing.pub`. Returns their
/// paths. Refuses to overwrite an existing key.
pub fn keygen(dir: &Path) -> Result<(PathBuf, PathBuf)> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let (secret_path, public_path) = (dir.join("cell-signing.key"), dir.join("cell-signing.pub"));
    if secret_path.exists() {
        bail!(
            "{} exists already; not overwriting a key",
            secret_path.display()
        );
    }
    let mut seed = [0u8; 32];
    use std::io::Read;
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut seed))
        .context("reading /dev/urandom")?;
    let key = SigningKey::from_bytes(&seed);
    std::fs::write(&secret_path, hex(&seed) + "\n")
        .with_context(|| format!("writing {}", secret_path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&secret_path, std::fs::Permissions::from_mode(0o600));
    }
    std::fs::write(&public_path, hex(key.verifying_key().as_bytes()) + "\n")
        .with_context(|| format!("writing {}", public_path.display()))?;
    Ok((secret_path, public_path))
}

/// Signs every object the manifest in `cells_dir` lists with the secret key at `key`, and
/// rewrites the manifest when a signature changed. Returns how many entries it signed anew.
pub fn sign_manifest(cells_dir: &Path, key: &Path) -> Result<usize> {
    let key = SigningKey::from_bytes(&read_key(key)?);
    let path = cells_dir.join("manifest.json");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let mut manifest: Manifest =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let mut signed = 0;
    for entry in &mut manifest.cells {
        let object = cells_dir.join(&entry.object);
        let bytes =
            std::fs::read(&object).with_context(|| format!("reading {}", object.display()))?;
        let signature = hex(&key.sign(&bytes).to_bytes());
        if entry.signature.as_deref() != Some(signature.as_str()) {
            entry.signature = Some(signature);
            signed += 1;
        }
    }
    if signed > 0 {
        let mut json = serde_json::to_string_pretty(&manifest)?;
        json.push('\n');
        crate::files::write_if_changed(&path, json.as_bytes())?;
    }
    Ok(signed)
}

/// Keeps the signatures of the manifest on disk for entries whose object did not change, so a
/// rebuild with nothing changed rewrites nothing and keeps the objects signed.
pub fn carry_signatures(old_manifest: &Path, manifest: &mut Manifest) {
    let Ok(text) = std::fs::read_to_string(old_manifest) else {
        return;
    };
    let Ok(old) = serde_json::from_str::<Manifest>(&text) else {
        return;
    };
    for entry in &mut manifest.cells {
        if let Some(prev) = old
            .cells
            .iter()
            .find(|o| o.kind == entry.kind && o.name == entry.name && o.sha256 == entry.sha256)
        {
            entry.signature = prev.signature.clone();
        }
    }
}
