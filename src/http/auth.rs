//! Who may write: with `--write-token`, a PUT or DELETE must present it as
//! `Authorization: Bearer <token>` (401 otherwise); without one, writes are open on
//! loopback or with `--allow-unauthenticated-writes`, and refused (403) beyond it.

use http::StatusCode;
use http::header::{self, HeaderMap, HeaderValue};

use super::context::CoreContext;
use super::reply::{Reply, error};
use crate::store::Engine;

/// Why a write is refused, if it is.
pub fn write_refusal<E: Engine>(context: &CoreContext<E>, headers: &HeaderMap) -> Option<Reply> {
    let node = &context.node;
    match &node.config.write_token {
        Some(token) => {
            let presented = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(bearer_token);
            // Compared without an early exit, so response timing does not reveal how much
            // of a guess matched.
            if presented
                .is_some_and(|p| constant_time_eq::constant_time_eq(p.as_bytes(), token.as_bytes()))
            {
                return None;
            }
            let mut response = error(
                StatusCode::UNAUTHORIZED,
                "this write needs the node's bearer token",
            );
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            Some(response.into())
        }
        None if node.open_writes => None,
        None => Some(
            error(
                StatusCode::FORBIDDEN,
                "writes are refused: the node listens beyond loopback without a write token \
                 (set --write-token, or --allow-unauthenticated-writes)",
            )
            .into(),
        ),
    }
}

/// The token of an `Authorization: Bearer <token>` value. The scheme name is
/// case-insensitive (RFC 9110 §11.1): `bearer` and `BEARER` name the same scheme.
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("Bearer").then(|| token.trim())
}
