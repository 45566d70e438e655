//! The COSE_Sign1 envelope (RFC 9052 §4.2) with an ES384 signature (RFC 9053 §2.1).

use p384::ecdsa::signature::{Signer, Verifier};
use p384::ecdsa::{Signature, SigningKey, VerifyingKey};
use serde_cbor::Value;

use super::error::StructureError;

/// COSE algorithm identifier of ES384, ECDSA with SHA-384 (RFC 9053 §2.1, table 1).
pub(crate) const ALG_ES384: i128 = -35;
/// Header label `alg` (RFC 9052 §3.1, table 2).
const HEADER_ALG: i128 = 1;
/// Initial byte of CBOR tag 18, COSE_Sign1 (RFC 9052 §2, table 1).
const TAG_COSE_SIGN1: u8 = 0xd2;
/// Raw r‖s length of a P-384 ECDSA signature (RFC 9053 §2.1: "the signature is the
/// concatenation of r and s", each 48 bytes for P-384).
pub(crate) const ES384_SIGNATURE_LEN: usize = 96;

/// A decoded COSE_Sign1 whose algorithm is ES384. The signature is not verified yet.
#[derive(Debug)]
pub(crate) struct CoseSign1 {
    protected: Vec<u8>,
    pub(crate) payload: Vec<u8>,
    signature: Vec<u8>,
}

/// Decodes `COSE_Sign1 = [protected: bstr, unprotected: map, payload: bstr / nil,
/// signature: bstr]` (RFC 9052 §4.2), tagged (18) or untagged (as the Nitro NSM emits it).
pub(crate) fn decode(doc: &[u8]) -> Result<CoseSign1, StructureError> {
    let body = match doc.split_first() {
        Some((&TAG_COSE_SIGN1, body)) => body,
        // Major type 6 (0xc0..=0xdb): a tag other than 18, or 18 in a longer encoding.
        Some((&first, _)) if (0xc0..=0xdb).contains(&first) => {
            return Err(StructureError::UnexpectedTag(first));
        }
        _ => doc,
    };
    // serde_cbor rejects trailing bytes after the item.
    let value: Value = serde_cbor::from_slice(body).map_err(StructureError::Cbor)?;
    let Value::Array(items) = value else {
        return Err(StructureError::NotCoseSign1);
    };
    let Ok([protected, unprotected, payload, signature]) = <[Value; 4]>::try_from(items) else {
        return Err(StructureError::NotCoseSign1);
    };

    let Value::Bytes(protected) = protected else {
        return Err(StructureError::ProtectedHeader);
    };
    check_protected_header(&protected)?;
    if !matches!(unprotected, Value::Map(_)) {
        return Err(StructureError::UnprotectedHeader);
    }
    let Value::Bytes(payload) = payload else {
        return Err(StructureError::Payload);
    };
    let Value::Bytes(signature) = signature else {
        return Err(StructureError::SignatureLength(0));
    };
    if signature.len() != ES384_SIGNATURE_LEN {
        return Err(StructureError::SignatureLength(signature.len()));
    }
    Ok(CoseSign1 {
        protected,
        payload,
        signature,
    })
}

/// RFC 9052 §3: the protected header is a bstr wrapping a serialized map (or empty); its
/// `alg` must be ES384.
fn check_protected_header(protected: &[u8]) -> Result<(), StructureError> {
    if protected.is_empty() {
        return Err(StructureError::Algorithm(None));
    }
    let header: Value = serde_cbor::from_slice(protected).map_err(StructureError::Cbor)?;
    let Value::Map(header) = header else {
        return Err(StructureError::ProtectedHeader);
    };
    match header.get(&Value::Integer(HEADER_ALG)) {
        Some(Value::Integer(ALG_ES384)) => Ok(()),
        Some(Value::Integer(other)) => Err(StructureError::Algorithm(Some(*other))),
        _ => Err(StructureError::Algorithm(None)),
    }
}

/// `Sig_structure = ["Signature1", body_protected, external_aad, payload]` with an empty
/// external_aad (RFC 9052 §4.4), serialized as the bytes to be signed.
fn sig_structure(protected: &[u8], payload: &[u8]) -> Result<Vec<u8>, StructureError> {
    let to_be_signed = Value::Array(vec![
        Value::Text("Signature1".to_owned()),
        Value::Bytes(protected.to_vec()),
        Value::Bytes(Vec::new()),
        Value::Bytes(payload.to_vec()),
    ]);
    serde_cbor::to_vec(&to_be_signed).map_err(StructureError::Cbor)
}

impl CoseSign1 {
    /// Verifies the ES384 signature (SHA-384 over the Sig_structure, raw r‖s; RFC 9053
    /// §2.1) with `key`. `Ok(false)` does not exist: failure is an error.
    pub(crate) fn verify(&self, key: &VerifyingKey) -> Result<(), SignatureInvalid> {
        let signature = Signature::from_slice(&self.signature).map_err(|_| SignatureInvalid)?;
        let to_be_signed =
            sig_structure(&self.protected, &self.payload).map_err(|_| SignatureInvalid)?;
        key.verify(&to_be_signed, &signature)
            .map_err(|_| SignatureInvalid)
    }
}

/// The COSE signature did not verify (deliberately without detail).
#[derive(Debug)]
pub(crate) struct SignatureInvalid;

/// The protected header the Nitro NSM emits: the map `{1: -35}` (bytes `a1 01 38 22`).
fn protected_es384() -> Result<Vec<u8>, StructureError> {
    let header = Value::Map([(Value::Integer(HEADER_ALG), Value::Integer(ALG_ES384))].into());
    serde_cbor::to_vec(&header).map_err(StructureError::Cbor)
}

/// Signs `payload` as an untagged COSE_Sign1 with ES384, the shape the Nitro NSM emits
/// (used by the insecure mock attester).
pub(crate) fn sign(payload: Vec<u8>, key: &SigningKey) -> Result<Vec<u8>, StructureError> {
    let protected = protected_es384()?;
    let to_be_signed = sig_structure(&protected, &payload)?;
    // RFC 6979 deterministic ECDSA, SHA-384; `to_bytes` is the raw r‖s form.
    let signature: Signature = key.sign(&to_be_signed);
    let envelope = Value::Array(vec![
        Value::Bytes(protected),
        Value::Map(std::collections::BTreeMap::new()),
        Value::Bytes(payload),
        Value::Bytes(signature.to_bytes().to_vec()),
    ]);
    serde_cbor::to_vec(&envelope).map_err(StructureError::Cbor)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn protected_header_is_the_nitro_bytes() {
        assert_eq!(protected_es384().unwrap(), [0xa1, 0x01, 0x38, 0x22]);
    }

    #[test]
    fn refuses_other_tags_and_shapes() {
        assert!(matches!(
            decode(&[0xd1, 0x80]),
            Err(StructureError::UnexpectedTag(0xd1))
        ));
        assert!(matches!(decode(&[0x80]), Err(StructureError::NotCoseSign1)));
        assert!(matches!(decode(&[0xa0]), Err(StructureError::NotCoseSign1)));
        assert!(matches!(decode(&[]), Err(StructureError::Cbor(_))));
        // [h'a10126', {}, h'', h''] : ES256 (-7) instead of ES384.
        let es256 = [0x84, 0x43, 0xa1, 0x01, 0x26, 0xa0, 0x40, 0x40];
        assert!(matches!(
            decode(&es256),
            Err(StructureError::Algorithm(Some(-7)))
        ));
        // [h'a1013822', null, h'', h'']: the unprotected header must be a map.
        let null_header = [0x84, 0x44, 0xa1, 0x01, 0x38, 0x22, 0xf6, 0x40, 0x40];
        assert!(matches!(
            decode(&null_header),
            Err(StructureError::UnprotectedHeader)
        ));
        // [h'a1013822', {}, nil, h'']: detached payloads are refused.
        let detached = [0x84, 0x44, 0xa1, 0x01, 0x38, 0x22, 0xa0, 0xf6, 0x40];
        assert!(matches!(decode(&detached), Err(StructureError::Payload)));
        // [h'a1013822', {}, h'', h'00']: a 1-byte signature.
        let short = [0x84, 0x44, 0xa1, 0x01, 0x38, 0x22, 0xa0, 0x40, 0x41, 0x00];
        assert!(matches!(
            decode(&short),
            Err(StructureError::SignatureLength(1))
        ));
    }
}
