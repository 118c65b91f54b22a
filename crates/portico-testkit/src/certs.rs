//! Test certificates made with rcgen: a CA ([`TestCa`]) that signs leaf certificates
//! ([`Leaf`]) for the names a test serves, the root store that trusts it, and a TLS client
//! config over that store ([`client_config`]).
//!
//! For tests only: making a certificate cannot fail short of a broken rcgen, so these
//! helpers panic (`expect`) instead of returning errors.

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};

/// A test CA that signs leaf certificates.
pub struct TestCa {
    /// The CA certificate, PEM.
    pub cert_pem: String,
    pub der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

/// A leaf certificate: chain PEM (leaf + CA) and key PEM.
pub struct Leaf {
    pub chain_pem: String,
    pub key_pem: String,
    pub der: CertificateDer<'static>,
}

impl TestCa {
    /// A new CA (fresh key) with common name `cn`.
    pub fn new(cn: &str) -> TestCa {
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.distinguished_name.push(DnType::CommonName, cn);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).expect("CA certificate");
        TestCa {
            cert_pem: cert.pem(),
            der: cert.der().clone(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A leaf for `names` (subject alternative names; the first is the common name).
    pub fn leaf(&self, names: &[&str]) -> Leaf {
        self.leaf_with(names, |_| {})
    }

    /// [`TestCa::leaf`] with `tweak` applied to the parameters before signing (validity,
    /// extensions).
    pub fn leaf_with(&self, names: &[&str], tweak: impl FnOnce(&mut CertificateParams)) -> Leaf {
        let key = KeyPair::generate().expect("leaf key");
        let mut params =
            CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .expect("leaf names");
        params
            .distinguished_name
            .push(DnType::CommonName, names.first().copied().unwrap_or("leaf"));
        tweak(&mut params);
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("leaf certificate");
        Leaf {
            chain_pem: format!("{}{}", cert.pem(), self.cert_pem),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
        }
    }

    /// A root store trusting this CA only.
    pub fn roots(&self) -> RootCertStore {
        let mut roots = RootCertStore::empty();
        roots
            .add(self.der.clone())
            .expect("CA certificate is a valid root");
        roots
    }
}

/// A client config trusting `roots`, offering `alpn`, only `versions` (empty: TLS 1.2 and
/// 1.3), resumption off: each handshake is a full one and shows the certificate the server
/// serves now (a resumed session reports the one of the session it resumes).
pub fn client_config(
    roots: RootCertStore,
    alpn: &[&[u8]],
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<ClientConfig> {
    let versions = if versions.is_empty() {
        rustls::DEFAULT_VERSIONS
    } else {
        versions
    };
    let mut config = ClientConfig::builder_with_provider(portico_tls::default_provider())
        .with_protocol_versions(versions)
        .expect("the provider supports TLS 1.2 and 1.3")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config.resumption = rustls::client::Resumption::disabled();
    Arc::new(config)
}

/// A client config that accepts any server certificate (still checking handshake
/// signatures): `portico_tls`'s own `verify = false` upstream config
/// ([`portico_tls::NoVerification`]), offering `alpn`, resumption off. For tests that look at
/// which certificate a server chose, also for names it does not cover.
pub fn any_cert_client_config(alpn: &[&[u8]]) -> ClientConfig {
    let tls = portico_config::UpstreamTls {
        server_name: None,
        verify: false,
        ca_file: None,
        client_cert: None,
        client_key: None,
    };
    let config = portico_tls::client_config(&tls, std::path::Path::new("."))
        .expect("a verify = false client config needs no files");
    let mut config = ClientConfig::clone(&config);
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config.resumption = rustls::client::Resumption::disabled();
    config
}
