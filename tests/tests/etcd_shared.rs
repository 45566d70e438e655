//! Two enclaves on one etcd store: each commit is conditioned on the store's head, so an enclave
//! whose view the other moved past never gets an answer out; it stops, and after a restart and
//! an unseal it serves what the other committed.

use std::time::Duration;

use ekms_tests::etcd::EtcdServer;
use ekms_tests::{ekms_status, Deployment};

/// Bound for an enclave to stop after its commit is refused.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).expect("create dir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("dir entry");
        std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copy file");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_enclave_behind_the_store_answers_nothing_and_catches_up_after_a_restart() {
    let etcd = EtcdServer::start();
    let mut a = Deployment::new().with_store(etcd.url("shared"));
    a.start();
    let (id, secret) = a.init_1_of_1();
    let client_a = a.client(&id, &secret);
    let before = ekms_tests::create_key(&client_a).await;

    // B: a second enclave and parent on the same store, unsealed with the same custodian.
    let mut b = Deployment::new().with_store(etcd.url("shared"));
    copy_dir(&a.dir().join("init"), &b.dir().join("init"));
    copy_dir(&a.dir().join("custodian"), &b.dir().join("custodian"));
    b.start();
    let out = b.unseal();
    assert!(out.success(), "unsealing B: {out:?}");
    let client_b = b.client(&id, &secret);
    // B loaded A's key, and its answer's commit moves the store's head past A's view.
    client_b
        .describe_key()
        .key_id(&before)
        .send()
        .await
        .expect("B serves the key A made");

    // A is now behind: its CreateKey is computed on a state the store moved past, and its
    // commit is refused, so the answer never reaches the client, and A stops.
    let refused = client_a.create_key().send().await;
    assert!(refused.is_err(), "A answered on a stale base: {refused:?}");
    let enclave = a.enclave.as_mut().expect("A's enclave");
    let status = enclave.wait_exit(STOP_TIMEOUT);
    assert!(
        status.is_some(),
        "A's enclave kept running after its commit was refused"
    );
    let log = enclave.log_text();
    assert!(
        log.contains("but the store's last commit is"),
        "A's log does not name the conflict:\n{}",
        enclave.log_tail(20)
    );

    // B goes on, and A, restarted and unsealed, sees what B committed.
    let made_on_b = ekms_tests::create_key(&client_b).await;
    a.start_enclave();
    assert_eq!(ekms_status(&a.endpoint)["State"], "Sealed");
    let out = a.unseal();
    assert!(out.success(), "unsealing A again: {out:?}");
    for key in [&before, &made_on_b] {
        client_a
            .describe_key()
            .key_id(key)
            .send()
            .await
            .unwrap_or_else(|e| panic!("A does not see {key}: {e:?}"));
    }
}

/// Two members (`--member`) on one store: reads on both commit only their audit lines,
/// unconditionally, so neither conflicts with the other and each still builds its next change
/// on the store's head; the log holds one verified chain per member.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_read_together_without_conflict_and_each_keeps_a_verified_chain() {
    let etcd = EtcdServer::start();
    let url = etcd.url("members");
    let (mut a, mut b, id, secret) = two_members(&url);
    let client_a = a.client(&id, &secret);
    let key = ekms_tests::create_key(&client_a).await;
    let client_b = b.client(&id, &secret);
    until("A's key visible on B", || {
        let client_b = client_b.clone();
        let key = key.clone();
        async move { client_b.describe_key().key_id(&key).send().await.ok() }
    })
    .await;

    // Both read at once, each many times: every answer arrives.
    let reads = |client: aws_sdk_kms::Client, key: String| async move {
        for i in 0..25u8 {
            let blob = client
                .encrypt()
                .key_id(&key)
                .plaintext(aws_sdk_kms::primitives::Blob::new(vec![i; 16]))
                .send()
                .await
                .map_err(|e| format!("Encrypt {i}: {e:?}"))?
                .ciphertext_blob
                .ok_or("no ciphertext")?;
            let plain = client
                .decrypt()
                .ciphertext_blob(blob)
                .send()
                .await
                .map_err(|e| format!("Decrypt {i}: {e:?}"))?;
            if plain.plaintext.map(|p| p.into_inner()) != Some(vec![i; 16]) {
                return Err(format!("Decrypt {i}: another plaintext"));
            }
        }
        Ok::<(), String>(())
    };
    let (on_a, on_b) = tokio::join!(
        reads(client_a.clone(), key.clone()),
        reads(client_b.clone(), key.clone())
    );
    for (name, result, d) in [("A", on_a, &a), ("B", on_b, &b)] {
        if let Err(e) = result {
            panic!(
                "reading on {name}: {e}\nA:\n{}\nB:\n{}",
                d.enclave
                    .as_ref()
                    .map(|e| e
                        .log_text()
                        .lines()
                        .filter(|l| !l.starts_with("  "))
                        .collect::<Vec<_>>()
                        .join("\n"))
                    .unwrap_or_default(),
                b.parent
                    .as_ref()
                    .map(|e| e.log_tail(30))
                    .unwrap_or_default()
            );
        }
    }
    // The reads moved no head: A's next change still builds on the store's last commit.
    ekms_tests::create_key(&client_a).await;
    for (name, d) in [("A", &mut a), ("B", &mut b)] {
        let enclave = d.enclave.as_mut().expect("enclave");
        assert!(
            enclave.running(),
            "{name} stopped:\n{}",
            enclave.log_tail(20)
        );
    }
    // Give both an idle checkpoint, then verify the whole log: two chains, both covered.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let out = verify_store_log(&url, &a);
    assert!(out.success(), "audit verify: {out:?}");
    let report = out.json();
    let members = report["members"].as_array().expect("members in the report");
    assert_eq!(members.len(), 2, "{report}");
    for m in members {
        assert_eq!(m["unverifiedTail"], 0, "{report}");
        assert!(m["records"].as_u64().unwrap_or(0) >= 50, "{report}");
    }
}

/// Two members on the store at `url`: A initialized it, B (with A's custodian and, so that one
/// root verifies both audit chains, A's mock CA) unsealed it; and the admin's credentials.
fn two_members(url: &str) -> (Deployment, Deployment, String, String) {
    let mut a = Deployment::new().with_store(url.to_owned()).as_member();
    a.start();
    let (id, secret) = a.init_1_of_1();
    let mut b = Deployment::new().with_store(url.to_owned()).as_member();
    copy_dir(&a.dir().join("init"), &b.dir().join("init"));
    copy_dir(&a.dir().join("custodian"), &b.dir().join("custodian"));
    copy_dir(&a.dir().join("mock-ca"), &b.dir().join("mock-ca"));
    b.start();
    let out = b.unseal();
    assert!(out.success(), "unsealing B: {out:?}");
    (a, b, id, secret)
}

/// Longest this test waits for a change made on one member to show on another: the bound is
/// one second (a poll every 250 ms, then a load of this small store), measured and printed;
/// the wait allows for a loaded CI machine.
const PROPAGATION_WAIT: Duration = Duration::from_secs(10);

/// Calls `attempt` until it returns `Some`, up to [`PROPAGATION_WAIT`]; the value and how long
/// it took.
async fn until<T, F, Fut>(what: &str, mut attempt: F) -> (T, Duration)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = std::time::Instant::now();
    loop {
        if let Some(v) = attempt().await {
            let took = start.elapsed();
            println!("{what}: {took:?}");
            return (v, took);
        }
        assert!(
            start.elapsed() < PROPAGATION_WAIT,
            "{what}: not within {PROPAGATION_WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every member serves every key: a key made on A encrypts on B, B's ciphertext decrypts on A,
/// a key B makes shows on A, DisableKey on A is enforced on B; and a member cut off from the
/// store stops answering (`DependencyTimeoutException`) rather than serve a state that may be
/// stale.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_serve_each_others_changes_and_stop_answering_when_cut_off() {
    let etcd = EtcdServer::start();
    let url = etcd.url("follow");
    let (a, b, id, secret) = two_members(&url);
    let client_a = a.client(&id, &secret);
    let client_b = b.client(&id, &secret);

    // A key made on A after B unsealed: B takes A's commit and serves it.
    let key = ekms_tests::create_key(&client_a).await;
    let plaintext = aws_sdk_kms::primitives::Blob::new(b"every member".to_vec());
    let (blob, _) = until("A's new key usable on B", || {
        let client_b = client_b.clone();
        let key = key.clone();
        let plaintext = plaintext.clone();
        async move {
            client_b
                .encrypt()
                .key_id(&key)
                .plaintext(plaintext)
                .send()
                .await
                .ok()
                .and_then(|out| out.ciphertext_blob)
        }
    })
    .await;
    let plain = client_a
        .decrypt()
        .ciphertext_blob(blob)
        .send()
        .await
        .expect("A decrypts what B encrypted");
    assert_eq!(
        plain.plaintext.expect("plaintext").into_inner(),
        b"every member"
    );

    // B's own change builds on A's (it took it): committed, and A takes it in turn.
    let from_b = ekms_tests::create_key(&client_b).await;
    until("B's new key visible on A", || {
        let client_a = client_a.clone();
        let from_b = from_b.clone();
        async move { client_a.describe_key().key_id(&from_b).send().await.ok() }
    })
    .await;

    // DisableKey on A: B refuses the key.
    client_a
        .disable_key()
        .key_id(&key)
        .send()
        .await
        .expect("DisableKey on A");
    let (code, _) = until("DisableKey on A enforced on B", || {
        let encrypted = encrypt_one(client_b.clone(), key.clone());
        async move {
            let out = encrypted.await;
            out.err().map(ekms_tests::error_code)
        }
    })
    .await;
    assert_eq!(code, "DisabledException");

    // B took each of A's commits by difference (the pieces that changed), never by loading
    // the store whole.
    let log = b.enclave.as_ref().expect("B runs").log_text();
    let took: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("took another member's changes by difference"))
        .filter_map(|line| line.split("took_us=").nth(1))
        .filter_map(|rest| rest.split_whitespace().next())
        .collect();
    assert!(!took.is_empty(), "B's log:\n{log}");
    assert!(!log.contains("loading the store"), "B's log:\n{log}");
    println!("B took each of A's commits by difference in (µs): {took:?}");

    // etcd stops answering: within the bound, B refuses every request as stale.
    etcd.pause();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let refused = client_b
        .describe_key()
        .key_id(&from_b)
        .send()
        .await
        .expect_err("B answered while cut off from the store");
    assert_eq!(
        ekms_tests::error_code(refused),
        "DependencyTimeoutException"
    );
    etcd.resume();
}

/// Members racing: two CreateAlias of one name end with exactly one alias; a change made on a
/// member that has not yet taken another's commit is refused by the store, its answer is never
/// released, and the member recovers in place (a new session on the store's state) and serves
/// on, with no custodian.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_members_end_with_one_alias_and_the_loser_recovers_in_place() {
    let etcd = EtcdServer::start();
    let url = etcd.url("race");
    let (mut a, mut b, id, secret) = two_members(&url);
    let client_a = a.client(&id, &secret);
    let client_b = b.client(&id, &secret);
    let key = ekms_tests::create_key(&client_a).await;
    until("A's key visible on B", || {
        let client_b = client_b.clone();
        let key = key.clone();
        async move { client_b.describe_key().key_id(&key).send().await.ok() }
    })
    .await;

    for round in 0..4 {
        let name = format!("alias/race-{round}");
        let (on_a, on_b) = tokio::join!(
            client_a
                .create_alias()
                .alias_name(&name)
                .target_key_id(&key)
                .send(),
            client_b
                .create_alias()
                .alias_name(&name)
                .target_key_id(&key)
                .send()
        );
        let made = usize::from(on_a.is_ok()) + usize::from(on_b.is_ok());
        assert!(made <= 1, "round {round}: both members made {name}");
        // Whichever lost, both end up serving the one alias, pointing at the key.
        for (member, client) in [("A", &client_a), ("B", &client_b)] {
            let (target, _) = until(&format!("{name} on {member}"), || {
                let client = client.clone();
                let name = name.clone();
                async move {
                    let out = client.describe_key().key_id(&name).send().await.ok()?;
                    out.key_metadata.map(|m| m.key_id)
                }
            })
            .await;
            assert_eq!(target, key, "{name} on {member}");
        }
        // A change on A, then at once one on B, which has most likely not taken A's yet: its
        // commit is refused, and it recovers.
        ekms_tests::create_key(&client_a).await;
        let _ = client_b.create_key().send().await;
    }
    // Both still serve, and at least one refused commit was recovered from in place.
    for (member, client) in [("A", &client_a), ("B", &client_b)] {
        until(&format!("{member} serving at the end"), || {
            let encrypted = encrypt_one(client.clone(), key.clone());
            async move { encrypted.await.ok() }
        })
        .await;
    }
    let logs: String = [&mut a, &mut b]
        .into_iter()
        .map(|d| {
            let enclave = d.enclave.as_mut().expect("enclave");
            assert!(
                enclave.running(),
                "a member stopped:\n{}",
                enclave.log_tail(30)
            );
            enclave.log_text()
        })
        .collect();
    assert!(
        logs.contains("recovered: took the store's state in a new session"),
        "no member recovered from a refused commit in four rounds"
    );
    // Every acknowledged change is in the store: the log verifies, member by member.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let out = verify_store_log(&url, &a);
    assert!(out.success(), "audit verify: {out:?}");
}

/// Attested join: a sealed member of another image (other PCRs) is refused the domain key by a
/// running member; one of the same image joins with no custodian, at the running member's last
/// commit, and serves the deployment's keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_an_enclave_of_the_same_image_joins_and_it_needs_no_custodian() {
    let etcd = EtcdServer::start();
    let url = etcd.url("join");
    let mut a = Deployment::new().with_store(url.clone()).as_member();
    a.start();
    let (id, secret) = a.init_1_of_1();
    let key = ekms_tests::create_key(&a.client(&id, &secret)).await;

    // B: no custodian, no share; the same mock CA (as the members of one deployment under
    // one root); first another image: the same binary with bytes appended (other mock PCRs).
    let mut b = Deployment::new().with_store(url.clone()).as_member();
    copy_dir(&a.dir().join("mock-ca"), &b.dir().join("mock-ca"));
    let other = other_image(b.dir(), "other");
    b.use_enclave_binary(Some(other));
    b.start();
    let join = |b: &Deployment| {
        ekms_tests::ekms_cli([
            "join",
            "--endpoint",
            b.endpoint.as_str(),
            "--peer",
            a.endpoint.as_str(),
        ])
    };
    let refused = join(&b);
    assert!(!refused.success(), "another image joined: {refused:?}");
    assert!(
        refused
            .stderr
            .contains("Only an enclave running this image"),
        "{refused:?}"
    );
    assert_eq!(ekms_status(&b.endpoint)["State"], "Sealed");

    // The same image joins, and serves A's key at once: no custodian took part. It finds A
    // in etcd, where members' parents advertise their endpoints (B's own is skipped).
    b.enclave.as_mut().expect("B's enclave").kill9();
    b.use_enclave_binary(None);
    b.start_enclave();
    let joined = ekms_tests::ekms_cli([
        "join",
        "--endpoint",
        b.endpoint.as_str(),
        "--store",
        url.as_str(),
    ]);
    assert!(joined.success(), "the same image did not join: {joined:?}");
    assert_eq!(ekms_status(&b.endpoint)["State"], "Unsealed");
    b.client(&id, &secret)
        .describe_key()
        .key_id(&key)
        .send()
        .await
        .expect("B serves A's key after joining");
    // A recorded the release in its audit chain.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let out = verify_store_log(&url, &a);
    assert!(out.success(), "audit verify: {out:?}");
    let export = ekms_tests::ekms_cli(["audit", "export", "--store", url.as_str()]);
    assert_eq!(export.stdout.matches("\"eventName\":\"Join\"").count(), 1);
}

/// A rolling upgrade: the custodians allow a new image (`ekms measurements add`, M of N
/// signatures, for the current version only), and an enclave of that image then joins a member
/// of the old one, with no custodian; fewer than M signatures, or a stranger's, change nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custodians_allow_a_new_image_which_then_joins() {
    let etcd = EtcdServer::start();
    let url = etcd.url("upgrade");
    let mut a = Deployment::new().with_store(url.clone()).as_member();
    a.start();
    let (id, secret) = a.init_1_of_1();
    let key = ekms_tests::create_key(&a.client(&id, &secret)).await;

    // The new image: the binary with bytes appended (other mock PCRs), and its pcrs.json.
    let mut b = Deployment::new().with_store(url.clone()).as_member();
    copy_dir(&a.dir().join("mock-ca"), &b.dir().join("mock-ca"));
    let new_image = other_image(b.dir(), "v2");
    let new_pcrs = b.dir().join("pcrs-v2.json");
    ekms_tests::write_pcrs_of(&new_image, &new_pcrs);
    b.use_enclave_binary(Some(new_image));
    b.start();
    let join = |b: &Deployment| {
        ekms_tests::ekms_cli([
            "join",
            "--endpoint",
            b.endpoint.as_str(),
            "--peer",
            a.endpoint.as_str(),
        ])
    };
    assert!(
        !join(&b).success(),
        "the new image joined before it was allowed"
    );

    let add = |keys: &[std::path::PathBuf]| {
        let mut args: Vec<std::ffi::OsString> = vec![
            "measurements".into(),
            "add".into(),
            "--endpoint".into(),
            a.endpoint.clone().into(),
            "--pcrs".into(),
            new_pcrs.clone().into_os_string(),
        ];
        for k in keys {
            args.push("--key".into());
            args.push(k.clone().into_os_string());
        }
        ekms_tests::ekms_cli(args)
    };
    // No signature, and a stranger's: fewer than M (1 of 1) custodians.
    let none = add(&[]);
    assert!(
        !none.success() && none.stderr.contains("needs the signatures of 1"),
        "{none:?}"
    );
    let (_, stranger) = ekms_tests::custodian_keygen(&b.dir().join("stranger"));
    let strange = add(&[stranger]);
    assert!(
        !strange.success() && strange.stderr.contains("0 valid signature"),
        "{strange:?}"
    );
    // The custodian's: version 1, listing the running image and the new one.
    let custodian = a.dir().join("custodian").join("custodian.key");
    let added = add(&[custodian]);
    assert!(added.success(), "{added:?}");
    let listed = ekms_tests::ekms_cli(["measurements", "list", "--endpoint", a.endpoint.as_str()]);
    let listed = listed.json();
    assert_eq!(listed["Version"], 1, "{listed}");
    assert_eq!(
        listed["Measurements"].as_array().map(Vec::len),
        Some(2),
        "{listed}"
    );

    // Now the new image joins the old one's member, and serves the deployment's keys.
    let joined = join(&b);
    assert!(
        joined.success(),
        "the allowed new image did not join: {joined:?}"
    );
    b.client(&id, &secret)
        .describe_key()
        .key_id(&key)
        .send()
        .await
        .expect("the new image serves the deployment's key");
}

/// Another enclave image in `dir`: the built binary with `tag` appended (other mock PCRs).
fn other_image(dir: &std::path::Path, tag: &str) -> std::path::PathBuf {
    let path = dir.join(format!("ekms-enclave-{tag}"));
    let mut image = std::fs::read(ekms_tests::bin_dir().join("ekms-enclave")).expect("binary");
    image.extend_from_slice(tag.as_bytes());
    std::fs::write(&path, image).expect("writing the other image");
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    path
}

/// `ekms audit verify` of the shared store at `url`, against `a`'s mock root and PCRs.
fn verify_store_log(url: &str, a: &Deployment) -> ekms_tests::CliOutput {
    ekms_tests::ekms_cli([
        "audit".into(),
        "verify".into(),
        std::ffi::OsString::from(url),
        "--root".into(),
        a.root().into_os_string(),
        "--expect-pcrs".into(),
        a.pcrs().into_os_string(),
    ])
}

/// The figure BENCHMARKS.md's "Members on one etcd store" quotes from a real etcd: with
/// `EKMS_BENCH_KEYS` keys (99,000 unless set: the default quota is 100,000 keys per creating
/// principal) made on A, how long B takes to enforce one more change of A's (DisableKey), and
/// how long its catch-up took by its log. B follows A by difference throughout the build.
/// `cargo test -p ekms-tests --test etcd_shared -- --ignored --nocapture large_store`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: builds a large store through the API and prints figures"]
async fn a_member_follows_one_change_in_a_large_store() {
    let n: usize = std::env::var("EKMS_BENCH_KEYS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(99_000);
    let etcd = EtcdServer::start();
    let url = etcd.url("large");
    let (a, b, id, secret) = two_members(&url);
    let client_a = a.client(&id, &secret);
    let client_b = b.client(&id, &secret);
    let started = std::time::Instant::now();
    let made = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let client = client_a.clone();
        let made = made.clone();
        tasks.push(tokio::spawn(async move {
            while made.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < n {
                ekms_tests::create_key(&client).await;
            }
        }));
    }
    for task in tasks {
        task.await.expect("a CreateKey task");
    }
    println!("{n} keys made on A in {:?}", started.elapsed());
    // B has followed every commit; one more change, then the time until B enforces it.
    let key = ekms_tests::create_key(&client_a).await;
    until("the last key usable on B", || {
        let encrypted = encrypt_one(client_b.clone(), key.clone());
        async move { encrypted.await.ok() }
    })
    .await;
    let before = b.enclave.as_ref().expect("B runs").log_text().len();
    client_a
        .disable_key()
        .key_id(&key)
        .send()
        .await
        .expect("DisableKey on A");
    until("DisableKey on A enforced on B, in a large store", || {
        let encrypted = encrypt_one(client_b.clone(), key.clone());
        async move {
            let out = encrypted.await;
            out.err()
                .map(ekms_tests::error_code)
                .filter(|code| code == "DisabledException")
        }
    })
    .await;
    let log = b.enclave.as_ref().expect("B runs").log_text();
    let took: Vec<&str> = log[before..]
        .lines()
        .filter(|line| line.contains("took another member's changes"))
        .collect();
    println!("B's catch-up of the DisableKey: {took:?}");
    let loads = log.matches("by loading the store").count();
    println!("B loaded the store whole {loads} times while following the build");
}

/// One Encrypt under `key` on `client`'s member: whether that member serves the key now.
async fn encrypt_one(
    client: aws_sdk_kms::Client,
    key: String,
) -> Result<(), aws_sdk_kms::error::SdkError<aws_sdk_kms::operation::encrypt::EncryptError>> {
    client
        .encrypt()
        .key_id(&key)
        .plaintext(aws_sdk_kms::primitives::Blob::new(b"x".to_vec()))
        .send()
        .await
        .map(drop)
}

/// B's state as `ekms status` reports it, or `None` while it does not answer.
fn state_of(b: &Deployment) -> Option<String> {
    let out = ekms_tests::ekms_cli(["status", "--endpoint", b.endpoint.as_str()]);
    out.success()
        .then(|| out.json()["State"].as_str().map(str::to_owned))
        .flatten()
}

/// `ekms join --watch` on a member's host joins it whenever it is sealed: when it first starts,
/// and again after its enclave was killed and restarted; no custodian takes part, and each join
/// is one JSON line on the watcher's stdout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_joins_a_member_whenever_it_starts_sealed() {
    use std::io::BufRead as _;
    let etcd = EtcdServer::start();
    let url = etcd.url("watch");
    let mut a = Deployment::new().with_store(url.clone()).as_member();
    a.start();
    let (id, secret) = a.init_1_of_1();
    let key = ekms_tests::create_key(&a.client(&id, &secret)).await;
    let mut b = Deployment::new().with_store(url.clone()).as_member();
    copy_dir(&a.dir().join("mock-ca"), &b.dir().join("mock-ca"));
    b.start();
    assert_eq!(state_of(&b).as_deref(), Some("Sealed"));

    let mut watcher = std::process::Command::new(ekms_tests::bin_dir().join("ekms"))
        .args(["join", "--watch", "--interval", "1s", "--endpoint"])
        .arg(&b.endpoint)
        .args(["--store", url.as_str()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("starting ekms join --watch");
    let joins = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let reader = {
        let stdout = watcher.stdout.take().expect("the watcher's stdout");
        let joins = joins.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let line = line.expect("a line");
                let status: serde_json::Value =
                    serde_json::from_str(&line).expect("each line is JSON");
                assert_eq!(status["State"], "Unsealed", "{line}");
                joins.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        })
    };
    let wait_unsealed = |b: &Deployment, what: &str| {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while state_of(b).as_deref() != Some("Unsealed") {
            assert!(std::time::Instant::now() < deadline, "{what}: B not joined");
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    tokio::task::block_in_place(|| wait_unsealed(&b, "at start"));
    b.client(&id, &secret)
        .describe_key()
        .key_id(&key)
        .send()
        .await
        .expect("B serves A's key");

    b.enclave.as_mut().expect("B's enclave").kill9();
    b.start_enclave();
    tokio::task::block_in_place(|| wait_unsealed(&b, "after a restart"));
    b.client(&id, &secret)
        .describe_key()
        .key_id(&key)
        .send()
        .await
        .expect("B serves A's key after rejoining");
    let _ = watcher.kill();
    let _ = watcher.wait();
    reader.join().expect("the reader");
    assert_eq!(joins.load(std::sync::atomic::Ordering::SeqCst), 2);
}
