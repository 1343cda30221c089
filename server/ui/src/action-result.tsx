/** What a run or queue action answered: the outcome, or the server's refusal in its own words. */
import type { ComponentChildren, VNode } from "preact";
import { useState } from "preact/hooks";
import { errorText } from "./api.js";

export interface ActionMessage {
  ok: boolean;
  text: ComponentChildren;
}

/**
 * `act(what, call)` runs `call` and shows what it answered (`call` resolves to the text or markup to
 * show, to an ActionMessage for an answer that is not a success (an update's rejection), or to
 * nothing for "<what>: done") or "<what> refused: <CODE>: <the server's message>"; then `onDone`.
 */
export function useAction(onDone?: () => void) {
  const [message, setMessage] = useState<ActionMessage>();
  const act = async (what: string, call: () => Promise<ActionMessage | VNode | string | void>) => {
    try {
      const shown = await call();
      setMessage(isMessage(shown) ? shown : { ok: true, text: shown ?? `${what}: done` });
      onDone?.();
    } catch (err) {
      setMessage({ ok: false, text: `${what} refused: ${errorText(err)}` });
    }
  };
  return { message, act, fail: (text: string) => setMessage({ ok: false, text }) };
}

function isMessage(value: unknown): value is ActionMessage {
  return typeof value === "object" && value !== null && "ok" in value && "text" in value;
}

export function ActionResult({ message, testId }: { message: ActionMessage | undefined; testId: string }) {
  if (!message) return null;
  return (
    <div class={`result ${message.ok ? "ok" : "error"}`} role="status" data-testid={testId}>
      {message.text}
    </div>
  );
}
