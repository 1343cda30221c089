/**
 * Loading the user's workflow code for `dex workflow replay`, and the SDK that
 * replays it.
 *
 * The SDK must be the copy the user's module imports, not the CLI's own: the
 * determinism guard (process-wide, installed once per copy) and the error
 * classes workflow code throws and catches (`instanceof CancelledFailure`,
 * NonDeterminismError...) exist once per copy, and a replay mixing two copies
 * can report a divergence the worker would never see. So `@dex/sdk` is
 * resolved from the module's own directory, the way Node's ESM loader resolves
 * the module's `import "@dex/sdk"` (docs/decisions/0016-pre-deploy-replay.md).
 */
import { readFile, realpath, stat } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import type { Workflow } from "@dex/sdk";
import { UsageError } from "../errors.js";

export type Sdk = typeof import("@dex/sdk");

export interface LoadedWorkflows {
  /** Absolute path of the module. */
  path: string;
  workflows: Record<string, Workflow>;
}

/**
 * Imports the module at `path` and finds its workflows: the export named `exportName` if given, else
 * an export named `workflows`, else the default export (an object of workflows), else every exported
 * function by its export name.
 */
export async function loadWorkflowModule(path: string, exportName?: string): Promise<LoadedWorkflows> {
  const absolute = resolve(path);
  const info = await stat(absolute).catch(() => undefined);
  if (!info?.isFile()) throw new UsageError(`cannot load workflow module ${path}: no such file (give the path of the compiled .js module that exports your workflows)`);
  let namespace: Record<string, unknown>;
  try {
    namespace = (await import(pathToFileURL(absolute).href)) as Record<string, unknown>;
  } catch (err) {
    throw new UsageError(`cannot load workflow module ${path}: ${firstLine(err)}${typescriptHint(absolute, err)}`);
  }
  const workflows = pickWorkflows(namespace, exportName);
  if (typeof workflows === "string") throw new UsageError(`workflow module ${path} ${workflows}`);
  return { path: absolute, workflows };
}

function pickWorkflows(namespace: Record<string, unknown>, exportName: string | undefined): Record<string, Workflow> | string {
  if (exportName !== undefined) {
    const chosen = namespace[exportName];
    if (chosen === undefined) return `has no export named "${exportName}" (it exports: ${Object.keys(namespace).join(", ") || "nothing"})`;
    return registry(chosen) ?? `export "${exportName}" is not an object of workflow functions ({ name: workflow }, as given to createWorkflowWorker)`;
  }
  const found = registry(namespace.workflows) ?? registry(namespace.default) ?? registry(omit(namespace, "default"));
  return (
    found ??
    "exports no workflows: export them as `workflows` ({ name: workflow }, as given to createWorkflowWorker), as the default export, or as named functions"
  );
}

/** The object's function-valued own properties, or undefined when it has none. */
function registry(value: unknown): Record<string, Workflow> | undefined {
  if (typeof value !== "object" || value === null) return undefined;
  const entries = Object.entries(value).filter((entry): entry is [string, Workflow] => typeof entry[1] === "function");
  return entries.length > 0 ? Object.fromEntries(entries) : undefined;
}

function omit(namespace: Record<string, unknown>, key: string): Record<string, unknown> {
  const { [key]: _omitted, ...rest } = namespace;
  return rest;
}

export interface LoadedSdk {
  sdk: Sdk;
  /** Where it came from, for the report: the package directory, or "the dex CLI's own". */
  from: string;
  /** Set when the module's own SDK could not be used: why. */
  note?: string;
}

/** The @dex/sdk the module at `modulePath` imports; the CLI's own when the module resolves none. */
export async function loadSdkFor(modulePath: string): Promise<LoadedSdk> {
  let note: string | undefined;
  const packageJson = await resolveFrom(modulePath, "@dex/sdk");
  if (packageJson) {
    const entry = importEntry((JSON.parse(await readFile(packageJson, "utf8")) as { exports?: unknown }).exports);
    if (entry) {
      const sdk = (await import(pathToFileURL(join(dirname(packageJson), entry)).href)) as Sdk;
      if (typeof sdk.replayRuns === "function" && typeof sdk.replayHistoryFiles === "function") return { sdk, from: dirname(packageJson) };
      note = `the workflow module's @dex/sdk (${dirname(packageJson)}) has no replayRuns (too old); replaying with the dex CLI's own copy: upgrade it for a faithful check`;
    }
  }
  const sdk = await import("@dex/sdk");
  return note ? { sdk, from: "the dex CLI's own", note } : { sdk, from: "the dex CLI's own" };
}

/**
 * The package's package.json as Node's ESM loader finds a bare specifier: in `node_modules` of the
 * module's directory and each parent, symlinks resolved. Not createRequire: CommonJS resolution also
 * searches NODE_PATH and the global folders, which the ESM loader (and so the module) never sees.
 */
async function resolveFrom(modulePath: string, packageName: string): Promise<string | undefined> {
  for (let dir = dirname(modulePath); ; dir = dirname(dir)) {
    const candidate = join(dir, "node_modules", packageName, "package.json");
    if (await stat(candidate).then((info) => info.isFile(), () => false)) return realpath(candidate);
    if (dirname(dir) === dir) return undefined;
  }
}

/**
 * The file Node's ESM loader picks for the package's "." export: the first of the conditions it
 * knows ("node", "import", "default") in the order the package lists them, as Node does.
 */
function importEntry(exports: unknown): string | undefined {
  const root = typeof exports === "object" && exports !== null && "." in exports ? (exports as Record<string, unknown>)["."] : exports;
  return pickCondition(root);
}

function pickCondition(target: unknown): string | undefined {
  if (typeof target === "string") return target;
  if (typeof target !== "object" || target === null) return undefined;
  for (const [condition, value] of Object.entries(target)) {
    if (condition === "node" || condition === "import" || condition === "default") {
      const picked = pickCondition(value);
      if (picked) return picked;
    }
  }
  return undefined;
}

function firstLine(err: unknown): string {
  const message = err instanceof Error ? `${err.name === "Error" ? "" : `${err.name}: `}${err.message}` : String(err);
  return message.split("\n")[0]!;
}

function typescriptHint(path: string, err: unknown): string {
  const code = (err as { code?: unknown } | undefined)?.code;
  if (!/\.[cm]?tsx?$/.test(path) && code !== "ERR_UNKNOWN_FILE_EXTENSION") return "";
  return " (dex runs compiled JavaScript: build your project and give the .js module, e.g. dist/workflows.js)";
}
