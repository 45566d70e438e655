//! `ekms import-key`: bring your own key material into an enclave you have verified first.
//!
//! 1. GetParametersForImport (SigV4, credentials as the AWS CLI finds them) for a fresh
//!    RSA wrapping key, an import token and an attestation document;
//! 2. verify the document: pinned root (the AWS Nitro root unless `--root`), pinned PCRs
//!    (`--expect-pcrs`), no debug mode unless `--allow-debug`, at most five minutes old, and
//!    its `public_key` byte for byte the `PublicKey` returned — so the material is wrapped
//!    only to a key that lives inside that enclave image;
//! 3. wrap the material locally (aws-lc-rs): RSAES-OAEP SHA-256 of the material, or for
//!    material longer than that carries (RSA private keys) RSA_AES_KEY_WRAP_SHA_256, RSAES-OAEP
//!    SHA-256 of a fresh AES-256 key and the material under it with AES key wrap with padding
//!    (RFC 5649), as AWS KMS defines it;
//! 4. ImportKeyMaterial.
//!
//! Trusts: the root and PCRs it is given. Does not trust: the endpoint, the parent, the TLS
//! certificate (the attestation decides where the material goes).

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{anyhow, bail, Context as _};
use aws_lc_rs::rsa::{OaepPublicEncryptingKey, PublicEncryptingKey, OAEP_SHA256_MGF1SHA256};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;

use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use zeroize::Zeroizing;

use ekms_shared::attestation::{self, Policy, TrustAnchor};

use super::custody::{Expectation, Target};
use super::progress;
use super::signed_client::SignedClient;

/// How old the wrapping key's attestation document may be when material is wrapped to it.
const MAX_DOCUMENT_AGE: Duration = Duration::from_secs(300);
/// Time allowed for one request (GetParametersForImport generates an RSA key).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// The wrapping algorithms `ekms import-key` wraps with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WrappingAlgorithm {
    /// RSAES-OAEP with SHA-256 of the material itself (symmetric, HMAC and ECC material).
    #[value(name = "RSAES_OAEP_SHA_256")]
    RsaesOaepSha256,
    /// RSAES-OAEP with SHA-256 of a fresh AES-256 key, then the material under it (RFC 5649):
    /// any material, RSA private keys included.
    #[value(name = "RSA_AES_KEY_WRAP_SHA_256")]
    RsaAesKeyWrapSha256,
}

impl WrappingAlgorithm {
    /// The AWS name.
    pub fn as_str(self) -> &'static str {
        match self {
            WrappingAlgorithm::RsaesOaepSha256 => "RSAES_OAEP_SHA_256",
            WrappingAlgorithm::RsaAesKeyWrapSha256 => "RSA_AES_KEY_WRAP_SHA_256",
        }
    }
}

/// `ekms import-key` options.
#[derive(Debug, clap::Args)]
pub struct ImportKeyArgs {
    #[command(flatten)]
    pub target: Target,
    #[command(flatten)]
    pub expect: Expectation,
    /// The EXTERNAL key (key id, key ARN, alias name or alias ARN) to import into.
    #[arg(long)]
    pub key_id: String,
    /// The key material: raw bytes (32 for a SYMMETRIC_DEFAULT key, the key for an HMAC key,
    /// PKCS #8 DER for an RSA or ECC key).
    #[arg(long, value_name = "FILE")]
    pub material: PathBuf,
    /// RSA_2048, RSA_3072 or RSA_4096.
    #[arg(long, default_value = "RSA_3072")]
    pub wrapping_key_spec: String,
    /// RSAES_OAEP_SHA_256, or RSA_AES_KEY_WRAP_SHA_256 for material longer than RSAES-OAEP
    /// carries (RSA private keys).
    #[arg(long, value_enum, default_value = "RSAES_OAEP_SHA_256")]
    pub wrapping_algorithm: WrappingAlgorithm,
    /// When the material expires (RFC 3339); default: it does not expire.
    #[arg(long, value_name = "RFC3339")]
    pub valid_to: Option<String>,
    /// Region of the SigV4 scope; default: AWS_REGION, AWS_DEFAULT_REGION, else us-east-1.
    #[arg(long)]
    pub region: Option<String>,
}

fn blob(value: &Value, field: &str) -> anyhow::Result<Vec<u8>> {
    let text = value[field]
        .as_str()
        .ok_or_else(|| anyhow!("the answer has no {field}"))?;
    B64.decode(text)
        .with_context(|| format!("{field} is not base64"))
}

fn read_text(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

/// Verifies the wrapping key's attestation as `expect` says, at `now`, and that it binds
/// exactly `public_key`. Returns the verified PCRs as `pcrs.json` does.
///
/// # Errors
/// When the document does not verify, or binds another key (or none).
pub fn verify_wrapping_key(
    document: &[u8],
    public_key: &[u8],
    expect: &Expectation,
    now: SystemTime,
) -> anyhow::Result<Value> {
    let anchor = match &expect.root {
        Some(path) => TrustAnchor::from_pem(&read_text(path)?)
            .with_context(|| format!("{} is not a root certificate", path.display()))?,
        None => TrustAnchor::aws_nitro_root(),
    };
    let pcrs = attestation::pcr_set_from_json(&read_text(&expect.expect_pcrs)?)
        .with_context(|| format!("{} is not a PCR file", expect.expect_pcrs.display()))?;
    let mut policy = Policy::pinned(pcrs).with_max_age(MAX_DOCUMENT_AGE);
    if expect.allow_debug {
        policy = policy.allowing_debug();
    }
    let verified = attestation::verify(document, &anchor, now, &policy)
        .context("the wrapping key's attestation document does not verify")?;
    // public value: the wrapping key, compared byte for byte with the one we will use.
    if verified.public_key() != Some(public_key) {
        bail!("the attestation document does not bind the PublicKey returned: refusing to wrap");
    }
    Ok(attestation::pcr_set_to_json(verified.pcrs()))
}

/// RSAES-OAEP with SHA-256 and MGF1-SHA-256 (RFC 8017 §7.1) of `material` to `spki_der`.
///
/// # Errors
/// When the key is not an RSA SubjectPublicKeyInfo, or the material is too long for it.
pub fn wrap_oaep_sha256(spki_der: &[u8], material: &[u8]) -> anyhow::Result<Vec<u8>> {
    let key = PublicEncryptingKey::from_der(spki_der)
        .map_err(|e| anyhow!("PublicKey is not an RSA public key: {e}"))?;
    let key = OaepPublicEncryptingKey::new(key)
        .map_err(|e| anyhow!("PublicKey is not usable for RSAES-OAEP: {e}"))?;
    let mut out = vec![0u8; key.ciphertext_size()];
    let wrapped = key
        .encrypt(&OAEP_SHA256_MGF1SHA256, material, &mut out, None)
        .map_err(|e| anyhow!("RSAES-OAEP encryption failed (material too long?): {e}"))?;
    Ok(wrapped.to_vec())
}

/// RSA_AES_KEY_WRAP_SHA_256 as AWS KMS defines it: RSAES-OAEP SHA-256 of a fresh AES-256 key
/// to `spki_der`, followed by `material` under that key with AES key wrap with padding
/// (RFC 5649). The AES key is zeroized once used.
///
/// # Errors
/// When the key is not an RSA SubjectPublicKeyInfo, or the random source or a primitive fails.
pub fn wrap_rsa_aes_key_wrap_sha256(spki_der: &[u8], material: &[u8]) -> anyhow::Result<Vec<u8>> {
    use aws_lc_rs::key_wrap::{AesKek, KeyWrapPadded as _, AES_256};
    let mut aes_key = Zeroizing::new([0u8; 32]);
    aws_lc_rs::rand::fill(&mut aes_key[..]).map_err(|_| anyhow!("the random source failed"))?;
    let mut wrapped = wrap_oaep_sha256(spki_der, &aes_key[..])?;
    let kek = AesKek::new(&AES_256, &aes_key[..])
        .map_err(|_| anyhow!("AES-256 key wrap could not take the key"))?;
    // RFC 5649: the material padded to a multiple of 8 bytes, plus the 8-byte integrity block.
    let mut out = vec![0u8; material.len().div_ceil(8) * 8 + 8];
    let kwp = kek
        .wrap_with_padding(material, &mut out)
        .map_err(|_| anyhow!("AES key wrap with padding failed"))?;
    wrapped.extend_from_slice(kwp);
    Ok(wrapped)
}

/// Runs `ekms import-key`; returns what it prints.
///
/// # Errors
/// Any failed call, an attestation that does not verify or bind the wrapping key, or an
/// unreadable input file.
pub async fn run(args: &ImportKeyArgs) -> anyhow::Result<Value> {
    let material = Zeroizing::new(
        std::fs::read(&args.material)
            .with_context(|| format!("reading {}", args.material.display()))?,
    );
    let valid_to = args
        .valid_to
        .as_deref()
        .map(|text| {
            OffsetDateTime::parse(text, &Rfc3339)
                .with_context(|| format!("--valid-to {text}: not RFC 3339"))
        })
        .transpose()?;
    // On a terminal only: stderr shows each step (an RSA_4096 wrapping key takes seconds).
    let bar = progress::spinner(progress::shown(), "asking for a wrapping key");
    // Without --ca over https, the connection's certificate is proven by attestation too.
    let client = SignedClient::proving(
        &args.target.endpoint,
        args.target.ca.clone(),
        Some(args.expect.clone()),
        args.region.clone(),
        REQUEST_TIMEOUT,
    )?;

    let parameters = client
        .call(
            "TrentService.GetParametersForImport",
            &json!({
                "KeyId": args.key_id,
                "WrappingAlgorithm": args.wrapping_algorithm.as_str(),
                "WrappingKeySpec": args.wrapping_key_spec,
            }),
        )
        .await?;
    let public_key = blob(&parameters, "PublicKey")?;
    let token = blob(&parameters, "ImportToken")?;
    let document = blob(&parameters, "AttestationDocument")
        .context("the service sent no attestation of its wrapping key: refusing to wrap")?;
    bar.set_message("verifying the wrapping key's attestation");
    let pcrs = verify_wrapping_key(&document, &public_key, &args.expect, SystemTime::now())?;
    bar.set_message("wrapping the key material");

    let wrapped = match args.wrapping_algorithm {
        WrappingAlgorithm::RsaesOaepSha256 => wrap_oaep_sha256(&public_key, &material)?,
        WrappingAlgorithm::RsaAesKeyWrapSha256 => {
            wrap_rsa_aes_key_wrap_sha256(&public_key, &material)?
        }
    };
    let mut import = json!({
        "KeyId": args.key_id,
        "ImportToken": B64.encode(&token),
        "EncryptedKeyMaterial": B64.encode(&wrapped),
        "ExpirationModel": "KEY_MATERIAL_DOES_NOT_EXPIRE",
    });
    if let Some(valid_to) = valid_to {
        import["ExpirationModel"] = json!("KEY_MATERIAL_EXPIRES");
        import["ValidTo"] = json!(valid_to.unix_timestamp());
    }
    bar.set_message("importing the wrapped key material");
    client
        .call("TrentService.ImportKeyMaterial", &import)
        .await?;
    bar.finish_and_clear();
    Ok(json!({
        "KeyId": parameters["KeyId"],
        "WrappingAlgorithm": args.wrapping_algorithm.as_str(),
        "WrappingKeySpec": args.wrapping_key_spec,
        "VerifiedPcrs": pcrs,
        "ValidTo": args.valid_to,
    }))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use aws_lc_rs::encoding::AsDer as _;
    use aws_lc_rs::rsa::{KeySize, OaepPrivateDecryptingKey, PrivateDecryptingKey};
    use ekms_shared::attestation::insecure::{pcrs_from_binary, MockAttester, MockCa};

    fn write(dir: &Path, name: &str, contents: &[u8]) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }

    #[test]
    fn wraps_only_to_the_attested_key() {
        let dir = tempfile::tempdir().unwrap();
        let attester = MockAttester::new(
            MockCa::generate(SystemTime::now()).unwrap(),
            pcrs_from_binary(b"enclave"),
        )
        .unwrap();
        let root = write(dir.path(), "root.pem", attester.ca().root_pem().as_bytes());
        let pcrs = write(
            dir.path(),
            "pcrs.json",
            attestation::pcr_set_to_json(&attester.pcr_set())
                .to_string()
                .as_bytes(),
        );
        let expect = Expectation {
            expect_pcrs: pcrs,
            root: Some(root),
            allow_debug: false,
        };
        let private = PrivateDecryptingKey::generate(KeySize::Rsa2048).unwrap();
        let spki = private.public_key().as_der().unwrap().as_ref().to_vec();
        let doc = attester.attest(None, None, Some(&spki)).unwrap();
        verify_wrapping_key(&doc, &spki, &expect, SystemTime::now()).unwrap();

        // Another key than the one attested: refused.
        let other = PrivateDecryptingKey::generate(KeySize::Rsa2048).unwrap();
        let other_spki = other.public_key().as_der().unwrap().as_ref().to_vec();
        let e = verify_wrapping_key(&doc, &other_spki, &expect, SystemTime::now()).unwrap_err();
        assert!(e.to_string().contains("does not bind"), "{e:#}");
        // Another enclave image than the one pinned: refused.
        let other_pcrs = write(
            dir.path(),
            "other-pcrs.json",
            attestation::pcr_set_to_json(
                &pcrs_from_binary(b"another enclave")
                    .into_iter()
                    .map(|(i, v)| (i, v.to_vec()))
                    .collect(),
            )
            .to_string()
            .as_bytes(),
        );
        let other_image = Expectation {
            expect_pcrs: other_pcrs,
            ..expect.clone()
        };
        assert!(verify_wrapping_key(&doc, &spki, &other_image, SystemTime::now()).is_err());
        // A document from another CA: refused.
        let other_ca = MockAttester::new(
            MockCa::generate(SystemTime::now()).unwrap(),
            pcrs_from_binary(b"enclave"),
        )
        .unwrap();
        let forged = other_ca.attest(None, None, Some(&spki)).unwrap();
        assert!(verify_wrapping_key(&forged, &spki, &expect, SystemTime::now()).is_err());

        // The wrapped material opens with the private key.
        let wrapped = wrap_oaep_sha256(&spki, &[5u8; 32]).unwrap();
        let private = OaepPrivateDecryptingKey::new(private).unwrap();
        let mut out = vec![0u8; private.min_output_size()];
        let material = private
            .decrypt(&OAEP_SHA256_MGF1SHA256, &wrapped, &mut out, None)
            .unwrap();
        assert_eq!(material, &[5u8; 32]);
    }

    /// RSA_AES_KEY_WRAP_SHA_256: the first modulus-length bytes open (RSAES-OAEP SHA-256) to an
    /// AES-256 key, under which the rest unwraps (RFC 5649) to the material, whatever its
    /// length (a 1,217-byte RSA-4096 private key would not fit RSAES-OAEP).
    #[test]
    fn rsa_aes_key_wrap_opens_as_aws_defines_it() {
        use aws_lc_rs::key_wrap::{AesKek, KeyWrapPadded as _, AES_256};
        let private = PrivateDecryptingKey::generate(KeySize::Rsa2048).unwrap();
        let spki = private.public_key().as_der().unwrap().as_ref().to_vec();
        let private = OaepPrivateDecryptingKey::new(private).unwrap();
        for len in [1usize, 32, 33, 1217] {
            let material: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let wrapped = wrap_rsa_aes_key_wrap_sha256(&spki, &material).unwrap();
            let (rsa_part, kwp) = wrapped.split_at(private.key_size_bytes());
            let mut out = vec![0u8; private.min_output_size()];
            let aes_key = private
                .decrypt(&OAEP_SHA256_MGF1SHA256, rsa_part, &mut out, None)
                .unwrap();
            assert_eq!(aes_key.len(), 32);
            let kek = AesKek::new(&AES_256, aes_key).unwrap();
            let mut unwrapped = vec![0u8; kwp.len()];
            let unwrapped = kek.unwrap_with_padding(kwp, &mut unwrapped).unwrap();
            assert_eq!(unwrapped, &material[..], "{len} bytes");
        }
    }
}
