//! Custody: the enclave's side of `ekms init` and `ekms unseal`, and its status.
//!
//! These four operations (`X-Amz-Target: Ekms.GetAttestation | Initialize | Unseal | Status`)
//! are the only ones answered without SigV4: before init there are no principals, and while
//! sealed there is no domain key to open them. They are authenticated by cryptography instead:
//! shares arrive encrypted to the enclave's boot key, which the caller first checked in an
//! attestation document with pinned PCRs; the first admin's secret leaves encrypted to the
//! init client's key.
//!
//! Lifecycle: `Uninitialized` (empty store) → `Initialize` → `Unsealed`; after a restart,
//! `Sealed` → `Unseal` × M → rebuild the domain key, load every sealed record → `Unsealed`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use ekms_shared::custody::{self, ShareFile, SharePlaintext};
use ekms_shared::envelope::{self, Purpose};
use ekms_shared::shamir;

use crate::error::{KmsError, KmsResult};
use crate::json::Blob;
use crate::durability::persist::Deployment;
use crate::durability::seal::DomainKey;
use crate::kms::validate;

/// Where the enclave is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// No durable store: keys live in memory only (development).
    MemoryOnly,
    /// The store is empty: waiting for `ekms init`.
    Uninitialized,
    /// The store holds sealed records: waiting for M custodian shares.
    Sealed,
    /// Serving.
    Unsealed,
}

impl Phase {
    /// As shown by Status.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::MemoryOnly => "MemoryOnly",
            Phase::Uninitialized => "Uninitialized",
            Phase::Sealed => "Sealed",
            Phase::Unsealed => "Unsealed",
        }
    }
}

/// The custody state machine. No I/O: the server loads the store once it yields a domain key.
pub struct Custody {
    phase: Phase,
    deployment: Option<Deployment>,
    boot_key: p384::SecretKey,
    boot_spki: Vec<u8>,
    shares: BTreeMap<u8, SharePlaintext>,
    refused_records: Vec<String>,
}

impl std::fmt::Debug for Custody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Custody")
            .field("phase", &self.phase)
            .finish_non_exhaustive()
    }
}

/// The first admin principal, made at init.
pub struct NewAdmin {
    /// User name.
    pub name: String,
    /// Access key id.
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: Zeroizing<String>,
}

/// What `Initialize` produced: the domain key stays, the rest goes out.
pub struct Initialized {
    /// The public deployment record, stored before anything is sealed.
    pub deployment: Deployment,
    /// The new domain key.
    pub domain_key: DomainKey,
    /// The first admin principal (to be sealed and stored before answering).
    pub admin: NewAdmin,
    /// The JSON response body.
    pub response: Vec<u8>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct AttestationRequest {
    nonce: Option<Blob>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct AttestationResponse {
    attestation_document: Blob,
    public_key: Blob,
    state: &'static str,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct InitializeRequest {
    nonce: Option<Blob>,
    custodians: Option<Vec<Blob>>,
    threshold: Option<i64>,
    client_public_key: Option<Blob>,
    admin_name: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct InitializeResponse {
    deployment_id: String,
    shares: Vec<ShareFile>,
    admin_credentials: Blob,
    /// Attests the whole exchange (`user_data` = the transcript digest, `nonce` = the
    /// client's), so the client can tell that nobody altered it in transit.
    attestation_document: Blob,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AdminCredentials<'a> {
    user_name: &'a str,
    access_key_id: &'a str,
    secret_access_key: &'a str,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct UnsealRequest {
    envelope: Option<Blob>,
    signature: Option<Blob>,
}

/// A member's answer to `Ekms.Join`, as `Ekms.CompleteJoin` takes it.
#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct JoinAnswer {
    envelope: Option<Blob>,
    attestation_document: Option<Blob>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct StatusResponse<'a> {
    state: &'static str,
    shares_held: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    threshold: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    deployment_id: Option<&'a str>,
    /// How many sealed records the last unseal refused (their ids and reasons go only to an
    /// authorized operator: `Ekms.ListRefusedRecords`).
    refused_record_count: usize,
}

/// Most custodians a deployment may have.
pub const MAX_CUSTODIANS: usize = 32;

fn parse<'a, T: Deserialize<'a> + Default>(body: &'a [u8]) -> KmsResult<T> {
    if body.is_empty() {
        return Ok(T::default());
    }
    serde_json::from_slice(body)
        .map_err(|e| KmsError::Serialization(format!("Could not parse the request: {e}")))
}

fn to_json<T: Serialize>(value: &T) -> KmsResult<Vec<u8>> {
    serde_json::to_vec(value).map_err(|_| KmsError::Internal("response encoding"))
}

fn random_chars(alphabet: &[u8], n: usize, entropy: &dyn crate::env::Entropy) -> KmsResult<String> {
    let mut bytes = Zeroizing::new(vec![0u8; n]);
    entropy.fill(&mut bytes)?;
    Ok(bytes
        .iter()
        .map(|b| char::from(alphabet[usize::from(*b) % alphabet.len()]))
        .collect())
}

/// A P-384 secret key from the environment's random source: 48 random bytes, taken as the
/// scalar when it is in range (not zero, below the group order), else drawn again (FIPS 186-5
/// A.4.2, rejection sampling; a draw is out of range with probability about 2^-190).
fn random_secret_key(entropy: &dyn crate::env::Entropy) -> KmsResult<p384::SecretKey> {
    for _ in 0..8 {
        let mut bytes = Zeroizing::new([0u8; 48]);
        entropy.fill(&mut bytes[..])?;
        if let Ok(key) = p384::SecretKey::from_slice(&bytes[..]) {
            return Ok(key);
        }
    }
    Err(KmsError::Internal("boot key generation"))
}

impl Custody {
    /// A custody machine in `phase`, with a fresh boot key from `entropy`.
    ///
    /// # Errors
    /// `KMSInternalException` if the random source fails.
    pub fn new(
        phase: Phase,
        deployment: Option<Deployment>,
        entropy: &dyn crate::env::Entropy,
    ) -> KmsResult<Self> {
        let boot_key = random_secret_key(entropy)?;
        let boot_spki =
            envelope::public_key_to_spki_der(&boot_key.public_key()).unwrap_or_default();
        Ok(Custody {
            phase,
            deployment,
            boot_key,
            boot_spki,
            shares: BTreeMap::new(),
            refused_records: Vec::new(),
        })
    }

    /// Marks the enclave unsealed, with what the load refused.
    pub fn unsealed(&mut self, refused_records: Vec<String>) {
        self.phase = Phase::Unsealed;
        self.shares.clear();
        self.refused_records = refused_records;
    }

    /// `Ekms.GetAttestation`: a document binding the boot key and the caller's nonce.
    ///
    /// # Errors
    /// `ValidationException` for a nonce over 1024 bytes; `KMSInternalException` if the
    /// attester fails.
    pub fn attestation(
        &self,
        body: &[u8],
        attester: &dyn crate::env::Attester,
    ) -> KmsResult<Vec<u8>> {
        let req: AttestationRequest = parse(body)?;
        let nonce = req.nonce.map(|b| b.0);
        if let Some(n) = &nonce {
            validate::blob_len("nonce", n, 1, 1024)?;
        }
        let doc = attester
            .attest(
                Some(b"ekms/v1/boot-key"),
                nonce.as_deref(),
                Some(&self.boot_spki),
            )
            .map_err(|e| {
                tracing::warn!(error = %e, "attestation failed");
                KmsError::Internal("attestation failed")
            })?;
        to_json(&AttestationResponse {
            attestation_document: Blob(doc),
            public_key: Blob(self.boot_spki.clone()),
            state: self.phase.as_str(),
        })
    }

    /// `Ekms.Initialize`: makes the domain key, splits it among the custodians, and makes the
    /// first admin principal.
    ///
    /// # Errors
    /// `KMSInvalidStateException` unless uninitialized; `ValidationException` for bad
    /// custodian keys or threshold.
    pub fn initialize(
        &mut self,
        body: &[u8],
        entropy: &dyn crate::env::Entropy,
        attester: &dyn crate::env::Attester,
    ) -> KmsResult<Initialized> {
        if self.phase != Phase::Uninitialized {
            return Err(KmsError::InvalidState(format!(
                "ekms is {}: Initialize runs once, on an empty store.",
                self.phase.as_str()
            )));
        }
        let req: InitializeRequest = parse(body)?;
        let custodians = validate::required("custodians", req.custodians)?;
        if custodians.is_empty() || custodians.len() > MAX_CUSTODIANS {
            return Err(KmsError::invalid_field("custodians", format_args!("between 1 and {MAX_CUSTODIANS} custodians")));
        }
        let total = u8::try_from(custodians.len()).map_err(|_| KmsError::Internal("count"))?;
        let threshold = validate::required("threshold", req.threshold)?;
        validate::range("threshold", threshold, 1, i64::from(total))?;
        let threshold = u8::try_from(threshold).map_err(|_| KmsError::Internal("range"))?;
        let custodian_keys = custodians
            .iter()
            .map(|c| envelope::public_key_from_spki_der(&c.0))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| {
                KmsError::Validation(
                    "custodians: each must be a P-384 SubjectPublicKeyInfo (DER)".to_owned(),
                )
            })?;
        let client = validate::required("clientPublicKey", req.client_public_key)?;
        let client_der = client.0.clone();
        let client = envelope::public_key_from_spki_der(&client.0).map_err(|_| {
            KmsError::Validation(
                "clientPublicKey must be a P-384 SubjectPublicKeyInfo (DER)".to_owned(),
            )
        })?;
        let admin_name = req.admin_name.unwrap_or_else(|| "admin".to_owned());
        validate::str_len("adminName", &admin_name, 1, 64)?;

        let mut id = [0u8; 16];
        entropy.fill(&mut id)?;
        let deployment_id = uuid::Builder::from_random_bytes(id).into_uuid().to_string();
        let mut key = Zeroizing::new([0u8; 32]);
        entropy.fill(&mut key[..])?;
        let commitment = custody::commitment(&key);
        let parts = shamir::split(&key, threshold, total)
            .map_err(|_| KmsError::Internal("shamir split"))?;
        let mut shares = Vec::with_capacity(parts.len());
        for (part, custodian) in parts.iter().zip(&custodian_keys) {
            let plaintext = SharePlaintext::new(&deployment_id, part, threshold, total, commitment)
                .map_err(|_| KmsError::Internal("share"))?;
            shares.push(
                custody::seal_share_file(&plaintext, custodian)
                    .map_err(|_| KmsError::Internal("share sealing"))?,
            );
        }
        const UPPER: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
        const SECRET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let admin = NewAdmin {
            name: admin_name,
            access_key_id: format!("AKIA{}", random_chars(UPPER, 16, entropy)?),
            secret_access_key: Zeroizing::new(random_chars(SECRET, 40, entropy)?),
        };
        let credentials = Zeroizing::new(
            serde_json::to_vec(&AdminCredentials {
                user_name: &admin.name,
                access_key_id: &admin.access_key_id,
                secret_access_key: &admin.secret_access_key,
            })
            .map_err(|_| KmsError::Internal("credentials encoding"))?,
        );
        let sealed_credentials = envelope::seal_to(
            &client,
            &Purpose::AdminCredentials,
            deployment_id.as_bytes(),
            &credentials,
        )
        .map_err(|_| KmsError::Internal("credentials sealing"))?;
        let nonce = validate::required("nonce", req.nonce)?;
        validate::blob_len("nonce", &nonce.0, 16, 1024)?;
        let custodian_der: Vec<Vec<u8>> = custodians.iter().map(|c| c.0.clone()).collect();
        let admin_credentials = sealed_credentials.into_bytes();
        let transcript = custody::InitTranscript {
            custodians: &custodian_der,
            threshold,
            client_public_key: &client_der,
            admin_name: &admin.name,
            deployment_id: &deployment_id,
            shares: &shares,
            admin_credentials: &admin_credentials,
        }
        .digest()
        .map_err(|_| KmsError::Internal("transcript"))?;
        let document = attester
            .attest(Some(&transcript), Some(&nonce.0), Some(&self.boot_spki))
            .map_err(|_| KmsError::Internal("attestation failed"))?;
        let deployment_id_for_record = deployment_id.clone();
        let response = to_json(&InitializeResponse {
            deployment_id,
            shares,
            admin_credentials: Blob(admin_credentials),
            attestation_document: Blob(document),
        })?;
        let deployment = Deployment {
            v: 1,
            deployment_id: deployment_id_for_record,
            threshold,
            total,
            commitment: commitment.to_vec(),
            custodians: custodian_der
                .iter()
                .map(|d| serde_bytes::ByteBuf::from(d.clone()))
                .collect(),
        };
        self.deployment = Some(deployment.clone());
        Ok(Initialized {
            deployment,
            domain_key: DomainKey::new(key),
            admin,
            response,
        })
    }

    /// `Ekms.Unseal`: takes one share; at the threshold, yields the domain key.
    ///
    /// # Errors
    /// `KMSInvalidStateException` unless sealed; `ValidationException` for a share that does
    /// not open, is repeated, or belongs to another deployment (it does not count).
    pub fn unseal(&mut self, body: &[u8]) -> KmsResult<(Option<DomainKey>, Vec<u8>)> {
        if self.phase != Phase::Sealed {
            return Err(KmsError::InvalidState(format!(
                "ekms is {}: Unseal applies only while sealed.",
                self.phase.as_str()
            )));
        }
        let Some(deployment) = self.deployment.clone() else {
            return Err(KmsError::InvalidState(
                "The store holds no deployment record: this enclave cannot tell its custodians' shares from others' (the parent dropped or damaged it).".to_owned(),
            ));
        };
        let req: UnsealRequest = parse(body)?;
        let sealed = validate::required("envelope", req.envelope)?;
        let signature = validate::required("signature", req.signature)?;
        let plain = envelope::open(&self.boot_key, &Purpose::Unseal, &self.boot_spki, &sealed.0)
            .map_err(|_| {
                KmsError::Validation(
                    "The share does not open with this enclave's boot key (encrypt it to the key in a fresh attestation document).".to_owned(),
                )
            })?;
        let share = SharePlaintext::from_bytes(&plain)
            .map_err(|_| KmsError::Validation("The share is malformed.".to_owned()))?;
        // Public values: the share must be one of this deployment's, from its custodian.
        if share.deployment_id() != deployment.deployment_id
            || share.threshold() != deployment.threshold
            || share.total() != deployment.total
            || share.commitment()[..] != deployment.commitment[..]
        {
            return Err(KmsError::Validation(format!(
                "The share belongs to another deployment ({}); this enclave serves {}. It does not count.",
                share.deployment_id(),
                deployment.deployment_id
            )));
        }
        let custodian = deployment
            .custodians
            .get(usize::from(share.index()).wrapping_sub(1))
            .and_then(|der| envelope::public_key_from_spki_der(der).ok())
            .ok_or_else(|| {
                KmsError::Validation("The share's index names no custodian.".to_owned())
            })?;
        let verifying = p384::ecdsa::VerifyingKey::from(&custodian);
        let sig = p384::ecdsa::Signature::from_der(&signature.0).map_err(|_| {
            KmsError::Validation("The submission signature is malformed.".to_owned())
        })?;
        use p384::ecdsa::signature::Verifier as _;
        verifying
            .verify(&custody::unseal_signed_message(&self.boot_spki, &sealed.0), &sig)
            .map_err(|_| {
                KmsError::Validation(format!(
                    "The submission is not signed by custodian {} of this deployment. It does not count.",
                    share.index()
                ))
            })?;
        if self.shares.contains_key(&share.index()) {
            return Err(KmsError::Validation(format!(
                "Share {} was already submitted; it counts once.",
                share.index()
            )));
        }
        let threshold = share.threshold();
        self.shares.insert(share.index(), share);
        if self.shares.len() < usize::from(threshold) {
            return Ok((None, self.status_json()?));
        }
        let parts: Vec<shamir::Share> =
            self.shares.values().map(SharePlaintext::to_share).collect();
        let key = shamir::combine(&parts).map_err(|_| KmsError::Internal("shamir combine"))?;
        let expected = self
            .shares
            .values()
            .next()
            .map(|s| *s.commitment())
            .unwrap_or([0; 48]);
        if custody::verify_commitment(&key, &expected).is_err() {
            self.shares.clear();
            return Err(KmsError::Validation(
                "The shares do not rebuild this deployment's domain key; all shares were discarded, submit them again.".to_owned(),
            ));
        }
        Ok((Some(DomainKey::new(key)), self.status_json()?))
    }

    /// `Ekms.CompleteJoin`: opens the domain key a running member released to this enclave's
    /// boot key ([`super::join::accept`]); with the member's last commit, which the store must
    /// then be at.
    ///
    /// # Errors
    /// `KMSInvalidStateException` unless sealed with a deployment record; `ValidationException`
    /// when the answer does not verify or open.
    pub fn complete_join(
        &self,
        body: &[u8],
        anchors: &[ekms_shared::attestation::TrustAnchor],
        now: std::time::SystemTime,
    ) -> KmsResult<(DomainKey, u64, ekms_shared::attestation::PcrSet)> {
        if self.phase != Phase::Sealed {
            return Err(KmsError::InvalidState(format!(
                "ekms is {}: CompleteJoin applies only while sealed.",
                self.phase.as_str()
            )));
        }
        let Some(deployment) = &self.deployment else {
            return Err(KmsError::InvalidState(
                "The store holds no deployment record: nothing to join.".to_owned(),
            ));
        };
        let req: JoinAnswer = parse(body)?;
        let sealed = validate::required("envelope", req.envelope)?;
        let document = validate::required("attestationDocument", req.attestation_document)?;
        validate::blob_len("envelope", &sealed.0, 1, 4096)?;
        validate::blob_len("attestationDocument", &document.0, 1, 64 * 1024)?;
        super::join::accept(
            &self.boot_key,
            &self.boot_spki,
            &sealed.0,
            &document.0,
            &deployment.commitment,
            anchors,
            now,
        )
    }

    /// The deployment record (public facts: custodians' keys, M of N), once there is one.
    pub fn deployment(&self) -> Option<&Deployment> {
        self.deployment.as_ref()
    }

    /// `Ekms.Status`.
    ///
    /// # Errors
    /// `KMSInternalException` if encoding fails.
    pub fn status_json(&self) -> KmsResult<Vec<u8>> {
        to_json(&StatusResponse {
            state: self.phase.as_str(),
            shares_held: self.shares.len(),
            threshold: self.deployment.as_ref().map(|d| d.threshold),
            deployment_id: self.deployment.as_ref().map(|d| d.deployment_id.as_str()),
            refused_record_count: self.refused_records.len(),
        })
    }

    /// The boot public key (SubjectPublicKeyInfo DER).
    #[cfg(fuzzing)]
    pub fn boot_public_key(&self) -> &[u8] {
        &self.boot_spki
    }
}

