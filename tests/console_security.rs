//! The moderation console against a hostile web: forged cross-site requests, stolen cookies,
//! guessed tokens, framing and caching. Driven over plain HTTP like a browser would send it.

mod common;

use common::*;

fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Signs in as a browser on the console's own page would; returns the `name=value` cookie.
async fn sign_in(server: &TestServer, token: &str) -> String {
    let response = browser()
        .post(format!("{}/admin/login", server.url()))
        .header("origin", server.url())
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    assert!(response.status().is_redirection(), "{}", response.status());
    let set_cookie = response.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_owned();
    set_cookie.split(';').next().unwrap().to_owned()
}

async fn signed_in(server: &TestServer, cookie: &str) -> bool {
    let response = browser()
        .get(format!("{}/admin/reports", server.url()))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    response.status() == 200
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cross_site_post_with_the_moderators_cookie_changes_nothing() {
    let server = TestServer::start();
    let alice = Device::register(&server.url(), "alice").await;
    let token = admin(&server, &["token", "--label", "ada"])
        .1
        .trim()
        .to_owned();
    let cookie = sign_in(&server, &token).await;
    for origin in [Some("https://evil.example"), Some("null"), None] {
        let mut request = browser()
            .post(format!("{}/admin/users/alice/suspend", server.url()))
            .header("cookie", &cookie);
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 403, "origin {origin:?}");
    }
    // Alice can still send: nothing was suspended.
    let bob = Device::register(&server.url(), "bob").await;
    let chat = parley_client::ChatRef::Direct(bob.client.username().clone());
    let sent = alice.client.send_text(&chat, "still here").await.unwrap();
    assert_eq!(sent.status, "sent");
    let (_, audit, _) = admin(&server, &["audit"]);
    assert!(!audit.contains("suspend alice"), "{audit}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cookie_is_a_session_that_expires_ends_on_sign_out_and_with_its_token() {
    let server = TestServer::start();
    let token = admin(&server, &["token", "--label", "ada"])
        .1
        .trim()
        .to_owned();
    let response = browser()
        .post(format!("{}/admin/login", server.url()))
        .header("origin", server.url())
        .form(&[("token", token.as_str())])
        .send()
        .await
        .unwrap();
    let set_cookie = response.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        !set_cookie.contains(&token),
        "the cookie carries the admin token"
    );
    for attribute in [
        "HttpOnly",
        "SameSite=Strict",
        "Max-Age=28800",
        "Path=/admin",
    ] {
        assert!(set_cookie.contains(attribute), "{set_cookie}");
    }
    let cookie = set_cookie.split(';').next().unwrap().to_owned();
    assert!(signed_in(&server, &cookie).await);

    // Signing out ends the session on the server, not just in the browser.
    let response = browser()
        .post(format!("{}/admin/logout", server.url()))
        .header("origin", server.url())
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert!(response.status().is_redirection());
    assert!(
        !signed_in(&server, &cookie).await,
        "a signed-out cookie still works"
    );

    // Revoking the token ends every session opened with it.
    let cookie = sign_in(&server, &token).await;
    assert!(signed_in(&server, &cookie).await);
    let (status, out, err) = admin(&server, &["revoke-token", "ada"]);
    assert_eq!(status, 0, "{err}");
    assert!(out.contains("1 token(s) labelled ada revoked"), "{out}");
    assert!(
        !signed_in(&server, &cookie).await,
        "a revoked token's session still works"
    );
    let (status, _, err) = admin(&server, &["revoke-token", "ada"]);
    assert_ne!(status, 0);
    assert!(err.contains("no admin token labelled ada"), "{err}");
    let (_, audit, _) = admin(&server, &["audit"]);
    assert!(audit.contains("cli revoke admin token ada"), "{audit}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guessing_tokens_is_throttled_and_logged() {
    let server = TestServer::start();
    let token = admin(&server, &["token"]).1.trim().to_owned();
    let mut statuses = Vec::new();
    for guess in 0..15 {
        let response = browser()
            .post(format!("{}/admin/login", server.url()))
            .header("origin", server.url())
            .form(&[("token", format!("{guess:064}"))])
            .send()
            .await
            .unwrap();
        statuses.push(response.status().as_u16());
    }
    assert_eq!(statuses[..10], [401; 10], "{statuses:?}");
    assert_eq!(statuses[10..], [429; 5], "{statuses:?}");
    // Throttled means the right token waits too: a guesser cannot tell.
    let response = browser()
        .post(format!("{}/admin/login", server.url()))
        .header("origin", server.url())
        .form(&[("token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    let log = std::fs::read_to_string(server.log_path()).unwrap();
    assert!(
        log.contains("console sign-in failed"),
        "failures are not logged"
    );
    assert!(!log.contains(&token), "the log holds the admin token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_pages_forbid_framing_sniffing_and_caching() {
    let server = TestServer::start();
    let token = admin(&server, &["token"]).1.trim().to_owned();
    let cookie = sign_in(&server, &token).await;
    for path in ["/admin", "/admin/reports", "/admin/audit"] {
        let response = browser()
            .get(format!("{}{path}", server.url()))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap();
        let headers = response.headers();
        let csp = headers["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
        assert!(csp.contains("default-src 'none'"), "{path}: {csp}");
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(headers["cache-control"], "no-store", "{path}");
        assert_eq!(headers["referrer-policy"], "same-origin", "{path}");
        // Plain HTTP on loopback: no HSTS (it is sent under TLS only).
        assert!(!headers.contains_key("strict-transport-security"), "{path}");
    }
}

#[test]
fn rotating_the_franking_key_is_audited() {
    let server = TestServer::start();
    let (status, out, err) = admin(&server, &["rotate-franking-key"]);
    assert_eq!(status, 0, "{err}");
    assert!(out.contains("franking key 2 is now current"), "{out}");
    let (_, audit, _) = admin(&server, &["audit"]);
    assert!(audit.contains("cli rotate franking key 2"), "{audit}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_tls_the_cookie_is_secure_and_browsers_are_told_to_stay_on_https() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, pem) = self_signed_certificate(dir.path());
    let server = TestServer::start_with(&[
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ]);
    let token = admin(&server, &["token"]).1.trim().to_owned();
    let base = format!("https://localhost:{}", server.port);
    let https = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .add_root_certificate(reqwest::Certificate::from_pem(pem.as_bytes()).unwrap())
        .build()
        .unwrap();
    let response = https
        .post(format!("{base}/admin/login"))
        .header("origin", &base)
        .form(&[("token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert!(response.status().is_redirection(), "{}", response.status());
    let set_cookie = response.headers()["set-cookie"].to_str().unwrap();
    assert!(set_cookie.contains("; Secure"), "{set_cookie}");
    assert!(
        response.headers().contains_key("strict-transport-security"),
        "no HSTS under TLS"
    );
}
