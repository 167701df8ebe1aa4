// Settings: this account's devices (rename, revoke, approve a new one), backups (the
// recovery key shown once), read receipts, blocked accounts, notifications, and About.
import type { BackupStatus, DeviceView } from "./core";
import { alertLine, button, el, fullTime, size } from "./dom";
import { call, problem } from "./state";

declare const __BUILD__: string;

function card(title: string, testid: string, ...children: Node[]): HTMLElement {
  return el("section", { class: "card settings-card", "data-testid": testid, "aria-label": title }, el("h3", {}, title), ...children);
}

export function aboutCard(): HTMLElement {
  return el("section", { class: "card settings-card" },
    el("h2", {}, "About Parley"),
    el("p", {}, "Messages are end-to-end encrypted in this browser (MLS). This page's code comes from the server at every load; the command-line client does not have to trust it that way."),
    el("p", {}, "Build ", el("code", { "data-testid": "build" }, __BUILD__)));
}

function devicesCard(): HTMLElement {
  const list = el("ul", { class: "devices", "aria-label": "Devices" });
  const failure = alertLine({ "data-testid": "devices-error" });
  const status = el("p", { class: "done", role: "status", "data-testid": "devices-done" });

  const draw = (devices: DeviceView[]) => {
    list.replaceChildren(...devices.map((d) => {
      const name = el("strong", { class: "device-name" }, d.name || "Unnamed device");
      const row = el("li", { "data-testid": "device", "data-id": d.id }, el("div", { class: "device-title" }, name));
      if (d.current) row.firstElementChild!.append(el("span", { class: "badge", "data-testid": "this-device" }, "this device"));
      row.append(el("p", { class: "muted" }, `Added ${fullTime(d.added_at)} · last seen ${fullTime(d.last_seen)}`));
      const tools = el("div", { class: "row" });
      const rename = button("Rename", { class: "small", "data-testid": "rename-device", "aria-label": `Rename ${d.name || "this device"}` }, () => {
        // The name becomes a field in place, with Save and Cancel.
        const field = el("input", { "data-testid": "device-name", value: d.name, "aria-label": "Device name", maxlength: "64" });
        const save = el("button", { type: "submit", class: "small", "data-testid": "rename-save" }, "Save");
        const form = el("form", { class: "row rename" }, field, save, button("Cancel", { class: "small" }, () => { form.replaceWith(tools); rename.focus(); }));
        form.onsubmit = async (e) => {
          e.preventDefault();
          save.disabled = true;
          failure.textContent = "";
          try {
            const renamed = await call<DeviceView>("renameDevice", d.id, field.value.trim());
            status.textContent = `Renamed to ${renamed.name || "(no name)"}.`;
            await refresh();
          } catch (err) {
            failure.textContent = `Could not rename: ${problem(err)}`;
            save.disabled = false;
          }
        };
        tools.replaceWith(form);
        field.focus();
        field.select();
      });
      tools.append(rename);
      if (!d.current) {
        const revoke: HTMLButtonElement = button("Revoke", { class: "small danger", "data-testid": "revoke-device", "aria-label": `Revoke ${d.name || "device"}` }, async () => {
          if (!confirm(`Revoke ${d.name || "this device"}? It loses access to this account and every chat.`)) return;
          revoke.disabled = true;
          failure.textContent = "";
          try {
            const chats = await call<number>("revokeDevice", d.id);
            status.textContent = `Revoked ${d.name || "the device"}; removed from ${chats} chat${chats === 1 ? "" : "s"}.`;
            await refresh();
          } catch (err) {
            failure.textContent = `Could not revoke: ${problem(err)}`;
            revoke.disabled = false;
          }
        });
        tools.append(revoke);
      }
      row.append(tools);
      return row;
    }));
  };
  const refresh = async () => {
    try {
      draw(await call<DeviceView[]>("devices"));
    } catch (err) {
      failure.textContent = `Could not load the devices: ${problem(err)}`;
    }
  };

  // Approving a browser or terminal that shows a link code.
  const code = el("input", { id: "approve-code", "data-testid": "approve-code", autocomplete: "off", spellcheck: "false", placeholder: "the code the new device shows", required: "" });
  const approve = el("button", { type: "submit", "data-testid": "approve" }, "Approve");
  const approved = el("p", { class: "done", role: "status", "data-testid": "approve-done" });
  const approveFailure = alertLine({ "data-testid": "approve-error" });
  const form = el("form", { class: "approve" },
    el("label", { for: "approve-code" }, "Approve a new device"),
    el("p", { class: "muted" }, "On the new device choose “Link to my account” (or run parley link), then enter the code it shows. It gets every chat and the history."),
    el("div", { class: "row" }, code, approve), approved, approveFailure);
  form.onsubmit = async (e) => {
    e.preventDefault();
    approve.disabled = true;
    approved.textContent = "Approving… (sending the history can take a moment)";
    approveFailure.textContent = "";
    try {
      const sent = await call<{ chats: number; messages: number; bytes: number }>("approveLink", code.value.trim());
      approved.textContent = `Approved: sent ${sent.chats} chats and ${sent.messages} messages (${size(sent.bytes)}).`;
      code.value = "";
      await refresh();
    } catch (err) {
      approved.textContent = "";
      approveFailure.textContent = `Could not approve: ${problem(err)}`;
    } finally {
      approve.disabled = false;
    }
  };

  list.append(el("li", { class: "muted" }, "Loading…"));
  void refresh();
  return card("Devices", "devices", list, status, failure, form);
}

/// A recovery key shown but not yet confirmed as written down: kept in this page's memory
/// only (never stored), so that leaving Settings and coming back shows it again, and a reload
/// asks first.
let unconfirmedRecoveryKey: { key: string; summary: string } | null = null;

window.addEventListener("beforeunload", (e) => {
  if (unconfirmedRecoveryKey) e.preventDefault();
});

function backupCard(): HTMLElement {
  const state = el("p", { "data-testid": "backup-status" }, "Loading…");
  const failure = alertLine({ "data-testid": "backup-error" });
  const keyBox = el("div", { class: "recovery" });
  keyBox.hidden = true;
  const showKey = (shown: { key: string; summary: string }) => {
    const written = button("I have written it down", { "data-testid": "recovery-done" }, () => {
      unconfirmedRecoveryKey = null;
      keyBox.replaceChildren();
      keyBox.hidden = true;
      enable.focus();
    });
    keyBox.replaceChildren(
      el("p", { class: "warning" }, "Write this recovery key down and keep it safe. It is shown only now; without it a backup cannot be restored, and anyone with it can read the backup."),
      el("code", { class: "key", "data-testid": "recovery-key" }, shown.key),
      el("p", { class: "muted" }, shown.summary),
      written);
    keyBox.hidden = false;
    written.focus();
  };
  const enable = button("Turn on backups", { class: "primary", "data-testid": "backup-enable" }, async () => {
    enable.disabled = true;
    failure.textContent = "";
    try {
      const done = await call<{ recovery_key: string; chats: number; messages: number; bytes: number; at: string }>("enableBackup");
      unconfirmedRecoveryKey = {
        key: done.recovery_key,
        summary: `First backup stored: ${done.chats} chats, ${done.messages} messages (${size(done.bytes)}).`,
      };
      showKey(unconfirmedRecoveryKey);
      await refresh();
    } catch (err) {
      failure.textContent = `Could not turn on backups: ${problem(err)}`;
      enable.disabled = false;
    }
  });
  if (unconfirmedRecoveryKey) showKey(unconfirmedRecoveryKey);
  enable.hidden = true;
  const refresh = async () => {
    try {
      const s = await call<BackupStatus>("backupStatus");
      if (!s.enabled) {
        state.textContent = "Backups are off. With backups on, an encrypted copy of your chats is kept on the server, to restore with a recovery key if you lose every device.";
      } else {
        const every = s.every_minutes ? `at most every ${s.every_minutes} minutes` : "after every change";
        const last = s.last_backup_at ? `Last backup ${fullTime(s.last_backup_at)}${s.last_backup_bytes != null ? ` (${size(s.last_backup_bytes)})` : ""}.` : "No backup yet.";
        state.textContent = `Backups are on, after changes ${every}. ${last}${s.changes_pending ? " Changes are waiting for the next one." : ""} The server keeps ${s.stored.length}.`;
      }
      enable.hidden = s.enabled;
      enable.disabled = false;
    } catch (err) {
      state.textContent = "";
      failure.textContent = `Could not read the backup status: ${problem(err)}`;
    }
  };
  void refresh();
  return card("Backup", "backup", state, enable, keyBox, failure);
}

function receiptsCard(): HTMLElement {
  const toggle = el("input", { type: "checkbox", role: "switch", id: "read-receipts", "data-testid": "read-receipts" });
  toggle.disabled = true;
  const failure = alertLine({ "data-testid": "receipts-error" });
  call<boolean>("readReceipts")
    .then((on) => { toggle.checked = on; toggle.disabled = false; })
    .catch((err) => { failure.textContent = `Could not read the setting: ${problem(err)}`; });
  toggle.onchange = async () => {
    const on = toggle.checked;
    toggle.disabled = true;
    failure.textContent = "";
    try {
      await call("setReadReceipts", on);
    } catch (err) {
      toggle.checked = !on;
      failure.textContent = `Could not change read receipts: ${problem(err)}`;
    } finally {
      toggle.disabled = false;
    }
  };
  return card("Privacy", "privacy",
    el("div", { class: "switch" }, toggle, el("label", { for: "read-receipts" }, "Send read receipts")),
    el("p", { class: "muted" }, "When on, people see when you read their messages, and you see when they read yours."),
    failure);
}

function blockedCard(): HTMLElement {
  const list = el("ul", { class: "blocked", "aria-label": "Blocked accounts" });
  const failure = alertLine({ "data-testid": "blocked-error" });
  const refresh = async () => {
    try {
      const users = await call<string[]>("blocked");
      list.replaceChildren(...users.map((user) => {
        const unblock: HTMLButtonElement = button("Unblock", { class: "small", "data-testid": "unblock", "data-user": user, "aria-label": `Unblock ${user}` }, async () => {
          unblock.disabled = true;
          failure.textContent = "";
          try {
            await call("unblock", user);
            await refresh();
          } catch (err) {
            failure.textContent = `Could not unblock ${user}: ${problem(err)}`;
            unblock.disabled = false;
          }
        });
        return el("li", { "data-testid": "blocked-user", "data-user": user }, el("span", {}, user), unblock);
      }));
      if (users.length === 0) list.append(el("li", { class: "muted" }, "Nobody is blocked."));
    } catch (err) {
      failure.textContent = `Could not load blocked accounts: ${problem(err)}`;
    }
  };
  void refresh();
  return card("Blocked accounts", "blocked", list, failure);
}

function notificationsCard(): HTMLElement {
  const state = el("p", { "data-testid": "notifications-state" });
  const ask = button("Enable notifications", { "data-testid": "notifications-enable" }, async () => {
    try {
      await Notification.requestPermission();
    } catch (err) {
      state.textContent = `The browser refused: ${problem(err)}`;
      return;
    }
    show();
  });
  const show = () => {
    if (!("Notification" in self)) {
      state.textContent = "This browser does not show notifications.";
      ask.hidden = true;
      return;
    }
    const p = Notification.permission;
    state.textContent = p === "granted" ? "On: a new message shows a notification while Parley's tab is in the background."
      : p === "denied" ? "Blocked in the browser's site settings for this page."
      : "Off. Turn them on to hear of new messages while this tab is in the background.";
    ask.hidden = p !== "default";
  };
  show();
  return card("Notifications", "notifications", state, ask);
}

/// The settings, drawn in `pane`.
export function showSettings(pane: HTMLElement, back: () => void): void {
  const backButton = button("‹", { class: "back", "aria-label": "Back to chats" }, back);
  pane.replaceChildren(
    el("header", {}, backButton, el("h2", { "data-testid": "settings-title" }, "Settings")),
    el("div", { class: "scroll settings" }, devicesCard(), backupCard(), receiptsCard(), notificationsCard(), blockedCard(), aboutCard()));
}
