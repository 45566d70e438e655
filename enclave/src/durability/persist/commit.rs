//! Commit building: the records a batch touched, snapshotted under the state's locks and sealed
//! at the commit's sequence number, the manifest's changes, and the batch's audit lines with a
//! signed checkpoint when one is due. No I/O and no clock: the committer gives the time.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use ekms_shared::wire::v1::{Record, RecordKey, Request};

use super::{PersistError, Touched, MEASUREMENTS_ID, TLS_CA_ID, TLS_OPERATOR_ID};
use crate::durability::audit::{AuditChain, Head};
use crate::durability::seal::codec;
use crate::durability::seal::manifest::Manifest;
use crate::durability::seal::{record, DomainKey, NameKey, RecordKind};
use crate::env::Entropy;
use crate::kms::state::{Named, State};

/// What the committer seals with.
pub(super) struct Sealing {
    pub(super) state: Arc<State>,
    pub(super) domain: Arc<DomainKey>,
    /// Alias and principal names to record ids.
    pub(super) names: NameKey,
    /// Shared with the task that follows the store, which changes it only while nothing is in
    /// flight and the committer waits for room ([`super::Persister::adopt`]).
    pub(super) manifest: Arc<Mutex<Manifest>>,
    pub(super) entropy: Arc<dyn Entropy>,
    pub(super) chain: Arc<Mutex<AuditChain>>,
    /// When the last signed checkpoint was written.
    pub(super) last_checkpoint: Option<std::time::Instant>,
    /// Whether records were written since the last checkpoint.
    pub(super) uncovered: bool,
    /// One member of several sharing the store ([`crate::config::Config::member`]): the audit
    /// chain is this member's own, and its head is not sealed in the root.
    pub(super) member: bool,
}

/// Checkpoints are signed at most this often under load (an ECDSA P-384 signature costs more
/// than the rest of a commit), and at most this long after the last record when idle.
pub const CHECKPOINT_INTERVAL: std::time::Duration = std::time::Duration::from_millis(50);

/// When a commit is built (read by the committer, so that building reads no clock).
#[derive(Debug, Clone, Copy)]
pub(super) struct Now {
    /// For the checkpoint interval.
    pub(super) at: std::time::Instant,
    /// For the checkpoint record.
    pub(super) millis: crate::env::Millis,
}

/// A commit that only appends a signed checkpoint of the current head; built on commit `base`
/// (`None`: unconditional, a member's audit-only commit).
pub(super) fn checkpoint_commit(
    base: Option<u64>,
    seq: u64,
    now: Now,
    sealing: &mut Sealing,
) -> Result<(Request, Head), PersistError> {
    let (lines, head) = {
        let mut chain = sealing
            .chain
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let lines = chain
            .checkpoint(now.millis)
            .map_err(|_| PersistError::Seal("audit checkpoint"))?
            .into_iter()
            .map(serde_bytes::ByteBuf::from)
            .collect();
        (lines, chain.head())
    };
    sealing.last_checkpoint = Some(now.at);
    sealing.uncovered = false;
    Ok((
        Request::Commit {
            seq,
            base,
            puts: Vec::new(),
            deletes: Vec::new(),
            audit: lines,
        },
        head,
    ))
}

/// Commit `seq`, built on commit `base` (`None` only for a member's audit-only commit, which
/// touches no record): the records of `touched` as they are now, sealed at `seq`, the
/// manifest's changes, and `audit`'s lines.
pub(super) fn build_commit(
    base: Option<u64>,
    seq: u64,
    touched: &BTreeSet<Touched>,
    audit: Vec<crate::durability::audit::Record>,
    now: Now,
    sealing: &mut Sealing,
) -> Result<(Request, Head), PersistError> {
    let Sealing {
        state,
        domain,
        names,
        manifest,
        entropy,
        chain,
        last_checkpoint,
        uncovered,
        member,
    } = sealing;
    let mut manifest = manifest
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let manifest = &mut *manifest;
    let entropy = entropy.as_ref();
    // Snapshot under the locks; seal after releasing them.
    let mut plain = Vec::with_capacity(touched.len());
    {
        let keys = state.read();
        let principals = state.principals();
        for t in touched {
            let (kind, id, bytes) = match t {
                Touched::Key(id) => (
                    RecordKind::Key,
                    id.as_bytes().to_vec(),
                    keys.raw(id)
                        .map(codec::encode_key)
                        .transpose()
                        .map_err(|_| PersistError::Seal("key encoding"))?,
                ),
                Touched::Alias(name) => (
                    RecordKind::Alias,
                    names.record_id(RecordKind::Alias, name),
                    keys.alias(name)
                        .map(|alias| codec::encode_alias(name, alias))
                        .transpose()
                        .map_err(|_| PersistError::Seal("alias encoding"))?,
                ),
                Touched::Retired(named, id) => (
                    match named {
                        Named::Alias => RecordKind::Alias,
                        Named::Principal => RecordKind::Principal,
                    },
                    id.clone(),
                    None,
                ),
                Touched::Grant(key, grant_id) => (
                    RecordKind::Grant,
                    codec::grant_record_id(key, grant_id),
                    keys.raw(key)
                        .and_then(|k| k.grants.get(grant_id))
                        .map(codec::encode_grant)
                        .transpose()
                        .map_err(|_| PersistError::Seal("grant encoding"))?,
                ),
                Touched::TlsOperator => (
                    RecordKind::Setting,
                    TLS_OPERATOR_ID.to_vec(),
                    state
                        .tls_operator()
                        .map(|c| c.encode())
                        .transpose()
                        .map_err(|_| PersistError::Seal("TLS certificate encoding"))?,
                ),
                Touched::TlsCa => (
                    RecordKind::Setting,
                    TLS_CA_ID.to_vec(),
                    state
                        .tls_ca()
                        .map(|ca| ca.encode())
                        .transpose()
                        .map_err(|_| PersistError::Seal("TLS CA encoding"))?,
                ),
                Touched::Measurements => (
                    RecordKind::Setting,
                    MEASUREMENTS_ID.to_vec(),
                    Some(zeroize::Zeroizing::new(
                        state
                            .measurements()
                            .encode()
                            .map_err(|_| PersistError::Seal("measurements encoding"))?,
                    )),
                ),
                Touched::Principal(name) => (
                    RecordKind::Principal,
                    names.record_id(RecordKind::Principal, name),
                    principals
                        .sealed_record(name)
                        .map(|p| codec::encode_principal(&p))
                        .transpose()
                        .map_err(|_| PersistError::Seal("principal encoding"))?,
                ),
            };
            plain.push((kind, id, bytes));
        }
    }
    let mut puts = Vec::with_capacity(plain.len() + 2);
    let mut deletes = Vec::new();
    for (kind, id, bytes) in plain {
        match bytes {
            Some(bytes) => {
                let sealed = record::seal(domain, kind, &id, seq, &bytes, entropy)
                    .map_err(|_| PersistError::Seal("record sealing"))?;
                manifest.set(kind, &id, Some(seq));
                puts.push(Record {
                    key: RecordKey {
                        kind: kind as u8,
                        id,
                    },
                    sealed,
                });
            }
            None => {
                manifest.set(kind, &id, None);
                deletes.push(RecordKey {
                    kind: kind as u8,
                    id,
                });
            }
        }
    }
    // Audit lines, in commit order, then a signed checkpoint; the chain head is sealed in the
    // same commit (in the manifest's root) so the chain continues across restarts.
    let (lines, head) = {
        let mut chain = chain
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut lines: Vec<serde_bytes::ByteBuf> = audit
            .into_iter()
            .map(|record| serde_bytes::ByteBuf::from(chain.append(&record)))
            .collect();
        if !lines.is_empty() {
            let due = last_checkpoint
                .is_none_or(|t| now.at.saturating_duration_since(t) >= CHECKPOINT_INTERVAL);
            if due {
                for line in chain
                    .checkpoint(now.millis)
                    .map_err(|_| PersistError::Seal("audit checkpoint"))?
                {
                    lines.push(serde_bytes::ByteBuf::from(line));
                }
                *last_checkpoint = Some(now.at);
                *uncovered = false;
            } else {
                // Covered by the next checkpoint: the next commit's, or the idle one.
                *uncovered = true;
            }
        }
        (lines, chain.head())
    };
    if !lines.is_empty() && !*member {
        // A member's chain is its own, and the root is shared: its head is not sealed there.
        // A store from before root version 4 kept the head in a record of its own. Only a
        // root without a head can come with one, so this is looked up once, not per commit.
        let legacy = manifest.head().is_none()
            && manifest
                .expected(RecordKind::Setting, AUDIT_HEAD_ID)
                .is_some();
        manifest.set_head(encode_head(head));
        if legacy {
            manifest.set(RecordKind::Setting, AUDIT_HEAD_ID, None);
            deletes.push(RecordKey {
                kind: RecordKind::Setting as u8,
                id: AUDIT_HEAD_ID.to_vec(),
            });
        }
    }
    // A member's audit-only commit (no base) touches no record, and the root is shared: it
    // seals nothing, or it would move the root under the other members' commits.
    let manifest_changes = if base.is_some() {
        manifest
            .seal_changes(domain, entropy)
            .map_err(|_| PersistError::Seal("manifest sealing"))?
    } else {
        Vec::new()
    };
    for (kind, id, sealed) in manifest_changes {
        puts.push(Record {
            key: RecordKey {
                kind: kind as u8,
                id,
            },
            sealed,
        });
    }
    Ok((
        Request::Commit {
            seq,
            base,
            puts,
            deletes,
            audit: lines,
        },
        head,
    ))
}

/// The sealed setting that held the audit chain head before the manifest's root carried it
/// (root version 4). Read at load; the first commit that moves the head deletes it.
pub const AUDIT_HEAD_ID: &[u8] = b"audit-head";

pub(super) fn encode_head(head: Head) -> Vec<u8> {
    let mut out = Vec::with_capacity(40);
    out.extend_from_slice(&head.seq.to_be_bytes());
    out.extend_from_slice(&head.hash);
    out
}

pub(super) fn decode_head(bytes: &[u8]) -> Option<Head> {
    let seq: [u8; 8] = bytes.get(..8)?.try_into().ok()?;
    let hash: [u8; 32] = bytes.get(8..40)?.try_into().ok()?;
    (bytes.len() == 40).then_some(Head {
        seq: u64::from_be_bytes(seq),
        hash,
    })
}
