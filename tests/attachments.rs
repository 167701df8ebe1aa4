//! Attachments (issue 14), end to end against the real server on loopback: files are sealed on
//! the sender's device, uploaded in parts that survive an interruption, and saved by every
//! recipient device byte for byte; the server (and an S3-compatible store behind it) only
//! ever holds ciphertext; a changed blob, a second key for one ciphertext and a plaintext that
//! does not match its hash are all refused, and nothing of such a file is written.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::*;
use parley_client::{ChatRef, Client};
use parley_protocol::{v1, Username};

const MARKER: &[u8] = b"PARLEY-PLAINTEXT-MARKER";

fn user(name: &str) -> Username {
    Username::parse(name).unwrap()
}

/// A file of `bytes` bytes with [`MARKER`] and a counter every kilobyte: any plaintext copy
/// of it can be found by searching for the marker.
fn marked_file(dir: &Path, name: &str, bytes: usize) -> PathBuf {
    let mut data = Vec::with_capacity(bytes);
    let mut n = 0u64;
    while data.len() < bytes {
        data.extend_from_slice(MARKER);
        data.extend_from_slice(format!("{n:>10}").as_bytes());
        data.extend(std::iter::repeat_n(b'.', 1024 - MARKER.len() - 10));
        n += 1;
    }
    data.truncate(bytes);
    let path = dir.join(name);
    std::fs::write(&path, data).unwrap();
    path
}

fn no_progress() -> impl Fn(&str, parley_client::attachments::Progress) + Send + Sync {
    |_, _| {}
}

/// The files under `dir`'s `objects/` (the server's attachment store on one node).
fn stored_parts(data_dir: &Path) -> Vec<PathBuf> {
    walk(&data_dir.join("objects"))
}

/// Saves the message's file on `client` into `dir`; the saved path, or the error.
async fn save(client: &Client, message: &str, dir: &Path, name: &str) -> Result<PathBuf, String> {
    client.sync().await.unwrap();
    client
        .save_attachment(message, 0, Some(&dir.join(name)), &no_progress())
        .await
        .map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_30_mb_file_interrupted_at_half_arrives_intact_on_every_device() {
    let server = TestServer::start();
    let files = tempfile::tempdir().unwrap();
    let Device {
        home: alice_home,
        client: alice,
    } = Device::register(&server.url(), "alice").await;
    let bob = Device::register(&server.url(), "bob").await;
    let to_bob = ChatRef::Direct(user("bob"));
    alice.send_text(&to_bob, "a file follows").await.unwrap();
    bob.client.sync().await.unwrap();
    let (_alice2_home, alice2, _) = link_device(&server.url(), &alice).await;
    let (_bob2_home, bob2, _) = link_device(&server.url(), &bob.client).await;
    alice.sync().await.unwrap();
    bob.client.sync().await.unwrap();
    let original = marked_file(files.path(), "big.bin", 30_000_000);
    drop(alice); // the CLI takes the home now

    // The upload is killed once the server has half of it.
    let mut child = Command::new(BIN)
        .arg("--home")
        .arg(alice_home.path())
        .args(["--server", &server.url(), "send", "bob", "--file"])
        .arg(&original)
        .args(["--caption", "the big one"])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut progress = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut uploaded = 0.0;
    while uploaded < 15.0 {
        let line = progress
            .next()
            .expect("the upload stopped before half")
            .unwrap();
        // "parley: uploading big.bin: 16.8 of 30.0 MB"
        if let Some(rest) = line.strip_prefix("parley: uploading big.bin: ") {
            uploaded = rest.split(' ').next().unwrap().parse().unwrap();
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(uploaded < 30.0, "killed before the end: {uploaded} MB");

    // The next run goes on from where the server is, not from the start.
    let alice = Client::open(alice_home.path(), Default::default()).unwrap();
    let resumed_from = std::sync::Mutex::new(None);
    let sent = alice
        .resume_uploads(&|_, p| {
            resumed_from.lock().unwrap().get_or_insert(p.done);
        })
        .await
        .unwrap();
    let first = resumed_from.lock().unwrap().expect("parts were uploaded");
    assert!(
        first as f64 / 1e6 > uploaded,
        "the first part after resuming ends at {first} bytes, past the {uploaded} MB before"
    );
    assert_eq!(sent.len(), 1);
    let message = &sent[0];
    assert_eq!(message.text, "the big one");
    assert_eq!(message.attachments.len(), 1);
    assert_eq!(message.attachments[0].name, "big.bin");
    assert_eq!(message.attachments[0].size, 30_000_000);

    // Every other device of both accounts gets it byte for byte.
    let expected = std::fs::read(&original).unwrap();
    for (label, device) in [("bob", &bob.client), ("bob2", &bob2), ("alice2", &alice2)] {
        let saved = save(device, &message.id, files.path(), &format!("{label}.bin"))
            .await
            .unwrap_or_else(|e| panic!("{label}: {e}"));
        assert!(
            std::fs::read(&saved).unwrap() == expected,
            "{label}'s copy differs"
        );
        let history = device.history(&to_bob_or_alice(label), 10).unwrap();
        let shown = history.iter().find(|m| m.id == message.id).unwrap();
        assert_eq!(shown.attachments[0].sha256, message.attachments[0].sha256);
    }
    // Nothing on the server was ever plaintext, and once every device has the file it goes.
    assert!(
        !contains(&server.all_bytes(), MARKER),
        "plaintext on the server"
    );
    assert!(
        stored_parts(&server.data_dir()).is_empty(),
        "fetched by every device, the ciphertext is deleted: {:?}",
        stored_parts(&server.data_dir())
    );
    assert!(
        walk(alice_home.path())
            .iter()
            .all(|f| !f.to_string_lossy().ends_with(".sealed")),
        "the sender keeps no sealed copy once it is sent"
    );
}

fn to_bob_or_alice(label: &str) -> ChatRef {
    match label {
        "alice2" => ChatRef::Direct(user("bob")),
        _ => ChatRef::Direct(user("alice")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_blob_is_refused_and_nothing_of_it_is_written() {
    let server = TestServer::start();
    let files = tempfile::tempdir().unwrap();
    let alice = Device::register(&server.url(), "alice").await;
    let bob = Device::register(&server.url(), "bob").await;
    let original = marked_file(files.path(), "photo.jpg", 300_000);
    let sent = alice
        .client
        .send_file(
            &ChatRef::Direct(user("bob")),
            &original,
            None,
            None,
            &no_progress(),
        )
        .await
        .unwrap();
    assert_eq!(sent.attachments[0].content_type, "image/jpeg");
    let parts = stored_parts(&server.data_dir());
    assert_eq!(parts.len(), 1, "{parts:?}");
    let mut blob = std::fs::read(&parts[0]).unwrap();
    blob[1000] ^= 1;
    std::fs::write(&parts[0], &blob).unwrap();

    let error = save(&bob.client, &sent.id, files.path(), "saved.jpg")
        .await
        .unwrap_err();
    assert!(error.contains("refused"), "{error}");
    let leftovers: Vec<_> = walk(files.path())
        .into_iter()
        .filter(|f| f.file_name().unwrap() != "photo.jpg")
        .collect();
    assert!(leftovers.is_empty(), "nothing written: {leftovers:?}");
    assert!(
        walk(bob.home.path())
            .iter()
            .all(|f| !f.to_string_lossy().ends_with(".sealed")),
        "a refused download is not kept"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_ciphertext_never_opens_as_two_files() {
    let server = TestServer::start();
    let files = tempfile::tempdir().unwrap();
    let alice = Device::register(&server.url(), "alice").await;
    let bob = Device::register(&server.url(), "bob").await;
    let to_alice = ChatRef::Direct(user("alice"));
    let hello = alice
        .client
        .send_text(&ChatRef::Direct(user("bob")), "hi")
        .await
        .unwrap();
    bob.client.sync().await.unwrap();
    let text_with = |attachment: v1::Attachment| {
        v1::app_payload::Body::Text(v1::TextBody {
            text: String::new(),
            reply_to: None,
            attachments: vec![attachment],
        })
    };

    // A rogue client uploads one file and names it twice: once as it is, once under another
    // key and plaintext hash. The second message is refused.
    let first = alice
        .client
        .upload_unchecked(&hello.id, &marked_file(files.path(), "a.txt", 5000))
        .await
        .unwrap();
    alice
        .client
        .send_unchecked(&hello.id, text_with(first.clone()))
        .await
        .unwrap();
    let other_key = v1::Attachment {
        key: vec![7; 32],
        plaintext_sha256: vec![8; 32],
        ..first.clone()
    };
    alice
        .client
        .send_unchecked(&hello.id, text_with(other_key))
        .await
        .unwrap();
    bob.client.sync().await.unwrap();
    let with_files: Vec<_> = bob
        .client
        .history(&to_alice, 20)
        .unwrap()
        .into_iter()
        .filter(|m| !m.attachments.is_empty())
        .collect();
    assert_eq!(with_files.len(), 1, "{with_files:?}");
    save(&bob.client, &with_files[0].id, files.path(), "a-saved.txt")
        .await
        .unwrap();

    // A message whose plaintext hash does not match its file: shown (nobody can tell before
    // downloading), but the file is refused and never written.
    let second = alice
        .client
        .upload_unchecked(&hello.id, &marked_file(files.path(), "b.txt", 5000))
        .await
        .unwrap();
    let wrong_hash = v1::Attachment {
        plaintext_sha256: vec![9; 32],
        ..second
    };
    alice
        .client
        .send_unchecked(&hello.id, text_with(wrong_hash))
        .await
        .unwrap();
    bob.client.sync().await.unwrap();
    let lying = bob
        .client
        .history(&to_alice, 20)
        .unwrap()
        .into_iter()
        .rfind(|m| !m.attachments.is_empty())
        .unwrap();
    assert_ne!(lying.id, with_files[0].id);
    let error = save(&bob.client, &lying.id, files.path(), "b-saved.txt")
        .await
        .unwrap_err();
    assert!(error.contains("does not match"), "{error}");
    assert!(!files.path().join("b-saved.txt").exists());
    assert!(walk(files.path())
        .iter()
        .all(|f| !f.to_string_lossy().contains("b-saved")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_are_bounded_by_size_quota_and_group() {
    let server =
        TestServer::start_with(&["--max-attachment-mib", "1", "--attachment-quota-mib", "2"]);
    let files = tempfile::tempdir().unwrap();
    let alice = Device::register(&server.url(), "alice").await;
    let _bob = Device::register(&server.url(), "bob").await;
    let _carol = Device::register(&server.url(), "carol").await;
    let to_bob = ChatRef::Direct(user("bob"));
    let too_big = marked_file(files.path(), "big.bin", 1_200_000);
    let error = alice
        .client
        .send_file(&to_bob, &too_big, None, None, &no_progress())
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("at most 1 MiB"), "{error}");
    // Two files of 0.9 MiB fit in the quota of 2 MiB, a third does not until one is fetched.
    for name in ["one.bin", "two.bin"] {
        let file = marked_file(files.path(), name, 900_000);
        alice
            .client
            .send_file(&to_bob, &file, None, None, &no_progress())
            .await
            .unwrap();
    }
    let third = marked_file(files.path(), "three.bin", 900_000);
    let error = alice
        .client
        .send_file(&to_bob, &third, None, None, &no_progress())
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("quota"), "{error}");
    // The refused upload is not retried by every later sync.
    alice.client.sync().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_s3_compatible_storage_the_bucket_holds_only_ciphertext() {
    let s3 = parley_testkit::TestS3::start();
    let endpoint = s3.endpoint();
    let server = TestServer::start_with_env(
        &["--s3-endpoint", &endpoint, "--s3-bucket", &s3.bucket],
        &[
            ("AWS_ACCESS_KEY_ID", parley_testkit::S3_ACCESS_KEY),
            ("AWS_SECRET_ACCESS_KEY", parley_testkit::S3_SECRET_KEY),
        ],
    );
    let files = tempfile::tempdir().unwrap();
    let alice = Device::register(&server.url(), "alice").await;
    let bob = Device::register(&server.url(), "bob").await;
    let original = marked_file(files.path(), "report.pdf", 9_000_000);
    let sent = alice
        .client
        .send_file(
            &ChatRef::Direct(user("bob")),
            &original,
            Some("see page 3"),
            None,
            &no_progress(),
        )
        .await
        .unwrap();
    let bucket = s3.storage().join(&s3.bucket);
    let in_bucket = walk(&bucket);
    assert_eq!(in_bucket.len(), 3, "three parts of 4 MiB: {in_bucket:?}");
    let mut stored = Vec::new();
    for part in walk(&s3.storage()) {
        stored.extend(std::fs::read(part).unwrap());
    }
    assert!(!contains(&stored, MARKER), "plaintext in the bucket");
    assert!(
        !contains(&server.all_bytes(), MARKER),
        "plaintext on the server"
    );
    assert!(
        stored_parts(&server.data_dir()).is_empty(),
        "nothing in the data directory"
    );
    let saved = save(&bob.client, &sent.id, files.path(), "saved.pdf")
        .await
        .unwrap();
    assert!(std::fs::read(saved).unwrap() == std::fs::read(&original).unwrap());
    assert!(
        walk(&bucket).is_empty(),
        "fetched by the only other device, the parts are deleted from the bucket"
    );
}

/// Signs in to the moderation console as a browser would; returns the session cookie.
async fn console_cookie(server: &TestServer) -> String {
    let token = admin_ok(server, &["token", "--label", "ada"])
        .trim()
        .to_owned();
    let response = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
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
    set_cookie.split(';').next().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reported_file_is_verified_against_its_franked_hash_and_moderators_can_open_it() {
    let server = TestServer::start();
    let files = tempfile::tempdir().unwrap();
    let alice = Device::register(&server.url(), "alice").await;
    let bob = Device::register(&server.url(), "bob").await;
    let carol = Device::register(&server.url(), "carol").await;
    let original = marked_file(files.path(), "abuse.png", 2_500_000);
    alice
        .client
        .create_group("crew", &[user("bob"), user("carol")])
        .await
        .unwrap();
    let sent = alice
        .client
        .send_file(
            &ChatRef::Group("crew".into()),
            &original,
            Some("look"),
            None,
            &no_progress(),
        )
        .await
        .unwrap();
    bob.client.sync().await.unwrap();
    carol.client.sync().await.unwrap();

    // bob has not saved it: his device fetches it again for the report.
    let bundle = bob.client.report_bundle(&sent.id, "abuse", 0).unwrap();
    let id = bob.client.send_report(&bundle).await.unwrap();
    let (status, out, err) = admin(&server, &["reports", "--json"]);
    assert_eq!(status, 0, "{err}");
    let report = json_lines(&out)
        .into_iter()
        .find(|r| r["id"] == id)
        .unwrap();
    assert_eq!(report["text"], "look");
    let listed = &report["files"][0];
    assert_eq!(listed["name"], "abuse.png");
    assert_eq!(listed["size"], 2_500_000);
    assert_eq!(listed["sha256"], sent.attachments[0].sha256);

    // The moderator opens it in the console: the reported bytes, as a download.
    let cookie = console_cookie(&server).await;
    let console = reqwest::Client::new();
    let page = console
        .get(format!("{}/admin/reports/{id}", server.url()))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("abuse.png"), "{page}");
    let download = console
        .get(format!("{}/admin/reports/{id}/files/0", server.url()))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(download.status(), 200);
    assert!(download.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .starts_with("attachment"));
    assert!(download.bytes().await.unwrap() == std::fs::read(&original).unwrap());
    let anonymous = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(format!("{}/admin/reports/{id}/files/0", server.url()))
        .send()
        .await
        .unwrap();
    assert!(
        anonymous.status().is_redirection(),
        "only moderators read reported files: {}",
        anonymous.status()
    );

    // carol saved a copy; once every device has fetched it the server has none, and her report
    // goes with her copy, checked against the hash; a different file is refused before it goes.
    let saved = save(&carol.client, &sent.id, files.path(), "carol.png")
        .await
        .unwrap();
    alice.client.sync().await.unwrap();
    assert!(stored_parts(&server.data_dir())
        .iter()
        .all(|p| !p.to_string_lossy().contains("attachments/")));
    let bundle = carol.client.report_bundle(&sent.id, "abuse", 0).unwrap();
    let error = carol
        .client
        .send_report(&bundle)
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("--file"), "{error}");
    let other = marked_file(files.path(), "other.png", 1000);
    let error = carol
        .client
        .send_report_with_files(&bundle, &[(0, other)])
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("hash differs"), "{error}");
    carol
        .client
        .send_report_with_files(&bundle, &[(0, saved)])
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_whose_file_does_not_match_the_franked_hash_is_refused() {
    let server = TestServer::start();
    let files = tempfile::tempdir().unwrap();
    let alice = Device::register(&server.url(), "alice").await;
    let bob = Device::register(&server.url(), "bob").await;
    let sent = alice
        .client
        .send_file(
            &ChatRef::Direct(user("bob")),
            &marked_file(files.path(), "a.bin", 3000),
            None,
            None,
            &no_progress(),
        )
        .await
        .unwrap();
    bob.client.sync().await.unwrap();
    // A rogue reporter uploads other bytes of the same length as the file and names them.
    let forged = files.path().join("forged.bin");
    std::fs::write(&forged, vec![b'x'; 3000]).unwrap();
    let raw = Raw::new(&server.url(), bob.client.api().token());
    let created: v1::CreateBlobResponse = raw
        .post("/v1/blobs", &v1::CreateBlob::default())
        .await
        .unwrap();
    let blob = hex::encode(&created.blob_id);
    let _: v1::BlobStatus = raw
        .put(
            &format!("/v1/blobs/{blob}/0"),
            &v1::BlobChunk {
                data: std::fs::read(&forged).unwrap(),
            },
        )
        .await
        .unwrap();
    let _: v1::BlobStatus = raw
        .post(
            &format!("/v1/blobs/{blob}/seal"),
            &v1::SealBlob { chunks: 1 },
        )
        .await
        .unwrap();
    let mut request = bob
        .client
        .report_bundle(&sent.id, "abuse", 0)
        .unwrap()
        .to_wire()
        .unwrap();
    request.files.push(v1::ReportedFile {
        index: 0,
        blob_id: created.blob_id,
    });
    let (status, body) = raw
        .post_bytes("/v1/reports", prost::Message::encode_to_vec(&request))
        .await;
    assert_eq!(status, 403);
    let (_, message) = error_of(&body);
    assert!(message.contains("does not match"), "{message}");
    let (_, out, _) = admin(&server, &["reports", "--json"]);
    assert!(json_lines(&out).is_empty(), "nothing stored: {out}");
}

/// Uploads `bytes` as a sealed blob of the token's account (as a reporter does with a file).
async fn blob_of(raw: &Raw, bytes: Vec<u8>) -> Vec<u8> {
    let created: v1::CreateBlobResponse = raw
        .post("/v1/blobs", &v1::CreateBlob::default())
        .await
        .unwrap();
    let blob = hex::encode(&created.blob_id);
    let _: v1::BlobStatus = raw
        .put(
            &format!("/v1/blobs/{blob}/0"),
            &v1::BlobChunk { data: bytes },
        )
        .await
        .unwrap();
    let _: v1::BlobStatus = raw
        .post(
            &format!("/v1/blobs/{blob}/seal"),
            &v1::SealBlob { chunks: 1 },
        )
        .await
        .unwrap();
    created.blob_id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_may_go_without_a_file_the_server_no_longer_has_and_a_refused_one_keeps_none() {
    let server = TestServer::start();
    let files = tempfile::tempdir().unwrap();
    let alice = Device::register(&server.url(), "alice").await;
    let bob = Device::register(&server.url(), "bob").await;
    let to_bob = ChatRef::Direct(user("bob"));
    let sent = alice
        .client
        .send_file(
            &to_bob,
            &marked_file(files.path(), "a.bin", 3000),
            Some("abuse"),
            None,
            &no_progress(),
        )
        .await
        .unwrap();
    // bob saves it elsewhere and loses the copy; the server deleted it once he had it.
    let copy = save(&bob.client, &sent.id, files.path(), "copy.bin")
        .await
        .unwrap();
    std::fs::remove_file(copy).unwrap();
    let bundle = bob.client.report_bundle(&sent.id, "abuse", 0).unwrap();
    let refused = bob
        .client
        .send_report(&bundle)
        .await
        .unwrap_err()
        .to_string();
    assert!(refused.contains("--without-missing-files"), "{refused}");
    let id = bob
        .client
        .send_report_without_missing_files(&bundle, &[])
        .await
        .unwrap();
    let (_, out, _) = admin(&server, &["reports", "--json"]);
    let reports = json_lines(&out);
    assert_eq!(reports.len(), 1, "{out}");
    assert_eq!(reports[0]["id"], id, "the text went, verified: {out}");

    // Two files, the second forged: refused, and the first is not kept either.
    let hello = alice.client.send_text(&to_bob, "two files").await.unwrap();
    let genuine = marked_file(files.path(), "one.bin", 2000);
    let first = alice
        .client
        .upload_unchecked(&hello.id, &genuine)
        .await
        .unwrap();
    let second = alice
        .client
        .upload_unchecked(&hello.id, &marked_file(files.path(), "two.bin", 2000))
        .await
        .unwrap();
    let both = alice
        .client
        .send_unchecked(
            &hello.id,
            v1::app_payload::Body::Text(v1::TextBody {
                text: "both".into(),
                reply_to: None,
                attachments: vec![first, second],
            }),
        )
        .await
        .unwrap();
    bob.client.sync().await.unwrap();
    let raw = Raw::new(&server.url(), bob.client.api().token());
    let mut request = bob
        .client
        .report_bundle(&both.id, "abuse", 0)
        .unwrap()
        .to_wire()
        .unwrap();
    request.files = vec![
        v1::ReportedFile {
            index: 0,
            blob_id: blob_of(&raw, std::fs::read(&genuine).unwrap()).await,
        },
        v1::ReportedFile {
            index: 1,
            blob_id: blob_of(&raw, vec![b'x'; 2000]).await,
        },
    ];
    let (status, body) = raw
        .post_bytes("/v1/reports", prost::Message::encode_to_vec(&request))
        .await;
    assert_eq!(status, 403, "{:?}", error_of(&body));
    assert!(
        walk(&server.data_dir().join("objects").join("reports")).is_empty(),
        "the genuine first file was not kept for a refused report"
    );
}
