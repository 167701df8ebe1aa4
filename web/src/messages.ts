// One message as a row of the chat: who, what it answers, its files, its text, reactions,
// and its actions (Reply, React, Edit, Delete; Report and Block on others'), in a toolbar
// that shows on hover and when focus is inside, so that Tab reaches it.
import { attachmentView } from "./attachments";
import type { MessageView } from "./core";
import { button, el, fullTime, onEscape, time } from "./dom";
import { call, problem, session } from "./state";

export const EMOJI = ["👍", "❤️", "😂", "😮", "😢", "🙏"];

/// What a row asks of its chat.
export type RowHooks = {
  reply(m: MessageView): void;
  edit(m: MessageView): void;
  /// An action came back with the message's new state: draw it.
  updated(m: MessageView): void;
  /// An action failed: say so near the chat.
  alert(text: string): void;
  report(m: MessageView, opener: HTMLElement): void;
  block(user: string): void;
  /// Shows the message `id` (a reply's original), if it is loaded.
  jump(id: string): void;
};

const STATUS: Record<string, [string, string]> = {
  sending: ["◷", "Sending"],
  sent: ["✓", "Sent"],
  delivered: ["✓✓", "Delivered"],
  read: ["✓✓", "Read"],
  failed: ["!", "Failed"],
};

function meta(m: MessageView, mine: boolean): HTMLElement {
  const parts: Node[] = [];
  if (m.expires_at) {
    parts.push(el("span", { class: "timer", title: `Disappears ${fullTime(m.expires_at)}`, "aria-label": `Disappears ${fullTime(m.expires_at)}` }, "◔"));
  }
  if (m.edited && !m.deleted) {
    const earlier = m.versions?.length ? `Earlier: ${m.versions.join(" → ")}` : "Edited";
    parts.push(el("span", { class: "edited", title: earlier }, "edited"));
  }
  parts.push(el("time", { datetime: m.sent_at, title: fullTime(m.sent_at) }, time(m.sent_at)));
  if (mine && STATUS[m.status]) {
    const [mark, label] = STATUS[m.status];
    parts.push(el("span", { class: "tick", "data-tick": m.status, title: label, "aria-label": label }, mark));
  }
  return el("span", { class: "meta" }, ...parts);
}

function quote(m: MessageView, hooks: RowHooks): HTMLElement | null {
  if (!m.reply_to) return null;
  const q = m.quoted;
  const body = !q ? "A message not on this device" : q.deleted ? "This message was deleted" : q.text || "(a file)";
  const jump = button(
    el("span", {}, el("span", { class: "quote-sender" }, q?.sender ?? "Reply"), el("span", { class: q?.deleted ? "quote-text deleted" : "quote-text" }, body)),
    { class: "quote", "data-testid": "quote", "aria-label": `In reply to ${q?.sender ?? "a message"}: ${body}` },
    () => hooks.jump(m.reply_to!));
  return jump;
}

async function react(m: MessageView, emoji: string, hooks: RowHooks): Promise<void> {
  const mine = m.reactions?.[emoji]?.includes(session.username) ?? false;
  try {
    hooks.updated(await call<MessageView>("react", m.id, emoji, mine));
  } catch (err) {
    hooks.alert(`Could not react: ${problem(err)}`);
  }
}

function reactions(m: MessageView, hooks: RowHooks): HTMLElement | null {
  const entries = Object.entries(m.reactions ?? {}).filter(([, who]) => who.length > 0);
  if (entries.length === 0) return null;
  return el("div", { class: "reactions" }, ...entries.map(([emoji, who]) => {
    const mine = who.includes(session.username);
    const chip = button(`${emoji} ${who.length}`, {
      class: "reaction", "data-testid": "reaction", "data-emoji": emoji, "aria-pressed": String(mine),
      title: who.join(", "), "aria-label": `${emoji} from ${who.join(", ")}${mine ? " (click to take yours back)" : ""}`,
    }, () => void react(m, emoji, hooks));
    chip.disabled = !m.id;
    return chip;
  }));
}

/// The small emoji picker under a message; clicking your existing reaction takes it back.
function picker(m: MessageView, row: HTMLElement, opener: HTMLButtonElement, hooks: RowHooks): void {
  row.querySelector(".picker")?.remove();
  const close = () => { release(); box.remove(); opener.setAttribute("aria-expanded", "false"); opener.focus(); };
  const box = el("div", { class: "picker", role: "group", "aria-label": "Pick a reaction" }, ...EMOJI.map((emoji) => {
    const mine = m.reactions?.[emoji]?.includes(session.username) ?? false;
    return button(emoji, { class: "emoji", "data-testid": "reaction-option", "data-emoji": emoji, "aria-pressed": String(mine), "aria-label": mine ? `Take back ${emoji}` : `React ${emoji}` },
      () => { close(); void react(m, emoji, hooks); });
  }));
  const release = onEscape(box, close);
  opener.setAttribute("aria-expanded", "true");
  row.append(box);
  (box.querySelector("button") as HTMLButtonElement).focus();
}

function actions(m: MessageView, mine: boolean, row: HTMLElement, hooks: RowHooks): HTMLElement {
  const act = (icon: string, label: string, testid: string, run: (b: HTMLButtonElement) => void) => {
    const b: HTMLButtonElement = button(icon, { class: "action", "data-testid": testid, "aria-label": label, title: label }, () => run(b));
    return b;
  };
  const bar = el("div", { class: "actions", role: "toolbar", "aria-label": "Message actions" },
    act("↩", "Reply", "reply", () => hooks.reply(m)),
    act("☺", "React", "react", (b) => picker(m, row, b, hooks)));
  if (mine) {
    bar.append(
      act("✎", "Edit", "edit", () => hooks.edit(m)),
      act("✕", "Delete", "delete", async (b) => {
        if (!confirm("Delete this message for everyone?")) return;
        b.disabled = true;
        try {
          hooks.updated(await call<MessageView>("delete", m.id));
        } catch (err) {
          b.disabled = false;
          hooks.alert(`Could not delete: ${problem(err)}`);
        }
      }));
  } else {
    bar.append(
      act("⚑", "Report", "report", (b) => hooks.report(m, b)),
      act("⊘", `Block ${m.sender}`, "block", () => hooks.block(m.sender)));
  }
  return bar;
}

/// The row for `m`. A message being sent (no id yet) has no actions.
export function messageRow(m: MessageView, hooks: RowHooks): HTMLLIElement {
  const mine = m.sender === session.username;
  const attrs = { "data-testid": "message", "data-id": m.id, "data-sender": m.sender, "data-status": m.status };
  if (m.kind === "notice") {
    // Something that happened in the chat: a centred grey line, no bubble.
    return el("li", { class: "message notice", ...attrs }, el("span", { class: "text" }, m.text));
  }
  const row = el("li", { class: mine ? "message mine" : "message", tabindex: "-1", ...attrs },
    el("span", { class: "sender" }, m.sender));
  if (m.deleted) {
    row.classList.add("deleted");
    const by = m.deleted_by ? ` by ${m.deleted_by}` : "";
    row.append(el("span", { class: "text deleted" }, `This message was deleted${by}`), el("div", { class: "footer" }, meta(m, mine)));
    return row;
  }
  const q = quote(m, hooks);
  if (q) row.append(q);
  (m.attachments ?? []).forEach((a, i) => row.append(attachmentView(m, a, i, !m.id)));
  row.append(el("span", { class: "text" }, m.text));
  const chips = reactions(m, hooks);
  if (chips) row.append(chips);
  const footer = el("div", { class: "footer" });
  if (m.id && m.status !== "failed") footer.append(actions(m, mine, row, hooks));
  footer.append(meta(m, mine));
  row.append(footer);
  if (mine && m.status === "failed" && m.id) row.append(el("div", { class: "failure" }, el("span", { class: "error" }, "Not sent")));
  return row;
}

/// Marks a row whose sending failed, with the error and a way to try again.
/// A send that did not finish but is kept: it goes out by itself (no retry, which would send
/// it twice).
export function markQueued(row: HTMLElement, error: string): void {
  row.dataset.status = "sending";
  row.querySelectorAll("progress").forEach((p) => p.remove());
  row.append(el("div", { class: "failure" },
    el("span", { class: "muted", role: "status" }, `Waiting to be sent: ${error}`)));
}

/// Whether `err` is a send kept for later (see `markQueued`).
export function isQueued(err: unknown): boolean {
  return typeof err === "object" && err !== null && (err as { queued?: boolean }).queued === true;
}

export function markFailed(row: HTMLElement, error: string, retry: () => void): void {
  row.dataset.status = "failed";
  const footer = row.querySelector(".footer") ?? row;
  const tick = footer.querySelector<HTMLElement>(".tick");
  if (tick) {
    tick.dataset.tick = "failed";
    tick.textContent = "!";
    tick.title = "Failed";
    tick.setAttribute("aria-label", "Failed");
  }
  row.querySelectorAll("progress").forEach((p) => p.remove());
  row.append(el("div", { class: "failure" },
    el("span", { class: "error", role: "alert" }, `Not sent: ${error}`),
    button("Retry", { class: "small", "data-testid": "retry" }, retry)));
}
