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
    /// An alias (id = the alias name).
    Alias = 4,
    /// A principal (id = the principal's name).
    Principal = 5,
    /// A setting (id = its name), e.g. the audit chain head.
    Setting = 6,
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
            _ => None,
        }
    }
}
