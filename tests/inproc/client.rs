//! A well-behaved client: hyper's HTTP/1.1 or HTTP/2 handshake over one end of an
//! in-memory duplex whose other end the node's `CoreServer` serves.

use bytes::Bytes;
use chunkd::http::CoreServer;
use chunkd::store::device::sim::SimEngine;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::TokioIo;

use super::response::Response;

/// Bytes a duplex buffers each way before a writer waits for the reader.
pub const DUPLEX_BYTES: usize = 256 << 10;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    Http1,
    Http2,
}

/// One connection to the node.
pub struct Client {
    sender: Sender,
}

enum Sender {
    Http1(http1::SendRequest<Full<Bytes>>),
    Http2(http2::SendRequest<Full<Bytes>>),
}

/// Runs the client side of HTTP/2 connections on this thread.
#[derive(Clone, Copy)]
struct LocalExec;

impl<F: std::future::Future + 'static> hyper::rt::Executor<F> for LocalExec {
    fn execute(&self, future: F) {
        tokio::task::spawn_local(future);
    }
}

impl Client {
    /// Opens a connection to `server` speaking `version`; panics if the node refuses it.
    pub async fn connect(server: &CoreServer<SimEngine>, version: Version) -> Client {
        let (ours, theirs) = tokio::io::duplex(DUPLEX_BYTES);
        assert!(server.serve(theirs), "the node admits the connection");
        let io = TokioIo::new(ours);
        let sender = match version {
            Version::Http1 => {
                let (sender, connection) = http1::handshake(io).await.expect("handshake");
                tokio::task::spawn_local(connection);
                Sender::Http1(sender)
            }
            Version::Http2 => {
                let (sender, connection) = http2::Builder::new(LocalExec)
                    .handshake(io)
                    .await
                    .expect("handshake");
                tokio::task::spawn_local(connection);
                Sender::Http2(sender)
            }
        };
        Client { sender }
    }

    /// Another handle on the same HTTP/2 connection, for concurrent streams.
    pub fn another_stream(&self) -> Client {
        match &self.sender {
            Sender::Http2(sender) => Client {
                sender: Sender::Http2(sender.clone()),
            },
            Sender::Http1(_) => panic!("an HTTP/1.1 connection carries one request at a time"),
        }
    }

    /// Sends a request and reads its whole response; panics on a transport failure.
    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Response {
        self.try_request(method, path, headers, body)
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    pub async fn try_request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Response, hyper::Error> {
        let uri = match self.sender {
            Sender::Http1(_) => path.to_owned(),
            Sender::Http2(_) => format!("http://chunkd.test{path}"),
        };
        let mut request = http::Request::builder().method(method).uri(uri);
        if matches!(self.sender, Sender::Http1(_)) {
            request = request.header("host", "chunkd.test");
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request
            .body(Full::new(Bytes::copy_from_slice(body)))
            .expect("a valid request");
        let response = match &mut self.sender {
            Sender::Http1(sender) => {
                sender.ready().await?;
                sender.send_request(request).await?
            }
            Sender::Http2(sender) => {
                sender.ready().await?;
                sender.send_request(request).await?
            }
        };
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(n, v)| {
                let value = String::from_utf8_lossy(v.as_bytes()).into_owned();
                (n.as_str().to_owned(), value)
            })
            .collect();
        let body = response.into_body().collect().await?.to_bytes().to_vec();
        Ok(Response {
            status,
            headers,
            body,
        })
    }

    /// One request on a new connection (for answers after which the node closes it, such
    /// as an HTTP/1.1 upload refused before its body was read). Over HTTP/1.1 the request
    /// is written whole before the answer is read, by the raw client: hyper's client
    /// cancels a request whose connection closes while it is still sending.
    pub async fn once(
        server: &CoreServer<SimEngine>,
        version: Version,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Response {
        if version == Version::Http1 {
            let mut raw = super::raw::Raw::connect(server);
            let _ = raw.send_request(method, path, headers, body).await;
            return raw
                .read_response(method == "HEAD")
                .await
                .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        }
        let mut client = Client::connect(server, version).await;
        client.request(method, path, headers, body).await
    }

    /// Whether the node has closed this connection.
    pub fn is_closed(&self) -> bool {
        match &self.sender {
            Sender::Http1(sender) => sender.is_closed(),
            Sender::Http2(sender) => sender.is_closed(),
        }
    }

    pub async fn get(&mut self, path: &str, headers: &[(&str, &str)]) -> Response {
        self.request("GET", path, headers, b"").await
    }

    /// PUTs chunk `bytes` under its own id.
    pub async fn put(&mut self, bytes: &[u8], headers: &[(&str, &str)]) -> Response {
        let path = super::chunk_path(&super::id_of(bytes));
        self.request("PUT", &path, headers, bytes).await
    }

    /// PUTs chunk `bytes` and asserts it was created; returns its id.
    pub async fn put_new(&mut self, bytes: &[u8]) -> String {
        let response = self.put(bytes, &[]).await;
        assert_eq!(response.status, 201, "PUT: {:?}", response.text());
        super::id_of(bytes)
    }
}
