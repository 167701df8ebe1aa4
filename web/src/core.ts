// The page's side of the worker: starts it from integrity-checked bytes and turns its
// messages into promises and events.
declare const __WORKER_SRI__: string;
declare const __WASM_SRI__: string;

export type AttachmentView = { name: string; size: number; content_type: string; sha256: string };
export type Quoted = { sender: string; text: string; deleted: boolean };
export type MessageView = {
  id: string; chat: string; sender: string; text: string; sent_at: string;
  /// sending, sent, delivered, read, received or failed.
  status: string;
  /// text, or notice (something that happened in the chat; `text` says what).
  kind: string;
  group_seq?: number | null; history?: boolean; reply_to?: string | null; quoted?: Quoted | null;
  edited?: boolean; versions?: string[]; deleted?: boolean; deleted_by?: string | null;
  reactions?: Record<string, string[]>; attachments?: AttachmentView[]; expires_at?: string | null;
};
export type ChatSummary = {
  chat: string; kind: string; state: string; last_activity: string;
  last_message: MessageView | null; unread: number; disappearing?: number;
};
export type TypingView = { chat: string; sender: string; stopped: boolean };
export type GroupState = { epoch: number; members: string[]; devices: number; admins: string[]; epoch_authenticator: string };
/// A QR code: `width` modules a side, `modules` row by row, "1" dark.
export type Qr = { width: number; modules: string };
export type SafetyNumber = { peer: string; digits: string; qr_payload: string; verified: boolean; qr: Qr | null };
export type DeviceView = { id: string; name: string; added_at: string; last_seen: string; current: boolean };
export type BackupStatus = {
  enabled: boolean; every_minutes: number | null; last_backup_at: string | null;
  last_backup_bytes: number | null; changes_pending: boolean; stored: { created_at: string; bytes: number }[];
};
/// Events while linking: first the code to approve (with its QR code), then progress.
export type LinkEvent =
  | { stage: "code"; code: string; qr: Qr | null }
  | { stage: "approved" }
  | { stage: "stalled"; chunks: number }
  | { stage: "history"; chats: number; messages: number };
/// How far one transfer is (`transfer` as the page named it).
export type Progress = { transfer: string; done: number; total: number };
type Answer = { id: number; ok: boolean; value?: unknown; error?: string; queued?: boolean };
type Event = { event: string; value: unknown };

export class WorkerCore {
  private next = 1;
  private waiting = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  onEvent: (event: string, value: unknown) => void = () => {};

  private constructor(private worker: Worker) {
    worker.onmessage = (m: MessageEvent<Answer | Event>) => {
      const data = m.data;
      if ("event" in data) {
        this.onEvent(data.event, data.value);
        return;
      }
      const waiter = this.waiting.get(data.id);
      this.waiting.delete(data.id);
      if (data.ok) waiter?.resolve(data.value);
      else waiter?.reject(Object.assign(new Error(data.error), { queued: data.queued === true }));
    };
  }

  /// Fetches the worker and the wasm with subresource integrity, so that the page's own hash
  /// (checked by the browser from index.html) covers everything that runs.
  /// `created` hears of the worker as soon as it exists (so that it can be stopped); past
  /// `cancelled()`, the start ends quietly with the worker stopped.
  static async start(created: (core: WorkerCore) => void, cancelled: () => boolean): Promise<WorkerCore> {
    const script = await fetch("worker.js", { integrity: __WORKER_SRI__ });
    const bytes = await script.arrayBuffer();
    if (cancelled()) throw new Error("cancelled");
    const url = URL.createObjectURL(new Blob([bytes], { type: "text/javascript" }));
    const core = new WorkerCore(new Worker(url, { type: "module" }));
    created(core);
    const wasm = await (await fetch("parley_web_bg.wasm", { integrity: __WASM_SRI__ })).arrayBuffer();
    await core.call("init", wasm);
    // A tab that just handed over may still be closing its database: try for a few seconds.
    for (let attempt = 1; ; attempt++) {
      if (cancelled()) throw new Error("cancelled");
      try {
        await core.call("storage");
        return core;
      } catch (err) {
        if (attempt >= 20 || cancelled()) throw err;
        await new Promise((r) => setTimeout(r, 250));
      }
    }
  }

  call<T>(op: string, ...args: unknown[]): Promise<T> {
    const id = this.next++;
    return new Promise<T>((resolve, reject) => {
      this.waiting.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.worker.postMessage({ id, op, args });
    });
  }

  stop(): void {
    this.worker.terminate();
  }
}
