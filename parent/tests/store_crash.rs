//! `kill -9` of `ekms-parent` under commit load: after a restart, every commit it
//! acknowledged is there, with its audit line.
//!
//! The promise the enclave builds on is "acknowledged means durable": it answers a client only
//! after `Committed`. This test runs the real binary, pipelines commits from several
//! connections, kills it without warning once a few hundred were acknowledged, restarts it on
//! the same data directory and loads everything back.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ekms_shared::transport::{self, Address};
use ekms_shared::wire::v1::{read_frame, write_frame, Record, RecordKey, Request, Response};
use serde_bytes::ByteBuf;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

const WAIT: Duration = Duration::from_secs(30);
const CONNECTIONS: usize = 4;
/// Commits sent but not yet acknowledged, per connection.
const WINDOW: usize = 16;
const ACKS_BEFORE_KILL: usize = 400;

/// Starts `ekms-parent` with a store in `dir`; returns it and the store address, after
/// checking that the store line comes before the ready line.
async fn start_parent(dir: &Path) -> (Child, Address) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ekms-parent"))
        .args(["--listen", "tcp://127.0.0.1:0"])
        // Nobody listens there; the relay is not used by this test.
        .args(["--enclave", "tcp://127.0.0.1:9"])
        .args(["--store-listen", "tcp://127.0.0.1:0"])
        .arg("--data-dir")
        .arg(dir)
        .env("EKMS_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let store_line = tokio::time::timeout(WAIT, lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let store = store_line
        .strip_prefix("ekms-parent store on ")
        .unwrap_or_else(|| panic!("first line is not the store line: {store_line:?}"));
    let ready = tokio::time::timeout(WAIT, lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(
        ready.starts_with("ekms-parent listening on tcp://127.0.0.1:"),
        "{ready:?}"
    );
    (child, store.parse().unwrap())
}

fn record(connection: usize, seq: u64) -> Record {
    Record {
        key: RecordKey {
            kind: 2,
            id: format!("{connection}/{seq:06}").into_bytes(),
        },
        sealed: format!("sealed by {connection} at {seq}")
            .into_bytes()
            .repeat(16),
    }
}

fn audit_line(connection: usize, seq: u64) -> String {
    format!("{{\"connection\":{connection},\"seq\":{seq}}}")
}

/// Pipelines commits until the connection breaks; records each acknowledged one in `acked`.
async fn commit_until_broken(
    address: Address,
    connection: usize,
    acked: Arc<Mutex<Vec<(usize, u64)>>>,
) {
    let stream = transport::connect(&address).await.unwrap();
    let (mut reader, mut writer) = tokio::io::split(stream);
    let (sent, mut outstanding) = mpsc::channel::<u64>(WINDOW);
    let sender = tokio::spawn(async move {
        for seq in 0u64.. {
            let request = Request::Commit {
                seq,
                base: None,
                puts: vec![record(connection, seq)],
                deletes: vec![],
                audit: vec![ByteBuf::from(audit_line(connection, seq))],
            };
            if write_frame(&mut writer, &request).await.is_err() || sent.send(seq).await.is_err() {
                return;
            }
        }
    });
    while let Some(seq) = outstanding.recv().await {
        match read_frame::<_, Response>(&mut reader).await {
            Ok(Some(Response::Committed { seq: acked_seq })) => {
                assert_eq!(acked_seq, seq, "answers out of order");
                acked.lock().unwrap().push((connection, seq));
            }
            Ok(Some(other)) => panic!("commit {seq} answered {other:?}"),
            // The parent was killed.
            Ok(None) | Err(_) => break,
        }
    }
    drop(outstanding);
    sender.abort();
}

async fn load_all(address: &Address) -> Vec<Record> {
    let mut stream = transport::connect(address).await.unwrap();
    let mut all: Vec<Record> = Vec::new();
    let mut after = None;
    loop {
        write_frame(&mut stream, &Request::Load { after, limit: 100 })
            .await
            .unwrap();
        let Some(Response::Records { records, done }) =
            read_frame::<_, Response>(&mut stream).await.unwrap()
        else {
            panic!("Load not answered with Records");
        };
        all.extend(records);
        if done {
            return all;
        }
        after = Some(all.last().unwrap().key.clone());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_commit_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (mut parent, address) = start_parent(&data).await;

    let acked = Arc::new(Mutex::new(Vec::new()));
    let clients: Vec<_> = (0..CONNECTIONS)
        .map(|connection| {
            tokio::spawn(commit_until_broken(
                address.clone(),
                connection,
                Arc::clone(&acked),
            ))
        })
        .collect();
    tokio::time::timeout(WAIT, async {
        while acked.lock().unwrap().len() < ACKS_BEFORE_KILL {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap();
    // SIGKILL: no shutdown path runs.
    parent.kill().await.unwrap();
    for client in clients {
        tokio::time::timeout(WAIT, client).await.unwrap().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= ACKS_BEFORE_KILL);

    let (mut parent, address) = start_parent(&data).await;
    let loaded = load_all(&address).await;
    let stored: BTreeSet<Vec<u8>> = loaded.iter().map(|r| r.key.id.clone()).collect();
    for &(connection, seq) in &acked {
        let expected = record(connection, seq);
        let found = loaded.iter().find(|r| r.key == expected.key);
        assert_eq!(
            found,
            Some(&expected),
            "acknowledged commit {connection}/{seq} lost"
        );
    }
    // Commits applied but not acknowledged (the answer was lost in the kill) may be there too:
    // they are a prefix of each connection's sequence, with no holes.
    for connection in 0..CONNECTIONS {
        let seqs: Vec<u64> = stored
            .iter()
            .filter_map(|id| {
                let id = std::str::from_utf8(id).unwrap();
                let (c, seq) = id.split_once('/').unwrap();
                (c.parse::<usize>().unwrap() == connection).then(|| seq.parse().unwrap())
            })
            .collect();
        assert_eq!(seqs, (0..seqs.len() as u64).collect::<Vec<_>>());
    }
    let audit = std::fs::read_to_string(data.join("audit.jsonl")).unwrap();
    let lines: BTreeSet<&str> = audit.lines().collect();
    for &(connection, seq) in &acked {
        assert!(
            lines.contains(audit_line(connection, seq).as_str()),
            "audit line of acknowledged commit {connection}/{seq} lost"
        );
    }
    eprintln!(
        "{} acknowledged before kill -9; {} records and {} audit lines after restart",
        acked.len(),
        loaded.len(),
        lines.len()
    );

    // A clean stop: SIGTERM, exit code 0.
    let pid = nix::unistd::Pid::from_raw(i32::try_from(parent.id().unwrap()).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let status = tokio::time::timeout(WAIT, parent.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status}");
}
