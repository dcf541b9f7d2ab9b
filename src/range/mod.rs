//! HTTP byte ranges and conditional requests (RFC 9110 §13, §14), as pure functions.
