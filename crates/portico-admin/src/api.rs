//! The admin API's routes: one function from request to response.
//!
//! | method | path | answer |
//! |---|---|---|
//! | GET | `/` | the dashboard (one HTML page, compiled in) |
//! | GET | `/metrics` | Prometheus text |
//! | GET | `/api/v1/status` | the status JSON ([`crate::status::Status`]) |
//! | POST | `/api/v1/reload` | 200 applied, 422 invalid (diagnostics), 500 failed |
//! | POST | `/api/v1/upstreams/{name}/servers/{addr}/{drain,enable,disable}` | 200 + the server's new state and its `scope` (`cluster`: written to etcd, every node applies it; `node`: this node only, with `cluster_error` when etcd could not be reached), 404 unknown |
//!
//! Every POST passes [`crate::auth`] first. Errors are JSON `{"error": "..."}`. Responses
//! are never cached and carry `X-Content-Type-Options: nosniff`; the dashboard also a
//! content security policy that allows only itself.

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use percent_encoding::percent_decode_str;
use portico_balance::{AdminState, ServerId};
use serde_json::json;

use crate::state::{Admin, ReloadResult};
use crate::{auth, metrics, status};

const DASHBOARD: &str = include_str!("dashboard.html");
const DASHBOARD_CSP: &str = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

type Resp = Response<Full<Bytes>>;

fn respond(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Resp {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    r
}

fn json_resp(status: StatusCode, value: &serde_json::Value) -> Resp {
    let mut body = serde_json::to_vec_pretty(value).unwrap_or_default();
    body.push(b'\n');
    respond(status, "application/json", body)
}

fn error(status: StatusCode, message: impl Into<String>) -> Resp {
    json_resp(status, &json!({ "error": message.into() }))
}

fn not_allowed(allow: &'static str) -> Resp {
    let mut r = error(StatusCode::METHOD_NOT_ALLOWED, format!("use {allow}"));
    r.headers_mut()
        .insert("allow", HeaderValue::from_static(allow));
    r
}

/// Answer one request.
pub(crate) async fn handle(admin: &Admin, req: Request<Incoming>) -> Resp {
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match segments.as_slice() {
        [""] | ["index.html"] => match method {
            Method::GET | Method::HEAD => {
                let mut r = respond(StatusCode::OK, "text/html; charset=utf-8", DASHBOARD);
                r.headers_mut().insert(
                    "content-security-policy",
                    HeaderValue::from_static(DASHBOARD_CSP),
                );
                r
            }
            _ => not_allowed("GET"),
        },
        ["metrics"] => match method {
            Method::GET | Method::HEAD => respond(
                StatusCode::OK,
                metrics::CONTENT_TYPE,
                metrics::render(admin),
            ),
            _ => not_allowed("GET"),
        },
        ["api", "v1", "status"] => match method {
            Method::GET | Method::HEAD => {
                let s = status::build(admin);
                match serde_json::to_value(&s) {
                    Ok(v) => json_resp(StatusCode::OK, &v),
                    Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
                }
            }
            _ => not_allowed("GET"),
        },
        ["api", "v1", "reload"] => match method {
            Method::POST => match refusal(admin, &req) {
                Some(r) => r,
                None => reload(admin).await,
            },
            _ => not_allowed("POST"),
        },
        ["api", "v1", "upstreams", name, "servers", addr, action] => match method {
            Method::POST => match refusal(admin, &req) {
                Some(r) => r,
                None => server_action(admin, name, addr, action).await,
            },
            _ => not_allowed("POST"),
        },
        _ => error(StatusCode::NOT_FOUND, format!("no such endpoint: {path}")),
    }
}

/// The checks of [`crate::auth`] for a mutating call: the refusal to send, if any.
fn refusal(admin: &Admin, req: &Request<Incoming>) -> Option<Resp> {
    let config = admin.config();
    let r = auth::check_mutating(req.headers(), config.admin.token_file.as_deref()).err()?;
    let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::FORBIDDEN);
    let mut resp = error(status, r.message);
    if status == StatusCode::UNAUTHORIZED {
        resp.headers_mut().insert(
            "www-authenticate",
            HeaderValue::from_static("Bearer realm=\"portico-admin\""),
        );
    }
    Some(resp)
}

async fn reload(admin: &Admin) -> Resp {
    let Some(rec) = admin.reload().await else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the instance is stopping: no reload",
        );
    };
    let status = match rec.result {
        ReloadResult::Applied => StatusCode::OK,
        ReloadResult::Invalid => StatusCode::UNPROCESSABLE_ENTITY,
        ReloadResult::Failed => StatusCode::INTERNAL_SERVER_ERROR,
    };
    json_resp(
        status,
        &json!({
            "result": rec.result.as_str(),
            "generation": rec.generation,
            "text": rec.text,
        }),
    )
}

async fn server_action(admin: &Admin, name: &str, addr: &str, action: &str) -> Resp {
    let target = match action {
        "drain" => AdminState::Draining,
        "disable" => AdminState::Disabled,
        "enable" => AdminState::Enabled,
        other => {
            return error(
                StatusCode::NOT_FOUND,
                format!("unknown action `{other}`: use drain, enable or disable"),
            );
        }
    };
    let name = percent_decode_str(name).decode_utf8_lossy().into_owned();
    let addr = percent_decode_str(addr).decode_utf8_lossy().into_owned();
    let config = admin.config();
    let Some(upstream) = config.upstreams.get(&name) else {
        return error(StatusCode::NOT_FOUND, format!("no upstream `{name}`"));
    };
    let Some(spec) = upstream.servers.iter().find(|s| s.addr.to_string() == addr) else {
        let known: Vec<String> = upstream
            .servers
            .iter()
            .map(|s| s.addr.to_string())
            .collect();
        return error(
            StatusCode::NOT_FOUND,
            format!(
                "no server `{addr}` in upstream `{name}` (servers: {})",
                known.join(", ")
            ),
        );
    };
    let id = ServerId {
        upstream: name.as_str().into(),
        addr: addr.as_str().into(),
    };
    let state = admin.registry().state(&id);
    let before = state.admin_state();
    state.set_admin_state(target);
    if target == AdminState::Disabled {
        admin.sources().drain_websockets(&id);
    }
    tracing::warn!(upstream = %name, server = %addr, from = status::admin_state_str(before),
        to = status::admin_state_str(target), "admin API: server state changed");
    // Cluster mode: applied here already, then written to etcd for every node. While etcd is
    // unreachable the change stays on this node and the answer says so.
    let (scope, cluster_error) = match admin.sources().share_server_state(&id, target) {
        None => ("node", None),
        Some(shared) => match shared.await {
            Ok(()) => ("cluster", None),
            Err(e) => {
                tracing::warn!(upstream = %name, server = %addr, error = %e,
                    "admin API: server state not shared with the cluster, applied on this node only");
                (
                    "node",
                    Some(format!(
                        "not shared with the cluster ({e}): applied on this node only; \
                         when etcd answers again, the cluster's state replaces it"
                    )),
                )
            }
        },
    };
    let mut body = json!({
        "upstream": name,
        "server": addr,
        "admin_state": status::admin_state_str(target),
        "previous_admin_state": status::admin_state_str(before),
        "state": status::server_state(spec, &state, std::time::Instant::now()),
        "active": state.active(),
        "scope": scope,
    });
    if let Some(e) = cluster_error {
        body["cluster_error"] = json!(e);
    }
    json_resp(StatusCode::OK, &body)
}
