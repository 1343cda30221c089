/** @dex/server: the public entry used by the CLI and the end-to-end tests. */
export { startServer, DEFAULT_PORT } from "./server.js";
export type { DexServer, ServerOptions } from "./server.js";
export { DEFAULT_LIMITS } from "./engine/limits.js";
export type { Limits } from "./engine/limits.js";
export { DEFAULT_MAX_MESSAGE_BYTES } from "./transport.js";
export type { ServerTlsOptions } from "./transport.js";
export type { Logger } from "./logger.js";
export { createJsonLogger, silentLogger } from "./logger.js";
export { migrate, migrationStatus, assertMigrated, repairChecksums, loadMigrations, SchemaMismatchError } from "./store/migrator.js";
export type { ChecksumMismatch, MigrationStatus, SchemaCompatibility } from "./store/migrator.js";
export { openDatabase, redactUrl } from "./store/db.js";
export { startEmbeddedPostgres, freePort } from "./dev/embedded-postgres.js";
export { API_KEY_ROLES, ApiKeyUsageError, BOOTSTRAP_ADMIN_KEY_NAME, bootstrapAdminKey, createApiKey, listApiKeys, revokeApiKey } from "./engine/api-keys.js";
export type { ApiKeyRecord, ApiKeyRole, BootstrapOutcome, NewApiKey } from "./engine/api-keys.js";
export { DEFAULT_API_KEY_CACHE_MS } from "./engine/authenticator.js";
export { installTestClock } from "./store/test-clock.js";
export type { IdleSkip, TestClock } from "./engine/test-clock.js";
export { MAX_RETENTION_SECONDS } from "./engine/retention.js";
