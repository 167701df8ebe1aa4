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

/// `connect-src 'self'` covers this origin's `ws:`/`wss:` too. Images come from the page's
/// own blobs (decrypted attachments).
const CSP: &str = "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; \
    worker-src 'self' blob:; connect-src 'self'; style-src 'self'; img-src 'self' blob: data:; \
    base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Each asset gzipped once, on first use, off the async threads (the wasm takes a while); a
/// client asking again costs no compression.
fn gzipped(index: usize) -> &'static [u8] {
    static GZIPPED: [OnceLock<Vec<u8>>; 5] = [const { OnceLock::new() }; 5];
    GZIPPED[index].get_or_init(|| {
        use std::io::Write as _;
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        // Writing to a Vec cannot fail.
        let _ = encoder.write_all(ASSETS[index].bytes);
        encoder.finish().unwrap_or_default()
    })
}

/// Each asset's own hash, as its entity tag: a change to any one file changes its tag.
fn etag(index: usize, gzip: bool) -> HeaderValue {
    static TAGS: [OnceLock<String>; 5] = [const { OnceLock::new() }; 5];
    let tag = TAGS[index].get_or_init(|| {
        use sha2::Digest as _;
        hex::encode(&sha2::Sha256::digest(ASSETS[index].bytes)[..12])
    });
    let value = format!("\"{tag}{}\"", if gzip { "-gz" } else { "" });
    HeaderValue::from_str(&value).unwrap_or(HeaderValue::from_static("\"\""))
}

/// Whether `Accept-Encoding` allows gzip (`gzip;q=0` refuses it).
fn accepts_gzip(request: &HeaderMap) -> bool {
    request
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|coding| {
            let mut parts = coding.split(';').map(str::trim);
            let name = parts.next().unwrap_or_default();
            let refused = parts.any(|p| {
                p.strip_prefix("q=")
                    .and_then(|q| q.parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            (name.eq_ignore_ascii_case("gzip") || name == "*") && !refused
        })
}

async fn serve(name: &str, request: &HeaderMap, tls: bool) -> Response {
    let Some(index) = ASSETS.iter().position(|a| a.name == name) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let asset = &ASSETS[index];
    let gzip = accepts_gzip(request);
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
    if tls {
        // The page holds the keys and is fetched at every load: never over plain HTTP.
        set(
            &mut headers,
            header::STRICT_TRANSPORT_SECURITY,
            "max-age=31536000",
        );
    }
    let tag = etag(index, gzip);
    if request.get(header::IF_NONE_MATCH) == Some(&tag) {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    headers.insert(header::ETAG, tag);
    if !gzip {
        return (headers, asset.bytes).into_response();
    }
    match tokio::task::spawn_blocking(move || gzipped(index)).await {
        Ok(bytes) => {
            set(&mut headers, header::CONTENT_ENCODING, "gzip");
            (headers, bytes).into_response()
        }
        Err(_) => (headers, asset.bytes).into_response(),
    }
}

/// `tls`: whether the server speaks HTTPS itself (then browsers are told to stay on it).
pub fn router(tls: bool) -> Router<Arc<App>> {
    Router::new()
        .route(
            "/",
            get(move |headers: HeaderMap| async move { serve("index.html", &headers, tls).await }),
        )
        .route(
            "/{file}",
            get(
                move |Path(file): Path<String>, headers: HeaderMap| async move {
                    serve(&file, &headers, tls).await
                },
            ),
        )
}
