// The sidebar's chat list (unread counts, last message, time) and the new-chat form.
import type { ChatSummary, MessageView } from "./core";
import { alertLine, button, el, onEscape, time } from "./dom";
import { call, groupName, isGroup, problem, session } from "./state";

/// The latest summaries, by chat: the open chat reads its timer and state from here.
export const summaries = new Map<string, ChatSummary>();

export const hooks = {
  open: (_chat: string): void => {},
  /// The summaries changed (the open chat may show a new timer or state).
  changed: (): void => {},
};

export const list = el("ul", { class: "chats", "aria-label": "Chats" });
export const listError = alertLine({ "data-testid": "chats-error" });

function preview(m: MessageView | null, group: boolean): string {
  if (!m) return "No messages yet";
  if (m.kind === "notice") return m.text;
  if (m.deleted) return "Message deleted";
  const body = m.text || (m.attachments?.length ? `File: ${m.attachments[0].name}` : "");
  const who = m.sender === session.username ? "You" : group ? m.sender : "";
  return who ? `${who}: ${body}` : body;
}

function draw(chats: ChatSummary[]): void {
  // Redrawing must not take the keyboard user's place in the list.
  const focused = list.contains(document.activeElement) ? (document.activeElement as HTMLElement).dataset.chat : undefined;
  if (session.open && !chats.some((c) => c.chat === session.open)) {
    // A chat just started: shown until its first message makes it real.
    chats.unshift({ chat: session.open, kind: isGroup(session.open) ? "group" : "direct", state: "active", last_activity: "", last_message: null, unread: 0 });
  }
  list.replaceChildren(...chats.map((c) => {
    const item = el("button", { type: "button", class: c.chat === session.open ? "chat open" : "chat", "data-testid": "chat", "data-chat": c.chat },
      el("span", { class: "name" }, c.chat),
      el("span", { class: "last" }, c.state === "left" ? "You left this group" : preview(c.last_message, c.kind === "group")),
      el("span", { class: "when" }, c.last_activity && c.last_message ? time(c.last_activity) : ""),
      ...(c.unread > 0 ? [el("span", { class: "unread", "aria-label": `${c.unread} unread` }, String(c.unread))] : []));
    if (c.chat === session.open) item.setAttribute("aria-current", "true");
    item.onclick = () => hooks.open(c.chat);
    return el("li", {}, item);
  }));
  if (chats.length === 0) list.append(el("li", { class: "muted hint" }, "No chats yet. Start one with New chat."));
  if (focused) list.querySelector<HTMLElement>(`[data-chat="${CSS.escape(focused)}"]`)?.focus();
}

// Many events ask for a refresh at once: one runs at a time, and one more after it if asked.
let running: Promise<void> | null = null;
let again = false;

export function refreshChats(): Promise<void> {
  if (running) { again = true; return running; }
  running = (async () => {
    do {
      again = false;
      try {
        const chats = await call<ChatSummary[]>("chats");
        summaries.clear();
        for (const c of chats) summaries.set(c.chat, c);
        listError.textContent = "";
        draw(chats);
        hooks.changed();
      } catch (err) {
        listError.textContent = `Could not load chats: ${problem(err)}`;
      }
    } while (again);
    running = null;
  })();
  return running;
}

/// "bob" for a 1:1 chat, or "#team" with members for a group.
export function newChatForm(): HTMLElement {
  const name = el("input", { "data-testid": "new-chat-name", placeholder: "bob, or #team", "aria-label": "Username or #group", autocomplete: "off", required: "" });
  const members = el("input", { "data-testid": "new-chat-members", placeholder: "for a group: bob, carol", "aria-label": "Group members, comma-separated", autocomplete: "off" });
  const create = el("button", { "data-testid": "new-chat-create", type: "submit" }, "Start");
  const problemLine = alertLine();
  const close = () => { release(); form.remove(); };
  const cancel = button("Cancel", {}, close);
  const form = el("form", { class: "new-chat", "aria-label": "New chat" },
    el("p", { class: "hint" }, "A username starts a 1:1 chat; #name starts a group."),
    name, members, el("div", { class: "row" }, create, cancel), problemLine);
  const release = onEscape(form, close);
  form.onsubmit = async (e) => {
    e.preventDefault();
    const chat = name.value.trim();
    if (!chat) return;
    create.disabled = true;
    problemLine.textContent = "";
    try {
      if (isGroup(chat)) {
        const list = members.value.split(",").map((m) => m.trim()).filter(Boolean);
        await call("createGroup", groupName(chat), list);
      }
      close();
      hooks.open(chat);
    } catch (err) {
      problemLine.textContent = problem(err);
      create.disabled = false;
    }
  };
  return form;
}
