//! Limits of the real `chunkd serve` over real sockets: connections over
//! `--max-connections` are closed at once while the admitted ones are served, across the
//! binary's cores, and the refusal is logged. Bad input, timeouts (on paused clocks) and
//! the connection limit on one core are tested in-process (`http_inproc_limits.rs`).
//! Also curl reading a 413 or 401 while it is still sending the refused upload.

mod harness;

use std::time::{Duration, Instant};

use harness::{Client, Launch, Server, chunk_bytes, chunk_path, curl, id_of, metric, tool_or_skip};

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

/// A connection admitted and busy with a request's header section (so not an idle
/// keep-alive connection, which the node would close to make room); retried for up to
/// 5 s like `admitted_within_5s`. Also returns how many tries the node closed first (each
/// counted as a connection over the limit: one just closed may still hold its slot).
fn busy_within_5s(server: &Server) -> (Client, u32) {
    let started = Instant::now();
    let mut refused = 0;
    loop {
        let mut client = Client::connect(server.addr);
        if client.send(b"GET /healthz HTTP/1.1\r\n").is_ok()
            && !client.closed_within(Duration::from_millis(200))
        {
            return (client, refused);
        }
        refused += 1;
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "a connection within --max-connections was not admitted"
        );
    }
}

#[test]
fn connections_over_the_limit_are_closed_while_the_others_are_served() {
    let server = Server::start(Launch::args(&["--max-connections", "2"]));
    let closed_over_limit = |client: &mut Client| {
        let text = client.request("GET", "/metrics", &[], b"").text();
        metric(
            &text,
            "chunkd_connections_closed_total",
            &[("reason", "over_connection_limit")],
        )
    };
    let before = closed_over_limit(&mut admitted_within_5s(&server));
    // Dropped just now, the metrics client may still hold a slot for a moment: a busy
    // connection refused meanwhile is counted over the limit too.
    let (mut first, refused_first) = busy_within_5s(&server);
    let (mut second, refused_second) = busy_within_5s(&server);

    for _ in 0..3 {
        let mut third = Client::connect(server.addr);
        let _ = third.send_request("GET", "/healthz", &[], b"");
        assert!(
            third.closed_within(Duration::from_secs(5)),
            "a third connection over --max-connections 2 stayed open"
        );
    }
    // The two admitted connections are served.
    for client in [&mut first, &mut second] {
        client.send(b"Host: a\r\n\r\n").unwrap();
        assert_eq!(client.read_response(false).unwrap().status, 200);
    }
    let cut = closed_over_limit(&mut first) - before;
    let expected = 3 + refused_first + refused_second;
    assert_eq!(
        cut,
        f64::from(expected),
        "connections closed over the limit"
    );
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
fn curl_reads_a_413_or_401_sent_while_it_is_still_uploading() {
    if !tool_or_skip("curl", "the early-answer test with a real client") {
        return;
    }
    let server = Server::start(Launch::args(&["--write-token", "T"]));
    let dir = tempfile::tempdir().unwrap();
    // (body, token header, the answer): over --max-chunk-bytes (1 MiB), and no token.
    for (len, auth, status) in [
        ((2 << 20) + 1, "Authorization: Bearer T", 413),
        (1 << 20, "X-No-Token: 1", 401),
    ] {
        let bytes = chunk_bytes(70, len);
        let file = dir.path().join("chunk");
        std::fs::write(&file, &bytes).unwrap();
        let url = format!("http://{}{}", server.addr, chunk_path(&id_of(&bytes)));
        // `Expect:` off: curl sends the body at once, as most clients do. (curl watches
        // for an early answer while uploading, so on loopback it read these before the
        // lingering close too; the in-process raw client in http_inproc_hostile is the
        // test that failed before it.)
        let answer = curl(&[
            "-T",
            file.to_str().unwrap(),
            "-H",
            "Expect:",
            "-H",
            auth,
            &url,
        ]);
        assert_eq!(answer.status, status, "{len} bytes, {auth}");
    }
}
