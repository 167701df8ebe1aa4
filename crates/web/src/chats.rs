//! Chats, messages, groups and files, for the page.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use js_sys::{Function, Promise, Uint8Array};
use parley_client::attachments::Progress;
use parley_client::platform;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

use crate::core::{chat, js_error, json, promise, queued_error, username, Core};

thread_local! {
    /// Each transfer's progress callback, by a number of its own (`OnProgress` must be
    /// `Send`, which a JS function is not; a worker has one thread, so they wait here).
    static ON_PROGRESS: RefCell<HashMap<u64, Function>> = RefCell::new(HashMap::new());
    static NEXT_NUMBER: Cell<u64> = const { Cell::new(0) };
}

fn next_number() -> u64 {
    NEXT_NUMBER.with(|n| {
        n.set(n.get() + 1);
        n.get()
    })
}

/// `on_progress(done, total)` for the transfer running while this lives.
struct ProgressTo(u64);

impl ProgressTo {
    fn new(on_progress: Function) -> ProgressTo {
        let n = next_number();
        ON_PROGRESS.with(|m| m.borrow_mut().insert(n, on_progress));
        ProgressTo(n)
    }

    /// The client's callback for it (which owns a number only, so is `Send`).
    fn callback(&self) -> impl Fn(&str, Progress) + Send + Sync + 'static {
        let n = self.0;
        move |_name, at| {
            ON_PROGRESS.with(|m| {
                if let Some(f) = m.borrow().get(&n) {
                    let _ = f.call2(
                        &JsValue::NULL,
                        &(at.done as f64).into(),
                        &(at.total as f64).into(),
                    );
                }
            })
        }
    }
}

impl Drop for ProgressTo {
    fn drop(&mut self) {
        ON_PROGRESS.with(|m| m.borrow_mut().remove(&self.0));
    }
}

/// A path of its own for one file in the account's in-memory file area.
fn scratch(home: &Path, what: &str) -> PathBuf {
    let n = next_number();
    home.join("files").join(format!("{what}-{n}"))
}

fn users(names: &[String]) -> Result<Vec<parley_protocol::Username>, JsValue> {
    names.iter().map(|n| username(n)).collect()
}

#[wasm_bindgen]
impl Core {
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

    /// Sends `text` (answering `reply_to` when given); resolves with the message once the
    /// server stored it.
    pub fn send(&self, chat_name: String, text: String, reply_to: Option<String>) -> Promise {
        let client = self.client.clone();
        promise(async move {
            client
                .send_reply(&chat(&chat_name)?, &text, reply_to.as_deref())
                .await
                .map_err(|e| {
                    // Held back by the server (a full queue): kept in the outbox.
                    if e.is_kept() {
                        queued_error(e)
                    } else {
                        js_error(e)
                    }
                })
        })
    }

    pub fn edit(&self, id: String, text: String) -> Promise {
        let client = self.client.clone();
        promise(async move { client.edit(&id, &text).await.map_err(js_error) })
    }

    pub fn delete(&self, id: String) -> Promise {
        let client = self.client.clone();
        promise(async move { client.delete(&id).await.map_err(js_error) })
    }

    /// Puts `emoji` on message `id`, or takes ours back (`remove`).
    pub fn react(&self, id: String, emoji: String, remove: bool) -> Promise {
        let client = self.client.clone();
        promise(async move { client.react(&id, &emoji, remove).await.map_err(js_error) })
    }

    /// Marks `chat` read here and, with read receipts on, tells its members.
    pub fn read(&self, chat_name: String) -> Promise {
        let client = self.client.clone();
        promise(async move { client.read(&chat(&chat_name)?).await.map_err(js_error) })
    }

    /// Tells `chat` we are typing (or `stopped`); sent at most every few seconds.
    pub fn typing(&self, chat_name: String, stopped: bool) -> Promise {
        let client = self.client.clone();
        promise(async move {
            client
                .send_typing(&chat(&chat_name)?, stopped)
                .await
                .map_err(js_error)
        })
    }

    /// Creates the group `#name` with `members`.
    #[wasm_bindgen(js_name = createGroup)]
    pub fn create_group(&self, name: String, members: Vec<String>) -> Promise {
        let client = self.client.clone();
        promise(async move {
            client
                .create_group(&name, &users(&members)?)
                .await
                .map_err(js_error)
        })
    }

    #[wasm_bindgen(js_name = addMembers)]
    pub fn add_members(&self, name: String, members: Vec<String>) -> Promise {
        let client = self.client.clone();
        promise(async move {
            client
                .add_members(&name, &users(&members)?)
                .await
                .map_err(js_error)
        })
    }

    #[wasm_bindgen(js_name = removeMembers)]
    pub fn remove_members(&self, name: String, members: Vec<String>) -> Promise {
        let client = self.client.clone();
        promise(async move {
            client
                .remove_members(&name, &users(&members)?)
                .await
                .map_err(js_error)
        })
    }

    pub fn leave(&self, name: String) -> Promise {
        let client = self.client.clone();
        promise(async move { client.leave_group(&name).await.map_err(js_error) })
    }

    /// A group's members, admins and epoch, as JSON (`GroupStateView`).
    pub fn group(&self, chat_name: String) -> Result<JsValue, JsValue> {
        json(
            &self
                .client
                .group_state(&chat(&chat_name)?)
                .map_err(js_error)?,
        )
    }

    /// Sets `chat`'s disappearing timer (0: off).
    #[wasm_bindgen(js_name = setDisappearing)]
    pub fn set_disappearing(&self, chat_name: String, seconds: u32) -> Promise {
        let client = self.client.clone();
        promise(async move {
            client
                .set_disappearing(&chat(&chat_name)?, Some(seconds))
                .await
                .map_err(js_error)
        })
    }

    /// Sends the file `name` (its `bytes`, as the page read them) with `caption`; `on_progress
    /// (done, total)` after each uploaded part. Resolves with the message.
    #[wasm_bindgen(js_name = sendFile)]
    pub fn send_file(
        &self,
        chat_name: String,
        name: String,
        bytes: Vec<u8>,
        caption: String,
        reply_to: Option<String>,
        on_progress: Function,
    ) -> Promise {
        let client = self.client.clone();
        promise(async move {
            let chat = chat(&chat_name)?;
            // The name travels as the file's last path component.
            let file_name = Path::new(&name)
                .file_name()
                .map(|n| n.to_owned())
                .unwrap_or_else(|| "file".into());
            let path = scratch(client.home(), "chosen").join(file_name);
            platform::write_file(&path, bytes);
            let progress = ProgressTo::new(on_progress);
            let caption = (!caption.is_empty()).then_some(caption.as_str());
            let sent = client
                .send_file(
                    &chat,
                    &path,
                    caption,
                    reply_to.as_deref(),
                    &progress.callback(),
                )
                .await;
            let _ = platform::remove_file(&path);
            // Interrupted: the upload is kept and the next sync goes on with it.
            sent.map_err(|e| {
                if e.is_transient() {
                    queued_error(e)
                } else {
                    js_error(e)
                }
            })
        })
    }

    /// The `index`th file of message `id`, downloaded and checked against the hashes its
    /// message carries: resolves with its bytes (`Uint8Array`).
    pub fn attachment(&self, id: String, index: u32, on_progress: Function) -> Promise {
        let client = self.client.clone();
        future_to_promise(async move {
            let out = scratch(client.home(), "saved");
            let progress = ProgressTo::new(on_progress);
            let saved = client
                .save_attachment(&id, index as usize, Some(&out), &progress.callback())
                .await;
            saved.map_err(js_error)?;
            let bytes = platform::take_file(&out).map_err(crate::core::invalid)?;
            Ok(Uint8Array::from(bytes.as_slice()).into())
        })
    }
}
