/** The logger the server writes through; the CLI may pass its own. */
export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
}

export const LogLevel = { debug: 10, info: 20, warn: 30, error: 40 } as const;
export type LogLevelName = keyof typeof LogLevel;

/** JSON lines on stderr: one object per line with time, level, msg and the fields. */
export function createJsonLogger(
  level: LogLevelName = "info",
  write: (line: string) => void = (line) => process.stderr.write(line),
): Logger {
  const threshold = LogLevel[level];
  const log = (name: LogLevelName) => (msg: string, fields?: Record<string, unknown>) => {
    if (LogLevel[name] < threshold) return;
    write(JSON.stringify({ time: new Date().toISOString(), level: name, msg, ...serialisable(fields) }) + "\n");
  };
  return { debug: log("debug"), info: log("info"), warn: log("warn"), error: log("error") };
}

/** Errors do not survive JSON.stringify; spell out their message (and code, when they carry one). */
function serialisable(fields: Record<string, unknown> | undefined): Record<string, unknown> {
  if (!fields) return {};
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(fields)) {
    if (value instanceof Error) {
      const code = (value as { code?: unknown }).code;
      out[key] = { message: value.message, ...(code !== undefined ? { code } : {}), stack: value.stack };
    } else {
      out[key] = value;
    }
  }
  return out;
}

/**
 * A logger whose fields go into every line (the call's own fields win on a clash). startServer wraps
 * its logger in one with `server: <origin id>`, so lines from several servers on one database (or
 * one log stream) say which server wrote them; the "dex server listening" line pairs that id with
 * the server's address.
 */
export function withLogFields(logger: Logger, base: Record<string, unknown>): Logger {
  const wrap = (level: LogLevelName) => (msg: string, fields?: Record<string, unknown>) => logger[level](msg, { ...base, ...fields });
  return { debug: wrap("debug"), info: wrap("info"), warn: wrap("warn"), error: wrap("error") };
}

/** A logger that drops everything (tests that do not care). */
export const silentLogger: Logger = { debug() {}, info() {}, warn() {}, error() {} };
