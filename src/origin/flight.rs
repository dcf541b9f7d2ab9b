//! Coalescing: at most one fill of a chunk in flight on the node. The first request that
//! misses a chunk leads its [`Flight`]; every other request for that chunk while the
//! flight lasts waits on the same [`Waiting`] future and is woken with the leader's
//! outcome — no polling, whichever core it runs on (cf. nginx's `proxy_cache_lock`, whose
//! waiters poll every 500 ms).
//!
//! A flight lasts until its leader drops it: after the fetch *and* the store, so a request
//! arriving between the two still joins it instead of asking the origin again. A leader
//! that ends without publishing (a panic) fails its waiters ([`FillError::Abandoned`]);
//! either way the chunk's next request starts a new flight.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared};
use tokio::sync::oneshot;

use super::error::FillError;
use crate::chunk::ChunkId;

/// What a fill gives every request that waited for it.
#[derive(Clone, Debug)]
pub enum Filled {
    /// The chunk's verified bytes.
    Bytes(Bytes),
    /// The chunk turned out to be stored already (stored between the request's miss and
    /// its flight): read it from the store.
    Stored,
}

/// A fill's outcome, shared by its waiters.
pub type Outcome = Result<Filled, FillError>;

/// The future every request of a flight awaits.
pub type Waiting = Shared<BoxFuture<'static, Outcome>>;

/// A future that resolves when a flight ends (its leader dropped it: stored, or failed).
pub type Settled = Shared<BoxFuture<'static, ()>>;

/// A flight as the map holds it.
struct Entry {
    waiting: Waiting,
    settled: Settled,
}

/// The chunks being filled now.
#[derive(Default)]
pub struct Flights {
    in_flight: Arc<Mutex<HashMap<ChunkId, Entry>>>,
}

/// What a request that missed does.
pub enum Joined {
    /// Lead the fill: fetch, publish, store, then drop the flight.
    Leader(Flight),
    /// Wait for the fill another request leads.
    Waiter(Waiting),
}

impl Flights {
    /// Joins the flight of `id`, or starts one (whose leader the caller becomes) unless
    /// `max` are in flight already (`None`).
    pub fn join(&self, id: &ChunkId, max: usize) -> Option<Joined> {
        let mut in_flight = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(entry) = in_flight.get(id) {
            return Some(Joined::Waiter(entry.waiting.clone()));
        }
        if in_flight.len() >= max {
            return None;
        }
        let (sender, receiver) = oneshot::channel::<Outcome>();
        let waiting = receiver
            .map(|outcome| outcome.unwrap_or(Err(FillError::Abandoned)))
            .boxed()
            .shared();
        // Never sent on: the receiver resolves when the flight drops its sender.
        let (ending, ended) = oneshot::channel::<()>();
        let settled = ended.map(|_| ()).boxed().shared();
        let entry = Entry {
            waiting: waiting.clone(),
            settled,
        };
        in_flight.insert(*id, entry);
        crate::metrics_origin::fills_in_flight(1.0);
        Some(Joined::Leader(Flight {
            id: *id,
            in_flight: self.in_flight.clone(),
            sender: Some(sender),
            waiting,
            _ending: ending,
        }))
    }

    /// Resolves when the flight of `id`, if any, has ended — its chunk stored or its
    /// failure published — so that a DELETE is not undone by a fill's store landing
    /// after it.
    pub fn settled(&self, id: &ChunkId) -> Option<Settled> {
        let in_flight = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        in_flight.get(id).map(|entry| entry.settled.clone())
    }

    /// Flights now.
    pub fn len(&self) -> usize {
        self.in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The leader's handle on a fill: publishing wakes the waiters; dropping ends the flight.
pub struct Flight {
    id: ChunkId,
    in_flight: Arc<Mutex<HashMap<ChunkId, Entry>>>,
    sender: Option<oneshot::Sender<Outcome>>,
    waiting: Waiting,
    /// Dropped with the flight, which resolves its `Settled`.
    _ending: oneshot::Sender<()>,
}

impl Flight {
    /// The chunk being filled.
    pub fn id(&self) -> &ChunkId {
        &self.id
    }

    /// The outcome the leader's own request awaits, as its waiters do.
    pub fn waiting(&self) -> Waiting {
        self.waiting.clone()
    }

    /// Wakes every waiter with `outcome` (the first call only). Requests that join from
    /// now until the flight is dropped get it at once.
    pub fn publish(&mut self, outcome: Outcome) {
        if let Some(sender) = self.sender.take() {
            let _ = sender.send(outcome);
        }
    }
}

impl Drop for Flight {
    fn drop(&mut self) {
        self.in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.id);
        crate::metrics_origin::fills_in_flight(-1.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> ChunkId {
        ChunkId::of(&[n])
    }

    #[tokio::test]
    async fn waiters_get_the_leaders_outcome_and_the_next_request_leads_anew() {
        let flights = Flights::default();
        let Some(Joined::Leader(mut flight)) = flights.join(&id(1), 2) else {
            panic!("the first request leads");
        };
        let Some(Joined::Waiter(waiter)) = flights.join(&id(1), 2) else {
            panic!("a second request waits");
        };
        let second = flights.join(&id(2), 2);
        assert!(matches!(second, Some(Joined::Leader(_))));
        assert!(
            flights.join(&id(3), 2).is_none(),
            "no third flight beyond the bound"
        );
        drop(second);
        let waiting = tokio::spawn(waiter);
        flight.publish(Ok(Filled::Bytes(Bytes::from_static(b"chunk"))));
        // Published, not yet dropped: a late request still joins, and gets it at once.
        let Some(Joined::Waiter(late)) = flights.join(&id(1), 2) else {
            panic!("the flight lasts until dropped");
        };
        for outcome in [waiting.await.unwrap(), late.await] {
            assert!(matches!(outcome, Ok(Filled::Bytes(b)) if b == "chunk"));
        }
        let settled = flights
            .settled(&id(1))
            .expect("the flight lasts until dropped");
        let settling = tokio::spawn(settled);
        tokio::task::yield_now().await;
        assert!(!settling.is_finished(), "settled only when the flight ends");
        drop(flight);
        settling.await.unwrap();
        assert!(flights.settled(&id(1)).is_none());
        assert!(matches!(flights.join(&id(1), 2), Some(Joined::Leader(_))));
    }

    #[tokio::test]
    async fn a_leader_gone_without_an_outcome_fails_its_waiters() {
        let flights = Flights::default();
        let Some(Joined::Leader(flight)) = flights.join(&id(3), 1) else {
            panic!("the first request leads");
        };
        let Some(Joined::Waiter(waiter)) = flights.join(&id(3), 1) else {
            panic!("a second request waits");
        };
        drop(flight);
        assert!(matches!(waiter.await, Err(FillError::Abandoned)));
        assert!(flights.is_empty());
    }
}
