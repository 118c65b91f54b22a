//! Formatting one access-log line: nginx `combined` and JSON, plus the time formats.
//!
//! `combined` is byte-for-byte nginx's
//! `$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent
//! "$http_referer" "$http_user_agent"` with `$remote_user` always `-`, the time in UTC
//! (`+0000`), missing fields as `-`, and nginx's escaping (`"`, `\`, control and non-ASCII
//! bytes as `\xHH`), followed by `"$request_id"` when the request has one (every proxied
//! or answered request does: see `request::id`; `combined` parsers such as GoAccess's
//! ignore a trailing field, as with nginx's common `combined` + `$request_id` formats). A WebSocket line has status 101 and `$body_bytes_sent` = bytes sent to the
//! client over the whole session; no WebSocket field is appended (the JSON format carries
//! the WebSocket details).
//!
//! The logged time is when the request finished (`start + request_time`), as nginx does.
//! An IPv4 client seen on a dual-stack `[::]` listener (`::ffff:a.b.c.d`) is logged as
//! plain `a.b.c.d`.

use std::fmt::Write as _;
use std::time::Duration;

use super::LogRecord;

pub use portico_net::access_log::Civil;

fn version_str(v: http::Version) -> &'static str {
    match v {
        http::Version::HTTP_09 => "HTTP/0.9",
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_2 => "HTTP/2.0",
        http::Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/1.1",
    }
}

/// nginx's escaping of variables in the access log.
fn push_escaped_clf(out: &mut String, s: &str) {
    for b in s.bytes() {
        if b == b'"' || b == b'\\' || !(0x20..0x7f).contains(&b) {
            let _ = write!(out, "\\x{b:02X}");
        } else {
            out.push(b as char);
        }
    }
}

/// Append one nginx `combined` line (with the trailing newline).
pub fn combined(rec: &LogRecord<'_>, out: &mut String) {
    let (status, sent) = match &rec.websocket {
        Some(ws) => (101, ws.server_to_client),
        None => (rec.status, rec.bytes_sent),
    };
    let _ = write!(out, "{} - - [", rec.client.ip().to_canonical());
    Civil::from_system(rec.start + rec.request_time).write_clf(out);
    out.push_str("] \"");
    push_escaped_clf(out, rec.method);
    out.push(' ');
    push_escaped_clf(out, rec.uri);
    out.push(' ');
    out.push_str(version_str(rec.version));
    let _ = write!(out, "\" {status} {sent} \"");
    push_escaped_clf(out, rec.referer.unwrap_or("-"));
    out.push_str("\" \"");
    push_escaped_clf(out, rec.user_agent.unwrap_or("-"));
    out.push('"');
    if let Some(id) = rec.request_id {
        out.push_str(" \"");
        push_escaped_clf(out, id);
        out.push('"');
    }
    out.push('\n');
}

/// A JSON string literal.
fn push_json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn push_json_opt_str(out: &mut String, s: Option<&str>) {
    match s {
        Some(s) => push_json_str(out, s),
        None => out.push_str("null"),
    }
}

fn secs(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64())
}

/// Append one JSON object line (with the trailing newline).
pub fn json(rec: &LogRecord<'_>, out: &mut String) {
    out.push_str("{\"time\":\"");
    Civil::from_system(rec.start + rec.request_time).write_rfc3339(out);
    let _ = write!(
        out,
        "\",\"client\":\"{}\",\"client_port\":{}",
        rec.client.ip().to_canonical(),
        rec.client.port()
    );
    out.push_str(",\"method\":");
    push_json_str(out, rec.method);
    out.push_str(",\"uri\":");
    push_json_str(out, rec.uri);
    let _ = write!(
        out,
        ",\"protocol\":\"{}\",\"host\":",
        version_str(rec.version)
    );
    push_json_str(out, rec.host);
    let _ = write!(
        out,
        ",\"status\":{},\"bytes_sent\":{},\"bytes_received\":{},\"request_time\":{}",
        rec.status,
        rec.bytes_sent,
        rec.bytes_received,
        secs(rec.request_time)
    );
    match rec.upstream_addr {
        Some(a) => {
            let _ = write!(out, ",\"upstream_addr\":\"{a}\"");
        }
        None => out.push_str(",\"upstream_addr\":null"),
    }
    match rec.upstream_time {
        Some(t) => {
            let _ = write!(out, ",\"upstream_time\":{}", secs(t));
        }
        None => out.push_str(",\"upstream_time\":null"),
    }
    out.push_str(",\"user_agent\":");
    push_json_opt_str(out, rec.user_agent);
    out.push_str(",\"referer\":");
    push_json_opt_str(out, rec.referer);
    out.push_str(",\"request_id\":");
    push_json_opt_str(out, rec.request_id);
    if let Some(ws) = &rec.websocket {
        let _ = write!(
            out,
            ",\"websocket\":{{\"client_to_server\":{},\"server_to_client\":{},\"duration\":{},\"closed_by\":",
            ws.client_to_server,
            ws.server_to_client,
            secs(ws.duration)
        );
        push_json_str(out, ws.closed_by);
        out.push('}');
    }
    out.push_str("}\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clf_escaping() {
        let mut s = String::new();
        push_escaped_clf(&mut s, "a\"b\\c\n\u{e9}");
        assert_eq!(s, "a\\x22b\\x5Cc\\x0A\\xC3\\xA9");
    }

    #[test]
    fn json_escaping() {
        let mut s = String::new();
        push_json_str(&mut s, "a\"\\\n\u{1}é");
        assert_eq!(s, "\"a\\\"\\\\\\n\\u0001é\"");
    }
}
