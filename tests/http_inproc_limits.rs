//! Bad input, in-process: malformed request lines, oversized and too many headers, invalid
//! chunk ids, bodies that do not hash to their id, bodies cut off mid-way, bodies over the
//! limit, connections over the limit; and, on a paused clock, a slowloris client (cut at
//! exactly the header read timeout), a stalled body (408 at exactly the idle timeout), a
//! client that stops reading its response, and idle keep-alive connections. Each gets the
//! right 4xx or a disconnect, nothing is stored, and meanwhile a bystander doing GETs on
//! the same core is served every time (api.md: "No request can crash the node").

mod inproc;

use std::rc::Rc;
use std::time::Duration;

use inproc::{
    Bystander, Client, Raw, Response, TestNode, Version, chunk_bytes, chunk_path, id_of, metric,
    run,
};
use tokio::time::Instant;

/// A ready node with `flags` holding one chunk, its server, and a bystander reading it.
async fn node_with_bystander(
    seed: u64,
    flags: &[&str],
) -> (
    TestNode,
    Rc<chunkd::http::CoreServer<chunkd::store::device::sim::SimEngine>>,
    Bystander,
) {
    let node = TestNode::start(flags);
    let server = Rc::new(node.server());
    let bytes = chunk_bytes(seed, 200_000);
    let mut client = Client::connect(&server, Version::Http1).await;
    assert_eq!(client.put_new(&bytes).await, id_of(&bytes));
    let bystander = Bystander::start(server.clone(), bytes).await;
    (node, server, bystander)
}

/// Sends `raw` on a new connection (ignoring a failed write: the node may close while a
/// large request is still going out) and reads what comes back: a response, or `None` when
/// the node closed the connection without one. Either way, checks that the connection is
/// closed afterwards.
async fn send_raw(
    server: &chunkd::http::CoreServer<chunkd::store::device::sim::SimEngine>,
    bytes: &[u8],
) -> Option<Response> {
    let mut raw = Raw::connect(server);
    let _ = raw.send(bytes).await;
    let response = raw.read_response(false).await.ok();
    assert!(
        raw.closed_within(Duration::from_secs(5)).await,
        "the connection stays open after bad input {:?}",
        String::from_utf8_lossy(&bytes[..bytes.len().min(80)])
    );
    response
}

/// The sum of the process's `name{labels}` samples now (the recorder is shared by every
/// test in this binary: compare before and after).
fn counter(node: &TestNode, name: &str, labels: &[(&str, &str)]) -> f64 {
    metric(&node.node.metrics.render(None), name, labels)
}

#[test]
fn malformed_requests_get_400_and_a_closed_connection() {
    run(async {
        let (_node, server, bystander) = node_with_bystander(20, &[]).await;
        let long_uri = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(70 * 1024));
        let bad_chunk_size = format!(
            "PUT {} HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            chunk_path(&id_of(b"some chunk"))
        );
        // (what, the bytes, the statuses that may answer them)
        let cases: [(&str, &[u8], &[u16]); 11] = [
            ("garbage", b"HELLO THERE\r\n\r\n", &[400]),
            ("binary garbage", b"\x00\x01\x02\xff\xfe\r\n\r\n", &[400]),
            ("missing version", b"GET /healthz\r\n\r\n", &[400]),
            (
                "bad method token",
                b"G(T /healthz HTTP/1.1\r\nHost: a\r\n\r\n",
                &[400],
            ),
            (
                "unknown version",
                b"GET /healthz HTTP/7.0\r\nHost: a\r\n\r\n",
                &[400, 505],
            ),
            ("no target", b"GET HTTP/1.1\r\nHost: a\r\n\r\n", &[400]),
            (
                "header without colon",
                b"GET /healthz HTTP/1.1\r\nHost a\r\n\r\n",
                &[400],
            ),
            (
                "space before colon",
                b"GET /healthz HTTP/1.1\r\nHost : a\r\n\r\n",
                &[400],
            ),
            (
                "two different lengths",
                b"PUT /healthz HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
                &[400],
            ),
            (
                "negative length",
                b"PUT /healthz HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n",
                &[400],
            ),
            ("request line over the limit", long_uri.as_bytes(), &[414, 431]),
        ];
        for (what, bytes, expected) in cases {
            let status = send_raw(&server, bytes).await.map(|r| r.status);
            assert!(
                status.is_some_and(|s| expected.contains(&s)),
                "{what}: got {status:?}, expected one of {expected:?}"
            );
        }
        // Broken chunked framing inside a PUT's body: the handler's JSON 400.
        let response = send_raw(&server, bad_chunk_size.as_bytes())
            .await
            .expect("an answer");
        let message = response.assert_error(400);
        assert!(message.contains("request body failed"), "{message}");
        assert!(bystander.finish().await > 0);
    });
}

/// A GET with `count` header fields in all (Host included) of `value_len` bytes each.
fn request_with_headers(count: usize, value_len: usize) -> Vec<u8> {
    let mut raw = String::from("GET /healthz HTTP/1.1\r\nHost: a\r\n");
    for n in 1..count {
        raw.push_str(&format!("X-Field-{n}: {}\r\n", "v".repeat(value_len)));
    }
    raw.push_str("\r\n");
    raw.into_bytes()
}

#[test]
fn oversized_or_too_many_headers_get_431_or_a_close() {
    run(async {
        let (_node, server, bystander) = node_with_bystander(21, &[]).await;
        // Within the limits (100 fields; 48 KiB of header section): served.
        for (count, value_len) in [(100, 10), (48, 1000)] {
            let mut raw = Raw::connect(&server);
            raw.send(&request_with_headers(count, value_len))
                .await
                .unwrap();
            let response = raw.read_response(false).await.unwrap();
            assert_eq!(response.status, 200, "{count} fields of {value_len} bytes");
        }
        // Over them: 101 fields; one 70 KiB field; 70 fields totalling 70 KiB.
        for (count, value_len) in [(101, 10), (2, 70 * 1024), (70, 1024)] {
            let response = send_raw(&server, &request_with_headers(count, value_len)).await;
            let status = response.as_ref().map(|r| r.status);
            assert!(
                status.is_none_or(|s| s == 431),
                "{count} fields of {value_len} bytes: {status:?}"
            );
        }
        assert!(bystander.finish().await > 0);
    });
}

#[test]
fn invalid_chunk_ids_get_400_for_every_method() {
    run(async {
        let (node, server, bystander) = node_with_bystander(22, &[]).await;
        let good = id_of(b"x");
        let bad_ids = [
            good.to_uppercase(),
            good[..63].to_owned(),
            format!("{good}0"),
            format!("{}g", &good[..63]),
            format!("{}%61", &good[..61]),
            "-1".to_owned(),
            String::new(),
        ];
        let mut raw = Raw::connect(&server);
        for id in &bad_ids {
            for method in ["GET", "HEAD", "PUT", "DELETE"] {
                let body: &[u8] = if method == "PUT" { b"x" } else { b"" };
                let path = chunk_path(id);
                let response = raw.request(method, &path, &[], body).await;
                if method == "HEAD" {
                    assert_eq!(response.status, 400, "HEAD {path}");
                } else {
                    let message = response.assert_error(400);
                    assert!(
                        message.contains("invalid chunk id"),
                        "{method} {path}: {message}"
                    );
                }
            }
            let meta = format!("/v1/chunks/{id}/meta");
            raw.request("GET", &meta, &[], b"").await.assert_error(400);
        }
        assert_eq!(node.store().chunk_count(), 1, "nothing stored");
        assert!(bystander.finish().await > 0);
    });
}

#[test]
fn a_put_whose_body_does_not_hash_to_its_id_stores_nothing() {
    run(async {
        let (node, server, bystander) = node_with_bystander(23, &[]).await;
        let bytes = chunk_bytes(24, 100_000);
        let claimed = id_of(&chunk_bytes(25, 100_000));
        let path = chunk_path(&claimed);
        for version in [Version::Http1, Version::Http2] {
            let mut client = Client::connect(&server, version).await;
            let response = client.request("PUT", &path, &[], &bytes).await;
            assert!(!response.assert_error(400).is_empty());
            client.get(&path, &[]).await.assert_error(404);
            // Nor under the id the bytes do have.
            let own = chunk_path(&id_of(&bytes));
            client.get(&own, &[]).await.assert_error(404);
        }
        // The same with chunked encoding.
        let mut raw = Raw::connect(&server);
        let mut request = format!(
            "PUT {path} HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n",
            bytes.len()
        )
        .into_bytes();
        request.extend_from_slice(&bytes);
        request.extend_from_slice(b"\r\n0\r\n\r\n");
        raw.send(&request).await.unwrap();
        raw.read_response(false).await.unwrap().assert_error(400);
        assert_eq!(node.store().chunk_count(), 1);
        assert!(bystander.finish().await > 0);
    });
}

#[test]
fn a_put_cut_off_mid_body_stores_nothing_and_others_are_served() {
    run(async {
        let (node, server, bystander) = node_with_bystander(26, &[]).await;
        let bytes = chunk_bytes(27, 300_000);
        let path = chunk_path(&id_of(&bytes));
        for framing in [
            format!("Content-Length: {}\r\n\r\n", bytes.len()),
            format!("Transfer-Encoding: chunked\r\n\r\n{:x}\r\n", bytes.len()),
        ] {
            // Half the body, then the client goes away.
            let mut raw = Raw::connect(&server);
            let head = format!("PUT {path} HTTP/1.1\r\nHost: a\r\n{framing}");
            raw.send(head.as_bytes()).await.unwrap();
            raw.send(&bytes[..bytes.len() / 2]).await.unwrap();
            bystander.wait_for_requests(2).await;
            drop(raw);
            bystander.wait_for_requests(2).await;
        }
        let mut client = Client::connect(&server, Version::Http1).await;
        client.get(&path, &[]).await.assert_error(404);
        assert_eq!(node.store().chunk_count(), 1);
        // The whole body afterwards is stored normally.
        assert_eq!(client.put(&bytes, &[]).await.status, 201);
        assert!(bystander.finish().await > 0);
    });
}

#[test]
fn a_body_over_the_limit_gets_413_by_length_and_by_chunked_encoding() {
    run(async {
        let (node, server, bystander) = node_with_bystander(28, &[]).await;
        const MAX: usize = 1 << 20;
        let too_big = chunk_bytes(29, MAX + 1);
        let path = chunk_path(&id_of(&too_big));

        // Declared too large: refused before any body byte is sent.
        let mut raw = Raw::connect(&server);
        let head = format!(
            "PUT {path} HTTP/1.1\r\nHost: a\r\nContent-Length: {}\r\n\r\n",
            MAX + 1
        );
        raw.send(head.as_bytes()).await.unwrap();
        let message = raw.read_response(false).await.unwrap().assert_error(413);
        assert!(message.contains("limit"), "{message}");

        // Chunked, no length: refused once the body goes over. The client sends just over
        // the limit and then waits, so the node has read all it was sent.
        let mut raw = Raw::connect(&server);
        let head = format!("PUT {path} HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n");
        raw.send(head.as_bytes()).await.unwrap();
        for piece in too_big.chunks(64 * 1024) {
            let mut chunk = format!("{:x}\r\n", piece.len()).into_bytes();
            chunk.extend_from_slice(piece);
            chunk.extend_from_slice(b"\r\n");
            raw.send(&chunk).await.unwrap();
        }
        raw.read_response(false).await.unwrap().assert_error(413);
        assert_eq!(node.store().chunk_count(), 1);

        // Exactly the limit is fine.
        let largest = chunk_bytes(30, MAX);
        let mut client = Client::connect(&server, Version::Http1).await;
        assert_eq!(client.put(&largest, &[]).await.status, 201);
        assert!(bystander.finish().await > 0);
    });
}

#[test]
fn a_slowloris_client_is_cut_at_the_header_read_timeout() {
    run(async {
        let (node, server, bystander) =
            node_with_bystander(31, &["--header-read-timeout", "2s"]).await;
        let cut_before = counter(
            &node,
            "chunkd_connections_closed_total",
            &[("reason", "header_timeout")],
        );
        // From here time moves only when every task waits for a timer.
        tokio::time::pause();
        let mut slow = Raw::connect(&server);
        let request = b"GET /healthz HTTP/1.1\r\nHost: a\r\nX-Slow: aaaaaaaaaaaaaaaa\r\n\r\n";
        let started = Instant::now();
        let mut cut_after = None;
        // One byte a second, for at most 8 s.
        for byte in &request[..8] {
            if slow.send(&[*byte]).await.is_err()
                || slow.closed_within(Duration::from_secs(1)).await
            {
                cut_after = Some(started.elapsed());
                break;
            }
        }
        let cut_after = cut_after.expect("the slow client was not cut within 8 s");
        assert!(
            cut_after >= Duration::from_secs(2)
                && cut_after < Duration::from_secs(2) + Duration::from_millis(10),
            "cut after {cut_after:?}; the header read timeout is 2 s"
        );
        let cut = counter(
            &node,
            "chunkd_connections_closed_total",
            &[("reason", "header_timeout")],
        );
        assert!(cut - cut_before >= 1.0, "header timeouts counted");
        assert!(bystander.finish().await > 10);
    });
}

#[test]
fn a_header_read_timeout_over_30_s_is_honoured() {
    run(async {
        let node = TestNode::start(&["--header-read-timeout", "45s", "--idle-timeout", "120s"]);
        let server = node.server();
        tokio::time::pause();
        let mut slow = Raw::connect(&server);
        let started = Instant::now();
        let mut cut_after = None;
        // One byte every 10 s; hyper's own 30 s header timeout must not cut it first.
        for byte in b"GET /healthz HTTP/1.1\r\n" {
            if slow.send(&[*byte]).await.is_err()
                || slow.closed_within(Duration::from_secs(10)).await
            {
                cut_after = Some(started.elapsed());
                break;
            }
        }
        let cut_after = cut_after.expect("the slow client was cut");
        assert!(
            cut_after >= Duration::from_secs(45)
                && cut_after < Duration::from_secs(45) + Duration::from_millis(10),
            "cut after {cut_after:?}; the header read timeout is 45 s"
        );
    });
}

#[test]
fn a_put_body_that_stalls_gets_408_at_the_idle_timeout_and_stores_nothing() {
    run(async {
        let node = TestNode::start(&["--idle-timeout", "1s"]);
        let server = node.server();
        let bytes = chunk_bytes(40, 300_000);
        let path = chunk_path(&id_of(&bytes));
        tokio::time::pause();
        for framing in [
            format!("Content-Length: {}\r\n\r\n", bytes.len()),
            format!("Transfer-Encoding: chunked\r\n\r\n{:x}\r\n", bytes.len()),
        ] {
            let mut raw = Raw::connect(&server);
            let head = format!("PUT {path} HTTP/1.1\r\nHost: a\r\n{framing}");
            raw.send(head.as_bytes()).await.unwrap();
            raw.send(&bytes[..1000]).await.unwrap();
            let started = Instant::now();
            let response = raw
                .read_response(false)
                .await
                .expect("the stalled PUT is answered");
            let waited = started.elapsed();
            response.assert_error(408);
            assert!(
                waited >= Duration::from_secs(1)
                    && waited < Duration::from_secs(1) + Duration::from_millis(10),
                "answered after {waited:?}, the idle timeout is 1 s"
            );
            assert!(raw.closed_within(Duration::from_secs(5)).await);
        }
        assert_eq!(node.store().chunk_count(), 0);
        // The whole body afterwards is stored normally (on the running clock: a PUT waits
        // for the commit thread, a real one).
        tokio::time::resume();
        let mut client = Client::connect(&server, Version::Http1).await;
        assert_eq!(client.put(&bytes, &[]).await.status, 201);
    });
}

#[test]
fn an_idle_keep_alive_connection_is_closed_at_the_idle_timeout() {
    run(async {
        let node = TestNode::start(&["--idle-timeout", "60s"]);
        let server = node.server();
        tokio::time::pause();
        let mut raw = Raw::connect(&server);
        assert_eq!(raw.request("GET", "/healthz", &[], b"").await.status, 200);
        let started = Instant::now();
        assert!(!raw.closed_within(Duration::from_secs(59)).await);
        assert!(raw.closed_within(Duration::from_secs(2)).await);
        let idle = started.elapsed();
        assert!(
            idle >= Duration::from_secs(60)
                && idle < Duration::from_secs(60) + Duration::from_millis(10),
            "closed after {idle:?}"
        );
    });
}

#[test]
fn a_client_that_stops_reading_its_response_is_cut_after_the_idle_timeout_and_grace() {
    run(async {
        let node = TestNode::start(&["--idle-timeout", "10s"]);
        let server = node.server();
        let bytes = chunk_bytes(45, 1 << 20);
        let mut client = Client::connect(&server, Version::Http1).await;
        let path = chunk_path(&client.put_new(&bytes).await);
        drop(client);
        tokio::time::pause();
        // A 1 MiB answer into a 256 KiB duplex that is never read: the node's writes stall.
        let mut reader = Raw::connect(&server);
        reader.send_request("GET", &path, &[], b"").await.unwrap();
        let started = Instant::now();
        while node.node.open_connections() > 0 {
            assert!(started.elapsed() < Duration::from_secs(60), "never cut");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // The idle timeout, plus the 2 s a request in flight is given (conn.rs).
        let cut_after = started.elapsed();
        assert!(
            cut_after >= Duration::from_secs(12)
                && cut_after <= Duration::from_secs(12) + Duration::from_millis(200),
            "cut after {cut_after:?}"
        );
    });
}

#[test]
fn an_idle_http2_connection_is_closed_at_the_idle_timeout() {
    run(async {
        let node = TestNode::start(&["--idle-timeout", "60s"]);
        let server = node.server();
        tokio::time::pause();
        let mut client = Client::connect(&server, Version::Http2).await;
        assert_eq!(client.get("/healthz", &[]).await.status, 200);
        tokio::time::sleep(Duration::from_secs(59)).await;
        assert!(!client.is_closed(), "open before the idle timeout");
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(client.is_closed(), "closed after the idle timeout");
    });
}

#[test]
fn connections_over_the_limit_are_closed_while_the_others_are_served() {
    run(async {
        let node = TestNode::start(&["--max-connections", "2"]);
        let server = node.server();
        // Two connections busy with a request each (none idle, so none makes room: see
        // http_inproc_hostile for the idle keep-alive one that does).
        let mut first = Raw::connect(&server);
        let mut second = Raw::connect(&server);
        for raw in [&mut first, &mut second] {
            raw.send(b"GET /healthz HTTP/1.1\r\n").await.unwrap();
        }
        let over_limit = || {
            counter(
                &node,
                "chunkd_connections_closed_total",
                &[("reason", "over_connection_limit")],
            )
        };
        let before = over_limit();
        for _ in 0..3 {
            let mut third = Raw::refused(&server);
            let _ = third.send_request("GET", "/healthz", &[], b"").await;
            assert!(third.closed_within(Duration::from_secs(5)).await);
        }
        assert_eq!(
            over_limit() - before,
            3.0,
            "connections closed over the limit"
        );
        assert_eq!(node.node.open_connections(), 2);
        // The two admitted connections are served.
        for raw in [&mut first, &mut second] {
            raw.send(b"Host: a\r\n\r\n").await.unwrap();
            assert_eq!(raw.read_response(false).await.unwrap().status, 200);
        }

        // A freed slot admits a new connection.
        drop(second);
        let started = Instant::now();
        while node.node.open_connections() > 1 {
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "the slot is freed"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let mut fourth = Client::connect(&server, Version::Http1).await;
        assert_eq!(fourth.get("/healthz", &[]).await.status, 200);
    });
}

/// Many uploads at once on one HTTP/2 connection, more than its in-flight share holds:
/// those that do not fit are refused at once with 503 and `Retry-After` (their retry
/// succeeds) instead of waiting — a waiting upload's unread DATA held the connection's
/// flow-control window, so the others could not send either and got 408.
#[test]
fn uploads_over_an_http2_connections_share_get_503_at_once() {
    run(async {
        let node = TestNode::start(&["--max-inflight-bytes-per-connection", "2M"]);
        let server = node.server();
        let client = Client::connect(&server, Version::Http2).await;
        let chunks: Vec<Vec<u8>> = (0..12).map(|n| chunk_bytes(9100 + n, 1 << 20)).collect();
        let answers = futures_util::future::join_all(chunks.iter().map(|bytes| {
            let mut stream = client.another_stream();
            async move { stream.put(bytes, &[]).await }
        }))
        .await;
        let statuses: Vec<u16> = answers.iter().map(|r| r.status).collect();
        assert!(
            statuses.iter().all(|&s| s == 201 || s == 503),
            "{statuses:?}"
        );
        assert!(statuses.contains(&503), "{statuses:?}");
        assert!(statuses.contains(&201), "{statuses:?}");
        for (answer, bytes) in answers.iter().zip(&chunks) {
            if answer.status == 503 {
                assert_eq!(answer.header("retry-after"), Some("1"));
                assert_eq!(client.another_stream().put(bytes, &[]).await.status, 201);
            }
        }
        let mut check = client.another_stream();
        for bytes in &chunks {
            let read = check.get(&chunk_path(&id_of(bytes)), &[]).await;
            assert!(read.status == 200 && read.body == *bytes);
        }
    });
}
