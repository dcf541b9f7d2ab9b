//! The origin's settings (`--origin` and its companions, flattened into `chunkd serve`'s
//! [`crate::config::ServeConfig`]) and the parsing of an origin URL into a [`Location`].

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::units::parse_duration;

/// Where misses are filled from, and how hard it may be asked.
#[derive(Args, Clone, Debug)]
pub struct OriginConfig {
    /// Fill misses from this origin: `http(s)://HOST[:PORT]/PREFIX/` (a chunk is
    /// `GET URL{id}`), `s3://BUCKET[/PREFIX]` (key `PREFIX/{id}`; credentials from
    /// AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, region AWS_REGION, default us-east-1) or
    /// `file:///DIR/`. A GET or HEAD of a chunk the node does not hold then fetches it,
    /// verifies its BLAKE3 hash against the id, stores it and answers. Without an origin a
    /// miss is a 404.
    #[arg(long, env = "CHUNKD_ORIGIN", value_parser = parse_location)]
    pub origin: Option<Location>,

    /// The S3 endpoint of an `s3://` origin (e.g. `http://127.0.0.1:9000` for a local
    /// S3-compatible server; plain http allowed; requests are path-style). Default:
    /// AWS_ENDPOINT_URL, else AWS's endpoint for the region.
    #[arg(long, env = "CHUNKD_ORIGIN_ENDPOINT")]
    pub origin_endpoint: Option<String>,

    /// Time a fill may take in all — waiting for a fetch slot, connecting, the first byte,
    /// the body, and retries — before the request gets 504 (its waiters too).
    #[arg(long, env = "CHUNKD_ORIGIN_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub origin_timeout: Duration,

    /// Time one connection attempt to the origin may take (within --origin-timeout).
    #[arg(long, env = "CHUNKD_ORIGIN_CONNECT_TIMEOUT", default_value = "2s", value_parser = parse_duration)]
    pub origin_connect_timeout: Duration,

    /// Time one attempt may go without a byte from the origin — its response's headers,
    /// or the next piece of its body — before it fails and is retried (within
    /// --origin-timeout, which bounds the whole).
    #[arg(long, env = "CHUNKD_ORIGIN_FIRST_BYTE_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub origin_first_byte_timeout: Duration,

    /// Most origin fetches in flight on the node; more wait for a slot (within
    /// --origin-timeout, else 503). Concurrent misses of one chunk are one fetch.
    #[arg(long, env = "CHUNKD_ORIGIN_CONCURRENCY", default_value_t = 64)]
    pub origin_concurrency: usize,

    /// Retries of a fetch after a failure that may pass (connection errors, 5xx, 429),
    /// with exponential backoff and jitter, within --origin-timeout. A 404 or another 4xx
    /// is not retried.
    #[arg(long, env = "CHUNKD_ORIGIN_RETRIES", default_value_t = 2)]
    pub origin_retries: usize,

    /// How long an origin's 404 is remembered (the node answers 404 meanwhile without
    /// asking again); 0 remembers none. Chunks are content-addressed: one may appear at
    /// the origin later, but never changes.
    #[arg(long, env = "CHUNKD_ORIGIN_NOT_FOUND_TTL", default_value = "0s", value_parser = parse_duration)]
    pub origin_not_found_ttl: Duration,

    /// Flush the devices before a filled chunk is recorded, as for a PUT. Off by default:
    /// the origin holds the data, so a power loss may lose a fill (found by verification
    /// when read, and filled again) but never makes the node serve a wrong byte.
    #[arg(long, env = "CHUNKD_ORIGIN_DURABLE_FILLS", value_parser = clap::builder::BoolishValueParser::new())]
    pub origin_durable_fills: bool,
}

/// An origin, parsed from `--origin`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    /// `http://` or `https://`: `GET {base}{id}`; `base` ends with `/`.
    Http { base: String },
    /// `s3://BUCKET/PREFIX`: key `{prefix}{id}`; `prefix` is empty or ends with `/`.
    S3 { bucket: String, prefix: String },
    /// `file:///DIR/`: the file `DIR/{id}`.
    File { dir: PathBuf },
}

impl Location {
    /// Where the origin keeps chunk `id` (for logs and error messages: without any
    /// `user:password@` the URL carries).
    pub fn url_of(&self, id: &str) -> String {
        match self {
            Location::Http { base } => format!("{}{id}", self.redact(base)),
            Location::S3 { bucket, prefix } => format!("s3://{bucket}/{prefix}{id}"),
            Location::File { dir } => format!("file://{}", dir.join(id).display()),
        }
    }
}

impl Location {
    /// `text` without the `user:password@` of an http(s) origin's URL, wherever it
    /// appears (error messages of the HTTP client quote the URL it was given).
    pub fn redact(&self, text: &str) -> String {
        match self.userinfo() {
            Some(userinfo) => text.replace(userinfo, ""),
            None => text.to_owned(),
        }
    }

    /// The `user:password@` of an http(s) origin's URL, if it has one.
    fn userinfo(&self) -> Option<&str> {
        let Location::Http { base } = self else {
            return None;
        };
        let start = base.find("://")? + 3;
        let authority_end = base[start..].find('/').map_or(base.len(), |i| start + i);
        let at = base[start..authority_end].rfind('@')? + start;
        Some(&base[start..=at])
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.url_of(""))
    }
}

/// Parses an origin URL (see [`OriginConfig::origin`]).
pub fn parse_location(text: &str) -> Result<Location, String> {
    let Some((scheme, rest)) = text.split_once("://") else {
        return Err("expected http://, https://, s3:// or file:// and a location".into());
    };
    match scheme.to_ascii_lowercase().as_str() {
        "http" | "https" => {
            let host = rest.split('/').next().unwrap_or_default();
            if host.is_empty() {
                return Err("an http(s) origin needs a host".into());
            }
            if text.contains(['?', '#']) {
                return Err("an http(s) origin is a prefix: no query or fragment".into());
            }
            let mut base = text.to_owned();
            if !base.ends_with('/') {
                base.push('/');
            }
            Ok(Location::Http { base })
        }
        "s3" => {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err("an s3 origin needs a bucket: s3://BUCKET/PREFIX".into());
            }
            let prefix = prefix.trim_matches('/');
            let prefix = if prefix.is_empty() {
                String::new()
            } else {
                format!("{prefix}/")
            };
            Ok(Location::S3 {
                bucket: bucket.to_owned(),
                prefix,
            })
        }
        "file" => {
            if !rest.starts_with('/') {
                return Err("a file origin is an absolute directory: file:///DIR/".into());
            }
            Ok(Location::File {
                dir: PathBuf::from(rest),
            })
        }
        other => Err(format!(
            "unknown origin scheme {other:?}: expected http, https, s3 or file"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_urls_parse_into_their_locations() {
        let id = "ab".repeat(32);
        let http = parse_location("http://127.0.0.1:8080/chunks").unwrap();
        assert_eq!(
            http.url_of(&id),
            format!("http://127.0.0.1:8080/chunks/{id}")
        );
        let https = parse_location("https://origin.example/c/").unwrap();
        assert_eq!(https.url_of("x"), "https://origin.example/c/x");
        assert_eq!(
            parse_location("s3://bucket/some/prefix/").unwrap(),
            Location::S3 {
                bucket: "bucket".into(),
                prefix: "some/prefix/".into()
            }
        );
        assert_eq!(
            parse_location("s3://bucket").unwrap(),
            Location::S3 {
                bucket: "bucket".into(),
                prefix: String::new()
            }
        );
        assert_eq!(
            parse_location("file:///var/chunks/").unwrap(),
            Location::File {
                dir: PathBuf::from("/var/chunks/")
            }
        );
        let secret = parse_location("http://user:s3cret@origin.example:8080/c/").unwrap();
        assert_eq!(secret.url_of("x"), "http://origin.example:8080/c/x");
        assert_eq!(secret.to_string(), "http://origin.example:8080/c/");
        assert_eq!(
            secret.redact("GET http://user:s3cret@origin.example:8080/c/x failed"),
            "GET http://origin.example:8080/c/x failed"
        );
        for bad in [
            "ftp://x/",
            "http:///x",
            "s3:///p",
            "file://relative",
            "no-scheme",
            "http://h/?q",
        ] {
            assert!(parse_location(bad).is_err(), "{bad} was accepted");
        }
    }
}
