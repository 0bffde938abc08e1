//! Crash safety: `kill -9` the server while a client streams; after restart
//! every acknowledged row is there exactly once. Repeated with the kill at
//! different moments, with persistence running often so some kills land in
//! the middle of it.

use std::collections::HashSet;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use weir_e2e::{RequestBuilder, WeirServer, now_ns};
use weir_proto::v1::field;

const ROWS_PER_BATCH: i64 = 200;

/// Streams batches of rows with unique ids until the stream breaks; returns
/// the ids whose batch was acknowledged.
async fn stream_until_killed(server: &WeirServer, first_id: i64) -> Vec<i64> {
    let mut client = server.client().await.unwrap();
    let (tx, rx) = mpsc::channel(8);
    let mut acks = match client.write_stream(ReceiverStream::new(rx)).await {
        Ok(r) => r.into_inner(),
        Err(_) => return Vec::new(),
    };
    let sender = tokio::spawn(async move {
        for seq in 0u64.. {
            let mut req = RequestBuilder::default();
            let base = first_id + seq as i64 * ROWS_PER_BATCH;
            for id in base..base + ROWS_PER_BATCH {
                req.point(
                    "crash",
                    now_ns(),
                    &[("writer", "w1")],
                    vec![
                        ("id", field::Value::I64(id)),
                        ("payload", field::Value::F64(id as f64 * 0.5)),
                    ],
                );
            }
            if tx.send(req.build(seq)).await.is_err() {
                return;
            }
        }
    });
    let mut acked = Vec::new();
    while let Some(Ok(ack)) = acks.next().await {
        assert!(ack.error.is_none(), "{:?}", ack.error);
        let base = first_id + ack.sequence as i64 * ROWS_PER_BATCH;
        acked.extend(base..base + ROWS_PER_BATCH);
    }
    sender.abort();
    acked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_rows_survive_kill_9_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut server =
        WeirServer::start(&dir.path().join("data"), &["--persist-interval", "300ms"]).unwrap();
    let mut all_acked: HashSet<i64> = HashSet::new();
    for (round, kill_after_ms) in [150u64, 700, 1300, 2100].into_iter().enumerate() {
        let first_id = round as i64 * 100_000_000;
        // Stream; kill the server under the stream.
        let (acked, ()) = tokio::join!(stream_until_killed(&server, first_id), async {
            tokio::time::sleep(Duration::from_millis(kill_after_ms)).await;
            server_kill(&server);
        });
        eprintln!(
            "round {round}: killed after {kill_after_ms} ms, {} rows acknowledged",
            acked.len()
        );
        assert!(
            !acked.is_empty() || kill_after_ms < 500,
            "round {round}: nothing acknowledged"
        );
        all_acked.extend(acked);
        server.restart().unwrap();

        let ids = server.sql("SELECT id FROM crash").await.unwrap();
        let ids: Vec<i64> = ids.iter().map(|r| r["id"].as_i64().unwrap()).collect();
        let distinct: HashSet<i64> = ids.iter().copied().collect();
        assert_eq!(
            distinct.len(),
            ids.len(),
            "round {round}: some rows are present twice"
        );
        let missing: Vec<_> = all_acked.difference(&distinct).take(5).collect();
        assert!(
            missing.is_empty(),
            "round {round}: acknowledged rows lost, e.g. {missing:?}"
        );
    }
    assert!(
        all_acked.len() as i64 >= ROWS_PER_BATCH,
        "the test must acknowledge something"
    );
}

/// SIGKILL by pid, leaving the `WeirServer` to be restarted.
fn server_kill(server: &WeirServer) {
    let pid = server.pid().expect("server running");
    let status = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}
