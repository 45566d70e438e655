//! The store channel service over real sockets (TCP loopback and a Unix socket): answers in
//! request order per connection, group commit, failures answered and survived.

#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ekms_parent::holds::{Holds, Release};
use ekms_parent::store::{
    serve_store, serve_store_with, CommitBatch, FailingStore, RedbStore, Store, StoreError,
    StoreServiceConfig,
};
use ekms_shared::release::Hold;
use ekms_shared::transport::{self, Address, Listener, Stream};
use ekms_shared::wire::v1::{read_frame, write_frame, Record, RecordKey, Request, Response, MAGIC};
use serde_bytes::ByteBuf;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;

const WAIT: Duration = Duration::from_secs(30);

/// Counts `commit` calls and the commits in them, and sleeps a little in each, like a slow
/// disk, so that concurrent commits have time to queue up behind a running one.
struct CountingStore {
    inner: RedbStore,
    calls: AtomicU64,
    batches: AtomicU64,
}

impl Store for CountingStore {
    fn commit(&self, batches: &[CommitBatch]) -> Result<(), StoreError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.batches
            .fetch_add(batches.len() as u64, Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(2));
        self.inner.commit(batches)
    }

    fn load(
        &self,
        after: Option<&RecordKey>,
        limit: usize,
    ) -> Result<(Vec<Record>, bool), StoreError> {
        self.inner.load(after, limit)
    }
}

/// A running service and what stops it.
struct Service {
    address: Address,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    _dir: tempfile::TempDir,
}

impl Service {
    async fn start(kind: &str, store: Arc<dyn Store>, dir: tempfile::TempDir) -> Service {
        Self::start_with(kind, store, dir, StoreServiceConfig::default()).await
    }

    async fn start_with(
        kind: &str,
        store: Arc<dyn Store>,
        dir: tempfile::TempDir,
        config: StoreServiceConfig,
    ) -> Service {
        let address = match kind {
            "tcp" => Address::Tcp("127.0.0.1:0".to_owned()),
            _ => Address::Unix(dir.path().join("store.sock")),
        };
        let listener = Listener::bind(&address).await.unwrap();
        let address = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve_store_with(listener, store, config, async move {
            let _ = stopped.await;
        }));
        Service {
            address,
            stop: Some(stop),
            task,
            _dir: dir,
        }
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(WAIT, &mut self.task)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }
}

fn record(connection: usize, n: u64) -> Record {
    Record {
        key: RecordKey {
            kind: 1,
            id: format!("c{connection}-{n:04}").into_bytes(),
        },
        sealed: format!("sealed {connection} {n}").into_bytes().repeat(8),
    }
}

fn commit(connection: usize, seq: u64) -> Request {
    Request::Commit {
        seq,
        base: None,
        puts: vec![record(connection, seq)],
        deletes: vec![],
        audit: vec![ByteBuf::from(format!(
            "{{\"c\":{connection},\"seq\":{seq}}}"
        ))],
    }
}

/// Sends every request at once (pipelined, from a separate task) and reads every answer.
async fn pipeline(address: &Address, requests: Vec<Request>) -> Vec<Response> {
    let stream = transport::connect(address).await.unwrap();
    let (mut reader, mut writer) = tokio::io::split(stream);
    let count = requests.len();
    let sender = tokio::spawn(async move {
        for request in requests {
            write_frame(&mut writer, &request).await.unwrap();
        }
        writer
    });
    let mut responses = Vec::with_capacity(count);
    for _ in 0..count {
        let response = tokio::time::timeout(WAIT, read_frame::<_, Response>(&mut reader))
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        responses.push(response);
    }
    let mut writer = sender.await.unwrap();
    writer.shutdown().await.unwrap();
    // After our end of stream, the service closes its side cleanly.
    let end = tokio::time::timeout(WAIT, read_frame::<_, Response>(&mut reader))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(end, None);
    responses
}

async fn load_all(address: &Address, limit: u32) -> Vec<Record> {
    let mut stream = transport::connect(address).await.unwrap();
    let mut all: Vec<Record> = Vec::new();
    let mut after = None;
    loop {
        write_frame(&mut stream, &Request::Load { after, limit })
            .await
            .unwrap();
        let Some(Response::Records { records, done }) =
            read_frame::<_, Response>(&mut stream).await.unwrap()
        else {
            panic!("Load not answered with Records");
        };
        assert!(records.len() <= limit.max(1) as usize);
        all.extend(records);
        if done {
            return all;
        }
        after = Some(all.last().unwrap().key.clone());
    }
}

async fn pipelined_commits_are_answered_in_order(kind: &str) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(RedbStore::open(&dir.path().join("data")).unwrap());
    let service = Service::start(kind, store, dir).await;
    const PER_CONNECTION: u64 = 60;

    let mut clients = Vec::new();
    for connection in 0..3usize {
        let address = service.address.clone();
        clients.push(tokio::spawn(async move {
            // Commits with a Ping and a Load in the middle: answers keep request order
            // whatever finishes first.
            let mut requests: Vec<Request> = (0..PER_CONNECTION)
                .map(|seq| commit(connection, seq))
                .collect();
            requests.insert(10, Request::Ping);
            requests.insert(
                20,
                Request::Load {
                    after: None,
                    limit: 1,
                },
            );
            let responses = pipeline(&address, requests).await;
            assert_eq!(responses.len() as u64, PER_CONNECTION + 2);
            assert_eq!(responses[10], Response::Pong);
            assert!(matches!(responses[20], Response::Records { .. }));
            let seqs: Vec<u64> = responses
                .iter()
                .filter_map(|response| match response {
                    Response::Committed { seq } => Some(*seq),
                    Response::Pong | Response::Records { .. } => None,
                    other => panic!("unexpected answer {other:?}"),
                })
                .collect();
            assert_eq!(seqs, (0..PER_CONNECTION).collect::<Vec<_>>());
        }));
    }
    for client in clients {
        client.await.unwrap();
    }

    let mut expected: Vec<Record> = (0..3)
        .flat_map(|c| (0..PER_CONNECTION).map(move |n| record(c, n)))
        .collect();
    expected.sort_by(|a, b| a.key.cmp(&b.key));
    assert_eq!(load_all(&service.address, 7).await, expected);
    assert_eq!(load_all(&service.address, 0).await.len(), expected.len());
    service.stop().await;
}

#[tokio::test]
async fn tcp_pipelined_commits_from_three_connections_are_answered_in_order() {
    pipelined_commits_are_answered_in_order("tcp").await;
}

#[tokio::test]
async fn unix_pipelined_commits_from_three_connections_are_answered_in_order() {
    pipelined_commits_are_answered_in_order("unix").await;
}

/// Eight connections pipeline 50 commits each: the store sees far fewer `commit` calls than
/// there were Commit requests, because commits that arrive during one fsync share the next.
#[tokio::test]
async fn concurrent_commits_share_fsyncs() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(CountingStore {
        inner: RedbStore::open(dir.path()).unwrap(),
        calls: AtomicU64::new(0),
        batches: AtomicU64::new(0),
    });
    let service = Service::start("tcp", Arc::clone(&store) as Arc<dyn Store>, dir).await;
    const CONNECTIONS: usize = 8;
    const PER_CONNECTION: u64 = 50;
    let mut clients = Vec::new();
    for connection in 0..CONNECTIONS {
        let address = service.address.clone();
        clients.push(tokio::spawn(async move {
            let requests = (0..PER_CONNECTION)
                .map(|seq| commit(connection, seq))
                .collect();
            let responses = pipeline(&address, requests).await;
            let expected: Vec<Response> = (0..PER_CONNECTION)
                .map(|seq| Response::Committed { seq })
                .collect();
            assert_eq!(responses, expected);
        }));
    }
    for client in clients {
        client.await.unwrap();
    }
    let requests = CONNECTIONS as u64 * PER_CONNECTION;
    let calls = store.calls.load(Ordering::Relaxed);
    assert_eq!(store.batches.load(Ordering::Relaxed), requests);
    assert!(
        calls < requests / 4,
        "{calls} store commits for {requests} Commit requests: no group commit"
    );
    eprintln!("{requests} commits in {calls} store commits");
    assert_eq!(
        load_all(&service.address, 1000).await.len() as u64,
        requests
    );
    service.stop().await;
}

/// A store whose commits all fail: every waiting commit of every connection is answered with
/// `Error`, nothing is applied, and the service keeps answering (Ping, Load, new
/// connections).
#[tokio::test]
async fn failing_commits_are_answered_with_errors_and_the_service_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let inner: Arc<dyn Store> = Arc::new(RedbStore::open(dir.path()).unwrap());
    // The first commit call passes, then every one fails.
    let store = Arc::new(FailingStore::after(1, Arc::clone(&inner)));
    let service = Service::start("unix", Arc::clone(&store) as Arc<dyn Store>, dir).await;

    let first = pipeline(&service.address, vec![commit(9, 0)]).await;
    assert_eq!(first, vec![Response::Committed { seq: 0 }]);

    let mut clients = Vec::new();
    for connection in 0..3usize {
        let address = service.address.clone();
        clients.push(tokio::spawn(async move {
            let mut requests: Vec<Request> = (1..=20).map(|seq| commit(connection, seq)).collect();
            requests.push(Request::Ping);
            let responses = pipeline(&address, requests).await;
            for response in &responses[..20] {
                let Response::Error { message } = response else {
                    panic!("a failed commit answered {response:?}");
                };
                assert!(message.contains("injected failure"), "{message}");
            }
            assert_eq!(responses[20], Response::Pong);
        }));
    }
    for client in clients {
        client.await.unwrap();
    }
    assert!(store.commit_calls() >= 2);
    assert_eq!(load_all(&service.address, 10).await, vec![record(9, 0)]);
    service.stop().await;
}

/// A well-framed body that is not a request (here: an unknown variant) is answered with
/// `Error` and the connection goes on; a broken frame is answered with `Error` and the
/// connection is closed.
#[tokio::test]
async fn malformed_requests_are_answered() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(RedbStore::open(dir.path()).unwrap());
    let service = Service::start("tcp", store, dir).await;
    let mut stream: Stream = transport::connect(&service.address).await.unwrap();

    #[derive(serde::Serialize)]
    enum Future {
        Compact { level: u8 },
    }
    write_frame(&mut stream, &Future::Compact { level: 1 })
        .await
        .unwrap();
    write_frame(&mut stream, &Request::Ping).await.unwrap();
    let answer: Response = read_frame(&mut stream).await.unwrap().unwrap();
    assert!(
        matches!(&answer, Response::Error { message } if message.contains("malformed request")),
        "{answer:?}"
    );
    let answer: Response = read_frame(&mut stream).await.unwrap().unwrap();
    assert_eq!(answer, Response::Pong);

    // An audit line with a newline is refused alone.
    let bad = Request::Commit {
        seq: 5,
        base: None,
        puts: vec![record(0, 5)],
        deletes: vec![],
        audit: vec![ByteBuf::from(&b"two\nlines"[..])],
    };
    write_frame(&mut stream, &bad).await.unwrap();
    let answer: Response = read_frame(&mut stream).await.unwrap().unwrap();
    assert!(
        matches!(&answer, Response::Error { message } if message.contains("newline")),
        "{answer:?}"
    );

    // Oversize length: refused from the header, before any body arrives.
    let mut header = MAGIC.to_vec();
    header.push(1);
    header.extend_from_slice(&u32::MAX.to_be_bytes());
    stream.write_all(&header).await.unwrap();
    let answer: Response = read_frame(&mut stream).await.unwrap().unwrap();
    assert!(
        matches!(&answer, Response::Error { message } if message.contains("exceeds")),
        "{answer:?}"
    );
    let mut rest = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut rest))
        .await
        .unwrap()
        .unwrap();
    assert!(rest.is_empty());

    assert_eq!(load_all(&service.address, 10).await, vec![]);
    service.stop().await;
}

/// With one connection allowed, a second client waits until the first leaves.
#[tokio::test]
async fn connections_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(RedbStore::open(dir.path()).unwrap());
    let config = StoreServiceConfig {
        max_connections: 1,
        ..StoreServiceConfig::default()
    };
    let service = Service::start_with("tcp", store, dir, config).await;
    let mut first = transport::connect(&service.address).await.unwrap();
    write_frame(&mut first, &Request::Ping).await.unwrap();
    assert_eq!(
        read_frame::<_, Response>(&mut first).await.unwrap(),
        Some(Response::Pong)
    );

    let mut second = transport::connect(&service.address).await.unwrap();
    write_frame(&mut second, &Request::Ping).await.unwrap();
    let waited = tokio::time::timeout(
        Duration::from_millis(300),
        read_frame::<_, Response>(&mut second),
    )
    .await;
    assert!(
        waited.is_err(),
        "second connection served while the first was open"
    );

    drop(first);
    let answer = tokio::time::timeout(WAIT, read_frame::<_, Response>(&mut second))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(answer, Some(Response::Pong));
    service.stop().await;
}

#[tokio::test]
async fn serve_store_stops_on_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(RedbStore::open(dir.path()).unwrap());
    let listener = Listener::bind(&Address::Tcp("127.0.0.1:0".to_owned()))
        .await
        .unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(serve_store(listener, store, async move {
        let _ = stopped.await;
    }));
    // An idle connection does not hold up shutdown.
    let _idle = transport::connect(&address).await.unwrap();
    stop.send(()).unwrap();
    tokio::time::timeout(WAIT, task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

/// `Hold` opens a session whose answers durable commits release; a second `Hold` on the
/// connection is refused, a failed commit closes the session, and so does the connection's
/// end. Without a place for held answers, `Hold` is refused.
#[tokio::test]
async fn a_hold_session_follows_its_connections_commits() {
    let dir = tempfile::tempdir().unwrap();
    let inner: Arc<dyn Store> = Arc::new(RedbStore::open(dir.path()).unwrap());
    // Two commit calls pass, then every one fails.
    let store = Arc::new(FailingStore::after(2, Arc::clone(&inner)));
    let holds = Arc::new(Holds::default());
    let config = StoreServiceConfig {
        holds: Some(Arc::clone(&holds)),
        ..StoreServiceConfig::default()
    };
    let service = Service::start_with("unix", store as Arc<dyn Store>, dir, config).await;
    let hold = |seq| Hold { session: 77, seq };
    let stream = transport::connect(&service.address).await.unwrap();
    let (mut reader, mut writer) = tokio::io::split(stream);
    let mut ask = async |request: Request| {
        write_frame(&mut writer, &request).await.unwrap();
        tokio::time::timeout(WAIT, read_frame::<_, Response>(&mut reader))
            .await
            .unwrap()
            .unwrap()
            .unwrap()
    };

    assert!(
        matches!(holds.release(hold(1)), Release::Never),
        "not yet open"
    );
    assert_eq!(ask(Request::Hold { session: 77 }).await, Response::Holding);
    let Release::Later(mut first) = holds.release(hold(1)) else {
        panic!("commit 1 is not durable yet");
    };
    assert!(matches!(
        ask(Request::Hold { session: 78 }).await,
        Response::Error { .. }
    ));
    assert_eq!(ask(commit(0, 1)).await, Response::Committed { seq: 1 });
    first.try_recv().unwrap();
    assert!(matches!(holds.release(hold(1)), Release::Now));

    let Release::Later(mut third) = holds.release(hold(3)) else {
        panic!("commit 3 is not durable yet");
    };
    assert_eq!(ask(commit(0, 2)).await, Response::Committed { seq: 2 });
    assert!(third.try_recv().is_err());
    // The third commit fails: what waited for it is never released.
    assert!(matches!(ask(commit(0, 3)).await, Response::Error { .. }));
    assert!(matches!(
        third.try_recv(),
        Err(tokio::sync::oneshot::error::TryRecvError::Closed)
    ));
    assert!(matches!(holds.release(hold(2)), Release::Never));
    drop((reader, writer));

    // A new connection's session; its end closes it.
    let stream = transport::connect(&service.address).await.unwrap();
    let (mut reader, mut writer) = tokio::io::split(stream);
    write_frame(&mut writer, &Request::Hold { session: 79 })
        .await
        .unwrap();
    assert_eq!(
        read_frame::<_, Response>(&mut reader).await.unwrap(),
        Some(Response::Holding)
    );
    let Release::Later(mut waiting) = holds.release(Hold {
        session: 79,
        seq: 9,
    }) else {
        panic!("nothing is durable in session 79");
    };
    drop((reader, writer));
    let closed = tokio::time::timeout(WAIT, &mut waiting).await.unwrap();
    assert!(closed.is_err(), "the connection's end closes its session");
    service.stop().await;

    // No place for held answers: refused.
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(RedbStore::open(dir.path()).unwrap());
    let service = Service::start("tcp", store, dir).await;
    let answers = pipeline(&service.address, vec![Request::Hold { session: 1 }]).await;
    assert!(matches!(answers[0], Response::Error { .. }));
    service.stop().await;
}

/// A store that answers `fetch` from a fixed snapshot (number 5): `big` bytes for keys of kind
/// 3, nothing for the others.
struct SnapshotStore {
    big: usize,
}

impl Store for SnapshotStore {
    fn commit(&self, _: &[CommitBatch]) -> Result<(), StoreError> {
        Ok(())
    }

    fn load(&self, _: Option<&RecordKey>, _: usize) -> Result<(Vec<Record>, bool), StoreError> {
        Ok((Vec::new(), true))
    }

    fn fetch(
        &self,
        _: Option<u64>,
        keys: &[RecordKey],
    ) -> Result<ekms_parent::store::Fetched, StoreError> {
        let values = keys
            .iter()
            .map(|k| (k.kind == 3).then(|| vec![k.id[0]; self.big]))
            .collect();
        Ok((5, values))
    }
}

/// `Fetch`: the records that exist, in the order asked, with the snapshot; an answer that
/// would outgrow a frame is cut (`through` says how far it got, never zero); more keys than
/// a `Fetch` may name are refused; the embedded store (one writer, never followed) says it
/// does not answer it.
#[tokio::test]
async fn fetch_answers_in_order_within_a_frame_and_its_bounds() {
    let key = |kind: u8, n: u8| RecordKey {
        kind,
        id: vec![n, 0],
    };
    let small = Arc::new(SnapshotStore { big: 10 });
    let service = Service::start("unix", small, tempfile::tempdir().unwrap()).await;
    let asked = vec![key(3, 9), key(4, 1), key(3, 2)];
    let answers = pipeline(
        &service.address,
        vec![
            Request::Fetch {
                at: None,
                keys: asked.clone(),
            },
            Request::Fetch {
                at: Some(5),
                keys: (0..=1024u16).map(|n| key(3, n as u8)).collect(),
            },
        ],
    )
    .await;
    assert_eq!(
        answers[0],
        Response::Fetched {
            at: 5,
            records: vec![
                Record {
                    key: key(3, 9),
                    sealed: vec![9; 10],
                },
                Record {
                    key: key(3, 2),
                    sealed: vec![2; 10],
                },
            ],
            through: 3,
        }
    );
    assert!(
        matches!(&answers[1], Response::Error { message } if message.contains("at most 1024")),
        "{:?}",
        answers[1]
    );
    service.stop().await;

    // 1 MiB each: 100 of them do not fit one 64 MiB frame.
    let big = Arc::new(SnapshotStore { big: 1 << 20 });
    let service = Service::start("unix", big, tempfile::tempdir().unwrap()).await;
    let asked: Vec<RecordKey> = (0..100).map(|n| key(3, n)).collect();
    let answers = pipeline(
        &service.address,
        vec![Request::Fetch {
            at: None,
            keys: asked,
        }],
    )
    .await;
    let Response::Fetched {
        records, through, ..
    } = &answers[0]
    else {
        panic!("{:?}", answers[0]);
    };
    assert!(*through > 0 && *through < 100, "{through}");
    assert_eq!(records.len(), *through as usize);
    assert!(records
        .iter()
        .enumerate()
        .all(|(i, r)| r.key == key(3, i as u8)));
    service.stop().await;

    let dir = tempfile::tempdir().unwrap();
    let embedded = Arc::new(RedbStore::open(dir.path()).unwrap());
    let service = Service::start("unix", embedded, dir).await;
    let answers = pipeline(
        &service.address,
        vec![Request::Fetch {
            at: None,
            keys: vec![key(1, 0)],
        }],
    )
    .await;
    assert!(
        matches!(&answers[0], Response::Error { message } if message.contains("does not support")),
        "{:?}",
        answers[0]
    );
    service.stop().await;
}
