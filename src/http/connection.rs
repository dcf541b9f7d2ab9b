//! Serving connections on one core: hyper's auto builder (HTTP/1.1 or h2c, told apart per
//! connection) over any byte stream — a TCP socket in the node, an in-memory duplex in
//! the tests — with the watchdog of `conn`, the node's connection limit and the metrics.
//!
//! **Invariant:** everything here runs on the core's own thread (`spawn_local`); nothing
//! a connection holds moves to another core.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite};

use super::conn::{ConnState, TimedStream, Timeouts};
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
    /// This core's open connections, by a key of their own.
    open: Rc<RefCell<HashMap<u64, Rc<ConnState>>>>,
    next_key: Cell<u64>,
}

impl<E: Engine> CoreServer<E> {
    /// Core `core`'s server for `node`. Make it on the thread that will run it.
    pub fn new(node: Arc<Node<E>>, core: usize) -> CoreServer<E> {
        let builder = http_builder(&node.config);
        CoreServer {
            context: Rc::new(CoreContext::new(node, core)),
            builder,
            graceful: GracefulShutdown::new(),
            open: Rc::new(RefCell::new(HashMap::new())),
            next_key: Cell::new(0),
        }
    }

    /// The context this core's handlers share.
    pub fn context(&self) -> &Rc<CoreContext<E>> {
        &self.context
    }

    /// Serves `stream` in a task on this core until the client or the watchdog ends it.
    /// Returns false, and drops (closes) the stream, when the node has `--max-connections`
    /// open already and none of this core's is an idle keep-alive one to close instead.
    pub fn serve<S>(&self, stream: S) -> bool
    where
        S: AsyncRead + AsyncWrite + Unpin + 'static,
    {
        self.serve_from(stream, None)
    }

    /// [`CoreServer::serve`] for a client at `peer`: refused when it has
    /// `--max-connections-per-client` open, and its connections share one part of this
    /// core's in-flight budget (`--max-inflight-bytes-per-client`).
    pub fn serve_from<S>(&self, stream: S, peer: Option<std::net::IpAddr>) -> bool
    where
        S: AsyncRead + AsyncWrite + Unpin + 'static,
    {
        let node = self.context.node.clone();
        if let Err(reason) = self.admit(peer) {
            crate::metrics::connection_cut(reason);
            tracing::warn!(
                reason,
                limit = node.config.max_connections,
                per_client = node.config.max_connections_per_client,
                "connection limit reached: closing a new connection"
            );
            return false;
        }
        crate::metrics::connection_opened();
        let state = Rc::new(ConnState::new());
        let key = self.next_key.get();
        self.next_key.set(key + 1);
        self.open.borrow_mut().insert(key, state.clone());
        let open = self.open.clone();
        let shares = Rc::new(self.context.connection_shares(peer));
        let io = TokioIo::new(TimedStream::new(stream, state.clone()));
        let service = {
            let (context, state) = (self.context.clone(), state.clone());
            hyper::service::service_fn(move |request| {
                service::handle(context.clone(), state.clone(), shares.clone(), request)
            })
        };
        let connection = self
            .graceful
            .watch(self.builder.serve_connection(io, service).into_owned());
        tokio::task::spawn_local(async move {
            let timeouts = Timeouts {
                header: node.config.header_read_timeout,
                idle: node.config.idle_timeout,
                send: node.config.send_timeout,
            };
            tokio::select! {
                result = connection => {
                    if let Err(error) = result {
                        log_connection_error(&*error);
                    }
                }
                reason = state.watchdog(timeouts) => {
                    crate::metrics::connection_cut(reason);
                    if reason == "header_timeout" {
                        tracing::info!(reason, "closing a connection: its request headers took too long");
                    } else if reason == "send_timeout" {
                        tracing::info!(reason, "closing a connection: a response made no progress");
                    } else {
                        tracing::debug!(reason, "closing an idle connection");
                    }
                }
            }
            open.borrow_mut().remove(&key);
            node.connection_closed();
            node.client_closed(peer);
            crate::metrics::connection_closed();
        });
        true
    }

    /// Counts a connection from `peer` in, or says which limit refuses it. At the node's
    /// limit, this core's longest-idle keep-alive connection is closed to make room.
    fn admit(&self, peer: Option<std::net::IpAddr>) -> Result<(), &'static str> {
        let node = &self.context.node;
        if !node.admit_client(peer) {
            return Err("over_client_connection_limit");
        }
        if node.admit_connection() {
            return Ok(());
        }
        let idlest = self
            .open
            .borrow()
            .values()
            .filter_map(|state| Some((state.idle_keep_alive_since()?, state.clone())))
            .min_by_key(|(since, _)| *since);
        match idlest {
            Some((_, state)) => {
                state.evict();
                node.admit_in_place_of_idle();
                Ok(())
            }
            None => {
                node.client_closed(peer);
                Err("over_connection_limit")
            }
        }
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
