//! The worker threads both planes run on: `[server] threads` of them (0 = one per core) for
//! the whole process, each a single-threaded tokio runtime with a `LocalSet`.
//!
//! Work reaches a worker two ways: [`Workers::spawn_local_on`] runs a `!Send` task built on
//! that worker's thread (the HTTP plane's per-worker loop, with its `Rc` state and
//! `spawn_local`ed connections), and [`Workers::handle`] spawns `Send` tasks on its runtime
//! (the stream plane's accept loops and connections). A plane never starts threads of its
//! own, so a config with sites and streams runs `threads` workers, not twice as many.
//!
//! [`Workers::shutdown`] ends the threads: whatever still runs on them is dropped (the hard
//! close after a plane's grace period). The owner (the binary, or a plane started alone)
//! calls it once every plane on the pool has stopped, then [`Workers::join`].

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use tokio::runtime::Handle;
use tokio::sync::{mpsc, watch};

/// A `!Send` task to build on a worker's thread.
type Job = Box<dyn FnOnce() -> Pin<Box<dyn Future<Output = ()>>> + Send>;

/// The process's worker threads. Cheap to clone; every clone is the same pool.
#[derive(Debug, Clone)]
pub struct Workers {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    handles: Vec<Handle>,
    jobs: Vec<mpsc::UnboundedSender<Job>>,
    stop: watch::Sender<bool>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

/// `threads` as configured: 0 means one per core.
pub fn thread_count(threads: usize) -> usize {
    match threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    }
}

impl Workers {
    /// Start `thread_count(threads)` workers named `portico-worker-N`.
    pub fn start(threads: usize) -> io::Result<Workers> {
        let count = thread_count(threads);
        let (stop, _) = watch::channel(false);
        let mut handles = Vec::with_capacity(count);
        let mut jobs = Vec::with_capacity(count);
        let mut threads = Vec::with_capacity(count);
        let mut runtimes = Vec::with_capacity(count);
        for _ in 0..count {
            // All runtimes first: a failure leaves no thread behind.
            runtimes.push(
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?,
            );
        }
        for (i, rt) in runtimes.into_iter().enumerate() {
            handles.push(rt.handle().clone());
            let (tx, rx) = mpsc::unbounded_channel::<Job>();
            jobs.push(tx);
            let stop_rx = stop.subscribe();
            let spawned = std::thread::Builder::new()
                .name(format!("portico-worker-{i}"))
                .spawn(move || run(rt, rx, stop_rx));
            match spawned {
                Ok(t) => threads.push(t),
                Err(e) => {
                    stop.send_replace(true);
                    for t in threads {
                        let _ = t.join();
                    }
                    return Err(e);
                }
            }
        }
        Ok(Workers {
            inner: Arc::new(Inner {
                handles,
                jobs,
                stop,
                threads: Mutex::new(threads),
            }),
        })
    }

    /// How many workers.
    pub fn len(&self) -> usize {
        self.inner.handles.len()
    }

    /// Always false (a pool has at least one worker); for clippy's `len_without_is_empty`.
    pub fn is_empty(&self) -> bool {
        self.inner.handles.is_empty()
    }

    /// The runtime of worker `i` (modulo the pool size), to spawn `Send` tasks on it.
    pub fn handle(&self, i: usize) -> &Handle {
        &self.inner.handles[i % self.inner.handles.len()]
    }

    /// Build a `!Send` task with `make` on worker `i`'s thread (modulo the pool size) and
    /// run it there (`spawn_local`: it may `spawn_local` more). Dropped unrun once the pool
    /// is shut down.
    pub fn spawn_local_on<F, Fut>(&self, i: usize, make: F)
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        let job: Job = Box::new(move || Box::pin(make()));
        let _ = self.inner.jobs[i % self.inner.jobs.len()].send(job);
    }

    /// End every worker thread (without waiting): tasks still running are dropped.
    pub fn shutdown(&self) {
        self.inner.stop.send_replace(true);
    }

    /// Whether [`shutdown`](Workers::shutdown) was called.
    pub fn is_shut_down(&self) -> bool {
        *self.inner.stop.borrow()
    }

    /// Wait for the worker threads to end (after [`shutdown`](Workers::shutdown)). Must not
    /// be called from a worker thread.
    pub fn join(&self) {
        let threads = std::mem::take(
            &mut *self
                .inner
                .threads
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        for t in threads {
            let _ = t.join();
        }
    }
}

/// One worker thread: run jobs until the pool shuts down, then drop what is left.
fn run(
    rt: tokio::runtime::Runtime,
    mut jobs: mpsc::UnboundedReceiver<Job>,
    mut stop: watch::Receiver<bool>,
) {
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        loop {
            tokio::select! {
                job = jobs.recv() => match job {
                    Some(job) => {
                        tokio::task::spawn_local(job());
                    }
                    None => break,
                },
                r = stop.wait_for(|s| *s) => {
                    let _ = r;
                    break;
                }
            }
        }
    });
    // Dropping the LocalSet and the runtime cancels whatever still runs (hard close).
    drop(local);
    drop(rt);
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::rc::Rc;
    use std::time::Duration;

    #[test]
    fn local_and_send_tasks_run_on_the_named_workers() {
        let pool = Workers::start(2).unwrap();
        assert_eq!(pool.len(), 2);
        let (tx, rx) = std::sync::mpsc::channel();
        for i in 0..2 {
            let tx = tx.clone();
            pool.spawn_local_on(i, move || async move {
                let here = Rc::new(std::thread::current().name().map(String::from));
                tokio::task::spawn_local(async move {
                    tx.send((*here).clone()).unwrap();
                });
            });
        }
        let tx2 = tx.clone();
        pool.handle(1).spawn(async move {
            tx2.send(std::thread::current().name().map(String::from))
                .unwrap();
        });
        let mut names: Vec<_> = (0..3)
            .map(|_| rx.recv_timeout(Duration::from_secs(5)).unwrap().unwrap())
            .collect();
        names.sort();
        assert_eq!(
            names,
            ["portico-worker-0", "portico-worker-1", "portico-worker-1"]
        );
        pool.shutdown();
        pool.join();
    }

    #[test]
    fn shutdown_drops_what_still_runs() {
        let pool = Workers::start(1).unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        pool.handle(0).spawn(async move {
            let _keep = tx;
            std::future::pending::<()>().await;
        });
        pool.shutdown();
        pool.join();
        // The task (and the sender it held) is gone.
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(5)),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected)
        );
    }
}
