//! Quotas (issue 12, item 5): one address or account cannot fill the server's disk. Each test is
//! one attack against the real server binary, with raw requests where the client library would
//! stop the attacker on its own.

mod common;

use std::time::Instant;

use common::*;
use openmls_traits::signatures::Signer;
use parley_protocol::{v1, ErrorCode};
use prost::Message as _;

const PROTOBUF: &str = parley_protocol::CONTENT_TYPE;

fn proof_register(username: &str) -> Vec<u8> {
    let keys =
        openmls_basic_credential::SignatureKeyPair::new(openmls::prelude::SignatureScheme::ED25519)
            .unwrap();
    let key = keys.public().to_vec();
    let proof = keys
        .sign(&v1::register_proof_input(username, &key))
        .unwrap();
    v1::RegisterRequest {
        username: username.into(),
        signature_key: key,
        proof,
    }
    .encode_to_vec()
}

fn error_of(body: &[u8]) -> (ErrorCode, String) {
    let error = v1::ErrorBody::decode(body).expect("a protobuf error body");
    (ErrorCode::from_u32(error.code), error.message)
}

/// Registration from one address is limited to a small burst (before: 526 accounts in 0.5 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_from_one_address_is_limited_to_a_small_burst() {
    // The harness gives every other server a high limit; this one keeps the defaults.
    let server = TestServer::start_with(&["--registration-burst", "10"]);
    let url = format!("{}/v1/accounts", server.url());
    let http = reqwest::Client::new();
    let started = Instant::now();
    let mut registered = 0;
    let mut refusal = None;
    for i in 0..600 {
        let response = http
            .post(&url)
            .header("content-type", PROTOBUF)
            .body(proof_register(&format!("sybil{i}")))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let body = response.bytes().await.unwrap();
        match status {
            200 => registered += 1,
            429 => {
                refusal.get_or_insert(error_of(&body));
            }
            other => panic!("HTTP {other}"),
        }
        if started.elapsed().as_millis() > 500 {
            break;
        }
    }
    eprintln!(
        "{registered} accounts from one address in {:?}",
        started.elapsed()
    );
    assert!(registered <= 12, "{registered} accounts registered");
    let (code, message) = refusal.expect("refused at some point");
    assert_eq!(code, ErrorCode::RateLimited);
    assert!(message.contains("registrations"), "{message}");
}
