//! Custody of the domain key: custodians' key pairs, and shares as custodians hold them.
//!
//! - A custodian has a P-384 key pair: `custodian.key` (PKCS #8 PEM, mode 0600) and
//!   `custodian.pub` (SubjectPublicKeyInfo PEM). A custodian is named by its fingerprint, the
//!   SHA-256 of the SPKI DER, in lowercase hex.
//! - At init, the enclave splits the domain key (see [`crate::shamir`]) and seals each share's
//!   [`SharePlaintext`] to one custodian ([`crate::envelope::Purpose::Share`], AAD =
//!   `deployment_id ‖ 0x00 ‖ index`) as a [`ShareFile`], `share-N.json`.
//! - At unseal, the custodian opens its file ([`open_share_file`]) and re-seals
//!   [`SharePlaintext::to_bytes`] to the enclave's attested key ([`crate::envelope::Purpose::Unseal`]).
//!
//! Each share carries [`commitment`] of the domain key, so the enclave knows when the shares it
//! combined rebuilt the right key (fewer than M shares, or shares of another deployment, rebuild
//! a different one). The commitment is a SHA-384 hash of a 256-bit random key: it reveals
//! nothing useful about the key, and is compared in constant time anyway.
//!
//! What this module trusts: nothing read from a file or the wire until the envelope opened;
//! every decoder caps its input before allocating.

use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::{Read as _, Write as _};
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use p384::elliptic_curve::rand_core::OsRng;
use p384::{PublicKey, SecretKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256, Sha384};
use subtle::ConstantTimeEq as _;
use zeroize::{Zeroize as _, Zeroizing};

use crate::envelope::{self, EnvelopeError, KeyFormatError, Purpose};
use crate::shamir::{self, Share, SECRET_LEN};

/// Length of a domain-key commitment (SHA-384).
pub const COMMITMENT_LEN: usize = 48;
/// The longest deployment id accepted, in bytes.
pub const MAX_DEPLOYMENT_ID_LEN: usize = 128;
/// Cap on an encoded [`SharePlaintext`] before decoding.
pub const MAX_SHARE_PLAINTEXT_LEN: usize = 512;
/// Cap on a `share-N.json` file before parsing.
pub const MAX_SHARE_FILE_LEN: usize = 4096;
/// Cap on a custodian key file (PEM) before parsing.
pub const MAX_KEY_FILE_LEN: u64 = 4096;
/// The custodian's secret key file name in a key directory.
pub const SECRET_KEY_FILE: &str = "custodian.key";
/// The custodian's public key file name in a key directory.
pub const PUBLIC_KEY_FILE: &str = "custodian.pub";

const COMMITMENT_DOMAIN: &[u8] = b"ekms/v1/domain-key-commitment";
const SHARE_PLAINTEXT_VERSION: u8 = 1;

/// Custody failures.
#[derive(Debug, thiserror::Error)]
pub enum CustodyError {
    /// The share parameters are inconsistent (threshold/total/index), or the deployment id is
    /// empty, too long or contains NUL.
    #[error("invalid share: {0}")]
    InvalidShare(&'static str),
    /// A share value was refused by [`shamir`].
    #[error("invalid share value")]
    Share(#[source] shamir::ShamirError),
    /// The encoded share plaintext is not one this version reads.
    #[error("malformed share plaintext")]
    Decode(#[source] serde_cbor::Error),
    /// The encoded share plaintext is longer than [`MAX_SHARE_PLAINTEXT_LEN`].
    #[error("share plaintext of {len} bytes exceeds the {max}-byte limit")]
    TooLong {
        /// The length found.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The share plaintext version is not 1.
    #[error("unsupported share plaintext version {0}")]
    Version(u8),
    /// Encoding a share plaintext failed.
    #[error("could not encode the share plaintext")]
    Encode(#[source] serde_cbor::Error),
    /// The share file is not valid JSON of the expected shape.
    #[error("malformed share file")]
    ShareFileJson(#[source] serde_json::Error),
    /// The share file's envelope is not valid base64.
    #[error("malformed envelope in the share file")]
    ShareFileBase64(#[source] base64::DecodeError),
    /// The share file is addressed to another custodian than this key.
    #[error("this share is for custodian {expected}, not for this key ({actual})")]
    WrongCustodian {
        /// The fingerprint in the file.
        expected: String,
        /// The fingerprint of the key given.
        actual: String,
    },
    /// The share's envelope did not open (altered file, wrong key, or header fields changed).
    #[error("the share could not be decrypted with this key")]
    Envelope(#[source] EnvelopeError),
    /// The share file's header does not match the sealed share inside it.
    #[error("the share file's header does not match its sealed contents")]
    HeaderMismatch,
    /// The rebuilt domain key does not match the shares' commitment.
    #[error("the rebuilt domain key does not match the commitment")]
    CommitmentMismatch,
    /// A key could not be decoded or encoded.
    #[error(transparent)]
    KeyFormat(#[from] KeyFormatError),
    /// A key file already exists; keygen never overwrites.
    #[error("{} already exists; refusing to overwrite it", .0.display())]
    AlreadyExists(PathBuf),
    /// A secret key file is readable by others than its owner.
    #[error("{} has mode {mode:o}: a custodian key must not be readable by group or others (chmod 600)", path.display())]
    KeyFilePermissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A key file is larger than [`MAX_KEY_FILE_LEN`].
    #[error("{} is larger than {MAX_KEY_FILE_LEN} bytes: not a key file", .0.display())]
    KeyFileTooLarge(PathBuf),
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// The commitment to a domain key: `SHA-384("ekms/v1/domain-key-commitment" ‖ domain_key)`.
pub fn commitment(domain_key: &[u8; SECRET_LEN]) -> [u8; COMMITMENT_LEN] {
    let mut hasher = Sha384::new();
    hasher.update(COMMITMENT_DOMAIN);
    hasher.update(domain_key);
    hasher.finalize().into()
}

/// Check a rebuilt domain key against a commitment, in constant time.
///
/// # Errors
///
/// [`CustodyError::CommitmentMismatch`] if `domain_key` is not the committed key.
pub fn verify_commitment(
    domain_key: &[u8; SECRET_LEN],
    expected: &[u8; COMMITMENT_LEN],
) -> Result<(), CustodyError> {
    if bool::from(commitment(domain_key).ct_eq(expected)) {
        Ok(())
    } else {
        Err(CustodyError::CommitmentMismatch)
    }
}

/// One custodian's share as sealed inside its envelope. Fields are private: only
/// [`SharePlaintext::new`] and [`SharePlaintext::from_bytes`] make one, and both check
/// `1 <= threshold <= total`, `1 <= index <= total`, and the deployment id.
/// No `Clone`, no `Serialize`; `Debug` prints the type name only.
pub struct SharePlaintext {
    deployment_id: String,
    threshold: u8,
    total: u8,
    share: Share,
    commitment: [u8; COMMITMENT_LEN],
}

impl fmt::Debug for SharePlaintext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SharePlaintext")
    }
}

/// The CBOR encoding (a map with these keys); byte strings borrowed, never copied outside a
/// `Zeroizing` buffer.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SharePlaintextWire<'a> {
    v: u8,
    deployment_id: &'a str,
    index: u8,
    threshold: u8,
    total: u8,
    #[serde(borrow)]
    share: &'a serde_bytes::Bytes,
    #[serde(borrow)]
    commitment: &'a serde_bytes::Bytes,
}

impl SharePlaintext {
    /// A share plaintext for `share` of a `threshold`-of-`total` split of the domain key whose
    /// [`commitment`] is given.
    ///
    /// # Errors
    ///
    /// [`CustodyError::InvalidShare`] unless `1 <= threshold <= total`, `share.index() <= total`
    /// and the deployment id is 1..=128 bytes without NUL.
    pub fn new(
        deployment_id: &str,
        share: &Share,
        threshold: u8,
        total: u8,
        commitment: [u8; COMMITMENT_LEN],
    ) -> Result<Self, CustodyError> {
        check_parameters(deployment_id, share.index(), threshold, total)?;
        Ok(Self {
            deployment_id: deployment_id.to_owned(),
            threshold,
            total,
            share: share.duplicate(),
            commitment,
        })
    }

    /// The deployment this share belongs to. Public.
    pub fn deployment_id(&self) -> &str {
        &self.deployment_id
    }

    /// The share's index, `1..=total`. Public.
    pub fn index(&self) -> u8 {
        self.share.index()
    }

    /// M, the number of shares that rebuild the domain key. Public.
    pub fn threshold(&self) -> u8 {
        self.threshold
    }

    /// N, the number of shares made. Public.
    pub fn total(&self) -> u8 {
        self.total
    }

    /// The commitment to the domain key ([`commitment`]).
    pub fn commitment(&self) -> &[u8; COMMITMENT_LEN] {
        &self.commitment
    }

    /// The Shamir share (a copy, wiped on drop), for [`shamir::combine`].
    pub fn to_share(&self) -> Share {
        self.share.duplicate()
    }

    /// The Shamir share, by value.
    pub fn into_share(self) -> Share {
        self.share
    }

    /// The CBOR encoding, wiped on drop. This is what is sealed in a share file and what a
    /// custodian re-seals to the enclave at unseal.
    ///
    /// # Errors
    ///
    /// [`CustodyError::Encode`] if CBOR encoding fails (not expected).
    pub fn to_bytes(&self) -> Result<Zeroizing<Vec<u8>>, CustodyError> {
        let wire = SharePlaintextWire {
            v: SHARE_PLAINTEXT_VERSION,
            deployment_id: &self.deployment_id,
            index: self.share.index(),
            threshold: self.threshold,
            total: self.total,
            share: serde_bytes::Bytes::new(self.share.expose_value()),
            commitment: serde_bytes::Bytes::new(&self.commitment),
        };
        // Serialize into a buffer allocated once at its final size, so no reallocation leaves
        // a copy of the share behind.
        let mut out = Zeroizing::new(Vec::with_capacity(MAX_SHARE_PLAINTEXT_LEN));
        serde_cbor::to_writer(&mut *out, &wire).map_err(CustodyError::Encode)?;
        Ok(out)
    }

    /// Decode [`SharePlaintext::to_bytes`]'s output. The length is capped before decoding;
    /// unknown fields, trailing bytes and unknown versions are refused.
    ///
    /// # Errors
    ///
    /// [`CustodyError::TooLong`], [`CustodyError::Decode`], [`CustodyError::Version`], or
    /// [`CustodyError::InvalidShare`] for inconsistent fields or wrong lengths.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CustodyError> {
        if bytes.len() > MAX_SHARE_PLAINTEXT_LEN {
            return Err(CustodyError::TooLong {
                len: bytes.len(),
                max: MAX_SHARE_PLAINTEXT_LEN,
            });
        }
        let wire: SharePlaintextWire<'_> =
            serde_cbor::from_slice(bytes).map_err(CustodyError::Decode)?;
        if wire.v != SHARE_PLAINTEXT_VERSION {
            return Err(CustodyError::Version(wire.v));
        }
        check_parameters(wire.deployment_id, wire.index, wire.threshold, wire.total)?;
        if wire.share.len() != SECRET_LEN {
            return Err(CustodyError::InvalidShare("share value is not 32 bytes"));
        }
        let share = Share::from_slice(wire.index, wire.share).map_err(CustodyError::Share)?;
        let commitment: [u8; COMMITMENT_LEN] =
            wire.commitment
                .as_ref()
                .try_into()
                .map_err(|_: std::array::TryFromSliceError| {
                    CustodyError::InvalidShare("commitment is not 48 bytes")
                })?;
        Ok(Self {
            deployment_id: wire.deployment_id.to_owned(),
            threshold: wire.threshold,
            total: wire.total,
            share,
            commitment,
        })
    }
}

fn check_parameters(
    deployment_id: &str,
    index: u8,
    threshold: u8,
    total: u8,
) -> Result<(), CustodyError> {
    if deployment_id.is_empty() || deployment_id.len() > MAX_DEPLOYMENT_ID_LEN {
        return Err(CustodyError::InvalidShare(
            "deployment id must be 1 to 128 bytes",
        ));
    }
    // NUL separates the deployment id from the index in the envelope's AAD.
    if deployment_id.contains('\0') {
        return Err(CustodyError::InvalidShare("deployment id contains NUL"));
    }
    if threshold == 0 || threshold > total {
        return Err(CustodyError::InvalidShare("threshold must be 1..=total"));
    }
    if index == 0 || index > total {
        return Err(CustodyError::InvalidShare("index must be 1..=total"));
    }
    Ok(())
}

/// The envelope AAD of a share at rest: `deployment_id ‖ 0x00 ‖ index`.
pub fn share_aad(deployment_id: &str, index: u8) -> Vec<u8> {
    let mut aad = Vec::with_capacity(deployment_id.len() + 2);
    aad.extend_from_slice(deployment_id.as_bytes());
    aad.push(0);
    aad.push(index);
    aad
}

/// A custodian's fingerprint: SHA-256 of its SubjectPublicKeyInfo DER, lowercase hex.
///
/// # Errors
///
/// [`CustodyError::KeyFormat`] if the key cannot be encoded (not expected).
pub fn fingerprint(key: &PublicKey) -> Result<String, CustodyError> {
    let der = envelope::public_key_to_spki_der(key)?;
    Ok(hex::encode(Sha256::digest(&der)))
}

/// `share-N.json`: one share sealed to one custodian. All fields are public; `envelope` is the
/// base64 (standard, padded) [`envelope::Envelope`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShareFile {
    /// The deployment the share belongs to.
    pub deployment_id: String,
    /// The share's index, `1..=total`.
    pub index: u8,
    /// M.
    pub threshold: u8,
    /// N.
    pub total: u8,
    /// The custodian's [`fingerprint`].
    pub custodian: String,
    /// The sealed [`SharePlaintext`], base64.
    pub envelope: String,
}

impl ShareFile {
    /// Parse a share file, capped at [`MAX_SHARE_FILE_LEN`] bytes.
    ///
    /// # Errors
    ///
    /// [`CustodyError::TooLong`] or [`CustodyError::ShareFileJson`].
    pub fn from_json(bytes: &[u8]) -> Result<Self, CustodyError> {
        if bytes.len() > MAX_SHARE_FILE_LEN {
            return Err(CustodyError::TooLong {
                len: bytes.len(),
                max: MAX_SHARE_FILE_LEN,
            });
        }
        serde_json::from_slice(bytes).map_err(CustodyError::ShareFileJson)
    }

    /// The file's JSON text (pretty, with a final newline).
    ///
    /// # Errors
    ///
    /// [`CustodyError::ShareFileJson`] if encoding fails (not expected).
    pub fn to_json(&self) -> Result<String, CustodyError> {
        let mut text = serde_json::to_string_pretty(self).map_err(CustodyError::ShareFileJson)?;
        text.push('\n');
        Ok(text)
    }

    /// The file name this share is written under: `share-N.json`.
    pub fn file_name(&self) -> String {
        format!("share-{}.json", self.index)
    }
}

/// Seal a share to its custodian: [`Purpose::Share`], AAD = [`share_aad`].
///
/// # Errors
///
/// [`CustodyError::Encode`], [`CustodyError::KeyFormat`] or [`CustodyError::Envelope`] (RNG
/// failure).
pub fn seal_share_file(
    plaintext: &SharePlaintext,
    custodian: &PublicKey,
) -> Result<ShareFile, CustodyError> {
    let bytes = plaintext.to_bytes()?;
    let aad = share_aad(&plaintext.deployment_id, plaintext.index());
    let sealed = envelope::seal_to(custodian, &Purpose::Share, &aad, &bytes)
        .map_err(CustodyError::Envelope)?;
    Ok(ShareFile {
        deployment_id: plaintext.deployment_id.clone(),
        index: plaintext.index(),
        threshold: plaintext.threshold,
        total: plaintext.total,
        custodian: fingerprint(custodian)?,
        envelope: base64::engine::general_purpose::STANDARD.encode(sealed.as_bytes()),
    })
}

/// Open a share file with the custodian's secret key, and check that its header matches what
/// was sealed.
///
/// # Errors
///
/// [`CustodyError::WrongCustodian`] if the file names another custodian;
/// [`CustodyError::ShareFileBase64`]; [`CustodyError::Envelope`] if it does not open (altered,
/// or the deployment id or index in the header changed); [`CustodyError::HeaderMismatch`] if
/// threshold or total in the header differ from the sealed ones; the errors of
/// [`SharePlaintext::from_bytes`].
pub fn open_share_file(
    file: &ShareFile,
    custodian: &SecretKey,
) -> Result<SharePlaintext, CustodyError> {
    let actual = fingerprint(&custodian.public_key())?;
    // Fingerprints are public values.
    if file.custodian != actual {
        return Err(CustodyError::WrongCustodian {
            expected: file.custodian.clone(),
            actual,
        });
    }
    if file.envelope.len() > MAX_SHARE_FILE_LEN {
        return Err(CustodyError::TooLong {
            len: file.envelope.len(),
            max: MAX_SHARE_FILE_LEN,
        });
    }
    let sealed = base64::engine::general_purpose::STANDARD
        .decode(&file.envelope)
        .map_err(CustodyError::ShareFileBase64)?;
    let aad = share_aad(&file.deployment_id, file.index);
    let bytes = envelope::open(custodian, &Purpose::Share, &aad, &sealed)
        .map_err(CustodyError::Envelope)?;
    let plaintext = SharePlaintext::from_bytes(&bytes)?;
    // Public values. deployment_id and index are also bound by the AAD.
    if plaintext.deployment_id != file.deployment_id
        || plaintext.index() != file.index
        || plaintext.threshold != file.threshold
        || plaintext.total != file.total
    {
        return Err(CustodyError::HeaderMismatch);
    }
    Ok(plaintext)
}

/// What [`keygen`] wrote.
#[derive(Debug, Clone)]
pub struct GeneratedCustodianKey {
    /// `DIR/custodian.key`, mode 0600.
    pub secret_key_path: PathBuf,
    /// `DIR/custodian.pub`.
    pub public_key_path: PathBuf,
    /// The public key.
    pub public_key: PublicKey,
    /// Its [`fingerprint`].
    pub fingerprint: String,
}

/// Generate a custodian key pair from the OS RNG and write `dir/custodian.key` (PKCS #8 PEM,
/// created with mode 0600) and `dir/custodian.pub` (SPKI PEM). `dir` is created if missing.
/// Existing files are never overwritten.
///
/// # Errors
///
/// [`CustodyError::AlreadyExists`] if either file exists; [`CustodyError::Io`].
pub fn keygen(dir: &Path) -> Result<GeneratedCustodianKey, CustodyError> {
    let secret_key_path = dir.join(SECRET_KEY_FILE);
    let public_key_path = dir.join(PUBLIC_KEY_FILE);
    for path in [&secret_key_path, &public_key_path] {
        if fs::symlink_metadata(path).is_ok() {
            return Err(CustodyError::AlreadyExists(path.clone()));
        }
    }
    fs::create_dir_all(dir).map_err(|source| CustodyError::Io {
        path: dir.to_path_buf(),
        source,
    })?;

    let secret = SecretKey::random(&mut OsRng);
    let public_key = secret.public_key();
    let secret_pem = envelope::secret_key_to_pkcs8_pem(&secret)?;
    let public_pem = envelope::public_key_to_pem(&public_key)?;

    write_new(&secret_key_path, secret_pem.as_bytes(), 0o600)?;
    write_new(&public_key_path, public_pem.as_bytes(), 0o644)?;
    Ok(GeneratedCustodianKey {
        secret_key_path,
        public_key_path,
        fingerprint: fingerprint(&public_key)?,
        public_key,
    })
}

/// Create `path` (never overwriting, never following a symlink there) with `mode`, write
/// `contents`, and sync.
fn write_new(path: &Path, contents: &[u8], mode: u32) -> Result<(), CustodyError> {
    let io = |source| CustodyError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|source: std::io::Error| {
            if source.kind() == std::io::ErrorKind::AlreadyExists {
                CustodyError::AlreadyExists(path.to_path_buf())
            } else {
                io(source)
            }
        })?;
    file.write_all(contents).map_err(io)?;
    file.sync_all().map_err(io)
}

/// Read at most [`MAX_KEY_FILE_LEN`] bytes of a key file into a buffer wiped on drop.
fn read_key_file(path: &Path) -> Result<(fs::Metadata, Zeroizing<String>), CustodyError> {
    let io = |source| CustodyError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = fs::File::open(path).map_err(io)?;
    let metadata = file.metadata().map_err(io)?;
    if metadata.len() > MAX_KEY_FILE_LEN {
        return Err(CustodyError::KeyFileTooLarge(path.to_path_buf()));
    }
    let mut bytes = Zeroizing::new(Vec::with_capacity(MAX_KEY_FILE_LEN as usize + 1));
    file.take(MAX_KEY_FILE_LEN + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > MAX_KEY_FILE_LEN {
        return Err(CustodyError::KeyFileTooLarge(path.to_path_buf()));
    }
    match String::from_utf8(std::mem::take(&mut *bytes)) {
        Ok(text) => Ok((metadata, Zeroizing::new(text))),
        Err(error) => {
            error.into_bytes().zeroize();
            Err(CustodyError::Io {
                path: path.to_path_buf(),
                source: std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8 PEM text"),
            })
        }
    }
}

/// Load a custodian's secret key (PKCS #8 PEM). Like ssh, refuses a file that group or others
/// can read.
///
/// # Errors
///
/// [`CustodyError::Io`], [`CustodyError::KeyFileTooLarge`],
/// [`CustodyError::KeyFilePermissions`], [`CustodyError::KeyFormat`].
pub fn load_secret(path: &Path) -> Result<SecretKey, CustodyError> {
    let (metadata, pem) = read_key_file(path)?;
    let mode = metadata.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(CustodyError::KeyFilePermissions {
            path: path.to_path_buf(),
            mode,
        });
    }
    Ok(envelope::secret_key_from_pkcs8_pem(&pem)?)
}

/// Load a custodian's public key (SPKI PEM).
///
/// # Errors
///
/// [`CustodyError::Io`], [`CustodyError::KeyFileTooLarge`], [`CustodyError::KeyFormat`].
pub fn load_public(path: &Path) -> Result<PublicKey, CustodyError> {
    let (_, pem) = read_key_file(path)?;
    Ok(envelope::public_key_from_pem(&pem)?)
}

/// What `Initialize` was asked and answered, as both the enclave and the `ekms init` client
/// see it.
pub struct InitTranscript<'a> {
    /// Each custodian's public key (SubjectPublicKeyInfo DER), in share order.
    pub custodians: &'a [Vec<u8>],
    /// M.
    pub threshold: u8,
    /// The init client's ephemeral key (SubjectPublicKeyInfo DER).
    pub client_public_key: &'a [u8],
    /// The first admin principal's name.
    pub admin_name: &'a str,
    /// The new deployment.
    pub deployment_id: &'a str,
    /// The share files returned.
    pub shares: &'a [ShareFile],
    /// The sealed admin credentials returned.
    pub admin_credentials: &'a [u8],
}

impl InitTranscript<'_> {
    /// SHA-256 of the whole exchange, length-prefixed field by field. The enclave attests it
    /// (as `user_data`) in its answer, so a parent that altered the request (say, swapped a
    /// custodian key for its own) or the answer is caught by the init client.
    ///
    /// # Errors
    /// [`CustodyError::ShareFileJson`] if a share file cannot be encoded (not expected).
    pub fn digest(&self) -> Result<[u8; 32], CustodyError> {
        fn field(h: &mut Sha256, bytes: &[u8]) {
            h.update((bytes.len() as u64).to_be_bytes());
            h.update(bytes);
        }
        let mut h = Sha256::new();
        field(&mut h, b"ekms/v1/initialize-transcript");
        field(&mut h, &[self.threshold]);
        field(&mut h, &(self.custodians.len() as u64).to_be_bytes());
        for c in self.custodians {
            field(&mut h, c);
        }
        field(&mut h, self.client_public_key);
        field(&mut h, self.admin_name.as_bytes());
        field(&mut h, self.deployment_id.as_bytes());
        field(&mut h, &(self.shares.len() as u64).to_be_bytes());
        for s in self.shares {
            field(
                &mut h,
                &serde_json::to_vec(s).map_err(CustodyError::ShareFileJson)?,
            );
        }
        field(&mut h, self.admin_credentials);
        Ok(h.finalize().into())
    }
}

/// The bytes a custodian signs (ECDSA P-384, SHA-384) when it submits a share to an enclave:
/// bound to the enclave's attested boot key (SubjectPublicKeyInfo DER) and the exact envelope,
/// so the enclave counts only shares its own custodians submit to it.
pub fn unseal_signed_message(boot_spki: &[u8], envelope: &[u8]) -> Vec<u8> {
    [
        b"ekms/v1/unseal-submission".as_slice(),
        &(boot_spki.len() as u64).to_be_bytes(),
        boot_spki,
        envelope,
    ]
    .concat()
}

/// What each custodian signs to change the measurements allowed to join a deployment: the
/// deployment, the version the change applies to (so a signature counts for one change only),
/// the operation (`add` or `remove`) and the PCR set, as canonical JSON (`{"PCR0":"hex",...}`,
/// keys sorted).
#[must_use]
pub fn measurements_signed_message(
    deployment_id: &str,
    version: u64,
    operation: &str,
    pcrs_json: &str,
) -> Vec<u8> {
    [
        b"ekms/v1/measurements".as_slice(),
        &(deployment_id.len() as u64).to_be_bytes(),
        deployment_id.as_bytes(),
        &version.to_be_bytes(),
        &(operation.len() as u64).to_be_bytes(),
        operation.as_bytes(),
        pcrs_json.as_bytes(),
    ]
    .concat()
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOMAIN_KEY: [u8; 32] = [0x5A; 32];

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "ekms-custody-{name}-{}-{:x}",
            std::process::id(),
            u64::from_le_bytes(rand_bytes())
        ));
        dir
    }

    fn rand_bytes() -> [u8; 8] {
        use p384::elliptic_curve::rand_core::RngCore as _;
        let mut bytes = [0u8; 8];
        OsRng.fill_bytes(&mut bytes);
        bytes
    }

    fn plaintext(index: u8) -> SharePlaintext {
        let shares = shamir::split(&DOMAIN_KEY, 2, 3).expect("split");
        let share = &shares[usize::from(index) - 1];
        SharePlaintext::new("dep-1", share, 2, 3, commitment(&DOMAIN_KEY)).expect("plaintext")
    }

    #[test]
    fn commitment_matches_its_definition() {
        let mut hasher = Sha384::new();
        hasher.update(b"ekms/v1/domain-key-commitment");
        hasher.update([0x5A; 32]);
        let expected: [u8; 48] = hasher.finalize().into();
        assert_eq!(commitment(&DOMAIN_KEY), expected);
        assert!(verify_commitment(&DOMAIN_KEY, &expected).is_ok());
        assert!(matches!(
            verify_commitment(&[0u8; 32], &expected),
            Err(CustodyError::CommitmentMismatch)
        ));
    }

    #[test]
    fn plaintext_round_trip() {
        let original = plaintext(2);
        let bytes = original.to_bytes().expect("encode");
        let decoded = SharePlaintext::from_bytes(&bytes).expect("decode");
        assert_eq!(decoded.deployment_id(), "dep-1");
        assert_eq!(decoded.index(), 2);
        assert_eq!(decoded.threshold(), 2);
        assert_eq!(decoded.total(), 3);
        assert_eq!(decoded.commitment(), &commitment(&DOMAIN_KEY));
        assert_eq!(
            decoded.to_share().expose_value(),
            original.to_share().expose_value()
        );
        assert_eq!(format!("{decoded:?}"), "SharePlaintext");
    }

    #[test]
    fn plaintext_decoding_refuses_malformed_input() {
        let bytes = plaintext(1).to_bytes().expect("encode");
        // Every truncation fails without panicking.
        for len in 0..bytes.len() {
            assert!(
                SharePlaintext::from_bytes(&bytes[..len]).is_err(),
                "len {len}"
            );
        }
        // Trailing bytes.
        let mut extended = bytes.to_vec();
        extended.push(0);
        assert!(SharePlaintext::from_bytes(&extended).is_err());
        // Over the cap.
        assert!(matches!(
            SharePlaintext::from_bytes(&vec![0u8; MAX_SHARE_PLAINTEXT_LEN + 1]),
            Err(CustodyError::TooLong { .. })
        ));

        let encode =
            |v: u8, index: u8, threshold: u8, total: u8, share: &[u8], commitment: &[u8]| {
                serde_cbor::to_vec(&SharePlaintextWire {
                    v,
                    deployment_id: "dep-1",
                    index,
                    threshold,
                    total,
                    share: serde_bytes::Bytes::new(share),
                    commitment: serde_bytes::Bytes::new(commitment),
                })
                .expect("encode")
            };
        let c = [0u8; 48];
        assert!(SharePlaintext::from_bytes(&encode(1, 1, 2, 3, &[1; 32], &c)).is_ok());
        assert!(matches!(
            SharePlaintext::from_bytes(&encode(2, 1, 2, 3, &[1; 32], &c)),
            Err(CustodyError::Version(2))
        ));
        for (index, threshold, total) in [(0u8, 2u8, 3u8), (4, 2, 3), (1, 0, 3), (1, 4, 3)] {
            assert!(matches!(
                SharePlaintext::from_bytes(&encode(1, index, threshold, total, &[1; 32], &c)),
                Err(CustodyError::InvalidShare(_))
            ));
        }
        assert!(SharePlaintext::from_bytes(&encode(1, 1, 2, 3, &[1; 31], &c)).is_err());
        assert!(SharePlaintext::from_bytes(&encode(1, 1, 2, 3, &[1; 32], &c[..47])).is_err());
    }

    #[test]
    fn invalid_deployment_ids_are_refused() {
        let shares = shamir::split(&DOMAIN_KEY, 1, 1).expect("split");
        let c = commitment(&DOMAIN_KEY);
        for id in ["", "a\0b", &"x".repeat(129)] {
            assert!(SharePlaintext::new(id, &shares[0], 1, 1, c).is_err());
        }
        assert!(SharePlaintext::new(&"x".repeat(128), &shares[0], 1, 1, c).is_ok());
    }

    #[test]
    fn share_file_round_trip_and_tamper() {
        let custodian = SecretKey::random(&mut OsRng);
        let file = seal_share_file(&plaintext(3), &custodian.public_key()).expect("seal");
        assert_eq!(file.file_name(), "share-3.json");
        assert_eq!(
            file.custodian,
            fingerprint(&custodian.public_key()).expect("fp")
        );
        let json = file.to_json().expect("json");
        let parsed = ShareFile::from_json(json.as_bytes()).expect("parse");
        assert_eq!(parsed, file);
        let opened = open_share_file(&parsed, &custodian).expect("open");
        assert_eq!(opened.index(), 3);
        assert_eq!(opened.deployment_id(), "dep-1");

        // Another custodian's key: refused by fingerprint before decrypting.
        let other = SecretKey::random(&mut OsRng);
        assert!(matches!(
            open_share_file(&file, &other),
            Err(CustodyError::WrongCustodian { .. })
        ));

        // Header fields changed: the envelope's AAD or the sealed copy catches each.
        let mut moved = file.clone();
        moved.index = 2;
        assert!(matches!(
            open_share_file(&moved, &custodian),
            Err(CustodyError::Envelope(EnvelopeError::Open))
        ));
        let mut foreign = file.clone();
        foreign.deployment_id = "dep-2".to_owned();
        assert!(matches!(
            open_share_file(&foreign, &custodian),
            Err(CustodyError::Envelope(EnvelopeError::Open))
        ));
        let mut relabelled = file.clone();
        relabelled.threshold = 1;
        assert!(matches!(
            open_share_file(&relabelled, &custodian),
            Err(CustodyError::HeaderMismatch)
        ));

        // Bad base64, unknown fields, oversized files.
        let mut garbled = file.clone();
        garbled.envelope.insert(0, '!');
        assert!(matches!(
            open_share_file(&garbled, &custodian),
            Err(CustodyError::ShareFileBase64(_))
        ));
        let extra = json.replacen('{', "{\"extra\": 1,", 1);
        assert!(ShareFile::from_json(extra.as_bytes()).is_err());
        assert!(matches!(
            ShareFile::from_json(&vec![b' '; MAX_SHARE_FILE_LEN + 1]),
            Err(CustodyError::TooLong { .. })
        ));
    }

    #[test]
    fn shares_from_files_rebuild_the_domain_key() {
        let custodians: Vec<SecretKey> = (0..3).map(|_| SecretKey::random(&mut OsRng)).collect();
        let shares = shamir::split(&DOMAIN_KEY, 2, 3).expect("split");
        let files: Vec<ShareFile> = shares
            .iter()
            .zip(&custodians)
            .map(|(share, custodian)| {
                let plaintext =
                    SharePlaintext::new("dep-1", share, 2, 3, commitment(&DOMAIN_KEY)).expect("pt");
                seal_share_file(&plaintext, &custodian.public_key()).expect("seal")
            })
            .collect();
        let opened: Vec<SharePlaintext> = [0usize, 2]
            .iter()
            .map(|&i| open_share_file(&files[i], &custodians[i]).expect("open"))
            .collect();
        let rebuilt = shamir::combine(
            &opened
                .iter()
                .map(SharePlaintext::to_share)
                .collect::<Vec<_>>(),
        )
        .expect("combine");
        assert!(verify_commitment(&rebuilt, opened[0].commitment()).is_ok());

        // One share is not enough: the commitment says so.
        let alone = shamir::combine(&[opened[0].to_share()]).expect("combine");
        assert!(verify_commitment(&alone, opened[0].commitment()).is_err());
    }

    #[test]
    fn keygen_writes_a_matching_pair_and_refuses_to_overwrite() {
        let dir = temp_dir("keygen");
        let generated = keygen(&dir).expect("keygen");
        let key_mode = fs::metadata(&generated.secret_key_path)
            .expect("key")
            .permissions()
            .mode();
        assert_eq!(key_mode & 0o777, 0o600);
        let secret = load_secret(&generated.secret_key_path).expect("load secret");
        let public = load_public(&generated.public_key_path).expect("load public");
        assert_eq!(secret.public_key(), public);
        assert_eq!(public, generated.public_key);
        assert_eq!(generated.fingerprint, fingerprint(&public).expect("fp"));
        assert_eq!(generated.fingerprint.len(), 64);

        assert!(matches!(keygen(&dir), Err(CustodyError::AlreadyExists(_))));
        // The original key is untouched.
        assert_eq!(
            load_secret(&generated.secret_key_path)
                .expect("load")
                .public_key(),
            public
        );

        // A readable secret key is refused.
        fs::set_permissions(
            &generated.secret_key_path,
            fs::Permissions::from_mode(0o644),
        )
        .expect("chmod");
        assert!(matches!(
            load_secret(&generated.secret_key_path),
            Err(CustodyError::KeyFilePermissions { mode: 0o644, .. })
        ));
        // A public key is not a secret key and vice versa.
        assert!(load_public(&generated.secret_key_path).is_err());
        fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn keygen_refuses_when_only_the_public_file_exists() {
        let dir = temp_dir("keygen-pub");
        fs::create_dir_all(&dir).expect("mkdir");
        fs::write(dir.join(PUBLIC_KEY_FILE), "x").expect("write");
        assert!(matches!(keygen(&dir), Err(CustodyError::AlreadyExists(_))));
        assert!(!dir.join(SECRET_KEY_FILE).exists());
        fs::remove_dir_all(&dir).expect("cleanup");
    }
}
