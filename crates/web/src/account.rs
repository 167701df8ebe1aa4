//! The account's side of the page: safety numbers, reports and blocks, devices, backups and
//! settings.

use js_sys::Promise;
use parley_client::DEFAULT_BACKUP_MINUTES;
use wasm_bindgen::prelude::*;

use crate::core::{js_error, json, promise, username, Core};
use crate::qr::qr_json;

#[wasm_bindgen]
impl Core {
    /// The safety number shared with `peer`, as JSON: `{peer, digits, qr_payload, verified,
    /// qr}`.
    #[wasm_bindgen(js_name = safetyNumber)]
    pub fn safety_number(&self, peer: String) -> Result<JsValue, JsValue> {
        let number = self
            .client
            .safety_number(&username(&peer)?)
            .map_err(js_error)?;
        let mut value = serde_json::to_value(&number).map_err(crate::core::invalid)?;
        value["qr"] = serde_json::to_value(qr_json(&number.qr_payload)).unwrap_or_default();
        json(&value)
    }

    /// Marks `peer` verified: the user compared `digits`, the safety number shown.
    pub fn verify(&self, peer: String, digits: String) -> Result<(), JsValue> {
        self.client
            .mark_verified(&username(&peer)?, &digits)
            .map_err(js_error)
    }

    /// Reports message `id` with `reason` and up to `context` neighbouring messages; resolves
    /// with the report's number.
    pub fn report(&self, id: String, reason: String, context: u32) -> Promise {
        let client = self.client.clone();
        promise(async move {
            let bundle = client
                .report_bundle(&id, &reason, context)
                .map_err(js_error)?;
            client.send_report(&bundle).await.map_err(js_error)
        })
    }

    pub fn block(&self, user: String) -> Promise {
        let client = self.client.clone();
        promise(async move { client.block(&username(&user)?).await.map_err(js_error) })
    }

    pub fn unblock(&self, user: String) -> Result<(), JsValue> {
        self.client.unblock(&username(&user)?).map_err(js_error)
    }

    /// The blocked accounts, as JSON (`string[]`).
    pub fn blocked(&self) -> Result<JsValue, JsValue> {
        json(&self.client.blocked().map_err(js_error)?)
    }

    /// The account's devices, as JSON (`DeviceView[]`).
    pub fn devices(&self) -> Promise {
        let client = self.client.clone();
        promise(async move { client.devices().await.map_err(js_error) })
    }

    #[wasm_bindgen(js_name = renameDevice)]
    pub fn rename_device(&self, id: String, name: String) -> Promise {
        let client = self.client.clone();
        promise(async move { client.rename_device(&id, &name).await.map_err(js_error) })
    }

    /// Revokes device `id`; resolves with the number of chats it was removed from.
    #[wasm_bindgen(js_name = revokeDevice)]
    pub fn revoke_device(&self, id: String) -> Promise {
        let client = self.client.clone();
        promise(async move { client.revoke_device(&id).await.map_err(js_error) })
    }

    /// Approves the new device that shows `code`: adds it to every chat and sends it the
    /// history. Resolves with `{chats, messages, bytes}` sent.
    #[wasm_bindgen(js_name = approveLink)]
    pub fn approve_link(&self, code: String) -> Promise {
        let client = self.client.clone();
        promise(async move {
            let size = client.approve_link(&code, |_| {}).await.map_err(js_error)?;
            Ok(serde_json::json!({
                "chats": size.chats,
                "messages": size.messages,
                "bytes": size.bytes,
            }))
        })
    }

    #[wasm_bindgen(js_name = backupStatus)]
    pub fn backup_status(&self) -> Promise {
        let client = self.client.clone();
        promise(async move { client.backup_status().await.map_err(js_error) })
    }

    /// Turns backups on (hourly after a change) and stores the first; resolves with the
    /// recovery key, to show once, and the first backup's size.
    #[wasm_bindgen(js_name = enableBackup)]
    pub fn enable_backup(&self) -> Promise {
        let client = self.client.clone();
        promise(async move {
            let (key, report) = client
                .enable_backup(DEFAULT_BACKUP_MINUTES)
                .await
                .map_err(js_error)?;
            let mut value = serde_json::to_value(&report).map_err(crate::core::invalid)?;
            value["recovery_key"] = key.encode().into();
            Ok(value)
        })
    }

    #[wasm_bindgen(js_name = readReceipts)]
    pub fn read_receipts(&self) -> Result<bool, JsValue> {
        self.client.read_receipts().map_err(js_error)
    }

    #[wasm_bindgen(js_name = setReadReceipts)]
    pub fn set_read_receipts(&self, on: bool) -> Promise {
        let client = self.client.clone();
        promise(async move { client.set_read_receipts(on).await.map_err(js_error) })
    }
}
