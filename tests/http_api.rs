//! The HTTP API against the real `chunkd serve` binary, with real clients: curl over
//! HTTP/1.1 and h2c (ranges, conditionals, HEAD, PUT and DELETE), the h2 crate's client
//! for answers sent before an upload has arrived (401, 413, 405, then RST_STREAM
//! NO_ERROR), manifests through curl, and `/metrics` counting the traffic and checked by
//! `promtool`. Every status and store fault is tested in-process (`http_inproc_api.rs`,
//! `http_inproc_faults.rs`, `http_inproc_manifests.rs`); this file checks that real
//! clients agree with the real binary.

mod harness;

use std::net::SocketAddr;

use harness::{
    Launch, Server, check_parts, chunk_bytes, chunk_path, curl, get, id_of, metric, metrics,
    parse_multipart, put_new, request, tool_or_skip, wait_for_metric,
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

#[test]
fn curl_over_http1_and_h2c_gets_ranges_conditionals_and_heads() {
    if !tool_or_skip("curl", "the curl interoperability test") {
        return;
    }
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

/// Issue 13: a manifest put, read, swept around and deleted by curl, as a script would.
#[test]
fn curl_puts_gets_and_deletes_a_manifest_over_http1_and_h2c() {
    if !tool_or_skip("curl", "the curl interoperability test") {
        return;
    }
    let server = Server::start(Launch::default());
    let stored = put_new(server.addr, &chunk_bytes(50, 10_000), &[]);
    let absent = id_of(b"not uploaded");
    let listed = serde_json::json!([stored, absent, stored]);
    let body = serde_json::json!({ "chunks": listed }).to_string();
    for (protocol, version) in [("--http1.1", "1.1"), ("--http2-prior-knowledge", "2")] {
        let url = server.url(&format!("/v1/manifests/image-{version}"));
        let json = "Content-Type: application/json";
        let put = curl(&[
            protocol,
            "-X",
            "PUT",
            "-H",
            json,
            "--data-binary",
            &body,
            &url,
        ]);
        assert_eq!((put.status, put.http_version.as_str()), (201, version));
        let answer: serde_json::Value = serde_json::from_slice(&put.body).unwrap();
        let wanted = serde_json::json!({ "chunks": 3, "distinct": 2, "missing": [absent] });
        assert_eq!(answer, wanted, "{protocol}");
        let got = curl(&[protocol, &url]);
        assert_eq!(got.status, 200, "{protocol}");
        let got: serde_json::Value = serde_json::from_slice(&got.body).unwrap();
        assert_eq!(got["chunks"], listed, "{protocol}");
        let swept = curl(&[protocol, "-X", "POST", &server.url("/v1/gc")]);
        assert_eq!(swept.status, 200, "{protocol}");
        assert_eq!(curl(&[protocol, "-X", "DELETE", &url]).status, 204);
        assert_eq!(curl(&[protocol, &url]).status, 404);
    }
}

#[test]
fn metrics_pass_promtool_and_count_the_traffic() {
    if !tool_or_skip("promtool", "checking the /metrics exposition") {
        return;
    }
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
    // A manifest and a sweep, so the GC series promtool checks carry samples too.
    let manifest = serde_json::json!({ "chunks": ids }).to_string();
    let put = request(addr, "PUT", "/v1/manifests/m", &[], manifest.as_bytes());
    assert_eq!(put.status, 201, "{}", put.text());
    assert_eq!(request(addr, "POST", "/v1/gc", &[], b"").status, 200);

    let text = metrics(addr);
    assert_eq!(metric(&text, "chunkd_manifests", &[]), 1.0, "{text}");
    assert_eq!(metric(&text, "chunkd_referenced_chunks", &[]), PUTS as f64);
    // At least the one asked for (the store's periodic sweeps count too).
    assert!(metric(&text, "chunkd_gc_sweeps_total", &[]) >= 1.0);
    assert_eq!(
        metric(&text, "chunkd_gc_sweep_duration_seconds_count", &[]),
        1.0
    );
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

/// `--memory-send sendfile`: memory hits leave through `sendfile` from the tier's memfd
/// (only over real sockets, so only here). Whole chunks, one range and several, over
/// HTTP/1.1 and h2c, must be byte-exact — also after the chunk was evicted and its pages
/// reused by another (the arena punches a freed run before reusing it).
#[test]
fn memory_hits_sent_with_sendfile_are_byte_exact() {
    if !tool_or_skip("curl", "the sendfile send-path test") {
        return;
    }
    // 8 MiB of memory for 10 MiB of chunks: later chunks evict earlier ones, reusing runs.
    let server = Server::start(Launch::args(&[
        "--memory-cache",
        "8M",
        "--memory-send",
        "sendfile",
    ]));
    let chunks: Vec<Vec<u8>> = (0..20).map(|i| chunk_bytes(900 + i, 524_288)).collect();
    for bytes in &chunks {
        put_new(server.addr, bytes, &[]);
    }
    for round in 0..2 {
        for (i, bytes) in chunks.iter().enumerate() {
            let url = server.url(&chunk_path(&id_of(bytes)));
            let h2 = if (i + round) % 2 == 0 {
                "--http1.1"
            } else {
                "--http2-prior-knowledge"
            };
            let whole = curl(&[h2, &url]);
            assert_eq!(whole.status, 200);
            assert!(
                whole.body == *bytes,
                "chunk {i}, round {round}: whole differs"
            );
            let one = curl(&[h2, "-H", "Range: bytes=65536-131071", &url]);
            assert_eq!(one.status, 206);
            assert!(
                one.body == bytes[65_536..131_072],
                "chunk {i}: range differs"
            );
            let many = curl(&[h2, "-H", "Range: bytes=0-99,400000-400099", &url]);
            assert_eq!(many.status, 206);
            let content_type = many.header("content-type").unwrap().to_owned();
            let parts = parse_multipart(&content_type, &many.body);
            check_parts(&parts, bytes, &[(0, 99), (400_000, 400_099)]);
        }
    }
    let text = metrics(server.addr);
    let hits = metric(&text, "chunkd_cache_hits_total", &[("tier", "memory")]);
    let evictions = metric(&text, "chunkd_cache_evictions_total", &[("tier", "memory")]);
    assert!(
        hits > 0.0 && evictions > 0.0,
        "hits {hits}, evictions {evictions}"
    );
}
