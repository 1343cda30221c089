/** @dex/server: the public entry used by the CLI and the end-to-end tests. */
export { startServer, DEFAULT_PORT } from "./server.js";
export type { DexServer, ServerOptions } from "./server.js";
export type { Logger } from "./logger.js";
export { createJsonLogger, silentLogger } from "./logger.js";
export { migrate, migrationStatus, assertMigrated } from "./store/migrator.js";
export { openDatabase } from "./store/db.js";
export { startEmbeddedPostgres, freePort } from "./dev/embedded-postgres.js";
