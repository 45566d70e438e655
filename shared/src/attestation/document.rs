//! The Nitro attestation document carried as the COSE_Sign1 payload: a CBOR map whose
//! fields are checked for presence, type and size as the AWS Nitro Enclaves attestation
//! process prescribes (`aws/aws-nitro-enclaves-nsm-api`, `docs/attestation_process.md`
//! §3.2.2 "syntactical validation").

use std::collections::BTreeMap;

use serde_cbor::Value;

use super::chain::MAX_CABUNDLE_LEN;
use super::error::StructureError;

/// Most PCRs a document may carry (attestation_process.md: `pcrs: { + index => pcr }`,
/// `index = 0..31`).
pub const MAX_PCRS: usize = 32;
/// Largest `public_key`, `user_data` and `nonce` (attestation_process.md CDDL:
/// `bytes .size (0..1024)`; real NSM output carries 1024, so its 512 figure is not used).
pub const MAX_USER_FIELD_LEN: usize = 1024;
/// Largest `certificate` and `cabundle` entry (attestation_process.md: `bytes .size (1..1024)`).
const MAX_CERT_LEN: usize = 1024;
/// Largest `module_id`, a generous bound on `i-<instance>-enc<enclave id>`.
const MAX_MODULE_ID_LEN: usize = 256;

/// A structurally valid Nitro attestation document. Nothing here is trusted yet.
#[derive(Debug, Clone)]
pub(crate) struct NitroDocument {
    pub(crate) module_id: String,
    pub(crate) digest: String,
    pub(crate) timestamp_ms: u64,
    pub(crate) pcrs: BTreeMap<u8, Vec<u8>>,
    pub(crate) certificate: Vec<u8>,
    pub(crate) cabundle: Vec<Vec<u8>>,
    pub(crate) public_key: Option<Vec<u8>>,
    pub(crate) user_data: Option<Vec<u8>>,
    pub(crate) nonce: Option<Vec<u8>>,
}

/// Decodes and checks the payload. Unknown keys are ignored (they are signed, and AWS may
/// add fields); duplicate keys keep the last value, as `serde_cbor` does.
pub(crate) fn parse(payload: &[u8]) -> Result<NitroDocument, StructureError> {
    let value: Value = serde_cbor::from_slice(payload).map_err(StructureError::Cbor)?;
    let Value::Map(mut map) = value else {
        return Err(StructureError::NotAMap);
    };
    let mut take = |field: &'static str| map.remove(&Value::Text(field.to_owned()));

    let module_id = match take("module_id") {
        Some(Value::Text(id)) => id,
        Some(_) => return Err(StructureError::WrongType("module_id")),
        None => return Err(StructureError::MissingField("module_id")),
    };
    check_size("module_id", module_id.len(), 1, MAX_MODULE_ID_LEN)?;

    let digest = match take("digest") {
        Some(Value::Text(digest)) => digest,
        Some(_) => return Err(StructureError::WrongType("digest")),
        None => return Err(StructureError::MissingField("digest")),
    };
    if digest != "SHA384" {
        return Err(StructureError::Digest(digest));
    }

    let timestamp_ms = match take("timestamp") {
        // attestation_process.md: UTC milliseconds since the epoch, `uint .size 8`.
        Some(Value::Integer(ms)) => u64::try_from(ms)
            .ok()
            .filter(|ms| *ms > 0)
            .ok_or(StructureError::WrongType("timestamp"))?,
        Some(_) => return Err(StructureError::WrongType("timestamp")),
        None => return Err(StructureError::MissingField("timestamp")),
    };

    let pcrs = match take("pcrs") {
        Some(Value::Map(pcrs)) => parse_pcrs(pcrs)?,
        Some(_) => return Err(StructureError::WrongType("pcrs")),
        None => return Err(StructureError::MissingField("pcrs")),
    };

    let certificate = match take("certificate") {
        Some(Value::Bytes(der)) => der,
        Some(_) => return Err(StructureError::WrongType("certificate")),
        None => return Err(StructureError::MissingField("certificate")),
    };
    check_size("certificate", certificate.len(), 1, MAX_CERT_LEN)?;

    let cabundle = match take("cabundle") {
        Some(Value::Array(items)) => items,
        Some(_) => return Err(StructureError::WrongType("cabundle")),
        None => return Err(StructureError::MissingField("cabundle")),
    };
    check_size("cabundle", cabundle.len(), 1, MAX_CABUNDLE_LEN)?;
    let cabundle = cabundle
        .into_iter()
        .map(|item| match item {
            Value::Bytes(der) => {
                check_size("cabundle", der.len(), 1, MAX_CERT_LEN)?;
                Ok(der)
            }
            _ => Err(StructureError::WrongType("cabundle")),
        })
        .collect::<Result<Vec<_>, _>>()?;

    let public_key = optional_bytes("public_key", take("public_key"))?;
    let user_data = optional_bytes("user_data", take("user_data"))?;
    let nonce = optional_bytes("nonce", take("nonce"))?;

    Ok(NitroDocument {
        module_id,
        digest,
        timestamp_ms,
        pcrs,
        certificate,
        cabundle,
        public_key,
        user_data,
        nonce,
    })
}

/// `pcrs: { + index => pcr }`, `index = 0..31`, `pcr = bytes .size (32/48/64)`.
fn parse_pcrs(pcrs: BTreeMap<Value, Value>) -> Result<BTreeMap<u8, Vec<u8>>, StructureError> {
    check_size("pcrs", pcrs.len(), 1, MAX_PCRS)?;
    let mut parsed = BTreeMap::new();
    for (index, value) in pcrs {
        let Value::Integer(index) = index else {
            return Err(StructureError::WrongType("pcrs"));
        };
        let index = u8::try_from(index)
            .ok()
            .filter(|i| usize::from(*i) < MAX_PCRS)
            .ok_or(StructureError::PcrIndex(index))?;
        let Value::Bytes(value) = value else {
            return Err(StructureError::WrongType("pcrs"));
        };
        if !matches!(value.len(), 32 | 48 | 64) {
            return Err(StructureError::PcrLength {
                index,
                len: value.len(),
            });
        }
        parsed.insert(index, value);
    }
    if !parsed.contains_key(&0) {
        return Err(StructureError::Pcr0Missing);
    }
    Ok(parsed)
}

/// `public_key`, `user_data`, `nonce`: absent or null (None), or bytes of at most 1024.
fn optional_bytes(
    field: &'static str,
    value: Option<Value>,
) -> Result<Option<Vec<u8>>, StructureError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bytes(bytes)) => {
            check_size(field, bytes.len(), 0, MAX_USER_FIELD_LEN)?;
            Ok(Some(bytes))
        }
        Some(_) => Err(StructureError::WrongType(field)),
    }
}

fn check_size(
    field: &'static str,
    len: usize,
    min: usize,
    max: usize,
) -> Result<(), StructureError> {
    if (min..=max).contains(&len) {
        Ok(())
    } else {
        Err(StructureError::FieldSize {
            field,
            len,
            min,
            max,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn text(s: &str) -> Value {
        Value::Text(s.to_owned())
    }

    fn minimal() -> BTreeMap<Value, Value> {
        let pcrs = BTreeMap::from([(Value::Integer(0), Value::Bytes(vec![1; 48]))]);
        BTreeMap::from([
            (text("module_id"), text("i-x-enc1")),
            (text("digest"), text("SHA384")),
            (text("timestamp"), Value::Integer(1)),
            (text("pcrs"), Value::Map(pcrs)),
            (text("certificate"), Value::Bytes(vec![0x30])),
            (
                text("cabundle"),
                Value::Array(vec![Value::Bytes(vec![0x30])]),
            ),
        ])
    }

    fn parse_map(map: BTreeMap<Value, Value>) -> Result<NitroDocument, StructureError> {
        parse(&serde_cbor::to_vec(&Value::Map(map)).unwrap())
    }

    #[test]
    fn optional_fields_may_be_absent() {
        let doc = parse_map(minimal()).unwrap();
        assert!(doc.public_key.is_none() && doc.user_data.is_none() && doc.nonce.is_none());
    }

    #[test]
    fn each_field_is_checked() {
        type Expected = fn(&StructureError) -> bool;
        let cases: Vec<(&str, Value, Expected)> = vec![
            ("module_id", text(""), |e| {
                matches!(
                    e,
                    StructureError::FieldSize {
                        field: "module_id",
                        ..
                    }
                )
            }),
            ("module_id", Value::Bytes(b"x".to_vec()), |e| {
                matches!(e, StructureError::WrongType("module_id"))
            }),
            ("digest", text("SHA256"), |e| {
                matches!(e, StructureError::Digest(_))
            }),
            ("timestamp", Value::Integer(-1), |e| {
                matches!(e, StructureError::WrongType("timestamp"))
            }),
            ("pcrs", Value::Map(BTreeMap::new()), |e| {
                matches!(e, StructureError::FieldSize { field: "pcrs", .. })
            }),
            (
                "pcrs",
                Value::Map(BTreeMap::from([(
                    Value::Integer(32),
                    Value::Bytes(vec![0; 48]),
                )])),
                |e| matches!(e, StructureError::PcrIndex(32)),
            ),
            (
                "pcrs",
                Value::Map(BTreeMap::from([(
                    Value::Integer(0),
                    Value::Bytes(vec![0; 47]),
                )])),
                |e| matches!(e, StructureError::PcrLength { index: 0, len: 47 }),
            ),
            (
                "pcrs",
                Value::Map(BTreeMap::from([(
                    Value::Integer(1),
                    Value::Bytes(vec![0; 48]),
                )])),
                |e| matches!(e, StructureError::Pcr0Missing),
            ),
            ("certificate", Value::Bytes(vec![0; 1025]), |e| {
                matches!(
                    e,
                    StructureError::FieldSize {
                        field: "certificate",
                        ..
                    }
                )
            }),
            ("cabundle", Value::Array(vec![]), |e| {
                matches!(
                    e,
                    StructureError::FieldSize {
                        field: "cabundle",
                        ..
                    }
                )
            }),
            ("cabundle", Value::Array(vec![text("x")]), |e| {
                matches!(e, StructureError::WrongType("cabundle"))
            }),
            ("nonce", Value::Bytes(vec![0; 1025]), |e| {
                matches!(e, StructureError::FieldSize { field: "nonce", .. })
            }),
            ("user_data", text("x"), |e| {
                matches!(e, StructureError::WrongType("user_data"))
            }),
        ];
        for (field, value, expected) in cases {
            let mut map = minimal();
            map.insert(text(field), value);
            let error = parse_map(map).unwrap_err();
            assert!(expected(&error), "{field}: {error:?}");
        }
        for field in [
            "module_id",
            "digest",
            "timestamp",
            "pcrs",
            "certificate",
            "cabundle",
        ] {
            let mut map = minimal();
            map.remove(&text(field));
            assert!(matches!(
                parse_map(map),
                Err(StructureError::MissingField(f)) if f == field
            ));
        }
    }

    #[test]
    fn accepts_1024_byte_user_fields() {
        let mut map = minimal();
        for field in ["public_key", "user_data", "nonce"] {
            map.insert(text(field), Value::Bytes(vec![1; MAX_USER_FIELD_LEN]));
        }
        let doc = parse_map(map).unwrap();
        assert_eq!(doc.nonce.map(|n| n.len()), Some(MAX_USER_FIELD_LEN));
    }
}
