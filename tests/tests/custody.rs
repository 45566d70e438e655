//! Custody end to end: `ekms init` M-of-N, restart → sealed, `ekms unseal` share by share
//! (M−1 not enough; repeated, foreign and wrongly opened shares refused and not counted),
//! attestation pinning on the custodian's side, and `ekms dev`'s automatic unseal.
//!
//! Every server is a real `ekms dev` (mock enclave + parent) on a data dir the test owns,
//! so that it can be stopped (SIGTERM) and started again on the same sealed store.

use std::path::{Path, PathBuf};

use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::KeyState;
use ekms_tests::{
    assert_code, create_key, custodian_keygen, ekms_cli, ekms_status, read_credentials, CliOutput,
    DevOptions, Ekms,
};
use serde_json::Value;

const SEALED: &str = "KMSInvalidStateException";

fn manual(dir: &Path) -> DevOptions {
    DevOptions {
        manual_unseal: true,
        data_dir: Some(dir.to_path_buf()),
        ..DevOptions::default()
    }
}

fn pcrs(data_dir: &Path) -> PathBuf {
    data_dir.join("pcrs.json")
}

fn root(data_dir: &Path) -> PathBuf {
    data_dir.join("mock-ca").join("root.pem")
}

/// `ekms init` against `dev`, pinning its own PCRs and mock root.
fn init(dev: &Ekms, custodians: &[&Path], threshold: u8, out: &Path) -> CliOutput {
    init_pinned(dev, custodians, threshold, &pcrs(&dev.data_dir()), out)
}

fn init_pinned(
    dev: &Ekms,
    custodians: &[&Path],
    threshold: u8,
    expect_pcrs: &Path,
    out: &Path,
) -> CliOutput {
    let mut args: Vec<std::ffi::OsString> = vec![
        "init".into(),
        "--endpoint".into(),
        dev.endpoint.clone().into(),
    ];
    for c in custodians {
        args.push("--custodian".into());
        args.push(c.into());
    }
    args.extend([
        "--threshold".into(),
        threshold.to_string().into(),
        "--expect-pcrs".into(),
        expect_pcrs.into(),
        "--root".into(),
        root(&dev.data_dir()).into(),
        "--out".into(),
        out.into(),
    ]);
    ekms_cli(args)
}

/// `ekms unseal` against `dev`; `root: None` leaves out `--root` (the AWS Nitro root).
fn unseal(
    dev: &Ekms,
    share: &Path,
    key: &Path,
    expect_pcrs: &Path,
    root: Option<&Path>,
) -> CliOutput {
    let mut args: Vec<std::ffi::OsString> = vec![
        "unseal".into(),
        "--endpoint".into(),
        dev.endpoint.clone().into(),
        "--share".into(),
        share.into(),
        "--key".into(),
        key.into(),
        "--expect-pcrs".into(),
        expect_pcrs.into(),
    ];
    if let Some(root) = root {
        args.push("--root".into());
        args.push(root.into());
    }
    ekms_cli(args)
}

/// `ekms unseal` pinned to `dev`'s own PCRs and mock root.
fn unseal_ok_pins(dev: &Ekms, share: &Path, key: &Path) -> CliOutput {
    let data = dev.data_dir();
    unseal(dev, share, key, &pcrs(&data), Some(&root(&data)))
}

fn state(status: &Value) -> &str {
    status["State"].as_str().unwrap_or("<no State>")
}

fn shares_held(status: &Value) -> u64 {
    status["SharesHeld"]
        .as_u64()
        .unwrap_or_else(|| panic!("no SharesHeld in {status}"))
}

#[track_caller]
fn assert_refused(out: &CliOutput, why: &str) {
    assert!(
        !out.success(),
        "ekms unseal should have failed ({why}): {out:?}"
    );
}

/// Asserts that KMS operations answer KMSInvalidStateException.
async fn assert_sealed_ops(client: &aws_sdk_kms::Client, ciphertext: &[u8]) {
    assert_code!(client.list_keys().send().await, SEALED);
    assert_code!(
        client
            .decrypt()
            .ciphertext_blob(Blob::new(ciphertext))
            .send()
            .await,
        SEALED
    );
    assert_code!(client.create_key().send().await, SEALED);
}

fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("ekms-custody-")
        .tempdir()
        .expect("a temporary dir")
}

struct Custodian {
    public: PathBuf,
    secret: PathBuf,
}

fn custodians(work: &Path, n: usize) -> Vec<Custodian> {
    (1..=n)
        .map(|i| {
            let (public, secret) = custodian_keygen(&work.join(format!("custodian-{i}")));
            Custodian { public, secret }
        })
        .collect()
}

/// Everything the first life of a deployment made, to find again after unseal.
struct Made {
    plain: Vec<u8>,
    enabled: String,
    described: String,
    disabled: String,
    pending: String,
    pending_deletion: Option<aws_sdk_kms::primitives::DateTime>,
    alias_plain: String,
    alias_moved: String,
    ciphertexts: Vec<(String, Vec<u8>)>,
}

const CONTEXT: (&str, &str) = ("purpose", "custody-test");

async fn make_state(client: &aws_sdk_kms::Client) -> Made {
    let enabled = create_key(client).await;
    let described = create_key(client).await;
    let disabled = create_key(client).await;
    let pending = create_key(client).await;
    let plain = b"the custody test's plaintext".to_vec();
    let mut ciphertexts = Vec::new();
    for key in [&enabled, &described, &disabled] {
        let out = client
            .encrypt()
            .key_id(key)
            .plaintext(Blob::new(plain.clone()))
            .encryption_context(CONTEXT.0, CONTEXT.1)
            .send()
            .await
            .expect("Encrypt");
        ciphertexts.push((
            key.clone(),
            out.ciphertext_blob()
                .expect("a ciphertext")
                .as_ref()
                .to_vec(),
        ));
    }
    client
        .update_key_description()
        .key_id(&described)
        .description("described after creation")
        .send()
        .await
        .expect("UpdateKeyDescription");
    client
        .tag_resource()
        .key_id(&enabled)
        .tags(
            aws_sdk_kms::types::Tag::builder()
                .tag_key("team")
                .tag_value("custody")
                .build()
                .expect("a tag"),
        )
        .send()
        .await
        .expect("TagResource");
    client
        .disable_key()
        .key_id(&disabled)
        .send()
        .await
        .expect("DisableKey");
    let scheduled = client
        .schedule_key_deletion()
        .key_id(&pending)
        .pending_window_in_days(7)
        .send()
        .await
        .expect("ScheduleKeyDeletion");
    let alias_plain = ekms_tests::unique("alias/custody-plain");
    let alias_moved = ekms_tests::unique("alias/custody-moved");
    for (alias, key) in [(&alias_plain, &enabled), (&alias_moved, &enabled)] {
        client
            .create_alias()
            .alias_name(alias)
            .target_key_id(key)
            .send()
            .await
            .expect("CreateAlias");
    }
    client
        .update_alias()
        .alias_name(&alias_moved)
        .target_key_id(&described)
        .send()
        .await
        .expect("UpdateAlias");
    Made {
        plain,
        enabled,
        described,
        disabled,
        pending,
        pending_deletion: scheduled.deletion_date().copied(),
        alias_plain,
        alias_moved,
        ciphertexts,
    }
}

/// Every key, alias and setting of `made` is back, and the old ciphertexts decrypt.
async fn assert_state_back(client: &aws_sdk_kms::Client, made: &Made) {
    let describe = |id: String| async move {
        client
            .describe_key()
            .key_id(&id)
            .send()
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "DescribeKey {id} after unseal: {}",
                    aws_sdk_kms::error::DisplayErrorContext(e)
                )
            })
            .key_metadata()
            .cloned()
            .expect("KeyMetadata")
    };
    let m = describe(made.enabled.clone()).await;
    assert_eq!(m.key_state(), Some(&KeyState::Enabled), "{m:?}");
    let m = describe(made.described.clone()).await;
    assert_eq!(m.description(), Some("described after creation"), "{m:?}");
    let m = describe(made.disabled.clone()).await;
    assert_eq!(m.key_state(), Some(&KeyState::Disabled), "{m:?}");
    let m = describe(made.pending.clone()).await;
    assert_eq!(m.key_state(), Some(&KeyState::PendingDeletion), "{m:?}");
    assert_eq!(m.deletion_date(), made.pending_deletion.as_ref(), "{m:?}");

    let tags = client
        .list_resource_tags()
        .key_id(&made.enabled)
        .send()
        .await
        .expect("ListResourceTags");
    assert!(
        tags.tags()
            .iter()
            .any(|t| t.tag_key() == "team" && t.tag_value() == "custody"),
        "{tags:?}"
    );

    let mut aliases = Vec::new();
    let mut marker = None;
    loop {
        let page = client
            .list_aliases()
            .set_marker(marker.take())
            .send()
            .await
            .expect("ListAliases");
        aliases.extend(page.aliases().iter().cloned());
        match page.next_marker() {
            Some(m) if page.truncated() => marker = Some(m.to_owned()),
            _ => break,
        }
    }
    let target = |name: &str| {
        aliases
            .iter()
            .find(|a| a.alias_name() == Some(name))
            .and_then(|a| a.target_key_id().map(str::to_owned))
    };
    assert_eq!(
        target(&made.alias_plain).as_deref(),
        Some(made.enabled.as_str())
    );
    assert_eq!(
        target(&made.alias_moved).as_deref(),
        Some(made.described.as_str()),
        "UpdateAlias survives"
    );

    for (key, ciphertext) in &made.ciphertexts {
        if *key == made.disabled {
            assert_code!(
                client
                    .decrypt()
                    .ciphertext_blob(Blob::new(ciphertext.clone()))
                    .encryption_context(CONTEXT.0, CONTEXT.1)
                    .send()
                    .await,
                "DisabledException"
            );
            continue;
        }
        let out = client
            .decrypt()
            .ciphertext_blob(Blob::new(ciphertext.clone()))
            .encryption_context(CONTEXT.0, CONTEXT.1)
            .send()
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "Decrypt under {key} after unseal: {}",
                    aws_sdk_kms::error::DisplayErrorContext(e)
                )
            });
        assert_eq!(out.plaintext().map(Blob::as_ref), Some(&made.plain[..]));
        assert_eq!(out.key_id(), Some(ekms_tests::key_arn(key).as_str()));
    }
    // The encryption context still binds.
    let (_, first) = &made.ciphertexts[0];
    assert_code!(
        client
            .decrypt()
            .ciphertext_blob(Blob::new(first.clone()))
            .encryption_context(CONTEXT.0, "another")
            .send()
            .await,
        "InvalidCiphertextException"
    );
    // And the store takes new writes.
    create_key(client).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_of_three_custodians_unseal_after_restart_and_refuse_bad_shares() {
    let work = tempdir();
    let dir_a = work.path().join("a");
    let c = custodians(work.path(), 3);

    let dev = Ekms::start_with(&manual(&dir_a));
    let status = ekms_status(&dev.endpoint);
    assert_eq!(state(&status), "Uninitialized", "{status}");
    let init_a = work.path().join("init-a");
    init(
        &dev,
        &[&c[0].public, &c[1].public, &c[2].public],
        2,
        &init_a,
    )
    .ok();
    for i in 1..=3 {
        assert!(
            init_a.join(format!("share-{i}.json")).is_file(),
            "share-{i}"
        );
    }
    let (id, secret) = read_credentials(&init_a.join("credentials"));
    let client = dev.client_with(&id, &secret, None);
    let made = make_state(&client).await;
    drop(client);
    drop(dev); // SIGTERM

    // Restart on the same data dir: sealed.
    let dev = Ekms::start_with(&manual(&dir_a));
    let status = ekms_status(&dev.endpoint);
    assert_eq!(state(&status), "Sealed", "{status}");
    assert_eq!(shares_held(&status), 0, "{status}");
    let client = dev.client_with(&id, &secret, None);
    assert_sealed_ops(&client, &made.ciphertexts[0].1).await;

    let share = |i: usize| init_a.join(format!("share-{i}.json"));

    // Share 1 of 2: still sealed.
    let out = unseal_ok_pins(&dev, &share(1), &c[0].secret).ok();
    let printed = out.json();
    assert_eq!(state(&printed), "Sealed", "{printed}");
    assert_eq!(shares_held(&printed), 1, "{printed}");
    let status = ekms_status(&dev.endpoint);
    assert_eq!(
        (
            state(&status),
            shares_held(&status),
            status["Threshold"].as_u64()
        ),
        ("Sealed", 1, Some(2)),
        "{status}"
    );
    assert_sealed_ops(&client, &made.ciphertexts[0].1).await;

    // Share 1 again: refused, does not count.
    let out = unseal_ok_pins(&dev, &share(1), &c[0].secret);
    assert_refused(&out, "a repeated share");
    assert!(out.stderr.contains("already submitted"), "{out:?}");
    let status = ekms_status(&dev.endpoint);
    assert_eq!(
        (state(&status), shares_held(&status)),
        ("Sealed", 1),
        "{status}"
    );

    // A share of another deployment (custodian 2 holds shares in both): refused.
    let dir_b = work.path().join("b");
    let other = Ekms::start_with(&manual(&dir_b));
    let init_b = work.path().join("init-b");
    init(&other, &[&c[0].public, &c[1].public], 2, &init_b).ok();
    drop(other);
    let out = unseal_ok_pins(&dev, &init_b.join("share-2.json"), &c[1].secret);
    assert_refused(&out, "a share of another deployment");
    assert!(out.stderr.contains("another deployment"), "{out:?}");
    let status = ekms_status(&dev.endpoint);
    assert_eq!(
        (state(&status), shares_held(&status)),
        ("Sealed", 1),
        "{status}"
    );

    // Share 3 opened with custodian 2's key: the CLI cannot open it, nothing is sent.
    let out = unseal_ok_pins(&dev, &share(3), &c[1].secret);
    assert_refused(&out, "the wrong custodian key");
    assert!(out.stderr.contains("does not open"), "{out:?}");
    let status = ekms_status(&dev.endpoint);
    assert_eq!(
        (state(&status), shares_held(&status)),
        ("Sealed", 1),
        "{status}"
    );
    assert_sealed_ops(&client, &made.ciphertexts[0].1).await;

    // Share 3 with its own key: the threshold.
    let out = unseal_ok_pins(&dev, &share(3), &c[2].secret).ok();
    assert_eq!(state(&out.json()), "Unsealed", "{out:?}");
    let status = ekms_status(&dev.endpoint);
    assert_eq!(state(&status), "Unsealed", "{status}");
    assert_eq!(status["RefusedRecordCount"].as_u64(), Some(0), "{status}");
    assert_state_back(&client, &made).await;

    // Unsealed: a further share is refused.
    let out = unseal_ok_pins(&dev, &share(2), &c[1].secret);
    assert_refused(&out, "unseal of an unsealed enclave");
}

#[tokio::test(flavor = "multi_thread")]
/// Regression: a sealed enclave holding no share used to accept a share of another
/// deployment and then refuse every right one. The enclave now checks every share against its
/// store's deployment record and the submitting custodian's signature, so a foreign share never
/// counts, whenever it comes.
async fn a_foreign_share_submitted_first_does_not_count() {
    let work = tempdir();
    let c = custodians(work.path(), 2);
    let dir_a = work.path().join("a");
    let dev = Ekms::start_with(&manual(&dir_a));
    let init_a = work.path().join("init-a");
    init(&dev, &[&c[0].public, &c[1].public], 2, &init_a).ok();
    drop(dev);
    let dir_b = work.path().join("b");
    let other = Ekms::start_with(&manual(&dir_b));
    let init_b = work.path().join("init-b");
    init(&other, &[&c[0].public, &c[1].public], 2, &init_b).ok();
    drop(other);

    let dev = Ekms::start_with(&manual(&dir_a));
    // Custodian 1 picks up the wrong deployment's file first.
    let foreign = unseal_ok_pins(&dev, &init_b.join("share-1.json"), &c[0].secret);
    let status = ekms_status(&dev.endpoint);
    // Then both custodians submit the right shares: they must be enough.
    let first = unseal_ok_pins(&dev, &init_a.join("share-1.json"), &c[0].secret);
    let second = unseal_ok_pins(&dev, &init_a.join("share-2.json"), &c[1].secret);
    let after = ekms_status(&dev.endpoint);
    assert!(
        !foreign.success()
            && shares_held(&status) == 0
            && first.success()
            && second.success()
            && state(&after) == "Unsealed",
        "a foreign share submitted first: {foreign:?}; status then {status}\n\
         then the right shares: {first:?}\n{second:?}\nstatus at the end {after}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn unseal_and_init_refuse_an_enclave_that_does_not_attest_as_pinned() {
    let work = tempdir();
    let c = custodians(work.path(), 2);
    let dir = work.path().join("a");
    let dev = Ekms::start_with(&manual(&dir));
    let data = dev.data_dir();

    // A PCR file whose PCR0 differs from the enclave's.
    let mut pinned: serde_json::Map<String, Value> =
        serde_json::from_str(&std::fs::read_to_string(pcrs(&data)).expect("pcrs.json"))
            .expect("pcrs.json is a JSON object");
    let pcr0 = pinned
        .get("PCR0")
        .and_then(Value::as_str)
        .expect("pcrs.json has PCR0")
        .to_owned();
    let flipped = if pcr0.starts_with('0') { "1" } else { "0" };
    pinned.insert(
        "PCR0".to_owned(),
        Value::String(format!("{flipped}{}", &pcr0[1..])),
    );
    let wrong_pcrs = work.path().join("wrong-pcrs.json");
    std::fs::write(
        &wrong_pcrs,
        serde_json::to_vec(&Value::Object(pinned)).expect("JSON"),
    )
    .expect("writing wrong-pcrs.json");

    // init with the wrong PCRs: refused, nothing initialized, nothing written.
    let init_dir = work.path().join("init");
    let out = init_pinned(
        &dev,
        &[&c[0].public, &c[1].public],
        2,
        &wrong_pcrs,
        &init_dir,
    );
    assert!(!out.success(), "init against wrong PCRs: {out:?}");
    assert!(out.stderr.contains("PCR"), "{out:?}");
    assert!(!init_dir.join("share-1.json").exists());
    assert_eq!(state(&ekms_status(&dev.endpoint)), "Uninitialized");

    init(&dev, &[&c[0].public, &c[1].public], 2, &init_dir).ok();
    drop(dev);
    let dev = Ekms::start_with(&manual(&dir));
    let share1 = init_dir.join("share-1.json");

    let out = unseal(&dev, &share1, &c[0].secret, &wrong_pcrs, Some(&root(&data)));
    assert!(!out.success(), "unseal against wrong PCRs: {out:?}");
    assert!(out.stderr.contains("PCR"), "{out:?}");
    let status = ekms_status(&dev.endpoint);
    assert_eq!(
        (state(&status), shares_held(&status)),
        ("Sealed", 0),
        "{status}"
    );

    // Without --root the AWS Nitro root is pinned: a mock document is not trusted.
    let out = unseal(&dev, &share1, &c[0].secret, &pcrs(&data), None);
    assert!(!out.success(), "unseal trusting the AWS root: {out:?}");
    assert!(
        out.stderr.contains("attestation") && out.stderr.contains("root"),
        "the error names the untrusted root: {out:?}"
    );
    let status = ekms_status(&dev.endpoint);
    assert_eq!(
        (state(&status), shares_held(&status)),
        ("Sealed", 0),
        "{status}"
    );

    // The same share with the right pins counts: the refusals above were the pins'.
    let out = unseal_ok_pins(&dev, &share1, &c[0].secret).ok();
    assert_eq!(shares_held(&out.json()), 1, "{out:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn ekms_dev_unseals_itself_on_restart_and_keys_persist() {
    let work = tempdir();
    let dir = work.path().join("dev");
    let options = DevOptions {
        data_dir: Some(dir.clone()),
        ..DevOptions::default()
    };
    let dev = Ekms::start_with(&options);
    let (id, secret) = (dev.access_key_id.clone(), dev.secret.clone());
    let client = dev.client().await;
    let key = create_key(&client).await;
    let alias = ekms_tests::unique("alias/dev-restart");
    client
        .create_alias()
        .alias_name(&alias)
        .target_key_id(&key)
        .send()
        .await
        .expect("CreateAlias");
    let ciphertext = client
        .encrypt()
        .key_id(&alias)
        .plaintext(Blob::new(&b"survives a restart"[..]))
        .encryption_context(CONTEXT.0, CONTEXT.1)
        .send()
        .await
        .expect("Encrypt")
        .ciphertext_blob()
        .expect("a ciphertext")
        .as_ref()
        .to_vec();
    let credentials = std::fs::read(dir.join("credentials")).expect("credentials");
    drop(client);
    drop(dev);

    let dev = Ekms::start_with(&options);
    assert_eq!(
        std::fs::read(dir.join("credentials")).expect("credentials"),
        credentials,
        "the restart keeps the dev credentials"
    );
    let status = ekms_status(&dev.endpoint);
    assert_eq!(state(&status), "Unsealed", "{status}");
    // The first run's credentials, not re-read.
    let client = dev.client_with(&id, &secret, None);
    let described = client
        .describe_key()
        .key_id(&alias)
        .send()
        .await
        .expect("DescribeKey by alias after restart");
    assert_eq!(
        described.key_metadata().map(|m| m.key_id()),
        Some(key.as_str())
    );
    let out = client
        .decrypt()
        .ciphertext_blob(Blob::new(ciphertext))
        .encryption_context(CONTEXT.0, CONTEXT.1)
        .send()
        .await
        .expect("Decrypt after restart");
    assert_eq!(
        out.plaintext().map(Blob::as_ref),
        Some(&b"survives a restart"[..])
    );
    drop(client);
    drop(dev);

    // A third life: still the same deployment (no second init).
    let dev = Ekms::start_with(&options);
    let client = dev.client_with(&id, &secret, None);
    client
        .describe_key()
        .key_id(&key)
        .send()
        .await
        .expect("DescribeKey on the third start");
}
