// Reporting a message to the server's moderators, with some of the chat around it.
import type { MessageView } from "./core";
import { alertLine, button, el } from "./dom";
import { openPanel } from "./panel";
import { call, problem } from "./state";

export function reportPanel(host: HTMLElement, opener: HTMLElement, m: MessageView, done: (id: number) => void): void {
  const panel = openPanel(host, opener, `Report ${m.sender}'s message`, "report-panel");
  const reason = el("textarea", { id: "report-reason", "data-testid": "report-reason", rows: "3", placeholder: "What is wrong with this message?" });
  const context = el("select", { id: "report-context", "data-testid": "report-context" },
    ...["0", "5", "10"].map((n) => el("option", n === "5" ? { value: n, selected: "" } : { value: n }, n)));
  const send = el("button", { type: "submit", "data-testid": "report-send" }, "Send report");
  const failure = alertLine({ "data-testid": "report-error" });
  const form = el("form", { class: "report" },
    el("p", { class: "muted" }, "The moderators see this message, your reason, and as many messages before it as you choose. Nobody else is told."),
    el("blockquote", { class: "reported" }, m.text || "(a file)"),
    el("label", { for: "report-reason" }, "Reason"), reason,
    el("label", { for: "report-context" }, "Messages of context"), context,
    el("div", { class: "row" }, send, button("Cancel", {}, () => panel.close())),
    failure);
  form.onsubmit = async (e) => {
    e.preventDefault();
    send.disabled = true;
    failure.textContent = "";
    try {
      const id = await call<number>("report", m.id, reason.value.trim(), Number(context.value));
      panel.close();
      done(id);
    } catch (err) {
      failure.textContent = `Could not send the report: ${problem(err)}`;
      send.disabled = false;
    }
  };
  panel.body.append(form);
}
