//! JSON 1.1 value encodings the KMS API uses: blobs as base64 strings, timestamps as epoch
//! seconds (a JSON number with a fractional part).

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;
use zeroize::Zeroizing;

use crate::env::Millis;

/// A public binary field (for example a ciphertext blob).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Blob(pub Vec<u8>);

/// A secret binary field (plaintext, data keys): zeroed on drop, never printed.
#[derive(Default)]
pub struct SecretBlob(pub Zeroizing<Vec<u8>>);

impl std::fmt::Debug for SecretBlob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretBlob({} bytes)", self.0.len())
    }
}

struct Base64Visitor;

impl serde::de::Visitor<'_> for Base64Visitor {
    type Value = Vec<u8>;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a base64 string")
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Vec<u8>, E> {
        STANDARD
            .decode(v)
            .map_err(|_| E::custom("blob is not valid base64"))
    }
}

fn decode<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    d.deserialize_str(Base64Visitor)
}

impl<'de> Deserialize<'de> for Blob {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        decode(d).map(Blob)
    }
}

impl<'de> Deserialize<'de> for SecretBlob {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        decode(d).map(|v| SecretBlob(Zeroizing::new(v)))
    }
}

/// `bytes` as a JSON string token (base64 between quotes). Base64 never needs escaping, so
/// the token goes to the serializer finished, as a raw value: serde_json copies it instead of
/// scanning every character for escapes (a tenth of a 4 KiB Encrypt's time). These types are
/// only ever serialized to JSON.
fn base64_token(bytes: &[u8]) -> Result<Box<RawValue>, serde_json::Error> {
    // Exactly the token's length: `from_string` then keeps this buffer instead of shrinking it
    // into a new one (which would leave an unzeroed copy of a secret behind).
    let len = base64::encoded_len(bytes.len(), true).unwrap_or(usize::MAX);
    let mut token = String::with_capacity(len.saturating_add(2));
    token.push('"');
    STANDARD.encode_string(bytes, &mut token);
    token.push('"');
    RawValue::from_string(token)
}

impl Serialize for Blob {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        base64_token(&self.0)
            .map_err(serde::ser::Error::custom)?
            .serialize(s)
    }
}

impl Serialize for SecretBlob {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let token = base64_token(&self.0[..]).map_err(serde::ser::Error::custom)?;
        let result = token.serialize(s);
        // The token held the secret in base64: zero it before it is freed.
        let token: Box<str> = token.into();
        drop(Zeroizing::new(token.into_string()));
        result
    }
}

/// A point in time, serialized as epoch seconds with millisecond precision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timestamp(pub Millis);

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[allow(clippy::cast_precision_loss)] // epoch millis fit an f64 mantissa exactly
        let secs = self.0 as f64 / 1000.0;
        s.serialize_f64(secs)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    #[serde(rename_all = "PascalCase")]
    struct Answer {
        ciphertext_blob: Blob,
        plaintext: SecretBlob,
        key_id: &'static str,
    }

    /// Blobs serialize as base64 JSON strings, padding included, and parse back to the bytes.
    #[test]
    fn blobs_are_base64_strings_and_round_trip() {
        for len in [0usize, 1, 2, 3, 4, 5, 4096, 4097] {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 7 % 256) as u8).collect();
            let json = serde_json::to_string(&Answer {
                ciphertext_blob: Blob(bytes.clone()),
                plaintext: SecretBlob(Zeroizing::new(bytes.clone())),
                key_id: "k\"1",
            })
            .unwrap();
            let encoded = STANDARD.encode(&bytes);
            assert_eq!(
                json,
                format!(
                    r#"{{"CiphertextBlob":"{encoded}","Plaintext":"{encoded}","KeyId":"k\"1"}}"#
                )
            );
            let value: serde_json::Value = serde_json::from_str(&json).unwrap();
            let back: Blob = serde_json::from_value(value["CiphertextBlob"].clone()).unwrap();
            assert_eq!(back.0, bytes);
        }
    }
}
