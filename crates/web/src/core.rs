//! The worker's handle on one account: opening it (register, link, open) and staying
//! connected. The other calls are in `chats` (messages, groups, files) and `account`
//! (devices, backups, safety numbers, reports, settings).

use std::future::Future;
use std::path::PathBuf;
use std::rc::Rc;

use js_sys::{Function, Promise};
use parley_client::{platform, ChatRef, Client, ClientError, ClientOptions, LinkEvent};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::{future_to_promise, spawn_local};

use crate::qr::qr_json;

/// Where an account lives in the origin's OPFS pool.
pub(crate) fn home(username: &str) -> PathBuf {
    PathBuf::from(format!("/parley/{username}"))
}

pub(crate) fn js_error(error: ClientError) -> JsValue {
    JsError::new(&error.to_string()).into()
}

/// An error for a send that did not complete but is kept (in the outbox, or as an upload the
/// next sync resumes): the page shows it waiting, with no retry that would send it twice.
pub(crate) fn queued_error(error: ClientError) -> JsValue {
    let value: JsValue = JsError::new(&error.to_string()).into();
    let _ = js_sys::Reflect::set(&value, &"queued".into(), &true.into());
    value
}

pub(crate) fn invalid(error: impl std::fmt::Display) -> JsValue {
    JsError::new(&error.to_string()).into()
}

pub(crate) fn json(value: &impl serde::Serialize) -> Result<JsValue, JsValue> {
    serde_json::to_string(value)
        .map(JsValue::from)
        .map_err(invalid)
}

pub(crate) fn chat(name: &str) -> Result<ChatRef, JsValue> {
    ChatRef::parse(name).map_err(js_error)
}

pub(crate) fn username(name: &str) -> Result<parley_protocol::Username, JsValue> {
    parley_protocol::Username::parse(name).map_err(invalid)
}

/// A promise of `work`'s answer, as JSON.
pub(crate) fn promise<T: serde::Serialize>(
    work: impl Future<Output = Result<T, JsValue>> + 'static,
) -> Promise {
    future_to_promise(async move { json(&work.await?) })
}

/// One account, open in this worker.
#[wasm_bindgen]
pub struct Core {
    pub(crate) client: Rc<Client>,
}

impl Core {
    fn new(client: Client) -> Core {
        Core {
            client: Rc::new(client),
        }
    }
}

#[wasm_bindgen]
impl Core {
    /// Installs the OPFS storage; once per worker, before anything else.
    #[wasm_bindgen(js_name = installStorage)]
    pub async fn install_storage() -> Result<(), JsValue> {
        platform::install_storage().await.map_err(js_error)
    }

    /// Registers `username` on `server` as this browser's first device.
    pub async fn register(server: String, username: String) -> Result<Core, JsValue> {
        Client::register(
            &home(&username),
            &server,
            &username,
            ClientOptions::default(),
        )
        .await
        .map(Core::new)
        .map_err(js_error)
    }

    /// Links this browser to `username`'s account as a new device. `on_event(json)` hears
    /// `{stage: "code", code, qr}` (to show and approve on a device of the account), then
    /// `approved`, `stalled` and `history`. Resolves once the history is in; a link a reload
    /// interrupted goes on with the same code.
    pub async fn link(
        server: String,
        username: String,
        on_event: Function,
    ) -> Result<Core, JsValue> {
        let report = |event: LinkEvent| {
            let value = match event {
                LinkEvent::Code(code) => serde_json::json!({
                    "stage": "code",
                    "qr": qr_json(&code),
                    "code": code,
                }),
                LinkEvent::Approved => serde_json::json!({ "stage": "approved" }),
                LinkEvent::Stalled { chunks } => {
                    serde_json::json!({ "stage": "stalled", "chunks": chunks })
                }
                LinkEvent::HistoryImported { chats, messages } => {
                    serde_json::json!({ "stage": "history", "chats": chats, "messages": messages })
                }
            };
            let _ = on_event.call1(&JsValue::NULL, &value.to_string().into());
        };
        Client::link(
            &home(&username),
            Some(&server),
            &username,
            ClientOptions::default(),
            report,
        )
        .await
        .map(Core::new)
        .map_err(js_error)
    }

    /// Opens the account stored in this browser.
    pub fn open(username: String) -> Result<Core, JsValue> {
        Client::open(&home(&username), ClientOptions::default())
            .map(Core::new)
            .map_err(js_error)
    }

    pub fn username(&self) -> String {
        self.client.username().to_string()
    }

    /// A QR code of `text`, as JSON `{width, modules}`.
    pub fn qr(text: String) -> Result<JsValue, JsValue> {
        json(&qr_json(&text))
    }

    /// Stays connected: `on_message(json)` for each new message, `on_state(online)` when the
    /// connection comes or goes, `on_typing(json)` for a typing indicator, `on_change()` when
    /// something shown changed without a new message (a receipt, a message disappeared).
    /// Resolves only on a permanent error.
    pub fn follow(
        &self,
        on_message: Function,
        on_state: Function,
        on_typing: Function,
        on_change: Function,
    ) -> Promise {
        let client = self.client.clone();
        let (mut typing, mut changes) = (client.typing_events(), client.change_events());
        spawn_local(async move {
            use tokio::sync::broadcast::error::RecvError;
            loop {
                match typing.recv().await {
                    Ok(view) => {
                        if let Ok(text) = serde_json::to_string(&view) {
                            let _ = on_typing.call1(&JsValue::NULL, &text.into());
                        }
                    }
                    Err(RecvError::Lagged(_)) => {}
                    Err(RecvError::Closed) => break,
                }
            }
        });
        spawn_local(async move {
            use tokio::sync::broadcast::error::RecvError;
            loop {
                match changes.recv().await {
                    Ok(()) | Err(RecvError::Lagged(_)) => {
                        let _ = on_change.call0(&JsValue::NULL);
                    }
                    Err(RecvError::Closed) => break,
                }
            }
        });
        future_to_promise(async move {
            client
                .follow(
                    |message| {
                        if let Ok(text) = serde_json::to_string(message) {
                            let _ = on_message.call1(&JsValue::NULL, &text.into());
                        }
                    },
                    |online| {
                        let _ = on_state.call1(&JsValue::NULL, &online.into());
                    },
                    std::future::pending(),
                )
                .await
                .map_err(js_error)?;
            Ok(JsValue::UNDEFINED)
        })
    }
}
