//! HTTP and WebSocket transport. Handlers decode a protobuf body, call one service, and encode
//! the answer; they hold no logic and never touch the store.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use parley_protocol::{v1, ErrorCode};

use crate::accounts::Authenticated;
use crate::{ApiError, App, ServerError};

mod attachments;
mod links;
mod recovery;

type AppState = State<Arc<App>>;

/// A protobuf response body.
struct Proto<M>(M);

impl<M: prost::Message> IntoResponse for Proto<M> {
    fn into_response(self) -> Response {
        (
            [(header::CONTENT_TYPE, parley_protocol::CONTENT_TYPE)],
            parley_protocol::encode(&self.0),
        )
            .into_response()
    }
}

/// Bodies larger than this are decoded on a blocking thread, off the async workers, so that
/// large bodies arriving together cannot stall everything else.
const DECODE_INLINE_BYTES: usize = 256 * 1024;
/// Top-level fields in a message without repeated fields (duplicates merge; this only bounds
/// the work).
const FEW_FIELDS: usize = 64;
/// Body limits by route: each fits what the route carries. Submissions and group creation
/// take up to `--max-frame-bytes`.
const AUTH_BODY_BYTES: usize = 4 * 1024;
const UPLOAD_BODY_BYTES: usize = 4 * 1024 * 1024;
const CLAIM_BODY_BYTES: usize = 64 * 1024;
const ACK_BODY_BYTES: usize = 1024;
const REPORT_BODY_BYTES: usize = 2 * 1024 * 1024;
/// A report's context messages (as `moderation` accepts them) plus the message and reason.
const REPORT_FIELDS: usize = 24;

/// Decodes a body of at most `max_fields` top-level fields (see
/// [`parley_protocol::decode_bounded`]).
async fn decode<M: prost::Message + Default + Send + 'static>(
    app: &App,
    body: Bytes,
    max_fields: usize,
) -> Result<M, ApiError> {
    let max = app.config.max_frame_bytes;
    if body.len() <= DECODE_INLINE_BYTES {
        return Ok(parley_protocol::decode_bounded(&body, max, max_fields)?);
    }
    tokio::task::spawn_blocking(move || parley_protocol::decode_bounded(&body, max, max_fields))
        .await
        .map_err(|_| ApiError::new(ErrorCode::Internal, "decoding failed"))?
        .map_err(ApiError::from)
}

impl FromRequestParts<Arc<App>> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        app: &Arc<App>,
    ) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| ApiError::unauthenticated("missing Authorization header"))?;
        let token = header
            .strip_prefix("Bearer ")
            .ok_or_else(|| ApiError::unauthenticated("Authorization must be a Bearer token"))?;
        authenticate(parts, app, token).await
    }
}

/// A session token checked, within the address's rate of failed tries.
async fn authenticate(parts: &Parts, app: &App, token: &str) -> Result<Authenticated, ApiError> {
    let address = client_ip(parts)?;
    app.rates.check_token_address(address)?;
    let authenticated = app.accounts.authenticate(token).await;
    if matches!(&authenticated, Err(e) if e.code() == ErrorCode::Unauthenticated) {
        app.rates.note_token_failure(address);
    }
    authenticated
}

/// The subprotocol that carries a browser's live connection (`parley.v1`), and the prefix of
/// the one beside it that carries its session token: a browser's `WebSocket` cannot set an
/// `Authorization` header.
const LIVE_PROTOCOL: &str = "parley.v1";
const BEARER_PROTOCOL: &str = "parley.bearer.";

/// The token a browser offers as a subprotocol, beside `parley.v1`.
fn browser_live_token(parts: &Parts) -> Option<&str> {
    let offered = || {
        parts
            .headers
            .get_all(header::SEC_WEBSOCKET_PROTOCOL)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
    };
    if !offered().any(|p| p == LIVE_PROTOCOL) {
        return None;
    }
    offered().find_map(|p| p.strip_prefix(BEARER_PROTOCOL))
}

/// The live connection's device: by `Authorization`, or (browsers) by the subprotocol token.
/// Only the WebSocket route takes the latter, and only on a `GET` upgrade, so that no other
/// request can carry a token in a header that proxies do not know to redact.
struct LiveReader(Authenticated);

impl FromRequestParts<Arc<App>> for LiveReader {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, ApiError> {
        let upgrade = parts.method == axum::http::Method::GET
            && parts
                .headers
                .get(header::UPGRADE)
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
        let device = match browser_live_token(parts).filter(|_| upgrade) {
            Some(token) if parts.headers.get(header::AUTHORIZATION).is_none() => {
                authenticate(parts, app, token).await?
            }
            _ => Authenticated::from_request_parts(parts, app).await?,
        };
        app.rates.check_read(&device.0.user_id)?;
        Ok(LiveReader(device))
    }
}

/// An authenticated device whose account is within its rate of reads.
struct Reader(Authenticated);

impl FromRequestParts<Arc<App>> for Reader {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, ApiError> {
        let device = Authenticated::from_request_parts(parts, app).await?;
        app.rates.check_read(&device.0.user_id)?;
        Ok(Reader(device))
    }
}

/// The client's address, as the listener recorded it.
fn client_ip(parts: &Parts) -> Result<std::net::IpAddr, ApiError> {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|peer| peer.0.ip())
        .ok_or_else(|| ApiError::new(ErrorCode::Internal, "client address unknown"))
}

// Rate checks are extractors of the request head. axum runs every such extractor before the
// body's (always a handler's last argument), so a client over its rate is answered at once:
// nothing reads, waits for or buffers its body, which the route's limit would allow up to
// megabytes and the body timeout for tens of seconds.

/// An authentication call (challenge, login) within its client address's rate.
pub(super) struct AuthAllowed;

impl FromRequestParts<Arc<App>> for AuthAllowed {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, ApiError> {
        app.rates.check_auth(client_ip(parts)?)?;
        Ok(AuthAllowed)
    }
}

/// A registration within its client address's rates (authentication calls, and registrations).
struct RegistrationAllowed;

impl FromRequestParts<Arc<App>> for RegistrationAllowed {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, ApiError> {
        let address = client_ip(parts)?;
        app.rates.check_auth(address)?;
        app.rates.check_registration(address)?;
        Ok(RegistrationAllowed)
    }
}

/// An authenticated device whose account is within its submission rate (which every call
/// that sends something counts: messages, groups, KeyPackages, claims, reports).
struct Submitter(Authenticated);

impl FromRequestParts<Arc<App>> for Submitter {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, ApiError> {
        let device = Authenticated::from_request_parts(parts, app).await?;
        app.rates.check_submission(&device.0.user_id)?;
        Ok(Submitter(device))
    }
}

/// A [`Submitter`] whose account may also create a group now.
struct GroupCreator(Authenticated);

impl FromRequestParts<Arc<App>> for GroupCreator {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, ApiError> {
        let Submitter(device) = Submitter::from_request_parts(parts, app).await?;
        app.rates.check_group_creation(&device.0.user_id)?;
        Ok(GroupCreator(device))
    }
}

async fn register(
    State(app): AppState,
    _allowed: RegistrationAllowed,
    body: Bytes,
) -> Result<impl IntoResponse, ApiError> {
    let request: parley_protocol::v1::RegisterRequest = decode(&app, body, FEW_FIELDS).await?;
    // A device restored from a backup joins its existing account instead.
    let registered = if request.restore {
        app.recovery.restore(request).await?
    } else {
        app.accounts.register(request).await?
    };
    Ok(Proto(registered))
}

async fn challenge(
    State(app): AppState,
    _allowed: AuthAllowed,
    body: Bytes,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Proto(
        app.accounts
            .challenge(decode(&app, body, FEW_FIELDS).await?)
            .await?,
    ))
}

async fn login(
    State(app): AppState,
    _allowed: AuthAllowed,
    body: Bytes,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Proto(
        app.accounts
            .login(decode(&app, body, FEW_FIELDS).await?)
            .await?,
    ))
}

async fn user_devices(
    State(app): AppState,
    _reader: Reader,
    Path(username): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Proto(app.accounts.user_devices(&username).await?))
}

async fn upload_key_packages(
    State(app): AppState,
    Submitter(device): Submitter,
    body: Bytes,
) -> Result<impl IntoResponse, ApiError> {
    let upload = decode(
        &app,
        body,
        parley_protocol::limits::MAX_KEY_PACKAGES_PER_UPLOAD + 1,
    )
    .await?;
    Ok(Proto(app.key_packages.upload(&device, upload).await?))
}

async fn key_package_count(
    State(app): AppState,
    Reader(device): Reader,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Proto(app.key_packages.count(&device).await?))
}

async fn claim_key_packages(
    State(app): AppState,
    Submitter(device): Submitter,
    body: Bytes,
) -> Result<impl IntoResponse, ApiError> {
    // Claims are limited per claimed account too, once the body names them.
    let request = decode(&app, body, parley_protocol::limits::MAX_CLAIM_USERNAMES).await?;
    Ok(Proto(
        app.key_packages
            .claim(&device, request, |target, name| {
                app.rates.check_claim(target, name)
            })
            .await?,
    ))
}

async fn claim_own_key_packages(
    State(app): AppState,
    Submitter(device): Submitter,
    body: Bytes,
) -> Result<impl IntoResponse, ApiError> {
    let request = decode(&app, body, FEW_FIELDS).await?;
    Ok(Proto(app.key_packages.claim_own(&device, request).await?))
}

async fn create_group(
    State(app): AppState,
    GroupCreator(device): GroupCreator,
    body: Bytes,
) -> Result<impl IntoResponse, ApiError> {
    let group = decode(&app, body, FEW_FIELDS).await?;
    Ok(Proto(app.delivery.create_group(&device, group).await?))
}

/// A [`Submitter`] whose announced body (`Content-Length`) fits its account's byte budget for
/// the minute, charged before the body is read; `charged` is false for a body of unknown
/// length, which is charged once read.
struct Sender {
    device: Authenticated,
    charged: bool,
}

impl FromRequestParts<Arc<App>> for Sender {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, ApiError> {
        let Submitter(device) = Submitter::from_request_parts(parts, app).await?;
        let announced = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        if let Some(length) = announced {
            app.rates.check_sent_bytes(&device.0.user_id, length)?;
        }
        Ok(Sender {
            device,
            charged: announced.is_some(),
        })
    }
}

async fn submit(
    State(app): AppState,
    sender: Sender,
    body: Bytes,
) -> Result<impl IntoResponse, ApiError> {
    // The rates were checked before the body was read: a refused submission costs no reading
    // and no decoding.
    let submit = decode(&app, body, FEW_FIELDS).await?;
    Ok(Proto(
        app.submit_checked(&sender.device, submit, sender.charged)
            .await?,
    ))
}

#[derive(serde::Deserialize)]
struct FetchParams {
    #[serde(default)]
    after: u64,
    #[serde(default = "default_limit")]
    limit: u32,
}

fn default_limit() -> u32 {
    500
}

async fn fetch_queue(
    State(app): AppState,
    Reader(device): Reader,
    Query(params): Query<FetchParams>,
) -> Result<impl IntoResponse, ApiError> {
    let batch = app
        .delivery
        .fetch(&device, params.after, params.limit)
        .await?;
    app.metrics.messages_out.inc_by(batch.items.len() as u64);
    Ok(Proto(batch))
}

async fn ack(
    State(app): AppState,
    Reader(device): Reader,
    body: Bytes,
) -> Result<impl IntoResponse, ApiError> {
    let ack: v1::Ack = decode(&app, body, FEW_FIELDS).await?;
    app.delivery.ack(&device, ack.up_to).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn healthz() -> &'static str {
    "ok"
}

async fn metrics(State(app): AppState) -> Response {
    if let Ok(depth) = app.delivery.queue_depth().await {
        app.metrics.queue_depth.set(depth as i64);
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        app.metrics.render(),
    )
        .into_response()
}

/// Times every request by its route (the pattern, never the concrete path with its ids).
async fn timed(
    State(app): AppState,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    app.metrics
        .request_seconds
        .with_label_values(&[route.as_str()])
        .observe(started.elapsed().as_secs_f64());
    response
}

/// Read buffer of a live connection.
const LIVE_READ_BUFFER: usize = 1024;
/// Write buffer of a live connection: frames are flushed once they hold this much.
const LIVE_WRITE_BUFFER: usize = 64 * 1024;

/// `GET /v1/ws`: the live connection (see [`crate::live`]). Inbound frames are bounded like
/// HTTP bodies.
async fn websocket(
    State(app): AppState,
    LiveReader(device): LiveReader,
    upgrade: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    // Counted before the upgrade: a device or account over its share gets an error, not a
    // connection.
    let slot = app.live.admit(&device)?;
    let limit = app.config.max_frame_bytes;
    Ok(upgrade
        // Chosen when offered (browsers); never the token's subprotocol.
        .protocols([LIVE_PROTOCOL])
        // tungstenite zero-fills its read buffer's spare room before every read: a small
        // buffer keeps that cheap, and an idle connection small (large frames still arrive,
        // in several reads).
        .read_buffer_size(LIVE_READ_BUFFER)
        .max_message_size(limit)
        .max_frame_size(limit)
        // What a client does not read (our frames, and the pongs tungstenite answers its
        // pings with) stays below this; past it the connection ends.
        .write_buffer_size(LIVE_WRITE_BUFFER)
        .max_write_buffer_size(LIVE_WRITE_BUFFER + limit)
        .on_upgrade(move |socket| crate::live::session(app, device, socket, slot)))
}

/// Errors produced below our handlers (body too large, wrong method, bad WebSocket upgrade)
/// become protobuf error bodies too, so that every error a client sees has the same shape.
async fn uniform_errors(response: Response) -> Response {
    let status = response.status();
    let ours = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes() == parley_protocol::CONTENT_TYPE.as_bytes());
    if !(status.is_client_error() || status.is_server_error()) || ours {
        return response;
    }
    let (code, message) = match status {
        StatusCode::PAYLOAD_TOO_LARGE => (ErrorCode::TooLarge, "request body too large".to_owned()),
        StatusCode::NOT_FOUND => (ErrorCode::NotFound, "no such endpoint".to_owned()),
        s if s.is_server_error() => (ErrorCode::Internal, "internal error".to_owned()),
        s => (ErrorCode::Malformed, format!("bad request ({s})")),
    };
    let mut answer = ApiError::new(code, message).into_response();
    *answer.status_mut() = status;
    answer
}

/// API requests with a body must say it is ours: a web page can send `text/plain`, form or
/// multipart bodies cross-site without asking the browser first, but not this type, so no page
/// can make its visitors' browsers call the API.
/// (A `DELETE` carries no body and, like this type, needs the browser to ask first.)
async fn protobuf_only(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let is_ours = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| {
            essence
                .trim()
                .eq_ignore_ascii_case(parley_protocol::CONTENT_TYPE)
        });
    // Attachment parts are raw bytes; that type needs the browser to ask first too.
    let is_part = *request.method() == axum::http::Method::PUT
        && request.uri().path().starts_with("/v1/attachments/")
        && request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/octet-stream"));
    let without_body = matches!(
        *request.method(),
        axum::http::Method::GET | axum::http::Method::HEAD | axum::http::Method::DELETE
    );
    if is_ours || is_part || without_body {
        return next.run(request).await;
    }
    let mut answer = ApiError::malformed(format!(
        "request bodies must be {}",
        parley_protocol::CONTENT_TYPE
    ))
    .into_response();
    *answer.status_mut() = StatusCode::UNSUPPORTED_MEDIA_TYPE;
    answer
}

async fn not_found() -> ApiError {
    ApiError::new(ErrorCode::NotFound, "no such endpoint")
}

/// The metrics listener's routes: `/metrics` and nothing else.
pub fn metrics_router(app: Arc<App>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .with_state(app)
}

pub fn router(app: Arc<App>) -> Router {
    let limit = app.config.max_frame_bytes;
    Router::new()
        .route("/healthz", get(healthz))
        .route(
            "/v1/accounts",
            post(register).layer(DefaultBodyLimit::max(AUTH_BODY_BYTES)),
        )
        .route(
            "/v1/auth/challenge",
            post(challenge).layer(DefaultBodyLimit::max(AUTH_BODY_BYTES)),
        )
        .route(
            "/v1/auth/login",
            post(login).layer(DefaultBodyLimit::max(AUTH_BODY_BYTES)),
        )
        .route("/v1/users/{username}", get(user_devices))
        .route(
            "/v1/keypackages",
            post(upload_key_packages).layer(DefaultBodyLimit::max(UPLOAD_BODY_BYTES)),
        )
        .route("/v1/keypackages/count", get(key_package_count))
        .route(
            "/v1/keypackages/claim",
            post(claim_key_packages).layer(DefaultBodyLimit::max(CLAIM_BODY_BYTES)),
        )
        .route(
            "/v1/keypackages/claim-own",
            post(claim_own_key_packages).layer(DefaultBodyLimit::max(AUTH_BODY_BYTES)),
        )
        .route("/v1/groups", post(create_group))
        .route("/v1/messages", post(submit))
        .route("/v1/queue", get(fetch_queue))
        .route(
            "/v1/queue/ack",
            post(ack).layer(DefaultBodyLimit::max(ACK_BODY_BYTES)),
        )
        .route("/v1/ws", get(websocket))
        .route("/v1/info", get(server_info))
        .route(
            "/v1/reports",
            post(report).layer(DefaultBodyLimit::max(REPORT_BODY_BYTES)),
        )
        .merge(links::routes())
        .merge(attachments::routes())
        .merge(recovery::routes())
        .fallback(not_found)
        .layer(axum::middleware::from_fn(protobuf_only))
        .layer(axum::middleware::map_response(uniform_errors))
        // Around the API only (not the console): a browser's preflight is answered before
        // any protobuf check.
        .layer(web_origins(&app.config.web_origins))
        // The moderation console speaks HTML, not protobuf.
        .merge(crate::admin::router(app.clone()))
        // So is the web client.
        .merge(crate::web_client::router(app.config.tls.is_some()))
        .layer(DefaultBodyLimit::max(limit))
        .route_layer(axum::middleware::from_fn_with_state(app.clone(), timed))
        .with_state(app)
}

/// Browsers on the configured origins may call the API (the web client served from another
/// origin than the API's); nobody else's pages may. Tokens travel in headers, never cookies,
/// so no credentials mode.
fn web_origins(origins: &[String]) -> tower_http::cors::CorsLayer {
    use tower_http::cors::{AllowOrigin, CorsLayer};
    let origins: Vec<header::HeaderValue> = origins.iter().filter_map(|o| o.parse().ok()).collect();
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_methods([
            axum::http::Method::GET,
            axum::http::Method::POST,
            axum::http::Method::PUT,
            axum::http::Method::DELETE,
        ])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
        .max_age(Duration::from_secs(3600))
}

async fn server_info(State(app): AppState) -> impl IntoResponse {
    Proto(app.identity.info())
}

async fn report(
    State(app): AppState,
    Submitter(device): Submitter,
    body: Bytes,
) -> Result<impl IntoResponse, ApiError> {
    let report = decode(&app, body, REPORT_FIELDS).await?;
    Ok(Proto(app.moderation.report(&device, report).await?))
}

/// When hints may have been lost (NATS failed over), re-reads the queue heads of this node's
/// connected devices from the database, so that nobody waits for the next message to learn of
/// the ones before it.
fn spawn_hint_recovery(app: Arc<App>) {
    tokio::spawn(async move {
        loop {
            app.fanout.hints_lost().await;
            // Twice: the resubscriptions may still be on their way the first time.
            for delay in [Duration::ZERO, Duration::from_secs(1)] {
                tokio::time::sleep(delay).await;
                for device in app.fanout.local_devices() {
                    if let Ok(head) = app.delivery.queue_head(device).await {
                        app.fanout.refresh_local(device, head);
                    }
                }
            }
        }
    });
}

/// How often housekeeping runs: a disappearing message leaves the server at most this late.
const HOUSEKEEPING_EVERY: Duration = Duration::from_secs(10);

/// Housekeeping: expire old queue entries, disappearing messages and attachments, links, and
/// prune rate-limit state, every [`HOUSEKEEPING_EVERY`] (each an indexed query when idle).
fn spawn_housekeeping(app: Arc<App>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(HOUSEKEEPING_EVERY);
        loop {
            tick.tick().await;
            match app.delivery.expire(app.config.retention).await {
                Ok(0) => {}
                Ok(expired) => tracing::info!(expired, "expired undelivered queue entries"),
                Err(e) => tracing::warn!(error = %e.0, "expiry failed"),
            }
            match app.attachments.expire().await {
                Ok(0) => {}
                Ok(expired) => tracing::info!(expired, "expired attachments"),
                Err(e) => tracing::warn!(error = %e.0, "expiry of attachments failed"),
            }
            match app.links.expire().await {
                Ok(0) => {}
                Ok(expired) => tracing::info!(expired, "expired links and archives"),
                Err(e) => tracing::warn!(error = %e.0, "expiry of links failed"),
            }
            app.rates.prune();
        }
    });
}

pub async fn serve(
    app: Arc<App>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    spawn_housekeeping(app.clone());
    spawn_hint_recovery(app.clone());
    let listen = app.config.listen;
    let tls = app.config.tls.clone();
    let app_tls = tls.is_some();
    // One shutdown for both listeners.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop.send(true);
    });
    let shutdown = {
        let mut stopped = stopped.clone();
        async move {
            let _ = stopped.wait_for(|s| *s).await;
        }
    };
    let metrics_listener = tokio::net::TcpListener::bind(app.config.metrics_address())
        .await
        .map_err(|e| {
            ServerError::Config(format!(
                "cannot listen for metrics on {}: {e} (choose another with --metrics-listen)",
                app.config.metrics_address()
            ))
        })?;
    tracing::info!(address = %metrics_listener.local_addr()?, "metrics listening");
    let metrics_service = metrics_router(app.clone());
    let mut metrics_stopped = stopped;
    tokio::spawn(async move {
        let serving =
            axum::serve(metrics_listener, metrics_service).with_graceful_shutdown(async move {
                let _ = metrics_stopped.wait_for(|s| *s).await;
            });
        if let Err(e) = serving.await {
            tracing::warn!(error = %e, "metrics listener failed");
        }
    });
    let limits = app.config.transport.clone();
    let limiter =
        crate::transport::Limiter::new(limits.max_connections_per_address, limits.connection_cap());
    let body_timeout = limits.body_timeout;
    let deadlines = limiter.clone();
    let service = router(app)
        .layer(axum::middleware::map_request(move |request| {
            crate::transport::deadlines(deadlines.clone(), body_timeout, request)
        }))
        .into_make_service_with_connect_info::<SocketAddr>();
    let handle = axum_server::Handle::new();
    let stopper = handle.clone();
    tokio::spawn(async move {
        shutdown.await;
        stopper.graceful_shutdown(Some(Duration::from_secs(5)));
    });
    // TCP_NODELAY: small frames must leave at once; with Nagle's algorithm a push waits for the
    // acknowledgement of the previous one, which the client may delay by 40 ms.
    let counted = |answer_busy| {
        crate::transport::LimitAcceptor::new(
            axum_server::accept::NoDelayAcceptor::new(),
            limiter.clone(),
            limits.idle_timeout,
            answer_busy,
        )
    };
    let serving = match tls {
        Some(files) => {
            let config =
                axum_server::tls_rustls::RustlsConfig::from_pem_file(&files.cert, &files.key)
                    .await
                    .map_err(|e| {
                        ServerError::Config(format!("cannot load TLS certificate or key: {e}"))
                    })?;
            let acceptor = axum_server::tls_rustls::RustlsAcceptor::new(config)
                .handshake_timeout(limits.header_timeout)
                .acceptor(counted(false));
            let mut server = axum_server::bind(listen)
                .acceptor(acceptor)
                .handle(handle.clone())
                .first_request_timeout(limits.header_timeout)
                .accept_error_handler(accept_failed);
            configure(&mut server, &limits);
            tokio::spawn(async move { server.serve(service).await })
        }
        None => {
            let mut server = axum_server::bind(listen)
                .acceptor(counted(true))
                .handle(handle.clone())
                .first_request_timeout(limits.header_timeout)
                .accept_error_handler(accept_failed);
            configure(&mut server, &limits);
            tokio::spawn(async move { server.serve(service).await })
        }
    };
    if let Some(address) = handle.listening().await {
        announce(address, app_tls);
    }
    serving
        .await
        .map_err(|e| ServerError::Io(std::io::Error::other(e)))??;
    Ok(())
}

/// hyper's limits: header-read timeout (which also bounds the wait for the next request on a
/// kept-alive HTTP/1 connection) and HTTP/2 streams per connection. No HTTP/2 keep-alive pings:
/// they would keep an idle connection busy; the idle timeout closes dead and idle ones alike.
fn configure<A>(
    server: &mut axum_server::Server<SocketAddr, A>,
    limits: &crate::config::TransportLimits,
) {
    let builder = server.http_builder();
    builder
        .http1()
        .header_read_timeout(Some(limits.header_timeout));
    builder
        .http2()
        .max_concurrent_streams(Some(limits.http2_max_streams));
}

/// Failed accepts (the descriptor limit, say) and refused connections are logged; the listener
/// keeps accepting.
fn accept_failed(peer: Option<&SocketAddr>, error: &std::io::Error) {
    tracing::debug!(?peer, %error, "connection not accepted");
}

/// The one line tests and operators wait for: the address actually bound.
fn announce(address: SocketAddr, tls: bool) {
    let scheme = if tls { "https" } else { "http" };
    tracing::info!(%address, "listening");
    println!("parley server listening on {scheme}://{address}");
}
