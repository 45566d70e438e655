//! End to end: import of key material (BYOK) with an attested wrapping key, and Recipient
//! answers that only the attested enclave's key opens.
//!
//! - `ekms import-key` verifies the wrapping key's attestation (mock root and the mock PCRs
//!   of the enclave binary, from the data dir) before it wraps; the imported key then
//!   encrypts and decrypts, survives DeleteImportedKeyMaterial + re-import of the same
//!   material, and refuses other material.
//! - The AWS-documented flow with the openssl command line (`pkeyutl` RSAES-OAEP SHA-256, and
//!   RSA_AES_KEY_WRAP_SHA_256 with `enc -id-aes256-wrap-pad`) works through the SDK; an import
//!   with neither ExpirationModel nor ValidTo is refused as AWS refuses it.
//! - RSA, ECC and HMAC material, made with openssl as AWS's documentation shows, imports into
//!   EXTERNAL keys of those specs and signs and MACs as openssl does with it.
//! - Key material ids and on-demand rotation of an imported key (AWS, 2025): new material
//!   imported with ImportType NEW_KEY_MATERIAL is PENDING_ROTATION until RotateKeyOnDemand makes
//!   it current; ciphertexts under the old material still decrypt; ListKeyRotations shows each
//!   material's state; DeleteImportedKeyMaterial deletes one material by its KeyMaterialId.
//! - Decrypt, GenerateDataKey and GenerateRandom with a Recipient answer CMS that
//!   `openssl cms -decrypt` opens with the recipient's private key, with no Plaintext; a
//!   document from an untrusted (other mock) root is a client error.
//!
//! Needs the `openssl` command line.

use std::path::{Path, PathBuf};
use std::process::Command;

use aws_sdk_kms::error::DisplayErrorContext;
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{
    AlgorithmSpec, DataKeySpec, ExpirationModelType, ImportState, ImportType, IncludeKeyMaterial,
    KeyEncryptionMechanism, KeyMaterialState, KeyState, OriginType, RecipientInfo, RotationType,
    WrappingKeySpec,
};
use ekms_tests::{
    assert_code, bin_dir, ekms_cli_as, error_code, CliCredentials, DevOptions, Ekms, ACCOUNT,
};

fn run(command: &mut Command) -> std::process::Output {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("running {command:?}: {e}"));
    output
}

fn run_ok(command: &mut Command) -> Vec<u8> {
    let output = run(command);
    assert!(
        output.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

fn openssl() -> Command {
    Command::new("openssl")
}

fn ekms() -> Command {
    Command::new(bin_dir().join("ekms"))
}

fn random_bytes(n: usize) -> Vec<u8> {
    use std::io::Read as _;
    let mut bytes = vec![0u8; n];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .expect("reading /dev/urandom");
    bytes
}

async fn create_external_key(client: &aws_sdk_kms::Client) -> String {
    let out = client
        .create_key()
        .origin(OriginType::External)
        .description("ekms-tests import")
        .send()
        .await
        .expect("CreateKey Origin EXTERNAL");
    let meta = out.key_metadata().expect("KeyMetadata");
    assert_eq!(meta.key_state(), Some(&KeyState::PendingImport));
    assert_eq!(meta.origin(), Some(&OriginType::External));
    // No material yet, so no expiration model (AWS omits it until the first import).
    assert_eq!(meta.expiration_model(), None);
    meta.key_id().to_owned()
}

async fn key_state(client: &aws_sdk_kms::Client, key_id: &str) -> KeyState {
    client
        .describe_key()
        .key_id(key_id)
        .send()
        .await
        .expect("DescribeKey")
        .key_metadata()
        .and_then(|m| m.key_state().cloned())
        .expect("KeyState")
}

/// `ekms import-key` against the shared server, with its credentials.
fn import_key(
    ekms_server: &Ekms,
    key_id: &str,
    material: &Path,
    pcrs: &Path,
) -> std::process::Output {
    import_key_with(ekms_server, key_id, material, pcrs, &[])
}

/// [`import_key`] with more arguments.
fn import_key_with(
    ekms_server: &Ekms,
    key_id: &str,
    material: &Path,
    pcrs: &Path,
    more: &[&str],
) -> std::process::Output {
    let data = ekms_server.data_dir();
    run(ekms()
        .arg("import-key")
        .arg("--endpoint")
        .arg(&ekms_server.endpoint)
        .arg("--key-id")
        .arg(key_id)
        .arg("--material")
        .arg(material)
        .arg("--expect-pcrs")
        .arg(pcrs)
        .arg("--root")
        .arg(data.join("mock-ca").join("root.pem"))
        .arg("--wrapping-key-spec")
        .arg("RSA_2048")
        .args(more)
        .env("AWS_ACCESS_KEY_ID", &ekms_server.access_key_id)
        .env("AWS_SECRET_ACCESS_KEY", &ekms_server.secret)
        .env("AWS_REGION", ekms_tests::REGION))
}

async fn round_trip(client: &aws_sdk_kms::Client, key_id: &str, message: &[u8]) -> Vec<u8> {
    let ciphertext = client
        .encrypt()
        .key_id(key_id)
        .plaintext(Blob::new(message))
        .send()
        .await
        .expect("Encrypt")
        .ciphertext_blob()
        .expect("CiphertextBlob")
        .as_ref()
        .to_vec();
    let plaintext = client
        .decrypt()
        .ciphertext_blob(Blob::new(ciphertext.clone()))
        .send()
        .await
        .expect("Decrypt")
        .plaintext()
        .expect("Plaintext")
        .as_ref()
        .to_vec();
    assert_eq!(plaintext, message);
    ciphertext
}

#[tokio::test]
async fn material_wrapped_by_a_verifying_client_encrypts_and_decrypts() {
    let server = Ekms::shared();
    let client = server.client().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let key_id = create_external_key(&client).await;
    assert_code!(
        client
            .encrypt()
            .key_id(&key_id)
            .plaintext(Blob::new("x"))
            .send()
            .await,
        "KMSInvalidStateException"
    );

    let material = dir.path().join("material.bin");
    std::fs::write(&material, random_bytes(32)).expect("writing the material");
    let pcrs = server.data_dir().join("pcrs.json");

    // A client pinning other PCRs refuses to wrap: the key stays PendingImport.
    let wrong_pcrs = dir.path().join("other-pcrs.json");
    std::fs::write(&wrong_pcrs, format!(r#"{{"PCR0": "{}"}}"#, "ab".repeat(48)))
        .expect("writing other PCRs");
    let refused = import_key(server, &key_id, &material, &wrong_pcrs);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("does not verify"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    assert_eq!(key_state(&client, &key_id).await, KeyState::PendingImport);

    // The right PCRs: verified, wrapped, imported.
    let imported = import_key(server, &key_id, &material, &pcrs);
    assert!(
        imported.status.success(),
        "{}",
        String::from_utf8_lossy(&imported.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_slice(&imported.stdout).expect("import-key prints JSON");
    assert!(report["VerifiedPcrs"]["PCR0"].is_string(), "{report}");
    // Its steps are shown on a terminal only: through a pipe, stderr has none of them.
    let stderr = String::from_utf8_lossy(&imported.stderr);
    assert!(
        !stderr.contains("wrapping key") && !stderr.contains('\r'),
        "progress drawn on a stderr that is not a terminal: {stderr:?}"
    );
    assert_eq!(key_state(&client, &key_id).await, KeyState::Enabled);
    let before = round_trip(&client, &key_id, b"imported material works").await;

    // Deleted material: PendingImport, nothing decrypts.
    client
        .delete_imported_key_material()
        .key_id(&key_id)
        .send()
        .await
        .expect("DeleteImportedKeyMaterial");
    assert_eq!(key_state(&client, &key_id).await, KeyState::PendingImport);
    assert_code!(
        client
            .decrypt()
            .ciphertext_blob(Blob::new(before.clone()))
            .send()
            .await,
        "KMSInvalidStateException"
    );

    // Other material is refused; the same material comes back and old ciphertexts decrypt.
    let other = dir.path().join("other.bin");
    std::fs::write(&other, random_bytes(32)).expect("writing other material");
    let wrong = import_key(server, &key_id, &other, &pcrs);
    assert!(!wrong.status.success());
    assert!(
        String::from_utf8_lossy(&wrong.stderr).contains("IncorrectKeyMaterialException"),
        "{}",
        String::from_utf8_lossy(&wrong.stderr)
    );
    let again = import_key(server, &key_id, &material, &pcrs);
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    let plaintext = client
        .decrypt()
        .ciphertext_blob(Blob::new(before))
        .send()
        .await
        .expect("Decrypt after re-import")
        .plaintext()
        .expect("Plaintext")
        .as_ref()
        .to_vec();
    assert_eq!(plaintext, b"imported material works");
}

/// The flow of the AWS documentation ("Importing key material", step 3 with OpenSSL), with the
/// SDK in place of the AWS CLI.
#[tokio::test]
async fn the_documented_openssl_flow_imports() {
    let server = Ekms::shared();
    let client = server.client().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let key_id = create_external_key(&client).await;

    let parameters = client
        .get_parameters_for_import()
        .key_id(&key_id)
        .wrapping_algorithm(AlgorithmSpec::RsaesOaepSha256)
        .wrapping_key_spec(WrappingKeySpec::Rsa2048)
        .send()
        .await
        .expect("GetParametersForImport");
    let valid_to = parameters.parameters_valid_to().expect("ParametersValidTo");
    let hours = (valid_to.secs()
        - std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_secs() as i64)
        / 3600;
    assert!((23..=24).contains(&hours), "valid for {hours} h");
    let public_key = dir.path().join("WrappingPublicKey.bin");
    std::fs::write(
        &public_key,
        parameters.public_key().expect("PublicKey").as_ref(),
    )
    .expect("writing the public key");
    let material = dir.path().join("PlaintextKeyMaterial.bin");
    run_ok(openssl().args(["rand", "-out"]).arg(&material).arg("32"));
    let wrapped = dir.path().join("EncryptedKeyMaterial.bin");
    run_ok(
        openssl()
            .args(["pkeyutl", "-encrypt", "-in"])
            .arg(&material)
            .arg("-out")
            .arg(&wrapped)
            .arg("-inkey")
            .arg(&public_key)
            .args([
                "-keyform",
                "DER",
                "-pubin",
                "-pkeyopt",
                "rsa_padding_mode:oaep",
                "-pkeyopt",
                "rsa_oaep_md:sha256",
                "-pkeyopt",
                "rsa_mgf1_md:sha256",
            ]),
    );
    let token = parameters.import_token().expect("ImportToken").clone();
    let import = || {
        client
            .import_key_material()
            .key_id(&key_id)
            .import_token(token.clone())
            .encrypted_key_material(Blob::new(std::fs::read(&wrapped).expect("wrapped")))
            .expiration_model(ExpirationModelType::KeyMaterialDoesNotExpire)
            .send()
    };
    // Neither ExpirationModel nor ValidTo: AWS's default model, KEY_MATERIAL_EXPIRES, needs a
    // ValidTo, so AWS refuses (checked before the token is redeemed: it stays usable).
    let refused = client
        .import_key_material()
        .key_id(&key_id)
        .import_token(token.clone())
        .encrypted_key_material(Blob::new(std::fs::read(&wrapped).expect("wrapped")))
        .send()
        .await
        .expect_err("ImportKeyMaterial with neither ExpirationModel nor ValidTo")
        .into_service_error();
    use aws_sdk_kms::error::ProvideErrorMetadata as _;
    assert_eq!(refused.code(), Some("ValidationException"));
    assert_eq!(
        refused.message(),
        Some("A validTo date must be set if the ExpirationModel is KEY_MATERIAL_EXPIRES")
    );
    import().await.expect("ImportKeyMaterial");
    round_trip(&client, &key_id, b"openssl-wrapped material").await;
    let meta = client
        .describe_key()
        .key_id(&key_id)
        .send()
        .await
        .expect("DescribeKey")
        .key_metadata()
        .cloned()
        .expect("KeyMetadata");
    assert_eq!(
        meta.expiration_model(),
        Some(&ExpirationModelType::KeyMaterialDoesNotExpire)
    );
    // On-demand rotation of an EXTERNAL key needs new material imported for it first: with
    // none pending, AWS answers KMSInvalidStateException.
    let refused = client
        .rotate_key_on_demand()
        .key_id(&key_id)
        .send()
        .await
        .expect_err("RotateKeyOnDemand of an EXTERNAL key with no new material")
        .into_service_error();
    assert_eq!(refused.code(), Some("KMSInvalidStateException"));
    assert_eq!(
        refused.message(),
        Some(
            format!(
                "{} has no new key material pending rotation.",
                ekms_tests::key_arn(&key_id)
            )
            .as_str()
        )
    );
    // The token was single use.
    assert_code!(import().await, "InvalidImportTokenException");

    // RSA_AES_KEY_WRAP_SHA_256: OAEP of an ephemeral AES-256 key, then RFC 5649 of the
    // material (`openssl enc -id-aes256-wrap-pad`), concatenated — into a second key.
    let key_id = create_external_key(&client).await;
    let parameters = client
        .get_parameters_for_import()
        .key_id(&key_id)
        .wrapping_algorithm(AlgorithmSpec::RsaAesKeyWrapSha256)
        .wrapping_key_spec(WrappingKeySpec::Rsa2048)
        .send()
        .await
        .expect("GetParametersForImport RSA_AES_KEY_WRAP_SHA_256");
    std::fs::write(
        &public_key,
        parameters.public_key().expect("PublicKey").as_ref(),
    )
    .expect("writing the public key");
    let aes_key = random_bytes(32);
    let aes_key_file = dir.path().join("aes-key.bin");
    std::fs::write(&aes_key_file, &aes_key).expect("writing the AES key");
    let hex_key: String = aes_key.iter().map(|b| format!("{b:02x}")).collect();
    let kwp = dir.path().join("key_material_wrapped.bin");
    run_ok(
        openssl()
            .args([
                "enc",
                "-id-aes256-wrap-pad",
                "-K",
                &hex_key,
                "-iv",
                "A65959A6",
                "-in",
            ])
            .arg(&material)
            .arg("-out")
            .arg(&kwp),
    );
    let wrapped_aes = dir.path().join("aes-key_wrapped.bin");
    run_ok(
        openssl()
            .args(["pkeyutl", "-encrypt", "-in"])
            .arg(&aes_key_file)
            .arg("-out")
            .arg(&wrapped_aes)
            .arg("-inkey")
            .arg(&public_key)
            .args([
                "-keyform",
                "DER",
                "-pubin",
                "-pkeyopt",
                "rsa_padding_mode:oaep",
                "-pkeyopt",
                "rsa_oaep_md:sha256",
                "-pkeyopt",
                "rsa_mgf1_md:sha256",
            ]),
    );
    let mut combined = std::fs::read(&wrapped_aes).expect("wrapped AES key");
    combined.extend(std::fs::read(&kwp).expect("wrapped material"));
    client
        .import_key_material()
        .key_id(&key_id)
        .import_token(parameters.import_token().expect("ImportToken").clone())
        .encrypted_key_material(Blob::new(combined))
        .expiration_model(ExpirationModelType::KeyMaterialDoesNotExpire)
        .send()
        .await
        .expect("ImportKeyMaterial RSA_AES_KEY_WRAP_SHA_256");
    round_trip(&client, &key_id, b"key-wrapped material").await;
}

/// Wraps the material in `material` for a wrapping public key (DER), with openssl as AWS's
/// documentation does: RSAES-OAEP of the material, or for RSA_AES_KEY_WRAP_* RSAES-OAEP of an
/// ephemeral AES-256 key followed by the material under RFC 5649 key wrap with padding.
fn openssl_wrap(
    dir: &Path,
    public_key: &[u8],
    material: &Path,
    algorithm: &AlgorithmSpec,
) -> Vec<u8> {
    let public = dir.join("wrapping-public-key.der");
    std::fs::write(&public, public_key).expect("writing the wrapping key");
    let md = match algorithm {
        AlgorithmSpec::RsaesOaepSha1 | AlgorithmSpec::RsaAesKeyWrapSha1 => "sha1",
        _ => "sha256",
    };
    let oaep = |input: &Path, output: &Path| {
        run_ok(
            openssl()
                .args(["pkeyutl", "-encrypt", "-in"])
                .arg(input)
                .arg("-out")
                .arg(output)
                .arg("-inkey")
                .arg(&public)
                .args([
                    "-keyform",
                    "DER",
                    "-pubin",
                    "-pkeyopt",
                    "rsa_padding_mode:oaep",
                ])
                .args(["-pkeyopt", &format!("rsa_oaep_md:{md}")])
                .args(["-pkeyopt", &format!("rsa_mgf1_md:{md}")]),
        );
        std::fs::read(output).expect("reading the wrapped bytes")
    };
    match algorithm {
        AlgorithmSpec::RsaesOaepSha1 | AlgorithmSpec::RsaesOaepSha256 => {
            oaep(material, &dir.join("wrapped.bin"))
        }
        _ => {
            let aes_key = random_bytes(32);
            let aes_key_file = dir.join("aes-key.bin");
            std::fs::write(&aes_key_file, &aes_key).expect("writing the AES key");
            let hex_key: String = aes_key.iter().map(|b| format!("{b:02x}")).collect();
            let kwp = dir.join("material-kwp.bin");
            run_ok(
                openssl()
                    .args(["enc", "-id-aes256-wrap-pad", "-K", &hex_key])
                    .args(["-iv", "A65959A6", "-in"])
                    .arg(material)
                    .arg("-out")
                    .arg(&kwp),
            );
            let mut wrapped = oaep(&aes_key_file, &dir.join("aes-key-wrapped.bin"));
            wrapped.extend(std::fs::read(&kwp).expect("reading the wrapped material"));
            wrapped
        }
    }
}

/// GetParametersForImport, the wrap, and ImportKeyMaterial (no expiry).
async fn import_material(
    client: &aws_sdk_kms::Client,
    dir: &Path,
    key_id: &str,
    material: &Path,
    algorithm: AlgorithmSpec,
) -> Result<
    (),
    aws_sdk_kms::error::SdkError<
        aws_sdk_kms::operation::import_key_material::ImportKeyMaterialError,
    >,
> {
    let parameters = client
        .get_parameters_for_import()
        .key_id(key_id)
        .wrapping_algorithm(algorithm.clone())
        .wrapping_key_spec(WrappingKeySpec::Rsa3072)
        .send()
        .await
        .expect("GetParametersForImport");
    let wrapped = openssl_wrap(
        dir,
        parameters.public_key().expect("PublicKey").as_ref(),
        material,
        &algorithm,
    );
    client
        .import_key_material()
        .key_id(key_id)
        .import_token(parameters.import_token().expect("ImportToken").clone())
        .encrypted_key_material(Blob::new(wrapped))
        .expiration_model(ExpirationModelType::KeyMaterialDoesNotExpire)
        .send()
        .await
        .map(|_| ())
}

/// GetParametersForImport, the wrap (RSAES_OAEP_SHA_256, with openssl), and ImportKeyMaterial
/// with what `options` adds to the request.
async fn import_with(
    client: &aws_sdk_kms::Client,
    dir: &Path,
    key_id: &str,
    material: &[u8],
    options: impl FnOnce(
        aws_sdk_kms::operation::import_key_material::builders::ImportKeyMaterialFluentBuilder,
    ) -> aws_sdk_kms::operation::import_key_material::builders::ImportKeyMaterialFluentBuilder,
) -> Result<
    aws_sdk_kms::operation::import_key_material::ImportKeyMaterialOutput,
    aws_sdk_kms::error::SdkError<
        aws_sdk_kms::operation::import_key_material::ImportKeyMaterialError,
    >,
> {
    let parameters = client
        .get_parameters_for_import()
        .key_id(key_id)
        .wrapping_algorithm(AlgorithmSpec::RsaesOaepSha256)
        .wrapping_key_spec(WrappingKeySpec::Rsa2048)
        .send()
        .await
        .expect("GetParametersForImport");
    let file = dir.join("material.bin");
    std::fs::write(&file, material).expect("writing the material");
    let wrapped = openssl_wrap(
        dir,
        parameters.public_key().expect("PublicKey").as_ref(),
        &file,
        &AlgorithmSpec::RsaesOaepSha256,
    );
    let request = client
        .import_key_material()
        .key_id(key_id)
        .import_token(parameters.import_token().expect("ImportToken").clone())
        .encrypted_key_material(Blob::new(wrapped))
        .expiration_model(ExpirationModelType::KeyMaterialDoesNotExpire);
    options(request).send().await
}

async fn decrypt_material_id(client: &aws_sdk_kms::Client, blob: &[u8]) -> String {
    client
        .decrypt()
        .ciphertext_blob(Blob::new(blob))
        .send()
        .await
        .expect("Decrypt")
        .key_material_id()
        .expect("KeyMaterialId")
        .to_owned()
}

/// Key material ids and on-demand rotation of an imported key, through the SDK: AWS's codes,
/// members and states. (ekms once kept one material per key, refused `KeyMaterialId`, and
/// answered every RotateKeyOnDemand of an EXTERNAL key with KMSInvalidStateException.)
#[tokio::test]
async fn imported_keys_rotate_on_demand_to_new_material() {
    use aws_sdk_kms::error::ProvideErrorMetadata as _;
    let server = Ekms::shared();
    let client = server.client().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let key_id = create_external_key(&client).await;
    let arn = ekms_tests::key_arn(&key_id);
    let first = random_bytes(32);
    let second = random_bytes(32);

    let imported = import_with(&client, dir.path(), &key_id, &first, |r| {
        r.key_material_description("first material")
    })
    .await
    .expect("ImportKeyMaterial");
    assert_eq!(imported.key_id(), Some(arn.as_str()));
    let a = imported
        .key_material_id()
        .expect("KeyMaterialId")
        .to_owned();
    assert_eq!(a.len(), 64);
    let old = round_trip(&client, &key_id, b"under the first material").await;
    assert_eq!(decrypt_material_id(&client, &old).await, a);

    // KeyMaterialId with NEW_KEY_MATERIAL is refused.
    let refused = import_with(&client, dir.path(), &key_id, &second, |r| {
        r.import_type(ImportType::NewKeyMaterial)
            .key_material_id(&a)
    })
    .await
    .expect_err("KeyMaterialId with NEW_KEY_MATERIAL")
    .into_service_error();
    assert_eq!(refused.code(), Some("ValidationException"));
    // New material: pending until the rotation.
    let pending = import_with(&client, dir.path(), &key_id, &second, |r| {
        r.import_type(ImportType::NewKeyMaterial)
    })
    .await
    .expect("ImportKeyMaterial NEW_KEY_MATERIAL");
    let b = pending.key_material_id().expect("KeyMaterialId").to_owned();
    assert_ne!(a, b);
    let meta = client
        .describe_key()
        .key_id(&key_id)
        .send()
        .await
        .expect("DescribeKey")
        .key_metadata()
        .cloned()
        .expect("KeyMetadata");
    assert_eq!(meta.current_key_material_id(), Some(a.as_str()));
    let all = client
        .list_key_rotations()
        .key_id(&key_id)
        .include_key_material(IncludeKeyMaterial::AllKeyMaterial)
        .send()
        .await
        .expect("ListKeyRotations ALL_KEY_MATERIAL");
    let entries = all.rotations();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0].key_material_id(), Some(a.as_str()));
    assert_eq!(
        entries[0].key_material_state(),
        Some(&KeyMaterialState::Current)
    );
    assert_eq!(entries[0].import_state(), Some(&ImportState::Imported));
    assert_eq!(
        entries[0].key_material_description(),
        Some("first material")
    );
    assert_eq!(entries[0].rotation_date(), None);
    assert_eq!(entries[1].key_material_id(), Some(b.as_str()));
    assert_eq!(
        entries[1].key_material_state(),
        Some(&KeyMaterialState::PendingRotation)
    );
    let only_rotations = client
        .list_key_rotations()
        .key_id(&key_id)
        .send()
        .await
        .expect("ListKeyRotations");
    assert!(only_rotations.rotations().is_empty());

    // EXISTING_KEY_MATERIAL that is not the key's.
    let refused = import_with(&client, dir.path(), &key_id, &random_bytes(32), |r| {
        r.import_type(ImportType::ExistingKeyMaterial)
    })
    .await
    .expect_err("other material as EXISTING_KEY_MATERIAL")
    .into_service_error();
    assert_eq!(refused.code(), Some("IncorrectKeyMaterialException"));
    assert_eq!(
        refused.message(),
        Some(
            format!("The key material is not the key material previously imported into {arn}.")
                .as_str()
        )
    );

    // The rotation makes it current; the old material still decrypts.
    let rotated = client
        .rotate_key_on_demand()
        .key_id(&key_id)
        .send()
        .await
        .expect("RotateKeyOnDemand");
    assert_eq!(rotated.key_id(), Some(arn.as_str()));
    let new = round_trip(&client, &key_id, b"under the second material").await;
    assert_eq!(decrypt_material_id(&client, &new).await, b);
    assert_eq!(decrypt_material_id(&client, &old).await, a);
    let data_key = client
        .generate_data_key()
        .key_id(&key_id)
        .key_spec(DataKeySpec::Aes256)
        .send()
        .await
        .expect("GenerateDataKey");
    assert_eq!(data_key.key_material_id(), Some(b.as_str()));
    let re = client
        .re_encrypt()
        .ciphertext_blob(Blob::new(old.clone()))
        .destination_key_id(&key_id)
        .send()
        .await
        .expect("ReEncrypt");
    assert_eq!(re.source_key_material_id(), Some(a.as_str()));
    assert_eq!(re.destination_key_material_id(), Some(b.as_str()));
    let rotations = client
        .list_key_rotations()
        .key_id(&key_id)
        .send()
        .await
        .expect("ListKeyRotations");
    let entries = rotations.rotations();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].key_material_id(), Some(b.as_str()));
    assert_eq!(
        entries[0].key_material_state(),
        Some(&KeyMaterialState::Current)
    );
    assert_eq!(entries[0].rotation_type(), Some(&RotationType::OnDemand));
    assert!(entries[0].rotation_date().is_some());
    // Nothing pending any more.
    let refused = client
        .rotate_key_on_demand()
        .key_id(&key_id)
        .send()
        .await
        .expect_err("RotateKeyOnDemand with nothing pending")
        .into_service_error();
    assert_eq!(refused.code(), Some("KMSInvalidStateException"));

    // Deleting the old material by id: the key waits for it.
    let deleted = client
        .delete_imported_key_material()
        .key_id(&key_id)
        .key_material_id(&a)
        .send()
        .await
        .expect("DeleteImportedKeyMaterial by KeyMaterialId");
    assert_eq!(deleted.key_id(), Some(arn.as_str()));
    assert_eq!(deleted.key_material_id(), Some(a.as_str()));
    assert_eq!(key_state(&client, &key_id).await, KeyState::PendingImport);
    let refused = client
        .delete_imported_key_material()
        .key_id(&key_id)
        .key_material_id("0".repeat(64))
        .send()
        .await
        .expect_err("DeleteImportedKeyMaterial of an id not the key's")
        .into_service_error();
    assert_eq!(refused.code(), Some("NotFoundException"));
    let all = client
        .list_key_rotations()
        .key_id(&key_id)
        .include_key_material(IncludeKeyMaterial::AllKeyMaterial)
        .send()
        .await
        .expect("ListKeyRotations");
    assert_eq!(
        all.rotations()[0].import_state(),
        Some(&ImportState::PendingImport)
    );
    // The same material, named by its id, brings the key back.
    import_with(&client, dir.path(), &key_id, &first, |r| {
        r.import_type(ImportType::ExistingKeyMaterial)
            .key_material_id(&a)
    })
    .await
    .expect("ImportKeyMaterial EXISTING_KEY_MATERIAL");
    assert_eq!(key_state(&client, &key_id).await, KeyState::Enabled);
    assert_eq!(decrypt_material_id(&client, &old).await, a);
}

/// The materials of an imported key, their ids, states, expiry and descriptions are sealed with
/// the key: after a restart the pending material is still pending, the ids are the same, and the
/// rotation to it works. A principal whose policy allows only DescribeKey and ListKeyRotations
/// sees the ids but can neither import, rotate nor delete material.
#[test]
fn imported_materials_survive_a_restart_and_need_their_actions() {
    use aws_sdk_kms::error::ProvideErrorMetadata as _;
    let work = tempfile::Builder::new()
        .prefix("ekms-materials-")
        .tempdir()
        .expect("tempdir");
    let options = DevOptions {
        data_dir: Some(work.path().join("data")),
        ..DevOptions::default()
    };
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let first = random_bytes(32);
    let second = random_bytes(32);
    let ekms_server = Ekms::start_with(&options);
    let (key_id, a, b, old) = runtime.block_on(async {
        let client = ekms_server.client().await;
        let key_id = create_external_key(&client).await;
        let a = import_with(&client, work.path(), &key_id, &first, |r| r)
            .await
            .expect("ImportKeyMaterial")
            .key_material_id()
            .expect("KeyMaterialId")
            .to_owned();
        let old = round_trip(&client, &key_id, b"before the restart").await;
        let valid_to = std::time::SystemTime::now() + std::time::Duration::from_secs(86_400 * 30);
        let b = import_with(&client, work.path(), &key_id, &second, |r| {
            r.import_type(ImportType::NewKeyMaterial)
                .expiration_model(ExpirationModelType::KeyMaterialExpires)
                .valid_to(aws_sdk_kms::primitives::DateTime::from(valid_to))
                .key_material_description("second material")
        })
        .await
        .expect("ImportKeyMaterial NEW_KEY_MATERIAL")
        .key_material_id()
        .expect("KeyMaterialId")
        .to_owned();
        (key_id, a, b, old)
    });
    drop(ekms_server);

    let ekms_server = Ekms::start_with(&options);
    let policy = work.path().join("reader-policy.json");
    std::fs::write(
        &policy,
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["kms:DescribeKey","kms:ListKeyRotations"],"Resource":"*"}]}"#,
    )
    .expect("writing the reader's policy");
    let out = ekms_cli_as(
        [
            "principal",
            "create",
            "material-reader",
            "--policy",
            policy.to_str().expect("a UTF-8 path"),
            "--endpoint",
            &ekms_server.endpoint,
        ],
        CliCredentials::Profile(&ekms_server.data_dir()),
    )
    .ok()
    .json();
    assert_eq!(
        out["Arn"],
        format!("arn:aws:iam::{ACCOUNT}:user/material-reader"),
        "{out}"
    );
    let reader = ekms_server.client_with(
        out["AccessKeyId"].as_str().expect("AccessKeyId"),
        out["SecretAccessKey"].as_str().expect("SecretAccessKey"),
        None,
    );
    runtime.block_on(async {
        let client = ekms_server.client().await;
        let all = reader
            .list_key_rotations()
            .key_id(&key_id)
            .include_key_material(IncludeKeyMaterial::AllKeyMaterial)
            .send()
            .await
            .expect("ListKeyRotations after the restart");
        let entries = all.rotations();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].key_material_id(), Some(a.as_str()));
        assert_eq!(entries[1].key_material_id(), Some(b.as_str()));
        assert_eq!(
            entries[1].key_material_state(),
            Some(&KeyMaterialState::PendingRotation)
        );
        assert_eq!(
            entries[1].expiration_model(),
            Some(&ExpirationModelType::KeyMaterialExpires)
        );
        assert!(entries[1].valid_to().is_some());
        assert_eq!(
            entries[1].key_material_description(),
            Some("second material")
        );
        let meta = reader
            .describe_key()
            .key_id(&key_id)
            .send()
            .await
            .expect("DescribeKey");
        assert_eq!(
            meta.key_metadata()
                .and_then(|m| m.current_key_material_id()),
            Some(a.as_str())
        );
        // Without the actions: AccessDenied, and nothing changes.
        let denied = reader
            .rotate_key_on_demand()
            .key_id(&key_id)
            .send()
            .await
            .expect_err("RotateKeyOnDemand without kms:RotateKeyOnDemand")
            .into_service_error();
        assert_eq!(denied.code(), Some("AccessDeniedException"));
        let denied = reader
            .delete_imported_key_material()
            .key_id(&key_id)
            .key_material_id(&b)
            .send()
            .await
            .expect_err("DeleteImportedKeyMaterial without its action")
            .into_service_error();
        assert_eq!(denied.code(), Some("AccessDeniedException"));
        let denied = reader
            .delete_imported_key_material()
            .key_id(&key_id)
            .key_material_id("0".repeat(64))
            .send()
            .await
            .expect_err("DeleteImportedKeyMaterial of an unknown id without its action")
            .into_service_error();
        assert_eq!(denied.code(), Some("AccessDeniedException"));
        let denied = reader
            .get_parameters_for_import()
            .key_id(&key_id)
            .wrapping_algorithm(AlgorithmSpec::RsaesOaepSha256)
            .wrapping_key_spec(WrappingKeySpec::Rsa2048)
            .send()
            .await
            .expect_err("GetParametersForImport without its action")
            .into_service_error();
        assert_eq!(denied.code(), Some("AccessDeniedException"));

        // The owner rotates to the material imported before the restart.
        client
            .rotate_key_on_demand()
            .key_id(&key_id)
            .send()
            .await
            .expect("RotateKeyOnDemand after the restart");
        let new = round_trip(&client, &key_id, b"after the restart").await;
        assert_eq!(decrypt_material_id(&client, &new).await, b);
        assert_eq!(decrypt_material_id(&client, &old).await, a);
    });
}

/// Asymmetric and HMAC key material, generated with openssl as AWS's documentation shows
/// (`genpkey ... | pkcs8 -topk8 -nocrypt -outform der`, `rand`), wrapped with each wrapping
/// algorithm, imports into EXTERNAL keys of those specs: the public key answered is openssl's
/// public half of the imported key, signatures verify with openssl, MACs equal openssl's HMAC.
/// Material of another spec is IncorrectKeyMaterialException. (ekms once refused every
/// EXTERNAL key that was not SYMMETRIC_DEFAULT.)
#[tokio::test]
async fn asymmetric_and_hmac_material_imports() {
    use aws_sdk_kms::error::ProvideErrorMetadata as _;
    use aws_sdk_kms::types::{KeySpec, KeyUsageType, MacAlgorithmSpec, SigningAlgorithmSpec};
    let server = Ekms::shared();
    let client = server.client().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let dir = dir.path();
    let create = |spec: KeySpec, usage: KeyUsageType| {
        let client = client.clone();
        async move {
            let meta = client
                .create_key()
                .origin(OriginType::External)
                .key_spec(spec)
                .key_usage(usage)
                .send()
                .await
                .expect("CreateKey Origin EXTERNAL")
                .key_metadata()
                .cloned()
                .expect("KeyMetadata");
            assert_eq!(meta.key_state(), Some(&KeyState::PendingImport));
            assert_eq!(meta.expiration_model(), None);
            meta.key_id().to_owned()
        }
    };
    let pkcs8 = |name: &str, genpkey: &[&str]| {
        let pem = dir.join(format!("{name}.pem"));
        run_ok(openssl().arg("genpkey").args(genpkey).arg("-out").arg(&pem));
        let der = dir.join(format!("{name}.der"));
        run_ok(
            openssl()
                .args(["pkcs8", "-topk8", "-nocrypt", "-outform", "der", "-in"])
                .arg(&pem)
                .arg("-out")
                .arg(&der),
        );
        let public = dir.join(format!("{name}.pub.der"));
        run_ok(
            openssl()
                .args(["pkey", "-in"])
                .arg(&pem)
                .args(["-pubout", "-outform", "DER", "-out"])
                .arg(&public),
        );
        (der, std::fs::read(&public).expect("public key"))
    };

    for (name, spec, genpkey, signing, algorithm) in [
        (
            "rsa",
            KeySpec::Rsa2048,
            &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"][..],
            SigningAlgorithmSpec::RsassaPkcs1V15Sha256,
            AlgorithmSpec::RsaAesKeyWrapSha256,
        ),
        (
            "p256",
            KeySpec::EccNistP256,
            &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"][..],
            SigningAlgorithmSpec::EcdsaSha256,
            AlgorithmSpec::RsaesOaepSha256,
        ),
        (
            "secp256k1",
            KeySpec::EccSecgP256K1,
            &[
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:secp256k1",
            ][..],
            SigningAlgorithmSpec::EcdsaSha256,
            AlgorithmSpec::RsaAesKeyWrapSha1,
        ),
    ] {
        let key_id = create(spec.clone(), KeyUsageType::SignVerify).await;
        let (material, public) = pkcs8(name, genpkey);
        import_material(&client, dir, &key_id, &material, algorithm.clone())
            .await
            .unwrap_or_else(|e| panic!("ImportKeyMaterial {name}: {}", DisplayErrorContext(e)));
        assert_eq!(key_state(&client, &key_id).await, KeyState::Enabled);
        let answered = client
            .get_public_key()
            .key_id(&key_id)
            .send()
            .await
            .expect("GetPublicKey");
        assert_eq!(
            answered.public_key().expect("PublicKey").as_ref(),
            &public[..],
            "{name}: the public key is the imported key's"
        );
        let message = format!("signed by the imported {name} key");
        let signature = client
            .sign()
            .key_id(&key_id)
            .message(Blob::new(message.as_bytes()))
            .signing_algorithm(signing)
            .send()
            .await
            .expect("Sign")
            .signature()
            .expect("Signature")
            .as_ref()
            .to_vec();
        let files = [
            (dir.join("message.bin"), message.as_bytes().to_vec()),
            (dir.join("signature.bin"), signature),
            (dir.join("public.der"), public.clone()),
        ];
        for (path, bytes) in &files {
            std::fs::write(path, bytes).expect("writing a file for openssl");
        }
        run_ok(
            openssl()
                .args(["dgst", "-sha256", "-keyform", "DER", "-verify"])
                .arg(&files[2].0)
                .arg("-signature")
                .arg(&files[1].0)
                .arg(&files[0].0),
        );
    }

    // Material of another curve is not this key's.
    let key_id = create(KeySpec::EccNistP256, KeyUsageType::SignVerify).await;
    let (p384, _) = pkcs8(
        "p384",
        &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384"],
    );
    let refused = import_material(
        &client,
        dir,
        &key_id,
        &p384,
        AlgorithmSpec::RsaAesKeyWrapSha256,
    )
    .await
    .expect_err("P-384 material into an ECC_NIST_P256 key")
    .into_service_error();
    assert_eq!(refused.code(), Some("IncorrectKeyMaterialException"));
    assert_eq!(
        refused.message(),
        Some("The key material of a ECC_NIST_P256 key must be a ECC_NIST_P256 private key in PKCS #8 DER.")
    );
    assert_eq!(key_state(&client, &key_id).await, KeyState::PendingImport);

    // HMAC: `openssl rand`, the MAC is openssl's HMAC under the same key.
    for (spec, length, mac, md, algorithm) in [
        (
            KeySpec::Hmac256,
            32,
            MacAlgorithmSpec::HmacSha256,
            "sha256",
            AlgorithmSpec::RsaesOaepSha1,
        ),
        (
            KeySpec::Hmac384,
            100,
            MacAlgorithmSpec::HmacSha384,
            "sha384",
            AlgorithmSpec::RsaAesKeyWrapSha256,
        ),
    ] {
        let key_id = create(spec.clone(), KeyUsageType::GenerateVerifyMac).await;
        let material = dir.join("hmac.bin");
        run_ok(
            openssl()
                .args(["rand", "-out"])
                .arg(&material)
                .arg(length.to_string()),
        );
        import_material(&client, dir, &key_id, &material, algorithm)
            .await
            .unwrap_or_else(|e| panic!("ImportKeyMaterial {spec:?}: {}", DisplayErrorContext(e)));
        let message = dir.join("mac-message.bin");
        std::fs::write(&message, b"authenticated by the imported key").expect("message");
        let answered = client
            .generate_mac()
            .key_id(&key_id)
            .message(Blob::new(&b"authenticated by the imported key"[..]))
            .mac_algorithm(mac)
            .send()
            .await
            .expect("GenerateMac")
            .mac()
            .expect("Mac")
            .as_ref()
            .to_vec();
        let hex_key: String = std::fs::read(&material)
            .expect("material")
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let expected = run_ok(
            openssl()
                .args([
                    "dgst",
                    &format!("-{md}"),
                    "-binary",
                    "-mac",
                    "HMAC",
                    "-macopt",
                ])
                .arg(format!("hexkey:{hex_key}"))
                .arg(&message),
        );
        assert_eq!(
            answered, expected,
            "{spec:?}: openssl's HMAC under the imported key"
        );
    }

    // An HMAC_256 key takes 32 to 64 bytes.
    let key_id = create(KeySpec::Hmac256, KeyUsageType::GenerateVerifyMac).await;
    let short = dir.join("short.bin");
    std::fs::write(&short, random_bytes(16)).expect("short material");
    let refused = import_material(
        &client,
        dir,
        &key_id,
        &short,
        AlgorithmSpec::RsaesOaepSha256,
    )
    .await
    .expect_err("16 bytes into an HMAC_256 key")
    .into_service_error();
    assert_eq!(refused.code(), Some("IncorrectKeyMaterialException"));
    assert_eq!(
        refused.message(),
        Some("The key material of a HMAC_256 key must be 32 to 64 bytes.")
    );

    // `ekms import-key` wraps an RSA private key (longer than RSAES-OAEP carries) with
    // RSA_AES_KEY_WRAP_SHA_256 after verifying the wrapping key's attestation.
    let key_id = create(KeySpec::Rsa3072, KeyUsageType::EncryptDecrypt).await;
    let (material, public) = pkcs8(
        "rsa3072",
        &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:3072"],
    );
    let pcrs = server.data_dir().join("pcrs.json");
    let too_long = import_key(server, &key_id, &material, &pcrs);
    assert!(
        !too_long.status.success(),
        "RSAES-OAEP cannot carry an RSA private key"
    );
    let imported = import_key_with(
        server,
        &key_id,
        &material,
        &pcrs,
        &["--wrapping-algorithm", "RSA_AES_KEY_WRAP_SHA_256"],
    );
    assert!(
        imported.status.success(),
        "{}",
        String::from_utf8_lossy(&imported.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_slice(&imported.stdout).expect("import-key prints JSON");
    assert_eq!(report["WrappingAlgorithm"], "RSA_AES_KEY_WRAP_SHA_256");
    let answered = client
        .get_public_key()
        .key_id(&key_id)
        .send()
        .await
        .expect("GetPublicKey");
    assert_eq!(
        answered.public_key().expect("PublicKey").as_ref(),
        &public[..]
    );
}

/// An RSA key pair for a recipient enclave, and a mock attestation document binding it.
struct RecipientKey {
    private_pem: PathBuf,
    document: Vec<u8>,
}

fn recipient_key(dir: &Path, ca: &Path) -> RecipientKey {
    let private_pem = dir.join("recipient.pem");
    run_ok(
        openssl()
            .args([
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
                "-out",
            ])
            .arg(&private_pem),
    );
    let public_der = dir.join("recipient.pub.der");
    run_ok(
        openssl()
            .args(["pkey", "-in"])
            .arg(&private_pem)
            .args(["-pubout", "-outform", "DER", "-out"])
            .arg(&public_der),
    );
    let doc = dir.join("recipient.att");
    run_ok(
        ekms()
            .args(["attestation", "mock", "--ca"])
            .arg(ca)
            .arg("--public-key")
            .arg(&public_der)
            .arg("--out")
            .arg(&doc),
    );
    RecipientKey {
        private_pem,
        document: std::fs::read(&doc).expect("reading the document"),
    }
}

impl RecipientKey {
    fn info(&self) -> RecipientInfo {
        RecipientInfo::builder()
            .attestation_document(Blob::new(self.document.clone()))
            .key_encryption_algorithm(KeyEncryptionMechanism::RsaesOaepSha256)
            .build()
    }

    /// `openssl cms -decrypt` of a CiphertextForRecipient, without the recipient's
    /// certificate (only its key).
    fn open(&self, dir: &Path, cms: &[u8]) -> Vec<u8> {
        let path = dir.join("for-recipient.der");
        std::fs::write(&path, cms).expect("writing the CMS");
        run_ok(
            openssl()
                .args(["cms", "-decrypt", "-inform", "DER", "-in"])
                .arg(&path)
                .arg("-inkey")
                .arg(&self.private_pem),
        )
    }
}

#[tokio::test]
async fn recipient_answers_open_with_openssl_cms_and_carry_no_plaintext() {
    let server = Ekms::shared();
    let client = server.client().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let recipient = recipient_key(dir.path(), &server.data_dir().join("mock-ca"));
    let key_id = ekms_tests::create_key(&client).await;

    // Decrypt: the CMS opens to exactly what a plain Decrypt returns.
    let ciphertext = client
        .encrypt()
        .key_id(&key_id)
        .plaintext(Blob::new("for the enclave only"))
        .send()
        .await
        .expect("Encrypt")
        .ciphertext_blob()
        .expect("CiphertextBlob")
        .clone();
    let plain = client
        .decrypt()
        .ciphertext_blob(ciphertext.clone())
        .send()
        .await
        .expect("Decrypt");
    let for_recipient = client
        .decrypt()
        .ciphertext_blob(ciphertext)
        .recipient(recipient.info())
        .send()
        .await
        .expect("Decrypt with Recipient");
    assert!(for_recipient.plaintext().is_none());
    let opened = recipient.open(
        dir.path(),
        for_recipient
            .ciphertext_for_recipient()
            .expect("CiphertextForRecipient")
            .as_ref(),
    );
    assert_eq!(opened, plain.plaintext().expect("Plaintext").as_ref());
    assert_eq!(opened, b"for the enclave only");

    // GenerateDataKey: the data key goes to the recipient; its ciphertext decrypts to it.
    let data_key = client
        .generate_data_key()
        .key_id(&key_id)
        .key_spec(DataKeySpec::Aes256)
        .recipient(recipient.info())
        .send()
        .await
        .expect("GenerateDataKey with Recipient");
    assert!(data_key.plaintext().is_none());
    let opened = recipient.open(
        dir.path(),
        data_key
            .ciphertext_for_recipient()
            .expect("CiphertextForRecipient")
            .as_ref(),
    );
    assert_eq!(opened.len(), 32);
    let decrypted = client
        .decrypt()
        .ciphertext_blob(data_key.ciphertext_blob().expect("CiphertextBlob").clone())
        .send()
        .await
        .expect("Decrypt the data key");
    assert_eq!(
        decrypted.plaintext().expect("Plaintext").as_ref(),
        &opened[..]
    );

    // GenerateRandom.
    let random = client
        .generate_random()
        .number_of_bytes(64)
        .recipient(recipient.info())
        .send()
        .await
        .expect("GenerateRandom with Recipient");
    assert!(random.plaintext().is_none());
    let opened = recipient.open(
        dir.path(),
        random
            .ciphertext_for_recipient()
            .expect("CiphertextForRecipient")
            .as_ref(),
    );
    assert_eq!(opened.len(), 64);
}

#[tokio::test]
async fn a_recipient_document_from_an_untrusted_root_is_a_client_error() {
    let server = Ekms::shared();
    let client = server.client().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let other_ca = dir.path().join("other-ca");
    run_ok(
        ekms()
            .args(["attestation", "mock-ca", "--out"])
            .arg(&other_ca),
    );
    let recipient = recipient_key(dir.path(), &other_ca);
    let key_id = ekms_tests::create_key(&client).await;
    let ciphertext = client
        .encrypt()
        .key_id(&key_id)
        .plaintext(Blob::new("secret"))
        .send()
        .await
        .expect("Encrypt")
        .ciphertext_blob()
        .expect("CiphertextBlob")
        .clone();
    let refused = client
        .decrypt()
        .ciphertext_blob(ciphertext)
        .recipient(recipient.info())
        .send()
        .await;
    let code = match refused {
        Ok(_) => panic!("a document from an untrusted root was accepted"),
        Err(e) => error_code(e),
    };
    assert_eq!(code, "ValidationException");
    assert_code!(
        client
            .generate_random()
            .number_of_bytes(16)
            .recipient(recipient.info())
            .send()
            .await,
        "ValidationException"
    );
}

/// A recipient key whose mock attestation document reports `pcr0` (96 hex digits).
fn recipient_key_with_pcr0(dir: &Path, ca: &Path, pcr0: &str) -> RecipientKey {
    let key = recipient_key(dir, ca);
    let public_der = dir.join("recipient.pub.der");
    let doc = dir.join("recipient-pcr0.att");
    run_ok(
        ekms()
            .args(["attestation", "mock", "--ca"])
            .arg(ca)
            .arg("--public-key")
            .arg(&public_der)
            .args(["--pcr", &format!("0={pcr0}")])
            .arg("--out")
            .arg(&doc),
    );
    RecipientKey {
        private_pem: key.private_pem,
        document: std::fs::read(&doc).expect("reading the document"),
    }
}

/// The key policy decides on the recipient's measurements: Decrypt is denied unless it goes to
/// an enclave whose attested PCR0 is the pinned one (`kms:RecipientAttestation:PCR0`).
#[tokio::test]
async fn key_policy_conditions_on_the_recipient_attestation() {
    let server = Ekms::shared();
    let client = server.client().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = server.data_dir().join("mock-ca");
    let pinned = "ab".repeat(48);
    let other = "cd".repeat(48);
    let good_dir = dir.path().join("good");
    let bad_dir = dir.path().join("bad");
    std::fs::create_dir_all(&good_dir).expect("dir");
    std::fs::create_dir_all(&bad_dir).expect("dir");
    let good = recipient_key_with_pcr0(&good_dir, &ca, &pinned);
    let bad = recipient_key_with_pcr0(&bad_dir, &ca, &other);
    let policy = format!(
        r#"{{"Version":"2012-10-17","Statement":[
            {{"Sid":"admin","Effect":"Allow","Principal":{{"AWS":"arn:aws:iam::111122223333:root"}},"Action":"kms:*","Resource":"*"}},
            {{"Sid":"decrypt only to the pinned enclave","Effect":"Deny","Principal":"*","Action":"kms:Decrypt","Resource":"*",
              "Condition":{{"StringNotEquals":{{"kms:RecipientAttestation:PCR0":"{pinned}"}}}}}}]}}"#
    );
    let key_id = client
        .create_key()
        .policy(policy)
        .send()
        .await
        .expect("CreateKey with a recipient-conditioned policy")
        .key_metadata()
        .expect("metadata")
        .key_id()
        .to_owned();
    let ciphertext = client
        .encrypt()
        .key_id(&key_id)
        .plaintext(Blob::new("only for the pinned enclave"))
        .send()
        .await
        .expect("Encrypt")
        .ciphertext_blob()
        .expect("CiphertextBlob")
        .clone();
    ekms_tests::assert_code!(
        client
            .decrypt()
            .ciphertext_blob(ciphertext.clone())
            .send()
            .await,
        "AccessDeniedException"
    );
    ekms_tests::assert_code!(
        client
            .decrypt()
            .ciphertext_blob(ciphertext.clone())
            .recipient(bad.info())
            .send()
            .await,
        "AccessDeniedException"
    );
    let answer = client
        .decrypt()
        .ciphertext_blob(ciphertext)
        .recipient(good.info())
        .send()
        .await
        .expect("Decrypt to the pinned enclave");
    let opened = good.open(
        &good_dir,
        answer
            .ciphertext_for_recipient()
            .expect("CiphertextForRecipient")
            .as_ref(),
    );
    assert_eq!(opened, b"only for the pinned enclave");
}
