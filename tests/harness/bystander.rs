//! A client that keeps being served: GETs of one chunk in a loop while a test throws bad
//! input at the same server.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{Client, READ_LIMIT, chunk_path, id_of};

/// A client in a thread doing GETs (whole and ranged) of one chunk in a loop, on
/// keep-alive connections renewed every few requests, checking every byte, while a test
/// throws bad input at the same server.
pub struct Bystander {
    stop: Arc<AtomicBool>,
    served: Arc<AtomicU64>,
    thread: Option<JoinHandle<Vec<String>>>,
}

impl Bystander {
    pub fn start(addr: SocketAddr, bytes: Vec<u8>) -> Bystander {
        let stop = Arc::new(AtomicBool::new(false));
        let served = Arc::new(AtomicU64::new(0));
        let thread = {
            let (stop, served) = (stop.clone(), served.clone());
            std::thread::spawn(move || bystander_loop(addr, &bytes, &stop, &served))
        };
        let bystander = Bystander {
            stop,
            served,
            thread: Some(thread),
        };
        bystander.wait_for_requests(1);
        bystander
    }

    pub fn served(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }

    /// Waits until `n` more requests have been served correctly (fails after 30 s; returns
    /// early if the bystander has stopped on failures, which `finish` reports).
    pub fn wait_for_requests(&self, n: u64) {
        let target = self.served() + n;
        let started = Instant::now();
        while self.served() < target {
            if self.thread.as_ref().is_some_and(|t| t.is_finished()) {
                return; // it failed; finish() reports why
            }
            assert!(
                started.elapsed() < READ_LIMIT,
                "the bystander was not served"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Stops the loop and asserts every request it made was answered correctly.
    pub fn finish(mut self) -> u64 {
        self.wait_for_requests(3);
        self.stop.store(true, Ordering::Relaxed);
        let failures = self
            .thread
            .take()
            .expect("finished once")
            .join()
            .expect("the bystander thread does not panic");
        assert!(
            failures.is_empty(),
            "the bystander was not served: {failures:?}"
        );
        self.served()
    }
}

impl Drop for Bystander {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn bystander_loop(
    addr: SocketAddr,
    bytes: &[u8],
    stop: &AtomicBool,
    served: &AtomicU64,
) -> Vec<String> {
    const REQUESTS_PER_CONNECTION: u64 = 16;
    let path = chunk_path(&id_of(bytes));
    let len = bytes.len() as u64;
    let mut failures = Vec::new();
    let mut client = None;
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) && failures.len() < 5 {
        if n.is_multiple_of(REQUESTS_PER_CONNECTION) {
            client = None;
        }
        let conn = match &mut client {
            Some(conn) => conn,
            None => match Client::try_connect(addr) {
                Ok(conn) => client.insert(conn),
                Err(e) => {
                    failures.push(format!("connect: {e}"));
                    continue;
                }
            },
        };
        // Every other request a range, somewhere else in the chunk each time.
        let whole = n.is_multiple_of(2);
        let (first, last) = ((n * 7919) % len, ((n * 7919) % len + 4095).min(len - 1));
        let range = format!("bytes={first}-{last}");
        let headers: &[(&str, &str)] = if whole { &[] } else { &[("Range", &range)] };
        let expected = if whole {
            bytes
        } else {
            &bytes[first as usize..=last as usize]
        };
        match conn.try_request("GET", &path, headers, b"") {
            Ok(r) if r.status == (if whole { 200 } else { 206 }) && r.body == expected => {
                served.fetch_add(1, Ordering::Relaxed);
            }
            Ok(r) => {
                failures.push(format!(
                    "request {n}: status {} ({:?})",
                    r.status,
                    r.header("content-range")
                ));
                client = None;
            }
            Err(e) => {
                failures.push(format!("request {n}: {e}"));
                client = None;
            }
        }
        n += 1;
        std::thread::sleep(Duration::from_millis(5));
    }
    failures
}
