//! A throwaway S3-compatible server: s3s-fs (objects as files under a temporary directory) on
//! a loopback port, serving from a thread of its own until dropped. The code under test (the
//! Parley server, a separate process) reaches it over HTTP like any S3 endpoint, with SigV4.

use std::path::{Path, PathBuf};

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;

pub const ACCESS_KEY: &str = "parley-test-access";
pub const SECRET_KEY: &str = "parley-test-secret-key";

pub struct TestS3 {
    dir: tempfile::TempDir,
    pub port: u16,
    pub bucket: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TestS3 {
    /// Starts a server with one bucket, `parley`.
    pub fn start() -> TestS3 {
        let dir = tempfile::tempdir().expect("tempdir");
        let bucket = "parley".to_owned();
        std::fs::create_dir_all(dir.path().join(&bucket)).expect("bucket directory");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a loopback port");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("address").port();
        let root = dir.path().to_owned();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || serve(listener, &root, stopped));
        TestS3 {
            dir,
            port,
            bucket,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Where the objects are kept, as files.
    pub fn storage(&self) -> PathBuf {
        self.dir.path().to_owned()
    }
}

fn serve(
    listener: std::net::TcpListener,
    root: &Path,
    mut stopped: tokio::sync::oneshot::Receiver<()>,
) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async move {
        let fs = s3s_fs::FileSystem::new(root).expect("s3s-fs");
        let mut builder = S3ServiceBuilder::new(fs);
        builder.set_auth(SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
        let service = builder.build();
        let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
        let http = ConnBuilder::new(TokioExecutor::new());
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let Ok((socket, _)) = accepted else { continue };
                    let conn = http
                        .serve_connection(TokioIo::new(socket), service.clone())
                        .into_owned();
                    tokio::spawn(async move {
                        let _ = conn.await;
                    });
                }
                _ = &mut stopped => break,
            }
        }
    });
}

impl Drop for TestS3 {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
