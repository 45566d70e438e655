//! The tamper-evident audit log, end to end: real requests through `ekms dev` write
//! `DATA_DIR/store/audit.jsonl`; `ekms audit verify` passes on it as written and names each
//! kind of tampering on a copy (a changed field, a removed, inserted or reordered record, a
//! forged checkpoint signature, a missing attestation, a cut-off tail — the last caught only
//! against the enclave's signed head with `--endpoint`); `ekms audit tail` prints and follows
//! records; and no plaintext, data key or secret access key reaches any file.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use aws_sdk_kms::error::DisplayErrorContext;
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::DataKeySpec;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ekms_tests::{bin_dir, create_key, ekms_cli, CliOutput, Ekms, SignWith};
use serde_json::Value;

/// The audit log of `ekms`, once it has settled: under load the enclave signs a checkpoint at
/// most every 50 ms and covers the last records with an idle checkpoint shortly after, so wait
/// for that before reading the file.
fn audit_file(ekms: &Ekms) -> PathBuf {
    std::thread::sleep(std::time::Duration::from_millis(400));
    ekms.data_dir().join("store").join("audit.jsonl")
}

/// `ekms audit verify FILE --expect-pcrs DATA_DIR/pcrs.json --root DATA_DIR/mock-ca/root.pem`,
/// plus `extra`.
fn verify(ekms: &Ekms, file: &Path, extra: &[&str]) -> CliOutput {
    let data = ekms.data_dir();
    let mut args: Vec<std::ffi::OsString> = vec!["audit".into(), "verify".into(), file.into()];
    args.extend([
        "--expect-pcrs".into(),
        data.join("pcrs.json").into_os_string(),
        "--root".into(),
        data.join("mock-ca").join("root.pem").into_os_string(),
    ]);
    args.extend(extra.iter().map(Into::into));
    ekms_cli(args)
}

/// Asserts that verification failed and names `expected` (in stderr).
fn assert_refused(out: &CliOutput, expected: &str) {
    assert!(
        !out.success(),
        "expected a refusal naming {expected:?}, but it verified: {out:?}"
    );
    assert!(
        out.stderr.contains(expected),
        "expected {expected:?} in the refusal, got: {}",
        out.stderr
    );
}

/// Real traffic: keys, encryption with contexts, a wrong context, a refused signature.
async fn traffic(ekms: &Ekms) {
    let client = ekms.client().await;
    let a = create_key(&client).await;
    let b = create_key(&client).await;
    for (key, tenant) in [(&a, "1"), (&b, "2"), (&a, "3")] {
        let blob = client
            .encrypt()
            .key_id(key)
            .plaintext(Blob::new(b"audit traffic".to_vec()))
            .encryption_context("tenant", tenant)
            .send()
            .await
            .unwrap_or_else(|e| panic!("Encrypt: {}", DisplayErrorContext(e)))
            .ciphertext_blob()
            .expect("CiphertextBlob")
            .clone();
        client
            .decrypt()
            .ciphertext_blob(blob.clone())
            .encryption_context("tenant", tenant)
            .send()
            .await
            .unwrap_or_else(|e| panic!("Decrypt: {}", DisplayErrorContext(e)));
        // The wrong context: refused, and recorded as refused.
        assert!(client
            .decrypt()
            .ciphertext_blob(blob)
            .encryption_context("tenant", "other")
            .send()
            .await
            .is_err());
        // Checkpoints are signed at most every 50 ms: pause so that this traffic spans
        // several, as a long-running service's log does.
        tokio::time::sleep(std::time::Duration::from_millis(120)).await;
    }
    let refused = ekms
        .raw(
            Some("TrentService.ListKeys"),
            b"{}",
            SignWith::Custom {
                access_key_id: ekms.access_key_id.clone(),
                secret: "not-the-secret".to_owned(),
                time: SystemTime::now(),
            },
        )
        .await;
    assert_eq!(refused.status, 400, "a wrong secret is refused");
}

fn lines_of(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
        .lines()
        .map(str::to_owned)
        .collect()
}

fn kind(line: &str) -> String {
    let v: Value = serde_json::from_str(line).expect("every log line is JSON");
    v["type"].as_str().unwrap_or_default().to_owned()
}

fn seq(line: &str) -> u64 {
    let v: Value = serde_json::from_str(line).expect("every log line is JSON");
    v["seq"].as_u64().expect("a seq")
}

/// Indexes (0-based) of the lines of `kind`.
fn indexes(lines: &[String], of: &str) -> Vec<usize> {
    (0..lines.len())
        .filter(|i| kind(&lines[*i]) == of)
        .collect()
}

fn write_copy(dir: &Path, name: &str, lines: &[String]) -> PathBuf {
    let path = dir.join(name);
    let mut text = lines.join("\n");
    text.push('\n');
    std::fs::write(&path, text).expect("writing a tampered copy");
    path
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_passes_on_the_real_log_and_names_each_kind_of_tampering() {
    let ekms = Ekms::start();
    traffic(&ekms).await;
    let log = audit_file(&ekms);
    let lines = lines_of(&log);
    let records = indexes(&lines, "record");
    let checkpoints = indexes(&lines, "checkpoint");
    assert!(records.len() >= 12, "every request is recorded: {lines:#?}");
    assert_eq!(indexes(&lines, "attestation").len(), 1, "one boot, one key");
    let denied = lines.iter().filter(|l| l.contains("\"errorCode\"")).count();
    assert!(denied >= 4, "refusals are recorded too ({denied})");

    // As written: passes, pinned, and reaches the enclave's head.
    let ok = verify(&ekms, &log, &["--endpoint", &ekms.endpoint]).ok();
    let report = ok.json();
    assert_eq!(report["records"].as_u64(), Some(records.len() as u64));
    assert_eq!(
        report["checkpoints"].as_u64(),
        Some(checkpoints.len() as u64)
    );
    assert_eq!(
        report["lastSeq"].as_u64(),
        Some(seq(&lines[records[records.len() - 1]]))
    );
    assert_eq!(report["pcrsPinned"], Value::Bool(true));
    assert_eq!(report["enclaveHead"]["reached"], Value::Bool(true));
    // Without --expect-pcrs: the chain to the root is checked, and it says the PCRs are not.
    let data = ekms.data_dir();
    let mut args: Vec<std::ffi::OsString> = vec!["audit".into(), "verify".into()];
    args.extend([
        log.clone().into_os_string(),
        "--root".into(),
        data.join("mock-ca").join("root.pem").into_os_string(),
    ]);
    let unpinned = ekms_cli(args).ok();
    assert!(unpinned.stdout.contains("PCRs NOT checked"), "{unpinned:?}");
    // Against the AWS root (the default), the mock attestation is refused.
    let aws = ekms_cli([
        std::ffi::OsString::from("audit"),
        "verify".into(),
        log.clone().into_os_string(),
    ]);
    let a = indexes(&lines, "attestation")[0];
    assert_refused(
        &aws,
        &format!("line {}: attestation document does not verify", a + 1),
    );

    let dir = tempfile::tempdir().expect("a temp dir");
    let tamper = |name: &str, edit: &dyn Fn(&mut Vec<String>)| {
        let mut copy = lines.clone();
        edit(&mut copy);
        write_copy(dir.path(), name, &copy)
    };

    // A changed field in a record.
    let i = records[3];
    let s = seq(&lines[i]);
    let altered = tamper("altered", &|l| {
        let mut v: Value = serde_json::from_str(&l[i]).expect("JSON");
        v["record"]["requestParameters"]["encryptionContext"]["tenant"] = "9".into();
        l[i] = v.to_string();
    });
    assert_refused(
        &verify(&ekms, &altered, &[]),
        &format!(
            "line {}: record seq {s} altered (hash does not match",
            i + 1
        ),
    );

    // The same, with the hash recomputed: the next record no longer chains onto it.
    let rehashed = tamper("rehashed", &|l| {
        let mut v: Value = serde_json::from_str(&l[i]).expect("JSON");
        v["record"]["eventName"] = "ListKeys".into();
        let prev: [u8; 32] = hex_32(v["prev"].as_str().expect("prev"));
        let hash = ekms_shared::audit_format::record_hash(&prev, s, &v["record"]);
        v["hash"] = hex_encode(&hash).into();
        l[i] = v.to_string();
    });
    let next = &lines[i + 1];
    let expected = if kind(next) == "record" {
        format!(
            "line {}: record seq {} does not chain onto the previous record: record seq {s} \
             (line {}) was altered or replaced",
            i + 2,
            s + 1,
            i + 1
        )
    } else {
        format!(
            "line {}: checkpoint seq {s} does not match record seq {s} (line {}): the record \
             was altered or replaced",
            i + 2,
            i + 1
        )
    };
    assert_refused(&verify(&ekms, &rehashed, &[]), &expected);

    // A removed record line.
    let j = records[5];
    let s = seq(&lines[j]);
    let removed = tamper("removed", &|l| {
        l.remove(j);
    });
    assert_refused(&verify(&ekms, &removed, &[]), "removed");
    assert_refused(
        &verify(&ekms, &removed, &[]),
        &format!("line {}: record(s) removed", j + 1),
    );
    let _ = s;

    // An inserted record: a copy of an earlier one.
    let k = records[6];
    let inserted = tamper("inserted", &|l| {
        let copy = l[records[2]].clone();
        l.insert(k, copy);
    });
    assert_refused(
        &verify(&ekms, &inserted, &[]),
        &format!(
            "line {}: record seq {} inserted or reordered",
            k + 1,
            seq(&lines[records[2]])
        ),
    );

    // Two records swapped.
    let (x, y) = (records[7], records[8]);
    let swapped = tamper("swapped", &|l| l.swap(x, y));
    assert_refused(
        &verify(&ekms, &swapped, &[]),
        &format!(
            "line {}: record seq {} inserted or reordered",
            x + 1,
            seq(&lines[y])
        ),
    );

    // A checkpoint signature changed (another checkpoint's: valid DER, wrong message).
    let c = checkpoints[2];
    let forged = tamper("forged", &|l| {
        let other: Value = serde_json::from_str(&l[checkpoints[1]]).expect("JSON");
        let mut v: Value = serde_json::from_str(&l[c]).expect("JSON");
        v["signature"] = other["signature"].clone();
        l[c] = v.to_string();
    });
    assert_refused(
        &verify(&ekms, &forged, &[]),
        &format!(
            "line {}: checkpoint seq {} signature invalid",
            c + 1,
            seq(&lines[c])
        ),
    );
    // A flipped bit in a signature.
    let flipped = tamper("flipped", &|l| {
        let mut v: Value = serde_json::from_str(&l[c]).expect("JSON");
        let mut sig = B64
            .decode(v["signature"].as_str().expect("signature"))
            .expect("base64");
        let last = sig.len() - 1;
        sig[last] ^= 1;
        v["signature"] = B64.encode(sig).into();
        l[c] = v.to_string();
    });
    assert_refused(&verify(&ekms, &flipped, &[]), "signature invalid");

    // The attestation line removed: the first checkpoint is not attested.
    let unattested = tamper("unattested", &|l| {
        l.remove(a);
    });
    assert_refused(&verify(&ekms, &unattested, &[]), "not attested");

    // Records appended after the last checkpoint (no signature covers them).
    let uncovered = tamper("uncovered", &|l| {
        let last = l.len() - 1;
        l.truncate(last);
    });
    assert_refused(
        &verify(&ekms, &uncovered, &[]),
        "not covered by a signed checkpoint",
    );

    // A cut-off tail (whole commits dropped): self-consistent, so it verifies alone; only the
    // enclave's signed head shows the cut.
    let keep = checkpoints[checkpoints.len() - 3] + 1;
    let cut = tamper("cut", &|l| l.truncate(keep));
    let cut_seq = seq(&lines[keep - 1]);
    verify(&ekms, &cut, &[]).ok();
    assert_refused(
        &verify(&ekms, &cut, &["--endpoint", &ekms.endpoint]),
        &format!(
            "the file stops at seq {cut_seq} but the enclave's durable head is {}: its tail was cut",
            report["lastSeq"]
        ),
    );
}

fn hex_32(text: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).expect("hex");
    }
    out
}

fn hex_encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn tail_prints_and_follows_records() {
    let ekms = Ekms::start();
    let client = ekms.client().await;
    let key = create_key(&client).await;
    let log = audit_file(&ekms);
    let out = ekms_cli([
        std::ffi::OsString::from("audit"),
        "tail".into(),
        log.clone().into_os_string(),
    ])
    .ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 1, "{}", out.stdout);
    assert!(lines[0].starts_with("1 "), "{}", lines[0]);
    assert!(lines[0].contains(" CreateKey arn:aws:iam::111122223333:user/"));
    assert!(lines[0].ends_with(&format!(" - {}", ekms_tests::key_arn(&key))));

    // --follow: a new record shows up without restarting.
    let mut child = Command::new(bin_dir().join("ekms"))
        .args(["audit", "tail", "--follow"])
        .arg(&log)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting ekms audit tail --follow");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let first = rx.recv_timeout(Duration::from_secs(20));
    assert!(
        first.as_deref().is_ok_and(|l| l.contains("CreateKey")),
        "{first:?}"
    );
    let refused = client
        .describe_key()
        .key_id("alias/does-not-exist")
        .send()
        .await;
    assert!(refused.is_err());
    let next = rx.recv_timeout(Duration::from_secs(20));
    let _ = child.kill();
    let _ = child.wait();
    let next = next.expect("the followed record within 20 s");
    assert!(
        next.starts_with("2 ")
            && next.contains(" DescribeKey ")
            && next.contains("NotFoundException"),
        "{next}"
    );
}

/// Every regular file under `dir`, recursively.
fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let Ok(meta) = std::fs::symlink_metadata(entry.path()) else {
            continue;
        };
        if meta.is_dir() {
            files_under(&entry.path(), out);
        } else if meta.is_file() {
            out.push(entry.path());
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread")]
async fn no_plaintext_data_key_or_secret_reaches_any_file() {
    let ekms = Ekms::start();
    let client = ekms.client().await;
    let key = create_key(&client).await;
    let marker = ekms_tests::unique("MARKER-plaintext-ekms-audit").into_bytes();

    // Encrypt, decrypt, re-encrypt the marker; a refused request carrying it in Plaintext
    // (unknown key), and one with a wrong signature.
    let blob = client
        .encrypt()
        .key_id(&key)
        .plaintext(Blob::new(marker.clone()))
        .encryption_context("purpose", "secrecy")
        .send()
        .await
        .unwrap_or_else(|e| panic!("Encrypt: {}", DisplayErrorContext(e)))
        .ciphertext_blob()
        .expect("CiphertextBlob")
        .clone();
    let plain = client
        .decrypt()
        .ciphertext_blob(blob.clone())
        .encryption_context("purpose", "secrecy")
        .send()
        .await
        .unwrap_or_else(|e| panic!("Decrypt: {}", DisplayErrorContext(e)));
    assert_eq!(plain.plaintext().expect("Plaintext").as_ref(), &marker[..]);
    client
        .re_encrypt()
        .ciphertext_blob(blob)
        .source_encryption_context("purpose", "secrecy")
        .destination_key_id(&key)
        .send()
        .await
        .unwrap_or_else(|e| panic!("ReEncrypt: {}", DisplayErrorContext(e)));
    assert!(client
        .encrypt()
        .key_id("alias/no-such-alias")
        .plaintext(Blob::new(marker.clone()))
        .send()
        .await
        .is_err());
    let body = format!(
        r#"{{"KeyId":"{key}","Plaintext":"{}"}}"#,
        B64.encode(&marker)
    );
    let refused = ekms
        .raw(
            Some("TrentService.Encrypt"),
            body.as_bytes(),
            SignWith::Custom {
                access_key_id: ekms.access_key_id.clone(),
                secret: "wrong-secret".to_owned(),
                time: SystemTime::now(),
            },
        )
        .await;
    assert_eq!(refused.status, 400);
    // A data key: its plaintext must not reach any file either.
    let data_key = client
        .generate_data_key()
        .key_id(&key)
        .key_spec(DataKeySpec::Aes256)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GenerateDataKey: {}", DisplayErrorContext(e)))
        .plaintext()
        .expect("Plaintext")
        .as_ref()
        .to_vec();

    // Everything the requests left is on disk: the answers came after the commit.
    let data = ekms.data_dir();
    let root = data
        .parent()
        .expect("the data dir sits in the harness's temp dir");
    let audit = std::fs::read_to_string(audit_file(&ekms)).expect("audit.jsonl");
    assert!(audit.contains("\"Encrypt\"") && audit.contains("\"GenerateDataKey\""));
    let mut files = Vec::new();
    files_under(root, &mut files);
    assert!(
        files.iter().any(|f| f.ends_with("store/store.redb"))
            && files.iter().any(|f| f.ends_with("dev.log")),
        "the search covers the store and the logs: {files:?}"
    );
    let needles: Vec<(&str, Vec<u8>)> = vec![
        ("the marker plaintext", marker.clone()),
        (
            "the marker plaintext, base64",
            B64.encode(&marker).into_bytes(),
        ),
        ("the data key", data_key.clone()),
        ("the data key, base64", B64.encode(&data_key).into_bytes()),
        ("the data key, hex", hex_encode(&data_key).into_bytes()),
        (
            "the dev secret access key",
            ekms.secret.clone().into_bytes(),
        ),
    ];
    for file in &files {
        let bytes = std::fs::read(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        for (what, needle) in &needles {
            // `ekms dev` hands the dev principal's secret to its operator in this one file.
            if *what == "the dev secret access key" && file == &data.join("credentials") {
                continue;
            }
            assert!(
                !contains(&bytes, needle),
                "{what} appears in {}",
                file.display()
            );
        }
    }
}

fn restartable(dir: &Path) -> ekms_tests::DevOptions {
    ekms_tests::DevOptions {
        data_dir: Some(dir.to_path_buf()),
        ..ekms_tests::DevOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_spans_enclave_restarts() {
    let work = tempfile::tempdir().expect("a temp dir");
    let dir = work.path().join("dev");
    {
        let dev = Ekms::start_with(&restartable(&dir));
        create_key(&dev.client().await).await;
    }
    let dev = Ekms::start_with(&restartable(&dir));
    create_key(&dev.client().await).await;
    let log = audit_file(&dev);
    let report = verify(&dev, &log, &["--endpoint", &dev.endpoint])
        .ok()
        .json();
    assert_eq!(report["attestations"].as_u64(), Some(2), "{report}");
    assert_eq!(report["records"].as_u64(), Some(2), "{report}");
    assert_eq!(report["enclaveHead"]["seq"].as_u64(), Some(2), "{report}");
}

#[tokio::test(flavor = "multi_thread")]
/// Regression: right after a restart, before the new boot logged anything, the head was
/// signed with a key no attestation line binds yet, so `verify --endpoint` refused an
/// untouched log. The head answer now carries its own attestation document and signs the
/// caller's nonce under a label of its own (no checkpoint line can be replayed as a head).
async fn verify_endpoint_right_after_a_restart() {
    let work = tempfile::tempdir().expect("a temp dir");
    let dir = work.path().join("dev");
    {
        let dev = Ekms::start_with(&restartable(&dir));
        create_key(&dev.client().await).await;
    }
    let dev = Ekms::start_with(&restartable(&dir));
    let log = audit_file(&dev);
    verify(&dev, &log, &["--endpoint", &dev.endpoint]).ok();
}

/// Unsigned requests once wrote their logged parameters whole into the audit log, each with a
/// durable commit of its own: 100 of 60 KB grew the log by 6 MB. A refused request is now
/// recorded with its claimed access key, operation, error code and at most 1 KiB of
/// parameters, riding with the next commit; and the log still verifies.
#[tokio::test]
async fn a_flood_of_unsigned_requests_costs_the_log_little() {
    let ekms = Ekms::start();
    let client = ekms.client().await;
    let key = create_key(&client).await;
    let file = audit_file(&ekms);
    let before = std::fs::metadata(&file).expect("audit.jsonl").len();
    let description = "x".repeat(60 * 1024 - 200);
    let body = serde_json::json!({"KeyId": key, "Description": description}).to_string();
    for _ in 0..100 {
        let answer = ekms
            .raw(
                Some("TrentService.UpdateKeyDescription"),
                body.as_bytes(),
                SignWith::Unsigned,
            )
            .await;
        assert_eq!(answer.status, 400, "{answer:?}");
    }
    // Written within moments even with nothing else happening.
    std::thread::sleep(Duration::from_millis(500));
    let after = std::fs::metadata(audit_file(&ekms))
        .expect("audit.jsonl")
        .len();
    let grown = after - before;
    assert!(
        grown < 100 * 2048,
        "100 refused requests grew the log by {grown} bytes"
    );
    let lines = lines_of(&audit_file(&ekms));
    let refused: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("UpdateKeyDescription") && l.contains("MissingAuthenticationToken"))
        .collect();
    assert_eq!(refused.len(), 100, "each refusal is recorded");
    assert!(refused[0].contains("bytes, not recorded"), "{}", refused[0]);
    let out = verify(&ekms, &audit_file(&ekms), &[]);
    assert!(out.success(), "{out:?}");
}
