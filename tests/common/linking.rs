//! Linking devices in tests: a new device and an approver, side by side.

/// Links a new device (a fresh home) to `approver`'s account: runs `link` on the new device
/// and `approve_link` with the code it shows, side by side, as two people would.
pub async fn link_device(
    server: &str,
    approver: &parley_client::Client,
) -> (tempfile::TempDir, parley_client::Client, ApproveEventLog) {
    let new_device = LinkingDevice::start(server, approver.username().as_str()).await;
    let mut log = ApproveEventLog::default();
    approver
        .approve_link(&new_device.code, |event| log.0.push(event))
        .await
        .expect("approve");
    let linked = new_device.task.await.expect("the new device's task");
    (new_device.home, linked.expect("link"), log)
}

#[derive(Default, Debug)]
pub struct ApproveEventLog(pub Vec<parley_client::ApproveEvent>);

pub fn texts(messages: &[parley_client::MessageView]) -> Vec<(String, String, bool)> {
    messages
        .iter()
        .filter(|m| m.kind == "text")
        .map(|m| (m.sender.clone(), m.text.clone(), m.history))
        .collect()
}

/// A new device that is waiting for approval (its `link` runs in a task), with what it said.
pub struct LinkingDevice {
    pub home: tempfile::TempDir,
    pub code: String,
    pub task: tokio::task::JoinHandle<Result<parley_client::Client, parley_client::ClientError>>,
    pub events: std::sync::Arc<std::sync::Mutex<Vec<parley_client::LinkEvent>>>,
}

impl LinkingDevice {
    /// Starts `parley link USERNAME` on a fresh home and waits for the code it shows.
    pub async fn start(server: &str, username: &str) -> LinkingDevice {
        let home = tempfile::tempdir().unwrap();
        LinkingDevice::start_in(home, server, username).await
    }

    /// Like [`LinkingDevice::start`], in a given home (to resume a link there).
    pub async fn start_in(home: tempfile::TempDir, server: &str, username: &str) -> LinkingDevice {
        let (code_tx, code_rx) = tokio::sync::oneshot::channel();
        let events = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (path, server, username, log) = (
            home.path().to_owned(),
            server.to_owned(),
            username.to_owned(),
            events.clone(),
        );
        let task = tokio::spawn(async move {
            let mut code_tx = Some(code_tx);
            parley_client::Client::link(
                &path,
                Some(&server),
                &username,
                parley_client::ClientOptions::default(),
                move |event| {
                    if let parley_client::LinkEvent::Code(code) = &event {
                        if let Some(tx) = code_tx.take() {
                            let _ = tx.send(code.clone());
                        }
                    }
                    log.lock().unwrap().push(event);
                },
            )
            .await
        });
        let code = code_rx.await.expect("the new device shows a code");
        LinkingDevice {
            home,
            code,
            task,
            events,
        }
    }

    pub fn said(&self, what: impl Fn(&parley_client::LinkEvent) -> bool) -> bool {
        self.events.lock().unwrap().iter().any(what)
    }
}
