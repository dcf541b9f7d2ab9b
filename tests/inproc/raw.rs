//! A raw HTTP/1.1 client over an in-memory duplex: requests written byte for byte (so
//! tests can send anything, slowly or cut off), responses parsed strictly (status line,
//! headers, a body framed by Content-Length, chunked encoding or the close).

use std::io;
use std::time::Duration;

use chunkd::http::CoreServer;
use chunkd::store::device::sim::SimEngine;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, DuplexStream};

use super::client::DUPLEX_BYTES;
use super::response::{Response, has_no_body, invalid, parse_header_line, parse_status_line};

/// One connection, driven byte by byte.
pub struct Raw {
    reader: BufReader<DuplexStream>,
}

impl Raw {
    /// Opens a connection to `server`; panics if the node refuses it.
    pub fn connect(server: &CoreServer<SimEngine>) -> Raw {
        Raw::try_connect(server).expect("the node admits the connection")
    }

    /// Opens a connection; `None` when the node refused it (over its connection limit).
    pub fn try_connect(server: &CoreServer<SimEngine>) -> Option<Raw> {
        let (ours, theirs) = tokio::io::duplex(DUPLEX_BYTES);
        server.serve(theirs).then(|| Raw {
            reader: BufReader::new(ours),
        })
    }

    /// Opens a connection from client address `peer`; `None` when the node refused it.
    pub fn try_connect_from(server: &CoreServer<SimEngine>, peer: std::net::IpAddr) -> Option<Raw> {
        let (ours, theirs) = tokio::io::duplex(DUPLEX_BYTES);
        server.serve_from(theirs, Some(peer)).then(|| Raw {
            reader: BufReader::new(ours),
        })
    }

    /// A connection the node did not admit: its stream, already closed by the node.
    pub fn refused(server: &CoreServer<SimEngine>) -> Raw {
        let (ours, theirs) = tokio::io::duplex(DUPLEX_BYTES);
        assert!(!server.serve(theirs), "the node refuses the connection");
        Raw {
            reader: BufReader::new(ours),
        }
    }

    /// Writes raw bytes.
    pub async fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        let stream = self.reader.get_mut();
        stream.write_all(bytes).await?;
        stream.flush().await
    }

    /// Writes a request (see [`request_bytes`]).
    pub async fn send_request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> io::Result<()> {
        self.send(&request_bytes(method, path, headers, body)).await
    }

    /// Sends a request and reads its response.
    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Response {
        self.send_request(method, path, headers, body)
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        self.read_response(method == "HEAD")
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    /// Reads an interim (1xx) response such as `100 Continue`; returns its status.
    pub async fn read_interim(&mut self) -> io::Result<u16> {
        let response = self.read_one(false).await?;
        if !(100..200).contains(&response.status) {
            return Err(invalid(format!("not an interim response: {response:?}")));
        }
        Ok(response.status)
    }

    /// Reads one final response (skipping any 1xx); `head` says it answers a HEAD.
    pub async fn read_response(&mut self, head: bool) -> io::Result<Response> {
        loop {
            let response = self.read_one(head).await?;
            if !(100..200).contains(&response.status) {
                return Ok(response);
            }
        }
    }

    async fn read_one(&mut self, head: bool) -> io::Result<Response> {
        let status = parse_status_line(&self.read_line().await?)?;
        let mut headers = Vec::new();
        loop {
            let line = self.read_line().await?;
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
            response.body = self.read_chunked().await?;
        } else if let Some(len) = response.header("content-length") {
            let len: usize = len.parse().map_err(|_| invalid("bad Content-Length"))?;
            response.body = vec![0; len];
            self.reader.read_exact(&mut response.body).await?;
        } else {
            self.reader.read_to_end(&mut response.body).await?;
        }
        Ok(response)
    }

    async fn read_chunked(&mut self) -> io::Result<Vec<u8>> {
        let mut body = Vec::new();
        loop {
            let line = self.read_line().await?;
            let size_text = line.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size_text, 16)
                .map_err(|_| invalid(format!("bad chunk size {line:?}")))?;
            if size == 0 {
                while !self.read_line().await?.is_empty() {} // trailers
                return Ok(body);
            }
            let start = body.len();
            body.resize(start + size, 0);
            self.reader.read_exact(&mut body[start..]).await?;
            if !self.read_line().await?.is_empty() {
                return Err(invalid("no CRLF after a chunk"));
            }
        }
    }

    async fn read_line(&mut self) -> io::Result<String> {
        let mut line = Vec::new();
        self.reader.read_until(b'\n', &mut line).await?;
        if line.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the connection closed",
            ));
        }
        if !line.ends_with(b"\r\n") {
            return Err(invalid(format!(
                "a line without CRLF: {:?}",
                String::from_utf8_lossy(&line)
            )));
        }
        line.truncate(line.len() - 2);
        String::from_utf8(line).map_err(|_| invalid("a line that is not UTF-8"))
    }

    /// Waits up to `limit` for the node to close the connection: true if it closed with no
    /// further bytes, false if it stayed open. Panics if bytes arrive.
    pub async fn closed_within(&mut self, limit: Duration) -> bool {
        let mut byte = [0u8; 1];
        match tokio::time::timeout(limit, self.reader.read(&mut byte)).await {
            Err(_) => false,
            Ok(Ok(0)) | Ok(Err(_)) => true,
            Ok(Ok(_)) => panic!("unexpected bytes from the node: {byte:?}"),
        }
    }
}

/// The bytes of a request: `method path`, `Host`, `headers`, and a Content-Length for any
/// body (and for every PUT) unless `headers` frame the body themselves.
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
