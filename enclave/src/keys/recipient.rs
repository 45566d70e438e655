//! Recipient: answers that only an attested enclave can read, as AWS KMS gives Nitro Enclaves.
//!
//! A request's `Recipient {AttestationDocument, KeyEncryptionAlgorithm}` is verified here
//! (the AWS Nitro root; the mock root too, but only when `main` runs in mock mode and puts it
//! in [`crate::config::Config::recipient_anchors`]). The answer's secret then goes out as
//! `CiphertextForRecipient`: a CMS `ContentInfo` holding `EnvelopedData` (RFC 5652 §6) with
//! one `KeyTransRecipientInfo` (RSAES-OAEP with SHA-256, RFC 8017 §7.1 and RFC 4055 §4.1) to
//! the RSA public key bound in the document, identified by a `subjectKeyIdentifier` (RFC 5280
//! §4.2.1.2 method 1, as AWS does), and the content under AES-256-CBC (RFC 3565). The caller
//! never sees the plaintext. `openssl cms -decrypt -inform DER -inkey key.pem` opens it.
//!
//! Trusts: the anchors it is given and the enclave clock. Does not decide policy: the
//! verified PCRs and image digest are exposed on [`Recipient`] for the policy engine's
//! `kms:RecipientAttestation:*` conditions.

use std::collections::BTreeMap;
use std::time::{Duration, UNIX_EPOCH};

use aws_lc_rs::cipher::{EncryptionContext, PaddedBlockEncryptingKey, UnboundCipherKey, AES_256};
use aws_lc_rs::iv::FixedLength;
use aws_lc_rs::rsa::{OaepPublicEncryptingKey, PublicEncryptingKey, OAEP_SHA256_MGF1SHA256};
use cms::cert::x509::ext::pkix::SubjectKeyIdentifier;
use cms::cert::x509::spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoRef};
use cms::content_info::{CmsVersion, ContentInfo};
use cms::enveloped_data::{
    EncryptedContentInfo, EnvelopedData, KeyTransRecipientInfo, RecipientIdentifier, RecipientInfo,
    RecipientInfos,
};
use der::asn1::{ObjectIdentifier, OctetString, SetOfVec};
use der::{Any, Decode as _, Encode as _, Sequence};
use ekms_shared::attestation::{self, AttestationError, Policy, TrustAnchor};
use serde::Deserialize;
use zeroize::Zeroizing;

use crate::env::{Entropy, Millis};
use crate::error::KmsError;
use crate::json::Blob;

/// id-envelopedData (RFC 5652 §6.1).
const ID_ENVELOPED_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.3");
/// id-data (RFC 5652 §4).
const ID_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.1");
/// id-RSAES-OAEP (RFC 4055 §4.1 / RFC 8017 Appendix A.2.1).
const ID_RSAES_OAEP: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.7");
/// id-mgf1 (RFC 8017 Appendix B.2.1).
const ID_MGF1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.8");
/// id-sha256 (RFC 4055 §2.1 / NIST).
const ID_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.1");
/// id-aes256-CBC (RFC 3565 §4.1).
const ID_AES256_CBC: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.1.42");

/// The only `KeyEncryptionAlgorithm` AWS KMS accepts for a Recipient.
pub const KEY_ENCRYPTION_ALGORITHM: &str = "RSAES_OAEP_SHA_256";
/// Smallest recipient RSA key accepted, in bits.
pub const MIN_RSA_BITS: usize = 2048;

/// The `Recipient` field of Decrypt, GenerateDataKey, GenerateDataKeyPair, GenerateRandom
/// and DeriveSharedSecret, as the caller sent it.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct RecipientInfoRequest {
    attestation_document: Option<Blob>,
    key_encryption_algorithm: Option<String>,
}

/// Why a Recipient was refused. Every variant is the caller's fault (a `ValidationException`).
#[derive(Debug, thiserror::Error)]
pub enum RecipientError {
    /// No `AttestationDocument`.
    #[error("Recipient.AttestationDocument is required")]
    MissingDocument,
    /// `KeyEncryptionAlgorithm` is not RSAES_OAEP_SHA_256.
    #[error("Recipient.KeyEncryptionAlgorithm must be {KEY_ENCRYPTION_ALGORITHM}")]
    Algorithm,
    /// The document does not verify against any trusted root.
    #[error("the attestation document is not valid")]
    Attestation(#[source] AttestationError),
    /// This deployment trusts no root for recipients.
    #[error("this service trusts no attestation root for recipients")]
    NoTrustAnchor,
    /// The document binds no public key.
    #[error("the attestation document has no public key")]
    NoPublicKey,
    /// The bound public key is not an RSA SubjectPublicKeyInfo of at least 2048 bits.
    #[error(
        "the attestation document's public key is not an RSA key of at least {MIN_RSA_BITS} bits"
    )]
    NotRsa,
}

impl From<RecipientError> for KmsError {
    fn from(e: RecipientError) -> Self {
        let mut message = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(cause) = source {
            message.push_str(": ");
            message.push_str(&cause.to_string());
            source = cause.source();
        }
        KmsError::Validation(message)
    }
}

/// A verified recipient: the enclave's RSA key and what its attestation proved.
pub struct Recipient {
    public_key: OaepPublicEncryptingKey,
    spki_der: Vec<u8>,
    pcrs: BTreeMap<u8, Vec<u8>>,
    debug: bool,
}

impl std::fmt::Debug for Recipient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recipient")
            .field("pcrs", &self.pcrs.len())
            .field("debug", &self.debug)
            .finish_non_exhaustive()
    }
}

impl Recipient {
    /// The verified PCRs, for `kms:RecipientAttestation:PCR<n>` conditions.
    pub fn pcrs(&self) -> &BTreeMap<u8, Vec<u8>> {
        &self.pcrs
    }

    /// The enclave image digest (PCR0, SHA-384), for `kms:RecipientAttestation:ImageSha384`.
    pub fn image_sha384(&self) -> Option<&[u8]> {
        self.pcrs.get(&0).map(Vec::as_slice)
    }

    /// Whether the recipient enclave runs in debug mode (PCR0 all zero): such a document
    /// matches no image digest, so PCR conditions refuse it.
    #[cfg(any(test, fuzzing))]
    pub fn is_debug(&self) -> bool {
        self.debug
    }

    /// The recipient's public key, DER SubjectPublicKeyInfo.
    #[cfg(fuzzing)]
    pub fn public_key_der(&self) -> &[u8] {
        &self.spki_der
    }

    /// `plaintext` as CMS EnvelopedData for this recipient (RFC 5652 §6), DER.
    ///
    /// # Errors
    /// [`KmsError::Internal`] if the random source, a cipher or the encoder fails.
    pub fn envelope(&self, plaintext: &[u8], entropy: &dyn Entropy) -> Result<Vec<u8>, KmsError> {
        envelope(
            &self.public_key,
            &subject_key_identifier(&self.spki_der)?,
            plaintext,
            entropy,
        )
    }
}

/// Verifies a `Recipient` field against `anchors` at the enclave time `now`.
///
/// Any PCRs are accepted (conditions in key policies decide which enclaves may receive), and
/// so are debug-mode enclaves, as AWS KMS does: their PCRs are zero and match no condition.
///
/// # Errors
/// [`RecipientError`] for a missing document, another algorithm, a document that no anchor
/// verifies, or a bound key that is not RSA.
pub fn verify(
    request: RecipientInfoRequest,
    anchors: &[TrustAnchor],
    now: Millis,
) -> Result<Recipient, RecipientError> {
    let algorithm = request
        .key_encryption_algorithm
        .as_deref()
        .unwrap_or(KEY_ENCRYPTION_ALGORITHM);
    if algorithm != KEY_ENCRYPTION_ALGORITHM {
        return Err(RecipientError::Algorithm);
    }
    let document = request
        .attestation_document
        .ok_or(RecipientError::MissingDocument)?;
    let now = UNIX_EPOCH + Duration::from_millis(u64::try_from(now).unwrap_or(0));
    let policy = Policy::accept_any_pcrs().allowing_debug();
    let mut refusal = None;
    let mut verified = None;
    for anchor in anchors {
        match attestation::verify(&document.0, anchor, now, &policy) {
            Ok(v) => {
                verified = Some(v);
                break;
            }
            // Keep the most telling refusal: a chain to the wrong root only says "not this
            // anchor", any other step says what is wrong with the document.
            Err(e) => {
                let wrong_root = matches!(
                    &e,
                    AttestationError::Chain(chain)
                        if matches!(chain.reason, attestation::ChainFailure::WrongRoot)
                );
                if refusal.is_none() || !wrong_root {
                    refusal = Some(e);
                }
            }
        }
    }
    let verified = match (verified, refusal) {
        (Some(v), _) => v,
        (None, Some(e)) => return Err(RecipientError::Attestation(e)),
        (None, None) => return Err(RecipientError::NoTrustAnchor),
    };
    let spki_der = verified
        .public_key()
        .ok_or(RecipientError::NoPublicKey)?
        .to_vec();
    let public_key =
        PublicEncryptingKey::from_der(&spki_der).map_err(|_rejected| RecipientError::NotRsa)?;
    // The answer names the key by the subjectKeyIdentifier of its DER SubjectPublicKeyInfo:
    // a key aws-lc reads but that is not DER (a malformed NULL parameter) cannot be answered.
    SubjectPublicKeyInfoRef::from_der(&spki_der).map_err(|_| RecipientError::NotRsa)?;
    if public_key.key_size_bits() < MIN_RSA_BITS {
        return Err(RecipientError::NotRsa);
    }
    let public_key =
        OaepPublicEncryptingKey::new(public_key).map_err(|_unspecified| RecipientError::NotRsa)?;
    Ok(Recipient {
        public_key,
        spki_der,
        debug: verified.is_debug(),
        pcrs: verified.pcrs().clone(),
    })
}

/// RSAES-OAEP-params (RFC 4055 §4.1 / RFC 8017 Appendix A.2.1); pSourceAlgorithm is the
/// default (empty label) and so omitted.
#[derive(Sequence)]
struct RsaesOaepParams {
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT")]
    hash: AlgorithmIdentifierOwned,
    #[asn1(context_specific = "1", tag_mode = "EXPLICIT")]
    mask_gen: AlgorithmIdentifierOwned,
}

fn encoding_failed(_: der::Error) -> KmsError {
    KmsError::Internal("CMS encoding")
}

/// SHA-256 with NULL parameters, as OpenSSL writes it in RSAES-OAEP-params.
fn sha256_identifier() -> AlgorithmIdentifierOwned {
    AlgorithmIdentifierOwned {
        oid: ID_SHA256,
        parameters: Some(Any::null()),
    }
}

/// RFC 5280 §4.2.1.2 method 1: SHA-1 of the subjectPublicKey BIT STRING's value.
fn subject_key_identifier(spki_der: &[u8]) -> Result<Vec<u8>, KmsError> {
    let spki = SubjectPublicKeyInfoRef::from_der(spki_der)
        .map_err(|_| KmsError::Internal("recipient key was parsed before"))?;
    let digest = aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY,
        spki.subject_public_key.raw_bytes(),
    );
    Ok(digest.as_ref().to_vec())
}

/// Builds the DER `ContentInfo { id-envelopedData, EnvelopedData }`.
fn envelope(
    public_key: &OaepPublicEncryptingKey,
    key_id: &[u8],
    plaintext: &[u8],
    entropy: &dyn Entropy,
) -> Result<Vec<u8>, KmsError> {
    // A fresh content-encryption key and IV from the enclave's random source.
    let mut cek = Zeroizing::new([0u8; 32]);
    entropy.fill(&mut cek[..])?;
    let mut iv = [0u8; 16];
    entropy.fill(&mut iv)?;

    // RFC 3565 §2.3: AES-256-CBC with PKCS #7 padding (RFC 5652 §6.3).
    let key = UnboundCipherKey::new(&AES_256, &cek[..])
        .map_err(|_unspecified| KmsError::Internal("AES key"))?;
    let cipher = PaddedBlockEncryptingKey::cbc_pkcs7(key)
        .map_err(|_unspecified| KmsError::Internal("AES-CBC key"))?;
    let mut content = plaintext.to_vec();
    cipher
        .less_safe_encrypt(
            &mut content,
            EncryptionContext::Iv128(FixedLength::from(iv)),
        )
        .map_err(|_unspecified| KmsError::Internal("AES-CBC encryption"))?;

    // RFC 8017 §7.1.1: the CEK under the recipient's key.
    let mut wrapped = vec![0u8; public_key.ciphertext_size()];
    let wrapped = public_key
        .encrypt(&OAEP_SHA256_MGF1SHA256, &cek[..], &mut wrapped, None)
        .map_err(|_unspecified| KmsError::Internal("RSA-OAEP encryption"))?
        .to_vec();

    let oaep_params = RsaesOaepParams {
        hash: sha256_identifier(),
        mask_gen: AlgorithmIdentifierOwned {
            oid: ID_MGF1,
            parameters: Some(Any::encode_from(&sha256_identifier()).map_err(encoding_failed)?),
        },
    };
    // RFC 5652 §6.2.1: version 2 because the recipient is named by subjectKeyIdentifier.
    let recipient = KeyTransRecipientInfo {
        version: CmsVersion::V2,
        rid: RecipientIdentifier::SubjectKeyIdentifier(SubjectKeyIdentifier(
            OctetString::new(key_id).map_err(encoding_failed)?,
        )),
        key_enc_alg: AlgorithmIdentifierOwned {
            oid: ID_RSAES_OAEP,
            parameters: Some(Any::encode_from(&oaep_params).map_err(encoding_failed)?),
        },
        enc_key: OctetString::new(wrapped).map_err(encoding_failed)?,
    };
    let mut recipients = SetOfVec::new();
    recipients
        .insert(RecipientInfo::Ktri(recipient))
        .map_err(encoding_failed)?;
    // RFC 5652 §6.1: version 2 since a RecipientInfo has a version other than 0.
    let enveloped = EnvelopedData {
        version: CmsVersion::V2,
        originator_info: None,
        recip_infos: RecipientInfos(recipients),
        encrypted_content: EncryptedContentInfo {
            content_type: ID_DATA,
            content_enc_alg: AlgorithmIdentifierOwned {
                oid: ID_AES256_CBC,
                // RFC 3565 §4.1: the parameter is the IV, an OCTET STRING.
                parameters: Some(
                    Any::encode_from(&OctetString::new(iv.to_vec()).map_err(encoding_failed)?)
                        .map_err(encoding_failed)?,
                ),
            },
            encrypted_content: Some(OctetString::new(content).map_err(encoding_failed)?),
        },
        unprotected_attrs: None,
    };
    ContentInfo {
        content_type: ID_ENVELOPED_DATA,
        content: Any::encode_from(&enveloped).map_err(encoding_failed)?,
    }
    .to_der()
    .map_err(encoding_failed)
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests make mock CAs at the real time
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::env::OsEntropy;
    use aws_lc_rs::cipher::{DecryptionContext, PaddedBlockDecryptingKey};
    use aws_lc_rs::encoding::AsDer as _;
    use aws_lc_rs::rsa::{KeySize, OaepPrivateDecryptingKey, PrivateDecryptingKey};
    use ekms_shared::attestation::insecure::{pcrs_from_binary, MockAttester, MockCa};
    use std::time::SystemTime;

    fn rsa() -> (PrivateDecryptingKey, Vec<u8>) {
        let key = PrivateDecryptingKey::generate(KeySize::Rsa2048).unwrap();
        let spki = key.public_key().as_der().unwrap().as_ref().to_vec();
        (key, spki)
    }

    fn now_ms() -> Millis {
        i64::try_from(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_millis(),
        )
        .unwrap()
    }

    fn request(doc: Vec<u8>) -> RecipientInfoRequest {
        RecipientInfoRequest {
            attestation_document: Some(Blob(doc)),
            key_encryption_algorithm: Some(KEY_ENCRYPTION_ALGORITHM.to_owned()),
        }
    }

    fn attester() -> MockAttester {
        let ca = MockCa::generate(SystemTime::now()).unwrap();
        MockAttester::new(ca, pcrs_from_binary(b"recipient enclave")).unwrap()
    }

    /// Opens the envelope the way a recipient would, field by field.
    #[test]
    fn envelope_opens_with_the_recipient_key() {
        let (private, spki) = rsa();
        let attester = attester();
        let doc = attester.attest(None, None, Some(&spki)).unwrap();
        let anchor = attester.ca().insecure_trust_anchor().unwrap();
        let recipient = verify(request(doc), &[anchor], now_ms()).unwrap();
        assert_eq!(recipient.image_sha384().unwrap().len(), 48);
        assert!(!recipient.is_debug());

        let der = recipient
            .envelope(b"the secret", &OsEntropy::default())
            .unwrap();
        let info = ContentInfo::from_der(&der).unwrap();
        assert_eq!(info.content_type, ID_ENVELOPED_DATA);
        let enveloped: EnvelopedData = info.content.decode_as().unwrap();
        assert_eq!(enveloped.version, CmsVersion::V2);
        let ktri = match enveloped.recip_infos.0.get(0).unwrap() {
            RecipientInfo::Ktri(k) => k.clone(),
            _ => panic!("not a KeyTransRecipientInfo"),
        };
        assert_eq!(ktri.key_enc_alg.oid, ID_RSAES_OAEP);
        let RecipientIdentifier::SubjectKeyIdentifier(ski) = &ktri.rid else {
            panic!("not a subjectKeyIdentifier");
        };
        assert_eq!(ski.0.as_bytes(), subject_key_identifier(&spki).unwrap());

        let private = OaepPrivateDecryptingKey::new(private).unwrap();
        let mut cek = vec![0u8; private.min_output_size()];
        let cek = private
            .decrypt(
                &OAEP_SHA256_MGF1SHA256,
                ktri.enc_key.as_bytes(),
                &mut cek,
                None,
            )
            .unwrap()
            .to_vec();
        let content = &enveloped.encrypted_content;
        assert_eq!(content.content_enc_alg.oid, ID_AES256_CBC);
        let iv: OctetString = content
            .content_enc_alg
            .parameters
            .as_ref()
            .unwrap()
            .decode_as()
            .unwrap();
        let iv: [u8; 16] = iv.as_bytes().try_into().unwrap();
        let key =
            PaddedBlockDecryptingKey::cbc_pkcs7(UnboundCipherKey::new(&AES_256, &cek).unwrap())
                .unwrap();
        let mut data = content
            .encrypted_content
            .as_ref()
            .unwrap()
            .as_bytes()
            .to_vec();
        let plain = key
            .decrypt(&mut data, DecryptionContext::Iv128(FixedLength::from(iv)))
            .unwrap();
        assert_eq!(plain, b"the secret");
    }

    /// Found by fuzzing (fuzz/fuzz_targets/recipient.rs): aws-lc reads an RSA key whose
    /// AlgorithmIdentifier NULL has a broken length byte, the DER decoder does not. Such a key
    /// was accepted, and the answer for it then failed as an internal error.
    #[test]
    fn a_key_that_is_not_der_is_refused() {
        let (_, mut spki) = rsa();
        // 30 82 01 22 | 30 0d | 06 09 rsaEncryption | 05 00: the NULL's length is byte 18.
        assert_eq!(&spki[17..19], &[0x05, 0x00]);
        spki[18] = 0xcd;
        assert!(
            PublicEncryptingKey::from_der(&spki).is_ok(),
            "aws-lc reads it"
        );
        let attester = attester();
        let doc = attester.attest(None, None, Some(&spki)).unwrap();
        let anchors = [attester.ca().insecure_trust_anchor().unwrap()];
        assert!(matches!(
            verify(request(doc), &anchors, now_ms()),
            Err(RecipientError::NotRsa)
        ));
    }

    #[test]
    fn untrusted_roots_and_bad_fields_are_refused() {
        let (_, spki) = rsa();
        let attester = attester();
        let doc = attester.attest(None, None, Some(&spki)).unwrap();
        // The AWS root alone does not trust a mock document; nor does another mock root.
        let other = MockCa::generate(SystemTime::now())
            .unwrap()
            .insecure_trust_anchor()
            .unwrap();
        for anchors in [vec![TrustAnchor::aws_nitro_root()], vec![other]] {
            let e = verify(request(doc.clone()), &anchors, now_ms()).unwrap_err();
            assert!(matches!(e, RecipientError::Attestation(_)), "{e:?}");
            assert_eq!(KmsError::from(e).aws_code(), "ValidationException");
        }
        let anchors = [attester.ca().insecure_trust_anchor().unwrap()];
        let mut wrong_algorithm = request(doc);
        wrong_algorithm.key_encryption_algorithm = Some("RSAES_OAEP_SHA_1".to_owned());
        assert!(matches!(
            verify(wrong_algorithm, &anchors, now_ms()),
            Err(RecipientError::Algorithm)
        ));
        assert!(matches!(
            verify(RecipientInfoRequest::default(), &anchors, now_ms()),
            Err(RecipientError::MissingDocument)
        ));
        // Bytes that are no RSA SubjectPublicKeyInfo are no recipient.
        let not_rsa = attester.attest(None, None, Some(b"not a key")).unwrap();
        assert!(matches!(
            verify(request(not_rsa), &anchors, now_ms()),
            Err(RecipientError::NotRsa)
        ));
        let no_key = attester.attest(None, None, None).unwrap();
        assert!(matches!(
            verify(request(no_key), &anchors, now_ms()),
            Err(RecipientError::NoPublicKey)
        ));
    }
}
