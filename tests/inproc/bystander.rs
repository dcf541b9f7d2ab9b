//! A client that keeps being served: GETs (whole and ranged) of one chunk in a loop, on
//! the same core, while a test throws bad input at the node. Paced by a timer, so a test
//! with a paused clock still goes idle between its requests.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use chunkd::http::CoreServer;
use chunkd::store::device::sim::SimEngine;
use tokio::task::JoinHandle;

use super::client::{Client, Version};
use super::{chunk_path, id_of};

const REQUESTS_PER_CONNECTION: u64 = 16;
const PAUSE: Duration = Duration::from_millis(5);

/// GETs of one chunk in a task on this thread, every byte checked.
pub struct Bystander {
    stop: Rc<Cell<bool>>,
    served: Rc<Cell<u64>>,
    task: JoinHandle<Vec<String>>,
}

impl Bystander {
    /// Starts the loop and waits for its first answer.
    pub async fn start(server: Rc<CoreServer<SimEngine>>, bytes: Vec<u8>) -> Bystander {
        let (stop, served) = (Rc::new(Cell::new(false)), Rc::new(Cell::new(0)));
        let task =
            tokio::task::spawn_local(bystander_loop(server, bytes, stop.clone(), served.clone()));
        let bystander = Bystander { stop, served, task };
        bystander.wait_for_requests(1).await;
        bystander
    }

    /// Waits until `n` more requests have been served (or the loop gave up on failures,
    /// which `finish` reports).
    pub async fn wait_for_requests(&self, n: u64) {
        let target = self.served.get() + n;
        while self.served.get() < target && !self.task.is_finished() {
            tokio::time::sleep(PAUSE).await;
        }
    }

    /// Stops the loop and asserts every request it made was answered correctly; returns
    /// how many were.
    pub async fn finish(self) -> u64 {
        self.wait_for_requests(3).await;
        self.stop.set(true);
        let failures = self.task.await.expect("the bystander does not panic");
        assert!(
            failures.is_empty(),
            "the bystander was not served: {failures:?}"
        );
        self.served.get()
    }
}

async fn bystander_loop(
    server: Rc<CoreServer<SimEngine>>,
    bytes: Vec<u8>,
    stop: Rc<Cell<bool>>,
    served: Rc<Cell<u64>>,
) -> Vec<String> {
    let path = chunk_path(&id_of(&bytes));
    let len = bytes.len() as u64;
    let mut failures = Vec::new();
    let mut client = None;
    let mut n = 0u64;
    while !stop.get() && failures.len() < 5 {
        if n.is_multiple_of(REQUESTS_PER_CONNECTION) {
            client = None;
        }
        let conn = match &mut client {
            Some(conn) => conn,
            None => client.insert(Client::connect(&server, Version::Http1).await),
        };
        // Every other request a range, somewhere else in the chunk each time.
        let whole = n.is_multiple_of(2);
        let (first, last) = ((n * 7919) % len, ((n * 7919) % len + 4095).min(len - 1));
        let range = format!("bytes={first}-{last}");
        let headers: &[(&str, &str)] = if whole { &[] } else { &[("Range", &range)] };
        let expected = if whole {
            &bytes[..]
        } else {
            &bytes[first as usize..=last as usize]
        };
        match conn.try_request("GET", &path, headers, b"").await {
            Ok(r) if r.status == (if whole { 200 } else { 206 }) && r.body == expected => {
                served.set(served.get() + 1);
            }
            Ok(r) => {
                failures.push(format!("request {n}: status {}", r.status));
                client = None;
            }
            Err(e) => {
                failures.push(format!("request {n}: {e}"));
                client = None;
            }
        }
        n += 1;
        tokio::time::sleep(PAUSE).await;
    }
    failures
}
