//! The memory budget: growing operations refuse with LimitExceededException before the keys
//! and aliases would take more than the budget, while shrinking ones keep working, so a full
//! enclave never dies of memory and can be cleaned up.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use serde_json::{json, Value};

use crate::kms::ops::test_support::{dev_caller, env, run};
use crate::kms::state::State;
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
    let (destroyed, _, _) = state.write().sweep(1_700_000_000_000 + 8 * 86_400_000);
    assert_eq!(destroyed.len(), 1);
    assert!(state.read().bytes() < before);
}

#[test]
fn keys_and_aliases_count_against_their_creators_quotas() {
    let state = State::default();
    let mut config = Config::default();
    config.quotas.set("keys-per-principal=3").unwrap();
    config.quotas.set("aliases-per-principal=2").unwrap();
    let clock = Arc::new(FixedClock::new(1_700_000_000_000));
    let env = env(clock.clone());
    let dev = dev_caller();
    let other = crate::kms::state::Caller {
        arn: "arn:aws:iam::111122223333:user/other".to_owned(),
        access_key_id: "AKIAOTHERTEST".to_owned(),
        identity_policy: Some(crate::kms::authz::allow_all().unwrap()),
    };
    let create =
        |caller: &crate::kms::state::Caller| run(&state, &config, &env, caller, "CreateKey", &json!({})).0;
    let mut keys = Vec::new();
    for _ in 0..3 {
        keys.push(
            create(&dev).unwrap()["KeyMetadata"]["KeyId"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let refused = create(&dev);
    assert_eq!(code(&refused), "LimitExceededException");
    assert!(refused.unwrap_err().to_string().contains("user/dev"));
    // Another principal has its own quota.
    assert_eq!(code(&create(&other)), "Ok");

    let alias = |caller: &crate::kms::state::Caller, op: &str, name: &str, key: &str| {
        run(
            &state,
            &config,
            &env,
            caller,
            op,
            &json!({"AliasName": name, "TargetKeyId": key}),
        )
        .0
    };
    assert_eq!(code(&alias(&dev, "CreateAlias", "alias/a", &keys[0])), "Ok");
    assert_eq!(code(&alias(&dev, "CreateAlias", "alias/b", &keys[0])), "Ok");
    assert_eq!(
        code(&alias(&dev, "CreateAlias", "alias/c", &keys[0])),
        "LimitExceededException"
    );
    // Re-pointing an alias is not a new one.
    assert_eq!(code(&alias(&dev, "UpdateAlias", "alias/a", &keys[1])), "Ok");
    assert_eq!(
        code(&alias(&other, "CreateAlias", "alias/c", &keys[0])),
        "Ok"
    );
    // Deleting frees the quota.
    let deleted = run(
        &state,
        &config,
        &env,
        &dev,
        "DeleteAlias",
        &json!({"AliasName": "alias/b"}),
    )
    .0;
    assert_eq!(code(&deleted), "Ok");
    assert_eq!(code(&alias(&dev, "CreateAlias", "alias/d", &keys[0])), "Ok");

    // A key destroyed no longer counts; one pending deletion still does, as in AWS.
    let schedule = json!({"KeyId": keys[2], "PendingWindowInDays": 7});
    assert_eq!(
        code(
            &run(
                &state,
                &config,
                &env,
                &dev,
                "ScheduleKeyDeletion",
                &schedule
            )
            .0
        ),
        "Ok"
    );
    assert_eq!(code(&create(&dev)), "LimitExceededException");
    let (destroyed, _, _) = state.write().sweep(1_700_000_000_000 + 8 * 86_400_000);
    assert_eq!(destroyed.len(), 1);
    assert_eq!(code(&create(&dev)), "Ok");
    assert_eq!(state.read().keys_created_by(&dev.arn), 3);
}

#[test]
fn quota_settings_are_checked() {
    let mut quotas = crate::config::Quotas::default();
    assert_eq!(quotas.grants_per_grantee, 500);
    quotas.set("grants-per-key=7").unwrap();
    assert_eq!(quotas.grants_per_key, 7);
    for bad in [
        "grants-per-key",
        "grants-per-key=0",
        "grants-per-key=x",
        "keys=3",
    ] {
        assert!(quotas.set(bad).is_err(), "{bad}");
    }
    assert_eq!(quotas.grants_per_key, 7);
}
