//! The HTTP server: `chunkd serve`. One thread per core, each with its own tokio-uring
//! runtime, its own SO_REUSEPORT listener and its own store handle; hyper serves HTTP/1.1
//! and h2c (told apart per connection) with the routes of `shared/design/api.md`.
//!
//! Start-up: the listeners are bound first (so a taken port fails at once), the cores start
//! answering `/healthz` (200) and `/readyz` (503) while the store recovers, then `/readyz`
//! turns 200. Shutdown: the first SIGTERM or SIGINT stops accepting, lets in-flight
//! requests finish within `--shutdown-timeout` and exits 0; a second signal exits at once.
//!
//! Files: `conn` (a connection's socket and watchdog), `service` (routing, per-core context,
//! bookkeeping), `chunks` (the chunk routes), `body` (zero-copy response bodies),
//! `multipart` (multipart/byteranges).
//!
//! **Architecture invariant:** handlers never block their core: store I/O goes through the
//! core's io_uring; the only blocking work (catalog commits) happens on the commit thread.

mod body;
mod chunks;
mod conn;
mod multipart;
mod service;

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::sync::watch;

use crate::config::ServeConfig;
use crate::metrics::Metrics;
use crate::store::Store;
use crate::store::device::uring::UringEngine;
use conn::{ConnState, TimedStream};
use service::CoreContext;

/// Submission-queue entries of each core's ring.
const RING_ENTRIES: u32 = 1024;
/// Accepted connections waiting in the kernel per listener.
const LISTEN_BACKLOG: i32 = 1024;

/// What all cores share.
pub struct Node {
    pub config: ServeConfig,
    pub metrics: Metrics,
    /// Set once recovery is done.
    pub store: OnceLock<Store<UringEngine>>,
    pub shutting_down: AtomicBool,
    /// False when the node listens beyond loopback with no token and no explicit opt-in.
    pub open_writes: bool,
    connections: AtomicUsize,
    shutdown: watch::Sender<bool>,
}

/// Runs the node until it is told to stop.
pub fn serve(config: ServeConfig, metrics: Metrics) -> anyhow::Result<()> {
    let store_config = config.store()?;
    anyhow::ensure!(config.cores > 0, "--cores must be at least 1");
    // The first bind settles the port (port 0 picks a free one); the others share it.
    let first = bind(config.listen)?;
    let address = first.local_addr()?;
    let mut listeners = vec![Some(first)];
    for _ in 1..config.cores {
        listeners.push(Some(bind(address)?));
    }
    let listeners = Mutex::new(listeners);
    let open_writes = config.write_token.is_some()
        || config.allow_unauthenticated_writes
        || config.listen.ip().is_loopback();
    if !open_writes {
        tracing::warn!(listen = %config.listen, "no write token and not on loopback: writes will be refused");
    }
    let (shutdown, _) = watch::channel(false);
    let node = Arc::new(Node {
        config,
        metrics,
        store: OnceLock::new(),
        shutting_down: AtomicBool::new(false),
        open_writes,
        connections: AtomicUsize::new(0),
        shutdown,
    });
    tracing::info!(listen = %address, cores = node.config.cores, "listening; recovering the store");
    // One stable line on stdout for scripts and tests that asked for port 0.
    println!("listening on http://{address}");

    let (cores_done_tx, cores_done_rx) = tokio::sync::oneshot::channel::<()>();
    std::thread::scope(|scope| {
        let node_for_cores = node.clone();
        let listeners = &listeners;
        let cores = scope.spawn(move || {
            let node = node_for_cores;
            crate::cores::run(
                node.config.cores,
                node.config.pin_cores,
                RING_ENTRIES,
                |core| {
                    let listener = listeners.lock().expect("not poisoned")[core]
                        .take()
                        .expect("one listener per core");
                    run_core(core, node.clone(), listener)
                },
            );
            let _ = cores_done_tx.send(());
        });
        let opened = open_store(&node, store_config);
        if opened.is_err() {
            begin_shutdown(&node);
        }
        let waited = wait_for_signals(&node, cores_done_rx);
        cores.join().expect("the core threads do not panic");
        opened.and(waited)
    })?;
    tracing::info!("stopped");
    Ok(())
}

/// A listening socket with SO_REUSEPORT, so every core can bind its own on one address.
fn bind(address: SocketAddr) -> anyhow::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(
        Domain::for_address(address),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_tcp_nodelay(true)?;
    socket
        .bind(&address.into())
        .map_err(|e| anyhow::anyhow!("binding {address}: {e}"))?;
    socket.listen(LISTEN_BACKLOG)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

fn open_store(node: &Node, config: crate::store::StoreConfig) -> anyhow::Result<()> {
    let started = Instant::now();
    let (store, report) = Store::open(config, &UringEngine).map_err(|e| {
        tracing::error!(error = %e, "the store could not be opened");
        anyhow::anyhow!(e)
    })?;
    let capacity = store.capacity();
    let geometry = store.geometry();
    tracing::info!(
        devices = ?store.config().devices.iter().map(ToString::to_string).collect::<Vec<_>>(),
        scheme = %format!("{}+{}", geometry.scheme.data_shards(), geometry.scheme.parity_shards()),
        capacity_bytes = capacity.total_bytes,
        free_bytes = capacity.free_bytes,
        chunks = report.chunks,
        created = report.created,
        refilling = ?report.refilling,
        recovery_ms = report.recovery.as_millis() as u64,
        open_ms = started.elapsed().as_millis() as u64,
        "store ready"
    );
    let _ = node.store.set(store);
    node.shutdown.send_modify(|_| {}); // wakes the repair task waiting for the store
    Ok(())
}

fn begin_shutdown(node: &Node) {
    node.shutting_down.store(true, Ordering::SeqCst);
    node.shutdown.send_replace(true);
}

/// Waits for SIGTERM/SIGINT (or for the cores to stop by themselves); the first signal
/// starts a graceful shutdown, a second one exits the process at once.
fn wait_for_signals(
    node: &Node,
    mut cores_done: tokio::sync::oneshot::Receiver<()>,
) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut terminate = signal(SignalKind::terminate())?;
        let mut interrupt = signal(SignalKind::interrupt())?;
        tokio::select! {
            _ = terminate.recv() => tracing::info!("SIGTERM: shutting down gracefully"),
            _ = interrupt.recv() => tracing::info!("SIGINT: shutting down gracefully"),
            _ = &mut cores_done => return Ok(()),
        }
        begin_shutdown(node);
        tokio::select! {
            _ = terminate.recv() => {}
            _ = interrupt.recv() => {}
            _ = cores_done => return Ok(()),
        }
        tracing::warn!("second signal: exiting now");
        std::process::exit(1);
    })
}

/// Spawns futures on the current core (hyper's HTTP/2 streams), which may hold `!Send`
/// state such as the core's store handle.
#[derive(Clone, Copy)]
struct LocalExec;

impl<F: std::future::Future + 'static> hyper::rt::Executor<F> for LocalExec {
    fn execute(&self, future: F) {
        tokio::task::spawn_local(future);
    }
}

async fn run_core(core: usize, node: Arc<Node>, listener: std::net::TcpListener) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(listener) => listener,
        Err(error) => {
            tracing::error!(core, %error, "listener unusable");
            return;
        }
    };
    let context = Rc::new(CoreContext::new(node.clone(), core));
    if core == 0 {
        tokio::task::spawn_local(run_repairs(context.clone()));
    }
    let builder = http_builder(&node.config);
    let graceful = GracefulShutdown::new();
    let mut shutdown = node.shutdown.subscribe();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => accept(&node, &context, &builder, &graceful, stream),
                Err(error) => {
                    // Out of descriptors or similar: back off instead of spinning.
                    tracing::warn!(core, %error, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
            _ = shutdown.wait_for(|stop| *stop) => break,
        }
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(node.config.shutdown_timeout) => {
            tracing::warn!(core, "connections still open at the shutdown deadline are cut");
        }
    }
}

async fn run_repairs(context: Rc<CoreContext>) {
    let mut changes = context.node.shutdown.subscribe();
    while context.node.store.get().is_none() {
        if *changes.borrow() || changes.changed().await.is_err() {
            return;
        }
    }
    if let Some(local) = context.local() {
        local.run_repairs().await;
    }
}

fn http_builder(config: &ServeConfig) -> auto::Builder<LocalExec> {
    let mut builder = auto::Builder::new(LocalExec);
    let header_bytes = usize::try_from(config.max_header_bytes)
        .unwrap_or(usize::MAX)
        .max(8192);
    builder
        .http1()
        .timer(TokioTimer::new())
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

fn accept(
    node: &Arc<Node>,
    context: &Rc<CoreContext>,
    builder: &auto::Builder<LocalExec>,
    graceful: &GracefulShutdown,
    stream: tokio::net::TcpStream,
) {
    if node.connections.fetch_add(1, Ordering::Relaxed) >= node.config.max_connections {
        node.connections.fetch_sub(1, Ordering::Relaxed);
        crate::metrics::connection_cut("over_connection_limit");
        tracing::warn!(
            limit = node.config.max_connections,
            "connection limit reached: closing a new connection"
        );
        return; // dropping the stream closes it
    }
    let _ = stream.set_nodelay(true);
    crate::metrics::connection_opened();
    let state = Rc::new(ConnState::new());
    let io = TokioIo::new(TimedStream::new(stream, state.clone()));
    let service = {
        let (context, state) = (context.clone(), state.clone());
        hyper::service::service_fn(move |request| {
            service::handle(context.clone(), state.clone(), request)
        })
    };
    let connection = graceful.watch(builder.serve_connection(io, service).into_owned());
    let (node, header_timeout, idle_timeout) = (
        node.clone(),
        node.config.header_read_timeout,
        node.config.idle_timeout,
    );
    tokio::task::spawn_local(async move {
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
        node.connections.fetch_sub(1, Ordering::Relaxed);
        crate::metrics::connection_closed();
    });
}
