//! The moderation console at `/admin`: server-rendered HTML (maud escapes every value), behind
//! an admin token that `parley admin token` creates. A moderator sees reported messages only.
//!
//! Signing in trades the token for a session id with an expiry (the cookie never holds the
//! token); every state-changing request must come from the console's own origin (CSRF), and
//! every response forbids framing, sniffing, caching and referrers to other sites.

use std::sync::Arc;

use axum::extract::{ConnectInfo, Form, FromRequestParts, Path, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use maud::{html, Markup, DOCTYPE};
use parley_protocol::Username;
use parley_store::Report;

use crate::moderation::SignInAttempt;
use crate::App;

const COOKIE: &str = "parley_admin";

fn page(title: &str, body: Markup) -> Html<String> {
    Html(
        html! {
            (DOCTYPE)
            html lang="en" {
                head {
                    meta charset="utf-8";
                    title { (title) " · Parley moderation" }
                    style { (maud::PreEscaped(STYLE)) }
                }
                body {
                    header { a href="/admin/reports" { "Parley moderation" } " · " a href="/admin/audit" { "Audit log" } }
                    main { h1 { (title) } (body) }
                }
            }
        }
        .into_string(),
    )
}

const STYLE: &str = "body{font-family:sans-serif;margin:2em;max-width:60em}table{border-collapse:collapse}\
td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left}blockquote{background:#f4f4f4;padding:1em;\
white-space:pre-wrap}form{display:inline-block;margin-right:1em}.error{color:#b00}";

fn time(ms: i64) -> String {
    chrono_like(ms)
}

/// RFC 3339 in UTC without pulling a date crate into the server.
fn chrono_like(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn token_from(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_owned())
}

/// The signed-in moderator, or a redirect to the login page.
async fn moderator(app: &App, headers: &HeaderMap) -> Result<String, Response> {
    let session = token_from(headers).ok_or_else(|| Redirect::to("/admin").into_response())?;
    match app.moderation.console_moderator(&session).await {
        Ok(Some(name)) => Ok(name),
        Ok(None) => Err(Redirect::to("/admin").into_response()),
        Err(e) => Err((StatusCode::SERVICE_UNAVAILABLE, e.0.message).into_response()),
    }
}

fn login_form(error: Option<&str>) -> Html<String> {
    page(
        "Sign in",
        html! {
            @if let Some(error) = error { p.error { (error) } }
            form method="post" action="/admin/login" {
                label { "Admin token " input type="password" name="token" autocomplete="off"; }
                button type="submit" id="sign-in" { "Sign in" }
            }
        },
    )
}

async fn index(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    match moderator(&app, &headers).await {
        Ok(_) => Redirect::to("/admin/reports").into_response(),
        Err(_) => login_form(None).into_response(),
    }
}

#[derive(serde::Deserialize)]
struct Login {
    token: String,
}

/// The session cookie's attributes: not readable by scripts, never sent cross-site, HTTPS-only
/// when the server speaks TLS.
fn cookie(app: &App, value: &str, max_age_s: i64) -> String {
    let secure = if app.config.tls.is_some() {
        "; Secure"
    } else {
        ""
    };
    format!("{COOKIE}={value}; HttpOnly; SameSite=Strict; Path=/admin; Max-Age={max_age_s}{secure}")
}

/// A sign-in attempt the throttle allowed. An extractor of the request head, so that axum
/// asks the throttle before it reads the form (the last extractor): a client that is guessing
/// tokens is answered at once, whatever body it announces.
struct Attempt(SignInAttempt);

impl FromRequestParts<Arc<App>> for Attempt {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, Response> {
        let Some(ConnectInfo(peer)) = parts
            .extensions
            .get::<ConnectInfo<std::net::SocketAddr>>()
            .copied()
        else {
            return Err(StatusCode::INTERNAL_SERVER_ERROR.into_response());
        };
        app.moderation
            .sign_in_attempt(peer.ip())
            .map(Attempt)
            .map_err(|e| refused_sign_in(&e))
    }
}

fn refused_sign_in(e: &crate::ApiError) -> Response {
    let status =
        StatusCode::from_u16(e.code().http_status()).unwrap_or(StatusCode::TOO_MANY_REQUESTS);
    (status, login_form(Some(&e.0.message))).into_response()
}

async fn login(
    State(app): State<Arc<App>>,
    Attempt(attempt): Attempt,
    Form(form): Form<Login>,
) -> Response {
    match app.moderation.sign_in(attempt, form.token.trim()).await {
        Ok(Some(session)) => {
            let max_age = crate::moderation::CONSOLE_SESSION_MS / 1000;
            (
                [(header::SET_COOKIE, cookie(&app, &session, max_age))],
                Redirect::to("/admin/reports"),
            )
                .into_response()
        }
        Ok(None) => (
            StatusCode::UNAUTHORIZED,
            login_form(Some("That token is not valid.")),
        )
            .into_response(),
        Err(e) => refused_sign_in(&e),
    }
}

async fn logout(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    if let Some(session) = token_from(&headers) {
        if let Err(e) = app.moderation.sign_out(&session).await {
            return (StatusCode::SERVICE_UNAVAILABLE, e.0.message).into_response();
        }
    }
    (
        [(header::SET_COOKIE, cookie(&app, "", 0))],
        Redirect::to("/admin"),
    )
        .into_response()
}

fn excerpt(text: &str) -> String {
    let short: String = text.chars().take(60).collect();
    if short.len() < text.len() {
        format!("{short}…")
    } else {
        short
    }
}

async fn reports(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    if let Err(redirect) = moderator(&app, &headers).await {
        return redirect;
    }
    let reports = match app.moderation.reports(None).await {
        Ok(reports) => reports,
        Err(e) => return (StatusCode::SERVICE_UNAVAILABLE, e.0.message).into_response(),
    };
    page(
        "Reports",
        html! {
            @if reports.is_empty() { p { "No reports." } }
            @else {
                table {
                    tr { th { "#" } th { "status" } th { "accused" } th { "reason" } th { "message" } th { "reported" } }
                    @for r in &reports {
                        tr {
                            td { a href={ "/admin/reports/" (r.id) } class="report-link" { (r.id) } }
                            td { (r.status.as_str()) }
                            td { (r.report.accused) }
                            td { (r.report.reason) }
                            td { (excerpt(&r.report.text)) }
                            td { (time(r.report.created_at)) }
                        }
                    }
                }
            }
            form method="post" action="/admin/logout" { button { "Sign out" } }
        },
    )
    .into_response()
}

#[derive(serde::Deserialize)]
struct ContextMessage {
    sender: String,
    text: String,
    /// "edit" or "delete" for a version of the reported message, "file" for one of its
    /// files; none for a neighbour.
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    file: Option<crate::reported_files::VerifiedFile>,
}

fn report_page(report: &Report, suspended: bool) -> Html<String> {
    let r = &report.report;
    let (files, rest): (Vec<ContextMessage>, Vec<ContextMessage>) =
        serde_json::from_str::<Vec<ContextMessage>>(&r.context)
            .unwrap_or_default()
            .into_iter()
            .partition(|m| m.file.is_some());
    let (versions, context): (Vec<ContextMessage>, Vec<ContextMessage>) =
        rest.into_iter().partition(|m| m.version.is_some());
    page(
        &format!("Report #{}", report.id),
        html! {
            p { "Status: " strong #status { (report.status.as_str()) } }
            p { "Accused: " strong #accused { (r.accused) } @if suspended { " (suspended)" } }
            p { "Reported by " (r.reporter) " at " (time(r.created_at)) "; reason: " em { (r.reason) } }
            p { "Sent at " (time(r.message_accepted_at)) " in chat " code { (r.group_id) } " (message " (r.group_seq) ")" }
            p { "Verified message (its franking tag and the server's frank match):" }
            blockquote #reported-text { (r.text) }
            @if !versions.is_empty() {
                p { "Its later versions, each verified (kept by the reporter's device after the sender changed them):" }
                ol #versions { @for m in &versions {
                    li { @if m.version.as_deref() == Some("delete") {
                        em { "deleted by " (m.sender) }
                    } @else {
                        "edited to: " (m.text)
                    } }
                } }
            }
            @if !files.is_empty() {
                p { "Its files, each verified against the hash in the franked message (downloads; open them with care):" }
                ul #files { @for (n, f) in files.iter().filter_map(|m| m.file.as_ref()).enumerate() {
                    li { a href={ "/admin/reports/" (report.id) "/files/" (n) } { (f.name) } " (" (f.content_type) ", " (f.size) " bytes, SHA-256 " code { (f.sha256) } ")" }
                } }
            }
            @if !context.is_empty() {
                p { "Context, each message verified:" }
                ul { @for m in &context { li { strong { (m.sender) } ": " (m.text) } } }
            }
            form method="post" action={ "/admin/reports/" (report.id) "/dismiss" } { button #dismiss { "Dismiss" } }
            @if suspended {
                form method="post" action={ "/admin/users/" (r.accused) "/unsuspend" } { button #unsuspend { "Unsuspend " (r.accused) } }
                form method="post" action={ "/admin/users/" (r.accused) "/remove-from-groups" } { button #remove { "Remove " (r.accused) " from their groups" } }
            } @else {
                form method="post" action={ "/admin/users/" (r.accused) "/suspend" } { button #suspend { "Suspend " (r.accused) } }
            }
        },
    )
}

async fn report(State(app): State<Arc<App>>, headers: HeaderMap, Path(id): Path<u64>) -> Response {
    if let Err(redirect) = moderator(&app, &headers).await {
        return redirect;
    }
    match app.moderation.report_by_id(id).await {
        Ok(Some(report)) => {
            let suspended = app
                .moderation
                .is_suspended(&report.report.accused)
                .await
                .unwrap_or(false);
            report_page(&report, suspended).into_response()
        }
        Ok(None) => (
            StatusCode::NOT_FOUND,
            page("Not found", html! { p { "No such report." } }),
        )
            .into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e.0.message).into_response(),
    }
}

/// A reported file, as a download: never rendered by the browser (it may be anything).
async fn report_file(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path((id, index)): Path<(u64, usize)>,
) -> Response {
    if let Err(redirect) = moderator(&app, &headers).await {
        return redirect;
    }
    match app.moderation.report_file(id, index).await {
        Ok(Some((_, bytes))) => (
            [
                (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
                (
                    header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"report-{id}-file-{index}\""),
                ),
            ],
            bytes,
        )
            .into_response(),
        Ok(None) => (
            StatusCode::NOT_FOUND,
            page("Not found", html! { p { "No such file." } }),
        )
            .into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e.0.message).into_response(),
    }
}

async fn dismiss(State(app): State<Arc<App>>, headers: HeaderMap, Path(id): Path<u64>) -> Response {
    let name = match moderator(&app, &headers).await {
        Ok(name) => name,
        Err(redirect) => return redirect,
    };
    match app.moderation.dismiss(&name, id).await {
        Ok(_) => Redirect::to(&format!("/admin/reports/{id}")).into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e.0.message).into_response(),
    }
}

async fn user_action(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path((user, action)): Path<(String, String)>,
) -> Response {
    let name = match moderator(&app, &headers).await {
        Ok(name) => name,
        Err(redirect) => return redirect,
    };
    let Ok(user) = Username::parse(&user) else {
        return (StatusCode::BAD_REQUEST, "invalid username").into_response();
    };
    let result = match action.as_str() {
        // Its live connections, on every node, close now rather than at their next check.
        "suspend" => app.moderation.suspend(&name, &user).await.map(|_| ()),
        "unsuspend" => app.moderation.unsuspend(&name, &user).await.map(|_| ()),
        "remove-from-groups" => app
            .moderation
            .remove_from_groups(&name, &user)
            .await
            .map(|_| ()),
        _ => return (StatusCode::NOT_FOUND, "no such action").into_response(),
    };
    match result {
        // Back to where the moderator came from (the report page).
        Ok(()) => {
            let back = headers
                .get(header::REFERER)
                .and_then(|v| v.to_str().ok())
                .and_then(|r| r.find("/admin/").map(|i| r[i..].to_owned()))
                .unwrap_or_else(|| "/admin/reports".into());
            Redirect::to(&back).into_response()
        }
        Err(e) => (
            StatusCode::FORBIDDEN,
            page("Not done", html! { p.error { (e.0.message) } }),
        )
            .into_response(),
    }
}

async fn audit(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    if let Err(redirect) = moderator(&app, &headers).await {
        return redirect;
    }
    let entries = app.moderation.audit_log().await.unwrap_or_default();
    page(
        "Audit log",
        html! {
            table {
                tr { th { "time" } th { "moderator" } th { "action" } th { "subject" } }
                @for e in &entries { tr { td { (time(e.at)) } td { (e.moderator) } td { (e.action) } td { (e.subject) } } }
            }
        },
    )
    .into_response()
}

/// Cross-site request forgery: a state-changing request must name the console's own origin.
/// Browsers send `Origin` with every POST; a request without it must at least say it is
/// same-origin (`Sec-Fetch-Site`). Over HTTP/2 there is no `Host` header: the request's
/// authority (`:authority`) names the host instead.
fn same_origin(request: &Request) -> bool {
    let headers = request.headers();
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| request.uri().authority().map(|a| a.as_str()));
    match (headers.get(header::ORIGIN), host) {
        (Some(origin), Some(host)) => origin
            .to_str()
            .ok()
            .and_then(|o| o.split_once("://"))
            .is_some_and(|(_, authority)| authority.eq_ignore_ascii_case(host)),
        (Some(_), None) => false,
        (None, _) => headers
            .get("sec-fetch-site")
            .is_some_and(|v| v.as_bytes() == b"same-origin"),
    }
}

async fn guard(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    let refused = request.method() != Method::GET
        && request.method() != Method::HEAD
        && !same_origin(&request);
    let mut response = if refused {
        tracing::warn!("console request refused: not from the console's own origin");
        (
            StatusCode::FORBIDDEN,
            page(
                "Refused",
                html! { p.error { "This request did not come from the console." } },
            ),
        )
            .into_response()
    } else {
        next.run(request).await
    };
    let headers = response.headers_mut();
    for (name, value) in [
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; \
             frame-ancestors 'none'; base-uri 'none'",
        ),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        // Same-origin referrers only: actions return to the page they came from.
        (header::REFERRER_POLICY, "same-origin"),
        // Pages carry reported plaintext: never kept by a browser or a proxy.
        (header::CACHE_CONTROL, "no-store"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    if app.config.tls.is_some() {
        headers.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        );
    }
    response
}

pub fn router(app: Arc<App>) -> Router<Arc<App>> {
    Router::new()
        .route("/admin", get(index))
        .route("/admin/login", post(login))
        .route("/admin/logout", post(logout))
        .route("/admin/reports", get(reports))
        .route("/admin/reports/{id}", get(report))
        .route("/admin/reports/{id}/dismiss", post(dismiss))
        .route("/admin/reports/{id}/files/{index}", get(report_file))
        .route("/admin/users/{user}/{action}", post(user_action))
        .route("/admin/audit", get(audit))
        .layer(middleware::from_fn_with_state(app, guard))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn post(uri: &str, headers: &[(&str, &str)]) -> Request {
        let mut request = axum::http::Request::post(uri);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.body(axum::body::Body::empty()).unwrap()
    }

    #[test]
    fn a_post_is_same_origin_when_its_origin_names_the_host_over_http1_or_http2() {
        let http1 = post(
            "/admin/login",
            &[
                ("host", "chat.example:7878"),
                ("origin", "https://chat.example:7878"),
            ],
        );
        assert!(same_origin(&http1));
        // HTTP/2 carries the host as the request's authority, with no Host header.
        let http2 = post(
            "https://chat.example:7878/admin/login",
            &[("origin", "https://chat.example:7878")],
        );
        assert!(same_origin(&http2));
        let forged = post(
            "https://chat.example:7878/admin/login",
            &[("origin", "https://evil.example")],
        );
        assert!(!same_origin(&forged));
        let nowhere = post("/admin/login", &[("origin", "https://chat.example:7878")]);
        assert!(!same_origin(&nowhere));
    }

    #[test]
    fn times_render_as_rfc3339() {
        assert_eq!(chrono_like(0), "1970-01-01T00:00:00Z");
        assert_eq!(chrono_like(1_700_000_000_000), "2023-11-14T22:13:20Z");
    }
}
