//! Serving connections on one core: hyper's auto builder (HTTP/1.1 or h2c, told apart per
//! connection) over any byte stream — a TCP socket in the node, an in-memory duplex in
//! the tests — with the watchdog of `conn`, the node's connection limit and the metrics.
//!
//! **Invariant:** everything here runs on the core's own thread (`spawn_local`); nothing
//! a connection holds moves to another core.

use std::future::Future;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite};

use super::conn::{ConnState, TimedStream};
use super::context::CoreContext;
use super::node::Node;
use super::service;
use crate::config::ServeConfig;
use crate::store::Engine;

/// One core's server: its handlers' context, the HTTP builder and the open connections.
pub struct CoreServer<E: Engine> {
    context: Rc<CoreContext<E>>,
    builder: auto::Builder<LocalExec>,
    graceful: GracefulShutdown,
}

impl<E: Engine> CoreServer<E> {
    /// Core `core`'s server for `node`. Make it on the thread that will run it.
    pub fn new(node: Arc<Node<E>>, core: usize) -> CoreServer<E> {
        let builder = http_builder(&node.config);
        CoreServer {
            context: Rc::new(CoreContext::new(node, core)),
            builder,
            graceful: GracefulShutdown::new(),
        }
    }

    /// The context this core's handlers share.
    pub fn context(&self) -> &Rc<CoreContext<E>> {
        &self.context
    }

    /// Serves `stream` in a task on this core until the client or the watchdog ends it.
    /// Returns false, and drops (closes) the stream, when the node has `--max-connections`
    /// open already.
    pub fn serve<S>(&self, stream: S) -> bool
    where
        S: AsyncRead + AsyncWrite + Unpin + 'static,
    {
        let node = self.context.node.clone();
        if !node.admit_connection() {
            crate::metrics::connection_cut("over_connection_limit");
            tracing::warn!(
                limit = node.config.max_connections,
                "connection limit reached: closing a new connection"
            );
            return false;
        }
        crate::metrics::connection_opened();
        let state = Rc::new(ConnState::new());
        let io = TokioIo::new(TimedStream::new(stream, state.clone()));
        let service = {
            let (context, state) = (self.context.clone(), state.clone());
            hyper::service::service_fn(move |request| {
                service::handle(context.clone(), state.clone(), request)
            })
        };
        let connection = self
            .graceful
            .watch(self.builder.serve_connection(io, service).into_owned());
        tokio::task::spawn_local(async move {
            let (header_timeout, idle_timeout) =
                (node.config.header_read_timeout, node.config.idle_timeout);
            tokio::select! {
                result = connection => {
                    if let Err(error) = result {
                        log_connection_error(&*error);
                    }
                }
                reason = state.watchdog(header_timeout, idle_timeout) => {
                    crate::metrics::connection_cut(reason);
                    if reason == "header_timeout" {
                        tracing::info!(reason, "closing a connection: its request headers took too long");
                    } else {
                        tracing::debug!(reason, "closing an idle connection");
                    }
                }
            }
            node.connection_closed();
            crate::metrics::connection_closed();
        });
        true
    }

    /// Asks every open connection to finish its requests and close (idle ones close at
    /// once), and waits for them up to `limit`; true when all closed in time.
    pub async fn drain(self, limit: Duration) -> bool {
        tokio::select! {
            () = self.graceful.shutdown() => true,
            () = tokio::time::sleep(limit) => false,
        }
    }
}

/// Spawns futures on the current core (hyper's HTTP/2 streams), which may hold `!Send`
/// state such as the core's store handle.
#[derive(Clone, Copy)]
pub struct LocalExec;

impl<F: Future + 'static> hyper::rt::Executor<F> for LocalExec {
    fn execute(&self, future: F) {
        tokio::task::spawn_local(future);
    }
}

fn http_builder(config: &ServeConfig) -> auto::Builder<LocalExec> {
    let mut builder = auto::Builder::new(LocalExec);
    let header_bytes = usize::try_from(config.max_header_bytes)
        .unwrap_or(usize::MAX)
        .max(8192);
    // hyper's own HTTP/1.1 header timeout (30 s unless set) would also run while a
    // keep-alive connection sits idle, cutting it before `--idle-timeout`: the watchdog
    // (`conn`) times headers and idleness apart instead.
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(None)
        .max_buf_size(header_bytes)
        .max_headers(config.max_headers)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(config.max_header_bytes).unwrap_or(u32::MAX))
        .max_concurrent_streams(config.max_streams_per_connection)
        .initial_stream_window_size(1 << 20)
        .initial_connection_window_size(8 << 20)
        .max_frame_size(1 << 20)
        .max_send_buf_size(1 << 20);
    builder
}

/// Malformed requests and oversized or too many headers (hyper answers 400 or 431 and
/// closes) get an info line: the client's doing, worth seeing, not alarming. Clients that
/// hang up mid-request are routine (load generators do it at every stop): debug only.
fn log_connection_error(error: &(dyn std::error::Error + 'static)) {
    match error.downcast_ref::<hyper::Error>() {
        Some(e) if e.is_parse() || e.is_parse_too_large() || e.is_parse_status() => {
            tracing::info!(error = %e, "request refused: malformed or over the header limits");
        }
        _ => tracing::debug!(%error, "connection ended with an error"),
    }
}
