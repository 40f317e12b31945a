//! Export policies and safe applications in the hosted kernel (the loader enforces them, see
//! `loader/src/policy/`; the rules are `crate_metadata::policy`).
//!
//! At boot every manifest entry's application interface is declared to the loader by its
//! object's SHA-256 (new versions in `cells/upgrades` included, so a swap compares the two), and
//! the dependency crates of the manifest are the vetted crates applications may use from the base
//! image (`System::declare_manifest_policies`). Each application's namespace is confined with the
//! grants its entry lists, and its object is admitted when the build compiled it with `unsafe`
//! forbidden (the entry's claim, covered by its signature when keys are trusted) or when a key
//! trusted for unsafe applications signed it.

use anyhow::{anyhow, Result};
use crate_metadata::{ManifestEntry, NamespaceId};
use ed25519_dalek::{Signature, VerifyingKey};

use crate::kernel::Kernel;

impl Kernel {
    /// Trusts the Ed25519 public keys `keys` for unsafe applications: an application entry that
    /// does not claim to be built with `unsafe` forbidden runs when one of them signed it (in the
    /// manifest's signing, its serial).
    pub fn trust_unsafe_apps(&mut self, keys: &[[u8; 32]]) -> Result<()> {
        let keys = keys
            .iter()
            .map(|k| {
                VerifyingKey::from_bytes(k).map_err(|e| {
                    anyhow!("a key for unsafe applications is not an Ed25519 key: {e}")
                })
            })
            .collect::<Result<Vec<_>>>()?;
        self.unsafe_app_keys = keys;
        Ok(())
    }

    /// Confines the namespace `ns` of application `entry` and admits its object when it may run
    /// (`loader::System::confine_application`).
    pub(crate) fn confine_app(&mut self, ns: NamespaceId, entry: &ManifestEntry) {
        let signed = self.signed_for_unsafe(entry);
        self.system_mut().confine_application(ns, entry, signed);
    }

    /// Whether a key trusted for unsafe applications signed `entry` in this manifest's signing.
    fn signed_for_unsafe(&self, entry: &ManifestEntry) -> bool {
        let (Some(serial), Some(sig)) = (self.manifest().serial, &entry.signature) else {
            return false;
        };
        let Some(sig) = crate_metadata::hex::decode::<64>(sig).map(|b| Signature::from_bytes(&b))
        else {
            return false;
        };
        let statement = entry.signed_statement(serial);
        self.unsafe_app_keys
            .iter()
            .any(|k| k.verify_strict(statement.as_bytes(), &sig).is_ok())
    }
}
