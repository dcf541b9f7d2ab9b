//! The nodes a client talks to (`--node URL[,URL…]`) and the URL of each API path on them.
//!
//! A node URL is `http://HOST[:PORT][/PREFIX]`: plain http only (the client is built
//! without TLS; chunks are sealed and named by their hash, so the transport adds no
//! secrecy they lack, and nodes speak plain http). A path prefix is kept, so a node behind
//! a load balancer at `http://lb/chunkd/` works; a trailing `/` is dropped so joining
//! never doubles it.

use super::error::ClientError;

/// The nodes of one command, in the order given: the first is tried first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Nodes {
    bases: Vec<String>,
}

impl Nodes {
    /// Checks each URL (entries may themselves hold comma-separated lists).
    pub fn parse<S: AsRef<str>>(urls: &[S]) -> Result<Nodes, ClientError> {
        let mut bases = Vec::new();
        for url in urls.iter().flat_map(|u| u.as_ref().split(',')) {
            bases.push(base_of(url.trim())?);
        }
        if bases.is_empty() {
            return Err(ClientError::NodeUrl {
                url: String::new(),
                reason: "no node given".into(),
            });
        }
        Ok(Nodes { bases })
    }

    pub fn len(&self) -> usize {
        self.bases.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bases.is_empty()
    }

    /// The base URL of node `index`, as messages name it.
    pub fn name(&self, index: usize) -> &str {
        &self.bases[index]
    }

    /// The URL of `path` (which starts with `/`) on node `index`.
    pub fn url(&self, index: usize, path: &str) -> String {
        debug_assert!(path.starts_with('/'), "API paths are absolute: {path}");
        format!("{}{path}", self.bases[index])
    }
}

/// `url` without its trailing slashes, once checked to be an http URL with a host and
/// nothing after the path.
fn base_of(url: &str) -> Result<String, ClientError> {
    let invalid = |reason: &str| ClientError::NodeUrl {
        url: url.to_owned(),
        reason: reason.to_owned(),
    };
    let Some(rest) = url.strip_prefix("http://") else {
        return Err(invalid(if url.starts_with("https://") {
            "only http:// is supported (chunks are sealed; the client has no TLS)"
        } else {
            "expected http://HOST[:PORT][/PREFIX]"
        }));
    };
    let host = rest.split('/').next().unwrap_or_default();
    if host.is_empty() {
        return Err(invalid("no host"));
    }
    if rest.contains(['?', '#', ' ']) {
        return Err(invalid("a node URL has no query, fragment or spaces"));
    }
    if host.contains('@') {
        return Err(invalid("credentials go in --token, not the URL"));
    }
    Ok(url.trim_end_matches('/').to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_join_without_doubled_or_missing_slashes() {
        for (given, path, expected) in [
            (
                "http://127.0.0.1:7070",
                "/v1/gc",
                "http://127.0.0.1:7070/v1/gc",
            ),
            (
                "http://127.0.0.1:7070/",
                "/v1/gc",
                "http://127.0.0.1:7070/v1/gc",
            ),
            ("http://lb/chunkd/", "/v1/gc", "http://lb/chunkd/v1/gc"),
            ("http://lb/chunkd", "/v1/gc", "http://lb/chunkd/v1/gc"),
            ("http://[::1]:80//", "/healthz", "http://[::1]:80/healthz"),
        ] {
            let nodes = Nodes::parse(&[given]).unwrap();
            assert_eq!(nodes.url(0, path), expected, "{given}");
        }
    }

    #[test]
    fn lists_split_on_commas_and_keep_their_order() {
        let nodes = Nodes::parse(&["http://a:1,http://b:2", " http://c:3 "]).unwrap();
        assert_eq!(nodes.len(), 3);
        assert_eq!(
            [nodes.name(0), nodes.name(1), nodes.name(2)],
            ["http://a:1", "http://b:2", "http://c:3"]
        );
    }

    #[test]
    fn bad_urls_say_what_is_wrong() {
        for (given, says) in [
            ("https://a", "only http://"),
            ("a:7070", "expected http://"),
            ("http://", "no host"),
            ("http:///v1", "no host"),
            ("http://a/?x=1", "no query"),
            ("http://u:p@a", "--token"),
            ("http://a,", "expected http://"),
        ] {
            let error = Nodes::parse(&[given]).unwrap_err().to_string();
            assert!(error.contains(says), "{given}: {error}");
        }
        assert!(Nodes::parse::<&str>(&[]).is_err());
    }
}
