//! Read-through from an origin (issue 14) with the real `chunkd serve` binary and real
//! origins started by the tests: an HTTP origin (`harness::HttpOrigin`, which counts the
//! requests that reach it), moto's S3 server (`harness::Moto`) and a `file://` directory.
//! A miss is filled, verified and stored, then served like any stored chunk (ranges,
//! HEAD, conditionals); origin 404s, wrong bytes, slow, failing and stopped origins get
//! the statuses api.md gives them without taking the node out of `/readyz`; 200
//! concurrent misses of one id make exactly one origin request.

mod harness;

use std::net::SocketAddr;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use harness::{
    Behaviour, Client, HttpOrigin, Launch, Moto, Response, Server, check_parts, chunk_bytes,
    chunk_path, get, id_of, metric, metrics, moto_or_skip, parse_multipart, put_new, request,
    wait_for_metric,
};

/// Spans all four data shards under 4 + 1.
const CHUNK_LEN: usize = 300_001;
/// The `--origin-timeout` of the slow-origin test, and the bound its 504s must come
/// within: the timeout plus a margin generous enough for a loaded two-core machine.
const SLOW_TIMEOUT: &str = "1s";
const SLOW_ANSWER_LIMIT: Duration = Duration::from_secs(5);
/// How long the test origins stall when asked to: far past any timeout under test (the
/// origin cuts its stalls short when it is dropped, so this costs no test time).
const STALL: Duration = Duration::from_secs(60);

/// A node whose origin is `origin` (a URL), with `args` after it.
fn node(origin: &str, args: &[&str]) -> Server {
    let mut all = vec!["--origin", origin];
    all.extend_from_slice(args);
    Server::start(Launch::args(&all))
}

/// Asserts `response` is chunk `bytes` whole: 200, byte-exact, its ETag and length.
fn assert_whole(response: &Response, bytes: &[u8]) {
    assert_eq!(response.status, 200, "{:?}", response.text());
    assert!(response.body == bytes, "the body differs from the chunk");
    response.assert_length_matches();
    let etag = format!("\"{}\"", id_of(bytes));
    assert_eq!(response.header("etag"), Some(etag.as_str()));
}

/// The status of `GET /v1/chunks/{id}/meta`: 200 once the chunk is stored.
fn meta_status(addr: SocketAddr, id: &str) -> u16 {
    get(addr, &format!("{}/meta", chunk_path(id)), &[]).status
}

/// Waits until chunk `id` is stored (`/meta` 200) and returns its meta. A fill answers its
/// requests from the verified bytes before the store's writes finish (`src/http/fill.rs`),
/// so `/meta` may say 404 for a moment after the answer; fails after 5 s.
fn wait_stored(addr: SocketAddr, id: &str) -> serde_json::Value {
    let started = Instant::now();
    loop {
        let meta = get(addr, &format!("{}/meta", chunk_path(id)), &[]);
        if meta.status == 200 {
            return meta.json();
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "chunk {id} not stored 5 s after its fill: {} {}",
            meta.status,
            meta.text()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn assert_ready(addr: SocketAddr) {
    assert_eq!(get(addr, "/readyz", &[]).status, 200, "/readyz");
}

/// Waits until `chunkd_origin_requests_total{outcome}` reaches `expected`, then checks it
/// is exactly that.
fn assert_outcomes(addr: SocketAddr, outcome: &str, expected: u64) {
    let labels = [("outcome", outcome)];
    let name = "chunkd_origin_requests_total";
    let value = wait_for_metric(addr, name, &labels, |v| v >= expected as f64);
    assert_eq!(value, expected as f64, "{name}{{outcome={outcome:?}}}");
}

/// Waits until `name` reaches `expected`, then checks it is exactly that.
fn assert_metric(addr: SocketAddr, name: &str, expected: f64) {
    let value = wait_for_metric(addr, name, &[], |v| v >= expected);
    assert_eq!(value, expected, "{name}");
}

#[test]
fn a_miss_is_filled_from_the_origin_then_served_as_stored() {
    let origin = HttpOrigin::start("chunks");
    let bytes = chunk_bytes(1_400, CHUNK_LEN);
    let id = origin.serve(&bytes);
    let server = node(&origin.url(), &[]);
    let addr = server.addr;
    assert_eq!(meta_status(addr, &id), 404, "not held before the miss");

    assert_whole(&get(addr, &chunk_path(&id), &[]), &bytes);
    assert_eq!(origin.requests(&id), 1);
    assert_eq!(wait_stored(addr, &id)["len"], CHUNK_LEN as u64);

    // Now a hit: served without asking the origin.
    assert_whole(&get(addr, &chunk_path(&id), &[]), &bytes);
    assert_eq!(origin.requests(&id), 1, "the second GET reached the origin");

    // A chunk PUT to the node never touches the origin.
    let put = chunk_bytes(1_401, 10_000);
    let put_id = put_new(addr, &put, &[]);
    assert_whole(&get(addr, &chunk_path(&put_id), &[]), &put);
    assert_eq!(
        origin.total_requests(),
        1,
        "only the one fill reached the origin"
    );

    assert_outcomes(addr, "filled", 1);
    let text = metrics(addr);
    let received = metric(&text, "chunkd_origin_bytes_total", &[]);
    assert_eq!(received, CHUNK_LEN as f64, "bytes received from the origin");
    let fetches = metric(&text, "chunkd_origin_fetch_duration_seconds_count", &[]);
    assert_eq!(fetches, 1.0, "fetch latency observations");
    assert_eq!(metric(&text, "chunkd_origin_fills_in_flight", &[]), 0.0);
    assert_eq!(metric(&text, "chunkd_origin_coalesced_total", &[]), 0.0);
}

/// Ranges (one and several), HEAD, and the conditionals on a miss, each on a chunk the node
/// does not hold yet: each is answered as for a stored chunk, after one origin request.
#[test]
fn ranges_heads_and_conditionals_work_on_a_miss() {
    let origin = HttpOrigin::start("c");
    let chunks: Vec<Vec<u8>> = (0..6).map(|n| chunk_bytes(1_410 + n, CHUNK_LEN)).collect();
    let ids: Vec<String> = chunks.iter().map(|b| origin.serve(b)).collect();
    let server = node(&origin.url(), &[]);
    let addr = server.addr;
    let path = |n: usize| chunk_path(&ids[n]);

    let one = get(addr, &path(0), &[("Range", "bytes=100-199")]);
    assert_eq!(one.status, 206, "{:?}", one.text());
    assert_eq!(one.header("content-range"), Some("bytes 100-199/300001"));
    assert_eq!(one.body, &chunks[0][100..200]);

    let many = get(addr, &path(1), &[("Range", "bytes=0-9,77820-77830,-5")]);
    assert_eq!(many.status, 206, "{:?}", many.text());
    let parts = parse_multipart(many.header("content-type").unwrap(), &many.body);
    let wanted = [(0, 9), (77_820, 77_830), (299_996, 300_000)];
    check_parts(&parts, &chunks[1], &wanted);

    // HEAD: the length, no body — the next answer on the connection parses cleanly only
    // if none was sent — and the chunk is stored by it (below, with the others).
    let mut client = Client::connect(addr);
    let head = client.request("HEAD", &path(2), &[], b"");
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), Some("300001"));
    let etag = format!("\"{}\"", ids[2]);
    assert_eq!(head.header("etag"), Some(etag.as_str()));
    let next = client.request("GET", "/readyz", &[], b"");
    assert_eq!(next.status, 200, "the answer after the HEAD: {next:?}");

    let etag = format!("\"{}\"", ids[3]);
    let not_modified = get(addr, &path(3), &[("If-None-Match", &etag)]);
    assert_eq!(not_modified.status, 304);
    assert!(not_modified.body.is_empty());
    assert_eq!(not_modified.header("etag"), Some(etag.as_str()));

    let failed = get(addr, &path(4), &[("If-Match", "\"nope\"")]);
    assert_eq!(failed.status, 412);
    let unsatisfiable = get(addr, &path(5), &[("Range", "bytes=300001-")]);
    assert_eq!(unsatisfiable.status, 416);
    assert_eq!(
        unsatisfiable.header("content-range"),
        Some("bytes */300001")
    );

    for (n, id) in ids.iter().enumerate() {
        assert_eq!(origin.requests(id), 1, "chunk {n}: one origin request");
        wait_stored(addr, id);
    }
    assert_whole(&get(addr, &path(4), &[]), &chunks[4]);
    assert_eq!(origin.total_requests(), 6, "the last GET was a hit");
    assert_outcomes(addr, "filled", 6);
}

#[test]
fn an_origin_404_is_a_404_and_the_node_stays_ready() {
    let origin = HttpOrigin::start("chunks");
    let id = id_of(b"on no origin");
    let server = node(&origin.url(), &[]);
    let addr = server.addr;
    let message = get(addr, &chunk_path(&id), &[]).assert_error(404);
    assert!(!message.is_empty());
    let head = request(addr, "HEAD", &chunk_path(&id), &[], b"");
    assert_eq!(head.status, 404);
    // Without --origin-not-found-ttl each miss asks again.
    assert_eq!(origin.requests(&id), 2);
    assert_outcomes(addr, "not_found", 2);
    assert_eq!(meta_status(addr, &id), 404);
    assert_ready(addr);
}

/// Bytes that do not hash to the id: 502, nothing stored, counted and logged with the
/// origin URL; the next request asks the origin again, and fills once it has the right
/// bytes.
#[test]
fn wrong_bytes_are_a_502_stored_nowhere_and_fetched_again_next_time() {
    let origin = HttpOrigin::start("chunks");
    let right = chunk_bytes(1_420, CHUNK_LEN);
    let id = id_of(&right);
    origin.set(&id, Behaviour::Serve(chunk_bytes(1_421, CHUNK_LEN)));
    let server = node(&origin.url(), &[]);
    let addr = server.addr;

    let url = origin.url_of(&id);
    let message = get(addr, &chunk_path(&id), &[]).assert_error(502);
    assert!(message.contains(&url), "the error names {url}: {message}");
    assert_eq!(origin.requests(&id), 1);
    assert_eq!(meta_status(addr, &id), 404, "wrong bytes were stored");
    assert_metric(addr, "chunkd_origin_verification_failures_total", 1.0);
    assert_outcomes(addr, "mismatch", 1);
    let logged = server
        .log()
        .lines()
        .any(|l| l.contains("WARN") && l.contains(&url));
    assert!(logged, "no warning naming {url}:\n{}", server.log());

    get(addr, &chunk_path(&id), &[]).assert_error(502);
    assert_eq!(origin.requests(&id), 2, "the failed fill was remembered");
    assert_metric(addr, "chunkd_origin_verification_failures_total", 2.0);

    origin.set(&id, Behaviour::Serve(right.clone()));
    assert_whole(&get(addr, &chunk_path(&id), &[]), &right);
    assert_eq!(origin.requests(&id), 3);
    wait_stored(addr, &id);

    // Longer than --max-chunk-bytes (1 MiB by default), even if its id is right.
    let long = chunk_bytes(1_422, (1 << 20) + 1);
    let long_id = origin.serve(&long);
    get(addr, &chunk_path(&long_id), &[]).assert_error(502);
    assert_eq!(
        meta_status(addr, &long_id),
        404,
        "an oversized chunk was stored"
    );
    assert_ready(addr);
}

/// An origin slower than --origin-timeout — before its headers or in the middle of its
/// body — gets a 504 within about the timeout; the next request tries again.
#[test]
fn a_slow_origin_is_a_504_within_the_timeout() {
    let origin = HttpOrigin::start("chunks");
    let late = chunk_bytes(1_430, CHUNK_LEN);
    let stalled = chunk_bytes(1_431, CHUNK_LEN);
    let (late_id, stalled_id) = (id_of(&late), id_of(&stalled));
    origin.set(&late_id, Behaviour::DelayHeaders(STALL, late.clone()));
    origin.set(&stalled_id, Behaviour::StallBody(STALL, stalled.clone()));
    let server = node(&origin.url(), &["--origin-timeout", SLOW_TIMEOUT]);
    let addr = server.addr;

    for (what, id) in [("headers", &late_id), ("body", &stalled_id)] {
        let started = Instant::now();
        let response = get(addr, &chunk_path(id), &[]);
        let took = started.elapsed();
        let message = response.assert_error(504);
        let url = origin.url_of(id);
        assert!(message.contains(&url), "the error names {url}: {message}");
        assert!(
            took < SLOW_ANSWER_LIMIT,
            "a stall in the {what}: 504 after {took:?}"
        );
        assert!(
            took >= Duration::from_millis(900),
            "a stall in the {what}: 504 after only {took:?}, before the 1 s timeout"
        );
        assert!(
            origin.requests(id) >= 1,
            "the origin was asked for the {what}"
        );
        assert_eq!(meta_status(addr, id), 404);
    }
    assert_outcomes(addr, "timeout", 2);
    assert_ready(addr);

    origin.set(&late_id, Behaviour::Serve(late.clone()));
    assert_whole(&get(addr, &chunk_path(&late_id), &[]), &late);
}

/// At `--origin-concurrency 1`, a second fill waits for the one slot; when it has waited
/// most of `--origin-timeout` for it, it is the node that is busy, not the origin that is
/// slow: 503 with Retry-After, counted as `busy`; the first fill's is a 504.
#[test]
fn a_fill_that_waited_for_a_fetch_slot_until_too_late_is_a_503() {
    let origin = HttpOrigin::start("chunks");
    let chunks: Vec<Vec<u8>> = (0..2).map(|n| chunk_bytes(1_435 + n, CHUNK_LEN)).collect();
    let ids: Vec<String> = chunks.iter().map(|b| id_of(b)).collect();
    for (id, bytes) in ids.iter().zip(&chunks) {
        origin.set(id, Behaviour::DelayHeaders(STALL, bytes.clone()));
    }
    let args = [
        "--origin-timeout",
        SLOW_TIMEOUT,
        "--origin-concurrency",
        "1",
    ];
    let server = node(&origin.url(), &args);
    let addr = server.addr;

    let start = Arc::new(Barrier::new(ids.len()));
    let clients: Vec<_> = ids
        .iter()
        .map(|id| {
            let (start, path) = (Arc::clone(&start), chunk_path(id));
            std::thread::spawn(move || {
                let mut client = Client::connect(addr);
                start.wait();
                client.request("GET", &path, &[], b"")
            })
        })
        .collect();
    let mut statuses: Vec<(u16, Option<String>)> = clients
        .into_iter()
        .map(|c| {
            let response = c.join().expect("a client thread");
            let retry_after = response.header("retry-after").map(str::to_owned);
            (response.status, retry_after)
        })
        .collect();
    statuses.sort();
    assert_eq!(
        statuses,
        [(503, Some("1".to_owned())), (504, None)],
        "one fill timed out at the origin, the other waited for the slot"
    );
    // The waiter gets the slot when the holder times out, with moments of its own time
    // left: its request may or may not reach the origin before it times out in turn.
    let asked = origin.total_requests();
    assert!(
        (1..=2).contains(&asked),
        "{asked} origin requests for two fills"
    );
    assert_outcomes(addr, "busy", 1);
    assert_outcomes(addr, "timeout", 1);
    assert_ready(addr);
}

/// A DELETE right after a fill's answer removes the chunk for good: the fill's store,
/// which lands after its answer, must not bring it back.
#[test]
fn a_delete_right_after_a_fill_is_not_undone_by_its_store() {
    const ROUNDS: u64 = 20;
    let origin = HttpOrigin::start("chunks");
    let server = node(&origin.url(), &[]);
    let addr = server.addr;
    for round in 0..ROUNDS {
        let bytes = chunk_bytes(1_440 + round, CHUNK_LEN);
        let id = origin.serve(&bytes);
        assert_whole(&get(addr, &chunk_path(&id), &[]), &bytes);
        let deleted = request(addr, "DELETE", &chunk_path(&id), &[], b"");
        assert_eq!(deleted.status, 204, "round {round}: {:?}", deleted.text());
        // Time for a store that would land late to have landed.
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(
            meta_status(addr, &id),
            404,
            "round {round}: deleted, yet stored"
        );
    }
    assert_eq!(origin.total_requests(), ROUNDS);
}

#[test]
fn an_origin_that_is_down_is_a_502_and_the_node_stays_ready() {
    let origin = HttpOrigin::start("chunks");
    let url = origin.url();
    drop(origin); // its port is closed now
    let server = node(&url, &[]);
    let addr = server.addr;
    let id = id_of(b"behind a closed port");
    let started = Instant::now();
    let message = get(addr, &chunk_path(&id), &[]).assert_error(502);
    let took = started.elapsed();
    assert!(message.contains(&url), "the error names {url}: {message}");
    // Connection refused, retried twice with backoff: well within the 10 s timeout.
    assert!(took < Duration::from_secs(5), "502 after {took:?}");
    assert_outcomes(addr, "unreachable", 1);
    assert_eq!(meta_status(addr, &id), 404);
    assert_ready(addr);
}

/// A 503 is retried (once is enough here); a 503 every time is a 502 after the retries
/// (`--origin-retries 2`: three requests); a 403 is a 502 at once, not retried.
#[test]
fn retryable_failures_are_retried_and_others_are_not() {
    let origin = HttpOrigin::start("chunks");
    let flaky = chunk_bytes(1_440, CHUNK_LEN);
    let flaky_id = id_of(&flaky);
    origin.set(&flaky_id, Behaviour::FailThenServe(1, flaky.clone()));
    let down_id = id_of(b"always 503");
    origin.set(&down_id, Behaviour::Status(503));
    let forbidden_id = id_of(b"always 403");
    origin.set(&forbidden_id, Behaviour::Status(403));
    let server = node(&origin.url(), &["--origin-retries", "2"]);
    let addr = server.addr;

    assert_whole(&get(addr, &chunk_path(&flaky_id), &[]), &flaky);
    assert_eq!(origin.requests(&flaky_id), 2, "one 503, then the retry");
    assert_outcomes(addr, "filled", 1);

    get(addr, &chunk_path(&down_id), &[]).assert_error(502);
    assert_eq!(origin.requests(&down_id), 3, "the request and two retries");

    get(addr, &chunk_path(&forbidden_id), &[]).assert_error(502);
    assert_eq!(origin.requests(&forbidden_id), 1, "a 403 is not retried");
    assert_outcomes(addr, "error", 2);
    assert_ready(addr);
}

/// The paper's danger: an emptied cache sends every client to the origin. 200 clients
/// missing one id at once (the origin delaying its answer so that they overlap) make one
/// origin request, and all get the chunk.
#[test]
fn two_hundred_concurrent_misses_of_one_id_make_one_origin_request() {
    const CLIENTS: usize = 200;
    let origin = HttpOrigin::start("chunks");
    let bytes = Arc::new(chunk_bytes(1_450, CHUNK_LEN));
    let id = id_of(&bytes);
    let delay = Duration::from_millis(300);
    origin.set(&id, Behaviour::DelayHeaders(delay, bytes.to_vec()));
    let server = node(&origin.url(), &[]);
    let addr = server.addr;

    // Each client connects first, then all send at once.
    let start = Arc::new(Barrier::new(CLIENTS));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (start, path) = (Arc::clone(&start), chunk_path(&id));
            std::thread::spawn(move || {
                let mut client = Client::connect(addr);
                start.wait();
                client.request("GET", &path, &[], b"")
            })
        })
        .collect();
    for (n, client) in clients.into_iter().enumerate() {
        let response = client.join().expect("a client thread");
        assert_eq!(response.status, 200, "client {n}: {:?}", response.text());
        assert!(response.body == *bytes, "client {n}: the body differs");
    }
    assert_eq!(origin.requests(&id), 1, "requests that reached the origin");
    assert_eq!(origin.total_requests(), 1);
    assert_outcomes(addr, "filled", 1);
    let text = metrics(addr);
    let coalesced = metric(&text, "chunkd_origin_coalesced_total", &[]);
    assert!(
        coalesced >= 1.0 && coalesced < CLIENTS as f64,
        "{coalesced} requests waited on another's fetch"
    );
    assert_eq!(metric(&text, "chunkd_origin_fills_in_flight", &[]), 0.0);
}

#[test]
fn filled_chunks_are_still_served_after_the_origin_stops() {
    let origin = HttpOrigin::start("chunks");
    let filled = chunk_bytes(1_460, CHUNK_LEN);
    let never = chunk_bytes(1_461, CHUNK_LEN);
    let (filled_id, never_id) = (origin.serve(&filled), origin.serve(&never));
    let server = node(&origin.url(), &[]);
    let addr = server.addr;
    assert_whole(&get(addr, &chunk_path(&filled_id), &[]), &filled);
    drop(origin);

    assert_whole(&get(addr, &chunk_path(&filled_id), &[]), &filled);
    let ranged = get(addr, &chunk_path(&filled_id), &[("Range", "bytes=5-9")]);
    assert_eq!((ranged.status, &ranged.body[..]), (206, &filled[5..10]));
    get(addr, &chunk_path(&never_id), &[]).assert_error(502);
    assert_ready(addr);
}

#[test]
fn a_file_origin_fills_too() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let bytes = chunk_bytes(1_470, CHUNK_LEN);
    let id = id_of(&bytes);
    std::fs::write(dir.path().join(&id), &bytes).unwrap();
    let wrong_id = id_of(b"the file holds other bytes");
    std::fs::write(dir.path().join(&wrong_id), b"other bytes").unwrap();
    let url = format!("file://{}/", dir.path().display());
    let server = node(&url, &[]);
    let addr = server.addr;

    assert_whole(&get(addr, &chunk_path(&id), &[]), &bytes);
    wait_stored(addr, &id);
    std::fs::remove_file(dir.path().join(&id)).unwrap();
    assert_whole(&get(addr, &chunk_path(&id), &[]), &bytes);

    get(addr, &chunk_path(&id_of(b"no such file")), &[]).assert_error(404);
    get(addr, &chunk_path(&wrong_id), &[]).assert_error(502);
    assert_eq!(meta_status(addr, &wrong_id), 404);
    assert_outcomes(addr, "filled", 1);
    assert_outcomes(addr, "not_found", 1);
    assert_outcomes(addr, "mismatch", 1);
}

/// `--origin-not-found-ttl 2s`: a 404 is remembered for 2 s (answered without asking the
/// origin), then forgotten — a content-addressed chunk may appear at the origin later.
#[test]
fn origin_404s_are_remembered_for_the_not_found_ttl() {
    let origin = HttpOrigin::start("chunks");
    let bytes = chunk_bytes(1_480, CHUNK_LEN);
    let id = id_of(&bytes);
    let server = node(&origin.url(), &["--origin-not-found-ttl", "2s"]);
    let addr = server.addr;

    let first = Instant::now();
    get(addr, &chunk_path(&id), &[]).assert_error(404);
    assert_eq!(origin.requests(&id), 1);
    origin.serve(&bytes); // the chunk appears at the origin
    get(addr, &chunk_path(&id), &[]).assert_error(404);
    assert!(
        first.elapsed() < Duration::from_secs(2),
        "the test was too slow to be inside the TTL"
    );
    assert_eq!(origin.requests(&id), 1, "the second 404 asked the origin");
    assert_metric(addr, "chunkd_origin_not_found_cached_total", 1.0);

    std::thread::sleep(Duration::from_millis(2_300).saturating_sub(first.elapsed()));
    assert_whole(&get(addr, &chunk_path(&id), &[]), &bytes);
    assert_eq!(origin.requests(&id), 2, "asked again once the TTL passed");
}

/// The same fill, range, HEAD, 404 and wrong-bytes cases against moto's S3 (keys
/// `PREFIX/{id}`, and `{id}` for a bucket without prefix), then filled chunks served
/// after moto is stopped while the others get 502.
#[test]
fn an_s3_origin_fills_and_filled_chunks_outlive_it() {
    if !moto_or_skip("the S3 origin test") {
        return;
    }
    let moto = Moto::start();
    moto.create_bucket("origin");
    moto.create_bucket("flat");
    let chunks: Vec<Vec<u8>> = (0..6).map(|n| chunk_bytes(1_490 + n, CHUNK_LEN)).collect();
    let ids: Vec<String> = chunks.iter().map(|b| id_of(b)).collect();
    for (id, bytes) in ids.iter().zip(&chunks) {
        moto.put_object("origin", &format!("chunks/{id}"), bytes);
    }
    let wrong_id = id_of(b"moto holds other bytes");
    moto.put_object("origin", &format!("chunks/{wrong_id}"), &chunks[0]);
    moto.put_object("flat", &ids[5], &chunks[5]);
    let server = Server::start(moto.launch("s3://origin/chunks", &[]));
    let addr = server.addr;
    let path = |n: usize| chunk_path(&ids[n]);
    let gets = |n: usize| moto.gets("origin", &format!("chunks/{}", ids[n]));

    assert_whole(&get(addr, &path(0), &[]), &chunks[0]);
    wait_stored(addr, &ids[0]);
    assert_whole(&get(addr, &path(0), &[]), &chunks[0]);
    assert_eq!(gets(0), 1, "moto served the chunk once");

    let one = get(addr, &path(1), &[("Range", "bytes=100-199")]);
    assert_eq!(one.status, 206);
    assert_eq!(one.header("content-range"), Some("bytes 100-199/300001"));
    assert_eq!(one.body, &chunks[1][100..200]);
    let many = get(addr, &path(2), &[("Range", "bytes=0-9,-5")]);
    assert_eq!(many.status, 206);
    let parts = parse_multipart(many.header("content-type").unwrap(), &many.body);
    check_parts(&parts, &chunks[2], &[(0, 9), (299_996, 300_000)]);
    let mut client = Client::connect(addr);
    let head = client.request("HEAD", &path(3), &[], b"");
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), Some("300001"));
    let next = client.request("GET", "/readyz", &[], b"");
    assert_eq!(next.status, 200, "the answer after the HEAD: {next:?}");
    wait_stored(addr, &ids[3]);
    for n in 1..=3 {
        assert_eq!(gets(n), 1, "chunk {n}: one GET at moto");
    }

    let missing = id_of(b"not in the bucket");
    get(addr, &chunk_path(&missing), &[]).assert_error(404);
    assert_eq!(moto.gets("origin", &format!("chunks/{missing}")), 1);
    get(addr, &chunk_path(&wrong_id), &[]).assert_error(502);
    assert_eq!(meta_status(addr, &wrong_id), 404);
    assert_metric(addr, "chunkd_origin_verification_failures_total", 1.0);
    assert_outcomes(addr, "filled", 4);
    assert_outcomes(addr, "not_found", 1);

    // A bucket without a prefix: the key is the id.
    let flat = Server::start(moto.launch("s3://flat", &[]));
    assert_whole(&get(flat.addr, &path(5), &[]), &chunks[5]);
    assert_eq!(moto.gets("flat", &ids[5]), 1);

    drop(moto);
    for (n, bytes) in chunks.iter().enumerate().take(4) {
        assert_whole(&get(addr, &path(n), &[]), bytes);
    }
    get(addr, &path(4), &[]).assert_error(502);
    assert_ready(addr);
}

/// The test origin itself, since the counts above rest on it: each behaviour answers as
/// documented, requests on one kept-alive connection are each counted, and a dropped
/// origin refuses connections.
#[test]
fn the_test_origin_answers_and_counts_as_configured() {
    let origin = HttpOrigin::start("p");
    let bytes = chunk_bytes(1_500, 1_000);
    let id = origin.serve(&bytes);
    let flaky_id = id_of(b"flaky");
    origin.set(&flaky_id, Behaviour::FailThenServe(2, bytes.clone()));
    let slow_id = id_of(b"slow");
    origin.set(
        &slow_id,
        Behaviour::DelayHeaders(Duration::from_millis(200), bytes.clone()),
    );
    let mut client = Client::connect(origin.addr);
    let mut get_path = |path: &str| client.request("GET", path, &[], b"");

    let served = get_path(&format!("/p/{id}"));
    assert_eq!((served.status, &served.body), (200, &bytes));
    served.assert_length_matches();
    assert_eq!(get_path(&format!("/p/{}", id_of(b"absent"))).status, 404);
    assert_eq!(get_path(&format!("/other/{id}")).status, 404);
    let statuses: Vec<u16> = (0..3)
        .map(|_| get_path(&format!("/p/{flaky_id}")).status)
        .collect();
    assert_eq!(statuses, [503, 503, 200]);
    let started = Instant::now();
    assert_eq!(get_path(&format!("/p/{slow_id}")).body, bytes);
    assert!(started.elapsed() >= Duration::from_millis(200));

    assert_eq!(origin.requests(&id), 1);
    assert_eq!(origin.requests(&flaky_id), 3);
    assert_eq!(origin.requests(&slow_id), 1);
    assert_eq!(origin.total_requests(), 7);
    let addr = origin.addr;
    drop(origin);
    assert!(Client::try_connect(addr).is_err(), "the port is still open");
}
