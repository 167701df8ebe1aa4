// Files in messages: a chip with name, size and Download, and a preview for images. The
// worker decrypts and checks each file; the page only ever holds the bytes as Blob URLs,
// revoked as soon as nothing shows them.
import type { AttachmentView, MessageView, Progress } from "./core";
import { button, el, size } from "./dom";
import { call, problem } from "./state";

const IMAGES = new Set(["image/png", "image/jpeg", "image/gif", "image/webp"]);
const AUTO_PREVIEW = 10 * 1024 * 1024; // larger images wait for a click

// Transfer progress comes from the worker by a transfer name the page gives each upload and
// download (two files of the same name, or the same file twice, never mix).
const listeners = new Map<string, (p: Progress) => void>();
let transfers = 0;

/// A new transfer, with `listener` told its progress until the returned `stop()`.
export function transfer(listener: (p: Progress) => void): { name: string; stop(): void } {
  const name = `t${++transfers}`;
  listeners.set(name, listener);
  return { name, stop: () => listeners.delete(name) };
}

export function progressEvent(p: Progress): void {
  listeners.get(p.transfer)?.(p);
}

// Image previews by "message id/index", kept while their message is on screen, so that
// redrawing a message (a new reaction, a receipt) does not fetch its image again.
const previews = new Map<string, Promise<string>>();
// Automatic previews one at a time: a chat full of images should not flood the worker.
let queue: Promise<unknown> = Promise.resolve();

function fetchBytes(id: string, index: number, progress = ""): Promise<Uint8Array<ArrayBuffer>> {
  return call<Uint8Array<ArrayBuffer>>("attachment", id, index, progress);
}

function preview(m: MessageView, a: AttachmentView, index: number): Promise<string> {
  const key = `${m.id}/${index}`;
  let url = previews.get(key);
  if (!url) {
    const mine: Promise<string> = queue
      .then(() => {
        // Its message left the screen while it waited (another chat opened): not fetched.
        if (previews.get(key) !== mine) throw new Error("no longer shown");
        return fetchBytes(m.id, index);
      })
      .then((bytes) => URL.createObjectURL(new Blob([bytes], { type: a.content_type })));
    url = mine;
    queue = url.catch(() => {});
    previews.set(key, url);
    url.catch(() => { if (previews.get(key) === mine) previews.delete(key); }); // a failed one may be tried again
  }
  return url;
}

/// The preview of file `index` of message `id`, from the bytes the sender chose (this device
/// sent it: no need to fetch it back).
export function seedPreview(id: string, index: number, file: File): void {
  if (!IMAGES.has(file.type) || previews.has(`${id}/${index}`)) return;
  previews.set(`${id}/${index}`, Promise.resolve(URL.createObjectURL(file)));
}

/// Revokes the previews of messages no longer shown (all of them when `shown` is empty).
export function releasePreviews(shown: Set<string> = new Set()): void {
  for (const [key, url] of previews) {
    if (shown.has(key.slice(0, key.lastIndexOf("/")))) continue;
    previews.delete(key);
    void url.then(URL.revokeObjectURL, () => {});
  }
}

/// Revokes the previews of message `id` (deleted, or gone).
export function forgetPreviews(id: string): void {
  for (const [key, url] of previews) {
    if (!key.startsWith(`${id}/`)) continue;
    previews.delete(key);
    void url.then(URL.revokeObjectURL, () => {});
  }
}

/// Saves bytes as a file through an `<a download>`; the type is forced to octet-stream so
/// that a file can never be shown as a page of this origin.
function save(name: string, bytes: Uint8Array<ArrayBuffer>): void {
  const url = URL.createObjectURL(new Blob([bytes], { type: "application/octet-stream" }));
  saveUrl(name, url);
  // Later, not at once: some browsers read the URL after click() returns.
  setTimeout(() => URL.revokeObjectURL(url), 30_000);
}

function saveUrl(name: string, url: string): void {
  const link = el("a", { href: url, download: name, hidden: "" });
  document.body.append(link);
  link.click();
  link.remove();
}

/// A short badge for the file's kind: its extension ("pdf"), or "file".
function kind(a: AttachmentView): string {
  const dot = a.name.lastIndexOf(".");
  const ext = dot > 0 ? a.name.slice(dot + 1) : "";
  return ext.length > 0 && ext.length <= 4 ? ext : "file";
}

/// One file of message `m`. `pending` (a message still being sent) shows an upload bar
/// instead of Download.
export function attachmentView(m: MessageView, a: AttachmentView, index: number, pending: boolean): HTMLElement {
  const bar = el("progress", { class: "transfer", max: "1", value: "0", "aria-label": `Transfer of ${a.name}` });
  bar.hidden = !pending;
  if (pending) bar.dataset.testid = "upload-progress";
  const failure = el("p", { class: "error", role: "alert" });
  const file = el("div", { class: "file" },
    el("span", { class: "file-icon", "aria-hidden": "true" }, kind(a)),
    el("span", { class: "file-name", title: a.name }, a.name),
    el("span", { class: "file-size" }, size(a.size)));
  const box = el("div", { class: "attachment", "data-testid": "attachment" });
  const image = IMAGES.has(a.content_type) && !pending;

  const showPreview = (img: HTMLImageElement) => {
    preview(m, a, index)
      .then((url) => { img.src = url; })
      .catch((err) => { img.remove(); failure.textContent = `Preview failed: ${problem(err)}`; });
  };
  if (image) {
    const img = el("img", { class: "preview", alt: a.name });
    if (a.size <= AUTO_PREVIEW) {
      box.append(img);
      showPreview(img);
    } else {
      const show = button("Show preview", { class: "small", "data-testid": "preview" }, () => {
        show.replaceWith(img);
        showPreview(img);
      });
      box.append(show);
    }
  }
  if (!pending) {
    const download = button("Download", { class: "small", "data-testid": "download", "aria-label": `Download ${a.name}` }, async () => {
      download.disabled = true;
      failure.textContent = "";
      bar.hidden = false;
      const progress = transfer((p) => { bar.max = Math.max(1, p.total); bar.value = p.done; });
      try {
        const cached = image ? previews.get(`${m.id}/${index}`) : undefined;
        if (cached) {
          // Already fetched for the preview (one of four image types, never markup): save
          // that URL. (fetch() of a blob: URL would need connect-src blob:, which the CSP
          // rightly lacks.)
          saveUrl(a.name, await cached);
        } else {
          save(a.name, await fetchBytes(m.id, index, progress.name));
        }
      } catch (err) {
        failure.textContent = `Download failed: ${problem(err)}`;
      } finally {
        progress.stop();
        bar.hidden = true;
        download.disabled = false;
      }
    });
    file.append(download);
  }
  box.append(file, bar, failure);
  return box;
}
