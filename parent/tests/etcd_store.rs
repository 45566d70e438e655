//! The etcd store against a real etcd: commits are atomic whatever their size, applied once and
//! in order, conditioned on their base, and loads see one commit's state.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use ekms_parent::store::{CommitBatch, EtcdStore, EtcdUrl, Store, StoreError};
use ekms_shared::wire::v1::{Record, RecordKey};
use ekms_tests::etcd::EtcdServer;

fn key(kind: u8, id: &str) -> RecordKey {
    RecordKey {
        kind,
        id: id.as_bytes().to_vec(),
    }
}

fn put(kind: u8, id: &str, sealed: &[u8]) -> Record {
    Record {
        key: key(kind, id),
        sealed: sealed.to_vec(),
    }
}

fn open(server: &EtcdServer, prefix: &str) -> EtcdStore {
    let url: EtcdUrl = server.url(prefix).parse().expect("a valid URL");
    EtcdStore::open(&url).expect("the store opens")
}

fn load_all(store: &dyn Store) -> Vec<Record> {
    let mut all = Vec::new();
    let mut after: Option<RecordKey> = None;
    loop {
        let (page, done) = store.load(after.as_ref(), 7).expect("load");
        assert!(page.len() <= 7, "a page holds at most the limit");
        after = page.last().map(|r| r.key.clone()).or(after);
        all.extend(page);
        if done {
            return all;
        }
    }
}

fn audit(store: &EtcdStore) -> Vec<String> {
    let mut lines = Vec::new();
    store
        .audit_lines(|line| lines.push(String::from_utf8_lossy(line).into_owned()))
        .expect("audit lines");
    lines
}

fn batch(seq: u64, base: Option<u64>, puts: Vec<Record>, deletes: Vec<RecordKey>) -> CommitBatch {
    CommitBatch {
        session: None,
        seq,
        base,
        puts,
        deletes,
        audit: vec![format!("{{\"commit\":{seq}}}").into_bytes()],
    }
}

#[test]
fn commits_load_back_in_order_with_their_audit_lines() {
    let server = EtcdServer::start();
    let store = open(&server, "ekms");
    // The deployment record: unconditional, before any state commit.
    store
        .commit(&[batch(0, None, vec![put(0, "deployment", b"d")], vec![])])
        .unwrap();
    store
        .commit(&[batch(
            5,
            Some(0),
            vec![put(3, "a", b"1"), put(3, "b", b"2")],
            vec![],
        )])
        .unwrap();
    // A group of two: the second deletes what the first wrote, then writes it again.
    store
        .commit(&[
            batch(6, Some(5), vec![put(3, "c", b"3")], vec![key(3, "a")]),
            batch(7, Some(6), vec![put(3, "a", b"4")], vec![key(3, "c")]),
        ])
        .unwrap();
    let all = load_all(&store);
    assert_eq!(
        all,
        vec![
            put(0, "deployment", b"d"),
            put(3, "a", b"4"),
            put(3, "b", b"2")
        ]
    );
    assert_eq!(
        audit(&store),
        [
            "{\"commit\":0}",
            "{\"commit\":5}",
            "{\"commit\":6}",
            "{\"commit\":7}"
        ]
    );
    // Another parent on the same prefix sees the same; another prefix sees nothing.
    assert_eq!(load_all(&open(&server, "ekms")), all);
    assert!(load_all(&open(&server, "other")).is_empty());
}

#[test]
fn a_commit_not_built_on_the_last_one_is_refused_and_applies_nothing() {
    let server = EtcdServer::start();
    let a = open(&server, "ekms");
    let b = open(&server, "ekms");
    a.commit(&[batch(10, Some(0), vec![put(3, "k", b"a1")], vec![])])
        .unwrap();
    // b built on the same base as a's commit: it lost the race.
    let lost = b.commit(&[batch(
        20,
        Some(0),
        vec![put(3, "k", b"b1"), put(3, "x", b"b")],
        vec![],
    )]);
    assert!(
        matches!(lost, Err(StoreError::Conflict { base: 0, head: 10 })),
        "{lost:?}"
    );
    // b learns the head and builds on it.
    b.commit(&[batch(21, Some(10), vec![put(3, "k", b"b2")], vec![])])
        .unwrap();
    // a's view is stale now: refused without applying.
    let stale = a.commit(&[batch(11, Some(10), vec![put(3, "k", b"a2")], vec![])]);
    assert!(
        matches!(stale, Err(StoreError::Conflict { .. })),
        "{stale:?}"
    );
    assert_eq!(load_all(&a), vec![put(3, "k", b"b2")]);
    assert_eq!(audit(&a), ["{\"commit\":10}", "{\"commit\":21}"]);
    // A group whose commits do not follow each other is refused whole.
    let broken = a.commit(&[
        batch(22, Some(21), vec![put(3, "y", b"1")], vec![]),
        batch(24, Some(23), vec![put(3, "z", b"1")], vec![]),
    ]);
    assert!(
        matches!(broken, Err(StoreError::Conflict { .. })),
        "{broken:?}"
    );
    assert_eq!(load_all(&b), vec![put(3, "k", b"b2")]);
}

#[test]
fn commits_beyond_etcds_request_and_transaction_limits_apply_whole() {
    let server = EtcdServer::start();
    let store = open(&server, "big");
    // 3,000 records of 1 KiB (3 MiB, far over etcd's 1.5 MiB request and 128 operations) and
    // 2,000 audit lines of 1 KiB, in one commit.
    let puts: Vec<Record> = (0..3000)
        .map(|i| put(3, &format!("key-{i:05}"), &[i as u8; 1024]))
        .collect();
    let mut big = batch(100, Some(0), puts.clone(), vec![]);
    big.audit = (0..2000)
        .map(|i| format!("{i:01024}").into_bytes())
        .collect();
    store.commit(&[big]).unwrap();
    let all = load_all(&store);
    assert_eq!(all.len(), 3000);
    assert_eq!(all, puts);
    let lines = audit(&store);
    assert_eq!(lines.len(), 2000);
    assert!(lines
        .iter()
        .enumerate()
        .all(|(i, l)| *l == format!("{i:01024}")));
    // Then delete most of them in one commit, again over the limits.
    let deletes: Vec<RecordKey> = (0..2990).map(|i| key(3, &format!("key-{i:05}"))).collect();
    store
        .commit(&[batch(101, Some(100), vec![], deletes)])
        .unwrap();
    assert_eq!(load_all(&store), puts[2990..].to_vec());
}

#[test]
fn concurrent_parents_on_one_base_commit_exactly_once() {
    let server = EtcdServer::start();
    let stores: Vec<Arc<EtcdStore>> = (0..4).map(|_| Arc::new(open(&server, "race"))).collect();
    let winners: Vec<bool> = std::thread::scope(|scope| {
        let handles: Vec<_> = stores
            .iter()
            .enumerate()
            .map(|(i, store)| {
                scope.spawn(move || {
                    let id = format!("alias-{i}");
                    store
                        .commit(&[batch(
                            50 + i as u64,
                            Some(0),
                            vec![put(4, "same", id.as_bytes())],
                            vec![],
                        )])
                        .is_ok()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(winners.iter().filter(|w| **w).count(), 1, "{winners:?}");
    let winner = winners.iter().position(|w| *w).unwrap();
    assert_eq!(
        load_all(stores[0].as_ref()),
        vec![put(4, "same", format!("alias-{winner}").as_bytes())]
    );
}

#[test]
fn an_unreachable_etcd_fails_commits_within_the_call_timeout() {
    let server = EtcdServer::start();
    let store = open(&server, "cut");
    store
        .commit(&[batch(1, Some(0), vec![put(3, "a", b"1")], vec![])])
        .unwrap();
    server.pause();
    let started = std::time::Instant::now();
    let cut = store.commit(&[batch(2, Some(1), vec![put(3, "b", b"2")], vec![])]);
    let waited = started.elapsed();
    server.resume();
    assert!(matches!(cut, Err(StoreError::Etcd { .. })), "{cut:?}");
    assert!(waited < std::time::Duration::from_secs(30), "{waited:?}");
    // After an unknown outcome the store reads the head again: the next commit builds on what
    // etcd actually holds.
    let head_now = if load_all(&store).len() == 2 { 2 } else { 1 };
    store
        .commit(&[batch(3, Some(head_now), vec![put(3, "c", b"3")], vec![])])
        .unwrap();
}

#[test]
fn urls_name_endpoints_and_a_prefix() {
    let url: EtcdUrl = "etcd://10.0.0.1:2379,10.0.0.2:2379/ekms/prod"
        .parse()
        .unwrap();
    assert_eq!(url.endpoints, ["10.0.0.1:2379", "10.0.0.2:2379"]);
    assert_eq!(url.prefix, "/ekms/prod");
    assert_eq!(
        url.to_string(),
        "etcd://10.0.0.1:2379,10.0.0.2:2379/ekms/prod"
    );
    for bad in [
        "http://127.0.0.1:2379/x",
        "etcd://127.0.0.1:2379",
        "etcd://127.0.0.1:2379/",
        "etcd://127.0.0.1/x",
        "etcd://:2379/x",
        "etcd://127.0.0.1:99999/x",
    ] {
        assert!(bad.parse::<EtcdUrl>().is_err(), "{bad} parsed");
    }
}

/// Members' reads: audit-only batches append without any condition, never move the head (so
/// no member's next commit conflicts with them), and each member's lines read back in the order
/// it wrote them, behind its own commits.
#[test]
fn audit_only_batches_append_unconditionally_in_each_members_order() {
    let server = EtcdServer::start();
    let a = open(&server, "ekms");
    let b = open(&server, "ekms");
    let audit_only = |session: u64, seq: u64, line: &str| CommitBatch {
        session: Some(session),
        seq,
        base: None,
        puts: vec![],
        deletes: vec![],
        audit: vec![line.as_bytes().to_vec()],
    };
    a.commit(&[batch(10, Some(0), vec![put(3, "k", b"a1")], vec![])])
        .unwrap();
    // b reads (its view is stale: it has not seen a's commit) and a reads: neither conflicts.
    b.commit(&[audit_only(0xb, 100, "b1")]).unwrap();
    a.commit(&[audit_only(0xa, 11, "a-read-1")]).unwrap();
    b.commit(&[audit_only(0xb, 101, "b2"), audit_only(0xb, 102, "b3")])
        .unwrap();
    // a's next state commit still builds on its last one: the reads did not move the head.
    a.commit(&[batch(12, Some(10), vec![put(3, "k", b"a2")], vec![])])
        .unwrap();
    a.commit(&[audit_only(0xa, 13, "a-read-2")]).unwrap();
    assert_eq!(load_all(&a), vec![put(3, "k", b"a2")]);
    let lines = audit(&a);
    let of = |prefix: &str| -> Vec<&str> {
        lines
            .iter()
            .map(String::as_str)
            .filter(|l| l.starts_with(prefix) || (prefix == "a" && l.contains("commit")))
            .collect()
    };
    assert_eq!(
        of("a"),
        ["{\"commit\":10}", "a-read-1", "{\"commit\":12}", "a-read-2"]
    );
    assert_eq!(of("b"), ["b1", "b2", "b3"]);
    assert_eq!(lines.len(), 7);
    // A large audit-only batch is cut to etcd's request limit and still reads back whole.
    let big: Vec<Vec<u8>> = (0..3000)
        .map(|i| format!("b-{i:04}-{}", "x".repeat(1000)).into_bytes())
        .collect();
    b.commit(&[CommitBatch {
        audit: big.clone(),
        ..audit_only(0xb, 103, "")
    }])
    .unwrap();
    let after: Vec<Vec<u8>> = audit(&b)
        .into_iter()
        .filter(|l| l.starts_with("b-"))
        .map(String::into_bytes)
        .collect();
    assert_eq!(after, big);
}
