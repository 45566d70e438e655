//! Key policies (`policy::parse`) and identity policies (`policy::parse_identity`): fuzzed
//! text, or documents generated from the IAM policy grammar (elements, effects, principals,
//! actions, resources, every condition operator and key, set qualifiers, `IfExists`), each
//! evaluated against a request context made from the same input (principal, action,
//! resource, time, encryption context, algorithm, grant operations, recipient PCRs), through
//! `authorize` and `lockout_check`; and `replace_principal` on the text.
//!
//! Checks: no panic; an explicit deny in either policy makes `authorize` deny; and a Deny
//! cannot be dropped: the same document with a statement denying everything appended (when it
//! still fits the bounds) parses and denies every request.

#![no_main]

use std::collections::BTreeMap;

use arbitrary::Unstructured;
use ekms_enclave::access::policy::{self, Decision, RequestContext};
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Map, Value};

const ACCOUNT: &str = "111122223333";
const ARNS: &[&str] = &[
    "arn:aws:iam::111122223333:user/dev",
    "arn:aws:iam::111122223333:user/alice",
    "arn:aws:iam::111122223333:root",
    "arn:aws:iam::444455556666:user/eve",
    "arn:aws:iam::444455556666:root",
    "111122223333",
    "AIDAABCDEFGHIJKLMNOP",
    "*",
    "arn:aws:iam::111122223333:user/*",
];
const ACTIONS: &[&str] = &[
    "kms:*", "*", "kms:Encrypt", "kms:Decrypt", "kms:PutKeyPolicy", "kms:Create*", "kms:?ncrypt",
    "kms:ReEncrypt*", "kms:CreateGrant", "ekms:CreatePrincipal", "kms:encrypt", "iam:*",
];
const RESOURCES: &[&str] = &[
    "*",
    "arn:aws:kms:us-east-1:111122223333:key/*",
    "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
    "arn:aws:kms:*:111122223333:alias/*",
    "arn:aws:iam::111122223333:user/*",
];
const OPERATORS: &[&str] = &[
    "StringEquals", "StringNotEquals", "StringEqualsIgnoreCase", "StringNotEqualsIgnoreCase",
    "StringLike", "StringNotLike", "NumericEquals", "NumericNotEquals", "NumericLessThan",
    "NumericLessThanEquals", "NumericGreaterThan", "NumericGreaterThanEquals", "DateEquals",
    "DateNotEquals", "DateLessThan", "DateLessThanEquals", "DateGreaterThan",
    "DateGreaterThanEquals", "Bool", "Null", "ArnEquals", "ArnLike", "BinaryEquals",
    "IpAddress",
];
const KEYS: &[&str] = &[
    "kms:EncryptionContext:k", "kms:EncryptionContext:K", "kms:EncryptionContext:",
    "kms:EncryptionContextKeys", "kms:EncryptionAlgorithm", "kms:GrantOperations",
    "kms:GrantIsForAWSResource", "kms:CallerAccount", "kms:RecipientAttestation:PCR0",
    "kms:RecipientAttestation:PCR31", "kms:RecipientAttestation:PCR32",
    "kms:RecipientAttestation:ImageSha384", "aws:CurrentTime", "aws:PrincipalArn",
    "aws:SourceIp", "kms:ViaService",
];
const VALUES: &[&str] = &[
    "v", "V", "*", "?", "", "k", "SYMMETRIC_DEFAULT", "Decrypt", "true", "false", "1",
    "2023-11-14T22:13:20Z", "2023-11-14", "1700000000", "-1", "1e3", "111122223333",
    "arn:aws:iam::111122223333:user/dev", "${aws:username}", "00", "ab",
];

fn pick(u: &mut Unstructured<'_>, options: &[&str]) -> String {
    if !u.ratio(7, 8).unwrap_or(true) {
        u.arbitrary::<String>().unwrap_or_default()
    } else {
        (*u.choose(options).unwrap_or(&"")).to_owned()
    }
}

fn one_or_list(u: &mut Unstructured<'_>, options: &[&str]) -> Value {
    match u.int_in_range(0..=3u8).unwrap_or(0) {
        0 => Value::Array(vec![]),
        1 | 2 => Value::String(pick(u, options)),
        _ => Value::Array(
            (0..u.int_in_range(1..=3u8).unwrap_or(1))
                .map(|_| Value::String(pick(u, options)))
                .collect(),
        ),
    }
}

fn condition_value(u: &mut Unstructured<'_>) -> Value {
    match u.int_in_range(0..=5u8).unwrap_or(0) {
        0 => json!(u.arbitrary::<i64>().unwrap_or(0)),
        1 => json!(u.arbitrary::<bool>().unwrap_or(false)),
        2 => json!(null),
        3 => json!({}),
        _ => one_or_list(u, VALUES),
    }
}

fn statement(u: &mut Unstructured<'_>) -> Value {
    let mut s = Map::new();
    let elements = [
        "Sid", "Effect", "Principal", "NotPrincipal", "Action", "NotAction", "Resource",
        "NotResource", "Condition",
    ];
    for element in elements {
        // Effect and one of each pair are usually there; anything may be left out.
        let keep = match element {
            "Effect" | "Action" | "Resource" | "Principal" => u.ratio(7, 8).unwrap_or(true),
            _ => !u.ratio(4, 5).unwrap_or(true),
        };
        if !keep {
            continue;
        }
        let value = match element {
            "Sid" => Value::String(pick(u, &["s1", "", "sid with space"])),
            "Effect" => Value::String(pick(u, &["Allow", "Deny", "allow"])),
            "Principal" | "NotPrincipal" => match u.int_in_range(0..=3u8).unwrap_or(0) {
                0 => json!("*"),
                1 => json!({ "AWS": one_or_list(u, ARNS) }),
                2 => json!({ pick(u, &["Service", "Federated", "CanonicalUser", "AWS"]): one_or_list(u, ARNS) }),
                _ => json!({}),
            },
            "Action" | "NotAction" => one_or_list(u, ACTIONS),
            "Resource" | "NotResource" => one_or_list(u, RESOURCES),
            _ => {
                let mut block = Map::new();
                for _ in 0..u.int_in_range(0..=3u8).unwrap_or(0) {
                    let mut op = pick(u, OPERATORS);
                    if !u.ratio(3, 4).unwrap_or(true) {
                        op.push_str("IfExists");
                    }
                    if !u.ratio(3, 4).unwrap_or(true) {
                        op = format!("{}:{op}", pick(u, &["ForAllValues", "ForAnyValue"]));
                    }
                    let mut keys = Map::new();
                    for _ in 0..u.int_in_range(0..=2u8).unwrap_or(0) {
                        keys.insert(pick(u, KEYS), condition_value(u));
                    }
                    block.insert(op, Value::Object(keys));
                }
                Value::Object(block)
            }
        };
        s.insert(element.to_owned(), value);
    }
    Value::Object(s)
}

fn document(u: &mut Unstructured<'_>) -> String {
    if !u.ratio(3, 4).unwrap_or(true) {
        return u.arbitrary::<String>().unwrap_or_default();
    }
    let mut doc = Map::new();
    if u.ratio(7, 8).unwrap_or(true) {
        doc.insert("Version".to_owned(), json!(pick(u, &["2012-10-17", "2008-10-17"])));
    }
    if !u.ratio(3, 4).unwrap_or(true) {
        doc.insert("Id".to_owned(), json!("key-policy"));
    }
    let statements: Vec<Value> = (0..u.int_in_range(0..=4u8).unwrap_or(1))
        .map(|_| statement(u))
        .collect();
    let statements = if statements.len() == 1 && !u.ratio(2, 3).unwrap_or(true) {
        statements.into_iter().next().unwrap_or_default()
    } else {
        Value::Array(statements)
    };
    doc.insert("Statement".to_owned(), statements);
    Value::Object(doc).to_string()
}

/// The document with a statement denying everything (to everyone) appended, if it is a JSON
/// object with a statement list.
fn with_deny_all(text: &str, key_policy: bool) -> Option<String> {
    let mut doc: Value = serde_json::from_str(text).ok()?;
    let deny = if key_policy {
        json!({"Effect": "Deny", "Principal": "*", "Action": "*", "Resource": "*"})
    } else {
        json!({"Effect": "Deny", "Action": "*", "Resource": "*"})
    };
    match doc.get_mut("Statement")? {
        Value::Array(list) if list.len() < policy::MAX_STATEMENTS => list.push(deny),
        Value::Array(_) => return None,
        one => {
            let first = one.take();
            *one = Value::Array(vec![first, deny]);
        }
    }
    let out = doc.to_string();
    (out.len() <= policy::MAX_POLICY_BYTES).then_some(out)
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let key_text = document(&mut u);
    let identity_text = document(&mut u);

    let principal = pick(&mut u, ARNS);
    let action = pick(&mut u, ACTIONS);
    let resource = pick(&mut u, RESOURCES);
    let now: i64 = 1_700_000_000_000 + i64::from(u.arbitrary::<i32>().unwrap_or(0)) * 1000;
    let context: BTreeMap<String, String> = (0..u.int_in_range(0..=3u8).unwrap_or(0))
        .map(|_| (pick(&mut u, &["k", "K", "deny", ""]), pick(&mut u, VALUES)))
        .collect();
    let algorithm = pick(&mut u, &["SYMMETRIC_DEFAULT", "RSAES_OAEP_SHA_256"]);
    let grant_ops: Vec<String> = (0..u.int_in_range(0..=2u8).unwrap_or(0))
        .map(|_| pick(&mut u, &["Decrypt", "Encrypt", "CreateGrant"]))
        .collect();
    let pcrs: BTreeMap<u8, Vec<u8>> = (0..u.int_in_range(0..=2u8).unwrap_or(0))
        .map(|_| {
            (
                u.int_in_range(0..=33u8).unwrap_or(0),
                u.arbitrary::<Vec<u8>>().unwrap_or_default(),
            )
        })
        .collect();
    let mut request = RequestContext::new(&principal, ACCOUNT, &action, &resource, now);
    if u.arbitrary().unwrap_or(false) {
        request.encryption_context = Some(&context);
        request.encryption_algorithm = Some(&algorithm);
        request.grant_operations = Some(&grant_ops);
        request.grant_is_for_aws_resource = u.arbitrary().unwrap_or(None);
        request.recipient_pcrs = Some(&pcrs);
        request.recipient_image_sha384 = pcrs.get(&0).map(Vec::as_slice);
    }

    let key = policy::parse(&key_text, ACCOUNT);
    let identity = policy::parse_identity(&identity_text);
    let _ = policy::replace_principal(&key_text, &principal, "AIDAABCDEFGHIJKLMNOP");

    if let Ok(key) = &key {
        let evaluation = key.evaluate(&request);
        let identity = identity.as_ref().ok();
        let identity_decision = identity.map(|p| p.evaluate(&request));
        let decision = policy::authorize(key, identity, &request);
        if evaluation.decision == Decision::ExplicitDeny
            || identity_decision == Some(Decision::ExplicitDeny)
        {
            assert_eq!(decision, Decision::ExplicitDeny, "an explicit deny did not win");
        }
        let _ = policy::lockout_check(key, identity, &principal, &resource, ACCOUNT, now);
        if let Some(denying) = with_deny_all(&key_text, true) {
            let denying = policy::parse(&denying, ACCOUNT)
                .unwrap_or_else(|e| panic!("a parsed policy with a Deny appended: {e}"));
            assert_eq!(
                denying.evaluate(&request).decision,
                Decision::ExplicitDeny,
                "a key policy denying everything did not deny"
            );
            assert_eq!(policy::authorize(&denying, identity, &request), Decision::ExplicitDeny);
        }
    }
    if identity.is_ok() {
        if let Some(denying) = with_deny_all(&identity_text, false) {
            let denying = policy::parse_identity(&denying)
                .unwrap_or_else(|e| panic!("a parsed identity policy with a Deny appended: {e}"));
            assert_eq!(
                denying.evaluate(&request),
                Decision::ExplicitDeny,
                "an identity policy denying everything did not deny"
            );
        }
    }
});
