//! `access = ["allow 10.0.0.0/8", "deny all"]`: nginx's `allow`/`deny`, first match wins,
//! no match allows.

use std::net::IpAddr;

use portico_config::AccessRule;

/// The rules of one route, in file order.
#[derive(Debug)]
pub(crate) struct AccessList {
    rules: Box<[AccessRule]>,
}

impl AccessList {
    pub fn new(rules: &[AccessRule]) -> AccessList {
        AccessList {
            rules: rules.into(),
        }
    }

    /// Whether `client` may pass: the first rule whose network holds it decides.
    pub fn allows(&self, client: IpAddr) -> bool {
        self.rules
            .iter()
            .find(|r| r.net.is_none_or(|net| net.contains(client)))
            .is_none_or(|r| r.allow)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use portico_config::IpNet;

    fn rule(allow: bool, net: Option<&str>) -> AccessRule {
        AccessRule {
            allow,
            net: net.map(|n| {
                let (a, p) = n.split_once('/').unwrap();
                IpNet {
                    addr: a.parse().unwrap(),
                    prefix: p.parse().unwrap(),
                }
            }),
        }
    }

    #[test]
    fn first_match_wins_and_no_match_allows() {
        let list = AccessList::new(&[
            rule(false, Some("127.0.0.3/32")),
            rule(true, Some("127.0.0.0/8")),
            rule(false, None),
        ]);
        assert!(list.allows("127.0.0.2".parse().unwrap()));
        assert!(!list.allows("127.0.0.3".parse().unwrap()));
        assert!(!list.allows("10.0.0.1".parse().unwrap()));
        assert!(list.allows("::ffff:127.0.0.1".parse().unwrap()));
        let open = AccessList::new(&[rule(false, Some("10.0.0.0/8"))]);
        assert!(open.allows("127.0.0.1".parse().unwrap()), "no match allows");
        assert!(AccessList::new(&[]).allows("10.0.0.1".parse().unwrap()));
    }
}
