//! Catching up by difference: a member that learns of another member's commit reads the newer
//! root, then only the pages, buckets and records whose generations differ from its own
//! manifest's, all from one snapshot of the store (`Request::Fetch`), and verifies each against
//! the level above as a load does: the root sealed under the domain key, each changed page at the generation the root lists, each changed bucket
//! at the generation its page lists, each changed record at the generation its bucket lists.
//! What it read is then taken under the keys and principals write locks
//! ([`super::Persister::take_caught`]): records upserted and removed, each key's grants kept
//! across a newer record of the key.
//!
//! The parent may forge, replay, reorder or drop any byte: a piece that does not verify, a
//! record the manifest lists and the store does not return, anything unexpected in an answer,
//! gives up the catch-up ([`Fallback`]) and the member loads the store whole, as before. So does
//! a difference too large to be worth it ([`MAX_DIFF_BUCKETS`], [`MAX_DIFF_RECORDS`]).

use tokio::io::{AsyncRead, AsyncWrite};
use uuid::Uuid;

use ekms_shared::wire::v1::{self, Record, RecordKey, Request, Response, MAX_FETCH_KEYS};

use super::commit::AUDIT_HEAD_ID;
use super::{PersistError, Persister, MEASUREMENTS_ID, TLS_CA_ID, TLS_OPERATOR_ID};
use crate::access::measurements::Measurements;
use crate::access::policy::Grant;
use crate::access::principals::Principals;
use crate::durability::seal::codec::{self, PrincipalRecord};
use crate::durability::seal::manifest::{
    self, Entry, ManifestChanges, BUCKETS, ROOT_ID,
};
use crate::durability::seal::{record, DomainKey, NameKey, RecordKind};
use crate::keys::tls::OperatorCert;
use crate::keys::{Alias, Key, KeyStore};

/// Most buckets a catch-up reads; past a quarter of them, the store is loaded whole.
pub const MAX_DIFF_BUCKETS: usize = BUCKETS / 4;

/// Most records a catch-up reads; past this, the store is loaded whole.
pub const MAX_DIFF_RECORDS: usize = 50_000;

/// Why a member loads the store whole rather than catch up by difference.
#[derive(Debug, thiserror::Error)]
pub enum Fallback {
    /// The member's manifest has no pages, or changes not sealed.
    #[error("this member's manifest cannot be caught up by difference")]
    NotPaged,
    /// The member committed (or took another state) while it read.
    #[error("this member's state moved while the difference was read")]
    Moved,
    /// The store did not answer `Fetch` (the embedded store, an old parent, a snapshot etcd
    /// compacted).
    #[error("the store did not answer Fetch: {0}")]
    Store(String),
    /// More changed than a catch-up reads.
    #[error("{count} {what} changed, more than a catch-up reads")]
    TooLarge {
        /// Buckets or records.
        what: &'static str,
        /// How many.
        count: usize,
    },
    /// Something read did not verify, or an answer is not what was asked.
    #[error("refused: {0}")]
    Refused(String),
}

/// Another member's changes, read and verified, for [`super::Persister::take_caught`]. It holds
/// key material and secret access keys: its `Debug` shows counts only.
#[derive(Default)]
pub struct Caught {
    keys: Vec<Key>,
    removed_keys: Vec<Uuid>,
    aliases: Vec<(String, Alias)>,
    removed_aliases: Vec<Vec<u8>>,
    principals: Vec<PrincipalRecord>,
    removed_principals: Vec<Vec<u8>>,
    grants: Vec<(Uuid, Grant)>,
    removed_grants: Vec<(Uuid, String)>,
    tls_operator: Option<OperatorCert>,
    /// `Some` when the setting changed (the default when it was removed).
    measurements: Option<Measurements>,
}

impl std::fmt::Debug for Caught {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Caught")
            .field("records", &self.count())
            .finish_non_exhaustive()
    }
}

/// The settings a caught-up state changes, taken under the same locks as the records.
pub struct Settings {
    /// A newer operator TLS certificate.
    pub tls_operator: Option<OperatorCert>,
    /// Newer measurements allowed to join.
    pub measurements: Option<Measurements>,
}

impl Caught {
    /// How many records it changes (upserted and removed).
    pub fn count(&self) -> usize {
        self.keys.len()
            + self.removed_keys.len()
            + self.aliases.len()
            + self.removed_aliases.len()
            + self.principals.len()
            + self.removed_principals.len()
            + self.grants.len()
            + self.removed_grants.len()
            + usize::from(self.tls_operator.is_some())
            + usize::from(self.measurements.is_some())
    }

    /// Takes the changes into `keys` and `principals` (the caller holds both write locks) and
    /// returns the settings to take under them. Everything that could refuse is checked first,
    /// so that a refusal leaves the state as it was.
    ///
    /// # Errors
    /// [`Fallback::Refused`]: a change that cannot be taken (a grant of a key that is not
    /// there, a bound passed); the member then loads the store whole.
    pub fn apply(
        self,
        keys: &mut KeyStore,
        principals: &mut Principals,
        names: &NameKey,
        config: &crate::config::Config,
    ) -> Result<Settings, Fallback> {
        let refused = |why: &str| Fallback::Refused(why.to_owned());
        let removed: std::collections::HashSet<Uuid> = self.removed_keys.iter().copied().collect();
        let upserted: std::collections::HashSet<Uuid> = self.keys.iter().map(|k| k.id).collect();
        // Keys: within the bound once taken.
        let added = self
            .keys
            .iter()
            .filter(|k| keys.raw(&k.id).is_none())
            .count();
        let gone = removed.iter().filter(|id| keys.raw(id).is_some()).count();
        if keys.key_count() + added - gone > config.max_keys {
            return Err(refused("more keys than this service holds"));
        }
        // Grants: each of a key that is there once taken.
        let has_key = |id: &Uuid| upserted.contains(id) || (keys.raw(id).is_some() && !removed.contains(id));
        if self.grants.iter().any(|(key, _)| !has_key(key)) {
            return Err(refused("a grant of a key that is not loaded"));
        }
        // Aliases and principals removed: their names, from their records' ids.
        let removed_aliases: Vec<String> = if self.removed_aliases.is_empty() {
            Vec::new()
        } else {
            let ids: std::collections::HashSet<&[u8]> =
                self.removed_aliases.iter().map(Vec::as_slice).collect();
            keys.alias_names()
                .filter(|name| ids.contains(names.record_id(RecordKind::Alias, name).as_slice()))
                .map(str::to_owned)
                .collect()
        };
        let new_aliases = self
            .aliases
            .iter()
            .filter(|(name, _)| keys.alias(name).is_none())
            .count();
        if keys.alias_count() + new_aliases > config.max_aliases + removed_aliases.len() {
            return Err(refused("more aliases than this service holds"));
        }
        let removed_principals: Vec<String> = if self.removed_principals.is_empty() {
            Vec::new()
        } else {
            let ids: std::collections::HashSet<&[u8]> =
                self.removed_principals.iter().map(Vec::as_slice).collect();
            principals
                .sealed_names()
                .filter(|name| {
                    ids.contains(names.record_id(RecordKind::Principal, name).as_slice())
                })
                .map(str::to_owned)
                .collect()
        };

        // Checked: take them.
        for id in &self.removed_keys {
            keys.remove(id);
        }
        for key in self.keys {
            // Within the bound (checked above): a newer key record keeps the key's grants.
            keys.replace(key, config)
                .map_err(|_| refused("more keys than this service holds"))?;
        }
        for (key, grant_id) in &self.removed_grants {
            if let Some(k) = keys.raw_mut(key) {
                k.remove_grant(grant_id);
                keys.recount(key);
            }
        }
        for (key, grant) in self.grants {
            keys.load_grant(&key, grant).map_err(refused)?;
        }
        for name in &removed_aliases {
            keys.remove_alias(name);
        }
        for (name, alias) in self.aliases {
            keys.put_alias(name, alias, config)
                .map_err(|_| refused("more aliases than this service holds"))?;
        }
        // Principals: every one replaced or removed goes first, so that an access key that
        // moved from one to another is free when the other is taken.
        for name in removed_principals
            .iter()
            .map(String::as_str)
            .chain(self.principals.iter().map(|p| p.name.as_str()))
        {
            if principals.sealed(name).is_some() {
                let _ = principals.delete(name);
            }
        }
        for p in &self.principals {
            if let Err(why) = principals.insert_sealed(p, config) {
                // As a full load does (`Principals::replace_sealed`).
                tracing::warn!(name = %p.name, why, "sealed principal not loaded");
            }
        }
        Ok(Settings {
            tls_operator: self.tls_operator,
            measurements: self.measurements,
        })
    }
}

/// Reads the records of `keys` from the snapshot `at` (the store's newest settled one when
/// `None`, which it then names), a [`MAX_FETCH_KEYS`] at a time: one value per key, in order.
async fn fetch<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    at: &mut Option<u64>,
    keys: &[RecordKey],
) -> Result<Result<Vec<Option<Vec<u8>>>, Fallback>, PersistError> {
    let mut values = Vec::with_capacity(keys.len());
    let mut rest = keys;
    while !rest.is_empty() {
        let asked = &rest[..rest.len().min(MAX_FETCH_KEYS)];
        v1::write_frame(
            stream,
            &Request::Fetch {
                at: *at,
                keys: asked.to_vec(),
            },
        )
        .await?;
        let (read_at, records, through) = match v1::read_frame::<_, Response>(stream).await? {
            Some(Response::Fetched {
                at,
                records,
                through,
            }) => (at, records, through),
            Some(Response::Error { message }) => return Ok(Err(Fallback::Store(message))),
            other => {
                return Err(PersistError::Refused(format!(
                    "unexpected answer to Fetch: {other:?}"
                )))
            }
        };
        if at.is_some_and(|at| at != read_at) {
            return Ok(Err(Fallback::Refused(format!(
                "the store answered from snapshot {read_at}, not {}",
                at.unwrap_or_default()
            ))));
        }
        *at = Some(read_at);
        let through = usize::try_from(through).unwrap_or(usize::MAX);
        if through == 0 || through > asked.len() {
            return Ok(Err(Fallback::Refused(format!(
                "the store answered {through} of {} records asked",
                asked.len()
            ))));
        }
        // Each record one of those asked, once, in the order asked.
        let mut records = records.into_iter().peekable();
        for key in &asked[..through] {
            match records.next_if(|r| &r.key == key) {
                Some(Record { sealed, .. }) => values.push(Some(sealed)),
                None => values.push(None),
            }
        }
        if records.next().is_some() {
            return Ok(Err(Fallback::Refused(
                "the store answered records not asked for, or out of order".to_owned(),
            )));
        }
        rest = &rest[through..];
    }
    Ok(Ok(values))
}

/// One record the manifest lists, read from the store: `Refused` when it is absent.
fn present(value: Option<Vec<u8>>, what: impl FnOnce() -> String) -> Result<Vec<u8>, Fallback> {
    value.ok_or_else(|| Fallback::Refused(format!("{} is missing from the store", what())))
}

/// Catches this member's state up with the store's by difference, from its state at commit
/// `base` (see the module documentation): what it read, verified, to be taken with
/// [`super::Persister::take_caught`]. The root read may be newer than the head that made the
/// member ask (another member committed in between): it is taken all the same, since every
/// piece is verified against it.
///
/// Which whole state the parent serves is, as for a full load, the parent's to choose (commit
/// numbers are not ordered across members, so a member cannot tell an older root from a newer
/// one; see DESIGN.md, what a member trusts its parent for). What it cannot do is mix: a piece
/// of another state does not carry the generation the level above lists. A root that is this
/// member's own state while the head moved is refused.
///
/// # Errors
/// [`PersistError`] when the channel breaks; `Ok(Err(Fallback))` when the member must load the
/// store whole instead.
pub async fn catch_up<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    persister: &Persister,
    base: u64,
    domain: &DomainKey,
    names: &NameKey,
) -> Result<Result<(Caught, ManifestChanges), Fallback>, PersistError> {
    let current = match persister
        .with_manifest(base, manifest::Manifest::generations)
        .await?
    {
        Some(Some(current)) => current,
        Some(None) => return Ok(Err(Fallback::NotPaged)),
        None => return Ok(Err(Fallback::Moved)),
    };
    let mut at = None;
    // The root.
    let root_key = RecordKey {
        kind: RecordKind::Root as u8,
        id: ROOT_ID.to_vec(),
    };
    let root = match fetch(stream, &mut at, std::slice::from_ref(&root_key)).await? {
        Ok(mut values) => values.pop().flatten(),
        Err(fallback) => return Ok(Err(fallback)),
    };
    let root = match present(root, || "the root".to_owned())
        .and_then(|sealed| manifest::open_root(domain, &sealed).map_err(Fallback::Refused))
    {
        Ok(root) => root,
        Err(fallback) => return Ok(Err(fallback)),
    };
    if root.seq() == current.base {
        return Ok(Err(Fallback::Refused(format!(
            "the store's root is commit {base}'s, this member's own, but its head moved (an older root replayed?)"
        ))));
    }
    // The pages that changed, each at the generation the root lists.
    let changed_pages = root.changed_pages(&current);
    let page_keys: Vec<RecordKey> = changed_pages
        .iter()
        .filter(|(_, g)| *g > 0)
        .map(|(p, _)| RecordKey {
            kind: RecordKind::Root as u8,
            id: manifest::page_record_id(*p),
        })
        .collect();
    let mut page_values = match fetch(stream, &mut at, &page_keys).await? {
        Ok(values) => values.into_iter(),
        Err(fallback) => return Ok(Err(fallback)),
    };
    let mut pages = Vec::with_capacity(changed_pages.len());
    for (page, generation) in changed_pages {
        let gens = if generation == 0 {
            vec![0; manifest::BUCKETS_PER_PAGE]
        } else {
            let opened = present(page_values.next().flatten(), || format!("page {page}"))
                .and_then(|sealed| {
                    manifest::open_page(domain, page, &sealed, generation)
                        .map_err(Fallback::Refused)
                });
            match opened {
                Ok(gens) => gens,
                Err(fallback) => return Ok(Err(fallback)),
            }
        };
        pages.push((page, gens));
    }
    // The buckets that changed, each at the generation its page lists.
    let changed_buckets: Vec<(u16, u64)> = pages
        .iter()
        .flat_map(|(page, gens)| current.changed_buckets(*page, gens))
        .collect();
    if changed_buckets.len() > MAX_DIFF_BUCKETS {
        return Ok(Err(Fallback::TooLarge {
            what: "buckets",
            count: changed_buckets.len(),
        }));
    }
    let bucket_keys: Vec<RecordKey> = changed_buckets
        .iter()
        .filter(|(_, g)| *g > 0)
        .map(|(b, _)| RecordKey {
            kind: RecordKind::Bucket as u8,
            id: b.to_be_bytes().to_vec(),
        })
        .collect();
    let mut bucket_values = match fetch(stream, &mut at, &bucket_keys).await? {
        Ok(values) => values.into_iter(),
        Err(fallback) => return Ok(Err(fallback)),
    };
    let mut buckets: Vec<(u16, Vec<Entry>)> = Vec::with_capacity(changed_buckets.len());
    for &(bucket, generation) in &changed_buckets {
        let entries = if generation == 0 {
            Vec::new()
        } else {
            let opened = present(bucket_values.next().flatten(), || format!("bucket {bucket}"))
                .and_then(|sealed| {
                    manifest::open_bucket(domain, bucket, &sealed, generation)
                        .map_err(Fallback::Refused)
                });
            match opened {
                Ok(entries) => entries,
                Err(fallback) => return Ok(Err(fallback)),
            }
        };
        buckets.push((bucket, entries));
    }
    // The records whose generations moved, and those gone.
    let bucket_ids: Vec<u16> = changed_buckets.iter().map(|(b, _)| *b).collect();
    let old = match persister
        .with_manifest(base, |m| m.entries_of(&bucket_ids))
        .await?
    {
        Some(old) => old,
        None => return Ok(Err(Fallback::Moved)),
    };
    let mut upserts: Vec<(RecordKind, Vec<u8>, u64)> = Vec::new();
    let mut removals: Vec<(RecordKind, Vec<u8>)> = Vec::new();
    for ((_, old), (_, new)) in old.iter().zip(&buckets) {
        let before: std::collections::HashMap<(u8, &[u8]), u64> = old
            .iter()
            .map(|(k, id, g)| ((*k, id.as_slice()), *g))
            .collect();
        let after: std::collections::HashSet<(u8, &[u8])> =
            new.iter().map(|(k, id, _)| (*k, id.as_slice())).collect();
        for (kind, id, generation) in new {
            if before.get(&(*kind, id.as_slice())) != Some(generation) {
                let kind = RecordKind::from_u8(*kind).unwrap_or(RecordKind::Root);
                upserts.push((kind, id.clone(), *generation));
            }
        }
        for (kind, id, _) in old {
            if !after.contains(&(*kind, id.as_slice())) {
                let kind = RecordKind::from_u8(*kind).unwrap_or(RecordKind::Root);
                removals.push((kind, id.clone()));
            }
        }
    }
    if upserts.len() > MAX_DIFF_RECORDS {
        return Ok(Err(Fallback::TooLarge {
            what: "records",
            count: upserts.len(),
        }));
    }
    // In the store's order, as a load reads them (grants after their keys).
    upserts.sort();
    removals.sort();
    let record_keys: Vec<RecordKey> = upserts
        .iter()
        .map(|(kind, id, _)| RecordKey {
            kind: *kind as u8,
            id: id.clone(),
        })
        .collect();
    let values = match fetch(stream, &mut at, &record_keys).await? {
        Ok(values) => values,
        Err(fallback) => return Ok(Err(fallback)),
    };
    let mut caught = Caught::default();
    for ((kind, id, generation), value) in upserts.into_iter().zip(values) {
        let show = || manifest::show_id(kind, &id);
        let taken = present(value, || format!("{kind:?} record {}", show()))
            .and_then(|sealed| {
                match record::open(domain, kind, &id, &sealed) {
                    Ok((found, plain)) if found == generation => Ok(plain),
                    Ok((found, _)) => Err(Fallback::Refused(format!(
                        "{kind:?} record {}: generation {found} but the manifest lists {generation}",
                        show()
                    ))),
                    Err(why) => Err(Fallback::Refused(format!(
                        "{kind:?} record {}: does not open ({why})",
                        show()
                    ))),
                }
            })
            .and_then(|plain| caught.take(kind, &id, &plain, names));
        if let Err(fallback) = taken {
            return Ok(Err(fallback));
        }
    }
    for (kind, id) in removals {
        if let Err(fallback) = caught.note_removed(kind, id) {
            return Ok(Err(fallback));
        }
    }
    let changes = ManifestChanges::new(root, pages, buckets);
    Ok(Ok((caught, changes)))
}

impl Caught {
    /// Takes one verified record's plaintext. Only what a member writes today is taken; an
    /// older form (a name for an id, grants inside a key) is left to the full load, which
    /// knows them.
    fn take(
        &mut self,
        kind: RecordKind,
        id: &[u8],
        plain: &[u8],
        names: &NameKey,
    ) -> Result<(), Fallback> {
        let refused = |why: String| {
            Fallback::Refused(format!("{kind:?} record {}: {why}", manifest::show_id(kind, id)))
        };
        match kind {
            RecordKind::Key => {
                let key = codec::decode_key(plain).map_err(|e| refused(e.to_string()))?;
                if key.id.as_bytes() != id {
                    return Err(refused("id differs from the record id".to_owned()));
                }
                if !key.grants.is_empty() {
                    return Err(refused("a key record with grants inside".to_owned()));
                }
                self.keys.push(key);
            }
            RecordKind::Alias => match codec::decode_alias(plain) {
                Ok((Some(name), alias)) if names.record_id(RecordKind::Alias, &name) == id => {
                    self.aliases.push((name, alias));
                }
                Ok(_) => return Err(refused("the record id is not the digest of its name".to_owned())),
                Err(e) => return Err(refused(e.to_string())),
            },
            RecordKind::Principal => match codec::decode_principal(plain) {
                Ok(p) if names.record_id(RecordKind::Principal, &p.name) == id => {
                    self.principals.push(p);
                }
                Ok(_) => return Err(refused("the record id is not the digest of its name".to_owned())),
                Err(e) => return Err(refused(e.to_string())),
            },
            RecordKind::Grant => {
                let grant = codec::decode_grant(id, plain).map_err(|e| refused(e.to_string()))?;
                self.grants.push(grant);
            }
            RecordKind::Setting if id == TLS_OPERATOR_ID => {
                let cert = OperatorCert::decode(plain).map_err(|e| refused(e.to_string()))?;
                self.tls_operator = Some(cert);
            }
            RecordKind::Setting if id == MEASUREMENTS_ID => {
                self.measurements = Some(Measurements::decode(plain).map_err(refused)?);
            }
            // Sealed once, at init; and the head a store before root version 4 kept.
            RecordKind::Setting if id == TLS_CA_ID || id == AUDIT_HEAD_ID => {}
            RecordKind::Setting | RecordKind::Root | RecordKind::Bucket => {
                return Err(refused("not a record a bucket lists".to_owned()));
            }
        }
        Ok(())
    }

    /// Notes a record the newer manifest no longer lists.
    fn note_removed(&mut self, kind: RecordKind, id: Vec<u8>) -> Result<(), Fallback> {
        match kind {
            RecordKind::Key => {
                let key = Uuid::from_slice(&id)
                    .map_err(|_| Fallback::Refused("a key record id that is not a UUID".to_owned()))?;
                self.removed_keys.push(key);
            }
            RecordKind::Alias => self.removed_aliases.push(id),
            RecordKind::Principal => self.removed_principals.push(id),
            RecordKind::Grant => {
                let Some((key, grant)) = codec::split_grant_id(&id) else {
                    return Err(Fallback::Refused("a malformed grant record id".to_owned()));
                };
                self.removed_grants.push((key, grant.to_owned()));
            }
            RecordKind::Setting if id == MEASUREMENTS_ID => {
                self.measurements = Some(Measurements::default());
            }
            // A full load keeps the operator certificate it has when the record is gone, too.
            RecordKind::Setting => {}
            RecordKind::Root | RecordKind::Bucket => {
                return Err(Fallback::Refused("a bucket that listed a manifest record".to_owned()));
            }
        }
        Ok(())
    }
}
