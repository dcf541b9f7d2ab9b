//! Hostile clients, in-process (issue 11): slow readers at HTTP/2 window 0 and slow
//! writers trickling a body hold at most their share of a core's in-flight budget and are
//! cut at the send or body timeout (PINGs are not progress); silent connections and a
//! byte-by-byte HTTP/2 preface are cut at the header timeout; one client address cannot
//! take every connection, and at the node's limit an idle keep-alive connection makes
//! room; a refused upload's answer is readable by a client still sending; only plain
//! `chunked` transfer coding is accepted; a Range past u64 is "to the end"; and no answer
//! about a chunk is given before its full id is confirmed.

mod inproc;

use std::net::IpAddr;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use chunkd::http::CoreServer;
use chunkd::store::device::sim::SimEngine;
use http_body_util::Empty;
use hyper_util::rt::{TokioIo, TokioTimer};
use inproc::{
    Bystander, Client, Raw, TestNode, Version, chunk_bytes, chunk_path, id_of, metric, run,
};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::time::Instant;

fn counter(node: &TestNode, name: &str, labels: &[(&str, &str)]) -> f64 {
    metric(&node.node.metrics.render(None), name, labels)
}

/// A node with `flags`, its server, a 1 MiB chunk (its path) and a bystander reading a
/// second chunk on its own connection.
async fn attacked_node(flags: &[&str]) -> (TestNode, Rc<CoreServer<SimEngine>>, String, Bystander) {
    let node = TestNode::start(flags);
    let server = Rc::new(node.server());
    let mut client = Client::connect(&server, Version::Http1).await;
    let big = chunk_path(&client.put_new(&chunk_bytes(90, 1 << 20)).await);
    let small = chunk_bytes(91, 200_000);
    client.put_new(&small).await;
    let bystander = Bystander::start(server.clone(), small).await;
    (node, server, big, bystander)
}

#[derive(Clone, Copy)]
struct LocalExec;

impl<F: std::future::Future + 'static> hyper::rt::Executor<F> for LocalExec {
    fn execute(&self, future: F) {
        tokio::task::spawn_local(future);
    }
}

/// An HTTP/2 client that announces a stream window of 0 and never reads, with a PING
/// every 5 s, opening `streams` GETs of `path`; returns once they are all sent.
async fn window_zero_reader(server: &CoreServer<SimEngine>, path: &str, streams: usize) {
    let (ours, theirs) = tokio::io::duplex(256 << 10);
    assert!(server.serve(theirs));
    let (sender, connection) = hyper::client::conn::http2::Builder::new(LocalExec)
        .timer(TokioTimer::new())
        .initial_stream_window_size(0)
        .keep_alive_interval(Duration::from_secs(5))
        .keep_alive_while_idle(true)
        .handshake::<_, Empty<Bytes>>(TokioIo::new(ours))
        .await
        .expect("handshake");
    tokio::task::spawn_local(connection);
    for _ in 0..streams {
        let mut sender = sender.clone();
        let request = http::Request::get(format!("http://chunkd.test{path}"))
            .body(Empty::new())
            .unwrap();
        tokio::task::spawn_local(async move {
            if let Ok(response) = sender.send_request(request).await {
                let _held = response; // never read
                std::future::pending::<()>().await;
            }
        });
    }
}

#[test]
fn a_window_zero_reader_holds_only_its_connections_share_and_is_cut_at_the_send_timeout() {
    run(async {
        let (node, server, big, bystander) = attacked_node(&[
            "--max-inflight-bytes-per-core",
            "4M",
            "--max-inflight-bytes-per-connection",
            "1M",
            "--send-timeout",
            "30s",
        ])
        .await;
        let cut_before = counter(
            &node,
            "chunkd_connections_closed_total",
            &[("reason", "send_timeout")],
        );
        tokio::time::pause();
        let started = Instant::now();
        window_zero_reader(&server, &big, 8).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let held_kib = server.context().budget_held_kib();
        assert!(
            (1..=1024 + 256).contains(&held_kib),
            "the stalled connection holds {held_kib} KiB (its share: 1024)"
        );
        // The bystander is served meanwhile, in spite of the attack.
        bystander.wait_for_requests(20).await;
        // PINGs every 5 s are not progress: cut at the send timeout, the budget freed.
        while server.context().budget_held_kib() > 256 {
            assert!(started.elapsed() < Duration::from_secs(40), "never cut");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let cut_after = started.elapsed();
        assert!(
            cut_after >= Duration::from_secs(30) && cut_after <= Duration::from_secs(32),
            "cut after {cut_after:?}"
        );
        let cut = counter(
            &node,
            "chunkd_connections_closed_total",
            &[("reason", "send_timeout")],
        );
        assert!(cut - cut_before >= 1.0);
        assert!(bystander.finish().await > 20);
    });
}

#[test]
fn a_trickling_put_body_gets_408_at_the_body_timeout_and_stores_nothing() {
    run(async {
        let node = TestNode::start(&["--body-timeout", "60s", "--idle-timeout", "60s"]);
        let server = node.server();
        let bytes = chunk_bytes(92, 1 << 20);
        tokio::time::pause();
        let (ours, theirs) = tokio::io::duplex(256 << 10);
        assert!(server.serve(theirs));
        let (read_half, mut write_half) = tokio::io::split(ours);
        let head = format!(
            "PUT {} HTTP/1.1\r\nHost: a\r\nContent-Length: {}\r\n\r\n",
            chunk_path(&id_of(&bytes)),
            bytes.len()
        );
        let started = Instant::now();
        let trickle = tokio::task::spawn_local(async move {
            write_half.write_all(head.as_bytes()).await.unwrap();
            // 64 bytes every 5 s: never idle for the idle timeout.
            for piece in bytes.chunks(64).take(30) {
                if write_half.write_all(piece).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
        });
        let mut status_line = String::new();
        BufReader::new(read_half)
            .read_line(&mut status_line)
            .await
            .unwrap();
        let answered_after = started.elapsed();
        assert!(status_line.starts_with("HTTP/1.1 408"), "{status_line:?}");
        assert!(
            answered_after >= Duration::from_secs(60)
                && answered_after < Duration::from_secs(60) + Duration::from_millis(10),
            "answered after {answered_after:?}"
        );
        trickle.abort();
        assert_eq!(node.store().chunk_count(), 0);
        assert_eq!(server.context().budget_held_kib(), 0);
    });
}

#[test]
fn a_connection_that_sends_nothing_is_cut_at_the_header_timeout() {
    run(async {
        let node = TestNode::start(&["--header-read-timeout", "10s", "--idle-timeout", "60s"]);
        let server = node.server();
        tokio::time::pause();
        let mut silent = Raw::connect(&server);
        let started = Instant::now();
        assert!(silent.closed_within(Duration::from_secs(20)).await);
        let cut_after = started.elapsed();
        assert!(
            cut_after >= Duration::from_secs(10)
                && cut_after < Duration::from_secs(10) + Duration::from_millis(10),
            "cut after {cut_after:?}"
        );
    });
}

#[test]
fn an_http2_preface_sent_byte_by_byte_is_cut_at_the_header_timeout() {
    run(async {
        let node = TestNode::start(&["--header-read-timeout", "10s", "--idle-timeout", "60s"]);
        let server = node.server();
        tokio::time::pause();
        let mut slow = Raw::connect(&server);
        let started = Instant::now();
        slow.send(b"PRI * HTTP/2.0").await.unwrap();
        let mut cut_after = None;
        for byte in b"\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0" {
            if slow.send(&[*byte]).await.is_err()
                || slow.closed_within(Duration::from_secs(4)).await
            {
                cut_after = Some(started.elapsed());
                break;
            }
        }
        let cut_after = cut_after.expect("still open after the whole slow preface");
        assert!(
            cut_after >= Duration::from_secs(10)
                && cut_after < Duration::from_secs(10) + Duration::from_millis(10),
            "cut after {cut_after:?}"
        );
    });
}

#[test]
fn one_client_address_cannot_take_every_connection() {
    run(async {
        let node = TestNode::start(&["--max-connections-per-client", "3"]);
        let server = node.server();
        let (greedy, other): (IpAddr, IpAddr) =
            ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        let mut held: Vec<Raw> = (0..3)
            .map(|_| Raw::try_connect_from(&server, greedy).expect("admitted"))
            .collect();
        assert!(Raw::try_connect_from(&server, greedy).is_none());
        let mut bystander = Raw::try_connect_from(&server, other).expect("another client");
        assert_eq!(
            bystander.request("GET", "/healthz", &[], b"").await.status,
            200
        );
        // A closed connection gives its place back.
        held.pop();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut again = Raw::try_connect_from(&server, greedy).expect("admitted again");
        assert_eq!(again.request("GET", "/healthz", &[], b"").await.status, 200);
    });
}

#[test]
fn at_the_connection_limit_an_idle_keep_alive_connection_makes_room() {
    run(async {
        let node = TestNode::start(&["--max-connections", "2"]);
        let server = node.server();
        let mut idle = Raw::connect(&server);
        assert_eq!(idle.request("GET", "/healthz", &[], b"").await.status, 200);
        let _busy = Raw::connect(&server); // no request yet: not an idle keep-alive one
        let mut newcomer = Raw::try_connect(&server).expect("room made for it");
        assert_eq!(
            newcomer.request("GET", "/healthz", &[], b"").await.status,
            200
        );
        assert!(idle.closed_within(Duration::from_secs(1)).await);
        // Now nothing is idle-after-a-request but the newcomer... which is idle too, so a
        // fourth takes its place; a connection that never sent a request is kept.
        assert!(Raw::try_connect(&server).is_some());
        assert!(newcomer.closed_within(Duration::from_secs(1)).await);
    });
}

#[test]
fn a_refused_upload_is_answered_to_a_client_still_sending_its_body() {
    run(async {
        let node = TestNode::start(&["--write-token", "secret"]);
        let server = node.server();
        let too_big = chunk_bytes(93, (2 << 20) + 1);
        let fits = chunk_bytes(94, 1 << 20);
        let auth = ("Authorization", "Bearer secret");
        // (what, headers, body, the answer)
        type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, &'a [u8], u16);
        let cases: [Case; 2] = [
            ("over --max-chunk-bytes", vec![auth], &too_big, 413),
            ("no token", vec![], &fits, 401),
        ];
        for (what, headers, body, status) in cases {
            let mut raw = Raw::connect(&server);
            let path = chunk_path(&id_of(body));
            raw.send_request("PUT", &path, &headers, body)
                .await
                .unwrap_or_else(|e| panic!("{what}: the body could not be sent: {e}"));
            let response = raw.read_response(false).await.expect(what);
            response.assert_error(status);
        }
        assert_eq!(node.store().chunk_count(), 0);
    });
}

#[test]
fn transfer_codings_other_than_chunked_get_501_and_store_nothing() {
    run(async {
        let node = TestNode::start(&[]);
        let server = node.server();
        let bytes = b"a chunk sent gzip, chunked";
        let mut body = format!("{:x}\r\n", bytes.len()).into_bytes();
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n0\r\n\r\n");
        for coding in ["gzip, chunked", "identity, chunked"] {
            let mut raw = Raw::connect(&server);
            let path = chunk_path(&id_of(bytes));
            let response = raw
                .request("PUT", &path, &[("Transfer-Encoding", coding)], &body)
                .await;
            response.assert_error(501);
        }
        assert_eq!(node.store().chunk_count(), 0);
    });
}

#[test]
fn a_range_end_past_u64_is_a_range_to_the_end() {
    run(async {
        let node = TestNode::start(&[]);
        let server = node.server();
        let bytes = chunk_bytes(95, 10_000);
        let mut client = Client::connect(&server, Version::Http1).await;
        let path = chunk_path(&client.put_new(&bytes).await);
        let response = client
            .get(&path, &[("Range", "bytes=0-18446744073709551616")])
            .await;
        assert_eq!(response.status, 206);
        assert_eq!(response.header("content-range"), Some("bytes 0-9999/10000"));
        assert_eq!(response.body, bytes);
    });
}

#[test]
fn conditional_and_range_answers_confirm_the_full_id() {
    run(async {
        let node = TestNode::start(&[]);
        let server = node.server();
        let bytes = chunk_bytes(96, 10_000);
        let mut client = Client::connect(&server, Version::Http1).await;
        let id = client.put_new(&bytes).await;
        // The same first 64 bits (16 hex digits), the rest different.
        let rest: String = id[16..]
            .chars()
            .map(|c| if c == '0' { '1' } else { '0' })
            .collect();
        let forged = chunk_path(&format!("{}{rest}", &id[..16]));
        for (name, value) in [
            ("If-None-Match", "*"),
            ("Range", "bytes=999999-"),
            ("If-Match", "\"nope\""),
        ] {
            for method in ["GET", "HEAD"] {
                let response = client.request(method, &forged, &[(name, value)], b"").await;
                assert_eq!(response.status, 404, "{method} with {name}: {value}");
            }
        }
        let stored = chunk_path(&id);
        assert_eq!(
            client.get(&stored, &[("If-None-Match", "*")]).await.status,
            304
        );
        assert_eq!(
            client
                .get(&stored, &[("Range", "bytes=999999-")])
                .await
                .status,
            416
        );
    });
}
