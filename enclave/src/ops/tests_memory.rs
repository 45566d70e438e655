//! The memory budget: growing operations refuse with LimitExceededException before the keys
//! and aliases would take more than the budget, while shrinking ones keep working, so a full
//! enclave never dies of memory and can be cleaned up.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use serde_json::{json, Value};

use super::test_support::{dev_caller, env, run};
use super::State;
use crate::config::Config;
use crate::env::FixedClock;
use crate::error::KmsError;

fn code(result: &Result<Value, KmsError>) -> &'static str {
    match result {
        Ok(_) => "Ok",
        Err(e) => e.aws_code(),
    }
}

/// A key policy of about 28 KiB (the default statement, then allow statements with long Sids).
fn large_policy() -> String {
    let mut statements = vec![json!({
        "Effect": "Allow",
        "Principal": {"AWS": "arn:aws:iam::111122223333:root"},
        "Action": "kms:*",
        "Resource": "*",
    })];
    for i in 0..14 {
        statements.push(json!({
            "Sid": format!("s{i}{}", "a".repeat(1990)),
            "Effect": "Allow",
            "Principal": {"AWS": "arn:aws:iam::111122223333:root"},
            "Action": "kms:DescribeKey",
            "Resource": "*",
        }));
    }
    json!({"Version": "2012-10-17", "Statement": statements}).to_string()
}

#[test]
fn growth_stops_at_the_budget_and_shrinking_still_works() {
    let state = State::default();
    let config = Config {
        memory_budget: 4 * 1024 * 1024,
        ..Config::default()
    };
    let env = env(Arc::new(FixedClock::new(1_700_000_000_000)));
    let caller = dev_caller();
    let policy = large_policy();
    let tags: Vec<Value> = (0..50)
        .map(|i| json!({"TagKey": format!("{i:0>120}"), "TagValue": "v".repeat(250)}))
        .collect();
    let mut made = Vec::new();
    let refusal = loop {
        let (result, _) = run(
            &state,
            &config,
            &env,
            &caller,
            "CreateKey",
            &json!({"Policy": policy, "Description": "d".repeat(8000), "Tags": tags}),
        );
        match result {
            Ok(out) => made.push(out["KeyMetadata"]["KeyId"].as_str().unwrap().to_owned()),
            Err(e) => break e,
        }
        assert!(made.len() < 1000, "no refusal after {} keys", made.len());
        assert!(state.read().bytes() <= config.memory_budget);
    };
    assert_eq!(refusal.aws_code(), "LimitExceededException", "{refusal:?}");
    assert!(made.len() > 10, "{}", made.len());
    assert!(state.read().bytes() <= config.memory_budget);
    let key = &made[0];
    // Every growing operation refuses now...
    for (op, body) in [
        (
            "PutKeyPolicy",
            json!({"KeyId": key, "PolicyName": "default", "Policy": policy}),
        ),
        (
            "TagResource",
            json!({"KeyId": key, "Tags": [{"TagKey": "x", "TagValue": "y"}]}),
        ),
        (
            "UpdateKeyDescription",
            json!({"KeyId": key, "Description": "x"}),
        ),
        (
            "CreateAlias",
            json!({"AliasName": "alias/full", "TargetKeyId": key}),
        ),
        (
            "CreateGrant",
            json!({"KeyId": key, "GranteePrincipal": "arn:aws:iam::111122223333:user/bob", "Operations": ["Decrypt"]}),
        ),
        ("RotateKeyOnDemand", json!({"KeyId": key})),
    ] {
        let (result, touched) = run(&state, &config, &env, &caller, op, &body);
        assert_eq!(code(&result), "LimitExceededException", "{op}: {result:?}");
        assert!(touched.is_empty(), "{op}");
    }
    // ...and every shrinking or neutral one works.
    for (op, body) in [
        (
            "UntagResource",
            json!({"KeyId": key, "TagKeys": [format!("{:0>120}", 0)]}),
        ),
        ("DisableKey", json!({"KeyId": key})),
        ("Encrypt", json!({"KeyId": made[1], "Plaintext": "aGk="})),
        (
            "ScheduleKeyDeletion",
            json!({"KeyId": made[2], "PendingWindowInDays": 7}),
        ),
    ] {
        let (result, _) = run(&state, &config, &env, &caller, op, &body);
        assert!(result.is_ok(), "{op}: {result:?}");
    }
    // Destroyed keys give their room back.
    let before = state.read().bytes();
    let (destroyed, _) = state.write().sweep(1_700_000_000_000 + 8 * 86_400_000);
    assert_eq!(destroyed.len(), 1);
    assert!(state.read().bytes() < before);
}
