//! Custody files and what they carry (`ekms_shared::custody`, `envelope`, `shamir`):
//! `share-N.json` (`ShareFile::from_json`, `open_share_file`), the sealed share plaintext
//! (`SharePlaintext::from_bytes`), custodian key files (`load_public`, `load_secret`, and the
//! PEM / DER decoders behind them), envelopes (`envelope::open`) and Shamir shares
//! (`shamir::combine`).
//!
//! Checks: no panic; what decodes re-encodes to something that decodes the same (share
//! files, share plaintexts, public keys); a share file sealed to a custodian and then altered
//! either does not open or opens to exactly what was sealed, with a header that says so; a
//! fuzzed envelope never opens (no forgery); a sealed envelope opens only with its purpose and
//! AAD; any `threshold` distinct shares of a split rebuild the secret.

#![no_main]

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::sync::OnceLock;

use arbitrary::Unstructured;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ekms_shared::custody::{self, ShareFile, SharePlaintext};
use ekms_shared::envelope::{self, Purpose};
use ekms_shared::shamir::{self, Share};
use libfuzzer_sys::fuzz_target;
use p384::SecretKey;
use zeroize::Zeroizing;

const PURPOSES: [Purpose; 4] = [
    Purpose::Share,
    Purpose::Unseal,
    Purpose::AdminCredentials,
    Purpose::Join,
];
const DOMAIN_KEY: [u8; 32] = [0x5a; 32];

fn custodian() -> &'static SecretKey {
    static KEY: OnceLock<SecretKey> = OnceLock::new();
    KEY.get_or_init(|| SecretKey::from_bytes(&[0x11; 48].into()).expect("a valid scalar"))
}

fn same(a: &SharePlaintext, b: &SharePlaintext) -> bool {
    a.deployment_id() == b.deployment_id()
        && a.index() == b.index()
        && a.threshold() == b.threshold()
        && a.total() == b.total()
        && a.commitment() == b.commitment()
        && a.to_share().expose_value() == b.to_share().expose_value()
}

fn key_file(name: &str, contents: &[u8], mode: u32) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("ekms-fuzz-custody-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let path = dir.join(name);
    let _ = std::fs::remove_file(&path);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&path)
        .expect("scratch file");
    file.write_all(contents).expect("write");
    path
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let secret = custodian();
    match u.int_in_range(0..=5u8).unwrap_or(0) {
        0 => {
            let bytes: &[u8] = u.take_rest();
            if let Ok(file) = ShareFile::from_json(bytes) {
                let text = file.to_json().expect("a parsed share file encodes");
                assert_eq!(ShareFile::from_json(text.as_bytes()).expect("re-parses"), file);
                let _ = file.file_name();
                assert!(custody::open_share_file(&file, secret).is_err(), "a fuzzed share file opened");
            }
        }
        1 => {
            let bytes: &[u8] = u.take_rest();
            if let Ok(p) = SharePlaintext::from_bytes(bytes) {
                let again = p.to_bytes().expect("encodes");
                let back = SharePlaintext::from_bytes(&again).expect("re-decodes");
                assert!(same(&p, &back), "a share plaintext changed through its encoding");
            }
        }
        2 => {
            // A real share file, then altered.
            let threshold = u.int_in_range(1..=4u8).unwrap_or(2);
            let total = u.int_in_range(threshold..=5u8).unwrap_or(threshold);
            let shares = shamir::split(&Zeroizing::new(DOMAIN_KEY), threshold, total).expect("split");
            let index = u.choose_index(shares.len()).unwrap_or(0);
            let deployment: String = if u.ratio(3, 4).unwrap_or(true) {
                "7f1c6f1e-0000-4000-8000-000000000001".to_owned()
            } else {
                u.arbitrary().unwrap_or_default()
            };
            let Ok(plain) = SharePlaintext::new(&deployment, &shares[index], threshold, total, custody::commitment(&DOMAIN_KEY)) else {
                return;
            };
            let mut file = custody::seal_share_file(&plain, &secret.public_key()).expect("seal");
            let original = file.clone();
            match u.int_in_range(0..=5u8).unwrap_or(0) {
                0 => file.deployment_id = u.arbitrary().unwrap_or_default(),
                1 => file.index = u.arbitrary().unwrap_or(0),
                2 => file.threshold = u.arbitrary().unwrap_or(0),
                3 => file.total = u.arbitrary().unwrap_or(0),
                4 => file.custodian = u.arbitrary().unwrap_or_default(),
                _ => {
                    let mut bytes = B64.decode(&file.envelope).expect("base64");
                    let at = u.choose_index(bytes.len()).unwrap_or(0);
                    bytes[at] ^= u.int_in_range(0..=255u8).unwrap_or(0);
                    file.envelope = B64.encode(bytes);
                }
            }
            let text = file.to_json().expect("encodes");
            let file = ShareFile::from_json(text.as_bytes()).expect("parses");
            match custody::open_share_file(&file, secret) {
                Ok(opened) => {
                    assert_eq!(file, original, "an altered share file opened");
                    assert!(same(&opened, &plain));
                }
                Err(_) => assert_ne!(file, original, "a share file does not open"),
            }
        }
        3 => {
            let text: &str = u.arbitrary().unwrap_or_default();
            if let Ok(key) = envelope::public_key_from_pem(text) {
                let pem = envelope::public_key_to_pem(&key).expect("encodes");
                assert_eq!(envelope::public_key_from_pem(&pem).expect("re-parses"), key);
            }
            let _ = envelope::secret_key_from_pkcs8_pem(text);
            let der: &[u8] = u.arbitrary().unwrap_or_default();
            if let Ok(key) = envelope::public_key_from_spki_der(der) {
                let again = envelope::public_key_to_spki_der(&key).expect("encodes");
                assert_eq!(envelope::public_key_from_spki_der(&again).expect("re-parses"), key);
            }
            // As the key files the operator's tool reads.
            let _ = custody::load_public(&key_file(custody::PUBLIC_KEY_FILE, text.as_bytes(), 0o644));
            let _ = custody::load_secret(&key_file(custody::SECRET_KEY_FILE, text.as_bytes(), 0o600));
        }
        4 => {
            let purpose = *u.choose(&PURPOSES).unwrap_or(&Purpose::Share);
            let aad: &[u8] = u.arbitrary().unwrap_or_default();
            let fuzzed: &[u8] = u.arbitrary().unwrap_or_default();
            assert!(envelope::open(secret, &purpose, aad, fuzzed).is_err(), "a fuzzed envelope opened");
            let plaintext: &[u8] = u.arbitrary().unwrap_or_default();
            let sealed = envelope::seal_to(&secret.public_key(), &purpose, aad, plaintext).expect("seal");
            let opened = envelope::open(secret, &purpose, aad, sealed.as_bytes()).expect("opens");
            assert_eq!(&opened[..], plaintext);
            let other = *u.choose(&PURPOSES).unwrap_or(&Purpose::Share);
            let other_aad: &[u8] = u.arbitrary().unwrap_or_default();
            if (other, other_aad) != (purpose, aad) {
                assert!(envelope::open(secret, &other, other_aad, sealed.as_bytes()).is_err());
            }
        }
        _ => {
            // Fuzzed shares, then shares of a real split.
            let fuzzed: Vec<Share> = (0..u.int_in_range(0..=5u8).unwrap_or(0))
                .filter_map(|_| {
                    let index: u8 = u.arbitrary().ok()?;
                    let value: &[u8] = u.arbitrary().ok()?;
                    Share::from_slice(index, value).ok()
                })
                .collect();
            let _ = shamir::combine(&fuzzed);
            let threshold = u.int_in_range(1..=5u8).unwrap_or(2);
            let total = u.int_in_range(threshold..=8u8).unwrap_or(threshold);
            let shares = shamir::split(&Zeroizing::new(DOMAIN_KEY), threshold, total).expect("split");
            let mut chosen: Vec<Share> = Vec::new();
            for s in &shares {
                if u.arbitrary().unwrap_or(true) {
                    chosen.push(Share::from_slice(s.index(), s.expose_value()).expect("copy"));
                }
            }
            if chosen.len() >= usize::from(threshold) {
                let secret = shamir::combine(&chosen).expect("enough shares combine");
                assert_eq!(*secret, DOMAIN_KEY, "{} of {total} shares (threshold {threshold}) rebuilt another key", chosen.len());
            }
        }
    }
});
