//! One ACME order, start to finish: new order, answer each authorization's challenge, poll
//! until ready, finalize with a fresh key's CSR, poll for the certificate, clean up the
//! published challenges (also on failure).

use std::sync::Arc;

use instant_acme::{
    Account, AuthorizationStatus, ChallengeType, Identifier, NewOrder, OrderStatus, RetryPolicy,
};
use rcgen::{CertificateParams, DistinguishedName, KeyPair};
use rustls::crypto::CryptoProvider;

use super::shared::OrderLock;
use super::{AcmeSettings, ChallengeKind, Http01Challenges, KeyType, alpn};
use crate::error::TlsError;
use crate::resolver::CertResolver;

/// What an order produced: PEM chain and PEM key.
pub struct Issued {
    pub chain_pem: String,
    pub key_pem: String,
}

/// Withdraws published challenges when the order is over, whatever the outcome.
struct Published<'a> {
    http01: &'a Http01Challenges,
    resolver: &'a CertResolver,
    tokens: Vec<String>,
    alpn_names: Vec<String>,
}

impl Drop for Published<'_> {
    fn drop(&mut self) {
        for token in &self.tokens {
            self.http01.remove(token);
        }
        for name in &self.alpn_names {
            self.resolver.remove_alpn_challenge(name);
        }
    }
}

fn err(step: &'static str) -> impl Fn(instant_acme::Error) -> TlsError {
    move |e| match &e {
        instant_acme::Error::Api(problem)
            if problem.r#type.as_deref()
                == Some("urn:ietf:params:acme:error:accountDoesNotExist") =>
        {
            TlsError::AcmeAccountUnknown {
                step,
                reason: e.to_string(),
            }
        }
        _ => TlsError::acme(step, e),
    }
}

/// Run one order for `names` with `account`. With `shared` (cluster mode), each challenge
/// answer is also published through the order lock, before the CA is told to validate, so
/// whichever node the validation reaches answers it.
pub async fn run(
    account: &Account,
    names: &[String],
    settings: &AcmeSettings,
    http01: &Http01Challenges,
    resolver: &CertResolver,
    provider: &Arc<CryptoProvider>,
    shared: Option<&dyn OrderLock>,
) -> Result<Issued, TlsError> {
    let started = std::time::Instant::now();
    let step = |what: &str| tracing::debug!(names = ?names, elapsed_ms = started.elapsed().as_millis() as u64, "ACME {what}");
    let ids: Vec<Identifier> = names.iter().map(|n| Identifier::Dns(n.clone())).collect();
    let mut order = account
        .new_order(&NewOrder::new(&ids))
        .await
        .map_err(err("new order"))?;
    step("order created");
    let mut published = Published {
        http01,
        resolver,
        tokens: Vec::new(),
        alpn_names: Vec::new(),
    };
    let wanted = match settings.challenge {
        ChallengeKind::Http01 => ChallengeType::Http01,
        ChallengeKind::TlsAlpn01 => ChallengeType::TlsAlpn01,
    };
    let mut authorizations = order.authorizations();
    while let Some(result) = authorizations.next().await {
        let mut authz = result.map_err(err("authorization"))?;
        match authz.status {
            AuthorizationStatus::Pending => {}
            AuthorizationStatus::Valid => continue,
            other => {
                return Err(TlsError::acme(
                    "authorization",
                    format!("{} is {other:?}", authz.identifier()),
                ));
            }
        }
        let name = authz.identifier().to_string();
        let mut challenge = authz.challenge(wanted.clone()).ok_or_else(|| {
            TlsError::acme(
                "challenge",
                format!("the CA offers no {wanted:?} challenge for {name}"),
            )
        })?;
        let key_auth = challenge.key_authorization();
        match settings.challenge {
            ChallengeKind::Http01 => {
                http01.insert(challenge.token.clone(), key_auth.as_str().to_string());
                published.tokens.push(challenge.token.clone());
                if let Some(lock) = shared {
                    lock.publish_http01(&challenge.token, key_auth.as_str())
                        .await?;
                }
            }
            ChallengeKind::TlsAlpn01 => {
                let cert = alpn::challenge_cert(&name, key_auth.digest().as_ref(), provider)?;
                resolver.set_alpn_challenge(&name, cert.key);
                published.alpn_names.push(name.clone());
                if let Some(lock) = shared {
                    lock.publish_alpn01(&name, &cert.cert_pem, &cert.key_pem)
                        .await?;
                }
            }
        }
        challenge
            .set_ready()
            .await
            .map_err(err("challenge ready"))?;
    }

    step("challenges published and ready");
    let policy = RetryPolicy::new()
        .initial_delay(settings.tuning.poll_initial)
        .backoff(1.5)
        .timeout(settings.tuning.poll_timeout);
    let status = order.poll_ready(&policy).await.map_err(err("validation"))?;
    if status != OrderStatus::Ready {
        return Err(TlsError::acme(
            "validation",
            invalid_reason(&mut order).await,
        ));
    }

    step("order ready");
    let key = match settings.key_type {
        KeyType::EcdsaP256 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?,
        KeyType::Rsa2048 => {
            KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)?
        }
    };
    let mut params = CertificateParams::new(names.to_vec())?;
    params.distinguished_name = DistinguishedName::new();
    let csr = params.serialize_request(&key)?;
    step("key and CSR made");
    order
        .finalize_csr(csr.der())
        .await
        .map_err(err("finalize"))?;
    step("finalized");
    let chain_pem = order
        .poll_certificate(&policy)
        .await
        .map_err(err("certificate download"))?;
    step("certificate downloaded");
    drop(published);
    Ok(Issued {
        chain_pem,
        key_pem: key.serialize_pem(),
    })
}

/// Why an order became invalid: the failed challenges' problems, one per name.
async fn invalid_reason(order: &mut instant_acme::Order) -> String {
    let mut reasons = Vec::new();
    let mut authorizations = order.authorizations();
    while let Some(Ok(mut authz)) = authorizations.next().await {
        if authz.refresh().await.is_err() {
            continue;
        }
        let name = authz.identifier().to_string();
        for challenge in &authz.challenges {
            if let Some(problem) = &challenge.error {
                reasons.push(format!("{name}: {problem}"));
            }
        }
    }
    if reasons.is_empty() {
        "order is invalid".to_string()
    } else {
        reasons.join("; ")
    }
}
