//! `error_pages = { 502 = "errors/502.html" }`: a site's bodies for Portico's own error
//! responses (those made by [`crate::error::error_response`], which marks them with
//! [`OwnError`]). A response from a server or a `respond` route is never replaced.

use bytes::Bytes;
use http::{HeaderValue, Response, header};

use crate::error::OwnError;

/// The error pages of one site.
#[derive(Debug)]
pub(crate) struct ErrorPages {
    pages: Vec<(u16, Bytes, HeaderValue)>,
}

impl ErrorPages {
    /// `None` when the site has none.
    pub fn compile(pages: &[portico_config::ErrorPage]) -> Option<Box<ErrorPages>> {
        if pages.is_empty() {
            return None;
        }
        let pages = pages
            .iter()
            .map(|p| {
                let mime = mime_guess::from_path(&p.file).first_or_text_plain();
                let ct = if mime.type_() == "text" {
                    format!("{mime}; charset=utf-8")
                } else {
                    mime.to_string()
                };
                let ct = HeaderValue::from_str(&ct)
                    .unwrap_or_else(|_| HeaderValue::from_static("text/html"));
                (p.status, Bytes::from(p.body.clone()), ct)
            })
            .collect();
        Some(Box::new(ErrorPages { pages }))
    }

    /// The page for this response, if it is one of Portico's own errors and the site has
    /// a page for its status: (body, content type).
    pub fn page_for<B>(&self, resp: &Response<B>) -> Option<(Bytes, HeaderValue)> {
        resp.extensions().get::<OwnError>()?;
        let status = resp.status().as_u16();
        self.pages
            .iter()
            .find(|(s, _, _)| *s == status)
            .map(|(_, body, ct)| (body.clone(), ct.clone()))
    }
}

/// Put `body` with content type `ct` in place of the response's body parts.
pub(crate) fn set_content_type(headers: &mut http::HeaderMap, ct: HeaderValue, len: usize) {
    headers.insert(header::CONTENT_TYPE, ct);
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
}
