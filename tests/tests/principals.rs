//! Principals end to end: `ekms principal` / `ekms access-key` against `ekms dev`, the new
//! principal's SigV4 credentials through the AWS SDK, default deny, a key-policy statement
//! with an encryption-context condition, `Ekms.*` administration denied without an identity
//! policy granting it, deleted access keys refused, and principals sealed across a restart.

use std::path::Path;

use aws_sdk_kms::primitives::Blob;
use ekms_tests::{
    assert_code, create_key, ekms_cli_as, unique, CliCredentials, CliOutput, DevOptions, Ekms,
    SignWith, ACCOUNT,
};
use serde_json::{json, Value};

/// Whose credentials an `ekms` command signs with.
enum As<'a> {
    /// The `[ekms]` profile of `DATA_DIR/credentials` (the dev principal), as the AWS CLI
    /// would find it.
    Profile(&'a Ekms),
    /// `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY`.
    Keys(&'a str, &'a str),
}

/// Runs `ekms ARGS --endpoint ENDPOINT` with only the credentials `who` says in its
/// environment.
fn ekms_as(ekms: &Ekms, who: &As<'_>, args: &[&str]) -> CliOutput {
    let data_dir;
    let who = match who {
        As::Profile(dev) => {
            data_dir = dev.data_dir();
            CliCredentials::Profile(&data_dir)
        }
        As::Keys(id, secret) => CliCredentials::Keys(id, secret),
    };
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--endpoint", &ekms.endpoint]);
    ekms_cli_as(all, who)
}

/// `ekms principal create NAME [--policy FILE]` as the dev principal: (AccessKeyId, secret).
fn create_principal(ekms: &Ekms, name: &str, policy: Option<&Path>) -> (String, String) {
    let mut args = vec!["principal", "create", name];
    let policy_arg;
    if let Some(p) = policy {
        policy_arg = p.display().to_string();
        args.extend(["--policy", policy_arg.as_str()]);
    }
    let out = ekms_as(ekms, &As::Profile(ekms), &args).ok().json();
    assert_eq!(
        out["Arn"],
        format!("arn:aws:iam::{ACCOUNT}:user/{name}"),
        "{out}"
    );
    let id = out["AccessKeyId"].as_str().expect("AccessKeyId").to_owned();
    let secret = out["SecretAccessKey"]
        .as_str()
        .expect("SecretAccessKey")
        .to_owned();
    assert!(id.starts_with("AKIA") && id.len() == 20, "{id}");
    assert_eq!(secret.len(), 40);
    assert_eq!(out.as_object().map(serde_json::Map::len), Some(3), "{out}");
    (id, secret)
}

/// The principals `ekms principal list` shows, by name: their access key ids.
fn listed(ekms: &Ekms) -> std::collections::BTreeMap<String, Vec<String>> {
    let out = ekms_as(ekms, &As::Profile(ekms), &["principal", "list"])
        .ok()
        .json();
    out["Principals"]
        .as_array()
        .expect("Principals")
        .iter()
        .map(|p| {
            let ids = p["AccessKeyIds"]
                .as_array()
                .expect("AccessKeyIds")
                .iter()
                .map(|v| v.as_str().expect("an id").to_owned())
                .collect();
            (p["UserName"].as_str().expect("UserName").to_owned(), ids)
        })
        .collect()
}

fn failed_with(out: &CliOutput, code: &str) {
    assert!(!out.success(), "expected {code}, got success: {out:?}");
    assert!(out.stderr.contains(code), "expected {code}: {out:?}");
}

async fn encrypt(
    client: &aws_sdk_kms::Client,
    key_id: &str,
    purpose: Option<&str>,
) -> Result<
    aws_sdk_kms::operation::encrypt::EncryptOutput,
    aws_sdk_kms::error::SdkError<aws_sdk_kms::operation::encrypt::EncryptError>,
> {
    let mut request = client
        .encrypt()
        .key_id(key_id)
        .plaintext(Blob::new(b"principals marker".to_vec()));
    if let Some(p) = purpose {
        request = request.encryption_context("purpose", p);
    }
    request.send().await
}

#[tokio::test]
async fn a_second_principal_is_denied_by_default_and_allowed_by_a_key_policy_for_its_context() {
    let ekms = Ekms::shared();
    let dev = ekms.client().await;
    let bob = unique("bob");
    let bob_arn = format!("arn:aws:iam::{ACCOUNT}:user/{bob}");
    let (id, secret) = create_principal(ekms, &bob, None);
    let as_bob = ekms.client_with(&id, &secret, None);

    // Authenticated (not UnrecognizedClient), but no identity policy: denied.
    assert_code!(as_bob.create_key().send().await, "AccessDeniedException");
    let key = create_key(&dev).await;
    assert_code!(
        encrypt(&as_bob, &key, Some("x")).await,
        "AccessDeniedException"
    );

    // The lockout check: a policy that would leave dev unable to change it is refused.
    let bob_statement = json!({
        "Sid": "bob encrypts for purpose x",
        "Effect": "Allow",
        "Principal": {"AWS": bob_arn},
        "Action": "kms:Encrypt",
        "Resource": "*",
        "Condition": {"StringEquals": {"kms:EncryptionContext:purpose": "x"}},
    });
    let locked_out = json!({"Version": "2012-10-17", "Statement": [bob_statement]});
    assert_code!(
        dev.put_key_policy()
            .key_id(&key)
            .policy(locked_out.to_string())
            .send()
            .await,
        "MalformedPolicyDocumentException"
    );
    let policy = json!({
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "Enable IAM User Permissions",
                "Effect": "Allow",
                "Principal": {"AWS": format!("arn:aws:iam::{ACCOUNT}:root")},
                "Action": "kms:*",
                "Resource": "*",
            },
            bob_statement,
        ],
    });
    dev.put_key_policy()
        .key_id(&key)
        .policy(policy.to_string())
        .send()
        .await
        .expect("PutKeyPolicy keeping dev an administrator");

    encrypt(&as_bob, &key, Some("x"))
        .await
        .expect("bob encrypts with purpose=x");
    assert_code!(
        encrypt(&as_bob, &key, Some("y")).await,
        "AccessDeniedException"
    );
    assert_code!(encrypt(&as_bob, &key, None).await, "AccessDeniedException");
    assert_code!(
        as_bob.describe_key().key_id(&key).send().await,
        "AccessDeniedException"
    );

    // Principal administration needs an identity policy granting ekms:* actions.
    let response = ekms
        .raw(
            Some("Ekms.CreatePrincipal"),
            json!({"UserName": unique("eve")}).to_string().as_bytes(),
            SignWith::Custom {
                access_key_id: id.clone(),
                secret: secret.clone(),
                time: std::time::SystemTime::now(),
            },
        )
        .await;
    assert_eq!(
        (response.status, response.error_code().as_deref()),
        (400, Some("AccessDeniedException")),
        "{:?}",
        String::from_utf8_lossy(&response.body)
    );
    assert!(String::from_utf8_lossy(&response.body).contains("ekms:CreatePrincipal"));
    failed_with(
        &ekms_as(ekms, &As::Keys(&id, &secret), &["principal", "list"]),
        "AccessDeniedException",
    );
    // And they must be signed: an unsigned Ekms.ListPrincipals is refused.
    let unsigned = ekms
        .raw(Some("Ekms.ListPrincipals"), b"{}", SignWith::Unsigned)
        .await;
    assert_eq!(
        unsigned.error_code().as_deref(),
        Some("MissingAuthenticationToken")
    );

    let principals = listed(ekms);
    assert_eq!(principals.get(&bob), Some(&vec![id.clone()]));
    assert!(principals.contains_key("dev"));

    // A second access key; a third is over IAM's limit.
    let second = ekms_as(ekms, &As::Profile(ekms), &["access-key", "create", &bob])
        .ok()
        .json();
    let (id2, secret2) = (
        second["AccessKeyId"]
            .as_str()
            .expect("AccessKeyId")
            .to_owned(),
        second["SecretAccessKey"]
            .as_str()
            .expect("SecretAccessKey")
            .to_owned(),
    );
    failed_with(
        &ekms_as(ekms, &As::Profile(ekms), &["access-key", "create", &bob]),
        "LimitExceededException",
    );

    // Deleting the first key: requests signed with it are unrecognized; the second works.
    ekms_as(
        ekms,
        &As::Profile(ekms),
        &["access-key", "delete", &bob, &id],
    )
    .ok();
    assert_code!(
        encrypt(&as_bob, &key, Some("x")).await,
        "UnrecognizedClientException"
    );
    let as_bob2 = ekms.client_with(&id2, &secret2, None);
    encrypt(&as_bob2, &key, Some("x"))
        .await
        .expect("bob's second key still works");

    // An identity policy, validated; then it lets bob do what it says.
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("bad.json");
    std::fs::write(
        &bad,
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"kms:GenerateRandom","Resource":"*","Condition":{"StringEqualz":{"aws:PrincipalArn":"x"}}}]}"#,
    )
    .expect("writing a policy");
    let out = ekms_as(
        ekms,
        &As::Profile(ekms),
        &[
            "principal",
            "put-policy",
            &bob,
            "--policy",
            &bad.display().to_string(),
        ],
    );
    failed_with(&out, "MalformedPolicyDocumentException");
    assert!(out.stderr.contains("StringEqualz"), "{out:?}");
    assert_code!(
        as_bob2.generate_random().number_of_bytes(8).send().await,
        "AccessDeniedException"
    );
    let good = dir.path().join("good.json");
    std::fs::write(
        &good,
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"kms:GenerateRandom","Resource":"*"}]}"#,
    )
    .expect("writing a policy");
    ekms_as(
        ekms,
        &As::Profile(ekms),
        &[
            "principal",
            "put-policy",
            &bob,
            "--policy",
            &good.display().to_string(),
        ],
    )
    .ok();
    as_bob2
        .generate_random()
        .number_of_bytes(8)
        .send()
        .await
        .expect("GenerateRandom under bob's identity policy");

    // Nobody deletes themselves; deleting bob ends his second key too.
    failed_with(
        &ekms_as(ekms, &As::Profile(ekms), &["principal", "delete", "dev"]),
        "ValidationException",
    );
    ekms_as(ekms, &As::Profile(ekms), &["principal", "delete", &bob]).ok();
    assert_code!(
        encrypt(&as_bob2, &key, Some("x")).await,
        "UnrecognizedClientException"
    );
    failed_with(
        &ekms_as(ekms, &As::Profile(ekms), &["principal", "delete", &bob]),
        "NotFoundException",
    );
    assert!(!listed(ekms).contains_key(&bob));

    // The audit log names the operations and the user, and never a secret access key.
    let audit = std::fs::read_to_string(ekms.data_dir().join("store").join("audit.jsonl"))
        .expect("reading audit.jsonl");
    assert!(!audit.contains(&secret) && !audit.contains(&secret2));
    let records: Vec<Value> = audit
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["type"] == "record")
        .map(|l| l["record"].clone())
        .collect();
    let created = records
        .iter()
        .find(|r| r["eventName"] == "CreatePrincipal" && r["requestParameters"]["userName"] == bob)
        .expect("an audit record of CreatePrincipal naming bob");
    assert_eq!(created["responseElements"]["AccessKeyId"], id);
    assert_eq!(created["userIdentity"]["userName"], "dev");
    assert!(records.iter().any(|r| r["eventName"] == "CreatePrincipal"
        && r["errorCode"] == "AccessDeniedException"
        && r["userIdentity"]["accessKeyId"] == id));
    assert!(records.iter().any(
        |r| r["eventName"] == "DeleteAccessKey" && r["requestParameters"]["accessKeyId"] == id
    ));
}

#[test]
fn principals_and_their_keys_survive_a_restart() {
    let work = tempfile::Builder::new()
        .prefix("ekms-principals-")
        .tempdir()
        .expect("tempdir");
    let data = work.path().join("data");
    let options = DevOptions {
        data_dir: Some(data.clone()),
        ..DevOptions::default()
    };
    let policy = work.path().join("policy.json");
    std::fs::write(
        &policy,
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"kms:GenerateRandom","Resource":"*"}]}"#,
    )
    .expect("writing a policy");
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");

    let (carol_keys, dave_key) = {
        let ekms = Ekms::start_with(&options);
        let carol = create_principal(&ekms, "carol", Some(&policy));
        let second = ekms_as(
            &ekms,
            &As::Profile(&ekms),
            &["access-key", "create", "carol"],
        )
        .ok()
        .json();
        let carol2 = (
            second["AccessKeyId"].as_str().expect("id").to_owned(),
            second["SecretAccessKey"]
                .as_str()
                .expect("secret")
                .to_owned(),
        );
        let dave = create_principal(&ekms, "dave", None);
        ekms_as(&ekms, &As::Profile(&ekms), &["principal", "delete", "dave"]).ok();
        (vec![carol, carol2], dave)
    };

    let ekms = Ekms::start_with(&options);
    let principals = listed(&ekms);
    assert_eq!(
        principals.get("carol"),
        Some(&carol_keys.iter().map(|(id, _)| id.clone()).collect()),
        "{principals:?}"
    );
    assert!(!principals.contains_key("dave"), "{principals:?}");
    runtime.block_on(async {
        for (id, secret) in &carol_keys {
            // Both keys, and the identity policy, came back from the sealed store.
            ekms.client_with(id, secret, None)
                .generate_random()
                .number_of_bytes(8)
                .send()
                .await
                .expect("carol's key works after the restart");
        }
        assert_code!(
            ekms.client_with(&dave_key.0, &dave_key.1, None)
                .generate_random()
                .number_of_bytes(8)
                .send()
                .await,
            "UnrecognizedClientException"
        );
    });
    drop(ekms);
}
