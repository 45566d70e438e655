//! The audit log's hash and signature definitions, shared by the enclave that writes
//! `audit.jsonl` and `ekms audit verify` that checks it: one definition for both sides.
//!
//! - record hash = SHA-256(`"ekms/v1/audit"` ‖ prev ‖ seq (u64 big-endian) ‖ canonical JSON
//!   of the record);
//! - a checkpoint signs (ECDSA P-384 / SHA-384) `"ekms/v1/audit-checkpoint"` ‖ seq ‖ hash.
//!
//! Canonical JSON: object keys sorted by their UTF-8 bytes, no whitespace, serde_json's number
//! and string forms.

use serde_json::Value;
use sha2::{Digest as _, Sha256};

/// Domain label of record hashes.
pub const RECORD_LABEL: &[u8] = b"ekms/v1/audit";
/// Domain label of checkpoint signatures.
pub const CHECKPOINT_LABEL: &[u8] = b"ekms/v1/audit-checkpoint";
/// `user_data` of the attestation document that binds a boot's checkpoint key.
pub const ATTESTATION_USER_DATA: &[u8] = b"ekms/v1/audit-key";
/// Domain separation of a signed head answer (`Ekms.AuditHead`): distinct from checkpoints, so
/// a checkpoint line from the log can never be replayed as a fresh head.
pub const HEAD_LABEL: &[u8] = b"ekms/v1/audit-head";

/// The canonical JSON bytes of a value (keys sorted, compact).
pub fn canonical_json(value: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(1024);
    write_canonical_json(value, &mut out);
    out
}

/// Appends the canonical JSON bytes of `value` to `out`.
pub fn write_canonical_json(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            // serde_json's map is already ordered unless its `preserve_order` feature is on.
            if !entries.is_sorted_by(|a, b| a.0 <= b.0) {
                entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            }
            out.push(b'{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_scalar(k, out);
                out.push(b':');
                write_canonical_json(v, out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical_json(v, out);
            }
            out.push(b']');
        }
        other => write_scalar(other, out),
    }
}

/// serde_json's compact form of a string, number, boolean or null.
fn write_scalar<T: serde::Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) {
    // Writing these to a Vec cannot fail: no I/O, and strings, numbers, booleans and null
    // always serialize.
    let _ = serde_json::to_writer(&mut *out, value);
}

/// The hash of record `seq` chained after `prev`.
pub fn record_hash(prev: &[u8; 32], seq: u64, record: &Value) -> [u8; 32] {
    record_hash_of_canonical(prev, seq, &canonical_json(record))
}

/// [`record_hash`] of a record already in canonical JSON.
pub fn record_hash_of_canonical(prev: &[u8; 32], seq: u64, canonical: &[u8]) -> [u8; 32] {
    let mut ctx = Sha256::new();
    ctx.update(RECORD_LABEL);
    ctx.update(prev);
    ctx.update(seq.to_be_bytes());
    ctx.update(canonical);
    ctx.finalize().into()
}

/// The bytes a checkpoint signature covers.
pub fn checkpoint_message(seq: u64, hash: &[u8; 32]) -> Vec<u8> {
    [CHECKPOINT_LABEL, &seq.to_be_bytes()[..], &hash[..]].concat()
}

/// The bytes an `Ekms.AuditHead` signature covers: the label, the caller's nonce (length
/// prefixed), the head's seq and hash. Fresh per call, so an old answer cannot be replayed.
pub fn head_message(nonce: &[u8], seq: u64, hash: &[u8; 32]) -> Vec<u8> {
    [
        HEAD_LABEL,
        &(nonce.len() as u64).to_be_bytes()[..],
        nonce,
        &seq.to_be_bytes()[..],
        &hash[..],
    ]
    .concat()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn canonical_json_sorts_keys_and_is_compact() {
        let v: Value =
            serde_json::from_str(r#"{"b": [1, {"d": 2, "c": "x"}], "a": null, "é": "\n"}"#)
                .unwrap();
        assert_eq!(
            canonical_json(&v),
            "{\"a\":null,\"b\":[1,{\"c\":\"x\",\"d\":2}],\"é\":\"\\n\"}".as_bytes()
        );
    }

    /// The writer gives what a sort-then-`to_string` definition gives, escapes and numbers
    /// included.
    #[test]
    fn canonical_json_matches_serde_json_forms() {
        let v: Value = serde_json::from_str(
            r#"{"z": {"y": [true, false, null, -1, 1.5, 1e300, 18446744073709551615]},
                "\u0001\"\\": "tab\there \u2028 é 😀", "A": [], "a": {}, "": ""}"#,
        )
        .unwrap();
        fn reference(v: &Value) -> String {
            match v {
                Value::Object(map) => {
                    let mut keys: Vec<&String> = map.keys().collect();
                    keys.sort();
                    let items: Vec<String> = keys
                        .iter()
                        .map(|k| format!("{}:{}", Value::String((*k).clone()), reference(&map[*k])))
                        .collect();
                    format!("{{{}}}", items.join(","))
                }
                Value::Array(items) => {
                    let items: Vec<String> = items.iter().map(reference).collect();
                    format!("[{}]", items.join(","))
                }
                other => other.to_string(),
            }
        }
        assert_eq!(
            String::from_utf8(canonical_json(&v)).unwrap(),
            reference(&v)
        );
    }

    #[test]
    fn record_hash_is_sha256_of_label_prev_seq_json() {
        let record = serde_json::json!({"x": 1});
        let mut input = b"ekms/v1/audit".to_vec();
        input.extend_from_slice(&[7; 32]);
        input.extend_from_slice(&3u64.to_be_bytes());
        input.extend_from_slice(br#"{"x":1}"#);
        let expected: [u8; 32] = Sha256::digest(&input).into();
        assert_eq!(record_hash(&[7; 32], 3, &record), expected);
    }

    #[test]
    fn checkpoint_message_layout() {
        let m = checkpoint_message(0x0102, &[9; 32]);
        assert_eq!(&m[..24], b"ekms/v1/audit-checkpoint");
        assert_eq!(&m[24..32], &[0, 0, 0, 0, 0, 0, 1, 2]);
        assert_eq!(&m[32..], &[9; 32]);
    }
}
