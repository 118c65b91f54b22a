//! Traffic policy, compiled for the hot path: who may use a route (`access`,
//! `auth_basic`), how much (`limit_rate`, `limit_conn`), and the answer a refused request
//! gets. Checked in that order: `access`, the limits, then the credentials.
//!
//! A [`RoutePolicy`] is built with the snapshot, one per route that has a policy key (its
//! own or its site's); a route without one has `None` and pays one branch. The checks are
//! pure decisions on the client address and the request head: no worker, connection or
//! snapshot is known here.
//!
//! Lives here: this file (the policy of a route and its check), the `allow`/`deny` list
//! ([`access`]), Basic authentication ([`auth`]), the per-client tables of fixed size ([`limit`]) and the client address
//! behind trusted proxies ([`real_ip`]).
//!
//! A route's compiled `compress` ([`RouteCompress`]) rides along here (a route with only
//! `compress` has a policy without checks).
//!
//! May import: `compress`, `proto` and the ground floor. `snapshot` holds the compiled policies and
//! `request` applies them.

pub(crate) mod access;
pub(crate) mod auth;
pub(crate) mod limit;
pub(crate) mod real_ip;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderValue, Response, StatusCode};
use portico_config::LimitRate;

use crate::body::Body;
use crate::compress::RouteCompress;
use crate::error::error_response;
use crate::policy::access::AccessList;
use crate::policy::auth::BasicAuth;
use crate::policy::limit::{ConnSlot, ConnTable, RateTable};

/// The compiled policy of one route.
#[derive(Debug)]
pub(crate) struct RoutePolicy {
    access: Option<AccessList>,
    rate: Option<Arc<RateTable>>,
    conn: Option<Arc<ConnTable>>,
    auth: Option<BasicAuth>,
    /// `compress`: applied to the response, not a check.
    compress: Option<RouteCompress>,
}

/// The limit tables of one site: routes with the same `limit_rate` (or `limit_conn`),
/// such as all those that inherit the site's, count a client in one table.
#[derive(Debug, Default)]
pub(crate) struct SiteTables {
    rate: Vec<(LimitRate, Arc<RateTable>)>,
    conn: Vec<(u32, Arc<ConnTable>)>,
}

impl RoutePolicy {
    /// The policy of a route, or `None` when it has no policy key.
    pub fn compile(
        policy: &portico_config::Policy,
        tables: &mut SiteTables,
    ) -> Option<Box<RoutePolicy>> {
        let compress = policy.compress.resolve();
        if policy.is_empty() && compress.is_none() {
            return None;
        }
        let rate =
            policy.limit_rate.map(
                |limit| match tables.rate.iter().find(|(l, _)| *l == limit) {
                    Some((_, t)) => Arc::clone(t),
                    None => {
                        let t = RateTable::new(&limit);
                        tables.rate.push((limit, Arc::clone(&t)));
                        t
                    }
                },
            );
        let conn = policy
            .limit_conn
            .map(|max| match tables.conn.iter().find(|(m, _)| *m == max) {
                Some((_, t)) => Arc::clone(t),
                None => {
                    let t = ConnTable::new(max);
                    tables.conn.push((max, Arc::clone(&t)));
                    t
                }
            });
        Some(Box::new(RoutePolicy {
            access: policy.access.as_deref().map(AccessList::new),
            rate,
            conn,
            auth: policy.auth_basic.as_ref().map(BasicAuth::new),
            compress: compress.as_ref().map(RouteCompress::compile),
        }))
    }

    /// The route's response compression, if it has `compress`.
    #[inline]
    pub fn compress(&self) -> Option<&RouteCompress> {
        self.compress.as_ref()
    }

    /// Let a request from `client` through (with its `limit_conn` slot, to hold until the
    /// response, or the WebSocket, is done), or say why not.
    pub fn check(
        &self,
        client: IpAddr,
        headers: &mut HeaderMap,
    ) -> Result<Option<ConnSlot>, Refusal> {
        if let Some(access) = &self.access
            && !access.allows(client)
        {
            return Err(Refusal::Forbidden);
        }
        let slot = match &self.conn {
            Some(table) => Some(
                table
                    .acquire(client)
                    .ok_or(Refusal::TooMany(Duration::from_secs(1)))?,
            ),
            None => None,
        };
        if let Some(rate) = &self.rate {
            rate.check(client).map_err(Refusal::TooMany)?;
        }
        if let Some(auth) = &self.auth
            && !auth.admit(headers)
        {
            return Err(Refusal::Unauthorized(auth.challenge().clone()));
        }
        Ok(slot)
    }
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// `access`: 403.
    Forbidden,
    /// `auth_basic`: 401 with this `WWW-Authenticate`.
    Unauthorized(HeaderValue),
    /// `limit_rate` or `limit_conn`: 429, `Retry-After` from the wait.
    TooMany(Duration),
}

impl Refusal {
    /// The answer: `403`, or `429` with `Retry-After`.
    pub fn response(self) -> Response<Body> {
        match self {
            Refusal::Forbidden => error_response(StatusCode::FORBIDDEN),
            Refusal::Unauthorized(challenge) => {
                let mut resp = error_response(StatusCode::UNAUTHORIZED);
                resp.headers_mut()
                    .insert(http::header::WWW_AUTHENTICATE, challenge);
                resp
            }
            Refusal::TooMany(wait) => too_many(wait),
        }
    }
}

/// `429 Too Many Requests` with `Retry-After` in whole seconds (at least 1).
fn too_many(wait: Duration) -> Response<Body> {
    let mut resp = error_response(StatusCode::TOO_MANY_REQUESTS);
    let secs = wait.as_millis().div_ceil(1000).max(1);
    if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
        resp.headers_mut().insert(http::header::RETRY_AFTER, v);
    }
    resp
}
