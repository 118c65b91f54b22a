//! The one HTTP response type of the tests: a parsed HTTP/1.1 response, as the raw-socket
//! test clients read it (status, headers in order, body bytes), so tests see exactly what
//! went over the wire.

/// A parsed response.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    /// First value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as text (lossy UTF-8).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The first line of the body (e.g. the echo backend's server name).
    pub fn first_line(&self) -> String {
        self.text().lines().next().unwrap_or("").to_string()
    }
}
