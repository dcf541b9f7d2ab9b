//! Signals: the first SIGTERM or SIGINT starts a graceful shutdown, a second one exits
//! the process at once.

use tokio::signal::unix::{SignalKind, signal};

use super::error::ServeError;
use super::node::Node;
use crate::store::Engine;

/// Waits for SIGTERM/SIGINT (or for the cores to stop by themselves) on a runtime of its
/// own; the first signal starts a graceful shutdown, a second one exits the process at
/// once (status 1).
pub fn wait_for_signals<E: Engine>(
    node: &Node<E>,
    mut cores_done: tokio::sync::oneshot::Receiver<()>,
) -> Result<(), ServeError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(ServeError::Signals)?;
    runtime.block_on(async {
        let mut terminate = signal(SignalKind::terminate()).map_err(ServeError::Signals)?;
        let mut interrupt = signal(SignalKind::interrupt()).map_err(ServeError::Signals)?;
        tokio::select! {
            _ = terminate.recv() => tracing::info!("SIGTERM: shutting down gracefully"),
            _ = interrupt.recv() => tracing::info!("SIGINT: shutting down gracefully"),
            _ = &mut cores_done => return Ok(()),
        }
        node.begin_shutdown();
        tokio::select! {
            _ = terminate.recv() => {}
            _ = interrupt.recv() => {}
            _ = cores_done => return Ok(()),
        }
        tracing::warn!("second signal: exiting now");
        std::process::exit(1);
    })
}
