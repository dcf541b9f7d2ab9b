//! Why `chunkd serve` could not start or run: each variant carries what an operator needs
//! (the address, the store's own error).

use std::net::SocketAddr;

use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A setting that cannot be used as given.
    #[error("{0}")]
    Config(String),
    #[error(
        "{address} is already in use (another chunkd, or another server, listens there); \
         refusing to share it: stop the other or choose another --listen"
    )]
    AddressInUse { address: SocketAddr },
    #[error("binding {address}: {source}")]
    Bind {
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("starting the store's repair thread: {0}")]
    Maintenance(std::io::Error),
    #[error("handling signals: {0}")]
    Signals(std::io::Error),
}
