//! The HTTP client instant-acme talks to the directory with.
//!
//! A hyper-rustls client whose roots are the Mozilla roots plus `directory_ca` (for a test CA
//! such as pebble), wrapped to remember the last `Retry-After` of an error response so the
//! manager can honour it (instant-acme's errors do not carry it).

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::Request;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use instant_acme::{BodyWrapper, BytesResponse, HttpClient};

use crate::error::TlsError;
use crate::pem::parse_chain;
use crate::provider::default_provider;

type Inner = Client<hyper_rustls::HttpsConnector<HttpConnector>, BodyWrapper<Bytes>>;

/// A cloneable ACME HTTP client that records `Retry-After`.
#[derive(Clone)]
pub struct AcmeHttp {
    inner: Arc<Inner>,
    retry_after: Arc<Mutex<Option<SystemTime>>>,
}

impl AcmeHttp {
    /// A client trusting the Mozilla roots and, if given, the CA certificates in `extra_ca`.
    pub fn new(extra_ca: Option<&Path>) -> Result<AcmeHttp, TlsError> {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        if let Some(path) = extra_ca {
            let pem = std::fs::read(path).map_err(|e| TlsError::io(path, e))?;
            for cert in parse_chain(&pem, path)? {
                roots.add(cert).map_err(|e| {
                    TlsError::rustls(format!("{}: directory_ca", path.display()), e)
                })?;
            }
        }
        let tls = rustls::ClientConfig::builder_with_provider(default_provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::rustls("ACME client TLS", e))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        // TCP_NODELAY: without it every JWS POST waits ~40 ms on Nagle + delayed ACK.
        let mut tcp = HttpConnector::new();
        tcp.set_nodelay(true);
        tcp.enforce_http(false);
        tcp.set_connect_timeout(Some(Duration::from_secs(10)));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_only()
            .enable_http1()
            .enable_http2()
            .wrap_connector(tcp);
        let inner = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Ok(AcmeHttp {
            inner: Arc::new(inner),
            retry_after: Arc::new(Mutex::new(None)),
        })
    }

    /// The `Retry-After` of the last error response since the previous call, if any.
    pub fn take_retry_after(&self) -> Option<Duration> {
        let at = self
            .retry_after
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()?;
        at.duration_since(SystemTime::now()).ok()
    }
}

fn parse_retry_after(value: &str) -> Option<SystemTime> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(SystemTime::now() + Duration::from_secs(secs));
    }
    httpdate::parse_http_date(value).ok()
}

impl HttpClient for AcmeHttp {
    fn request(
        &self,
        req: Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        let fut = self.inner.request(req);
        let slot = self.retry_after.clone();
        Box::pin(async move {
            let rsp = fut
                .await
                .map_err(|e| instant_acme::Error::Other(Box::new(e)))?;
            let status = rsp.status();
            if status.is_client_error() || status.is_server_error() {
                let after = rsp
                    .headers()
                    .get(http::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(parse_retry_after);
                if let Some(after) = after {
                    *slot.lock().unwrap_or_else(PoisonError::into_inner) = Some(after);
                }
            }
            Ok(BytesResponse::from(rsp))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_seconds_and_dates() {
        let t = parse_retry_after("120").unwrap();
        let d = t.duration_since(SystemTime::now()).unwrap();
        assert!(d > Duration::from_secs(118) && d <= Duration::from_secs(120));
        let date = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(3600));
        assert!(parse_retry_after(&date).is_some());
        assert!(parse_retry_after("soon").is_none());
    }
}
