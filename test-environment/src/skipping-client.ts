/**
 * The environment's client: the SDK's own client, except that waiting for a run's result skips
 * time (TimeSkipper.during). Every other method is the SDK's, unchanged, so a test talks to dex
 * exactly as the application does.
 */
import type { Client, WorkflowHandle } from "@dex/sdk";
import type { TimeSkipper } from "./time-skipper.js";

export function skippingClient(client: Client, skipper: TimeSkipper): Client {
  const wrap = <O>(handle: WorkflowHandle<O>): WorkflowHandle<O> => ({
    ...handle,
    result: (options) => skipper.during(() => handle.result(options)),
  });
  return {
    ...client,
    async start(workflow, options) {
      return wrap(await client.start(workflow, options));
    },
    async sendEventWithStart(workflow, options) {
      const started = await client.sendEventWithStart(workflow, options);
      return { ...started, handle: wrap(started.handle) };
    },
    getHandle: (ref) => wrap(client.getHandle(ref)),
  };
}
