//! CreateAlias, UpdateAlias, DeleteAlias and ListAliases through the AWS SDK against one
//! shared `ekms dev`. Each test creates its own keys and uniquely named aliases.

use std::collections::HashSet;

use aws_sdk_kms::error::DisplayErrorContext;
use aws_sdk_kms::primitives::Blob;
use ekms_tests::{alias_arn, assert_code, create_key, key_arn, unique, Ekms};

async fn client() -> aws_sdk_kms::Client {
    Ekms::shared().client().await
}

async fn create_alias(client: &aws_sdk_kms::Client, alias: &str, key: &str) {
    client
        .create_alias()
        .alias_name(alias)
        .target_key_id(key)
        .send()
        .await
        .unwrap_or_else(|e| panic!("CreateAlias {alias}: {}", DisplayErrorContext(e)));
}

/// Every alias of `key` (ListAliases with its KeyId filter, all pages).
async fn aliases_of(
    client: &aws_sdk_kms::Client,
    key: &str,
) -> Vec<aws_sdk_kms::types::AliasListEntry> {
    let mut all = Vec::new();
    let mut marker = None;
    for _ in 0..1000 {
        let out = client
            .list_aliases()
            .key_id(key)
            .set_marker(marker)
            .send()
            .await
            .unwrap_or_else(|e| panic!("ListAliases KeyId {key}: {}", DisplayErrorContext(e)));
        all.extend(out.aliases().iter().cloned());
        if !out.truncated() {
            return all;
        }
        marker = out.next_marker().map(str::to_owned);
    }
    panic!("ListAliases does not terminate");
}

async fn described_key(client: &aws_sdk_kms::Client, key_id: &str) -> String {
    client
        .describe_key()
        .key_id(key_id)
        .send()
        .await
        .unwrap_or_else(|e| panic!("DescribeKey {key_id}: {}", DisplayErrorContext(e)))
        .key_metadata
        .expect("KeyMetadata")
        .key_id
}

#[tokio::test]
async fn create_alias_is_listed_and_resolves() {
    let client = client().await;
    let key = create_key(&client).await;
    let alias = format!("alias/{}", unique("create"));
    create_alias(&client, &alias, &key).await;

    let listed = aliases_of(&client, &key).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].alias_name(), Some(alias.as_str()));
    assert_eq!(listed[0].alias_arn(), Some(alias_arn(&alias).as_str()));
    assert_eq!(listed[0].target_key_id(), Some(key.as_str()));

    assert_eq!(described_key(&client, &alias).await, key);
    assert_eq!(described_key(&client, &alias_arn(&alias)).await, key);

    // The unfiltered list contains it too.
    let mut found = false;
    let mut marker = None;
    for _ in 0..1000 {
        let out = client
            .list_aliases()
            .set_marker(marker)
            .send()
            .await
            .expect("ListAliases");
        found |= out
            .aliases()
            .iter()
            .any(|a| a.alias_name() == Some(alias.as_str()));
        if !out.truncated() {
            break;
        }
        marker = out.next_marker().map(str::to_owned);
    }
    assert!(found, "{alias} is not in the unfiltered ListAliases");
}

#[tokio::test]
async fn create_alias_by_key_arn() {
    let client = client().await;
    let key = create_key(&client).await;
    let alias = format!("alias/{}", unique("by-arn"));
    create_alias(&client, &alias, &key_arn(&key)).await;
    assert_eq!(described_key(&client, &alias).await, key);
}

#[tokio::test]
async fn duplicate_alias_already_exists() {
    let client = client().await;
    let key = create_key(&client).await;
    let other = create_key(&client).await;
    let alias = format!("alias/{}", unique("dup"));
    create_alias(&client, &alias, &key).await;
    assert_code!(
        client
            .create_alias()
            .alias_name(&alias)
            .target_key_id(&other)
            .send()
            .await,
        "AlreadyExistsException"
    );
    assert_eq!(described_key(&client, &alias).await, key);
}

#[tokio::test]
async fn alias_names_are_checked() {
    let client = client().await;
    let key = create_key(&client).await;
    // A name without the `alias/` prefix breaks the pattern: ValidationException, in AWS's
    // words, from CreateAlias, UpdateAlias and DeleteAlias alike.
    let no_prefix = unique("no-prefix");
    let refusals = [
        client
            .create_alias()
            .alias_name(&no_prefix)
            .target_key_id(&key)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| e.into_service_error().meta().clone()),
        client
            .update_alias()
            .alias_name(&no_prefix)
            .target_key_id(&key)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| e.into_service_error().meta().clone()),
        client
            .delete_alias()
            .alias_name(&no_prefix)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| e.into_service_error().meta().clone()),
    ];
    for refused in refusals {
        let meta = refused.expect_err("a name without the alias/ prefix");
        assert_eq!(meta.code(), Some("ValidationException"));
        assert_eq!(
            meta.message(),
            Some(
                "Alias must start with the prefix \"alias/\". Please see \
                 https://docs.aws.amazon.com/kms/latest/developerguide/kms-alias.html"
            )
        );
    }
    for name in ["alias/aws/reserved".to_owned(), "alias/".to_owned()] {
        assert_code!(
            client
                .create_alias()
                .alias_name(&name)
                .target_key_id(&key)
                .send()
                .await,
            "InvalidAliasNameException"
        );
    }
    for name in [
        format!("alias/{} space", unique("bad")),
        format!("alias/{}", "x".repeat(300)),
    ] {
        assert_code!(
            client
                .create_alias()
                .alias_name(&name)
                .target_key_id(&key)
                .send()
                .await,
            "ValidationException"
        );
    }
    assert!(aliases_of(&client, &key).await.is_empty());
}

#[tokio::test]
async fn create_alias_for_an_unknown_key_is_not_found() {
    let client = client().await;
    assert_code!(
        client
            .create_alias()
            .alias_name(format!("alias/{}", unique("orphan")))
            .target_key_id("9e8d7c6b-0000-4000-8000-000000000000")
            .send()
            .await,
        "NotFoundException"
    );
}

#[tokio::test]
async fn update_alias_retargets_it() {
    let client = client().await;
    let first = create_key(&client).await;
    let second = create_key(&client).await;
    let alias = format!("alias/{}", unique("update"));
    create_alias(&client, &alias, &first).await;
    let old_blob = client
        .encrypt()
        .key_id(&alias)
        .plaintext(Blob::new("old"))
        .send()
        .await
        .expect("Encrypt via alias")
        .ciphertext_blob
        .expect("CiphertextBlob");

    client
        .update_alias()
        .alias_name(&alias)
        .target_key_id(&second)
        .send()
        .await
        .unwrap_or_else(|e| panic!("UpdateAlias: {}", DisplayErrorContext(e)));
    assert_eq!(described_key(&client, &alias).await, second);
    assert!(aliases_of(&client, &first).await.is_empty());
    let listed = aliases_of(&client, &second).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].target_key_id(), Some(second.as_str()));

    let out = client
        .encrypt()
        .key_id(&alias)
        .plaintext(Blob::new("new"))
        .send()
        .await
        .expect("Encrypt via the updated alias");
    assert_eq!(out.key_id(), Some(key_arn(&second).as_str()));

    // Ciphertexts made through the alias before still name the first key.
    let decrypted = client
        .decrypt()
        .ciphertext_blob(old_blob.clone())
        .send()
        .await
        .expect("Decrypt the old blob");
    assert_eq!(decrypted.key_id(), Some(key_arn(&first).as_str()));
    assert_code!(
        client
            .decrypt()
            .key_id(&alias)
            .ciphertext_blob(old_blob)
            .send()
            .await,
        "IncorrectKeyException"
    );
}

#[tokio::test]
async fn update_alias_errors() {
    let client = client().await;
    let key = create_key(&client).await;
    assert_code!(
        client
            .update_alias()
            .alias_name(format!("alias/{}", unique("never-created")))
            .target_key_id(&key)
            .send()
            .await,
        "NotFoundException"
    );
    let alias = format!("alias/{}", unique("update-err"));
    create_alias(&client, &alias, &key).await;
    assert_code!(
        client
            .update_alias()
            .alias_name(&alias)
            .target_key_id("1a2b3c4d-0000-4000-8000-000000000000")
            .send()
            .await,
        "NotFoundException"
    );
    assert_eq!(described_key(&client, &alias).await, key);
}

#[tokio::test]
async fn delete_alias_removes_only_the_alias() {
    let client = client().await;
    let key = create_key(&client).await;
    let alias = format!("alias/{}", unique("delete"));
    create_alias(&client, &alias, &key).await;
    client
        .delete_alias()
        .alias_name(&alias)
        .send()
        .await
        .unwrap_or_else(|e| panic!("DeleteAlias: {}", DisplayErrorContext(e)));
    assert_code!(
        client.describe_key().key_id(&alias).send().await,
        "NotFoundException"
    );
    assert_code!(
        client
            .encrypt()
            .key_id(&alias)
            .plaintext(Blob::new("x"))
            .send()
            .await,
        "NotFoundException"
    );
    assert!(aliases_of(&client, &key).await.is_empty());
    assert_code!(
        client.delete_alias().alias_name(&alias).send().await,
        "NotFoundException"
    );
    // The key itself is untouched, and the name can be reused.
    assert_eq!(described_key(&client, &key).await, key);
    create_alias(&client, &alias, &key).await;
    assert_eq!(described_key(&client, &alias).await, key);
}

#[tokio::test]
async fn list_aliases_filters_by_key_id() {
    let client = client().await;
    let a = create_key(&client).await;
    let b = create_key(&client).await;
    let a1 = format!("alias/{}", unique("list-a1"));
    let a2 = format!("alias/{}", unique("list-a2"));
    let b1 = format!("alias/{}", unique("list-b1"));
    create_alias(&client, &a1, &a).await;
    create_alias(&client, &a2, &a).await;
    create_alias(&client, &b1, &b).await;

    let names = |entries: Vec<aws_sdk_kms::types::AliasListEntry>| -> HashSet<String> {
        entries
            .iter()
            .filter_map(|e| e.alias_name().map(str::to_owned))
            .collect()
    };
    assert_eq!(
        names(aliases_of(&client, &a).await),
        HashSet::from([a1.clone(), a2.clone()])
    );
    assert_eq!(names(aliases_of(&client, &b).await), HashSet::from([b1]));
    // The filter takes a key ARN as well.
    assert_eq!(
        names(aliases_of(&client, &key_arn(&a)).await),
        HashSet::from([a1, a2])
    );
    assert_code!(
        client
            .list_aliases()
            .key_id("2b3c4d5e-0000-4000-8000-000000000000")
            .send()
            .await,
        "NotFoundException"
    );
}

#[tokio::test]
async fn list_aliases_paginates_with_limit() {
    let client = client().await;
    let key = create_key(&client).await;
    let mut mine = HashSet::new();
    for i in 0..3 {
        let alias = format!("alias/{}", unique(&format!("page{i}")));
        create_alias(&client, &alias, &key).await;
        mine.insert(alias);
    }
    let mut seen = Vec::new();
    let mut marker = None;
    let mut pages = 0;
    loop {
        pages += 1;
        assert!(
            pages <= 10,
            "ListAliases with Limit 1 over 3 aliases does not end"
        );
        let out = client
            .list_aliases()
            .key_id(&key)
            .limit(1)
            .set_marker(marker)
            .send()
            .await
            .unwrap_or_else(|e| panic!("ListAliases Limit 1: {}", DisplayErrorContext(e)));
        assert!(out.aliases().len() <= 1, "{:?}", out.aliases());
        seen.extend(
            out.aliases()
                .iter()
                .filter_map(|a| a.alias_name().map(str::to_owned)),
        );
        if !out.truncated() {
            break;
        }
        marker = Some(
            out.next_marker()
                .expect("a truncated page has NextMarker")
                .to_owned(),
        );
    }
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert_eq!(seen.into_iter().collect::<HashSet<_>>(), mine);
}
