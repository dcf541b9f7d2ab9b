//! Manifests, references and garbage collection over HTTP (issue 13), in-process on the
//! simulated engine: manifest PUT, GET, HEAD and DELETE and the listing over HTTP/1.1 and
//! HTTP/2; what malformed, oversized and unauthorised requests get; `/meta`'s references
//! and state; `POST /v1/gc` once the grace period has passed (a manual GC clock, so no test
//! sleeps); reads of expired chunks on every answer path (memory tier, flash, HEAD, 304,
//! ranges) served, counted and saving the chunk, as a PUT of it does (with and without
//! `Expect: 100-continue`); a node full of referenced chunks (507 until the manifest
//! goes); and the GC metrics.
//!
//! Its own test binary, so the process-wide recorder holds this file's traffic only. The
//! store's GC figures are recorded at each scrape from the scraping node's store, so
//! scrapes take [`SCRAPES`]: another test's scrape cannot record its store's figures
//! between this one's recording and rendering.

mod inproc;

use std::time::Duration;

use chunkd::store::GcClock;
use inproc::{
    Client, Raw, Response, TestNode, VERSIONS, Version, chunk_bytes, chunk_path, id_of, metric, run,
};

/// The grace period the GC nodes are given (the default, set explicitly).
const GRACE: Duration = Duration::from_secs(600);
/// Where the manual GC clocks start (milliseconds since the Unix epoch).
const CLOCK_START_MS: u64 = 1_800_000_000_000;

/// Held by each scrape of `/metrics` (see the file's comment).
static SCRAPES: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A ready node with devices of `device_mib` MiB and a manual GC clock, which sweeps only
/// when asked (`--gc-interval=0`, unless `flags` set it), so each test decides when sweeps
/// happen.
fn gc_node(flags: &[&str], device_mib: u64) -> (TestNode, GcClock) {
    let clock = GcClock::manual(CLOCK_START_MS);
    let mut all = vec!["--gc-grace=10m"];
    if !flags.iter().any(|f| f.starts_with("--gc-interval")) {
        all.push("--gc-interval=0");
    }
    all.extend_from_slice(flags);
    let node = TestNode::with_store(&all, device_mib, |config| {
        config.gc_clock = clock.clone();
    });
    (node, clock)
}

fn manifest_path(name: &str) -> String {
    format!("/v1/manifests/{name}")
}

fn body_of(ids: &[&str]) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({ "chunks": ids })).unwrap()
}

async fn put_manifest(
    client: &mut Client,
    name: &str,
    ids: &[&str],
    headers: &[(&str, &str)],
) -> Response {
    client
        .request("PUT", &manifest_path(name), headers, &body_of(ids))
        .await
}

/// Expires chunk `id`: names it in manifest `m`, then deletes `m` (201, then 204).
async fn expire(client: &mut Client, id: &str) {
    assert_eq!(put_manifest(client, "m", &[id], &[]).await.status, 201);
    let deleted = client
        .request("DELETE", &manifest_path("m"), &[], b"")
        .await;
    assert_eq!(deleted.status, 204);
}

/// The strings of a JSON array.
fn strings(value: &serde_json::Value) -> Vec<String> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {value}"))
        .iter()
        .map(|v| v.as_str().expect("a string").to_owned())
        .collect()
}

/// `/meta`'s `refs` and `state` of chunk `id`.
async fn refs(client: &mut Client, id: &str) -> (u64, String) {
    let response = client.get(&format!("{}/meta", chunk_path(id)), &[]).await;
    assert_eq!(response.status, 200, "meta: {}", response.text());
    let meta = response.json();
    let state = meta["state"].as_str().expect("a state").to_owned();
    (meta["refs"].as_u64().expect("a count"), state)
}

/// `POST /v1/gc`'s summary.
async fn sweep(client: &mut Client) -> serde_json::Value {
    let response = client.request("POST", "/v1/gc", &[], b"").await;
    assert_eq!(response.status, 200, "POST /v1/gc: {}", response.text());
    assert_eq!(response.header("content-type"), Some("application/json"));
    let summary = response.json();
    for field in [
        "swept_chunks",
        "swept_bytes",
        "cancelled",
        "expired_remaining",
    ] {
        assert!(summary[field].is_u64(), "{field} in {summary}");
    }
    assert!(summary["duration_seconds"].as_f64().unwrap() >= 0.0);
    summary
}

async fn scrape(client: &mut Client) -> String {
    let _only_this_scrape = SCRAPES.lock().await;
    let response = client.get("/metrics", &[]).await;
    assert_eq!(response.status, 200);
    response.text()
}

#[test]
fn a_manifest_keeps_its_order_and_answers_which_chunks_are_missing() {
    run(async {
        for version in VERSIONS {
            let node = TestNode::start(&[]);
            let server = node.server();
            let mut client = Client::connect(&server, version).await;
            let chunks: Vec<Vec<u8>> = (0..4).map(|n| chunk_bytes(100 + n, 20_000)).collect();
            let ids: Vec<String> = chunks.iter().map(|c| id_of(c)).collect();
            let listed: Vec<&str> = [0, 1, 0, 2, 3, 1]
                .iter()
                .map(|&i| ids[i].as_str())
                .collect();

            let created = put_manifest(&mut client, "img-b", &listed, &[]).await;
            assert_eq!(created.status, 201, "{version:?}: {}", created.text());
            let answer = created.json();
            assert_eq!(
                (answer["chunks"].as_u64(), answer["distinct"].as_u64()),
                (Some(6), Some(4))
            );
            assert_eq!(
                strings(&answer["missing"]),
                ids,
                "{version:?}: first occurrences, in order"
            );

            // Upload two; a second PUT replaces the manifest and names only the others.
            client.put_new(&chunks[3]).await;
            client.put_new(&chunks[1]).await;
            let replaced = put_manifest(&mut client, "img-b", &listed, &[]).await;
            assert_eq!(replaced.status, 200, "{version:?}: {}", replaced.text());
            assert_eq!(
                strings(&replaced.json()["missing"]),
                [ids[0].as_str(), ids[2].as_str()]
            );

            let got = client.get(&manifest_path("img-b"), &[]).await;
            assert_eq!(got.status, 200, "{version:?}");
            assert_eq!(got.header("content-type"), Some("application/json"));
            got.assert_length_matches();
            assert_eq!(
                strings(&got.json()["chunks"]),
                listed,
                "order and repeats kept"
            );
            let head = client
                .request("HEAD", &manifest_path("img-b"), &[], b"")
                .await;
            assert_eq!(head.status, 200);
            assert!(head.body.is_empty(), "{version:?}: HEAD has no body");
            assert_eq!(
                head.header("content-length"),
                Some(got.body.len().to_string().as_str())
            );

            // An empty list is a manifest too; the listing is sorted.
            let empty = put_manifest(&mut client, "img-a", &[], &[]).await;
            assert_eq!(empty.status, 201);
            assert_eq!(
                empty.json(),
                serde_json::json!({"chunks": 0, "distinct": 0, "missing": []})
            );
            let list = client.get("/v1/manifests", &[]).await;
            assert_eq!(list.status, 200);
            assert_eq!(strings(&list.json()["manifests"]), ["img-a", "img-b"]);
            let none = client.get(&manifest_path("img-a"), &[]).await;
            assert_eq!(none.json(), serde_json::json!({ "chunks": [] }));
        }
    });
}

#[test]
fn malformed_oversized_and_misdirected_manifest_requests_get_json_errors() {
    run(async {
        let node = TestNode::start(&["--max-manifest-bytes=1K"]);
        let server = node.server();
        let good = id_of(b"good");
        // 20 ids take ~1.3 KiB of JSON: over the 1 KiB limit.
        let many: Vec<String> = (0..20u64).map(|n| id_of(&n.to_le_bytes())).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        for version in VERSIONS {
            let mut client = Client::connect(&server, version).await;
            let path = manifest_path("m");
            let long_name = "x".repeat(129);
            for (name, reason) in [
                (".hidden", "start with '.'"),
                (long_name.as_str(), "at most 128"),
            ] {
                let response = put_manifest(&mut client, name, &[], &[]).await;
                let message = response.assert_error(400);
                assert!(
                    message.contains("invalid manifest name") && message.contains(reason),
                    "{message}"
                );
            }
            let bad_id = put_manifest(&mut client, "m", &[&good, &good, "ABC"], &[]).await;
            let message = bad_id.assert_error(400);
            assert!(message.contains("chunks[2]"), "names the index: {message}");
            for (body, wanted) in [
                (&b"{\"chunks\": ["[..], "invalid manifest"),
                (br#"{"chunks": [], "extra": 1}"#, "unknown field `extra`"),
                (br#"["a"]"#, "invalid manifest"),
            ] {
                let message = client
                    .request("PUT", &path, &[], body)
                    .await
                    .assert_error(400);
                assert!(message.contains(wanted), "{message}");
            }
            let too_large =
                Client::once(&server, version, "PUT", &path, &[], &body_of(&many)).await;
            let message = too_large.assert_error(413);
            assert!(message.contains("1024-byte limit"), "{message}");
            // None of these stored anything.
            client.get(&path, &[]).await.assert_error(404);
            client
                .request("DELETE", &path, &[], b"")
                .await
                .assert_error(404);

            for (method, route, allow) in [
                ("POST", path.as_str(), "GET, HEAD, PUT, DELETE"),
                ("PUT", "/v1/manifests", "GET, HEAD"),
                ("GET", "/v1/gc", "POST"),
            ] {
                let response = client.request(method, route, &[], b"").await;
                response.assert_error(405);
                assert_eq!(response.header("allow"), Some(allow), "{method} {route}");
            }
            client.get("/v1/manifests/a/b", &[]).await.assert_error(404);
        }

        // Without a Content-Length the limit holds as the body arrives.
        let mut raw = Raw::connect(&server);
        let head = "PUT /v1/manifests/m HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";
        raw.send(head.as_bytes()).await.unwrap();
        let body = body_of(&many);
        let mut chunk = format!("{:x}\r\n", body.len()).into_bytes();
        chunk.extend_from_slice(&body);
        chunk.extend_from_slice(b"\r\n0\r\n\r\n");
        raw.send(&chunk).await.unwrap();
        raw.read_response(false).await.unwrap().assert_error(413);
        assert!(node.store().manifest_names().unwrap().is_empty());
    });
}

#[test]
fn manifest_writes_and_sweeps_need_the_token_and_reads_do_not() {
    run(async {
        let node = TestNode::start(&["--write-token", "s3cret"]);
        let server = node.server();
        let token = [("Authorization", "Bearer s3cret")];
        for version in VERSIONS {
            let mut client = Client::connect(&server, version).await;
            let path = manifest_path("m");
            let refused = Client::once(&server, version, "PUT", &path, &[], &body_of(&[])).await;
            refused.assert_error(401);
            assert_eq!(refused.header("www-authenticate"), Some("Bearer"));
            assert_eq!(
                put_manifest(&mut client, "m", &[], &token).await.status,
                201
            );
            assert_eq!(
                client.get(&path, &[]).await.status,
                200,
                "reads need no token"
            );
            assert_eq!(client.get("/v1/manifests", &[]).await.status, 200);
            client
                .request("DELETE", &path, &[], b"")
                .await
                .assert_error(401);
            client
                .request("POST", "/v1/gc", &[], b"")
                .await
                .assert_error(401);
            assert_eq!(
                client.request("POST", "/v1/gc", &token, b"").await.status,
                200
            );
            assert_eq!(
                client.request("DELETE", &path, &token, b"").await.status,
                204
            );
            client.get(&path, &[]).await.assert_error(404);
        }
    });
}

#[test]
fn manifest_and_gc_routes_answer_503_until_the_store_is_open() {
    run(async {
        let node = TestNode::recovering(&[]);
        let server = node.server();
        let mut client = Client::connect(&server, Version::Http1).await;
        let path = manifest_path("m");
        for (method, route, body) in [
            ("GET", "/v1/manifests", Vec::new()),
            ("GET", path.as_str(), Vec::new()),
            ("PUT", path.as_str(), body_of(&[])),
            ("DELETE", path.as_str(), Vec::new()),
            ("POST", "/v1/gc", Vec::new()),
        ] {
            let response = client.request(method, route, &[], &body).await;
            response.assert_error(503);
            assert_eq!(
                response.header("retry-after"),
                Some("1"),
                "{method} {route}"
            );
        }
        node.open_store(64);
        assert_eq!(put_manifest(&mut client, "m", &[], &[]).await.status, 201);
    });
}

#[test]
fn a_chunk_no_manifest_names_expires_and_a_sweep_after_the_grace_deletes_it() {
    run(async {
        let (node, clock) = gc_node(&[], 64);
        let server = node.server();
        let mut client = Client::connect(&server, Version::Http1).await;
        let [a, b, c] = [1u64, 2, 3].map(|n| chunk_bytes(200 + n, 30_000 + n as usize * 1000));
        let [ia, ib, ic] = [&a, &b, &c].map(|bytes| id_of(bytes));
        for bytes in [&a, &b, &c] {
            client.put_new(bytes).await;
        }
        assert_eq!(
            put_manifest(&mut client, "one", &[&ia, &ib, &ia], &[])
                .await
                .status,
            201
        );
        assert_eq!(
            put_manifest(&mut client, "two", &[&ia], &[]).await.status,
            201
        );
        assert_eq!(refs(&mut client, &ia).await, (2, "referenced".into()));
        assert_eq!(
            refs(&mut client, &ib).await,
            (1, "referenced".into()),
            "repeats count once"
        );
        assert_eq!(refs(&mut client, &ic).await, (0, "unreferenced".into()));
        let sweeps_before = {
            let text = scrape(&mut client).await;
            assert_eq!(metric(&text, "chunkd_manifests", &[]), 2.0, "{text}");
            assert_eq!(metric(&text, "chunkd_referenced_chunks", &[]), 2.0);
            assert_eq!(
                metric(&text, "chunkd_referenced_bytes", &[]),
                (a.len() + b.len()) as f64
            );
            assert_eq!(
                metric(&text, "chunkd_pinned_bytes", &[]),
                (a.len() + b.len()) as f64
            );
            metric(&text, "chunkd_gc_sweep_duration_seconds_count", &[])
        };

        let deleted = client
            .request("DELETE", &manifest_path("one"), &[], b"")
            .await;
        assert_eq!(deleted.status, 204);
        assert!(deleted.body.is_empty());
        assert_eq!(refs(&mut client, &ia).await, (1, "referenced".into()));
        assert_eq!(refs(&mut client, &ib).await, (0, "expired".into()));
        let text = scrape(&mut client).await;
        assert_eq!(metric(&text, "chunkd_expired_chunks", &[]), 1.0, "{text}");
        assert_eq!(metric(&text, "chunkd_expired_bytes", &[]), b.len() as f64);

        // Within the grace period a sweep deletes nothing.
        clock.advance(GRACE - Duration::from_secs(1));
        let early = sweep(&mut client).await;
        assert_eq!(
            (
                early["swept_chunks"].as_u64(),
                early["expired_remaining"].as_u64()
            ),
            (Some(0), Some(1)),
            "{early}"
        );
        assert_eq!(refs(&mut client, &ib).await.1, "expired");

        clock.advance(Duration::from_secs(2));
        let after = sweep(&mut client).await;
        assert_eq!(after["swept_chunks"].as_u64(), Some(1), "{after}");
        assert_eq!(after["swept_bytes"].as_u64(), Some(b.len() as u64));
        assert_eq!(after["expired_remaining"].as_u64(), Some(0));
        client.get(&chunk_path(&ib), &[]).await.assert_error(404);
        // Still referenced, and never referenced (left to eviction): both kept.
        assert!(client.get(&chunk_path(&ia), &[]).await.body == a);
        assert!(client.get(&chunk_path(&ic), &[]).await.body == c);

        let text = scrape(&mut client).await;
        assert_eq!(metric(&text, "chunkd_gc_sweeps_total", &[]), 2.0, "{text}");
        assert_eq!(metric(&text, "chunkd_gc_swept_chunks_total", &[]), 1.0);
        assert_eq!(
            metric(&text, "chunkd_gc_swept_bytes_total", &[]),
            b.len() as f64
        );
        assert_eq!(metric(&text, "chunkd_manifests", &[]), 1.0);
        assert_eq!(metric(&text, "chunkd_referenced_chunks", &[]), 1.0);
        assert_eq!(metric(&text, "chunkd_expired_chunks", &[]), 0.0);
        assert_eq!(metric(&text, "chunkd_gc_expired_reads_total", &[]), 0.0);
        assert!(
            metric(&text, "chunkd_gc_sweep_duration_seconds_count", &[]) >= sweeps_before + 2.0
        );
        let last_micros = node.store().gc_stats().last_sweep_micros;
        assert!(
            last_micros > 0,
            "a sweep that deleted a chunk took some time"
        );
        assert_eq!(
            metric(&text, "chunkd_gc_last_sweep_duration_seconds", &[]),
            last_micros as f64 / 1e6
        );
    });
}

/// How a test reads an expired chunk, and the status that read gets.
struct ExpiredRead {
    what: &'static str,
    memory: bool,
    method: &'static str,
    headers: &'static [(&'static str, &'static str)],
    status: u16,
}

/// Every path `get.rs` answers a stored chunk by: the memory tier, a whole read, one range,
/// several ranges, HEAD, 304, 412 and 416.
const EXPIRED_READS: [ExpiredRead; 8] = [
    ExpiredRead {
        what: "memory tier GET",
        memory: true,
        method: "GET",
        headers: &[],
        status: 200,
    },
    ExpiredRead {
        what: "flash GET",
        memory: false,
        method: "GET",
        headers: &[],
        status: 200,
    },
    ExpiredRead {
        what: "flash range",
        memory: false,
        method: "GET",
        headers: &[("Range", "bytes=10-99")],
        status: 206,
    },
    ExpiredRead {
        what: "flash multipart",
        memory: false,
        method: "GET",
        headers: &[("Range", "bytes=0-9,5000-5009")],
        status: 206,
    },
    ExpiredRead {
        what: "HEAD",
        memory: false,
        method: "HEAD",
        headers: &[],
        status: 200,
    },
    ExpiredRead {
        what: "304",
        memory: false,
        method: "GET",
        headers: &[("If-None-Match", "*")],
        status: 304,
    },
    ExpiredRead {
        what: "412",
        memory: false,
        method: "GET",
        headers: &[("If-Match", "\"other\"")],
        status: 412,
    },
    ExpiredRead {
        what: "416",
        memory: false,
        method: "GET",
        headers: &[("Range", "bytes=99999999-")],
        status: 416,
    },
];

#[test]
fn a_read_of_an_expired_chunk_is_served_counted_and_cancels_its_deletion() {
    run(async {
        for case in &EXPIRED_READS {
            let memory = if case.memory { "64M" } else { "0" };
            let (node, clock) = gc_node(&["--memory-cache", memory], 64);
            let server = node.server();
            let mut client = Client::connect(&server, Version::Http1).await;
            let bytes = chunk_bytes(300, 40_000);
            let id = client.put_new(&bytes).await;
            expire(&mut client, &id).await;
            assert_eq!(refs(&mut client, &id).await.1, "expired", "{}", case.what);

            let read = client
                .request(case.method, &chunk_path(&id), case.headers, b"")
                .await;
            assert_eq!(read.status, case.status, "{}: {}", case.what, read.text());
            if case.status == 200 && case.method == "GET" {
                assert!(read.body == bytes, "{}: the chunk's bytes", case.what);
            }
            assert_eq!(
                node.store().gc_stats().expired_reads,
                1,
                "{}: counted once",
                case.what
            );
            assert_eq!(
                refs(&mut client, &id).await,
                (0, "unreferenced".into()),
                "{}",
                case.what
            );
            let text = scrape(&mut client).await;
            assert_eq!(
                metric(&text, "chunkd_gc_expired_reads_total", &[]),
                1.0,
                "{}",
                case.what
            );

            clock.advance(GRACE * 2);
            let summary = sweep(&mut client).await;
            assert_eq!(
                summary["swept_chunks"].as_u64(),
                Some(0),
                "{}: {summary}",
                case.what
            );
            let again = client.get(&chunk_path(&id), &[]).await;
            assert!(
                again.status == 200 && again.body == bytes,
                "{}: still stored",
                case.what
            );
        }
    });
}

#[test]
fn a_node_full_of_referenced_chunks_refuses_puts_until_the_manifest_goes() {
    run(async {
        // 8 MiB devices hold a few dozen 1 MiB chunks; eviction is on, as on any cache.
        let (node, clock) = gc_node(&[], 8);
        let server = node.server();
        let mut client = Client::connect(&server, Version::Http1).await;
        let chunks: Vec<Vec<u8>> = (0..64u64).map(|n| chunk_bytes(1000 + n, 1 << 20)).collect();
        let ids: Vec<String> = chunks.iter().map(|c| id_of(c)).collect();
        let names: Vec<&str> = ids.iter().map(String::as_str).collect();
        assert_eq!(
            put_manifest(&mut client, "big", &names, &[]).await.status,
            201
        );
        let mut stored = 0;
        let mut full = None;
        for bytes in &chunks {
            let response = client.put(bytes, &[]).await;
            if response.status != 201 {
                full = Some(response);
                break;
            }
            stored += 1;
        }
        let full = full.expect("64 MiB of chunks fill a node of 32 MiB of data");
        let message = full.assert_error(507);
        assert!(
            message.contains("named by live manifests") && message.contains("bytes)"),
            "the 507 says why nothing could be evicted: {message}"
        );
        assert!(stored > 0);
        // Nothing referenced was evicted to make room.
        for (bytes, id) in chunks.iter().zip(&ids).take(stored) {
            assert!(client.get(&chunk_path(id), &[]).await.body == *bytes);
        }
        let text = scrape(&mut client).await;
        assert_eq!(
            metric(&text, "chunkd_pinned_chunks", &[]),
            stored as f64,
            "{text}"
        );
        assert_eq!(
            metric(&text, "chunkd_pinned_bytes", &[]),
            (stored << 20) as f64
        );

        // Once the manifest goes its chunks are expired, and evicted first: PUTs succeed
        // again, well within the grace period.
        assert_eq!(
            client
                .request("DELETE", &manifest_path("big"), &[], b"")
                .await
                .status,
            204
        );
        clock.advance(Duration::from_secs(1));
        let next = chunk_bytes(2000, 1 << 20);
        let response = client.put(&next, &[]).await;
        assert_eq!(response.status, 201, "{}", response.text());
        assert!(client.get(&chunk_path(&id_of(&next)), &[]).await.body == next);
    });
}

#[test]
fn a_put_of_an_expired_chunk_cancels_its_deletion_with_or_without_100_continue() {
    run(async {
        let (node, clock) = gc_node(&[], 64);
        let server = node.server();
        let mut client = Client::connect(&server, Version::Http1).await;
        let bytes = chunk_bytes(400, 40_000);
        let id = client.put_new(&bytes).await;
        let len = bytes.len().to_string();
        let waits = [("Expect", "100-continue"), ("Content-Length", len.as_str())];
        for expects_continue in [false, true] {
            expire(&mut client, &id).await;
            assert_eq!(refs(&mut client, &id).await.1, "expired");
            let again = if expects_continue {
                // Answered from the catalog before the body is sent.
                let mut raw = Raw::connect(&server);
                raw.request("PUT", &chunk_path(&id), &waits, b"").await
            } else {
                client.put(&bytes, &[]).await
            };
            assert_eq!(again.status, 200, "100-continue: {expects_continue}");
            let state = refs(&mut client, &id).await;
            assert_eq!(
                state,
                (0, "unreferenced".into()),
                "100-continue: {expects_continue}"
            );
        }
        clock.advance(GRACE * 2);
        assert_eq!(sweep(&mut client).await["swept_chunks"].as_u64(), Some(0));
        assert!(client.get(&chunk_path(&id), &[]).await.body == bytes);
    });
}

#[test]
fn settings_reach_the_store_gc_unreferenced_and_periodic_sweeps() {
    run(async {
        // --gc-unreferenced: a chunk no manifest ever named expires when stored.
        let (node, clock) = gc_node(&["--gc-unreferenced"], 64);
        let server = node.server();
        let mut client = Client::connect(&server, Version::Http1).await;
        let loose = client.put_new(&chunk_bytes(500, 30_000)).await;
        assert_eq!(refs(&mut client, &loose).await.1, "expired");
        clock.advance(GRACE + Duration::from_secs(1));
        assert_eq!(sweep(&mut client).await["swept_chunks"].as_u64(), Some(1));
        client.get(&chunk_path(&loose), &[]).await.assert_error(404);
        drop(client);
        drop(server);

        // --gc-interval: the store sweeps by itself.
        let (node, clock) = gc_node(&["--gc-interval=20ms"], 64);
        let server = node.server();
        let mut client = Client::connect(&server, Version::Http1).await;
        let id = client.put_new(&chunk_bytes(501, 30_000)).await;
        expire(&mut client, &id).await;
        clock.advance(GRACE + Duration::from_secs(1));
        let mut swept = false;
        for _ in 0..500 {
            if node.store().gc_stats().swept_chunks == 1 {
                swept = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(
            swept,
            "no periodic sweep deleted the expired chunk within 5 s"
        );
        client.get(&chunk_path(&id), &[]).await.assert_error(404);
    });
}

/// A manifest of a 10 GiB image's chunks (20,000 ids, 1.3 MB of JSON): a body of many
/// frames, over the h2 flow-control window, and a listing as large coming back.
#[test]
fn a_large_manifest_round_trips_over_http1_and_h2() {
    run(async {
        let node = TestNode::start(&[]);
        let server = node.server();
        let ids: Vec<String> = (0..20_000u64).map(|n| id_of(&n.to_le_bytes())).collect();
        let listed: Vec<&str> = ids.iter().map(String::as_str).collect();
        for version in VERSIONS {
            let mut client = Client::connect(&server, version).await;
            let name = format!("large-{version:?}");
            let put = put_manifest(&mut client, &name, &listed, &[]).await;
            assert_eq!(put.status, 201, "{version:?}: {}", put.text());
            let answer = put.json();
            assert_eq!(answer["distinct"].as_u64(), Some(20_000));
            assert_eq!(strings(&answer["missing"]), ids, "{version:?}");
            let got = client.get(&manifest_path(&name), &[]).await;
            assert_eq!(got.status, 200);
            assert_eq!(strings(&got.json()["chunks"]), ids, "{version:?}");
        }
        assert_eq!(node.store().gc_stats().referenced_chunks, 20_000);
    });
}

#[test]
fn a_swept_chunk_leaves_the_memory_tier_too() {
    run(async {
        let (node, clock) = gc_node(&["--memory-cache", "64M"], 64);
        let server = node.server();
        let mut client = Client::connect(&server, Version::Http1).await;
        let bytes = chunk_bytes(600, 40_000);
        let id = client.put_new(&bytes).await;
        let memory = node.node.memory().expect("the memory tier is on");
        assert!(memory.contains(&id.parse().unwrap()), "admitted on PUT");
        expire(&mut client, &id).await;
        clock.advance(GRACE * 2);
        assert_eq!(sweep(&mut client).await["swept_chunks"].as_u64(), Some(1));
        assert!(!memory.contains(&id.parse().unwrap()));
        client.get(&chunk_path(&id), &[]).await.assert_error(404);
        let meta = client.get(&format!("{}/meta", chunk_path(&id)), &[]).await;
        meta.assert_error(404);
    });
}

/// `--max-manifests` bounds how many manifests a node keeps: a new one beyond it is
/// refused with 507 and a reason; replacing one is allowed; deleting one makes room.
#[test]
fn a_new_manifest_beyond_max_manifests_is_refused_and_a_replacement_is_not() {
    run(async {
        let node = TestNode::start(&["--max-manifests=2"]);
        let server = node.server();
        for version in VERSIONS {
            let mut client = Client::connect(&server, version).await;
            for name in ["a", "b"] {
                assert_eq!(put_manifest(&mut client, name, &[], &[]).await.status, 201);
            }
            let refused = put_manifest(&mut client, "c", &[], &[]).await;
            let message = refused.assert_error(507);
            assert!(message.contains("at most 2 manifests"), "{message}");
            assert_eq!(put_manifest(&mut client, "b", &[], &[]).await.status, 200);
            let listed = client.get("/v1/manifests", &[]).await.json();
            assert_eq!(strings(&listed["manifests"]), ["a", "b"]);
            assert_eq!(
                client
                    .request("DELETE", &manifest_path("a"), &[], b"")
                    .await
                    .status,
                204
            );
            assert_eq!(put_manifest(&mut client, "c", &[], &[]).await.status, 201);
            for name in ["b", "c"] {
                let path = manifest_path(name);
                assert_eq!(client.request("DELETE", &path, &[], b"").await.status, 204);
            }
        }
    });
}
