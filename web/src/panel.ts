// A panel over the chat (members, safety number, report): one at a time, closed by its ×
// button or Escape, and focus goes back to the button that opened it.
import { button, el, onEscape } from "./dom";

export type Panel = { body: HTMLElement; close(): void };

let current: Panel | null = null;

export function closePanel(): void {
  current?.close();
}

export function openPanel(host: HTMLElement, opener: HTMLElement | null, title: string, testid: string): Panel {
  closePanel();
  const body = el("div", { class: "panel-body" });
  const heading = el("h3", { id: `panel-${testid}` }, title);
  const section = el("section", { class: "panel", role: "dialog", "aria-labelledby": `panel-${testid}`, "data-testid": testid });
  let release = () => {};
  const panel: Panel = {
    body,
    close() {
      release();
      section.remove();
      if (current === panel) current = null;
      if (opener?.isConnected) opener.focus();
    },
  };
  const close = button("×", { class: "close", "aria-label": "Close", title: "Close (Esc)" }, () => panel.close());
  section.append(el("header", {}, heading, close), body);
  host.append(section);
  release = onEscape(section, () => panel.close());
  current = panel;
  // The first field or button inside, once the caller filled the panel.
  queueMicrotask(() => {
    const first = body.querySelector<HTMLElement>("input, textarea, select, button");
    (first ?? close).focus();
  });
  return panel;
}
