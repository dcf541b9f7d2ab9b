//! A test HTTP origin for read-through fills (issue 14): an HTTP/1.1 server on
//! `127.0.0.1:0` (std::net, a thread per connection, keep-alive) serving
//! `GET /PREFIX/{id}` from a table the test controls, one [`Behaviour`] per id — serve,
//! 404, delay, stall mid-body, fail with 503 a few times — and counting every request per
//! path, so a test can assert how many reached the origin.
//!
//! Bounded: dropping an [`HttpOrigin`] closes its port, shuts down every open connection,
//! wakes any delayed answer and joins every thread, so "the origin is down" is
//! `drop(origin)`.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use super::id_of;

/// How the origin answers a `GET /PREFIX/{id}`.
#[derive(Clone, Debug)]
pub enum Behaviour {
    /// `200` with these bytes and their Content-Length (bytes that are not the id's are
    /// the "wrong bytes" case).
    Serve(Vec<u8>),
    /// `404` (also the answer for an id the table does not hold).
    NotFound,
    /// This status (e.g. `403`, `500`) with a short text body, every time.
    Status(u16),
    /// Waits this long before the status line, then serves the bytes.
    DelayHeaders(Duration, Vec<u8>),
    /// Sends the headers (with the full Content-Length) and the first half of the bytes,
    /// then waits this long before the rest.
    StallBody(Duration, Vec<u8>),
    /// Answers `503` to the first `n` requests, then serves the bytes.
    FailThenServe(u32, Vec<u8>),
}

/// Connections served at once; one more is closed unanswered (the node under test keeps a
/// handful, so reaching this is a bug the test should see as errors).
const MAX_CONNECTIONS: usize = 256;
/// Bytes of request head read before the connection is dropped as hostile.
const MAX_HEAD_BYTES: usize = 16 * 1024;
/// How long a connection may sit idle between requests.
const IDLE_LIMIT: Duration = Duration::from_secs(30);

/// A running test origin; stopped (port closed, connections shut) when dropped.
pub struct HttpOrigin {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

struct Shared {
    prefix: String,
    routes: Mutex<HashMap<String, Route>>,
    /// Requests per path, and in total, counted as each request head is read.
    counts: Mutex<HashMap<String, u64>>,
    total: AtomicU64,
    /// Set when the origin is dropped; `wake` interrupts delays.
    stopping: Mutex<bool>,
    wake: Condvar,
    /// Open connections (a clone of each socket, to shut down at stop) and their threads.
    connections: Mutex<HashMap<u64, TcpStream>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

struct Route {
    behaviour: Behaviour,
    /// Requests of this route answered so far (for [`Behaviour::FailThenServe`]).
    answered: u32,
}

impl HttpOrigin {
    /// Starts an origin serving under `/PREFIX/` (`prefix` without slashes).
    pub fn start(prefix: &str) -> HttpOrigin {
        assert!(
            !prefix.contains('/'),
            "a prefix without slashes: {prefix:?}"
        );
        let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
        let addr = listener.local_addr().expect("the bound address");
        let shared = Arc::new(Shared {
            prefix: prefix.to_owned(),
            routes: Mutex::new(HashMap::new()),
            counts: Mutex::new(HashMap::new()),
            total: AtomicU64::new(0),
            stopping: Mutex::new(false),
            wake: Condvar::new(),
            connections: Mutex::new(HashMap::new()),
            threads: Mutex::new(Vec::new()),
        });
        let accepting = Arc::clone(&shared);
        let acceptor = std::thread::spawn(move || accept_loop(listener, accepting));
        HttpOrigin {
            addr,
            shared,
            acceptor: Some(acceptor),
        }
    }

    /// The `--origin` URL: `http://127.0.0.1:PORT/PREFIX/`.
    pub fn url(&self) -> String {
        format!("http://{}/{}/", self.addr, self.shared.prefix)
    }

    /// The URL the node fetches chunk `id` from.
    pub fn url_of(&self, id: &str) -> String {
        format!("{}{id}", self.url())
    }

    /// Sets how `GET /PREFIX/{id}` is answered (resetting a [`Behaviour::FailThenServe`]
    /// count; request counts are kept).
    pub fn set(&self, id: &str, behaviour: Behaviour) {
        let route = Route {
            behaviour,
            answered: 0,
        };
        lock(&self.shared.routes).insert(id.to_owned(), route);
    }

    /// Serves `bytes` under their own id; returns the id.
    pub fn serve(&self, bytes: &[u8]) -> String {
        let id = id_of(bytes);
        self.set(&id, Behaviour::Serve(bytes.to_vec()));
        id
    }

    /// Requests that reached `GET|HEAD /PREFIX/{id}` so far.
    pub fn requests(&self, id: &str) -> u64 {
        let path = format!("/{}/{id}", self.shared.prefix);
        lock(&self.shared.counts).get(&path).copied().unwrap_or(0)
    }

    /// Requests of any path so far.
    pub fn total_requests(&self) -> u64 {
        self.shared.total.load(Ordering::SeqCst)
    }
}

impl Drop for HttpOrigin {
    fn drop(&mut self) {
        *lock(&self.shared.stopping) = true;
        self.shared.wake.notify_all();
        // Wake the blocking accept; it sees `stopping`, drops the listener and returns.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        for stream in lock(&self.shared.connections).values() {
            let _ = stream.shutdown(Shutdown::Both);
        }
        let threads = std::mem::take(&mut *lock(&self.shared.threads));
        for thread in threads {
            let _ = thread.join();
        }
    }
}

/// A std mutex's guard, ignoring poisoning: a panicking connection thread must not hide
/// the counts from the test, which reports its own failure.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut next_connection = 0u64;
    for stream in listener.incoming() {
        if *lock(&shared.stopping) {
            return;
        }
        let Ok(stream) = stream else { continue };
        let Ok(tracked) = stream.try_clone() else {
            continue;
        };
        {
            let mut connections = lock(&shared.connections);
            if connections.len() >= MAX_CONNECTIONS {
                continue; // dropped: closed unanswered
            }
            connections.insert(next_connection, tracked);
        }
        let serving = Arc::clone(&shared);
        let key = next_connection;
        next_connection += 1;
        let thread = std::thread::spawn(move || {
            let _ = serve_connection(stream, &serving);
            lock(&serving.connections).remove(&key);
        });
        let mut threads = lock(&shared.threads);
        threads.retain(|t| !t.is_finished());
        threads.push(thread);
    }
}

/// Answers requests on one connection until the peer closes, a request asks to close,
/// the origin stops, or a delay is cut short by the stop.
fn serve_connection(stream: TcpStream, shared: &Shared) -> std::io::Result<()> {
    stream.set_read_timeout(Some(IDLE_LIMIT))?;
    stream.set_nodelay(true)?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    loop {
        let Some(head) = read_head(&mut reader)? else {
            return Ok(());
        };
        *lock(&shared.counts).entry(head.path.clone()).or_insert(0) += 1;
        shared.total.fetch_add(1, Ordering::SeqCst);
        // Any request body is read and ignored (the node sends none).
        std::io::copy(
            &mut (&mut reader).take(head.content_length),
            &mut std::io::sink(),
        )?;
        let keep_going = answer(&mut writer, shared, &head)?;
        if !keep_going || head.close {
            return Ok(());
        }
    }
}

struct Head {
    method: String,
    path: String,
    content_length: u64,
    close: bool,
}

/// Reads a request head; `None` at a clean end of the connection.
fn read_head(reader: &mut BufReader<TcpStream>) -> std::io::Result<Option<Head>> {
    let mut read = 0;
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    let mut words = line.split_whitespace();
    let (method, target) = match (words.next(), words.next()) {
        (Some(method), Some(target)) => (method.to_owned(), target.to_owned()),
        _ => return Err(bad(format!("bad request line {line:?}"))),
    };
    let path = target.split('?').next().unwrap_or("").to_owned();
    let mut head = Head {
        method,
        path,
        content_length: 0,
        close: false,
    };
    loop {
        line.clear();
        let n = reader.read_line(&mut line)?;
        read += n;
        if n == 0 || read > MAX_HEAD_BYTES {
            return Err(bad("a request head cut short or too long"));
        }
        let header = line.trim_end();
        if header.is_empty() {
            return Ok(Some(head));
        }
        let Some((name, value)) = header.split_once(':') else {
            return Err(bad(format!("bad header {header:?}")));
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            head.content_length = value.parse().map_err(|_| bad("bad Content-Length"))?;
        } else if name.eq_ignore_ascii_case("connection") {
            head.close = value.eq_ignore_ascii_case("close");
        }
    }
}

fn bad(message: impl Into<String>) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, message.into())
}

/// What one request gets, [`Behaviour::FailThenServe`] resolved for this request.
enum Answer {
    NotFound,
    Status(u16),
    Unavailable,
    Serve(Vec<u8>),
    Delay(Duration, Vec<u8>),
    Stall(Duration, Vec<u8>),
}

/// The answer for `path` now (counting it towards a [`Behaviour::FailThenServe`]).
fn route(shared: &Shared, path: &str) -> Answer {
    let prefix = format!("/{}/", shared.prefix);
    let Some(id) = path.strip_prefix(&prefix) else {
        return Answer::NotFound;
    };
    let mut routes = lock(&shared.routes);
    let Some(route) = routes.get_mut(id) else {
        return Answer::NotFound;
    };
    route.answered += 1;
    match &route.behaviour {
        Behaviour::Serve(bytes) => Answer::Serve(bytes.clone()),
        Behaviour::NotFound => Answer::NotFound,
        Behaviour::Status(status) => Answer::Status(*status),
        Behaviour::DelayHeaders(delay, bytes) => Answer::Delay(*delay, bytes.clone()),
        Behaviour::StallBody(delay, bytes) => Answer::Stall(*delay, bytes.clone()),
        Behaviour::FailThenServe(failures, _) if route.answered <= *failures => Answer::Unavailable,
        Behaviour::FailThenServe(_, bytes) => Answer::Serve(bytes.clone()),
    }
}

/// Writes the answer to `head`; false when the connection must close (a delay was cut
/// short by the stop).
fn answer(writer: &mut TcpStream, shared: &Shared, head: &Head) -> std::io::Result<bool> {
    let with_body = head.method != "HEAD";
    match route(shared, &head.path) {
        Answer::NotFound => write_plain(writer, "404 Not Found", b"no such chunk\n", with_body)?,
        Answer::Status(status) => {
            let line = format!("{status} Test Status");
            write_plain(writer, &line, b"as the test asked\n", with_body)?
        }
        Answer::Unavailable => {
            write_plain(writer, "503 Service Unavailable", b"try later\n", with_body)?
        }
        Answer::Serve(bytes) => write_chunk(writer, &bytes, with_body)?,
        Answer::Delay(delay, bytes) => {
            if !pause(shared, delay) {
                return Ok(false);
            }
            write_chunk(writer, &bytes, with_body)?;
        }
        Answer::Stall(delay, bytes) => {
            writer.write_all(&chunk_head(bytes.len()))?;
            if with_body {
                let half = bytes.len() / 2;
                writer.write_all(&bytes[..half])?;
                writer.flush()?;
                if !pause(shared, delay) {
                    return Ok(false);
                }
                writer.write_all(&bytes[half..])?;
            }
        }
    }
    writer.flush()?;
    Ok(true)
}

/// Waits `delay`, or less if the origin stops; true if it still runs.
fn pause(shared: &Shared, delay: Duration) -> bool {
    let stopping = lock(&shared.stopping);
    let (stopping, _) = shared
        .wake
        .wait_timeout_while(stopping, delay, |stopping| !*stopping)
        .unwrap_or_else(|e| e.into_inner());
    !*stopping
}

/// The status line and headers of a 200 carrying `len` bytes.
fn chunk_head(len: usize) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n\
         Content-Length: {len}\r\nLast-Modified: Thu, 01 Jan 2026 00:00:00 GMT\r\n\r\n"
    )
    .into_bytes()
}

fn write_chunk(writer: &mut TcpStream, bytes: &[u8], with_body: bool) -> std::io::Result<()> {
    writer.write_all(&chunk_head(bytes.len()))?;
    if with_body {
        writer.write_all(bytes)?;
    }
    Ok(())
}

fn write_plain(
    writer: &mut TcpStream,
    status: &str,
    body: &[u8],
    with_body: bool,
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    writer.write_all(head.as_bytes())?;
    if with_body {
        writer.write_all(body)?;
    }
    Ok(())
}
