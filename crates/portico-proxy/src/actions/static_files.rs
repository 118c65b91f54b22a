//! `root = "DIR"` routes: serve files below a directory, nginx style.
//!
//! Flow: method check (GET/HEAD, else 405) -> [`path::RelPath`] (percent-decode once, reject
//! NUL, `..`, backslashes; names starting with `.` are 404 unless `dotfiles = true`, except a
//! top `.well-known`) -> one blocking task resolves the file: canonicalise the root and
//! the target, refuse anything whose canonical path is not below the canonical root (symlinks
//! out of the root get 403), pick the index file for a directory, open the file and, for a
//! small plain GET, read it whole. Then validators and conditionals (304), `Range` (206/416)
//! and a [`file_body::FileBody`] that streams the file in 64 KiB chunks.
//!
//! Nginx behaviours kept: a directory without a trailing slash gets a 301 to `path/` (a
//! relative `Location`, so it is right behind TLS too); a directory without an index file is
//! 403; a file requested with a trailing slash is 404. Several ranges in one request are
//! answered with the whole file (200), which RFC 9110 allows.
//!
//! The root is canonicalised on every request (not cached), so a root that is a symlink
//! switched by a deploy (`current -> releases/42`) takes effect at once.
//!
//! Known limit: between canonicalisation and `open` a symlink could be swapped by someone who
//! can write inside the root; the root is trusted to that extent.

mod conditional;
mod file_body;
mod path;

use std::fs::{File, Metadata};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Response, StatusCode};
use portico_config::{Coding, StaticAction};

use crate::body::Body;
pub use conditional::{RangeOutcome, Validators, parse_range};
use file_body::{CHUNK, FileBody};
pub use path::{PathError, RelPath};

/// Serve a GET or HEAD request for a file below `action.root`.
pub async fn serve(parts: &http::request::Parts, action: &StaticAction) -> Response<Body> {
    serve_encoded(parts, action, &[]).await
}

/// [`serve`], preferring a precompressed sibling of the file (`NAME.zst`, `NAME.br`,
/// `NAME.gz`) for the first of `codings` (the client's acceptable ones, best first) that
/// has one: sent with `Content-Encoding`, the original's `Content-Type`, and `Vary:
/// Accept-Encoding`. With codings to try, a response without a sibling varies too.
pub async fn serve_encoded(
    parts: &http::request::Parts,
    action: &StaticAction,
    codings: &[Option<Coding>],
) -> Response<Body> {
    let is_head = parts.method == Method::HEAD;
    if parts.method != Method::GET && !is_head {
        let mut resp = short(StatusCode::METHOD_NOT_ALLOWED);
        resp.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return resp;
    }
    let raw_path = parts.uri.path();
    let rel = match RelPath::parse(raw_path) {
        Ok(rel) => rel,
        Err(e) => {
            tracing::debug!(path = raw_path, error = %e, "static: refused path");
            return short(StatusCode::NOT_FOUND);
        }
    };
    if !action.dotfiles && hidden(&rel) {
        tracing::debug!(
            path = raw_path,
            "static: dotfile refused (dotfiles = false)"
        );
        return short(StatusCode::NOT_FOUND);
    }
    let h = &parts.headers;
    let read_small = !is_head
        && !h.contains_key(header::IF_NONE_MATCH)
        && !h.contains_key(header::IF_MODIFIED_SINCE);
    let job = Lookup {
        root: action.root.clone(),
        rel,
        trailing_slash: raw_path.ends_with('/'),
        index: action.index.clone(),
        read_small,
        codings: codings.iter().map_while(|c| *c).collect(),
    };
    let resolved: Result<Found, Miss> = match tokio::task::spawn_blocking(move || job.run()).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "static: lookup task failed");
            return short(StatusCode::INTERNAL_SERVER_ERROR);
        }
    };
    match resolved {
        Ok(found) => respond_file(h, is_head, found).await,
        Err(Miss::NotFound) => short(StatusCode::NOT_FOUND),
        Err(Miss::Forbidden) => short(StatusCode::FORBIDDEN),
        Err(Miss::Error) => short(StatusCode::INTERNAL_SERVER_ERROR),
        Err(Miss::AddSlash) => add_slash(parts),
    }
}

/// A file found and opened below the root.
struct Found {
    /// The file asked for (its name gives the content type).
    path: PathBuf,
    /// The precompressed sibling opened instead, if any.
    encoding: Option<Coding>,
    /// Siblings were looked for (the response varies on `Accept-Encoding`).
    vary: bool,
    file: File,
    meta: Metadata,
    /// The whole content when it was small and a plain GET.
    content: Option<Bytes>,
}

/// Why no file is served.
enum Miss {
    AddSlash,
    NotFound,
    Forbidden,
    Error,
}

/// The blocking part: everything that touches the file system before streaming.
struct Lookup {
    root: PathBuf,
    rel: RelPath,
    trailing_slash: bool,
    index: Vec<String>,
    read_small: bool,
    /// Precompressed siblings to look for, in this order.
    codings: Vec<Coding>,
}

impl Lookup {
    fn run(self) -> Result<Found, Miss> {
        let root = self.root.canonicalize().map_err(|e| {
            tracing::warn!(root = %self.root.display(), error = %e, "static: root unusable");
            Miss::NotFound
        })?;
        let (target, meta) = checked(&root, &root.join(self.rel.to_path_buf()))?;
        if meta.is_dir() {
            if !self.trailing_slash {
                return Err(Miss::AddSlash);
            }
            for name in &self.index {
                if name.is_empty() || name.contains(['/', '\\']) || name == ".." {
                    continue;
                }
                match checked(&root, &target.join(name)) {
                    Ok((p, m)) if m.is_file() => return self.open(&root, p),
                    Ok(_) | Err(Miss::NotFound) => continue,
                    Err(r) => return Err(r),
                }
            }
            return Err(Miss::Forbidden);
        }
        if !meta.is_file() || self.trailing_slash {
            return Err(Miss::NotFound);
        }
        self.open(&root, target)
    }

    fn open(&self, root: &Path, path: PathBuf) -> Result<Found, Miss> {
        for coding in &self.codings {
            let ext = match coding {
                Coding::Zstd => "zst",
                Coding::Br => "br",
                Coding::Gzip => "gz",
            };
            let mut name = path.clone().into_os_string();
            name.push(".");
            name.push(ext);
            let sibling = PathBuf::from(name);
            // Below the root too (a sibling may be a symlink); absent: the next one.
            if let Ok((p, m)) = checked(root, &sibling)
                && m.is_file()
                && let Ok(mut found) = self.open_file(p)
            {
                found.path = path;
                found.encoding = Some(*coding);
                found.vary = true;
                return Ok(found);
            }
        }
        let mut found = self.open_file(path)?;
        found.vary = !self.codings.is_empty();
        Ok(found)
    }

    fn open_file(&self, path: PathBuf) -> Result<Found, Miss> {
        let mut file = File::open(&path).map_err(|e| io_status(&e))?;
        let meta = file.metadata().map_err(|e| io_status(&e))?;
        if !meta.is_file() {
            return Err(Miss::NotFound);
        }
        let mut content = None;
        if self.read_small && meta.len() <= CHUNK as u64 {
            // Bounded by CHUNK, so the cast cannot truncate.
            let mut buf = Vec::with_capacity(meta.len() as usize);
            (&mut file)
                .take(meta.len())
                .read_to_end(&mut buf)
                .map_err(|e| io_status(&e))?;
            if buf.len() as u64 != meta.len() {
                // Changed under us; fall back to streaming from a fresh handle.
                return self.open_streaming(path);
            }
            content = Some(Bytes::from(buf));
        }
        Ok(Found {
            path,
            encoding: None,
            vary: false,
            file,
            meta,
            content,
        })
    }

    fn open_streaming(&self, path: PathBuf) -> Result<Found, Miss> {
        let (file, meta) = File::open(&path)
            .and_then(|f| f.metadata().map(|m| (f, m)))
            .map_err(|e| io_status(&e))?;
        Ok(Found {
            path,
            encoding: None,
            vary: false,
            file,
            meta,
            content: None,
        })
    }
}

/// Canonicalise `candidate` and make sure it is still below the canonical `root`.
fn checked(root: &Path, candidate: &Path) -> Result<(PathBuf, Metadata), Miss> {
    let canon = candidate.canonicalize().map_err(|e| io_status(&e))?;
    if !canon.starts_with(root) {
        tracing::debug!(path = %candidate.display(), "static: resolves outside the root");
        return Err(Miss::Forbidden);
    }
    let meta = std::fs::metadata(&canon).map_err(|e| io_status(&e))?;
    Ok((canon, meta))
}

fn io_status(e: &io::Error) -> Miss {
    match e.kind() {
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory | io::ErrorKind::InvalidFilename => {
            Miss::NotFound
        }
        io::ErrorKind::PermissionDenied => Miss::Forbidden,
        _ => {
            tracing::warn!(error = %e, "static: file system error");
            Miss::Error
        }
    }
}

async fn respond_file(h: &HeaderMap, is_head: bool, found: Found) -> Response<Body> {
    let len = found.meta.len();
    let mtime = found.meta.modified().unwrap_or(std::time::UNIX_EPOCH);
    let v = Validators::new(mtime, len);
    let hv = |name: header::HeaderName| h.get(name).and_then(|v| v.to_str().ok());

    let mut builder = Response::builder()
        .header(header::ETAG, &v.etag)
        .header(header::LAST_MODIFIED, v.last_modified());
    if found.vary {
        builder = builder.header(header::VARY, "Accept-Encoding");
    }
    if v.not_modified(hv(header::IF_NONE_MATCH), hv(header::IF_MODIFIED_SINCE)) {
        return finish(builder.status(StatusCode::NOT_MODIFIED), Body::empty());
    }
    builder = builder
        .header(header::CONTENT_TYPE, content_type(&found.path))
        .header(header::ACCEPT_RANGES, "bytes");
    if let Some(coding) = found.encoding {
        builder = builder.header(header::CONTENT_ENCODING, coding.token());
    }

    let mut range = RangeOutcome::Full;
    if !is_head
        && let Some(r) = hv(header::RANGE)
        && hv(header::IF_RANGE).is_none_or(|ir| v.if_range_holds(ir))
    {
        range = parse_range(r, len);
    }
    let (status, start, count) = match range {
        RangeOutcome::Full => (StatusCode::OK, 0, len),
        RangeOutcome::Partial { start, end } => {
            builder = builder.header(header::CONTENT_RANGE, format!("bytes {start}-{end}/{len}"));
            (StatusCode::PARTIAL_CONTENT, start, end - start + 1)
        }
        RangeOutcome::Unsatisfiable => {
            let b = Response::builder()
                .status(StatusCode::RANGE_NOT_SATISFIABLE)
                .header(header::CONTENT_RANGE, format!("bytes */{len}"))
                .header(header::CONTENT_TYPE, "text/plain; charset=utf-8");
            return finish(
                b,
                Body::full(status_line(StatusCode::RANGE_NOT_SATISFIABLE)),
            );
        }
    };
    builder = builder.status(status).header(header::CONTENT_LENGTH, count);
    if is_head {
        return finish(builder, Body::empty());
    }
    let body = match found.content {
        // Bounded by len (checked when read), so the casts cannot truncate.
        Some(all) => Body::full(all.slice(start as usize..(start + count) as usize)),
        None => match stream_from(found.file, start, count).await {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(path = %found.path.display(), error = %e, "static: read failed");
                return short(StatusCode::INTERNAL_SERVER_ERROR);
            }
        },
    };
    finish(builder, body)
}

async fn stream_from(file: File, start: u64, count: u64) -> io::Result<Body> {
    use tokio::io::AsyncSeekExt;
    let mut file = tokio::fs::File::from_std(file);
    if start > 0 {
        file.seek(io::SeekFrom::Start(start)).await?;
    }
    Ok(Body::stream(FileBody::new(file, count)))
}

/// `Content-Type` from the extension; text types get `; charset=utf-8`.
pub fn content_type(path: &Path) -> String {
    let mime = mime_guess::from_path(path).first_or_octet_stream();
    let textual = mime.type_() == mime_guess::mime::TEXT
        || matches!(mime.subtype().as_str(), "javascript" | "json" | "xml")
        || mime
            .suffix()
            .is_some_and(|s| s == mime_guess::mime::XML || s == mime_guess::mime::JSON);
    if textual && mime.get_param(mime_guess::mime::CHARSET).is_none() {
        format!("{}; charset=utf-8", mime.essence_str())
    } else {
        mime.to_string()
    }
}

/// 301 to the same path with a trailing slash (query kept).
/// Whether a segment names a dotfile (`.git`, `.env`, `.htpasswd`). `/.well-known/`
/// (RFC 8615) at the top is public by design and stays served.
fn hidden(rel: &RelPath) -> bool {
    rel.segments()
        .iter()
        .enumerate()
        .any(|(i, s)| s.starts_with('.') && !(i == 0 && s == ".well-known"))
}

fn add_slash(parts: &http::request::Parts) -> Response<Body> {
    // One leading `/`: `//cdn/` would be a network-path reference, another site
    // (request paths are normalised before routing; this holds for any caller).
    let path = parts.uri.path().trim_start_matches('/');
    let mut location = format!("/{path}/");
    if let Some(q) = parts.uri.query() {
        location.push('?');
        location.push_str(q);
    }
    let b = Response::builder()
        .status(StatusCode::MOVED_PERMANENTLY)
        .header(header::LOCATION, location)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8");
    finish(b, Body::full(status_line(StatusCode::MOVED_PERMANENTLY)))
}

fn status_line(status: StatusCode) -> String {
    format!(
        "{} {}\n",
        status.as_str(),
        status.canonical_reason().unwrap_or("")
    )
}

/// A short plain-text answer for an error status.
fn short(status: StatusCode) -> Response<Body> {
    let b = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8");
    finish(b, Body::full(status_line(status)))
}

fn finish(builder: http::response::Builder, body: Body) -> Response<Body> {
    builder.body(body).unwrap_or_else(|e| {
        // Only reachable if a header value we built is invalid.
        tracing::error!(error = %e, "static: could not build a response");
        let mut r = Response::new(Body::empty());
        *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
        r
    })
}
