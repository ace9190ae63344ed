//! The `Digest` type: a parsed `sha256:<64 lowercase hex>` content address,
//! and `Hasher`, which computes one while bytes stream through it.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256};

use crate::Error;

/// A sha256 content digest, written `sha256:<64 lowercase hex digits>`.
///
/// Only sha256 is supported; any other algorithm is rejected when parsing.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    bytes: [u8; 32],
}

impl Digest {
    /// The algorithm prefix, with its colon.
    pub const PREFIX: &'static str = "sha256:";

    /// Hashes `data` and returns its digest.
    pub fn of(data: &[u8]) -> Digest {
        let mut h = Hasher::new();
        h.update(data);
        h.finish()
    }

    /// Builds a digest from raw 32 bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Digest {
        Digest { bytes }
    }

    /// Parses 64 lowercase hex digits (without the `sha256:` prefix).
    pub fn from_hex(hex_str: &str) -> Result<Digest, Error> {
        let invalid = |reason| Error::InvalidDigest {
            input: hex_str.to_string(),
            reason,
        };
        if hex_str.len() != 64 {
            return Err(invalid("expected 64 hex digits"));
        }
        if !hex_str
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(invalid("expected lowercase hex digits"));
        }
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(hex_str, &mut bytes).map_err(|_| invalid("expected hex digits"))?;
        Ok(Digest { bytes })
    }

    /// The 64 lowercase hex digits, without the algorithm prefix.
    pub fn hex(&self) -> String {
        hex::encode(self.bytes)
    }

    /// The first 12 hex digits, as Docker shows image IDs.
    pub fn short(&self) -> String {
        let mut h = self.hex();
        h.truncate(12);
        h
    }

    /// The algorithm name, always `sha256`.
    pub fn algorithm(&self) -> &'static str {
        "sha256"
    }

    /// The raw 32 digest bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.bytes
    }
}

impl FromStr for Digest {
    type Err = Error;

    fn from_str(s: &str) -> Result<Digest, Error> {
        match s.split_once(':') {
            Some(("sha256", hex_str)) => {
                Digest::from_hex(hex_str).map_err(|_| Error::InvalidDigest {
                    input: s.to_string(),
                    reason: "expected sha256: followed by 64 lowercase hex digits",
                })
            }
            Some((_, _)) => Err(Error::InvalidDigest {
                input: s.to_string(),
                reason: "unsupported digest algorithm (only sha256)",
            }),
            None => Err(Error::InvalidDigest {
                input: s.to_string(),
                reason: "missing algorithm prefix sha256:",
            }),
        }
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest(sha256:{})", self.hex())
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Digest, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Incremental sha256 hasher that also counts bytes.
#[derive(Clone, Default)]
pub struct Hasher {
    inner: Sha256,
    len: u64,
}

impl Hasher {
    /// A fresh hasher.
    pub fn new() -> Hasher {
        Hasher::default()
    }

    /// Feeds bytes.
    pub fn update(&mut self, data: &[u8]) {
        self.inner.update(data);
        self.len += data.len() as u64;
    }

    /// Number of bytes fed so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether no byte was fed yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The digest of everything fed.
    pub fn finish(self) -> Digest {
        let out = self.inner.finalize();
        let mut bytes = [0u8; 32];
        bytes.copy_from_slice(&out);
        Digest { bytes }
    }
}

impl fmt::Debug for Hasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hasher").field("len", &self.len).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn empty_digest_is_known_value() {
        assert_eq!(Digest::of(b"").hex(), EMPTY);
        assert_eq!(Digest::of(b"").to_string(), format!("sha256:{EMPTY}"));
    }

    #[test]
    fn parse_round_trip_and_serde() {
        let d: Digest = format!("sha256:{EMPTY}").parse().unwrap();
        assert_eq!(d, Digest::of(b""));
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(json, format!("\"sha256:{EMPTY}\""));
        let back: Digest = serde_json::from_str(&json).unwrap();
        assert_eq!(back, d);
        assert_eq!(d.short(), &EMPTY[..12]);
    }

    #[test]
    fn rejects_bad_digests() {
        for bad in [
            "",
            EMPTY,
            "sha512:abcd",
            "sha256:abc",
            &format!("sha256:{}", EMPTY.to_uppercase()),
            &format!("sha256:{}g", &EMPTY[..63]),
            &format!("sha256:{EMPTY}0"),
        ] {
            let err = bad.parse::<Digest>().unwrap_err();
            assert!(err.to_string().contains("invalid digest"), "{bad}: {err}");
        }
        assert!(serde_json::from_str::<Digest>("\"sha256:zz\"").is_err());
    }

    #[test]
    fn hasher_counts_bytes() {
        let mut h = Hasher::new();
        h.update(b"hello ");
        h.update(b"world");
        assert_eq!(h.len(), 11);
        assert_eq!(h.finish(), Digest::of(b"hello world"));
    }
}
