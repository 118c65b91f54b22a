//! The integration tests of `portico-config`, in one test binary: each module is one concern,
//! `support` holds what they share.
#![allow(clippy::unwrap_used)]

mod defaults;
mod errors;
mod examples;
mod keys;
mod mutations;
mod support;
