//! The embedded store's audit log rotated and shipped, end to end: with a small
//! `--audit-max-bytes` a run writes several gzip files that `ekms audit verify DIR` checks as
//! one log (and a removed middle file is named); `--expect-pcrs` takes several images;
//! `ekms audit tail DIR --follow --from SEQ --json` streams every line from SEQ on across
//! rotations; `ekms audit prune` removes only verified old files and leaves what verifies; and a full audit disk (a small tmpfs) refuses commits without losing anything
//! acknowledged, and serves again by itself once space is freed.

use std::collections::BTreeSet;
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_kms::operation::RequestId as _;
use aws_sdk_kms::primitives::Blob;
use ekms_tests::{bin_dir, create_key, ekms_cli, CliOutput, Deployment};
use serde_json::Value;

/// `ekms audit verify PATH --expect-pcrs ... --root ...`.
fn verify(deployment: &Deployment, path: &Path, pcrs: &[PathBuf]) -> CliOutput {
    let mut args: Vec<std::ffi::OsString> = vec!["audit".into(), "verify".into(), path.into()];
    for file in pcrs {
        args.extend(["--expect-pcrs".into(), file.clone().into_os_string()]);
    }
    args.extend(["--root".into(), deployment.root().into_os_string()]);
    ekms_cli(args)
}

/// The names of the rotated, compressed files in `dir`, in order.
fn rotated(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("the data dir")
        .map(|e| {
            e.expect("an entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|n| n.starts_with("audit-") && n.ends_with(".jsonl.gz"))
        .collect();
    names.sort();
    names
}

/// Every line of the log in `dir`, as `ekms audit tail DIR --json` prints it.
fn all_lines(dir: &Path) -> Vec<Value> {
    let out = ekms_cli([
        std::ffi::OsString::from("audit"),
        "tail".into(),
        dir.into(),
        "--json".into(),
    ])
    .ok();
    out.stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect()
}

/// `n` Encrypt requests with pauses, so that checkpoints fall between them; their request ids.
async fn traffic(client: &aws_sdk_kms::Client, key: &str, n: usize) -> Vec<String> {
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        let out = client
            .encrypt()
            .key_id(key)
            .plaintext(Blob::new(format!("rotation {i}").into_bytes()))
            .send()
            .await
            .unwrap_or_else(|e| panic!("Encrypt: {}", aws_sdk_kms::error::DisplayErrorContext(e)));
        ids.push(out.request_id().expect("a request id").to_owned());
        if i % 10 == 9 {
            tokio::time::sleep(Duration::from_millis(60)).await;
        }
    }
    // Let the last records be checkpointed and the last rotated file compressed.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    ids
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rotated_log_verifies_whole_and_a_missing_file_is_named() {
    let mut deployment = Deployment::new().with_parent_args(["--audit-max-bytes", "16K"]);
    deployment.start();
    let (id, secret) = deployment.init_1_of_1();
    let client = deployment.client(&id, &secret);
    let key = create_key(&client).await;
    let acked = traffic(&client, &key, 120).await;

    let dir = deployment.store_dir();
    let files = rotated(&dir);
    assert!(files.len() >= 4, "several rotated files: {files:?}");
    let out = verify(&deployment, &dir, &[deployment.pcrs()]).ok();
    let report = out.json();
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(
        report["files"].as_array().map(Vec::len),
        Some(files.len() + 1),
        "{report}"
    );
    // Every acknowledged request is in the log, across its files.
    let logged: BTreeSet<String> = all_lines(&dir)
        .iter()
        .filter_map(|l| l["record"]["requestID"].as_str().map(str::to_owned))
        .collect();
    let lost: Vec<&String> = acked.iter().filter(|id| !logged.contains(*id)).collect();
    assert!(lost.is_empty(), "acknowledged but not in the log: {lost:?}");

    // A log spanning an image upgrade: each attestation must match one of the PCR files.
    let other = deployment.dir().join("other-pcrs.json");
    std::fs::write(
        &other,
        serde_json::json!({ "PCR0": "11".repeat(48), "PCR1": "22".repeat(48), "PCR2": "33".repeat(48) })
            .to_string(),
    )
    .expect("writing a PCR file");
    verify(&deployment, &dir, &[other.clone(), deployment.pcrs()]).ok();
    let refused = verify(&deployment, &dir, &[other]);
    assert!(!refused.success(), "{refused:?}");
    assert!(
        refused
            .stderr
            .contains("attestation document does not verify"),
        "{}",
        refused.stderr
    );

    // A copy of the set without a file in the middle: refused, naming it.
    let copy = deployment.dir().join("copy");
    std::fs::create_dir(&copy).expect("a dir");
    for entry in std::fs::read_dir(&dir).expect("the data dir") {
        let entry = entry.expect("an entry");
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("audit") {
            std::fs::copy(entry.path(), copy.join(&name)).expect("copying");
        }
    }
    let removed = &files[files.len() / 2];
    std::fs::remove_file(copy.join(removed)).expect("removing");
    let out = verify(&deployment, &copy, &[deployment.pcrs()]);
    assert!(!out.success(), "verified without {removed}: {out:?}");
    assert!(
        out.stderr.contains(&format!("the file {removed}"))
            && out.stderr.contains("missing between"),
        "expected the refusal to name {removed}: {}",
        out.stderr
    );

    // Retention refuses a set that does not verify, and removes nothing from it.
    let before = rotated(&copy);
    let out = prune(&deployment, &copy, &[]);
    assert!(
        !out.success() && out.stderr.contains("missing between"),
        "{out:?}"
    );
    assert_eq!(rotated(&copy), before);

    // Retention on the live directory: a dry run removes nothing; then every rotated file but
    // the newest goes, the rest verifies from the marker (only when told), and the parent
    // goes on rotating.
    let dry = prune(&deployment, &dir, &["--dry-run"]).ok().json();
    assert_eq!(
        dry["removed"].as_array().map(Vec::len),
        Some(files.len() - 1),
        "{dry}"
    );
    assert_eq!(rotated(&dir), files);
    let report = prune(&deployment, &dir, &[]).ok().json();
    assert_eq!(
        report["firstKept"],
        files[files.len() - 1].as_str(),
        "{report}"
    );
    assert_eq!(rotated(&dir), files[files.len() - 1..]);
    let out = verify(&deployment, &dir, &[deployment.pcrs()]);
    assert!(
        !out.success() && out.stderr.contains("--allow-pruned"),
        "{out:?}"
    );
    let mut args: Vec<std::ffi::OsString> =
        vec!["audit".into(), "verify".into(), dir.clone().into()];
    args.extend([
        "--allow-pruned".into(),
        "--expect-pcrs".into(),
        deployment.pcrs().into_os_string(),
        "--root".into(),
        deployment.root().into_os_string(),
    ]);
    let report = ekms_cli(args.clone()).ok().json();
    assert!(
        report["pruned"]["chains"][0]["seq"].as_u64() > Some(1),
        "{report}"
    );
    traffic(&client, &key, 30).await;
    assert!(rotated(&dir).len() > 1, "rotation goes on after a prune");
    ekms_cli(args).ok();
}

/// `ekms audit prune DIR --older-than 0 --expect-pcrs ... --root ...`, plus `extra`.
fn prune(deployment: &Deployment, dir: &Path, extra: &[&str]) -> CliOutput {
    let mut args: Vec<std::ffi::OsString> = vec!["audit".into(), "prune".into(), dir.into()];
    args.extend([
        "--older-than".into(),
        "0".into(),
        "--expect-pcrs".into(),
        deployment.pcrs().into_os_string(),
        "--root".into(),
        deployment.root().into_os_string(),
    ]);
    args.extend(extra.iter().map(Into::into));
    ekms_cli(args)
}

#[tokio::test(flavor = "multi_thread")]
async fn tail_follows_the_log_across_rotations_from_a_seq() {
    let mut deployment = Deployment::new().with_parent_args(["--audit-max-bytes", "8K"]);
    deployment.start();
    let (id, secret) = deployment.init_1_of_1();
    let client = deployment.client(&id, &secret);
    let key = create_key(&client).await;
    traffic(&client, &key, 30).await;
    let dir = deployment.store_dir();
    assert!(rotated(&dir).len() >= 2, "{:?}", rotated(&dir));

    let mut child = Command::new(bin_dir().join("ekms"))
        .args(["audit", "tail", "--follow", "--json", "--from", "5"])
        .arg(&dir)
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
    // More traffic while it follows: more rotations.
    let before = rotated(&dir).len();
    traffic(&client, &key, 30).await;
    assert!(rotated(&dir).len() > before, "no rotation while following");
    let last = all_lines(&dir)
        .iter()
        .filter(|l| l["type"] == "record")
        .filter_map(|l| l["seq"].as_u64())
        .max()
        .expect("records");
    let mut seqs = Vec::new();
    while seqs.last() != Some(&last) {
        let Ok(line) = rx.recv_timeout(Duration::from_secs(20)) else {
            break;
        };
        let value: Value = serde_json::from_str(&line).expect("each line is JSON");
        if value["type"] == "record" {
            seqs.push(value["seq"].as_u64().expect("a seq"));
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(seqs, (5..=last).collect::<Vec<u64>>());
}

/// `ekms dev --audit-max-bytes` passes the setting on to its parent: a short run rotates.
#[tokio::test(flavor = "multi_thread")]
async fn ekms_dev_rotates_with_audit_max_bytes() {
    let work = tempfile::tempdir().expect("a temporary directory");
    let data_dir = work.path().join("data");
    let ekms = ekms_tests::Ekms::start_with(&ekms_tests::DevOptions {
        data_dir: Some(data_dir.clone()),
        extra_args: vec!["--audit-max-bytes".to_owned(), "8K".to_owned()],
        ..ekms_tests::DevOptions::default()
    });
    let client = ekms.client().await;
    let key = create_key(&client).await;
    traffic(&client, &key, 30).await;
    // About 1 KiB per request: several rotations, compressed by the parent's checkpointer.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let files = rotated(&data_dir.join("store"));
        if files.len() >= 2 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "rotated files: {files:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A size-limited tmpfs mounted for the store, unmounted (and its mount point removed) when
/// dropped: declared before the deployment, so that it outlives the processes.
struct SmallFs {
    mount_point: tempfile::TempDir,
}

impl SmallFs {
    /// `None` (and why) when this machine cannot mount one (not root, or no tmpfs).
    fn mount(size: &str) -> Result<SmallFs, String> {
        let mount_point = tempfile::Builder::new()
            .prefix("ekms-smallfs-")
            .tempdir()
            .map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(mount_point.path())
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount -t tmpfs failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(SmallFs { mount_point })
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.mount_point.path()).status();
    }
}

/// What the clients saw.
#[derive(Default)]
struct Outcomes {
    /// Request ids of the answers that came back 200.
    acknowledged: Vec<String>,
    /// AWS error codes answered.
    aws_errors: Vec<String>,
    /// Requests that got no answer (their connection closed: nothing acknowledged).
    unanswered: usize,
}

async fn load(
    client: aws_sdk_kms::Client,
    key: String,
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Outcomes>>,
) {
    let mut n = 0u64;
    while !stop.load(Ordering::SeqCst) {
        n += 1;
        let answer = client
            .encrypt()
            .key_id(&key)
            .plaintext(Blob::new(format!("fill {n}").into_bytes()))
            .send()
            .await;
        let unanswered = {
            let mut seen = seen.lock().expect("lock");
            match answer {
                Ok(out) => {
                    seen.acknowledged
                        .push(out.request_id().expect("a request id").to_owned());
                    false
                }
                Err(aws_sdk_kms::error::SdkError::ServiceError(e)) => {
                    seen.aws_errors.push(
                        aws_sdk_kms::error::ProvideErrorMetadata::code(e.err())
                            .unwrap_or("(no code)")
                            .to_owned(),
                    );
                    false
                }
                Err(_) => {
                    seen.unanswered += 1;
                    true
                }
            }
        };
        if unanswered {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A full audit disk: the parent refuses the commit before writing anything of it and says it
/// is for now; the enclave drops what it answered in memory, takes the store's state again in a
/// new session and refuses requests with `DependencyTimeoutException` while the disk stays full
/// (clients get no answer or that error), and nothing acknowledged is missing from the log.
/// Neither process stops; once space is freed the enclave serves again by itself (no restart,
/// no custodian), its `Recover` record is in the log, and the whole log verifies.
#[tokio::test(flavor = "multi_thread")]
async fn a_full_audit_disk_fails_closed_loses_nothing_and_resumes_once_freed() {
    let small = match SmallFs::mount("24m") {
        Ok(small) => small,
        Err(why) => {
            eprintln!(
                "SKIPPED a_full_audit_disk_fails_closed_loses_nothing_and_resumes_once_freed: \
                 cannot create a small file system ({why}); run as root where tmpfs mounts"
            );
            return;
        }
    };
    let store = small.mount_point.path().join("store");
    std::fs::create_dir(&store).expect("the store dir");
    let mut deployment = Deployment::new().with_parent_args(["--audit-min-free-bytes", "8M"]);
    std::os::unix::fs::symlink(&store, deployment.store_dir()).expect("linking the store dir");
    deployment.start();
    let (id, secret) = deployment.init_1_of_1();
    let client = deployment.client(&id, &secret);
    let key = create_key(&client).await;

    // Leave about 1.5 MiB above the reserve: a few thousand requests' records.
    let free = free_bytes(&store);
    let ballast = store.join("ballast");
    let fill = free.saturating_sub(8 * 1024 * 1024 + 1536 * 1024);
    std::fs::write(&ballast, vec![0u8; usize::try_from(fill).expect("fits")]).expect("ballast");

    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Outcomes::default()));
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            tokio::spawn(load(
                deployment.client(&id, &secret),
                key.clone(),
                stop.clone(),
                seen.clone(),
            ))
        })
        .collect();
    // Load until the enclave refuses with the AWS error that says so (the disk is full).
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while std::time::Instant::now() < deadline
        && !seen
            .lock()
            .expect("lock")
            .aws_errors
            .iter()
            .any(|code| code == "DependencyTimeoutException")
    {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop.store(true, Ordering::SeqCst);
    for task in tasks {
        task.await.expect("a client task");
    }
    let enclave = deployment.enclave.as_mut().expect("an enclave");
    assert!(
        enclave.running(),
        "the enclave keeps running on a full disk; its log:\n{}",
        enclave.log_tail(20)
    );
    let parent = deployment.parent.as_mut().expect("a parent");
    assert!(parent.running(), "the parent keeps running");
    assert!(
        parent.log_text().contains("audit log's disk")
            && parent.log_text().contains("commit refused"),
        "the parent says why: {}",
        parent.log_tail(20)
    );
    let outcomes = std::mem::take(&mut *seen.lock().expect("lock"));
    eprintln!(
        "before the disk filled: {} acknowledged; then {} AWS errors {:?}, {} unanswered",
        outcomes.acknowledged.len(),
        outcomes.aws_errors.len(),
        outcomes.aws_errors.iter().collect::<BTreeSet<_>>(),
        outcomes.unanswered
    );
    assert!(outcomes.acknowledged.len() > 10, "the load ran");
    assert!(
        outcomes
            .aws_errors
            .iter()
            .any(|code| code == "DependencyTimeoutException"),
        "requests were refused with DependencyTimeoutException once the disk was full: {:?}",
        outcomes.aws_errors
    );

    // Still full: a request is refused, with the AWS error, and nothing is acknowledged.
    let refused = client
        .encrypt()
        .key_id(&key)
        .plaintext(Blob::new(b"while full".to_vec()))
        .send()
        .await;
    match refused {
        Err(aws_sdk_kms::error::SdkError::ServiceError(e)) => {
            let code = aws_sdk_kms::error::ProvideErrorMetadata::code(e.err());
            assert_eq!(code, Some("DependencyTimeoutException"), "{e:?}");
        }
        other => panic!("expected DependencyTimeoutException while full, got {other:?}"),
    }

    // Space freed: the enclave serves again by itself, with neither process restarted.
    std::fs::remove_file(&ballast).expect("removing the ballast");
    let resumed_by = std::time::Instant::now() + Duration::from_secs(60);
    let after = loop {
        let answer = client
            .encrypt()
            .key_id(&key)
            .plaintext(Blob::new(b"after".to_vec()))
            .send()
            .await;
        match answer {
            Ok(out) => {
                let mut ids = vec![out.request_id().expect("a request id").to_owned()];
                ids.extend(traffic(&client, &key, 5).await);
                break ids;
            }
            Err(e) => {
                assert!(
                    std::time::Instant::now() < resumed_by,
                    "did not serve again within 60 s of space freed: {e:?}"
                );
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    };
    assert!(
        deployment.enclave.as_mut().is_some_and(|e| e.running()),
        "the same enclave process serves again"
    );

    // Nothing acknowledged is missing, the recovery is on the record, and the log verifies.
    let lines = all_lines(&store);
    let logged: BTreeSet<String> = lines
        .iter()
        .filter_map(|l| l["record"]["requestID"].as_str().map(str::to_owned))
        .collect();
    let lost: Vec<&String> = outcomes
        .acknowledged
        .iter()
        .chain(&after)
        .filter(|id| !logged.contains(*id))
        .collect();
    assert!(lost.is_empty(), "acknowledged but not in the log: {lost:?}");
    assert!(
        lines.iter().any(|l| l["record"]["eventName"] == "Recover"),
        "the recovery is on the record"
    );
    verify(&deployment, &store, &[deployment.pcrs()]).ok();
    drop(deployment);
    drop(small);
}

fn free_bytes(dir: &Path) -> u64 {
    let out = Command::new("df")
        .args(["--output=avail", "-B1"])
        .arg(dir)
        .output()
        .expect("df");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .expect("df's answer")
}

/// `kill -9` of the parent while it rotates under load: at restart the journal replays lines
/// that may already be in rotated files (their offsets are the whole log's), and half-done
/// compressions are finished; every acknowledged request is in the log, which verifies whole.
#[tokio::test(flavor = "multi_thread")]
async fn kill_9_of_the_parent_while_rotating_loses_nothing_acknowledged() {
    let mut deployment = Deployment::new().with_parent_args(["--audit-max-bytes", "8K"]);
    deployment.start();
    let (id, secret) = deployment.init_1_of_1();
    let client = deployment.client(&id, &secret);
    let key = create_key(&client).await;

    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Outcomes::default()));
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            tokio::spawn(load(
                deployment.client(&id, &secret),
                key.clone(),
                stop.clone(),
                seen.clone(),
            ))
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(3)).await;
    deployment.parent.as_mut().expect("a parent").kill9();
    stop.store(true, Ordering::SeqCst);
    for task in tasks {
        task.await.expect("a client task");
    }
    let acknowledged = std::mem::take(&mut seen.lock().expect("lock").acknowledged);
    assert!(
        acknowledged.len() > 50,
        "the load ran: {}",
        acknowledged.len()
    );

    // The enclave stops with its store channel; both come back, and the enclave is unsealed.
    if let Some(mut enclave) = deployment.enclave.take() {
        let _ = tokio::task::block_in_place(|| enclave.wait_exit(Duration::from_secs(20)));
    }
    deployment.start();
    let out = deployment.unseal();
    assert!(out.success(), "unseal after the restart: {out:?}");
    let after = traffic(&client, &key, 5).await;

    let dir = deployment.store_dir();
    assert!(rotated(&dir).len() >= 2, "{:?}", rotated(&dir));
    let logged: BTreeSet<String> = all_lines(&dir)
        .iter()
        .filter_map(|l| l["record"]["requestID"].as_str().map(str::to_owned))
        .collect();
    let lost: Vec<&String> = acknowledged
        .iter()
        .chain(&after)
        .filter(|id| !logged.contains(*id))
        .collect();
    assert!(lost.is_empty(), "acknowledged but not in the log: {lost:?}");
    verify(&deployment, &dir, &[deployment.pcrs()]).ok();
}
