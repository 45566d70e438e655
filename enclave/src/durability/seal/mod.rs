//! Sealing: everything the enclave keeps leaves it only encrypted under the domain key.
//!
//! - [`record`]: the sealed-record envelope (AES-256-GCM, AAD binding kind, id, generation).
//! - [`manifest`]: which records exist at which generation, so a parent that drops, mixes,
//!   swaps or replays records is caught record by record.
//! - [`codec`]: the plaintext forms of keys, aliases and principals.

pub mod codec;
pub mod manifest;
pub mod record;

use zeroize::Zeroizing;

/// The domain key: the root of everything sealed. It exists only inside the enclave; outside
/// it exists only as M-of-N shares, each encrypted to one custodian.
pub struct DomainKey(Zeroizing<[u8; 32]>);

impl DomainKey {
    /// Wraps key bytes (freshly generated, or rebuilt from shares).
    pub fn new(bytes: Zeroizing<[u8; 32]>) -> Self {
        DomainKey(bytes)
    }
    /// The raw bytes. Grep for `expose_secret` to find every use.
    pub fn expose_secret(&self) -> &[u8; 32] {
        &self.0
    }
}

/// Turns the names of aliases and principals into record ids, so that the parent's store never
/// holds a name in clear: HMAC-SHA256 (RFC 2104), over the record kind's byte and the name,
/// under a key derived from the domain key by HKDF-Expand-SHA256 (RFC 5869 §2.3) with info
/// "ekms/v1/record-names" and one block of output. The domain key is uniformly random, so it
/// serves as the PRK without an Extract step (RFC 5869 §3.3).
pub struct NameKey(ring::hmac::Key);

impl NameKey {
    /// The name key of `domain`.
    pub fn of(domain: &DomainKey) -> Self {
        let prk = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, domain.expose_secret());
        // T(1) = HMAC(PRK, info || 0x01): the first (and only) block of HKDF-Expand.
        let mut ctx = ring::hmac::Context::with_key(&prk);
        ctx.update(b"ekms/v1/record-names");
        ctx.update(&[1]);
        let okm = zeroize::Zeroizing::new(ctx.sign().as_ref().to_vec());
        NameKey(ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &okm))
    }

    /// The record id of the alias or principal `name`.
    pub fn record_id(&self, kind: RecordKind, name: &str) -> Vec<u8> {
        let mut ctx = ring::hmac::Context::with_key(&self.0);
        ctx.update(&[kind as u8]);
        ctx.update(name.as_bytes());
        ctx.sign().as_ref().to_vec()
    }
}

impl std::fmt::Debug for NameKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NameKey(..)")
    }
}

impl std::fmt::Debug for DomainKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DomainKey(..)")
    }
}

/// What a sealed record holds. The numbers are part of the sealed format and of the store's
/// key order: manifests sort first so that a load streams them before the records they vouch
/// for. Kind 0 is the deployment record, which is not sealed (see `persist::DEPLOYMENT_KIND`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum RecordKind {
    /// The root manifest (one record, id `root`).
    Root = 1,
    /// One bucket of the manifest (id = bucket number, big-endian u16).
    Bucket = 2,
    /// A KMS key (id = the key's 16 UUID bytes).
    Key = 3,
    /// An alias (id = the keyed digest of its name, [`NameKey`]; the name in older stores).
    Alias = 4,
    /// A principal (id = the keyed digest of its name; the name in older stores).
    Principal = 5,
    /// A setting (id = its name), e.g. the audit chain head.
    Setting = 6,
    /// A grant (id = its key's 16 UUID bytes, then the grant id).
    Grant = 7,
}

impl RecordKind {
    /// Parses the stored kind byte.
    pub fn from_u8(byte: u8) -> Option<Self> {
        match byte {
            1 => Some(RecordKind::Root),
            2 => Some(RecordKind::Bucket),
            3 => Some(RecordKind::Key),
            4 => Some(RecordKind::Alias),
            5 => Some(RecordKind::Principal),
            6 => Some(RecordKind::Setting),
            7 => Some(RecordKind::Grant),
            _ => None,
        }
    }
}
