//! Graceful shutdown of one core, in-process: once the node begins to shut down, idle
//! connections close, in-flight requests finish (told `Connection: close`) and the
//! core's drain returns; a drain whose requests stall past its deadline reports it.
//! Signals, exit statuses and the listeners closing are tested against the binary
//! (`http_lifecycle.rs`).

mod inproc;

use std::time::Duration;

use inproc::{Client, Raw, TestNode, Version, chunk_bytes, chunk_path, id_of, run};

/// Starts a PUT of `bytes` that waits for `100 Continue` (sent when the handler starts
/// reading the body), then sends half of the body: a request known to be in flight.
async fn half_a_put(raw: &mut Raw, bytes: &[u8]) {
    let head = format!(
        "PUT {} HTTP/1.1\r\nHost: a\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
        chunk_path(&id_of(bytes)),
        bytes.len()
    );
    raw.send(head.as_bytes()).await.unwrap();
    assert_eq!(raw.read_interim().await.unwrap(), 100);
    raw.send(&bytes[..bytes.len() / 2]).await.unwrap();
}

#[test]
fn shutdown_closes_idle_connections_and_lets_in_flight_requests_finish() {
    run(async {
        let node = TestNode::start(&[]);
        let server = node.server();
        let stored = chunk_bytes(40, 1 << 20);
        let mut client = Client::connect(&server, Version::Http1).await;
        client.put_new(&stored).await;
        let uploading = chunk_bytes(41, 300_000);
        let mut upload = Raw::connect(&server);
        half_a_put(&mut upload, &uploading).await;
        let mut idle = Raw::connect(&server);
        assert_eq!(idle.request("GET", "/healthz", &[], b"").await.status, 200);

        node.node.begin_shutdown();
        let drained = tokio::task::spawn_local(server.drain(Duration::from_secs(30)));
        assert!(
            idle.closed_within(Duration::from_secs(5)).await,
            "an idle keep-alive connection is closed at shutdown"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!drained.is_finished(), "the drain waits for the upload");

        upload
            .send(&uploading[uploading.len() / 2..])
            .await
            .unwrap();
        let created = upload.read_response(false).await.unwrap();
        assert_eq!(created.status, 201, "{}", created.text());
        assert_eq!(created.header("connection"), Some("close"));
        assert!(upload.closed_within(Duration::from_secs(5)).await);
        assert!(drained.await.unwrap(), "every connection closed in time");
        assert_eq!(node.node.open_connections(), 0);
        // The upload finished during shutdown is stored.
        let id = id_of(&uploading).parse().unwrap();
        assert_eq!(node.store().list(None, 10).unwrap().len(), 2);
        assert!(node.store().shard_locations(&id).unwrap().is_some());
    });
}

#[test]
fn a_drain_past_its_deadline_says_so() {
    run(async {
        let node = TestNode::start(&[]);
        let server = node.server();
        let mut stalled = Raw::connect(&server);
        half_a_put(&mut stalled, &chunk_bytes(43, 300_000)).await;
        tokio::time::pause();
        node.node.begin_shutdown();
        let started = tokio::time::Instant::now();
        assert!(!server.drain(Duration::from_secs(30)).await);
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_secs(30)
                && waited < Duration::from_secs(30) + Duration::from_millis(10),
            "gave up after {waited:?}"
        );
    });
}
