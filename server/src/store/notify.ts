/**
 * Cross-server wake-ups over LISTEN/NOTIFY on one channel, `dex_wakeup`: the
 * payloads (built here and nowhere else), the one statement that sends them,
 * and the listener.
 *
 * ONE MECHANISM: a write commits first, then announces what it made true.
 * In-process wakes (engine/wakeups.ts) happen at once; the payloads go to
 * engine/notifier.ts, which sends many commits' worth in one statement of its
 * own, outside every writing transaction (Effects and inTransaction collect
 * them for transactional writes; single statements hand them over after they
 * return). No writing statement or transaction NOTIFYs: Postgres takes a
 * global lock at the commit of any transaction that has NOTIFYed and holds it
 * through that commit's WAL flush, which serialised the hot paths' commits
 * (engine/notifier.ts has the measurement). server/test/one-wakeup-path.test.ts
 * fails on any other use of NOTIFY in server/src.
 *
 * Payloads: `<type>:<queue>:<origin>` when a commit created tasks on a queue
 * (or a queue's tasks came due, or it opened up), and `run:<run id>:<origin>`
 * when a run changed. `origin` is the id of the server that committed, so a
 * server skips its own notifications (it has already woken its waiters in
 * memory). Queue names cannot contain ':' (see the task_queues check
 * constraint). The cost of sending after commit: a server that dies in between
 * loses the wake, and other servers find the work at their fallback tick.
 */
import type { Queryable, Sql } from "./db.js";

export const WAKEUP_CHANNEL = "dex_wakeup";

export type Wakeup =
  | { kind: "queue"; type: string; queue: string; origin: string }
  | { kind: "run"; runId: string; origin: string }
  | { kind: "schedules"; origin: string };

export function queueWakeupPayload(type: string, queue: string, origin: string): string {
  return `${type}:${queue}:${origin}`;
}

export function runWakeupPayload(runId: string, origin: string): string {
  return `run:${runId}:${origin}`;
}

/**
 * `schedules:due:<origin>`: a schedule was created or changed (its due time may be earlier now);
 * every server's schedule loop looks again (engine/schedules-loop.ts).
 */
export function schedulesWakeupPayload(origin: string): string {
  return `schedules:due:${origin}`;
}

export function parseWakeup(payload: string): Wakeup | undefined {
  const [head, middle, origin, ...rest] = payload.split(":");
  if (!head || !middle || !origin || rest.length > 0) return undefined;
  if (head === "run") return { kind: "run", runId: middle, origin };
  if (head === "schedules") return { kind: "schedules", origin };
  if (head === "workflow" || head === "activity") return { kind: "queue", type: head, queue: middle, origin };
  // Query tasks of a workflow queue (engine/query-tasks.ts).
  if (head === "query") return { kind: "queue", type: head, queue: middle, origin };
  return undefined;
}

/**
 * Sends the payloads (deduplicated) in one statement of their own, never
 * inside a writing transaction: only engine/notifier.ts calls this, after the
 * commits that made the payloads true.
 */
export async function sendWakeups(sql: Queryable, payloads: readonly string[]): Promise<void> {
  const unique = [...new Set(payloads)];
  if (unique.length === 0) return;
  await sql`select pg_notify(${WAKEUP_CHANNEL}, p) from unnest(${unique}::text[]) as p`;
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
