//! Serves the embedded console at `/ui/`.
//!
//! - A path naming an asset gets it, with its content type, an ETag (SHA-256 of the bytes,
//!   computed once) and `Cache-Control: no-cache` (revalidated each load, 304 when unchanged:
//!   the file names carry no hash, so nothing may be cached blindly across upgrades).
//! - Any other path without a file extension (`/ui/enclaves/miner`) gets `index.html`: deep
//!   links load the app, which routes on the path. A missing file (`/ui/x.js`) is a 404.
//! - Every answer carries a strict Content-Security-Policy: scripts, styles and connections
//!   from this origin only, no inline script or style, no frames, no plugins.

use std::collections::HashMap;
use std::sync::OnceLock;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use sha2::{Digest, Sha256};

mod generated {
    include!(concat!(env!("OUT_DIR"), "/console_assets.rs"));
}

/// The console's Content-Security-Policy: nothing inline, nothing from elsewhere.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
img-src 'self' data:; connect-src 'self'; font-src 'self'; manifest-src 'self'; \
base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// One embedded file.
pub struct Asset {
    pub bytes: &'static [u8],
    pub content_type: &'static str,
    pub etag: String,
}

fn table() -> &'static HashMap<&'static str, Asset> {
    static TABLE: OnceLock<HashMap<&'static str, Asset>> = OnceLock::new();
    TABLE.get_or_init(|| {
        generated::ASSETS
            .iter()
            .map(|(path, bytes)| {
                let etag = format!("\"{}\"", &hex::encode(Sha256::digest(bytes))[..32]);
                (
                    *path,
                    Asset {
                        bytes,
                        content_type: content_type(path),
                        etag,
                    },
                )
            })
            .collect()
    })
}

/// The embedded files' paths (relative to `console/`).
pub fn paths() -> Vec<&'static str> {
    let mut v: Vec<_> = table().keys().copied().collect();
    v.sort_unstable();
    v
}

/// The content type an asset is served with, by its extension.
pub fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, e)| e) {
        Some("html") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("json" | "webmanifest") => "application/json",
        Some("txt") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// `/ui` and everything under it.
pub fn router() -> Router {
    Router::new()
        .route("/ui", get(|| async { Redirect::permanent("/ui/") }))
        .route("/ui/", get(serve))
        .route("/ui/{*path}", get(serve))
}

async fn serve(req: Request) -> Response {
    let path = req
        .uri()
        .path()
        .strip_prefix("/ui/")
        .unwrap_or_default()
        .to_string();
    let resolved = if path.is_empty() {
        "index.html"
    } else {
        path.as_str()
    };
    match table().get(resolved) {
        Some(a) => answer(a, req.headers()),
        // A deep link (no extension in its last segment, no `..`): the app.
        None if !resolved.contains("..")
            && !resolved
                .rsplit('/')
                .next()
                .unwrap_or_default()
                .contains('.') =>
        {
            match table().get("index.html") {
                Some(a) => answer(a, req.headers()),
                None => secured(StatusCode::NOT_FOUND, "console not built in").into_response(),
            }
        }
        None => secured(StatusCode::NOT_FOUND, "no such console file").into_response(),
    }
}

fn answer(a: &Asset, request: &HeaderMap) -> Response {
    let fresh = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == a.etag));
    let mut r = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static(a.content_type),
            )],
            a.bytes,
        )
            .into_response()
    };
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&a.etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    add_security_headers(h);
    r
}

fn secured(status: StatusCode, body: &'static str) -> Response {
    let mut r = (status, body).into_response();
    add_security_headers(r.headers_mut());
    r
}

fn add_security_headers(h: &mut HeaderMap) {
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use tower::ServiceExt;

    async fn get(path: &str, etag: Option<&str>) -> Response {
        let mut req = Request::builder().uri(path);
        if let Some(e) = etag {
            req = req.header(header::IF_NONE_MATCH, e);
        }
        router()
            .oneshot(req.body(Body::empty()).expect("request"))
            .await
            .expect("infallible")
    }

    fn header_of(r: &Response, h: header::HeaderName) -> &str {
        r.headers()
            .get(h)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    #[test]
    fn the_console_is_embedded_with_no_inline_script() {
        let paths = paths();
        for want in ["index.html", "app.js", "style.css"] {
            assert!(paths.contains(&want), "{want} embedded; have {paths:?}");
        }
        let index = std::str::from_utf8(table()["index.html"].bytes).expect("utf-8");
        // Every <script> loads a file: the CSP allows no inline script, so one would not run.
        for (i, _) in index.match_indices("<script") {
            let tag = &index[i..index[i..].find('>').map_or(index.len(), |j| i + j)];
            assert!(tag.contains("src="), "inline script in index.html: {tag}");
        }
        assert!(!index.contains("style="), "inline style in index.html");
        assert!(
            !index.contains("http://") && !index.contains("https://"),
            "index.html loads nothing from elsewhere"
        );
    }

    #[tokio::test]
    async fn assets_have_their_types_an_etag_and_the_csp() {
        for (path, ty) in [
            ("/ui/", "text/html; charset=utf-8"),
            ("/ui/app.js", "text/javascript; charset=utf-8"),
            ("/ui/style.css", "text/css; charset=utf-8"),
        ] {
            let r = get(path, None).await;
            assert_eq!(r.status(), StatusCode::OK, "{path}");
            assert_eq!(header_of(&r, header::CONTENT_TYPE), ty, "{path}");
            assert_eq!(header_of(&r, header::CONTENT_SECURITY_POLICY), CSP);
            assert_eq!(header_of(&r, header::CACHE_CONTROL), "no-cache");
            assert_eq!(header_of(&r, header::X_CONTENT_TYPE_OPTIONS), "nosniff");
            let etag = header_of(&r, header::ETAG).to_string();
            assert!(etag.starts_with('"'), "{path}: {etag}");
            let again = get(path, Some(&etag)).await;
            assert_eq!(again.status(), StatusCode::NOT_MODIFIED, "{path}");
        }
    }

    #[tokio::test]
    async fn deep_links_serve_the_app_and_missing_files_are_404() {
        let index = get("/ui/", None).await;
        let etag = header_of(&index, header::ETAG).to_string();
        for deep in [
            "/ui/enclaves/miner",
            "/ui/log/12",
            "/ui/policies/demo-batch",
        ] {
            let r = get(deep, None).await;
            assert_eq!(r.status(), StatusCode::OK, "{deep}");
            assert_eq!(header_of(&r, header::ETAG), etag, "{deep} is index.html");
        }
        for missing in ["/ui/nope.js", "/ui/../Cargo.toml", "/ui/a/../../x"] {
            let r = get(missing, None).await;
            assert_eq!(r.status(), StatusCode::NOT_FOUND, "{missing}");
            assert_eq!(header_of(&r, header::CONTENT_SECURITY_POLICY), CSP);
        }
        let r = get("/ui", None).await;
        assert_eq!(r.status(), StatusCode::PERMANENT_REDIRECT);
    }
}
