//! Loading: every record of the store, verified against the sealed manifest (exact loading,
//! `seal::manifest`), decoded into the state. [`Loading`] is pure over records; [`load`] is the
//! shell that pages through the store channel.

use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncRead, AsyncWrite};
use uuid::Uuid;

use ekms_shared::wire::v1::{self, Record, Request, Response};

use super::commit::{decode_head, AUDIT_HEAD_ID};
use super::deployment::DEPLOYMENT_KIND;
use super::{PersistError, Touched, MEASUREMENTS_ID, TLS_CA_ID, TLS_OPERATOR_ID};
use crate::access::principals::Principals;
use crate::durability::audit::Head;
use crate::durability::seal::codec::{self, PrincipalRecord};
use crate::durability::seal::manifest::{Loader, Manifest, Refusal};
use crate::durability::seal::{DomainKey, NameKey, RecordKind};
use crate::keys::KeyStore;
use crate::kms::state::Named;

/// Records per Load page.
const LOAD_PAGE: u32 = 4096;

/// What a load produced.
pub struct Loaded {
    /// Keys and aliases.
    pub keys: KeyStore,
    /// Principals sealed in the store.
    pub principals: Vec<PrincipalRecord>,
    /// The manifest to continue committing from.
    pub manifest: Manifest,
    /// Where the audit chain stands.
    pub audit_head: Head,
    /// Every record refused, with the reason.
    pub refused: Vec<Refusal>,
    /// Records written when an alias's or principal's name was its record id: they loaded,
    /// and are to be sealed again under their names' digests ([`Loaded::renames`]).
    pub legacy: Vec<(RecordKind, Vec<u8>)>,
    /// Keys whose records still carry their grants (written before grants were records of
    /// their own), with those grants' ids: to seal again ([`Loaded::renames`]).
    pub legacy_grants: Vec<(Uuid, Vec<String>)>,
    /// The deployment's TLS CA (absent in stores from before it was sealed).
    pub tls_ca: Option<crate::keys::tls::DeploymentCa>,
    /// An operator-issued TLS certificate, if one was requested.
    pub tls_operator: Option<crate::keys::tls::OperatorCert>,
    /// The measurements allowed to join (absent until first changed).
    pub measurements: Option<crate::access::measurements::Measurements>,
}

impl Loaded {
    /// The changes that move [`Loaded::legacy`] records under their names' digests (each name
    /// sealed again, each old record deleted) and [`Loaded::legacy_grants`] into records of
    /// their own, in one commit.
    pub fn renames(&self) -> Vec<Touched> {
        let mut out = Vec::with_capacity(self.legacy.len() * 2);
        for (kind, id) in &self.legacy {
            let name = String::from_utf8_lossy(id).into_owned();
            let named = match kind {
                RecordKind::Alias => {
                    out.push(Touched::Alias(name));
                    Named::Alias
                }
                _ => {
                    out.push(Touched::Principal(name));
                    Named::Principal
                }
            };
            out.push(Touched::Retired(named, id.clone()));
        }
        for (key, grants) in &self.legacy_grants {
            out.push(Touched::Key(*key));
            out.extend(grants.iter().map(|g| Touched::Grant(*key, g.clone())));
        }
        out
    }
}

/// Loading as a pure function over records: [`Loading::feed`] the store's records in the
/// order the store returns them (pages of a Load, or a plain map in tests), then
/// [`Loading::finish`]. Records that fail verification are reported in [`Loaded::refused`] and
/// left out.
pub struct Loading<'a> {
    loader: Loader<'a>,
    names: NameKey,
    config: &'a crate::config::Config,
    legacy: Vec<(RecordKind, Vec<u8>)>,
    legacy_grants: Vec<(Uuid, Vec<String>)>,
    tls_ca: Option<crate::keys::tls::DeploymentCa>,
    tls_operator: Option<crate::keys::tls::OperatorCert>,
    measurements: Option<crate::access::measurements::Measurements>,
    keys: KeyStore,
    aliases: Vec<(String, crate::keys::Alias)>,
    principals: Vec<PrincipalRecord>,
    grants: Vec<(Uuid, crate::access::policy::Grant)>,
    audit_head: Head,
}

impl<'a> Loading<'a> {
    /// A load under `domain`, bounded by `config`.
    pub fn new(domain: &'a DomainKey, config: &'a crate::config::Config) -> Self {
        Loading {
            loader: Loader::new(domain),
            names: NameKey::of(domain),
            config,
            legacy: Vec::new(),
            legacy_grants: Vec::new(),
            tls_ca: None,
            tls_operator: None,
            measurements: None,
            keys: KeyStore::default(),
            aliases: Vec::new(),
            principals: Vec::new(),
            grants: Vec::new(),
            audit_head: Head::GENESIS,
        }
    }

    /// Verifies and takes the next records, in the store's order.
    pub fn feed(&mut self, records: &[Record]) {
        for r in records {
            self.feed_one(r);
        }
    }

    fn feed_one(&mut self, r: &Record) {
        if r.key.kind == DEPLOYMENT_KIND {
            return;
        }
        let Some((kind, plain)) = self.loader.feed(r.key.kind, &r.key.id, &r.sealed) else {
            return;
        };
        let id = crate::durability::seal::manifest::show_id(kind, &r.key.id);
        let malformed = |why: String| Refusal::Malformed {
            kind,
            id: id.clone(),
            why,
        };
        match kind {
            RecordKind::Key => match codec::decode_key(&plain) {
                Ok(key) if key.id.as_bytes() == &r.key.id[..] => {
                    // Written when self.grants lived in their key's record: each is sealed
                    // again as a record of its own, the key without them.
                    if !key.grants.is_empty() {
                        let ids = key.grants.ids().map(str::to_owned).collect();
                        self.legacy_grants.push((key.id, ids));
                    }
                    if let Err(e) = self.keys.insert(key, self.config) {
                        self.loader.refused.push(malformed(e.to_string()));
                    }
                }
                Ok(_) => self.loader
                    .refused
                    .push(malformed("id differs from the record id".to_owned())),
                Err(e) => self.loader.refused.push(malformed(e.to_string())),
            },
            RecordKind::Alias => match codec::decode_alias(&plain) {
                Ok((Some(name), alias))
                    if self.names.record_id(RecordKind::Alias, &name) == r.key.id =>
                {
                    self.aliases.push((name, alias));
                }
                Ok((Some(_), _)) => self.loader.refused.push(malformed(
                    "the record id is not the digest of its name".to_owned(),
                )),
                // Written when the name was the record id.
                Ok((None, alias)) => match String::from_utf8(r.key.id.clone()) {
                    Ok(name) => {
                        self.legacy.push((kind, r.key.id.clone()));
                        self.aliases.push((name, alias));
                    }
                    Err(_) => self.loader
                        .refused
                        .push(malformed("an alias record without a name".to_owned())),
                },
                Err(e) => self.loader.refused.push(malformed(e.to_string())),
            },
            RecordKind::Principal => match codec::decode_principal(&plain) {
                Ok(p) if self.names.record_id(RecordKind::Principal, &p.name) == r.key.id => {
                    self.principals.push(p);
                }
                // Written when the name was the record id.
                Ok(p) if p.name.as_bytes() == &r.key.id[..] => {
                    self.legacy.push((kind, r.key.id.clone()));
                    self.principals.push(p);
                }
                Ok(_) => self.loader.refused.push(malformed(
                    "the record id is neither the name nor its digest".to_owned(),
                )),
                Err(e) => self.loader.refused.push(malformed(e.to_string())),
            },
            RecordKind::Setting if r.key.id == AUDIT_HEAD_ID => match decode_head(&plain) {
                Some(head) => self.audit_head = head,
                None => self.loader
                    .refused
                    .push(malformed("malformed audit head".to_owned())),
            },
            RecordKind::Setting if r.key.id == TLS_OPERATOR_ID => {
                match crate::keys::tls::OperatorCert::decode(&plain) {
                    Ok(cert) => self.tls_operator = Some(cert),
                    Err(e) => self.loader.refused.push(malformed(e.to_string())),
                }
            }
            RecordKind::Setting if r.key.id == TLS_CA_ID => {
                match crate::keys::tls::DeploymentCa::decode(&plain) {
                    Ok(ca) => self.tls_ca = Some(ca),
                    Err(e) => self.loader.refused.push(malformed(e.to_string())),
                }
            }
            RecordKind::Setting if r.key.id == MEASUREMENTS_ID => {
                match crate::access::measurements::Measurements::decode(&plain) {
                    Ok(m) => self.measurements = Some(m),
                    Err(e) => self.loader.refused.push(malformed(e)),
                }
            }
            RecordKind::Setting => {
                self.loader.refused.push(malformed("unknown setting".to_owned()));
            }
            RecordKind::Grant => match codec::decode_grant(&r.key.id, &plain) {
                Ok(grant) => self.grants.push(grant),
                Err(e) => self.loader.refused.push(malformed(e.to_string())),
            },
            RecordKind::Root | RecordKind::Bucket => {}
        }
    }

    /// What the load produced: the state, the manifest, and every refusal by name.
    pub fn finish(mut self) -> Loaded {
        for (name, alias) in self.aliases {
            if let Err(e) = self.keys.put_alias(name.clone(), alias, self.config) {
                self.loader.refused.push(Refusal::Malformed {
                    kind: RecordKind::Alias,
                    id: name,
                    why: e.to_string(),
                });
            }
        }
        for (key_id, grant) in self.grants {
            let id = crate::durability::seal::manifest::show_id(
                RecordKind::Grant,
                &codec::grant_record_id(&key_id, &grant.grant_id),
            );
            if let Err(why) = self.keys.load_grant(&key_id, grant) {
                self.loader.refused.push(Refusal::Malformed {
                    kind: RecordKind::Grant,
                    id,
                    why: why.to_owned(),
                });
            }
        }
        let has_root = self.loader.has_root();
        let (manifest, mut refused) = self.loader.finish();
        if !has_root && refused.is_empty() {
            refused.push(Refusal::Root("missing".to_owned()));
        }
        // The root's head, where it carries one, is the newest: sealed with every commit.
        if let Some(bytes) = manifest.head() {
            match decode_head(bytes) {
                Some(head) => self.audit_head = head,
                None => refused.push(Refusal::Root("malformed audit head".to_owned())),
            }
        }
        Loaded {
            keys: self.keys,
            principals: self.principals,
            manifest,
            audit_head: self.audit_head,
            refused,
            legacy: self.legacy,
            legacy_grants: self.legacy_grants,
            tls_ca: self.tls_ca,
            tls_operator: self.tls_operator,
            measurements: self.measurements,
        }
    }
}

/// Loads and verifies every record of the store: pages through a Load on `stream` and feeds
/// each page to [`Loading`].
///
/// # Errors
/// [`PersistError`] if the channel fails. Records that fail verification are not errors:
/// they are reported in [`Loaded::refused`] and left out.
pub async fn load<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    domain: &DomainKey,
    config: &crate::config::Config,
) -> Result<Loaded, PersistError> {
    load_counting(stream, domain, config, &AtomicU64::new(0)).await
}

/// [`load`], adding to `counted` the number of stored records received after each page, so
/// that another task can show how far a long load has come. A count only, which the parent
/// that sends the records knows anyway: nothing of what they hold.
///
/// # Errors
/// As [`load`].
pub async fn load_counting<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    domain: &DomainKey,
    config: &crate::config::Config,
    counted: &AtomicU64,
) -> Result<Loaded, PersistError> {
    let mut loading = Loading::new(domain, config);
    let mut after = None;
    loop {
        v1::write_frame(
            stream,
            &Request::Load {
                after: after.clone(),
                limit: LOAD_PAGE,
            },
        )
        .await?;
        let (page, done) = match v1::read_frame::<_, Response>(stream).await? {
            Some(Response::Records { records, done }) => (records, done),
            Some(Response::Error { message }) => return Err(PersistError::Refused(message)),
            other => {
                return Err(PersistError::Refused(format!(
                    "unexpected answer to Load: {other:?}"
                )))
            }
        };
        if let Some(last) = page.last() {
            after = Some(last.key.clone());
        }
        loading.feed(&page);
        counted.fetch_add(page.len() as u64, Ordering::Relaxed);
        if done || page.is_empty() {
            break;
        }
    }
    Ok(loading.finish())
}

/// Principals as sealed records.
impl Principals {
    /// The sealed form of the principal `name`, if it is one that is sealed (not from a file).
    pub fn sealed_record(&self, name: &str) -> Option<PrincipalRecord> {
        self.sealed(name).map(|p| {
            PrincipalRecord::with_id(
                name,
                p.expose_access_keys()
                    .map(|(id, secret)| (id.to_owned(), secret.to_owned()))
                    .collect(),
                p.policy_text().map(str::to_owned),
                Some(p.id.clone()),
            )
        })
    }

    /// Takes the sealed principals of a store's state in place of the ones held (those from a
    /// principals file stay); a record that is not a valid principal is left out, and logged.
    pub fn replace_sealed(&mut self, records: &[PrincipalRecord], config: &crate::config::Config) {
        self.remove_sealed();
        for p in records {
            if let Err(why) = self.insert_sealed(p, config) {
                tracing::warn!(name = %p.name, why, "sealed principal not loaded");
            }
        }
    }

    /// Adds a principal loaded from its sealed record.
    ///
    /// # Errors
    /// Why the record is not a valid principal (see [`Principals::insert_with_keys`]).
    pub fn insert_sealed(
        &mut self,
        record: &PrincipalRecord,
        config: &crate::config::Config,
    ) -> Result<(), &'static str> {
        self.insert_with_keys(
            record.name.clone(),
            record.keys(),
            true,
            record.policy.clone(),
            record.id.clone(),
            config,
        )
    }
}
