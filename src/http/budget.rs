//! The in-flight byte budget in three nested shares: a core's budget
//! (`--max-inflight-bytes-per-core`), of which one client address may hold at most
//! `--max-inflight-bytes-per-client` and one connection at most
//! `--max-inflight-bytes-per-connection`. A request takes its bytes from all three, in
//! that order (connection, client, core), so a request waiting for its connection's or
//! client's share holds nothing of the core's: a slow or hostile client can fill only its
//! own shares, and everyone else keeps the rest of the core (issue 11).
//!
//! Permits are counted in KiB, so a share fits a semaphore's `u32`.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Weak};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// A share of a budget: a semaphore of KiB permits and its size.
#[derive(Clone)]
pub struct Share {
    permits: Arc<Semaphore>,
    kib: u32,
}

impl Share {
    /// A share of `bytes` (at least 1 KiB).
    pub fn new(bytes: u64) -> Share {
        let kib = kib_of(bytes);
        Share {
            permits: Arc::new(Semaphore::new(kib as usize)),
            kib,
        }
    }

    /// Waits until `bytes` (clamped to the whole share) may be held.
    async fn take(&self, bytes: u64) -> OwnedSemaphorePermit {
        self.permits
            .clone()
            .acquire_many_owned(kib_of(bytes).min(self.kib))
            .await
            .expect("budget semaphores are never closed")
    }

    /// `bytes` (clamped to the whole share) if they may be held now, without waiting.
    fn try_take(&self, bytes: u64) -> Option<OwnedSemaphorePermit> {
        self.permits
            .clone()
            .try_acquire_many_owned(kib_of(bytes).min(self.kib))
            .ok()
    }

    /// KiB held now.
    pub fn held_kib(&self) -> u32 {
        self.kib - u32::try_from(self.permits.available_permits()).unwrap_or(self.kib)
    }
}

fn kib_of(bytes: u64) -> u32 {
    u32::try_from(bytes.div_ceil(1024))
        .unwrap_or(u32::MAX)
        .max(1)
}

/// The shares one connection's requests draw on besides the core's.
#[derive(Clone)]
pub struct ConnShares {
    pub connection: Share,
    /// `None` for a stream with no peer address (the in-process tests' duplex streams
    /// may have one or not).
    pub client: Option<Share>,
}

/// Budget held by one request until its response has been sent (or abandoned); dropping
/// it gives the bytes back to every share.
pub struct BudgetPermit {
    _core: OwnedSemaphorePermit,
    _client: Option<OwnedSemaphorePermit>,
    _connection: OwnedSemaphorePermit,
}

/// Takes `bytes` from the connection's share, its client's, then the core's.
pub async fn reserve(core: &Share, shares: &ConnShares, bytes: u64) -> BudgetPermit {
    let connection = shares.connection.take(bytes).await;
    with_connection(core, shares, bytes, connection).await
}

/// As [`reserve`] for an upload, except that the connection's share must have `bytes`
/// free now (`None` otherwise): on HTTP/2 an upload waiting for its connection's share
/// would leave its unread DATA holding the connection's flow-control window, so the other
/// uploads on the connection could not send either and would time out. Refused at once,
/// the client retries it (503 + Retry-After). The client's and the core's shares are
/// waited for as usual.
pub async fn reserve_upload(core: &Share, shares: &ConnShares, bytes: u64) -> Option<BudgetPermit> {
    let connection = shares.connection.try_take(bytes)?;
    Some(with_connection(core, shares, bytes, connection).await)
}

/// The rest of [`reserve`] once the connection's share is held: the client's, then the
/// core's, waiting for each.
async fn with_connection(
    core: &Share,
    shares: &ConnShares,
    bytes: u64,
    connection: OwnedSemaphorePermit,
) -> BudgetPermit {
    let client = match &shares.client {
        Some(client) => Some(client.take(bytes).await),
        None => None,
    };
    BudgetPermit {
        _core: core.take(bytes).await,
        _client: client,
        _connection: connection,
    }
}

/// As [`reserve`], but only if all three shares have `bytes` free now: for memory that is
/// worth having only if it costs no wait (a memory-tier copy made while a PUT is stored).
pub fn try_reserve(core: &Share, shares: &ConnShares, bytes: u64) -> Option<BudgetPermit> {
    let connection = shares.connection.try_take(bytes)?;
    let client = match &shares.client {
        Some(client) => Some(client.try_take(bytes)?),
        None => None,
    };
    Some(BudgetPermit {
        _core: core.try_take(bytes)?,
        _client: client,
        _connection: connection,
    })
}

/// One core's client shares by address, each alive while a connection from the address
/// holds it (the map keeps weak references, swept as it grows).
pub struct ClientShares {
    bytes: u64,
    by_address: RefCell<HashMap<IpAddr, Weak<Semaphore>>>,
    swept_at_len: Cell<usize>,
}

impl ClientShares {
    /// Shares of `bytes` each.
    pub fn new(bytes: u64) -> ClientShares {
        ClientShares {
            bytes,
            by_address: RefCell::new(HashMap::new()),
            swept_at_len: Cell::new(64),
        }
    }

    /// The share of client `address`: the one its open connections use, or a new one.
    pub fn of(&self, address: IpAddr) -> Share {
        let mut map = self.by_address.borrow_mut();
        if let Some(permits) = map.get(&address).and_then(Weak::upgrade) {
            return Share {
                permits,
                kib: kib_of(self.bytes),
            };
        }
        if map.len() >= self.swept_at_len.get() {
            map.retain(|_, share| share.strong_count() > 0);
            self.swept_at_len.set((map.len() * 2).max(64));
        }
        let share = Share::new(self.bytes);
        map.insert(address, Arc::downgrade(&share.permits));
        share
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt;

    #[test]
    fn a_connection_waits_on_its_own_share_holding_nothing_of_the_core() {
        let core = Share::new(1 << 20);
        let shares = ConnShares {
            connection: Share::new(256 << 10),
            client: None,
        };
        let first = reserve(&core, &shares, 256 << 10).now_or_never().unwrap();
        assert!(reserve(&core, &shares, 1024).now_or_never().is_none());
        assert_eq!(core.held_kib(), 256);
        drop(first);
        assert_eq!(core.held_kib(), 0);
    }

    #[test]
    fn connections_of_one_client_share_its_share() {
        let core = Share::new(1 << 20);
        let clients = ClientShares::new(512 << 10);
        let address: IpAddr = "192.0.2.1".parse().unwrap();
        let one = || ConnShares {
            connection: Share::new(256 << 10),
            client: Some(clients.of(address)),
        };
        let (a, b, c) = (one(), one(), one());
        let _held = [
            reserve(&core, &a, 256 << 10).now_or_never().unwrap(),
            reserve(&core, &b, 256 << 10).now_or_never().unwrap(),
        ];
        assert!(reserve(&core, &c, 1024).now_or_never().is_none());
        let other = ConnShares {
            connection: Share::new(256 << 10),
            client: Some(clients.of("192.0.2.2".parse().unwrap())),
        };
        assert!(reserve(&core, &other, 1024).now_or_never().is_some());
    }
}
