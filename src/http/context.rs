//! What one core's handlers share: the node, this core's store handle (made on first use,
//! on this core's thread), the core's in-flight byte budget and a cheap random source.

use std::cell::{Cell, OnceCell};
use std::rc::Rc;
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::node::Node;
use crate::store::{Engine, LocalStore};
use crate::xorshift::XorShift;

/// What one core's handlers share.
pub struct CoreContext<E: Engine> {
    pub node: Arc<Node<E>>,
    local: OnceCell<Rc<LocalStore<E>>>,
    /// Bytes of request and response bodies this core holds at once (in KiB permits, so a
    /// request's share fits in the semaphore's u32).
    budget: Arc<Semaphore>,
    budget_kib: u32,
    random: Cell<u64>,
}

impl<E: Engine> CoreContext<E> {
    pub fn new(node: Arc<Node<E>>, core: usize) -> CoreContext<E> {
        let budget_kib = u32::try_from(node.config.max_inflight_bytes_per_core / 1024)
            .unwrap_or(u32::MAX)
            .max(1);
        CoreContext {
            node,
            local: OnceCell::new(),
            budget: Arc::new(Semaphore::new(budget_kib as usize)),
            budget_kib,
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

    /// Waits until `bytes` more may be held in flight on this core.
    pub async fn reserve(&self, bytes: u64) -> OwnedSemaphorePermit {
        let kib = u32::try_from(bytes.div_ceil(1024))
            .unwrap_or(u32::MAX)
            .clamp(1, self.budget_kib);
        self.budget
            .clone()
            .acquire_many_owned(kib)
            .await
            .expect("the budget semaphore is never closed")
    }

    /// 64 fresh pseudo-random bits (multipart boundaries; not a secret).
    pub fn random(&self) -> u64 {
        let mut stream = XorShift::new(self.random.get());
        let x = stream.next_u64();
        self.random.set(x);
        x
    }
}
