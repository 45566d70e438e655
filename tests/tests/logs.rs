//! Logs an operator's tools can read: with `--log-format json` every line `ekms dev` writes
//! (its own messages, its children's logs on the stderr they share with it, and the lines it
//! forwards from their stdout) is one JSON object; each API request has one line carrying the
//! request id the client received (`x-amzn-RequestId`), which is also its audit record's
//! `requestID`. In text mode, written to a file, no line carries a terminal colour code.

use std::time::{Duration, Instant};

use aws_sdk_kms::operation::RequestId as _;
use ekms_tests::{DevOptions, Ekms};

/// Every complete line of `ekms dev`'s output so far (a line being written is left out).
fn complete_lines(ekms: &Ekms) -> Vec<String> {
    let log = ekms.log();
    let mut lines: Vec<String> = log.split('\n').map(str::to_owned).collect();
    // The text after the last newline is a line still being written (or nothing).
    lines.pop();
    lines
}

/// The JSON log line whose `request_id` is `id`, waited for (bounded).
fn request_line(ekms: &Ekms, id: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let found = complete_lines(ekms).into_iter().find_map(|line| {
            let value: serde_json::Value = serde_json::from_str(&line).ok()?;
            (value["request_id"] == id).then_some(value)
        });
        if let Some(value) = found {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "no log line with request_id {id}; the log:\n{}",
            ekms.log_tail(40)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The audit record whose `requestID` is `id`, waited for (bounded: a refused request's
/// record rides with the next commit).
fn audit_record(ekms: &Ekms, id: &str) -> serde_json::Value {
    let file = ekms.data_dir().join("store").join("audit.jsonl");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        let found = text.lines().find_map(|line| {
            let value: serde_json::Value = serde_json::from_str(line).ok()?;
            (value["type"] == "record" && value["record"]["requestID"] == id)
                .then(|| value["record"].clone())
        });
        if let Some(record) = found {
            return record;
        }
        assert!(
            Instant::now() < deadline,
            "no audit record with requestID {id} in {}",
            file.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test]
async fn json_logs_carry_the_request_id_the_client_and_the_audit_record_have() {
    let ekms = Ekms::start_with(&DevOptions {
        extra_args: vec!["--log-format".to_owned(), "json".to_owned()],
        ..DevOptions::default()
    });
    let client = ekms.client().await;

    let key = ekms_tests::create_key(&client).await;
    let encrypted = client
        .encrypt()
        .key_id(&key)
        .plaintext(aws_sdk_kms::primitives::Blob::new(b"never logged".to_vec()))
        .send()
        .await
        .expect("Encrypt");
    let ok_id = encrypted
        .request_id()
        .expect("the answer carries x-amzn-RequestId")
        .to_owned();
    let missing = client
        .describe_key()
        .key_id("alias/not-there")
        .send()
        .await
        .expect_err("DescribeKey of a missing alias");
    let err_id = missing
        .request_id()
        .expect("the error answer carries x-amzn-RequestId")
        .to_owned();
    assert_ne!(ok_id, err_id);

    let line = request_line(&ekms, &ok_id);
    assert_eq!(line["operation"], "Encrypt", "{line}");
    assert_eq!(line["status"], 200, "{line}");
    assert!(line.get("error_code").is_none(), "{line}");
    assert!(line["duration_us"].is_u64(), "{line}");
    assert_eq!(line["target"], "ekms::request", "{line}");
    let record = audit_record(&ekms, &ok_id);
    assert_eq!(record["eventName"], "Encrypt");

    let line = request_line(&ekms, &err_id);
    assert_eq!(line["operation"], "DescribeKey", "{line}");
    assert_eq!(line["status"], 400, "{line}");
    assert_eq!(line["error_code"], "NotFoundException", "{line}");
    let record = audit_record(&ekms, &err_id);
    assert_eq!(record["errorCode"], "NotFoundException");

    // Every line so far, from all three processes, is one JSON object.
    let lines = complete_lines(&ekms);
    let mut targets = std::collections::BTreeSet::new();
    for line in &lines {
        let value: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}; the log:\n{}", lines.join("\n")));
        assert!(value.is_object(), "{line}");
        assert!(
            value["timestamp"].is_string() && value["level"].is_string(),
            "{line}"
        );
        if let Some(target) = value["target"].as_str() {
            targets.insert(target.split("::").next().unwrap_or_default().to_owned());
        }
    }
    for process in ["ekms_parent", "ekms_enclave", "ekms"] {
        assert!(
            targets.contains(process),
            "no line from {process}: {targets:?}"
        );
    }
    let log = lines.join("\n");
    assert!(
        log.contains("ekms dev is ready"),
        "the ready message is a log event too"
    );
    assert!(!log.contains("never logged"), "a plaintext reached the log");
}

#[test]
fn text_logs_written_to_a_file_carry_no_colour_codes() {
    let ekms = Ekms::shared();
    let log = ekms.log();
    assert!(log.contains("INFO"), "{log}");
    assert!(
        !log.contains('\u{1b}'),
        "an ANSI escape in a log written to a file:\n{log}"
    );
}
