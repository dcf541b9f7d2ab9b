//! The command-line arguments `push` and `fetch` share: which nodes, the write token and
//! how many requests at once.

use super::error::ClientError;
use super::nodes::Nodes;
use super::retry::RetryPolicy;
use super::transport::Transport;

/// Requests in flight by default. Each is one 512 KiB chunk on its own keep-alive
/// connection; measured with `tuning/push_fetch_vs_curl.sh` (see `tuning/README.md`).
pub const DEFAULT_PARALLEL: usize = 16;

/// Where and how a command talks to nodes.
#[derive(clap::Args, Clone, Debug)]
pub struct NodeArgs {
    /// The node to talk to, as http://HOST:PORT. Several, comma-separated (or --node
    /// again), are equivalent nodes tried in order: a request that meets a connection
    /// error or a 5xx from one is sent to the next at once. Connection errors and 503s
    /// are retried with backoff (honouring Retry-After); a 4xx is never retried.
    #[arg(
        long = "node",
        value_name = "URL[,URL...]",
        required = true,
        value_delimiter = ','
    )]
    pub nodes: Vec<String>,
    /// The node's write token, sent as `Authorization: Bearer T` (nodes with
    /// --write-token need it for writes).
    #[arg(long, env = "CHUNKD_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Requests in flight at once (each on its own keep-alive connection).
    #[arg(long, default_value_t = DEFAULT_PARALLEL, value_parser = parse_parallel)]
    pub parallel: usize,
}

impl NodeArgs {
    /// The transport these arguments describe, with the default retry policy.
    pub fn transport(&self) -> Result<Transport, ClientError> {
        let nodes = Nodes::parse(&self.nodes)?;
        Ok(Transport::new(
            nodes,
            self.token.clone(),
            self.parallel,
            RetryPolicy::default(),
        ))
    }
}

/// Most requests in flight a command may ask for: each holds a chunk in memory and a
/// connection.
pub const PARALLEL_MAX: usize = 1024;

fn parse_parallel(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n) if (1..=PARALLEL_MAX).contains(&n) => Ok(n),
        _ => Err(format!("expected a number from 1 to {PARALLEL_MAX}")),
    }
}
