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
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::LogRecord;

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// A UTC calendar time broken into fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Civil {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    pub millis: u32,
}

impl Civil {
    /// Break a system time into UTC fields (times before 1970 clamp to the epoch).
    pub fn from_system(t: SystemTime) -> Civil {
        let d = t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
        let secs = d.as_secs();
        let days = (secs / 86_400) as i64;
        let rem = secs % 86_400;
        // Howard Hinnant's civil_from_days.
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let year = yoe + era * 400 + i64::from(month <= 2);
        Civil {
            year,
            month,
            day,
            hour: (rem / 3600) as u32,
            minute: (rem % 3600 / 60) as u32,
            second: (rem % 60) as u32,
            millis: d.subsec_millis(),
        }
    }

    /// nginx `$time_local` in UTC: `21/Nov/2026:05:20:00 +0000`.
    pub fn write_clf(&self, out: &mut String) {
        let mon = MONTHS[(self.month.clamp(1, 12) - 1) as usize];
        let _ = write!(
            out,
            "{:02}/{}/{:04}:{:02}:{:02}:{:02} +0000",
            self.day, mon, self.year, self.hour, self.minute, self.second
        );
    }

    /// RFC 3339 with milliseconds: `2026-11-21T05:20:00.000Z`.
    pub fn write_rfc3339(&self, out: &mut String) {
        let _ = write!(
            out,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            self.year, self.month, self.day, self.hour, self.minute, self.second, self.millis
        );
    }
}

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
    fn civil_dates() {
        let t = |s: u64| Civil::from_system(UNIX_EPOCH + Duration::from_secs(s));
        let mut s = String::new();
        t(0).write_clf(&mut s);
        assert_eq!(s, "01/Jan/1970:00:00:00 +0000");
        s.clear();
        t(951_782_400).write_clf(&mut s); // leap day 2000
        assert_eq!(s, "29/Feb/2000:00:00:00 +0000");
        s.clear();
        Civil::from_system(UNIX_EPOCH + Duration::from_millis(1_795_238_400_007))
            .write_rfc3339(&mut s);
        assert_eq!(s, "2026-11-21T05:20:00.007Z");
        s.clear();
        t(4_102_444_799).write_clf(&mut s);
        assert_eq!(s, "31/Dec/2099:23:59:59 +0000");
        s.clear();
        t(4_107_542_400).write_clf(&mut s); // 2100 is not a leap year
        assert_eq!(s, "01/Mar/2100:00:00:00 +0000");
    }

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
