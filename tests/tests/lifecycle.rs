//! `ekms dev` as a process: it writes usable credentials, and SIGTERM (the harness's `Drop`)
//! stops it together with both of its children, so nothing keeps listening afterwards.

use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use ekms_tests::Ekms;

/// An address named in the ready line ("mock enclave A behind parent relay B").
#[derive(Debug)]
enum Named {
    Tcp(SocketAddr),
    Unix(std::path::PathBuf),
}

fn ready_addresses(log: &str) -> Vec<Named> {
    let line = log
        .lines()
        .find(|l| l.contains("ekms dev is ready"))
        .expect("a ready line");
    line.split_whitespace()
        .map(|w| w.trim_end_matches(['.', ',']))
        .filter_map(|w| {
            if let Some(path) = w
                .strip_prefix("unix://")
                .or_else(|| w.strip_prefix("unix:"))
            {
                return Some(Named::Unix(path.into()));
            }
            w.strip_prefix("tcp://")
                .unwrap_or(w)
                .parse()
                .ok()
                .map(Named::Tcp)
        })
        .collect()
}

fn refuses(named: &Named) -> bool {
    match named {
        Named::Tcp(addr) => TcpStream::connect_timeout(addr, Duration::from_secs(1)).is_err(),
        Named::Unix(path) => std::os::unix::net::UnixStream::connect(path).is_err(),
    }
}

#[tokio::test]
async fn sigterm_stops_ekms_dev_and_both_children() {
    let ekms = Ekms::start();
    let log = ekms.log_tail(200);
    let addresses = ready_addresses(&log);
    assert!(
        addresses
            .iter()
            .any(|a| matches!(a, Named::Tcp(t) if *t == ekms.addr)),
        "the ready line names the relay {}: {log}",
        ekms.addr
    );
    assert!(
        addresses.len() >= 2,
        "the ready line names the enclave's and the relay's addresses: {log}"
    );
    let credentials =
        std::fs::read_to_string(ekms.data_dir().join("credentials")).expect("credentials file");
    assert!(credentials.starts_with("[ekms]"), "{credentials}");

    let client = ekms.client().await;
    client
        .generate_random()
        .number_of_bytes(4)
        .send()
        .await
        .expect("GenerateRandom");
    drop(client);

    let data_dir = ekms.data_dir();
    let started = Instant::now();
    drop(ekms);
    assert!(
        started.elapsed() < Duration::from_secs(14),
        "stopping took {:?}: SIGTERM was not enough",
        started.elapsed()
    );
    for addr in &addresses {
        assert!(
            refuses(addr),
            "{addr:?} still accepts connections after stop"
        );
    }
    assert!(!data_dir.exists(), "{} was not removed", data_dir.display());
}

#[tokio::test]
async fn each_instance_has_its_own_keys_and_credentials() {
    let a = Ekms::start();
    let b = Ekms::start();
    assert_ne!(a.access_key_id, b.access_key_id);
    let client_a = a.client().await;
    let key = ekms_tests::create_key(&client_a).await;
    let client_b = b.client().await;
    ekms_tests::assert_code!(
        client_b.describe_key().key_id(&key).send().await,
        "NotFoundException"
    );
    // A's credentials mean nothing to B.
    let crossed = b.client_with(&a.access_key_id, &a.secret, None);
    ekms_tests::assert_code!(
        crossed.list_keys().send().await,
        "UnrecognizedClientException"
    );
}
