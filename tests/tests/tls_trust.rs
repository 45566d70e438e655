//! Attested TLS, end to end: `ekms trust` learns the deployment's CA from the enclave, proven
//! by an attestation document asked for on the same connection; through a man in the middle
//! (a TLS terminator with a CA of its own that forwards to the real endpoint, as a hostile
//! parent would) it refuses, naming why; and the CA it wrote still verifies the enclave after
//! a restart and unseal, so clients keep working with no new file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ekms_tests::{create_key, ekms_cli, sdk_client, CliOutput, DevOptions, Ekms};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};

fn trust(ekms: &Ekms, endpoint: &str, out: &Path) -> CliOutput {
    let data = ekms.data_dir();
    ekms_cli([
        "trust".into(),
        "--endpoint".into(),
        std::ffi::OsString::from(endpoint),
        "--expect-pcrs".into(),
        data.join("pcrs.json").into_os_string(),
        "--root".into(),
        data.join("mock-ca").join("root.pem").into_os_string(),
        "--out".into(),
        out.as_os_str().to_owned(),
    ])
}

/// A TLS terminator on loopback with its own CA: it decrypts what the client sends and relays it
/// over its own TLS connection to `upstream` (trusting `upstream_ca`), as a hostile parent could.
async fn man_in_the_middle(upstream: SocketAddr, upstream_ca: &[u8]) -> SocketAddr {
    let ca_key = rcgen::KeyPair::generate().expect("a key");
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "not the enclave");
    let ca_cert = ca.self_signed(&ca_key).expect("a CA");
    let leaf_key = rcgen::KeyPair::generate().expect("a key");
    let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
        .expect("params")
        .signed_by(&leaf_key, &ca_cert, &ca_key)
        .expect("a leaf");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone(), ca_cert.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
        )
        .expect("a server config");
    let mut roots = rustls::RootCertStore::empty();
    for cert in pem_certs(upstream_ca) {
        roots.add(cert).expect("the enclave's CA");
    }
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binding the terminator");
    let addr = listener.local_addr().expect("its address");
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let connector = connector.clone();
            tokio::spawn(async move {
                let Ok(mut downstream) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(tcp) = tokio::net::TcpStream::connect(upstream).await else {
                    return;
                };
                let name = ServerName::try_from("127.0.0.1").expect("a name");
                let Ok(mut up) = connector.connect(name, tcp).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut downstream, &mut up).await;
            });
        }
    });
    addr
}

fn pem_certs(pem: &[u8]) -> Vec<CertificateDer<'static>> {
    let text = String::from_utf8_lossy(pem);
    let mut out = Vec::new();
    for block in text.split("-----BEGIN CERTIFICATE-----").skip(1) {
        let body: String = block
            .split("-----END CERTIFICATE-----")
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .collect();
        use base64::Engine as _;
        let der = base64::engine::general_purpose::STANDARD
            .decode(body)
            .expect("PEM base64");
        out.push(CertificateDer::from(der));
    }
    out
}

fn restartable_tls(dir: &Path) -> DevOptions {
    DevOptions {
        data_dir: Some(dir.to_path_buf()),
        tls: true,
        ..DevOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn trust_proves_the_ca_refuses_a_man_in_the_middle_and_survives_a_restart() {
    let work = tempfile::tempdir().expect("a temp dir");
    let dir = work.path().join("dev");
    let trusted: PathBuf = work.path().join("trusted-ca.pem");
    let key = {
        let ekms = Ekms::start_with(&restartable_tls(&dir));
        let out = trust(&ekms, &ekms.endpoint, &trusted);
        assert!(out.success(), "{out:?}");
        let proven = std::fs::read(&trusted).expect("the CA written");
        assert_eq!(
            pem_certs(&proven),
            pem_certs(ekms.ca_pem.as_deref().expect("ca.pem")),
            "the proven CA is the deployment's"
        );

        // Through a terminator with its own CA: refused, and nothing is written.
        let mitm = man_in_the_middle(ekms.addr, &proven).await;
        let refused_out = work.path().join("mitm-ca.pem");
        let out = trust(&ekms, &format!("https://{mitm}"), &refused_out);
        assert!(!out.success(), "trust through a man in the middle: {out:?}");
        assert!(out.stderr.contains("man in the middle"), "{}", out.stderr);
        assert!(!refused_out.exists());

        let client = sdk_client(
            &ekms.endpoint,
            &ekms.access_key_id,
            &ekms.secret,
            Some(&proven),
        );
        create_key(&client).await
    };

    // A restart and unseal: the CA proven before still verifies the enclave.
    let ekms = Ekms::start_with(&restartable_tls(&dir));
    let proven = std::fs::read(&trusted).expect("the CA written");
    let client = sdk_client(
        &ekms.endpoint,
        &ekms.access_key_id,
        &ekms.secret,
        Some(&proven),
    );
    let described = client
        .describe_key()
        .key_id(&key)
        .send()
        .await
        .expect("the same CA verifies the restarted enclave");
    assert_eq!(
        described.key_metadata().map(|m| m.key_id()),
        Some(key.as_str())
    );
    let again = work.path().join("again.pem");
    let out = trust(&ekms, &ekms.endpoint, &again);
    assert!(out.success(), "{out:?}");
    assert_eq!(std::fs::read(&again).expect("written"), proven);
}

fn init_cli(ekms: &Ekms, endpoint: &str, custodian: &Path, out: &Path) -> CliOutput {
    let data = ekms.data_dir();
    ekms_cli([
        "init".into(),
        "--endpoint".into(),
        std::ffi::OsString::from(endpoint),
        "--custodian".into(),
        custodian.as_os_str().to_owned(),
        "--threshold".into(),
        "1".into(),
        "--expect-pcrs".into(),
        data.join("pcrs.json").into_os_string(),
        "--root".into(),
        data.join("mock-ca").join("root.pem").into_os_string(),
        "--out".into(),
        out.as_os_str().to_owned(),
    ])
}

fn status_cli(ekms: &Ekms, endpoint: &str) -> CliOutput {
    let data = ekms.data_dir();
    ekms_cli([
        "status".into(),
        "--endpoint".into(),
        std::ffi::OsString::from(endpoint),
        "--expect-pcrs".into(),
        data.join("pcrs.json").into_os_string(),
        "--root".into(),
        data.join("mock-ca").join("root.pem").into_os_string(),
    ])
}

fn unseal_cli(ekms: &Ekms, endpoint: &str, share: &Path, key: &Path) -> CliOutput {
    let data = ekms.data_dir();
    ekms_cli([
        "unseal".into(),
        "--endpoint".into(),
        std::ffi::OsString::from(endpoint),
        "--share".into(),
        share.as_os_str().to_owned(),
        "--key".into(),
        key.as_os_str().to_owned(),
        "--expect-pcrs".into(),
        data.join("pcrs.json").into_os_string(),
        "--root".into(),
        data.join("mock-ca").join("root.pem").into_os_string(),
    ])
}

fn assert_refused_as_mitm(out: &CliOutput, what: &str) {
    assert!(
        !out.success(),
        "{what} through a man in the middle: {out:?}"
    );
    assert!(
        out.stderr.contains("man in the middle"),
        "{what}: {}",
        out.stderr
    );
}

/// `ekms init`, `unseal` and `status` over https without `--ca` prove the certificate on their
/// own connection first: a hostile parent terminating TLS would otherwise see the custodian
/// keys at init (and could swap its own in). Through a man in the middle each refuses, naming
/// it, and sends nothing (the enclave stays uninitialized, then sealed); direct, each works.
#[tokio::test(flavor = "multi_thread")]
async fn init_unseal_and_status_refuse_a_man_in_the_middle() {
    let work = tempfile::tempdir().expect("a temp dir");
    let dir = work.path().join("dev");
    let manual = DevOptions {
        tls: true,
        manual_unseal: true,
        data_dir: Some(dir.clone()),
        ..DevOptions::default()
    };
    let (public, secret) = ekms_tests::custodian_keygen(&work.path().join("custodian"));
    let shares = work.path().join("direct");
    {
        let ekms = Ekms::start_with(&manual);
        let boot_ca = ekms.ca_pem.clone().expect("the boot CA");
        let mitm = man_in_the_middle(ekms.addr, &boot_ca).await;
        let through = format!("https://{mitm}");
        let out_dir = work.path().join("through-mitm");
        assert_refused_as_mitm(&init_cli(&ekms, &through, &public, &out_dir), "init");
        assert!(!out_dir.exists(), "nothing written");
        assert_refused_as_mitm(&status_cli(&ekms, &through), "status");
        let status = status_cli(&ekms, &ekms.endpoint).ok().json();
        assert_eq!(status["State"], "Uninitialized", "{status}");

        let out = init_cli(&ekms, &ekms.endpoint, &public, &shares);
        assert!(out.success(), "{out:?}");
    }
    // Restarted: sealed, and the share goes only to a proven endpoint.
    let ekms = Ekms::start_with(&manual);
    let share = std::fs::read_dir(&shares)
        .expect("the shares")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("share-"))
        })
        .expect("a share file");
    let boot_ca = ekms.ca_pem.clone().expect("the boot CA");
    let mitm = man_in_the_middle(ekms.addr, &boot_ca).await;
    assert_refused_as_mitm(
        &unseal_cli(&ekms, &format!("https://{mitm}"), &share, &secret),
        "unseal",
    );
    let status = status_cli(&ekms, &ekms.endpoint).ok().json();
    assert_eq!(status["State"], "Sealed", "{status}");
    let out = unseal_cli(&ekms, &ekms.endpoint, &share, &secret);
    assert!(out.success(), "{out:?}");
    let status = status_cli(&ekms, &ekms.endpoint).ok().json();
    assert_eq!(status["State"], "Unsealed", "{status}");
}

/// `ekms tls rotate --overlap-days N --out FILE`, signed with the dev principal's keys, trusting
/// `ca` for the connection.
fn rotate(ekms: &Ekms, overlap_days: u32, out: &Path, ca: &Path) -> CliOutput {
    let days = overlap_days.to_string();
    tls_cli(
        ekms,
        &[
            "rotate".as_ref(),
            "--overlap-days".as_ref(),
            days.as_ref(),
            "--out".as_ref(),
            out.as_os_str(),
        ],
        ca,
    )
}

/// Whether an SDK client trusting only `ca` can use the enclave now.
async fn works_with(ekms: &Ekms, ca: &[u8]) -> bool {
    sdk_client(&ekms.endpoint, &ekms.access_key_id, &ekms.secret, Some(ca))
        .list_keys()
        .send()
        .await
        .is_ok()
}

/// `ekms tls rotate` makes a new CA: during the overlap the enclave presents it cross-signed by
/// the old one, so clients pinning either verify; a rotation without overlap leaves only the
/// newest; and the rotated CA is sealed, so it is the one served after a restart.
#[tokio::test(flavor = "multi_thread")]
async fn tls_rotate_keeps_the_old_ca_for_the_overlap_and_survives_a_restart() {
    let work = tempfile::tempdir().expect("a temp dir");
    let dir = work.path().join("dev");
    let first = work.path().join("first.pem");
    let second = work.path().join("second.pem");
    let third = work.path().join("third.pem");
    {
        let ekms = Ekms::start_with(&restartable_tls(&dir));
        std::fs::write(&first, ekms.ca_pem.as_deref().expect("ca.pem")).expect("writing");
        let out = rotate(&ekms, 30, &second, &first);
        assert!(out.success(), "{out:?}");
        let first_pem = std::fs::read(&first).expect("first");
        let second_pem = std::fs::read(&second).expect("second");
        assert_ne!(first_pem, second_pem);
        assert!(
            works_with(&ekms, &first_pem).await,
            "the old CA, in the overlap"
        );
        assert!(works_with(&ekms, &second_pem).await, "the new CA");
        // Proven by attestation, the presented chain is the cross-signed one.
        let proven = work.path().join("proven.pem");
        let out = trust(&ekms, &ekms.endpoint, &proven);
        assert!(out.success(), "{out:?}");

        let out = rotate(&ekms, 0, &third, &second);
        assert!(out.success(), "{out:?}");
        let third_pem = std::fs::read(&third).expect("third");
        assert!(works_with(&ekms, &third_pem).await, "the newest CA");
        assert!(
            !works_with(&ekms, &second_pem).await,
            "no overlap: the previous CA fails"
        );
        assert!(!works_with(&ekms, &first_pem).await, "nor the first");
    }
    let ekms = Ekms::start_with(&restartable_tls(&dir));
    let third_pem = std::fs::read(&third).expect("third");
    assert!(
        works_with(&ekms, &third_pem).await,
        "the rotated CA after a restart"
    );
}

/// `ekms tls ARGS --endpoint ENDPOINT --ca CA`, signed with the dev principal's keys.
fn tls_cli(ekms: &Ekms, args: &[&std::ffi::OsStr], ca: &Path) -> CliOutput {
    let mut all: Vec<&std::ffi::OsStr> = vec!["tls".as_ref()];
    all.extend_from_slice(args);
    all.extend([
        "--endpoint".as_ref(),
        ekms.endpoint.as_ref(),
        "--ca".as_ref(),
        ca.as_os_str(),
    ]);
    signed_cli(ekms, &all)
}

/// `ekms ARGS`, signed with the dev principal's keys (and no CA from the environment).
fn signed_cli(ekms: &Ekms, args: &[&std::ffi::OsStr]) -> CliOutput {
    let output = std::process::Command::new(ekms_tests::bin_dir().join("ekms"))
        .args(args)
        .env_remove("CARGO")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_SHARED_CREDENTIALS_FILE")
        .env_remove("AWS_CA_BUNDLE")
        .env("AWS_ACCESS_KEY_ID", &ekms.access_key_id)
        .env("AWS_SECRET_ACCESS_KEY", &ekms.secret)
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .output()
        .expect("running ekms");
    CliOutput {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// A CA of the operator's own (a company PKI), and a leaf it issues for `csr_pem`.
fn issue_for(csr_pem: &str, ca: &rcgen::Certificate, ca_key: &rcgen::KeyPair) -> String {
    let csr = rcgen::CertificateSigningRequestParams::from_pem(csr_pem).expect("a CSR");
    let leaf = csr.signed_by(ca, ca_key).expect("issuing");
    format!("{}{}", leaf.pem(), ca.pem())
}

/// `ekms tls csr` gives a CSR for a key made in the enclave; the operator's CA issues it;
/// `ekms tls install` serves it after checking the leaf is for that key (a chain for another
/// key is refused). Clients that trust only the operator's CA then work, `ekms trust` proves
/// that CA by attestation as before, and the installed chain is served after a restart.
#[tokio::test(flavor = "multi_thread")]
async fn an_operator_issued_chain_is_installed_served_and_proven() {
    let work = tempfile::tempdir().expect("a temp dir");
    let dir = work.path().join("dev");
    let ekms = Ekms::start_with(&restartable_tls(&dir));
    let ca_file = work.path().join("deployment-ca.pem");
    std::fs::write(&ca_file, ekms.ca_pem.as_deref().expect("ca.pem")).expect("writing");
    let csr_file = work.path().join("ekms.csr");
    let out = tls_cli(
        &ekms,
        &["csr".as_ref(), "--out".as_ref(), csr_file.as_os_str()],
        &ca_file,
    );
    assert!(out.success(), "{out:?}");
    assert!(out.json()["AttestationDocument"].is_string(), "{out:?}");
    let csr = std::fs::read_to_string(&csr_file).expect("the CSR");

    let ca_key = rcgen::KeyPair::generate().expect("a key");
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Example Corp PKI");
    let operator_ca = params.self_signed(&ca_key).expect("the operator's CA");

    // A chain for another key: refused.
    let other_key = rcgen::KeyPair::generate().expect("a key");
    let other_csr = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .expect("params")
        .serialize_request(&other_key)
        .expect("a CSR")
        .pem()
        .expect("PEM");
    let wrong = work.path().join("wrong.pem");
    std::fs::write(&wrong, issue_for(&other_csr, &operator_ca, &ca_key)).expect("writing");
    let out = tls_cli(
        &ekms,
        &["install".as_ref(), "--chain".as_ref(), wrong.as_os_str()],
        &ca_file,
    );
    assert!(
        !out.success(),
        "a chain for another key was installed: {out:?}"
    );
    assert!(out.stderr.contains("not for the key"), "{}", out.stderr);

    let chain = work.path().join("chain.pem");
    std::fs::write(&chain, issue_for(&csr, &operator_ca, &ca_key)).expect("writing");
    let out = tls_cli(
        &ekms,
        &["install".as_ref(), "--chain".as_ref(), chain.as_os_str()],
        &ca_file,
    );
    assert!(out.success(), "{out:?}");
    let operator_pem = operator_ca.pem().into_bytes();
    assert!(
        works_with(&ekms, &operator_pem).await,
        "the operator's CA verifies the enclave"
    );
    let proven = work.path().join("proven.pem");
    let out = trust(&ekms, &ekms.endpoint, &proven);
    assert!(out.success(), "{out:?}");
    assert_eq!(
        pem_certs(&std::fs::read(&proven).expect("written")),
        pem_certs(&operator_pem)
    );
    drop(ekms);

    let ekms = Ekms::start_with(&restartable_tls(&dir));
    assert!(
        works_with(&ekms, &operator_pem).await,
        "the installed chain after a restart"
    );
}

/// `ekms ARGS --endpoint ENDPOINT --expect-pcrs .. --root ..` signed as the dev principal.
fn signed_cli_proving(ekms: &Ekms, args: &[&str], endpoint: &str) -> CliOutput {
    let data = ekms.data_dir();
    let pcrs = data.join("pcrs.json");
    let root = data.join("mock-ca").join("root.pem");
    let mut all: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_ref()).collect();
    all.extend([
        "--endpoint".as_ref(),
        endpoint.as_ref(),
        "--expect-pcrs".as_ref(),
        pcrs.as_os_str(),
        "--root".as_ref(),
        root.as_os_str(),
    ]);
    signed_cli(ekms, &all)
}

/// The signed operator commands (`principal`, `access-key`, `tls`, `refused-records`) and
/// `audit verify --endpoint` prove the certificate by attestation too, given `--expect-pcrs`
/// and no `--ca`: through a man in the middle they refuse; direct, they work.
#[tokio::test(flavor = "multi_thread")]
async fn signed_commands_and_audit_verify_refuse_a_man_in_the_middle() {
    let ekms = Ekms::start_with(&DevOptions {
        tls: true,
        ..DevOptions::default()
    });
    let ca = ekms.ca_pem.clone().expect("ca.pem");
    let mitm = format!("https://{}", man_in_the_middle(ekms.addr, &ca).await);
    assert_refused_as_mitm(
        &signed_cli_proving(&ekms, &["principal", "list"], &mitm),
        "principal list",
    );
    let out = signed_cli_proving(&ekms, &["principal", "list"], &ekms.endpoint);
    assert!(out.success(), "{out:?}");
    assert!(out.stdout.contains("\"dev\""), "{}", out.stdout);

    let data = ekms.data_dir();
    let audit = data.join("store").join("audit.jsonl");
    let verify = |endpoint: &str| {
        ekms_cli([
            "audit".into(),
            "verify".into(),
            audit.clone().into_os_string(),
            "--endpoint".into(),
            std::ffi::OsString::from(endpoint),
            "--expect-pcrs".into(),
            data.join("pcrs.json").into_os_string(),
            "--root".into(),
            data.join("mock-ca").join("root.pem").into_os_string(),
        ])
    };
    assert_refused_as_mitm(&verify(&mitm), "audit verify --endpoint");
    std::thread::sleep(std::time::Duration::from_millis(400));
    let out = verify(&ekms.endpoint);
    assert!(out.success(), "{out:?}");
}
