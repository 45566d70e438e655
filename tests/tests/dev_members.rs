//! `ekms dev --members N`: members on consecutive ports share one etcd store, each serves every
//! key (made on A, encrypted on B, decrypted on C), and one whose enclave dies (kill -9) under
//! load is restarted and rejoins with no custodian, while the others keep serving and lose
//! nothing acknowledged.

use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};

use ekms_tests::etcd::EtcdServer;
use ekms_tests::{DevOptions, Ekms};

/// Longest a member takes to show another's change, or to come back after its enclave died
/// (restart, then unseal): generous, for a loaded CI machine.
const WAIT: Duration = Duration::from_secs(60);

/// A loopback port `p` with `p + 1` and `p + 2` free too.
fn three_free_ports() -> u16 {
    loop {
        let port = ekms_tests::free_port();
        if port < u16::MAX - 2
            && TcpListener::bind(("127.0.0.1", port + 1)).is_ok()
            && TcpListener::bind(("127.0.0.1", port + 2)).is_ok()
        {
            return port;
        }
    }
}

/// The pid of the `ekms-enclave` whose command line names `marker`.
fn enclave_pid(marker: &str) -> Option<i32> {
    std::fs::read_dir("/proc").ok()?.find_map(|entry| {
        let entry = entry.ok()?;
        let pid: i32 = entry.file_name().to_str()?.parse().ok()?;
        let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
        let cmdline = String::from_utf8_lossy(&cmdline);
        (cmdline.contains("ekms-enclave") && cmdline.contains(marker)).then_some(pid)
    })
}

async fn encrypts(client: &aws_sdk_kms::Client, key: &str) -> bool {
    client
        .encrypt()
        .key_id(key)
        .plaintext(aws_sdk_kms::primitives::Blob::new(b"members".to_vec()))
        .send()
        .await
        .is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_share_keys_and_a_killed_enclave_comes_back_while_the_others_serve() {
    let etcd = EtcdServer::start();
    let port = three_free_ports();
    let ekms = Ekms::start_with(&DevOptions {
        listen: Some(SocketAddr::from(([127, 0, 0, 1], port))),
        extra_args: vec![
            "--store".to_owned(),
            etcd.url("dev-members"),
            "--members".to_owned(),
            "3".to_owned(),
        ],
        ..DevOptions::default()
    });
    let first = ekms.client().await;
    let member = |n: u16| {
        ekms_tests::sdk_client(
            &format!("http://127.0.0.1:{}", port + n),
            &ekms.access_key_id,
            &ekms.secret,
            None,
        )
    };
    let (second, third) = (member(1), member(2));
    // A key made on member 0 encrypts on member 1, and that ciphertext decrypts on member 2.
    let key = ekms_tests::create_key(&first).await;
    let start = Instant::now();
    let blob = loop {
        let sent = second
            .encrypt()
            .key_id(&key)
            .plaintext(aws_sdk_kms::primitives::Blob::new(
                b"across members".to_vec(),
            ))
            .send()
            .await;
        if let Ok(out) = sent {
            break out.ciphertext_blob.expect("a ciphertext");
        }
        assert!(
            start.elapsed() < WAIT,
            "member 1 never served member 0's key"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let plain = loop {
        if let Ok(out) = third.decrypt().ciphertext_blob(blob.clone()).send().await {
            break out.plaintext.expect("a plaintext");
        }
        assert!(
            start.elapsed() < WAIT,
            "member 2 never decrypted member 1's ciphertext"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(plain.into_inner(), b"across members");

    // Writes member 1 acknowledged before it dies: each must survive it.
    let mut on_second = Vec::new();
    for _ in 0..5 {
        on_second.push(ekms_tests::create_key(&second).await);
    }

    // kill -9 member 1's enclave while member 0 is under load (a task of its own): every
    // answer member 0 gives is a success, and member 1 is restarted, rejoins, and serves.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let (first, key, stop) = (first.clone(), key.clone(), stop.clone());
        tokio::spawn(async move {
            let (mut ok, mut failed) = (0u32, 0u32);
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                if encrypts(&first, &key).await {
                    ok += 1;
                } else {
                    failed += 1;
                }
            }
            (ok, failed)
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let marker = format!("member-1{}enclave.sock", std::path::MAIN_SEPARATOR);
    let pid = enclave_pid(&marker).expect("member 1's enclave is running");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill -9");
    let start = Instant::now();
    while !encrypts(&second, &key).await {
        assert!(
            start.elapsed() < WAIT,
            "member 1 did not come back; ekms dev's log:\n{}",
            ekms.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (served, failed) = load.await.expect("the load task");
    println!(
        "member 1 back after {:?}; member 0 answered {served} requests meanwhile",
        start.elapsed()
    );
    assert_eq!(
        failed, 0,
        "member 0 failed requests while member 1 restarted"
    );
    assert!(
        served > 0,
        "member 0 answered nothing while member 1 restarted"
    );
    assert_ne!(
        enclave_pid(&marker),
        Some(pid),
        "a new enclave serves member 1"
    );
    let log = ekms.log();
    assert!(log.contains("member 1's ekms-enclave exited"), "{log}");
    assert!(log.contains("member 1 serves again"), "{log}");
    // It came back by attested join from member 0, with no custodian; so did it at the start.
    let joined = format!(
        "http://127.0.0.1:{} joined from http://127.0.0.1:{port} (attested, no custodian)",
        port + 1
    );
    assert_eq!(log.matches(&joined).count(), 2, "{log}");
    // What member 1 acknowledged before it died is served by every member, itself included.
    for key in &on_second {
        for (name, client) in [
            ("member 0", &first),
            ("member 1", &second),
            ("member 2", &third),
        ] {
            let start = Instant::now();
            while client.describe_key().key_id(key).send().await.is_err() {
                assert!(
                    start.elapsed() < WAIT,
                    "{name} lost {key}, acknowledged by member 1"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    // What member 0 acknowledged is in the store: a key made there shows on the new member 1.
    let made = ekms_tests::create_key(&first).await;
    let start = Instant::now();
    while second.describe_key().key_id(&made).send().await.is_err() {
        assert!(
            start.elapsed() < WAIT,
            "member 1 never showed a key made after its restart"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
