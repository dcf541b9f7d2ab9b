//! The HTTP API of `shared/design/api.md`, in-process on the simulated engine: every status
//! the contract names, over HTTP/1.1 and HTTP/2, the headers of 200/206/304, byte ranges
//! (single, several as `multipart/byteranges`, ignored, unsatisfiable), conditionals,
//! writes with and without the token, early answers to HTTP/2 uploads (then RST_STREAM
//! NO_ERROR), and the readiness routes. The store faults HTTP can surface (corrupt or
//! lost shards → 503 and never a wrong byte, full → 507) are in `http_inproc_faults.rs`,
//! bad input and timeouts in `http_inproc_limits.rs`.

mod inproc;

use inproc::{
    Client, Raw, Response, TestNode, VERSIONS, Version, check_parts, chunk_bytes, chunk_path,
    id_of, parse_multipart, run,
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
fn assert_whole(response: &Response, bytes: &[u8], what: &str) {
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

/// A node holding chunk `seed` of [`CHUNK_LEN`] bytes; its bytes and id.
async fn one_chunk_node(seed: u64) -> (TestNode, Vec<u8>, String) {
    let node = TestNode::start(&[]);
    let bytes = chunk_bytes(seed, CHUNK_LEN);
    let server = node.server();
    let id = Client::connect(&server, Version::Http1)
        .await
        .put_new(&bytes)
        .await;
    (node, bytes, id)
}

#[test]
fn get_sends_the_whole_chunk_or_one_range_with_the_contract_headers() {
    run(async {
        let (node, bytes, id) = one_chunk_node(1).await;
        let server = node.server();
        let path = chunk_path(&id);
        let len = bytes.len() as u64;
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
        for version in VERSIONS {
            let mut client = Client::connect(&server, version).await;
            assert_whole(&client.get(&path, &[]).await, &bytes, "plain GET");
            for (range, (first, last)) in single {
                let response = client.get(&path, &[("Range", range)]).await;
                let what = format!("{version:?} {range}");
                assert_eq!(response.status, 206, "{what}: {:?}", response.text());
                assert_chunk_headers(&response.headers, &id);
                assert_eq!(
                    response.header("content-range"),
                    Some(format!("bytes {first}-{last}/{len}").as_str()),
                    "{what}"
                );
                assert_eq!(
                    response.header("content-type"),
                    Some("application/octet-stream")
                );
                response.assert_length_matches();
                assert!(
                    response.body == bytes[first as usize..=last as usize],
                    "{what}: wrong bytes"
                );
            }
        }
    });
}

#[test]
fn ranges_that_are_invalid_or_too_many_are_ignored_and_unsatisfiable_ones_get_416() {
    run(async {
        let (node, bytes, id) = one_chunk_node(2).await;
        let server = node.server();
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
            sixty_five.as_str(),
        ];
        // 64 ranges is within the bound: 64 parts.
        let wanted: Vec<(u64, u64)> = (0..64).map(|i| (i * 1000, i * 1000 + 9)).collect();
        let sixty_four = wanted
            .iter()
            .map(|(a, b)| format!("{a}-{b}"))
            .collect::<Vec<_>>()
            .join(",");
        for version in VERSIONS {
            let mut client = Client::connect(&server, version).await;
            for range in ignored {
                let response = client.get(&path, &[("Range", range)]).await;
                assert_whole(&response, &bytes, &format!("{version:?} {range}"));
            }
            let range = format!("bytes={sixty_four}");
            let response = client.get(&path, &[("Range", &range)]).await;
            assert_eq!(response.status, 206);
            let parts = parse_multipart(response.header("content-type").unwrap(), &response.body);
            assert_eq!(parts.len(), 64);
            check_parts(&parts, &bytes, &wanted);

            for range in [
                format!("bytes={len}-"),
                format!("bytes={len}-{}", len + 10),
                "bytes=-0".to_owned(),
                format!("bytes={}-,{len}-", len + 5),
                // Past u64: valid syntax, and past any length (issue 11).
                "bytes=18446744073709551616-".to_owned(),
            ] {
                let response = client.get(&path, &[("Range", &range)]).await;
                response.assert_error(416);
                assert_eq!(
                    response.header("content-range"),
                    Some(format!("bytes */{len}").as_str()),
                    "{range}"
                );
            }
        }
    });
}

#[test]
fn several_ranges_come_as_multipart_byteranges_byte_exact() {
    run(async {
        let (node, bytes, id) = one_chunk_node(3).await;
        let server = node.server();
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
        for version in VERSIONS {
            let mut client = Client::connect(&server, version).await;
            for (range, wanted) in &cases {
                let response = client.get(&path, &[("Range", range)]).await;
                assert_eq!(response.status, 206, "{version:?} {range}");
                assert_chunk_headers(&response.headers, &id);
                let content_type = response.header("content-type").expect("a Content-Type");
                assert!(
                    content_type.starts_with("multipart/byteranges; boundary="),
                    "{content_type}"
                );
                assert_eq!(response.header("content-range"), None);
                response.assert_length_matches();
                let parts = parse_multipart(content_type, &response.body);
                check_parts(&parts, &bytes, wanted);
            }
        }
    });
}

#[test]
fn conditionals_give_304_412_and_if_range_decides_between_206_and_200() {
    run(async {
        let (node, bytes, id) = one_chunk_node(4).await;
        let server = node.server();
        let path = chunk_path(&id);
        let len = bytes.len();
        let etag = format!("\"{id}\"");
        let other = format!("\"{}\"", id_of(b"other"));
        let weak = format!("W/{etag}");
        // HTTP/1.1 on one raw connection, so a 304 that sent a body would break the next
        // response; and HTTP/2.
        let mut raw = Raw::connect(&server);
        let mut h2 = Client::connect(&server, Version::Http2).await;
        for if_none_match in [
            etag.as_str(),
            "*",
            &weak, // If-None-Match compares weakly
            &format!("{other}, {etag}"),
        ] {
            for method in ["GET", "HEAD"] {
                let headers = [("If-None-Match", if_none_match)];
                for response in [
                    raw.request(method, &path, &headers, b"").await,
                    h2.request(method, &path, &headers, b"").await,
                ] {
                    assert_eq!(
                        response.status, 304,
                        "{method} If-None-Match: {if_none_match}"
                    );
                    assert_chunk_headers(&response.headers, &id);
                    assert!(response.body.is_empty());
                    if let Some(length) = response.header("content-length") {
                        assert_eq!(length, len.to_string(), "a 304's length is the 200's");
                    }
                }
            }
        }
        let headers = [("If-None-Match", other.as_str())];
        assert_whole(
            &raw.request("GET", &path, &headers, b"").await,
            &bytes,
            "If-None-Match another tag",
        );
        for if_match in [other.as_str(), &weak] {
            let headers = [("If-Match", if_match)];
            raw.request("GET", &path, &headers, b"")
                .await
                .assert_error(412);
            h2.get(&path, &headers).await.assert_error(412);
        }
        for if_match in [etag.as_str(), "*"] {
            let response = raw
                .request("GET", &path, &[("If-Match", if_match)], b"")
                .await;
            assert_whole(&response, &bytes, "If-Match");
        }

        let range = ("Range", "bytes=10-19");
        let response = raw
            .request("GET", &path, &[range, ("If-Range", &etag)], b"")
            .await;
        assert_eq!(response.status, 206);
        assert_eq!(response.body, &bytes[10..20]);
        for if_range in [
            other.as_str(),
            &weak,
            "Tue, 15 Nov 1994 08:12:31 GMT",
            "not a validator",
        ] {
            let headers = [range, ("If-Range", if_range)];
            let response = raw.request("GET", &path, &headers, b"").await;
            assert_whole(&response, &bytes, &format!("If-Range: {if_range}"));
        }
    });
}

#[test]
fn head_sends_the_headers_of_a_plain_get_and_no_body() {
    run(async {
        let (node, _bytes, id) = one_chunk_node(5).await;
        let server = node.server();
        let path = chunk_path(&id);
        let mut raw = Raw::connect(&server);
        let whole = raw.request("GET", &path, &[], b"").await;
        for headers in [
            vec![],
            vec![("Range", "bytes=0-9")],
            vec![("Range", "bytes=0-9,20-29")],
            vec![("Range", "bytes=999999-")],
        ] {
            let head = raw.request("HEAD", &path, &headers, b"").await;
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
            assert_eq!(raw.request("GET", "/healthz", &[], b"").await.status, 200);
        }
        let missing = raw
            .request("HEAD", &chunk_path(&id_of(b"absent")), &[], b"")
            .await;
        assert_eq!(missing.status, 404);
        assert_eq!(raw.request("GET", "/healthz", &[], b"").await.status, 200);
        let mut h2 = Client::connect(&server, Version::Http2).await;
        let head = h2.request("HEAD", &path, &[], b"").await;
        assert_eq!(head.status, 200);
        assert!(head.body.is_empty());
        assert_eq!(head.header("content-length"), Some("300001"));
    });
}

#[test]
fn puts_deletes_misses_and_meta_get_their_statuses() {
    run(async {
        let node = TestNode::start(&[]);
        let server = node.server();
        for version in VERSIONS {
            let mut client = Client::connect(&server, version).await;
            let bytes = chunk_bytes(6 + version as u64, 4097);
            let id = id_of(&bytes);
            let path = chunk_path(&id);

            client.get(&path, &[]).await.assert_error(404);
            client
                .request("DELETE", &path, &[], b"")
                .await
                .assert_error(404);
            let created = client.put(&bytes, &[]).await;
            assert_eq!(created.status, 201, "{}", created.text());
            assert_eq!(created.json()["id"], id.as_str());
            assert_eq!(created.json()["created"], true);
            let again = client.put(&bytes, &[]).await;
            assert_eq!(again.status, 200, "a second PUT: {}", again.text());
            assert_eq!(again.json()["created"], false);
            assert_whole(&client.get(&path, &[]).await, &bytes, "after PUT");

            let meta = client.get(&format!("{path}/meta"), &[]).await;
            assert_eq!(meta.status, 200);
            let meta = meta.json();
            assert_eq!(meta["id"], id.as_str());
            assert_eq!(meta["len"], 4097);
            assert_eq!(meta["shards"]["k"], 4);
            assert_eq!(meta["shards"]["m"], 1);
            assert_eq!(meta["shards"]["healthy"], 5);

            let deleted = client.request("DELETE", &path, &[], b"").await;
            assert_eq!(deleted.status, 204);
            assert!(deleted.body.is_empty());
            client.get(&path, &[]).await.assert_error(404);
            client
                .get(&format!("{path}/meta"), &[])
                .await
                .assert_error(404);
            client
                .request("DELETE", &path, &[], b"")
                .await
                .assert_error(404);
        }
        assert_eq!(node.store().chunk_count(), 0);
    });
}

#[test]
fn a_second_put_reads_the_body_and_one_that_expects_100_continue_does_not_need_it() {
    run(async {
        let node = TestNode::start(&[]);
        let server = node.server();
        let large = chunk_bytes(60, 1 << 20);
        let large_path = chunk_path(
            &Client::connect(&server, Version::Http1)
                .await
                .put_new(&large)
                .await,
        );
        // The whole body written before the answer is read (as most clients do): the body
        // is taken in, the answer is 200, the connection lives on.
        let mut raw = Raw::connect(&server);
        raw.send_request("PUT", &large_path, &[], &large)
            .await
            .expect("the whole body is taken in");
        let again = raw.read_response(false).await.unwrap();
        assert_eq!(again.status, 200, "{}", again.text());
        assert_eq!(again.json()["created"], false);
        assert_eq!(raw.request("GET", "/healthz", &[], b"").await.status, 200);
        // A client that waits for 100 Continue gets its 200 without sending the body.
        let mut raw = Raw::connect(&server);
        let expect = [("Expect", "100-continue"), ("Content-Length", "1048576")];
        raw.send_request("PUT", &large_path, &expect, b"")
            .await
            .unwrap();
        assert_eq!(raw.read_response(false).await.unwrap().status, 200);
        // Other bytes under a stored chunk's id are refused, and the chunk is unchanged.
        let mut client = Client::connect(&server, Version::Http2).await;
        let wrong = chunk_bytes(61, 1 << 20);
        client
            .request("PUT", &large_path, &[], &wrong)
            .await
            .assert_error(400);
        assert_whole(
            &client.get(&large_path, &[]).await,
            &large,
            "after a wrong PUT",
        );
    });
}

#[test]
fn wrong_methods_get_405_with_allow_and_unknown_routes_404() {
    run(async {
        let node = TestNode::start(&[]);
        let server = node.server();
        let path = chunk_path(&id_of(b"any"));
        let meta = format!("{path}/meta");
        for version in VERSIONS {
            let mut client = Client::connect(&server, version).await;
            for (method, path, allow) in [
                ("POST", path.as_str(), "GET, HEAD, PUT, DELETE"),
                ("PATCH", path.as_str(), "GET, HEAD, PUT, DELETE"),
                ("PUT", "/metrics", "GET, HEAD"),
                ("DELETE", "/healthz", "GET, HEAD"),
                ("POST", "/readyz", "GET, HEAD"),
                ("PUT", meta.as_str(), "GET, HEAD"),
                ("POST", "/v1/manifests/image", "GET, HEAD, PUT, DELETE"),
                ("DELETE", "/v1/manifests", "GET, HEAD"),
                ("GET", "/v1/gc", "POST"),
            ] {
                let response = client.request(method, path, &[], b"").await;
                response.assert_error(405);
                assert_eq!(response.header("allow"), Some(allow), "{method} {path}");
            }
            client.get("/v1/nothing-here", &[]).await.assert_error(404);
        }
    });
}

#[test]
fn writes_need_the_bearer_token_when_one_is_set() {
    run(async {
        let node = TestNode::start(&["--write-token", "s3cret"]);
        let server = node.server();
        let bytes = chunk_bytes(8, 70_000);
        let path = chunk_path(&id_of(&bytes));
        let refused: [&[(&str, &str)]; 5] = [
            &[],
            &[("Authorization", "Bearer wrong")],
            &[("Authorization", "Bearer s3cret2")],
            &[("Authorization", "Basic czNjcmV0")],
            &[("Authorization", "s3cret")],
        ];
        for version in VERSIONS {
            for headers in refused {
                for method in ["PUT", "DELETE"] {
                    let body: &[u8] = if method == "PUT" { &bytes } else { b"" };
                    let response =
                        Client::once(&server, version, method, &path, headers, body).await;
                    response.assert_error(401);
                    assert_eq!(
                        response.header("www-authenticate"),
                        Some("Bearer"),
                        "{version:?} {method} {headers:?}"
                    );
                }
            }
        }
        let mut client = Client::connect(&server, Version::Http1).await;
        client.get(&path, &[]).await.assert_error(404); // nothing was stored

        let token = [("Authorization", "Bearer s3cret")];
        assert_eq!(client.put(&bytes, &token).await.status, 201);
        // Reads need no token.
        assert_whole(&client.get(&path, &[]).await, &bytes, "GET without a token");

        // The second PUT is answered 200 and writes nothing: no catalog change, no space.
        let store = node.store();
        let before = (
            store.health().commit_requests,
            store.capacity().free_bytes,
            store.chunk_count(),
        );
        let again = client
            .put(&bytes, &[("Authorization", "bearer s3cret")])
            .await;
        assert_eq!(again.status, 200, "{}", again.text());
        assert_eq!(again.json()["created"], false);
        let after = (
            store.health().commit_requests,
            store.capacity().free_bytes,
            store.chunk_count(),
        );
        assert_eq!(before, after, "(commits, free bytes, chunks)");
        assert_eq!(after.2, 1);

        Client::once(&server, Version::Http1, "DELETE", &path, &[], b"")
            .await
            .assert_error(401);
        let mut client = Client::connect(&server, Version::Http1).await;
        let deleted = client.request("DELETE", &path, &token, b"").await;
        assert_eq!(deleted.status, 204);
        client
            .request("DELETE", &path, &token, b"")
            .await
            .assert_error(404);
        client.get(&path, &[]).await.assert_error(404);
    });
}

#[test]
fn writes_are_refused_beyond_loopback_without_a_token() {
    run(async {
        let bytes = chunk_bytes(9, 1000);
        let path = chunk_path(&id_of(&bytes));
        // The node is never bound in-process: only the configured address matters.
        let node = TestNode::start(&["--listen", "192.0.2.7:7070"]);
        let server = node.server();
        for version in VERSIONS {
            Client::once(&server, version, "PUT", &path, &[], &bytes)
                .await
                .assert_error(403);
            Client::once(&server, version, "DELETE", &path, &[], b"")
                .await
                .assert_error(403);
            // Reads are served; nothing was stored.
            Client::once(&server, version, "GET", &path, &[], b"")
                .await
                .assert_error(404);
        }

        let open = TestNode::start(&[
            "--listen",
            "192.0.2.7:7070",
            "--allow-unauthenticated-writes",
        ]);
        let open_server = open.server();
        let mut client = Client::connect(&open_server, Version::Http2).await;
        assert_eq!(client.put(&bytes, &[]).await.status, 201);
    });
}

#[test]
fn an_empty_chunk_is_stored_and_served_with_the_rfc_s_zero_length_rules() {
    run(async {
        let node = TestNode::start(&[]);
        let server = node.server();
        for version in VERSIONS {
            let mut client = Client::connect(&server, version).await;
            let id = client.put_new(b"").await;
            let path = chunk_path(&id);
            assert_whole(&client.get(&path, &[]).await, b"", "an empty chunk");
            // RFC 9110 §14.1.2: of a zero-length representation only a suffix range is
            // satisfiable, and no Content-Range can describe it, so the answer is the
            // whole (empty) body; any other range is unsatisfiable.
            let suffix = client.get(&path, &[("Range", "bytes=-5")]).await;
            assert_whole(&suffix, b"", "bytes=-5");
            let response = client.get(&path, &[("Range", "bytes=0-5")]).await;
            response.assert_error(416);
            assert_eq!(response.header("content-range"), Some("bytes */0"));
            let deleted = client.request("DELETE", &path, &[], b"").await;
            assert_eq!(deleted.status, 204);
        }
    });
}

#[test]
fn a_recovering_node_is_alive_not_ready_and_asks_chunk_clients_to_retry() {
    run(async {
        let node = TestNode::recovering(&[]);
        let server = node.server();
        let path = chunk_path(&id_of(b"some chunk"));
        let mut client = Client::connect(&server, Version::Http1).await;
        assert_eq!(client.get("/healthz", &[]).await.status, 200);
        let ready = client.get("/readyz", &[]).await;
        assert_eq!(ready.status, 503);
        assert_eq!(ready.json()["status"], "unavailable");
        assert!(
            ready.json()["reason"]
                .as_str()
                .unwrap()
                .starts_with("recovering")
        );
        for method in ["GET", "HEAD", "PUT", "DELETE"] {
            let response = client.request(method, &path, &[], b"").await;
            assert_eq!(response.status, 503, "{method}");
            assert_eq!(response.header("retry-after"), Some("1"), "{method}");
        }
        let meta = client.get(&format!("{path}/meta"), &[]).await;
        meta.assert_error(503);
        // A malformed id is still the client's fault.
        client.get("/v1/chunks/nope", &[]).await.assert_error(400);

        node.open_store(64);
        let ready = client.get("/readyz", &[]).await;
        assert_eq!((ready.status, ready.text().as_str()), (200, "ready\n"));
        client.get(&path, &[]).await.assert_error(404);

        node.node.begin_shutdown();
        let ready = client.get("/readyz", &[]).await;
        assert_eq!(ready.status, 503);
        assert_eq!(ready.json()["reason"], "shutting down");
        assert_eq!(ready.header("connection"), Some("close"));
    });
}

#[test]
fn metrics_are_served_as_prometheus_text_with_the_store_gauges() {
    run(async {
        let node = TestNode::start(&[]);
        let server = node.server();
        let mut client = Client::connect(&server, Version::Http2).await;
        client.put_new(&chunk_bytes(100, 10_000)).await;
        let response = client.get("/metrics", &[]).await;
        assert_eq!(response.status, 200);
        assert_eq!(
            response.header("content-type"),
            Some("text/plain; version=0.0.4; charset=utf-8")
        );
        let text = response.text();
        // Gauges read from this node's store at the scrape (other tests' nodes share the
        // process's recorder, so only what this scrape set is checked).
        for name in [
            "chunkd_store_chunks",
            "chunkd_store_capacity_bytes",
            "chunkd_store_free_bytes",
            "chunkd_device_state",
            "chunkd_http_requests_total",
        ] {
            assert!(text.contains(&format!("\n{name}")), "{name} in:\n{text}");
        }
        // HEAD: the headers of a GET and no body, over either protocol.
        for version in VERSIONS {
            let mut client = Client::connect(&server, version).await;
            for (path, status) in [
                ("/metrics", 200),
                ("/healthz", 200),
                ("/readyz", 200),
                (chunk_path(&id_of(b"absent")).as_str(), 404),
            ] {
                let head = client.request("HEAD", path, &[], b"").await;
                assert_eq!(head.status, status, "{version:?} HEAD {path}");
                assert!(head.body.is_empty());
                assert!(head.header("content-length").is_some(), "{path}");
            }
        }
    });
}

/// Over HTTP/2 (the h2 crate's client, which shows stream resets), starts `method path`
/// declaring a body of `declared_bytes`, sends `sent` of it and waits for the answer.
/// Returns the status, the response body, and the reason the node reset the stream with
/// once it had answered (`None` if it did not within 5 s).
async fn h2_answer_before_the_body(
    server: &chunkd::http::CoreServer<chunkd::store::device::sim::SimEngine>,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    sent: &[u8],
    declared_bytes: usize,
) -> (u16, Vec<u8>, Option<h2::Reason>) {
    let (ours, theirs) = tokio::io::duplex(1 << 20);
    assert!(server.serve(theirs));
    let (mut client, connection) = h2::client::handshake(ours).await.unwrap();
    tokio::task::spawn_local(async move {
        let _ = connection.await;
    });
    let mut request = http::Request::builder()
        .method(method)
        .uri(format!("http://chunkd.test{path}"))
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
    let response = response
        .await
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
}

#[test]
fn h2_uploads_answered_early_get_the_answer_then_rst_stream_no_error() {
    run(async {
        let node = TestNode::start(&["--write-token", "T"]);
        let server = node.server();
        let bytes = chunk_bytes(12, 300_000);
        let path = chunk_path(&id_of(&bytes));
        let token = [("authorization", "Bearer T")];
        let no_token: &[(&str, &str)] = &[];
        // (method, path, headers, declared body, expected status)
        let cases = [
            ("PUT", path.as_str(), no_token, 300_000, 401),
            ("PUT", path.as_str(), &token[..], 2 << 20, 413),
            ("POST", path.as_str(), &token[..], 300_000, 405),
            ("POST", "/metrics", no_token, 300_000, 405),
        ];
        for (method, path, headers, declared, status) in cases {
            let sent = &bytes[..65_536];
            let (got, body, reset) =
                h2_answer_before_the_body(&server, method, path, headers, sent, declared).await;
            let what = format!("{method} {path} {headers:?}");
            assert_eq!(got, status, "{what}: {}", String::from_utf8_lossy(&body));
            let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert!(value["error"].is_string(), "{what}: {value}");
            // The rest of the upload is declined without error (RFC 9113 §8.1).
            assert_eq!(reset, Some(h2::Reason::NO_ERROR), "{what}");
        }
        assert_eq!(node.store().chunk_count(), 0);
    });
}
