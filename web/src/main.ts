// Parley in the browser: the page. All cryptography and storage happen in the worker
// (core.ts, worker.ts); this file draws screens and forwards what the user does.
import { ChatSummary, MessageView, WorkerCore } from "./core";
import { el, time } from "./dom";

declare const __BUILD__: string;

const app = document.getElementById("app")!;
const ACCOUNT = "parley.account";
let core: WorkerCore;
let username = "";
let open: string | null = null;
let status: HTMLElement;

function screen(...children: Node[]): void {
  app.replaceChildren(...children);
}

function notice(text: string, ...actions: Node[]): void {
  screen(el("section", { class: "card" }, el("h1", {}, "Parley"), el("p", {}, text), ...actions));
}

function setStatus(state: "connecting" | "online" | "offline"): void {
  status.textContent = state;
  status.dataset.state = state;
}

async function serverAddress(): Promise<string> {
  // Served from another origin than the API's: config.json beside index.html names the API.
  const config = await fetch("config.json").catch(() => null);
  if (config?.ok) {
    const { server } = await config.json();
    if (typeof server === "string") return server;
  }
  return location.origin;
}

function welcome(error = ""): void {
  const name = el("input", { "data-testid": "username", id: "username", autocomplete: "username", placeholder: "alice", required: "" });
  const register = el("button", { "data-testid": "register", type: "submit" }, "Create account");
  const problem = el("p", { class: "error", role: "alert" }, error);
  const form = el("form", { class: "card" },
    el("h1", {}, "Parley"),
    el("p", {}, "End-to-end encrypted messages. Your keys are made and kept in this browser."),
    el("label", { for: "username" }, "Username"), name, register, problem);
  form.onsubmit = async (e) => {
    e.preventDefault();
    register.disabled = true;
    problem.textContent = "";
    try {
      username = await core.call<string>("register", await serverAddress(), name.value.trim());
      localStorage.setItem(ACCOUNT, username);
      await main();
    } catch (err) {
      problem.textContent = (err as Error).message;
      register.disabled = false;
    }
  };
  screen(form);
  name.focus();
  ready();
}

/// Marks the page interactive (the browser tests measure load to here).
function ready(): void {
  document.body.dataset.ready ??= String(Math.round(performance.now()));
}

function messageRow(m: MessageView): HTMLElement {
  const mine = m.sender === username;
  return el("li", { class: mine ? "message mine" : "message", "data-testid": "message", "data-id": m.id, "data-sender": m.sender, "data-status": m.status },
    el("span", { class: "sender" }, m.sender),
    el("span", { class: "text" }, m.text),
    el("span", { class: "meta" }, `${time(m.sent_at)}${mine ? " · " + m.status : ""}`));
}

async function refreshChats(list: HTMLElement): Promise<void> {
  const chats = await core.call<ChatSummary[]>("chats");
  if (open && !chats.some((c) => c.chat === open)) {
    chats.unshift({ chat: open, kind: "direct", state: "active", last_activity: "", last_message: null, unread: 0 });
  }
  list.replaceChildren(...chats.map((c) => {
    const item = el("button", { class: c.chat === open ? "chat open" : "chat", "data-testid": "chat", "data-chat": c.chat },
      el("span", { class: "name" }, c.chat),
      el("span", { class: "last" }, c.last_message?.text ?? ""),
      el("span", { class: "when" }, c.last_activity ? time(c.last_activity) : ""),
      ...(c.unread > 0 ? [el("span", { class: "unread", "aria-label": `${c.unread} unread` }, String(c.unread))] : []));
    item.onclick = () => void showChat(c.chat);
    return el("li", {}, item);
  }));
}

let chatList: HTMLElement;
let pane: HTMLElement;

/// The open chat's message list, if it is `chat`'s.
function messageList(chat: string): HTMLElement | null {
  return pane.querySelector(`.messages[data-chat="${CSS.escape(chat)}"]`);
}

/// Adds `m` to its chat's list when that chat is open, once per message id.
function show(m: MessageView): boolean {
  const list = messageList(m.chat);
  if (!list) return false;
  if (!list.querySelector(`[data-id="${CSS.escape(m.id)}"]`)) list.append(messageRow(m));
  list.lastElementChild?.scrollIntoView();
  return true;
}

async function showChat(chat: string): Promise<void> {
  open = chat;
  app.classList.add("reading");
  // The pane is this chat's at once, so that what arrives while its history loads lands in it.
  const messages = el("ol", { class: "messages", "data-chat": chat, "aria-live": "polite" });
  const compose = el("textarea", { "data-testid": "compose", rows: "1", placeholder: "Message", "aria-label": "Message" });
  const send = el("button", { "data-testid": "send", type: "submit" }, "Send");
  const back = el("button", { class: "back", type: "button", "aria-label": "Back to chats" }, "‹");
  back.onclick = () => { open = null; app.classList.remove("reading"); void refreshChats(chatList); };
  const form = el("form", { class: "compose" }, compose, send);
  const submit = async () => {
    const text = compose.value;
    if (!text.trim()) return;
    compose.value = "";
    const pending = messageRow({ id: "", chat, sender: username, text, sent_at: new Date().toISOString(), status: "sending", kind: "text" });
    messages.append(pending);
    pending.scrollIntoView();
    try {
      const sent = await core.call<MessageView>("send", chat, text);
      pending.replaceWith(messageRow(sent));
    } catch (err) {
      pending.dataset.status = "failed";
      pending.querySelector(".meta")!.textContent = `failed: ${(err as Error).message}`;
    }
    void refreshChats(chatList);
  };
  form.onsubmit = (e) => { e.preventDefault(); void submit(); };
  compose.onkeydown = (e) => {
    // Enter sends; Shift+Enter is a new line.
    if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); void submit(); }
  };
  pane.replaceChildren(el("header", {}, back, el("h2", { "data-testid": "chat-title" }, chat)), messages, form);
  compose.focus();
  const history = await core.call<MessageView[]>("history", chat, 200).catch(() => [] as MessageView[]);
  if (messageList(chat) !== messages) return; // another chat was opened meanwhile
  // Older than anything that arrived live meanwhile; each message once.
  const present = new Set([...messages.querySelectorAll<HTMLElement>("[data-id]")].map((e) => e.dataset.id).filter(Boolean));
  messages.prepend(...history.filter((m) => !present.has(m.id)).map(messageRow));
  messages.lastElementChild?.scrollIntoView();
  if (history.length > 0) await core.call("read", chat).catch(() => {});
  await refreshChats(chatList);
}

function newChatForm(): HTMLElement {
  const name = el("input", { "data-testid": "new-chat-name", placeholder: "bob, or #team", "aria-label": "Username or #group" });
  const members = el("input", { "data-testid": "new-chat-members", placeholder: "members: bob, carol", "aria-label": "Group members" });
  const create = el("button", { "data-testid": "new-chat-create", type: "submit" }, "Start");
  const problem = el("p", { class: "error", role: "alert" });
  const form = el("form", { class: "new-chat" }, name, members, create, problem);
  form.onsubmit = async (e) => {
    e.preventDefault();
    const chat = name.value.trim();
    try {
      if (chat.startsWith("#")) {
        const list = members.value.split(",").map((m) => m.trim()).filter(Boolean);
        await core.call("createGroup", chat.slice(1), list);
      }
      form.remove();
      await showChat(chat);
    } catch (err) {
      problem.textContent = (err as Error).message;
    }
  };
  return form;
}

async function main(): Promise<void> {
  status = el("span", { class: "status", role: "status" });
  chatList = el("ul", { class: "chats" });
  pane = el("section", { class: "pane" }, el("p", { class: "empty" }, "Choose a chat, or start one."));
  const newChat = el("button", { "data-testid": "new-chat", type: "button" }, "New chat");
  const about = el("button", { class: "about", "data-testid": "about", type: "button" }, "About");
  const sidebar = el("nav", { class: "sidebar" },
    el("header", {}, el("strong", {}, username), status, newChat, about), chatList);
  newChat.onclick = () => { sidebar.querySelector(".new-chat")?.remove(); chatList.before(newChatForm()); (sidebar.querySelector("[data-testid=new-chat-name]") as HTMLElement).focus(); };
  about.onclick = () => {
    const back = el("button", { class: "back", type: "button", "aria-label": "Back to chats" }, "‹");
    back.onclick = () => { app.classList.remove("reading"); pane.replaceChildren(); };
    app.classList.add("reading");
    pane.replaceChildren(el("header", {}, back, el("h2", {}, "About")), aboutCard());
  };
  screen(sidebar, pane);
  setStatus("connecting");
  core.onEvent = (event, value) => {
    if (event === "state") setStatus(value ? "online" : "offline");
    if (event === "message") {
      const m = value as MessageView;
      if (show(m)) {
        if (!document.hidden) void core.call("read", m.chat).then(() => refreshChats(chatList)).catch(() => {});
        else notify(m);
      } else {
        notify(m);
      }
      void refreshChats(chatList);
    }
    if (event === "failed") setStatus("offline");
  };
  await refreshChats(chatList);
  ready();
}

function aboutCard(): HTMLElement {
  return el("section", { class: "card" },
    el("h2", {}, "About Parley"),
    el("p", {}, "Messages are end-to-end encrypted in this browser (MLS). This page's code comes from the server at every load; the command-line client does not have to trust it that way."),
    el("p", {}, "Build ", el("code", { "data-testid": "build" }, __BUILD__)));
}

function notify(m: MessageView): void {
  if (!document.hidden || !("Notification" in self) || Notification.permission !== "granted") return;
  new Notification(`Parley: ${m.chat}`, { body: m.sender === m.chat ? "New message" : `${m.sender}: new message` });
}

/// Set once another tab took the account over: whatever this tab was starting stops.
let lost = false;

async function start(): Promise<void> {
  notice("Opening…");
  // Ask the browser not to evict this origin's storage: it holds the device's keys.
  void navigator.storage?.persist?.();
  try {
    await WorkerCore.start((started) => { core = started; }, () => lost);
  } catch (err) {
    if (!lost) notice(`Parley could not start: ${(err as Error).message}`);
    return;
  }
  if (lost) return;
  const stored = localStorage.getItem(ACCOUNT);
  if (!stored) return welcome();
  try {
    username = await core.call<string>("open", stored);
    if (!lost) await main();
  } catch (err) {
    if (!lost) welcome((err as Error).message);
  }
}

// One tab at a time holds the account (its database allows one worker): another tab says so
// and can take over.
function claim(steal: boolean): void {
  navigator.locks
    .request("parley", steal ? { steal: true } : { ifAvailable: true }, async (lock) => {
      if (!lock) {
        const here = el("button", { "data-testid": "use-here", type: "button" }, "Use Parley in this tab");
        here.onclick = () => claim(true);
        notice("Parley is open in another tab.", here);
        return;
      }
      await start();
      await new Promise(() => {}); // held while this tab lives
    })
    .catch(() => {
      // Another tab took over.
      lost = true;
      core?.stop();
      const back = el("button", { type: "button" }, "Use Parley here again");
      back.onclick = () => claim(true);
      notice("Parley was opened in another tab.", back);
    });
}

claim(false);
