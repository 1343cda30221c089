/**
 * Cross-server wake-ups over LISTEN/NOTIFY on one channel, `dex_wakeup`.
 *
 * Payloads: `<type>:<queue>:<origin>` when a commit created tasks on a queue
 * (at most one per queue per transaction: Postgres also folds identical
 * notifications within a transaction), and `run:<run id>:<origin>` when a run
 * ended. `origin` is the id of the server that committed, so a server skips its
 * own notifications (it has already woken its waiters in memory). Queue names
 * cannot contain ':' (see the task_queues check constraint).
 *
 * NOTIFY takes a global lock at commit and holds it through the commit's WAL
 * flush: the hot paths send theirs after the commit, many commits' worth per
 * statement (engine/notifier.ts); the rest once per queue per transaction.
 */
import type { Queryable, Sql } from "./db.js";

export const WAKEUP_CHANNEL = "dex_wakeup";

export type Wakeup =
  | { kind: "queue"; type: string; queue: string; origin: string }
  | { kind: "run"; runId: string; origin: string };

export function queueWakeupPayload(type: string, queue: string, origin: string): string {
  return `${type}:${queue}:${origin}`;
}

export function runWakeupPayload(runId: string, origin: string): string {
  return `run:${runId}:${origin}`;
}

export function parseWakeup(payload: string): Wakeup | undefined {
  const [head, middle, origin, ...rest] = payload.split(":");
  if (!head || !middle || !origin || rest.length > 0) return undefined;
  if (head === "run") return { kind: "run", runId: middle, origin };
  if (head === "workflow" || head === "activity") return { kind: "queue", type: head, queue: middle, origin };
  return undefined;
}

/** Sends the given payloads at commit of the surrounding transaction (one statement, deduplicated). */
export async function notify(tx: Queryable, payloads: string[]): Promise<void> {
  const unique = [...new Set(payloads)];
  if (unique.length === 0) return;
  await tx`select pg_notify(${WAKEUP_CHANNEL}, p) from unnest(${unique}::text[]) as p`;
}

export interface WakeupListener {
  stop(): Promise<void>;
}

/**
 * LISTENs on a connection of its own (postgres.js reconnects it after a
 * failure). `onListen` runs on every (re)connect: notifications sent while
 * disconnected are lost, so the caller re-checks everything then.
 */
export async function listenForWakeups(
  sql: Sql,
  onWakeup: (wakeup: Wakeup) => void,
  onListen: () => void,
): Promise<WakeupListener> {
  const request = await sql.listen(
    WAKEUP_CHANNEL,
    (payload) => {
      const wakeup = parseWakeup(payload);
      if (wakeup) onWakeup(wakeup);
    },
    onListen,
  );
  return { stop: () => request.unlisten() };
}
