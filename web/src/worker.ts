// The Dedicated Worker that hosts Parley's client core (crates/web, compiled to wasm32) and
// its database (SQLite on OPFS). The page talks to it by messages: requests with an id,
// answered once; events (a new message, the connection's state, a change, someone typing,
// a link code, transfer progress) whenever they happen.
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
      (json: string) => emit("typing", JSON.parse(json)),
      () => emit("changed", null),
    )
    .catch((e: unknown) => emit("failed", String(e)));
}

/// Progress of one transfer, named by the page (its last argument to sendFile/attachment).
const progress = (transfer: unknown) => (done: number, total: number) =>
  emit("progress", { transfer: String(transfer), done, total });
const text = (v: unknown) => v as string;
const parsed = (json: string) => JSON.parse(json);

async function handle(op: string, a: unknown[]): Promise<unknown> {
  switch (op) {
    case "init":
      await init({ module_or_path: a[0] as ArrayBuffer });
      return null;
    case "storage":
      await Core.installStorage();
      return null;
    case "register":
      core = await Core.register(text(a[0]), text(a[1]));
      follow();
      return core.username();
    case "link":
      core = await Core.link(text(a[0]), text(a[1]), (json: string) => emit("link", JSON.parse(json)));
      follow();
      return core.username();
    case "open":
      core = Core.open(text(a[0]));
      follow();
      return core.username();
  }
  const c = need();
  switch (op) {
    case "chats": return parsed(c.chats());
    case "history": return parsed(c.history(text(a[0]), a[1] as number));
    case "send": return parsed(await c.send(text(a[0]), text(a[1]), (a[2] as string | null) ?? undefined));
    case "edit": return parsed(await c.edit(text(a[0]), text(a[1])));
    case "delete": return parsed(await c.delete(text(a[0])));
    case "react": return parsed(await c.react(text(a[0]), text(a[1]), a[2] as boolean));
    case "read": await c.read(text(a[0])); return null;
    case "typing": await c.typing(text(a[0]), a[1] as boolean); return null;
    case "createGroup": await c.createGroup(text(a[0]), a[1] as string[]); return null;
    case "addMembers": await c.addMembers(text(a[0]), a[1] as string[]); return null;
    case "removeMembers": await c.removeMembers(text(a[0]), a[1] as string[]); return null;
    case "leave": await c.leave(text(a[0])); return null;
    case "group": return parsed(c.group(text(a[0])));
    case "setDisappearing": await c.setDisappearing(text(a[0]), a[1] as number); return null;
    case "sendFile":
      return parsed(await c.sendFile(text(a[0]), text(a[1]), new Uint8Array(a[2] as ArrayBuffer),
        text(a[3] ?? ""), (a[4] as string | null) ?? undefined, progress(a[5])));
    case "attachment": {
      const bytes: Uint8Array = await c.attachment(text(a[0]), a[1] as number, progress(a[2]));
      return bytes;
    }
    case "safetyNumber": return parsed(c.safetyNumber(text(a[0])));
    case "verify": c.verify(text(a[0]), text(a[1])); return null;
    case "report": return parsed(await c.report(text(a[0]), text(a[1]), a[2] as number));
    case "block": await c.block(text(a[0])); return null;
    case "unblock": c.unblock(text(a[0])); return null;
    case "blocked": return parsed(c.blocked());
    case "devices": return parsed(await c.devices());
    case "renameDevice": return parsed(await c.renameDevice(text(a[0]), text(a[1])));
    case "revokeDevice": return parsed(await c.revokeDevice(text(a[0])));
    case "approveLink": return parsed(await c.approveLink(text(a[0])));
    case "backupStatus": return parsed(await c.backupStatus());
    case "enableBackup": return parsed(await c.enableBackup());
    case "readReceipts": return c.readReceipts();
    case "setReadReceipts": await c.setReadReceipts(a[0] as boolean); return null;
    case "qr": return parsed(Core.qr(text(a[0])));
  }
  throw new Error(`unknown request ${op}`);
}

self.onmessage = async (event: MessageEvent<Request>) => {
  const { id, op, args } = event.data;
  try {
    postMessage({ id, ok: true, value: await handle(op, args) });
  } catch (e) {
    // `queued`: a send that is kept and goes out later (crates/web's `queued_error`).
    const queued = typeof e === "object" && e !== null && (e as { queued?: boolean }).queued === true;
    postMessage({ id, ok: false, error: e instanceof Error ? e.message : String(e), queued });
  }
};
