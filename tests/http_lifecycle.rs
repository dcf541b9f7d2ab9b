//! The life of a `chunkd serve` process: graceful shutdown on SIGTERM (in-flight requests
//! finish, new connections are refused, exit 0) and the second signal that exits at once;
//! where its configuration comes from (file < environment < flag; unknown keys refused);
//! the README's "Try it" block, run as written against a live server; and the allocator
//! options the binary starts with.

mod harness;

use std::io::ErrorKind;
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use harness::{
    Client, DataDir, Launch, Server, binary, chunk_bytes, chunk_path, get, id_of, put_chunk,
    put_new, serve_expecting_failure, tool_or_skip, wait_for_metric,
};

/// Waits until connecting to `addr` is refused (the listeners are closed); fails after 10 s.
fn wait_until_refused(addr: SocketAddr) {
    let started = Instant::now();
    loop {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => return,
            _ => {}
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "new connections were still accepted 10 s after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Starts a PUT of `bytes` and sends only the first half of its body: a request in flight.
/// It asks for `100 Continue`, which the server sends when its handler starts reading the
/// body, so the request is known to be in progress when this returns.
fn half_a_put(addr: SocketAddr, bytes: &[u8]) -> Client {
    let mut client = Client::connect(addr);
    let head = format!(
        "PUT {} HTTP/1.1\r\nHost: a\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
        chunk_path(&id_of(bytes)),
        bytes.len()
    );
    client.send(head.as_bytes()).unwrap();
    assert_eq!(client.read_interim().unwrap(), 100);
    client.send(&bytes[..bytes.len() / 2]).unwrap();
    client
}

#[test]
fn sigterm_lets_in_flight_requests_finish_refuses_new_ones_and_exits_0() {
    let mut server = Server::start(Launch::default());
    let addr = server.addr;
    let stored = chunk_bytes(40, 1 << 20);
    put_new(addr, &stored, &[]);
    let uploading = chunk_bytes(41, 300_000);

    let mut upload = half_a_put(addr, &uploading);
    // A GET whose 1 MiB answer has begun to arrive, and the client has not read.
    let mut download = Client::connect(addr);
    download
        .send_request("GET", &chunk_path(&id_of(&stored)), &[], b"")
        .unwrap();
    download.wait_for_answer().unwrap();
    // An idle keep-alive connection.
    let mut idle = Client::connect(addr);
    assert_eq!(idle.request("GET", "/healthz", &[], b"").status, 200);

    server.signal(libc::SIGTERM);
    wait_until_refused(addr);
    assert!(
        idle.closed_within(Duration::from_secs(5)),
        "an idle keep-alive connection is closed at shutdown"
    );
    assert!(
        server.wait_exit(Duration::from_millis(300)).is_none(),
        "the server waits for its in-flight requests"
    );

    // The in-flight requests complete, each told that the connection ends with it.
    upload.send(&uploading[uploading.len() / 2..]).unwrap();
    let created = upload.read_response(false).unwrap();
    assert_eq!(created.status, 201, "{}", created.text());
    assert_eq!(created.header("connection"), Some("close"));
    let downloaded = download.read_response(false).unwrap();
    assert_eq!(downloaded.status, 200);
    assert!(
        downloaded.body == stored,
        "the in-flight GET got the whole chunk"
    );

    let status = server
        .wait_exit(Duration::from_secs(10))
        .expect("the server exits once its requests are done");
    assert!(status.success(), "exit status {status}:\n{}", server.log());
}

#[test]
fn the_upload_finished_during_shutdown_is_durable() {
    let server = Server::start(Launch::default());
    let addr = server.addr;
    let uploading = chunk_bytes(42, 300_000);
    let mut upload = half_a_put(addr, &uploading);
    server.signal(libc::SIGTERM);
    wait_until_refused(addr);
    upload.send(&uploading[uploading.len() / 2..]).unwrap();
    assert_eq!(upload.read_response(false).unwrap().status, 201);
    let data = stop_after_exit(server);
    let server = Server::start_in(data, Launch::default());
    let read = get(server.addr, &chunk_path(&id_of(&uploading)), &[]);
    assert_eq!(read.status, 200);
    assert!(read.body == uploading);
}

/// Waits for a server already told to stop to exit 0; returns its data directory.
fn stop_after_exit(mut server: Server) -> DataDir {
    let status = server
        .wait_exit(Duration::from_secs(10))
        .expect("the server exits once its requests are done");
    assert!(status.success(), "exit status {status}:\n{}", server.log());
    server.take_data()
}

#[test]
fn a_second_signal_during_the_grace_period_exits_at_once() {
    for second in [libc::SIGTERM, libc::SIGINT] {
        let mut server = Server::start(Launch::args(&["--shutdown-timeout", "60s"]));
        let mut stalled = half_a_put(server.addr, &chunk_bytes(43, 300_000));
        server.signal(libc::SIGTERM);
        wait_until_refused(server.addr);
        assert!(
            server.wait_exit(Duration::from_secs(1)).is_none(),
            "the stalled upload holds the first shutdown"
        );
        server.signal(second);
        let status = server
            .wait_exit(Duration::from_secs(5))
            .expect("the second signal ends the process at once");
        assert!(
            !status.success(),
            "an interrupted shutdown is not a clean exit"
        );
        assert!(stalled.closed_within(Duration::from_secs(5)));
    }
}

/// A config file in `dir` with `text`; returns its path.
fn config_file(dir: &tempfile::TempDir, text: &str) -> String {
    let path = dir.path().join("chunkd.toml");
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

/// Checks the node's PUT limit is exactly `max` bytes: `max` is stored, `max + 1` is 413.
fn assert_put_limit(server: &Server, max: usize, seed: u64) {
    let fits = chunk_bytes(seed, max);
    let status = put_chunk(server.addr, &fits, &[]).status;
    assert_eq!(status, 201, "a chunk of {max} bytes");
    put_chunk(server.addr, &chunk_bytes(seed + 1, max + 1), &[]).assert_error(413);
}

#[test]
fn configuration_comes_from_the_file_then_the_environment_then_flags() {
    let dir = tempfile::tempdir().unwrap();
    let file = config_file(
        &dir,
        "# chunkd settings\nmax-chunk-bytes = \"100K\"\nmax_headers = 50\n",
    );
    let with_file = Launch::args(&["--config", &file]);

    let server = Server::start(with_file.clone());
    assert_put_limit(&server, 100 << 10, 50);
    // `max_headers` (a key spelt with `_`) took effect too: 50 fields pass, 51 do not.
    for (fields, status) in [(50, 200), (51, 431)] {
        let mut client = Client::connect(server.addr);
        let mut raw = String::from("GET /healthz HTTP/1.1\r\nHost: a\r\n");
        for n in 1..fields {
            raw.push_str(&format!("X-Field-{n}: v\r\n"));
        }
        raw.push_str("\r\n");
        client.send(raw.as_bytes()).unwrap();
        let response = client.read_response(false).unwrap();
        assert_eq!(response.status, status, "{fields} header fields");
    }
    drop(server);

    let with_env = with_file.clone().env("CHUNKD_MAX_CHUNK_BYTES", "200K");
    let server = Server::start(with_env.clone());
    assert_put_limit(&server, 200 << 10, 52);
    drop(server);

    let mut with_flag = with_env;
    with_flag
        .args
        .extend(["--max-chunk-bytes".into(), "300K".into()]);
    let server = Server::start(with_flag);
    assert_put_limit(&server, 300 << 10, 54);
    drop(server);

    // The file may also be named by the environment.
    let server = Server::start(Launch::default().env("CHUNKD_CONFIG", &file));
    assert_put_limit(&server, 100 << 10, 56);
}

#[test]
fn an_unknown_or_ill_typed_key_in_the_config_file_stops_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let data = DataDir::new("64M");
    for (text, expected) in [
        (
            "max-chunk-bytes = \"100K\"\nmax-chunk-byte = 5\n",
            "unknown setting \"max-chunk-byte\"",
        ),
        ("max-connections = \"lots\"\n", "max-connections"),
        ("not toml at all = = =\n", "chunkd.toml"),
    ] {
        let file = config_file(&dir, text);
        let output = serve_expecting_failure(&data, &Launch::args(&["--config", &file]));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{text:?} was accepted");
        assert!(stderr.contains(expected), "{text:?}: stderr was {stderr}");
        assert!(
            !String::from_utf8_lossy(&output.stdout).contains("listening"),
            "{text:?}: the server started listening"
        );
    }
}

/// The fenced `sh` block between the README's try-it markers.
fn try_it_block() -> String {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let (_, rest) = readme
        .split_once("<!-- try-it:begin -->")
        .expect("the README has a try-it:begin marker");
    let (section, _) = rest
        .split_once("<!-- try-it:end -->")
        .expect("the README has a try-it:end marker");
    let (_, fenced) = section
        .split_once("```sh\n")
        .expect("a ```sh block between the markers");
    let (block, _) = fenced.split_once("```").expect("the block is closed");
    block.to_owned()
}

#[test]
fn the_readme_try_it_block_runs_against_a_live_server() {
    if !tool_or_skip("curl", "the README's try-it block") {
        return;
    }
    let block = try_it_block();
    assert!(
        block.contains("${CHUNKD:-http://127.0.0.1:7070}"),
        "{block}"
    );
    assert!(block.contains("${CHUNKD_BIN:-chunkd}"), "{block}");
    let server = Server::start(Launch::default());
    let work = tempfile::tempdir().unwrap();
    let mut child = Command::new("bash")
        .args(["-euo", "pipefail", "-c", &block])
        .current_dir(work.path())
        .env("CHUNKD", format!("http://{}", server.addr))
        .env("CHUNKD_BIN", binary())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("bash runs");
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the try-it block failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    // It did what it says: stored, read whole and in part, HEAD, deleted, then a 404.
    for (method, status) in [
        ("PUT", "201"),
        ("GET", "200"),
        ("GET", "206"),
        ("HEAD", "200"),
        ("DELETE", "204"),
        ("GET", "404"),
    ] {
        wait_for_metric(
            server.addr,
            "chunkd_http_requests_total",
            &[("route", "chunk"), ("method", method), ("status", status)],
            |v| v >= 1.0,
        );
    }
    assert!(stdout.trim_end().ends_with("404"), "{stdout}");
    assert!(stdout.contains("\"created\":true"), "{stdout}");
}

/// The allocator's option `name` as the binary reports it at exit, under
/// `_RJEM_MALLOC_CONF`.
fn jemalloc_option(run_time_conf: &str, name: &str) -> String {
    let output = Command::new(binary())
        .args(["id", "Cargo.toml"])
        .env("_RJEM_MALLOC_CONF", run_time_conf)
        .output()
        .expect("the binary runs");
    assert!(output.status.success());
    let stats = String::from_utf8_lossy(&output.stderr).into_owned()
        + &String::from_utf8_lossy(&output.stdout);
    let line = stats
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("opt.{name}:")))
        .unwrap_or_else(|| panic!("no opt.{name} in jemalloc's statistics:\n{stats}"));
    line.trim().to_string()
}

#[test]
fn io_buffers_ask_for_huge_pages_unless_the_operator_says_otherwise() {
    assert_eq!(
        jemalloc_option("stats_print:true", "thp"),
        r#"opt.thp: "always""#
    );
    assert_eq!(
        jemalloc_option("thp:default,stats_print:true", "thp"),
        r#"opt.thp: "default""#
    );
}

/// Freed heap pages go back to the kernel even when the node is idle after a burst.
#[test]
fn the_allocator_returns_freed_memory_from_a_background_thread() {
    assert_eq!(
        jemalloc_option("stats_print:true", "background_thread"),
        "opt.background_thread: true (background_thread: true)"
    );
}

/// Issue 11, finding 12: a second node on an address the first serves refuses to start
/// (SO_REUSEPORT would have let it bind and take half the connections), naming the address;
/// the first keeps serving.
#[test]
fn a_second_node_on_a_served_address_refuses_to_start() {
    let first = Server::start(Launch::default());
    let output = serve_expecting_failure(
        &DataDir::new("64M"),
        &Launch::default().listen(&first.addr.to_string()),
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("{} is already in use", first.addr)),
        "{stderr}"
    );
    assert!(!String::from_utf8_lossy(&output.stdout).contains("listening"));
    let id = put_new(first.addr, b"still the only node here", &[]);
    assert_eq!(get(first.addr, &chunk_path(&id), &[]).status, 200);
}

/// Issue 11, finding 13: a bad device size is an error, not part of a file name; a
/// start-up error of the store is printed once, and nothing on stdout (`listening on`
/// comes only once start-up can no longer fail).
#[test]
fn start_up_errors_are_printed_once_and_never_after_listening() {
    let data = DataDir::new("64M");
    let bad_size = data.path().join("x:zz");
    let output = serve_expecting_failure(
        &data,
        &Launch::args(&["--device", bad_size.to_str().unwrap()]),
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("x:zz") && stderr.contains("size"),
        "{stderr}"
    );
    assert!(!bad_size.exists());

    let tiny = DataDir::new("64K");
    let output = serve_expecting_failure(&tiny, &Launch::default());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        String::from_utf8_lossy(&output.stdout).is_empty(),
        "{stderr}"
    );
    assert_eq!(stderr.matches("too small").count(), 1, "{stderr}");
}
