//! The data planes' own counters (`portico-metrics`: requests, durations, connections,
//! WebSockets, TLS handshakes, stream connections and bytes), summed over the workers at scrape time and encoded here.

use std::collections::BTreeMap;
use std::fmt;

use portico_metrics::{BUCKETS, Collected, HistogramTotal, WS_CLOSERS};
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;

use crate::families::{Labels, counters, gauges};

/// Encode everything `portico_metrics::global()` counted.
pub(crate) fn encode(enc: &mut DescriptorEncoder<'_>) -> fmt::Result {
    let c = portico_metrics::global().collect();
    requests(enc, &c)?;
    websockets(enc, &c)?;
    connections(enc, &c)?;
    streams(enc, &c)
}

fn series_labels(s: &portico_metrics::SeriesTotal) -> Labels {
    vec![
        ("site", s.key.site.clone()),
        ("route", s.key.route.clone()),
        ("upstream", s.key.upstream.clone()),
    ]
}

fn histograms(
    enc: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    rows: &[(Labels, &HistogramTotal)],
) -> fmt::Result {
    if rows.is_empty() {
        return Ok(());
    }
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Histogram)?;
    for (labels, h) in rows {
        let buckets: Vec<(f64, u64)> = BUCKETS.iter().copied().zip(h.buckets).collect();
        m.encode_family(labels)?.encode_histogram::<NoLabelSet>(
            h.sum_seconds,
            h.count(),
            &buckets,
            None,
        )?;
    }
    Ok(())
}

fn requests(enc: &mut DescriptorEncoder<'_>, c: &Collected) -> fmt::Result {
    let mut by_code = Vec::new();
    let mut durations = Vec::new();
    let mut upstream = Vec::new();
    for s in &c.series {
        if s.requests() == 0 {
            continue;
        }
        for &(code, n) in &s.statuses {
            let mut l = series_labels(s);
            let code = if code == 0 {
                "other".to_string()
            } else {
                code.to_string()
            };
            l.push(("code", code));
            by_code.push((l, n));
        }
        durations.push((series_labels(s), &s.request));
        if s.upstream.count() > 0 {
            upstream.push((series_labels(s), &s.upstream));
        }
    }
    counters(
        enc,
        "portico_http_requests",
        "HTTP requests answered, by site, route, upstream and status code (WebSocket upgrades included, as 101).",
        &by_code,
    )?;
    histograms(
        enc,
        "portico_http_request_duration_seconds",
        "Time from the request head to the response head sent back (the body streams after).",
        &durations,
    )?;
    histograms(
        enc,
        "portico_http_upstream_response_duration_seconds",
        "Time from sending the request upstream to its response head.",
        &upstream,
    )
}

#[derive(Default)]
struct Ws {
    opened: u64,
    closed: [u64; 8],
    bytes_in: u64,
    bytes_out: u64,
    messages_in: u64,
    messages_out: u64,
}

fn websockets(enc: &mut DescriptorEncoder<'_>, c: &Collected) -> fmt::Result {
    let mut per: BTreeMap<&str, Ws> = BTreeMap::new();
    for s in c.series.iter().filter(|s| s.ws_opened > 0) {
        let w = per.entry(s.key.upstream.as_str()).or_default();
        w.opened += s.ws_opened;
        for (t, n) in w.closed.iter_mut().zip(s.ws_closed) {
            *t += n;
        }
        w.bytes_in += s.ws_bytes_in;
        w.bytes_out += s.ws_bytes_out;
        w.messages_in += s.ws_messages_in;
        w.messages_out += s.ws_messages_out;
    }
    let up = |u: &str| vec![("upstream", u.to_string())];
    let opened: Vec<(Labels, u64)> = per.iter().map(|(u, w)| (up(u), w.opened)).collect();
    let open: Vec<(Labels, u64)> = per
        .iter()
        .map(|(u, w)| (up(u), w.opened.saturating_sub(w.closed.iter().sum())))
        .collect();
    let mut closed = Vec::new();
    let mut bytes = Vec::new();
    let mut messages = Vec::new();
    for (u, w) in &per {
        for (who, n) in WS_CLOSERS.iter().zip(w.closed) {
            let mut l = up(u);
            l.push(("closed_by", (*who).to_string()));
            closed.push((l, n));
        }
        for (dir, n) in [
            ("client_to_server", w.bytes_in),
            ("server_to_client", w.bytes_out),
        ] {
            let mut l = up(u);
            l.push(("direction", dir.to_string()));
            bytes.push((l, n));
        }
        for (dir, n) in [
            ("client_to_server", w.messages_in),
            ("server_to_client", w.messages_out),
        ] {
            let mut l = up(u);
            l.push(("direction", dir.to_string()));
            messages.push((l, n));
        }
    }
    counters(
        enc,
        "portico_websocket_sessions_opened",
        "WebSocket sessions relayed (101 sent to the client), per upstream.",
        &opened,
    )?;
    gauges(
        enc,
        "portico_websocket_sessions_open",
        "WebSocket sessions open now, per upstream.",
        &open,
    )?;
    counters(
        enc,
        "portico_websocket_sessions_closed",
        "WebSocket sessions ended, by who ended them (the access log's closed_by).",
        &closed,
    )?;
    counters(
        enc,
        "portico_websocket_bytes",
        "Bytes relayed on WebSockets (frames as they are on the wire), each way.",
        &bytes,
    )?;
    counters(
        enc,
        "portico_websocket_messages",
        "Data messages relayed on WebSockets (text and binary; a fragmented message counts once; control frames not counted), each way.",
        &messages,
    )
}

fn connections(enc: &mut DescriptorEncoder<'_>, c: &Collected) -> fmt::Result {
    let mut accepted = Vec::new();
    let mut open = Vec::new();
    let mut tls = Vec::new();
    for l in c
        .listeners
        .iter()
        .filter(|l| l.accepted > 0 || l.tls_failed + l.tls_timeout > 0)
    {
        let labels = vec![
            ("listener", l.key.listener.clone()),
            ("protocol", l.key.protocol.to_string()),
        ];
        accepted.push((labels.clone(), l.accepted));
        open.push((labels, l.open()));
        if l.key.protocol == "https" {
            for (result, n) in [
                ("success", l.tls_ok),
                ("failure", l.tls_failed),
                ("timeout", l.tls_timeout),
            ] {
                tls.push((
                    vec![
                        ("listener", l.key.listener.clone()),
                        ("result", result.to_string()),
                    ],
                    n,
                ));
            }
        }
    }
    counters(
        enc,
        "portico_connections_accepted",
        "Client connections accepted, by listener and protocol (h2: the https connections that negotiated HTTP/2).",
        &accepted,
    )?;
    gauges(
        enc,
        "portico_connections_open",
        "Client connections open now, by listener and protocol.",
        &open,
    )?;
    counters(
        enc,
        "portico_tls_handshakes",
        "TLS handshakes on https listeners by result (success, failure, timeout: not done within header_timeout).",
        &tls,
    )
}

fn streams(enc: &mut DescriptorEncoder<'_>, c: &Collected) -> fmt::Result {
    let mut conns = Vec::new();
    let mut bytes = Vec::new();
    let mut per: BTreeMap<(&str, &str), (u64, u64)> = BTreeMap::new();
    for s in &c.streams {
        conns.push((
            vec![
                ("listener", s.listener.clone()),
                ("upstream", s.upstream.clone()),
                ("end", s.end.to_string()),
            ],
            s.ended.connections,
        ));
        let b = per.entry((&s.listener, &s.upstream)).or_default();
        b.0 += s.ended.sent;
        b.1 += s.ended.received;
    }
    for ((listener, upstream), (sent, received)) in per {
        for (dir, n) in [("client_to_server", sent), ("server_to_client", received)] {
            bytes.push((
                vec![
                    ("listener", listener.to_string()),
                    ("upstream", upstream.to_string()),
                    ("direction", dir.to_string()),
                ],
                n,
            ));
        }
    }
    counters(
        enc,
        "portico_stream_connections",
        "Stream (TCP/TLS passthrough) connections ended, by listener, upstream (empty when none was chosen) and how they ended (the access log's end).",
        &conns,
    )?;
    counters(
        enc,
        "portico_stream_bytes",
        "Bytes relayed by ended stream connections, each way.",
        &bytes,
    )
}
