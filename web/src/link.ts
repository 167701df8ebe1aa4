// Linking this browser to an existing account as a new device: it shows a code (and its QR
// code) to approve on a device of the account, then receives the history.
import type { LinkEvent } from "./core";
import { button, el } from "./dom";
import { qrCanvas } from "./qr";
import { call, problem, session } from "./state";

/// Where a link in progress is remembered, so that a reload goes on with the same code.
export const LINKING = "parley.linking";

/// Draws the link screen in `app` and links; resolves with the username once the history is
/// in. `back(error)` returns to the welcome screen.
export async function link(app: HTMLElement, server: string, username: string, back: (error: string) => void): Promise<string | null> {
  const stage = el("p", { role: "status", "data-testid": "link-stage" }, "Asking the server for a code…");
  const code = el("code", { class: "link-code", "data-testid": "link-code" });
  const how = el("p", { class: "muted" });
  const qr = el("div", { class: "qr-box" });
  const failure = el("p", { class: "error", role: "alert" });
  const shown = el("div", { class: "link-shown" }, code, qr, how);
  shown.hidden = true;
  app.replaceChildren(el("section", { class: "card link" },
    el("h1", {}, "Link this browser"),
    el("p", {}, `To ${username}'s account, as a new device.`),
    shown, stage, failure));

  session.core.onEvent = (event, value) => {
    if (event !== "link") return;
    const e = value as LinkEvent;
    if (e.stage === "code") {
      code.textContent = e.code;
      qr.replaceChildren(qrCanvas(e.qr, `QR code of the link code ${e.code}`));
      how.textContent = `On a device of this account: parley devices approve ${e.code}, or Settings → Devices → Approve in another browser.`;
      shown.hidden = false;
      stage.textContent = "Waiting for approval…";
    } else if (e.stage === "approved") {
      stage.textContent = "Approved, receiving history…";
    } else if (e.stage === "stalled") {
      stage.textContent = `Approved, receiving history… (slow: ${e.chunks} parts so far; keep this page open)`;
    } else if (e.stage === "history") {
      stage.textContent = `Approved, received ${e.chats} chats and ${e.messages} messages.`;
    }
  };
  localStorage.setItem(LINKING, username);
  try {
    const name = await call<string>("link", server, username);
    localStorage.removeItem(LINKING);
    return name;
  } catch (err) {
    stage.textContent = "";
    failure.textContent = `Linking failed: ${problem(err)}`;
    const again = button("Back", { "data-testid": "link-back" }, () => {
      localStorage.removeItem(LINKING);
      back("");
    });
    failure.after(again);
    again.focus();
    return null;
  }
}
