//! When a failed request is tried again, and where: the retry policy as a pure state
//! machine, so every rule is unit-tested without a network or a clock.
//!
//! A request starts at one node. A connection error or a 5xx from a node moves it on to
//! the next node at once (the `--node` list is a list of equivalent nodes). When every
//! node has failed once — a *round* — the request waits and starts another round, but only
//! if some node gave a transient failure: a connection error or `503 Service Unavailable`
//! (a node starting up, or an upload it is too busy to take now). The wait is exponential
//! backoff with jitter — round `r` waits a random time in `[b/2, b]` with
//! `b = min(base × 2^(r-1), max)` — so many workers that failed together do not come back
//! together; a `Retry-After` the node sent is honoured when it asks for longer (up to
//! `retry_after_max`). A 4xx is the client's fault and never retried; nor are other 5xx
//! once every node has given one. Rounds are bounded by `rounds`.
//!
//! Worked example, defaults (`base` 100 ms, `max` 5 s, 6 rounds), one node refusing
//! connections: attempts at 0, then after 50–100 ms, 100–200, 200–400, 400–800, 800–1600 ms
//! — at most ~3.1 s in all before the error.

use std::time::Duration;

/// How often and how long to retry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Rounds over all nodes, the first included (≥ 1).
    pub rounds: u32,
    /// Backoff before the second round.
    pub base: Duration,
    /// Longest backoff between rounds.
    pub max: Duration,
    /// Longest `Retry-After` honoured.
    pub retry_after_max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy {
            rounds: 6,
            base: Duration::from_millis(100),
            max: Duration::from_secs(5),
            retry_after_max: Duration::from_secs(30),
        }
    }
}

/// How one attempt failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// No answer: the connection was refused, reset or timed out.
    Connection,
    /// An answer with a status that is not a success, and its `Retry-After`, if any.
    Status {
        status: u16,
        retry_after: Option<Duration>,
    },
}

impl Failure {
    /// Whether another node may do better (the fault is on this node's side).
    fn try_elsewhere(self) -> bool {
        match self {
            Failure::Connection => true,
            Failure::Status { status, .. } => status >= 500,
        }
    }

    /// Whether the same nodes may do better later.
    fn transient(self) -> bool {
        matches!(
            self,
            Failure::Connection | Failure::Status { status: 503, .. }
        )
    }
}

/// What to do after a failed attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Try node `node` after waiting `wait` (zero when moving on within a round).
    Retry { node: usize, wait: Duration },
    /// Stop: report the failure.
    GiveUp,
}

/// The attempts of one request over `nodes` nodes.
#[derive(Clone, Debug)]
pub struct Attempts {
    policy: RetryPolicy,
    nodes: usize,
    /// The node this request started at; each round starts there again.
    first: usize,
    node: usize,
    /// Nodes tried in the current round.
    tried: usize,
    round: u32,
    /// Whether a failure of this round was transient.
    transient: bool,
    /// The longest `Retry-After` of this round.
    retry_after: Duration,
    attempts: u32,
}

impl Attempts {
    /// Attempts starting at node `first` of `nodes`.
    pub fn new(policy: RetryPolicy, nodes: usize, first: usize) -> Attempts {
        assert!(nodes > 0 && first < nodes, "node {first} of {nodes}");
        assert!(policy.rounds >= 1, "at least one round");
        Attempts {
            policy,
            nodes,
            first,
            node: first,
            tried: 0,
            round: 1,
            transient: false,
            retry_after: Duration::ZERO,
            attempts: 0,
        }
    }

    /// The node to try now.
    pub fn node(&self) -> usize {
        self.node
    }

    /// Attempts made so far (failed ones, once [`Attempts::failed`] has been told).
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// Records that the attempt at [`Attempts::node`] failed with `failure`; `jitter` in
    /// `[0, 1)` picks the wait within its band. Says what to do next.
    pub fn failed(&mut self, failure: Failure, jitter: f64) -> Next {
        self.attempts += 1;
        self.tried += 1;
        if !failure.try_elsewhere() {
            return Next::GiveUp;
        }
        self.transient |= failure.transient();
        if let Failure::Status {
            retry_after: Some(after),
            ..
        } = failure
        {
            self.retry_after = self.retry_after.max(after.min(self.policy.retry_after_max));
        }
        if self.tried < self.nodes {
            self.node = (self.node + 1) % self.nodes;
            return Next::Retry {
                node: self.node,
                wait: Duration::ZERO,
            };
        }
        if !self.transient || self.round >= self.policy.rounds {
            return Next::GiveUp;
        }
        let wait = backoff(&self.policy, self.round, jitter).max(self.retry_after);
        self.round += 1;
        self.node = self.first;
        self.tried = 0;
        self.transient = false;
        self.retry_after = Duration::ZERO;
        Next::Retry {
            node: self.node,
            wait,
        }
    }
}

/// The wait after round `round` (1-based): in `[b/2, b]`, `b = min(base × 2^(round-1), max)`.
pub fn backoff(policy: &RetryPolicy, round: u32, jitter: f64) -> Duration {
    let doublings = round.saturating_sub(1).min(30);
    let band = policy.base.saturating_mul(1 << doublings).min(policy.max);
    band / 2 + band.mul_f64(jitter.clamp(0.0, 1.0) / 2.0)
}

/// A `Retry-After` value in seconds (RFC 9110 §10.2.3); an HTTP date is not honoured
/// (`None`), as nodes send seconds.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    const REFUSED: Failure = Failure::Connection;

    fn status(status: u16) -> Failure {
        Failure::Status {
            status,
            retry_after: None,
        }
    }

    fn policy(rounds: u32) -> RetryPolicy {
        RetryPolicy {
            rounds,
            ..RetryPolicy::default()
        }
    }

    #[test]
    fn client_errors_are_never_retried() {
        for code in [400, 401, 403, 404, 413, 416] {
            let mut attempts = Attempts::new(policy(6), 3, 0);
            assert_eq!(attempts.failed(status(code), 0.5), Next::GiveUp, "{code}");
            assert_eq!(attempts.attempts(), 1);
        }
    }

    #[test]
    fn a_refused_connection_backs_off_round_after_round_then_gives_up() {
        let mut attempts = Attempts::new(policy(4), 1, 0);
        let mut waits = Vec::new();
        while let Next::Retry { node, wait } = attempts.failed(REFUSED, 1.0) {
            assert_eq!(node, 0);
            waits.push(wait);
        }
        // Jitter 1.0 takes the top of each band: 100, 200, 400 ms.
        assert_eq!(waits, [100, 200, 400].map(Duration::from_millis));
        assert_eq!(attempts.attempts(), 4);
    }

    #[test]
    fn backoff_stays_in_its_band_and_under_the_cap() {
        let policy = RetryPolicy::default();
        for round in 1..40 {
            let band = (policy.base * 2u32.pow(round.min(20) - 1)).min(policy.max);
            let low = backoff(&policy, round, 0.0);
            let high = backoff(&policy, round, 0.999_999);
            assert_eq!(low, band / 2, "round {round}");
            assert!(
                high <= band && high > low,
                "round {round}: {high:?} of {band:?}"
            );
        }
    }

    #[test]
    fn a_failing_node_hands_the_request_to_the_next_without_waiting() {
        let mut attempts = Attempts::new(policy(2), 3, 1);
        assert_eq!(attempts.node(), 1);
        let next = attempts.failed(REFUSED, 0.0);
        assert_eq!(
            next,
            Next::Retry {
                node: 2,
                wait: Duration::ZERO
            }
        );
        let next = attempts.failed(status(500), 0.0);
        assert_eq!(
            next,
            Next::Retry {
                node: 0,
                wait: Duration::ZERO
            }
        );
        // The round is over; one failure was transient, so a second round from node 1.
        let Next::Retry { node: 1, wait } = attempts.failed(status(502), 0.0) else {
            panic!("a second round from the first node");
        };
        assert_eq!(wait, Duration::from_millis(50));
    }

    #[test]
    fn server_errors_that_are_not_transient_end_after_one_round() {
        let mut attempts = Attempts::new(policy(6), 2, 0);
        assert!(matches!(
            attempts.failed(status(500), 0.0),
            Next::Retry { node: 1, .. }
        ));
        assert_eq!(attempts.failed(status(507), 0.0), Next::GiveUp);
    }

    #[test]
    fn retry_after_is_honoured_up_to_its_cap() {
        let busy = |seconds| Failure::Status {
            status: 503,
            retry_after: Some(Duration::from_secs(seconds)),
        };
        let mut attempts = Attempts::new(policy(3), 1, 0);
        let next = attempts.failed(busy(2), 0.0);
        assert_eq!(
            next,
            Next::Retry {
                node: 0,
                wait: Duration::from_secs(2)
            }
        );
        let next = attempts.failed(busy(3600), 0.0);
        assert_eq!(
            next,
            Next::Retry {
                node: 0,
                wait: Duration::from_secs(30)
            }
        );
        assert_eq!(attempts.failed(busy(1), 0.0), Next::GiveUp);
    }

    #[test]
    fn retry_after_parses_seconds_only() {
        assert_eq!(parse_retry_after(" 1 "), Some(Duration::from_secs(1)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
        assert_eq!(parse_retry_after("-1"), None);
    }
}
