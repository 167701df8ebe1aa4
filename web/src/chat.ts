// The open chat: its header (title, verified badge, disappearing timer, Members or Safety
// number), its messages (live, and redrawn from history when something changes), who is
// typing, and the compose bar. One `OpenChat` per chat opened; `close()` before the next.
import { forgetPreviews, releasePreviews, seedPreview, transfer } from "./attachments";
import { refreshChats, summaries } from "./chats";
import { Compose } from "./compose";
import type { MessageView, TypingView } from "./core";
import { button, duration, el } from "./dom";
import { membersPanel } from "./members";
import { dropFiles, Notes } from "./notes";
import { isQueued, markFailed, markQueued, messageRow, type RowHooks } from "./messages";
import { closePanel } from "./panel";
import { reportPanel } from "./report";
import { isVerified, safetyPanel } from "./safety";
import { call, isGroup, problem, session } from "./state";

const TIMERS: [number, string][] = [[0, "Off"], [30, "30 s"], [300, "5 min"], [3600, "1 h"], [86400, "1 day"], [604800, "1 week"]];
const TYPING_SHOWN = 6000; // ms a typing hint lasts unless renewed

export class OpenChat {
  readonly group: boolean;
  private readonly messages: HTMLOListElement;
  private readonly compose: Compose;
  private readonly typingLine = el("p", { class: "typing", "data-testid": "typing", "aria-live": "polite" });
  private readonly notes = new Notes();
  private readonly banner = el("p", { class: "banner", "data-testid": "chat-banner" });
  private readonly badge = el("span", { class: "badge verified", "data-testid": "verified", title: "You compared safety numbers" }, "✓ verified");
  private readonly timer: HTMLSelectElement;
  // The message each row shows (by row), to redraw only rows that changed.
  private readonly shown = new WeakMap<Element, string>();
  private readonly views = new Map<string, MessageView>();
  private readonly typers = new Map<string, number>();
  private readonly listeners = new AbortController();
  private expiry = 0;
  private stuck = true; // scrolled to the newest message: stay there as more come
  private closed = false;
  private redrawing: Promise<void> | null = null;
  private redrawAgain = false;

  private readonly hooks: RowHooks = {
    reply: (m) => this.compose.startReply(m),
    edit: (m) => this.compose.startEdit(m),
    updated: (m) => this.upsert(m),
    alert: (text) => this.alert(text),
    report: (m, opener) => reportPanel(this.pane, opener, m, (id) => this.note(`Reported (#${id})`, "report-done")),
    block: (user) => void this.block(user),
    jump: (id) => this.jump(id),
  };

  constructor(private readonly pane: HTMLElement, readonly chat: string, back: () => void) {
    this.group = isGroup(chat);
    this.messages = el("ol", { class: this.group ? "messages group" : "messages direct", "data-chat": chat, "aria-label": `Messages in ${chat}`, "aria-live": "polite", "aria-busy": "true" });
    this.compose = new Compose(chat, {
      sendText: (text, replyTo) => this.sendText(text, replyTo),
      edit: async (target, text) => { this.upsert(await call<MessageView>("edit", target.id, text)); },
      sendFiles: (files, caption, replyTo) => void this.sendFiles(files, caption, replyTo),
    });
    this.timer = el("select", { class: "timer-select", "data-testid": "disappearing", "aria-label": "Disappearing messages", title: "Disappearing messages" },
      ...TIMERS.map(([s, label]) => el("option", { value: String(s) }, label)));
    this.timer.onchange = () => void this.setTimer(Number(this.timer.value));
    this.badge.hidden = true;
    this.banner.hidden = true;

    const backButton = button("‹", { class: "back", "aria-label": "Back to chats" }, back);
    const tools = el("div", { class: "chat-tools" }, el("label", { class: "timer-label", title: "Disappearing messages" }, el("span", { "aria-hidden": "true" }, "◔"), this.timer));
    if (this.group) {
      const members: HTMLButtonElement = button("Members", { "data-testid": "members" }, () => membersPanel(this.pane, members, chat, () => this.changed()));
      tools.append(members);
    } else {
      const safety: HTMLButtonElement = button("Safety number", { "data-testid": "safety" }, () => safetyPanel(this.pane, safety, chat, (on) => { this.badge.hidden = !on; }));
      tools.append(safety);
    }
    const header = el("header", { class: "chat-header" }, backButton,
      el("div", { class: "title" }, el("h2", { "data-testid": "chat-title" }, chat), this.badge), tools);
    pane.replaceChildren(header, this.banner, this.messages, this.typingLine, this.notes.element, this.compose.element);
    this.summaryChanged();

    const signal = this.listeners.signal;
    this.messages.addEventListener("scroll", () => { this.stuck = this.atBottom(); }, { signal });
    // Images load after their row is drawn: keep the newest message in view.
    this.messages.addEventListener("load", () => { if (this.stuck) this.toBottom(); }, { capture: true, signal });
    // Files dropped anywhere on the chat are sent like chosen ones.
    dropFiles(pane, signal, (files) => this.compose.files(files));
  }

  /// Shows the chat's history, marks it read, and focuses the compose box.
  async load(): Promise<void> {
    this.compose.focus();
    const count = await this.reconcile(true);
    if (this.closed) return;
    // Busy until the history is drawn: a reader (or a test) knows the list is complete.
    this.messages.removeAttribute("aria-busy");
    this.toBottom();
    if (count > 0) this.markRead();
  }

  has(id: string): boolean {
    return this.find(id) !== null;
  }

  /// A message of this chat, new or changed (an edit, a reaction, a delete, a receipt):
  /// its row is added, or redrawn in place.
  upsert(m: MessageView): boolean {
    if (m.chat !== this.chat || this.closed) return false;
    if (m.deleted) forgetPreviews(m.id);
    const old = this.find(m.id);
    if (old) {
      if (this.shown.get(old) !== JSON.stringify(m)) this.swap(old, this.row(m));
    } else {
      // Their message is here: they stopped typing it.
      clearTimeout(this.typers.get(m.sender));
      this.typers.delete(m.sender);
      this.drawTyping();
      // Before any row still being sent, which is newer.
      const pending = this.messages.querySelector(":scope > [data-id='']");
      this.messages.insertBefore(this.row(m), m.sender === session.username ? null : pending);
      if (this.stuck || m.sender === session.username) this.toBottom();
    }
    this.scheduleExpiry();
    return true;
  }

  /// Something shown changed without a new message: redraw from history.
  redraw(): Promise<void> {
    if (this.redrawing) { this.redrawAgain = true; return this.redrawing; }
    this.redrawing = (async () => {
      do {
        this.redrawAgain = false;
        await this.reconcile(false);
      } while (this.redrawAgain && !this.closed);
      this.redrawing = null;
    })();
    return this.redrawing;
  }

  markRead(): void {
    if (document.hidden || this.closed) return;
    call("read", this.chat)
      .then(() => refreshChats())
      .catch((err) => this.alert(`Could not mark the chat read: ${problem(err)}`));
  }

  typing(t: TypingView): void {
    if (t.chat !== this.chat || t.sender === session.username) return;
    clearTimeout(this.typers.get(t.sender));
    if (t.stopped) {
      this.typers.delete(t.sender);
    } else {
      this.typers.set(t.sender, window.setTimeout(() => { this.typers.delete(t.sender); this.drawTyping(); }, TYPING_SHOWN));
    }
    this.drawTyping();
  }

  /// The chat list was reloaded: show this chat's timer and whether we are still in it.
  summaryChanged(): void {
    const s = summaries.get(this.chat);
    const seconds = s?.disappearing ?? 0;
    if (![...this.timer.options].some((o) => o.value === String(seconds))) {
      // A timer set elsewhere (e.g. 4 weeks from the command line).
      this.timer.append(el("option", { value: String(seconds) }, duration(seconds)));
    }
    if (!this.timer.disabled) this.timer.value = String(seconds);
    const gone = this.group && (s?.state === "left" || s?.state === "leaving");
    this.banner.hidden = !gone;
    if (gone) {
      this.banner.textContent = s?.state === "left" ? "You are no longer a member of this group." : "Leaving this group…";
      this.compose.disable("You are no longer in this group");
      this.timer.disabled = true;
    }
  }

  close(): void {
    this.closed = true;
    this.compose.close();
    closePanel();
    this.listeners.abort();
    this.typers.forEach((t) => clearTimeout(t));
    clearTimeout(this.expiry);
    this.pane.classList.remove("dropping");
    releasePreviews();
  }

  // ---- drawing ----

  private row(m: MessageView): HTMLLIElement {
    const row = messageRow(m, this.hooks);
    this.shown.set(row, JSON.stringify(m));
    if (m.id) this.views.set(m.id, m);
    return row;
  }

  private find(id: string): HTMLElement | null {
    return id ? this.messages.querySelector<HTMLElement>(`:scope > [data-id="${CSS.escape(id)}"]`) : null;
  }

  /// Replaces a row, keeping the keyboard focus on the same control if it was in there, and
  /// its reaction picker open if it was (a receipt redraws a row while one picks).
  private swap(old: HTMLElement, fresh: HTMLElement): void {
    const focused = document.activeElement as HTMLElement | null;
    const inside = focused && old.contains(focused) ? focused : null;
    const picking = old.querySelector(".picker") !== null;
    old.replaceWith(fresh);
    if (picking) {
      // Opening it again focuses its first emoji; the focus stays where it was if outside.
      fresh.querySelector<HTMLButtonElement>("[data-testid=react]")?.click();
      if (!inside && focused?.isConnected) focused.focus();
      return;
    }
    if (inside === old) fresh.focus();
    else if (inside?.dataset.testid) fresh.querySelector<HTMLElement>(`[data-testid="${inside.dataset.testid}"]`)?.focus();
  }

  /// Makes the list match the chat's history, touching only rows that changed (so that a
  /// receipt does not take the focus away or fetch images again). Rows still being sent
  /// stay at the end. Returns how many messages there are.
  private async reconcile(first: boolean): Promise<number> {
    let history: MessageView[];
    try {
      history = await call<MessageView[]>("history", this.chat, 200);
    } catch (err) {
      // A chat just started has no history yet: nothing to say then.
      if (summaries.has(this.chat) || !first) this.alert(`Could not load the messages: ${problem(err)}`);
      return 0;
    }
    if (this.closed) return 0;
    const rows = new Map<string, HTMLElement>();
    for (const li of this.messages.querySelectorAll<HTMLElement>(":scope > [data-id]")) {
      const id = li.dataset.id;
      if (!id) continue;
      if (rows.has(id)) li.remove(); // one row per message
      else rows.set(id, li);
    }
    const wanted = new Set(history.map((m) => m.id));
    for (const [id, li] of rows) {
      if (!wanted.has(id)) { li.remove(); rows.delete(id); }
    }
    this.views.clear();
    let cursor = this.messages.firstElementChild;
    for (const m of history) {
      let node: Element | undefined = rows.get(m.id);
      if (!node) {
        node = this.row(m);
      } else if (this.shown.get(node) !== JSON.stringify(m)) {
        const fresh = this.row(m);
        if (cursor === node) cursor = fresh;
        this.swap(node as HTMLElement, fresh);
        node = fresh;
      } else {
        this.views.set(m.id, m);
      }
      if (node === cursor) cursor = cursor.nextElementSibling;
      else this.messages.insertBefore(node, cursor);
    }
    releasePreviews(new Set(this.views.keys()));
    this.scheduleExpiry();
    if (this.stuck) this.toBottom();
    if (!this.group) void isVerified(this.chat).then((on) => { this.badge.hidden = !on; });
    return history.length;
  }

  private drawTyping(): void {
    const names = [...this.typers.keys()];
    this.typingLine.textContent = names.length === 0 ? ""
      : names.length === 1 ? `${names[0]} is typing…`
      : `${names.slice(0, -1).join(", ")} and ${names[names.length - 1]} are typing…`;
  }

  private atBottom(): boolean {
    const m = this.messages;
    return m.scrollHeight - m.scrollTop - m.clientHeight < 48;
  }

  private toBottom(): void {
    this.messages.scrollTop = this.messages.scrollHeight;
    this.stuck = true;
  }

  /// Redraws when the next message disappears (the core drops it from history by then).
  private scheduleExpiry(): void {
    clearTimeout(this.expiry);
    let next = Infinity;
    for (const m of this.views.values()) if (m.expires_at) next = Math.min(next, Date.parse(m.expires_at));
    if (!Number.isFinite(next)) return;
    const wait = next > Date.now() ? next - Date.now() + 500 : 30_000;
    this.expiry = window.setTimeout(() => void this.redraw(), Math.min(wait, 2 ** 31 - 1));
  }

  private jump(id: string): void {
    const row = this.find(id);
    if (!row) { this.note("The original message is older than what is shown here.", "jump-missing"); return; }
    row.scrollIntoView({ block: "center", behavior: "smooth" });
    row.focus({ preventScroll: true });
    row.classList.add("flash");
    setTimeout(() => row.classList.remove("flash"), 1500);
  }

  private alert(text: string): void {
    this.notes.alert(text);
  }

  private note(text: string, testid: string): void {
    this.notes.note(text, testid);
  }

  /// Sets the disappearing timer; the notice about it comes as a message.
  private async setTimer(seconds: number): Promise<void> {
    this.timer.disabled = true;
    try {
      await call("setDisappearing", this.chat, seconds);
      this.note(seconds ? `New messages disappear ${duration(seconds)} after sending.` : "Disappearing messages are off.", "disappearing-done");
    } catch (err) {
      this.alert(`Could not change the timer: ${problem(err)}`);
    } finally {
      this.timer.disabled = false;
      // Back to what the chat really has, if that failed.
      this.changed();
    }
  }

  private changed(): void {
    void refreshChats();
    void this.redraw();
  }

  // ---- sending ----

  private draft(text: string, replyTo: MessageView | null): MessageView {
    return {
      id: "", chat: this.chat, sender: session.username, text, sent_at: new Date().toISOString(), status: "sending", kind: "text",
      reply_to: replyTo?.id ?? null, quoted: replyTo ? { sender: replyTo.sender, text: replyTo.text, deleted: false } : null,
    };
  }

  private append(row: HTMLElement): void {
    this.messages.append(row);
    this.toBottom();
  }

  /// The row being sent becomes the message the server stored (unless the message arrived
  /// as an event meanwhile, which then already has its row).
  private settle(pending: HTMLElement, sent: MessageView): void {
    if (this.closed) return;
    if (this.find(sent.id)) {
      pending.remove();
      this.upsert(sent);
    } else {
      this.swap(pending, this.row(sent));
    }
    this.scheduleExpiry();
  }

  private sendText(text: string, replyTo: MessageView | null): void {
    const row = this.row(this.draft(text, replyTo));
    this.append(row);
    call<MessageView>("send", this.chat, text, replyTo?.id ?? null)
      .then((sent) => this.settle(row, sent))
      .catch((err) => isQueued(err) ? markQueued(row, problem(err))
        : markFailed(row, problem(err), () => { row.remove(); this.sendText(text, replyTo); }))
      .finally(() => void refreshChats());
  }

  private async sendFiles(files: File[], caption: string, replyTo: MessageView | null): Promise<void> {
    // One after another; the caption and the reply go with the first.
    for (const [i, file] of files.entries()) await this.sendFile(file, i === 0 ? caption : "", i === 0 ? replyTo : null);
  }

  private async sendFile(file: File, caption: string, replyTo: MessageView | null): Promise<void> {
    const draft = this.draft(caption, replyTo);
    draft.attachments = [{ name: file.name, size: file.size, content_type: file.type, sha256: "" }];
    const row = this.row(draft);
    this.append(row);
    const bar = row.querySelector("progress");
    const progress = transfer((p) => { if (bar) { bar.max = Math.max(1, p.total); bar.value = p.done; } });
    try {
      const bytes = await file.arrayBuffer();
      const sent = await call<MessageView>("sendFile", this.chat, file.name, bytes, caption, replyTo?.id ?? null, progress.name);
      seedPreview(sent.id, 0, file);
      this.settle(row, sent);
    } catch (err) {
      if (isQueued(err)) markQueued(row, problem(err));
      else markFailed(row, problem(err), () => { row.remove(); void this.sendFile(file, caption, replyTo); });
    } finally {
      progress.stop();
      void refreshChats();
    }
  }

  // ---- moderation ----

  private async block(user: string): Promise<void> {
    if (!confirm(`Block ${user}? Their messages will no longer reach you. You can unblock them in Settings.`)) return;
    try {
      await call("block", user);
      this.note(`Blocked ${user}. Unblock them in Settings.`, "block-done");
      this.changed();
    } catch (err) {
      this.alert(`Could not block ${user}: ${problem(err)}`);
    }
  }
}
