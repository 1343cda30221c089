/**
 * Running the Python grpcio clients of tests/python: the tools they need, the
 * stubs generated from the .proto files alone, and one run of a script.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, readdir, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { protoRoot } from "@dex/proto";
import { runToEnd } from "./spawned.js";

export const PYTHON = "/usr/bin/python3";
const PLUGIN = "/usr/bin/grpc_python_plugin";

/** Why Python clients cannot run here, or undefined when they can. */
function missingPythonTools(): string | undefined {
  if (!existsSync(PYTHON)) return `${PYTHON} not found`;
  if (spawnSync(PYTHON, ["-c", "import grpc, google.protobuf"]).status !== 0) return "python3-grpcio is not installed";
  if (spawnSync("protoc", ["--version"]).status !== 0) return "protoc (protobuf-compiler) is not installed";
  if (!existsSync(PLUGIN)) return "grpc_python_plugin (protobuf-compiler-grpc) is not installed";
  return undefined;
}

/**
 * missingPythonTools for a test file: when a tool is missing, also warns once, naming the file
 * (or the part of it) that is skipped and what to install, so a skip is never silent.
 */
export function pythonSkipReason(skipped: string): string | undefined {
  const reason = missingPythonTools();
  if (reason) console.warn(`SKIPPED ${skipped}: ${reason}; install python3-grpcio protobuf-compiler protobuf-compiler-grpc (.ci/run does)`);
  return reason;
}

/** Generates the Python stubs of every dex.v1 .proto file into a fresh directory; returns it. */
export async function generatePythonStubs(): Promise<string> {
  const stubs = await mkdtemp(`${tmpdir()}/dex-python-stubs-`);
  const protos = (await readdir(`${protoRoot}/dex/v1`)).filter((f) => f.endsWith(".proto")).map((f) => `dex/v1/${f}`);
  execFileSync("protoc", [`-I${protoRoot}`, `--python_out=${stubs}`, `--grpc_python_out=${stubs}`, `--plugin=protoc-gen-grpc_python=${PLUGIN}`, ...protos]);
  await writeFile(`${stubs}/dex/__init__.py`, "");
  await writeFile(`${stubs}/dex/v1/__init__.py`, "");
  return stubs;
}

/** Runs a script asynchronously (the server and workers in this process keep serving meanwhile). */
export function runPython(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return runToEnd(PYTHON, args, { timeoutMs: 60_000 });
}
