//! What the operation tests share: an environment on a fixed clock with a mock attester, the
//! allow-all `dev` caller, and running one request through `dispatch::handle`.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use serde_json::Value;

use super::{Caller, Ctx, State};
use crate::config::Config;
use crate::kms::dispatch;
use crate::env::{Env, FixedClock, OsEntropy};
use crate::error::KmsError;
use crate::kms::state::Touched;

/// The OS random source, a mock attester, and `clock`.
#[allow(clippy::disallowed_methods)] // a mock CA made at the real time
pub fn env(clock: Arc<FixedClock>) -> Env {
    Env {
        clock,
        entropy: Arc::new(OsEntropy::default()),
        attester: Arc::new(crate::custody::attest::insecure::MockAttester(
            ekms_shared::attestation::insecure::MockAttester::new(
                ekms_shared::attestation::insecure::MockCa::generate(std::time::SystemTime::now())
                    .unwrap(),
                ekms_shared::attestation::insecure::pcrs_from_binary(b"ekms test enclave"),
            )
            .unwrap(),
        )),
    }
}

/// `arn:aws:iam::111122223333:user/dev`, whose identity policy allows everything.
pub fn dev_caller() -> Caller {
    Caller {
        arn: "arn:aws:iam::111122223333:user/dev".to_owned(),
        access_key_id: "AKIATEST".to_owned(),
        identity_policy: Some(crate::kms::authz::allow_all().unwrap()),
    }
}

/// Runs `TrentService.<op>` with `body` as `caller`; the answer and the records it touched.
pub fn run(
    state: &State,
    config: &Config,
    env: &Env,
    caller: &Caller,
    op: &str,
    body: &Value,
) -> (Result<Value, KmsError>, Vec<Touched>) {
    let kept = crate::kms::authz::Kept::default();
    let ctx = Ctx::new(state, config, env, caller, &kept);
    let result = dispatch::parse_target(Some(&format!("TrentService.{op}"))).and_then(|op| {
        dispatch::handle(&ctx, op, body.to_string().as_bytes())
            .map(|out| serde_json::from_slice::<Value>(&out).unwrap())
    });
    // A key noted for the audit record is the answer's own KeyId, in every operation test.
    if let (Ok(answer), Some(noted)) = (&result, kept.take_answer_key()) {
        assert_eq!(
            answer.get("KeyId").and_then(Value::as_str),
            Some(noted.as_str()),
            "{op}: the key noted for the audit record is not the answer's KeyId"
        );
    }
    (result, kept.take_touched())
}
