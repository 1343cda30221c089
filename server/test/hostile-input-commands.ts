/**
 * Hostile workflow commands for CompleteWorkflowTask: zero to three commands
 * of any kind, each with fields from the hostile pools, sometimes a terminal
 * command out of place. `bad` when any part is certainly invalid.
 */
import { ParentClosePolicy } from "@dex/proto";
import { failure, optionalPriority, pick, poolField, type Field } from "./hostile-input-specs.js";
import {
  draw,
  durations,
  enums,
  ids,
  labelMaps,
  patchIds,
  payloads,
  queueNames,
  requiredIds,
  texts,
  timestamps,
  uint32s,
  type Pick,
  type Rng,
} from "./hostile-input-values.js";

type Fields = Record<string, Pick<unknown>>;
const TEN_YEARS_MS = 10 * 365 * 24 * 3600_000;

/** Seqs that name an earlier command: none of these names one. */
const references = [
  pick("unused seq", 999_999_999, true),
  pick("seq 0", 0, true),
  pick("seq 2^31", 2_147_483_648, true),
  pick("seq uint32 max", 4_294_967_295, true),
];

function command(rng: Rng, payloadLimit: number): { label: string; value: unknown; bad: boolean; terminal: boolean } {
  const seq = () => draw(rng, uint32s);
  const payload = () => draw(rng, payloads(payloadLimit));
  const queue = () => (rng.chance(0.4) ? pick("empty (the run's)", "") : draw(rng, queueNames));
  const make = (kind: string, fields: Fields, extraBad = false, terminal = false) => {
    const value: Record<string, unknown> = {};
    for (const [name, f] of Object.entries(fields)) value[name] = f.value;
    const bad = extraBad || Object.values(fields).some((f) => f.bad);
    const label = `${kind}{${Object.entries(fields)
      .map(([n, f]) => `${n}: ${f.label}${f.bad ? "!" : ""}`)
      .join(", ")}}`;
    return { label, value: { command: { case: kind, value } }, bad, terminal };
  };
  switch (rng.int(16)) {
    case 0: {
      const policy = rng.pick([
        pick("no retry policy", undefined),
        pick("empty policy", {}),
        pick("coefficient 0.5", { backoffCoefficient: 0.5 }, true),
        pick("coefficient NaN", { backoffCoefficient: Number.NaN }, true),
        pick("coefficient Infinity", { backoffCoefficient: Number.POSITIVE_INFINITY }, true),
        pick("negative attempts", { maximumAttempts: -1 }, true),
        pick("max below initial", { initialInterval: { seconds: 3600n }, maximumInterval: { seconds: 60n } }, true),
        pick("bad error type", { nonRetryableErrorTypes: ["ok", "\u0000"] }, true),
        (() => {
          const d = draw(rng, durations);
          return { ...d, label: `initial interval ${d.label}`, value: { initialInterval: d.value } };
        })(),
      ]);
      return make("scheduleActivity", {
        seq: seq(),
        activityName: draw(rng, requiredIds),
        taskQueue: queue(),
        input: payload(),
        retryPolicy: policy,
        startToCloseTimeout: draw(rng, durations),
        scheduleToCloseTimeout: draw(rng, durations),
        heartbeatTimeout: draw(rng, durations),
        priority: optionalPriority(rng, undefined as never),
      });
    }
    case 1:
      return make("requestCancelActivity", { seq: rng.pick(references) });
    case 2: {
      const duration = draw(rng, durations);
      const fireTime = draw(rng, timestamps);
      const both = duration.value !== undefined && fireTime.value !== undefined;
      const neither = duration.value === undefined && fireTime.value === undefined;
      const at = fireTime.value ? Number(fireTime.value.seconds) * 1000 : undefined;
      const far = at !== undefined && Math.abs(at - Date.now()) > TEN_YEARS_MS - 60_000;
      return make("startTimer", { seq: seq(), duration, fireTime }, both || neither || far);
    }
    case 3:
      return make("cancelTimer", { seq: rng.pick(references) });
    case 4:
      return make("waitForEvent", { seq: seq(), eventId: draw(rng, requiredIds), timeout: draw(rng, durations) });
    case 5:
      return make("startChildRun", {
        seq: seq(),
        workflowName: draw(rng, requiredIds),
        instanceId: draw(rng, requiredIds),
        taskQueue: queue(),
        input: payload(),
        labels: draw(rng, labelMaps()),
        priority: optionalPriority(rng, undefined as never),
        parentClosePolicy: draw(rng, enums([0, ParentClosePolicy.CANCEL, ParentClosePolicy.ABANDON])),
      });
    case 6:
      return make("requestCancelChildRun", { seq: rng.pick(references) });
    case 7:
      return make("recordSideEffect", { seq: seq(), value: payload() });
    case 8:
      return make("setCustomStatus", { customStatus: draw(rng, texts) });
    case 9:
      return make("upsertLabels", { labels: draw(rng, labelMaps()) });
    case 10:
      return make("completeRun", { result: payload() }, false, true);
    case 11:
      return make("failRun", { failure: failure(true)(rng, { payloadLimit } as never) }, false, true);
    case 12:
      return make("cancelRun", { details: payload() }, false, true);
    case 13:
      return make(
        "continueAsNew",
        { input: payload(), workflowName: rng.chance(0.5) ? pick("same", "") : draw(rng, ids), taskQueue: queue() },
        false,
        true,
      );
    case 14:
      return make("recordPatchMarker", { patchId: draw(rng, patchIds), deprecated: rng.pick([pick("patched", false), pick("deprecated", true)]) });
    default:
      return { label: "no command set", value: { command: { case: undefined } }, bad: true, terminal: false };
  }
}

/** The `commands` field of CompleteWorkflowTask. */
export const commands: Field = (rng, fx) => {
  const list = Array.from({ length: rng.int(4) }, () => command(rng, fx.payloadLimit));
  // A terminal command must be last: keep only the first one, and sometimes put it too early.
  const firstTerminal = list.findIndex((c) => c.terminal);
  const kept = firstTerminal === -1 ? list : list.slice(0, firstTerminal + 1);
  let misplaced = false;
  if (firstTerminal !== -1 && kept.length > 1 && rng.chance(0.3)) {
    kept.unshift(kept.pop()!);
    misplaced = true;
  }
  return {
    label: `[${kept.map((c) => c.label).join("; ")}]${misplaced ? " (terminal not last)" : ""}`,
    value: kept.map((c) => c.value),
    bad: misplaced || kept.some((c) => c.bad),
  };
};

export { poolField };
