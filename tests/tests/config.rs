//! Settings from a config file (`--config FILE`, TOML, the long options' names) and from
//! `EKMS_*` variables: a file with every setting of `ekms dev` starts it, the environment comes
//! before the file, and `ekms config check` refuses a bad file naming the line and the key (as
//! `ekms dev` itself does, with an error rather than a panic).

use std::net::SocketAddr;
use std::path::Path;

use ekms_tests::etcd::EtcdServer;
use ekms_tests::{ekms_cli, error_code, free_port, DevOptions, Ekms};

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("writing a config file");
    path
}

#[tokio::test]
async fn a_config_file_with_every_setting_starts_ekms_dev() {
    let etcd = EtcdServer::start();
    let work = tempfile::tempdir().expect("a temporary directory");
    let data_dir = work.path().join("data");
    let listen = SocketAddr::from(([127, 0, 0, 1], free_port()));
    // Every option of `ekms dev`; the region is overridden by EKMS_REGION below (the
    // environment comes before the file), so requests signed for us-east-1 are served.
    let config = write(
        work.path(),
        "ekms-dev.toml",
        &format!(
            r#"# every setting of ekms dev
listen = "{listen}"
data-dir = "{data}"
tls = true
manual-unseal = false
enclave-memory-mib = 512
quota = ["grants-per-key=2", "keys-per-principal=50"]
region = "eu-west-1"
store = "{store}"
log-format = "json"
metrics-listen = "127.0.0.1:{metrics}"
audit-max-bytes = "64M"
audit-max-age = "1d"
audit-min-free-bytes = "16M"
"#,
            data = data_dir.display(),
            metrics = free_port(),
            store = etcd.url("config-test"),
        ),
    );
    let checked = ekms_cli(["config".as_ref(), "check".as_ref(), config.as_os_str()]).ok();
    assert_eq!(checked.json()["Valid"], true, "{checked:?}");

    let ekms = Ekms::start_with(&DevOptions {
        config: Some(config),
        listen: Some(listen),
        data_dir: Some(data_dir),
        tls: true,
        env: vec![("EKMS_REGION".to_owned(), ekms_tests::REGION.to_owned())],
        ..DevOptions::default()
    });
    let client = ekms.client().await;
    let key = ekms_tests::create_key(&client).await;
    // grants-per-key = 2, from the file.
    for n in 0..2 {
        client
            .create_grant()
            .key_id(&key)
            .grantee_principal(format!("arn:aws:iam::111122223333:user/g{n}"))
            .operations(aws_sdk_kms::types::GrantOperation::Encrypt)
            .send()
            .await
            .expect("CreateGrant within the quota");
    }
    let over = client
        .create_grant()
        .key_id(&key)
        .grantee_principal("arn:aws:iam::111122223333:user/g2")
        .operations(aws_sdk_kms::types::GrantOperation::Encrypt)
        .send()
        .await
        .expect_err("a third grant is over the file's grants-per-key");
    assert_eq!(error_code(over), "LimitExceededException");
    // log-format = "json", from the file.
    let log = ekms.log();
    let last_complete = log.rsplit_once('\n').map_or("", |(done, _)| done);
    for line in last_complete.lines() {
        assert!(
            serde_json::from_str::<serde_json::Value>(line).is_ok(),
            "not JSON: {line:?}"
        );
    }
    // The store, from the file: etcd holds the deployment's records.
    assert!(ekms.endpoint.starts_with("https://"));
}

#[test]
fn ekms_config_check_names_the_line_and_the_key_of_a_bad_setting() {
    let work = tempfile::tempdir().expect("a temporary directory");
    let check = |file: &Path, program: &str| {
        ekms_cli([
            "config".as_ref(),
            "check".as_ref(),
            file.as_os_str(),
            "--for".as_ref(),
            program.as_ref(),
        ])
    };

    let unknown = write(
        work.path(),
        "unknown.toml",
        "listen = \"127.0.0.1:4599\"\n# a typo\nlisten-adress = \"127.0.0.1:4600\"\n",
    );
    let out = check(&unknown, "ekms-dev");
    assert_ne!(out.code, Some(0), "{out:?}");
    assert!(
        out.stderr.contains("line 3: unknown key `listen-adress`"),
        "{out:?}"
    );

    let wrong_type = write(
        work.path(),
        "wrong-type.toml",
        "listen = \"127.0.0.1:4599\"\ntls = \"yes\"\n",
    );
    let out = check(&wrong_type, "ekms-dev");
    assert_ne!(out.code, Some(0), "{out:?}");
    assert!(
        out.stderr
            .contains("line 2: `tls` must be true or false, not a string"),
        "{out:?}"
    );

    let bad_value = write(
        work.path(),
        "bad-value.toml",
        "listen = \"tcp://0.0.0.0:4599\"\nenclave = \"vsock://16:5000\"\nidle-timeout-secs = 0\n",
    );
    let out = check(&bad_value, "ekms-parent");
    assert_ne!(out.code, Some(0), "{out:?}");
    assert!(
        out.stderr.contains("line 3: `idle-timeout-secs`"),
        "{out:?}"
    );
    let enclave = write(
        work.path(),
        "enclave.toml",
        "listen = \"tcp://127.0.0.1:5000\"\ntls = 1\n",
    );
    let out = check(&enclave, "ekms-enclave");
    assert!(
        out.stderr
            .contains("line 2: `tls` must be true or false, not an integer"),
        "{out:?}"
    );

    let not_toml = write(work.path(), "not-toml.toml", "listen = \"a\"\nregion = \n");
    let out = check(&not_toml, "ekms-dev");
    assert!(out.stderr.contains("line 2: not TOML"), "{out:?}");

    // `ekms dev` refuses the same file the same way, before it starts anything.
    let out = ekms_cli(["dev".as_ref(), "--config".as_ref(), unknown.as_os_str()]);
    assert_ne!(out.code, Some(0), "{out:?}");
    assert!(
        out.stderr.contains("unknown key `listen-adress`"),
        "{out:?}"
    );
    assert!(!out.stderr.contains("panicked"), "{out:?}");
}

#[test]
fn the_shipped_parent_config_is_valid() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("scripts")
        .join("ekms-parent.toml");
    let out = ekms_cli([
        "config".as_ref(),
        "check".as_ref(),
        file.as_os_str(),
        "--for".as_ref(),
        "ekms-parent".as_ref(),
    ])
    .ok();
    assert_eq!(out.json()["Settings"]["data-dir"][0], "/var/lib/ekms");
}
