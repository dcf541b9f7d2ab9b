//! A response as the tests see it — status, headers in order, body — and the assertions
//! api.md calls for (a JSON error body, an exact Content-Length). Shared by the tests of
//! the real binary (`harness`) and the in-process ones (`inproc`, which includes this file
//! by path), so both check answers alike.

/// A parsed HTTP/1.1 response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Asserts the status and an `application/json` body `{"error": "<non-empty>"}` with
    /// a matching Content-Length; returns the message.
    pub fn assert_error(&self, status: u16) -> String {
        assert_eq!(self.status, status, "status of {self:?}");
        assert_eq!(
            self.header("content-type"),
            Some("application/json"),
            "an error is JSON: {self:?}"
        );
        self.assert_length_matches();
        let value: serde_json::Value = serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("error body is not JSON ({e}): {:?}", self.text()));
        let object = value.as_object().expect("the error body is an object");
        assert_eq!(object.len(), 1, "only `error` in {value}");
        let message = object["error"].as_str().expect("`error` is a string");
        assert!(!message.is_empty(), "the error message is empty");
        message.to_owned()
    }

    /// Asserts Content-Length is present and equals the body's length.
    pub fn assert_length_matches(&self) {
        let len: usize = self
            .header("content-length")
            .unwrap_or_else(|| panic!("no Content-Length: {self:?}"))
            .parse()
            .expect("a numeric Content-Length");
        assert_eq!(len, self.body.len(), "Content-Length vs body");
    }

    /// The JSON body.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.text()))
    }
}

/// The status code of an HTTP/1.1 status line (`HTTP/1.1 200 OK`).
pub fn parse_status_line(line: &str) -> std::io::Result<u16> {
    let mut words = line.splitn(3, ' ');
    let (version, code) = (words.next(), words.next());
    if version != Some("HTTP/1.1") {
        return Err(invalid(format!("bad status line {line:?}")));
    }
    code.and_then(|c| c.parse().ok())
        .ok_or_else(|| invalid(format!("bad status line {line:?}")))
}

/// The name and (trimmed) value of a header line.
pub fn parse_header_line(line: &str) -> std::io::Result<(String, String)> {
    let (name, value) = line
        .split_once(':')
        .ok_or_else(|| invalid(format!("bad header line {line:?}")))?;
    Ok((name.to_owned(), value.trim().to_owned()))
}

/// Whether a response carries no body whatever its headers say: the answer to a HEAD,
/// a 1xx, a 204 or a 304 (RFC 9112 §6.3).
pub fn has_no_body(head: bool, status: u16) -> bool {
    head || (100..200).contains(&status) || status == 204 || status == 304
}

/// An error for a malformed response.
pub fn invalid(message: impl Into<String>) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, message.into())
}
