//! Per-core start-up: each core's SO_REUSEPORT listener and its accept loop, which hands
//! every accepted socket to the core's [`CoreServer`] until shutdown, then lets open
//! connections finish within `--shutdown-timeout`. Core 0 also runs the store's repair
//! task.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use super::connection::CoreServer;
use super::error::ServeError;
use super::node::{Node, client_of};
use super::sendfile::SendfileStream;
use crate::store::{Engine, release_idle_regions};

/// Accepted connections waiting in the kernel per listener.
const LISTEN_BACKLOG: i32 = 1024;
/// Pause after a failed accept (out of descriptors or similar), instead of spinning.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);
/// How often a core gives idle I/O buffers back (each must have been idle for
/// `store::aligned::RELEASE_IDLE_AFTER` first; a check is a few map lookups).
const RELEASE_INTERVAL: Duration = Duration::from_secs(1);

/// Fails with [`ServeError::AddressInUse`] when something already listens on `address`.
///
/// The per-core listeners use SO_REUSEPORT, with which a second chunkd of the same user
/// would bind the same address silently and take a share of its connections. A socket
/// *without* SO_REUSEPORT cannot bind a port that any socket listens on, so binding one
/// and closing it again tells whether the address is free. (SO_REUSEADDR is set, as on
/// the listeners, so connections of a previous run in TIME_WAIT do not count.) Port 0 asks
/// for a free port and needs no probe.
pub fn ensure_address_free(address: SocketAddr) -> Result<(), ServeError> {
    if address.port() == 0 {
        return Ok(());
    }
    let probe = || -> std::io::Result<()> { tcp_socket(address)?.bind(&address.into()) };
    match probe() {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            Err(ServeError::AddressInUse { address })
        }
        Err(source) => Err(ServeError::Bind { address, source }),
    }
}

/// A TCP socket for `address` with SO_REUSEADDR (a restarted node rebinds at once).
fn tcp_socket(address: SocketAddr) -> std::io::Result<socket2::Socket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(
        Domain::for_address(address),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    Ok(socket)
}

/// A listening socket with SO_REUSEPORT, so every core can bind its own on one address.
pub fn bind(address: SocketAddr) -> Result<std::net::TcpListener, ServeError> {
    let setup = || -> std::io::Result<socket2::Socket> {
        let socket = tcp_socket(address)?;
        socket.set_reuse_port(true)?;
        socket.set_tcp_nodelay(true)?;
        socket.bind(&address.into())?;
        socket.listen(LISTEN_BACKLOG)?;
        socket.set_nonblocking(true)?;
        Ok(socket)
    };
    setup()
        .map(Into::into)
        .map_err(|source| ServeError::Bind { address, source })
}

/// Runs core `core`: accepts on `listener` until shutdown, then drains.
pub async fn run_core<E: Engine>(core: usize, node: Arc<Node<E>>, listener: std::net::TcpListener) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(listener) => listener,
        Err(error) => {
            tracing::error!(core, %error, "listener unusable");
            return;
        }
    };
    let server = CoreServer::new(node.clone(), core);
    let mut shutdown = node.watch_shutdown();
    // This core's I/O buffers left idle by a burst go back to the kernel (whole regions
    // idle for seconds: `store::release_idle_regions`).
    let releaser = tokio::task::spawn_local(async {
        let mut every = tokio::time::interval(RELEASE_INTERVAL);
        loop {
            every.tick().await;
            release_idle_regions();
        }
    });
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let client = Some(client_of(peer.ip()));
                    if node.config.memory_send == "sendfile" {
                        server.serve_from(SendfileStream::new(stream, node.clone()), client);
                    } else {
                        server.serve_from(stream, client);
                    }
                }
                Err(error) => {
                    tracing::warn!(core, %error, "accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
            _ = shutdown.wait_for(|stop| *stop) => break,
        }
    }
    drop(listener);
    releaser.abort();
    if !server.drain(node.config.shutdown_timeout).await {
        tracing::warn!(
            core,
            "connections still open at the shutdown deadline are cut"
        );
    }
}
