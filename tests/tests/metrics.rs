//! `--metrics-listen` end to end: `ekms dev` passes it to its parent, which serves `/metrics`
//! (its own counters and the enclave's aggregates, sent every 5 s over a store connection of
//! their own), `/healthz` and `/readyz`.
//!
//! A known mix of requests is counted under its operation and code (`200`, or the AWS error
//! code of a client error), and `/readyz` says 503 while the enclave is sealed, 200 once it is
//! not.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use aws_sdk_kms::primitives::Blob;
use ekms_tests::{
    assert_code, create_key, custodian_keygen, ekms_cli, free_port, read_credentials, DevOptions,
    Ekms,
};

/// The enclave reports every 5 s; allow three reports and then some.
const REPORT_WAIT: Duration = Duration::from_secs(20);

/// `GET path` on `port`: the status code and the body.
fn get(port: u16, path: &str) -> (u16, String) {
    let mut stream =
        std::net::TcpStream::connect(("127.0.0.1", port)).expect("connecting to the metrics port");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("a read timeout");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .expect("sending the request");
    let mut answer = String::new();
    stream
        .read_to_string(&mut answer)
        .expect("reading the answer");
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {answer:?}"));
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// The value of the sample `series` (name and labels exactly as exported), if present.
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let value = line.strip_prefix(series)?.strip_prefix(' ')?;
        value.trim().parse().ok()
    })
}

/// Waits until `check` holds for the `/metrics` text (the enclave's next report), returning it.
fn metrics_until(port: u16, what: &str, check: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + REPORT_WAIT;
    loop {
        let (status, body) = get(port, "/metrics");
        assert_eq!(status, 200, "/metrics: {body}");
        if check(&body) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "/metrics never showed {what}:\n{body}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Waits until `/readyz` answers `status`, returning its body.
fn readyz_until(port: u16, status: u16) -> String {
    let deadline = Instant::now() + REPORT_WAIT;
    loop {
        let (got, body) = get(port, "/readyz");
        if got == status {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "/readyz stayed {got} ({body:?}), expected {status}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn with_metrics(port: u16) -> DevOptions {
    DevOptions {
        extra_args: vec!["--metrics-listen".into(), format!("127.0.0.1:{port}")],
        ..DevOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_count_a_known_mix_of_requests_by_operation_and_code() {
    let port = free_port();
    let dev = Ekms::start_with(&with_metrics(port));
    assert_eq!(get(port, "/healthz").0, 200);
    let client = dev.client().await;

    let key = create_key(&client).await;
    for _ in 0..3 {
        client
            .encrypt()
            .key_id(&key)
            .plaintext(Blob::new(b"counted".to_vec()))
            .send()
            .await
            .expect("Encrypt");
    }
    // Two client errors, each counted under its AWS error code.
    for _ in 0..2 {
        assert_code!(
            client
                .describe_key()
                .key_id("alias/no-such-alias")
                .send()
                .await,
            "NotFoundException"
        );
    }

    let encrypts = r#"ekms_requests_total{operation="Encrypt",code="200"}"#;
    let not_found = r#"ekms_requests_total{operation="DescribeKey",code="NotFoundException"}"#;
    let creates = r#"ekms_requests_total{operation="CreateKey",code="200"}"#;
    let metrics = metrics_until(port, "the three Encrypts", |m| {
        sample(m, encrypts) == Some(3.0)
    });
    assert_eq!(sample(&metrics, not_found), Some(2.0), "{metrics}");
    assert_eq!(sample(&metrics, creates), Some(1.0), "{metrics}");
    assert_eq!(
        sample(
            &metrics,
            r#"ekms_request_duration_seconds_count{operation="Encrypt"}"#
        ),
        Some(3.0),
        "{metrics}"
    );
    assert_eq!(
        sample(
            &metrics,
            r#"ekms_keys{spec="SYMMETRIC_DEFAULT",state="Enabled"}"#
        ),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(sample(&metrics, "ekms_enclave_sealed"), Some(0.0));
    assert!(
        sample(&metrics, "ekms_enclave_memory_used_bytes").is_some_and(|used| used > 0.0),
        "{metrics}"
    );
    // The parent's own: connections, bytes, commits, the audit disk.
    assert!(sample(&metrics, "ekms_relay_connections_total").is_some_and(|n| n >= 1.0));
    assert!(sample(
        &metrics,
        r#"ekms_relay_bytes_total{direction="to_enclave"}"#
    )
    .is_some_and(|n| n > 0.0));
    assert!(sample(&metrics, "ekms_store_commit_duration_seconds_count").is_some_and(|n| n >= 1.0));
    assert!(sample(&metrics, "ekms_audit_disk_free_bytes").is_some_and(|n| n > 0.0));
    // Nothing the parent may not see: no key id in any label.
    assert!(!metrics.contains(&key), "a key id in /metrics:\n{metrics}");

    assert_eq!(readyz_until(port, 200), "ready\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn readyz_is_503_while_sealed_and_200_once_unsealed() {
    let port = free_port();
    let dev = Ekms::start_with(&DevOptions {
        manual_unseal: true,
        ..with_metrics(port)
    });
    assert_eq!(get(port, "/healthz").0, 200);
    let body = readyz_until(port, 503);
    assert!(body.contains("not ready"), "a 503 says why: {body:?}");
    // Once the enclave reported, the reason is that it is sealed.
    let deadline = Instant::now() + REPORT_WAIT;
    while !get(port, "/readyz").1.contains("sealed") {
        assert!(Instant::now() < deadline, "/readyz never said sealed");
        std::thread::sleep(Duration::from_millis(250));
    }
    let metrics = get(port, "/metrics").1;
    assert_eq!(
        sample(&metrics, "ekms_enclave_sealed"),
        Some(1.0),
        "{metrics}"
    );

    // Init 1-of-1 leaves the enclave unsealed.
    let work = tempfile::Builder::new()
        .prefix("ekms-metrics-")
        .tempdir()
        .expect("a temporary dir");
    let (public, _) = custodian_keygen(&work.path().join("custodian"));
    let data = dev.data_dir();
    let out = work.path().join("init");
    ekms_cli(vec![
        "init".into(),
        "--endpoint".into(),
        dev.endpoint.clone().into(),
        "--custodian".into(),
        public.into_os_string(),
        "--threshold".into(),
        "1".into(),
        "--expect-pcrs".into(),
        data.join("pcrs.json").into_os_string(),
        "--root".into(),
        data.join("mock-ca").join("root.pem").into_os_string(),
        "--out".into(),
        out.clone().into_os_string(),
    ])
    .ok();
    let (id, secret) = read_credentials(&out.join("credentials"));
    assert_eq!(readyz_until(port, 200), "ready\n");
    // And it serves.
    let client = dev.client_with(&id, &secret, None);
    create_key(&client).await;
}
