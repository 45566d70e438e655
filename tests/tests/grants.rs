//! Grants end to end, through the AWS SDK against `ekms dev`, with two principals: `dev`
//! (allowed everything) and `bob`, made with `ekms principal create bob --policy FILE`, whose
//! identity policy allows only `kms:DescribeKey`. Bob is denied by default, allowed by a grant
//! only for its operations and constraints, and denied again once the grant is retired or
//! revoked. Grants live in the keys' sealed records: they, and their removal, survive a
//! restart, and a grant token issued before a restart still names its grant after it.

use std::path::Path;

use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{DataKeySpec, GrantConstraints, GrantOperation};
use ekms_tests::{
    assert_code, create_key, ekms_cli_as, error_code, key_arn, CliCredentials, DevOptions, Ekms,
    ACCOUNT,
};

fn bob_arn() -> String {
    format!("arn:aws:iam::{ACCOUNT}:user/bob")
}

/// `ekms principal create NAME --policy FILE` as the dev principal (its `[ekms]` profile):
/// the new principal's (AccessKeyId, SecretAccessKey).
fn create_principal(ekms: &Ekms, name: &str, policy: &Path) -> (String, String) {
    let policy = policy.to_str().expect("a UTF-8 path");
    let out = ekms_cli_as(
        [
            "principal",
            "create",
            name,
            "--policy",
            policy,
            "--endpoint",
            &ekms.endpoint,
        ],
        CliCredentials::Profile(&ekms.data_dir()),
    )
    .ok()
    .json();
    assert_eq!(
        out["Arn"],
        format!("arn:aws:iam::{ACCOUNT}:user/{name}"),
        "{out}"
    );
    (
        out["AccessKeyId"].as_str().expect("AccessKeyId").to_owned(),
        out["SecretAccessKey"]
            .as_str()
            .expect("SecretAccessKey")
            .to_owned(),
    )
}

/// Encrypt with `purpose` as the encryption context; the error code on failure.
async fn encrypt(client: &aws_sdk_kms::Client, key: &str, purpose: &str) -> Result<Blob, String> {
    client
        .encrypt()
        .key_id(key)
        .plaintext(Blob::new("bob's data"))
        .encryption_context("purpose", purpose)
        .send()
        .await
        .map(|out| out.ciphertext_blob().expect("a ciphertext").clone())
        .map_err(error_code)
}

async fn grant_ids(dev: &aws_sdk_kms::Client, key: &str) -> Vec<String> {
    dev.list_grants()
        .key_id(key)
        .send()
        .await
        .expect("ListGrants")
        .grants()
        .iter()
        .map(|g| g.grant_id().expect("a grant id").to_owned())
        .collect()
}

#[test]
fn a_second_principal_is_allowed_only_by_live_grants_which_are_sealed() {
    let work = tempfile::Builder::new()
        .prefix("ekms-grants-")
        .tempdir()
        .expect("tempdir");
    let options = DevOptions {
        data_dir: Some(work.path().join("data")),
        ..DevOptions::default()
    };
    let policy = work.path().join("bob-policy.json");
    std::fs::write(
        &policy,
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"kms:DescribeKey","Resource":"*"}]}"#,
    )
    .expect("writing bob's identity policy");
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");

    // ---- First run: grants made and used at once.
    let ekms = Ekms::start_with(&options);
    let (bob_id, bob_secret) = create_principal(&ekms, "bob", &policy);
    let (key, constrained, token, unconstrained) = runtime.block_on(async {
        let dev = ekms.client().await;
        let bob = ekms.client_with(&bob_id, &bob_secret, None);
        let key = create_key(&dev).await;

        // Denied by default; his identity policy lets him describe the key, nothing more.
        assert_eq!(
            encrypt(&bob, &key, "x").await.expect_err("denied"),
            "AccessDeniedException"
        );
        bob.describe_key()
            .key_id(&key)
            .send()
            .await
            .expect("bob's identity policy allows DescribeKey");

        // A grant: Encrypt and Decrypt, only with purpose=x; bob may retire it.
        let grant = dev
            .create_grant()
            .key_id(&key)
            .grantee_principal(bob_arn())
            .retiring_principal(bob_arn())
            .operations(GrantOperation::Encrypt)
            .operations(GrantOperation::Decrypt)
            .constraints(
                GrantConstraints::builder()
                    .encryption_context_subset("purpose", "x")
                    .build(),
            )
            .name("bob-x")
            .send()
            .await
            .expect("CreateGrant");
        let grant_id = grant.grant_id().expect("a grant id").to_owned();
        let token = grant.grant_token().expect("a grant token").to_owned();
        assert_eq!(grant_id.len(), 64);

        // It works at once, with or without the token, for its operations and context only.
        let blob = bob
            .encrypt()
            .key_id(&key)
            .plaintext(Blob::new("bob's data"))
            .encryption_context("purpose", "x")
            .grant_tokens(&token)
            .send()
            .await
            .expect("the grant allows Encrypt with purpose=x")
            .ciphertext_blob()
            .expect("a ciphertext")
            .clone();
        let plain = bob
            .decrypt()
            .ciphertext_blob(blob)
            .encryption_context("purpose", "x")
            .send()
            .await
            .expect("the grant allows Decrypt with purpose=x");
        assert_eq!(
            plain.plaintext().expect("a plaintext").as_ref(),
            b"bob's data"
        );
        assert_eq!(
            encrypt(&bob, &key, "y").await.expect_err("denied"),
            "AccessDeniedException"
        );
        assert_code!(
            bob.generate_data_key()
                .key_id(&key)
                .key_spec(DataKeySpec::Aes256)
                .encryption_context("purpose", "x")
                .send()
                .await,
            "AccessDeniedException"
        );
        assert_code!(
            bob.encrypt()
                .key_id(&key)
                .plaintext(Blob::new("x"))
                .encryption_context("purpose", "x")
                .grant_tokens("not-a-grant-token")
                .send()
                .await,
            "InvalidGrantTokenException"
        );

        // Listed for the key and for its retiring principal; bob may list neither.
        let listed = dev
            .list_grants()
            .key_id(&key)
            .send()
            .await
            .expect("ListGrants");
        let entries = listed.grants();
        assert_eq!(entries.len(), 1);
        let entry = &entries[0];
        assert_eq!(entry.grant_id(), Some(grant_id.as_str()));
        assert_eq!(entry.key_id(), Some(key_arn(&key).as_str()));
        assert_eq!(entry.name(), Some("bob-x"));
        assert_eq!(entry.grantee_principal(), Some(bob_arn().as_str()));
        assert_eq!(entry.retiring_principal(), Some(bob_arn().as_str()));
        assert_eq!(
            entry.issuing_account(),
            Some(format!("arn:aws:iam::{ACCOUNT}:root").as_str())
        );
        assert_eq!(
            entry.operations(),
            [GrantOperation::Encrypt, GrantOperation::Decrypt]
        );
        assert_eq!(
            entry
                .constraints()
                .and_then(|c| c.encryption_context_subset())
                .and_then(|m| m.get("purpose"))
                .map(String::as_str),
            Some("x")
        );
        assert!(entry.creation_date().is_some());
        let retirable = dev
            .list_retirable_grants()
            .retiring_principal(bob_arn())
            .send()
            .await
            .expect("ListRetirableGrants");
        assert!(retirable
            .grants()
            .iter()
            .any(|g| g.grant_id() == Some(grant_id.as_str())));
        assert_code!(
            bob.list_grants().key_id(&key).send().await,
            "AccessDeniedException"
        );
        assert_code!(
            bob.list_retirable_grants()
                .retiring_principal(bob_arn())
                .send()
                .await,
            "AccessDeniedException"
        );

        // A second grant, without constraints, for Encrypt only.
        let second = dev
            .create_grant()
            .key_id(&key)
            .grantee_principal(bob_arn())
            .operations(GrantOperation::Encrypt)
            .send()
            .await
            .expect("CreateGrant");
        let second_id = second.grant_id().expect("a grant id").to_owned();
        encrypt(&bob, &key, "anything")
            .await
            .expect("an unconstrained grant allows any context");
        (key, grant_id, token, second_id)
    });
    drop(ekms);

    // ---- Second run: the grants came back from the sealed store; revoke and retire.
    let ekms = Ekms::start_with(&options);
    runtime.block_on(async {
        let dev = ekms.client().await;
        let bob = ekms.client_with(&bob_id, &bob_secret, None);
        let mut ids = grant_ids(&dev, &key).await;
        ids.sort();
        let mut want = vec![constrained.clone(), unconstrained.clone()];
        want.sort();
        assert_eq!(ids, want);
        encrypt(&bob, &key, "anything")
            .await
            .expect("the unconstrained grant still works");

        // Revoked by dev (bob may not revoke): only the constrained grant is left.
        assert_code!(
            bob.revoke_grant()
                .key_id(&key)
                .grant_id(&unconstrained)
                .send()
                .await,
            "AccessDeniedException"
        );
        dev.revoke_grant()
            .key_id(&key)
            .grant_id(&unconstrained)
            .send()
            .await
            .expect("RevokeGrant");
        assert_eq!(
            encrypt(&bob, &key, "anything").await.expect_err("denied"),
            "AccessDeniedException"
        );
        encrypt(&bob, &key, "x")
            .await
            .expect("the constrained grant still works");
        assert_code!(
            dev.revoke_grant()
                .key_id(&key)
                .grant_id(&unconstrained)
                .send()
                .await,
            "NotFoundException"
        );
        assert_code!(
            dev.revoke_grant()
                .key_id(&key)
                .grant_id("not-hex")
                .send()
                .await,
            "InvalidGrantIdException"
        );

        // Bob retires the other by the token issued before the restart: denied again.
        bob.retire_grant()
            .grant_token(&token)
            .send()
            .await
            .expect("the retiring principal retires by token");
        assert_eq!(
            encrypt(&bob, &key, "x").await.expect_err("denied"),
            "AccessDeniedException"
        );
        // Gone: bob, whom no policy allows RetireGrant, learns nothing more of it; the key's
        // owner hears that it does not exist.
        assert_code!(
            bob.retire_grant().grant_token(&token).send().await,
            "AccessDeniedException"
        );
        assert_code!(
            dev.retire_grant().grant_token(&token).send().await,
            "NotFoundException"
        );
        assert_code!(
            bob.retire_grant().grant_token("bogus").send().await,
            "InvalidGrantTokenException"
        );
        assert!(grant_ids(&dev, &key).await.is_empty());
    });
    drop(ekms);

    // ---- Third run: the removals were sealed too.
    let ekms = Ekms::start_with(&options);
    runtime.block_on(async {
        let dev = ekms.client().await;
        let bob = ekms.client_with(&bob_id, &bob_secret, None);
        assert!(grant_ids(&dev, &key).await.is_empty());
        for purpose in ["x", "anything"] {
            assert_eq!(
                encrypt(&bob, &key, purpose).await.expect_err("denied"),
                "AccessDeniedException"
            );
        }
    });
    drop(ekms);
}
