//! The owner of the event loop, on top of the crate: [`start::Server::start`] and
//! [`start::RunningServer`] (bind, start the worker loops on the process's workers, stop), and
//! [`RunningServer::reload`](start::RunningServer::reload) ([`reload`]).
//!
//! May import every floor below; nothing imports this one (the crate root re-exports its
//! public types).

pub(crate) mod drain;
pub(crate) mod reload;
pub(crate) mod start;
pub(crate) mod worker_loop;
