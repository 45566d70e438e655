//! Offline sealing of a whole store, for `ekms bench --op unseal`.
//!
//! Makes, without a running enclave, exactly the records that `Ekms.Initialize` and the
//! persister would have written for a deployment whose first commit holds its admin principal
//! and N keys: each record sealed with [`record::seal`] at the one commit's sequence number
//! (generation 1), listed in the [`Manifest`], whose changed buckets and root are sealed once at
//! the end. The deployment record (kind [`DEPLOYMENT_KIND`]) is encoded as
//! [`crate::durability::persist::write_deployment`] encodes it. No audit-head setting is written: a commit
//! without audit lines (such as Initialize's) writes none either.
//!
//! This exists to build large stores quickly; it is not on any request path.

use uuid::Uuid;
use zeroize::Zeroizing;

use crate::config::Config;
use crate::env::{Entropy as _, Millis, OsEntropy};
use crate::error::KmsError;
use crate::keys::{Key, KeyMaterial, KeySpec, KeyUsage, Origin};
use crate::durability::persist::Deployment;
use crate::access::principals::Principals;
use crate::durability::seal::manifest::{Manifest, SealedRecord};
use crate::durability::seal::{codec, record, DomainKey, RecordKind};

/// The store kind of the deployment record (unsealed), as `persist` stores it.
pub use crate::durability::persist::DEPLOYMENT_KIND;

/// The deployment record's store id.
pub const DEPLOYMENT_ID: &[u8] = b"deployment";

/// The deployment record's bytes, as [`crate::durability::persist::write_deployment`] stores them.
///
/// # Errors
/// [`KmsError::Internal`] if encoding fails.
pub fn deployment_record(deployment: &Deployment) -> Result<Vec<u8>, KmsError> {
    serde_cbor::to_vec(deployment).map_err(|_| KmsError::Internal("deployment encoding"))
}

/// Seals records of one commit under a domain key and keeps the manifest that lists them.
pub struct OfflineSealer {
    domain: DomainKey,
    manifest: Manifest,
    seq: u64,
    entropy: OsEntropy,
    config: Config,
}

impl std::fmt::Debug for OfflineSealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OfflineSealer")
            .field("seq", &self.seq)
            .finish_non_exhaustive()
    }
}

impl OfflineSealer {
    /// A sealer for a new, empty store under `domain_key`: the records it seals make up the
    /// store's first commit (sequence number 1, as after Initialize).
    pub fn new(domain_key: Zeroizing<[u8; 32]>) -> Self {
        let mut manifest = Manifest::empty();
        let seq = manifest.next_seq();
        OfflineSealer {
            domain: DomainKey::new(domain_key),
            manifest,
            seq,
            entropy: OsEntropy::default(),
            config: Config::default(),
        }
    }

    /// The commit sequence number, which is every record's generation.
    pub fn generation(&self) -> u64 {
        self.seq
    }

    /// The first admin principal as Initialize makes and seals it: one access key and the
    /// allow-all identity policy.
    ///
    /// # Errors
    /// [`KmsError::Validation`] for a bad name, access key id (16–128 alphanumerics) or secret
    /// (at least 16 characters); [`KmsError::Internal`] if sealing fails.
    pub fn seal_admin(
        &mut self,
        name: &str,
        access_key_id: &str,
        secret_access_key: &str,
    ) -> Result<SealedRecord, KmsError> {
        let mut principals = Principals::default();
        principals
            .insert(
                name.to_owned(),
                access_key_id.to_owned(),
                secret_access_key.to_owned(),
                true,
                Some(crate::access::policy::ALLOW_ALL_IDENTITY_POLICY.to_owned()),
                &self.config,
            )
            .map_err(|why| KmsError::Validation(format!("admin principal: {why}")))?;
        let plain = principals
            .sealed_record(name)
            .ok_or(KmsError::Internal("admin principal"))
            .and_then(|p| {
                codec::encode_principal(&p).map_err(|_| KmsError::Internal("principal encoding"))
            })?;
        let id = crate::durability::seal::NameKey::of(&self.domain).record_id(RecordKind::Principal, name);
        let sealed = record::seal(
            &self.domain,
            RecordKind::Principal,
            &id,
            self.seq,
            &plain,
            &self.entropy,
        )?;
        self.manifest
            .set(RecordKind::Principal, &id, Some(self.seq));
        Ok((RecordKind::Principal, id, sealed))
    }

    /// `count` new SYMMETRIC_DEFAULT keys, as CreateKey without arguments makes them (random
    /// id and 256-bit material, enabled, default key policy), each sealed as a key record and
    /// listed in the manifest. Sealing runs on every available core.
    ///
    /// # Errors
    /// [`KmsError::Internal`] if the random source, encoding or sealing fails.
    pub fn seal_symmetric_keys(
        &mut self,
        count: usize,
        created: Millis,
    ) -> Result<Vec<(Uuid, SealedRecord)>, KmsError> {
        let threads = std::thread::available_parallelism()
            .map_or(1, std::num::NonZeroUsize::get)
            .clamp(1, 16);
        let per_thread = count.div_ceil(threads).max(1);
        let (domain, seq) = (&self.domain, self.seq);
        let parts: Vec<Result<Vec<(Uuid, SealedRecord)>, KmsError>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let n = per_thread.min(count.saturating_sub(t * per_thread));
                    s.spawn(move || seal_keys(domain, seq, n, created))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or(Err(KmsError::Internal("sealing thread panicked")))
                })
                .collect()
        });
        let mut out = Vec::with_capacity(count);
        for part in parts {
            out.extend(part?);
        }
        for (_, (kind, id, _)) in &out {
            self.manifest.set(*kind, id, Some(seq));
        }
        Ok(out)
    }

    /// Seals the manifest (every bucket listed so far, and the root): the commit's last records.
    ///
    /// # Errors
    /// [`KmsError::Internal`] if encoding or sealing fails.
    pub fn finish(mut self) -> Result<Vec<SealedRecord>, KmsError> {
        self.manifest.seal_changes(&self.domain, &self.entropy)
    }
}

fn seal_keys(
    domain: &DomainKey,
    seq: u64,
    count: usize,
    created: Millis,
) -> Result<Vec<(Uuid, SealedRecord)>, KmsError> {
    let entropy = OsEntropy::default();
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let mut material = Zeroizing::new([0u8; 32]);
        entropy.fill(&mut material[..])?;
        let mut id = [0u8; 16];
        entropy.fill(&mut id)?;
        let id = uuid::Builder::from_random_bytes(id).into_uuid();
        let key = Key::new(
            id,
            created,
            KeySpec::SymmetricDefault,
            KeyUsage::EncryptDecrypt,
            Origin::AwsKms,
            Some(KeyMaterial::symmetric(&material)),
        );
        let plain = codec::encode_key(&key).map_err(|_| KmsError::Internal("key encoding"))?;
        let record_id = id.as_bytes().to_vec();
        let sealed = record::seal(domain, RecordKind::Key, &record_id, seq, &plain, &entropy)?;
        out.push((id, (RecordKind::Key, record_id, sealed)));
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::durability::seal::manifest::Loader;

    /// What the sealer makes is what a load accepts: every record opens, nothing is refused.
    #[test]
    fn a_sealed_store_loads_without_refusals() {
        let key = Zeroizing::new([7u8; 32]);
        let mut sealer = OfflineSealer::new(key.clone());
        let admin = sealer
            .seal_admin("admin", "AKIAAAAAAAAAAAAAAAAA", "secretsecretsecretsecret")
            .unwrap();
        let keys = sealer.seal_symmetric_keys(50, 1_700_000_000_000).unwrap();
        assert_eq!(keys.len(), 50);
        let mut records: Vec<SealedRecord> = sealer.finish().unwrap();
        records.push(admin);
        records.extend(keys.into_iter().map(|(_, r)| r));
        records.sort_by(|a, b| (a.0 as u8, &a.1).cmp(&(b.0 as u8, &b.1)));
        let domain = DomainKey::new(key);
        let mut loader = Loader::new(&domain);
        let mut opened = 0;
        for (kind, id, sealed) in &records {
            if let Some((kind, plain)) = loader.feed(*kind as u8, id, sealed) {
                if kind == RecordKind::Key {
                    let k = codec::decode_key(&plain).unwrap();
                    assert_eq!(k.id.as_bytes(), &id[..]);
                }
                opened += 1;
            }
        }
        let (manifest, refused) = loader.finish();
        assert!(refused.is_empty(), "{refused:?}");
        assert_eq!(opened, 51);
        // The manifest to continue from lists every record at its generation.
        assert_eq!(
            manifest.expected(
                RecordKind::Principal,
                &crate::durability::seal::NameKey::of(&domain).record_id(RecordKind::Principal, "admin")
            ),
            Some(1)
        );
        assert_eq!(manifest.seq(), 1);
    }
}
