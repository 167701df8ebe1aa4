// What every screen shares: the worker and the account open in it.
import type { WorkerCore } from "./core";

export const session = {
  core: undefined as unknown as WorkerCore,
  /// The account open in this tab ("" before one is).
  username: "",
  /// The chat shown in the pane, if any.
  open: null as string | null,
};

/// Asks the worker to do `op` (see worker.ts for the list).
export function call<T = unknown>(op: string, ...args: unknown[]): Promise<T> {
  return session.core.call<T>(op, ...args);
}

/// What a failed call says, for the user.
export function problem(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/// A group's name as the group ops take it: "#team" → "team".
export function groupName(chat: string): string {
  return chat.replace(/^#/, "");
}

export const isGroup = (chat: string): boolean => chat.startsWith("#");
