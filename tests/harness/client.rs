//! A raw HTTP/1.1 client over `std::net::TcpStream`: requests written byte for byte (so
//! tests can send anything), responses parsed strictly (status line, headers, a body
//! framed by Content-Length, chunked encoding or the close).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use super::response::{Response, has_no_body, invalid, parse_header_line, parse_status_line};
use super::{READ_LIMIT, chunk_path, id_of};

/// One HTTP/1.1 connection.
pub struct Client {
    reader: BufReader<TcpStream>,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        Client::try_connect(addr).unwrap_or_else(|e| panic!("connecting to {addr}: {e}"))
    }

    pub fn try_connect(addr: SocketAddr) -> std::io::Result<Client> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
        stream.set_read_timeout(Some(READ_LIMIT))?;
        stream.set_write_timeout(Some(READ_LIMIT))?;
        stream.set_nodelay(true)?;
        Ok(Client {
            reader: BufReader::new(stream),
        })
    }

    /// Writes raw bytes.
    pub fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        let stream = self.reader.get_mut();
        stream.write_all(bytes)?;
        stream.flush()
    }

    /// Writes a request: `method path`, `Host`, `headers`, and a Content-Length for any
    /// body (and for every PUT).
    pub fn send_request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> std::io::Result<()> {
        self.send(&request_bytes(method, path, headers, body))
    }

    /// Sends a request and reads its response.
    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Response {
        self.try_request(method, path, headers, body)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    pub fn try_request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> std::io::Result<Response> {
        self.send_request(method, path, headers, body)?;
        self.read_response(method == "HEAD")
    }

    /// Reads an interim (1xx) response such as `100 Continue`; returns its status.
    pub fn read_interim(&mut self) -> std::io::Result<u16> {
        let response = self.read_one(false)?;
        if !(100..200).contains(&response.status) {
            return Err(invalid(format!("not an interim response: {response:?}")));
        }
        Ok(response.status)
    }

    /// Waits until the server has begun to answer: the first byte is ready to read.
    pub fn wait_for_answer(&mut self) -> std::io::Result<()> {
        self.reader.fill_buf().map(|_| ())
    }

    /// Reads one final response (skipping any 1xx); `head` says it answers a HEAD, which
    /// has no body whatever its headers say.
    pub fn read_response(&mut self, head: bool) -> std::io::Result<Response> {
        loop {
            let response = self.read_one(head)?;
            if !(100..200).contains(&response.status) {
                return Ok(response);
            }
        }
    }

    fn read_one(&mut self, head: bool) -> std::io::Result<Response> {
        let status = parse_status_line(&self.read_line()?)?;
        let mut headers = Vec::new();
        loop {
            let line = self.read_line()?;
            if line.is_empty() {
                break;
            }
            headers.push(parse_header_line(&line)?);
        }
        let mut response = Response {
            status,
            headers,
            body: Vec::new(),
        };
        if has_no_body(head, status) {
            return Ok(response);
        }
        let chunked = response
            .header("transfer-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
        if chunked {
            response.body = self.read_chunked()?;
        } else if let Some(len) = response.header("content-length") {
            let len: usize = len.parse().map_err(|_| invalid("bad Content-Length"))?;
            response.body = vec![0; len];
            self.reader.read_exact(&mut response.body)?;
        } else {
            self.reader.read_to_end(&mut response.body)?;
        }
        Ok(response)
    }

    fn read_chunked(&mut self) -> std::io::Result<Vec<u8>> {
        let mut body = Vec::new();
        loop {
            let line = self.read_line()?;
            let size_text = line.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size_text, 16)
                .map_err(|_| invalid(format!("bad chunk size {line:?}")))?;
            if size == 0 {
                while !self.read_line()?.is_empty() {} // trailers
                return Ok(body);
            }
            let start = body.len();
            body.resize(start + size, 0);
            self.reader.read_exact(&mut body[start..])?;
            if !self.read_line()?.is_empty() {
                return Err(invalid("no CRLF after a chunk"));
            }
        }
    }

    fn read_line(&mut self) -> std::io::Result<String> {
        let mut line = Vec::new();
        self.reader.read_until(b'\n', &mut line)?;
        if line.is_empty() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the connection closed",
            ));
        }
        if line.ends_with(b"\r\n") {
            line.truncate(line.len() - 2);
        } else {
            return Err(invalid(format!(
                "a line without CRLF: {:?}",
                String::from_utf8_lossy(&line)
            )));
        }
        String::from_utf8(line).map_err(|_| invalid("a line that is not UTF-8"))
    }

    /// Waits up to `limit` for the server to close the connection: true if it closed
    /// (EOF or reset) with no further bytes, false if it stayed open. Panics if bytes
    /// arrive.
    pub fn closed_within(&mut self, limit: Duration) -> bool {
        let stream = self.reader.get_ref();
        stream.set_read_timeout(Some(limit)).expect("timeout");
        let mut byte = [0u8; 1];
        let result = self.reader.read(&mut byte);
        self.reader
            .get_ref()
            .set_read_timeout(Some(READ_LIMIT))
            .expect("timeout");
        match result {
            Ok(0) => true,
            Ok(_) => panic!("unexpected bytes from the server: {byte:?}"),
            Err(e) if is_timeout(&e) => false,
            Err(_) => true, // reset
        }
    }
}

fn is_timeout(error: &std::io::Error) -> bool {
    matches!(
        error.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

/// The bytes of a request.
pub fn request_bytes(method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: chunkd.test\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    let has_length = headers.iter().any(|(n, _)| {
        n.eq_ignore_ascii_case("content-length") || n.eq_ignore_ascii_case("transfer-encoding")
    });
    if !has_length && (!body.is_empty() || method == "PUT") {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// One request on a new connection.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    try_request(addr, method, path, headers, body)
        .unwrap_or_else(|e| panic!("{method} {path} on {addr}: {e}"))
}

pub fn try_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<Response> {
    Client::try_connect(addr)?.try_request(method, path, headers, body)
}

pub fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Response {
    request(addr, "GET", path, headers, b"")
}

/// PUTs chunk `bytes` under its own id; returns the response.
pub fn put_chunk(addr: SocketAddr, bytes: &[u8], headers: &[(&str, &str)]) -> Response {
    request(addr, "PUT", &chunk_path(&id_of(bytes)), headers, bytes)
}

/// PUTs chunk `bytes` and asserts it was created; returns its id.
pub fn put_new(addr: SocketAddr, bytes: &[u8], headers: &[(&str, &str)]) -> String {
    let response = put_chunk(addr, bytes, headers);
    assert_eq!(response.status, 201, "PUT: {:?}", response.text());
    id_of(bytes)
}
