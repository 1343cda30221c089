/** @dex/server: the public entry used by the CLI and the end-to-end tests. */
export { startServer } from "./server.js";
export { DEFAULT_PORT } from "./server-options.js";
export type { DexServer, ServerOptions } from "./server-options.js";
export { DEFAULT_LIMITS } from "./engine/limits.js";
export type { Limits } from "./engine/limits.js";
export { DEFAULT_MAX_MESSAGE_BYTES } from "./transport.js";
export type { ServerTlsOptions } from "./transport.js";
export type { Logger } from "./logger.js";
export { createJsonLogger, silentLogger } from "./logger.js";
export {
  migrate,
  migrationStatus,
  assertMigrated,
  repairChecksums,
  loadMigrations,
  migrationLabel,
  buildRelease,
  databaseRelease,
  judgeSchema,
  RELEASES_AHEAD_SERVED,
  SchemaMismatchError,
} from "./store/migrator.js";
export type { ChecksumMismatch, MigrateOptions, Migration, MigrationStatus, RecordedMigration, SchemaCompatibility } from "./store/migrator.js";
export { connectedServers, describeServer, type ConnectedServer } from "./store/connected-servers.js";
export { olderServerProblems } from "./store/older-servers.js";
export { openDatabase, redactUrl } from "./store/db.js";
export { startEmbeddedPostgres, freePort } from "./dev/embedded-postgres.js";
export { API_KEY_ROLES, ApiKeyUsageError, BOOTSTRAP_ADMIN_KEY_NAME, bootstrapAdminKey, createApiKey, listApiKeys, revokeApiKey } from "./engine/api-keys.js";
export type { ApiKeyRecord, ApiKeyRole, BootstrapOutcome, NewApiKey } from "./engine/api-keys.js";
export { DEFAULT_API_KEY_CACHE_MS } from "./engine/authenticator.js";
export { installTestClock } from "./store/test-clock.js";
export type { IdleSkip, TestClock } from "./engine/test-clock.js";
export { MAX_RETENTION_SECONDS } from "./engine/retention.js";
export { tracingFromEnvironment, type ServerTracing } from "./tracing-setup.js";
