/**
 * External events by name (decision 0022). An event has a name (what the code
 * listens for) and an id (the server's dedup key). Each event is consumed
 * once, by the first of:
 * 1. the oldest pending `ctx.waitForEvent(name)` (also what `ctx.events(name)`
 *    pulls with);
 * 2. the handler `ctx.onEvent(name, fn)` registered for the name;
 * 3. otherwise it is buffered, in the order received, for the next wait or
 *    the handler registered later (which gets the buffered ones first).
 * Events reach the code in history order (the order the server accepted
 * them), so consumption is the same on every replay. The events still
 * buffered when the code continues as new are carried to the next run
 * (`carried_events`), in the order received. Once the run has ended, an event
 * is only buffered (no wait or handler takes it), and the carried events are
 * read when the task's commands are handed over, not when continueAsNew is
 * called: a handler that continues as new at one event of a task must not
 * consume the later events of that task, or they would be in neither run.
 *
 * An event that settles a wait with a time-out also issues `cancel_timer` for
 * the wait's seq: the server cannot tell which wait an event satisfied, so it
 * keeps the time-out until the SDK drops it. A wait a cancellation reached,
 * timed or not, gets the same command (pending.ts): without it describe would
 * show the dead wait until an event of its name arrived. Histories written
 * before lack these commands; the replay check lets them be missing
 * (replay-check.ts).
 *
 * A handler is called as its event is delivered, in history order, before
 * any continuation of the same workflow task runs (the one exception to
 * "delivery only settles promises" in inputs.ts, as in Temporal, where signal
 * handlers run before the rest of an activation): whatever state it sets is
 * already there when the code resumes, so code that decides on it (say, to
 * continue as new) cannot miss an event that came with the same task.
 */
import { create } from "@bufbuild/protobuf";
import { CarriedEventSchema, CommandSchema, type CarriedEvent, type Command, type Payload } from "@dex/proto";
import { mayBeUnrecorded } from "./replay-check.js";

/** What a handler gets besides the payload. */
export interface ReceivedEventInfo {
  /** The event name. */
  readonly name: string;
  /** The event id: the sender's dedup key, or one the server generated. */
  readonly id: string;
}

export type EventHandler<T = unknown> = (payload: T, event: ReceivedEventInfo) => void | Promise<void>;

interface Buffered {
  readonly id: string;
  readonly name: string;
  /** As received, so a carried event keeps its exact bytes. */
  readonly raw: Payload | undefined;
  readonly payload: unknown;
  /** Receive order across names, for the carry-over. */
  readonly order: number;
}

export interface EventSinks {
  /** True once the run produced a terminal command: events are then only buffered, to be carried. */
  ended(): boolean;
  /** Resolves the oldest pending wait for `name`, if there is one. */
  resolveOldestWait(name: string, payload: unknown): boolean;
  /** A handler threw or rejected: handled as an error escaping workflow code (the failure rule). */
  handlerFailed(error: unknown): void;
}

/**
 * `cancel_timer` with a wait's seq: the SDK no longer waits (an event satisfied a timed wait, or a
 * cancellation reached the wait). The server deletes the time-out, if any, and describe closes the
 * wait. Replay accepts it missing from older histories.
 */
export function buildDropEventWait(seq: number, timed: boolean): Command {
  const command = create(CommandSchema, { command: { case: "cancelTimer", value: { seq } } });
  mayBeUnrecorded.add(command);
  if (!timed) describeOnly.add(command);
  return command;
}

/**
 * Drops of untimed waits: they only keep describe true while the run is open, so a task that ends
 * the run (which closes every wait) leaves them out rather than grow history for nothing (the
 * common `listening.cancel(); return` at the end of a workflow). Drops of timed waits stay: the
 * SDK has recorded them in such tasks since 0022, and replay must produce what was recorded.
 */
const describeOnly = new WeakSet<Command>();

/** The task's commands as sent: without untimed-wait drops when the task ended the run. */
export function withoutDescribeOnlyDrops(commands: Command[], endsRun: boolean): Command[] {
  return endsRun ? commands.filter((c) => !describeOnly.has(c)) : commands;
}

export class ReceivedEvents {
  private readonly seen = new Set<string>();
  private readonly buffered = new Map<string, Buffered[]>();
  private readonly handlers = new Map<string, EventHandler>();
  private received = 0;

  constructor(private readonly sinks: EventSinks) {}

  /** An `external_event_received` input. */
  deliver(event: { id: string; name: string; raw: Payload | undefined; payload: unknown }): void {
    // The server delivers an id once per chain; should it ever repeat, the first delivery stands.
    if (this.seen.has(event.id)) return;
    this.seen.add(event.id);
    const ended = this.sinks.ended();
    if (!ended && this.sinks.resolveOldestWait(event.name, event.payload)) return;
    const handler = ended ? undefined : this.handlers.get(event.name);
    if (handler) {
      this.call(handler, event);
      return;
    }
    const queue = this.buffered.get(event.name) ?? [];
    queue.push({ ...event, order: this.received++ });
    this.buffered.set(event.name, queue);
  }

  /** The oldest unconsumed event of `name`, removed. */
  take(name: string): { payload: unknown } | undefined {
    const queue = this.buffered.get(name);
    const next = queue?.shift();
    if (queue?.length === 0) this.buffered.delete(name);
    return next;
  }

  /** Registers (or replaces) the name's handler; it gets the buffered events first. Returns the removal. */
  setHandler(name: string, handler: EventHandler): () => void {
    this.handlers.set(name, handler);
    // Checked before each: a buffered event may make the handler continue as new; the rest stay to be carried.
    while (!this.sinks.ended()) {
      const next = this.take(name);
      if (!next) break;
      this.call(handler, next as Buffered);
    }
    return () => {
      if (this.handlers.get(name) === handler) this.handlers.delete(name);
    };
  }

  /** The unconsumed events, in the order received, for continue_as_new. */
  unconsumed(): CarriedEvent[] {
    return [...this.buffered.values()]
      .flat()
      .sort((a, b) => a.order - b.order)
      .map((e) => create(CarriedEventSchema, { eventId: e.id, eventName: e.name, payload: e.raw }));
  }

  private call(handler: EventHandler, event: { id: string; name: string; payload: unknown }): void {
    const info: ReceivedEventInfo = { name: event.name, id: event.id };
    try {
      const result = handler(event.payload, info);
      if (result instanceof Promise) result.catch((err: unknown) => this.sinks.handlerFailed(err));
    } catch (err) {
      this.sinks.handlerFailed(err);
    }
  }
}
