//! A torn or corrupt WAL tail (a write cut short by a crash) is cut at
//! start-up with a log line; everything before it is recovered.

use std::fs::OpenOptions;
use std::path::PathBuf;

use weir_e2e::{RequestBuilder, WeirServer};
use weir_proto::v1::field;

fn last_segment(data: &std::path::Path) -> PathBuf {
    let mut segments: Vec<PathBuf> = std::fs::read_dir(data.join("wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.extension().is_some_and(|e| e == "wal") && std::fs::metadata(p).unwrap().len() > 8
        })
        .collect();
    segments.sort();
    segments.pop().expect("a WAL segment with records")
}

async fn write_batches(server: &WeirServer, table: &str, batches: i64) {
    let mut client = server.client().await.unwrap();
    for b in 0..batches {
        let mut req = RequestBuilder::default();
        for i in 0..50 {
            req.point(
                table,
                1_700_000_000_000_000_000 + b * 1000 + i,
                &[("host", "a")],
                vec![("batch", field::Value::I64(b))],
            );
        }
        client.write(req.build(b as u64)).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_and_corrupted_tails_are_cut_and_the_rest_recovered() {
    let dir = tempfile::tempdir().unwrap();
    let mut server =
        WeirServer::start(&dir.path().join("data"), &["--persist-interval", "1h"]).unwrap();

    // Truncated mid-record.
    write_batches(&server, "torn", 10).await;
    server.kill9();
    let segment = last_segment(&server.data_dir);
    let len = std::fs::metadata(&segment).unwrap().len();
    OpenOptions::new()
        .write(true)
        .open(&segment)
        .unwrap()
        .set_len(len - 7)
        .unwrap();
    server.restart().unwrap();
    assert_eq!(
        server
            .count("SELECT COUNT(*) AS n FROM torn")
            .await
            .unwrap(),
        9 * 50
    );
    assert_eq!(
        server
            .count("SELECT MAX(batch) AS b FROM torn")
            .await
            .unwrap(),
        8
    );
    assert!(
        server.log().contains("cutting torn WAL tail"),
        "{}",
        server.log()
    );

    // Corrupted last record (a flipped byte): the checksum catches it.
    write_batches(&server, "flipped", 4).await;
    server.kill9();
    let segment = last_segment(&server.data_dir);
    let mut bytes = std::fs::read(&segment).unwrap();
    let at = bytes.len() - 20;
    bytes[at] ^= 0xff;
    std::fs::write(&segment, &bytes).unwrap();
    server.restart().unwrap();
    assert_eq!(
        server
            .count("SELECT COUNT(*) AS n FROM flipped")
            .await
            .unwrap(),
        3 * 50
    );
    assert_eq!(
        server
            .count("SELECT COUNT(*) AS n FROM torn")
            .await
            .unwrap(),
        9 * 50
    );
    assert!(
        server.log().contains("checksum mismatch"),
        "{}",
        server.log()
    );

    // The server writes on after the cut, and that survives another restart.
    write_batches(&server, "after", 2).await;
    server.restart().unwrap();
    assert_eq!(
        server
            .count("SELECT COUNT(*) AS n FROM after")
            .await
            .unwrap(),
        2 * 50
    );
}
