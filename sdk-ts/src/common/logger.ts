/** A minimal structured logger; bring your own (pino, winston) by adapting these four methods. */
export interface Logger {
  debug(message: string, fields?: Record<string, unknown>): void;
  info(message: string, fields?: Record<string, unknown>): void;
  warn(message: string, fields?: Record<string, unknown>): void;
  error(message: string, fields?: Record<string, unknown>): void;
}

export type LogLevel = keyof Logger;
const levels: readonly LogLevel[] = ["debug", "info", "warn", "error"];

/**
 * The real clock, taken at import: inside workflow code a workflow worker's determinism guard makes
 * `new Date()` read the workflow's clock, and a log line (ctx.log) should say when it was printed.
 */
const RealDate = Date;

export interface ConsoleLoggerOptions {
  /** The lowest level printed. Default "info". */
  level?: LogLevel;
  /** Printed after the timestamp, e.g. "[dex]" (the workers' default logger uses it). Default none. */
  prefix?: string;
  /**
   * Start each line with the time as ISO 8601 UTC ("2026-03-04T05:06:07.089Z"). Default true; turn it
   * off when the console already goes somewhere that stamps each line (journald, docker logs -t).
   */
  timestamps?: boolean;
}

/**
 * Logs to the console at `level` and above: `<time> <prefix> <LEVEL> <message>`, then the fields
 * (the workers put runId and workflowName in the fields of every line about a run).
 */
export function createConsoleLogger(options: ConsoleLoggerOptions = {}): Logger {
  const min = levels.indexOf(options.level ?? "info");
  const prefix = options.prefix ? `${options.prefix} ` : "";
  const timestamps = options.timestamps ?? true;
  const make =
    (level: LogLevel) =>
    (message: string, fields?: Record<string, unknown>): void => {
      if (levels.indexOf(level) < min) return;
      const line = `${timestamps ? `${new RealDate().toISOString()} ` : ""}${prefix}${level.toUpperCase()} ${message}`;
      const out = level === "error" ? console.error : level === "warn" ? console.warn : console.log;
      if (fields && Object.keys(fields).length > 0) out(line, fields);
      else out(line);
    };
  return { debug: make("debug"), info: make("info"), warn: make("warn"), error: make("error") };
}

export const silentLogger: Logger = { debug() {}, info() {}, warn() {}, error() {} };

/** A logger whose fields are merged into every entry. */
export function withFields(logger: Logger, base: Record<string, unknown>): Logger {
  const wrap =
    (level: LogLevel) =>
    (message: string, fields?: Record<string, unknown>): void =>
      logger[level](message, { ...base, ...fields });
  return { debug: wrap("debug"), info: wrap("info"), warn: wrap("warn"), error: wrap("error") };
}
