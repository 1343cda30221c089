import { create } from "@bufbuild/protobuf";
import { RunSelectorSchema, type RunSelector } from "@dex/proto";
import { runRef } from "../options.js";

/** A positional run argument as a RunSelector: a UUID is a run id, anything else an instance id. */
export function selector(ref: string): RunSelector {
  const target = runRef(ref);
  return create(RunSelectorSchema, {
    target: "runId" in target ? { case: "runId", value: target.runId } : { case: "instanceId", value: target.instanceId },
  });
}
