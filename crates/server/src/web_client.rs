//! The web client, served at `/`: the files of `web/dist` (built by `scripts/web-build`,
//! committed, checked against a rebuild in CI), compiled into the binary so that the
//! README's server command serves it on a fresh machine with no wasm toolchain.
//!
//! Every answer carries a strict Content-Security-Policy: scripts only from this origin
//! (and wasm compilation), no inline script, nothing third-party. The page checks the
//! integrity of its scripts and wasm itself (index.html and main.js carry their hashes).

use std::sync::{Arc, OnceLock};

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::App;

struct Asset {
    name: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

macro_rules! asset {
    ($name:literal, $type:literal) => {
        Asset {
            name: $name,
            content_type: $type,
            bytes: include_bytes!(concat!("../../../web/dist/", $name)),
        }
    };
}

static ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("main.js", "text/javascript; charset=utf-8"),
    asset!("worker.js", "text/javascript; charset=utf-8"),
    asset!("style.css", "text/css; charset=utf-8"),
    asset!("parley_web_bg.wasm", "application/wasm"),
];

/// The build hash the page shows in "About" (web/dist/BUILD).
pub const BUILD: &str = include_str!("../../../web/dist/BUILD");

/// `connect-src 'self'` covers this origin's `ws:`/`wss:` too. Images come from the page's
/// own blobs (decrypted attachments).
const CSP: &str = "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; \
    worker-src 'self' blob:; connect-src 'self'; style-src 'self'; img-src 'self' blob: data:; \
    base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Each asset gzipped once, on first use: a client asking again costs no compression.
fn gzipped(index: usize) -> &'static [u8] {
    static GZIPPED: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    &GZIPPED.get_or_init(|| {
        ASSETS
            .iter()
            .map(|asset| {
                use std::io::Write as _;
                let mut encoder =
                    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
                // Writing to a Vec cannot fail.
                let _ = encoder.write_all(asset.bytes);
                encoder.finish().unwrap_or_default()
            })
            .collect()
    })[index]
}

async fn serve(name: &str, request: &HeaderMap) -> Response {
    let Some(index) = ASSETS.iter().position(|a| a.name == name) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let asset = &ASSETS[index];
    let accepts_gzip = request
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(',').any(|e| e.trim().starts_with("gzip")));
    let mut headers = HeaderMap::new();
    let set = |headers: &mut HeaderMap, name, value: &'static str| {
        headers.insert(name, HeaderValue::from_static(value));
    };
    set(&mut headers, header::CONTENT_TYPE, asset.content_type);
    set(&mut headers, header::CONTENT_SECURITY_POLICY, CSP);
    set(&mut headers, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(&mut headers, header::REFERRER_POLICY, "no-referrer");
    set(&mut headers, header::X_FRAME_OPTIONS, "DENY");
    set(&mut headers, header::CACHE_CONTROL, "no-cache");
    set(&mut headers, header::VARY, "accept-encoding");
    if let Ok(etag) = HeaderValue::from_str(&format!("\"{}-{index}\"", BUILD.trim())) {
        if request.get(header::IF_NONE_MATCH) == Some(&etag) {
            return (StatusCode::NOT_MODIFIED, headers).into_response();
        }
        headers.insert(header::ETAG, etag);
    }
    if accepts_gzip {
        set(&mut headers, header::CONTENT_ENCODING, "gzip");
        (headers, gzipped(index)).into_response()
    } else {
        (headers, asset.bytes).into_response()
    }
}

pub fn router() -> Router<Arc<App>> {
    Router::new()
        .route(
            "/",
            get(|headers: HeaderMap| async move { serve("index.html", &headers).await }),
        )
        .route(
            "/{file}",
            get(|Path(file): Path<String>, headers: HeaderMap| async move {
                serve(&file, &headers).await
            }),
        )
}
