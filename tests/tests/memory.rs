//! The memory budget end to end: `ekms dev --enclave-memory-mib 256` under a flood of large
//! keys refuses with LimitExceededException while the enclave's resident memory stays under
//! 256 MiB, and keeps serving. (Before, only a total key count bounded the state: keys with a
//! 32 KiB policy, an 8 KiB description and 50 tags took an enclave past 384 MiB.)

use aws_sdk_kms::types::Tag;
use ekms_tests::{error_code, DevOptions, Ekms};

/// The resident memory of the `ekms-enclave` process serving `data_dir`, in bytes.
fn enclave_rss(data_dir: &std::path::Path) -> u64 {
    let needle = data_dir.to_string_lossy().into_owned();
    for entry in std::fs::read_dir("/proc").expect("/proc") {
        let Ok(entry) = entry else { continue };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains("ekms-enclave") && cmdline.contains(&needle) {
            let status = std::fs::read_to_string(entry.path().join("status")).unwrap_or_default();
            let kib: u64 = status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().strip_suffix("kB"))
                .and_then(|v| v.trim().parse().ok())
                .expect("VmRSS");
            return kib * 1024;
        }
    }
    panic!("no ekms-enclave process for {needle}");
}

fn large_policy() -> String {
    let mut statements = vec![serde_json::json!({
        "Effect": "Allow",
        "Principal": {"AWS": "arn:aws:iam::111122223333:root"},
        "Action": "kms:*",
        "Resource": "*",
    })];
    for i in 0..14 {
        statements.push(serde_json::json!({
            "Sid": format!("s{i}{}", "a".repeat(1990)),
            "Effect": "Allow",
            "Principal": {"AWS": "arn:aws:iam::111122223333:root"},
            "Action": "kms:DescribeKey",
            "Resource": "*",
        }));
    }
    serde_json::json!({"Version": "2012-10-17", "Statement": statements}).to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flood_of_large_keys_is_refused_within_the_memory_budget() {
    const MIB: u64 = 1024 * 1024;
    let ekms = Ekms::start_with(&DevOptions {
        enclave_memory_mib: Some(256),
        ..DevOptions::default()
    });
    let client = ekms.client().await;
    let policy = large_policy();
    let tags: Vec<Tag> = (0..50)
        .map(|i| {
            Tag::builder()
                .tag_key(format!("{i:0>120}"))
                .tag_value("v".repeat(250))
                .build()
                .expect("a tag")
        })
        .collect();
    let mut made = 0;
    let refused = loop {
        let result = client
            .create_key()
            .policy(&policy)
            .description("d".repeat(8000))
            .set_tags(Some(tags.clone()))
            .send()
            .await;
        match result {
            Ok(_) => made += 1,
            Err(e) => break error_code(e),
        }
        assert!(made < 20_000, "no refusal after {made} keys");
    };
    assert_eq!(refused, "LimitExceededException");
    assert!(made > 100, "refused after only {made} keys");
    let rss = enclave_rss(&ekms.data_dir());
    eprintln!("refused after {made} keys; enclave RSS {} MiB", rss / MIB);
    assert!(
        rss < 256 * MIB,
        "the enclave holds {} MiB after {made} keys",
        rss / MIB
    );
    // Still serving: cryptography, and a key deleted to make room.
    let keys = client.list_keys().limit(2).send().await.expect("ListKeys");
    let key = keys.keys()[0].key_id().expect("a key id").to_owned();
    client
        .encrypt()
        .key_id(&key)
        .plaintext(aws_sdk_kms::primitives::Blob::new(b"still here".to_vec()))
        .send()
        .await
        .expect("Encrypt at the budget");
    client
        .schedule_key_deletion()
        .key_id(&key)
        .pending_window_in_days(7)
        .send()
        .await
        .expect("ScheduleKeyDeletion at the budget");
}
