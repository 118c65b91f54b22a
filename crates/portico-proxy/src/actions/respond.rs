//! `respond = "TEXT"` routes: a fixed status, content type and body.

use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use portico_config::RespondAction;

use crate::body::Body;

/// The configured fixed response.
pub fn respond(action: &RespondAction) -> Response<Body> {
    let mut resp = Response::new(Body::full(action.body.clone()));
    // The config validates the status; 500 only guards against a bad value slipping through.
    *resp.status_mut() =
        StatusCode::from_u16(action.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let ct = HeaderValue::from_str(&action.content_type)
        .unwrap_or_else(|_| HeaderValue::from_static("text/plain"));
    resp.headers_mut().insert(header::CONTENT_TYPE, ct);
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn status_type_and_body() {
        let action = RespondAction {
            body: "maintenance\n".into(),
            status: 503,
            content_type: "text/plain; charset=utf-8".into(),
        };
        let resp = respond(&action);
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            resp.headers()[header::CONTENT_TYPE],
            "text/plain; charset=utf-8"
        );
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        assert_eq!(&body[..], b"maintenance\n");
    }

    #[test]
    fn empty_body_is_allowed() {
        let action = RespondAction {
            body: String::new(),
            status: 204,
            content_type: "text/plain".into(),
        };
        let resp = respond(&action);
        assert_eq!(resp.status(), StatusCode::NO_CONTENT);
        assert!(http_body::Body::is_end_stream(resp.body()));
    }
}
