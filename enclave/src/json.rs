//! JSON 1.1 value encodings the KMS API uses: blobs as base64 strings, timestamps as epoch
//! seconds (a JSON number with a fractional part).

use std::borrow::Cow;

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
        self.visit_bytes(v.as_bytes())
    }
    fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
        // Decoded into a buffer of exactly the decoded length: never grown, so a secret
        // leaves no unzeroed copy behind.
        base64_simd::STANDARD
            .decode_to_vec(v)
            .map_err(|_| E::custom("blob is not valid base64"))
    }
}

/// The string's bytes go to the decoder as they are: serde_json skips its UTF-8 check of a
/// string read as bytes, and the decoder refuses every byte outside the base64 alphabet.
fn decode<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    d.deserialize_bytes(Base64Visitor)
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
    let len = base64_simd::STANDARD.encoded_length(bytes.len());
    let mut token = String::with_capacity(len.saturating_add(2));
    token.push('"');
    base64_simd::STANDARD.encode_append(bytes, &mut token);
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

/// A JSON object's members, each kept as its raw text: one pass over a request body that
/// authorization and the audit record then both read from. A large member they do not read (a
/// 4 KiB plaintext) is scanned once here, not once by each of them.
pub struct Members<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'a> Members<'a> {
    /// The members of `body`, in order, duplicates kept; `None` when `body` is not one JSON
    /// object (or has a string that is not UTF-8, which the raw text cannot hold).
    pub fn parse(body: &'a [u8]) -> Option<Self> {
        serde_json::from_slice(body).ok()
    }

    /// Every member, by name and raw text.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &RawValue)> {
        self.0.iter().map(|(name, raw)| (name.as_ref(), *raw))
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Members<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Members<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut access: A,
            ) -> Result<Members<'de>, A::Error> {
                let mut members = Vec::new();
                while let Some(Name(name)) = access.next_key()? {
                    members.push((name, access.next_value::<&'de RawValue>()?));
                }
                Ok(Members(members))
            }
        }
        deserializer.deserialize_map(Visitor)
    }
}

/// A member name, borrowed from the body unless it had escapes.
#[derive(Deserialize)]
struct Name<'a>(#[serde(borrow)] Cow<'a, str>);

/// Encodes bytes as standard base64 (answers of the `Ekms.*` targets, logs, tests).
pub fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn names(members: &Members<'_>) -> Vec<String> {
        members.iter().map(|(name, _)| name.to_owned()).collect()
    }

    #[test]
    fn members_split_an_object_and_nothing_else() {
        let body = br#" {"A":1, "B\u0043":{"x":[1,"}"]}, "A":"two", "D":"\"q\""} "#;
        let members = Members::parse(body).unwrap();
        // Escaped names are decoded; repeats are kept in order; values keep their raw text.
        assert_eq!(names(&members), ["A", "BC", "A", "D"]);
        let raw: Vec<&str> = members.iter().map(|(_, raw)| raw.get()).collect();
        assert_eq!(raw, ["1", r#"{"x":[1,"}"]}"#, r#""two""#, r#""\"q\"""#]);


        for bad in [
            &b"[1]"[..],
            b"\"s\"",
            b"{\"A\":1",
            b"{\"A\":1} {}",
            b"{\"A\":\"\xff\"}",
            b"",
        ] {
            assert!(
                Members::parse(bad).is_none(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        assert!(names(&Members::parse(b"{}").unwrap()).is_empty());
    }
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine as _;

    /// The SIMD decoder takes and refuses what the scalar engine does (canonical padded
    /// base64, nothing else), and decodes to a buffer of exactly the decoded length.
    #[test]
    fn blobs_decode_as_strictly_as_the_standard_engine() {
        let mut inputs: Vec<String> = [
            "",
            "Zg==",
            "Zg=",
            "Zg",
            "Zh==",
            "Zm8=",
            "Zm9=",
            "Zm9v",
            "Zm9v\\n",
            " Zm9v",
            "Zm9v====",
            "Z===",
            "====",
            "@@@@",
            "Zm9vYg==",
            "Zm9vYmFy",
            "Zm9v-_==",
            "Zm9v+/==",
            "Zm9=Zm9v",
            "\\u005am9v",
            "Zm9v\u{e9}",
            "\\u00e9Zm9",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        let long = STANDARD.encode((0..=255u8).cycle().take(4096).collect::<Vec<u8>>());
        inputs.push(long.clone());
        inputs.push(format!("{}=", &long[..long.len() - 1]));
        inputs.push(format!("{}*{}", &long[..1000], &long[1001..]));
        for input in &inputs {
            let json = format!("\"{input}\"");
            let ours = serde_json::from_str::<SecretBlob>(&json).map(|b| b.0);
            let text: Result<String, _> = serde_json::from_str(&json);
            let standard = text.map(|t| STANDARD.decode(t));
            match (&ours, standard) {
                (Ok(bytes), Ok(Ok(expected))) => {
                    assert_eq!(bytes[..], expected[..], "{input:?}");
                    assert_eq!(bytes.capacity(), bytes.len(), "{input:?}: grown");
                }
                (Err(_), Ok(Err(_)) | Err(_)) => {}
                (ours, standard) => panic!(
                    "{input:?}: ours {:?}, standard {standard:?}",
                    ours.as_ref().map(|b| b.len())
                ),
            }
        }
        for not_a_string in ["[90, 109]", "7", "null", "{}", "true"] {
            assert!(
                serde_json::from_str::<Blob>(not_a_string).is_err(),
                "{not_a_string}"
            );
        }
    }

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
