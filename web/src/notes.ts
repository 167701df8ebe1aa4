// Lines under a chat saying what an action did ("Reported (#12)") or why it failed, each
// until dismissed; a few at most.
import { button, el } from "./dom";

export class Notes {
  readonly element = el("div", { class: "notes" });

  /// A failure (read out at once).
  alert(text: string): void {
    this.add(el("div", { class: "chat-alert", role: "alert" }, el("span", {}, text)));
  }

  /// A confirmation; `testid` names it, and a newer one of the same kind replaces it.
  note(text: string, testid: string): void {
    this.element.querySelector(`[data-testid="${testid}"]`)?.parentElement?.remove();
    this.add(el("div", { class: "chat-note", role: "status" }, el("span", { "data-testid": testid }, text)));
  }

  private add(line: HTMLElement): void {
    line.append(button("×", { class: "close", "aria-label": "Dismiss" }, () => line.remove()));
    this.element.append(line);
    while (this.element.children.length > 3) this.element.firstElementChild!.remove();
  }
}

/// Files dropped anywhere on `target` go to `drop`; the target shows it while they hover.
export function dropFiles(target: HTMLElement, signal: AbortSignal, drop: (files: File[]) => void): void {
  const files = (e: DragEvent) => e.dataTransfer?.types.includes("Files") ?? false;
  const over = (e: DragEvent) => {
    if (!files(e)) return;
    e.preventDefault();
    e.dataTransfer!.dropEffect = "copy";
    target.classList.add("dropping");
  };
  target.addEventListener("dragenter", over, { signal });
  target.addEventListener("dragover", over, { signal });
  target.addEventListener("dragleave", (e) => {
    if (!target.contains(e.relatedTarget as Node | null)) target.classList.remove("dropping");
  }, { signal });
  target.addEventListener("drop", (e) => {
    if (!files(e)) return;
    e.preventDefault();
    target.classList.remove("dropping");
    const dropped = [...(e.dataTransfer?.files ?? [])];
    if (dropped.length) drop(dropped);
  }, { signal });
}
