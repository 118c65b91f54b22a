//! Portico's data-plane counters: exact, and cheap enough to keep on the request path.
//!
//! # Shape
//!
//! - Label sets are interned once, when a snapshot is compiled (never per request): a
//!   [`SeriesId`] names (site, route, upstream), a [`ListenerId`] names (listener,
//!   protocol). The same labels get the same id across reloads.
//! - Every worker thread owns a [`WorkerMetrics`] (`!Send`): one block of counters per
//!   series it has used, reached by index. Only that thread writes its blocks, so an
//!   increment is a relaxed load and store of a word no other thread writes: no lock, no
//!   read-modify-write, no shared cache line, no allocation (a block is allocated the first
//!   time a worker sees a series).
//! - A scrape ([`Registry::collect`]) sums every worker's blocks, reading them with relaxed
//!   loads: each value it reads is one some increment left, so totals are exact once the
//!   requests they count have finished.
//!
//! Stream (L4) connections are counted apart ([`Registry::stream_accepted`],
//! [`Registry::stream_ended`]): once per connection, not per request, under one lock.
//!
//! Everything lives in the process-wide [`global`] registry: the HTTP plane writes, the
//! admin API reads.

use std::cell::RefCell;
use std::collections::HashMap;
use std::marker::PhantomData;
use std::rc::Rc;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering::Relaxed, Ordering::Release};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

/// Upper bounds (seconds) of the duration histograms' buckets; `+Inf` comes after.
pub const BUCKETS: [f64; 12] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
const BUCKETS_NS: [u64; 12] = [
    1_000_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
];

/// Distinct status codes counted per series and worker; more go to `other`.
pub const STATUS_SLOTS: usize = 8;

/// Who ended a WebSocket session (the access log's `closed_by`), in index order.
pub const WS_CLOSERS: [&str; 8] = [
    "client",
    "server",
    "timeout",
    "proxy",
    "client_error",
    "server_error",
    "client_silent",
    "server_silent",
];

/// Interned (site, route, upstream).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SeriesId(u32);

/// Interned (listener, protocol).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ListenerId(u32);

/// The labels of a request series.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeriesKey {
    /// The site's first host as written (`*` for a catch-all).
    pub site: String,
    /// The route's matcher as written (`/api/`, `= /exact`, `~ ^/re`), `-` when no route
    /// answered (early answers, no match).
    pub route: String,
    /// The upstream of a `proxy` route, empty otherwise.
    pub upstream: String,
}

/// The labels of a listener series.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ListenerKey {
    /// The listen address as configured.
    pub listener: String,
    /// `http`, `https`, `h2` (an https connection that negotiated HTTP/2), `stream`.
    pub protocol: &'static str,
}

/// A counter only its worker thread writes.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Add `n` (single writer: a relaxed load and store, not a read-modify-write).
    #[inline]
    fn add(&self, n: u64) {
        self.0.store(self.0.load(Relaxed).wrapping_add(n), Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

/// A duration histogram: observations per bucket (`BUCKETS`, then `+Inf`) and their sum.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [Counter; 13],
    sum_ns: Counter,
}

impl Histogram {
    #[inline]
    fn observe(&self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let i = BUCKETS_NS.partition_point(|&b| b < ns);
        self.buckets[i].add(1);
        self.sum_ns.add(ns);
    }
}

/// A histogram summed over workers: non-cumulative bucket counts and the sum in seconds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HistogramTotal {
    pub buckets: [u64; 13],
    pub sum_seconds: f64,
}

impl HistogramTotal {
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }

    fn add(&mut self, h: &Histogram) {
        for (t, b) in self.buckets.iter_mut().zip(&h.buckets) {
            *t += b.get();
        }
        self.sum_seconds += h.sum_ns.get() as f64 / 1e9;
    }
}

/// One worker's counters of one request series.
#[derive(Debug, Default)]
pub struct SeriesCounters {
    codes: [AtomicU16; STATUS_SLOTS],
    by_code: [Counter; STATUS_SLOTS],
    other_codes: Counter,
    request: Histogram,
    upstream: Histogram,
    ws_opened: Counter,
    ws_closed: [Counter; 8],
    ws_bytes_in: Counter,
    ws_bytes_out: Counter,
    ws_messages_in: Counter,
    ws_messages_out: Counter,
}

impl SeriesCounters {
    #[inline]
    fn status(&self, code: u16) {
        for (slot, count) in self.codes.iter().zip(&self.by_code) {
            let c = slot.load(Relaxed);
            if c == code {
                count.add(1);
                return;
            }
            if c == 0 {
                // The only writer claims the slot: publish the code, then count.
                slot.store(code, Release);
                count.add(1);
                return;
            }
        }
        self.other_codes.add(1);
    }
}

/// One worker's counters of one listener series.
#[derive(Debug, Default)]
pub struct ListenerCounters {
    accepted: Counter,
    closed: Counter,
    tls_ok: Counter,
    tls_failed: Counter,
    tls_timeout: Counter,
}

/// The blocks of one worker, as the scraper sees them.
#[derive(Debug, Default)]
struct WorkerBlocks {
    series: Mutex<Vec<Option<Arc<SeriesCounters>>>>,
    listeners: Mutex<Vec<Option<Arc<ListenerCounters>>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Pushes and reads only: a panic cannot leave a half-written value behind.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Label interning and every worker's blocks.
#[derive(Debug, Default)]
pub struct Registry {
    series: Mutex<(HashMap<SeriesKey, u32>, Vec<SeriesKey>)>,
    listeners: Mutex<(HashMap<ListenerKey, u32>, Vec<ListenerKey>)>,
    workers: Mutex<Vec<Arc<WorkerBlocks>>>,
    streams: Mutex<StreamCounts>,
}

/// Stream connections: accepted and closed per listener, ended with their bytes per
/// (listener, upstream, end).
#[derive(Debug, Default)]
struct StreamCounts {
    listeners: std::collections::BTreeMap<String, (u64, u64)>,
    ended: std::collections::BTreeMap<(String, String, &'static str), StreamEnded>,
}

/// Stream connections that ended one way, with their bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamEnded {
    pub connections: u64,
    /// Client to server.
    pub sent: u64,
    /// Server to client.
    pub received: u64,
}

/// Stream connections of one (listener, upstream, end) summed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamTotal {
    pub listener: String,
    /// Empty when no upstream was chosen (e.g. no SNI route).
    pub upstream: String,
    /// The access log's `end` word.
    pub end: &'static str,
    pub ended: StreamEnded,
}

/// The process-wide registry.
pub fn global() -> &'static Registry {
    static GLOBAL: OnceLock<Registry> = OnceLock::new();
    GLOBAL.get_or_init(Registry::default)
}

fn intern<K: Clone + Eq + std::hash::Hash>(table: &mut (HashMap<K, u32>, Vec<K>), key: K) -> u32 {
    if let Some(&id) = table.0.get(&key) {
        return id;
    }
    let id = u32::try_from(table.1.len()).unwrap_or(u32::MAX);
    table.1.push(key.clone());
    table.0.insert(key, id);
    id
}

impl Registry {
    /// The id of a request series (compile time, not per request).
    pub fn series(&self, site: &str, route: &str, upstream: &str) -> SeriesId {
        SeriesId(intern(
            &mut lock(&self.series),
            SeriesKey {
                site: site.to_string(),
                route: route.to_string(),
                upstream: upstream.to_string(),
            },
        ))
    }

    /// The id of a listener series.
    pub fn listener(&self, listener: &str, protocol: &'static str) -> ListenerId {
        ListenerId(intern(
            &mut lock(&self.listeners),
            ListenerKey {
                listener: listener.to_string(),
                protocol,
            },
        ))
    }

    /// Counters for a new worker thread (call on that thread).
    pub fn worker(&self) -> WorkerMetrics {
        let blocks = Arc::new(WorkerBlocks::default());
        lock(&self.workers).push(Arc::clone(&blocks));
        WorkerMetrics {
            blocks,
            series: RefCell::new(Vec::new()),
            listeners: RefCell::new(Vec::new()),
            _not_send: PhantomData,
        }
    }

    /// A stream connection was accepted on `listener`.
    pub fn stream_accepted(&self, listener: &str) {
        let mut s = lock(&self.streams);
        match s.listeners.get_mut(listener) {
            Some(c) => c.0 += 1,
            None => {
                s.listeners.insert(listener.to_string(), (1, 0));
            }
        }
    }

    /// A stream connection of `listener` closed (every accepted one, however it ended).
    pub fn stream_closed(&self, listener: &str) {
        if let Some(c) = lock(&self.streams).listeners.get_mut(listener) {
            c.1 += 1;
        }
    }

    /// A stream connection ended (`end`: the access log's word) after relaying `sent`
    /// bytes client to server and `received` back.
    pub fn stream_ended(
        &self,
        listener: &str,
        upstream: &str,
        end: &'static str,
        sent: u64,
        received: u64,
    ) {
        let mut s = lock(&self.streams);
        let e = s
            .ended
            .entry((listener.to_string(), upstream.to_string(), end))
            .or_default();
        e.connections += 1;
        e.sent += sent;
        e.received += received;
    }

    /// Everything counted so far, summed over workers.
    pub fn collect(&self) -> Collected {
        let series_keys = lock(&self.series).1.clone();
        let listener_keys = lock(&self.listeners).1.clone();
        let mut series: Vec<SeriesTotal> = series_keys
            .into_iter()
            .map(|key| SeriesTotal {
                key,
                ..SeriesTotal::default()
            })
            .collect();
        let mut listeners: Vec<ListenerTotal> = listener_keys
            .into_iter()
            .map(|key| ListenerTotal {
                key,
                ..ListenerTotal::default()
            })
            .collect();
        let workers = lock(&self.workers).clone();
        for w in &workers {
            for (total, block) in series.iter_mut().zip(lock(&w.series).iter()) {
                if let Some(b) = block {
                    total.add(b);
                }
            }
            for (total, block) in listeners.iter_mut().zip(lock(&w.listeners).iter()) {
                if let Some(b) = block {
                    total.accepted += b.accepted.get();
                    total.closed += b.closed.get();
                    total.tls_ok += b.tls_ok.get();
                    total.tls_failed += b.tls_failed.get();
                    total.tls_timeout += b.tls_timeout.get();
                }
            }
        }
        let s = lock(&self.streams);
        listeners.extend(
            s.listeners
                .iter()
                .map(|(l, (accepted, closed))| ListenerTotal {
                    key: ListenerKey {
                        listener: l.clone(),
                        protocol: "stream",
                    },
                    accepted: *accepted,
                    closed: *closed,
                    ..ListenerTotal::default()
                }),
        );
        let streams = s
            .ended
            .iter()
            .map(|((listener, upstream, end), ended)| StreamTotal {
                listener: listener.clone(),
                upstream: upstream.clone(),
                end,
                ended: *ended,
            })
            .collect();
        Collected {
            series,
            listeners,
            streams,
        }
    }
}

/// One request series summed over workers.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SeriesTotal {
    pub key: SeriesKey,
    /// (status code, requests); code 0 = `other` (past [`STATUS_SLOTS`] codes).
    pub statuses: Vec<(u16, u64)>,
    pub request: HistogramTotal,
    pub upstream: HistogramTotal,
    pub ws_opened: u64,
    /// By [`WS_CLOSERS`] index.
    pub ws_closed: [u64; 8],
    /// Client to server.
    pub ws_bytes_in: u64,
    /// Server to client.
    pub ws_bytes_out: u64,
    /// Data messages client to server.
    pub ws_messages_in: u64,
    /// Data messages server to client.
    pub ws_messages_out: u64,
}

impl SeriesTotal {
    fn add(&mut self, b: &SeriesCounters) {
        for (slot, count) in b.codes.iter().zip(&b.by_code) {
            let code = slot.load(std::sync::atomic::Ordering::Acquire);
            if code == 0 {
                break;
            }
            self.add_status(code, count.get());
        }
        let other = b.other_codes.get();
        if other > 0 {
            self.add_status(0, other);
        }
        self.request.add(&b.request);
        self.upstream.add(&b.upstream);
        self.ws_opened += b.ws_opened.get();
        for (t, c) in self.ws_closed.iter_mut().zip(&b.ws_closed) {
            *t += c.get();
        }
        self.ws_bytes_in += b.ws_bytes_in.get();
        self.ws_bytes_out += b.ws_bytes_out.get();
        self.ws_messages_in += b.ws_messages_in.get();
        self.ws_messages_out += b.ws_messages_out.get();
    }

    fn add_status(&mut self, code: u16, n: u64) {
        match self.statuses.iter_mut().find(|(c, _)| *c == code) {
            Some((_, total)) => *total += n,
            None => {
                self.statuses.push((code, n));
                self.statuses.sort_unstable();
            }
        }
    }

    /// Requests answered, all codes.
    pub fn requests(&self) -> u64 {
        self.statuses.iter().map(|(_, n)| n).sum()
    }
}

/// One listener series summed over workers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListenerTotal {
    pub key: ListenerKey,
    pub accepted: u64,
    pub closed: u64,
    pub tls_ok: u64,
    pub tls_failed: u64,
    pub tls_timeout: u64,
}

impl ListenerTotal {
    /// Connections open now.
    pub fn open(&self) -> u64 {
        self.accepted.saturating_sub(self.closed)
    }
}

/// A scrape's worth of totals.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Collected {
    pub series: Vec<SeriesTotal>,
    /// HTTP listeners, then stream listeners (protocol `stream`).
    pub listeners: Vec<ListenerTotal>,
    pub streams: Vec<StreamTotal>,
}

/// One worker thread's counters. `!Send`: only the thread that made it writes them.
#[derive(Debug)]
pub struct WorkerMetrics {
    blocks: Arc<WorkerBlocks>,
    series: RefCell<Vec<Option<Arc<SeriesCounters>>>>,
    listeners: RefCell<Vec<Option<Arc<ListenerCounters>>>>,
    _not_send: PhantomData<Rc<()>>,
}

/// The block at `i` of a worker's table, created (and shared with the scraper) on first use.
fn block<T: Default>(
    local: &RefCell<Vec<Option<Arc<T>>>>,
    shared: &Mutex<Vec<Option<Arc<T>>>>,
    i: usize,
    f: impl FnOnce(&T),
) {
    if let Some(Some(b)) = local.borrow().get(i) {
        f(b);
        return;
    }
    // First use of this series on this worker: allocate its block.
    let b = Arc::new(T::default());
    let mut l = local.borrow_mut();
    if l.len() <= i {
        l.resize_with(i + 1, || None);
    }
    l[i] = Some(Arc::clone(&b));
    let mut s = lock(shared);
    if s.len() <= i {
        s.resize_with(i + 1, || None);
    }
    s[i] = Some(Arc::clone(&b));
    drop((l, s));
    f(&b);
}

impl WorkerMetrics {
    #[inline]
    fn series(&self, id: SeriesId, f: impl FnOnce(&SeriesCounters)) {
        block(&self.series, &self.blocks.series, id.0 as usize, f);
    }

    #[inline]
    fn listener(&self, id: ListenerId, f: impl FnOnce(&ListenerCounters)) {
        block(&self.listeners, &self.blocks.listeners, id.0 as usize, f);
    }

    /// A request answered with `status` after `elapsed` (until its response head).
    #[inline]
    pub fn request(&self, id: SeriesId, status: u16, elapsed: Duration) {
        self.series(id, |s| {
            s.status(status);
            s.request.observe(elapsed);
        });
    }

    /// An upstream answered its response head after `elapsed`.
    #[inline]
    pub fn upstream_response(&self, id: SeriesId, elapsed: Duration) {
        self.series(id, |s| s.upstream.observe(elapsed));
    }

    /// A WebSocket session started (101 relayed).
    pub fn ws_opened(&self, id: SeriesId) {
        self.series(id, |s| s.ws_opened.add(1));
    }

    /// A WebSocket session ended: who ended it ([`WS_CLOSERS`] index) and the bytes moved
    /// each way.
    pub fn ws_closed(&self, id: SeriesId, closer: usize, bytes_in: u64, bytes_out: u64) {
        self.series(id, |s| {
            if let Some(c) = s.ws_closed.get(closer) {
                c.add(1);
            }
            s.ws_bytes_in.add(bytes_in);
            s.ws_bytes_out.add(bytes_out);
        });
    }

    /// A WebSocket session ended having relayed `c2s` data messages client to server and
    /// `s2c` back.
    pub fn ws_messages(&self, id: SeriesId, c2s: u64, s2c: u64) {
        self.series(id, |s| {
            s.ws_messages_in.add(c2s);
            s.ws_messages_out.add(s2c);
        });
    }

    /// A connection was accepted.
    #[inline]
    pub fn accepted(&self, id: ListenerId) {
        self.listener(id, |l| l.accepted.add(1));
    }

    /// A connection accepted with [`WorkerMetrics::accepted`] closed.
    #[inline]
    pub fn closed(&self, id: ListenerId) {
        self.listener(id, |l| l.closed.add(1));
    }

    /// A TLS handshake ended: `Ok(())`, `Err(false)` failed, `Err(true)` timed out.
    pub fn tls_handshake(&self, id: ListenerId, result: Result<(), bool>) {
        self.listener(id, |l| match result {
            Ok(()) => l.tls_ok.add(1),
            Err(false) => l.tls_failed.add(1),
            Err(true) => l.tls_timeout.add(1),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_for_the_same_labels() {
        let r = Registry::default();
        let a = r.series("example.com", "/", "app");
        assert_eq!(r.series("example.com", "/", "app"), a);
        assert_ne!(r.series("example.com", "/api/", "app"), a);
        assert_eq!(
            r.listener("0.0.0.0:80", "http"),
            r.listener("0.0.0.0:80", "http")
        );
    }

    #[test]
    fn counts_from_several_workers_add_up_exactly() {
        let r = Arc::new(Registry::default());
        let id = r.series("s", "/", "up");
        let other = r.series("s", "/x", "");
        let l = r.listener("127.0.0.1:1", "http");
        std::thread::scope(|scope| {
            for t in 0..4u16 {
                let r = Arc::clone(&r);
                scope.spawn(move || {
                    let w = r.worker();
                    for i in 0..1000u64 {
                        let code = if i % 10 == 0 { 502 } else { 200 };
                        w.request(id, code, Duration::from_micros(i * 30));
                        w.accepted(l);
                        w.closed(l);
                    }
                    // Past the slots: eleven distinct codes.
                    for code in 400..(411 + t) {
                        w.request(other, code, Duration::from_secs(20));
                    }
                    w.upstream_response(id, Duration::from_millis(3));
                    w.ws_opened(id);
                    w.ws_closed(id, 1, 10, 20);
                });
            }
        });
        let c = r.collect();
        let s = &c.series[0];
        assert_eq!(s.statuses, [(200, 3600), (502, 400)]);
        assert_eq!(s.requests(), 4000);
        assert_eq!(s.request.count(), 4000);
        assert_eq!(s.upstream.buckets[1], 4, "3 ms falls in the 5 ms bucket");
        assert_eq!(
            (s.ws_opened, s.ws_closed[1], s.ws_bytes_in, s.ws_bytes_out),
            (4, 4, 40, 80)
        );
        let o = &c.series[1];
        assert_eq!(o.requests(), 11 * 4 + 6);
        assert!(
            o.statuses.iter().any(|&(code, _)| code == 0),
            "overflow counted as other"
        );
        assert_eq!(o.request.buckets[12], 50, "20 s goes to +Inf");
        assert_eq!(c.listeners[0].accepted, 4000);
        assert_eq!(c.listeners[0].open(), 0);
    }

    #[test]
    fn histogram_buckets_are_upper_bounds() {
        let h = Histogram::default();
        h.observe(Duration::from_millis(1));
        h.observe(Duration::from_micros(1001));
        h.observe(Duration::ZERO);
        assert_eq!(h.buckets[0].get(), 2, "<= 1 ms");
        assert_eq!(h.buckets[1].get(), 1);
    }
}
