//! The HTTP API of `shared/design/api.md`, against the real `chunkd serve` binary: every
//! status the contract names, the headers of 200/206/304, byte ranges (single, several as
//! `multipart/byteranges`, ignored, unsatisfiable), conditionals, writes with and without
//! the token, `/metrics` checked by `promtool`, and the node's answers when shards are
//! corrupt (503) or the devices are full (507). Clients: a raw HTTP/1.1 client and curl
//! (HTTP/1.1 and h2c).

mod harness;

use std::net::SocketAddr;

use chunkd::chunk::ChunkId;
use chunkd::erasure::{Layout, Scheme};
use chunkd::store::Store;
use chunkd::store::device::uring::UringEngine;
use harness::{
    Client, DataDir, Launch, Server, check_parts, chunk_bytes, chunk_path, curl, get, id_of,
    metric, metrics, parse_multipart, put_chunk, put_new, request, require_tool, wait_for_metric,
};

const CACHE_CONTROL: &str = "public, max-age=31536000, immutable";
/// Spans all four data shards under 4 + 1 (75,001 bytes each, in 77,824-byte shards).
const CHUNK_LEN: usize = 300_001;

/// Checks the headers api.md puts on every 200, 206 and 304 of chunk `id`.
fn assert_chunk_headers(headers: &[(String, String)], id: &str) {
    let get = |name: &str| {
        let values: Vec<&str> = headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect();
        assert_eq!(values.len(), 1, "exactly one {name}: {headers:?}");
        values[0].to_owned()
    };
    assert_eq!(get("etag"), format!("\"{id}\""));
    assert_eq!(get("accept-ranges"), "bytes");
    assert_eq!(get("cache-control"), CACHE_CONTROL);
}

/// Asserts `response` is a 200 with the whole chunk and the headers a 200 must carry.
fn assert_whole(response: &harness::Response, bytes: &[u8], what: &str) {
    assert_eq!(response.status, 200, "{what}: {:?}", response.text());
    assert_chunk_headers(&response.headers, &id_of(bytes));
    assert_eq!(
        response.header("content-type"),
        Some("application/octet-stream")
    );
    assert_eq!(response.header("content-range"), None, "{what}");
    response.assert_length_matches();
    assert!(response.body == bytes, "{what}: the body is not the chunk");
}

fn one_chunk_server(seed: u64) -> (Server, Vec<u8>, String) {
    let server = Server::start(Launch::default());
    let bytes = chunk_bytes(seed, CHUNK_LEN);
    let id = put_new(server.addr, &bytes, &[]);
    (server, bytes, id)
}

#[test]
fn get_sends_the_whole_chunk_or_one_range_with_the_contract_headers() {
    let (server, bytes, id) = one_chunk_server(1);
    let path = chunk_path(&id);
    let len = bytes.len() as u64;
    assert_whole(&get(server.addr, &path, &[]), &bytes, "plain GET");

    // (Range header, the inclusive range it selects)
    let single = [
        ("bytes=0-99", (0, 99)),
        ("bytes=1000-", (1000, len - 1)),
        ("bytes=-500", (len - 500, len - 1)),
        ("bytes=-999999999", (0, len - 1)),
        ("bytes=299990-99999999", (299_990, len - 1)),
        ("BYTES=7-7", (7, 7)),
        ("bytes=77800-77900", (77_800, 77_900)), // across the first shard boundary
        ("bytes=0-9,5-15", (0, 15)),             // overlapping: merged into one
        ("bytes=0-9,10-19", (0, 19)),            // adjacent: merged into one
        ("bytes=0-9,,", (0, 9)),                 // empty list elements are allowed
    ];
    for (range, (first, last)) in single {
        let response = get(server.addr, &path, &[("Range", range)]);
        assert_eq!(response.status, 206, "{range}: {:?}", response.text());
        assert_chunk_headers(&response.headers, &id);
        assert_eq!(
            response.header("content-range"),
            Some(format!("bytes {first}-{last}/{len}").as_str()),
            "{range}"
        );
        assert_eq!(
            response.header("content-type"),
            Some("application/octet-stream")
        );
        response.assert_length_matches();
        assert!(
            response.body == bytes[first as usize..=last as usize],
            "{range}: wrong bytes"
        );
    }
}

#[test]
fn ranges_that_are_invalid_or_too_many_are_ignored_and_unsatisfiable_ones_get_416() {
    let (server, bytes, id) = one_chunk_server(2);
    let path = chunk_path(&id);
    let len = bytes.len();
    let sixty_five: Vec<String> = (0..65)
        .map(|i| format!("{}-{}", i * 10, i * 10 + 1))
        .collect();
    let sixty_five = format!("bytes={}", sixty_five.join(","));
    let ignored = [
        "bytes=abc",
        "items=0-5",
        "bytes= 10-19", // no whitespace after `=` in the grammar
        "bytes=5-1",
        "bytes 0-5",
        "bytes=0-5;6-7",
        "bytes=--5",
        "bytes=18446744073709551616-",
        sixty_five.as_str(),
    ];
    for range in ignored {
        assert_whole(&get(server.addr, &path, &[("Range", range)]), &bytes, range);
    }

    // 64 ranges is within the bound: 64 parts.
    let wanted: Vec<(u64, u64)> = (0..64).map(|i| (i * 1000, i * 1000 + 9)).collect();
    let header = wanted
        .iter()
        .map(|(a, b)| format!("{a}-{b}"))
        .collect::<Vec<_>>()
        .join(",");
    let response = get(server.addr, &path, &[("Range", &format!("bytes={header}"))]);
    assert_eq!(response.status, 206);
    let parts = parse_multipart(response.header("content-type").unwrap(), &response.body);
    assert_eq!(parts.len(), 64);
    check_parts(&parts, &bytes, &wanted);

    for range in [
        format!("bytes={len}-"),
        format!("bytes={len}-{}", len + 10),
        "bytes=-0".to_owned(),
        format!("bytes={}-,{len}-", len + 5),
    ] {
        let response = get(server.addr, &path, &[("Range", &range)]);
        response.assert_error(416);
        assert_eq!(
            response.header("content-range"),
            Some(format!("bytes */{len}").as_str()),
            "{range}"
        );
    }
}

#[test]
fn several_ranges_come_as_multipart_byteranges_byte_exact() {
    let (server, bytes, id) = one_chunk_server(3);
    let path = chunk_path(&id);
    let len = bytes.len() as u64;
    // (Range header, the inclusive ranges it selects)
    let cases: Vec<(&str, Vec<(u64, u64)>)> = vec![
        ("bytes=0-9,20-29", vec![(0, 9), (20, 29)]),
        (
            "bytes=0-0, 100-199 ,\t-10",
            vec![(0, 0), (100, 199), (len - 10, len - 1)],
        ),
        // Out of order and overlapping: sorted and merged.
        (
            "bytes=250000-260000,0-99,50-149,1000-1999",
            vec![(0, 149), (1000, 1999), (250_000, 260_000)],
        ),
        // One range per data shard, each crossing into the next shard.
        (
            "bytes=77000-78999,155000-156999,233000-234999,299999-",
            vec![
                (77_000, 78_999),
                (155_000, 156_999),
                (233_000, 234_999),
                (299_999, len - 1),
            ],
        ),
        // An unsatisfiable range among satisfiable ones is dropped.
        ("bytes=5-6,999999-,8-9", vec![(5, 6), (8, 9)]),
    ];
    for (range, wanted) in cases {
        let response = get(server.addr, &path, &[("Range", range)]);
        assert_eq!(response.status, 206, "{range}");
        assert_chunk_headers(&response.headers, &id);
        let content_type = response.header("content-type").expect("a Content-Type");
        assert!(
            content_type.starts_with("multipart/byteranges; boundary="),
            "{content_type}"
        );
        assert_eq!(response.header("content-range"), None);
        response.assert_length_matches();
        let parts = parse_multipart(content_type, &response.body);
        check_parts(&parts, &bytes, &wanted);
    }
}

#[test]
fn conditionals_give_304_412_and_if_range_decides_between_206_and_200() {
    let (server, bytes, id) = one_chunk_server(4);
    let path = chunk_path(&id);
    let len = bytes.len();
    let etag = format!("\"{id}\"");
    let other = format!("\"{}\"", id_of(b"other"));
    let weak = format!("W/{etag}");
    // On one connection, so a 304 that sent a body would break the next response.
    let mut client = Client::connect(server.addr);
    for if_none_match in [
        etag.as_str(),
        "*",
        &weak, // If-None-Match compares weakly
        &format!("{other}, {etag}"),
    ] {
        for method in ["GET", "HEAD"] {
            let response = client.request(method, &path, &[("If-None-Match", if_none_match)], b"");
            assert_eq!(
                response.status, 304,
                "{method} If-None-Match: {if_none_match}"
            );
            assert_chunk_headers(&response.headers, &id);
            if let Some(length) = response.header("content-length") {
                assert_eq!(length, len.to_string(), "a 304's length is the 200's");
            }
        }
    }
    assert_whole(
        &client.request("GET", &path, &[("If-None-Match", &other)], b""),
        &bytes,
        "If-None-Match another tag",
    );

    for if_match in [other.as_str(), &weak] {
        let response = client.request("GET", &path, &[("If-Match", if_match)], b"");
        response.assert_error(412);
    }
    for if_match in [etag.as_str(), "*"] {
        let response = client.request("GET", &path, &[("If-Match", if_match)], b"");
        assert_whole(&response, &bytes, "If-Match");
    }

    let range = ("Range", "bytes=10-19");
    let response = client.request("GET", &path, &[range, ("If-Range", &etag)], b"");
    assert_eq!(response.status, 206);
    assert_eq!(response.body, &bytes[10..20]);
    for if_range in [
        other.as_str(),
        &weak,
        "Tue, 15 Nov 1994 08:12:31 GMT",
        "not a validator",
    ] {
        let response = client.request("GET", &path, &[range, ("If-Range", if_range)], b"");
        assert_whole(&response, &bytes, &format!("If-Range: {if_range}"));
    }
}

#[test]
fn head_sends_the_headers_of_a_plain_get_and_no_body() {
    let (server, bytes, id) = one_chunk_server(5);
    let path = chunk_path(&id);
    let whole = get(server.addr, &path, &[]);
    let mut client = Client::connect(server.addr);
    for headers in [
        vec![],
        vec![("Range", "bytes=0-9")],
        vec![("Range", "bytes=0-9,20-29")],
        vec![("Range", "bytes=999999-")],
    ] {
        let head = client.request("HEAD", &path, &headers, b"");
        assert_eq!(head.status, 200, "HEAD ignores Range: {headers:?}");
        assert!(head.body.is_empty());
        for name in [
            "etag",
            "accept-ranges",
            "cache-control",
            "content-type",
            "content-length",
        ] {
            assert_eq!(head.header(name), whole.header(name), "{name}");
        }
        assert_eq!(head.header("content-length"), Some("300001"));
        // No body went out: the next response on this connection parses.
        assert_eq!(client.request("GET", "/healthz", &[], b"").status, 200);
    }
    let missing = client.request("HEAD", &chunk_path(&id_of(b"absent")), &[], b"");
    assert_eq!(missing.status, 404);
    assert_eq!(client.request("GET", "/healthz", &[], b"").status, 200);
    drop(bytes);
}

#[test]
fn puts_deletes_misses_bad_ids_and_wrong_methods_get_their_statuses() {
    let server = Server::start(Launch::default());
    let addr = server.addr;
    let bytes = chunk_bytes(6, 4097);
    let id = id_of(&bytes);
    let path = chunk_path(&id);

    get(addr, &path, &[]).assert_error(404);
    request(addr, "DELETE", &path, &[], b"").assert_error(404);

    let created = put_chunk(addr, &bytes, &[]);
    assert_eq!(created.status, 201, "{}", created.text());
    assert_eq!(created.json()["id"], id.as_str());
    let again = put_chunk(addr, &bytes, &[]);
    assert_eq!(again.status, 200, "a second PUT: {}", again.text());
    assert_whole(&get(addr, &path, &[]), &bytes, "after PUT");

    // A second PUT of a large chunk, its whole body written before the answer is read (as
    // most clients do): the body is taken in, the answer is 200, the connection lives on.
    let large = chunk_bytes(60, 1 << 20);
    let large_path = chunk_path(&put_new(addr, &large, &[]));
    let mut client = Client::connect(addr);
    client
        .send_request("PUT", &large_path, &[], &large)
        .expect("the whole body is taken in");
    let again = client.read_response(false).unwrap();
    assert_eq!(again.status, 200, "{}", again.text());
    assert_eq!(again.json()["created"], false);
    assert_eq!(client.request("GET", "/healthz", &[], b"").status, 200);
    // A client that waits for 100 Continue gets its 200 without sending the body.
    let mut client = Client::connect(addr);
    let expect = [("Expect", "100-continue"), ("Content-Length", "1048576")];
    client
        .send_request("PUT", &large_path, &expect, b"")
        .unwrap();
    assert_eq!(client.read_response(false).unwrap().status, 200);
    // Other bytes under a stored chunk's id are refused, and the chunk is unchanged.
    let wrong = chunk_bytes(61, 1 << 20);
    request(addr, "PUT", &large_path, &[], &wrong).assert_error(400);
    assert_whole(&get(addr, &large_path, &[]), &large, "after a wrong PUT");

    let meta = get(addr, &format!("{path}/meta"), &[]);
    assert_eq!(meta.status, 200);
    let meta = meta.json();
    assert_eq!(meta["id"], id.as_str());
    assert_eq!(meta["len"], 4097);
    assert_eq!(meta["shards"]["k"], 4);
    assert_eq!(meta["shards"]["m"], 1);
    assert_eq!(meta["shards"]["healthy"], 5);

    let deleted = request(addr, "DELETE", &path, &[], b"");
    assert_eq!(deleted.status, 204);
    assert!(deleted.body.is_empty());
    get(addr, &path, &[]).assert_error(404);
    get(addr, &format!("{path}/meta"), &[]).assert_error(404);
    request(addr, "DELETE", &path, &[], b"").assert_error(404);

    // Wrong methods: 405 with the methods that would do.
    for (method, path, allow) in [
        ("POST", path.as_str(), "GET, HEAD, PUT, DELETE"),
        ("PATCH", path.as_str(), "GET, HEAD, PUT, DELETE"),
        ("PUT", "/metrics", "GET, HEAD"),
        ("DELETE", "/healthz", "GET, HEAD"),
        ("POST", "/readyz", "GET, HEAD"),
        ("PUT", &format!("{path}/meta"), "GET, HEAD"),
    ] {
        let response = request(addr, method, path, &[], b"");
        response.assert_error(405);
        assert_eq!(response.header("allow"), Some(allow), "{method} {path}");
    }
    get(addr, "/v1/nothing-here", &[]).assert_error(404);
}

#[test]
fn curl_over_http1_and_h2c_gets_ranges_conditionals_and_heads() {
    require_tool("curl", "the curl interoperability test");
    let server = Server::start(Launch::default());
    let bytes = chunk_bytes(7, CHUNK_LEN);
    let id = id_of(&bytes);
    let url = server.url(&chunk_path(&id));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("chunk");
    std::fs::write(&file, &bytes).unwrap();
    let put = curl(&["-T", file.to_str().unwrap(), &url]);
    assert_eq!(put.status, 201, "{}", String::from_utf8_lossy(&put.body));
    let again = curl(&[
        "--http2-prior-knowledge",
        "-T",
        file.to_str().unwrap(),
        &url,
    ]);
    assert_eq!(
        again.status,
        200,
        "{}",
        String::from_utf8_lossy(&again.body)
    );
    assert_eq!(again.http_version, "2");

    for (protocol, version) in [("--http1.1", "1.1"), ("--http2-prior-knowledge", "2")] {
        let whole = curl(&[protocol, &url]);
        assert_eq!((whole.status, whole.http_version.as_str()), (200, version));
        assert!(whole.body == bytes, "{protocol}: whole chunk");
        assert_chunk_headers(&whole.headers, &id);
        assert_eq!(whole.header("content-length"), Some("300001"));

        let one = curl(&[protocol, "-r", "100-199", &url]);
        assert_eq!(one.status, 206, "{protocol}");
        assert_eq!(one.header("content-range"), Some("bytes 100-199/300001"));
        assert_eq!(one.body, &bytes[100..200], "{protocol}");

        let many = curl(&[protocol, "-r", "0-9,77820-77830,-5", &url]);
        assert_eq!(many.status, 206, "{protocol}");
        let parts = parse_multipart(many.header("content-type").unwrap(), &many.body);
        check_parts(
            &parts,
            &bytes,
            &[(0, 9), (77_820, 77_830), (299_996, 300_000)],
        );

        // (`-I` writes the headers where a body would go; the raw-client test checks that
        // HEAD sends no body.)
        let head = curl(&[protocol, "-I", "-H", "Range: bytes=0-9", &url]);
        assert_eq!(head.status, 200, "{protocol}: HEAD ignores Range");
        assert_chunk_headers(&head.headers, &id);
        assert_eq!(head.header("content-length"), Some("300001"));

        let etag = format!("If-None-Match: \"{id}\"");
        let not_modified = curl(&[protocol, "-H", &etag, &url]);
        assert_eq!(not_modified.status, 304, "{protocol}");
        assert!(not_modified.body.is_empty());
        assert_chunk_headers(&not_modified.headers, &id);

        let mismatch = curl(&[protocol, "-H", "If-Match: \"nope\"", &url]);
        assert_eq!(mismatch.status, 412, "{protocol}");
        let if_range = format!("If-Range: \"{id}\"");
        let ranged = curl(&[protocol, "-H", &if_range, "-r", "5-9", &url]);
        assert_eq!((ranged.status, &ranged.body[..]), (206, &bytes[5..10]));
        let stale = curl(&[protocol, "-H", "If-Range: \"other\"", "-r", "5-9", &url]);
        assert_eq!(stale.status, 200, "{protocol}");
        assert!(stale.body == bytes);
        let unsatisfiable = curl(&[protocol, "-r", "300001-", &url]);
        assert_eq!(unsatisfiable.status, 416);
        assert_eq!(
            unsatisfiable.header("content-range"),
            Some("bytes */300001")
        );
    }
    let deleted = curl(&["--http2-prior-knowledge", "-X", "DELETE", &url]);
    assert_eq!(deleted.status, 204);
    assert_eq!(curl(&[&url]).status, 404);
}

#[test]
fn writes_need_the_bearer_token_when_one_is_set() {
    let server = Server::start(Launch::args(&["--write-token", "s3cret"]));
    let addr = server.addr;
    let bytes = chunk_bytes(8, 70_000);
    let path = chunk_path(&id_of(&bytes));
    let refused: [&[(&str, &str)]; 5] = [
        &[],
        &[("Authorization", "Bearer wrong")],
        &[("Authorization", "Bearer s3cret2")],
        &[("Authorization", "Basic czNjcmV0")],
        &[("Authorization", "s3cret")],
    ];
    for headers in refused {
        for method in ["PUT", "DELETE"] {
            let body: &[u8] = if method == "PUT" { &bytes } else { b"" };
            let response = request(addr, method, &path, headers, body);
            response.assert_error(401);
            assert_eq!(
                response.header("www-authenticate"),
                Some("Bearer"),
                "{method} {headers:?}"
            );
        }
    }
    get(addr, &path, &[]).assert_error(404); // nothing was stored

    let token = [("Authorization", "Bearer s3cret")];
    assert_eq!(put_chunk(addr, &bytes, &token).status, 201);
    // Reads need no token.
    assert_whole(&get(addr, &path, &[]), &bytes, "GET without a token");

    // The second PUT is answered 200 and writes nothing: no catalog change, no space used.
    let text = metrics(addr);
    let before = (
        metric(&text, "chunkd_store_commit_requests_total", &[]),
        metric(&text, "chunkd_store_free_bytes", &[]),
        metric(&text, "chunkd_store_chunks", &[]),
    );
    let again = put_chunk(addr, &bytes, &[("Authorization", "bearer s3cret")]);
    assert_eq!(again.status, 200, "{}", again.text());
    assert_eq!(again.json()["created"], false);
    let text = metrics(addr);
    let after = (
        metric(&text, "chunkd_store_commit_requests_total", &[]),
        metric(&text, "chunkd_store_free_bytes", &[]),
        metric(&text, "chunkd_store_chunks", &[]),
    );
    assert_eq!(before, after, "(commits, free bytes, chunks)");
    assert_eq!(after.2, 1.0);

    request(addr, "DELETE", &path, &[], b"").assert_error(401);
    assert_eq!(request(addr, "DELETE", &path, &token, b"").status, 204);
    request(addr, "DELETE", &path, &token, b"").assert_error(404);
    get(addr, &path, &[]).assert_error(404);
}

/// A non-loopback address of this host, if it has one.
fn non_loopback_address() -> Option<std::net::IpAddr> {
    // Connecting a UDP socket sends nothing; it only picks the source address of the
    // route to that (documentation) address.
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    socket.connect("198.51.100.1:9").ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

#[test]
fn writes_are_refused_beyond_loopback_without_a_token() {
    let Some(ip) = non_loopback_address() else {
        eprintln!("SKIPPED: this host has no non-loopback IPv4 address to listen on");
        return;
    };
    let listen = SocketAddr::new(ip, 0).to_string();
    let bytes = chunk_bytes(9, 1000);
    let path = chunk_path(&id_of(&bytes));

    let server = Server::start(Launch::default().listen(&listen));
    assert_eq!(server.addr.ip(), ip);
    put_chunk(server.addr, &bytes, &[]).assert_error(403);
    request(server.addr, "DELETE", &path, &[], b"").assert_error(403);
    get(server.addr, &path, &[]).assert_error(404); // reads are served; nothing stored
    drop(server);

    let open = Server::start(Launch::args(&["--allow-unauthenticated-writes"]).listen(&listen));
    assert_eq!(put_chunk(open.addr, &bytes, &[]).status, 201);
}

#[test]
fn metrics_pass_promtool_and_count_the_traffic() {
    require_tool("promtool", "checking the /metrics exposition");
    let server = Server::start(Launch::default());
    let addr = server.addr;
    const PUTS: u64 = 5;
    let mut ids = Vec::new();
    for n in 0..PUTS {
        ids.push(put_new(
            addr,
            &chunk_bytes(100 + n, 10_000 + n as usize),
            &[],
        ));
    }
    for id in &ids {
        assert_eq!(get(addr, &chunk_path(id), &[]).status, 200);
        let ranged = get(addr, &chunk_path(id), &[("Range", "bytes=0-9")]);
        assert_eq!(ranged.status, 206);
    }
    get(addr, &chunk_path(&id_of(b"missing")), &[]).assert_error(404);
    get(addr, "/v1/chunks/NOT-AN-ID", &[]).assert_error(400);

    let wait = |method: &str, status: &str, at_least: u64| {
        let labels = [("route", "chunk"), ("method", method), ("status", status)];
        wait_for_metric(addr, "chunkd_http_requests_total", &labels, |v| {
            v >= at_least as f64
        })
    };
    assert_eq!(wait("PUT", "201", PUTS), PUTS as f64);
    assert_eq!(wait("GET", "200", PUTS), PUTS as f64);
    assert_eq!(wait("GET", "206", PUTS), PUTS as f64);
    assert_eq!(wait("GET", "404", 1), 1.0);
    assert_eq!(wait("GET", "400", 1), 1.0);

    let text = metrics(addr);
    assert_eq!(metric(&text, "chunkd_store_chunks", &[]), PUTS as f64);
    let received = metric(&text, "chunkd_http_received_bytes_total", &[]);
    assert!(received >= (PUTS * 10_000) as f64, "received {received}");
    assert!(metric(&text, "chunkd_http_sent_bytes_total", &[]) >= (PUTS * 10_000) as f64);
    assert!(metric(&text, "chunkd_connections_total", &[]) >= 10.0);
    assert_eq!(
        metric(&text, "chunkd_device_state", &[("state", "online")]),
        5.0
    );
    assert!(
        metric(
            &text,
            "chunkd_http_request_duration_seconds_count",
            &[("route", "chunk")]
        ) >= (3 * PUTS) as f64
    );

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("metrics.txt");
    std::fs::write(&file, &text).unwrap();
    let output = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(&file).unwrap())
        .output()
        .expect("promtool runs");
    assert!(
        output.status.success(),
        "promtool check metrics failed:\n{}{}\n--- the exposition ---\n{text}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Flips 64 bytes of shard data on its device file.
fn corrupt(path: &std::path::Path, offset: u64) {
    use std::os::unix::fs::FileExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut bytes = [0u8; 64];
    file.read_exact_at(&mut bytes, offset).unwrap();
    for byte in &mut bytes {
        *byte ^= 0xa5;
    }
    file.write_all_at(&bytes, offset).unwrap();
    file.sync_all().unwrap();
}

#[test]
fn two_corrupt_shards_of_a_chunk_answer_503_never_wrong_bytes() {
    let server = Server::start(Launch::default());
    let bytes = chunk_bytes(10, CHUNK_LEN);
    let bystander = chunk_bytes(11, CHUNK_LEN);
    let id = put_new(server.addr, &bytes, &[]);
    put_new(server.addr, &bystander, &[]);
    let data = server.stop();

    // Damage data shards 0 and 1 of the chunk: one more than the 4 + 1 scheme can lose.
    let shards = {
        let (store, _) = Store::open(data.store_config(), &UringEngine).unwrap();
        store
            .shard_locations(&id.parse::<ChunkId>().unwrap())
            .unwrap()
            .expect("the chunk is stored")
    };
    assert_eq!(shards.len(), 5);
    for shard in &shards[..2] {
        corrupt(
            &data.device_path(shard.device),
            shard.data_offset_bytes() + 1000,
        );
    }

    let server = Server::start_in(data, Launch::default());
    let addr = server.addr;
    let path = chunk_path(&id);
    let message = get(addr, &path, &[]).assert_error(503);
    assert!(message.contains("shards"), "{message}");
    // A range within a damaged shard cannot be served either.
    get(addr, &path, &[("Range", "bytes=500-1500")]).assert_error(503);
    get(addr, &path, &[("Range", "bytes=0-9,100000-100009")]).assert_error(503);
    // A range wholly in a sound shard still is, with the right bytes.
    let layout = Layout::new(Scheme::DEFAULT, CHUNK_LEN as u64);
    let sound = layout.chunk_bytes_of(2);
    let range = format!("bytes={}-{}", sound.start + 10, sound.start + 4000);
    let ranged = get(addr, &path, &[("Range", &range)]);
    assert_eq!(ranged.status, 206);
    assert!(ranged.body == bytes[sound.start as usize + 10..=sound.start as usize + 4000]);
    // /meta counts the sound shards.
    let meta = get(addr, &format!("{path}/meta"), &[]);
    assert_eq!(meta.status, 200);
    assert_eq!(meta.json()["shards"]["healthy"], 3);
    // Other chunks are untouched, and the node still answers.
    assert_whole(
        &get(addr, &chunk_path(&id_of(&bystander)), &[]),
        &bystander,
        "a bystander chunk",
    );
    let unreadable = metric(&metrics(addr), "chunkd_store_chunks_unreadable_total", &[]);
    assert!(unreadable >= 1.0, "unreadable reads counted: {unreadable}");
}

#[test]
fn a_full_node_answers_507_and_keeps_serving_what_it_has() {
    let server = Server::start_in(DataDir::new("8M"), Launch::default());
    let addr = server.addr;
    let mut stored = Vec::new();
    let full = (0..64u64).find_map(|n| {
        let bytes = chunk_bytes(1000 + n, 1 << 20);
        let response = put_chunk(addr, &bytes, &[]);
        match response.status {
            201 => {
                stored.push(bytes);
                None
            }
            _ => Some(response),
        }
    });
    let full = full.expect("five 8 MiB devices cannot hold 64 MiB of chunks");
    let message = full.assert_error(507);
    assert!(message.contains("no space"), "{message}");
    assert!(stored.len() >= 10, "only {} chunks fitted", stored.len());
    for bytes in [&stored[0], stored.last().unwrap()] {
        assert_whole(&get(addr, &chunk_path(&id_of(bytes)), &[]), bytes, "stored");
    }
    let rejected = chunk_bytes(1000 + stored.len() as u64, 1 << 20);
    get(addr, &chunk_path(&id_of(&rejected)), &[]).assert_error(404);
}

/// Over h2c, starts `method path` declaring a body of `declared_bytes`, sends `sent` of
/// it and waits for the answer. Returns the status, the response body, and the reason the
/// server reset the stream with once it had answered (`None` if it did not within 5 s).
fn h2_answer_before_the_body(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    sent: &[u8],
    declared_bytes: usize,
) -> (u16, Vec<u8>, Option<h2::Reason>) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut client, connection) = h2::client::handshake(tcp).await.unwrap();
        tokio::spawn(async move {
            let _ = connection.await;
        });
        let mut request = http::Request::builder()
            .method(method)
            .uri(format!("http://{addr}{path}"))
            .header("content-length", declared_bytes);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let (response, mut upload) = client
            .send_request(request.body(()).unwrap(), false)
            .unwrap();
        upload
            .send_data(bytes::Bytes::copy_from_slice(sent), false)
            .unwrap();
        let response = tokio::time::timeout(harness::READ_LIMIT, response)
            .await
            .expect("an answer within the read limit")
            .unwrap_or_else(|e| panic!("{method} {path}: the stream failed: {e}"));
        let status = response.status().as_u16();
        let mut body = response.into_body();
        let mut bytes = Vec::new();
        while let Some(data) = body.data().await {
            let data = data.expect("the response body arrives whole");
            let _ = body.flow_control().release_capacity(data.len());
            bytes.extend_from_slice(&data);
        }
        let reset = std::future::poll_fn(|cx| upload.poll_reset(cx));
        let reset = tokio::time::timeout(std::time::Duration::from_secs(5), reset)
            .await
            .ok()
            .and_then(Result::ok);
        (status, bytes, reset)
    })
}

#[test]
fn h2_uploads_answered_early_get_the_answer_then_rst_stream_no_error() {
    let server = Server::start(Launch::args(&["--write-token", "T"]));
    let addr = server.addr;
    let bytes = chunk_bytes(12, 300_000);
    let path = chunk_path(&id_of(&bytes));
    let token = [("authorization", "Bearer T")];
    // (method, path, headers, declared body, expected status)
    let no_token: &[(&str, &str)] = &[];
    let cases = [
        ("PUT", path.as_str(), no_token, 300_000, 401),
        ("PUT", path.as_str(), &token[..], 2 << 20, 413),
        ("POST", path.as_str(), &token[..], 300_000, 405),
        ("POST", "/metrics", no_token, 300_000, 405),
    ];
    for (method, path, headers, declared, status) in cases {
        let (got, body, reset) =
            h2_answer_before_the_body(addr, method, path, headers, &bytes[..65_536], declared);
        let what = format!("{method} {path} {headers:?}");
        assert_eq!(got, status, "{what}: {}", String::from_utf8_lossy(&body));
        let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert!(value["error"].is_string(), "{what}: {value}");
        // The rest of the upload is declined without error (RFC 9113 §8.1).
        assert_eq!(reset, Some(h2::Reason::NO_ERROR), "{what}");
    }
    get(addr, &path, &[]).assert_error(404);
}

#[test]
fn an_empty_chunk_is_stored_and_served_with_the_rfc_s_zero_length_rules() {
    let server = Server::start(Launch::default());
    let addr = server.addr;
    let id = put_new(addr, b"", &[]);
    let path = chunk_path(&id);
    assert_whole(&get(addr, &path, &[]), b"", "an empty chunk");
    // RFC 9110 §14.1.2: of a zero-length representation only a suffix range is
    // satisfiable, and no Content-Range can describe it, so the answer is the whole (empty)
    // body; any other range is unsatisfiable.
    assert_whole(&get(addr, &path, &[("Range", "bytes=-5")]), b"", "bytes=-5");
    let response = get(addr, &path, &[("Range", "bytes=0-5")]);
    response.assert_error(416);
    assert_eq!(response.header("content-range"), Some("bytes */0"));
    assert_eq!(request(addr, "DELETE", &path, &[], b"").status, 204);
}
