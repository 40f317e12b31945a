//! [`Sha256`]: the digest that names an object's bytes everywhere in the system — in the manifest,
//! in the model, in signatures and in policies. One type, written and read as 64 lowercase hex
//! digits, so no two places can disagree on case or length.
//!
//! Computing a digest needs a hash function, which this crate does not carry: the loader's
//! `loader::sha256` makes one from bytes.

use core::fmt;
use core::str::FromStr;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::hex;

/// A SHA-256 digest.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sha256(pub [u8; 32]);

/// Text that is not 64 hex digits, so not a [`Sha256`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadDigest;

impl fmt::Display for BadDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a SHA-256 digest is 64 hex digits")
    }
}

impl core::error::Error for BadDigest {}

impl Sha256 {
    /// The digest's 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The first 12 hex digits, as listings show a digest.
    pub fn short(&self) -> impl fmt::Display + '_ {
        struct Short<'a>(&'a Sha256);
        impl fmt::Display for Short<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0 .0[..6].iter().try_for_each(|b| write!(f, "{b:02x}"))
            }
        }
        Short(self)
    }
}

impl FromStr for Sha256 {
    type Err = BadDigest;

    /// 64 hex digits, either case, surrounding whitespace ignored.
    fn from_str(text: &str) -> Result<Sha256, BadDigest> {
        hex::decode::<32>(text).map(Sha256).ok_or(BadDigest)
    }
}

impl fmt::Display for Sha256 {
    /// 64 lowercase hex digits.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sha256({self})")
    }
}

impl Serialize for Sha256 {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Sha256 {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Sha256, D::Error> {
        struct HexDigits;

        impl Visitor<'_> for HexDigits {
            type Value = Sha256;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a SHA-256 digest as 64 hex digits")
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<Sha256, E> {
                text.parse()
                    .map_err(|_| E::invalid_value(de::Unexpected::Str(text), &self))
            }
        }

        deserializer.deserialize_str(HexDigits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    const HELLO: &str = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";

    #[test]
    fn text_round_trip() {
        let digest: Sha256 = HELLO.parse().unwrap();
        assert_eq!(digest.to_string(), HELLO);
        assert_eq!(digest.0[0], 0x2c);
        assert_eq!(digest.short().to_string(), HELLO[..12]);
        assert_eq!(HELLO.to_ascii_uppercase().parse::<Sha256>(), Ok(digest));
        assert_eq!(HELLO[1..].parse::<Sha256>(), Err(BadDigest));
        assert_eq!("zz".repeat(32).parse::<Sha256>(), Err(BadDigest));
    }

    #[test]
    fn serde_is_the_hex_string() {
        let digest: Sha256 = HELLO.parse().unwrap();
        let json = serde_json::to_string(&digest).unwrap();
        assert_eq!(json, alloc::format!("\"{HELLO}\""));
        assert_eq!(serde_json::from_str::<Sha256>(&json).unwrap(), digest);
        let err = serde_json::from_str::<Sha256>("\"abc\"").unwrap_err();
        assert!(err.to_string().contains("64 hex digits"), "{err}");
        assert!(serde_json::from_str::<Sha256>("42").is_err());
    }
}
