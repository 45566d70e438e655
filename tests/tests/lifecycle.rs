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

/// A second `ekms dev` on a data dir in use stops at once and says why and what to do, before
/// touching anything in it; the first one keeps serving. (It used to rewrite the first one's
/// PCRs, then fail with redb's "Database already open. Cannot acquire lock" and "ekms-parent
/// exited before it was ready".)
#[tokio::test]
async fn a_second_ekms_dev_on_the_same_data_dir_says_another_holds_it() {
    let first = Ekms::start();
    let data_dir = first.data_dir();
    let pcrs_before = std::fs::metadata(data_dir.join("pcrs.json"))
        .and_then(|m| m.modified())
        .expect("pcrs.json");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let mut second = std::process::Command::new(ekms_tests::bin_dir().join("ekms"))
        .args([
            "dev",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
        ])
        .arg(&data_dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("starting a second ekms dev");
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = second.try_wait().expect("waiting for the second ekms dev") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = second.kill();
            panic!("the second ekms dev on the same data dir kept running");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    use std::io::Read as _;
    second
        .stderr
        .take()
        .expect("piped stderr")
        .read_to_string(&mut stderr)
        .expect("reading its stderr");
    assert!(!status.success());
    let expected = format!(
        "another ekms dev is running on the data dir {} (it holds {}): stop it, or give this one \
         a data dir and an address of its own, for example `ekms dev --data-dir .ekms-2 \
         --listen 127.0.0.1:4600`",
        data_dir.display(),
        data_dir.join("dev.lock").display()
    );
    assert!(stderr.contains(&expected), "{stderr}");
    assert!(!stderr.contains("Database already open"), "{stderr}");
    assert_eq!(
        std::fs::metadata(data_dir.join("pcrs.json"))
            .and_then(|m| m.modified())
            .expect("pcrs.json"),
        pcrs_before,
        "the second ekms dev rewrote the first one's PCRs"
    );
    first
        .client()
        .await
        .generate_random()
        .number_of_bytes(4)
        .send()
        .await
        .expect("the first ekms dev still serves");
}

/// The pid of `ekms dev`'s child named `name` (`ekms-parent`, `ekms-enclave`).
fn child_pid(dev: i32, name: &str) -> Option<i32> {
    let children = std::fs::read_to_string(format!("/proc/{dev}/task/{dev}/children")).ok()?;
    children
        .split_whitespace()
        .filter_map(|p| p.parse::<i32>().ok())
        .find(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|comm| comm.trim() == name)
        })
}

/// `kill -9` of `ekms dev`'s parent: `ekms dev` starts it again, and the same enclave process
/// takes the store's state again by itself and serves the keys made before (no unseal).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parent_that_dies_is_restarted_and_its_enclave_serves_again_by_itself() {
    let ekms = Ekms::start();
    let client = ekms.client().await;
    let key = ekms_tests::create_key(&client).await;
    let dev = ekms.dev_pid().expect("ekms dev's pid");
    let parent = child_pid(dev, "ekms-parent").expect("the parent's pid");
    let enclave = child_pid(dev, "ekms-enclave").expect("the enclave's pid");

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(parent),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill -9 of the parent");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match client.describe_key().key_id(&key).send().await {
            Ok(_) => break,
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "not serving again: {e:?}\n{}",
                    ekms.log_tail(30)
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    let restarted = child_pid(dev, "ekms-parent").expect("a parent again");
    assert_ne!(restarted, parent, "a new parent process");
    assert_eq!(
        child_pid(dev, "ekms-enclave"),
        Some(enclave),
        "the same enclave process serves"
    );
    assert!(
        ekms.log().contains("ekms-parent exited") && ekms.log().contains("restarting it"),
        "{}",
        ekms.log_tail(30)
    );
    ekms_tests::create_key(&client).await;
}
