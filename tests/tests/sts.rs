//! STS GetCallerIdentity on the KMS endpoint, through the AWS SDK for Rust's STS client (the
//! query protocol, SigV4 for the service `sts`, XML answers), as tools that learn their
//! account and ARN from STS before they start call it.
//!
//! - The answer names the signing principal: its ARN, unique id (as `Ekms.ListPrincipals`
//!   lists them) and the account.
//! - Failures come in STS's XML error shape with STS's codes: an unknown access key is
//!   `InvalidClientTokenId`, a wrong secret `SignatureDoesNotMatch`, an action this endpoint
//!   does not serve `InvalidAction`; KMS on the same endpoint is unaffected.
//! - Each call is in the audit log as CloudTrail records it, from `sts.amazonaws.com`.

use std::time::Duration;

use aws_credential_types::Credentials;
use aws_sdk_sts::config::{BehaviorVersion, Region};
use aws_sdk_sts::error::ProvideErrorMetadata as _;
use ekms_tests::{create_key, Ekms, SignWith, ACCOUNT, REGION};
use serde_json::Value;

fn sts_client(ekms: &Ekms, access_key_id: &str, secret: &str, region: &str) -> aws_sdk_sts::Client {
    let config = aws_sdk_sts::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(region.to_owned()))
        .credentials_provider(Credentials::new(
            access_key_id,
            secret,
            None,
            None,
            "ekms-tests",
        ))
        .endpoint_url(&ekms.endpoint)
        .http_client(aws_smithy_http_client::Builder::new().build_http())
        .timeout_config(
            aws_sdk_sts::config::timeout::TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(5))
                .operation_timeout(ekms_tests::SDK_TIMEOUT)
                .build(),
        )
        .retry_config(aws_sdk_sts::config::retry::RetryConfig::disabled())
        .build();
    aws_sdk_sts::Client::from_conf(config)
}

/// The dev principal as `Ekms.ListPrincipals` lists it.
async fn dev_principal(ekms: &Ekms) -> Value {
    let listed = ekms
        .raw(Some("Ekms.ListPrincipals"), b"{}", SignWith::Dev)
        .await
        .json();
    listed["Principals"]
        .as_array()
        .expect("Principals")
        .iter()
        .find(|p| p["UserName"] == "dev")
        .cloned()
        .expect("the dev principal")
}

#[tokio::test]
async fn get_caller_identity_names_the_signing_principal() {
    let ekms = Ekms::shared();
    let sts = sts_client(ekms, &ekms.access_key_id, &ekms.secret, REGION);
    let out = sts.get_caller_identity().send().await.unwrap_or_else(|e| {
        panic!(
            "GetCallerIdentity: {}",
            aws_sdk_sts::error::DisplayErrorContext(e)
        )
    });
    let dev = dev_principal(ekms).await;
    assert_eq!(
        out.arn(),
        Some(format!("arn:aws:iam::{ACCOUNT}:user/dev").as_str())
    );
    assert_eq!(out.arn(), dev["Arn"].as_str());
    assert_eq!(out.user_id(), dev["UserId"].as_str());
    assert!(out.user_id().is_some_and(|id| id.starts_with("AIDA")));
    assert_eq!(out.account(), Some(ACCOUNT));

    // KMS on the same endpoint is unaffected.
    let kms = ekms.client().await;
    create_key(&kms).await;

    // Recorded as CloudTrail records it (the answer was held until its record was durable).
    let request_id = {
        use aws_sdk_sts::operation::RequestId as _;
        out.request_id().expect("x-amzn-RequestId").to_owned()
    };
    let audit = std::fs::read_to_string(ekms.data_dir().join("store").join("audit.jsonl"))
        .expect("reading audit.jsonl");
    let record = audit
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["type"] == "record")
        .map(|l| l["record"].clone())
        .find(|r| r["requestID"] == request_id.as_str())
        .expect("an audit record of the GetCallerIdentity call");
    assert_eq!(record["eventName"], "GetCallerIdentity");
    assert_eq!(record["eventSource"], "sts.amazonaws.com");
    assert_eq!(record["readOnly"], true);
    assert_eq!(record["userIdentity"]["userName"], "dev");
}

#[tokio::test]
async fn failures_are_sts_errors() {
    let ekms = Ekms::shared();

    let unknown = sts_client(ekms, "AKIAUNKNOWNKEY000001", "not-a-secret-at-all", REGION);
    let e = unknown
        .get_caller_identity()
        .send()
        .await
        .expect_err("an unknown access key")
        .into_service_error();
    assert_eq!(e.code(), Some("InvalidClientTokenId"));
    assert_eq!(
        e.message(),
        Some("The security token included in the request is invalid.")
    );

    let wrong_secret = sts_client(ekms, &ekms.access_key_id, "the-wrong-secret-key", REGION);
    let e = wrong_secret
        .get_caller_identity()
        .send()
        .await
        .expect_err("a wrong secret")
        .into_service_error();
    assert_eq!(e.code(), Some("SignatureDoesNotMatch"));
    assert!(
        e.message()
            .is_some_and(|m| m.starts_with("The request signature we calculated does not match")),
        "{:?}",
        e.message()
    );

    let sts = sts_client(ekms, &ekms.access_key_id, &ekms.secret, REGION);
    let e = sts
        .assume_role()
        .role_arn(format!("arn:aws:iam::{ACCOUNT}:role/any"))
        .role_session_name("s")
        .send()
        .await
        .expect_err("AssumeRole is not served")
        .into_service_error();
    assert_eq!(e.code(), Some("InvalidAction"));
    assert_eq!(
        e.message(),
        Some("Could not find operation AssumeRole for version 2011-06-15")
    );
}
