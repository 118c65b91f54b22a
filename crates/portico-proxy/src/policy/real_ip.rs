//! The real client address behind trusted proxies (`[server] trusted_proxies`), as nginx's
//! `real_ip_header X-Forwarded-For; real_ip_recursive on;`: walking `X-Forwarded-For` from
//! the right, trusted addresses are skipped and the first untrusted one is the client (all
//! trusted: the leftmost); without `X-Forwarded-For`, `X-Real-IP`. Only asked for requests
//! whose TCP peer is itself trusted.

use std::net::IpAddr;

use http::{HeaderMap, HeaderValue};
use portico_config::IpNet;

/// The client of one request as its trusted proxy said, kept in the request's extensions.
#[derive(Debug, Clone)]
pub(crate) struct ClientAddr {
    pub ip: IpAddr,
    /// `ip` as a header value (`X-Real-IP`, `X-Forwarded-For` sent upstream).
    pub header: HeaderValue,
}

/// Whether `ip` is in one of `nets`.
pub(crate) fn is_trusted(nets: &[IpNet], ip: IpAddr) -> bool {
    nets.iter().any(|n| n.contains(ip))
}

/// The client the headers name, when they name one (a malformed address: none).
pub(crate) fn resolve(trusted: &[IpNet], headers: &HeaderMap) -> Option<ClientAddr> {
    let xff: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    let ip = if xff.is_empty() {
        parse(headers.get("x-real-ip")?.to_str().ok()?.trim())?
    } else {
        let mut chosen = None;
        for item in xff.iter().rev() {
            let ip = parse(item)?;
            chosen = Some(ip);
            if !is_trusted(trusted, ip) {
                break;
            }
        }
        chosen?
    };
    let header = HeaderValue::from_str(&ip.to_string()).ok()?;
    Some(ClientAddr { ip, header })
}

/// An address as proxies write it: `1.2.3.4`, `2001:db8::1`, `[2001:db8::1]`, and
/// with a port (`1.2.3.4:5678`, `[2001:db8::1]:5678`).
fn parse(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    if let Ok(sa) = s.parse::<std::net::SocketAddr>() {
        return Some(sa.ip().to_canonical());
    }
    s.strip_prefix('[')?
        .strip_suffix(']')?
        .parse::<IpAddr>()
        .ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter()
            .map(|s| {
                let (a, p) = s.split_once('/').unwrap();
                IpNet {
                    addr: a.parse().unwrap(),
                    prefix: p.parse().unwrap(),
                }
            })
            .collect()
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn recursive_from_the_right_skipping_trusted() {
        let t = nets(&["10.0.0.0/8", "127.0.0.0/8"]);
        let ip = |h: &[(&str, &str)]| resolve(&t, &headers(h)).map(|c| c.ip.to_string());
        // A client-supplied spoofed entry on the left is not believed.
        assert_eq!(
            ip(&[("x-forwarded-for", "6.6.6.6, 203.0.113.7, 10.1.1.1")]),
            Some("203.0.113.7".into())
        );
        // Several header lines are one list.
        assert_eq!(
            ip(&[
                ("x-forwarded-for", "198.51.100.2"),
                ("x-forwarded-for", "10.0.0.9")
            ]),
            Some("198.51.100.2".into())
        );
        // All trusted: the leftmost.
        assert_eq!(
            ip(&[("x-forwarded-for", "10.0.0.1, 10.0.0.2")]),
            Some("10.0.0.1".into())
        );
        // X-Real-IP when there is no X-Forwarded-For; ports and brackets.
        assert_eq!(
            ip(&[("x-real-ip", "[2001:db8::5]")]),
            Some("2001:db8::5".into())
        );
        assert_eq!(
            ip(&[("x-forwarded-for", "192.0.2.1:4711")]),
            Some("192.0.2.1".into())
        );
        // Garbage on the walk: no client from the headers.
        assert_eq!(ip(&[("x-forwarded-for", "1.2.3.4, nonsense")]), None);
        assert_eq!(ip(&[]), None);
    }
}
