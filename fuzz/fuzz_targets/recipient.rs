//! Recipient inputs (`recipient::verify`) and the CMS answers made for them
//! (`Recipient::envelope`, RFC 5652 EnvelopedData).
//!
//! The `Recipient` field comes as JSON (`AttestationDocument`, `KeyEncryptionAlgorithm`)
//! holding: a document the mock attester signs (the mock root is trusted, as in mock mode)
//! binding fuzzed `public_key` bytes, or a real RSA key's SubjectPublicKeyInfo with bytes
//! changed, or the real key as is, or an EC key; or fuzzed document bytes; or fuzzed JSON.
//!
//! Checks: no panic; a recipient that verifies can always be answered (`envelope` never
//! fails on a key `verify` accepted: that would be an internal error on a caller's input);
//! the answer is DER `ContentInfo`/`EnvelopedData` naming the key by its subjectKeyIdentifier,
//! and, for the real key, opens with its private key to the plaintext.

#![no_main]

use std::sync::OnceLock;

use arbitrary::Unstructured;
use aws_lc_rs::cipher::{DecryptionContext, PaddedBlockDecryptingKey, UnboundCipherKey, AES_256};
use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::iv::FixedLength;
use aws_lc_rs::rsa::{KeySize, OaepPrivateDecryptingKey, PrivateDecryptingKey, OAEP_SHA256_MGF1SHA256};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use cms::content_info::ContentInfo;
use cms::enveloped_data::{EnvelopedData, RecipientIdentifier, RecipientInfo};
use der::asn1::OctetString;
use der::Decode as _;
use ekms_enclave::keys::recipient::{self, RecipientInfoRequest};
use ekms_fuzz::{config, mock_attester, now, SeededEntropy, NOW_MS};
use libfuzzer_sys::fuzz_target;

struct Keys {
    rsa: OaepPrivateDecryptingKey,
    rsa_spki: Vec<u8>,
    ec_spki: Vec<u8>,
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let rsa = PrivateDecryptingKey::generate(KeySize::Rsa2048).expect("RSA key");
        let rsa_spki = rsa.public_key().as_der().expect("SPKI").as_ref().to_vec();
        let ec = aws_lc_rs::signature::EcdsaKeyPair::generate(
            &aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
        )
        .expect("EC key");
        let ec_spki = aws_lc_rs::signature::KeyPair::public_key(&ec)
            .as_der()
            .expect("EC SPKI")
            .as_ref()
            .to_vec();
        Keys {
            rsa: OaepPrivateDecryptingKey::new(rsa).expect("OAEP key"),
            rsa_spki,
            ec_spki,
        }
    })
}

fn request(doc: &[u8], algorithm: Option<&str>) -> Option<RecipientInfoRequest> {
    let mut value = serde_json::json!({ "AttestationDocument": B64.encode(doc) });
    if let Some(a) = algorithm {
        value["KeyEncryptionAlgorithm"] = a.into();
    }
    serde_json::from_value(value).ok()
}

fn open(der: &[u8], spki: &[u8], private: Option<&OaepPrivateDecryptingKey>) -> Vec<u8> {
    let info = ContentInfo::from_der(der).expect("the answer is a ContentInfo");
    assert_eq!(info.content_type.to_string(), "1.2.840.113549.1.7.3");
    let enveloped: EnvelopedData = info.content.decode_as().expect("EnvelopedData");
    assert_eq!(enveloped.recip_infos.0.len(), 1);
    let Some(RecipientInfo::Ktri(ktri)) = enveloped.recip_infos.0.get(0) else {
        panic!("not a KeyTransRecipientInfo");
    };
    let RecipientIdentifier::SubjectKeyIdentifier(ski) = &ktri.rid else {
        panic!("not named by subjectKeyIdentifier");
    };
    let parsed = spki::SubjectPublicKeyInfoRef::from_der(spki).expect("the accepted key is SPKI DER");
    let expected = aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY,
        parsed.subject_public_key.raw_bytes(),
    );
    assert_eq!(ski.0.as_bytes(), expected.as_ref());
    let Some(private) = private else {
        return Vec::new();
    };
    let mut cek = vec![0u8; private.min_output_size()];
    let cek = private
        .decrypt(&OAEP_SHA256_MGF1SHA256, ktri.enc_key.as_bytes(), &mut cek, None)
        .expect("the CEK opens")
        .to_vec();
    let content = &enveloped.encrypted_content;
    let iv: OctetString = content
        .content_enc_alg
        .parameters
        .as_ref()
        .expect("IV")
        .decode_as()
        .expect("IV is an OCTET STRING");
    let iv: [u8; 16] = iv.as_bytes().try_into().expect("16-byte IV");
    let key = PaddedBlockDecryptingKey::cbc_pkcs7(UnboundCipherKey::new(&AES_256, &cek).expect("AES key"))
        .expect("CBC key");
    let mut data = content.encrypted_content.as_ref().expect("content").as_bytes().to_vec();
    key.decrypt(&mut data, DecryptionContext::Iv128(FixedLength::from(iv)))
        .expect("the content opens")
        .to_vec()
}

mod spki {
    pub use cms::cert::x509::spki::SubjectPublicKeyInfoRef;
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let keys = keys();
    let config = config();
    let algorithm: Option<String> = match u.int_in_range(0..=5u8).unwrap_or(0) {
        0 => None,
        1 => u.arbitrary().ok(),
        _ => Some("RSAES_OAEP_SHA_256".to_owned()),
    };
    let mode = u.int_in_range(0..=5u8).unwrap_or(0);
    let (req, key) = match mode {
        0 => {
            // Fuzzed JSON.
            let text: &[u8] = u.bytes(u.len()).unwrap_or_default();
            (serde_json::from_slice::<RecipientInfoRequest>(text).ok(), None)
        }
        1 => {
            let doc: &[u8] = u.bytes(u.len()).unwrap_or_default();
            (request(doc, algorithm.as_deref()), None)
        }
        _ => {
            let key: Vec<u8> = match mode {
                2 => u.arbitrary().unwrap_or_default(),
                3 => {
                    let mut k = keys.rsa_spki.clone();
                    for _ in 0..u.int_in_range(1..=3u8).unwrap_or(1) {
                        match u.int_in_range(0..=3u8).unwrap_or(0) {
                            0 => k.truncate(u.int_in_range(0..=k.len()).unwrap_or(0)),
                            1 => {
                                let extra: Vec<u8> = u.arbitrary().unwrap_or_default();
                                let at = u.int_in_range(0..=k.len()).unwrap_or(0);
                                k.splice(at..at, extra);
                            }
                            _ if !k.is_empty() => {
                                let at = u.choose_index(k.len()).unwrap_or(0);
                                k[at] = u.arbitrary().unwrap_or(0);
                            }
                            _ => {}
                        }
                    }
                    k
                }
                4 => keys.ec_spki.clone(),
                _ => keys.rsa_spki.clone(),
            };
            let Ok(doc) = mock_attester().attest_at(now(), None, None, Some(&key)) else {
                return;
            };
            (request(&doc, algorithm.as_deref()), Some(key))
        }
    };
    let Some(req) = req else {
        return;
    };
    let Ok(recipient) = recipient::verify(req, &config.recipient_anchors, NOW_MS) else {
        return;
    };
    if let Some(key) = &key {
        assert_eq!(recipient.public_key_der(), key.as_slice());
    }
    let plaintext: Vec<u8> = u.arbitrary().unwrap_or_default();
    let entropy = SeededEntropy::new(u.arbitrary().unwrap_or(0));
    let der = match recipient.envelope(&plaintext, &entropy) {
        Ok(der) => der,
        Err(e) => panic!(
            "a verified recipient cannot be answered ({e:?}); key {}",
            B64.encode(recipient.public_key_der())
        ),
    };
    let private = (recipient.public_key_der() == keys.rsa_spki.as_slice()).then_some(&keys.rsa);
    let opened = open(&der, recipient.public_key_der(), private);
    if private.is_some() {
        assert_eq!(opened, plaintext, "the answer does not open to the secret");
    }
});
