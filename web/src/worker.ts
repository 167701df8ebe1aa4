// The Dedicated Worker that hosts Parley's client core (crates/web, compiled to wasm32) and
// its database (SQLite on OPFS). The page talks to it by messages: requests with an id,
// answered once; events (a new message, the connection's state) whenever they happen.
import init, { Core } from "../pkg/parley_web.js";

type Request = { id: number; op: string; args: unknown[] };

let core: Core | null = null;

function need(): Core {
  if (!core) throw new Error("no account is open");
  return core;
}

function emit(event: string, value: unknown): void {
  postMessage({ event, value });
}

function follow(): void {
  need()
    .follow(
      (json: string) => emit("message", JSON.parse(json)),
      (online: boolean) => emit("state", online),
    )
    .catch((e: unknown) => emit("failed", String(e)));
}

async function handle(op: string, args: unknown[]): Promise<unknown> {
  switch (op) {
    case "init":
      await init({ module_or_path: args[0] as ArrayBuffer });
      return null;
    case "storage":
      await Core.installStorage();
      return null;
    case "register":
      core = await Core.register(args[0] as string, args[1] as string);
      follow();
      return core.username();
    case "open":
      core = Core.open(args[0] as string);
      follow();
      return core.username();
    case "chats":
      return JSON.parse(need().chats());
    case "history":
      return JSON.parse(need().history(args[0] as string, args[1] as number));
    case "send":
      return JSON.parse(await need().sendText(args[0] as string, args[1] as string));
    case "read":
      await need().read(args[0] as string);
      return null;
    case "createGroup":
      await need().createGroup(args[0] as string, args[1] as string[]);
      return null;
  }
  throw new Error(`unknown request ${op}`);
}

self.onmessage = async (event: MessageEvent<Request>) => {
  const { id, op, args } = event.data;
  try {
    postMessage({ id, ok: true, value: await handle(op, args) });
  } catch (e) {
    postMessage({ id, ok: false, error: e instanceof Error ? e.message : String(e) });
  }
};
