//! Key lifecycle through the AWS SDK: CreateKey, DescribeKey, ListKeys, UpdateKeyDescription,
//! EnableKey/DisableKey, ScheduleKeyDeletion/CancelKeyDeletion, and tags. One shared
//! `ekms dev`; each test creates its own keys.

use std::collections::{HashMap, HashSet};
use std::time::SystemTime;

use aws_sdk_kms::error::DisplayErrorContext;
use aws_sdk_kms::operation::describe_key::DescribeKeyError;
use aws_sdk_kms::primitives::{Blob, DateTime};
use aws_sdk_kms::types::{KeyManagerType, KeySpec, KeyState, KeyUsageType, OriginType, Tag};
use ekms_tests::{assert_code, create_key, key_arn, Ekms, ACCOUNT};

async fn client() -> aws_sdk_kms::Client {
    Ekms::shared().client().await
}

fn tag(key: &str, value: &str) -> Tag {
    Tag::builder()
        .tag_key(key)
        .tag_value(value)
        .build()
        .expect("a tag with key and value")
}

fn seconds(t: &DateTime) -> i64 {
    t.secs()
}

fn now_secs() -> i64 {
    let d = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("after 1970");
    i64::try_from(d.as_secs()).expect("fits")
}

fn is_uuid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.iter().map(|p| p.len()).collect::<Vec<_>>() == [8, 4, 4, 4, 12]
        && parts
            .iter()
            .all(|p| p.bytes().all(|b| b.is_ascii_hexdigit()))
}

async fn describe(client: &aws_sdk_kms::Client, key: &str) -> aws_sdk_kms::types::KeyMetadata {
    client
        .describe_key()
        .key_id(key)
        .send()
        .await
        .unwrap_or_else(|e| panic!("DescribeKey {key}: {}", DisplayErrorContext(e)))
        .key_metadata
        .expect("DescribeKey returns KeyMetadata")
}

#[tokio::test]
async fn create_key_returns_symmetric_enabled_metadata() {
    let client = client().await;
    let before = now_secs();
    let out = client
        .create_key()
        .description("first key")
        .send()
        .await
        .unwrap_or_else(|e| panic!("CreateKey: {}", DisplayErrorContext(e)));
    let meta = out.key_metadata().expect("KeyMetadata");
    assert!(is_uuid(meta.key_id()), "KeyId {:?}", meta.key_id());
    assert_eq!(meta.arn(), Some(key_arn(meta.key_id()).as_str()));
    assert_eq!(meta.aws_account_id(), Some(ACCOUNT));
    assert_eq!(meta.description(), Some("first key"));
    assert!(meta.enabled());
    assert_eq!(meta.key_state(), Some(&KeyState::Enabled));
    assert_eq!(meta.key_usage(), Some(&KeyUsageType::EncryptDecrypt));
    assert_eq!(meta.key_spec(), Some(&KeySpec::SymmetricDefault));
    assert_eq!(meta.origin(), Some(&OriginType::AwsKms));
    assert_eq!(meta.key_manager(), Some(&KeyManagerType::Customer));
    assert!(meta.deletion_date().is_none());
    let created = seconds(meta.creation_date().expect("CreationDate"));
    assert!(
        (before - 60..=now_secs() + 60).contains(&created),
        "CreationDate {created} is not about now ({before})"
    );

    // DescribeKey says the same.
    let described = describe(&client, meta.key_id()).await;
    assert_eq!(described.key_id(), meta.key_id());
    assert_eq!(described.arn(), meta.arn());
    assert_eq!(described.description(), Some("first key"));
    assert_eq!(described.key_state(), Some(&KeyState::Enabled));
}

/// CreateKey with a Policy keeps it (GetKeyPolicy returns it verbatim); a malformed one, or
/// one that would lock the caller out, is MalformedPolicyDocumentException.
#[tokio::test]
async fn create_key_with_a_policy_keeps_it_and_refuses_bad_ones() {
    let client = client().await;
    let policy = r#"{"Version":"2012-10-17","Statement":[{"Sid":"all","Effect":"Allow","Principal":{"AWS":"*"},"Action":"kms:*","Resource":"*"}]}"#;
    let created = client
        .create_key()
        .policy(policy)
        .send()
        .await
        .expect("CreateKey with a policy");
    let key = created
        .key_metadata()
        .expect("metadata")
        .key_id()
        .to_owned();
    let got = client
        .get_key_policy()
        .key_id(&key)
        .policy_name("default")
        .send()
        .await
        .expect("GetKeyPolicy");
    assert_eq!(got.policy(), Some(policy));
    assert_code!(
        client
            .create_key()
            .policy(r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allwo","Principal":"*","Action":"kms:*","Resource":"*"}]}"#)
            .send()
            .await,
        "MalformedPolicyDocumentException"
    );
    // Nobody may administer the key: refused unless the lockout check is bypassed.
    let lockout = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:user/nobody"},"Action":"kms:Encrypt","Resource":"*"}]}"#;
    assert_code!(
        client.create_key().policy(lockout).send().await,
        "MalformedPolicyDocumentException"
    );
    client
        .create_key()
        .policy(lockout)
        .bypass_policy_lockout_safety_check(true)
        .send()
        .await
        .expect("bypassing the lockout check");
}

/// Key specs AWS has and ekms does not (SM2) are refused as unsupported.
#[tokio::test]
async fn create_key_of_an_unsupported_spec_is_refused() {
    let client = client().await;
    let result = client
        .create_key()
        .key_spec(KeySpec::Sm2)
        .key_usage(KeyUsageType::SignVerify)
        .send()
        .await;
    let code = match result {
        Ok(out) => panic!("an SM2 key was created: {out:?}"),
        Err(e) => ekms_tests::error_code(e),
    };
    assert_eq!(code, "UnsupportedOperationException");
}

#[tokio::test]
async fn describe_key_accepts_id_and_arn_and_unknown_is_not_found() {
    let client = client().await;
    let key = create_key(&client).await;
    assert_eq!(describe(&client, &key).await.key_id(), key);
    assert_eq!(describe(&client, &key_arn(&key)).await.key_id(), key);

    let result = client
        .describe_key()
        .key_id("3f1ef7a7-0000-4000-8000-000000000000")
        .send()
        .await;
    assert!(
        matches!(
            result.as_ref().map_err(|e| e.as_service_error()),
            Err(Some(DescribeKeyError::NotFoundException(_)))
        ),
        "{result:?}"
    );
    assert_code!(
        client
            .describe_key()
            .key_id(key_arn("3f1ef7a7-0000-4000-8000-000000000000"))
            .send()
            .await,
        "NotFoundException"
    );
    // A key ARN in another account or region is not this key.
    assert_code!(
        client
            .describe_key()
            .key_id(format!("arn:aws:kms:us-east-1:999999999999:key/{key}"))
            .send()
            .await,
        "NotFoundException"
    );
}

#[tokio::test]
async fn update_key_description_is_visible_in_describe_key() {
    let client = client().await;
    let key = create_key(&client).await;
    client
        .update_key_description()
        .key_id(&key)
        .description("renamed")
        .send()
        .await
        .unwrap_or_else(|e| panic!("UpdateKeyDescription: {}", DisplayErrorContext(e)));
    assert_eq!(describe(&client, &key).await.description(), Some("renamed"));
    assert_code!(
        client
            .update_key_description()
            .key_id("5d0c9a8e-0000-4000-8000-000000000000")
            .description("x")
            .send()
            .await,
        "NotFoundException"
    );
}

#[tokio::test]
async fn disable_and_enable_change_key_state() {
    let client = client().await;
    let key = create_key(&client).await;
    client
        .disable_key()
        .key_id(&key)
        .send()
        .await
        .expect("DisableKey");
    let meta = describe(&client, &key).await;
    assert!(!meta.enabled());
    assert_eq!(meta.key_state(), Some(&KeyState::Disabled));
    assert_code!(
        client
            .encrypt()
            .key_id(&key)
            .plaintext(Blob::new("x"))
            .send()
            .await,
        "DisabledException"
    );
    client
        .enable_key()
        .key_id(&key)
        .send()
        .await
        .expect("EnableKey");
    let meta = describe(&client, &key).await;
    assert!(meta.enabled());
    assert_eq!(meta.key_state(), Some(&KeyState::Enabled));
    client
        .encrypt()
        .key_id(&key)
        .plaintext(Blob::new("x"))
        .send()
        .await
        .expect("Encrypt after EnableKey");
}

#[tokio::test]
async fn schedule_key_deletion_then_cancel_leaves_the_key_disabled() {
    let client = client().await;
    let key = create_key(&client).await;
    let blob = client
        .encrypt()
        .key_id(&key)
        .plaintext(Blob::new("keep"))
        .send()
        .await
        .expect("Encrypt")
        .ciphertext_blob
        .expect("CiphertextBlob");

    let out = client
        .schedule_key_deletion()
        .key_id(&key)
        .pending_window_in_days(7)
        .send()
        .await
        .unwrap_or_else(|e| panic!("ScheduleKeyDeletion: {}", DisplayErrorContext(e)));
    assert_eq!(out.key_id(), Some(key_arn(&key).as_str()));
    assert_eq!(out.key_state(), Some(&KeyState::PendingDeletion));
    assert_eq!(out.pending_window_in_days(), Some(7));
    let seven_days = 7 * 24 * 3600;
    let deletion = seconds(out.deletion_date().expect("DeletionDate"));
    assert!(
        (deletion - now_secs() - seven_days).abs() < 24 * 3600,
        "DeletionDate {deletion} is not about 7 days from now"
    );

    let meta = describe(&client, &key).await;
    assert_eq!(meta.key_state(), Some(&KeyState::PendingDeletion));
    assert!(!meta.enabled());
    assert_eq!(meta.deletion_date().map(seconds), Some(deletion));

    assert_code!(
        client
            .encrypt()
            .key_id(&key)
            .plaintext(Blob::new("x"))
            .send()
            .await,
        "KMSInvalidStateException"
    );
    assert_code!(
        client.decrypt().ciphertext_blob(blob.clone()).send().await,
        "KMSInvalidStateException"
    );
    // Enabling a key pending deletion is not allowed either.
    assert_code!(
        client.enable_key().key_id(&key).send().await,
        "KMSInvalidStateException"
    );

    let out = client
        .cancel_key_deletion()
        .key_id(&key)
        .send()
        .await
        .unwrap_or_else(|e| panic!("CancelKeyDeletion: {}", DisplayErrorContext(e)));
    assert_eq!(out.key_id(), Some(key_arn(&key).as_str()));
    let meta = describe(&client, &key).await;
    assert_eq!(meta.key_state(), Some(&KeyState::Disabled));
    assert!(!meta.enabled());
    assert!(meta.deletion_date().is_none(), "{meta:?}");
    assert_code!(
        client
            .encrypt()
            .key_id(&key)
            .plaintext(Blob::new("x"))
            .send()
            .await,
        "DisabledException"
    );

    client
        .enable_key()
        .key_id(&key)
        .send()
        .await
        .expect("EnableKey");
    let out = client
        .decrypt()
        .ciphertext_blob(blob)
        .send()
        .await
        .expect("Decrypt after cancel and enable");
    assert_eq!(out.plaintext().map(Blob::as_ref), Some(&b"keep"[..]));
}

#[tokio::test]
async fn schedule_key_deletion_window_is_7_to_30_days_default_30() {
    let client = client().await;
    let key = create_key(&client).await;
    for days in [6, 31] {
        assert_code!(
            client
                .schedule_key_deletion()
                .key_id(&key)
                .pending_window_in_days(days)
                .send()
                .await,
            "ValidationException"
        );
    }
    assert_eq!(
        describe(&client, &key).await.key_state(),
        Some(&KeyState::Enabled)
    );

    let out = client
        .schedule_key_deletion()
        .key_id(&key)
        .send()
        .await
        .expect("ScheduleKeyDeletion with the default window");
    assert_eq!(out.pending_window_in_days(), Some(30));
    let deletion = seconds(out.deletion_date().expect("DeletionDate"));
    assert!(
        (deletion - now_secs() - 30 * 24 * 3600).abs() < 24 * 3600,
        "DeletionDate {deletion} is not about 30 days from now"
    );

    let other = create_key(&client).await;
    let out = client
        .schedule_key_deletion()
        .key_id(&other)
        .pending_window_in_days(30)
        .send()
        .await
        .expect("ScheduleKeyDeletion 30 days");
    assert_eq!(out.pending_window_in_days(), Some(30));
}

#[tokio::test]
async fn cancel_key_deletion_of_a_key_not_pending_deletion_is_invalid_state() {
    let client = client().await;
    let key = create_key(&client).await;
    assert_code!(
        client.cancel_key_deletion().key_id(&key).send().await,
        "KMSInvalidStateException"
    );
}

/// ListKeys with Limit 2 visits each of five new keys exactly once. Other tests create keys
/// at the same time, so only duplicates and these five are checked, not the total.
#[tokio::test]
async fn list_keys_paginates_with_limit_and_marker() {
    let client = client().await;
    let mut mine = HashSet::new();
    for _ in 0..5 {
        mine.insert(create_key(&client).await);
    }
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut marker: Option<String> = None;
    let mut pages = 0;
    loop {
        pages += 1;
        assert!(pages < 10_000, "ListKeys does not terminate");
        let out = client
            .list_keys()
            .limit(2)
            .set_marker(marker.clone())
            .send()
            .await
            .unwrap_or_else(|e| panic!("ListKeys: {}", DisplayErrorContext(e)));
        let keys = out.keys();
        assert!(keys.len() <= 2, "page of {} keys with Limit 2", keys.len());
        for entry in keys {
            let id = entry.key_id().expect("KeyId").to_owned();
            assert_eq!(entry.key_arn(), Some(key_arn(&id).as_str()));
            *seen.entry(id).or_default() += 1;
        }
        if out.truncated() {
            let next = out.next_marker().expect("Truncated page has NextMarker");
            marker = Some(next.to_owned());
        } else {
            assert!(out.next_marker().is_none(), "last page has a NextMarker");
            break;
        }
    }
    let duplicates: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        duplicates.is_empty(),
        "listed more than once: {duplicates:?}"
    );
    let missing: Vec<_> = mine.iter().filter(|k| !seen.contains_key(*k)).collect();
    assert!(missing.is_empty(), "never listed: {missing:?}");
    assert!(pages >= 3, "5 keys with Limit 2 took {pages} page(s)");
}

#[tokio::test]
async fn list_keys_limit_is_1_to_1000() {
    let client = client().await;
    create_key(&client).await;
    for limit in [0, 1001] {
        assert_code!(
            client.list_keys().limit(limit).send().await,
            "ValidationException"
        );
    }
    let out = client.list_keys().limit(1).send().await.expect("ListKeys");
    assert_eq!(out.keys().len(), 1);
}

async fn tags_of(client: &aws_sdk_kms::Client, key: &str) -> HashMap<String, String> {
    client
        .list_resource_tags()
        .key_id(key)
        .send()
        .await
        .unwrap_or_else(|e| panic!("ListResourceTags: {}", DisplayErrorContext(e)))
        .tags()
        .iter()
        .map(|t| (t.tag_key().to_owned(), t.tag_value().to_owned()))
        .collect()
}

fn map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[tokio::test]
async fn tag_untag_and_list_resource_tags() {
    let client = client().await;
    let out = client
        .create_key()
        .tags(tag("team", "crypto"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("CreateKey with tags: {}", DisplayErrorContext(e)));
    let key = out.key_metadata().expect("KeyMetadata").key_id().to_owned();
    assert_eq!(tags_of(&client, &key).await, map(&[("team", "crypto")]));

    client
        .tag_resource()
        .key_id(&key)
        .tags(tag("env", "test"))
        .tags(tag("team", "platform"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("TagResource: {}", DisplayErrorContext(e)));
    assert_eq!(
        tags_of(&client, &key).await,
        map(&[("team", "platform"), ("env", "test")])
    );
    // By ARN too.
    assert_eq!(
        tags_of(&client, &key_arn(&key)).await,
        map(&[("team", "platform"), ("env", "test")])
    );

    client
        .untag_resource()
        .key_id(&key)
        .tag_keys("team")
        .send()
        .await
        .unwrap_or_else(|e| panic!("UntagResource: {}", DisplayErrorContext(e)));
    assert_eq!(tags_of(&client, &key).await, map(&[("env", "test")]));

    // Removing an absent tag is not an error.
    client
        .untag_resource()
        .key_id(&key)
        .tag_keys("absent")
        .send()
        .await
        .expect("UntagResource of an absent tag");

    let missing = "7a6b5c4d-0000-4000-8000-000000000000";
    assert_code!(
        client
            .tag_resource()
            .key_id(missing)
            .tags(tag("a", "b"))
            .send()
            .await,
        "NotFoundException"
    );
    assert_code!(
        client.list_resource_tags().key_id(missing).send().await,
        "NotFoundException"
    );
    assert_code!(
        client
            .untag_resource()
            .key_id(missing)
            .tag_keys("a")
            .send()
            .await,
        "NotFoundException"
    );
}

#[tokio::test]
async fn tags_on_one_key_do_not_leak_to_another() {
    let client = client().await;
    let a = create_key(&client).await;
    let b = create_key(&client).await;
    client
        .tag_resource()
        .key_id(&a)
        .tags(tag("only", "a"))
        .send()
        .await
        .expect("TagResource");
    assert_eq!(tags_of(&client, &a).await, map(&[("only", "a")]));
    assert!(tags_of(&client, &b).await.is_empty());
}

#[tokio::test]
async fn operations_on_a_key_pending_deletion_are_invalid_state() {
    let client = client().await;
    let key = create_key(&client).await;
    client
        .schedule_key_deletion()
        .key_id(&key)
        .pending_window_in_days(7)
        .send()
        .await
        .expect("ScheduleKeyDeletion");
    assert_code!(
        client.disable_key().key_id(&key).send().await,
        "KMSInvalidStateException"
    );
    assert_code!(
        client
            .generate_data_key()
            .key_id(&key)
            .number_of_bytes(32)
            .send()
            .await,
        "KMSInvalidStateException"
    );
    // Scheduling twice is refused.
    assert_code!(
        client
            .schedule_key_deletion()
            .key_id(&key)
            .pending_window_in_days(7)
            .send()
            .await,
        "KMSInvalidStateException"
    );
    // DescribeKey and ListKeys still show it.
    assert_eq!(
        describe(&client, &key).await.key_state(),
        Some(&KeyState::PendingDeletion)
    );
}

#[tokio::test]
async fn lifecycle_operations_on_unknown_or_malformed_key_ids_are_not_found() {
    let client = client().await;
    for key in ["6c5b4a39-0000-4000-8000-000000000000", "not-a-key-id"] {
        assert_code!(
            client
                .schedule_key_deletion()
                .key_id(key)
                .pending_window_in_days(7)
                .send()
                .await,
            "NotFoundException"
        );
        assert_code!(
            client.cancel_key_deletion().key_id(key).send().await,
            "NotFoundException"
        );
        assert_code!(
            client.enable_key().key_id(key).send().await,
            "NotFoundException"
        );
        assert_code!(
            client.disable_key().key_id(key).send().await,
            "NotFoundException"
        );
        assert_code!(
            client.describe_key().key_id(key).send().await,
            "NotFoundException"
        );
    }
}
