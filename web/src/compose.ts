// The compose bar: text (Enter sends, Shift+Enter is a new line), a reply or edit in
// progress (Escape cancels), files, and the typing indicator we send.
import type { MessageView } from "./core";
import { alertLine, button, el, onEscape } from "./dom";
import { call, problem } from "./state";

export type ComposeHooks = {
  sendText(text: string, replyTo: MessageView | null): void;
  /// Saves an edit; throws when it failed (the text stays for another try).
  edit(target: MessageView, text: string): Promise<void>;
  sendFiles(files: File[], caption: string, replyTo: MessageView | null): void;
};

type Mode = { kind: "reply"; to: MessageView } | { kind: "edit"; target: MessageView } | null;

const TYPING_EVERY = 3000; // ms between "typing" hints while the user keeps typing
let inputs = 0;

export class Compose {
  readonly element: HTMLElement;
  readonly field: HTMLTextAreaElement;
  private readonly send: HTMLButtonElement;
  private readonly attach: HTMLInputElement;
  private readonly bar = el("div", { class: "compose-bar" });
  private readonly error = alertLine({ "data-testid": "compose-error" });
  private mode: Mode = null;
  private release = () => {};
  private typingAt = 0;
  private typing = false;

  constructor(private readonly chat: string, private readonly hooks: ComposeHooks) {
    this.bar.hidden = true;
    this.field = el("textarea", { "data-testid": "compose", rows: "1", placeholder: "Message", "aria-label": "Message" });
    this.send = el("button", { "data-testid": "send", type: "submit" }, "Send");
    const id = `attach-${++inputs}`;
    // The file input stays in the tab order (visually hidden); its label is the visible
    // paperclip and shows the input's focus ring.
    this.attach = el("input", { type: "file", id, class: "visually-hidden", multiple: "", "data-testid": "attach", "aria-label": "Attach files" });
    const clip = el("label", { for: id, class: "attach", title: "Attach files (what you typed becomes the caption)" }, el("span", { class: "visually-hidden" }, "Attach files"));
    const form = el("form", { class: "compose" }, this.attach, clip, this.field, this.send);
    this.element = el("div", { class: "compose-area" }, this.bar, form, this.error);

    form.onsubmit = (e) => { e.preventDefault(); void this.submit(); };
    this.field.onkeydown = (e) => {
      if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); void this.submit(); }
    };
    this.field.oninput = () => this.typed();
    this.attach.onchange = () => {
      const files = [...(this.attach.files ?? [])];
      this.attach.value = "";
      if (files.length) this.files(files);
    };
  }

  focus(): void {
    this.field.focus();
  }

  /// Sends `files` (chosen or dropped), with what was typed as the caption.
  files(files: File[]): void {
    if (this.field.disabled) {
      this.error.textContent = `Not sent: ${this.field.placeholder}.`;
      return;
    }
    if (this.mode?.kind === "edit") {
      this.error.textContent = "Finish or cancel the edit before sending a file.";
      return;
    }
    const caption = this.field.value.trim();
    const replyTo = this.mode?.kind === "reply" ? this.mode.to : null;
    this.field.value = "";
    this.cancel();
    this.stopTyping();
    this.hooks.sendFiles(files, caption, replyTo);
  }

  startReply(m: MessageView): void {
    this.setMode({ kind: "reply", to: m }, el("span", {}, "Replying to ", el("strong", {}, m.sender), el("span", { class: "bar-quote" }, `: ${m.text || "(a file)"}`)), "cancel-reply", "replying");
  }

  startEdit(m: MessageView): void {
    this.setMode({ kind: "edit", target: m }, el("span", {}, el("strong", {}, "Editing"), " your message"), "cancel-edit", "editing");
    this.field.value = m.text;
    this.send.textContent = "Save";
    this.attach.disabled = true;
  }

  /// Leaves reply or edit mode (an edit's text goes too).
  cancel(): void {
    if (this.mode?.kind === "edit") this.field.value = "";
    this.mode = null;
    this.release();
    this.bar.hidden = true;
    this.bar.replaceChildren();
    this.send.textContent = "Send";
    this.attach.disabled = false;
  }

  /// The chat can no longer be written to (e.g. we left the group).
  disable(reason: string): void {
    this.field.disabled = this.send.disabled = this.attach.disabled = true;
    this.field.placeholder = reason;
  }

  close(): void {
    this.cancel();
    this.stopTyping();
  }

  private setMode(mode: Mode, label: Node, cancelId: string, barId: string): void {
    this.cancel();
    this.mode = mode;
    this.bar.dataset.testid = barId;
    this.bar.replaceChildren(label, button("×", { class: "close", "data-testid": cancelId, "aria-label": "Cancel", title: "Cancel (Esc)" }, () => { this.cancel(); this.focus(); }));
    this.bar.hidden = false;
    this.release = onEscape(this.bar, () => { this.cancel(); this.focus(); });
    this.error.textContent = "";
    this.focus();
  }

  private async submit(): Promise<void> {
    const text = this.field.value;
    if (!text.trim()) return;
    this.error.textContent = "";
    const mode = this.mode;
    if (mode?.kind === "edit") {
      this.send.disabled = true;
      try {
        await this.hooks.edit(mode.target, text);
        this.cancel();
      } catch (err) {
        this.error.textContent = `Could not save the edit: ${problem(err)}`;
      } finally {
        this.send.disabled = false;
      }
      return;
    }
    this.field.value = "";
    this.cancel();
    this.stopTyping();
    this.hooks.sendText(text, mode?.kind === "reply" ? mode.to : null);
  }

  // "Typing" at most every few seconds while the box has text; "stopped" once it is empty
  // or sent.
  private typed(): void {
    if (this.mode?.kind === "edit") return;
    if (!this.field.value) { this.stopTyping(); return; }
    if (Date.now() - this.typingAt < TYPING_EVERY) return;
    this.typingAt = Date.now();
    this.typing = true;
    this.hint(false);
  }

  private stopTyping(): void {
    if (!this.typing) return;
    this.typing = false;
    this.typingAt = 0;
    this.hint(true);
  }

  private hint(stopped: boolean): void {
    // Best effort, never stored: a chat not created yet (before its first message) or a
    // connection that is down just has no indicator; nothing for the user to act on.
    call("typing", this.chat, stopped).catch(() => {});
  }
}
