//! Durability under `kill -9`: while concurrent clients run CreateKey + Encrypt in a loop,
//! the enclave (or the parent) is killed with SIGKILL; after a restart and an unseal with the
//! first init's share, every key whose CreateKey was acknowledged exists, and every
//! acknowledged ciphertext decrypts to its plaintext.
//!
//! The parent (relay + store) and the mock enclave are started directly (not through
//! `ekms dev`), so that either can be killed alone; each case runs on the embedded store and on
//! a real etcd.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_kms::primitives::Blob;
use ekms_tests::etcd::EtcdServer;
use ekms_tests::{ekms_status, Deployment};
use nix::sys::signal::Signal;

/// Concurrent client tasks.
const TASKS: usize = 8;
/// How long the load runs before the kill.
const LOAD_BEFORE_KILL: Duration = Duration::from_secs(2);
/// Bound for the clients to notice the kill and stop.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(60);

/// What the service acknowledged.
#[derive(Default)]
struct Acknowledged {
    /// Keys whose CreateKey answered 200.
    created: Vec<String>,
    /// (key id, plaintext, ciphertext, context value) whose Encrypt answered 200.
    encrypted: Vec<(String, Vec<u8>, Vec<u8>, String)>,
    /// The first error each task saw (after the kill; for the failure message).
    errors: Vec<String>,
}

async fn client_loop(
    client: aws_sdk_kms::Client,
    task: usize,
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Acknowledged>>,
) {
    let mut n = 0u64;
    while !stop.load(Ordering::SeqCst) {
        n += 1;
        let created = match client.create_key().description("durability").send().await {
            Ok(out) => out
                .key_metadata()
                .expect("CreateKey returns KeyMetadata")
                .key_id()
                .to_owned(),
            Err(e) => {
                acked.lock().expect("lock").errors.push(format!(
                    "task {task} CreateKey: {}",
                    aws_sdk_kms::error::DisplayErrorContext(e)
                ));
                return;
            }
        };
        acked.lock().expect("lock").created.push(created.clone());
        let plaintext = format!("task {task} message {n} for {created}").into_bytes();
        let context = format!("{task}-{n}");
        match client
            .encrypt()
            .key_id(&created)
            .plaintext(Blob::new(plaintext.clone()))
            .encryption_context("load", &context)
            .send()
            .await
        {
            Ok(out) => {
                let ciphertext = out
                    .ciphertext_blob()
                    .expect("Encrypt returns a ciphertext")
                    .as_ref()
                    .to_vec();
                acked
                    .lock()
                    .expect("lock")
                    .encrypted
                    .push((created, plaintext, ciphertext, context));
            }
            Err(e) => {
                acked.lock().expect("lock").errors.push(format!(
                    "task {task} Encrypt: {}",
                    aws_sdk_kms::error::DisplayErrorContext(e)
                ));
                return;
            }
        }
    }
}

/// Runs the load, calls `kill` after [`LOAD_BEFORE_KILL`], waits for the clients to stop;
/// returns what was acknowledged.
async fn load_then(
    deployment: &mut Deployment,
    id: &str,
    secret: &str,
    kill: impl FnOnce(&mut Deployment),
) -> Acknowledged {
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Acknowledged::default()));
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        tasks.push(tokio::spawn(client_loop(
            deployment.client(id, secret),
            task,
            stop.clone(),
            acked.clone(),
        )));
    }
    tokio::time::sleep(LOAD_BEFORE_KILL).await;
    let before = {
        let a = acked.lock().expect("lock");
        (a.created.len(), a.encrypted.len(), a.errors.clone())
    };
    kill(deployment);
    stop.store(true, Ordering::SeqCst);
    assert!(
        before.0 > 0 && before.1 > 0 && before.2.is_empty(),
        "the load was not running before the kill: {} created, {} encrypted, errors {:?}",
        before.0,
        before.1,
        before.2
    );
    tokio::time::timeout(DRAIN_TIMEOUT, async {
        for t in tasks {
            t.await.expect("a client task panicked");
        }
    })
    .await
    .expect("the clients did not stop within the drain timeout");
    let mut a = acked.lock().expect("lock");
    std::mem::take(&mut *a)
}

/// Unseals the restarted deployment and checks every acknowledged key and ciphertext.
async fn assert_everything_acknowledged_is_back(
    deployment: &Deployment,
    id: &str,
    secret: &str,
    acked: &Acknowledged,
) {
    let status = ekms_status(&deployment.endpoint);
    assert_eq!(status["State"], "Sealed", "{status}");
    let out = deployment.unseal();
    assert!(
        out.success(),
        "unseal after the restart failed: {out:?}\nenclave log:\n{}",
        deployment
            .enclave
            .as_ref()
            .map(|e| e.log_tail(30))
            .unwrap_or_default()
    );
    // Through a pipe, `ekms unseal` draws no progress (it does on a terminal only).
    assert!(
        !out.stderr.contains("loading the sealed store") && !out.stderr.contains('\r'),
        "progress drawn on a stderr that is not a terminal: {:?}",
        out.stderr
    );
    let status = ekms_status(&deployment.endpoint);
    assert_eq!(status["State"], "Unsealed", "{status}");
    assert_eq!(
        status["RefusedRecordCount"].as_u64(),
        Some(0),
        "records refused after the kill: {status}"
    );

    let client = deployment.client(id, secret);
    let mut missing = Vec::new();
    for key in &acked.created {
        if let Err(e) = client.describe_key().key_id(key).send().await {
            missing.push(format!(
                "{key}: {}",
                aws_sdk_kms::error::DisplayErrorContext(e)
            ));
        }
    }
    let mut undecryptable = Vec::new();
    for (key, plaintext, ciphertext, context) in &acked.encrypted {
        match client
            .decrypt()
            .ciphertext_blob(Blob::new(ciphertext.clone()))
            .encryption_context("load", context)
            .send()
            .await
        {
            Ok(out) if out.plaintext().map(Blob::as_ref) == Some(&plaintext[..]) => {}
            Ok(out) => undecryptable.push(format!("{key}: wrong plaintext {out:?}")),
            Err(e) => undecryptable.push(format!(
                "{key}: {}",
                aws_sdk_kms::error::DisplayErrorContext(e)
            )),
        }
    }
    assert!(
        missing.is_empty() && undecryptable.is_empty(),
        "of {} acknowledged keys {} are missing: {:?}\nof {} acknowledged ciphertexts {} do not \
         decrypt: {:?}",
        acked.created.len(),
        missing.len(),
        missing.iter().take(5).collect::<Vec<_>>(),
        acked.encrypted.len(),
        undecryptable.len(),
        undecryptable.iter().take(5).collect::<Vec<_>>()
    );
    // The store takes writes again.
    ekms_tests::create_key(&client).await;
}

/// Kills the enclave with SIGKILL under load, restarts it against the same parent and store,
/// and checks everything acknowledged.
async fn kill_9_of_the_enclave(mut deployment: Deployment) {
    deployment.start();
    let (id, secret) = deployment.init_1_of_1();

    let acked = load_then(&mut deployment, &id, &secret, |d| {
        let enclave = d.enclave.as_mut().expect("an enclave");
        enclave.stop_with(Signal::SIGKILL);
    })
    .await;
    eprintln!(
        "acknowledged before and around kill -9 of the enclave: {} keys, {} ciphertexts",
        acked.created.len(),
        acked.encrypted.len()
    );

    // Restart the enclave alone, against the same parent and store.
    assert!(
        deployment.parent.as_mut().expect("a parent").running(),
        "the parent survives the enclave's death"
    );
    deployment.start_enclave();
    assert_everything_acknowledged_is_back(&deployment, &id, &secret, &acked).await;
}

/// Kills the parent (relay and store) with SIGKILL under load, restarts both, and checks
/// everything acknowledged.
async fn kill_9_of_the_parent(mut deployment: Deployment) {
    deployment.start();
    let (id, secret) = deployment.init_1_of_1();

    let acked = load_then(&mut deployment, &id, &secret, |d| {
        let parent = d.parent.as_mut().expect("a parent");
        parent.stop_with(Signal::SIGKILL);
    })
    .await;
    eprintln!(
        "acknowledged before and around kill -9 of the parent: {} keys, {} ciphertexts",
        acked.created.len(),
        acked.encrypted.len()
    );

    // The enclave lost its store: it may have stopped by itself; it is killed too (no graceful
    // anything) and both are restarted.
    let enclave = deployment.enclave.as_mut().expect("an enclave");
    match enclave.wait_exit(Duration::from_secs(2)) {
        Some(status) => eprintln!("the enclave stopped by itself: {status}"),
        None => {
            enclave.stop_with(Signal::SIGKILL);
        }
    }
    deployment.start();
    assert_everything_acknowledged_is_back(&deployment, &id, &secret, &acked).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_of_the_enclave_during_load_loses_nothing_acknowledged() {
    kill_9_of_the_enclave(Deployment::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_of_the_parent_during_load_loses_nothing_acknowledged() {
    kill_9_of_the_parent(Deployment::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_of_the_enclave_on_an_etcd_store_loses_nothing_acknowledged() {
    let etcd = EtcdServer::start();
    kill_9_of_the_enclave(Deployment::new().with_store(etcd.url("ekms"))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_of_the_parent_on_an_etcd_store_loses_nothing_acknowledged() {
    let etcd = EtcdServer::start();
    kill_9_of_the_parent(Deployment::new().with_store(etcd.url("ekms"))).await;
}
