//! The key layout in etcd, under `[cluster] prefix` (default `/portico`). Every key Portico
//! writes is built here, so the layout in docs/cluster.md has one source.
//!
//! ```text
//! PREFIX/members/NODE                       this node's registration (JSON), under its lease
//! PREFIX/servers/UPSTREAM/ADDR              admin state of a server: "drain" | "disable"
//! PREFIX/registry/UPSTREAM/ADDR             a server registered by `portico register`, under its lease
//! PREFIX/acme/account/DIRECTORY-ID          the cluster's ACME account (JSON credentials)
//! PREFIX/acme/locks/CERT-ID                 the order lock of one certificate, under the orderer's lease
//! PREFIX/acme/http01/TOKEN                  an HTTP-01 key authorization
//! PREFIX/acme/alpn01/NAME                   a TLS-ALPN-01 challenge certificate and key (PEM)
//! PREFIX/certs/CERT-ID                      an issued certificate: chain and (encrypted) key
//! ```

/// Builds the keys of one cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    /// `prefix` as validated by the config (starts with `/`, no trailing `/`).
    pub fn new(prefix: &str) -> Keys {
        Keys {
            prefix: prefix.trim_end_matches('/').to_string(),
        }
    }

    /// The prefix itself.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn join(&self, parts: &[&str]) -> String {
        let mut k = self.prefix.clone();
        for p in parts {
            k.push('/');
            k.push_str(p);
        }
        k
    }

    /// Folder of the member registrations (ends with `/`, for prefix reads and watches).
    pub fn members(&self) -> String {
        self.join(&["members", ""])
    }

    /// One node's registration.
    pub fn member(&self, node: &str) -> String {
        self.join(&["members", node])
    }

    /// Folder of the servers' admin states.
    pub fn server_states(&self) -> String {
        self.join(&["servers", ""])
    }

    /// The admin state of one server of one upstream.
    pub fn server_state(&self, upstream: &str, addr: &str) -> String {
        self.join(&["servers", upstream, addr])
    }

    /// Folder of every registered server.
    pub fn registry(&self) -> String {
        self.join(&["registry", ""])
    }

    /// Folder of the servers registered for one upstream.
    pub fn registry_upstream(&self, upstream: &str) -> String {
        self.join(&["registry", upstream, ""])
    }

    /// One registered server.
    pub fn registered(&self, upstream: &str, addr: &str) -> String {
        self.join(&["registry", upstream, addr])
    }

    /// The ACME account for one directory.
    pub fn acme_account(&self, directory_id: &str) -> String {
        self.join(&["acme", "account", directory_id])
    }

    /// The order lock of one certificate.
    pub fn acme_lock(&self, cert_id: &str) -> String {
        self.join(&["acme", "locks", cert_id])
    }

    /// Folder of HTTP-01 key authorizations.
    pub fn http01_all(&self) -> String {
        self.join(&["acme", "http01", ""])
    }

    /// One HTTP-01 key authorization.
    pub fn http01(&self, token: &str) -> String {
        self.join(&["acme", "http01", token])
    }

    /// Folder of TLS-ALPN-01 challenge certificates.
    pub fn alpn01_all(&self) -> String {
        self.join(&["acme", "alpn01", ""])
    }

    /// The TLS-ALPN-01 challenge certificate of one name.
    pub fn alpn01(&self, name: &str) -> String {
        self.join(&["acme", "alpn01", name])
    }

    /// Folder of issued certificates.
    pub fn certs(&self) -> String {
        self.join(&["certs", ""])
    }

    /// One issued certificate.
    pub fn cert(&self, cert_id: &str) -> String {
        self.join(&["certs", cert_id])
    }
}

#[cfg(test)]
mod tests {
    use super::Keys;

    #[test]
    fn layout() {
        let k = Keys::new("/portico");
        assert_eq!(k.member("edge-1"), "/portico/members/edge-1");
        assert_eq!(k.members(), "/portico/members/");
        assert_eq!(
            k.server_state("app", "10.0.0.1:80"),
            "/portico/servers/app/10.0.0.1:80"
        );
        assert_eq!(k.registry_upstream("app"), "/portico/registry/app/");
        assert_eq!(k.http01("tok"), "/portico/acme/http01/tok");
        assert_eq!(k.cert("a.example"), "/portico/certs/a.example");
    }
}
