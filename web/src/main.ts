// Parley in the browser: the page. All cryptography and storage happen in the worker
// (core.ts, worker.ts); this file starts it, draws the welcome screen and the two columns
// (chat list, pane), and routes the worker's events to what is on screen.
import { progressEvent } from "./attachments";
import { OpenChat } from "./chat";
import { hooks as chatHooks, list as chatList, listError, newChatForm, refreshChats, summaries } from "./chats";
import { MessageView, Progress, TypingView, WorkerCore } from "./core";
import { alertLine, button, el } from "./dom";
import { link, LINKING } from "./link";
import { aboutCard, showSettings } from "./settings";
import { call, problem, session } from "./state";

const app = document.getElementById("app")!;
const ACCOUNT = "parley.account";
let status: HTMLElement;
let connection: HTMLElement; // why the connection stopped for good, if it did
let pane: HTMLElement;
let current: OpenChat | null = null;

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
  const linkButton = button("Link to my account", { "data-testid": "link" }, () => void startLink());
  const failure = alertLine();
  failure.textContent = error;
  const form = el("form", { class: "card welcome" },
    el("h1", {}, "Parley"),
    el("p", {}, "End-to-end encrypted messages. Your keys are made and kept in this browser."),
    el("label", { for: "username" }, "Username"), name,
    el("div", { class: "row" }, register, linkButton),
    el("p", { class: "muted" }, "Already use Parley elsewhere? Type your username and link this browser as a new device."),
    failure);
  const busy = (on: boolean) => { register.disabled = linkButton.disabled = on; };
  form.onsubmit = async (e) => {
    e.preventDefault();
    busy(true);
    failure.textContent = "";
    try {
      session.username = await call<string>("register", await serverAddress(), name.value.trim());
      localStorage.setItem(ACCOUNT, session.username);
      await main();
    } catch (err) {
      failure.textContent = problem(err);
      busy(false);
    }
  };
  const startLink = async () => {
    if (!name.reportValidity()) return;
    busy(true);
    await linkAccount(name.value.trim());
  };
  screen(form);
  name.focus();
  ready();
}

async function linkAccount(name: string): Promise<void> {
  const linked = await link(app, await serverAddress(), name, welcome);
  if (!linked) return;
  session.username = linked;
  localStorage.setItem(ACCOUNT, linked);
  await main();
}

/// Marks the page interactive (the browser tests measure load to here).
function ready(): void {
  document.body.dataset.ready ??= String(Math.round(performance.now()));
}

/// Back to the chat list (at 360 px the list and the pane take turns).
function backToList(): void {
  current?.close();
  current = null;
  session.open = null;
  app.classList.remove("reading");
  pane.replaceChildren(el("p", { class: "empty" }, "Choose a chat, or start one."));
  void refreshChats();
}

async function showChat(chat: string): Promise<void> {
  current?.close();
  session.open = chat;
  app.classList.add("reading");
  // The pane is this chat's at once, so that what arrives while its history loads lands in it.
  current = new OpenChat(pane, chat, backToList);
  void refreshChats();
  await current.load();
}

function showPage(draw: () => void): void {
  current?.close();
  current = null;
  session.open = null;
  app.classList.add("reading");
  draw();
  void refreshChats();
  pane.querySelector<HTMLElement>(".back")?.focus();
}

async function main(): Promise<void> {
  status = el("span", { class: "status", role: "status" });
  connection = alertLine({ "data-testid": "connection-error" });
  pane = el("section", { class: "pane", "aria-label": "Chat" }, el("p", { class: "empty" }, "Choose a chat, or start one."));
  const newChat = button("New chat", { "data-testid": "new-chat", class: "primary" }, () => {
    // One form at a time: pressing again goes back to it.
    if (!sidebar.querySelector(".new-chat")) listError.before(newChatForm());
    sidebar.querySelector<HTMLElement>("[data-testid=new-chat-name]")!.focus();
  });
  const settings = button("Settings", { "data-testid": "settings" }, () => showPage(() => showSettings(pane, backToList)));
  const about = button("About", { class: "about", "data-testid": "about" }, () => showPage(() => {
    pane.replaceChildren(el("header", {}, button("‹", { class: "back", "aria-label": "Back to chats" }, backToList), el("h2", {}, "About")),
      el("div", { class: "scroll" }, aboutCard()));
  }));
  const sidebar = el("nav", { class: "sidebar", "aria-label": "Chats" },
    el("header", {},
      el("div", { class: "me" }, el("strong", { "data-testid": "me" }, session.username), status),
      el("div", { class: "tools" }, newChat, settings, about)),
    connection, listError, chatList);
  chatHooks.open = (chat) => void showChat(chat);
  chatHooks.changed = () => current?.summaryChanged();
  screen(sidebar, pane);
  setStatus("connecting");
  session.core.onEvent = onEvent;
  await refreshChats();
  ready();
}

function onEvent(event: string, value: unknown): void {
  switch (event) {
    case "state":
      setStatus(value ? "online" : "offline");
      if (value) connection.textContent = "";
      break;
    case "failed":
      // The live connection gave up (a permanent error): say why; a reload tries again.
      setStatus("offline");
      connection.textContent = `Disconnected: ${String(value)}. Reload the page to try again.`;
      break;
    case "message": {
      // A new message, or a newer state of one shown (an edit, a reaction, a delete).
      const m = value as MessageView;
      // Known already (shown, or its chat's last message): an edit, a reaction, a delete.
      const known = (current?.has(m.id) ?? false) || summaries.get(m.chat)?.last_message?.id === m.id;
      if (current?.upsert(m)) {
        if (!known && m.sender !== session.username) current.markRead();
      }
      if (!known) notify(m);
      void refreshChats();
      break;
    }
    case "changed":
      void current?.redraw();
      void refreshChats();
      break;
    case "typing":
      current?.typing(value as TypingView);
      break;
    case "progress":
      progressEvent(value as Progress);
      break;
  }
}

function notify(m: MessageView): void {
  if (m.sender === session.username) return;
  if (!document.hidden || !("Notification" in self) || Notification.permission !== "granted") return;
  new Notification(`Parley: ${m.chat}`, { body: m.sender === m.chat ? "New message" : `${m.sender}: new message` });
}

// Back in the tab: what arrived in the open chat meanwhile is read now.
document.addEventListener("visibilitychange", () => {
  if (!document.hidden) current?.markRead();
});

// A file dropped outside the chat must not replace the page (and its open account).
for (const type of ["dragover", "drop"] as const) {
  window.addEventListener(type, (e) => { if (e.dataTransfer?.types.includes("Files")) e.preventDefault(); });
}

/// How often another tab took the account over: a start begun before the latest takeover
/// stops (a start after it, taking the account back, goes on).
let takeovers = 0;

async function start(): Promise<void> {
  const mine = takeovers;
  const lost = () => takeovers !== mine;
  notice("Opening…");
  // Ask the browser not to evict this origin's storage: it holds the device's keys.
  void navigator.storage?.persist?.();
  try {
    await WorkerCore.start((started) => { session.core = started; }, lost);
  } catch (err) {
    if (!lost()) notice(`Parley could not start: ${problem(err)}`);
    return;
  }
  if (lost()) return;
  const stored = localStorage.getItem(ACCOUNT);
  if (!stored) {
    // A link a reload interrupted goes on (with the same code).
    const linking = localStorage.getItem(LINKING);
    return linking ? linkAccount(linking) : welcome();
  }
  try {
    session.username = await call<string>("open", stored);
    if (!lost()) await main();
  } catch (err) {
    if (!lost()) welcome(problem(err));
  }
}

// One tab at a time holds the account (its database allows one worker): another tab says so
// and can take over.
function claim(steal: boolean): void {
  navigator.locks
    .request("parley", steal ? { steal: true } : { ifAvailable: true }, async (lock) => {
      if (!lock) {
        const here = button("Use Parley in this tab", { "data-testid": "use-here" }, () => claim(true));
        notice("Parley is open in another tab.", here);
        return;
      }
      await start();
      await new Promise(() => {}); // held while this tab lives
    })
    .catch(() => {
      // Another tab took over.
      takeovers += 1;
      session.core?.stop();
      const back = button("Use Parley here again", { "data-testid": "use-here" }, () => claim(true));
      notice("Parley was opened in another tab.", back);
    });
}

claim(false);
