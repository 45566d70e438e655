//! The result of a successful verification.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::document::NitroDocument;

/// A document whose signature, chain and policy all verified. Only [`super::verify`] makes
/// one, so holding a `VerifiedAttestation` is proof that the checks ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedAttestation {
    module_id: String,
    digest: String,
    timestamp_ms: u64,
    pcrs: BTreeMap<u8, Vec<u8>>,
    public_key: Option<Vec<u8>>,
    user_data: Option<Vec<u8>>,
    nonce: Option<Vec<u8>>,
}

impl VerifiedAttestation {
    pub(crate) fn from_verified(doc: NitroDocument) -> Self {
        Self {
            module_id: doc.module_id,
            digest: doc.digest,
            timestamp_ms: doc.timestamp_ms,
            pcrs: doc.pcrs,
            public_key: doc.public_key,
            user_data: doc.user_data,
            nonce: doc.nonce,
        }
    }

    /// The enclave's module id, `i-<instance>-enc<enclave>`.
    #[must_use]
    pub fn module_id(&self) -> &str {
        &self.module_id
    }

    /// The PCR digest algorithm, always `"SHA384"`.
    #[must_use]
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// When the NSM made the document, milliseconds since the Unix epoch (UTC).
    #[must_use]
    pub fn timestamp_ms(&self) -> u64 {
        self.timestamp_ms
    }

    /// When the NSM made the document.
    #[must_use]
    pub fn timestamp(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.timestamp_ms)
    }

    /// Every PCR of the document, index → value.
    #[must_use]
    pub fn pcrs(&self) -> &BTreeMap<u8, Vec<u8>> {
        &self.pcrs
    }

    /// Whether the enclave runs in debug mode (PCR0 all zero); only possible when the
    /// policy allowed it.
    #[must_use]
    pub fn is_debug(&self) -> bool {
        // public value
        self.pcrs
            .get(&0)
            .is_none_or(|pcr0| pcr0.iter().all(|b| *b == 0))
    }

    /// The public key the enclave bound into the document (opaque bytes, often DER SPKI).
    #[must_use]
    pub fn public_key(&self) -> Option<&[u8]> {
        self.public_key.as_deref()
    }

    /// The user data the enclave bound into the document.
    #[must_use]
    pub fn user_data(&self) -> Option<&[u8]> {
        self.user_data.as_deref()
    }

    /// The nonce the document carries (already compared when the policy expected one).
    #[must_use]
    pub fn nonce(&self) -> Option<&[u8]> {
        self.nonce.as_deref()
    }
}
