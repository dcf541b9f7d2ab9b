//! Bad input against the real `chunkd serve`: malformed request lines, oversized and too
//! many headers, invalid chunk ids, bodies that do not hash to their id, bodies cut off
//! mid-way, bodies that stall (408), bodies over the limit, a slowloris client, and
//! connections over the limit. Each gets the right 4xx or a disconnect, nothing is stored,
//! and meanwhile other clients doing GETs on the same server are served every time (api.md:
//! "No request can crash the node").

mod harness;

use std::time::{Duration, Instant};

use harness::{
    Bystander, Client, Launch, Response, Server, chunk_bytes, chunk_path, get, id_of, metric,
    metrics, put_chunk, request, wait_for_metric,
};

/// A server holding one chunk, and a bystander reading it over and over.
fn server_with_bystander(seed: u64) -> (Server, Bystander) {
    let server = Server::start(Launch::default());
    let bytes = chunk_bytes(seed, 200_000);
    let id = harness::put_new(server.addr, &bytes, &[]);
    assert_eq!(id, id_of(&bytes));
    let bystander = Bystander::start(server.addr, bytes);
    (server, bystander)
}

/// Sends `raw` on a new connection (ignoring a failed write: the server may close while
/// a large request is still going out) and reads what comes back: a response, or `None`
/// when the server closed the connection without one. Either way, checks that the
/// connection is closed afterwards.
fn send_raw(server: &Server, raw: &[u8]) -> Option<Response> {
    let mut client = Client::connect(server.addr);
    let _ = client.send(raw);
    let response = client.read_response(false).ok();
    assert!(
        client.closed_within(Duration::from_secs(5)),
        "the connection stays open after bad input {:?}",
        String::from_utf8_lossy(&raw[..raw.len().min(80)])
    );
    response
}

#[test]
fn malformed_requests_get_400_and_a_closed_connection() {
    let (server, bystander) = server_with_bystander(20);
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
    for (what, raw, expected) in cases {
        let status = send_raw(&server, raw).map(|r| r.status);
        assert!(
            status.is_some_and(|s| expected.contains(&s)),
            "{what}: got {status:?}, expected one of {expected:?}"
        );
    }
    // Broken chunked framing inside a PUT's body: the handler's JSON 400.
    let response = send_raw(&server, bad_chunk_size.as_bytes()).expect("an answer");
    let message = response.assert_error(400);
    assert!(message.contains("request body failed"), "{message}");
    assert_eq!(get(server.addr, "/healthz", &[]).status, 200);
    assert!(bystander.finish() > 0);
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
    let (server, bystander) = server_with_bystander(21);
    // Within the limits (100 fields; 48 KiB of header section): served.
    for (count, value_len) in [(100, 10), (48, 1000)] {
        let raw = request_with_headers(count, value_len);
        let mut client = Client::connect(server.addr);
        client.send(&raw).unwrap();
        let response = client.read_response(false).unwrap();
        assert_eq!(response.status, 200, "{count} fields of {value_len} bytes");
    }
    // Over them: 101 fields; one 70 KiB field; 70 fields totalling 70 KiB.
    for (count, value_len) in [(101, 10), (2, 70 * 1024), (70, 1024)] {
        let raw = request_with_headers(count, value_len);
        let response = send_raw(&server, &raw);
        let status = response.as_ref().map(|r| r.status);
        assert!(
            status.is_none_or(|s| s == 431),
            "{count} fields of {value_len} bytes: {status:?}"
        );
    }
    assert!(bystander.finish() > 0);
}

#[test]
fn invalid_chunk_ids_get_400_for_every_method() {
    let (server, bystander) = server_with_bystander(22);
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
    for id in &bad_ids {
        for method in ["GET", "HEAD", "PUT", "DELETE"] {
            let body: &[u8] = if method == "PUT" { b"x" } else { b"" };
            let path = chunk_path(id);
            let response = request(server.addr, method, &path, &[], body);
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
        get(server.addr, &format!("/v1/chunks/{id}/meta"), &[]).assert_error(400);
    }
    let text = metrics(server.addr);
    assert_eq!(
        metric(&text, "chunkd_store_chunks", &[]),
        1.0,
        "nothing stored"
    );
    assert!(bystander.finish() > 0);
}

#[test]
fn a_put_whose_body_does_not_hash_to_its_id_stores_nothing() {
    let (server, bystander) = server_with_bystander(23);
    let bytes = chunk_bytes(24, 100_000);
    let claimed = id_of(&chunk_bytes(25, 100_000));
    let path = chunk_path(&claimed);
    let message = request(server.addr, "PUT", &path, &[], &bytes).assert_error(400);
    assert!(!message.is_empty());
    get(server.addr, &path, &[]).assert_error(404);
    // Nor under the id the bytes do have.
    get(server.addr, &chunk_path(&id_of(&bytes)), &[]).assert_error(404);
    // The same with chunked encoding.
    let mut client = Client::connect(server.addr);
    let mut raw = format!(
        "PUT {path} HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n",
        bytes.len()
    )
    .into_bytes();
    raw.extend_from_slice(&bytes);
    raw.extend_from_slice(b"\r\n0\r\n\r\n");
    client.send(&raw).unwrap();
    client.read_response(false).unwrap().assert_error(400);
    get(server.addr, &path, &[]).assert_error(404);
    assert_eq!(
        metric(&metrics(server.addr), "chunkd_store_chunks", &[]),
        1.0
    );
    assert!(bystander.finish() > 0);
}

#[test]
fn a_put_cut_off_mid_body_stores_nothing_and_others_are_served() {
    let (server, bystander) = server_with_bystander(26);
    let bytes = chunk_bytes(27, 300_000);
    let path = chunk_path(&id_of(&bytes));
    // With a Content-Length: half the body, then the client goes away.
    {
        let mut client = Client::connect(server.addr);
        let head = format!(
            "PUT {path} HTTP/1.1\r\nHost: a\r\nContent-Length: {}\r\n\r\n",
            bytes.len()
        );
        client.send(head.as_bytes()).unwrap();
        client.send(&bytes[..bytes.len() / 2]).unwrap();
        bystander.wait_for_requests(2);
    }
    // Chunked: a chunk's size announced, half of it sent, then gone.
    {
        let mut client = Client::connect(server.addr);
        let head = format!(
            "PUT {path} HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n",
            bytes.len()
        );
        client.send(head.as_bytes()).unwrap();
        client.send(&bytes[..bytes.len() / 2]).unwrap();
        bystander.wait_for_requests(2);
    }
    bystander.wait_for_requests(5);
    get(server.addr, &path, &[]).assert_error(404);
    assert_eq!(
        metric(&metrics(server.addr), "chunkd_store_chunks", &[]),
        1.0
    );
    // The whole body afterwards is stored normally.
    assert_eq!(put_chunk(server.addr, &bytes, &[]).status, 201);
    assert!(bystander.finish() > 0);
}

#[test]
fn a_body_over_the_limit_gets_413_by_length_and_by_chunked_encoding() {
    let (server, bystander) = server_with_bystander(28);
    const MAX: usize = 1 << 20;
    let too_big = chunk_bytes(29, MAX + 1);
    let path = chunk_path(&id_of(&too_big));

    // Declared too large: refused before any body byte is sent.
    let mut client = Client::connect(server.addr);
    let head = format!(
        "PUT {path} HTTP/1.1\r\nHost: a\r\nContent-Length: {}\r\n\r\n",
        MAX + 1
    );
    client.send(head.as_bytes()).unwrap();
    let message = client.read_response(false).unwrap().assert_error(413);
    assert!(message.contains("limit"), "{message}");

    // Chunked, no length: refused once the body goes over. The client sends just over the
    // limit and then waits, so the server has read all it was sent.
    let mut client = Client::connect(server.addr);
    let head = format!("PUT {path} HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n");
    client.send(head.as_bytes()).unwrap();
    for piece in too_big.chunks(64 * 1024) {
        let mut chunk = format!("{:x}\r\n", piece.len()).into_bytes();
        chunk.extend_from_slice(piece);
        chunk.extend_from_slice(b"\r\n");
        client.send(&chunk).unwrap();
    }
    client.read_response(false).unwrap().assert_error(413);
    get(server.addr, &path, &[]).assert_error(404);

    // Exactly the limit is fine.
    let largest = chunk_bytes(30, MAX);
    assert_eq!(put_chunk(server.addr, &largest, &[]).status, 201);
    assert!(bystander.finish() > 0);
}

#[test]
fn a_slowloris_client_is_cut_after_the_header_read_timeout() {
    let (server, bystander) = server_with_bystander(31);
    let mut slow = Client::connect(server.addr);
    let request = b"GET /healthz HTTP/1.1\r\nHost: a\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let started = Instant::now();
    let mut cut_after = None;
    // One byte a second for at most 8 s, well past the 2 s limit.
    for byte in &request[..8] {
        if slow.send(&[*byte]).is_err() {
            cut_after = Some(started.elapsed());
            break;
        }
        // One byte a second; the read returns early if the server closes.
        if slow.closed_within(Duration::from_secs(1)) {
            cut_after = Some(started.elapsed());
            break;
        }
    }
    let cut_after = cut_after.expect("the slow client was not disconnected within 8 s");
    eprintln!("the slow client was cut after {cut_after:?}");
    // --header-read-timeout is 2 s (harness::HEADER_READ_TIMEOUT).
    assert!(
        cut_after >= Duration::from_millis(1500) && cut_after <= Duration::from_secs(6),
        "cut after {cut_after:?}"
    );
    wait_for_metric(
        server.addr,
        "chunkd_connections_closed_total",
        &[("reason", "header_timeout")],
        |v| v >= 1.0,
    );
    assert!(bystander.finish() > 10);
}

/// Connects and sends `GET /healthz`: the client if the server answered, `None` if it closed
/// the connection unanswered.
fn admitted(server: &Server) -> Option<Client> {
    let mut client = Client::connect(server.addr);
    match client.try_request("GET", "/healthz", &[], b"") {
        Ok(response) => {
            assert_eq!(response.status, 200);
            Some(client)
        }
        Err(_) => None,
    }
}

/// Retries `admitted` for up to 5 s: a connection the server has just seen close may still
/// count against the limit for a moment.
fn admitted_within_5s(server: &Server) -> Client {
    let started = Instant::now();
    loop {
        if let Some(client) = admitted(server) {
            return client;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "a connection within --max-connections was not served"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn connections_over_the_limit_are_closed_while_the_others_are_served() {
    let server = Server::start(Launch::args(&["--max-connections", "2"]));
    let mut first = admitted_within_5s(&server);
    let mut second = admitted_within_5s(&server);
    // Admission may have been refused while a closed probe still counted (see
    // `admitted_within_5s`): count the refusals from here.
    let closed_over_limit = |client: &mut Client| {
        let text = client.request("GET", "/metrics", &[], b"").text();
        metric(
            &text,
            "chunkd_connections_closed_total",
            &[("reason", "over_connection_limit")],
        )
    };
    let before = closed_over_limit(&mut first);

    for _ in 0..3 {
        let mut third = Client::connect(server.addr);
        let _ = third.send_request("GET", "/healthz", &[], b"");
        assert!(
            third.closed_within(Duration::from_secs(5)),
            "a third connection over --max-connections 2 stayed open"
        );
        // The two admitted connections keep being served.
        assert_eq!(first.request("GET", "/healthz", &[], b"").status, 200);
        assert_eq!(second.request("GET", "/healthz", &[], b"").status, 200);
    }
    let cut = closed_over_limit(&mut first) - before;
    assert_eq!(cut, 3.0, "connections closed over the limit");
    assert!(
        server.log().contains("connection limit reached"),
        "no log line for the refused connections:\n{}",
        server.log()
    );

    // A freed slot admits a new connection.
    drop(second);
    let mut fourth = admitted_within_5s(&server);
    assert_eq!(fourth.request("GET", "/healthz", &[], b"").status, 200);
}

#[test]
fn a_put_body_that_stalls_gets_408_after_the_idle_timeout_and_stores_nothing() {
    let server = Server::start(Launch::args(&["--idle-timeout", "1s"]));
    let bytes = chunk_bytes(40, 300_000);
    let path = chunk_path(&id_of(&bytes));
    for head in [
        format!(
            "PUT {path} HTTP/1.1\r\nHost: a\r\nContent-Length: {}\r\n\r\n",
            bytes.len()
        ),
        format!(
            "PUT {path} HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n",
            bytes.len()
        ),
    ] {
        let mut client = Client::connect(server.addr);
        client.send(head.as_bytes()).unwrap();
        client.send(&bytes[..1000]).unwrap();
        let started = Instant::now();
        let response = client
            .read_response(false)
            .expect("the stalled PUT is answered");
        let waited = started.elapsed();
        response.assert_error(408);
        assert!(
            waited >= Duration::from_millis(900) && waited < Duration::from_secs(3),
            "answered after {waited:?}, the idle timeout is 1 s"
        );
        assert!(client.closed_within(Duration::from_secs(5)));
    }
    get(server.addr, &path, &[]).assert_error(404);
    // The whole body afterwards is stored normally.
    assert_eq!(put_chunk(server.addr, &bytes, &[]).status, 201);
}
