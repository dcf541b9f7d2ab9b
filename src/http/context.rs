//! What one core's handlers share: the node, this core's store handle (made on first use,
//! on this core's thread), the core's in-flight byte budget with its clients' shares
//! (`budget`), and a cheap random source.

use std::cell::{Cell, OnceCell};
use std::rc::Rc;
use std::sync::Arc;

use super::budget::{self, BudgetPermit, ClientShares, ConnShares, Share};
use super::node::Node;
use crate::store::{Engine, LocalStore};
use crate::xorshift::XorShift;

/// What one core's handlers share.
pub struct CoreContext<E: Engine> {
    pub node: Arc<Node<E>>,
    local: OnceCell<Rc<LocalStore<E>>>,
    /// Bytes of request and response bodies this core holds at once.
    budget: Share,
    /// The most of it each client address may hold.
    clients: ClientShares,
    random: Cell<u64>,
}

impl<E: Engine> CoreContext<E> {
    pub fn new(node: Arc<Node<E>>, core: usize) -> CoreContext<E> {
        let config = &node.config;
        let budget = Share::new(config.max_inflight_bytes_per_core);
        let clients = ClientShares::new(config.max_inflight_bytes_per_client);
        CoreContext {
            node,
            local: OnceCell::new(),
            budget,
            clients,
            random: Cell::new(
                0x9e37_79b9_7f4a_7c15 ^ (core as u64 + 1).wrapping_mul(0xff51_afd7_ed55_8ccd),
            ),
        }
    }

    /// This core's store handle, once the store is open.
    pub fn local(&self) -> Option<Rc<LocalStore<E>>> {
        if let Some(local) = self.local.get() {
            return Some(local.clone());
        }
        let store = self.node.store.get()?;
        match store.local() {
            Ok(local) => Some(self.local.get_or_init(|| Rc::new(local)).clone()),
            Err(error) => {
                tracing::error!(%error, "could not open this core's device handles");
                None
            }
        }
    }

    /// Waits until `bytes` more may be held in flight on this core by a connection with
    /// `shares` (see `budget`).
    pub async fn reserve(&self, shares: &ConnShares, bytes: u64) -> BudgetPermit {
        budget::reserve(&self.budget, shares, bytes).await
    }

    /// `bytes` of the budget for an upload, refused at once when the connection's own
    /// share is full (see `budget::reserve_upload`).
    pub async fn reserve_upload(&self, shares: &ConnShares, bytes: u64) -> Option<BudgetPermit> {
        budget::reserve_upload(&self.budget, shares, bytes).await
    }

    /// `bytes` of the budget if they are free now (see `budget::try_reserve`).
    pub fn try_reserve(&self, shares: &ConnShares, bytes: u64) -> Option<BudgetPermit> {
        budget::try_reserve(&self.budget, shares, bytes)
    }

    /// The shares of a new connection from `peer` (none known: no client share).
    pub fn connection_shares(&self, peer: Option<std::net::IpAddr>) -> ConnShares {
        ConnShares {
            connection: Share::new(self.node.config.max_inflight_bytes_per_connection),
            client: peer.map(|address| self.clients.of(address)),
        }
    }

    /// KiB of this core's budget held now.
    pub fn budget_held_kib(&self) -> u32 {
        self.budget.held_kib()
    }

    /// 64 fresh pseudo-random bits (multipart boundaries; not a secret).
    pub fn random(&self) -> u64 {
        let mut stream = XorShift::new(self.random.get());
        let x = stream.next_u64();
        self.random.set(x);
        x
    }
}
