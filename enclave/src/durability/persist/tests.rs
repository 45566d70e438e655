//! The parent-tampering cases: a store written through the real committer, then altered the
//! way a hostile parent could, then loaded. Each altered record is refused by name; the rest
//! load.

#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tokio::io::DuplexStream;
use uuid::Uuid;
use zeroize::Zeroizing;

use ekms_shared::wire::v1::{self, Record, RecordKey, Request, Response};

use super::{load, Loaded, Loading, Persister, Touched, RIDER_INTERVAL};
use crate::config::Config;
use crate::env::OsEntropy;
use crate::keys::{Alias, Key, KeyMaterial, KeySpec, KeyStore, KeyUsage, Origin};
use crate::kms::state::State;
use crate::access::principals::Principals;
use crate::durability::seal::manifest::{Manifest, Refusal};
use crate::durability::seal::{DomainKey, NameKey, RecordKind};
use ekms_shared::release::Hold;

type Disk = Arc<Mutex<BTreeMap<(u8, Vec<u8>), Vec<u8>>>>;

/// A parent that keeps records in a map and answers Commit and Load. Like a store shared by
/// several enclaves, it refuses a commit not built on the last one it applied.
async fn fake_parent(mut stream: DuplexStream, disk: Disk) {
    let mut head: Option<u64> = None;
    while let Ok(Some(request)) = v1::read_frame::<_, Request>(&mut stream).await {
        let response = match request {
            Request::Commit {
                seq,
                base,
                puts,
                deletes,
                ..
            } if base.is_some_and(|b| b >= seq || head.is_some_and(|h| h != b)) => {
                drop((puts, deletes));
                Response::Error {
                    message: format!("commit {seq} built on {base:?}, the head is {head:?}"),
                }
            }
            Request::Commit {
                seq,
                base,
                puts,
                deletes,
                ..
            } => {
                if base.is_some() {
                    head = Some(seq);
                }
                let mut d = disk.lock().unwrap();
                for p in puts {
                    d.insert((p.key.kind, p.key.id), p.sealed);
                }
                for k in deletes {
                    d.remove(&(k.kind, k.id));
                }
                Response::Committed { seq }
            }
            Request::Load { after, limit } => {
                let d = disk.lock().unwrap();
                let start = after.map(|k| (k.kind, k.id));
                let mut records: Vec<Record> = d
                    .iter()
                    .filter(|(k, _)| start.as_ref().is_none_or(|s| *k > s))
                    .take(limit as usize)
                    .map(|((kind, id), sealed)| Record {
                        key: RecordKey {
                            kind: *kind,
                            id: id.clone(),
                        },
                        sealed: sealed.clone(),
                    })
                    .collect();
                let done = records.len() < limit as usize;
                records.truncate(limit as usize);
                Response::Records { records, done }
            }
            _ => Response::Pong,
        };
        if v1::write_frame(&mut stream, &response).await.is_err() {
            return;
        }
    }
}

fn chain() -> crate::durability::audit::AuditChain {
    crate::durability::audit::test_chain()
}

fn domain() -> DomainKey {
    DomainKey::new(Zeroizing::new([42; 32]))
}

fn key(n: u8) -> Key {
    let mut key = Key::new(
        Uuid::from_bytes([n; 16]),
        1,
        KeySpec::SymmetricDefault,
        KeyUsage::EncryptDecrypt,
        Origin::AwsKms,
        Some(KeyMaterial::symmetric(&Zeroizing::new([n; 32]))),
    );
    key.description = format!("key {n}");
    key
}

/// Writes keys 1..=4 and alias/a → key 1 through the committer, then a second generation of
/// key 2 (its description changed). Returns the disk and a copy of key 2's first generation.
async fn written_store() -> (Disk, Vec<u8>) {
    let disk: Disk = Arc::default();
    let config = Config::default();
    let (state, persister) = start_on(&disk, KeyStore::default(), Manifest::empty());
    for n in 1..=4 {
        state.write().insert(key(n), &config).unwrap();
    }
    state
        .write()
        .put_alias(
            "alias/a".to_owned(),
            Alias {
                target: Uuid::from_bytes([1; 16]),
                created: 1,
                updated: 1,
                creator: None,
            },
            &config,
        )
        .unwrap();
    let mut touched: Vec<Touched> = (1..=4)
        .map(|n| Touched::Key(Uuid::from_bytes([n; 16])))
        .collect();
    touched.push(Touched::Alias("alias/a".to_owned()));
    persister.persist(touched, None).await.unwrap();
    let key2_gen1 = disk.lock().unwrap()[&(RecordKind::Key as u8, vec![2; 16])].clone();
    state
        .write()
        .resolve_mut("k", &Uuid::from_bytes([2; 16]).to_string(), &config, 0)
        .unwrap()
        .description = "second generation".to_owned();
    persister
        .persist(vec![Touched::Key(Uuid::from_bytes([2; 16]))], None)
        .await
        .unwrap();
    (disk, key2_gen1)
}

/// A committer writing to a fake parent over `disk`, from `keys` and `manifest`.
fn start_on(disk: &Disk, keys: KeyStore, manifest: Manifest) -> (Arc<State>, Persister) {
    let (enclave_end, parent_end) = tokio::io::duplex(1 << 20);
    tokio::spawn(fake_parent(parent_end, disk.clone()));
    start_over(enclave_end, keys, manifest)
}

/// A committer in session 7 over `stream`, from `keys` and `manifest`.
fn start_over(stream: DuplexStream, keys: KeyStore, manifest: Manifest) -> (Arc<State>, Persister) {
    let state = Arc::new(State::new(keys, Principals::default()));
    let persister = Persister::start(
        Box::new(stream),
        state.clone(),
        Arc::new(domain()),
        manifest,
        Arc::new(OsEntropy::default()),
        chain(),
        7,
    );
    (state, persister)
}

/// Loads `disk` as the store would stream it (every record in (kind, id) order), on the pure
/// loader: no channel, no parent.
async fn load_from(disk: Disk) -> Loaded {
    let records: Vec<Record> = disk
        .lock()
        .unwrap()
        .iter()
        .map(|((kind, id), sealed)| Record {
            key: RecordKey {
                kind: *kind,
                id: id.clone(),
            },
            sealed: sealed.clone(),
        })
        .collect();
    let domain = domain();
    let config = Config::default();
    let mut loading = Loading::new(&domain, &config);
    loading.feed(&records);
    loading.finish()
}

fn key_id(n: u8) -> String {
    Uuid::from_bytes([n; 16]).to_string()
}

#[tokio::test]
async fn an_untouched_store_loads_everything() {
    let (disk, _) = written_store().await;
    let loaded = load_from(disk).await;
    assert!(loaded.refused.is_empty(), "{:?}", loaded.refused);
    assert_eq!(loaded.keys.key_count(), 4);
    let k2 = loaded.keys.by_id(&Uuid::from_bytes([2; 16]), 0).unwrap();
    assert_eq!(k2.description, "second generation");
    assert_eq!(
        loaded.keys.alias("alias/a").unwrap().target,
        Uuid::from_bytes([1; 16])
    );
}

#[tokio::test]
async fn a_dropped_record_is_refused_and_the_rest_load() {
    let (disk, _) = written_store().await;
    disk.lock()
        .unwrap()
        .remove(&(RecordKind::Key as u8, vec![3; 16]));
    let loaded = load_from(disk).await;
    assert_eq!(
        loaded.refused,
        vec![Refusal::Missing {
            kind: RecordKind::Key,
            id: key_id(3)
        }]
    );
    assert_eq!(loaded.keys.key_count(), 3);
}

#[tokio::test]
async fn a_replayed_older_generation_is_refused() {
    let (disk, key2_gen1) = written_store().await;
    disk.lock()
        .unwrap()
        .insert((RecordKind::Key as u8, vec![2; 16]), key2_gen1);
    let loaded = load_from(disk).await;
    assert!(
        matches!(
            loaded.refused.as_slice(),
            [Refusal::Generation { kind: RecordKind::Key, id, found: 1, expected: 2 }] if *id == key_id(2)
        ),
        "{:?}",
        loaded.refused
    );
    assert_eq!(loaded.keys.key_count(), 3);
}

#[tokio::test]
async fn swapped_records_are_refused() {
    let (disk, _) = written_store().await;
    {
        let mut d = disk.lock().unwrap();
        let a = d[&(RecordKind::Key as u8, vec![1; 16])].clone();
        let b = d[&(RecordKind::Key as u8, vec![4; 16])].clone();
        d.insert((RecordKind::Key as u8, vec![1; 16]), b);
        d.insert((RecordKind::Key as u8, vec![4; 16]), a);
    }
    let loaded = load_from(disk).await;
    let ids: Vec<&str> = loaded
        .refused
        .iter()
        .map(|r| match r {
            Refusal::Unopenable {
                kind: RecordKind::Key,
                id,
                ..
            } => id.as_str(),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(ids, [key_id(1), key_id(4)]);
    assert_eq!(loaded.keys.key_count(), 2);
}

#[tokio::test]
async fn a_bucket_from_another_point_in_time_is_refused() {
    // Snapshot the whole store after the first commit, then mix that snapshot's manifest
    // bucket for key 2 into the current store.
    let (disk, _) = written_store().await;
    let bucket = crate::durability::seal::manifest::bucket_of(RecordKind::Key, &[2; 16]);
    let old_disk: Disk = Arc::default();
    {
        // Re-create the first generation's bucket by writing the same first commit again.
        let config = Config::default();
        let (state, persister) = start_on(&old_disk, KeyStore::default(), Manifest::empty());
        state.write().insert(key(2), &config).unwrap();
        persister
            .persist(vec![Touched::Key(Uuid::from_bytes([2; 16]))], None)
            .await
            .unwrap();
    }
    let old_bucket = old_disk.lock().unwrap()
        [&(RecordKind::Bucket as u8, bucket.to_be_bytes().to_vec())]
        .clone();
    disk.lock().unwrap().insert(
        (RecordKind::Bucket as u8, bucket.to_be_bytes().to_vec()),
        old_bucket,
    );
    let loaded = load_from(disk).await;
    assert!(
        loaded.refused.iter().any(|r| matches!(r, Refusal::Bucket { bucket: b, why } if *b == bucket && why.contains("another point in time"))),
        "{:?}",
        loaded.refused
    );
    assert!(loaded.keys.by_id(&Uuid::from_bytes([2; 16]), 0).is_none());
    assert!(
        loaded.keys.by_id(&Uuid::from_bytes([1; 16]), 0).is_some()
            || bucket == crate::durability::seal::manifest::bucket_of(RecordKind::Key, &[1; 16])
    );
}

/// A page of the manifest from an earlier commit: the buckets it lists cannot be vouched
/// for, so the records under it are refused by name; the rest load.
#[tokio::test]
async fn a_page_from_another_point_in_time_is_refused() {
    let disk: Disk = Arc::default();
    let config = Config::default();
    let (state, persister) = start_on(&disk, KeyStore::default(), Manifest::empty());
    // Keys 1..=40 in one commit; then key 3 alone, which rewrites key 3's page.
    for n in 1..=40 {
        state.write().insert(key(n), &config).unwrap();
    }
    let all = (1..=40)
        .map(|n| Touched::Key(Uuid::from_bytes([n; 16])))
        .collect();
    persister.persist(all, None).await.unwrap();
    let (page, page_id) = Manifest::page_of(RecordKind::Key, &[3; 16]);
    let old_page = disk.lock().unwrap()[&(RecordKind::Root as u8, page_id.clone())].clone();
    state
        .write()
        .resolve_mut("k", &key_id(3), &config, 0)
        .unwrap()
        .description = "changed".to_owned();
    persister
        .persist(vec![Touched::Key(Uuid::from_bytes([3; 16]))], None)
        .await
        .unwrap();
    disk.lock()
        .unwrap()
        .insert((RecordKind::Root as u8, page_id.clone()), old_page);

    let loaded = load_from(disk.clone()).await;
    let under_page: Vec<u8> = (1..=40)
        .filter(|n| Manifest::page_of(RecordKind::Key, &[*n; 16]).0 == page)
        .collect();
    assert!(
        loaded.refused.iter().any(|r| matches!(r, Refusal::Page { page: p, why } if usize::from(*p) == page && why.contains("another point in time"))),
        "{:?}",
        loaded.refused
    );
    for n in 1..=40 {
        let found = loaded.keys.by_id(&Uuid::from_bytes([n; 16]), 0).is_some();
        assert_eq!(found, !under_page.contains(&n), "key {n}");
    }
    // Each refused key is named.
    let named = loaded
        .refused
        .iter()
        .filter(
            |r| matches!(r, Refusal::Bucket { why, .. } if why.contains("cannot be vouched for")),
        )
        .count();
    assert_eq!(named, under_page.len(), "{:?}", loaded.refused);

    // Dropped instead: the same keys are refused, the page named as missing.
    disk.lock()
        .unwrap()
        .remove(&(RecordKind::Root as u8, page_id));
    let loaded = load_from(disk).await;
    assert!(
        loaded.refused.iter().any(|r| matches!(r, Refusal::Page { page: p, why } if usize::from(*p) == page && why.contains("missing"))),
        "{:?}",
        loaded.refused
    );
    assert_eq!(loaded.keys.key_count(), 40 - under_page.len());
}

/// A store whose root predates pages (every bucket listed in the root) loads whole, and the
/// next commit gives it pages: it still loads whole after that.
#[tokio::test]
async fn a_store_from_before_pages_loads_and_gains_pages() {
    let (disk, _) = written_store().await;
    let loaded = load_from(disk.clone()).await;
    assert!(loaded.refused.is_empty(), "{:?}", loaded.refused);
    {
        let mut d = disk.lock().unwrap();
        d.retain(|(kind, id), _| *kind != RecordKind::Root as u8 || id.as_slice() == b"root");
        d.insert(
            (RecordKind::Root as u8, b"root".to_vec()),
            loaded.manifest.seal_unpaged_root(&domain()),
        );
    }
    let loaded = load_from(disk.clone()).await;
    assert!(loaded.refused.is_empty(), "{:?}", loaded.refused);
    assert_eq!(loaded.keys.key_count(), 4);

    let config = Config::default();
    let (state, persister) = start_on(&disk, loaded.keys, loaded.manifest);
    state.write().insert(key(5), &config).unwrap();
    persister
        .persist(vec![Touched::Key(Uuid::from_bytes([5; 16]))], None)
        .await
        .unwrap();
    let pages = disk
        .lock()
        .unwrap()
        .keys()
        .filter(|(kind, id)| *kind == RecordKind::Root as u8 && id.len() == 5)
        .count();
    assert_eq!(pages, crate::durability::seal::manifest::PAGES);
    let loaded = load_from(disk).await;
    assert!(loaded.refused.is_empty(), "{:?}", loaded.refused);
    assert_eq!(loaded.keys.key_count(), 5);
}

#[tokio::test]
async fn an_altered_record_or_another_domain_key_is_refused() {
    let (disk, _) = written_store().await;
    {
        let mut d = disk.lock().unwrap();
        let id = NameKey::of(&domain()).record_id(RecordKind::Alias, "alias/a");
        let r = d.get_mut(&(RecordKind::Alias as u8, id)).unwrap();
        let last = r.len() - 1;
        r[last] ^= 1;
    }
    let loaded = load_from(disk.clone()).await;
    assert!(matches!(
        loaded.refused.as_slice(),
        [Refusal::Unopenable {
            kind: RecordKind::Alias,
            ..
        }]
    ));
    assert_eq!(loaded.keys.key_count(), 4);
    // Under another domain key not even the root opens: nothing is trusted.
    let (mut enclave_end, parent_end) = tokio::io::duplex(1 << 20);
    tokio::spawn(fake_parent(parent_end, disk));
    let other = DomainKey::new(Zeroizing::new([7; 32]));
    let loaded = load(&mut enclave_end, &other, &Config::default())
        .await
        .unwrap();
    assert!(matches!(loaded.refused.first(), Some(Refusal::Root(_))));
    assert_eq!(loaded.keys.key_count(), 0);
}

#[tokio::test]
async fn a_broken_store_channel_fails_the_waiting_request() {
    let (enclave_end, parent_end) = tokio::io::duplex(1 << 16);
    drop(parent_end);
    let (state, persister) = start_over(enclave_end, KeyStore::default(), Manifest::empty());
    state.write().insert(key(1), &Config::default()).unwrap();
    assert!(persister
        .persist(vec![Touched::Key(Uuid::from_bytes([1; 16]))], None)
        .await
        .is_err());
    // Fail-stop: everything after fails at once, and the fatal signal fired.
    tokio::time::timeout(std::time::Duration::from_secs(5), persister.fatal())
        .await
        .unwrap();
    assert!(persister
        .persist(vec![Touched::Key(Uuid::from_bytes([1; 16]))], None)
        .await
        .is_err());
}

/// Each commit's seq, the ids of the key records it carried, and its audit lines (as text).
type CommitLog = Arc<Mutex<Vec<(u64, Vec<Vec<u8>>, Vec<String>)>>>;

/// A parent that answers each commit after `delay`, recording which key records and how many
/// audit lines it carried.
async fn recording_parent(
    mut stream: DuplexStream,
    commits: CommitLog,
    delay: std::time::Duration,
) {
    while let Ok(Some(request)) = v1::read_frame::<_, Request>(&mut stream).await {
        let response = match request {
            Request::Commit {
                seq, puts, audit, ..
            } => {
                tokio::time::sleep(delay).await;
                let keys = puts
                    .into_iter()
                    .filter(|p| p.key.kind == RecordKind::Key as u8)
                    .map(|p| p.key.id)
                    .collect();
                let lines = audit
                    .iter()
                    .map(|l| String::from_utf8_lossy(l).into_owned())
                    .collect();
                commits.lock().unwrap().push((seq, keys, lines));
                Response::Committed { seq }
            }
            _ => Response::Pong,
        };
        if v1::write_frame(&mut stream, &response).await.is_err() {
            return;
        }
    }
}

/// Every queued change is carried by the commit whose number it was given, however many
/// requests queue at once: the parent holds each answer for exactly that commit.
#[tokio::test]
async fn each_change_rides_the_commit_it_was_promised() {
    let (enclave_end, parent_end) = tokio::io::duplex(1 << 20);
    let commits = Arc::default();
    tokio::spawn(recording_parent(
        parent_end,
        Arc::clone(&commits),
        std::time::Duration::from_millis(5),
    ));
    let (state, persister) = start_over(enclave_end, KeyStore::default(), Manifest::empty());
    assert_eq!(persister.release_point(), Hold { session: 7, seq: 0 });

    let mut tasks = tokio::task::JoinSet::new();
    for n in 1..=60u8 {
        state.write().insert(key(n), &Config::default()).unwrap();
        let persister = persister.clone();
        tasks.spawn(async move {
            let hold = persister
                .submit(vec![Touched::Key(Uuid::from_bytes([n; 16]))], None)
                .await
                .unwrap();
            // Whatever is answered after queueing waits at least as long.
            assert!(persister.release_point().seq >= hold.seq);
            (n, hold)
        });
        if n % 7 == 0 {
            tokio::task::yield_now().await;
        }
    }
    let mut holds = Vec::new();
    while let Some(done) = tasks.join_next().await {
        holds.push(done.unwrap());
    }
    let last = holds.iter().map(|(_, h)| h.seq).max().unwrap();
    persister.durable_through(last).await.unwrap();

    let commits = commits.lock().unwrap().clone();
    assert!(commits.len() > 1, "the queue was cut into several commits");
    for (n, hold) in holds {
        assert_eq!(hold.session, 7);
        let carried_by: Vec<u64> = commits
            .iter()
            .filter(|(_, keys, _)| keys.contains(&vec![n; 16]))
            .map(|(seq, _, _)| *seq)
            .collect();
        assert_eq!(carried_by, vec![hold.seq], "key {n}");
    }
    // Seqs are the manifest's: consecutive from 1.
    let seqs: Vec<u64> = commits.iter().map(|(seq, _, _)| *seq).collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
}

/// After a restart, answers wait for nothing until something is queued: the commits of
/// earlier sessions are durable, and the parent knows only this session's.
#[tokio::test]
async fn a_new_session_holds_nothing_until_a_change_is_queued() {
    let (disk, _) = written_store().await;
    let loaded = load_from(disk.clone()).await;
    let before = loaded.manifest.seq();
    assert!(before > 0);
    let (state, persister) = start_on(&disk, loaded.keys, loaded.manifest);
    assert_eq!(persister.release_point(), Hold { session: 7, seq: 0 });
    state.write().insert(key(9), &Config::default()).unwrap();
    let hold = persister
        .submit(vec![Touched::Key(Uuid::from_bytes([9; 16]))], None)
        .await
        .unwrap();
    assert_eq!(
        hold,
        Hold {
            session: 7,
            seq: before + 1
        }
    );
    assert_eq!(persister.release_point(), hold);
    persister.durable_through(hold.seq).await.unwrap();
}

fn audit_record(n: u64) -> crate::durability::audit::Record {
    crate::durability::audit::Record::from_value(&serde_json::json!({"eventName": "Encrypt", "n": n}))
}

/// The records the last commit put, by (kind, id).
fn puts_of_last_commit(commits: &Arc<Mutex<Vec<Request>>>) -> Vec<(u8, Vec<u8>)> {
    let commits = commits.lock().unwrap();
    match commits.last() {
        Some(Request::Commit { puts, .. }) => puts
            .iter()
            .map(|p| (p.key.kind, p.key.id.clone()))
            .collect(),
        other => panic!("no commit: {other:?}"),
    }
}

/// A parent over `disk` that also keeps every request it was sent.
async fn keeping_parent(stream: DuplexStream, disk: Disk, kept: Arc<Mutex<Vec<Request>>>) {
    let (enclave_side, ours) = tokio::io::duplex(1 << 20);
    tokio::spawn(fake_parent(enclave_side, disk));
    let (mut from_enclave, mut to_enclave) = tokio::io::split(stream);
    let (mut from_parent, mut to_parent) = tokio::io::split(ours);
    tokio::spawn(async move {
        while let Ok(Some(response)) = v1::read_frame::<_, Response>(&mut from_parent).await {
            if v1::write_frame(&mut to_enclave, &response).await.is_err() {
                return;
            }
        }
    });
    while let Ok(Some(request)) = v1::read_frame::<_, Request>(&mut from_enclave).await {
        kept.lock().unwrap().push(request.clone());
        if v1::write_frame(&mut to_parent, &request).await.is_err() {
            return;
        }
    }
}

/// The audit chain's head rides in the manifest's root: a commit that only audits writes the
/// root and nothing else, and a restart continues the chain from the head the root carries.
#[tokio::test]
async fn an_audit_only_commit_writes_the_root_alone_and_the_head_survives_a_restart() {
    let (disk, _) = written_store().await;
    let loaded = load_from(disk.clone()).await;
    assert!(loaded.refused.is_empty(), "{:?}", loaded.refused);
    let kept = Arc::default();
    let (enclave_end, parent_end) = tokio::io::duplex(1 << 20);
    tokio::spawn(keeping_parent(parent_end, disk.clone(), Arc::clone(&kept)));
    let (_state, persister) = start_over(enclave_end, loaded.keys, loaded.manifest);
    for n in 1..=3 {
        persister
            .persist(Vec::new(), Some(audit_record(n)))
            .await
            .unwrap();
        assert_eq!(
            puts_of_last_commit(&kept),
            vec![(RecordKind::Root as u8, b"root".to_vec())],
            "commit {n}"
        );
    }
    assert!(
        !disk
            .lock()
            .unwrap()
            .keys()
            .any(|(kind, _)| *kind == RecordKind::Setting as u8),
        "no record of its own for the head"
    );

    let loaded = load_from(disk).await;
    assert!(loaded.refused.is_empty(), "{:?}", loaded.refused);
    assert_eq!(loaded.audit_head.seq, 3);
    assert_eq!(loaded.keys.key_count(), 4);
}

/// A store from before the root carried the head (it was a sealed setting of its own) loads
/// with that head; the next audited commit moves it into the root and deletes the setting.
#[tokio::test]
async fn a_head_kept_in_a_setting_loads_and_moves_into_the_root() {
    let (disk, _) = written_store().await;
    let mut loaded = load_from(disk.clone()).await;
    assert!(loaded.manifest.head().is_none(), "nothing audited yet");
    // Written as before: the head sealed as a setting, listed in the manifest; a version-3 root.
    let old_head = crate::durability::audit::Head {
        seq: 41,
        hash: [5; 32],
    };
    {
        let manifest = &mut loaded.manifest;
        let seq = manifest.next_seq();
        let sealed = crate::durability::seal::record::seal(
            &domain(),
            RecordKind::Setting,
            super::commit::AUDIT_HEAD_ID,
            seq,
            &super::commit::encode_head(old_head),
            &OsEntropy::default(),
        )
        .unwrap();
        manifest.set(RecordKind::Setting, super::commit::AUDIT_HEAD_ID, Some(seq));
        let mut d = disk.lock().unwrap();
        d.insert(
            (RecordKind::Setting as u8, super::commit::AUDIT_HEAD_ID.to_vec()),
            sealed,
        );
        for (kind, id, sealed) in manifest
            .seal_changes(&domain(), &OsEntropy::default())
            .unwrap()
        {
            d.insert((kind as u8, id), sealed);
        }
    }
    let loaded = load_from(disk.clone()).await;
    assert!(loaded.refused.is_empty(), "{:?}", loaded.refused);
    assert_eq!(loaded.audit_head, old_head);
    assert!(loaded.manifest.head().is_none());

    let (_state, persister) = start_on(&disk, loaded.keys, loaded.manifest);
    persister
        .persist(Vec::new(), Some(audit_record(1)))
        .await
        .unwrap();
    assert!(!disk
        .lock()
        .unwrap()
        .contains_key(&(RecordKind::Setting as u8, super::commit::AUDIT_HEAD_ID.to_vec())));
    let loaded = load_from(disk).await;
    assert!(loaded.refused.is_empty(), "{:?}", loaded.refused);
    // The test chain starts from genesis: one record later, its head is seq 1.
    assert_eq!(loaded.audit_head.seq, 1);
    assert!(loaded.manifest.head().is_some());
}

/// Refused requests (a flood of unsigned ones, say) once forced a durable commit each. Their
/// records now ride with the next commit: none forces one of its own, no answer is held for
/// them, and they are written within RIDER_INTERVAL even when nothing else happens.
#[tokio::test]
async fn refused_requests_ride_along_and_force_no_commit_of_their_own() {
    let (enclave_end, parent_end) = tokio::io::duplex(1 << 20);
    let commits: CommitLog = Arc::default();
    tokio::spawn(recording_parent(
        parent_end,
        Arc::clone(&commits),
        std::time::Duration::ZERO,
    ));
    let (state, persister) = start_over(enclave_end, KeyStore::default(), Manifest::empty());
    for n in 0..100 {
        persister.note_refused(audit_record(n)).unwrap();
    }
    tokio::time::sleep(RIDER_INTERVAL / 3).await;
    assert!(commits.lock().unwrap().is_empty(), "refusals made a commit");
    assert_eq!(persister.release_point(), Hold { session: 7, seq: 0 });

    // A real change takes them along: one commit, its record and the hundred refusals.
    state.write().insert(key(1), &Config::default()).unwrap();
    persister
        .persist(
            vec![Touched::Key(Uuid::from_bytes([1; 16]))],
            Some(audit_record(100)),
        )
        .await
        .unwrap();
    let first = commits.lock().unwrap().clone();
    assert_eq!(first.len(), 1, "{first:?}");
    // Its record, the hundred refusals (and the chain's own opening lines).
    assert!(first[0].2.len() >= 101, "{first:?}");

    // Alone, they are written within the interval, in one commit.
    for n in 0..10 {
        persister.note_refused(audit_record(200 + n)).unwrap();
    }
    tokio::time::sleep(RIDER_INTERVAL + std::time::Duration::from_millis(300)).await;
    let all = commits.lock().unwrap().clone();
    let later = &all[1..];
    // (Besides them, at most the audit checkpoints that follow written records.)
    assert!(!later.is_empty() && later.len() <= 3, "{all:?}");
    assert!(later.iter().any(|(_, _, n)| n.len() >= 10), "{all:?}");
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Alias and principal names were record ids in clear, so the parent learned them. Now their
/// ids are keyed digests: no record id the parent holds contains a name.
#[tokio::test]
async fn no_record_id_holds_an_alias_or_principal_name() {
    let (disk, _) = written_store().await;
    let ids: Vec<Vec<u8>> = disk
        .lock()
        .unwrap()
        .keys()
        .map(|(_, id)| id.clone())
        .collect();
    assert!(!ids.iter().any(|id| contains(id, b"alias/")), "{ids:?}");
    let loaded = load_from(disk).await;
    assert!(loaded.refused.is_empty(), "{:?}", loaded.refused);
    assert!(loaded.legacy.is_empty());
    assert_eq!(
        loaded.keys.alias("alias/a").map(|a| a.target),
        Some(Uuid::from_bytes([1; 16]))
    );
}

/// The alias record as it was sealed when its name was its record id: no name inside.
#[derive(serde::Serialize)]
struct LegacyAlias {
    v: u8,
    target: serde_bytes::ByteBuf,
    created: i64,
    updated: i64,
}

/// A store written when names were record ids loads, and its renames move each such record
/// under its name's digest in one commit; the store then holds no name, and loads the same.
#[tokio::test]
async fn a_store_with_names_for_ids_loads_and_moves_them_under_digests() {
    let (disk, _) = written_store().await;
    let domain = domain();
    let names = NameKey::of(&domain);
    let mut manifest = load_from(disk.clone()).await.manifest;
    {
        // Rewrite alias/a the old way, and add a principal sealed the old way.
        let mut d = disk.lock().unwrap();
        let digest = names.record_id(RecordKind::Alias, "alias/a");
        d.remove(&(RecordKind::Alias as u8, digest.clone()));
        manifest.set(RecordKind::Alias, &digest, None);
        let seq = manifest.next_seq();
        let legacy = serde_cbor::to_vec(&LegacyAlias {
            v: 1,
            target: serde_bytes::ByteBuf::from(vec![1; 16]),
            created: 1,
            updated: 1,
        })
        .unwrap();
        let entropy = OsEntropy::default();
        let put = |d: &mut BTreeMap<(u8, Vec<u8>), Vec<u8>>,
                   kind: RecordKind,
                   id: &[u8],
                   plain: &[u8]| {
            let sealed =
                crate::durability::seal::record::seal(&domain, kind, id, seq, plain, &entropy).unwrap();
            d.insert((kind as u8, id.to_vec()), sealed);
        };
        put(&mut d, RecordKind::Alias, b"alias/a", &legacy);
        manifest.set(RecordKind::Alias, b"alias/a", Some(seq));
        let bob = crate::durability::seal::codec::PrincipalRecord::new(
            "bob",
            vec![(
                "AKIABOBBOBBOBBOBBOB1".to_owned(),
                "bobsecretbobsecret".to_owned(),
            )],
            None,
        );
        let plain = crate::durability::seal::codec::encode_principal(&bob).unwrap();
        put(&mut d, RecordKind::Principal, b"bob", &plain);
        manifest.set(RecordKind::Principal, b"bob", Some(seq));
        for (kind, id, sealed) in manifest.seal_changes(&domain, &entropy).unwrap() {
            d.insert((kind as u8, id), sealed);
        }
    }
    let loaded = load_from(disk.clone()).await;
    assert!(loaded.refused.is_empty(), "{:?}", loaded.refused);
    assert_eq!(loaded.legacy.len(), 2);
    assert_eq!(
        loaded.keys.alias("alias/a").map(|a| a.target),
        Some(Uuid::from_bytes([1; 16]))
    );
    assert_eq!(loaded.principals[0].name, "bob");

    // The renames, committed as the server does after unseal.
    let renames = loaded.renames();
    let mut principals = Principals::default();
    for p in &loaded.principals {
        principals.insert_sealed(p, &Config::default()).unwrap();
    }
    let (enclave_end, parent_end) = tokio::io::duplex(1 << 20);
    tokio::spawn(fake_parent(parent_end, disk.clone()));
    let state = Arc::new(State::new(loaded.keys, principals));
    let persister = Persister::start(
        Box::new(enclave_end),
        state,
        Arc::new(domain),
        loaded.manifest,
        Arc::new(OsEntropy::default()),
        chain(),
        7,
    );
    persister.persist(renames, None).await.unwrap();

    let ids: Vec<Vec<u8>> = disk
        .lock()
        .unwrap()
        .keys()
        .map(|(_, id)| id.clone())
        .collect();
    assert!(
        !ids.iter().any(|id| contains(id, b"alias/") || id == b"bob"),
        "{ids:?}"
    );
    let again = load_from(disk).await;
    assert!(again.refused.is_empty(), "{:?}", again.refused);
    assert!(again.legacy.is_empty());
    assert_eq!(
        again.keys.alias("alias/a").map(|a| a.target),
        Some(Uuid::from_bytes([1; 16]))
    );
    assert_eq!(again.principals.len(), 1);
    assert_eq!(again.principals[0].name, "bob");
}

/// A parent that answers the first Load with `records`, in the order given, and then nothing.
async fn scripted_parent(mut stream: DuplexStream, records: Vec<Record>) {
    let mut records = Some(records);
    while let Ok(Some(request)) = v1::read_frame::<_, Request>(&mut stream).await {
        let response = match request {
            Request::Load { .. } => Response::Records {
                records: records.take().unwrap_or_default(),
                done: true,
            },
            _ => Response::Pong,
        };
        if v1::write_frame(&mut stream, &response).await.is_err() {
            return;
        }
    }
}

fn as_records(disk: &BTreeMap<(u8, Vec<u8>), Vec<u8>>, kinds: &[RecordKind]) -> Vec<Record> {
    disk.iter()
        .filter(|((k, _), _)| kinds.iter().any(|kind| *kind as u8 == *k))
        .map(|((kind, id), sealed)| Record {
            key: RecordKey {
                kind: *kind,
                id: id.clone(),
            },
            sealed: sealed.clone(),
        })
        .collect()
}

/// Keys 1..=3 written; a snapshot taken; then key 2 destroyed. The old snapshot and the store.
async fn store_before_and_after_a_deletion() -> (BTreeMap<(u8, Vec<u8>), Vec<u8>>, Disk) {
    let disk: Disk = Arc::default();
    let config = Config::default();
    let (state, persister) = start_on(&disk, KeyStore::default(), Manifest::empty());
    for n in 1..=3 {
        state.write().insert(key(n), &config).unwrap();
    }
    let all = (1..=3)
        .map(|n| Touched::Key(Uuid::from_bytes([n; 16])))
        .collect();
    persister.persist(all, None).await.unwrap();
    let old = disk.lock().unwrap().clone();
    let two = Uuid::from_bytes([2; 16]);
    state.write().schedule_deletion(&two, 1, &config).unwrap();
    state.write().sweep(2);
    persister
        .persist(vec![Touched::Key(two)], None)
        .await
        .unwrap();
    assert!(!disk
        .lock()
        .unwrap()
        .contains_key(&(RecordKind::Key as u8, vec![2; 16])));
    (old, disk)
}

/// The attack of the hostile-parent review: answer the Load with an old snapshot's root, pages
/// and buckets, then the current ones, then records that exist only in the old snapshot. The
/// loader once took several roots and merged bucket entries, so a destroyed key (or a deleted
/// principal) came back. Now the stream must be exact: the load is refused, by name.
#[tokio::test]
async fn mixing_an_old_snapshot_into_the_load_refuses_it() {
    let (old, disk) = store_before_and_after_a_deletion().await;
    let current = disk.lock().unwrap().clone();
    let manifests = [RecordKind::Root, RecordKind::Bucket];
    let mut stream = as_records(&old, &manifests);
    stream.extend(as_records(&current, &manifests));
    stream.extend(as_records(&old, &[RecordKind::Key]));
    let (mut enclave_end, parent_end) = tokio::io::duplex(1 << 20);
    tokio::spawn(scripted_parent(parent_end, stream));
    let loaded = load(&mut enclave_end, &domain(), &Config::default())
        .await
        .unwrap();
    assert!(
        loaded
            .refused
            .iter()
            .any(|r| matches!(r, Refusal::Root(why) if why.contains("out of order"))),
        "{:?}",
        loaded.refused
    );
    assert!(loaded.keys.by_id(&Uuid::from_bytes([2; 16]), 0).is_none());
}

/// The same records in order, but each twice (a replayed page of the Load): refused.
#[tokio::test]
async fn a_record_returned_twice_refuses_the_load() {
    let (_, disk) = store_before_and_after_a_deletion().await;
    let current = disk.lock().unwrap().clone();
    let mut stream = Vec::new();
    for r in as_records(
        &current,
        &[RecordKind::Root, RecordKind::Bucket, RecordKind::Key],
    ) {
        stream.push(r.clone());
        stream.push(r);
    }
    let (mut enclave_end, parent_end) = tokio::io::duplex(1 << 20);
    tokio::spawn(scripted_parent(parent_end, stream));
    let loaded = load(&mut enclave_end, &domain(), &Config::default())
        .await
        .unwrap();
    assert!(
        matches!(loaded.refused.as_slice(), [Refusal::Root(why)] if why.contains("repeated")),
        "{:?}",
        loaded.refused
    );
}

/// A destroyed key's record kept by the parent (in order, the current manifest): it is not
/// loaded, and the refusal names it.
#[tokio::test]
async fn a_record_the_manifest_does_not_list_is_refused_by_name() {
    let (old, disk) = store_before_and_after_a_deletion().await;
    let key2 = (RecordKind::Key as u8, vec![2; 16]);
    disk.lock()
        .unwrap()
        .insert(key2.clone(), old[&key2].clone());
    let loaded = load_from(disk).await;
    assert!(loaded.keys.by_id(&Uuid::from_bytes([2; 16]), 0).is_none());
    assert!(
        matches!(loaded.refused.as_slice(), [Refusal::Unlisted { kind: RecordKind::Key, id }] if *id == Uuid::from_bytes([2; 16]).to_string()),
        "{:?}",
        loaded.refused
    );
    assert_eq!(loaded.keys.key_count(), 2);
}

/// A change queued under its lock moves the release point at once, and rides with its
/// request's full audit record in one commit; a record that never comes leaves the
/// placeholder, and one that comes too late is dropped, not kept.
#[tokio::test]
async fn a_change_queued_under_its_lock_commits_with_its_record() {
    let (enclave_end, parent_end) = tokio::io::duplex(1 << 20);
    let commits: CommitLog = Arc::default();
    tokio::spawn(recording_parent(
        parent_end,
        Arc::clone(&commits),
        std::time::Duration::ZERO,
    ));
    let lines = || -> Vec<String> {
        commits
            .lock()
            .unwrap()
            .iter()
            .flat_map(|(_, _, l)| l.clone())
            .collect()
    };
    let (state, persister) = start_over(enclave_end, KeyStore::default(), Manifest::empty());
    let record =
        |name: &str| crate::durability::audit::Record::from_value(&serde_json::json!({"eventName": name}));

    state.write().insert(key(1), &Config::default()).unwrap();
    let (hold, ticket) = persister
        .enqueue_change(
            vec![Touched::Key(Uuid::from_bytes([1; 16]))],
            Some(record("placeholder-1")),
        )
        .unwrap();
    assert_eq!(
        persister.release_point(),
        hold,
        "answers from now on wait for it"
    );
    persister.attach(ticket.unwrap(), record("full-1"));
    persister.durable_through(hold.seq).await.unwrap();
    let first = lines();
    assert!(first.iter().any(|l| l.contains("full-1")), "{first:?}");
    assert!(
        !first.iter().any(|l| l.contains("placeholder-1")),
        "{first:?}"
    );

    // No record attached in time: the placeholder stands; a late one is not kept.
    state.write().insert(key(2), &Config::default()).unwrap();
    let (hold, ticket) = persister
        .enqueue_change(
            vec![Touched::Key(Uuid::from_bytes([2; 16]))],
            Some(record("placeholder-2")),
        )
        .unwrap();
    persister.durable_through(hold.seq).await.unwrap();
    persister.attach(ticket.unwrap(), record("late-2"));
    let all = lines();
    assert!(all.iter().any(|l| l.contains("placeholder-2")), "{all:?}");
    state.write().insert(key(3), &Config::default()).unwrap();
    persister
        .persist(
            vec![Touched::Key(Uuid::from_bytes([3; 16]))],
            Some(record("next")),
        )
        .await
        .unwrap();
    let all = lines();
    assert!(!all.iter().any(|l| l.contains("late-2")), "{all:?}");
}

fn grant_on(key: u8, n: u8, grantee: &str) -> crate::access::policy::Grant {
    crate::access::policy::Grant {
        grant_id: format!("{n:02x}").repeat(32),
        key_id: Uuid::from_bytes([key; 16]).to_string(),
        name: None,
        grantee_principal: grantee.to_owned(),
        retiring_principal: None,
        operations: vec![crate::access::policy::grants::GrantOperation::Encrypt],
        constraints: None,
        issuing_account: "111122223333".to_owned(),
        creation_date: i64::from(n),
    }
}

fn grant_ids(loaded: &Loaded, key: u8) -> Vec<String> {
    loaded
        .keys
        .by_id(&Uuid::from_bytes([key; 16]), 0)
        .map(|k| k.grants.iter().map(|g| g.grant_id.clone()).collect())
        .unwrap_or_default()
}

/// Grants are records of their own: each change commits one record; a revoked grant's old
/// record, replayed, is refused; a destroyed key takes its grants' records with it.
#[tokio::test]
async fn grants_are_records_and_go_with_their_key() {
    let disk: Disk = Arc::default();
    let config = Config::default();
    let one = Uuid::from_bytes([1; 16]);
    let (state, persister) = start_on(&disk, KeyStore::default(), Manifest::empty());
    state.write().insert(key(1), &config).unwrap();
    let mut touched = vec![Touched::Key(one)];
    for n in 1..=3 {
        let grant = grant_on(1, n, "arn:aws:iam::111122223333:user/bob");
        touched.push(Touched::Grant(one, grant.grant_id.clone()));
        state.write().load_grant(&one, grant).unwrap();
    }
    persister.persist(touched, None).await.unwrap();
    let grant_records = |d: &Disk| {
        d.lock()
            .unwrap()
            .keys()
            .filter(|(kind, _)| *kind == RecordKind::Grant as u8)
            .count()
    };
    assert_eq!(grant_records(&disk), 3);
    let loaded = load_from(disk.clone()).await;
    assert!(loaded.refused.is_empty(), "{:?}", loaded.refused);
    assert_eq!(grant_ids(&loaded, 1).len(), 3);

    // Revoked: its record is deleted; replaying the old one is refused by name.
    let revoked = grant_on(1, 2, "").grant_id;
    let record_id = crate::durability::seal::codec::grant_record_id(&one, &revoked);
    let old = disk.lock().unwrap()[&(RecordKind::Grant as u8, record_id.clone())].clone();
    state
        .write()
        .resolve_mut("k", &one.to_string(), &config, 0)
        .unwrap()
        .remove_grant(&revoked);
    persister
        .persist(vec![Touched::Grant(one, revoked.clone())], None)
        .await
        .unwrap();
    assert_eq!(grant_records(&disk), 2);
    let loaded = load_from(disk.clone()).await;
    assert!(loaded.refused.is_empty(), "{:?}", loaded.refused);
    assert!(!grant_ids(&loaded, 1).contains(&revoked));
    disk.lock()
        .unwrap()
        .insert((RecordKind::Grant as u8, record_id), old);
    let replayed = load_from(disk.clone()).await;
    assert_eq!(replayed.refused.len(), 1, "{:?}", replayed.refused);
    assert!(
        matches!(&replayed.refused[0], Refusal::Unlisted { kind: RecordKind::Grant, id }
            if id == &format!("{one}/{revoked}")),
        "{:?}",
        replayed.refused
    );
    assert!(!grant_ids(&replayed, 1).contains(&revoked));
    disk.lock().unwrap().remove(&(
        RecordKind::Grant as u8,
        crate::durability::seal::codec::grant_record_id(&one, &revoked),
    ));

    // Destroyed: the key and every grant record go in one commit.
    state.write().schedule_deletion(&one, 1, &config).unwrap();
    let (keys, _, grants) = state.write().sweep(2);
    assert_eq!(grants.len(), 2);
    let touched = keys
        .into_iter()
        .map(Touched::Key)
        .chain(grants.into_iter().map(|(k, g)| Touched::Grant(k, g)))
        .collect();
    persister.persist(touched, None).await.unwrap();
    assert_eq!(grant_records(&disk), 0);
    let loaded = load_from(disk).await;
    assert!(loaded.refused.is_empty(), "{:?}", loaded.refused);
    assert_eq!(loaded.keys.key_count(), 0);
}

/// A key record written when grants lived inside it loads with them, and the migration the
/// server commits after unseal moves them into records of their own.
#[tokio::test]
async fn a_key_record_with_grants_inside_moves_them_into_records() {
    let (disk, _) = written_store().await;
    let domain = domain();
    let mut manifest = load_from(disk.clone()).await.manifest;
    let one = Uuid::from_bytes([1; 16]);
    {
        let mut d = disk.lock().unwrap();
        let seq = manifest.next_seq();
        let plain = crate::durability::seal::codec::encode_key(&key(1)).unwrap();
        let mut value: serde_cbor::Value = serde_cbor::from_slice(&plain).unwrap();
        let serde_cbor::Value::Map(fields) = &mut value else {
            panic!("a key record is a map")
        };
        let grants = vec![
            grant_on(1, 1, "arn:aws:iam::111122223333:user/bob"),
            grant_on(1, 2, "arn:aws:iam::111122223333:user/carol"),
        ];
        fields.insert(
            serde_cbor::Value::Text("grants".to_owned()),
            serde_cbor::value::to_value(&grants).unwrap(),
        );
        let legacy = serde_cbor::to_vec(&value).unwrap();
        let entropy = OsEntropy::default();
        let id = one.as_bytes().to_vec();
        let sealed =
            crate::durability::seal::record::seal(&domain, RecordKind::Key, &id, seq, &legacy, &entropy)
                .unwrap();
        d.insert((RecordKind::Key as u8, id.clone()), sealed);
        manifest.set(RecordKind::Key, &id, Some(seq));
        for (kind, id, sealed) in manifest.seal_changes(&domain, &entropy).unwrap() {
            d.insert((kind as u8, id), sealed);
        }
    }
    let loaded = load_from(disk.clone()).await;
    assert!(loaded.refused.is_empty(), "{:?}", loaded.refused);
    assert_eq!(grant_ids(&loaded, 1).len(), 2);
    let renames = loaded.renames();
    assert_eq!(renames.len(), 3, "{renames:?}");

    let (enclave_end, parent_end) = tokio::io::duplex(1 << 20);
    tokio::spawn(fake_parent(parent_end, disk.clone()));
    let state = Arc::new(State::new(loaded.keys, Principals::default()));
    let persister = Persister::start(
        Box::new(enclave_end),
        state,
        Arc::new(domain),
        loaded.manifest,
        Arc::new(OsEntropy::default()),
        chain(),
        7,
    );
    persister.persist(renames, None).await.unwrap();
    let again = load_from(disk).await;
    assert!(again.refused.is_empty(), "{:?}", again.refused);
    assert!(again.legacy_grants.is_empty());
    let expected: Vec<String> = (1..=2).map(|n| grant_on(1, n, "").grant_id).collect();
    assert_eq!(grant_ids(&again, 1), expected);
}

/// A member's commits: one that changes records builds on the last one that did, one that only
/// audits builds on nothing and carries no record (not even the root), and its lines name the
/// member.
#[tokio::test]
async fn a_members_audit_only_commits_build_on_nothing_and_seal_nothing() {
    type Seen = Arc<Mutex<Vec<(u64, Option<u64>, usize, Vec<Vec<u8>>)>>>;
    let seen: Seen = Arc::default();
    let (enclave_end, mut parent_end) = tokio::io::duplex(1 << 20);
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok(Some(request)) = v1::read_frame::<_, Request>(&mut parent_end).await {
            let Request::Commit {
                seq,
                base,
                puts,
                audit,
                ..
            } = request
            else {
                continue;
            };
            let lines = audit.into_iter().map(serde_bytes::ByteBuf::into_vec).collect();
            log.lock().unwrap().push((seq, base, puts.len(), lines));
            v1::write_frame(&mut parent_end, &Response::Committed { seq })
                .await
                .unwrap();
        }
    });
    let state = Arc::new(State::new(KeyStore::default(), Principals::default()));
    let persister = Persister::start(
        Box::new(enclave_end),
        state.clone(),
        Arc::new(domain()),
        Manifest::empty(),
        Arc::new(OsEntropy::default()),
        chain().for_member("ab12".to_owned()),
        7,
    );
    let config = Config::default();
    state.write().insert(key(1), &config).unwrap();
    let k1 = Touched::Key(Uuid::from_bytes([1; 16]));
    persister.persist(vec![k1.clone()], None).await.unwrap();
    let read = crate::durability::audit::Record::from_value(&serde_json::json!({"read": 1}));
    persister.persist(Vec::new(), Some(read)).await.unwrap();
    persister.persist(vec![k1], None).await.unwrap();
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 3, "{seen:?}");
    let (first, first_base, first_puts, _) = &seen[0];
    assert_eq!(*first_base, Some(0));
    assert!(*first_puts >= 3, "the key, its bucket, page and root");
    let (second, second_base, second_puts, lines) = &seen[1];
    assert!(second > first);
    assert_eq!((*second_base, *second_puts), (None, 0));
    let line = String::from_utf8(lines[0].clone()).unwrap();
    assert!(line.contains(r#""member":"ab12""#), "{line}");
    let (_, third_base, _, _) = &seen[2];
    assert_eq!(*third_base, Some(*first), "built on the last commit that changed records");
}

// Catching up by difference (`catch_up.rs`): member A commits, member B reads only what changed.

type Overrides = BTreeMap<(u8, Vec<u8>), Option<Vec<u8>>>;

/// A parent that answers Fetch from `disk` (one snapshot: the tests do not commit meanwhile),
/// except for the records in `overrides`: another record's bytes in their place, or none.
async fn fetching_parent(mut stream: DuplexStream, disk: Disk, overrides: Overrides) {
    while let Ok(Some(request)) = v1::read_frame::<_, Request>(&mut stream).await {
        let response = match request {
            Request::Fetch { keys, .. } => {
                let d = disk.lock().unwrap();
                let records = keys
                    .iter()
                    .filter_map(|k| {
                        let at = (k.kind, k.id.clone());
                        let sealed = match overrides.get(&at) {
                            Some(forged) => forged.clone(),
                            None => d.get(&at).cloned(),
                        };
                        sealed.map(|sealed| Record {
                            key: k.clone(),
                            sealed,
                        })
                    })
                    .collect();
                Response::Fetched {
                    at: 1,
                    records,
                    through: u32::try_from(keys.len()).unwrap(),
                }
            }
            _ => Response::Pong,
        };
        if v1::write_frame(&mut stream, &response).await.is_err() {
            return;
        }
    }
}

/// Member B: the state and committer of a full load of `disk`, as at unseal.
async fn member_of(disk: &Disk) -> (Arc<State>, Persister) {
    let mut loaded = load_from(disk.clone()).await;
    assert!(loaded.refused.is_empty(), "{:?}", loaded.refused);
    // Each boot's commits start a random distance past the root it loaded.
    loaded.manifest.skip(1000);
    let (state, persister) = start_on(disk, loaded.keys, loaded.manifest);
    state
        .principals_mut()
        .replace_sealed(&loaded.principals, &Config::default());
    (state, persister)
}

/// B catches up with the store through a parent that forges `overrides`.
async fn catch_up_over(
    disk: &Disk,
    overrides: Overrides,
    b: &Persister,
) -> Result<(), super::catch_up::Fallback> {
    let (mut enclave_end, parent_end) = tokio::io::duplex(1 << 20);
    tokio::spawn(fetching_parent(parent_end, disk.clone(), overrides));
    let domain = domain();
    let names = NameKey::of(&domain);
    let base = b.base();
    let (caught, changes) =
        super::catch_up::catch_up(&mut enclave_end, b, base, &domain, &names)
            .await
            .unwrap()?;
    b.take_caught(base, caught, changes, &names, &Config::default())
        .await
        .unwrap()
}

/// What a member holds, comparably: each key's description, policy, state and grant ids, and
/// each alias's target.
/// A key as [`held`] shows it: id, description, policy, state, grant ids.
type HeldKey = (Uuid, String, Option<String>, String, Vec<String>);

fn held(state: &State) -> (Vec<HeldKey>, Vec<(String, Uuid)>) {
    let keys = state.read();
    let (all, _) = keys.list(None, 1000, 0);
    let all = all
        .into_iter()
        .map(|k| {
            let mut grants: Vec<String> = k.grants.ids().map(str::to_owned).collect();
            grants.sort();
            (
                k.id,
                k.description.clone(),
                k.policy.clone(),
                k.state.as_str().to_owned(),
                grants,
            )
        })
        .collect();
    let (aliases, _) = keys.list_aliases(None, None, 1000, 0);
    let aliases = aliases
        .into_iter()
        .map(|(name, a)| (name.to_owned(), a.target))
        .collect();
    (all, aliases)
}

const POLICY: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:root"},"Action":"kms:*","Resource":"*"}]}"#;

/// Member A writes keys 1..=4 (two grants on key 1) and alias/a → key 1; member B loads that.
/// Then A changes key 1's description (its grants must stay), key 2's policy, destroys key 3
/// with its grant, adds key 5 and a grant on key 2, revokes a grant of key 1 and points the
/// alias at key 4. B catches up by difference and holds what a full load holds; its next
/// commit continues the store so that it still loads whole without a refusal.
#[tokio::test]
async fn a_member_catches_up_by_difference_and_holds_what_a_full_load_holds() {
    let disk: Disk = Arc::default();
    let config = Config::default();
    let id = |n: u8| Uuid::from_bytes([n; 16]);
    let (a, pa) = start_on(&disk, KeyStore::default(), Manifest::empty());
    let mut touched = Vec::new();
    for n in 1..=4 {
        a.write().insert(key(n), &config).unwrap();
        touched.push(Touched::Key(id(n)));
    }
    for (k, g) in [(1, 1), (1, 2), (3, 3)] {
        let grant = grant_on(k, g, "arn:aws:iam::111122223333:user/bob");
        touched.push(Touched::Grant(id(k), grant.grant_id.clone()));
        a.write().load_grant(&id(k), grant).unwrap();
    }
    let alias = |target: u8| Alias {
        target: id(target),
        created: 1,
        updated: 1,
        creator: None,
    };
    a.write()
        .put_alias("alias/a".to_owned(), alias(1), &config)
        .unwrap();
    touched.push(Touched::Alias("alias/a".to_owned()));
    pa.persist(touched, None).await.unwrap();

    let (b, pb) = member_of(&disk).await;
    assert_eq!(held(&b), held(&a));

    // A's changes.
    {
        let mut keys = a.write();
        keys.raw_mut(&id(1)).unwrap().description = "renamed".to_owned();
        keys.raw_mut(&id(1)).unwrap().remove_grant(&grant_on(1, 2, "").grant_id);
        keys.raw_mut(&id(2)).unwrap().policy = Some(POLICY.to_owned());
        keys.schedule_deletion(&id(3), 1, &config).unwrap();
        keys.sweep(2);
        keys.insert(key(5), &config).unwrap();
        keys.load_grant(&id(2), grant_on(2, 9, "arn:aws:iam::111122223333:user/carol"))
            .unwrap();
        keys.put_alias("alias/a".to_owned(), alias(4), &config).unwrap();
    }
    pa.persist(
        vec![
            Touched::Key(id(1)),
            Touched::Grant(id(1), grant_on(1, 2, "").grant_id),
            Touched::Key(id(2)),
            Touched::Key(id(3)),
            Touched::Grant(id(3), grant_on(3, 3, "").grant_id),
            Touched::Key(id(5)),
            Touched::Grant(id(2), grant_on(2, 9, "").grant_id),
            Touched::Alias("alias/a".to_owned()),
        ],
        None,
    )
    .await
    .unwrap();
    let head = pa.base();
    assert_ne!(pb.base(), head);

    catch_up_over(&disk, Overrides::new(), &pb).await.unwrap();
    assert_eq!(pb.base(), head, "B's state is now the store's");
    let (keys, aliases) = held(&b);
    assert_eq!((keys.clone(), aliases.clone()), held(&a));
    let full = load_from(disk.clone()).await;
    assert!(full.refused.is_empty(), "{:?}", full.refused);
    let loaded = State::new(full.keys, Principals::default());
    assert_eq!((keys.clone(), aliases), held(&loaded));
    // Spelled out: key 1 renamed with grant 1 kept and grant 2 gone; key 2's new policy and
    // grant; key 3 gone; key 5 there; the alias on key 4.
    let of = |n: u8| keys.iter().find(|k| k.0 == id(n)).cloned();
    let one = of(1).unwrap();
    assert_eq!(one.1, "renamed");
    assert_eq!(one.4, vec![grant_on(1, 1, "").grant_id]);
    assert_eq!(of(2).unwrap().2.as_deref(), Some(POLICY));
    assert_eq!(of(2).unwrap().4, vec![grant_on(2, 9, "").grant_id]);
    assert!(of(3).is_none());
    assert!(of(5).is_some());
    assert_eq!(held(&b).1, vec![("alias/a".to_owned(), id(4))]);

    // B commits on the caught-up manifest: the store still loads whole, B's change included.
    b.write().raw_mut(&id(4)).unwrap().description = "by B".to_owned();
    pb.persist(vec![Touched::Key(id(4))], None).await.unwrap();
    let full = load_from(disk.clone()).await;
    assert!(full.refused.is_empty(), "{:?}", full.refused);
    assert_eq!(full.keys.raw(&id(4)).unwrap().description, "by B");
    assert_eq!(full.keys.key_count(), 4);
}

/// A store with keys 1..=3, member B loaded from it, then A's change of key 2's description;
/// with the record bytes of the first state, to forge with.
async fn one_foreign_change() -> (Disk, Arc<State>, Persister, u64, BTreeMap<(u8, Vec<u8>), Vec<u8>>) {
    let disk: Disk = Arc::default();
    let config = Config::default();
    let (a, pa) = start_on(&disk, KeyStore::default(), Manifest::empty());
    for n in 1..=3 {
        a.write().insert(key(n), &config).unwrap();
    }
    let all = (1..=3)
        .map(|n| Touched::Key(Uuid::from_bytes([n; 16])))
        .collect();
    pa.persist(all, None).await.unwrap();
    let (b, pb) = member_of(&disk).await;
    let before = disk.lock().unwrap().clone();
    a.write()
        .raw_mut(&Uuid::from_bytes([2; 16]))
        .unwrap()
        .description = "changed".to_owned();
    pa.persist(vec![Touched::Key(Uuid::from_bytes([2; 16]))], None)
        .await
        .unwrap();
    (disk, b, pb, pa.base(), before)
}

fn description_of_two(state: &State) -> String {
    state
        .read()
        .raw(&Uuid::from_bytes([2; 16]))
        .unwrap()
        .description
        .clone()
}

fn assert_refused(result: Result<(), super::catch_up::Fallback>, what: &str) {
    match result {
        Err(super::catch_up::Fallback::Refused(why)) => assert!(why.contains(what), "{why}"),
        other => panic!("expected a refusal naming {what:?}: {other:?}"),
    }
}

/// The parent answers the new head with the root it replaced, B's own (a replayed older root): refused,
/// and B's state and base stay as they were.
#[tokio::test]
async fn a_replayed_older_root_is_refused() {
    let (disk, b, pb, head, before) = one_foreign_change().await;
    let base = pb.base();
    let root = (RecordKind::Root as u8, b"root".to_vec());
    let forged = Overrides::from([(root.clone(), Some(before[&root].clone()))]);
    assert_refused(catch_up_over(&disk, forged, &pb).await, "older root");
    assert_eq!(pb.base(), base);
    assert_eq!(description_of_two(&b), "key 2");
    // Honestly answered, the same catch-up goes through.
    catch_up_over(&disk, Overrides::new(), &pb).await.unwrap();
    assert_eq!(description_of_two(&b), "changed");
    assert_eq!(pb.base(), head);
}

/// A page from the earlier state (replayed), or one altered, in the new root's place: refused.
#[tokio::test]
async fn a_forged_or_replayed_page_is_refused() {
    let (disk, b, pb, _, before) = one_foreign_change().await;
    let (_, page) = Manifest::page_of(RecordKind::Key, &[2; 16]);
    let page = (RecordKind::Root as u8, page);
    let replayed = Overrides::from([(page.clone(), Some(before[&page].clone()))]);
    assert_refused(catch_up_over(&disk, replayed, &pb).await, "but the root lists");
    let mut altered = disk.lock().unwrap()[&page].clone();
    let last = altered.len() - 1;
    altered[last] ^= 1;
    let altered = Overrides::from([(page, Some(altered))]);
    assert_refused(catch_up_over(&disk, altered, &pb).await, "authentication failed");
    assert_eq!(description_of_two(&b), "key 2");
}

/// The changed key's record replayed at its older generation, or dropped: refused.
#[tokio::test]
async fn a_replayed_or_dropped_record_is_refused() {
    let (disk, b, pb, _, before) = one_foreign_change().await;
    let two = (RecordKind::Key as u8, vec![2; 16]);
    let replayed = Overrides::from([(two.clone(), Some(before[&two].clone()))]);
    assert_refused(catch_up_over(&disk, replayed, &pb).await, "generation");
    let dropped = Overrides::from([(two, None)]);
    assert_refused(catch_up_over(&disk, dropped, &pb).await, "missing");
    // A bucket from the earlier state, which lists the old generation: refused too.
    let bucket = (
        RecordKind::Bucket as u8,
        crate::durability::seal::manifest::bucket_of(RecordKind::Key, &[2; 16])
            .to_be_bytes()
            .to_vec(),
    );
    let old_bucket = Overrides::from([(bucket.clone(), Some(before[&bucket].clone()))]);
    assert_refused(catch_up_over(&disk, old_bucket, &pb).await, "but its page lists");
    assert_eq!(description_of_two(&b), "key 2");
}

/// The figure BENCHMARKS.md's "Members on one etcd store" quotes: with `EKMS_BENCH_KEYS` keys
/// (100,000 unless set) in the store, the time member B takes to follow one change of member
/// A's (one key's description), loading the store whole against catching up by difference.
/// The store is the in-memory fake parent, so this is the enclave's share (the records'
/// decryption and decoding, the manifest); from etcd, a full load also pays the JSON gateway's
/// reads (about 13,000 keys/s), a catch-up four small reads. `cargo test -p ekms-enclave --lib
/// -- --ignored --nocapture member_follows_one_change`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: prints figures"]
async fn member_follows_one_change_full_load_against_difference() {
    let n: u32 = std::env::var("EKMS_BENCH_KEYS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let disk: Disk = Arc::default();
    let config = Config {
        max_keys: usize::MAX,
        ..Config::default()
    };
    let id = |i: u32| {
        let mut bytes = [7u8; 16];
        bytes[..4].copy_from_slice(&i.to_be_bytes());
        Uuid::from_bytes(bytes)
    };
    let (a, pa) = start_on(&disk, KeyStore::default(), Manifest::empty());
    let started = std::time::Instant::now();
    for chunk in (0..n).collect::<Vec<_>>().chunks(10_000) {
        let mut touched = Vec::with_capacity(chunk.len());
        for &i in chunk {
            let mut k = key(1);
            k.id = id(i);
            a.write().insert(k, &config).unwrap();
            touched.push(Touched::Key(id(i)));
        }
        pa.persist(touched, None).await.unwrap();
    }
    println!("{n} keys written in {:?}", started.elapsed());
    let loaded = load_from(disk.clone()).await;
    assert!(loaded.refused.is_empty());
    let (b, pb) = start_on(&disk, loaded.keys, loaded.manifest);

    a.write().raw_mut(&id(n / 2)).unwrap().description = "changed".to_owned();
    pa.persist(vec![Touched::Key(id(n / 2))], None).await.unwrap();
    let head = pa.base();

    // The full load, as a member did before: every record over the channel, verified and
    // decoded (adopting it then swaps the state).
    let (mut enclave_end, parent_end) = tokio::io::duplex(1 << 20);
    tokio::spawn(fake_parent(parent_end, disk.clone()));
    let started = std::time::Instant::now();
    let full = load(&mut enclave_end, &domain(), &config).await.unwrap();
    let full_load = started.elapsed();
    assert!(full.refused.is_empty());
    assert_eq!(full.keys.raw(&id(n / 2)).unwrap().description, "changed");
    drop(full);

    // By difference: the root, one page, one bucket, one key.
    let started = std::time::Instant::now();
    catch_up_over(&disk, Overrides::new(), &pb).await.unwrap();
    let difference = started.elapsed();
    assert_eq!(b.read().raw(&id(n / 2)).unwrap().description, "changed");
    assert_eq!(b.read().key_count(), usize::try_from(n).unwrap());
    assert_eq!(pb.base(), head);
    println!(
        "{n} keys, one foreign change: full load {full_load:?}, by difference {difference:?}"
    );
}

/// Principals and a setting follow too: A creates bob and carol, B loads; A then deletes carol,
/// gives bob a policy, creates dave under carol's old access key, and changes the measurements
/// allowed to join. B catches up by difference: carol gone (found by her name's digest), bob's
/// policy, dave signing with the key that was carol's, the measurements.
#[tokio::test]
async fn principals_and_settings_follow_by_difference() {
    let disk: Disk = Arc::default();
    let config = Config::default();
    let (a, pa) = start_on(&disk, KeyStore::default(), Manifest::empty());
    let create = |name: &str, unique: &str, key: &str| {
        a.principals_mut()
            .create(
                name,
                unique.to_owned(),
                key.to_owned(),
                format!("{name}secret{name}secret"),
                None,
                &config,
            )
            .map(|_| ())
            .unwrap();
    };
    create("bob", "AIDABOBBOBBOBBOBBOBB", "AKIABOBBOBBOBBOBBOB1");
    create("carol", "AIDACAROLCAROLCAROLC", "AKIACAROLCAROLCARO1");
    pa.persist(
        vec![
            Touched::Principal("bob".to_owned()),
            Touched::Principal("carol".to_owned()),
        ],
        None,
    )
    .await
    .unwrap();
    let (b, pb) = member_of(&disk).await;
    assert!(b.principals().sealed("carol").is_some());

    a.principals_mut().delete("carol").unwrap();
    let policy = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"kms:Encrypt","Resource":"*"}]}"#;
    a.principals_mut()
        .put_policy("bob", policy.to_owned())
        .unwrap();
    create("dave", "AIDADAVEDAVEDAVEDAVE", "AKIACAROLCAROLCARO1");
    let measurements = crate::access::measurements::Measurements {
        version: 3,
        sets: Vec::new(),
    };
    a.set_measurements(measurements.clone());
    pa.persist(
        vec![
            Touched::Principal("bob".to_owned()),
            Touched::Principal("carol".to_owned()),
            Touched::Principal("dave".to_owned()),
            Touched::Measurements,
        ],
        None,
    )
    .await
    .unwrap();

    catch_up_over(&disk, Overrides::new(), &pb).await.unwrap();
    let principals = b.principals();
    assert!(principals.sealed("carol").is_none());
    assert_eq!(principals.sealed("bob").unwrap().policy_text(), Some(policy));
    assert_eq!(
        principals
            .by_access_key("AKIACAROLCAROLCARO1")
            .map(|p| p.id.clone()),
        Some("AIDADAVEDAVEDAVEDAVE".to_owned())
    );
    assert_eq!(b.measurements(), measurements);
}

/// `ekms unseal` shows how far a long load has come (`RecordsLoaded` in `Ekms.Status`): the
/// count grows page by page while the load still runs, and ends at every record the store
/// sent. The parent here answers the first Load with one page and holds the rest back until
/// the count has been read.
#[tokio::test]
async fn a_load_counts_the_records_of_each_page_as_it_comes() {
    let (_, disk) = store_before_and_after_a_deletion().await;
    let current = disk.lock().unwrap().clone();
    let all = as_records(
        &current,
        &[RecordKind::Root, RecordKind::Bucket, RecordKind::Key],
    );
    let total = all.len() as u64;
    let (first, rest) = all.split_at(2);
    let (first, rest) = (first.to_vec(), rest.to_vec());
    let (mut enclave_end, mut parent_end) = tokio::io::duplex(1 << 20);
    let release = Arc::new(tokio::sync::Notify::new());
    let parent_release = Arc::clone(&release);
    tokio::spawn(async move {
        let mut pages = vec![(rest, true), (first, false)];
        while let Ok(Some(request)) = v1::read_frame::<_, Request>(&mut parent_end).await {
            let Request::Load { .. } = request else {
                return;
            };
            let (records, done) = pages.pop().unwrap_or_default();
            if done {
                parent_release.notified().await;
            }
            if v1::write_frame(&mut parent_end, &Response::Records { records, done })
                .await
                .is_err()
            {
                return;
            }
        }
    });
    let counted = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = Arc::clone(&counted);
    let loading = tokio::spawn(async move {
        let config = Config::default();
        super::load_counting(&mut enclave_end, &domain(), &config, &counter)
            .await
            .unwrap()
    });
    let read = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    tokio::time::timeout(std::time::Duration::from_secs(5), async {
        while read(&counted) < 2 {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the first page is counted while the load waits for the next");
    assert_eq!(read(&counted), 2);
    assert!(!loading.is_finished());
    release.notify_one();
    let loaded = loading.await.unwrap();
    assert!(loaded.refused.is_empty(), "{:?}", loaded.refused);
    assert_eq!(read(&counted), total);
    assert_eq!(loaded.keys.key_count(), 2);
}
