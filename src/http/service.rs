//! Requests in, responses out: routing by path, and the bookkeeping every request gets
//! (metrics, access log, connection state, in-flight byte budget) when its response has
//! been sent.

use std::convert::Infallible;
use std::rc::Rc;
use std::time::Instant;

use super::body::{Body, Done};
use super::budget::{BudgetPermit, ConnShares};
use super::chunks;
use super::conn::ConnState;
use super::context::CoreContext;
use super::meta;
use super::ops;
use super::reply::{Reply, error};
use super::{gc, manifests};
use crate::store::Engine;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;

/// Serves one request.
pub async fn handle<E: Engine>(
    context: Rc<CoreContext<E>>,
    conn: Rc<ConnState>,
    shares: Rc<ConnShares>,
    request: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let started = Instant::now();
    conn.request_started();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let (route, reply) = route(&context, request, &shares).await;
    let Reply {
        mut response,
        permit,
    } = reply;
    if matches!(
        response.status(),
        StatusCode::PAYLOAD_TOO_LARGE | StatusCode::REQUEST_TIMEOUT
    ) {
        tracing::info!(%method, %path, status = response.status().as_u16(), "request over a limit refused");
    }
    if method == Method::HEAD {
        response = without_body(response);
    }
    if context.node.is_shutting_down() {
        // Tells HTTP/1.1 clients not to send another request on this connection.
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    let finish = Finish {
        route,
        method,
        path,
        status: response.status(),
        started,
        send: conn.send_started(),
        conn,
        access_log: context.node.config.access_log,
        _permit: permit,
    };
    Ok(response.map(|body| body.on_done(Box::new(finish))))
}

/// The answer to a HEAD: the GET's headers, its length included, and no body. HTTP/1.1
/// would drop the body itself, but hyper's HTTP/2 sends it, which clients reject as a
/// protocol error.
fn without_body(mut response: Response<Body>) -> Response<Body> {
    let len_bytes = response.body().len_bytes();
    response
        .headers_mut()
        .entry(header::CONTENT_LENGTH)
        .or_insert_with(|| HeaderValue::from(len_bytes));
    response.map(|_| Body::empty())
}

/// Runs when a response has been sent in full or abandoned.
struct Finish {
    route: &'static str,
    method: Method,
    path: String,
    status: StatusCode,
    started: Instant,
    /// This response's key in the connection's send-progress watch.
    send: u64,
    conn: Rc<ConnState>,
    access_log: bool,
    _permit: Option<BudgetPermit>,
}

impl Done for Finish {
    fn done(self: Box<Self>, sent_bytes: u64, complete: bool) {
        let elapsed = self.started.elapsed();
        crate::metrics::request(
            self.route,
            self.method.as_str(),
            self.status.as_u16(),
            elapsed,
            sent_bytes,
        );
        if self.access_log {
            tracing::info!(
                target: "chunkd::access",
                method = %self.method,
                path = %self.path,
                status = self.status.as_u16(),
                sent_bytes,
                complete,
                micros = elapsed.as_micros() as u64,
            );
        }
        self.conn.send_ended(self.send);
        self.conn.request_finished();
    }

    fn progress(&self) {
        self.conn.send_progress(self.send);
    }
}

/// The route's name (a metric label) and its answer.
async fn route<E: Engine>(
    context: &CoreContext<E>,
    request: Request<Incoming>,
    shares: &ConnShares,
) -> (&'static str, Reply) {
    if has_unsupported_transfer_coding(request.headers()) {
        return (
            "other",
            error(
                StatusCode::NOT_IMPLEMENTED,
                "only Transfer-Encoding: chunked is supported",
            )
            .into(),
        );
    }
    let path = request.uri().path().to_owned();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match segments.as_slice() {
        ["v1", "chunks", id] => ("chunk", chunks::chunk(context, id, request, shares).await),
        ["v1", "chunks", id, "meta"] => ("chunk_meta", meta::meta(context, id, &request).await),
        ["v1", "manifests"] => (
            "manifests",
            manifests::list(context, &request, shares).await,
        ),
        ["v1", "manifests", name] => (
            "manifest",
            manifests::manifest(context, name, request, shares).await,
        ),
        ["v1", "gc"] => (
            "gc",
            gc::gc(context, request.method(), request.headers()).await,
        ),
        ["metrics"] => ("metrics", ops::metrics(context, request.method()).into()),
        ["healthz"] => ("healthz", ops::healthz(request.method()).into()),
        ["readyz"] => ("readyz", ops::readiness(context, request.method()).into()),
        _ => (
            "other",
            error(StatusCode::NOT_FOUND, "no such route").into(),
        ),
    }
}

/// True when `Transfer-Encoding` names any coding but a single `chunked` (RFC 9112 §6.1:
/// a server that does not understand a coding answers 501). hyper decodes the final
/// `chunked` and would hand on `gzip, chunked` bodies still gzipped, to be stored as is.
fn has_unsupported_transfer_coding(headers: &http::HeaderMap) -> bool {
    let mut codings = headers
        .get_all(header::TRANSFER_ENCODING)
        .iter()
        .flat_map(|value| value.as_bytes().split(|&b| b == b','))
        .map(|coding| coding.trim_ascii())
        .filter(|coding| !coding.is_empty());
    match (codings.next(), codings.next()) {
        (None, _) => false,
        (Some(only), None) => !only.eq_ignore_ascii_case(b"chunked"),
        (Some(_), Some(_)) => true,
    }
}
