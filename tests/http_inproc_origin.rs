//! Filling misses from an origin, in-process on the simulated engine with a `file://`
//! origin (a directory of chunks named by id): a miss is fetched once, verified, answered
//! as a stored chunk would be (whole, one range, several ranges, HEAD, 304, 412, 416) and
//! stored; bytes that do not hash to the id get 502 and nothing is stored; an origin 404
//! is a 404 (remembered with `--origin-not-found-ttl`); chunks a node holds never touch the
//! origin; manifests do not pin chunks on a node with an origin.
//!
//! The real origins (HTTP, S3 on moto), timeouts, retries and 200 concurrent misses are
//! tested against the binary in `tests/origin.rs`.

mod inproc;

use std::path::Path;

use inproc::{Client, TestNode, VERSIONS, Version, chunk_bytes, chunk_path, id_of, run};

/// Spans all four data shards under 4 + 1.
const CHUNK_LEN: usize = 300_001;

/// A node filling misses from the directory `dir`, with `flags` too.
fn node_with_origin(dir: &Path, flags: &[&str]) -> TestNode {
    let origin = format!("file://{}/", dir.display());
    let mut all = vec!["--origin", origin.as_str()];
    all.extend_from_slice(flags);
    TestNode::start(&all)
}

/// Puts `bytes` at the origin under `name` (its id, unless a test lies).
fn at_origin(dir: &Path, name: &str, bytes: &[u8]) {
    std::fs::write(dir.join(name), bytes).expect("the origin directory is writable");
}

/// Waits (a bounded while) until the fill of `id` is stored: a fill answers from the
/// verified bytes before its store completes.
async fn wait_stored(client: &mut Client, id: &str) {
    let path = format!("{}/meta", chunk_path(id));
    for _ in 0..500 {
        if client.get(&path, &[]).await.status == 200 {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("the fill of {id} was not stored within 5 s");
}

fn fetches(node: &TestNode) -> u64 {
    node.node.origin.as_ref().expect("an origin").fetches()
}

#[test]
fn a_miss_is_filled_once_verified_and_then_served_as_stored() {
    run(async {
        let dir = tempfile::tempdir().unwrap();
        let node = node_with_origin(dir.path(), &["--memory-cache", "0"]);
        let server = node.server();
        let bytes = chunk_bytes(41, CHUNK_LEN);
        let id = id_of(&bytes);
        at_origin(dir.path(), &id, &bytes);
        let mut client = Client::connect(&server, Version::Http1).await;
        let meta = client.get(&format!("{}/meta", chunk_path(&id)), &[]).await;
        assert_eq!(meta.status, 404, "not stored before the fill");
        let got = client.get(&chunk_path(&id), &[]).await;
        assert_eq!(got.status, 200);
        assert!(got.body == bytes, "the filled chunk is byte-exact");
        assert_eq!(got.header("etag"), Some(format!("\"{id}\"").as_str()));
        assert_eq!(fetches(&node), 1);
        // Stored: the origin's copy can go, and the node still serves it from flash.
        wait_stored(&mut client, &id).await;
        std::fs::remove_file(dir.path().join(&id)).unwrap();
        for version in VERSIONS {
            let mut client = Client::connect(&server, version).await;
            let again = client.get(&chunk_path(&id), &[]).await;
            assert_eq!(again.status, 200);
            assert!(again.body == bytes);
        }
        assert_eq!(fetches(&node), 1, "a stored chunk never asks the origin");
    });
}

#[test]
fn ranges_heads_and_conditionals_on_a_miss_are_answered_as_for_a_stored_chunk() {
    run(async {
        let dir = tempfile::tempdir().unwrap();
        let node = node_with_origin(dir.path(), &[]);
        let server = node.server();
        let mut client = Client::connect(&server, Version::Http2).await;
        let chunks: Vec<Vec<u8>> = (0..6).map(|n| chunk_bytes(50 + n, CHUNK_LEN)).collect();
        let ids: Vec<String> = chunks.iter().map(|b| id_of(b)).collect();
        for (id, bytes) in ids.iter().zip(&chunks) {
            at_origin(dir.path(), id, bytes);
        }

        let one = client
            .get(&chunk_path(&ids[0]), &[("range", "bytes=1000-1999")])
            .await;
        assert_eq!(one.status, 206);
        assert_eq!(
            one.header("content-range"),
            Some(format!("bytes 1000-1999/{CHUNK_LEN}").as_str())
        );
        assert!(one.body == chunks[0][1000..2000]);

        let several = client
            .get(
                &chunk_path(&ids[1]),
                &[("range", "bytes=0-9,200000-200009")],
            )
            .await;
        assert_eq!(several.status, 206);
        let content_type = several.header("content-type").expect("a content type");
        let parts = inproc::parse_multipart(content_type, &several.body);
        inproc::check_parts(&parts, &chunks[1], &[(0, 9), (200_000, 200_009)]);

        let head = client.request("HEAD", &chunk_path(&ids[2]), &[], &[]).await;
        assert_eq!(head.status, 200);
        assert_eq!(
            head.header("content-length"),
            Some(CHUNK_LEN.to_string().as_str())
        );
        assert!(head.body.is_empty());

        let etag = format!("\"{}\"", ids[3]);
        let not_modified = client
            .get(&chunk_path(&ids[3]), &[("if-none-match", &etag)])
            .await;
        assert_eq!(not_modified.status, 304);

        let failed = client
            .get(&chunk_path(&ids[4]), &[("if-match", "\"other\"")])
            .await;
        assert_eq!(failed.status, 412);

        let unsatisfiable = client
            .get(&chunk_path(&ids[5]), &[("range", "bytes=9999999-")])
            .await;
        assert_eq!(unsatisfiable.status, 416);

        assert_eq!(fetches(&node), 6, "each miss fetched its chunk once");
        for id in &ids {
            // Every kind of request stored its fill.
            wait_stored(&mut client, id).await;
            std::fs::remove_file(dir.path().join(id)).unwrap();
        }
        for (id, bytes) in ids.iter().zip(&chunks) {
            let whole = client.get(&chunk_path(id), &[]).await;
            assert_eq!(whole.status, 200);
            assert!(whole.body == *bytes);
        }
        assert_eq!(fetches(&node), 6);
    });
}

#[test]
fn wrong_bytes_are_a_502_and_never_stored_and_the_next_request_asks_again() {
    run(async {
        let dir = tempfile::tempdir().unwrap();
        let node = node_with_origin(dir.path(), &[]);
        let server = node.server();
        let mut client = Client::connect(&server, Version::Http1).await;
        let bytes = chunk_bytes(60, CHUNK_LEN);
        let id = id_of(&bytes);
        let mut wrong = bytes.clone();
        wrong[CHUNK_LEN / 2] ^= 1;
        at_origin(dir.path(), &id, &wrong);

        for (method, round) in [("GET", 1), ("HEAD", 2)] {
            let refused = client.request(method, &chunk_path(&id), &[], &[]).await;
            assert_eq!(refused.status, 502, "{method}");
            if method == "GET" {
                let message = refused.assert_error(502);
                assert!(message.contains(&id), "names what it fetched: {message}");
            }
            assert_eq!(fetches(&node), round, "a failed fill is not remembered");
            let meta = client.get(&format!("{}/meta", chunk_path(&id)), &[]).await;
            assert_eq!(meta.status, 404, "nothing stored");
        }
        // A longer body is refused as well (the buffer is sized from the origin's length).
        let mut longer = bytes.clone();
        longer.push(0);
        at_origin(dir.path(), &id, &longer);
        assert_eq!(client.get(&chunk_path(&id), &[]).await.status, 502);

        at_origin(dir.path(), &id, &bytes);
        let filled = client.get(&chunk_path(&id), &[]).await;
        assert_eq!(
            filled.status, 200,
            "the origin fixed: the next request fills"
        );
        assert!(filled.body == bytes);
        assert_eq!(fetches(&node), 4);
    });
}

#[test]
fn an_origin_404_is_a_404_and_is_remembered_only_when_asked() {
    run(async {
        let dir = tempfile::tempdir().unwrap();
        let plain = node_with_origin(dir.path(), &[]);
        let remembering = node_with_origin(dir.path(), &["--origin-not-found-ttl", "1h"]);
        let bytes = chunk_bytes(70, 1000);
        let id = id_of(&bytes);
        for node in [&plain, &remembering] {
            let server = node.server();
            let mut client = Client::connect(&server, Version::Http1).await;
            for _ in 0..2 {
                let missing = client.get(&chunk_path(&id), &[]).await;
                missing.assert_error(404);
                let head = client.request("HEAD", &chunk_path(&id), &[], &[]).await;
                assert_eq!(head.status, 404);
            }
            let ready = client.get("/readyz", &[]).await;
            assert_eq!(
                ready.status, 200,
                "an origin's 404 is no reason to be unready"
            );
        }
        assert_eq!(fetches(&plain), 4, "every miss asks the origin");
        assert_eq!(fetches(&remembering), 1, "the 404 was remembered");

        at_origin(dir.path(), &id, &bytes);
        let server = plain.server();
        let mut client = Client::connect(&server, Version::Http1).await;
        assert_eq!(client.get(&chunk_path(&id), &[]).await.status, 200);
        let server = remembering.server();
        let mut client = Client::connect(&server, Version::Http1).await;
        assert_eq!(
            client.get(&chunk_path(&id), &[]).await.status,
            404,
            "still remembered within the TTL"
        );
    });
}

#[test]
fn with_an_origin_chunks_named_by_manifests_are_not_pinned() {
    run(async {
        let dir = tempfile::tempdir().unwrap();
        let with_origin = node_with_origin(dir.path(), &[]);
        let without = TestNode::start(&[]);
        for (node, pinned) in [(&with_origin, 0), (&without, 1)] {
            let server = node.server();
            let mut client = Client::connect(&server, Version::Http1).await;
            let bytes = chunk_bytes(80, 4096);
            let id = client.put_new(&bytes).await;
            let manifest = format!("{{\"chunks\": [\"{id}\"]}}");
            let put = client
                .request("PUT", "/v1/manifests/image", &[], manifest.as_bytes())
                .await;
            assert_eq!(put.status, 201, "{}", put.text());
            let stats = node.store().gc_stats();
            assert_eq!(stats.referenced_stored_chunks, 1);
            assert_eq!(
                stats.pinned_chunks, pinned,
                "pinned only where no origin could fill it again"
            );
        }
    });
}

#[test]
fn a_stored_chunk_that_cannot_be_read_now_is_filled_instead_of_a_503() {
    run(async {
        let dir = tempfile::tempdir().unwrap();
        let node = node_with_origin(dir.path(), &[]);
        let server = node.server();
        let mut client = Client::connect(&server, Version::Http1).await;
        let bytes = chunk_bytes(90, CHUNK_LEN);
        let id = client.put_new(&bytes).await;
        // Damage data shards 0 and 1: one more than the 4 + 1 scheme can lose.
        for shard in 0..2 {
            node.corrupt_shard(&id, shard, 1000);
        }
        at_origin(dir.path(), &id, &bytes);
        for version in VERSIONS {
            let mut client = Client::connect(&server, version).await;
            let whole = client.get(&chunk_path(&id), &[]).await;
            assert_eq!(whole.status, 200, "filled, not 503: {}", whole.text());
            assert!(
                whole.body == bytes,
                "the origin's bytes, never the damaged ones"
            );
            let range = client
                .get(&chunk_path(&id), &[("range", "bytes=500-1500")])
                .await;
            assert_eq!(range.status, 206);
            assert!(range.body == bytes[500..=1500]);
        }
        assert!(
            fetches(&node) >= 1,
            "the origin answered for the damaged chunk"
        );
    });
}

#[test]
fn fetched_chunks_waiting_for_their_store_are_bounded_by_origin_concurrency() {
    run(async {
        const LEN: usize = 1 << 20;
        let dir = tempfile::tempdir().unwrap();
        let flags = ["--origin-concurrency", "1", "--memory-cache", "0"];
        let node = node_with_origin(dir.path(), &flags);
        let server = node.server();
        let ids: Vec<String> = (0..6u64)
            .map(|n| {
                let bytes = chunk_bytes(9_000 + n, LEN);
                let id = id_of(&bytes);
                at_origin(dir.path(), &id, &bytes);
                id
            })
            .collect();
        // Every device I/O takes 100 ms: stores are far slower than fetches.
        node.engine
            .set_faults(chunkd::store::device::sim::FaultPlan {
                latency: Some(std::time::Duration::from_millis(100)),
                ..Default::default()
            });
        let origin = node.node.origin.as_ref().expect("an origin");
        let mut client = Client::connect(&server, Version::Http1).await;
        let mut most = 0;
        for id in &ids {
            let got = client.get(&chunk_path(id), &[]).await;
            assert_eq!(got.status, 200);
            // A fill in flight holds its chunk from its fetch to the end of its store;
            // the next fetch waits for the one slot, so at most the one just answered
            // (storing) and none other hold a chunk.
            most = most.max(origin.fills_in_flight());
        }
        assert!(
            most <= 1,
            "{most} fills held their chunks at --origin-concurrency 1"
        );
    });
}

#[test]
fn an_origin_password_is_never_shown_to_clients() {
    run(async {
        // Nothing listens on port 1: every fill fails, and its error names the URL.
        let node = TestNode::start(&["--origin", "http://user:s3cret@127.0.0.1:1/chunks/"]);
        let server = node.server();
        let mut client = Client::connect(&server, Version::Http1).await;
        let id = id_of(b"missing");
        let refused = client.get(&chunk_path(&id), &[]).await;
        let message = refused.assert_error(502);
        assert!(
            message.contains("http://127.0.0.1:1/chunks/"),
            "the URL is named: {message}"
        );
        assert!(!message.contains("s3cret"), "the password leaks: {message}");
    });
}
