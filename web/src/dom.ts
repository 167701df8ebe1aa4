// Building the page. Text goes in with `textContent` only: nothing a peer sends is ever
// parsed as HTML.
export function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Record<string, string> = {},
  ...children: (Node | string)[]
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  for (const child of children) node.append(typeof child === "string" ? document.createTextNode(child) : child);
  return node;
}

/// A real button (never a submit unless asked) that runs `action` when pressed.
export function button(label: string | Node, attrs: Record<string, string>, action: (e: MouseEvent) => void): HTMLButtonElement {
  const b = el("button", { type: "button", ...attrs }, label);
  b.onclick = action;
  return b;
}

/// A line that says what went wrong, read out by screen readers when it changes.
export function alertLine(attrs: Record<string, string> = {}): HTMLParagraphElement {
  return el("p", { class: "error", role: "alert", ...attrs });
}

export function time(rfc3339: string): string {
  const at = new Date(rfc3339);
  if (Number.isNaN(at.getTime())) return "";
  const today = new Date().toDateString() === at.toDateString();
  return today
    ? at.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })
    : at.toLocaleDateString([], { month: "short", day: "numeric" });
}

/// Date and time in full, for tooltips and settings.
export function fullTime(rfc3339: string | null | undefined): string {
  const at = new Date(rfc3339 ?? "");
  return Number.isNaN(at.getTime()) ? "never" : at.toLocaleString([], { dateStyle: "medium", timeStyle: "short" });
}

export function size(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  const units = ["KB", "MB", "GB"];
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit++; }
  return `${value < 10 ? value.toFixed(1) : Math.round(value)} ${units[unit]}`;
}

/// A timer as people say it: 30 → "30 seconds", 3600 → "1 hour".
export function duration(seconds: number): string {
  const units: [number, string][] = [[604800, "week"], [86400, "day"], [3600, "hour"], [60, "minute"]];
  const [unit, name] = units.find(([s]) => seconds >= s && seconds % s === 0) ?? [1, "second"];
  const count = seconds / unit;
  return `${count} ${name}${count === 1 ? "" : "s"}`;
}

// Escape closes the most recently opened thing (a picker, a panel, the reply or edit bar):
// each registers a closer here with the element it shows, and removes it when it closes by
// other means. A closer whose element left the page without closing (a redraw, another chat)
// is stale: Escape skips it, and the next registration drops it.
const closers: { close: () => void; owner: Element }[] = [];

function dropStale(): void {
  for (let i = closers.length - 1; i >= 0; i--) {
    if (!closers[i].owner.isConnected) closers.splice(i, 1);
  }
}

export function onEscape(owner: Element, close: () => void): () => void {
  // Earlier owners are on the page by now if they still matter; this one may not be yet.
  dropStale();
  const entry = { close, owner };
  closers.push(entry);
  return () => {
    const at = closers.indexOf(entry);
    if (at >= 0) closers.splice(at, 1);
  };
}

document.addEventListener("keydown", (e) => {
  if (e.key !== "Escape" || e.defaultPrevented) return;
  dropStale();
  const top = closers.pop();
  if (!top) return;
  e.preventDefault();
  top.close();
});
