//! The worker's handle on one account.

use std::path::PathBuf;
use std::rc::Rc;

use js_sys::{Function, Promise};
use parley_client::{platform, ChatRef, Client, ClientError, ClientOptions};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

/// Where an account lives in the origin's OPFS pool.
fn home(username: &str) -> PathBuf {
    PathBuf::from(format!("/parley/{username}"))
}

fn js_error(error: ClientError) -> JsValue {
    JsError::new(&error.to_string()).into()
}

fn json(value: &impl serde::Serialize) -> Result<JsValue, JsValue> {
    serde_json::to_string(value)
        .map(JsValue::from)
        .map_err(|e| JsError::new(&e.to_string()).into())
}

fn chat(name: &str) -> Result<ChatRef, JsValue> {
    ChatRef::parse(name).map_err(js_error)
}

/// One account, open in this worker.
#[wasm_bindgen]
pub struct Core {
    client: Rc<Client>,
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
        let client = Client::register(
            &home(&username),
            &server,
            &username,
            ClientOptions::default(),
        )
        .await
        .map_err(js_error)?;
        Ok(Core {
            client: Rc::new(client),
        })
    }

    /// Opens the account stored in this browser.
    pub fn open(username: String) -> Result<Core, JsValue> {
        let client = Client::open(&home(&username), ClientOptions::default()).map_err(js_error)?;
        Ok(Core {
            client: Rc::new(client),
        })
    }

    pub fn username(&self) -> String {
        self.client.username().to_string()
    }

    /// The chat list, as JSON (`ChatSummary[]`).
    pub fn chats(&self) -> Result<JsValue, JsValue> {
        json(&self.client.chats().map_err(js_error)?)
    }

    /// The last `limit` messages of `chat` (`bob` or `#team`), as JSON (`MessageView[]`).
    pub fn history(&self, chat_name: String, limit: u32) -> Result<JsValue, JsValue> {
        json(
            &self
                .client
                .history(&chat(&chat_name)?, limit)
                .map_err(js_error)?,
        )
    }

    /// Sends `text`; resolves with the message (`MessageView`) once the server stored it.
    #[wasm_bindgen(js_name = sendText)]
    pub fn send_text(&self, chat_name: String, text: String) -> Promise {
        let client = self.client.clone();
        future_to_promise(async move {
            let sent = client
                .send_text(&chat(&chat_name)?, &text)
                .await
                .map_err(js_error)?;
            json(&sent)
        })
    }

    /// Marks `chat` read here and, with read receipts on, tells its members.
    pub fn read(&self, chat_name: String) -> Promise {
        let client = self.client.clone();
        future_to_promise(async move {
            client.read(&chat(&chat_name)?).await.map_err(js_error)?;
            Ok(JsValue::UNDEFINED)
        })
    }

    /// Creates the group `#name` with `members`.
    #[wasm_bindgen(js_name = createGroup)]
    pub fn create_group(&self, name: String, members: Vec<String>) -> Promise {
        let client = self.client.clone();
        future_to_promise(async move {
            let members = members
                .iter()
                .map(|m| parley_protocol::Username::parse(m))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| JsValue::from(JsError::new(&e.to_string())))?;
            client
                .create_group(&name, &members)
                .await
                .map_err(js_error)?;
            Ok(JsValue::UNDEFINED)
        })
    }

    /// Stays connected: `on_message(json)` for each new message, `on_state(online)` when the
    /// connection comes or goes. Resolves only on a permanent error.
    pub fn follow(&self, on_message: Function, on_state: Function) -> Promise {
        let client = self.client.clone();
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
