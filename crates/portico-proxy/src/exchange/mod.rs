//! What one request carries from its head to its last byte: the access-log record in the
//! making ([`log_line`]) and the response body sent to the client with the request's guards
//! (upstream connection lease, `read_timeout`, request in service, log line:
//! [`response`]).
//!
//! May import: `worker` (connection context, keep-alive pool), `proto`, `access_log` and
//! the ground floor.

pub(crate) mod log_line;
pub(crate) mod response;
