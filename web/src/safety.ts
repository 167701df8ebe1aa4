// Safety numbers: compare them with the contact (digits or QR code), then mark them
// verified; a verified contact shows a ✓ in the chat's header.
import type { SafetyNumber } from "./core";
import { alertLine, button, el } from "./dom";
import { openPanel } from "./panel";
import { qrCanvas } from "./qr";
import { call, problem } from "./state";

/// Whether `peer` is verified; false when there is nothing to compare yet (a chat with no
/// message has no key pinned): not an error the user can act on.
export async function isVerified(peer: string): Promise<boolean> {
  try {
    return (await call<SafetyNumber>("safetyNumber", peer)).verified;
  } catch {
    return false;
  }
}

export function safetyPanel(host: HTMLElement, opener: HTMLElement, peer: string, verified: (on: boolean) => void): void {
  const panel = openPanel(host, opener, `Safety number with ${peer}`, "safety-panel");
  const failure = alertLine({ "data-testid": "safety-error" });
  panel.body.append(el("p", { class: "muted" }, "Loading…"), failure);
  void (async () => {
    let number: SafetyNumber;
    try {
      number = await call<SafetyNumber>("safetyNumber", peer);
    } catch (err) {
      panel.body.replaceChildren(failure);
      failure.textContent = `No safety number: ${problem(err)}`;
      return;
    }
    const state = el("p", { class: "verified-state", "data-testid": "safety-state" });
    const verify = button("Mark as verified", { "data-testid": "verify", class: "primary" }, async () => {
      verify.disabled = true;
      failure.textContent = "";
      try {
        // The digits shown: a key that changed since is not marked.
        await call("verify", peer, number.digits);
        // What the core now stores, not what was clicked.
        const now = await call<SafetyNumber>("safetyNumber", peer);
        show(now.verified);
        verified(now.verified);
      } catch (err) {
        failure.textContent = `Could not mark ${peer} verified: ${problem(err)}`;
        verify.disabled = false;
      }
    });
    const show = (on: boolean) => {
      state.textContent = on ? `✓ You verified ${peer}.` : `Not verified yet.`;
      state.classList.toggle("on", on);
      verify.hidden = on;
    };
    show(number.verified);
    panel.body.replaceChildren(
      el("p", {}, `Compare these numbers with ${peer}'s, in person or on a call you trust (or scan the QR code). If they match, mark ${peer} as verified.`),
      // The digits exactly as the core gives them (groups of five, spaces between).
      el("p", { class: "digits", "data-testid": "safety-digits" }, number.digits),
      qrCanvas(number.qr, `QR code of the safety number with ${peer}`, 200),
      state, verify, failure);
    if (!number.verified) verify.focus();
  })();
}
