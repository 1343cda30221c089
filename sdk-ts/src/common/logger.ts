/** A minimal structured logger; bring your own (pino, winston) by adapting these four methods. */
export interface Logger {
  debug(message: string, fields?: Record<string, unknown>): void;
  info(message: string, fields?: Record<string, unknown>): void;
  warn(message: string, fields?: Record<string, unknown>): void;
  error(message: string, fields?: Record<string, unknown>): void;
}

export type LogLevel = keyof Logger;
const levels: readonly LogLevel[] = ["debug", "info", "warn", "error"];

/** Logs to the console at `level` and above (default "info"). */
export function createConsoleLogger(options: { level?: LogLevel; prefix?: string } = {}): Logger {
  const min = levels.indexOf(options.level ?? "info");
  const prefix = options.prefix ? `${options.prefix} ` : "";
  const make =
    (level: LogLevel) =>
    (message: string, fields?: Record<string, unknown>): void => {
      if (levels.indexOf(level) < min) return;
      const line = `${prefix}${level.toUpperCase()} ${message}`;
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
