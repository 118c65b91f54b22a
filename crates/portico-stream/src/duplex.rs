//! The loop both byte pipes share (`pipe.rs` over two plain sockets, `tls_pipe.rs` after
//! TLS termination): per direction a [`Half`], then, until both directions passed their EOF
//! on, one side failed, the idle timeout passed with nothing moved, or the stop signal
//! turned true, one [`Sides::step`] at a time.
//!
//! Only how a step waits and moves bytes differs between the two stream kinds (readiness
//! plus `try_read`/splice(2) for plain sockets, polled reads through rustls for TLS); that
//! is the [`Sides`] implementation. The loop is generic (static dispatch, no allocation):
//! each pipe gets its own copy, with its step's future inline.

use std::io;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::log::End;

/// One direction's state: what the loop reads (`eof`, `shut`, `bytes`) and the copy buffer
/// both kinds keep for bytes the destination did not take; `extra` is the kind's own.
#[derive(Debug, Default)]
pub(crate) struct Half<X> {
    /// Bytes read but not yet written (empty, with no capacity, in the common case).
    pub(crate) pending: Vec<u8>,
    pub(crate) offset: usize,
    /// The source sent EOF.
    pub(crate) eof: bool,
    /// EOF has been passed on (write side shut down).
    pub(crate) shut: bool,
    pub(crate) bytes: u64,
    pub(crate) extra: X,
}

/// The two stream kinds' part of the loop.
pub(crate) trait Sides {
    /// Per-direction state of this kind (see [`Half::extra`]).
    type Extra: Default;
    /// Names the kind in debug logs.
    const KIND: &'static str;

    /// Wait until something can move in either direction (`up`: client to server, `down`:
    /// server to client) and move what can. `Ok(true)` when bytes, a flush or an EOF moved.
    /// Never returns while nothing can move (the loop's idle timer and stop signal end it).
    async fn step(
        &mut self,
        up: &mut Half<Self::Extra>,
        down: &mut Half<Self::Extra>,
    ) -> io::Result<bool>;
}

/// What a pipe moved and how it ended.
#[derive(Debug, Clone, Copy)]
pub struct PipeResult {
    pub sent: u64,
    pub received: u64,
    pub end: End,
}

/// Copy both ways until both sides closed, one side failed, `idle` passed with no byte
/// moved, or `stop` turns true.
pub(crate) async fn run<S: Sides>(
    sides: &mut S,
    idle: Duration,
    mut stop: watch::Receiver<bool>,
) -> PipeResult {
    let mut up = Half::<S::Extra>::default(); // client -> server
    let mut down = Half::<S::Extra>::default(); // server -> client
    let mut first_eof: Option<End> = None;
    let mut last = Instant::now();
    let sleep = tokio::time::sleep(idle);
    tokio::pin!(sleep);
    let end = loop {
        if up.shut && down.shut {
            break first_eof.unwrap_or(End::ClientClosed);
        }
        if *stop.borrow_and_update() {
            break End::Shutdown;
        }
        let step = tokio::select! {
            r = sides.step(&mut up, &mut down) => r,
            () = &mut sleep => {
                let deadline = last + idle;
                if Instant::now() >= deadline {
                    break End::IdleTimeout;
                }
                sleep.as_mut().reset(deadline.into());
                continue;
            }
            _ = stop.changed() => continue,
        };
        match step {
            Ok(moved) => {
                if moved {
                    last = Instant::now();
                }
                if first_eof.is_none() {
                    if up.eof {
                        first_eof = Some(End::ClientClosed);
                    } else if down.eof {
                        first_eof = Some(End::ServerClosed);
                    }
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, kind = S::KIND, "stream pipe error");
                break match e.kind() {
                    // A reset after one side closed normally still reads as that close.
                    io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe => {
                        first_eof.unwrap_or(End::Error)
                    }
                    _ => End::Error,
                };
            }
        }
    };
    PipeResult {
        sent: up.bytes,
        received: down.bytes,
        end,
    }
}
