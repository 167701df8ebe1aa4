// The page's side of the worker: starts it from integrity-checked bytes and turns its
// messages into promises and events.
declare const __WORKER_SRI__: string;
declare const __WASM_SRI__: string;

export type MessageView = {
  id: string; chat: string; sender: string; text: string; sent_at: string; status: string;
  kind: string;
};
export type ChatSummary = {
  chat: string; kind: string; state: string; last_activity: string;
  last_message: MessageView | null; unread: number;
};
type Answer = { id: number; ok: boolean; value?: unknown; error?: string };
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
      else waiter?.reject(new Error(data.error));
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
