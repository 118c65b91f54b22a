//! Traffic policy, compiled for the hot path: who may use a route (`access`), and the
//! answer a refused request gets.
//!
//! A [`RoutePolicy`] is built with the snapshot, one per route that has a policy key (its
//! own or its site's); a route without one has `None` and pays one branch. The checks are
//! pure decisions on the client address and the request head: no worker, connection or
//! snapshot is known here.
//!
//! Lives here: this file (the policy of a route and its check) and the `allow`/`deny` list
//! ([`access`]).
//!
//! May import: `proto` and the ground floor. `snapshot` holds the compiled policies and
//! `request` applies them.

pub(crate) mod access;

use std::net::IpAddr;

use http::{Response, StatusCode};

use crate::body::Body;
use crate::error::error_response;
use crate::policy::access::AccessList;

/// The compiled policy of one route.
#[derive(Debug)]
pub(crate) struct RoutePolicy {
    access: Option<AccessList>,
}

impl RoutePolicy {
    /// The policy of a route, or `None` when it has no policy key.
    pub fn compile(policy: &portico_config::Policy) -> Option<Box<RoutePolicy>> {
        if policy.is_empty() {
            return None;
        }
        Some(Box::new(RoutePolicy {
            access: policy.access.as_deref().map(AccessList::new),
        }))
    }

    /// The refusal for a request from `client`, or `None` to let it through.
    pub fn check(&self, client: IpAddr) -> Option<Response<Body>> {
        if let Some(access) = &self.access
            && !access.allows(client)
        {
            return Some(error_response(StatusCode::FORBIDDEN));
        }
        None
    }
}
